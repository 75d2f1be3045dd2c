//! The `connect` and `auth` checks: what the SMTP server itself says.
//!
//! `connect` first opens a plain TCP connection (refused, unresolvable and silent hosts are
//! told apart there), then speaks SMTP with TLS in the configured mode up to EHLO, without
//! credentials. When that fails it tries the other TLS mode on the same port, so a STARTTLS /
//! implicit-TLS mix-up is named with the mode that does answer. `auth` is one real AUTH with the
//! document's values exactly as stored (that is what a mail client sends). Credentials go only
//! to a host the `endpoint` check allowed, and only over verified TLS.

use lettre::transport::smtp::client::TlsParameters;

use super::input::{Facts, Raw, Site};
use super::{Budget, Check, CheckId};
use crate::secret::{RegionEndpoint, SmtpCredentials, TlsMode};
use crate::smtp::{CertificateProblem, LoginOutcome, ProbeError, SmtpTarget, try_login};

/// What the earlier checks found, for explaining a 535.
pub(crate) struct Evidence {
    /// Checks that failed before `connect`.
    pub failed_before: Vec<CheckId>,
    /// `password-derivation` passed (the password is right for the region).
    pub derivation_passed: bool,
    /// A secret key was given (so `password-derivation` could run).
    pub derivation_ran: bool,
    /// `iam-key` passed (the key exists, is Active, is the user's).
    pub key_passed: bool,
}

/// The mode in words: "STARTTLS" or "implicit TLS".
fn words(mode: TlsMode) -> &'static str {
    match mode {
        TlsMode::StartTls => "STARTTLS",
        TlsMode::Implicit => "implicit TLS",
    }
}

fn other(mode: TlsMode) -> TlsMode {
    match mode {
        TlsMode::StartTls => TlsMode::Implicit,
        TlsMode::Implicit => TlsMode::StartTls,
    }
}

/// Why one SMTP probe failed.
enum ProbeFailure {
    /// The certificate is not trusted.
    Certificate(CertificateProblem),
    /// No complete answer in time.
    Timeout,
    /// Anything else (text from the transport or the server; no credentials are involved).
    Other(String),
}

impl ProbeFailure {
    fn text(&self) -> String {
        match self {
            Self::Certificate(c) => c.summary(),
            Self::Timeout => "no SMTP answer in time".into(),
            Self::Other(t) => t.clone(),
        }
    }
}

/// Connect, TLS in `mode`, EHLO, NOOP, QUIT — no AUTH (no credentials are configured). The
/// conversation is [`SmtpTarget::probe`]'s, which reads at most
/// [`crate::smtp::MAX_SMTP_BYTES`] from the server (before TLS as well as after), as a login
/// does: a server that never ends its greeting line cannot fill the memory within the budget.
async fn probe(
    target: &SmtpTarget,
    mode: TlsMode,
    tls: &TlsParameters,
    budget: &Budget,
) -> Result<(), ProbeFailure> {
    let target = SmtpTarget {
        tls: mode,
        ..target.clone()
    };
    match budget.run(target.probe(tls)).await {
        None => Err(ProbeFailure::Timeout),
        Some(Ok(())) => Ok(()),
        Some(Err(ProbeError::Certificate(c))) => Err(ProbeFailure::Certificate(c)),
        Some(Err(ProbeError::Other { timeout: true, .. })) => Err(ProbeFailure::Timeout),
        Some(Err(ProbeError::Other { text, .. })) => Err(ProbeFailure::Other(text)),
    }
}

const PORTS: &str = "SES listens on 587, 25 and 2587 (STARTTLS) and on 465 and 2465 (implicit TLS)";

/// The `connect` check; `Ok` carries what `auth` needs.
async fn connect(
    target: &SmtpTarget,
    ca_file: &Result<(), String>,
    budget: &Budget,
) -> Result<(Check, TlsParameters), Check> {
    let id = CheckId::Connect;
    let at = target.endpoint();
    if let Err(e) = ca_file {
        return Err(Check::fail(
            id,
            e.clone(),
            "point the variable the finding names at a PEM file of CA certificates, or unset it (SSL_CERT_FILE: the system's roots are used; SMTP_CA_FILE: nothing is added to them)",
        ));
    }
    let tls = target.tls_parameters().map_err(|e| {
        Check::fail(
            id,
            format!("cannot set up TLS for {}: {e}", target.host),
            "check the host name, SSL_CERT_FILE and SMTP_CA_FILE (the system's CA store must load)",
        )
    })?;
    let secs = budget.next().as_secs();
    match budget
        .run(tokio::net::TcpStream::connect((
            target.host.as_str(),
            target.port,
        )))
        .await
    {
        None => {
            return Err(Check::fail(
                id,
                format!("no TCP answer from {at} within {secs}s"),
                format!(
                    "a firewall or security group drops the packets, or there is no route: a Lambda in a VPC needs a NAT gateway or an SES SMTP VPC endpoint; port 25 is throttled on AWS. {PORTS}"
                ),
            ));
        }
        Some(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Err(Check::fail(
                id,
                format!(
                    "{at} refused the connection: nothing listens on port {}",
                    target.port
                ),
                format!("check \"host\" and \"port\": {PORTS}"),
            ));
        }
        Some(Err(e)) => {
            return Err(Check::fail(
                id,
                format!("cannot open a TCP connection to {at}: {e}"),
                "check that the host name resolves (DNS) and the network path to it",
            ));
        }
        Some(Ok(_stream)) => {}
    }
    let mode = target.tls;
    let first = match probe(target, mode, &tls, budget).await {
        Ok(()) => {
            return Ok((
                Check::pass(
                    id,
                    format!(
                        "{at} answers SMTP with {}; its certificate is trusted for {}",
                        words(mode),
                        target.host
                    ),
                ),
                tls,
            ));
        }
        Err(ProbeFailure::Certificate(c)) => {
            return Err(Check::fail(id, c.summary(), c.fix()));
        }
        Err(f) => f,
    };
    let alt = other(mode);
    let what = match &first {
        ProbeFailure::Timeout => {
            format!(
                "TCP connects but {} gets no SMTP answer within {secs}s",
                words(mode)
            )
        }
        f => format!("{} failed: {}", words(mode), f.text()),
    };
    let check = match probe(target, alt, &tls, budget).await {
        Ok(()) | Err(ProbeFailure::Certificate(_)) => Check::fail(
            id,
            format!(
                "at {at} {what}; {} does answer: the port speaks {}",
                words(alt),
                words(alt)
            ),
            format!(
                "set \"tls\": \"{alt}\" in the document (or use the port for {}: {})",
                words(mode),
                if mode == TlsMode::StartTls {
                    "587"
                } else {
                    "465"
                }
            ),
        ),
        Err(second) => Check::fail(
            id,
            format!(
                "at {at} {what}; {} does not answer either ({})",
                words(alt),
                second.text()
            ),
            format!(
                "check that {at} is an SMTP server and that nothing in between (proxy, firewall) cuts the conversation. {PORTS}"
            ),
        ),
    };
    Err(check)
}

/// The `connect` and `auth` checks at one region's endpoint, with that region's password.
pub(crate) async fn connect_and_auth(
    f: &Facts,
    site: &Site<'_>,
    endpoint_ok: bool,
    ca_file: &Result<(), String>,
    budget: Budget,
    evidence: &Evidence,
) -> (Check, Check) {
    let ep = &site.endpoint;
    let target = SmtpTarget {
        host: ep.host.clone(),
        port: ep.port,
        tls: ep.tls,
    };
    if !endpoint_ok {
        let why = "not tried: the endpoint check failed, and credentials go only to SES endpoints or hosts SMTP_ALLOWED_HOSTS allows";
        return (
            Check::skip(CheckId::Connect, why),
            Check::skip(CheckId::Auth, why),
        );
    }
    let (connect, tls) = match connect(&target, ca_file, &budget).await {
        Ok(ok) => ok,
        Err(check) => {
            return (
                check,
                Check::skip(CheckId::Auth, "not tried: the connect check failed"),
            );
        }
    };
    let (Raw::Text(user), Raw::Text(password)) = (&f.username, site.password) else {
        return (
            connect,
            Check::skip(
                CheckId::Auth,
                "no username and password to try (see username and password-format)",
            ),
        );
    };
    let bound = budget.next();
    if bound.is_zero() {
        return (
            connect,
            Check::skip(CheckId::Auth, "not tried: the run's time budget is spent"),
        );
    }
    let creds = SmtpCredentials {
        username: user.clone(),
        password: password.clone(),
    };
    let outcome = try_login(&target, &tls, &creds, bound).await;
    (connect, auth_check(&outcome, ep, evidence))
}

/// `auth` from the server's answer and what the earlier checks found.
pub(crate) fn auth_check(outcome: &LoginOutcome, doc: &RegionEndpoint, e: &Evidence) -> Check {
    let id = CheckId::Auth;
    let at = format!("{}:{}", doc.host, doc.port);
    let region = &doc.region;
    match outcome {
        LoginOutcome::Accepted => Check::pass(id, format!("235: {at} accepted the credentials")),
        LoginOutcome::Rejected(reply) => {
            let causes: Vec<&str> = e
                .failed_before
                .iter()
                .filter(|c| {
                    matches!(
                        c,
                        CheckId::Document
                            | CheckId::Username
                            | CheckId::PasswordFormat
                            | CheckId::PasswordDerivation
                            | CheckId::IamKey
                    )
                })
                .map(|c| c.as_str())
                .collect();
            if !causes.is_empty() {
                Check::fail(
                    id,
                    format!(
                        "535 from {at} ({reply}), as the failed checks explain: {}",
                        causes.join(", ")
                    ),
                    "apply the fixes of those checks, then run doctor again",
                )
            } else if e.derivation_passed && e.key_passed {
                Check::fail(
                    id,
                    format!(
                        "535 from {at} ({reply}) although the password is the right one for {region} and the key is Active: SES is not enabled for SMTP for this account in {region}, or the key was created minutes ago"
                    ),
                    format!(
                        "check that the account uses SES in {region} (SES console, that region: account dashboard, SMTP settings), or send through a region where it does (derive the password for that region); a brand-new key can need a few minutes"
                    ),
                )
            } else if !e.derivation_ran {
                Check::fail(
                    id,
                    format!(
                        "535 from {at} ({reply}): SES does not accept this key id and password for {region}"
                    ),
                    "run again with --secret-access-key-file to tell which password this is (and with AWS credentials for the IAM checks), or rotate the secret to get a fresh key and password",
                )
            } else {
                Check::fail(
                    id,
                    format!(
                        "535 from {at} ({reply}): SES does not accept this key id and password for {region}"
                    ),
                    format!(
                        "check that the account uses SES in {region}, and run with AWS credentials so the IAM checks can run; rotating the secret creates a fresh key and password"
                    ),
                )
            }
        }
        LoginOutcome::Temporary(reply) => Check::fail(
            id,
            format!("temporary failure from {at}: {reply}"),
            "try again in a few minutes; a lasting 454 means SES has trouble or throttles in this region",
        ),
        LoginOutcome::Refused(reply) => Check::fail(
            id,
            format!("{at} refused AUTH: {reply}"),
            "this is not a credentials rejection (535): check that the host is an SES SMTP endpoint and the account's SES status in that region",
        ),
        LoginOutcome::Untrusted(text) => Check::fail(
            id,
            text.split(". Fix: ").next().unwrap_or(text).to_owned(),
            text.split(". Fix: ")
                .nth(1)
                .unwrap_or("check SSL_CERT_FILE")
                .to_owned(),
        ),
        LoginOutcome::Unreachable(text) => Check::fail(
            id,
            format!("the login at {at} did not complete: {text}"),
            "run again; if it persists, see the connect check's advice",
        ),
        LoginOutcome::SendNotAuthorized(text) | LoginOutcome::SendFailed(text) => {
            Check::fail(id, text.clone(), "see the iam-permission check")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Status;
    use super::*;

    fn doc() -> RegionEndpoint {
        crate::secret::SecretDocument::parse(
            r#"{"iam_user":"u","host":"email-smtp.eu-west-1.amazonaws.com"}"#,
        )
        .unwrap()
        .endpoints()
        .remove(0)
    }

    fn ev(failed: &[CheckId], derivation: bool, ran: bool, key: bool) -> Evidence {
        Evidence {
            failed_before: failed.to_vec(),
            derivation_passed: derivation,
            derivation_ran: ran,
            key_passed: key,
        }
    }

    #[test]
    fn a_535_is_explained_by_what_was_found_before() {
        let r = LoginOutcome::Rejected("535 Authentication Credentials Invalid".into());
        for (e, needle) in [
            (
                ev(
                    &[CheckId::Username, CheckId::IamPermission],
                    false,
                    true,
                    false,
                ),
                "explain: username",
            ),
            (
                ev(&[], true, true, true),
                "not enabled for SMTP for this account in eu-west-1",
            ),
            (ev(&[], false, false, false), "--secret-access-key-file"),
            (
                ev(&[CheckId::IamPermission], true, true, false),
                "uses SES in eu-west-1",
            ),
        ] {
            let c = auth_check(&r, &doc(), &e);
            assert_eq!(c.status, Status::Fail);
            assert!(
                c.summary.contains(needle) || c.fix.as_deref().unwrap().contains(needle),
                "{needle}: {c:?}"
            );
        }
    }

    #[test]
    fn other_outcomes_map_to_checks() {
        let e = ev(&[], false, false, false);
        assert_eq!(
            auth_check(&LoginOutcome::Accepted, &doc(), &e).status,
            Status::Pass
        );
        for o in [
            LoginOutcome::Temporary("454 4.7.0 Temporary authentication failure".into()),
            LoginOutcome::Refused("530 no".into()),
            LoginOutcome::Unreachable("timed out".into()),
        ] {
            let c = auth_check(&o, &doc(), &e);
            assert_eq!(c.status, Status::Fail, "{o:?}");
            assert!(c.fix.is_some());
        }
    }
}
