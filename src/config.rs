//! The function's configuration, read once from the environment at start.
//!
//! AWS settings (region, credentials, endpoints) are not here: they come from the SDK's
//! standard chain. Invalid values fail at start with a message naming the variable.

use std::time::Duration;

use crate::endpoint::AllowedHosts;
use crate::error::Error;

/// What finishSecret does with the previous key once the new one is current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldKeyAction {
    /// Mark it Inactive (default): reversible, and the next rotation deletes it.
    Deactivate,
    /// Delete it at once.
    Delete,
    /// Leave it Active; the next rotation's createSecret deletes it.
    Keep,
}

impl OldKeyAction {
    /// The value as written in `OLD_KEY_ACTION`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deactivate => "deactivate",
            Self::Delete => "delete",
            Self::Keep => "keep",
        }
    }
}

/// Which secrets one deployment rotates (`ROTATION_SCOPE`, the template's `Scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationScope {
    /// One secret and its one IAM user (default): the first rotation tags the user as the
    /// secret's (`ses-smtp-rotator:secret`).
    Single,
    /// Every managed secret of the account: a user is served only when its owner tag already
    /// names the secret (set by the stack that created both); the function never claims one.
    Shared,
}

/// An optional real test send after AUTH, validated once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestSend {
    /// Envelope sender (must be a verified identity the user may send as).
    pub from: lettre::message::Mailbox,
    /// Recipient, e.g. `success@simulator.amazonses.com`.
    pub to: lettre::message::Mailbox,
}

/// Configuration of the rotation function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `OLD_KEY_ACTION`.
    pub old_key_action: OldKeyAction,
    /// `SMTP_TEST_TIMEOUT_SECONDS`: how long testSecret keeps retrying a 535/454.
    pub smtp_test_timeout: Duration,
    /// `SMTP_CONNECT_TIMEOUT_SECONDS`: bound on one connection attempt (TCP + TLS + greeting).
    pub smtp_connect_timeout: Duration,
    /// `TEST_SEND_FROM` + `TEST_SEND_TO`.
    pub test_send: Option<TestSend>,
    /// The built-in SES endpoint forms plus `SMTP_ALLOWED_HOSTS`.
    pub allowed_hosts: AllowedHosts,
    /// `IAM_USER_PATH`: rotate only users whose path is this one or below it.
    pub iam_user_path: Option<String>,
    /// `ROTATION_SCOPE`: whether the function may claim an untagged user.
    pub scope: RotationScope,
    /// `OLD_KEY_GRACE_HOURS`: how long a replaced key stays Active after promotion before
    /// the scheduled maintenance applies `OLD_KEY_ACTION` (zero: finishSecret applies it).
    pub old_key_grace: Duration,
    /// `OLD_KEY_MAX_GRACE_HOURS`: how long the grace may be extended while IAM reports the
    /// old key used after its promotion.
    pub old_key_max_grace: Duration,
    /// `MAINTENANCE_CANARY`: whether the scheduled maintenance logs in with AWSCURRENT.
    pub canary: bool,
    /// `PENDING_STUCK_HOURS`: a rotation whose AWSPENDING version is older is reported stuck.
    pub pending_stuck_after: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            old_key_action: OldKeyAction::Deactivate,
            smtp_test_timeout: Duration::from_secs(60),
            smtp_connect_timeout: Duration::from_secs(10),
            test_send: None,
            allowed_hosts: AllowedHosts::default(),
            iam_user_path: None,
            scope: RotationScope::Single,
            old_key_grace: Duration::from_secs(24 * 3600),
            old_key_max_grace: Duration::from_secs(72 * 3600),
            canary: true,
            pending_stuck_after: Duration::from_secs(2 * 3600),
        }
    }
}

fn seconds(name: &str, value: &str, max: u64) -> Result<Duration, Error> {
    match value.trim().parse::<u64>() {
        Ok(n) if (1..=max).contains(&n) => Ok(Duration::from_secs(n)),
        _ => Err(Error::InvalidConfiguration(format!(
            "{name} must be a whole number of seconds from 1 to {max}"
        ))),
    }
}

/// Longest grace (and stuck threshold) accepted: 30 days.
const MAX_HOURS: f64 = 720.0;

fn hours(name: &str, value: &str, min: f64) -> Result<Duration, Error> {
    match value.trim().parse::<f64>() {
        Ok(h) if h.is_finite() && (min..=MAX_HOURS).contains(&h) => {
            Ok(Duration::from_secs_f64(h * 3600.0))
        }
        _ => Err(Error::InvalidConfiguration(format!(
            "{name} must be a number of hours from {min} to {MAX_HOURS} (fractions allowed, e.g. 0.5)"
        ))),
    }
}

/// Whether a user's IAM path is `allowed` or below it, compared on `/` boundaries
/// (`/ses-smtp/team-a/` is under `/ses-smtp/`, `/ses-smtp-other/` is not).
#[must_use]
pub fn path_is_under(path: &str, allowed: &str) -> bool {
    let with_slash = |p: &str| {
        if p.ends_with('/') {
            p.to_owned()
        } else {
            format!("{p}/")
        }
    };
    with_slash(path).starts_with(&with_slash(allowed))
}

/// `SSL_CERT_FILE` replaces the system roots for every TLS connection (SMTP and the AWS
/// SDK's HTTPS client, which panics on a file without certificates): check it up front.
fn check_ca_file(path: &str) -> Result<(), Error> {
    crate::smtp::check_ca_file(std::path::Path::new(path)).map_err(Error::InvalidConfiguration)
}

impl Config {
    /// Reads the configuration from the process environment.
    ///
    /// # Errors
    /// [`Error::InvalidConfiguration`] naming the variable and the accepted values.
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the configuration through `get` (the environment, or a map in tests). Empty
    /// values count as unset, as SAM passes empty strings for optional parameters.
    ///
    /// # Errors
    /// [`Error::InvalidConfiguration`] naming the variable and the accepted values.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let mut c = Self::default();
        if let Some(v) = get("OLD_KEY_ACTION") {
            c.old_key_action = match v.trim().to_ascii_lowercase().as_str() {
                "deactivate" => OldKeyAction::Deactivate,
                "delete" => OldKeyAction::Delete,
                "keep" => OldKeyAction::Keep,
                _ => {
                    return Err(Error::InvalidConfiguration(
                        "OLD_KEY_ACTION must be deactivate, delete or keep".into(),
                    ));
                }
            };
        }
        if let Some(v) = get("SMTP_TEST_TIMEOUT_SECONDS") {
            c.smtp_test_timeout = seconds("SMTP_TEST_TIMEOUT_SECONDS", &v, 900)?;
        }
        if let Some(v) = get("SMTP_CONNECT_TIMEOUT_SECONDS") {
            c.smtp_connect_timeout = seconds("SMTP_CONNECT_TIMEOUT_SECONDS", &v, 300)?;
        }
        if let Some(path) = get("SSL_CERT_FILE") {
            check_ca_file(&path)?;
        }
        if get("SMTP_CA_FILE").is_some() {
            crate::smtp::check_smtp_ca_file().map_err(Error::InvalidConfiguration)?;
        }
        c.test_send = match (get("TEST_SEND_FROM"), get("TEST_SEND_TO")) {
            (None, None) => None,
            (Some(from), Some(to)) => {
                let mailbox = |name: &str, a: &str| {
                    a.trim().parse::<lettre::message::Mailbox>().map_err(|_| {
                        Error::InvalidConfiguration(format!("{name} is not an email address"))
                    })
                };
                Some(TestSend {
                    from: mailbox("TEST_SEND_FROM", &from)?,
                    to: mailbox("TEST_SEND_TO", &to)?,
                })
            }
            _ => {
                return Err(Error::InvalidConfiguration(
                    "set both TEST_SEND_FROM and TEST_SEND_TO for a test send, or neither".into(),
                ));
            }
        };
        if let Some(v) = get("SMTP_ALLOWED_HOSTS") {
            c.allowed_hosts = AllowedHosts::parse(&v)
                .map_err(|e| Error::InvalidConfiguration(format!("SMTP_ALLOWED_HOSTS: {e}")))?;
        }
        if let Some(v) = get("IAM_USER_PATH") {
            let v = v.trim();
            let ok = v.starts_with('/')
                && v.ends_with('/')
                && v.len() <= 512
                && v.bytes().all(|b| (0x21..=0x7e).contains(&b));
            if !ok {
                return Err(Error::InvalidConfiguration(
                    "IAM_USER_PATH must be an IAM path that begins and ends with / (like /ses-smtp/)"
                        .into(),
                ));
            }
            c.iam_user_path = Some(v.to_owned());
        }
        if let Some(v) = get("OLD_KEY_GRACE_HOURS") {
            c.old_key_grace = hours("OLD_KEY_GRACE_HOURS", &v, 0.0)?;
        }
        if let Some(v) = get("OLD_KEY_MAX_GRACE_HOURS") {
            c.old_key_max_grace = hours("OLD_KEY_MAX_GRACE_HOURS", &v, 0.0)?;
        }
        if c.old_key_max_grace < c.old_key_grace {
            return Err(Error::InvalidConfiguration(
                "OLD_KEY_MAX_GRACE_HOURS must be at least OLD_KEY_GRACE_HOURS (the grace is extended up to it while the old key is still in use)".into(),
            ));
        }
        if let Some(v) = get("PENDING_STUCK_HOURS") {
            c.pending_stuck_after = hours("PENDING_STUCK_HOURS", &v, 0.0)?;
        }
        if let Some(v) = get("MAINTENANCE_CANARY") {
            c.canary = match v.trim().to_ascii_lowercase().as_str() {
                "on" | "true" => true,
                "off" | "false" => false,
                _ => {
                    return Err(Error::InvalidConfiguration(
                        "MAINTENANCE_CANARY must be on or off".into(),
                    ));
                }
            };
        }
        if let Some(v) = get("ROTATION_SCOPE") {
            c.scope = match v.trim().to_ascii_lowercase().as_str() {
                "single" => RotationScope::Single,
                "shared" => RotationScope::Shared,
                _ => {
                    return Err(Error::InvalidConfiguration(
                        "ROTATION_SCOPE must be single or shared".into(),
                    ));
                }
            };
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, Error> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.old_key_action, OldKeyAction::Deactivate);
        assert_eq!(c.smtp_test_timeout, Duration::from_secs(60));
        assert_eq!(c.smtp_connect_timeout, Duration::from_secs(10));
        assert_eq!(c.test_send, None);
        // Empty strings (SAM's unset parameters) are defaults too.
        assert_eq!(
            cfg(&[("OLD_KEY_ACTION", ""), ("TEST_SEND_FROM", "")]).unwrap(),
            c
        );
    }

    #[test]
    fn parses_values() {
        let c = cfg(&[
            ("OLD_KEY_ACTION", "Delete"),
            ("SMTP_TEST_TIMEOUT_SECONDS", "5"),
            ("SMTP_CONNECT_TIMEOUT_SECONDS", "2"),
            ("TEST_SEND_FROM", "ops@example.com"),
            ("TEST_SEND_TO", "success@simulator.amazonses.com"),
            ("ROTATION_SCOPE", "Shared"),
        ])
        .unwrap();
        assert_eq!(c.scope, RotationScope::Shared);
        let g = cfg(&[
            ("OLD_KEY_GRACE_HOURS", "0.001"),
            ("OLD_KEY_MAX_GRACE_HOURS", "0.5"),
            ("MAINTENANCE_CANARY", "off"),
            ("PENDING_STUCK_HOURS", "3"),
        ])
        .unwrap();
        assert_eq!(g.old_key_grace, Duration::from_secs_f64(3.6));
        assert_eq!(g.old_key_max_grace, Duration::from_secs(1800));
        assert!(!g.canary);
        assert_eq!(g.pending_stuck_after, Duration::from_secs(3 * 3600));
        let d = cfg(&[]).unwrap();
        assert_eq!(d.old_key_grace, Duration::from_secs(24 * 3600));
        assert_eq!(d.old_key_max_grace, Duration::from_secs(72 * 3600));
        assert!(d.canary);
        assert_eq!(cfg(&[]).unwrap().scope, RotationScope::Single);
        assert_eq!(c.old_key_action, OldKeyAction::Delete);
        assert_eq!(c.smtp_test_timeout, Duration::from_secs(5));
        assert_eq!(c.smtp_connect_timeout, Duration::from_secs(2));
        assert_eq!(
            c.test_send.unwrap().to.email.to_string(),
            "success@simulator.amazonses.com"
        );
    }

    #[test]
    fn allowed_hosts_and_user_path() {
        let c = cfg(&[
            ("SMTP_ALLOWED_HOSTS", "localhost"),
            ("IAM_USER_PATH", "/ses-smtp/"),
        ])
        .unwrap();
        assert!(c.allowed_hosts.allows("localhost"));
        assert!(!Config::default().allowed_hosts.allows("localhost"));
        assert_eq!(c.iam_user_path.as_deref(), Some("/ses-smtp/"));
        assert!(path_is_under("/ses-smtp/", "/ses-smtp/"));
        assert!(path_is_under("/ses-smtp/team-a/", "/ses-smtp/"));
        assert!(!path_is_under("/ses-smtp-other/", "/ses-smtp/"));
        assert!(!path_is_under("/", "/ses-smtp/"));
        assert!(path_is_under("/anything/", "/"));
    }

    #[test]
    fn refuses_bad_values_naming_the_variable() {
        for (pairs, name) in [
            (vec![("OLD_KEY_ACTION", "remove")], "OLD_KEY_ACTION"),
            (vec![("ROTATION_SCOPE", "fleet")], "ROTATION_SCOPE"),
            (vec![("OLD_KEY_GRACE_HOURS", "-1")], "OLD_KEY_GRACE_HOURS"),
            (vec![("OLD_KEY_GRACE_HOURS", "1d")], "OLD_KEY_GRACE_HOURS"),
            (vec![("OLD_KEY_GRACE_HOURS", "NaN")], "OLD_KEY_GRACE_HOURS"),
            (
                vec![("OLD_KEY_GRACE_HOURS", "100")],
                "OLD_KEY_MAX_GRACE_HOURS",
            ),
            (
                vec![("OLD_KEY_MAX_GRACE_HOURS", "10000")],
                "OLD_KEY_MAX_GRACE_HOURS",
            ),
            (vec![("MAINTENANCE_CANARY", "maybe")], "MAINTENANCE_CANARY"),
            (vec![("PENDING_STUCK_HOURS", "x")], "PENDING_STUCK_HOURS"),
            (
                vec![("SMTP_TEST_TIMEOUT_SECONDS", "0")],
                "SMTP_TEST_TIMEOUT_SECONDS",
            ),
            (
                vec![("SMTP_TEST_TIMEOUT_SECONDS", "1m")],
                "SMTP_TEST_TIMEOUT_SECONDS",
            ),
            (
                vec![("SMTP_CONNECT_TIMEOUT_SECONDS", "-3")],
                "SMTP_CONNECT_TIMEOUT_SECONDS",
            ),
            (vec![("TEST_SEND_FROM", "a@example.com")], "TEST_SEND_TO"),
            (
                vec![("SMTP_ALLOWED_HOSTS", "smtp://x")],
                "SMTP_ALLOWED_HOSTS",
            ),
            (vec![("IAM_USER_PATH", "ses-smtp")], "IAM_USER_PATH"),
            (
                vec![
                    ("TEST_SEND_FROM", "not an address"),
                    ("TEST_SEND_TO", "b@example.com"),
                ],
                "TEST_SEND_FROM",
            ),
        ] {
            let e = cfg(&pairs).unwrap_err().to_string();
            assert!(e.contains(name), "{pairs:?}: {e}");
        }
    }
}
