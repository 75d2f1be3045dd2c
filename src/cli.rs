//! The command-line face of the binary, for people fighting `535 Authentication Credentials
//! Invalid`. Secrets are read from standard input, never taken as arguments (arguments end up
//! in shell history and in `ps`).

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::doctor::{DocumentText, Options, Source};
use crate::identify::identify_password;
use crate::password::{Region, SecretAccessKey, derive_smtp_password};
use crate::secret::SecretDocument;
use crate::smtp::{LoginOutcome, SmtpTarget};

/// Rotates Amazon SES SMTP credentials in AWS Secrets Manager (as a Lambda), and helps with
/// SES SMTP passwords on the command line.
#[derive(Debug, Parser)]
#[command(name = "ses-smtp-rotator", version, about, long_about = None)]
#[command(after_help = "Runs as the Lambda rotation function when AWS_LAMBDA_RUNTIME_API is set.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Derive the SES SMTP password from an IAM secret access key read on stdin.
    ///
    /// Example: `printf '%s' "$SECRET" | ses-smtp-rotator smtp-password --region eu-west-1`.
    /// The password is different for every SES region; use the region of the SMTP endpoint.
    SmtpPassword {
        /// SES region of the SMTP endpoint, e.g. us-east-1 (email-smtp.us-east-1.amazonaws.com).
        /// Repeat it for several regions: one `region password` line each.
        #[arg(long, required = true)]
        region: Vec<String>,
    },
    /// Tell what an SMTP password is: stdin holds the secret access key on the first line and
    /// the password on the second. Recognises the right V4 password, one for another region,
    /// the legacy V2 password, a misplaced version byte, or an unrelated value.
    IdentifyPassword {
        /// SES region of the SMTP endpoint the password is used with.
        #[arg(long)]
        region: String,
    },
    /// Try SMTP AUTH with the credentials of a secret document (the JSON read on stdin) against
    /// its host and port, with TLS as configured. Prints the SMTP answer; exit 0 on 235.
    TestLogin {
        /// Seconds to wait for the server.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
    /// Why does SES answer 535? Checks the secret document, the password, the endpoint, the
    /// IAM key and a real login, and says what is wrong and how to fix it. Never prints a
    /// secret. Exit status: 0 when SES accepts the credentials and no check failed, 1 when a
    /// check failed, 2 for a usage error.
    ///
    /// Examples: `ses-smtp-rotator doctor --secret-id my-smtp-secret`,
    /// `ses-smtp-rotator doctor --document - < doc.json --secret-access-key-file key.txt`.
    #[command(group(clap::ArgGroup::new("input").required(true).args(["secret_id", "document"])))]
    Doctor {
        /// The secret's name or ARN in Secrets Manager (read with the AWS SDK's standard
        /// credentials chain).
        #[arg(long, value_name = "ID")]
        secret_id: Option<String>,
        /// The version stage to read with --secret-id (default AWSCURRENT).
        #[arg(long, value_name = "STAGE")]
        version_stage: Option<String>,
        /// Read the secret document (JSON) from stdin ("-") or from a file.
        #[arg(long, value_name = "-|PATH")]
        document: Option<String>,
        /// A file holding the key's secret access key, to tell which password the document
        /// holds (right region, another region, legacy V2, ...).
        #[arg(long, value_name = "PATH")]
        secret_access_key_file: Option<PathBuf>,
        /// Print one JSON object: {"ok", "checks": [{"id", "status", "summary", "fix"}]}.
        #[arg(long)]
        json: bool,
        /// Seconds to wait for each network step (the whole run stays under 30 s).
        #[arg(long, value_name = "SECONDS", default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=20))]
        timeout: u64,
    },
}

/// Exit status of a usage error (as clap's own).
const USAGE: u8 = 2;

/// Runs the CLI and returns the process exit code.
#[must_use]
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Doctor {
        secret_id,
        version_stage,
        document,
        secret_access_key_file,
        json,
        timeout,
    } = cli.command
    {
        return doctor(
            secret_id,
            version_stage,
            document.as_deref(),
            secret_access_key_file.as_deref(),
            json,
            timeout,
        );
    }
    match run(cli.command) {
        Ok(out) => {
            let mut stdout = std::io::stdout().lock();
            if writeln!(stdout, "{out}")
                .and_then(|()| stdout.flush())
                .is_err()
            {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn run(cmd: Command) -> Result<String, String> {
    match cmd {
        Command::SmtpPassword { region } => {
            let mut regions = Vec::with_capacity(region.len());
            for r in &region {
                let r = Region::new(r).map_err(|e| e.to_string())?;
                if regions.contains(&r) {
                    return Err(format!("region {r} is given twice"));
                }
                regions.push(r);
            }
            let input = read_stdin("secret access key")?;
            let secret = SecretAccessKey::new(single_line(&input)?).map_err(|e| e.to_string())?;
            if let [only] = regions.as_slice() {
                // One region: the password alone, as scripts have always read it.
                return Ok(derive_smtp_password(&secret, only).expose().to_owned());
            }
            Ok(regions
                .iter()
                .map(|r| format!("{r} {}", derive_smtp_password(&secret, r).expose()))
                .collect::<Vec<_>>()
                .join("\n"))
        }
        Command::IdentifyPassword { region } => {
            let region = Region::new(&region).map_err(|e| e.to_string())?;
            let input = read_stdin("secret access key, then the password")?;
            let mut lines = input.lines();
            let (Some(secret), Some(password), None) = (lines.next(), lines.next(), lines.next())
            else {
                return Err(
                    "expected two lines on stdin: the secret access key, then the SMTP password"
                        .into(),
                );
            };
            let secret = SecretAccessKey::new(secret).map_err(|e| e.to_string())?;
            Ok(format!(
                "the password is {}",
                identify_password(&secret, &region, password)
            ))
        }
        Command::TestLogin { timeout } => {
            crate::smtp::check_ssl_cert_file()?;
            let input = read_stdin("secret document (JSON)")?;
            let doc = SecretDocument::parse(&input).map_err(|e| e.to_string())?;
            let creds = doc.credentials.clone().ok_or(
                "the secret document has no username/password (a bootstrap secret): nothing to test",
            )?;
            let target = SmtpTarget::from_document(&doc);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the async runtime: {e}"))?;
            let tls = target.tls_parameters()?;
            let outcome = runtime.block_on(crate::smtp::try_login(
                &target,
                &tls,
                &creds,
                Duration::from_secs(timeout.max(1)),
            ));
            match outcome {
                LoginOutcome::Accepted => Ok(format!(
                    "235 accepted: {} can log in at {}",
                    creds.username,
                    target.endpoint()
                )),
                other if other.is_certificate_failure() => {
                    Err(format!("TLS to {} failed: {other}", target.endpoint()))
                }
                other => Err(format!(
                    "{} at {} for {}: {other}",
                    other.summary(),
                    target.endpoint(),
                    creds.username
                )),
            }
        }
        Command::Doctor { .. } => unreachable!("doctor is run by main"),
    }
}

/// `doctor`: reads the inputs (a usage error for anything missing or unreadable), runs the
/// checks and prints the report.
fn doctor(
    secret_id: Option<String>,
    stage: Option<String>,
    document: Option<&str>,
    key_file: Option<&Path>,
    json: bool,
    timeout: u64,
) -> ExitCode {
    let usage = |msg: String| {
        eprintln!("error: {msg}");
        ExitCode::from(USAGE)
    };
    if stage.is_some() && secret_id.is_none() {
        return usage("--version-stage goes with --secret-id".into());
    }
    let source = match (secret_id, document) {
        (Some(id), None) => Source::SecretId {
            id,
            stage: stage.unwrap_or_else(|| "AWSCURRENT".to_owned()),
        },
        (None, Some("-")) => match read_stdin("secret document (JSON)") {
            Ok(text) => Source::Document(DocumentText(text)),
            Err(e) => return usage(e),
        },
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(text) => Source::Document(DocumentText(text)),
            Err(e) => {
                return usage(format!(
                    "cannot read the document file {path}: {}",
                    e.kind()
                ));
            }
        },
        _ => return usage("give either --secret-id or --document".into()),
    };
    let mut options = Options::from_env(source);
    options.step_timeout = Duration::from_secs(timeout);
    if let Some(path) = key_file {
        match std::fs::read_to_string(path) {
            // Never echo the file: it holds a secret (and a wrong file may hold another).
            Ok(text) => {
                options.secret_access_key = Some(
                    single_line(&text)
                        .and_then(|l| SecretAccessKey::new(l).map_err(|e| e.to_string())),
                );
            }
            Err(e) => {
                return usage(format!(
                    "cannot read --secret-access-key-file {}: {}",
                    path.display(),
                    e.kind()
                ));
            }
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = runtime.block_on(crate::doctor::run(options));
    let text = if json {
        report.to_json() + "\n"
    } else {
        report.to_text(crate::doctor::use_colour())
    };
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    ExitCode::from(report.exit_code())
}

fn read_stdin(what: &str) -> Result<String, String> {
    let stdin = std::io::stdin();
    let mut text = String::new();
    if stdin.is_terminal() {
        eprintln!("Paste the {what} and press Enter, then Ctrl-D:");
    }
    stdin
        .lock()
        .read_to_string(&mut text)
        .map_err(|_| format!("could not read the {what} from stdin as UTF-8 text"))?;
    Ok(text)
}

/// Accepts exactly one line, with at most one trailing newline (LF or CRLF).
fn single_line(input: &str) -> Result<&str, String> {
    let line = input
        .strip_suffix("\r\n")
        .or_else(|| input.strip_suffix('\n'))
        .unwrap_or(input);
    if line.is_empty() {
        return Err("no secret access key on stdin".into());
    }
    if line.contains('\n') {
        return Err("expected exactly one line on stdin (the secret access key)".into());
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line_strips_one_newline_only() {
        assert_eq!(single_line("abc\n"), Ok("abc"));
        assert_eq!(single_line("abc\r\n"), Ok("abc"));
        assert_eq!(single_line("abc"), Ok("abc"));
        assert!(single_line("abc\n\n").is_err());
        assert!(single_line("a\nb").is_err());
        assert!(single_line("").is_err());
        assert!(single_line("\n").is_err());
    }

    #[test]
    fn cli_definition_is_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
