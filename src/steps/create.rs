//! createSecret: mint the new access key and store the pending credentials.

use tracing::{info, warn};

use super::{
    StepContext, StepOutcome, already_current, current_document, pending_document, pending_state,
};
use crate::aws::{AWSPENDING, CreatingMarker, KeyInfo};
use crate::error::Error;
use crate::password::derive_smtp_password;
use crate::secret::{SecretDocument, SmtpCredentials};

/// Creates a new access key for the secret's IAM user, derives its SMTP password and stores
/// the document with the new credentials as the token's AWSPENDING version.
///
/// Idempotent: if the pending version already holds valid credentials it does nothing. Crash
/// safe: before a new key is made, every key that is not the current one is deleted (the
/// previous rotation's old key, or a key a failed attempt made), so the user never has more
/// than two keys; the current key is never touched. CreateAccessKey runs without automatic
/// retries so a lost response cannot mint a second key.
///
/// A bootstrap (no current key) deletes only a key it can prove a failed attempt of this
/// rotation made: just before CreateAccessKey it tags the user with the token and the time
/// ([`crate::aws::CREATING_TAG`]); a never-used key created within a minute of one of its
/// attempts is ours. Any other key belongs to someone: the step refuses and names it.
/// finishSecret removes the marker.
///
/// # Errors
/// Preamble errors; [`Error::MalformedSecret`]; [`Error::NoSuchUser`]; [`Error::WrongUser`] or
/// [`Error::CurrentKeyMissing`] when the current key is not the user's; [`Error::ForeignKey`]
/// when a bootstrap finds a key it did not create; IAM / Secrets Manager failures.
pub async fn create_secret(ctx: &StepContext<'_>) -> Result<StepOutcome, Error> {
    let token = &ctx.event.token;
    let Some(state) = pending_state(ctx).await? else {
        return Ok(already_current("createSecret"));
    };
    let arn = state.arn.as_str();
    let current = current_document(ctx, arn).await?;

    if let Some(pending) = pending_document(ctx, arn).await? {
        return match pending.credentials {
            Some(c) if pending.iam_user == current.iam_user => {
                info!(key_id = %c.username,
                      "pending version already holds credentials; nothing to do");
                Ok(outcome(format!(
                    "pending version already holds key {}",
                    c.username
                )))
            }
            _ => Err(Error::PendingMismatch {
                secret_id: arn.to_owned(),
                token: token.clone(),
            }),
        };
    }

    let user = current.iam_user.as_str();
    let keys = ctx.clients.list_keys(user).await?;
    let stale = keys_to_delete(ctx, &current, &keys).await?;
    for key in &stale {
        info!(iam_user = %user, key_id = %key,
              "deleting access key named by no version (left by an earlier rotation)");
        ctx.clients.delete_key(user, key).await?;
    }

    if current.is_bootstrap() {
        let marker = CreatingMarker::with_attempt(
            ctx.clients.creating_marker(user).await?,
            token,
            now_epoch(),
        );
        ctx.clients.set_creating_marker(user, &marker).await?;
    }
    let (key_id, secret) = ctx.clients.create_key(user).await?;
    info!(iam_user = %user, key_id = %key_id,
          "created access key");
    let password = derive_smtp_password(&secret, &current.region);
    drop(secret);
    let next = current.with_credentials(SmtpCredentials {
        username: key_id.clone(),
        password,
    });
    let secret_string = next.to_secret_string();
    if let Err(e) = ctx
        .clients
        .put_pending(
            arn,
            token,
            ctx.event.rotation_token.as_deref(),
            secret_string.clone(),
        )
        .await
    {
        // The error may be a lost response to a write that happened: read it back. If it is
        // not there (or the read lags), leave the key: deleting it could leave a stored value
        // that names a deleted key, while the next attempt deletes an unstored key anyway.
        match ctx.clients.get_value(arn, Some(token), AWSPENDING).await {
            Ok(Some(stored)) if stored == secret_string => {
                warn!(key_id = %key_id, "PutSecretValue reported an error but the value was stored");
            }
            _ => {
                warn!(key_id = %key_id,
                      "storing the pending version failed; the next attempt deletes the unused key");
                return Err(e);
            }
        }
    }
    info!(key_id = %key_id,
          stage = AWSPENDING, "stored pending credentials");
    Ok(outcome(format!(
        "created key {key_id} and stored it as AWSPENDING"
    )))
}

fn outcome(result: String) -> StepOutcome {
    StepOutcome {
        step: "createSecret",
        result,
    }
}

/// Decides which of the user's keys go before a new one is created, refusing (and deleting
/// nothing) when a key is not ours to delete.
async fn keys_to_delete(
    ctx: &StepContext<'_>,
    current: &SecretDocument,
    keys: &[KeyInfo],
) -> Result<Vec<String>, Error> {
    let user = current.iam_user.as_str();
    match &current.credentials {
        Some(creds) => {
            let current_id = creds.username.as_str();
            if !keys.iter().any(|k| k.id == current_id) {
                let owner = ctx
                    .clients
                    .key_usage(current_id, user)
                    .await?
                    .and_then(|u| u.owner);
                return Err(match owner {
                    Some(owner) if owner != user => Error::WrongUser {
                        key_id: current_id.to_owned(),
                        owner,
                        iam_user: user.to_owned(),
                    },
                    _ => Error::CurrentKeyMissing {
                        key_id: current_id.to_owned(),
                        iam_user: user.to_owned(),
                    },
                });
            }
            Ok(keys
                .iter()
                .filter(|k| k.id != current_id)
                .map(|k| k.id.clone())
                .collect())
        }
        None => {
            let marker = ctx.clients.creating_marker(user).await?;
            let mut orphans = Vec::new();
            for k in keys {
                if is_our_orphan(ctx, user, k, marker.as_ref()).await? {
                    orphans.push(k.id.clone());
                } else {
                    return Err(Error::ForeignKey {
                        iam_user: user.to_owned(),
                        key_id: k.id.clone(),
                    });
                }
            }
            Ok(orphans)
        }
    }
}

fn now_epoch() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A key a failed attempt of *this* rotation made: created within one of the marker's
/// windows and never used.
///
/// # Errors
/// IAM failures.
pub async fn is_our_orphan(
    ctx: &StepContext<'_>,
    user: &str,
    key: &KeyInfo,
    marker: Option<&CreatingMarker>,
) -> Result<bool, Error> {
    let covered = match (marker, key.created) {
        (Some(m), Some(created)) => m.covers(&ctx.event.token, created.secs()),
        _ => false,
    };
    if !covered {
        return Ok(false);
    }
    Ok(ctx
        .clients
        .key_usage(&key.id, user)
        .await?
        .is_some_and(|u| !u.ever_used))
}
