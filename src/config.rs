//! The function's configuration, read once from the environment at start.
//!
//! AWS settings (region, credentials, endpoints) are not here: they come from the SDK's
//! standard chain. Invalid values fail at start with a message naming the variable.

use std::time::Duration;

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

/// An optional real test send after AUTH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestSend {
    /// Envelope sender (must be a verified identity the user may send as).
    pub from: String,
    /// Recipient, e.g. `success@simulator.amazonses.com`.
    pub to: String,
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
}

impl Default for Config {
    fn default() -> Self {
        Self {
            old_key_action: OldKeyAction::Deactivate,
            smtp_test_timeout: Duration::from_secs(60),
            smtp_connect_timeout: Duration::from_secs(10),
            test_send: None,
        }
    }
}

fn seconds(name: &str, value: &str, max: u64) -> Result<Duration, Error> {
    match value.trim().parse::<u64>() {
        Ok(n) if (1..=max).contains(&n) => Ok(Duration::from_secs(n)),
        _ => Err(Error::Config(format!(
            "{name} must be a whole number of seconds from 1 to {max}"
        ))),
    }
}

fn looks_like_address(a: &str) -> bool {
    a.parse::<lettre::Address>().is_ok()
}

/// `SSL_CERT_FILE` replaces the system roots for every TLS connection (SMTP and the AWS
/// SDK's HTTPS client, which panics on a file without certificates): check it up front.
fn check_ca_file(path: &str) -> Result<(), Error> {
    match std::fs::read_to_string(path) {
        Ok(pem) if pem.contains("-----BEGIN CERTIFICATE-----") => Ok(()),
        Ok(_) => Err(Error::Config(
            "SSL_CERT_FILE names a file with no PEM certificate; point it at a CA bundle or unset it"
                .into(),
        )),
        Err(e) => Err(Error::Config(format!(
            "SSL_CERT_FILE cannot be read ({e}); point it at a CA bundle or unset it"
        ))),
    }
}

impl Config {
    /// Reads the configuration from the process environment.
    ///
    /// # Errors
    /// [`Error::Config`] naming the variable and the accepted values.
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the configuration through `get` (the environment, or a map in tests). Empty
    /// values count as unset, as SAM passes empty strings for optional parameters.
    ///
    /// # Errors
    /// [`Error::Config`] naming the variable and the accepted values.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let mut c = Self::default();
        if let Some(v) = get("OLD_KEY_ACTION") {
            c.old_key_action = match v.trim().to_ascii_lowercase().as_str() {
                "deactivate" => OldKeyAction::Deactivate,
                "delete" => OldKeyAction::Delete,
                "keep" => OldKeyAction::Keep,
                _ => {
                    return Err(Error::Config(
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
        c.test_send = match (get("TEST_SEND_FROM"), get("TEST_SEND_TO")) {
            (None, None) => None,
            (Some(from), Some(to)) => {
                for (name, a) in [("TEST_SEND_FROM", &from), ("TEST_SEND_TO", &to)] {
                    if !looks_like_address(a.trim()) {
                        return Err(Error::Config(format!("{name} is not an email address")));
                    }
                }
                Some(TestSend {
                    from: from.trim().to_owned(),
                    to: to.trim().to_owned(),
                })
            }
            _ => {
                return Err(Error::Config(
                    "set both TEST_SEND_FROM and TEST_SEND_TO for a test send, or neither".into(),
                ));
            }
        };
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
        ])
        .unwrap();
        assert_eq!(c.old_key_action, OldKeyAction::Delete);
        assert_eq!(c.smtp_test_timeout, Duration::from_secs(5));
        assert_eq!(c.smtp_connect_timeout, Duration::from_secs(2));
        assert_eq!(c.test_send.unwrap().to, "success@simulator.amazonses.com");
    }

    #[test]
    fn refuses_bad_values_naming_the_variable() {
        for (pairs, name) in [
            (vec![("OLD_KEY_ACTION", "remove")], "OLD_KEY_ACTION"),
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
