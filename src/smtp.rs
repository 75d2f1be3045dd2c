//! One SMTP login (and optional test send) against the SES SMTP interface.
//!
//! TLS is never skipped: STARTTLS is *required* (a server that does not offer it gets no
//! credentials) or the connection is TLS from the first byte, and certificates are always
//! verified against the system roots (which honour `SSL_CERT_FILE`). Every exchange is wrapped
//! in `tokio::time::timeout`, and every connection reads at most [`MAX_SMTP_BYTES`] from the
//! server, counted on the TCP stream (so before TLS as well as after): lettre's line reader
//! checks a line's length only once the line has ended, so a server that never ends a line
//! could otherwise fill the memory within the timeout.
//!
//! Outcomes are classified for the retry loop: 535 is a rejection (retried on a brand-new key,
//! which may not have propagated), 4xx is temporary (retried), anything that prevents talking
//! to the server at all is "unreachable" (not worth retrying for long).

use std::fmt;
use std::time::Duration;

use std::pin::Pin;
use std::task::{Context, Poll};

use lettre::Message;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
// `AsyncNetworkStream` is deprecated as "not meant to be made public", but it is lettre's
// only way to put its verified TLS over a stream of ours (implicit TLS over the byte-bounded
// TCP stream). Pinned by Cargo.lock; a lettre that hides it fails to compile here, loudly.
#[allow(deprecated)]
use lettre::transport::smtp::client::AsyncNetworkStream;
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt};

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
    /// No SMTP conversation possible: refused, DNS, timeout, TLS set-up.
    Unreachable(String),
    /// TLS failed because the server's certificate is not trusted (unknown CA, a name the
    /// certificate does not hold, expired): configuration, not the network; no credentials
    /// were sent. The text starts with "certificate not trusted for <host>" and names the fix.
    Untrusted(String),
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
            Self::Untrusted(_) => "certificate not trusted",
            Self::Unreachable(_) => "unreachable",
            Self::SendNotAuthorized(_) => "send not authorized",
            Self::SendFailed(_) => "send failed",
        }
    }

    /// Whether TLS failed because the server's certificate is not trusted (unknown CA, a name
    /// the certificate does not hold, expired): a configuration problem, not the network.
    #[must_use]
    pub fn is_certificate_failure(&self) -> bool {
        matches!(self, Self::Untrusted(_))
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
            | Self::Untrusted(s)
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

    /// The TLS parameters for this host, trusting [`crate::roots::smtp_trusted`] (the roots
    /// plus `SMTP_CA_FILE`): built on the first connection to the host and kept for the life
    /// of the process.
    ///
    /// # Errors
    /// When no root certificate can be loaded or the host is not a valid TLS name.
    pub fn tls_parameters(&self) -> Result<TlsParameters, String> {
        // One TLS configuration per host for the life of the process (a warm sandbox tests the
        // same endpoints rotation after rotation): the root store is built once per host.
        static BY_HOST: std::sync::Mutex<Vec<(String, TlsParameters)>> =
            std::sync::Mutex::new(Vec::new());
        if let Ok(cache) = BY_HOST.lock()
            && let Some((_, tls)) = cache.iter().find(|(h, _)| *h == self.host)
        {
            return Ok(tls.clone());
        }
        let mut builder = TlsParameters::builder(self.host.clone())
            .certificate_store(lettre::transport::smtp::client::CertificateStore::None);
        for der in crate::roots::smtp_trusted()? {
            let cert = lettre::transport::smtp::client::Certificate::from_der(der)
                .map_err(|e| describe(&e))?;
            builder = builder.add_root_certificate(cert);
        }
        let tls = builder.build().map_err(|e| describe(&e))?;
        if let Ok(mut cache) = BY_HOST.lock() {
            cache.push((self.host.clone(), tls.clone()));
        }
        Ok(tls)
    }

    /// Connects without credentials, sets up TLS in the target's mode, says EHLO and NOOP,
    /// and quits: what `doctor`'s `connect` check asks of a server. Reads are bounded as a
    /// login's are ([`MAX_SMTP_BYTES`], before TLS as well as after); the caller bounds the
    /// time.
    ///
    /// # Errors
    /// Why no SMTP conversation over verified TLS could be had (text from the transport or
    /// the server; no credentials are involved).
    pub(crate) async fn probe(&self, tls: &TlsParameters) -> Result<(), ProbeError> {
        let probe = async {
            let mut conn = self.open(tls).await?;
            // lettre's `test_connection`: a NOOP whose answer does not matter, then QUIT.
            let _ = conn.test_connected().await;
            conn.quit().await?;
            Ok::<_, SessionError>(())
        };
        probe.await.map_err(|e| match e {
            SessionError::Smtp(e) => CertificateProblem::find(&e, &self.host).map_or_else(
                || ProbeError::Other {
                    text: describe(&e),
                    timeout: e.is_timeout(),
                },
                ProbeError::Certificate,
            ),
            SessionError::Connect(e) => ProbeError::Other {
                text: format!("cannot connect: {}", describe(&e)),
                timeout: e.kind() == std::io::ErrorKind::TimedOut,
            },
            SessionError::NoStartTls => ProbeError::Other {
                text: "the server does not offer STARTTLS".into(),
                timeout: false,
            },
        })
    }

    /// Connects, sets up TLS (STARTTLS or from the first byte) and says EHLO, reading at most
    /// [`MAX_SMTP_BYTES`] from the server.
    async fn open(&self, tls: &TlsParameters) -> Result<AsyncSmtpConnection, SessionError> {
        let hello = ClientId::default();
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(SessionError::Connect)?;
        let bounded = Bounded::new(tcp, MAX_SMTP_BYTES);
        let conn = match self.tls {
            TlsMode::StartTls => {
                let mut conn =
                    AsyncSmtpConnection::connect_with_transport(Box::new(bounded), &hello).await?;
                if !conn.can_starttls() {
                    conn.abort().await;
                    return Err(SessionError::NoStartTls);
                }
                conn.starttls(tls.clone(), &hello).await?;
                conn
            }
            TlsMode::Implicit => {
                #[allow(deprecated)]
                let mut stream = AsyncNetworkStream::use_existing_tokio1(Box::new(bounded));
                stream.upgrade_tls(tls.clone()).await?;
                let wrapped = TlsOverBounded(stream.compat());
                AsyncSmtpConnection::connect_with_transport(Box::new(wrapped), &hello).await?
            }
        };
        Ok(conn)
    }

    /// Connects, sets up TLS (STARTTLS or from the first byte), says EHLO and logs in.
    async fn session(
        &self,
        tls: &TlsParameters,
        creds: &SmtpCredentials,
    ) -> Result<AsyncSmtpConnection, SessionError> {
        let mut conn = self.open(tls).await?;
        let credentials =
            Credentials::new(creds.username.clone(), creds.password.expose().to_owned());
        let auth = conn
            .auth(&[Mechanism::Plain, Mechanism::Login], &credentials)
            .await;
        drop(credentials);
        match auth {
            Ok(_) => Ok(conn),
            Err(e) => {
                conn.abort().await;
                Err(SessionError::Smtp(e))
            }
        }
    }
}

/// The most bytes one SMTP connection reads from the server, TLS records included: a
/// certificate chain and a few replies are a few tens of kilobytes.
pub const MAX_SMTP_BYTES: usize = 1 << 20;

/// A TCP stream that refuses to read more than a fixed number of bytes in all.
#[derive(Debug)]
struct Bounded {
    inner: tokio::net::TcpStream,
    left: usize,
}

impl Bounded {
    fn new(inner: tokio::net::TcpStream, limit: usize) -> Self {
        Self { inner, left: limit }
    }
}

impl AsyncRead for Bounded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.left == 0 {
            return Poll::Ready(Err(std::io::Error::other(format!(
                "the server sent more than {MAX_SMTP_BYTES} bytes; a real SMTP server never does"
            ))));
        }
        let mut chunk = [0u8; 8192];
        let max = chunk.len().min(buf.remaining()).min(self.left);
        let mut part = ReadBuf::new(&mut chunk[..max]);
        match Pin::new(&mut self.inner).poll_read(cx, &mut part) {
            Poll::Ready(Ok(())) => {
                let n = part.filled().len();
                buf.put_slice(part.filled());
                self.left -= n;
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl AsyncWrite for Bounded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for Bounded {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.inner.peer_addr()
    }
}

/// lettre's TLS stream over a [`Bounded`] TCP stream, seen again as a plain stream so that
/// lettre speaks SMTP inside it (implicit TLS: the handshake comes before the greeting).
#[derive(Debug)]
#[allow(deprecated)]
struct TlsOverBounded(Compat<AsyncNetworkStream>);

impl AsyncRead for TlsOverBounded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsOverBounded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, data)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for TlsOverBounded {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().peer_addr()
    }
}

/// Why [`SmtpTarget::probe`] failed.
#[derive(Debug)]
pub(crate) enum ProbeError {
    /// The server's certificate is not trusted.
    Certificate(CertificateProblem),
    /// Anything else: the transport's or the server's words, and whether it was a timeout.
    Other {
        /// What happened.
        text: String,
        /// The transport gave up waiting.
        timeout: bool,
    },
}

/// Why a session could not be had.
#[derive(Debug)]
enum SessionError {
    /// The TCP connection failed (refused, DNS, unreachable).
    Connect(std::io::Error),
    /// The server does not offer STARTTLS: no credentials are sent in the clear.
    NoStartTls,
    /// Anything lettre reports: TLS, SMTP replies, I/O inside the conversation.
    Smtp(lettre::transport::smtp::Error),
}

impl From<lettre::transport::smtp::Error> for SessionError {
    fn from(e: lettre::transport::smtp::Error) -> Self {
        Self::Smtp(e)
    }
}

impl SessionError {
    fn classify(&self, host: &str) -> LoginOutcome {
        match self {
            Self::Connect(e) => {
                LoginOutcome::Unreachable(format!("cannot connect: {}", describe(e)))
            }
            Self::NoStartTls => LoginOutcome::Unreachable(
                "the server does not offer STARTTLS, so no credentials were sent (an implicit-TLS port answers differently; check \"tls\" and the port)"
                    .into(),
            ),
            Self::Smtp(e) => classify_login_error(e, host),
        }
    }
}

/// The start of every "certificate not trusted" description, so callers can tell that case
/// from other failures to connect without a new [`LoginOutcome`] variant.
pub(crate) const CERTIFICATE_NOT_TRUSTED: &str = "certificate not trusted for ";

/// The causes of an error, outermost first, each printed once.
///
/// lettre's `Display` prints its source, `io::Error` prints the error it wraps, and lettre
/// sometimes wraps its own error again: printed naively, one cause appears two or three times
/// ("Connection error: Connection error: invalid peer certificate: …: invalid peer certificate:
/// …"). Each level contributes only what its text adds to its source's text, and a level that
/// adds the same as the one before is dropped. Errors here carry server replies and transport
/// errors, never credentials.
pub(crate) fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut texts = Vec::new();
    let mut level = Some(e);
    while let Some(err) = level {
        texts.push(err.to_string());
        level = err.source();
    }
    let mut parts: Vec<&str> = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        let own = texts
            .get(i + 1)
            .and_then(|next| text.strip_suffix(next.as_str()))
            .map_or(text.as_str(), |head| head.trim_end_matches([':', ' ']));
        if own.is_empty() || parts.last() == Some(&own) {
            continue;
        }
        parts.push(own);
    }
    parts.join(": ")
}

/// A server certificate this machine does not trust, found by walking the error chain (rustls
/// reports it as "invalid peer certificate: …", wrapped in an `io::Error`, wrapped in lettre's
/// connection error — with no SMTP status, so it looks like any failure to connect).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertificateProblem {
    /// The host name that was verified.
    pub host: String,
    /// What is wrong with the certificate, in words.
    pub why: &'static str,
    /// rustls's own words ("invalid peer certificate: UnknownIssuer").
    pub detail: String,
}

impl CertificateProblem {
    /// Finds a certificate failure anywhere in `e`'s chain.
    pub(crate) fn find(e: &(dyn std::error::Error + 'static), host: &str) -> Option<Self> {
        let mut level = Some(e);
        let mut found = None;
        while let Some(err) = level {
            let text = err.to_string();
            if let Some(at) = text.find("invalid peer certificate") {
                // The innermost mention is the most precise; keep walking.
                found = Some(text[at..].to_owned());
            }
            level = err.source();
        }
        let detail = found?;
        let why = if detail.contains("UnknownIssuer") {
            "it is not signed by a CA this machine trusts"
        } else if detail.contains("NotValidForName") || detail.contains("not valid for name") {
            "it does not name this host"
        } else if detail.contains("xpired") {
            "it has expired"
        } else {
            "it was refused"
        };
        Some(Self {
            host: host.to_owned(),
            why,
            detail,
        })
    }

    /// "certificate not trusted for HOST: why (detail)".
    pub(crate) fn summary(&self) -> String {
        format!(
            "{CERTIFICATE_NOT_TRUSTED}{}: {} ({}); TLS verification failed, no credentials were sent",
            self.host, self.why, self.detail
        )
    }

    /// What to do.
    pub(crate) fn fix(&self) -> String {
        format!(
            "if the server uses a private CA (or a TLS-inspecting proxy sits in between), point SMTP_CA_FILE at a PEM file holding that CA: it is added to the trusted roots for SMTP only (SSL_CERT_FILE would replace the roots for every connection, AWS's included); connect with the host name on the server's certificate (now {})",
            self.host
        )
    }
}

impl fmt::Display for CertificateProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}. Fix: {}", self.summary(), self.fix())
    }
}

/// Whether SSL_CERT_FILE (when set) names a readable file with at least one PEM certificate.
/// It replaces the system roots for every TLS connection (SMTP, and the AWS SDK's HTTPS
/// client, which panics on a file without certificates), so it is checked before either is
/// used. The same rule as the Lambda's configuration check.
///
/// # Errors
/// A message naming the variable and what to do.
pub(crate) fn check_ssl_cert_file() -> Result<(), String> {
    match std::env::var_os("SSL_CERT_FILE").filter(|p| !p.is_empty()) {
        Some(path) => check_ca_file(std::path::Path::new(&path)),
        None => Ok(()),
    }
}

/// Whether SMTP_CA_FILE (when set) names a readable file with at least one PEM certificate:
/// its certificates are added to the roots SMTP trusts ([`crate::roots::smtp_trusted`]).
///
/// # Errors
/// A message naming the variable and what to do.
pub(crate) fn check_smtp_ca_file() -> Result<(), String> {
    let var = crate::roots::SMTP_CA_FILE;
    match std::env::var_os(var).filter(|p| !p.is_empty()) {
        Some(path) => match std::fs::read(&path) {
            Ok(pem) if !crate::roots::pem_certificates(&pem).is_empty() => Ok(()),
            Ok(_) => Err(format!(
                "{var} names a file with no PEM certificate; point it at the PEM file of the relay's CA or unset it"
            )),
            Err(e) => Err(format!(
                "{var} cannot be read ({}); point it at the PEM file of the relay's CA or unset it",
                e.kind()
            )),
        },
        None => Ok(()),
    }
}

/// Checks that a CA file holds at least one PEM certificate (shared by the Lambda's start-up
/// check and the CLI's).
pub(crate) fn check_ca_file(path: &std::path::Path) -> Result<(), String> {
    // The same reader as the trust store this guards ([`crate::roots`]): a file that passes
    // here yields certificates there.
    match std::fs::read(path) {
        Ok(pem) if !crate::roots::pem_certificates(&pem).is_empty() => Ok(()),
        Ok(_) => Err(
            "SSL_CERT_FILE names a file with no PEM certificate; point it at a CA bundle or unset it"
                .into(),
        ),
        Err(e) => Err(format!(
            "SSL_CERT_FILE cannot be read ({}); point it at a CA bundle or unset it",
            e.kind()
        )),
    }
}

fn classify_login_error(e: &lettre::transport::smtp::Error, host: &str) -> LoginOutcome {
    let text = describe(e);
    match e.status().map(u16::from) {
        Some(535) => LoginOutcome::Rejected(text),
        Some(code) if (500..600).contains(&code) => LoginOutcome::Refused(text),
        Some(_) => LoginOutcome::Temporary(text),
        None if e.is_client() => LoginOutcome::Refused(format!(
            "the server offers no AUTH mechanism this client speaks (PLAIN, LOGIN): {text}"
        )),
        None => {
            if let Some(cert) = CertificateProblem::find(e, host) {
                LoginOutcome::Untrusted(cert.to_string())
            } else if e.is_tls() {
                LoginOutcome::Unreachable(format!("TLS failed: {text}"))
            } else if e.is_timeout() {
                LoginOutcome::Unreachable(format!("timed out: {text}"))
            } else {
                LoginOutcome::Unreachable(text)
            }
        }
    }
}

/// One login: connect, TLS, EHLO, AUTH, QUIT — bounded by `timeout` as a whole.
pub async fn try_login(
    target: &SmtpTarget,
    tls: &TlsParameters,
    creds: &SmtpCredentials,
    timeout: Duration,
) -> LoginOutcome {
    let login = async {
        let mut conn = target.session(tls, creds).await?;
        // A polite end; the login already succeeded, so a failed QUIT changes nothing.
        let _ = conn.quit().await;
        Ok::<_, SessionError>(())
    };
    match tokio::time::timeout(timeout, login).await {
        Err(_) => timed_out(timeout),
        Ok(Ok(())) => LoginOutcome::Accepted,
        Ok(Err(e)) => e.classify(&target.host),
    }
}

fn timed_out(timeout: Duration) -> LoginOutcome {
    LoginOutcome::Unreachable(format!(
        "no complete SMTP answer within {}s (a STARTTLS/implicit TLS mismatch with the port looks like this)",
        timeout.as_secs()
    ))
}

/// A login followed, when configured, by a real message on the same connection. Each of the
/// two exchanges is bounded by `per_exchange` and neither runs past `until`. The message
/// names the key id and nothing secret.
pub async fn try_login_and_send(
    target: &SmtpTarget,
    tls: &TlsParameters,
    creds: &SmtpCredentials,
    per_exchange: Duration,
    until: std::time::Instant,
    send: Option<&TestSend>,
) -> LoginOutcome {
    let bound = || per_exchange.min(until.saturating_duration_since(std::time::Instant::now()));
    let Some(send) = send else {
        return try_login(target, tls, creds, bound()).await;
    };
    let message = match build_test_message(send, &creds.username) {
        Ok(m) => m,
        Err(e) => return LoginOutcome::SendFailed(format!("cannot build the test message: {e}")),
    };
    let timeout = bound();
    let mut conn = match tokio::time::timeout(timeout, target.session(tls, creds)).await {
        Err(_) => return timed_out(timeout),
        Ok(Err(e)) => return e.classify(&target.host),
        Ok(Ok(conn)) => conn,
    };
    let timeout = bound();
    let sent =
        tokio::time::timeout(timeout, conn.send(message.envelope(), &message.formatted())).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), conn.quit()).await;
    match sent {
        Err(_) => LoginOutcome::SendFailed(format!(
            "no answer to the test message within {}s",
            timeout.as_secs()
        )),
        Ok(Ok(_)) => LoginOutcome::Accepted,
        Ok(Err(e)) => {
            if let Some(cert) = CertificateProblem::find(&e, &target.host) {
                return LoginOutcome::Untrusted(cert.to_string());
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as StdError;

    /// An error that prints its source after its own text, as lettre's does.
    #[derive(Debug)]
    struct Wrap(&'static str, Box<dyn StdError + Send + Sync>);

    impl fmt::Display for Wrap {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{}: {}", self.0, self.1)
        }
    }

    impl StdError for Wrap {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(self.1.as_ref())
        }
    }

    /// What rustls says, without rustls: the text is the only thing the classification reads.
    #[derive(Debug)]
    struct Leaf(&'static str);

    impl fmt::Display for Leaf {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl StdError for Leaf {}

    /// lettre's connection error around lettre's connection error around an io::Error around
    /// rustls's: the chain seen from a Postfix server with an unknown CA.
    fn chain(leaf: &'static str) -> Wrap {
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, Leaf(leaf));
        Wrap(
            "Connection error",
            Box::new(Wrap("Connection error", Box::new(io))),
        )
    }

    #[test]
    fn describe_prints_each_cause_once() {
        let e = chain("invalid peer certificate: UnknownIssuer");
        assert_eq!(
            describe(&e),
            "Connection error: invalid peer certificate: UnknownIssuer"
        );
        assert_eq!(describe(&Leaf("alone")), "alone");
    }

    #[test]
    fn certificate_failures_are_found_anywhere_in_the_chain() {
        for (leaf, why) in [
            (
                "invalid peer certificate: UnknownIssuer",
                "not signed by a CA",
            ),
            ("invalid peer certificate: NotValidForName", "does not name"),
            (
                "invalid peer certificate: certificate not valid for name \"mail.example.com\"; certificate is only valid for localhost",
                "does not name",
            ),
            ("invalid peer certificate: Expired", "expired"),
        ] {
            let c = CertificateProblem::find(&chain(leaf), "mail.example.com").expect(leaf);
            assert!(c.why.contains(why), "{leaf}: {}", c.why);
            let text = c.to_string();
            assert!(
                text.starts_with("certificate not trusted for mail.example.com: "),
                "{text}"
            );
            assert_eq!(
                text.matches("invalid peer certificate").count(),
                1,
                "{text}"
            );
            assert!(text.contains("SSL_CERT_FILE"), "{text}");
        }
        assert!(CertificateProblem::find(&chain("connection refused"), "h").is_none());
    }

    #[test]
    fn a_certificate_failure_is_not_just_unreachable() {
        let cert = CertificateProblem::find(&chain("invalid peer certificate: UnknownIssuer"), "h")
            .expect("found");
        let o = LoginOutcome::Untrusted(cert.to_string());
        assert!(o.is_certificate_failure());
        assert_eq!(o.summary(), "certificate not trusted");
        let o = LoginOutcome::Unreachable("connection refused".into());
        assert!(!o.is_certificate_failure());
        assert_eq!(o.summary(), "unreachable");
    }
}
