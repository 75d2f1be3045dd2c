//! testSecret: prove with a real SMTP AUTH that SES accepts the pending credentials.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::{
    ALREADY_CURRENT, StepContext, check_destination, current_document, pending_document,
    pending_must_match, pending_state,
};
use crate::aws::Stage;
use crate::error::{Error, RegionFailure};
use crate::ownership::marker_of;
use crate::password::Region;
use crate::secret::{SecretDocument, SecretError, SmtpCredentials};
use crate::smtp::{LoginOutcome, SmtpTarget, try_login_and_send};

/// Time kept back from the invocation deadline so the step can still report its error.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(3);
/// Pause between attempts (lengthened by up to 25 % of jitter, never shortened). A new key is
/// accepted within seconds to tens of seconds, at a moment no API tells: one AUTH a second
/// wastes at most about a second after the key starts working (a doubling backoff capped at
/// 8 s wasted up to 8 s), and never exceeds one attempt per second.
const BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait for the key listing that measures propagation (bookkeeping after a login
/// that already passed).
const PROPAGATION_LOOKUP: Duration = Duration::from_secs(3);
/// Attempts on an unreachable endpoint (a second one rides out a blip, more only waste time).
const UNREACHABLE_ATTEMPTS: u32 = 2;

/// Logs in at the secret's SMTP endpoint with the pending credentials (TLS always, certificate
/// always verified) and, when `TEST_SEND_FROM`/`TEST_SEND_TO` are set, sends a test message.
///
/// A brand-new key is not accepted everywhere at once, so 535 and 454 answers are retried about
/// once a second ([`BACKOFF`]) until `SMTP_TEST_TIMEOUT_SECONDS` or the invocation
/// deadline minus [`DEADLINE_MARGIN`], whichever comes first. When the pending version has no
/// value (Secrets Manager's `RotateImmediately=false` test) the AWSCURRENT credentials are
/// tested instead.
///
/// With `regions`, every region's endpoint is tested with that region's password, at once,
/// within the one budget (see [`login_everywhere`]). Every endpoint must pass the host
/// allow-list before any connection is made.
///
/// Idempotent: it changes nothing.
///
/// # Errors
/// Preamble errors; [`Error::HostNotAllowed`]; [`Error::SmtpAuthRejected`] (with attempts,
/// time waited and likely causes); [`Error::SmtpUnreachable`]; [`Error::SmtpSendNotAuthorized`];
/// [`Error::SmtpSendFailed`]; with `regions`, [`Error::SmtpRegionsFailed`] wrapping those per
/// region.
pub async fn test_secret(ctx: &StepContext<'_>) -> Result<String, Error> {
    let Some(state) = pending_state(ctx).await? else {
        return Ok(ALREADY_CURRENT.into());
    };
    let arn = state.arn.as_str();
    let current = current_document(ctx, arn).await?;
    let (doc, which) = match pending_document(ctx, arn).await? {
        Some(pending) => {
            pending_must_match(ctx, arn, &pending, &current).await?;
            (pending, Stage::Pending)
        }
        None => {
            // Only when no attempt of this rotation made a key is an empty pending version
            // the RotateImmediately=false test; otherwise the value is lagging: read it once
            // more, then ask for a retry rather than test (and so let finishSecret promote)
            // something else than what was stored.
            let tags = ctx.clients.user_tags(&current.iam_user).await?;
            let marker = marker_of(&current.iam_user, &tags)?;
            let records = crate::record::Records::from_tags(&current.iam_user, &tags)?;
            let recorded = records
                .keys
                .iter()
                .find(|(_, e)| e.minted_by(arn, &ctx.event.token))
                .map(|(k, _)| k.clone());
            let attempt = marker
                .made_key_for(&ctx.event.token)
                .map(|a| a.key.clone())
                .or(recorded.clone().map(Some));
            if let Some(attempt_key) = attempt {
                match pending_document(ctx, arn).await? {
                    Some(pending) => {
                        pending_must_match(ctx, arn, &pending, &current).await?;
                        (pending, Stage::Pending)
                    }
                    None => {
                        return Err(Error::PendingNotReadable {
                            secret_id: arn.to_owned(),
                            token: ctx.event.token.clone(),
                            key_id: attempt_key
                                .or(recorded)
                                .unwrap_or_else(|| "(id not yet recorded)".into()),
                        });
                    }
                }
            } else {
                info!(
                    "pending version has no value and no attempt made a key for it (RotateImmediately=false test): testing AWSCURRENT instead"
                );
                if current.is_bootstrap() {
                    info!(
                        "AWSCURRENT is a bootstrap secret without credentials: nothing to test yet"
                    );
                    return Ok(
                        "AWSCURRENT has no credentials yet (bootstrap secret); nothing to test"
                            .into(),
                    );
                }
                (current, Stage::Current)
            }
        }
    };
    check_destination(ctx, arn, &doc, which)?;
    if doc.regions.is_some() {
        return login_everywhere(ctx, &doc, which).await;
    }
    let creds = credentials_of(ctx, &doc, which)?;
    let target = SmtpTarget::from_document(&doc);
    login(
        ctx,
        &doc,
        &target,
        &creds,
        &doc.region,
        which,
        Budget::start(ctx),
    )
    .await?;
    if which == Stage::Pending {
        note_propagation(ctx, &doc, &creds.username, 1).await;
    }
    Ok(format!(
        "SES accepted the {} credentials for {}",
        which.label(),
        creds.username
    ))
}

/// Records how long after its creation the new key was first accepted (IAM's dates have one
/// second resolution), when that is what this login measured: SES rejected the key before
/// accepting it in this invocation, or the key is young enough for this to be its first test
/// (created within `SMTP_TEST_TIMEOUT_SECONDS`). A testSecret re-run hours later would report
/// the key's age instead, so it reports nothing.
///
/// Bookkeeping only: it never fails the step, and the listing it needs is bounded (at most
/// [`PROPAGATION_LOOKUP`], never past the deadline margin), so a slow IAM cannot turn a
/// proven login into a timed-out invocation.
async fn note_propagation(
    ctx: &StepContext<'_>,
    doc: &SecretDocument,
    key_id: &str,
    endpoints: usize,
) {
    let mut limit = PROPAGATION_LOOKUP;
    if let Some(deadline) = ctx.deadline {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .saturating_sub(DEADLINE_MARGIN);
        limit = limit.min(left);
    }
    let listed = tokio::time::timeout(limit, ctx.clients.list_keys(&doc.iam_user)).await;
    let Ok(Ok(keys)) = listed else {
        warn!(
            "could not list the user's keys to measure the new key's propagation; PropagationSeconds left out"
        );
        return;
    };
    let Some(created) = keys.iter().find(|k| k.id == key_id).and_then(|k| k.created) else {
        return;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    #[allow(clippy::cast_precision_loss)]
    let created = created.secs() as f64 + f64::from(created.subsec_nanos()) / 1e9;
    let age = (now - created).max(0.0);
    // More AUTH attempts than endpoints: some endpoint rejected the key before accepting it.
    let rejected_first = ctx
        .observed
        .auth_attempts
        .get()
        .is_some_and(|a| usize::try_from(a).is_ok_and(|a| a > endpoints));
    if rejected_first || age <= ctx.config.smtp_test_timeout.as_secs_f64() {
        ctx.observed.propagation_seconds.set(Some(age));
    }
}

/// The credentials a document holds, or a malformed-document error.
fn credentials_of(
    ctx: &StepContext<'_>,
    doc: &SecretDocument,
    which: Stage,
) -> Result<SmtpCredentials, Error> {
    doc.credentials
        .clone()
        .ok_or_else(|| Error::MalformedSecret {
            secret_id: ctx.event.secret_id.clone(),
            stage: which,
            source: SecretError::Missing {
                field: "username",
                hint: "there are no credentials to test",
            },
        })
}

/// A document with `regions`: logs in at every region's endpoint with that region's password,
/// all at once, each with the propagation retry, within the one budget. Passes only if every
/// region passes; otherwise [`Error::SmtpRegionsFailed`] names each region that failed.
///
/// The pending version must hold a password for every region (createSecret writes them all).
/// AWSCURRENT (the `RotateImmediately=false` test) may lack one for a region added to
/// `regions` since its rotation: that region is skipped, said in the answer, and gets its
/// password at the next rotation.
async fn login_everywhere(
    ctx: &StepContext<'_>,
    doc: &SecretDocument,
    which: Stage,
) -> Result<String, Error> {
    let creds = credentials_of(ctx, doc, which)?;
    let mut jobs = Vec::new();
    let mut skipped = Vec::new();
    for endpoint in doc.endpoints() {
        match doc.password_for(&endpoint.region) {
            Some(password) => {
                let creds = SmtpCredentials {
                    username: creds.username.clone(),
                    password,
                };
                jobs.push((endpoint, creds));
            }
            None if which == Stage::Current => {
                warn!(region = %endpoint.region,
                      "AWSCURRENT has no password for this region (listed in regions since its rotation): not tested; the next rotation writes it");
                skipped.push(endpoint.region.to_string());
            }
            None => {
                return Err(Error::MalformedSecret {
                    secret_id: ctx.event.secret_id.clone(),
                    stage: which,
                    source: SecretError::Invalid {
                        field: "passwords",
                        reason: format!(
                            "has no password for region {}, which \"regions\" lists; createSecret writes one for every listed region: cancel this rotation and start a new one",
                            endpoint.region
                        ),
                    },
                });
            }
        }
    }
    let budget = Budget::start(ctx);
    let results = join_all(jobs.iter().map(|(endpoint, creds)| {
        let target = SmtpTarget {
            host: endpoint.host.clone(),
            port: endpoint.port,
            tls: endpoint.tls,
        };
        async move { login(ctx, doc, &target, creds, &endpoint.region, which, budget).await }
    }))
    .await;
    let mut passed = Vec::new();
    let mut failures = Vec::new();
    for ((endpoint, _), result) in jobs.iter().zip(results) {
        match result {
            Ok(()) => passed.push(endpoint.region.to_string()),
            Err(e) => failures.push(RegionFailure {
                region: endpoint.region.to_string(),
                error: Box::new(e),
            }),
        }
    }
    if !failures.is_empty() {
        return Err(Error::SmtpRegionsFailed {
            which,
            key_id: creds.username,
            total: jobs.len(),
            failures,
            passed,
        });
    }
    if which == Stage::Pending {
        note_propagation(ctx, doc, &creds.username, jobs.len()).await;
    }
    let mut answer = format!(
        "SES accepted the {} credentials for {} in every region: {}",
        which.label(),
        creds.username,
        passed.join(", ")
    );
    if !skipped.is_empty() {
        answer.push_str(&format!(
            "; not tested (no password yet, the next rotation writes it): {}",
            skipped.join(", ")
        ));
    }
    Ok(answer)
}

/// Runs futures concurrently on this task (no spawning: they borrow the step's context and
/// keep its tracing span) and returns their outputs in order.
async fn join_all<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut waiting = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(v) => *output = Some(v),
                    Poll::Pending => waiting = true,
                }
            }
        }
        if waiting {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// The one time budget of a testSecret: `SMTP_TEST_TIMEOUT_SECONDS` from now, never past the
/// invocation deadline minus [`DEADLINE_MARGIN`]. Every region's retry loop shares it.
#[derive(Debug, Clone, Copy)]
struct Budget {
    start: Instant,
    end: Instant,
}

impl Budget {
    fn start(ctx: &StepContext<'_>) -> Self {
        let start = Instant::now();
        let mut end = start + ctx.config.smtp_test_timeout;
        if let Some(deadline) = ctx.deadline {
            end = end.min(deadline.checked_sub(DEADLINE_MARGIN).unwrap_or(start));
        }
        Self { start, end }
    }
}

fn jitter(d: Duration) -> Duration {
    use std::hash::BuildHasher;
    // Spread retries of many rotations; no need for a random-number crate for this.
    let noise = std::collections::hash_map::RandomState::new().hash_one(Instant::now()) % 1000;
    #[allow(clippy::cast_precision_loss)]
    // 1.0 ..= 1.25: spread, but never shorter than `d`, so the rate stays at or under 1/d (a
    // ±25 % jitter made a single 0.75 s pause, 1.33 attempts a second).
    let factor = 1.0 + (noise as f64) / 4000.0;
    d.mul_f64(factor)
}

/// The retry loop at one endpoint, for the password of `region`.
async fn login(
    ctx: &StepContext<'_>,
    doc: &SecretDocument,
    target: &SmtpTarget,
    creds: &SmtpCredentials,
    region: &Region,
    which: Stage,
    budget: Budget,
) -> Result<(), Error> {
    let endpoint = target.endpoint();
    let creds = creds.clone();
    // Not a network problem: the host is no valid TLS name, or no root store loads.
    let tls = target.tls_parameters().map_err(|e| Error::TlsSetup {
        endpoint: endpoint.clone(),
        detail: e,
    })?;

    let Budget { start, end } = budget;
    let mut attempts = 0u32;
    let mut unreachable = 0u32;
    let mut last = String::from(
        "no SMTP attempt fitted before the invocation deadline; give the function a timeout above SMTP_TEST_TIMEOUT_SECONDS plus 15 s",
    );
    // The last AUTH answer, kept apart: a final attempt cut short by the budget must not hide
    // the 535 that explains the failure.
    let mut last_auth: Option<String> = None;
    loop {
        let remaining = end.saturating_duration_since(Instant::now());
        if remaining < Duration::from_millis(200) {
            break;
        }
        attempts += 1;
        // Summed over every region's loop (they run at once on this task).
        let total = ctx.observed.auth_attempts.get().unwrap_or(0);
        ctx.observed
            .auth_attempts
            .set(Some(total.saturating_add(1)));
        let result = try_login_and_send(
            target,
            &tls,
            &creds,
            ctx.config.smtp_connect_timeout,
            end,
            ctx.config.test_send.as_ref(),
        )
        .await;
        match result {
            LoginOutcome::Accepted => {
                info!(key_id = %creds.username, region = %region,
                      endpoint = %endpoint, attempts, waited_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
                      sent_test_message = ctx.config.test_send.is_some(), "SES accepted the {} credentials", which.label());
                return Ok(());
            }
            LoginOutcome::Rejected(text) | LoginOutcome::Temporary(text) => {
                warn!(key_id = %creds.username, region = %region,
                      endpoint = %endpoint, attempt = attempts, reply = %text, "SES did not accept the login yet; retrying");
                last_auth = Some(text);
            }
            LoginOutcome::Untrusted(text) => {
                // Not the network: retrying cannot make a certificate trusted.
                return Err(Error::SmtpCertificateUntrusted {
                    endpoint,
                    detail: text,
                });
            }
            LoginOutcome::Unreachable(text) => {
                unreachable += 1;
                warn!(endpoint = %endpoint, region = %region, attempt = attempts,
                      error = %text, "cannot talk to the SMTP endpoint");
                if unreachable >= UNREACHABLE_ATTEMPTS {
                    return Err(Error::SmtpUnreachable {
                        endpoint,
                        detail: text,
                    });
                }
                last = text;
            }
            LoginOutcome::Refused(reply) => {
                return Err(Error::SmtpAuthRefused {
                    endpoint,
                    key_id: creds.username,
                    reply,
                });
            }
            LoginOutcome::SendNotAuthorized(reply) => {
                return Err(Error::SmtpSendNotAuthorized {
                    key_id: creds.username,
                    iam_user: doc.iam_user.clone(),
                    from: ctx
                        .config
                        .test_send
                        .as_ref()
                        .map(|s| s.from.to_string())
                        .unwrap_or_default(),
                    reply,
                });
            }
            LoginOutcome::SendFailed(reply) => {
                return Err(Error::SmtpSendFailed {
                    key_id: creds.username,
                    reply,
                });
            }
        }
        let pause = jitter(BACKOFF).min(end.saturating_duration_since(Instant::now()));
        tokio::time::sleep(pause).await;
    }
    let Some(last) = last_auth else {
        return Err(Error::SmtpUnreachable {
            endpoint,
            detail: last,
        });
    };
    Err(Error::SmtpAuthRejected {
        endpoint,
        which,
        key_id: creds.username,
        region: region.to_string(),
        last,
        attempts,
        waited_secs: start.elapsed().as_secs(),
    })
}

#[cfg(test)]
mod tests {
    use super::{BACKOFF, jitter};

    /// The pause is never shorter than BACKOFF (no more than one attempt a second, whatever
    /// the noise) and at most a quarter longer, and it varies.
    #[test]
    fn jitter_only_lengthens_the_pause_by_up_to_a_quarter() {
        let pauses: Vec<_> = (0..2000).map(|_| jitter(BACKOFF)).collect();
        assert!(
            pauses.iter().all(|p| *p >= BACKOFF),
            "{:?}",
            pauses.iter().min()
        );
        assert!(
            pauses.iter().all(|p| *p <= BACKOFF.mul_f64(1.25)),
            "{:?}",
            pauses.iter().max()
        );
        let distinct: std::collections::BTreeSet<_> = pauses.iter().collect();
        assert!(
            distinct.len() > 100,
            "only {} distinct pauses",
            distinct.len()
        );
    }
}
