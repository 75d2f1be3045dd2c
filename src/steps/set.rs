//! setSecret: confirm the pending key exists in IAM and is Active.

use tracing::info;

use super::{StepContext, StepOutcome, already_current, pending_document, pending_state};
use crate::aws::AWSPENDING;
use crate::error::Error;
use crate::secret::SecretError;

/// IAM already holds the key createSecret made (there is no separate "set" for an access
/// key), so this step only confirms it is listed for the user and Active.
///
/// Idempotent: it changes nothing.
///
/// # Errors
/// Preamble errors; [`Error::MalformedSecret`] when the pending version has no credentials;
/// [`Error::PendingKeyNotActive`] when the key is missing or inactive; IAM failures.
pub async fn set_secret(ctx: &StepContext<'_>) -> Result<StepOutcome, Error> {
    let Some(state) = pending_state(ctx).await? else {
        return Ok(already_current("setSecret"));
    };
    let arn = state.arn.as_str();
    let pending = pending_document(ctx, arn).await?;
    let Some((doc, creds)) = pending.and_then(|d| d.credentials.clone().map(|c| (d, c))) else {
        return Err(Error::MalformedSecret {
            secret_id: arn.to_owned(),
            stage: AWSPENDING,
            source: SecretError::Missing {
                field: "username",
                hint: "createSecret has not stored the new credentials yet: run createSecret first",
            },
        });
    };
    let keys = ctx.clients.list_keys(&doc.iam_user).await?;
    match keys.iter().find(|k| k.id == creds.username) {
        Some(k) if k.active => {
            info!(key_id = %creds.username,
                  "pending key is listed and Active");
            Ok(outcome(format!("key {} is Active", creds.username)))
        }
        found => Err(Error::PendingKeyNotActive {
            key_id: creds.username.clone(),
            iam_user: doc.iam_user.clone(),
            state: if found.is_some() {
                "inactive"
            } else {
                "missing"
            },
        }),
    }
}

fn outcome(result: String) -> StepOutcome {
    StepOutcome {
        step: "setSecret",
        result,
    }
}
