//! finishSecret: promote the pending version, then retire the old key.
//!
//! Which key is "old" comes from the key record, never from a document: the keys recorded as
//! this secret's current key other than the one just promoted. AWSPREVIOUS, which anyone with
//! `secretsmanager:PutSecretValue` or `UpdateSecretVersionStage` can point anywhere, is not
//! read at all.

use tracing::{info, warn};

use super::{
    StepContext, TokenState, UserRecord, check_destination, current_document, document_at,
    now_epoch, pending_document, pending_must_match, preamble, require_pending_key, user_record,
};
use crate::aws::{KeyLookup, Stage};
use crate::config::OldKeyAction;
use crate::error::Error;
use crate::ownership::{OWNER_TAG, owner_tag_value, token_digest};
use crate::record::{Entry, KeyState, tag_key};
use crate::secret::{SecretDocument, SecretError};

/// Moves AWSCURRENT to the token's version (removing it from the old current version, which
/// Secrets Manager then labels AWSPREVIOUS), records the promotion, then applies
/// `OLD_KEY_ACTION` to the key it superseded: deactivate (default), delete, or keep.
///
/// Before the move it checks what it promotes: the pending document carries exactly what
/// AWSCURRENT says (else the version is cleared, [`Error::PendingMismatch`]), its host is
/// allowed, its key exists and is Active, and the key record proves this rotation minted that
/// key for this secret (else [`Error::PendingKeyNotRecorded`], also clearing the version).
///
/// Idempotent and crash safe: when the stage move already happened (the token is AWSCURRENT),
/// the promotion is recorded if it was not, and the action is applied to every key the record
/// shows superseded and not yet retired; a key already inactive or gone is fine. The key that
/// is now current is never touched, and no key the record does not prove this secret's is.
/// Last, this rotation's attempts are cleared from the marker tag, deleting a key one of them
/// left.
///
/// # Errors
/// Preamble errors; [`Error::MalformedSecret`] when the pending version has no credentials;
/// [`Error::PendingMismatch`]; [`Error::HostNotAllowed`]; [`Error::PendingKeyGone`];
/// [`Error::PendingKeyNotRecorded`]; [`Error::UserNotDedicated`] / [`Error::UserNotAssigned`];
/// [`Error::KeyRecordUnreadable`]; Secrets Manager / IAM failures.
pub async fn finish_secret(ctx: &StepContext<'_>) -> Result<String, Error> {
    let token = &ctx.event.token;
    match preamble(ctx).await? {
        TokenState::AlreadyCurrent(state) => {
            // Re-run after the move: complete the record and the old key's retirement.
            let new_doc = current_document(ctx, &state.arn).await?;
            info!("version is already AWSCURRENT; completing the old key's retirement");
            complete(ctx, &state.arn, &new_doc).await
        }
        TokenState::Pending(state) => {
            let arn = state.arn.clone();
            let new_doc = pending_document(ctx, &arn)
                .await?
                .filter(|d| d.credentials.is_some())
                .ok_or_else(|| Error::MalformedSecret {
                    secret_id: arn.clone(),
                    stage: Stage::Pending,
                    source: SecretError::Missing {
                        field: "username",
                        hint: "createSecret has not stored the new credentials: run the rotation from createSecret",
                    },
                })?;
            // Read the old current by the version id the move will name, so both agree.
            let from = state.version_with(Stage::Current).map(str::to_owned);
            let old_doc = match &from {
                Some(v) => document_at(ctx, &arn, Some(v), Stage::Current).await?,
                None => None,
            };
            if let Some(old) = &old_doc {
                pending_must_match(ctx, &arn, &new_doc, old).await?;
            }
            check_destination(ctx, &arn, &new_doc, Stage::Pending)?;
            let new_key = require_pending_key(ctx, &arn, &new_doc).await?;
            let user = new_doc.iam_user.as_str();
            let rec = user_record(ctx, &arn, user).await?;
            if !minted_here(ctx, &arn, &rec, &new_key)
                && rec.records.state_of(&new_key, &arn) == Some(KeyState::Current)
                && let TokenState::AlreadyCurrent(state) = preamble(ctx).await?
            {
                // A concurrent finishSecret of this rotation promoted it meanwhile.
                info!(
                    "another invocation promoted this version meanwhile; completing the retirement"
                );
                let new_doc = current_document(ctx, &state.arn).await?;
                return complete(ctx, &state.arn, &new_doc).await;
            }
            if !minted_here(ctx, &arn, &rec, &new_key) {
                warn!(key_id = %new_key,
                      "the pending version names a key the record does not show this rotation made; removing AWSPENDING");
                ctx.clients.remove_pending(&arn, token).await?;
                return Err(Error::PendingKeyNotRecorded {
                    secret_id: arn.clone(),
                    token: token.clone(),
                    key_id: new_key,
                    iam_user: user.to_owned(),
                });
            }
            // A rotation whose createSecret ran under an earlier release (no record at all; its
            // attempt named the new key): the old key AWSCURRENT names is recorded now, so
            // that the promotion below can retire it, as that release would have. Under this
            // release createSecret already recorded it, and a document is never proof.
            let mut writes = Vec::new();
            if rec.claim {
                writes.push((OWNER_TAG.to_owned(), owner_tag_value(&arn)));
            }
            if let Some(old_key) = old_doc
                .as_ref()
                .filter(|d| d.iam_user == new_doc.iam_user)
                .and_then(|d| d.credentials.as_ref())
                .map(|c| c.username.as_str())
                && old_key != new_key
                && rec.records.is_empty()
            {
                writes.push((
                    tag_key(old_key),
                    Entry::new(&arn, None, KeyState::Current, now_epoch()).to_value(),
                ));
            }
            ctx.clients.tag_user_all(user, &writes).await?;
            ctx.clients
                .move_current(&arn, token, from.as_deref())
                .await?;
            // The key was listed a moment ago; if it is gone now (deleted by hand during the
            // move), AWSCURRENT must not stay on credentials that cannot log in: move it back
            // to the old version, but only while that one still works.
            if let Some(old_key) =
                vanished_during_move(ctx, user, &new_key, old_doc.as_ref()).await?
                && let Some(from) = &from
                && ctx
                    .clients
                    .describe(&arn)
                    .await?
                    .has_stage(token, Stage::Current)
            {
                warn!(key_id = %new_key, old_key_id = %old_key,
                      "the new key disappeared while it was promoted; moving AWSCURRENT back and removing AWSPENDING");
                ctx.clients.move_current(&arn, from, Some(token)).await?;
                ctx.clients.remove_pending(&arn, token).await?;
                return Err(Error::PendingKeyGone {
                    secret_id: arn.clone(),
                    token: token.clone(),
                    key_id: new_key,
                    iam_user: user.to_owned(),
                });
            }
            info!(
                previous_version = from.as_deref().unwrap_or("none"),
                new_key_id = %new_key,
                "moved AWSCURRENT to the new version"
            );
            complete(ctx, &arn, &new_doc).await
        }
    }
}

/// After the stage move: `Some(old key)` when the promoted key is gone (not listed twice, a
/// second apart, although it was listed before the move) and the old version's key is still
/// listed and Active (or it held none: a bootstrap document, which lets the next rotation
/// start again), so that moving AWSCURRENT back restores what worked before.
async fn vanished_during_move(
    ctx: &StepContext<'_>,
    user: &str,
    new_key: &str,
    old_doc: Option<&SecretDocument>,
) -> Result<Option<String>, Error> {
    let Some(old) = old_doc.filter(|d| d.iam_user == user) else {
        return Ok(None);
    };
    let old_key = old.credentials.as_ref().map(|c| c.username.clone());
    for pause in [0u64, 1000] {
        tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
        let keys = ctx.clients.list_keys(user).await?;
        if keys.iter().any(|k| k.id == new_key) {
            return Ok(None);
        }
        if let Some(old_key) = &old_key
            && !keys.iter().any(|k| k.id == *old_key && k.active)
        {
            return Ok(None);
        }
    }
    Ok(Some(
        old_key.unwrap_or_else(|| "(none: a bootstrap document)".into()),
    ))
}

/// Whether the record proves this rotation minted `key` for this secret: its record says
/// so, or (a key minted by an earlier release, before records) an attempt of this token
/// named it.
fn minted_here(ctx: &StepContext<'_>, arn: &str, rec: &UserRecord, key: &str) -> bool {
    match rec.records.get(key) {
        Some(e) => e.minted_by(arn, &ctx.event.token),
        None => {
            let t = token_digest(&ctx.event.token);
            rec.marker
                .attempts
                .iter()
                .any(|a| a.token == t && a.key.as_deref() == Some(key))
        }
    }
}

/// After the move: records the promoted key as current and the keys it superseded as
/// previous, applies `OLD_KEY_ACTION` to every superseded key, and clears this rotation's
/// attempts.
async fn complete(
    ctx: &StepContext<'_>,
    arn: &str,
    new_doc: &SecretDocument,
) -> Result<String, Error> {
    let Some(new_key) = new_doc.credentials.as_ref().map(|c| c.username.clone()) else {
        return Ok("AWSCURRENT holds no credentials; nothing to retire".into());
    };
    let user = new_doc.iam_user.as_str();
    let rec = user_record(ctx, arn, user).await?;
    let promoted = match rec.records.state_of(&new_key, arn) {
        Some(KeyState::Current) => true,
        _ => minted_here(ctx, arn, &rec, &new_key),
    };
    if !promoted {
        warn!(key_id = %new_key,
              "AWSCURRENT names a key the record does not show this rotation made; nothing retired");
        return Ok(format!(
            "AWSCURRENT names key {new_key}, which the key record does not show this rotation made (an edit moved the stages); no key was retired"
        ));
    }
    let now = now_epoch();
    let mut writes = Vec::new();
    if rec.claim {
        writes.push((OWNER_TAG.to_owned(), owner_tag_value(arn)));
    }
    if !matches!(
        rec.records.get(&new_key),
        Some(Entry::Recorded {
            state: KeyState::Current,
            ..
        })
    ) {
        writes.push((
            tag_key(&new_key),
            Entry::new(arn, Some(&ctx.event.token), KeyState::Current, now).to_value(),
        ));
    }
    let mut superseded = Vec::new();
    for (id, entry) in &rec.records.keys {
        if *id == new_key {
            continue;
        }
        match entry.state_for(arn) {
            Some(KeyState::Current) => {
                writes.push((
                    tag_key(id),
                    Entry::new(arn, None, KeyState::Previous, now).to_value(),
                ));
                superseded.push(id.clone());
            }
            Some(KeyState::Previous) => superseded.push(id.clone()),
            _ => {}
        }
    }
    ctx.clients.tag_user_all(user, &writes).await?;
    let mut result = retire(ctx, arn, user, &new_key, &superseded).await?;
    let removed = clear_marker(ctx, arn, user, &new_key, &rec).await?;
    if removed > 0 {
        result.push_str(&format!(
            "; deleted {removed} unused key(s) a failed attempt left"
        ));
    }
    Ok(result)
}

/// Applies `OLD_KEY_ACTION` to the superseded keys (each recorded as this secret's).
async fn retire(
    ctx: &StepContext<'_>,
    arn: &str,
    user: &str,
    new_key: &str,
    superseded: &[String],
) -> Result<String, Error> {
    if superseded.is_empty() {
        return Ok(format!(
            "new key {new_key} is AWSCURRENT; no previous key to retire (none recorded as this secret's)"
        ));
    }
    let action = ctx.config.old_key_action;
    let grace = ctx.config.old_key_grace;
    if !grace.is_zero() && action != OldKeyAction::Keep {
        // Senders cache credentials (minutes to hours, an environment variable until the
        // next deploy): the old key stays Active; the scheduled maintenance retires it once
        // the grace has passed and IAM no longer sees it used.
        info!(keys = %superseded.join(", "), grace_hours = grace.as_secs_f64() / 3600.0,
              "previous key kept Active for its grace; the scheduled maintenance retires it");
        return Ok(format!(
            "new key {new_key} is AWSCURRENT; previous key {}: kept Active for its grace (OLD_KEY_GRACE_HOURS={}), then {} by the scheduled maintenance",
            superseded.join(", "),
            grace.as_secs_f64() / 3600.0,
            match action {
                OldKeyAction::Delete => "deleted",
                _ => "deactivated",
            }
        ));
    }
    for key in superseded {
        match action {
            OldKeyAction::Deactivate => {
                ctx.clients.deactivate_key(user, key).await?;
                ctx.clients
                    .tag_user_all(
                        user,
                        &[(
                            tag_key(key),
                            Entry::new(arn, None, KeyState::Retired, now_epoch()).to_value(),
                        )],
                    )
                    .await?;
            }
            OldKeyAction::Delete => {
                ctx.clients.delete_key(user, key).await?;
                ctx.clients.untag_user_all(user, &[tag_key(key)]).await?;
            }
            OldKeyAction::Keep => {}
        }
        info!(key_id = %key, action = action.as_str(), "applied OLD_KEY_ACTION to the previous key");
    }
    Ok(format!(
        "new key {new_key} is AWSCURRENT; previous key {}: {}",
        superseded.join(", "),
        match action {
            OldKeyAction::Deactivate => "deactivated",
            OldKeyAction::Delete => "deleted",
            OldKeyAction::Keep => "kept active until the next rotation",
        }
    ))
}

/// Clears this rotation's attempts (their tags). A key an ended or expired attempt of this
/// rotation made (named by the attempt or recorded as minted by this token), or a never-used
/// key in the window of one whose outcome was unknown, is deleted first (never the new current key, never a key the record
/// shows current or superseded), so the completed rotation leaves no key the record does not
/// explain. Attempts still running are kept: their key, if any, is deleted by the attempt
/// itself when it finds the version taken, or by the next rotation. Returns how many keys
/// were deleted.
async fn clear_marker(
    ctx: &StepContext<'_>,
    arn: &str,
    user: &str,
    new_key: &str,
    rec: &UserRecord,
) -> Result<usize, Error> {
    let marker = rec.marker.clone();
    let token = token_digest(&ctx.event.token);
    let now = now_epoch();
    let ours: Vec<_> = marker
        .attempts
        .iter()
        .filter(|a| a.token == token && !a.is_live(now))
        .cloned()
        .collect();
    let live_key = |k: &str| {
        marker
            .attempts
            .iter()
            .any(|a| a.key.as_deref() == Some(k) && a.is_live(now))
    };
    let recorded_leftover = rec
        .records
        .keys
        .iter()
        .any(|(k, e)| *k != new_key && e.minted_by(arn, &ctx.event.token));
    let mut removed = 0;
    // Only an attempt that did not end by storing the new key can have left one behind.
    let may_have_left = recorded_leftover
        || ours
            .iter()
            .any(|a| a.key.is_none() || a.key.as_deref() != Some(new_key));
    if may_have_left {
        for key in ctx.clients.list_keys(user).await? {
            let id = key.id.as_str();
            if id == new_key || live_key(id) {
                continue;
            }
            let leftover = match rec.records.get(id) {
                Some(e) => e.minted_by(arn, &ctx.event.token),
                None => {
                    let named = ours.iter().any(|a| a.key.as_deref() == Some(id));
                    let in_window = key
                        .created
                        .is_some_and(|c| ours.iter().any(|a| a.covers(c.secs())));
                    named
                        || (in_window
                            && matches!(
                                ctx.clients.key_usage(id, user).await?,
                                KeyLookup::Found(u) if !u.ever_used
                            ))
                }
            };
            if leftover {
                info!(key_id = %id, "deleting an unused key an earlier attempt of this rotation made");
                ctx.clients.delete_key(user, id).await?;
                ctx.clients.untag_user_all(user, &[tag_key(id)]).await?;
                removed += 1;
            }
        }
    }
    // This rotation's attempts go (a live one that made the new key is done as well), each
    // by its own tag, from the tags as they are now: an attempt that recorded itself
    // meanwhile is seen, and no other attempt's tag is touched.
    let fresh = crate::ownership::marker_of(user, &ctx.clients.user_tags(user).await?)?;
    let drop = fresh.tags_to_drop(now, |a| {
        a.key.as_deref() != Some(new_key) && (a.token != token || a.is_live(now))
    });
    ctx.clients.untag_user_all(user, &drop).await?;
    Ok(removed)
}
