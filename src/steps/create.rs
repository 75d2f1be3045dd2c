//! createSecret: mint the new access key and store the pending credentials.

use tracing::{info, warn};

use super::{
    StepContext, StepOutcome, already_current, current_document, pending_document, pending_state,
};
use crate::aws::{AWSPENDING, CREATING_TAG, CreatingMarker, KeyInfo, OWNER_TAG, owner_tag_value};
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
    let tags = ctx.clients.user_tags(user).await?;
    let owner = owner_tag_value(arn);
    if let Some(other) = tags.get(OWNER_TAG).filter(|v| **v != owner) {
        return Err(Error::UserNotDedicated {
            iam_user: user.to_owned(),
            secret_id: arn.to_owned(),
            owner: other.clone(),
        });
    }
    let mut marker = tags
        .get(CREATING_TAG)
        .and_then(|v| CreatingMarker::parse(v));
    let keys = ctx.clients.list_keys(user).await?;
    // Every refusal comes before the first change.
    let stale = keys_to_delete(ctx, &current, &keys, marker.as_ref()).await?;
    if !tags.contains_key(OWNER_TAG) {
        ctx.clients.tag_user(user, OWNER_TAG, &owner).await?;
    }
    for key in &stale {
        info!(iam_user = %user, key_id = %key,
              "deleting access key named by no version (left by an earlier rotation)");
        ctx.clients.delete_key(user, key).await?;
    }

    if current.is_bootstrap() {
        let m = CreatingMarker::with_attempt(marker.take(), token, now_epoch());
        ctx.clients
            .tag_user(user, CREATING_TAG, &m.to_value())
            .await?;
        marker = Some(m);
    }
    let (key_id, secret) = ctx.clients.create_key(user).await?;
    if let Some(m) = marker.take() {
        // Name the key at once, so that only a lost response leaves the time window to decide.
        if let Err(e) = ctx
            .clients
            .tag_user(user, CREATING_TAG, &m.with_key(&key_id).to_value())
            .await
        {
            warn!(key_id = %key_id, error = %e, "could not record the new key in the marker tag");
        }
    }
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
    marker: Option<&CreatingMarker>,
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
            let mut orphans = Vec::new();
            for k in keys {
                if is_our_orphan(ctx, user, k, marker).await? {
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

/// A key a failed attempt of *this* rotation made: one the marker names (CreateAccessKey
/// returned it to us), or, when that response was lost, a never-used key created within one
/// of the marker's attempt windows.
///
/// # Errors
/// IAM failures; a key in the window that IAM cannot describe yet is an error to retry rather
/// than a verdict.
pub async fn is_our_orphan(
    ctx: &StepContext<'_>,
    user: &str,
    key: &KeyInfo,
    marker: Option<&CreatingMarker>,
) -> Result<bool, Error> {
    let token = ctx.event.token.as_str();
    let Some(m) = marker else {
        return Ok(false);
    };
    if m.names(token, &key.id) {
        return Ok(true);
    }
    let Some(created) = key.created else {
        return Ok(false);
    };
    if !m.covers(token, created.secs()) {
        return Ok(false);
    }
    match ctx.clients.key_usage(&key.id, user).await? {
        Some(u) => Ok(!u.ever_used),
        None => Err(Error::Iam {
            operation: "GetAccessKeyLastUsed",
            iam_user: user.to_owned(),
            detail: format!("IAM cannot describe key {} yet; retry the rotation", key.id),
        }),
    }
}
