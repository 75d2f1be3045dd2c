//! The command-line face of the binary, for people fighting `535 Authentication Credentials
//! Invalid`. Secrets are read from standard input, never taken as arguments (arguments end up
//! in shell history and in `ps`).

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::doctor::{DocumentText, Options, Source};
use crate::endpoint::AllowedHosts;
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
    /// Credentials go only to an SES SMTP endpoint or a host SMTP_ALLOWED_HOSTS adds
    /// (comma-separated names or *.suffix), as in the rotation and doctor.
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
        /// With --secret-id: a rotation pending longer than this many hours is reported stuck
        /// (rotation-state); fractions are fine (0.5 = 30 minutes).
        #[arg(long, value_name = "HOURS", default_value_t = crate::doctor::DEFAULT_STUCK_AFTER_HOURS, value_parser = positive_hours)]
        stuck_after_hours: f64,
    },
}

/// A positive, finite number of hours (at most ten years).
fn positive_hours(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(h) if h.is_finite() && h > 0.0 && h <= 87_600.0 => Ok(h),
        _ => Err("a number of hours greater than 0 (fractions are fine: 0.5)".into()),
    }
}

/// Exit status of a usage error (as clap's own).
const USAGE: u8 = 2;

/// Runs the CLI and returns the process exit code.
#[must_use]
pub fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e, &args),
    };
    if let Command::Doctor {
        secret_id,
        version_stage,
        document,
        secret_access_key_file,
        json,
        timeout,
        stuck_after_hours,
    } = cli.command
    {
        return doctor(
            secret_id,
            version_stage,
            document.as_deref(),
            secret_access_key_file.as_deref(),
            json,
            (timeout, stuck_after_hours),
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

/// A command line clap refused (or `--help` / `--version`). clap quotes the word it refused
/// ("unexpected argument 'wJalr...' found"); a person who pasted a secret as an argument must
/// not get it printed back (to a terminal, a CI log), so every long word of the command line
/// is hidden in the message (see [`hide_arguments`]).
fn usage_error(e: &clap::Error, args: &[std::ffi::OsString]) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        // Help text only: nothing of the command line is in it.
        e.exit();
    }
    let text = hide_arguments(&e.render().to_string(), args);
    eprint!("{text}");
    ExitCode::from(USAGE)
}

/// The shortest command-line word that is hidden in a usage error: a secret access key is 40
/// characters and an SMTP password 44, while region codes, stages and numbers are short.
const HIDDEN_FROM: usize = 16;

/// `text` with every word of the command line (after the program name) of [`HIDDEN_FROM`]
/// characters or more, and every such value after `=` in `--option=value`, replaced by
/// `<N characters, not shown>`. Option names (`--...`) stay: they are this program's words.
fn hide_arguments(text: &str, args: &[std::ffi::OsString]) -> String {
    let mut words: Vec<String> = Vec::new();
    for arg in args.iter().skip(1) {
        let arg = arg.to_string_lossy();
        let value = if arg.starts_with("--") {
            arg.split_once('=').map(|(_, v)| v.to_owned())
        } else {
            Some(arg.into_owned())
        };
        if let Some(v) = value.filter(|v| v.chars().count() >= HIDDEN_FROM) {
            words.push(v);
        }
    }
    // Longest first, so a word inside a longer one does not leave the rest of it behind.
    words.sort_by_key(|w| std::cmp::Reverse(w.len()));
    let mut text = text.to_owned();
    for w in &words {
        text = text.replace(
            w.as_str(),
            &format!("<{} characters, not shown>", w.chars().count()),
        );
    }
    text
}

/// A `--region` value: its error shows the value only when it is short enough to be a region
/// code with a typo (a long one may be a secret pasted in the wrong place).
fn region_arg(value: &str) -> Result<Region, String> {
    Region::new(value).map_err(|e| {
        if value.chars().count() >= HIDDEN_FROM {
            format!(
                "the --region value ({} characters, not shown) is not an AWS region code (expected lower case like us-east-1 or eu-central-2); a wrong region silently yields a password SES rejects",
                value.chars().count()
            )
        } else {
            e.to_string()
        }
    })
}

fn run(cmd: Command) -> Result<String, String> {
    match cmd {
        Command::SmtpPassword { region } => {
            let mut regions = Vec::with_capacity(region.len());
            for r in &region {
                let r = region_arg(r)?;
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
            let region = region_arg(&region)?;
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
            crate::smtp::check_smtp_ca_file()?;
            let input = read_stdin("secret document (JSON)")?;
            let doc = SecretDocument::parse(&input).map_err(|e| e.to_string())?;
            let creds = doc.credentials.clone().ok_or(
                "the secret document has no username/password (a bootstrap secret): nothing to test",
            )?;
            let target = SmtpTarget::from_document(&doc);
            // The rotation's and doctor's rule: credentials go only to an SES endpoint or a
            // host SMTP_ALLOWED_HOSTS adds, checked before any connection.
            let allowed = match std::env::var("SMTP_ALLOWED_HOSTS") {
                Ok(v) => AllowedHosts::parse(&v).map_err(|e| {
                    format!("SMTP_ALLOWED_HOSTS: {e}; correct it (comma-separated host names or *.suffix patterns) or unset it")
                })?,
                Err(_) => AllowedHosts::default(),
            };
            if !allowed.allows(&target.host) {
                return Err(format!(
                    "{} is not an SES SMTP endpoint name and SMTP_ALLOWED_HOSTS does not allow it: no connection was made and no credentials were sent. Use the SES endpoint of the region (email-smtp.{}.amazonaws.com), or, for your own relay, add the host to SMTP_ALLOWED_HOSTS",
                    target.host, doc.region
                ));
            }
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
    (timeout, stuck_after_hours): (u64, f64),
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
    options.stuck_after = Duration::from_secs_f64(stuck_after_hours * 3600.0);
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

    /// Every option that takes a value, by subcommand: none of them takes a secret (names,
    /// regions, stages, paths, numbers). A new option that takes a value must be added here,
    /// with thought; a positional argument fails. (clap's `env` feature is off: no option is
    /// read from the environment, and tests/cli.rs checks that the binary ignores secrets
    /// offered there.)
    const VALUE_OPTIONS: &[(&str, &str)] = &[
        ("smtp-password", "region"),
        ("identify-password", "region"),
        ("test-login", "timeout"),
        ("doctor", "secret-id"),
        ("doctor", "version-stage"),
        ("doctor", "document"),
        ("doctor", "secret-access-key-file"),
        ("doctor", "timeout"),
        ("doctor", "stuck-after-hours"),
    ];

    /// The arguments of `cmd` and every subcommand below it, as (subcommand, argument).
    fn all_arguments(cmd: &clap::Command) -> Vec<(String, clap::Arg)> {
        let mut out: Vec<(String, clap::Arg)> = cmd
            .get_arguments()
            .map(|a| (cmd.get_name().to_owned(), a.clone()))
            .collect();
        for sub in cmd.get_subcommands() {
            out.extend(all_arguments(sub));
        }
        out
    }

    #[test]
    fn no_argument_can_carry_a_secret() {
        use clap::CommandFactory;
        let mut cmd = Cli::command();
        cmd.build();
        let args = all_arguments(&cmd);
        let mut seen: Vec<(String, String)> = Vec::new();
        for (sub, arg) in &args {
            let id = arg.get_id().as_str();
            assert!(!arg.is_positional(), "{sub}: positional argument {id}");
            if !arg.get_action().takes_values() {
                continue; // a flag: --json, --help, --version
            }
            let long = arg.get_long().unwrap_or(id);
            assert!(
                VALUE_OPTIONS.contains(&(sub.as_str(), long)),
                "{sub} --{long} takes a value and is not in VALUE_OPTIONS"
            );
            seen.push((sub.clone(), long.to_owned()));
        }
        // The list is the tree, not a superset that would let a renamed option slip through.
        for (sub, long) in VALUE_OPTIONS {
            assert!(
                seen.iter().any(|(s, l)| s == sub && l == long),
                "{sub} --{long} is listed but not defined"
            );
        }
        // The walk saw every subcommand and the flags (not an empty tree).
        assert!(
            args.iter()
                .any(|(s, a)| s == "doctor" && a.get_id() == "json")
        );
        assert_eq!(cmd.get_subcommands().count(), 5); // 4 and clap's `help`
    }

    #[test]
    fn usage_errors_hide_long_command_line_words() {
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        let args: Vec<std::ffi::OsString> = [
            "ses-smtp-rotator",
            "smtp-password",
            "--region",
            "us-east-2",
            secret,
            &format!("--password={secret}x"),
            "--verbose",
        ]
        .iter()
        .map(Into::into)
        .collect();
        let text = format!(
            "unexpected argument '{secret}' found; '{secret}x' too; '--verbose' and us-east-2 stay"
        );
        let shown = hide_arguments(&text, &args);
        assert!(!shown.contains(secret), "{shown}");
        assert_eq!(
            shown,
            "unexpected argument '<40 characters, not shown>' found; '<41 characters, not shown>' too; '--verbose' and us-east-2 stay"
        );
        let e = region_arg(secret).expect_err("not a region");
        assert!(!e.contains(secret) && e.contains("--region"), "{e}");
        assert!(
            region_arg("US-EAST-2")
                .expect_err("upper case")
                .contains("US-EAST-2")
        );
    }

    #[test]
    fn cli_definition_is_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
