//! finishSecret: promote the pending version, then retire the old key.

use tracing::info;

use super::create::is_our_orphan;
use super::{
    StepContext, StepOutcome, TokenState, current_document, document_at, pending_document, preamble,
};
use crate::aws::{AWSCURRENT, AWSPENDING, AWSPREVIOUS, CREATING_TAG, CreatingMarker};
use crate::config::OldKeyAction;
use crate::error::Error;
use crate::secret::{SecretDocument, SecretError};

/// Moves AWSCURRENT to the token's version (removing it from the old current version, which
/// Secrets Manager then labels AWSPREVIOUS), then applies `OLD_KEY_ACTION` to the old key:
/// deactivate (default), delete, or keep.
///
/// Idempotent and crash safe: when the stage move already happened (the token is AWSCURRENT),
/// the action is applied to the AWSPREVIOUS version's key; a key already inactive or gone is
/// fine. The key that is now current is never touched.
///
/// # Errors
/// Preamble errors; [`Error::MalformedSecret`] when the pending version has no credentials;
/// Secrets Manager / IAM failures.
pub async fn finish_secret(ctx: &StepContext<'_>) -> Result<StepOutcome, Error> {
    let token = &ctx.event.token;
    let (new_doc, old_doc) = match preamble(ctx).await? {
        TokenState::AlreadyCurrent(state) => {
            // Re-run after the move: the old key is the one AWSPREVIOUS names.
            let arn = state.arn.clone();
            let new_doc = current_document(ctx, &arn).await?;
            let old_doc = match state.version_with(AWSPREVIOUS) {
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
                    stage: AWSPENDING,
                    source: SecretError::Missing {
                        field: "username",
                        hint: "createSecret has not stored the new credentials: run the rotation from createSecret",
                    },
                })?;
            // Read the old current by the version id the move will name, so both agree.
            let from = state.version_with(AWSCURRENT).map(str::to_owned);
            let old_doc = match &from {
                Some(v) => document_at(ctx, &arn, Some(v), AWSCURRENT).await?,
                None => None,
            };
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
    let bootstrap = old_doc.as_ref().is_none_or(SecretDocument::is_bootstrap);
    let removed = if bootstrap {
        finish_bootstrap_marker(ctx, &new_doc).await?
    } else {
        0
    };
    if removed > 0 {
        result.push_str(&format!(
            "; deleted {removed} unused key(s) a failed attempt left"
        ));
    }
    Ok(StepOutcome {
        step: "finishSecret",
        result,
    })
}

/// Ends a bootstrap's "creating a key" marker: a key an earlier attempt of this rotation made
/// that IAM's eventual consistency hid from the retry is deleted now (never the new key), so
/// the completed rotation leaves no key that no version names. A stale marker of another
/// rotation is removed too. Returns how many keys were deleted.
async fn finish_bootstrap_marker(
    ctx: &StepContext<'_>,
    new_doc: &SecretDocument,
) -> Result<usize, Error> {
    let user = new_doc.iam_user.as_str();
    let Some(marker) = ctx
        .clients
        .user_tags(user)
        .await?
        .get(CREATING_TAG)
        .and_then(|v| CreatingMarker::parse(v))
    else {
        return Ok(0);
    };
    let new_key = new_doc.credentials.as_ref().map(|c| c.username.as_str());
    let mut removed = 0;
    if marker.token == ctx.event.token {
        for key in ctx.clients.list_keys(user).await? {
            if Some(key.id.as_str()) != new_key
                && is_our_orphan(ctx, user, &key, Some(&marker)).await?
            {
                info!(key_id = %key.id, "deleting an unused key an earlier attempt of this rotation made");
                ctx.clients.delete_key(user, &key.id).await?;
                removed += 1;
            }
        }
    }
    ctx.clients.untag_user(user, CREATING_TAG).await?;
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
    match document_at(ctx, arn, Some(version), AWSPREVIOUS).await {
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
