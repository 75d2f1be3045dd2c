//! Reading a secret document for diagnosis.
//!
//! [`SecretDocument::parse`] refuses a document at its first problem, and refuses some that
//! only a person can fix (white space or quotes around `username`, an `ASIA` key id): exactly
//! the documents `doctor` must explain. So the credentials are read here, as they are, and the
//! rest of the document (destination, region) goes through the one parser the rotation uses,
//! without the credentials, so both agree on what a valid destination is.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use crate::password::{Region, SecretAccessKey, SmtpPassword, derive_smtp_password};
use crate::secret::{Fields, RegionEndpoint, SecretDocument, SecretError};

/// A credential field as stored.
#[derive(Clone)]
pub(crate) enum Raw<T> {
    /// Absent or `null`.
    Missing,
    /// Present but not a JSON string.
    NotString,
    /// The string, exactly as stored.
    Text(T),
}

/// What the document says, read leniently. Holds the password: no `Debug`.
pub(crate) struct Facts {
    /// Why the document as a whole would be refused (its destination part; `None` for a valid
    /// one). Not-JSON and not-an-object errors leave everything else empty.
    pub doc_error: Option<SecretError>,
    /// The destination part, parsed by [`SecretDocument::parse`] (without the credentials).
    /// When only `region` contradicts `host`, this is the document without `region`, so the
    /// `endpoint` check can still say what the host serves.
    pub doc: Option<SecretDocument>,
    /// The `region` field as written, when it contradicts the host (for the `endpoint` check).
    pub region_conflict: Option<(String, String)>,
    /// `username` as stored.
    pub username: Raw<String>,
    /// `password` as stored.
    pub password: Raw<SmtpPassword>,
    /// `passwords` as stored: region code → password (`NotString`: not a JSON object).
    pub passwords: Raw<Vec<(String, Raw<SmtpPassword>)>>,
}

/// One region of the document: its endpoint and the password stored for it.
pub(crate) struct Site<'a> {
    /// The region's endpoint (the primary's is `host`, `port`, `tls`, `region`).
    pub endpoint: RegionEndpoint,
    /// `password` for the primary region, the `passwords` entry for another.
    pub password: &'a Raw<SmtpPassword>,
    /// The primary region (`password`), not a `regions` one.
    pub primary: bool,
}

impl Site<'_> {
    /// The password as stored, when it is a string.
    pub(crate) fn password_text(&self) -> Option<&str> {
        match self.password {
            Raw::Text(p) => Some(p.expose()),
            _ => None,
        }
    }
}

/// What a missing `passwords` entry is.
static MISSING: Raw<SmtpPassword> = Raw::Missing;
/// What an entry of a `passwords` that is not an object is.
static NOT_STRING: Raw<SmtpPassword> = Raw::NotString;

impl Facts {
    /// Reads a document's text. Never fails: what is wrong is recorded for the checks.
    pub(crate) fn read(text: &str) -> Self {
        let empty = |e| Self {
            doc_error: Some(e),
            doc: None,
            region_conflict: None,
            username: Raw::Missing,
            password: Raw::Missing,
            passwords: Raw::Missing,
        };
        // Read as the rotation reads it: every field's text kept, only the known ones parsed.
        let mut destination = match Fields::parse(text) {
            Err(e) => return empty(e),
            Ok(fields) => fields,
        };
        let value = |field: &str| {
            destination
                .get(field)
                .map(|raw| serde_json::from_str::<Value>(raw.get()))
        };
        let username = match value("username") {
            None | Some(Ok(Value::Null)) => Raw::Missing,
            Some(Ok(Value::String(s))) => Raw::Text(s),
            Some(_) => Raw::NotString,
        };
        let password = match value("password") {
            None | Some(Ok(Value::Null)) => Raw::Missing,
            Some(Ok(Value::String(s))) => Raw::Text(SmtpPassword::from_string(s)),
            Some(_) => Raw::NotString,
        };
        let passwords = match value("passwords") {
            None | Some(Ok(Value::Null)) => Raw::Missing,
            Some(Ok(Value::Object(map))) => Raw::Text(
                map.into_iter()
                    .map(|(region, v)| {
                        let p = match v {
                            Value::String(s) => Raw::Text(SmtpPassword::from_string(s)),
                            Value::Null => Raw::Missing,
                            _ => Raw::NotString,
                        };
                        (region, p)
                    })
                    .collect(),
            ),
            Some(_) => Raw::NotString,
        };
        destination.remove("username");
        destination.remove("password");
        let (doc, doc_error, region_conflict) = match parse_map(&destination) {
            Ok(doc) => (Some(doc), None, None),
            Err(SecretError::RegionConflict {
                region,
                host_region,
            }) => {
                destination.remove("region");
                let conflict = Some((region.clone(), host_region.clone()));
                let error = SecretError::RegionConflict {
                    region,
                    host_region,
                };
                (parse_map(&destination).ok(), Some(error), conflict)
            }
            Err(e) => (None, Some(e), None),
        };
        Self {
            doc_error,
            doc,
            region_conflict,
            username,
            password,
            passwords,
        }
    }

    /// Whether the document lists `regions` (then every region-bound check reports each
    /// region by name).
    pub(crate) fn regional(&self) -> bool {
        self.doc.as_ref().is_some_and(|d| d.regions.is_some())
    }

    /// Every region of the document, the primary first (none when the destination part does
    /// not parse).
    pub(crate) fn sites(&self) -> Vec<Site<'_>> {
        let Some(doc) = &self.doc else {
            return Vec::new();
        };
        doc.endpoints()
            .into_iter()
            .enumerate()
            .map(|(i, endpoint)| {
                let password = if i == 0 {
                    &self.password
                } else {
                    match &self.passwords {
                        Raw::Text(all) => all
                            .iter()
                            .find(|(r, _)| r == endpoint.region.as_str())
                            .map_or(&MISSING, |(_, p)| p),
                        Raw::NotString => &NOT_STRING,
                        Raw::Missing => &MISSING,
                    }
                };
                Site {
                    endpoint,
                    password,
                    primary: i == 0,
                }
            })
            .collect()
    }

    /// Whether the document is a JSON object at all (else nothing but `document` can run).
    pub(crate) fn is_object(&self) -> bool {
        !matches!(
            self.doc_error,
            Some(SecretError::NotJson { .. } | SecretError::NotObject)
        )
    }

    /// The password as stored, when it is a string.
    pub(crate) fn password_text(&self) -> Option<&str> {
        match &self.password {
            Raw::Text(p) => Some(p.expose()),
            _ => None,
        }
    }

    /// The username as stored, when it is a string.
    pub(crate) fn username_text(&self) -> Option<&str> {
        match &self.username {
            Raw::Text(u) => Some(u.as_str()),
            _ => None,
        }
    }

    /// The region the password must be derived for: the document's (or, when `region`
    /// contradicts `host`, the host's — the endpoint the client talks to decides).
    pub(crate) fn region(&self) -> Option<&Region> {
        self.doc.as_ref().map(|d| &d.region)
    }

    /// Every secret of this run in every form it could be printed in: the password as stored
    /// and unwrapped, the secret key and the passwords derived from it, and the base64 forms
    /// AUTH PLAIN (`\0user\0pass`) and AUTH LOGIN send. Short values are left out (they would
    /// redact ordinary words).
    pub(crate) fn secrets(&self, key: Option<&Result<SecretAccessKey, String>>) -> Vec<String> {
        let mut passwords: Vec<String> = Vec::new();
        let mut stored: Vec<&str> = self.password_text().into_iter().collect();
        if let Raw::Text(all) = &self.passwords {
            stored.extend(all.iter().filter_map(|(_, p)| match p {
                Raw::Text(p) => Some(p.expose()),
                _ => None,
            }));
        }
        for p in stored {
            passwords.push(p.to_owned());
            passwords.push(unwrap_value(p).inner.to_owned());
        }
        let mut out = passwords.clone();
        if let Some(Ok(k)) = key {
            out.push(k.expose().to_owned());
            let mut regions: Vec<Region> = self.region().into_iter().cloned().collect();
            regions.extend(self.sites().into_iter().map(|s| s.endpoint.region));
            for r in &regions {
                out.push(derive_smtp_password(k, r).expose().to_owned());
            }
        }
        let user = self.username_text().unwrap_or_default();
        for p in &passwords {
            out.push(STANDARD.encode(format!("\0{user}\0{p}")));
            out.push(STANDARD.encode(p));
        }
        out.retain(|s| s.len() >= 8);
        out.sort();
        out.dedup();
        // Longest first, so a longer secret is not left half-redacted by a shorter one inside.
        out.sort_by_key(|s| std::cmp::Reverse(s.len()));
        out
    }
}

fn parse_map(fields: &Fields) -> Result<SecretDocument, SecretError> {
    SecretDocument::from_fields(fields.clone())
}

/// A value with what was wrapped around it taken off.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Unwrapped<'a> {
    /// The value without surrounding white space and quotes.
    pub inner: &'a str,
    /// White space was around it (or around the quotes).
    pub whitespace: bool,
    /// Quotes (`"` or `'`) were around it.
    pub quotes: bool,
}

/// Takes white space and quotes off both ends (a copy-paste leaves these; SES compares bytes).
pub(crate) fn unwrap_value(s: &str) -> Unwrapped<'_> {
    let trimmed = s.trim();
    let whitespace = trimmed.len() != s.len();
    let is_quote = |c: char| c == '"' || c == '\'';
    let unquoted = trimmed.trim_matches(is_quote);
    let quotes = unquoted.len() != trimmed.len();
    let inner = unquoted.trim();
    Unwrapped {
        inner,
        whitespace: whitespace || inner.len() != unquoted.len(),
        quotes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwrap_finds_white_space_and_quotes() {
        for (s, inner, ws, q) in [
            ("abc", "abc", false, false),
            (" abc\n", "abc", true, false),
            ("\"abc\"", "abc", false, true),
            (" 'abc' ", "abc", true, true),
            ("\" abc \"", "abc", true, true),
            ("a b", "a b", false, false),
        ] {
            assert_eq!(
                unwrap_value(s),
                Unwrapped {
                    inner,
                    whitespace: ws,
                    quotes: q
                },
                "{s:?}"
            );
        }
    }

    #[test]
    fn reads_credentials_the_parser_would_refuse() {
        let f = Facts::read(
            r#"{"iam_user":"u","host":"email-smtp.eu-west-1.amazonaws.com","username":" ASIAXXXXXXXXXXXXXXXX","password":7}"#,
        );
        assert!(f.doc_error.is_none());
        assert_eq!(f.username_text(), Some(" ASIAXXXXXXXXXXXXXXXX"));
        assert!(matches!(f.password, Raw::NotString));
        assert_eq!(f.region().unwrap().as_str(), "eu-west-1");
    }

    #[test]
    fn a_document_the_rotation_reads_is_read_here_big_numbers_included() {
        let f = Facts::read(
            r#"{"iam_user":"u","budget":1.0e400,"id":12345678901234567890123,"host":"email-smtp.eu-west-1.amazonaws.com","username":"AKIAIOSFODNN7EXAMPLE","password":"Bpass"}"#,
        );
        assert!(f.doc_error.is_none());
        assert_eq!(f.username_text(), Some("AKIAIOSFODNN7EXAMPLE"));
        assert_eq!(f.password_text(), Some("Bpass"));
        assert_eq!(f.region().unwrap().as_str(), "eu-west-1");
    }

    #[test]
    fn region_conflict_keeps_the_host_region() {
        let f = Facts::read(
            r#"{"iam_user":"u","host":"email-smtp.eu-west-1.amazonaws.com","region":"us-east-1"}"#,
        );
        assert!(matches!(
            f.doc_error,
            Some(SecretError::RegionConflict { .. })
        ));
        assert_eq!(f.region().unwrap().as_str(), "eu-west-1");
        assert_eq!(
            f.region_conflict,
            Some(("us-east-1".to_owned(), "eu-west-1".to_owned()))
        );
    }

    #[test]
    fn not_json_and_not_object_are_recorded() {
        assert!(matches!(
            Facts::read("{").doc_error,
            Some(SecretError::NotJson { .. })
        ));
        assert!(matches!(
            Facts::read("[]").doc_error,
            Some(SecretError::NotObject)
        ));
    }

    #[test]
    fn secrets_include_the_auth_forms() {
        let f = Facts::read(
            r#"{"iam_user":"u","host":"email-smtp.eu-west-1.amazonaws.com","username":"AKIAEXAMPLEEXAMPLE12","password":" Bpassword-pass "}"#,
        );
        let s = f.secrets(None);
        assert!(s.contains(&" Bpassword-pass ".to_owned()));
        assert!(s.contains(&"Bpassword-pass".to_owned()));
        assert!(s.contains(&STANDARD.encode("\0AKIAEXAMPLEEXAMPLE12\0Bpassword-pass")));
        assert!(s.contains(&STANDARD.encode("Bpassword-pass")));
    }
}
