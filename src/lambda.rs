//! The Lambda face: configuration and clients built once, then the runtime loop calling
//! [`handle`] for each rotation event.

use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde_json::Value;
use tracing::{Instrument, error, info, info_span};

use crate::aws::Clients;
use crate::config::Config;
use crate::error::Error;
use crate::event::{RotationEvent, Step};
use crate::steps::{StepContext, StepOutcome, create, finish, set, test};

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
                let deadline = deadline_instant(ev.context.deadline);
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

/// Turns the runtime's deadline (epoch milliseconds) into an `Instant`.
fn deadline_instant(deadline_ms: u64) -> Option<Instant> {
    if deadline_ms == 0 {
        return None;
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_millis();
    let left = u128::from(deadline_ms).saturating_sub(now_ms);
    Instant::now().checked_add(Duration::from_millis(u64::try_from(left).ok()?))
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
) -> Result<StepOutcome, Error> {
    let event = match RotationEvent::parse(payload) {
        Ok(e) => e,
        Err(e) => {
            error!(error_type = e.error_type(), "{e}");
            return Err(e);
        }
    };
    let span = info_span!("rotation", step = %event.step, secret_id = %event.secret_id, version = %event.token);
    async {
        let ctx = StepContext {
            clients,
            config,
            event: &event,
            deadline,
        };
        info!("step started");
        let result = match event.step {
            Step::Create => create::create_secret(&ctx).await,
            Step::Set => set::set_secret(&ctx).await,
            Step::Test => test::test_secret(&ctx).await,
            Step::Finish => finish::finish_secret(&ctx).await,
        };
        match &result {
            Ok(o) => info!(result = %o.result, "step succeeded"),
            Err(e) => error!(error_type = e.error_type(), "step failed: {e}"),
        }
        result
    }
    .instrument(span)
    .await
}

/// Crates that never log below `warn`, whatever `RUST_LOG` says: at debug/trace the AWS SDK
/// prints request bodies (PutSecretValue carries the password and the RotationToken) and
/// lambda_runtime prints the raw event.
const QUIET_CRATES: &[&str] = &[
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http_client",
    "aws_smithy_types",
    "aws_sdk_secretsmanager",
    "aws_sdk_iam",
    "aws_config",
    "aws_runtime",
    "aws_sigv4",
    "hyper",
    "hyper_util",
    "h2",
    "rustls",
    "lambda_runtime",
    "lambda_runtime_api_client",
    "lettre",
];

/// The operator's filter with every directive about a quiet crate (or one of its modules)
/// removed and the quiet crates capped at `warn`.
fn log_filter(requested: &str) -> String {
    let quiet = |target: &str| {
        QUIET_CRATES
            .iter()
            .any(|c| target == *c || target.starts_with(&format!("{c}::")))
    };
    let mut parts: Vec<String> = requested
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .filter(|d| {
            let target = d.split(['=', '[']).next().unwrap_or_default();
            // A bare level ("debug") has no target and stays.
            !d.contains('=') && !d.contains('[') || !quiet(target)
        })
        .map(str::to_owned)
        .collect();
    parts.extend(QUIET_CRATES.iter().map(|c| format!("{c}=warn")));
    parts.join(",")
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let requested = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .or_else(|| std::env::var("AWS_LAMBDA_LOG_LEVEL").ok())
        .unwrap_or_else(|| "info".into())
        .to_ascii_lowercase();
    let filter = EnvFilter::try_new(log_filter(&requested))
        .unwrap_or_else(|_| EnvFilter::new(log_filter("info")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .without_time();
    // Lambda's JSON log format wants one JSON object per line; plain text otherwise.
    if std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        builder.init();
    }
}

#[cfg(test)]
mod tests {
    use super::log_filter;

    #[test]
    fn quiet_crates_stay_at_warn_whatever_is_asked() {
        let f =
            log_filter("trace,aws_smithy_runtime::client=trace,ses_smtp_rotator=debug,hyper=info");
        assert!(f.starts_with("trace,ses_smtp_rotator=debug,"), "{f}");
        assert!(!f.contains("=trace"), "{f}");
        assert!(!f.contains("hyper=info"), "{f}");
        assert!(f.contains("aws_smithy_runtime=warn"), "{f}");
        assert!(f.contains("lambda_runtime=warn"), "{f}");
        // A crate whose name merely starts like a quiet one is left alone.
        assert!(log_filter("hyperloop=debug").starts_with("hyperloop=debug,"));
    }
}
