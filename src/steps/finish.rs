//! finishSecret: promote the pending version, then retire the old key.

use tracing::info;

use super::{
    StepContext, TokenState, check_destination, check_same_destination, current_document,
    document_at, now_epoch, pending_document, preamble, require_pending_key,
};
use crate::aws::{KeyLookup, Stage};
use crate::config::OldKeyAction;
use crate::error::Error;
use crate::ownership::{MARKER_TAG, Marker, token_digest};
use crate::secret::{SecretDocument, SecretError};

/// Moves AWSCURRENT to the token's version (removing it from the old current version, which
/// Secrets Manager then labels AWSPREVIOUS), then applies `OLD_KEY_ACTION` to the old key:
/// deactivate (default), delete, or keep.
///
/// Before the move it checks what it promotes: the pending document describes the same user
/// and destination as AWSCURRENT, its host is allowed, and its key exists and is Active.
///
/// Idempotent and crash safe: when the stage move already happened (the token is AWSCURRENT),
/// the action is applied to the AWSPREVIOUS version's key; a key already inactive or gone is
/// fine. The key that is now current is never touched. Last, the attempts of this rotation
/// are cleared from the marker tag, deleting a never-used key one of them left that IAM's
/// eventual consistency hid from createSecret.
///
/// # Errors
/// Preamble errors; [`Error::MalformedSecret`] when the pending version has no credentials;
/// [`Error::PendingMismatch`]; [`Error::HostNotAllowed`]; [`Error::PendingKeyGone`];
/// Secrets Manager / IAM failures.
pub async fn finish_secret(ctx: &StepContext<'_>) -> Result<String, Error> {
    let token = &ctx.event.token;
    let (new_doc, old_doc) = match preamble(ctx).await? {
        TokenState::AlreadyCurrent(state) => {
            // Re-run after the move: the old key is the one AWSPREVIOUS names.
            let arn = state.arn.clone();
            let new_doc = current_document(ctx, &arn).await?;
            let old_doc = match state.version_with(Stage::Previous) {
                Some(prev) if prev != token.as_str() => previous_document(ctx, &arn, prev).await?,
                _ => None,
            };
            info!("version is already AWSCURRENT; completing the old key's retirement");
            (new_doc, old_doc)
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
                check_same_destination(ctx, &arn, &new_doc, old)?;
            }
            check_destination(ctx, &arn, &new_doc, Stage::Pending)?;
            require_pending_key(ctx, &arn, &new_doc).await?;
            ctx.clients
                .move_current(&arn, token, from.as_deref())
                .await?;
            info!(
                previous_version = from.as_deref().unwrap_or("none"),
                new_key_id = new_doc
                    .credentials
                    .as_ref()
                    .map_or("?", |c| c.username.as_str()),
                "moved AWSCURRENT to the new version"
            );
            (new_doc, old_doc)
        }
    };
    let mut result = retire_old_key(ctx, &new_doc, old_doc.as_ref()).await?;
    let old_key = old_doc
        .as_ref()
        .and_then(|d| d.credentials.as_ref())
        .map(|c| c.username.as_str());
    let removed = clear_marker(ctx, &new_doc, old_key).await?;
    if removed > 0 {
        result.push_str(&format!(
            "; deleted {removed} unused key(s) a failed attempt left"
        ));
    }
    Ok(result)
}

/// Clears this rotation's attempts from the marker tag (the tag goes when nothing else is
/// recorded). A key an ended or expired attempt of this rotation made, or a never-used key
/// in the window of one whose outcome was unknown, is deleted first (never the new current
/// key, never the key the previous version names), so the completed rotation leaves no key
/// that no version names. Attempts still
/// running are kept: their key, if any, is deleted by the attempt itself when it finds the
/// version taken, or by the next rotation. Returns how many keys were deleted.
async fn clear_marker(
    ctx: &StepContext<'_>,
    new_doc: &SecretDocument,
    old_key: Option<&str>,
) -> Result<usize, Error> {
    let user = new_doc.iam_user.as_str();
    let tags = ctx.clients.user_tags(user).await?;
    let Some(value) = tags.get(MARKER_TAG) else {
        return Ok(0);
    };
    let mut marker = Marker::parse(value);
    let token = token_digest(&ctx.event.token);
    let now = now_epoch();
    let new_key = new_doc.credentials.as_ref().map(|c| c.username.as_str());
    let ours: Vec<_> = marker
        .attempts
        .iter()
        .filter(|a| a.token == token && !a.is_live(now))
        .cloned()
        .collect();
    let mut removed = 0;
    if !ours.is_empty() {
        for key in ctx.clients.list_keys(user).await? {
            // The versions' own keys are never an attempt's leftover, whatever their dates.
            if Some(key.id.as_str()) == new_key || Some(key.id.as_str()) == old_key {
                continue;
            }
            let named = ours
                .iter()
                .any(|a| a.key.as_deref() == Some(key.id.as_str()));
            let in_window = key
                .created
                .is_some_and(|c| ours.iter().any(|a| a.covers(c.secs())));
            let ours_to_delete = named
                || (in_window
                    && matches!(
                        ctx.clients.key_usage(&key.id, user).await?,
                        KeyLookup::Found(u) if !u.ever_used
                    ));
            if ours_to_delete {
                info!(key_id = %key.id, "deleting an unused key an earlier attempt of this rotation made");
                ctx.clients.delete_key(user, &key.id).await?;
                removed += 1;
            }
        }
    }
    marker
        .attempts
        .retain(|a| a.is_live(now) || (a.token != token && a.key.as_deref() != new_key));
    if marker.is_empty() {
        ctx.clients.untag_user(user, MARKER_TAG).await?;
    } else if marker.to_value() != *value {
        ctx.clients
            .tag_user(user, MARKER_TAG, &marker.to_value())
            .await?;
    }
    Ok(removed)
}

/// Reads the previous version's document. A version without a value or with a document that
/// does not parse names no key we could safely act on (`None`); a failed read is an error, so
/// that Secrets Manager retries instead of the old key silently staying active.
async fn previous_document(
    ctx: &StepContext<'_>,
    arn: &str,
    version: &str,
) -> Result<Option<SecretDocument>, Error> {
    match document_at(ctx, arn, Some(version), Stage::Previous).await {
        Err(Error::MalformedSecret { .. }) => Ok(None),
        other => other,
    }
}

async fn retire_old_key(
    ctx: &StepContext<'_>,
    new_doc: &SecretDocument,
    old_doc: Option<&SecretDocument>,
) -> Result<String, Error> {
    let new_key = new_doc.credentials.as_ref().map(|c| c.username.as_str());
    let Some((old_user, old_key)) = old_doc.and_then(|d| {
        d.credentials
            .as_ref()
            .map(|c| (d.iam_user.as_str(), c.username.as_str()))
    }) else {
        return Ok("no previous key to retire (the previous version held no credentials)".into());
    };
    if Some(old_key) == new_key {
        return Ok("the previous version names the current key; nothing to retire".into());
    }
    let action = ctx.config.old_key_action;
    match action {
        OldKeyAction::Deactivate => ctx.clients.deactivate_key(old_user, old_key).await?,
        OldKeyAction::Delete => ctx.clients.delete_key(old_user, old_key).await?,
        OldKeyAction::Keep => {}
    }
    info!(key_id = %old_key,
          action = action.as_str(), "applied OLD_KEY_ACTION to the previous key");
    Ok(format!(
        "new key {} is AWSCURRENT; previous key {old_key}: {}",
        new_key.unwrap_or("?"),
        match action {
            OldKeyAction::Deactivate => "deactivated",
            OldKeyAction::Delete => "deleted",
            OldKeyAction::Keep => "kept active until the next rotation",
        }
    ))
}
