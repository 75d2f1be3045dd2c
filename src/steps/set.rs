//! setSecret: confirm the pending key exists in IAM and is Active.

use tracing::info;

use super::{
    ALREADY_CURRENT, StepContext, current_document, pending_document, pending_state,
    require_pending_key,
};
use crate::aws::Stage;
use crate::error::Error;
use crate::secret::SecretError;

/// IAM already holds the key createSecret made (there is no separate "set" for an access
/// key), so this step only confirms it is listed for the user and Active.
///
/// Idempotent: it changes nothing, except that a pending version whose key is confirmed gone
/// loses its AWSPENDING label (see [`require_pending_key`]).
///
/// # Errors
/// Preamble errors; [`Error::MalformedSecret`] when the pending version has no credentials;
/// [`Error::PendingMismatch`]; [`Error::PendingKeyNotActive`]; [`Error::PendingKeyGone`];
/// IAM failures.
pub async fn set_secret(ctx: &StepContext<'_>) -> Result<String, Error> {
    let Some(state) = pending_state(ctx).await? else {
        return Ok(ALREADY_CURRENT.into());
    };
    let arn = state.arn.as_str();
    let Some(pending) = pending_document(ctx, arn).await? else {
        return Err(Error::MalformedSecret {
            secret_id: arn.to_owned(),
            stage: Stage::Pending,
            source: SecretError::Missing {
                field: "username",
                hint: "createSecret has not stored the new credentials yet: run createSecret first",
            },
        });
    };
    let current = current_document(ctx, arn).await?;
    super::pending_must_match(ctx, arn, &pending, &current).await?;
    let key_id = require_pending_key(ctx, arn, &pending).await?;
    info!(key_id = %key_id, "pending key is listed and Active");
    Ok(format!("key {key_id} is Active"))
}
