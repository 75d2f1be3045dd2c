//! The Lambda face: configuration and clients built once, then the runtime loop calling
//! [`handle`] for each rotation event.

use std::process::ExitCode;
use std::time::{Instant, SystemTime};

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde_json::Value;
use tracing::{Instrument, error, info, info_span};

use crate::aws::Clients;
use crate::config::Config;
use crate::error::Error;
use crate::event::{RotationEvent, Step};
use crate::metrics::InvocationMetrics;
use crate::steps::{Observed, StepContext, StepOutcome, create, finish, set, test};

/// Runs the Lambda runtime loop. Invalid configuration fails here, before the first event.
#[must_use]
pub fn main() -> ExitCode {
    init_tracing();
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            error!(error_type = e.error_type(), "{e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let clients = Clients::from_env().await;
        info!(
            old_key_action = config.old_key_action.as_str(),
            smtp_test_timeout_s = config.smtp_test_timeout.as_secs(),
            smtp_connect_timeout_s = config.smtp_connect_timeout.as_secs(),
            test_send = config.test_send.is_some(),
            "ses-smtp-rotator ready"
        );
        let result = lambda_runtime::run(service_fn(|ev: LambdaEvent<Value>| {
            let clients = &clients;
            let config = &config;
            async move {
                let deadline = deadline_instant(ev.context.deadline());
                handle(clients, config, &ev.payload, deadline)
                    .await
                    .map_err(Diagnostic::from)
            }
        }))
        .await;
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                error!("the Lambda runtime loop stopped: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Turns the runtime's deadline into an `Instant` (`None` when the runtime gave none).
fn deadline_instant(deadline: SystemTime) -> Option<Instant> {
    if deadline == SystemTime::UNIX_EPOCH {
        return None;
    }
    let left = deadline
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    Instant::now().checked_add(left)
}

/// Handles one invocation: parse the event, run its step, log the outcome.
///
/// # Errors
/// Whatever the step returns; the error's type and message reach Secrets Manager.
pub async fn handle(
    clients: &Clients,
    config: &Config,
    payload: &Value,
    deadline: Option<Instant>,
) -> Result<Value, Error> {
    let started = Instant::now();
    match crate::maintenance::MaintenanceEvent::parse(payload) {
        Ok(Some(m)) => return maintenance(clients, config, &m, deadline, started).await,
        Ok(None) => {}
        Err(e) => {
            return Err(refused(e, started));
        }
    }
    let event = match RotationEvent::parse(payload) {
        Ok(e) => e,
        Err(e) => {
            return Err(refused(e, started));
        }
    };
    let span = info_span!("rotation", step = %event.step, secret_id = %event.secret_id, version = %event.token);
    async {
        let ctx = StepContext {
            clients,
            config,
            event: &event,
            deadline,
            observed: Observed::default(),
        };
        info!("step started");
        tracing::debug!(event = ?event, deadline_known = deadline.is_some(), "parsed rotation event");
        let result = match event.step {
            Step::Create => create::create_secret(&ctx).await,
            Step::Set => set::set_secret(&ctx).await,
            Step::Test => test::test_secret(&ctx).await,
            Step::Finish => finish::finish_secret(&ctx).await,
        };
        emit_metrics(&InvocationMetrics {
            step: event.step.to_string(),
            duration_ms: elapsed_ms(started),
            success: result.is_ok(),
            auth_attempts: ctx.observed.auth_attempts.get(),
            propagation_seconds: ctx.observed.propagation_seconds.get(),
        });
        match result {
            Ok(result) => {
                info!(result = %result, "step succeeded");
                Ok(serde_json::json!(StepOutcome {
                    step: event.step,
                    result,
                }))
            }
            Err(e) => {
                error!(error_type = e.error_type(), "step failed: {e}");
                Err(e)
            }
        }
    }
    .instrument(span)
    .await
}

/// An event that is neither a rotation step nor the maintenance: logged, counted as `invalid`.
fn refused(e: Error, started: Instant) -> Error {
    error!(error_type = e.error_type(), "{e}");
    emit_metrics(&InvocationMetrics {
        step: "invalid".into(),
        duration_ms: elapsed_ms(started),
        success: false,
        auth_attempts: None,
        propagation_seconds: None,
    });
    e
}

/// The scheduled maintenance (see [`crate::maintenance`]): one metric line per secret, one
/// for the invocation (`Step` = `maintenance`).
async fn maintenance(
    clients: &Clients,
    config: &Config,
    event: &crate::maintenance::MaintenanceEvent,
    deadline: Option<Instant>,
    started: Instant,
) -> Result<Value, Error> {
    let span = info_span!("maintenance");
    async {
        info!("maintenance started");
        let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").ok();
        let result = crate::maintenance::run(clients, config, event, deadline, |r| {
            emit_line(&r.to_emf(now_ms(), function.as_deref()));
        })
        .await;
        let ok = result
            .as_ref()
            .is_ok_and(|v| v["failed"].as_u64() == Some(0));
        emit_metrics(&InvocationMetrics {
            step: "maintenance".into(),
            duration_ms: elapsed_ms(started),
            success: ok,
            auth_attempts: None,
            propagation_seconds: None,
        });
        match &result {
            Ok(v) => info!(secrets = %v["secrets"], failed = %v["failed"], "maintenance done"),
            Err(e) => error!(error_type = e.error_type(), "maintenance failed: {e}"),
        }
        result
    }
    .instrument(span)
    .await
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Writes the invocation's EMF line straight to stdout (not through the log filter: it is
/// data, not a log line, and must not depend on RUST_LOG), where Lambda hands it to
/// CloudWatch Logs.
fn emit_metrics(m: &InvocationMetrics) {
    let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").ok();
    emit_line(&m.to_emf(now_ms(), function.as_deref()));
}

/// Writes one EMF line to stdout.
fn emit_line(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    // A closed stdout must not fail the rotation: the metric is lost, the step is not.
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// Crates that never log below `warn`, whatever `RUST_LOG` says: at debug/trace the AWS SDK
/// prints request bodies (PutSecretValue carries the password and the RotationToken),
/// lambda_runtime prints the raw event, and the HTTP, TLS and SMTP crates print what they
/// carry. A crate matches by name or as a prefix of its module path; every `aws_*` crate is
/// quiet (`aws_sdk_sts` included).
const QUIET_CRATES: &[&str] = &[
    "hyper",
    "hyper_util",
    "h2",
    "http",
    "tower",
    "rustls",
    "tokio_rustls",
    "lambda_runtime",
    "lambda_runtime_api_client",
    "lettre",
];

/// Whether events and spans of `target` are capped at `warn`.
fn is_quiet(target: &str) -> bool {
    let krate = target.split("::").next().unwrap_or(target);
    krate.starts_with("aws_") || krate.starts_with("aws-") || QUIET_CRATES.contains(&krate)
}

/// The filter for a `RUST_LOG` value: the operator's directives AND a cap that no directive
/// can lift: a quiet crate's event or span passes only at `warn` or above, inside or outside any
/// span. Applied per layer.
///
/// Directives are a comma-separated list of `level` and `target=level` (tracing-subscriber's
/// `Targets` syntax: no regular-expression engine in the binary). A value this does not
/// understand, span and field directives (`[rotation]=trace`, `[{step}]=debug`) included, falls
/// back to `info` as a whole; the second value says why, for a warning once logging is up.
fn log_filter<S>(
    requested: &str,
) -> (
    impl tracing_subscriber::layer::Filter<S> + use<S>,
    Option<String>,
)
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use tracing_subscriber::filter::{FilterExt, Targets, filter_fn};
    let (targets, problem) = match parse_directives(requested) {
        Ok(t) => (t, None),
        Err(why) => (Targets::new().with_default(tracing::Level::INFO), Some(why)),
    };
    let cap = filter_fn(|meta| !is_quiet(meta.target()) || *meta.level() <= tracing::Level::WARN);
    (targets.and(cap), problem)
}

/// Parses `RUST_LOG` / `AWS_LAMBDA_LOG_LEVEL` (already lower case): `level` and `target=level`
/// directives (a bare target means `trace` for it). Lambda's `FATAL` is `error`.
fn parse_directives(requested: &str) -> Result<tracing_subscriber::filter::Targets, String> {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    let level_of = |l: &str| match l {
        "fatal" => Some(LevelFilter::ERROR),
        "trace" | "debug" | "info" | "warn" | "error" | "off" => l.parse().ok(),
        _ => None,
    };
    let mut targets = Targets::new();
    let mut any = false;
    for d in requested
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        let (target, level) = match d.split_once('=') {
            Some((t, l)) => (Some(t.trim()), level_of(l.trim())),
            None => match level_of(d) {
                Some(level) => (None, Some(level)),
                None => (Some(d), Some(LevelFilter::TRACE)),
            },
        };
        let Some(level) = level else {
            return Err(format!(
                "RUST_LOG directive \"{d}\" names no level (trace, debug, info, warn, error, off); logging at info"
            ));
        };
        targets = match target {
            None => targets.with_default(level),
            Some(t)
                if !t.is_empty()
                    && t.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_:-".contains(c)) =>
            {
                targets.with_target(t, level)
            }
            Some(_) => {
                return Err(format!(
                    "RUST_LOG directive \"{d}\" is not understood (span and field directives are not supported; use `level` or `target=level`); logging at info"
                ));
            }
        };
        any = true;
    }
    Ok(if any {
        targets
    } else {
        targets.with_default(tracing::Level::INFO)
    })
}

fn init_tracing() {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let requested = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .or_else(|| std::env::var("AWS_LAMBDA_LOG_LEVEL").ok())
        .unwrap_or_else(|| "info".into())
        .to_ascii_lowercase();
    let fmt = tracing_subscriber::fmt::layer()
        .with_target(false)
        .without_time();
    // Lambda's JSON log format wants one JSON object per line; plain text otherwise.
    let (filter, problem) = log_filter(&requested);
    let layer =
        if std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
            fmt.json()
                .with_current_span(true)
                .with_span_list(false)
                .with_filter(filter)
                .boxed()
        } else {
            fmt.with_filter(filter).boxed()
        };
    // A second initialisation (tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry().with(layer).try_init();
    if let Some(why) = problem {
        tracing::warn!("{why}");
    }
}

#[cfg(test)]
mod tests {
    use super::{is_quiet, log_filter};
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Emits, under `directives`, a trace event of each quiet crate inside a span with a
    /// field, and one of our own, and returns what was written.
    fn emit(directives: &str) -> String {
        let buf = Buf::default();
        let writer = buf.clone();
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(move || writer.clone())
            .with_filter(log_filter(directives).0);
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("rotation", step = "createSecret", secret_id = "s");
            let _g = span.enter();
            tracing::trace!(target: "aws_smithy_runtime::client", "SDK-TRACE body=SECRET");
            tracing::debug!(target: "aws_sdk_sts::operation", "STS-DEBUG");
            tracing::trace!(target: "hyper_util::client", "HYPER-TRACE");
            tracing::trace!(target: "rustls::conn", "RUSTLS-TRACE");
            tracing::debug!(target: "lettre::transport", "LETTRE-DEBUG");
            tracing::trace!(target: "lambda_runtime", "RUNTIME-TRACE");
            tracing::warn!(target: "aws_smithy_runtime::client", "SDK-WARN");
            tracing::debug!(target: "ses_smtp_rotator::steps", "OURS-DEBUG");
            tracing::info!(target: "ses_smtp_rotator::steps", "OURS-INFO");
            tracing::warn!(target: "ses_smtp_rotator::steps", "OURS-WARN");
        });
        let out = buf
            .0
            .lock()
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        out.unwrap_or_default()
    }

    #[test]
    fn no_directive_lifts_a_quiet_crate_above_warn() {
        for directives in [
            "trace",
            "aws_smithy_runtime=trace,trace",
            "[rotation]=trace",
            "[{step}]=trace",
            "[{secret_id=s}]=trace",
            "[]=trace",
            "aws_sdk_sts[rotation]=trace,hyper_util[{step}]=trace",
            "lettre=trace,rustls=trace,lambda_runtime=trace",
        ] {
            let out = emit(directives);
            for quiet in [
                "SDK-TRACE",
                "STS-DEBUG",
                "HYPER-TRACE",
                "RUSTLS-TRACE",
                "LETTRE-DEBUG",
                "RUNTIME-TRACE",
            ] {
                assert!(!out.contains(quiet), "{directives}: {quiet} in {out}");
            }
        }
        // Our own crate's debug passes where asked for, and quiet crates' warnings pass: the
        // cap does not silence everything.
        assert!(emit("trace").contains("OURS-DEBUG"));
        assert!(emit("trace").contains("SDK-WARN"));
        assert!(emit("ses_smtp_rotator=debug").contains("OURS-DEBUG"));
        assert!(emit("warn,ses_smtp_rotator::steps=debug").contains("OURS-DEBUG"));
    }

    /// What `directives` let through: each of `shown` is in the output, none of `hidden`.
    fn shows(directives: &str, shown: &[&str], hidden: &[&str]) {
        let out = emit(directives);
        for s in shown {
            assert!(out.contains(s), "{directives}: {s} missing from {out}");
        }
        for h in hidden {
            assert!(!out.contains(h), "{directives}: {h} in {out}");
        }
    }

    #[test]
    fn directives_are_levels_and_targets_and_anything_else_falls_back_to_info() {
        // A level alone, and Lambda's levels (lower-cased by init_tracing; FATAL is error).
        shows("warn", &["OURS-WARN"], &["OURS-INFO"]);
        shows("fatal", &[], &["OURS-WARN"]);
        assert!(
            log_filter::<tracing_subscriber::Registry>("fatal")
                .1
                .is_none()
        );
        // Only the named target is enabled when no default level is given (as EnvFilter did).
        shows(
            "ses_smtp_rotator::steps=debug",
            &["OURS-DEBUG"],
            &["SDK-WARN"],
        );
        shows("other_crate=trace", &[], &["OURS-WARN"]);
        // Span and field directives, and nonsense, are refused as a whole: info, and a reason.
        for bad in [
            "[rotation]=debug",
            "ses_smtp_rotator[{step}]=debug",
            "debug,foo=loud",
            "a=b=c",
        ] {
            let out = emit(bad);
            assert!(
                out.contains("OURS-INFO") && !out.contains("OURS-DEBUG"),
                "{bad}: {out}"
            );
            let why = log_filter::<tracing_subscriber::Registry>(bad).1;
            assert!(
                why.as_deref()
                    .is_some_and(|w| w.contains("logging at info")),
                "{bad}: {why:?}"
            );
        }
        // An empty list is the default level.
        assert!(emit(" , ").contains("OURS-INFO"));
    }

    #[test]
    fn quiet_matches_crates_not_look_alikes() {
        assert!(is_quiet("aws_config::imds"));
        assert!(is_quiet("aws_sdk_sts"));
        assert!(is_quiet("h2::codec"));
        assert!(!is_quiet("hyperloop"));
        assert!(!is_quiet("ses_smtp_rotator::smtp"));
    }
}
