//! createSecret: mint the new access key and store the pending credentials.

use tracing::{info, warn};

use super::{StepContext, StepOutcome, TokenState, current_document, pending_document, preamble};
use crate::aws::{AWSPENDING, KeyInfo};
use crate::error::Error;
use crate::password::derive_smtp_password;
use crate::secret::{SecretDocument, SmtpCredentials};

/// Creates a new access key for the secret's IAM user, derives its SMTP password and stores
/// the document with the new credentials as the token's AWSPENDING version.
///
/// Idempotent: if the pending version already holds valid credentials it does nothing. Crash
/// safe: keys left by a failed attempt (created after this rotation began and named by no
/// version) are deleted before a new one is made, so the user never has more than two keys;
/// the current key is never touched. CreateAccessKey runs without automatic retries so a lost
/// response cannot mint a second key; a key whose PutSecretValue failed is deleted at once, and
/// if even that fails the next attempt deletes it.
///
/// # Errors
/// Preamble errors; [`Error::MalformedSecret`]; [`Error::NoSuchUser`]; [`Error::WrongUser`] or
/// [`Error::CurrentKeyMissing`] when the current key is not the user's; [`Error::ForeignKey`]
/// when a bootstrap finds a key it did not create; IAM / Secrets Manager failures.
pub async fn create_secret(ctx: &StepContext<'_>) -> Result<StepOutcome, Error> {
    let token = &ctx.event.token;
    let state = match preamble(ctx).await? {
        TokenState::AlreadyCurrent(_) => {
            info!("version is already AWSCURRENT; nothing to do");
            return Ok(outcome("version already AWSCURRENT; nothing to do".into()));
        }
        TokenState::Pending(state) => state,
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
    let stale = keys_to_delete(ctx, arn, &current, &keys).await?;
    for key in &stale {
        info!(iam_user = %user, key_id = %key,
              "deleting access key named by no version (left by an earlier rotation)");
        ctx.clients.delete_key(user, key).await?;
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
        // The error may be a lost response to a write that happened: look before deleting
        // anything, or the stored credentials would name a deleted key.
        match ctx.clients.get_value(arn, Some(token), AWSPENDING).await {
            Ok(Some(stored)) if stored == secret_string => {
                warn!(key_id = %key_id,
                      "PutSecretValue reported an error but the value was stored");
            }
            Ok(_) => {
                // Not stored: the key is useless without its password. Remove it now rather
                // than leave it to the next attempt (which would delete it anyway).
                warn!(key_id = %key_id,
                      "storing the pending version failed; deleting the new key");
                if let Err(cleanup) = ctx.clients.delete_key(user, &key_id).await {
                    warn!(key_id = %key_id, error = %cleanup,
                          "could not delete the new key; the next attempt will");
                }
                return Err(e);
            }
            Err(_) => return Err(e),
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
    arn: &str,
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
            // Bootstrap: only keys this rotation made in a failed attempt are ours to delete:
            // created after the rotation began and never used. IAM dates have one-second
            // resolution, so "after" is judged to the second; the never-used condition keeps a
            // key that someone made in that same second and already uses out of reach.
            let began = ctx
                .clients
                .version_created(arn, &ctx.event.token)
                .await?
                .map(|d| d.secs());
            let mut orphans = Vec::new();
            for k in keys {
                let after =
                    matches!((k.created.map(|d| d.secs()), began), (Some(c), Some(b)) if c >= b);
                let unused = after
                    && ctx
                        .clients
                        .key_usage(&k.id, user)
                        .await?
                        .is_some_and(|u| !u.ever_used);
                if !unused {
                    return Err(Error::ForeignKey {
                        iam_user: user.to_owned(),
                        key_id: k.id.clone(),
                    });
                }
                orphans.push(k.id.clone());
            }
            Ok(orphans)
        }
    }
}
