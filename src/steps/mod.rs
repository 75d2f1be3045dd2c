//! The four rotation steps, one module each, and the preamble every step runs first.
//!
//! The preamble mirrors AWS's rotation template: the secret must have rotation enabled, the
//! token must be one of its versions, a token already AWSCURRENT means there is nothing to do
//! (finishSecret still completes the old key's retirement), and a token that is neither
//! AWSCURRENT nor AWSPENDING is an error.

pub mod create;
pub mod finish;
pub mod set;
pub mod test;

use std::time::Instant;

use crate::aws::{Clients, SecretState, Stage};
use crate::config::Config;
use crate::error::Error;
use crate::event::{RotationEvent, Step};
use crate::secret::SecretDocument;

/// Everything a step needs.
#[derive(Debug)]
pub struct StepContext<'a> {
    /// AWS clients.
    pub clients: &'a Clients,
    /// Function configuration.
    pub config: &'a Config,
    /// The event.
    pub event: &'a RotationEvent,
    /// When the invocation must have answered (from the Lambda context), if known.
    pub deadline: Option<Instant>,
    /// What the step observed for the invocation's metrics (testSecret's AUTH attempts and
    /// the new key's propagation time), recorded even when the step fails.
    pub observed: Observed,
}

/// Numbers a step observed, for the invocation's metric line.
#[derive(Debug, Default)]
pub struct Observed {
    /// AUTH attempts made (testSecret).
    pub auth_attempts: std::cell::Cell<Option<u32>>,
    /// Seconds from the tested key's creation to its first accepted login (testSecret).
    pub propagation_seconds: std::cell::Cell<Option<f64>>,
}

/// Where the token stands, as the preamble found it.
#[derive(Debug, Clone)]
pub enum TokenState {
    /// The token version is AWSCURRENT: the rotation already completed.
    AlreadyCurrent(SecretState),
    /// The token version is AWSPENDING: the rotation is under way.
    Pending(SecretState),
}

/// Checks rotation is enabled and where the token stands.
///
/// # Errors
/// [`Error::SecretNotFound`], [`Error::RotationNotEnabled`], [`Error::VersionNotFound`],
/// [`Error::VersionNotPending`], or a Secrets Manager failure.
pub async fn preamble(ctx: &StepContext<'_>) -> Result<TokenState, Error> {
    let secret_id = &ctx.event.secret_id;
    let token = &ctx.event.token;
    let state = ctx.clients.describe(secret_id).await?;
    if !state.rotation_enabled {
        return Err(Error::RotationNotEnabled {
            secret_id: state.arn,
        });
    }
    if !state.stages.contains_key(token) {
        return Err(Error::VersionNotFound {
            secret_id: state.arn,
            token: token.clone(),
        });
    }
    if state.has_stage(token, Stage::Current) {
        return Ok(TokenState::AlreadyCurrent(state));
    }
    if !state.has_stage(token, Stage::Pending) {
        return Err(Error::VersionNotPending {
            secret_id: state.arn,
            token: token.clone(),
        });
    }
    Ok(TokenState::Pending(state))
}

/// The preamble for the steps that have nothing to do once the token is AWSCURRENT:
/// `Some(state)` while the rotation is pending, `None` (logged) when it already completed.
///
/// # Errors
/// As [`preamble`].
pub async fn pending_state(ctx: &StepContext<'_>) -> Result<Option<SecretState>, Error> {
    match preamble(ctx).await? {
        TokenState::AlreadyCurrent(_) => {
            tracing::info!("version is already AWSCURRENT; nothing to do");
            Ok(None)
        }
        TokenState::Pending(state) => Ok(Some(state)),
    }
}

/// What a step answers when its version is already AWSCURRENT.
pub const ALREADY_CURRENT: &str = "version already AWSCURRENT; nothing to do";

/// Refuses a document whose SMTP destinations are not all allowed: credentials go only to SES
/// endpoints or hosts the operator allowed (`SMTP_ALLOWED_HOSTS`). Every endpoint counts: the
/// primary (`host`) and each of `regions`.
///
/// # Errors
/// [`Error::HostNotAllowed`] naming the first endpoint refused, with the field (`host` or
/// `regions`).
pub fn check_destination(
    ctx: &StepContext<'_>,
    arn: &str,
    doc: &SecretDocument,
    stage: Stage,
) -> Result<(), Error> {
    for (i, endpoint) in doc.endpoints().iter().enumerate() {
        if !ctx.config.allowed_hosts.allows(&endpoint.host) {
            return Err(Error::HostNotAllowed {
                secret_id: arn.to_owned(),
                stage,
                field: if i == 0 { "host" } else { "regions" },
                host: endpoint.host.clone(),
            });
        }
    }
    Ok(())
}

/// Refuses a pending document that does not carry exactly what AWSCURRENT says (the same
/// user and destination, the same operator fields) or has no credentials: a version written
/// behind the rotation's back never gets credentials tested or promoted, and one that an
/// edit of AWSCURRENT overtook would undo the edit. Such a version can never be promoted, and
/// a version stuck in AWSPENDING blocks every later rotation, so it is cleared: the key this
/// rotation minted for it is deleted (only when the record proves it, and no version needs
/// it) and AWSPENDING is removed, so the next rotation starts fresh.
///
/// # Errors
/// [`Error::PendingMismatch`] (after clearing); failures of the clearing itself.
pub async fn pending_must_match(
    ctx: &StepContext<'_>,
    arn: &str,
    pending: &SecretDocument,
    current: &SecretDocument,
) -> Result<(), Error> {
    let mut fields = pending.differing_fields(current);
    if pending.credentials.is_none() {
        fields.insert(0, "credentials");
    }
    if fields.is_empty() {
        return Ok(());
    }
    tracing::warn!(fields = %fields.join(", "),
        "the pending version differs from AWSCURRENT and can never be promoted; removing AWSPENDING so the next rotation starts fresh");
    // AWSPENDING goes first: a version that still held it must never name a deleted key.
    ctx.clients.remove_pending(arn, &ctx.event.token).await?;
    let mut cleanup = String::new();
    let current_key = current.credentials.as_ref().map(|c| c.username.as_str());
    if let Some(key) = pending.credentials.as_ref().map(|c| c.username.as_str())
        && Some(key) != current_key
        && pending.iam_user == current.iam_user
        && delete_minted_key(ctx, arn, &current.iam_user, key).await?
    {
        cleanup = format!(" and its key {key}, minted by this rotation, was deleted");
    }
    Err(Error::PendingMismatch {
        secret_id: arn.to_owned(),
        token: ctx.event.token.clone(),
        fields: fields.join(", "),
        cleanup,
    })
}

/// Deletes `key` (and its record) when the record proves this rotation minted it for this
/// secret, on a user this secret owns, and no attempt that may still be storing it is live.
/// Returns whether it did. Anything unproven is left for the next rotation to judge.
async fn delete_minted_key(
    ctx: &StepContext<'_>,
    arn: &str,
    user: &str,
    key: &str,
) -> Result<bool, Error> {
    let Ok(rec) = user_record(ctx, arn, user).await else {
        return Ok(false);
    };
    let minted = rec
        .records
        .get(key)
        .is_some_and(|e| e.minted_by(arn, &ctx.event.token));
    let live = rec
        .marker
        .attempts
        .iter()
        .any(|a| a.key.as_deref() == Some(key) && a.is_live(now_epoch()));
    if rec.claim || !minted || live {
        return Ok(false);
    }
    ctx.clients.delete_key(user, key).await?;
    ctx.clients
        .untag_user_all(user, &[crate::record::tag_key(key)])
        .await?;
    Ok(true)
}

/// What the user's tags say: whether it is this secret's, the key record and the marker.
#[derive(Debug)]
pub struct UserRecord {
    /// The key record.
    pub records: crate::record::Records,
    /// createSecret's attempts.
    pub marker: crate::ownership::Marker,
    /// The user has no owner tag yet and this (single-scope) deployment may claim it.
    pub claim: bool,
}

/// Reads the user's tags and checks the user is this secret's: its owner tag names the
/// secret, or (single scope only) it has none yet and may be claimed. Every record must be
/// readable.
///
/// # Errors
/// [`Error::UserNotDedicated`], [`Error::UserNotAssigned`] (shared scope, no owner tag),
/// [`Error::KeyRecordUnreadable`], IAM failures.
pub async fn user_record(
    ctx: &StepContext<'_>,
    arn: &str,
    user: &str,
) -> Result<UserRecord, Error> {
    read_user_record(ctx.clients, ctx.config, arn, user).await
}

/// [`user_record`] outside a rotation step (the scheduled maintenance).
///
/// # Errors
/// As [`user_record`].
pub async fn read_user_record(
    clients: &Clients,
    config: &Config,
    arn: &str,
    user: &str,
) -> Result<UserRecord, Error> {
    use crate::ownership::{OWNER_TAG, owner_tag_value};
    let tags = clients.user_tags(user).await?;
    let claim = match tags.get(OWNER_TAG) {
        Some(v) if *v == owner_tag_value(arn) => false,
        Some(other) => {
            return Err(Error::UserNotDedicated {
                iam_user: user.to_owned(),
                secret_id: arn.to_owned(),
                owner: other.clone(),
            });
        }
        None if config.scope == crate::config::RotationScope::Shared => {
            return Err(Error::UserNotAssigned {
                iam_user: user.to_owned(),
                secret_id: arn.to_owned(),
            });
        }
        None => true,
    };
    let records = crate::record::Records::from_tags(user, &tags)?;
    let marker = crate::ownership::marker_of(user, &tags)?;
    Ok(UserRecord {
        records,
        marker,
        claim,
    })
}

/// Reads and parses one version's document (`version` by id, or whichever holds `stage`);
/// `None` while the version has no value.
///
/// # Errors
/// [`Error::MalformedSecret`] naming the stage, or a Secrets Manager failure.
pub async fn document_at(
    ctx: &StepContext<'_>,
    arn: &str,
    version: Option<&str>,
    stage: Stage,
) -> Result<Option<SecretDocument>, Error> {
    let Some(text) = ctx.clients.get_value(arn, version, stage).await? else {
        return Ok(None);
    };
    SecretDocument::parse(&text)
        .map(Some)
        .map_err(|source| Error::MalformedSecret {
            secret_id: arn.to_owned(),
            stage,
            source,
        })
}

/// Reads and parses the AWSCURRENT document.
///
/// # Errors
/// [`Error::MalformedSecret`] or a Secrets Manager failure; a secret without a current value
/// is malformed too.
pub async fn current_document(ctx: &StepContext<'_>, arn: &str) -> Result<SecretDocument, Error> {
    document_at(ctx, arn, None, Stage::Current)
        .await?
        .ok_or_else(|| Error::MalformedSecret {
            secret_id: arn.to_owned(),
            stage: Stage::Current,
            source: crate::secret::SecretError::NoSecretString,
        })
}

/// Reads and parses the AWSCURRENT document by the version id DescribeSecret named (a read
/// by stage alone may lag a stage move and return the version before it).
///
/// # Errors
/// As [`current_document`].
pub async fn current_document_of(
    ctx: &StepContext<'_>,
    state: &SecretState,
) -> Result<SecretDocument, Error> {
    document_at(
        ctx,
        &state.arn,
        state.version_with(Stage::Current),
        Stage::Current,
    )
    .await?
    .ok_or_else(|| Error::MalformedSecret {
        secret_id: state.arn.clone(),
        stage: Stage::Current,
        source: crate::secret::SecretError::NoSecretString,
    })
}

/// Reads and parses the pending document for the token, `None` while it has no value.
///
/// # Errors
/// [`Error::MalformedSecret`] or a Secrets Manager failure.
pub async fn pending_document(
    ctx: &StepContext<'_>,
    arn: &str,
) -> Result<Option<SecretDocument>, Error> {
    document_at(ctx, arn, Some(&ctx.event.token), Stage::Pending).await
}

/// What a step did, for the invocation's response and the log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StepOutcome {
    /// The step (serialised as Secrets Manager names it, e.g. `createSecret`).
    pub step: Step,
    /// One line saying what happened (key ids, never values).
    pub result: String,
}

/// Seconds since the Unix epoch, by this machine's clock.
#[must_use]
pub fn now_epoch() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Milliseconds since the Unix epoch, by this machine's clock.
#[must_use]
pub fn now_epoch_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The invocation's deadline in epoch seconds (the lease an attempt records); without a
/// known deadline, Lambda's longest timeout (15 minutes) from now.
#[must_use]
pub fn deadline_epoch(ctx: &StepContext<'_>) -> i64 {
    let max = crate::ownership::MAX_LEASE_SECS;
    let left = ctx.deadline.map_or(max, |d| {
        i64::try_from(
            d.saturating_duration_since(Instant::now())
                .as_secs()
                .saturating_add(1),
        )
        .unwrap_or(max)
        .min(max)
    });
    now_epoch().saturating_add(left)
}

use crate::ownership::LISTING_LAG_SECS;

/// Checks that the key a pending document names exists and is Active, and returns its id.
/// A key confirmed gone (not listed, and GetAccessKeyLastUsed answers NoSuchEntity, or the
/// marker shows it was made long enough ago for IAM to list it) can never complete the
/// rotation and would block every later one: AWSPENDING is removed from the version.
///
/// # Errors
/// [`Error::MalformedSecret`] (no credentials); [`Error::PendingKeyNotActive`] (inactive);
/// [`Error::PendingKeyGone`]; [`Error::KeyNotYetVisible`] (retryable); IAM failures.
pub async fn require_pending_key(
    ctx: &StepContext<'_>,
    arn: &str,
    pending: &SecretDocument,
) -> Result<String, Error> {
    let Some(creds) = pending.credentials.as_ref() else {
        return Err(Error::MalformedSecret {
            secret_id: arn.to_owned(),
            stage: Stage::Pending,
            source: crate::secret::SecretError::Missing {
                field: "username",
                hint: "createSecret has not stored the new credentials yet: run the rotation from createSecret",
            },
        });
    };
    let user = pending.iam_user.as_str();
    let key_id = creds.username.as_str();
    let keys = ctx.clients.list_keys(user).await?;
    if let Some(k) = keys.iter().find(|k| k.id == key_id) {
        if k.active {
            return Ok(key_id.to_owned());
        }
        // It can never pass testSecret nor be promoted, and a version stuck in AWSPENDING
        // blocks every later rotation: cleared, like a version whose key is gone.
        tracing::warn!(key_id = %key_id, "the pending version's key was deactivated; removing AWSPENDING so the next rotation starts fresh");
        ctx.clients.remove_pending(arn, &ctx.event.token).await?;
        return Err(Error::PendingKeyNotActive {
            secret_id: arn.to_owned(),
            token: ctx.event.token.clone(),
            key_id: key_id.to_owned(),
            iam_user: user.to_owned(),
            state: "inactive",
        });
    }
    let gone = match ctx.clients.key_usage(key_id, user).await? {
        crate::aws::KeyLookup::NoSuchKey => true,
        crate::aws::KeyLookup::Found(_) => false,
        crate::aws::KeyLookup::Denied => {
            let tags = ctx.clients.user_tags(user).await?;
            let marker = crate::ownership::marker_of(user, &tags)?;
            let records = crate::record::Records::from_tags(user, &tags)?;
            let old = now_epoch() - LISTING_LAG_SECS;
            marker
                .attempts
                .iter()
                .any(|a| a.key.as_deref() == Some(key_id) && a.start < old)
                || records
                    .get(key_id)
                    .is_some_and(|e| e.minted_by(arn, &ctx.event.token) && e.at() < old)
        }
    };
    if !gone {
        return Err(Error::KeyNotYetVisible {
            key_id: key_id.to_owned(),
            iam_user: user.to_owned(),
        });
    }
    tracing::warn!(key_id = %key_id, "the pending version's key is gone; removing AWSPENDING so the next rotation starts fresh");
    ctx.clients.remove_pending(arn, &ctx.event.token).await?;
    // Its record goes too (best effort: a record of a key that is not listed is removed by
    // the next createSecret anyway).
    let _ = ctx
        .clients
        .untag_user_all(user, &[crate::record::tag_key(key_id)])
        .await;
    Err(Error::PendingKeyGone {
        secret_id: arn.to_owned(),
        token: ctx.event.token.clone(),
        key_id: key_id.to_owned(),
        iam_user: user.to_owned(),
    })
}
