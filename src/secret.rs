//! The secret document: the JSON object kept as the secret's `SecretString`.
//!
//! Operators write `iam_user` and `host` (and optionally `port`, `tls`, `region`); rotation
//! writes `username` (the access key id) and `password` (the SMTP password for `region`). Every
//! other field is kept verbatim across rotations, so the document is parsed into a typed view
//! *and* the original JSON text of every field is kept for the write-back ([`Fields`]): a
//! number such as `12345678901234567890123`, `1.0e400` or `0.1000000000000000055511151231257827`
//! is written back as it was, not as the nearest `u64`/`f64` (nor refused as out of range).
//!
//! With `regions` (operator: extra SES regions, as region codes or endpoint objects) the
//! rotation also writes `passwords`, an object region → SMTP password for the primary region
//! and every listed one, all derived from the one key (see [`SecretDocument::with_key`]).
//!
//! Errors name the field and what is wrong with it, and never echo a value: the document
//! holds a password.

use std::fmt;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::endpoint::{host_for_region, region_from_host};
use crate::password::{Region, SecretAccessKey, SmtpPassword, derive_smtp_password};

/// Default SMTP port: STARTTLS on 587 is open from Lambda (25 is throttled by EC2/Lambda).
pub const DEFAULT_PORT: u16 = 587;

/// Most extra regions one document may list: more than SES has regions, few enough that a
/// hostile document cannot make testSecret open hundreds of connections.
pub const MAX_REGIONS: usize = 32;

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

/// One SES region's SMTP endpoint: where its password is proven by a login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionEndpoint {
    /// The SES region the password is derived for.
    pub region: Region,
    /// SMTP host.
    pub host: String,
    /// SMTP port.
    pub port: u16,
    /// TLS mode.
    pub tls: TlsMode,
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
    /// The extra regions `regions` lists (not the primary), in the document's order; `None`
    /// when the document has no `regions` field (then no `passwords` field is written).
    pub regions: Option<Vec<RegionEndpoint>>,
    /// What to write as `passwords` (see [`SecretDocument::to_secret_string`]).
    passwords: PasswordsField,
    /// The fields this module reads ([`KNOWN_FIELDS`]), parsed.
    raw: Map<String, Value>,
    /// Every field as written, for the write-back.
    fields: Fields,
}

/// The fields a document's typed view is made of: parsed into values. Any other field is only
/// ever copied, as text.
const KNOWN_FIELDS: [&str; 9] = [
    "iam_user",
    "host",
    "port",
    "tls",
    "region",
    "regions",
    "username",
    "password",
    "passwords",
];

/// A JSON object's fields in order, each value as its exact JSON text. A key written twice
/// counts once, at its first place, with its last value (as `serde_json::Map` reads it).
#[derive(Clone, Default)]
pub(crate) struct Fields(Vec<(String, Box<RawValue>)>);

impl Fields {
    /// Reads a JSON object's text.
    ///
    /// # Errors
    /// [`SecretError::NotJson`] (with where) or [`SecretError::NotObject`].
    pub(crate) fn parse(text: &str) -> Result<Self, SecretError> {
        let not_json = |e: serde_json::Error| SecretError::NotJson {
            line: e.line(),
            column: e.column(),
        };
        // The whole text first (syntax only: numbers are not converted), so a syntax error is
        // "not JSON" wherever it is, as before.
        let whole: &RawValue = serde_json::from_str(text).map_err(not_json)?;
        if !whole.get().starts_with('{') {
            return Err(SecretError::NotObject);
        }
        serde_json::from_str::<Self>(whole.get()).map_err(not_json)
    }

    /// The value of `key` as written.
    pub(crate) fn get(&self, key: &str) -> Option<&RawValue> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
    }

    /// Removes `key` (the others keep their order).
    pub(crate) fn remove(&mut self, key: &str) {
        self.0.retain(|(k, _)| k != key);
    }

    /// Sets `key` to the JSON text of `value`: in its place when present, else at the end.
    fn set(&mut self, key: &str, value: &Value) {
        // The text of a `Value` is always valid JSON; the fallback is never taken.
        let Ok(raw) = RawValue::from_string(value.to_string()) else {
            return;
        };
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = raw,
            None => self.0.push((key.to_owned(), raw)),
        }
    }

    /// How many fields.
    fn len(&self) -> usize {
        self.0.len()
    }

    /// The object as JSON text: each key as JSON, each value exactly as held.
    pub(crate) fn to_text(&self) -> String {
        let mut out = String::with_capacity(
            2 + self
                .0
                .iter()
                .map(|(k, v)| k.len() + v.get().len() + 4)
                .sum::<usize>(),
        );
        out.push('{');
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&Value::String(k.clone()).to_string());
            out.push(':');
            out.push_str(v.get());
        }
        out.push('}');
        out
    }
}

impl<'de> serde::Deserialize<'de> for Fields {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Fields;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Fields, A::Error> {
                let mut out: Vec<(String, Box<RawValue>)> = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Box<RawValue>>()? {
                    match out.iter_mut().find(|(key, _)| *key == k) {
                        Some((_, old)) => *old = v,
                        None => out.push((k, v)),
                    }
                }
                Ok(Fields(out))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// The `passwords` field's fate at the write-back.
#[derive(Clone)]
enum PasswordsField {
    /// As read: the credentials were not replaced, so whatever `passwords` holds still goes
    /// with them (a parse followed by a write-back changes nothing).
    AsRead,
    /// Every region's password of the new key, primary first.
    Derived(Vec<(Region, SmtpPassword)>),
    /// Removed: new credentials without `regions`, or whose other regions' passwords are not
    /// known (never leave another key's passwords beside a new `username`).
    Removed,
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
            .field("regions", &self.regions)
            .field("fields", &self.fields.len())
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
    port_value(raw.get("port"), "port", "").map(|p| p.unwrap_or(DEFAULT_PORT))
}

/// A port as a number or a numeric string; `None` when absent. `what` prefixes the reason
/// (e.g. "item 2's \"port\" ").
fn port_value(
    value: Option<&Value>,
    field: &'static str,
    what: &str,
) -> Result<Option<u16>, SecretError> {
    let invalid = |reason: &str| SecretError::Invalid {
        field,
        reason: format!("{what}{reason}"),
    };
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
            .map(Some)
            .ok_or_else(|| invalid("must be a whole number from 1 to 65535")),
        Some(Value::String(s)) => s
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .map(Some)
            .ok_or_else(|| invalid("must be a whole number from 1 to 65535")),
        Some(_) => Err(invalid("must be a number such as 587 or 465")),
    }
}

/// A TLS mode as written; `None` when absent.
fn tls_value(
    value: Option<&Value>,
    field: &'static str,
    what: &str,
) -> Result<Option<TlsMode>, SecretError> {
    let invalid = || SecretError::Invalid {
        field,
        reason: format!("{what}must be \"starttls\" or \"implicit\" (SES has no plaintext mode)"),
    };
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("starttls") => Ok(Some(TlsMode::StartTls)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("implicit") => Ok(Some(TlsMode::Implicit)),
        Some(_) => Err(invalid()),
    }
}

/// The longest DNS name, in characters, without a final dot (RFC 1035: 255 octets on the
/// wire, 253 as text).
pub const MAX_HOST_LEN: usize = 253;

/// What is wrong with a host name as written, with the fix; `None` for a DNS host name: at
/// most [`MAX_HOST_LEN`] characters, labels of 1–63 letters, digits and hyphens (not first or
/// last) separated by dots, one final dot allowed. IPv4 addresses pass (digits and dots); no
/// scheme, port, path, white space, control character, `@`, `_` or other character does.
///
/// A host that passes is safe to put in messages and logs as it is: short, and nothing but
/// letters, digits, hyphens and dots. The reasons never hold the host itself.
pub(crate) fn host_problem(host: &str) -> Option<&'static str> {
    if host.is_empty() {
        return Some("is empty; name the SMTP endpoint, e.g. email-smtp.us-east-1.amazonaws.com");
    }
    if host.contains("://") || host.contains('/') || host.contains(':') {
        return Some(
            "must be a bare host name (no scheme, port or path); put the port in \"port\"",
        );
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Some(
            "is not a host name: only letters, digits, hyphens and dots may appear (no spaces, control characters, @, _ or other characters); write the SMTP endpoint's DNS name, e.g. email-smtp.us-east-1.amazonaws.com",
        );
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.len() > MAX_HOST_LEN {
        return Some(
            "is longer than a DNS name can be (253 characters); write the SMTP endpoint's DNS name",
        );
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Some(
                "has an empty label (a leading dot or two dots in a row); write the SMTP endpoint's DNS name",
            );
        }
        if label.len() > 63 {
            return Some(
                "has a label (a part between dots) longer than 63 characters, which DNS does not allow; write the SMTP endpoint's DNS name",
            );
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Some(
                "has a label (a part between dots) that begins or ends with a hyphen, which DNS does not allow; write the SMTP endpoint's DNS name",
            );
        }
    }
    None
}

/// The primary endpoint a document names, for the `regions` items to default from.
struct Primary<'a> {
    region: &'a Region,
    host: &'a str,
    port: u16,
    tls: TlsMode,
}

/// Parses `regions`: `None` when absent (or null), else the extra endpoints in order.
///
/// Each item is a region code (the endpoint is `host` with its region replaced, so `host`
/// must be an SES endpoint name whose form exists in that region) or an object
/// `{"region", "host"?, "port"?, "tls"?}`: a missing `host` is derived like a bare code; a
/// missing `port` is the document's; a missing `tls` is the document's when the port is too,
/// else the default for the item's port (465/2465 implicit). Refused: another type, more than
/// [`MAX_REGIONS`] items, a string that is no region code, a region listed twice or equal to
/// the primary, an object field other than those four, an item host that is not a bare host
/// name or that names another region than the item's. Errors name the item by position and a
/// validated region code at most, never a value as written.
fn parse_regions(
    value: Option<&Value>,
    primary: &Primary<'_>,
) -> Result<Option<Vec<RegionEndpoint>>, SecretError> {
    let invalid = |reason: String| SecretError::Invalid {
        field: "regions",
        reason,
    };
    let items = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(invalid(
                "must be an array of region codes (\"eu-west-1\") or objects {\"region\", \"host\", \"port\", \"tls\"}".into(),
            ));
        }
    };
    if items.len() > MAX_REGIONS {
        return Err(invalid(format!(
            "lists {} regions; at most {MAX_REGIONS} are allowed",
            items.len()
        )));
    }
    let derived = |n: usize, region: &Region| {
        host_for_region(primary.host, region).ok_or_else(|| {
            invalid(format!(
                "item {n} gives only a region code, but \"host\" is not an SES SMTP endpoint name whose region can be replaced (an own relay, a VPC endpoint, or a form that does not exist in region {region}); give an object {{\"region\", \"host\"}} with that region's endpoint"
            ))
        })
    };
    let not_region = |n: usize| {
        invalid(format!(
            "item {n} is not an AWS region code (lower case, like eu-west-1)"
        ))
    };
    let mut out: Vec<RegionEndpoint> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let n = i + 1;
        let endpoint = match item {
            Value::String(code) => {
                let region = Region::new(code).map_err(|_| not_region(n))?;
                RegionEndpoint {
                    host: derived(n, &region)?,
                    region,
                    port: primary.port,
                    tls: primary.tls,
                }
            }
            Value::Object(fields) => {
                if fields
                    .keys()
                    .any(|k| !["region", "host", "port", "tls"].contains(&k.as_str()))
                {
                    return Err(invalid(format!(
                        "item {n} has a field other than \"region\", \"host\", \"port\" and \"tls\""
                    )));
                }
                let region = match fields.get("region") {
                    Some(Value::String(code)) => Region::new(code).map_err(|_| not_region(n))?,
                    Some(_) => return Err(not_region(n)),
                    None => {
                        return Err(invalid(format!("item {n} is an object without \"region\"")));
                    }
                };
                let host = match fields.get("host") {
                    None | Some(Value::Null) => derived(n, &region)?,
                    Some(Value::String(h)) => {
                        if let Some(why) = host_problem(h) {
                            return Err(invalid(format!("item {n}'s \"host\" {why}")));
                        }
                        if let Some(hr) = region_from_host(h)
                            && hr != region
                        {
                            return Err(invalid(format!(
                                "item {n}'s \"host\" is the SES endpoint of region {hr}, not of its \"region\" {region}; the password is derived per region and SES would answer 535"
                            )));
                        }
                        h.clone()
                    }
                    Some(_) => {
                        return Err(invalid(format!(
                            "item {n}'s \"host\" must be a string: the endpoint's DNS name"
                        )));
                    }
                };
                let what = format!("item {n}'s \"port\" ");
                let port = port_value(fields.get("port"), "regions", &what)?;
                let what = format!("item {n}'s \"tls\" ");
                let tls = tls_value(fields.get("tls"), "regions", &what)?;
                let (port, tls) = match (port, tls) {
                    (None, None) => (primary.port, primary.tls),
                    (None, Some(t)) => (primary.port, t),
                    (Some(p), None) => (p, TlsMode::default_for_port(p)),
                    (Some(p), Some(t)) => (p, t),
                };
                RegionEndpoint {
                    region,
                    host,
                    port,
                    tls,
                }
            }
            _ => {
                return Err(invalid(format!(
                    "item {n} must be a region code or an object {{\"region\", \"host\", \"port\", \"tls\"}}"
                )));
            }
        };
        if endpoint.region == *primary.region {
            return Err(invalid(format!(
                "item {n} repeats the primary region {} (the region of \"host\"/\"region\", whose password is always written); list only the other regions",
                endpoint.region
            )));
        }
        if let Some(j) = out.iter().position(|e| e.region == endpoint.region) {
            return Err(invalid(format!(
                "item {n} repeats region {} (already item {})",
                endpoint.region,
                j + 1
            )));
        }
        out.push(endpoint);
    }
    Ok(Some(out))
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
        Self::from_fields(Fields::parse(text)?)
    }

    /// Validates a document read as [`Fields`] (only [`KNOWN_FIELDS`] are parsed into values).
    ///
    /// # Errors
    /// As [`SecretDocument::parse`].
    pub(crate) fn from_fields(fields: Fields) -> Result<Self, SecretError> {
        let mut raw = Map::new();
        for field in KNOWN_FIELDS {
            if let Some(text) = fields.get(field) {
                let value: Value =
                    serde_json::from_str(text.get()).map_err(|_| SecretError::Invalid {
                        field,
                        reason: "cannot be read (a number out of range, or a string with an invalid escape); write the value this field expects".into(),
                    })?;
                raw.insert(field.to_owned(), value);
            }
        }
        Self::from_map(raw, fields)
    }

    fn from_map(raw: Map<String, Value>, fields: Fields) -> Result<Self, SecretError> {
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
        if let Some(why) = host_problem(host) {
            return Err(SecretError::Invalid {
                field: "host",
                reason: why.into(),
            });
        }
        let port = parse_port(&raw)?;
        let tls = tls_value(raw.get("tls"), "tls", "")?
            .unwrap_or_else(|| TlsMode::default_for_port(port));
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
        let regions = parse_regions(
            raw.get("regions"),
            &Primary {
                region: &region,
                host,
                port,
                tls,
            },
        )?;
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
            regions,
            passwords: PasswordsField::AsRead,
            raw,
            fields,
        })
    }

    /// Every endpoint whose password the document carries: the primary (`host`, `port`,
    /// `tls`, `region`) first, then each of `regions` in order.
    #[must_use]
    pub fn endpoints(&self) -> Vec<RegionEndpoint> {
        let mut all = vec![RegionEndpoint {
            region: self.region.clone(),
            host: self.host.clone(),
            port: self.port,
            tls: self.tls,
        }];
        all.extend(self.regions.iter().flatten().cloned());
        all
    }

    /// The SMTP password the document holds for `region`: `password` for the primary region,
    /// else the `passwords` entry (`None` when there is none, e.g. a region added to
    /// `regions` since the last rotation, or a bootstrap document).
    #[must_use]
    pub fn password_for(&self, region: &Region) -> Option<SmtpPassword> {
        if *region == self.region {
            return self.credentials.as_ref().map(|c| c.password.clone());
        }
        match &self.passwords {
            PasswordsField::Derived(all) => all
                .iter()
                .find(|(r, _)| r == region)
                .map(|(_, p)| p.clone()),
            PasswordsField::Removed => None,
            PasswordsField::AsRead => self
                .raw
                .get("passwords")
                .and_then(|p| p.get(region.as_str()))
                .and_then(Value::as_str)
                .filter(|p| !p.is_empty())
                .map(|p| SmtpPassword::from_string(p.to_owned())),
        }
    }

    /// What differs between two documents apart from the rotation's own fields (`username`,
    /// `password`, `passwords`): the destination fields by name (the host without
    /// case or a trailing dot), then `other fields` when any operator field
    /// differs (their names are the operator's and are not echoed). Empty when a pending
    /// version still carries exactly what AWSCURRENT says.
    #[must_use]
    pub fn differing_fields(&self, other: &Self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.iam_user != other.iam_user {
            out.push("iam_user");
        }
        if !self
            .host
            .trim_end_matches('.')
            .eq_ignore_ascii_case(other.host.trim_end_matches('.'))
        {
            out.push("host");
        }
        if self.port != other.port {
            out.push("port");
        }
        if self.tls != other.tls {
            out.push("tls");
        }
        if self.region != other.region {
            out.push("region");
        }
        if self.raw.get("regions") != other.raw.get("regions") {
            out.push("regions");
        }
        let own = |k: &String| {
            matches!(
                k.as_str(),
                "username"
                    | "password"
                    | "passwords"
                    | "iam_user"
                    | "host"
                    | "port"
                    | "tls"
                    | "region"
                    | "regions"
            )
        };
        // Operator fields are kept as their exact text: compare that text.
        let mine: std::collections::BTreeMap<_, _> = self
            .fields
            .0
            .iter()
            .filter(|(k, _)| !own(k))
            .map(|(k, v)| (k.as_str(), v.get()))
            .collect();
        let theirs: std::collections::BTreeMap<_, _> = other
            .fields
            .0
            .iter()
            .filter(|(k, _)| !own(k))
            .map(|(k, v)| (k.as_str(), v.get()))
            .collect();
        if mine != theirs {
            out.push("other fields");
        }
        out
    }

    /// True when the document has no credentials yet (the first rotation creates them).
    #[must_use]
    pub fn is_bootstrap(&self) -> bool {
        self.credentials.is_none()
    }

    /// The document with `credentials` set, every other field exactly as it was, except
    /// `passwords`: only the primary region's password is known here, so a `passwords` field
    /// (another key's) is removed rather than left beside the new `username`. A rotation
    /// uses [`SecretDocument::with_key`], which derives every region's password.
    #[must_use]
    #[cfg(test)]
    pub fn with_credentials(&self, credentials: SmtpCredentials) -> Self {
        let mut next = self.clone();
        next.credentials = Some(credentials);
        next.passwords = PasswordsField::Removed;
        next
    }

    /// The document with a new key: `username` = `key_id`, `password` = the SMTP password for
    /// the primary region and, when the document has `regions`, `passwords` = region →
    /// password for the primary and every listed region (exactly that set: a region removed
    /// from `regions` loses its entry). Without `regions` no `passwords` field is written and
    /// a left-over one is removed (it would hold the old key's passwords). Every other field
    /// is kept exactly as it was. The secret key is only borrowed: the caller drops it.
    #[must_use]
    pub fn with_key(&self, key_id: &str, secret: &SecretAccessKey) -> Self {
        let mut next = self.clone();
        next.credentials = Some(SmtpCredentials {
            username: key_id.to_owned(),
            password: derive_smtp_password(secret, &self.region),
        });
        next.passwords = match &self.regions {
            Some(_) => PasswordsField::Derived(
                self.endpoints()
                    .into_iter()
                    .map(|e| {
                        let p = derive_smtp_password(secret, &e.region);
                        (e.region, p)
                    })
                    .collect(),
            ),
            None => PasswordsField::Removed,
        };
        next
    }

    /// Serialises the document for `PutSecretValue`: the original object with `username` and
    /// `password` set (or left out in a bootstrap document, with `passwords`), and `passwords`
    /// as [`SecretDocument::with_key`] / [`SecretDocument::with_credentials`] decided (kept
    /// as read when the credentials were not replaced). Every other field is its original
    /// text, in its original place.
    #[must_use]
    pub fn to_secret_string(&self) -> String {
        let mut out = self.fields.clone();
        match &self.credentials {
            Some(c) => {
                out.set("username", &Value::String(c.username.clone()));
                out.set("password", &Value::String(c.password.expose().to_owned()));
                match &self.passwords {
                    PasswordsField::AsRead => {}
                    PasswordsField::Removed => out.remove("passwords"),
                    PasswordsField::Derived(all) => {
                        let map: Map<String, Value> = all
                            .iter()
                            .map(|(r, p)| (r.to_string(), Value::String(p.expose().to_owned())))
                            .collect();
                        out.set("passwords", &Value::Object(map));
                    }
                }
            }
            None => {
                out.remove("username");
                out.remove("password");
                out.remove("passwords");
            }
        }
        out.to_text()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PW: &str = "BMPPgbAHoFVbze1Ud0oA5uNdXRwUXUZ+qOwphGJbl/cS";

    fn parse(v: Value) -> Result<SecretDocument, SecretError> {
        SecretDocument::parse(&v.to_string())
    }

    fn err(v: Value) -> String {
        parse(v).expect_err("should be refused").to_string()
    }

    fn err_text(text: &str) -> String {
        SecretDocument::parse(text)
            .expect_err("should be refused")
            .to_string()
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

    /// Numbers serde_json's `Value` would change (a `u64` overflowing to `f64`, an `f64`
    /// rounding, or refusing `1.0e400` as out of range) and other text a re-serialisation
    /// would rewrite (escapes, white space inside a nested value) are written back exactly,
    /// in their places, whether the credentials are replaced, set anew or left as read.
    #[test]
    fn operator_fields_keep_their_exact_text_big_numbers_included() {
        let kept = [
            ("big", "12345678901234567890123"),
            ("huge", "1.0e400"),
            ("precise", "0.1000000000000000055511151231257827"),
            ("u64_plus_one", "18446744073709551616"),
            ("i64_minus_one", "-9223372036854775809"),
            ("exponent", "1E+2"),
            ("trailing_zero", "2.50"),
            ("negative_zero", "-0"),
            (
                "nested",
                "{\"a\": [1.0e400, 0.1000000000000000055511151231257827], \"b\" : null}",
            ),
            ("escaped", "\"caf\\u00e9 \\ud83d\\ude00 \\/\""),
        ];
        let mut text = String::from("{\"iam_user\": \"ses-smtp\", ");
        for (k, v) in &kept {
            text.push_str(&format!("\"{k}\" : {v},\n"));
        }
        text.push_str(&format!(
            "\"host\": \"email-smtp.us-east-1.amazonaws.com\", \"username\": \"AKIAIOSFODNN7EXAMPLE\", \"password\": \"{PW}\"}}"
        ));
        let d = SecretDocument::parse(&text).expect("a valid document");
        let key = SecretAccessKey::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY").unwrap();
        let bootstrap = {
            let mut b = d.clone();
            b.credentials = None;
            b
        };
        for (what, out) in [
            ("as read", d.to_secret_string()),
            (
                "new credentials",
                d.with_credentials(SmtpCredentials {
                    username: "AKIAI44QH8DHBEXAMPLE".into(),
                    password: SmtpPassword::from_string(PW.into()),
                })
                .to_secret_string(),
            ),
            (
                "new key",
                d.with_key("AKIAI44QH8DHBEXAMPLE", &key).to_secret_string(),
            ),
            ("bootstrap", bootstrap.to_secret_string()),
        ] {
            let mut at = 0;
            for (k, v) in &kept {
                let field = format!("\"{k}\":{v}");
                let found = out
                    .find(&field)
                    .unwrap_or_else(|| panic!("{what}: {field} not written back exactly: {out}"));
                assert!(found > at, "{what}: {k} moved: {out}");
                at = found;
            }
            // And the written document is one the rotation reads again.
            let again = SecretDocument::parse(&out).expect(what);
            assert_eq!(again.iam_user, "ses-smtp", "{what}");
        }
        assert!(
            d.to_secret_string()
                .contains(&format!("\"password\":\"{PW}\""))
        );
        // What the parser refuses to read in a field it needs is named, not "not JSON".
        let e = err_text(
            r#"{"iam_user":"u","host":"email-smtp.us-east-1.amazonaws.com","port":1.0e400}"#,
        );
        assert!(e.contains("\"port\""), "{e}");
    }

    #[test]
    fn a_field_written_twice_counts_once_with_its_last_value_at_its_first_place() {
        let d = SecretDocument::parse(
            r#"{"iam_user":"first","x":1,"host":"email-smtp.us-east-1.amazonaws.com","iam_user":"second"}"#,
        )
        .unwrap();
        assert_eq!(d.iam_user, "second");
        assert_eq!(
            d.to_secret_string(),
            r#"{"iam_user":"second","x":1,"host":"email-smtp.us-east-1.amazonaws.com"}"#
        );
        for (text, not_json) in [
            ("{", true),
            ("[1,", true),
            ("[1]", false),
            ("\"s\"", false),
            (" 7 ", false),
        ] {
            match SecretDocument::parse(text) {
                Err(SecretError::NotJson { .. }) => assert!(not_json, "{text}"),
                Err(SecretError::NotObject) => assert!(!not_json, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
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
    fn host_is_a_dns_name_and_what_is_wrong_is_said_without_it() {
        let label63 = "a".repeat(63);
        let max = format!("{0}.{0}.{0}.{1}", label63, "b".repeat(61)); // 253
        assert_eq!(max.len(), MAX_HOST_LEN);
        for ok in [
            "email-smtp.us-east-1.amazonaws.com",
            "email-smtp.us-east-1.amazonaws.com.",
            "Email-SMTP.US-East-1.amazonaws.com",
            "localhost",
            "127.0.0.1",
            "vpce-0abc123-x1y2.email-smtp.ca-central-1.vpce.amazonaws.com",
            "xn--bcher-kva.example",
            &label63,
            &max,
            &format!("{max}."),
        ] {
            assert_eq!(host_problem(ok), None, "{ok}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("smtp://mail.example.com", "bare host name"),
            ("mail.example.com:587", "bare host name"),
            ("mail.example.com/x", "bare host name"),
            ("[::1]", "bare host name"),
            (
                "user@mail.example.com",
                "only letters, digits, hyphens and dots",
            ),
            ("mail example.com", "only letters, digits, hyphens and dots"),
            (
                "mail\u{7}.example.com",
                "only letters, digits, hyphens and dots",
            ),
            (
                "mail.example.com\u{1b}[2J",
                "only letters, digits, hyphens and dots",
            ),
            ("mail\r\nX-Injected: 1", "bare host name"),
            (
                "mail\r\nX-Injected-1",
                "only letters, digits, hyphens and dots",
            ),
            (
                "smtp_relay.example.com",
                "only letters, digits, hyphens and dots",
            ),
            (
                "m\u{e4}il.example.com",
                "only letters, digits, hyphens and dots",
            ),
            (
                "mail.example.com\u{0}",
                "only letters, digits, hyphens and dots",
            ),
            (&format!("{max}x"), "253"),
            ("mail.example.com..", "empty label"),
            (&"a.".repeat(200), "253"),
            (&format!("{label63}a.example"), "63"),
            (".example.com", "empty label"),
            ("mail..example.com", "empty label"),
            ("-mail.example.com", "hyphen"),
            ("mail-.example.com", "hyphen"),
        ] {
            let got = host_problem(bad).unwrap_or_else(|| panic!("{bad:?} was accepted"));
            assert!(got.contains(why), "{bad:?}: {got}");
        }
    }

    /// A host that is not a DNS name is refused naming "host" (or the `regions` item's
    /// "host") with the fix, and the message holds nothing of it: no part of the value, no
    /// control character, and a bounded length whatever was written.
    #[test]
    fn a_bad_host_is_refused_by_field_without_echoing_it() {
        let hostile = "Hostile-Host-9q";
        for host in [
            format!("{hostile}\u{1b}[31m.example.com"),
            format!("{hostile}\r\nX-Injected: yes"),
            format!("{hostile}.{}", "a".repeat(300)),
            format!("{}.{hostile}", "a".repeat(64)),
            format!("{}.{hostile}", "a.".repeat(130)),
            format!("postmaster@{hostile}.example.com"),
            format!("{hostile} .example.com"),
            format!("{hostile}\u{0}.example.com"),
        ] {
            let primary = SecretDocument::parse(
                &json!({"iam_user": "u", "host": host, "region": "us-east-1"}).to_string(),
            )
            .expect_err("refused");
            let item = SecretDocument::parse(
                &json!({"iam_user": "u", "host": "email-smtp.us-east-1.amazonaws.com",
                        "regions": [{"region": "eu-west-1", "host": host}]})
                .to_string(),
            )
            .expect_err("refused");
            for (e, names) in [
                (&primary, "the secret's \"host\" field is invalid"),
                (
                    &item,
                    "the secret's \"regions\" field is invalid: item 1's \"host\"",
                ),
            ] {
                let text = e.to_string();
                assert!(text.starts_with(names), "{host:?}: {text}");
                assert!(text.contains("DNS") || text.contains("host name"), "{text}");
                assert!(!text.contains(hostile), "{host:?} echoed: {text}");
                assert!(!text.contains("aaaa"), "{host:?} echoed: {text}");
                assert!(!text.chars().any(char::is_control), "{text:?}");
                assert!(text.len() < 400, "{text}");
            }
        }
    }

    #[test]
    fn debug_hides_password() {
        let d = parse(serde_json::json!({"iam_user": "u", "host": "email-smtp.us-east-1.amazonaws.com", "username": "AKIAIOSFODNN7EXAMPLE", "password": PW, "other": PW})).unwrap();
        let shown = format!("{d:?}");
        assert!(!shown.contains(PW), "{shown}");
        assert!(shown.contains("AKIAIOSFODNN7EXAMPLE"));
    }

    const EXAMPLE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn derived(region: &str) -> String {
        let key = SecretAccessKey::new(EXAMPLE_SECRET).unwrap();
        derive_smtp_password(&key, &Region::new(region).unwrap())
            .expose()
            .to_owned()
    }

    fn endpoint(region: &str, host: &str, port: u16, tls: TlsMode) -> RegionEndpoint {
        RegionEndpoint {
            region: Region::new(region).unwrap(),
            host: host.into(),
            port,
            tls,
        }
    }

    #[test]
    fn malformed_regions_are_refused_naming_the_field_and_never_echoing() {
        let secretish = "abcdefghsecret+that/must/not/leak";
        let ses = "email-smtp.us-east-1.amazonaws.com";
        let too_many: Vec<Value> = (0..=MAX_REGIONS)
            .map(|i| json!({"region": format!("xx-test-{}", i % 99), "host": "localhost"}))
            .collect();
        // (host, region field, regions, what the reason must mention)
        let cases: Vec<(&str, Option<&str>, Value, &str)> = vec![
            (ses, None, json!("eu-west-1"), "must be an array"),
            (
                ses,
                None,
                json!({"region": "eu-west-1"}),
                "must be an array",
            ),
            (ses, None, json!(secretish), "must be an array"),
            (ses, None, json!(7), "must be an array"),
            (
                ses,
                None,
                json!([5]),
                "item 1 must be a region code or an object",
            ),
            (
                ses,
                None,
                json!([null]),
                "item 1 must be a region code or an object",
            ),
            (
                ses,
                None,
                json!([["eu-west-1"]]),
                "item 1 must be a region code or an object",
            ),
            (
                ses,
                None,
                json!(["EU-WEST-1"]),
                "item 1 is not an AWS region code",
            ),
            (
                ses,
                None,
                json!(["eu-west-1", secretish]),
                "item 2 is not an AWS region code",
            ),
            (
                ses,
                None,
                json!([" eu-west-1"]),
                "item 1 is not an AWS region code",
            ),
            (
                ses,
                None,
                json!(["email-smtp.eu-west-1.amazonaws.com"]),
                "item 1 is not an AWS region code",
            ),
            (
                ses,
                None,
                json!(["us-east-1"]),
                "item 1 repeats the primary region us-east-1",
            ),
            (
                ses,
                None,
                json!([{"region": "us-east-1", "host": "localhost"}]),
                "repeats the primary region",
            ),
            (
                "localhost",
                Some("eu-central-1"),
                json!([{"region": "eu-central-1", "host": "relay"}]),
                "repeats the primary region eu-central-1",
            ),
            (
                ses,
                None,
                json!(["eu-west-1", "eu-west-1"]),
                "item 2 repeats region eu-west-1 (already item 1)",
            ),
            (
                ses,
                None,
                json!(["eu-west-1", "ap-south-1", {"region": "eu-west-1", "host": "localhost"}]),
                "item 3 repeats region eu-west-1",
            ),
            (
                "localhost",
                Some("us-east-1"),
                json!(["eu-west-1"]),
                "item 1 gives only a region code",
            ),
            (
                "vpce-0abc123-xyz.email-smtp.us-east-1.vpce.amazonaws.com",
                None,
                json!(["eu-west-1"]),
                "item 1 gives only a region code",
            ),
            (
                "email-smtp-fips.us-east-1.amazonaws.com",
                None,
                json!(["cn-north-1"]),
                "item 1 gives only a region code",
            ),
            (
                "localhost",
                Some("us-east-1"),
                json!([{"region": "eu-west-1"}]),
                "item 1 gives only a region code",
            ),
            (
                ses,
                None,
                json!([{"host": "localhost"}]),
                "item 1 is an object without \"region\"",
            ),
            (
                ses,
                None,
                json!([{"region": 5, "host": "localhost"}]),
                "item 1 is not an AWS region code",
            ),
            (
                ses,
                None,
                json!([{"region": secretish, "host": "localhost"}]),
                "item 1 is not an AWS region code",
            ),
            (
                ses,
                None,
                json!([{"region": "eu-west-1", "host": format!("smtp://{secretish}")}]),
                "item 1's \"host\" must be a bare host name",
            ),
            (
                ses,
                None,
                json!([{"region": "eu-west-1", "host": "localhost:2587"}]),
                "item 1's \"host\" must be a bare host name",
            ),
            (
                ses,
                None,
                json!([{"region": "eu-west-1", "host": ""}]),
                "item 1's \"host\" is empty",
            ),
            (
                ses,
                None,
                json!([{"region": "eu-west-1", "host": 7}]),
                "item 1's \"host\" must be a string",
            ),
            (
                ses,
                None,
                json!([{"region": "eu-west-1", "host": "email-smtp.ap-south-1.amazonaws.com"}]),
                "region ap-south-1, not of its \"region\" eu-west-1",
            ),
            (
                ses,
                None,
                json!([{"region": "eu-west-1", "port": secretish}]),
                "item 1's \"port\" must be a whole number",
            ),
            (
                ses,
                None,
                json!([{"region": "eu-west-1", "port": 0}]),
                "item 1's \"port\" must be a whole number",
            ),
            (
                ses,
                None,
                json!([{"region": "eu-west-1", "port": true}]),
                "item 1's \"port\" must be a number",
            ),
            (
                ses,
                None,
                json!([{"region": "eu-west-1", "tls": "none"}]),
                "item 1's \"tls\" must be",
            ),
            (
                ses,
                None,
                json!([{"region": "eu-west-1", "tls": secretish}]),
                "item 1's \"tls\" must be",
            ),
            (
                ses,
                None,
                json!([{"region": "eu-west-1", "hots": "localhost"}]),
                "item 1 has a field other than",
            ),
            (
                ses,
                None,
                json!([{"region": "eu-west-1", secretish: 1}]),
                "item 1 has a field other than",
            ),
            (ses, None, Value::Array(too_many), "at most 32"),
        ];
        for (host, region, regions, reason) in cases {
            let mut doc = json!({"iam_user": "u", "host": host, "regions": regions});
            if let Some(r) = region {
                doc["region"] = r.into();
            }
            let e = parse(doc.clone()).expect_err("should be refused");
            match &e {
                SecretError::Invalid { field, reason: r } => {
                    assert_eq!(*field, "regions", "{doc}: {e}");
                    assert!(r.contains(reason), "{doc}: {reason:?} not in {r:?}");
                }
                other => panic!("{doc}: not an Invalid regions error: {other:?}"),
            }
            let text = e.to_string();
            assert!(text.contains("\"regions\""), "{text}");
            assert!(!text.contains(secretish), "{doc}: {text}");
            assert!(!text.contains("leak"), "{doc}: {text}");
        }
    }

    #[test]
    fn regions_give_the_endpoints_primary_first() {
        let d = parse(json!({
            "iam_user": "u", "host": "email-smtp.us-east-1.amazonaws.com", "port": 587,
            "regions": [
                "eu-west-1",
                {"region": "ap-southeast-2", "host": "localhost", "port": 2465},
                {"region": "us-west-2", "tls": "implicit"},
                {"region": "cn-north-1", "port": "2587", "tls": "starttls"},
                {"region": "eu-central-1", "host": "email-smtp.eu-central-1.amazonaws.com", "port": 465, "tls": null},
                {"region": "sa-east-1", "host": "vpce-0abc-x1.email-smtp.sa-east-1.vpce.amazonaws.com"},
            ],
        }))
        .unwrap();
        use TlsMode::{Implicit, StartTls};
        assert_eq!(
            d.endpoints(),
            vec![
                endpoint(
                    "us-east-1",
                    "email-smtp.us-east-1.amazonaws.com",
                    587,
                    StartTls
                ),
                endpoint(
                    "eu-west-1",
                    "email-smtp.eu-west-1.amazonaws.com",
                    587,
                    StartTls
                ),
                endpoint("ap-southeast-2", "localhost", 2465, Implicit),
                endpoint(
                    "us-west-2",
                    "email-smtp.us-west-2.amazonaws.com",
                    587,
                    Implicit
                ),
                endpoint(
                    "cn-north-1",
                    "email-smtp.cn-north-1.amazonaws.com.cn",
                    2587,
                    StartTls
                ),
                endpoint(
                    "eu-central-1",
                    "email-smtp.eu-central-1.amazonaws.com",
                    465,
                    Implicit
                ),
                endpoint(
                    "sa-east-1",
                    "vpce-0abc-x1.email-smtp.sa-east-1.vpce.amazonaws.com",
                    587,
                    StartTls
                ),
            ]
        );
        // Bare codes keep the host's form and the document's port and TLS mode.
        let d = parse(json!({"iam_user": "u", "host": "email-smtp-fips.us-east-1.api.aws", "port": 465, "regions": ["us-west-2"]})).unwrap();
        assert_eq!(
            d.endpoints()[1],
            endpoint(
                "us-west-2",
                "email-smtp-fips.us-west-2.api.aws",
                465,
                Implicit
            )
        );
        // The primary from `region` with an own relay: objects only.
        let d = parse(json!({"iam_user": "u", "host": "relay.example.com", "region": "eu-west-1", "regions": [{"region": "us-east-1", "host": "relay-us.example.com"}]})).unwrap();
        assert_eq!(d.endpoints().len(), 2);
        // Absent, null and empty.
        for (regions, want) in [
            (None, None),
            (Some(Value::Null), None),
            (Some(json!([])), Some(0)),
        ] {
            let mut doc = json!({"iam_user": "u", "host": "email-smtp.us-east-1.amazonaws.com"});
            if let Some(r) = regions {
                doc["regions"] = r;
            }
            let d = parse(doc).unwrap();
            assert_eq!(d.regions.as_ref().map(Vec::len), want);
            assert_eq!(d.endpoints().len(), 1);
        }
    }

    #[test]
    fn with_key_writes_every_regions_password_and_keeps_the_rest() {
        let original = json!({
            "iam_user": "ses-smtp", "host": "email-smtp.us-east-2.amazonaws.com",
            "regions": ["eu-west-1", {"region": "ap-south-1", "host": "localhost", "port": 2587}],
            "team": "mail", "nested": {"a": [1, {"b": null}]},
            "username": "AKIAOLDOLDOLDOLDOLD1", "password": "old-password",
            // The previous rotation's set: another key's, and a region no longer listed.
            "passwords": {"us-east-2": "old-password", "eu-west-1": "old-eu", "sa-east-1": "old-sa"},
        });
        let d = parse(original.clone()).unwrap();
        let key = SecretAccessKey::new(EXAMPLE_SECRET).unwrap();
        let next = d.with_key("AKIAIOSFODNN7EXAMPLE", &key);
        let written: Value = serde_json::from_str(&next.to_secret_string()).unwrap();
        let mut want = original;
        want["username"] = "AKIAIOSFODNN7EXAMPLE".into();
        // The published worked example: us-east-2.
        want["password"] = "BMPPgbAHoFVbze1Ud0oA5uNdXRwUXUZ+qOwphGJbl/cS".into();
        want["passwords"] = json!({
            "us-east-2": "BMPPgbAHoFVbze1Ud0oA5uNdXRwUXUZ+qOwphGJbl/cS",
            "eu-west-1": derived("eu-west-1"),
            "ap-south-1": derived("ap-south-1"),
        });
        assert_eq!(written, want);
        // Primary first, then the document's order.
        let order: Vec<&String> = written["passwords"].as_object().unwrap().keys().collect();
        assert_eq!(order, ["us-east-2", "eu-west-1", "ap-south-1"]);
        // Read back, each region's password is there; the three differ.
        let again = SecretDocument::parse(&next.to_secret_string()).unwrap();
        for e in again.endpoints() {
            assert_eq!(
                again.password_for(&e.region).unwrap().expose(),
                derived(e.region.as_str())
            );
        }
        assert_ne!(derived("eu-west-1"), derived("ap-south-1"));
        assert_eq!(again.password_for(&Region::new("sa-east-1").unwrap()), None);
        assert!(!format!("{next:?}").contains(&derived("eu-west-1")));
    }

    #[test]
    fn without_regions_no_passwords_field_is_written_and_a_stale_one_goes() {
        let key = SecretAccessKey::new(EXAMPLE_SECRET).unwrap();
        let plain =
            json!({"iam_user": "u", "host": "email-smtp.us-east-2.amazonaws.com", "team": 1});
        let written: Value = serde_json::from_str(
            &parse(plain.clone())
                .unwrap()
                .with_key("AKIAIOSFODNN7EXAMPLE", &key)
                .to_secret_string(),
        )
        .unwrap();
        let mut want = plain.clone();
        want["username"] = "AKIAIOSFODNN7EXAMPLE".into();
        want["password"] = derived("us-east-2").into();
        assert_eq!(written, want);
        // `regions` removed since the last rotation: the old key's passwords must not stay.
        let mut stale = plain;
        stale["passwords"] = json!({"us-east-2": "old", "eu-west-1": "old-eu"});
        let written: Value = serde_json::from_str(
            &parse(stale)
                .unwrap()
                .with_key("AKIAIOSFODNN7EXAMPLE", &key)
                .to_secret_string(),
        )
        .unwrap();
        assert_eq!(written, want);
    }

    #[test]
    fn regions_empty_writes_the_primary_only_and_unchanged_documents_round_trip() {
        let key = SecretAccessKey::new(EXAMPLE_SECRET).unwrap();
        let d = parse(
            json!({"iam_user": "u", "host": "email-smtp.us-east-2.amazonaws.com", "regions": []}),
        )
        .unwrap();
        let written: Value =
            serde_json::from_str(&d.with_key("AKIAIOSFODNN7EXAMPLE", &key).to_secret_string())
                .unwrap();
        assert_eq!(
            written["passwords"],
            json!({"us-east-2": derived("us-east-2")})
        );
        // A parse and write-back without new credentials changes nothing, `passwords` included.
        let doc = json!({"iam_user": "u", "host": "email-smtp.us-east-2.amazonaws.com", "regions": ["eu-west-1"],
                         "username": "AKIAIOSFODNN7EXAMPLE", "password": PW, "passwords": {"us-east-2": PW, "eu-west-1": "x"}});
        let d = parse(doc.clone()).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&d.to_secret_string()).unwrap(),
            doc
        );
        assert_eq!(
            d.password_for(&Region::new("eu-west-1").unwrap())
                .unwrap()
                .expose(),
            "x"
        );
        // New credentials with only the primary's password: the other regions' are unknown,
        // so `passwords` (the old key's) is removed rather than left beside them.
        let next = d.with_credentials(SmtpCredentials {
            username: "AKIAIOSFODNN7EXAMPL2".into(),
            password: SmtpPassword::from_string(PW.into()),
        });
        let written: Value = serde_json::from_str(&next.to_secret_string()).unwrap();
        assert!(written.get("passwords").is_none(), "{written}");
        assert_eq!(next.password_for(&Region::new("eu-west-1").unwrap()), None);
        // A bootstrap write-back carries no passwords either.
        let mut boot = parse(doc).unwrap();
        boot.credentials = None;
        let written: Value = serde_json::from_str(&boot.to_secret_string()).unwrap();
        assert!(written.get("passwords").is_none() && written.get("password").is_none());
    }

    #[test]
    fn regions_are_part_of_the_destination() {
        let base = json!({"iam_user": "u", "host": "email-smtp.us-east-1.amazonaws.com", "regions": ["eu-west-1"]});
        let a = parse(base.clone()).unwrap();
        let mut other = base.clone();
        other["regions"] = json!(["eu-west-2"]);
        assert_eq!(a.differing_fields(&parse(other).unwrap()), ["regions"]);
        let mut none = base;
        none.as_object_mut().unwrap().remove("regions");
        assert_eq!(a.differing_fields(&parse(none).unwrap()), ["regions"]);
        assert!(a.differing_fields(&a.clone()).is_empty());
    }

    #[test]
    fn differing_fields_names_destination_fields_and_hides_operator_field_names() {
        let base = json!({"iam_user": "u", "host": "email-smtp.us-east-1.amazonaws.com",
            "username": "AKIAIOSFODNN7EXAMPLE", "password": PW, "team": "mail", "n": 1});
        let a = parse(base.clone()).unwrap();
        // Credentials, host case and a trailing dot, and field order do not count.
        let same = json!({"n": 1, "team": "mail", "host": "EMAIL-SMTP.us-east-1.amazonaws.com.",
            "iam_user": "u"});
        assert!(a.differing_fields(&parse(same).unwrap()).is_empty());
        let mut b = base.clone();
        b["port"] = json!(2587);
        b["iam_user"] = json!("v");
        b["secret_note_name"] = json!("x");
        let d = a.differing_fields(&parse(b).unwrap());
        assert_eq!(d, ["iam_user", "port", "other fields"]);
        let mut c = base;
        c["n"] = json!(2);
        assert_eq!(a.differing_fields(&parse(c).unwrap()), ["other fields"]);
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
                    if !["iam_user", "host", "port", "tls", "region", "username", "password", "regions", "passwords"].contains(&k.as_str()) {
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
