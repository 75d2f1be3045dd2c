//! One SMTP login (and optional test send) against the SES SMTP interface.
//!
//! TLS is never skipped: STARTTLS is *required* (`Tls::Required`) or the connection is TLS
//! from the first byte (`Tls::Wrapper`), and certificates are always verified against the
//! system roots (which honour `SSL_CERT_FILE`). lettre's own timeout bounds only the TCP
//! connect, so every exchange is also wrapped in `tokio::time::timeout`.
//!
//! Outcomes are classified for the retry loop: 535 is a rejection (retried on a brand-new key,
//! which may not have propagated), 4xx is temporary (retried), anything that prevents talking
//! to the server at all is "unreachable" (not worth retrying for long).

use std::fmt;
use std::time::Duration;

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::TestSend;
use crate::secret::{SecretDocument, SmtpCredentials, TlsMode};

/// Where to log in: host, port and TLS mode from the secret document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpTarget {
    /// SMTP host.
    pub host: String,
    /// SMTP port.
    pub port: u16,
    /// TLS mode.
    pub tls: TlsMode,
}

/// The result of one attempt. Texts carry server replies and transport errors, never
/// credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginOutcome {
    /// 235: the credentials work (and the test message, if any, was accepted).
    Accepted,
    /// 535 Authentication Credentials Invalid: worth retrying on a brand-new key.
    Rejected(String),
    /// Any other refusal of AUTH (another 5xx, no common mechanism): retrying will not help.
    Refused(String),
    /// 4xx on AUTH (454 Temporary authentication failure), or the server went away mid-way.
    Temporary(String),
    /// No SMTP conversation possible: refused, DNS, timeout, TLS.
    Unreachable(String),
    /// AUTH passed; the test send got a 554 "not authorized" reply.
    SendNotAuthorized(String),
    /// AUTH passed; the test send failed otherwise.
    SendFailed(String),
}

impl LoginOutcome {
    /// A short label for logs.
    #[must_use]
    pub fn summary(&self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Rejected(_) => "rejected",
            Self::Refused(_) => "refused",
            Self::Temporary(_) => "temporary failure",
            Self::Unreachable(_) => "unreachable",
            Self::SendNotAuthorized(_) => "send not authorized",
            Self::SendFailed(_) => "send failed",
        }
    }
}

impl fmt::Display for LoginOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Accepted => f.write_str("235 Authentication successful"),
            Self::Rejected(s)
            | Self::Refused(s)
            | Self::Temporary(s)
            | Self::Unreachable(s)
            | Self::SendNotAuthorized(s)
            | Self::SendFailed(s) => f.write_str(s),
        }
    }
}

impl SmtpTarget {
    /// The target a secret document names.
    #[must_use]
    pub fn from_document(doc: &SecretDocument) -> Self {
        Self {
            host: doc.host.clone(),
            port: doc.port,
            tls: doc.tls,
        }
    }

    /// `host:port`, for messages.
    #[must_use]
    pub fn endpoint(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Builds the TLS parameters once (loading the root store is not free).
    ///
    /// # Errors
    /// When no root certificates can be loaded or the host is not a valid TLS name.
    pub fn tls_parameters(&self) -> Result<TlsParameters, lettre::transport::smtp::Error> {
        TlsParameters::new(self.host.clone())
    }

    fn transport(
        &self,
        tls: &TlsParameters,
        creds: &SmtpCredentials,
        timeout: Duration,
    ) -> AsyncSmtpTransport<Tokio1Executor> {
        let tls = match self.tls {
            TlsMode::StartTls => Tls::Required(tls.clone()),
            TlsMode::Implicit => Tls::Wrapper(tls.clone()),
        };
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(self.host.clone())
            .port(self.port)
            .tls(tls)
            .timeout(Some(timeout))
            .credentials(Credentials::new(
                creds.username.clone(),
                creds.password.expose().to_owned(),
            ))
            .authentication(vec![Mechanism::Plain, Mechanism::Login])
            .build()
    }
}

/// Describes a lettre error without anything of the request (lettre's errors carry only
/// server replies and transport errors).
fn describe(e: &lettre::transport::smtp::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    // lettre's Display already prints its direct source; add the deeper causes (io, rustls).
    if let Some(s) = source {
        source = s.source();
    }
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn classify_login_error(e: &lettre::transport::smtp::Error) -> LoginOutcome {
    let text = describe(e);
    match e.status().map(u16::from) {
        Some(535) => LoginOutcome::Rejected(text),
        Some(code) if (500..600).contains(&code) => LoginOutcome::Refused(text),
        Some(_) => LoginOutcome::Temporary(text),
        None if e.is_client() => LoginOutcome::Refused(format!(
            "the server offers no AUTH mechanism this client speaks (PLAIN, LOGIN): {text}"
        )),
        None if e.is_tls() => LoginOutcome::Unreachable(format!("TLS failed: {text}")),
        None if e.is_timeout() => LoginOutcome::Unreachable(format!("timed out: {text}")),
        None => LoginOutcome::Unreachable(text),
    }
}

/// One login: connect, TLS, EHLO, AUTH, QUIT — bounded by `timeout` as a whole.
pub async fn try_login(
    target: &SmtpTarget,
    tls: &TlsParameters,
    creds: &SmtpCredentials,
    timeout: Duration,
) -> LoginOutcome {
    let transport = target.transport(tls, creds, timeout);
    match tokio::time::timeout(timeout, transport.test_connection()).await {
        Err(_) => LoginOutcome::Unreachable(format!(
            "no complete SMTP answer within {}s (a STARTTLS/implicit TLS mismatch with the port looks like this)",
            timeout.as_secs()
        )),
        Ok(Ok(true)) => LoginOutcome::Accepted,
        Ok(Ok(false)) => {
            LoginOutcome::Temporary("the server closed the connection after AUTH".into())
        }
        Ok(Err(e)) => classify_login_error(&e),
    }
}

/// A login followed by a real message, when configured. Each exchange is bounded by
/// `per_exchange` and neither runs past `until`. The message names the key id and nothing
/// secret.
pub async fn try_login_and_send(
    target: &SmtpTarget,
    tls: &TlsParameters,
    creds: &SmtpCredentials,
    per_exchange: Duration,
    until: std::time::Instant,
    send: Option<&TestSend>,
) -> LoginOutcome {
    let bound = || per_exchange.min(until.saturating_duration_since(std::time::Instant::now()));
    let login = try_login(target, tls, creds, bound()).await;
    let Some(send) = send else {
        return login;
    };
    if login != LoginOutcome::Accepted {
        return login;
    }
    let message = match build_test_message(send, &creds.username) {
        Ok(m) => m,
        Err(e) => return LoginOutcome::SendFailed(format!("cannot build the test message: {e}")),
    };
    let timeout = bound();
    let transport = target.transport(tls, creds, timeout);
    match tokio::time::timeout(timeout, transport.send(message)).await {
        Err(_) => LoginOutcome::SendFailed(format!(
            "no answer to the test message within {}s",
            timeout.as_secs()
        )),
        Ok(Ok(_)) => LoginOutcome::Accepted,
        Ok(Err(e)) => {
            let text = describe(&e);
            match e.status().map(u16::from) {
                Some(535) => LoginOutcome::Rejected(text),
                Some(554) if text.contains("not authorized") => {
                    LoginOutcome::SendNotAuthorized(text)
                }
                Some(c) if (400..500).contains(&c) => LoginOutcome::Temporary(text),
                _ => LoginOutcome::SendFailed(text),
            }
        }
    }
}

fn build_test_message(send: &TestSend, key_id: &str) -> Result<Message, String> {
    Message::builder()
        .from(send.from.clone())
        .to(send.to.clone())
        .subject("ses-smtp-rotator: test of rotated SES SMTP credentials")
        .body(format!(
            "This message was sent by ses-smtp-rotator's testSecret step to prove that SES accepts\n\
             mail from access key {key_id} before it becomes the current SMTP credential.\n"
        ))
        .map_err(|e| e.to_string())
}
