//! `ses-smtp-rotator doctor`: why does SES answer `535 Authentication Credentials Invalid`?
//!
//! Looks at everything a person has — the secret document (from Secrets Manager or stdin),
//! optionally the key's secret access key, IAM, and the SMTP endpoint itself — and runs a fixed
//! list of checks, each with a stable id, in this order: `document`, `username`,
//! `password-format`, `password-derivation`, `endpoint`, `iam-key`, `rotation-state`,
//! `iam-permission`, `connect`, `auth`, `url-encoding`. Every check reports `pass`, `fail`,
//! `warn` or `skip` (with the reason), a one-line finding and the fix. The run is `ok` exactly
//! when `auth` passed and no check failed.
//!
//! A document with `regions` has a password and an endpoint per region: the checks that
//! concern one region (`password-format`, `password-derivation`, `endpoint`, `connect`,
//! `auth`, `url-encoding`) run for each and report them in one entry, each region's finding
//! prefixed `[region]` and the worst status for the entry ([`regional`]), so `auth` passes only
//! when every region's login did.
//!
//! Fetch, decide, report: [`input`] reads the document leniently (a document the rotation
//! would refuse must still be diagnosed, field by field), [`checks`] holds the pure checks,
//! [`iam`] and [`net`] fetch what IAM and the SMTP server say and turn it into checks, and
//! [`render`] prints text or JSON. Nothing here prints a secret: the checks never put one into
//! a text, and [`Report::redact`] removes any that slipped in (the password, the secret key,
//! the passwords derived from it, and the base64 AUTH PLAIN and LOGIN forms).
//!
//! Bounded: every network step (Secrets Manager, IAM, each SMTP connection) gets at most the
//! per-step timeout and never runs past the run's overall budget ([`RUN_BUDGET`]).

mod checks;
mod iam;
mod input;
mod net;
mod regional;
mod render;
mod rotation;

use std::fmt;
use std::time::{Duration, Instant};

use crate::endpoint::AllowedHosts;
use crate::password::SecretAccessKey;

pub use render::use_colour;
pub use rotation::DEFAULT_STUCK_AFTER_HOURS;

/// The longest a whole run spends on the network, whatever the per-step timeout: a run
/// against an unreachable or silent host ends well within 30 s.
pub const RUN_BUDGET: Duration = Duration::from_secs(24);

/// The default bound on one network step (one AWS call, one SMTP connection).
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(8);

/// The checks, by stable id, in the order they run and are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckId {
    /// The document parses; the field at fault.
    Document,
    /// `username` is a long-term access key id.
    Username,
    /// `password` has the shape of a V4 SMTP password.
    PasswordFormat,
    /// `password` is derived from the given secret key for the endpoint's region.
    PasswordDerivation,
    /// The host is an SES endpoint (or allowed), its region, port and TLS mode agree.
    Endpoint,
    /// The key exists, is Active and belongs to `iam_user`.
    IamKey,
    /// With `--secret-id`: a rotation pending (stuck?), the key record, an old key in grace.
    RotationState,
    /// `iam_user` may `ses:SendRawEmail`.
    IamPermission,
    /// TCP and TLS in the configured mode.
    Connect,
    /// A real SMTP AUTH.
    Auth,
    /// `+`, `/`, `=` in the password need percent-encoding in URL-style settings.
    UrlEncoding,
}

impl CheckId {
    /// Every check, in order.
    pub const ALL: [Self; 11] = [
        Self::Document,
        Self::Username,
        Self::PasswordFormat,
        Self::PasswordDerivation,
        Self::Endpoint,
        Self::IamKey,
        Self::RotationState,
        Self::IamPermission,
        Self::Connect,
        Self::Auth,
        Self::UrlEncoding,
    ];

    /// The stable id, as printed and in `--json`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Document => "document",
            Self::Username => "username",
            Self::PasswordFormat => "password-format",
            Self::PasswordDerivation => "password-derivation",
            Self::Endpoint => "endpoint",
            Self::IamKey => "iam-key",
            Self::RotationState => "rotation-state",
            Self::IamPermission => "iam-permission",
            Self::Connect => "connect",
            Self::Auth => "auth",
            Self::UrlEncoding => "url-encoding",
        }
    }
}

impl fmt::Display for CheckId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Fine.
    Pass,
    /// A cause of failure, with its fix.
    Fail,
    /// Works, but worth knowing (does not change the exit status).
    Warn,
    /// Could not run (the reason says why); does not change the exit status.
    Skip,
}

impl Status {
    /// As in `--json`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::Warn => "warn",
            Self::Skip => "skip",
        }
    }
}

/// One check's finding. Texts never hold a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Which check.
    pub id: CheckId,
    /// Its result.
    pub status: Status,
    /// What was found (for `skip`: why it could not run).
    pub summary: String,
    /// What to do about it, when there is something to do.
    pub fix: Option<String>,
}

impl Check {
    pub(crate) fn pass(id: CheckId, summary: impl Into<String>) -> Self {
        Self {
            id,
            status: Status::Pass,
            summary: summary.into(),
            fix: None,
        }
    }

    pub(crate) fn fail(id: CheckId, summary: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            id,
            status: Status::Fail,
            summary: summary.into(),
            fix: Some(fix.into()),
        }
    }

    pub(crate) fn warn(id: CheckId, summary: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            id,
            status: Status::Warn,
            summary: summary.into(),
            fix: Some(fix.into()),
        }
    }

    pub(crate) fn skip(id: CheckId, reason: impl Into<String>) -> Self {
        Self {
            id,
            status: Status::Skip,
            summary: reason.into(),
            fix: None,
        }
    }

    /// A skip that says how to make the check run.
    pub(crate) fn skip_with(
        id: CheckId,
        reason: impl Into<String>,
        how: impl Into<String>,
    ) -> Self {
        Self {
            fix: Some(how.into()),
            ..Self::skip(id, reason)
        }
    }

    fn failed(&self) -> bool {
        self.status == Status::Fail
    }
}

/// Every check of one run, in [`CheckId::ALL`] order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The checks.
    pub checks: Vec<Check>,
}

impl Report {
    /// True exactly when `auth` passed and no check failed (`warn` and `skip` do not count).
    #[must_use]
    pub fn ok(&self) -> bool {
        let auth_passed = self
            .checks
            .iter()
            .any(|c| c.id == CheckId::Auth && c.status == Status::Pass);
        auth_passed && !self.checks.iter().any(Check::failed)
    }

    /// The process exit status: 0 when [`Report::ok`], else 1 (2 is for usage errors, which
    /// never get this far).
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        u8::from(!self.ok())
    }

    /// The report as text for a person: one line per check, then a verdict line.
    #[must_use]
    pub fn to_text(&self, colour: bool) -> String {
        render::text(self, colour)
    }

    /// The report as one JSON object: `{"ok", "checks": [{"id", "status", "summary", "fix"}]}`.
    #[must_use]
    pub fn to_json(&self) -> String {
        render::json(self)
    }

    /// Replaces every occurrence of any of `secrets` in the texts (a last guard: the checks do
    /// not put secrets into texts in the first place).
    fn redact(&mut self, secrets: &[String]) {
        for c in &mut self.checks {
            for s in secrets {
                c.summary = c.summary.replace(s.as_str(), "<redacted>");
                if let Some(f) = &mut c.fix {
                    *f = f.replace(s.as_str(), "<redacted>");
                }
            }
        }
    }
}

/// Where the secret document comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Secrets Manager, through the SDK's standard chain.
    SecretId {
        /// Name or ARN.
        id: String,
        /// The version stage to read (AWSCURRENT by default).
        stage: String,
    },
    /// A document given directly (read from stdin or a file by the CLI).
    Document(DocumentText),
}

/// A secret document's text. `Debug` does not show it (it holds a password).
#[derive(Clone, PartialEq, Eq)]
pub struct DocumentText(pub String);

impl fmt::Debug for DocumentText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DocumentText(<{} bytes>)", self.0.len())
    }
}

/// What `doctor` is given.
#[derive(Debug, Clone)]
pub struct Options {
    /// The document's source.
    pub source: Source,
    /// The key's secret access key (from `--secret-access-key-file`): `Err` says why the file
    /// does not hold one (without its content).
    pub secret_access_key: Option<Result<SecretAccessKey, String>>,
    /// Bound on each network step.
    pub step_timeout: Duration,
    /// A rotation pending longer than this is reported stuck (`rotation-state`).
    pub stuck_after: Duration,
    /// `SMTP_ALLOWED_HOSTS` as parsed (or why it could not be).
    pub allowed_hosts: Result<AllowedHosts, String>,
    /// Whether `SSL_CERT_FILE` is usable (`Err`: why not).
    pub ca_file: Result<(), String>,
    /// Whether `SMTP_CA_FILE` (extra CAs for SMTP only) is usable (`Err`: why not).
    pub smtp_ca_file: Result<(), String>,
}

impl Options {
    /// Options for `source`, with the environment (`SMTP_ALLOWED_HOSTS`, `SSL_CERT_FILE`,
    /// `SMTP_CA_FILE`) read now and the default step timeout.
    #[must_use]
    pub fn from_env(source: Source) -> Self {
        let allowed_hosts = match std::env::var("SMTP_ALLOWED_HOSTS") {
            Ok(v) => AllowedHosts::parse(&v).map_err(|e| format!("SMTP_ALLOWED_HOSTS: {e}")),
            Err(_) => Ok(AllowedHosts::default()),
        };
        Self {
            source,
            secret_access_key: None,
            step_timeout: DEFAULT_STEP_TIMEOUT,
            stuck_after: Duration::from_secs_f64(DEFAULT_STUCK_AFTER_HOURS * 3600.0),
            allowed_hosts,
            ca_file: crate::smtp::check_ssl_cert_file(),
            smtp_ca_file: crate::smtp::check_smtp_ca_file(),
        }
    }
}

/// The clock of one run: each network step gets the step timeout, cut to what is left of
/// [`RUN_BUDGET`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    step: Duration,
    end: Instant,
}

impl Budget {
    fn new(step: Duration) -> Self {
        Self {
            step,
            end: Instant::now() + RUN_BUDGET,
        }
    }

    /// The bound for the next network step (zero when the budget is spent).
    pub(crate) fn next(&self) -> Duration {
        self.step
            .min(self.end.saturating_duration_since(Instant::now()))
    }

    /// Runs `fut` within [`Budget::next`]; `None` when it did not finish in time.
    pub(crate) async fn run<F: std::future::Future>(&self, fut: F) -> Option<F::Output> {
        let bound = self.next();
        if bound.is_zero() {
            return None;
        }
        tokio::time::timeout(bound, fut).await.ok()
    }
}

/// Runs every check and returns the report (secrets redacted).
pub async fn run(options: Options) -> Report {
    let budget = Budget::new(options.step_timeout);
    let mut aws = iam::Aws::new(&options, budget);

    // Fetch the document.
    let (text, arn, fetch_failure) = match &options.source {
        Source::Document(d) => (Some(d.0.clone()), None, None),
        Source::SecretId { id, stage } => match aws.secret_string(id, stage).await {
            Ok((t, arn)) => (Some(t), Some(arn.unwrap_or_else(|| id.clone())), None),
            Err(e) => (None, None, Some(e)),
        },
    };
    let facts = text.as_deref().map(input::Facts::read);
    let key = options.secret_access_key.as_ref();

    let mut out = Vec::with_capacity(CheckId::ALL.len());
    let document = match (&facts, fetch_failure) {
        (Some(f), _) => checks::document(f),
        (None, Some((summary, fix))) => Check::fail(CheckId::Document, summary, fix),
        (None, None) => Check::fail(
            CheckId::Document,
            "no secret document",
            "give --secret-id or --document -",
        ),
    };
    out.push(document);
    let Some(facts) = facts.filter(input::Facts::is_object) else {
        for id in &CheckId::ALL[1..] {
            out.push(Check::skip(
                *id,
                "the secret document could not be read (see document)",
            ));
        }
        return Report { checks: out };
    };

    // Each region of the document: the primary, then those `regions` lists.
    let sites = facts.sites();
    let labelled = facts.regional();
    let per_region = |f: &dyn Fn(&input::Site<'_>) -> Check| -> Vec<(String, Check)> {
        sites
            .iter()
            .map(|s| (s.endpoint.region.to_string(), f(s)))
            .collect()
    };

    let (username, key_id) = checks::username(&facts);
    out.push(username);
    let formats = if sites.is_empty() {
        vec![(String::new(), checks::password_format(&facts))]
    } else {
        per_region(&|s| {
            checks::password_format_of(&facts, s.password, Some(&s.endpoint.region), s.primary)
        })
    };
    out.push(regional::combine(
        CheckId::PasswordFormat,
        formats.clone(),
        labelled,
    ));
    let derivations = if sites.is_empty() {
        vec![(String::new(), checks::password_derivation(&facts, key))]
    } else {
        per_region(&|s| {
            checks::password_derivation_of(s.password_text(), Some(&s.endpoint.region), key)
        })
    };
    out.push(regional::combine(
        CheckId::PasswordDerivation,
        derivations.clone(),
        labelled,
    ));
    let endpoints = if sites.is_empty() {
        vec![(
            String::new(),
            checks::endpoint(&facts, &options.allowed_hosts),
        )]
    } else {
        per_region(&|s| {
            let conflict = if s.primary {
                facts.region_conflict.as_ref()
            } else {
                None
            };
            checks::endpoint_of(&s.endpoint, conflict, &options.allowed_hosts)
        })
    };
    out.push(regional::combine(
        CheckId::Endpoint,
        endpoints.clone(),
        labelled,
    ));

    let (iam_key, iam_permission) = aws.iam_checks(&facts, key_id.as_deref()).await;
    let key_passed = iam_key.status == Status::Pass;
    out.push(iam_key);
    out.push(
        rotation_state(
            &mut aws,
            &options,
            arn.as_deref(),
            &facts,
            key_id.as_deref(),
        )
        .await,
    );
    out.push(iam_permission);

    // SMTP's trust: the roots (SSL_CERT_FILE) and the extra CAs (SMTP_CA_FILE).
    let trust = options.ca_file.clone().and(options.smtp_ca_file.clone());
    // Failures that concern every region (the document, the key id, the key itself).
    let failed_everywhere: Vec<CheckId> = out
        .iter()
        .filter(|c| {
            c.failed()
                && matches!(
                    c.id,
                    CheckId::Document | CheckId::Username | CheckId::IamKey
                )
        })
        .map(|c| c.id)
        .collect();
    let mut connects = Vec::new();
    let mut auths = Vec::new();
    for (i, site) in sites.iter().enumerate() {
        let status_of = |parts: &Vec<(String, Check)>| parts.get(i).map(|(_, c)| c.status);
        let mut failed_before = failed_everywhere.clone();
        for (id, parts) in [
            (CheckId::PasswordFormat, &formats),
            (CheckId::PasswordDerivation, &derivations),
        ] {
            if status_of(parts) == Some(Status::Fail) {
                failed_before.push(id);
            }
        }
        let endpoint_ok = matches!(status_of(&endpoints), Some(Status::Pass | Status::Warn));
        let (connect, auth) = net::connect_and_auth(
            &facts,
            site,
            endpoint_ok,
            &trust,
            budget,
            &net::Evidence {
                failed_before,
                derivation_passed: status_of(&derivations) == Some(Status::Pass),
                derivation_ran: key.is_some(),
                key_passed,
            },
        )
        .await;
        let region = site.endpoint.region.to_string();
        connects.push((region.clone(), connect));
        auths.push((region, auth));
    }
    if sites.is_empty() {
        let why = "no usable host and port (see document)";
        connects.push((String::new(), Check::skip(CheckId::Connect, why)));
        auths.push((String::new(), Check::skip(CheckId::Auth, why)));
    }
    out.push(regional::combine(CheckId::Connect, connects, labelled));
    out.push(regional::combine(CheckId::Auth, auths, labelled));
    let encodings = if sites.is_empty() {
        vec![(String::new(), checks::url_encoding(&facts))]
    } else {
        per_region(&|s| checks::url_encoding_of(s.password_text()))
    };
    out.push(regional::combine(CheckId::UrlEncoding, encodings, labelled));

    let mut report = Report { checks: out };
    report.redact(&facts.secrets(key));
    report
}

/// `rotation-state`: skipped without `--secret-id` (the state lives in Secrets Manager and on
/// the IAM user), without a usable `iam_user`, or without AWS credentials.
async fn rotation_state(
    aws: &mut iam::Aws,
    options: &Options,
    arn: Option<&str>,
    facts: &input::Facts,
    key_id: Option<&str>,
) -> Check {
    let id = CheckId::RotationState;
    let Source::SecretId { .. } = &options.source else {
        return Check::skip_with(
            id,
            "a document alone says nothing of its rotation",
            "run with --secret-id to see whether a rotation is pending or stuck, the key record and an old key in grace",
        );
    };
    let (Some(arn), Some(doc)) = (arn, facts.doc.as_ref()) else {
        return Check::skip(id, "no secret or no usable iam_user (see document)");
    };
    match aws
        .rotation_facts(arn, &doc.iam_user, key_id, options.stuck_after)
        .await
    {
        Ok(f) => rotation::rotation_state(&f),
        Err(why) => Check::skip_with(
            id,
            why,
            "run with AWS credentials allowed what README's doctor policy lists (secretsmanager:ListSecretVersionIds, iam:ListUserTags, iam:GetAccessKeyLastUsed)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(statuses: &[(CheckId, Status)]) -> Report {
        Report {
            checks: statuses
                .iter()
                .map(|(id, s)| Check {
                    id: *id,
                    status: *s,
                    summary: String::new(),
                    fix: None,
                })
                .collect(),
        }
    }

    #[test]
    fn ok_needs_auth_to_pass_and_nothing_to_fail() {
        use CheckId::*;
        use Status::*;
        for (checks, ok) in [
            (vec![(Document, Pass), (Auth, Pass)], true),
            (
                vec![(Document, Pass), (Auth, Pass), (UrlEncoding, Warn)],
                true,
            ),
            (vec![(IamKey, Skip), (Auth, Pass)], true),
            (vec![(Document, Pass), (Auth, Skip)], false),
            (vec![(Username, Fail), (Auth, Pass)], false),
            (vec![(Document, Pass), (Auth, Fail)], false),
            (vec![(Document, Pass)], false),
        ] {
            let r = report(&checks);
            assert_eq!(r.ok(), ok, "{checks:?}");
            assert_eq!(r.exit_code(), u8::from(!ok), "{checks:?}");
        }
    }

    #[test]
    fn ids_are_stable_and_in_design_order() {
        let ids: Vec<&str> = CheckId::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            ids,
            [
                "document",
                "username",
                "password-format",
                "password-derivation",
                "endpoint",
                "iam-key",
                "rotation-state",
                "iam-permission",
                "connect",
                "auth",
                "url-encoding"
            ]
        );
    }

    #[test]
    fn redact_removes_every_listed_secret() {
        let mut r = Report {
            checks: vec![Check::fail(
                CheckId::Auth,
                "got s3cr3t-value back",
                "not s3cr3t-value",
            )],
        };
        r.redact(&["s3cr3t-value".to_owned()]);
        assert!(!r.to_json().contains("s3cr3t-value"));
        assert!(!r.to_text(false).contains("s3cr3t-value"));
    }

    #[test]
    fn budget_never_exceeds_the_run_budget() {
        let b = Budget::new(Duration::from_secs(600));
        assert!(b.next() <= RUN_BUDGET);
        let b = Budget::new(Duration::from_secs(2));
        assert_eq!(b.next(), Duration::from_secs(2));
    }
}
