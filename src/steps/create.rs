//! createSecret: mint the new access key and store the pending credentials.
//!
//! Read top to bottom, the step is five phases: the idempotence check (the pending version
//! already holds working credentials), the ownership guard (the user is dedicated to this
//! secret and under `IAM_USER_PATH`), the removal of provably stale keys (decided by
//! [`ownership::stale_keys`], a pure function, from facts fetched first), minting (an
//! attempt recorded in the marker before CreateAccessKey) and storing (PutSecretValue, with
//! the attempt's own key deleted if another attempt stored first).

use std::collections::HashMap;

use tracing::{info, warn};

use super::{
    ALREADY_CURRENT, StepContext, UserRecord, check_destination, current_document_of,
    deadline_epoch, now_epoch, pending_document, pending_must_match, pending_state,
    require_pending_key, user_record,
};
use crate::aws::{CreateKeyError, KeyInfo, SecretState, Stage};
use crate::config::path_is_under;
use crate::error::Error;
use crate::ownership::{self, Attempt, AttemptState, KeyFacts, Marker, OWNER_TAG, owner_tag_value};
use crate::password::SecretAccessKey;
use crate::record::{self, KeyState};
use crate::secret::SecretDocument;

/// Creates a new access key for the secret's IAM user, derives its SMTP password and stores
/// the document with the new credentials as the token's AWSPENDING version.
///
/// Idempotent: if the pending version already holds credentials for the same destination
/// whose key exists and is Active, it does nothing. Crash and overlap safe: only provably
/// stale keys are deleted (see [`crate::ownership`]), never the current key nor one a live
/// attempt may still be storing; CreateAccessKey runs without automatic retries so a lost
/// response cannot mint a second key; when another attempt stored its credentials first, this
/// attempt deletes the key it made itself.
///
/// # Errors
/// Preamble errors; [`Error::MalformedSecret`]; [`Error::HostNotAllowed`];
/// [`Error::PendingMismatch`]; [`Error::PendingKeyGone`]; [`Error::NoSuchUser`]; [`Error::UserNotPermitted`];
/// [`Error::UserOutsidePath`]; [`Error::UserNotDedicated`];
/// [`Error::KeyBelongsToOtherUser`] / [`Error::CurrentKeyMissing`];
/// [`Error::UnadoptedAccessKey`]; [`Error::AttemptInProgress`] / [`Error::KeyNotYetVisible`]
/// (retryable); IAM / Secrets Manager failures.
pub async fn create_secret(ctx: &StepContext<'_>) -> Result<String, Error> {
    let Some(state) = pending_state(ctx).await? else {
        return Ok(ALREADY_CURRENT.into());
    };
    let arn = state.arn.as_str();
    let current = current_document_of(ctx, &state).await?;
    check_destination(ctx, arn, &current, Stage::Current)?;

    // 1. Idempotence: the pending version already holds working credentials.
    if let Some(done) = already_stored(ctx, arn, &current).await? {
        return Ok(done);
    }

    // 2. Ownership guard, and the facts every decision below is made from.
    let user = current.iam_user.as_str();
    check_user_path(ctx, user).await?;
    let rec = user_record(ctx, arn, user).await?;
    let UserRecord {
        records, marker, ..
    } = &rec;
    let keys = ctx.clients.list_keys(user).await?;
    let current_key = current.credentials.as_ref().map(|c| c.username.as_str());
    // AWSPREVIOUS is consulted only for a user no release of this function recorded yet.
    let previous_key = if records.is_empty() && keys.len() > usize::from(current_key.is_some()) {
        previous_key(ctx, &state, &current).await?
    } else {
        None
    };
    let mut lookups = HashMap::new();
    for id in ownership::keys_to_look_up(current_key, &keys, records, marker) {
        let answer = ctx.clients.key_usage(&id, user).await?;
        lookups.insert(id, answer);
    }
    let now = now_epoch();

    // 3. The decision (pure), then the removal of keys the record proves stale. Every
    //    refusal comes before the first change.
    let plan = ownership::plan_keys(&KeyFacts {
        secret_id: arn,
        user,
        token: &ctx.event.token,
        current_key,
        previous_key: previous_key.as_deref(),
        keys: &keys,
        records,
        marker,
        lookups: &lookups,
        now,
    })?;
    let mut writes: Vec<(String, String)> = plan
        .record
        .iter()
        .map(|(k, e)| (record::tag_key(k), e.to_value()))
        .collect();
    if rec.claim {
        writes.push((OWNER_TAG.to_owned(), owner_tag_value(arn)));
    }
    ctx.clients.tag_user_all(user, &writes).await?;
    for (key, _) in &plan.record {
        info!(key_id = %key, "recorded the key AWSCURRENT names as this secret's current key");
    }
    for key in &plan.stale {
        if let Some(record::Entry::Recorded {
            state: KeyState::Previous,
            at,
            ..
        }) = records.get(key)
            && ctx.config.old_key_grace.as_secs_f64() > (now - at) as f64
        {
            warn!(iam_user = %user, key_id = %key,
                  "ending the grace of the previous key early: a user holds at most two keys, and this rotation needs room for a new one");
        }
        if matches!(
            records.get(key),
            Some(record::Entry::Recorded {
                state: KeyState::Current,
                ..
            })
        ) {
            warn!(iam_user = %user, key_id = %key,
                  "deleting a key the record shows current although AWSCURRENT names another (AWSCURRENT was moved back by hand, or a promotion's record update was cut short)");
        }
        info!(iam_user = %user, key_id = %key,
              "deleting a key the record proves stale (an earlier rotation's, or one an ended attempt made)");
        ctx.clients.delete_key(user, key).await?;
    }
    // Records of keys no longer listed: deleted just now, or earlier by an interrupted
    // deletion. A key minted moments ago may not be listed yet, so only old records go.
    let dangling: Vec<String> = records
        .keys
        .iter()
        .filter(|(id, e)| {
            plan.stale.contains(id)
                || (!keys.iter().any(|k| k.id == **id)
                    && e.at() < now - ownership::LISTING_LAG_SECS)
        })
        .map(|(id, _)| record::tag_key(id))
        .chain(pruned(marker, &keys, &plan.stale, current_key, now))
        .collect();
    ctx.clients.untag_user_all(user, &dangling).await?;
    for key in &plan.foreign {
        warn!(iam_user = %user, key_id = %key,
              "left alone a key this function has no record of making for this secret: adopt it (tag ses-smtp-rotator:key:<id>=adopt) or delete it");
    }
    let foreign = plan.foreign.clone();

    // 4. Minting: the attempt is recorded (in its own tag) before CreateAccessKey, its key
    //    right after.
    let mut own = Attempt::begin(&ctx.event.token, super::now_epoch_ms(), deadline_epoch(ctx));
    ctx.clients
        .tag_user(user, &own.tag, &own.tag_value())
        .await?;
    // Another attempt of this rotation that recorded itself earlier is running: let it
    // finish. The tags are read again after our own write: of two attempts that each wrote
    // before reading, at least the later sees the earlier and yields (the earlier one goes
    // on). Under IAM's eventual consistency both may still miss each other; those
    // interleavings end at IAM's two-key limit (a regular rotation) or at PutSecretValue's
    // ResourceExists (a bootstrap), both handled below.
    yield_to_other(ctx, arn, user, &mut own, now, true).await??;
    let (key_id, secret) = match mint(ctx, arn, user, &mut own).await {
        Ok(minted) => minted,
        // IAM refused a key for the two-key limit although the stale keys went: another
        // attempt made one meanwhile (tags are no lock; this is the race's definite end). Say
        // so, retryably, when the marker shows any other live attempt. When none is live any
        // more, the other attempt may have finished meanwhile: if it stored this version's
        // credentials, this attempt is done too (a re-run's answer).
        Err(e) if e.limit_exceeded => {
            yield_to_other(ctx, arn, user, &mut own, now_epoch(), false).await??;
            own.state = AttemptState::Ended;
            save_own(ctx, user, &own).await;
            return match already_stored(ctx, arn, &current).await? {
                Some(done) => {
                    info!("an overlapping attempt of this rotation stored the credentials first");
                    Ok(done)
                }
                None => Err(e.error),
            };
        }
        Err(e) => return Err(e.error),
    };

    // 5. Storing.
    let result = store(ctx, arn, &current, &key_id, secret).await;
    own.state = match &result {
        Ok(Stored::Mine(_)) => AttemptState::Stored,
        _ => AttemptState::Ended,
    };
    save_own(ctx, user, &own).await;
    result.map(|stored| {
        let done = stored.answer();
        if foreign.is_empty() {
            done
        } else {
            format!(
                "{done}; left alone key(s) {} of {user}, which this function has no record of making for this secret: adopt (tag ses-smtp-rotator:key:<id>=adopt) or delete them",
                foreign.join(", ")
            )
        }
    })
}

/// Reads the marker again. When another live attempt of this rotation (with
/// `earlier_only`, one that began before this one) is recorded, this one ends (recorded, best
/// effort) and the inner `Err` is the retryable answer to give.
async fn yield_to_other(
    ctx: &StepContext<'_>,
    arn: &str,
    user: &str,
    own: &mut Attempt,
    now: i64,
    earlier_only: bool,
) -> Result<Result<(), Error>, Error> {
    let marker = ownership::marker_of(user, &ctx.clients.user_tags(user).await?)?;
    let Some(other) = marker.other_live(own, now, earlier_only) else {
        return Ok(Ok(()));
    };
    let err = in_progress(arn, other, now);
    own.state = AttemptState::Ended;
    save_own(ctx, user, own).await;
    Ok(Err(err))
}

/// The retryable answer when another attempt of this rotation is running.
fn in_progress(arn: &str, other: &Attempt, now: i64) -> Error {
    Error::AttemptInProgress {
        secret_id: arn.to_owned(),
        key: other
            .key
            .clone()
            .unwrap_or_else(|| "a key not yet recorded".into()),
        started_secs_ago: now - other.start,
        deadline_in_secs: other.deadline - now,
    }
}

/// Writes this attempt's progress to its own tag (no other attempt writes it, so nothing is
/// read first and nothing of another attempt can be lost). Best effort: an attempt whose
/// progress is not recorded simply runs out at its deadline.
async fn save_own(ctx: &StepContext<'_>, user: &str, own: &Attempt) {
    if let Err(e) = ctx.clients.tag_user(user, &own.tag, &own.tag_value()).await {
        warn!(error = %e, "could not record this attempt's progress in its tag; its lease runs out at its deadline");
    }
}

/// Phase 1: `Some(answer)` when the pending version already holds credentials for the same
/// destination whose key exists and is Active.
async fn already_stored(
    ctx: &StepContext<'_>,
    arn: &str,
    current: &SecretDocument,
) -> Result<Option<String>, Error> {
    let Some(pending) = pending_document(ctx, arn).await? else {
        return Ok(None);
    };
    pending_must_match(ctx, arn, &pending, current).await?;
    let key_id = require_pending_key(ctx, arn, &pending).await?;
    info!(key_id = %key_id, "pending version already holds credentials whose key is Active; nothing to do");
    Ok(Some(format!(
        "pending version already holds key {key_id} (Active)"
    )))
}

/// Refuses a user outside `IAM_USER_PATH` before any change.
async fn check_user_path(ctx: &StepContext<'_>, user: &str) -> Result<(), Error> {
    let Some(allowed) = ctx.config.iam_user_path.as_deref() else {
        return Ok(());
    };
    let path = ctx.clients.user_path(user, allowed).await?;
    if path_is_under(&path, allowed) {
        Ok(())
    } else {
        Err(Error::UserOutsidePath {
            iam_user: user.to_owned(),
            path,
            allowed: allowed.to_owned(),
        })
    }
}

/// The key the AWSPREVIOUS version names, when that version is a document of the same user.
/// A previous version without a value or with an unreadable document names nothing we could
/// safely delete.
async fn previous_key(
    ctx: &StepContext<'_>,
    state: &SecretState,
    current: &SecretDocument,
) -> Result<Option<String>, Error> {
    let Some(version) = state.version_with(Stage::Previous) else {
        return Ok(None);
    };
    let doc = match super::document_at(ctx, &state.arn, Some(version), Stage::Previous).await {
        Ok(d) => d,
        Err(Error::MalformedSecret { .. }) => None,
        Err(e) => return Err(e),
    };
    Ok(doc
        .filter(|d| d.iam_user == current.iam_user)
        .and_then(|d| d.credentials.map(|c| c.username)))
}

/// The attempt tags that prove nothing any more (removed before this attempt records
/// itself): ended or expired attempts whose key is gone or is now the current key, ambiguous
/// windows older than ten minutes (IAM's eventual consistency is seconds), and past
/// [`ownership::MAX_ATTEMPT_TAGS`] the oldest that are not live.
fn pruned(
    marker: &Marker,
    keys: &[KeyInfo],
    deleted: &[String],
    current_key: Option<&str>,
    now: i64,
) -> Vec<String> {
    let listed = |k: &str| keys.iter().any(|x| x.id == k) && !deleted.iter().any(|d| d == k);
    marker.tags_to_drop(now, |a| {
        a.is_live(now)
            || a.key
                .as_deref()
                .is_some_and(|k| listed(k) && Some(k) != current_key)
            || (a.has_window() && a.start > now - 600)
    })
}

/// Phase 4: CreateAccessKey, recording its outcome in the marker: the key id, or for a
/// definite refusal that it made nothing, or for an unknown outcome that it may have.
async fn mint(
    ctx: &StepContext<'_>,
    arn: &str,
    user: &str,
    own: &mut Attempt,
) -> Result<(String, SecretAccessKey), CreateKeyError> {
    match ctx.clients.create_key(user).await {
        Ok((key_id, secret)) => {
            info!(iam_user = %user, key_id = %key_id, "created access key");
            // Record the key at once, in the key record and in the attempt, in one request:
            // a key that is not recorded is never stored, since nothing could prove it ours.
            own.key = Some(key_id.clone());
            let entry =
                record::Entry::new(arn, Some(&ctx.event.token), KeyState::Minted, own.start);
            let written = ctx
                .clients
                .tag_user_all(
                    user,
                    &[
                        (own.tag.clone(), own.tag_value()),
                        (record::tag_key(&key_id), entry.to_value()),
                    ],
                )
                .await;
            if let Err(error) = written {
                warn!(key_id = %key_id, "could not record the new key; deleting it");
                own.state = AttemptState::Ended;
                if ctx.clients.delete_key(user, &key_id).await.is_ok() {
                    save_own(ctx, user, own).await;
                }
                return Err(CreateKeyError {
                    error,
                    ambiguous: false,
                    limit_exceeded: false,
                });
            }
            Ok((key_id, secret))
        }
        Err(failed) => {
            own.state = if failed.ambiguous {
                AttemptState::Ambiguous
            } else {
                AttemptState::Ended
            };
            save_own(ctx, user, own).await;
            Err(failed)
        }
    }
}

/// What storing ended with (the step's answer either way).
enum Stored {
    /// This attempt's key is the pending version's.
    Mine(String),
    /// Another attempt stored first; this attempt's key was deleted.
    Theirs(String),
}

impl Stored {
    fn answer(self) -> String {
        match self {
            Self::Mine(a) | Self::Theirs(a) => a,
        }
    }
}

/// Phase 5: PutSecretValue of the new document as the token's AWSPENDING version.
async fn store(
    ctx: &StepContext<'_>,
    arn: &str,
    current: &SecretDocument,
    key_id: &str,
    secret: SecretAccessKey,
) -> Result<Stored, Error> {
    let token = ctx.event.token.as_str();
    let user = current.iam_user.as_str();
    // Every region's password (the primary's, and with `regions` each listed one's) is
    // derived here, while the secret key is in memory; it is dropped right after.
    let next = current.with_key(key_id, &secret);
    drop(secret);
    let secret_string = next.to_secret_string();
    let stored = ctx
        .clients
        .put_pending(
            arn,
            token,
            ctx.event.rotation_token.as_deref(),
            secret_string.clone(),
        )
        .await;
    match stored {
        Ok(true) => {}
        Ok(false) => {
            // Another attempt stored its credentials first: this attempt's key is named by
            // nothing, so it goes now; the stored version is checked like a re-run's.
            warn!(key_id = %key_id,
                  "another attempt already stored credentials for this version; deleting the key this attempt made");
            ctx.clients.delete_key(user, key_id).await?;
            ctx.clients
                .untag_user_all(user, &[record::tag_key(key_id)])
                .await?;
            return match already_stored(ctx, arn, current).await? {
                Some(done) => Ok(Stored::Theirs(format!(
                    "{done}; deleted this attempt's key {key_id}"
                ))),
                None => Err(Error::PendingNotReadable {
                    secret_id: arn.to_owned(),
                    token: token.to_owned(),
                    key_id: key_id.to_owned(),
                }),
            };
        }
        Err(e) => {
            // The error may be a lost response to a write that happened: read it back, three
            // times over about two seconds (Secrets Manager's reads lag its writes), since the
            // next attempt deletes this key as an orphan when this attempt records that it
            // did not store it. A value that is there is this attempt's (or, differing,
            // another attempt's: then this key goes now).
            let mut seen = None;
            for pause in [0u64, 700, 1300] {
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                if let Ok(Some(stored)) = ctx
                    .clients
                    .get_value(arn, Some(token), Stage::Pending)
                    .await
                {
                    seen = Some(stored);
                    break;
                }
            }
            match seen {
                Some(stored) if stored == secret_string => {
                    warn!(key_id = %key_id, "PutSecretValue reported an error but the value was stored");
                }
                Some(_) => {
                    warn!(key_id = %key_id,
                          "another attempt stored credentials for this version; deleting the key this attempt made");
                    ctx.clients.delete_key(user, key_id).await?;
                    ctx.clients
                        .untag_user_all(user, &[record::tag_key(key_id)])
                        .await?;
                    return Err(e);
                }
                None => {
                    warn!(key_id = %key_id,
                          "storing the pending version failed; the next attempt deletes the unused key");
                    return Err(e);
                }
            }
        }
    }
    info!(key_id = %key_id, stage = %Stage::Pending, "stored pending credentials");
    Ok(Stored::Mine(format!(
        "created key {key_id} and stored it as AWSPENDING"
    )))
}
