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

use crate::aws::{AWSCURRENT, AWSPENDING, Clients, SecretState};
use crate::config::Config;
use crate::error::Error;
use crate::event::RotationEvent;
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
/// [`Error::NotPending`], or a Secrets Manager failure.
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
    if state.has_stage(token, AWSCURRENT) {
        return Ok(TokenState::AlreadyCurrent(state));
    }
    if !state.has_stage(token, AWSPENDING) {
        return Err(Error::NotPending {
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

/// The outcome of a step that found its version already AWSCURRENT.
#[must_use]
pub fn already_current(step: &'static str) -> StepOutcome {
    StepOutcome {
        step,
        result: "version already AWSCURRENT; nothing to do".into(),
    }
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
    stage: &'static str,
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
    document_at(ctx, arn, None, AWSCURRENT)
        .await?
        .ok_or_else(|| Error::MalformedSecret {
            secret_id: arn.to_owned(),
            stage: AWSCURRENT,
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
    document_at(ctx, arn, Some(&ctx.event.token), AWSPENDING).await
}

/// What a step did, for the invocation's response and the log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StepOutcome {
    /// The step.
    pub step: &'static str,
    /// One line saying what happened (key ids, never values).
    pub result: String,
}
