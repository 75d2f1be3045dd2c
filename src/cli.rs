//! The command-line face of the binary, for people fighting `535 Authentication Credentials
//! Invalid`. Secrets are read from standard input, never taken as arguments (arguments end up
//! in shell history and in `ps`).

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

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
        #[arg(long)]
        region: String,
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
}

/// Runs the CLI and returns the process exit code.
#[must_use]
pub fn main() -> ExitCode {
    let cli = Cli::parse();
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
            let region = Region::new(&region).map_err(|e| e.to_string())?;
            let input = read_stdin("secret access key")?;
            let secret = SecretAccessKey::new(single_line(&input)?).map_err(|e| e.to_string())?;
            Ok(derive_smtp_password(&secret, &region).expose().to_owned())
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
            let tls = target.tls_parameters().map_err(|e| e.to_string())?;
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
                other => Err(format!(
                    "{} at {} for {}: {other}",
                    other.summary(),
                    target.endpoint(),
                    creds.username
                )),
            }
        }
    }
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
