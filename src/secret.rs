//! The secret document: the JSON object kept as the secret's `SecretString`.
//!
//! Operators write `iam_user` and `host` (and optionally `port`, `tls`, `region`); rotation
//! writes `username` (the access key id) and `password` (the SMTP password for `region`). Every
//! other field is kept verbatim across rotations, so the document is parsed into a typed view
//! *and* the original JSON object is kept for the write-back.
//!
//! Errors name the field and what is wrong with it, and never echo a value: the document
//! holds a password.

use std::fmt;

use serde_json::{Map, Value};

use crate::endpoint::region_from_host;
use crate::password::{Region, SmtpPassword};

/// Default SMTP port: STARTTLS on 587 is open from Lambda (25 is throttled by EC2/Lambda).
pub const DEFAULT_PORT: u16 = 587;

/// How TLS is set up on the SMTP connection. There is no plaintext mode: SES requires TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain TCP, then `STARTTLS` (ports 25, 587, 2587).
    StartTls,
    /// TLS from the first byte (ports 465, 2465).
    Implicit,
}

impl TlsMode {
    /// The mode SES uses on a port when the document does not say.
    #[must_use]
    pub fn default_for_port(port: u16) -> Self {
        match port {
            465 | 2465 => Self::Implicit,
            _ => Self::StartTls,
        }
    }

    /// The value as written in the document.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StartTls => "starttls",
            Self::Implicit => "implicit",
        }
    }
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a secret document was refused. Names fields, never values (except a region code or
/// key id, which are not secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The SecretString is not JSON at all.
    #[error(
        "the secret value is not valid JSON (syntax error at line {line}, column {column}); store a JSON object like {{\"iam_user\": \"...\", \"host\": \"email-smtp.us-east-1.amazonaws.com\"}}"
    )]
    NotJson {
        /// Line of the syntax error.
        line: usize,
        /// Column of the syntax error.
        column: usize,
    },
    /// The SecretString is JSON but not an object.
    #[error(
        "the secret value is JSON but not an object; store a JSON object with iam_user and host"
    )]
    NotObject,
    /// The secret has no SecretString (binary secret).
    #[error(
        "the secret has no SecretString (a binary secret?); store a JSON object with iam_user and host"
    )]
    NoSecretString,
    /// A required field is missing.
    #[error("the secret has no \"{field}\" field; {hint}")]
    Missing {
        /// The field.
        field: &'static str,
        /// What to put there.
        hint: &'static str,
    },
    /// A field has the wrong JSON type or an unusable value.
    #[error("the secret's \"{field}\" field is invalid: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong, without the value.
        reason: String,
    },
    /// `username` is a temporary (STS) access key id.
    #[error(
        "the secret's \"username\" is a temporary access key id (ASIA...): IAM role or session credentials cannot be used for SES SMTP. Use a long-term access key of a dedicated IAM user (AKIA...), or remove username/password and let rotation create one"
    )]
    TemporaryCredentials,
    /// Only one of `username` / `password` is present.
    #[error(
        "the secret has \"{present}\" but not \"{missing}\"; store both (an existing key to adopt) or neither (bootstrap: the first rotation creates the key)"
    )]
    HalfCredentials {
        /// The field that is there.
        present: &'static str,
        /// The field that is not.
        missing: &'static str,
    },
    /// Neither `region` nor a recognisable SES host gives the region.
    #[error(
        "cannot tell the SES region: \"host\" is not an SES SMTP endpoint name (email-smtp[-fips].REGION.amazonaws.com[.cn], email-smtp.REGION.api.aws, or a VPC endpoint name) and there is no \"region\" field; add \"region\""
    )]
    NoRegion,
    /// `region` contradicts the region in `host`.
    #[error(
        "the secret's \"region\" ({region}) contradicts the region in \"host\" ({host_region}); the password is derived per region and SES would answer 535. Fix one of them"
    )]
    RegionConflict {
        /// The `region` field.
        region: String,
        /// The region named by `host`.
        host_region: String,
    },
}

/// The credentials a document holds: an access key id and its SMTP password.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpCredentials {
    /// The IAM access key id (`AKIA...`); the SMTP user name. Not a secret.
    pub username: String,
    /// The SMTP password; redacted in `Debug`.
    pub password: SmtpPassword,
}

impl fmt::Debug for SmtpCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpCredentials")
            .field("username", &self.username)
            .field("password", &self.password)
            .finish()
    }
}

/// A parsed, validated secret document that remembers its original JSON.
#[derive(Clone)]
pub struct SecretDocument {
    /// The IAM user whose keys back these credentials.
    pub iam_user: String,
    /// SMTP endpoint host.
    pub host: String,
    /// SMTP port.
    pub port: u16,
    /// TLS mode.
    pub tls: TlsMode,
    /// The SES region the password is derived for.
    pub region: Region,
    /// `username` + `password`, absent in a bootstrap document.
    pub credentials: Option<SmtpCredentials>,
    raw: Map<String, Value>,
}

impl fmt::Debug for SecretDocument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretDocument")
            .field("iam_user", &self.iam_user)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("region", &self.region)
            .field("credentials", &self.credentials)
            .field("other_fields", &self.raw.len())
            .finish()
    }
}

fn get_str<'a>(
    raw: &'a Map<String, Value>,
    field: &'static str,
) -> Result<Option<&'a str>, SecretError> {
    match raw.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(SecretError::Invalid {
            field,
            reason: "must be a string".into(),
        }),
    }
}

fn require_str<'a>(
    raw: &'a Map<String, Value>,
    field: &'static str,
    hint: &'static str,
) -> Result<&'a str, SecretError> {
    let s = get_str(raw, field)?.ok_or(SecretError::Missing { field, hint })?;
    if s.trim().is_empty() {
        return Err(SecretError::Invalid {
            field,
            reason: "is empty".into(),
        });
    }
    if s.trim() != s {
        return Err(SecretError::Invalid {
            field,
            reason: "has leading or trailing white space".into(),
        });
    }
    Ok(s)
}

fn parse_port(raw: &Map<String, Value>) -> Result<u16, SecretError> {
    let invalid = |reason: &str| SecretError::Invalid {
        field: "port",
        reason: reason.into(),
    };
    match raw.get("port") {
        None | Some(Value::Null) => Ok(DEFAULT_PORT),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
            .ok_or_else(|| invalid("must be a whole number from 1 to 65535")),
        Some(Value::String(s)) => s
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| invalid("must be a whole number from 1 to 65535")),
        Some(_) => Err(invalid("must be a number such as 587 or 465")),
    }
}

/// Checks that a user name looks like an IAM user name (1–64 of `A-Za-z0-9+=,.@_-`).
fn valid_iam_user(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
}

/// Checks that a key id looks like a long-term IAM access key id.
fn valid_access_key_id(id: &str) -> bool {
    id.starts_with("AKIA")
        && (16..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

impl SecretDocument {
    /// Parses and validates a `SecretString`.
    ///
    /// # Errors
    /// [`SecretError`] naming the first problem found.
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let value: Value = serde_json::from_str(text).map_err(|e| SecretError::NotJson {
            line: e.line(),
            column: e.column(),
        })?;
        let Value::Object(raw) = value else {
            return Err(SecretError::NotObject);
        };
        Self::from_map(raw)
    }

    fn from_map(raw: Map<String, Value>) -> Result<Self, SecretError> {
        let iam_user = require_str(
            &raw,
            "iam_user",
            "name the dedicated IAM user whose access keys back these credentials",
        )?;
        if !valid_iam_user(iam_user) {
            return Err(SecretError::Invalid {
                field: "iam_user",
                reason: "is not an IAM user name (1-64 characters of A-Z a-z 0-9 +=,.@_-; a name, not an ARN)".into(),
            });
        }
        let host = require_str(
            &raw,
            "host",
            "name the SES SMTP endpoint, e.g. email-smtp.us-east-1.amazonaws.com",
        )?;
        if host.contains("://")
            || host.contains('/')
            || host.contains(':')
            || host.chars().any(char::is_whitespace)
        {
            return Err(SecretError::Invalid {
                field: "host",
                reason:
                    "must be a bare host name (no scheme, port or path); put the port in \"port\""
                        .into(),
            });
        }
        let port = parse_port(&raw)?;
        let tls = match get_str(&raw, "tls")? {
            None => TlsMode::default_for_port(port),
            Some(s) if s.eq_ignore_ascii_case("starttls") => TlsMode::StartTls,
            Some(s) if s.eq_ignore_ascii_case("implicit") => TlsMode::Implicit,
            Some(_) => {
                return Err(SecretError::Invalid {
                    field: "tls",
                    reason: "must be \"starttls\" or \"implicit\" (SES has no plaintext mode)"
                        .into(),
                });
            }
        };
        let host_region = region_from_host(host);
        let region = match get_str(&raw, "region")? {
            Some(r) => {
                let region = Region::new(r).map_err(|_| SecretError::Invalid {
                    field: "region",
                    reason: "is not an AWS region code (lower case, like us-east-1)".into(),
                })?;
                if let Some(hr) = host_region
                    && hr != region
                {
                    return Err(SecretError::RegionConflict {
                        region: region.to_string(),
                        host_region: hr.to_string(),
                    });
                }
                region
            }
            None => host_region.ok_or(SecretError::NoRegion)?,
        };
        let username = get_str(&raw, "username")?;
        let password = get_str(&raw, "password")?;
        let credentials = match (username, password) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(SecretError::HalfCredentials {
                    present: "username",
                    missing: "password",
                });
            }
            (None, Some(_)) => {
                return Err(SecretError::HalfCredentials {
                    present: "password",
                    missing: "username",
                });
            }
            (Some(u), Some(p)) => {
                if u.starts_with("ASIA") {
                    return Err(SecretError::TemporaryCredentials);
                }
                if !valid_access_key_id(u) {
                    return Err(SecretError::Invalid {
                        field: "username",
                        reason: "is not an IAM access key id (AKIA followed by upper-case letters and digits); the SMTP user name is the access key id".into(),
                    });
                }
                if p.is_empty() {
                    return Err(SecretError::Invalid {
                        field: "password",
                        reason: "is empty".into(),
                    });
                }
                Some(SmtpCredentials {
                    username: u.to_owned(),
                    password: SmtpPassword::from_string(p.to_owned()),
                })
            }
        };
        Ok(Self {
            iam_user: iam_user.to_owned(),
            host: host.to_owned(),
            port,
            tls,
            region,
            credentials,
            raw,
        })
    }

    /// Whether two documents describe the same IAM user and SMTP destination (`iam_user`,
    /// `host`, `port`, `tls`, `region`, `regions`): what a pending version must share with
    /// AWSCURRENT before its credentials are tested or promoted.
    #[must_use]
    pub fn same_destination(&self, other: &Self) -> bool {
        self.iam_user == other.iam_user
            && self
                .host
                .trim_end_matches('.')
                .eq_ignore_ascii_case(other.host.trim_end_matches('.'))
            && self.port == other.port
            && self.tls == other.tls
            && self.region == other.region
            && self.raw.get("regions") == other.raw.get("regions")
    }

    /// True when the document has no credentials yet (the first rotation creates them).
    #[must_use]
    pub fn is_bootstrap(&self) -> bool {
        self.credentials.is_none()
    }

    /// The document with `credentials` set, every other field exactly as it was.
    #[must_use]
    pub fn with_credentials(&self, credentials: SmtpCredentials) -> Self {
        let mut next = self.clone();
        next.credentials = Some(credentials);
        next
    }

    /// Serialises the document for `PutSecretValue`: the original object with `username` and
    /// `password` set (or left out in a bootstrap document).
    #[must_use]
    pub fn to_secret_string(&self) -> String {
        let mut raw = self.raw.clone();
        match &self.credentials {
            Some(c) => {
                raw.insert("username".into(), Value::String(c.username.clone()));
                raw.insert(
                    "password".into(),
                    Value::String(c.password.expose().to_owned()),
                );
            }
            None => {
                raw.remove("username");
                raw.remove("password");
            }
        }
        Value::Object(raw).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PW: &str = "BMPPgbAHoFVbze1Ud0oA5uNdXRwUXUZ+qOwphGJbl/cS";

    fn parse(v: Value) -> Result<SecretDocument, SecretError> {
        SecretDocument::parse(&v.to_string())
    }

    fn err(v: Value) -> String {
        parse(v).expect_err("should be refused").to_string()
    }

    #[test]
    fn bootstrap_document_defaults() {
        let d = parse(serde_json::json!({"iam_user": "ses-smtp", "host": "email-smtp.eu-west-1.amazonaws.com"})).unwrap();
        assert!(d.is_bootstrap());
        assert_eq!(d.port, 587);
        assert_eq!(d.tls, TlsMode::StartTls);
        assert_eq!(d.region.as_str(), "eu-west-1");
    }

    #[test]
    fn tls_by_port_and_explicit() {
        for (port, want) in [
            (465, TlsMode::Implicit),
            (2465, TlsMode::Implicit),
            (587, TlsMode::StartTls),
            (25, TlsMode::StartTls),
            (2587, TlsMode::StartTls),
        ] {
            let d = parse(serde_json::json!({"iam_user": "u", "host": "email-smtp.us-east-1.amazonaws.com", "port": port})).unwrap();
            assert_eq!(d.tls, want, "{port}");
        }
        let d = parse(serde_json::json!({"iam_user": "u", "host": "h", "region": "us-east-1", "port": "2525", "tls": "implicit"})).unwrap();
        assert_eq!((d.port, d.tls), (2525, TlsMode::Implicit));
    }

    #[test]
    fn keeps_unknown_fields_and_writes_credentials() {
        let original = serde_json::json!({
            "iam_user": "ses-smtp", "host": "email-smtp.us-east-1.amazonaws.com",
            "team": "mail", "nested": {"a": [1, 2, {"b": null}]}, "port": 587
        });
        let d = parse(original.clone()).unwrap();
        let next = d.with_credentials(SmtpCredentials {
            username: "AKIAIOSFODNN7EXAMPLE".into(),
            password: SmtpPassword::from_string(PW.into()),
        });
        let written: Value = serde_json::from_str(&next.to_secret_string()).unwrap();
        let mut want = original;
        want["username"] = "AKIAIOSFODNN7EXAMPLE".into();
        want["password"] = PW.into();
        assert_eq!(written, want);
        // And it parses back to the same credentials.
        let again = SecretDocument::parse(&next.to_secret_string()).unwrap();
        assert_eq!(again.credentials, next.credentials);
    }

    #[test]
    fn temporary_credentials_refused_with_explanation() {
        let e = err(
            serde_json::json!({"iam_user": "u", "host": "email-smtp.us-east-1.amazonaws.com", "username": "ASIAIOSFODNN7EXAMPLE", "password": PW}),
        );
        assert!(e.contains("temporary"), "{e}");
        assert!(e.contains("IAM role"), "{e}");
        assert!(
            e.contains("long-term access key of a dedicated IAM user"),
            "{e}"
        );
        assert!(!e.contains(PW));
    }

    #[test]
    fn errors_name_the_field_and_never_echo_values() {
        let secretish = "SeCrEtVaLuE+that/must/not/leak";
        let cases: Vec<(Value, &str)> = vec![
            (
                serde_json::json!({"host": "email-smtp.us-east-1.amazonaws.com"}),
                "\"iam_user\"",
            ),
            (serde_json::json!({"iam_user": "u"}), "\"host\""),
            (
                serde_json::json!({"iam_user": secretish, "host": "h"}),
                "\"iam_user\"",
            ),
            (
                serde_json::json!({"iam_user": 5, "host": "h"}),
                "\"iam_user\"",
            ),
            (
                serde_json::json!({"iam_user": "u", "host": format!("smtp://{secretish}")}),
                "\"host\"",
            ),
            (
                serde_json::json!({"iam_user": "u", "host": "email-smtp.us-east-1.amazonaws.com", "port": secretish}),
                "\"port\"",
            ),
            (
                serde_json::json!({"iam_user": "u", "host": "email-smtp.us-east-1.amazonaws.com", "port": 70000}),
                "\"port\"",
            ),
            (
                serde_json::json!({"iam_user": "u", "host": "email-smtp.us-east-1.amazonaws.com", "tls": secretish}),
                "\"tls\"",
            ),
            (
                serde_json::json!({"iam_user": "u", "host": "email-smtp.us-east-1.amazonaws.com", "tls": "none"}),
                "\"tls\"",
            ),
            (
                serde_json::json!({"iam_user": "u", "host": "h", "region": secretish}),
                "\"region\"",
            ),
            (
                serde_json::json!({"iam_user": "u", "host": "smtp.example.com"}),
                "\"region\"",
            ),
            (
                serde_json::json!({"iam_user": "u", "host": "email-smtp.us-east-1.amazonaws.com", "region": "eu-west-1"}),
                "\"region\"",
            ),
            (
                serde_json::json!({"iam_user": "u", "host": "email-smtp.us-east-1.amazonaws.com", "username": secretish, "password": secretish}),
                "\"username\"",
            ),
            (
                serde_json::json!({"iam_user": "u", "host": "email-smtp.us-east-1.amazonaws.com", "password": secretish}),
                "\"username\"",
            ),
            (
                serde_json::json!({"iam_user": "u", "host": "email-smtp.us-east-1.amazonaws.com", "username": "AKIAIOSFODNN7EXAMPLE"}),
                "\"password\"",
            ),
            (
                serde_json::json!({"iam_user": "u", "host": "email-smtp.us-east-1.amazonaws.com", "username": "AKIAIOSFODNN7EXAMPLE", "password": 12}),
                "\"password\"",
            ),
        ];
        for (doc, field) in cases {
            let e = err(doc.clone());
            assert!(e.contains(field), "{doc}: {e}");
            assert!(!e.contains(secretish), "{doc}: {e}");
        }
        for text in [
            "",
            "not json",
            "[1,2]",
            "\"x\"",
            &format!("{{\"password\": \"{secretish}\""),
        ] {
            let e = SecretDocument::parse(text).unwrap_err().to_string();
            assert!(!e.contains(secretish), "{e}");
            assert!(e.contains("JSON"), "{e}");
        }
    }

    #[test]
    fn debug_hides_password() {
        let d = parse(serde_json::json!({"iam_user": "u", "host": "email-smtp.us-east-1.amazonaws.com", "username": "AKIAIOSFODNN7EXAMPLE", "password": PW, "other": PW})).unwrap();
        let shown = format!("{d:?}");
        assert!(!shown.contains(PW), "{shown}");
        assert!(shown.contains("AKIAIOSFODNN7EXAMPLE"));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Whatever other fields an operator keeps in the secret, a rotation's write-back
            /// keeps them byte for byte and only sets username/password.
            #[test]
            fn write_back_keeps_every_other_field(
                extra in prop::collection::btree_map("[a-z_]{1,12}", any::<String>(), 0..6),
                n in any::<i64>(),
            ) {
                let mut doc = serde_json::json!({"iam_user": "u", "host": "email-smtp.eu-west-1.amazonaws.com"});
                for (k, v) in &extra {
                    if !["iam_user", "host", "port", "tls", "region", "username", "password"].contains(&k.as_str()) {
                        doc[k] = Value::String(v.clone());
                    }
                }
                doc["n"] = n.into();
                let parsed = parse(doc.clone()).unwrap();
                let written: Value = serde_json::from_str(&parsed.with_credentials(SmtpCredentials {
                    username: "AKIAIOSFODNN7EXAMPLE".into(),
                    password: SmtpPassword::from_string(PW.into()),
                }).to_secret_string()).unwrap();
                let mut want = doc;
                want["username"] = "AKIAIOSFODNN7EXAMPLE".into();
                want["password"] = PW.into();
                prop_assert_eq!(written, want);
            }

            /// No input makes the parser panic, and no error repeats a value longer than a few
            /// characters from the input.
            #[test]
            fn parse_never_panics_or_echoes(text in ".{0,200}", secret in "[A-Za-z0-9+/]{24}") {
                let _ = SecretDocument::parse(&text);
                let doc = format!("{{\"iam_user\": \"u\", \"host\": \"h\", \"port\": \"{secret}\", \"region\": \"{secret}\"}}");
                if let Err(e) = SecretDocument::parse(&doc) {
                    prop_assert!(!e.to_string().contains(&secret));
                }
            }
        }
    }
}
