//! The checks that need nothing but the document (and the secret key, when given): pure
//! functions from [`Facts`] to a [`Check`], each with a table test.
//!
//! No text here contains a value of `username` unless it has the shape of an access key id (a
//! key id is not secret; anything else in that field might be a pasted secret), and none
//! contains any part of the password.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::input::{Facts, Raw, unwrap_value};
use super::{Check, CheckId};
use crate::endpoint::{AllowedHosts, parse_ses_host};
use crate::identify::{PasswordKind, identify_password};
use crate::password::{Region, SMTP_PASSWORD_LEN, SecretAccessKey, SmtpPassword};
use crate::secret::{RegionEndpoint, SecretError, TlsMode};

/// `AKIA`/`ASIA` followed by upper-case letters and digits: safe to print.
fn key_id_shape(s: &str) -> bool {
    (16..=128).contains(&s.len())
        && (s.starts_with("AKIA") || s.starts_with("ASIA"))
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// An IAM user name's alphabet and length.
fn iam_user_shape(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
}

/// `document`: the document parses; otherwise the field at fault and what to write there.
pub(crate) fn document(f: &Facts) -> Check {
    let id = CheckId::Document;
    let Some(e) = &f.doc_error else {
        let Some(d) = &f.doc else {
            return Check::fail(
                id,
                "the secret document could not be read",
                "store a JSON object with iam_user and host",
            );
        };
        let creds = match (&f.username, &f.password) {
            (Raw::Missing, Raw::Missing) => ", no credentials yet",
            _ => "",
        };
        let regions = match &d.regions {
            Some(r) if !r.is_empty() => format!(
                ", and regions {}",
                r.iter()
                    .map(|e| format!("{} at {}:{} ({})", e.region, e.host, e.port, e.tls))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            _ => String::new(),
        };
        return Check::pass(
            id,
            format!(
                "iam_user {}, host {}:{} ({}), region {}{regions}{creds}",
                d.iam_user, d.host, d.port, d.tls, d.region
            ),
        );
    };
    let fix = match e {
        SecretError::NotJson { .. } | SecretError::NotObject | SecretError::NoSecretString => {
            "store a JSON object like {\"iam_user\": \"smtp-sender\", \"host\": \"email-smtp.us-east-1.amazonaws.com\", \"username\": \"AKIA...\", \"password\": \"...\"}".to_owned()
        }
        SecretError::Missing { field, hint } => format!("add \"{field}\": {hint}"),
        SecretError::Invalid { field, .. } => format!("correct the \"{field}\" field"),
        SecretError::NoRegion => "add \"region\" (the SES region the password is for)".to_owned(),
        SecretError::RegionConflict { host_region, .. } => format!(
            "make \"region\" the host's region ({host_region}), or point \"host\" at the endpoint of the region the password is for"
        ),
        SecretError::TemporaryCredentials | SecretError::HalfCredentials { .. } => {
            "see the username and password-format checks".to_owned()
        }
    };
    let summary = match e {
        SecretError::NotJson { line, column } => {
            format!("the document is not valid JSON (syntax error at line {line}, column {column})")
        }
        SecretError::NotObject => "the document is JSON but not an object".to_owned(),
        other => other.to_string(),
    };
    Check::fail(id, summary, fix)
}

/// `username`: a long-term access key id. Also returns the key id (unwrapped) when there is
/// one, for the IAM checks.
pub(crate) fn username(f: &Facts) -> (Check, Option<String>) {
    let id = CheckId::Username;
    let iam_user = f.doc.as_ref().map(|d| d.iam_user.as_str());
    let text = match &f.username {
        Raw::Missing => {
            let check = if matches!(f.password, Raw::Missing) {
                Check::fail(
                    id,
                    "the document has no username and no password: nothing can log in yet (a bootstrap document)",
                    "rotate the secret once (aws secretsmanager rotate-secret --secret-id ...): the first rotation creates the key and writes both",
                )
            } else {
                Check::fail(
                    id,
                    "the document has a password but no username",
                    "add \"username\": the access key id (AKIA...) the password was derived from, or remove both and rotate",
                )
            };
            return (check, None);
        }
        Raw::NotString => {
            return (
                Check::fail(
                    id,
                    "\"username\" is not a string",
                    "write the access key id as a JSON string: \"username\": \"AKIA...\"",
                ),
                None,
            );
        }
        Raw::Text(t) => t.as_str(),
    };
    let u = unwrap_value(text);
    let inner = u.inner;
    let shown = if key_id_shape(inner) {
        inner.to_owned()
    } else {
        "the value".to_owned()
    };
    let key_id = (key_id_shape(inner) && inner.starts_with("AKIA")).then(|| inner.to_owned());
    if inner.is_empty() {
        return (
            Check::fail(
                id,
                "\"username\" is empty",
                "write the access key id (AKIA...) there",
            ),
            None,
        );
    }
    if f.password_text()
        .is_some_and(|p| unwrap_value(p).inner == inner)
    {
        return (
            Check::fail(
                id,
                "\"username\" holds the password",
                "the SMTP user name is the access key id (AKIA...); the password goes into \"password\"",
            ),
            None,
        );
    }
    if u.whitespace || u.quotes {
        let what = match (u.whitespace, u.quotes) {
            (true, true) => "white space and quotes",
            (true, false) => "white space",
            _ => "quotes",
        };
        return (
            Check::fail(
                id,
                format!("\"username\" has {what} around {shown}: SES compares it byte for byte"),
                "remove them: \"username\": \"AKIA...\" with nothing around the key id",
            ),
            key_id,
        );
    }
    if inner.starts_with("ASIA") && key_id_shape(inner) {
        return (
            Check::fail(
                id,
                format!(
                    "{inner} is a temporary access key id (ASIA...): credentials of an IAM role or session never work with SES SMTP"
                ),
                format!(
                    "use a long-term access key (AKIA...) of a dedicated IAM user{}: remove username and password and rotate the secret, which creates one",
                    iam_user.map(|u| format!(" ({u})")).unwrap_or_default()
                ),
            ),
            None,
        );
    }
    if key_id.is_some() {
        return (
            Check::pass(id, format!("{inner} is a long-term access key id")),
            key_id,
        );
    }
    if iam_user == Some(inner) || iam_user_shape(inner) {
        let whose = match iam_user {
            Some(u) if u == inner => format!("the IAM user name ({inner})"),
            _ => "an IAM user name".to_owned(),
        };
        return (
            Check::fail(
                id,
                format!("\"username\" holds {whose}, not an access key id"),
                format!(
                    "the SMTP user name is the access key id (AKIA...) of one of {}'s keys, not the user's name",
                    iam_user.unwrap_or("the IAM user")
                ),
            ),
            None,
        );
    }
    (
        Check::fail(
            id,
            "\"username\" is not an access key id (AKIA followed by 16 upper-case letters and digits)",
            "write the access key id (AKIA...) the password was derived from",
        ),
        None,
    )
}

/// What a password looks like, from its characters alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// 44 characters of base64, 33 bytes, version byte 0x04 first.
    V4,
    /// The same with 0x02 first: the legacy SigV2 password.
    V2,
    /// 33 bytes whose *last* byte is a version byte.
    VersionLast,
    /// 40 characters of a secret access key's alphabet.
    RawSecretKey,
    /// Anything else.
    Other,
}

pub(crate) fn shape(p: &str) -> Shape {
    // A legacy V2 password by its form alone: 44 characters of base64 (either alphabet)
    // starting with A, whatever its version byte decodes to (a mangled or hand-typed one is
    // still recognisably V2, not "not an SES password").
    let v2_form = p.len() == SMTP_PASSWORD_LEN
        && p.starts_with('A')
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=-_".contains(&b));
    if p.len() == SMTP_PASSWORD_LEN
        && let Ok(bytes) = STANDARD.decode(p)
        && bytes.len() == 33
    {
        return match (bytes[0], bytes[32]) {
            (0x04, _) => Shape::V4,
            (0x02, _) => Shape::V2,
            (_, 0x04 | 0x02) => Shape::VersionLast,
            _ if v2_form => Shape::V2,
            _ => Shape::Other,
        };
    }
    if v2_form {
        return Shape::V2;
    }
    if p.len() == 40
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'/' || b == b'+')
    {
        return Shape::RawSecretKey;
    }
    Shape::Other
}

/// `password-format`: the shape of a V4 SMTP password.
pub(crate) fn password_format(f: &Facts) -> Check {
    password_format_of(f, &f.password, f.region(), true)
}

/// `password-format` for one region's password: `password` (the primary region's) or its
/// `passwords` entry.
pub(crate) fn password_format_of(
    f: &Facts,
    password: &Raw<SmtpPassword>,
    region: Option<&Region>,
    primary: bool,
) -> Check {
    let id = CheckId::PasswordFormat;
    let region_code = region.map_or("REGION".to_owned(), ToString::to_string);
    let text = match password {
        Raw::Missing if matches!(f.username, Raw::Missing) => {
            return Check::skip(id, "no password in the document (see username)");
        }
        Raw::Missing if !primary => {
            let what = match &f.passwords {
                Raw::Missing => format!(
                    "\"regions\" lists {region_code} but the document has no \"passwords\" field"
                ),
                Raw::NotString => "\"passwords\" is not a JSON object".to_owned(),
                Raw::Text(_) => format!("\"passwords\" has no password for {region_code}"),
            };
            return Check::fail(
                id,
                format!("{what}: SES in {region_code} cannot be logged in to with this secret"),
                "rotate the secret (aws secretsmanager rotate-secret --secret-id ...): a rotation writes every listed region's password into \"passwords\" (a region added since the last rotation has none yet)",
            );
        }
        Raw::NotString if !primary => {
            return Check::fail(
                id,
                format!("\"passwords\" holds something other than a string for {region_code}"),
                "rotate the secret: the rotation writes each region's password as a JSON string",
            );
        }
        Raw::Missing => {
            return Check::fail(
                id,
                "the document has a username but no password",
                "add \"password\": the SMTP password derived from the key's secret (ses-smtp-rotator smtp-password --region REGION), or remove both and rotate",
            );
        }
        Raw::NotString => {
            return Check::fail(
                id,
                "\"password\" is not a string",
                "write the SMTP password as a JSON string",
            );
        }
        Raw::Text(p) => p.expose(),
    };
    let region = region_code;
    let derive =
        format!("ses-smtp-rotator smtp-password --region {region} (the key's secret on stdin)");
    let u = unwrap_value(text);
    if u.inner.is_empty() {
        return Check::fail(id, "\"password\" is empty", "write the SMTP password there");
    }
    if u.whitespace || u.quotes {
        let what = match (u.whitespace, u.quotes) {
            (true, true) => "white space and quotes",
            (true, false) => "white space (a space or line break)",
            _ => "quotes",
        };
        let inside = if shape(u.inner) == Shape::V4 {
            " (inside is a V4-shaped password)"
        } else {
            ""
        };
        return Check::fail(
            id,
            format!("\"password\" has {what} around it{inside}: SES compares it byte for byte"),
            "remove them: store exactly the 44 characters of the password",
        );
    }
    match shape(u.inner) {
        Shape::V4 => Check::pass(
            id,
            "44 characters starting with B: the shape of a V4 SMTP password",
        ),
        Shape::V2 => Check::fail(
            id,
            "44 characters starting with A: a SigV2 SMTP password (legacy V2), no longer accepted by SES",
            format!(
                "derive the V4 password with `ses-smtp-rotator smtp-password --region {region}` from the secret access key (on stdin), or rotate the secret"
            ),
        ),
        Shape::VersionLast => Check::fail(
            id,
            "44 characters whose version byte is at the end instead of the start (a known bug in published derivation scripts)",
            format!(
                "derive it again with a correct implementation: {derive}, or rotate the secret"
            ),
        ),
        Shape::RawSecretKey => Check::fail(
            id,
            "40 characters: this looks like the raw secret access key, not an SMTP password",
            format!("SES wants a password derived from the secret: {derive}, or rotate the secret"),
        ),
        Shape::Other => Check::fail(
            id,
            format!(
                "{} characters: not an SES SMTP password (V4 passwords are 44 characters of base64 starting with B)",
                u.inner.chars().count()
            ),
            "store the SMTP password derived from the key's secret, or rotate the secret",
        ),
    }
}

/// `password-derivation`: with the secret key, which password this is.
pub(crate) fn password_derivation(
    f: &Facts,
    key: Option<&Result<SecretAccessKey, String>>,
) -> Check {
    password_derivation_of(f.password_text(), f.region(), key)
}

/// `password-derivation` for one region's password.
pub(crate) fn password_derivation_of(
    password: Option<&str>,
    region: Option<&Region>,
    key: Option<&Result<SecretAccessKey, String>>,
) -> Check {
    let id = CheckId::PasswordDerivation;
    let Some(key) = key else {
        return Check::skip_with(
            id,
            "no secret access key given to compare with",
            "to tell which password this is, run again with --secret-access-key-file PATH (a file holding the key's secret)",
        );
    };
    let key = match key {
        Ok(k) => k,
        Err(why) => {
            return Check::skip_with(
                id,
                format!("the key file holds no usable secret access key: {why}"),
                "the file must hold only the 40-character secret access key (a trailing newline is fine)",
            );
        }
    };
    let Some(password) = password else {
        return Check::skip(id, "no password to compare (see password-format)");
    };
    let Some(region) = region else {
        return Check::skip(id, "the document names no usable region (see document)");
    };
    let inner = unwrap_value(password).inner;
    let wrapped = inner.len() != password.len();
    let kind = identify_password(key, region, inner);
    let around = if wrapped {
        " (once the white space or quotes around it are removed)"
    } else {
        ""
    };
    let rotate = format!(
        "ses-smtp-rotator smtp-password --region {region} (the key's secret on stdin), or rotate the secret (the rotation derives it correctly)"
    );
    match kind {
        PasswordKind::V4 { region } => {
            Check::pass(id, format!("the correct V4 password for {region}{around}"))
        }
        PasswordKind::V4OtherRegion { region: other } => Check::fail(
            id,
            format!(
                "a V4 password derived for {other}, but the endpoint serves {region}: SMTP passwords differ per region"
            ),
            format!("derive it for {region}: {rotate}"),
        ),
        PasswordKind::LegacyV2 => Check::fail(
            id,
            "the legacy V2 (SigV2) password of this key, which SES no longer accepts",
            format!("derive the V4 password for {region}: {rotate}"),
        ),
        PasswordKind::VersionByteLast { version } => Check::fail(
            id,
            format!(
                "derived from this key, but with the version byte 0x{version:02x} appended instead of prepended (a known bug in published scripts)"
            ),
            format!("derive it again for {region}: {rotate}"),
        ),
        PasswordKind::RawSecretKey => Check::fail(
            id,
            "the password is the raw secret access key itself, not a password derived from it",
            format!("derive the SMTP password for {region}: {rotate}"),
        ),
        PasswordKind::Unrelated if shape(inner) == Shape::V2 => Check::fail(
            id,
            "a SigV2 SMTP password by its form (44 characters starting with A), no longer accepted by SES, and not this key's",
            format!(
                "derive the V4 password with `ses-smtp-rotator smtp-password --region {region}` from the secret access key of the key in \"username\", or rotate the secret"
            ),
        ),
        PasswordKind::Unrelated => Check::fail(
            id,
            "not derived from this secret access key by any known scheme: it belongs to another key, or is garbled",
            "check that the key file holds the secret of the key in \"username\"; if that secret is lost, rotate the secret",
        ),
    }
}

/// SES's SMTP ports and the TLS mode each speaks.
fn ses_port_mode(port: u16) -> Option<TlsMode> {
    match port {
        25 | 587 | 2587 => Some(TlsMode::StartTls),
        465 | 2465 => Some(TlsMode::Implicit),
        _ => None,
    }
}

/// `endpoint`: the host is an SES endpoint (or allowed), its region and the document's agree,
/// and the port and TLS mode fit each other.
pub(crate) fn endpoint(f: &Facts, allowed: &Result<AllowedHosts, String>) -> Check {
    let Some(d) = &f.doc else {
        return Check::skip(
            CheckId::Endpoint,
            "the document's host, port or region is not usable (see document)",
        );
    };
    let primary = RegionEndpoint {
        region: d.region.clone(),
        host: d.host.clone(),
        port: d.port,
        tls: d.tls,
    };
    endpoint_of(&primary, f.region_conflict.as_ref(), allowed)
}

/// `endpoint` for one region's endpoint; `conflict` is the primary's `region` field when it
/// contradicts `host` (as written, and the host's region).
pub(crate) fn endpoint_of(
    d: &RegionEndpoint,
    conflict: Option<&(String, String)>,
    allowed: &Result<AllowedHosts, String>,
) -> Check {
    let id = CheckId::Endpoint;
    let allowed = match allowed {
        Ok(a) => a,
        Err(e) => {
            return Check::fail(
                id,
                e.clone(),
                "correct SMTP_ALLOWED_HOSTS (comma-separated host names or *.suffix patterns) or unset it",
            );
        }
    };
    let where_ = format!("{}:{}", d.host, d.port);
    if let Some(ses) = parse_ses_host(&d.host) {
        if let Some((region, host_region)) = conflict {
            return Check::fail(
                id,
                format!(
                    "{} serves {host_region}, but the document's region is {region}: the password must be derived for the endpoint's region",
                    d.host
                ),
                format!(
                    "set \"region\" to {host_region} (and derive the password for it), or use the endpoint of {region}"
                ),
            );
        }
        if ses.region != d.region {
            return Check::fail(
                id,
                format!(
                    "{} serves {}, but its password is for {}: the password must be derived for the endpoint's region",
                    d.host, ses.region, d.region
                ),
                format!(
                    "point the {} entry at the endpoint of {} (or list the region {} instead)",
                    d.region, d.region, ses.region
                ),
            );
        }
        return match ses_port_mode(d.port) {
            None => Check::fail(
                id,
                format!(
                    "{} is an {} for {}, but SES SMTP does not listen on port {}",
                    d.host,
                    ses.form.as_str(),
                    ses.region,
                    d.port
                ),
                "use port 587 (STARTTLS, \"tls\": \"starttls\") or 465 (\"tls\": \"implicit\"); 25 and 2587 / 2465 also work",
            ),
            Some(mode) if mode != d.tls => Check::fail(
                id,
                format!(
                    "port {} of SES speaks {mode} but the document says \"tls\": \"{}\"",
                    d.port, d.tls
                ),
                format!(
                    "set \"tls\": \"{mode}\" (or leave \"tls\" out: it follows the port), or use port {}",
                    if d.tls == TlsMode::StartTls { 587 } else { 465 }
                ),
            ),
            Some(_) => Check::pass(
                id,
                format!(
                    "{where_} is an {} for {} ({})",
                    ses.form.as_str(),
                    ses.region,
                    d.tls
                ),
            ),
        };
    }
    if allowed.allowed_by_operator(&d.host) {
        return match ses_port_mode(d.port) {
            Some(mode) if mode != d.tls => Check::warn(
                id,
                format!(
                    "{} is not an SES endpoint name but SMTP_ALLOWED_HOSTS allows it; port {} usually speaks {mode}, the document says {}",
                    d.host, d.port, d.tls
                ),
                "if the connect check fails, make \"tls\" fit the port",
            ),
            _ => Check::pass(
                id,
                format!(
                    "{where_} is not an SES endpoint name, but SMTP_ALLOWED_HOSTS allows it (password region {}, {})",
                    d.region, d.tls
                ),
            ),
        };
    }
    Check::fail(
        id,
        format!(
            "{} is not an SES SMTP endpoint name and SMTP_ALLOWED_HOSTS does not allow it: credentials are not sent there",
            d.host
        ),
        format!(
            "use the SES endpoint of your region, email-smtp.{}.amazonaws.com; if the host is your own relay, add it to SMTP_ALLOWED_HOSTS",
            d.region
        ),
    )
}

/// `url-encoding`: characters that break URL-style SMTP settings unless percent-encoded.
pub(crate) fn url_encoding(f: &Facts) -> Check {
    url_encoding_of(f.password_text())
}

/// `url-encoding` for one region's password.
pub(crate) fn url_encoding_of(password: Option<&str>) -> Check {
    let id = CheckId::UrlEncoding;
    let Some(p) = password else {
        return Check::skip(id, "no password (see password-format)");
    };
    let inner = unwrap_value(p).inner;
    let found: Vec<&str> = [("+", "%2B"), ("/", "%2F"), ("=", "%3D")]
        .iter()
        .filter(|(c, _)| inner.contains(c))
        .map(|(c, _)| *c)
        .collect();
    if found.is_empty() {
        return Check::pass(
            id,
            "the password has no +, / or =: it is safe in URL-style settings as it is",
        );
    }
    let listed = found
        .iter()
        .map(|c| format!("'{c}'"))
        .collect::<Vec<_>>()
        .join(", ");
    Check::warn(
        id,
        format!(
            "the password contains {listed}: a URL-style setting (smtp://USER:PASSWORD@host:587) breaks or changes it unless percent-encoded"
        ),
        "in URLs write + as %2B, / as %2F, = as %3D; plain user/password settings need no change",
    )
}

#[cfg(test)]
mod tests {
    use super::super::Status;
    use super::*;
    use crate::password::{Region, derive_smtp_password};
    use serde_json::json;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";

    fn v4(region: &str) -> String {
        derive_smtp_password(
            &SecretAccessKey::new(SECRET).unwrap(),
            &Region::new(region).unwrap(),
        )
        .expose()
        .to_owned()
    }

    fn facts(extra: serde_json::Value) -> Facts {
        let mut doc =
            json!({"iam_user": "smtp-sender", "host": "email-smtp.eu-west-1.amazonaws.com"});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                doc.as_object_mut().unwrap().remove(k);
            } else {
                doc[k] = v.clone();
            }
        }
        Facts::read(&doc.to_string())
    }

    fn status_and(c: &Check, needle: &str) {
        assert!(
            c.summary.contains(needle) || c.fix.as_deref().unwrap_or("").contains(needle),
            "{needle:?} not in {c:?}"
        );
    }

    #[test]
    fn document_names_the_field_at_fault() {
        for (extra, status, needle) in [
            (json!({}), Status::Pass, "region eu-west-1"),
            (
                json!({"regions": ["us-east-2"]}),
                Status::Pass,
                "region eu-west-1, and regions us-east-2 at email-smtp.us-east-2.amazonaws.com:587 (starttls)",
            ),
            (json!({"host": null}), Status::Fail, "\"host\""),
            (json!({"port": "smtp"}), Status::Fail, "\"port\""),
            (json!({"tls": "ssl"}), Status::Fail, "\"tls\""),
            (
                json!({"iam_user": "arn:aws:iam::1:user/x"}),
                Status::Fail,
                "\"iam_user\"",
            ),
            (json!({"region": "us-east-1"}), Status::Fail, "contradicts"),
            (
                json!({"host": "smtp.example.com"}),
                Status::Fail,
                "\"region\"",
            ),
        ] {
            let c = document(&facts(extra.clone()));
            assert_eq!(c.status, status, "{extra}: {c:?}");
            status_and(&c, needle);
        }
        assert_eq!(document(&Facts::read("nope")).status, Status::Fail);
    }

    #[test]
    fn username_tells_each_mistake_apart() {
        let pw = v4("eu-west-1");
        for (user, status, needle, key) in [
            (json!(KEY_ID), Status::Pass, "long-term", true),
            (
                json!(format!(" {KEY_ID}\n")),
                Status::Fail,
                "white space",
                true,
            ),
            (json!(format!("\"{KEY_ID}\"")), Status::Fail, "quotes", true),
            (
                json!("ASIAIOSFODNN7EXAMPLE"),
                Status::Fail,
                "temporary",
                false,
            ),
            (
                json!("smtp-sender"),
                Status::Fail,
                "IAM user name (smtp-sender)",
                false,
            ),
            (json!("ses-mailer"), Status::Fail, "an IAM user name", false),
            (json!(pw.clone()), Status::Fail, "holds the password", false),
            (
                json!("akia-lower/case"),
                Status::Fail,
                "not an access key id",
                false,
            ),
            (json!(12), Status::Fail, "not a string", false),
            (json!(null), Status::Fail, "no username", false),
        ] {
            let f = facts(json!({"username": user, "password": pw}));
            let (c, k) = username(&f);
            assert_eq!(c.status, status, "{user}: {c:?}");
            status_and(&c, needle);
            assert_eq!(k.is_some(), key, "{user}");
            assert!(!c.summary.contains(&pw), "{user}");
        }
        let (c, _) = username(&facts(json!({})));
        status_and(&c, "bootstrap");
    }

    #[test]
    fn password_format_tells_each_shape_apart() {
        let good = v4("eu-west-1");
        let mut appended = STANDARD.decode(&good).unwrap();
        appended.rotate_left(1);
        let appended = STANDARD.encode(appended);
        let v2 = "AnkqhOiWEcszZZzTMCQbOY1sPGoLFgMH9zhp4eNgSjo4";
        for (pw, status, needle) in [
            (json!(good.clone()), Status::Pass, "V4"),
            (json!(format!("{good}\n")), Status::Fail, "white space"),
            (json!(format!(" {good}")), Status::Fail, "inside is a V4"),
            (json!(format!("\"{good}\"")), Status::Fail, "quotes"),
            (json!(v2), Status::Fail, "legacy V2"),
            (json!(appended), Status::Fail, "at the end"),
            (json!(SECRET), Status::Fail, "raw secret access key"),
            (json!("hunter2"), Status::Fail, "7 characters"),
            (json!(""), Status::Fail, "empty"),
            (json!(5), Status::Fail, "not a string"),
            (json!(null), Status::Fail, "no password"),
        ] {
            let f = facts(json!({"username": KEY_ID, "password": pw}));
            let c = password_format(&f);
            assert_eq!(c.status, status, "{pw}: {c:?}");
            status_and(&c, needle);
            if let Some(p) = pw.as_str().filter(|p| p.len() > 3) {
                assert!(!c.summary.contains(p) && !c.fix.unwrap_or_default().contains(p));
            }
        }
        assert_eq!(password_format(&facts(json!({}))).status, Status::Skip);
    }

    #[test]
    fn derivation_names_the_region_or_the_scheme() {
        let key = Ok(SecretAccessKey::new(SECRET).unwrap());
        let mut appended = STANDARD.decode(v4("eu-west-1")).unwrap();
        appended.rotate_left(1);
        let other = derive_smtp_password(
            &SecretAccessKey::new("another+secret+key").unwrap(),
            &Region::new("eu-west-1").unwrap(),
        );
        for (pw, status, needle) in [
            (
                v4("eu-west-1"),
                Status::Pass,
                "correct V4 password for eu-west-1",
            ),
            (
                format!(" {} ", v4("eu-west-1")),
                Status::Pass,
                "once the white space",
            ),
            (v4("us-east-2"), Status::Fail, "derived for us-east-2"),
            (STANDARD.encode(appended), Status::Fail, "appended"),
            (SECRET.to_owned(), Status::Fail, "raw secret"),
            (other.expose().to_owned(), Status::Fail, "another key"),
        ] {
            let f = facts(json!({"username": KEY_ID, "password": pw}));
            let c = password_derivation(&f, Some(&key));
            assert_eq!(c.status, status, "{c:?}");
            status_and(&c, needle);
            assert!(!c.summary.contains(pw.trim()));
        }
        let f = facts(json!({"username": KEY_ID, "password": v4("eu-west-1")}));
        assert_eq!(password_derivation(&f, None).status, Status::Skip);
        let bad: Result<SecretAccessKey, String> = Err("white space".into());
        assert_eq!(password_derivation(&f, Some(&bad)).status, Status::Skip);
    }

    #[test]
    fn a_v2_password_is_named_by_its_form_alone() {
        // 44 characters starting with A, whatever the version byte decodes to: a real V2
        // password (0x02 first), one whose second character was mangled (0x00 first), one in
        // the URL-safe alphabet (not standard base64 at all).
        for pw in [
            "AnkqhOiWEcszZZzTMCQbOY1sPGoLFgMH9zhp4eNgSjo4",
            "AAkqhOiWEcszZZzTMCQbOY1sPGoLFgMH9zhp4eNgSjo4",
            "Ankq-OiWEcszZZzTMCQbOY1sPGoLFgMH9zhp4eNg_jo4",
        ] {
            let f = facts(json!({"username": KEY_ID, "password": pw}));
            let c = password_format(&f);
            assert_eq!(c.status, Status::Fail, "{pw}: {c:?}");
            status_and(&c, "a SigV2 SMTP password");
            status_and(&c, "no longer accepted by SES");
            status_and(&c, "`ses-smtp-rotator smtp-password --region eu-west-1`");
            assert!(!c.summary.contains("not an SES SMTP password"), "{c:?}");
            // With a key it is not derived from: still named V2, not "garbled".
            let key = Ok(SecretAccessKey::new(SECRET).unwrap());
            let c = password_derivation(&f, Some(&key));
            assert_eq!(c.status, Status::Fail);
            status_and(&c, "SigV2 SMTP password by its form");
        }
        // 44 characters starting with another letter are still "not an SES password".
        let f = facts(json!({"username": KEY_ID, "password": "Z".repeat(44)}));
        status_and(&password_format(&f), "not an SES SMTP password");
    }

    #[test]
    fn a_listed_region_without_its_password_is_named() {
        let f = facts(json!({
            "username": KEY_ID, "password": v4("eu-west-1"),
            "regions": ["us-east-2", "ap-southeast-2"],
            "passwords": {"eu-west-1": v4("eu-west-1"), "us-east-2": v4("us-east-2")}
        }));
        let sites = f.sites();
        assert_eq!(sites.len(), 3);
        let checks: Vec<Check> = sites
            .iter()
            .map(|s| password_format_of(&f, s.password, Some(&s.endpoint.region), s.primary))
            .collect();
        assert_eq!(checks[0].status, Status::Pass);
        assert_eq!(checks[1].status, Status::Pass);
        assert_eq!(checks[2].status, Status::Fail);
        status_and(&checks[2], "no password for ap-southeast-2");
        status_and(&checks[2], "rotate");
        let key = Ok(SecretAccessKey::new(SECRET).unwrap());
        let c = password_derivation_of(
            sites[1].password_text(),
            Some(&sites[1].endpoint.region),
            Some(&key),
        );
        status_and(&c, "correct V4 password for us-east-2");
        let ep = &sites[1].endpoint;
        assert_eq!(ep.host, "email-smtp.us-east-2.amazonaws.com");
        let allowed = Ok(AllowedHosts::default());
        assert_eq!(endpoint_of(ep, None, &allowed).status, Status::Pass);
        // An endpoint object whose SES host serves another region than its password's.
        let mut wrong = ep.clone();
        wrong.host = "email-smtp.eu-central-1.amazonaws.com".into();
        let c = endpoint_of(&wrong, None, &allowed);
        assert_eq!(c.status, Status::Fail);
        status_and(&c, "serves eu-central-1, but its password is for us-east-2");
    }

    #[test]
    fn legacy_v2_is_recognised_with_the_key() {
        let key = Ok(SecretAccessKey::new("some+secret+key").unwrap());
        let f = facts(
            json!({"username": KEY_ID, "password": "AnkqhOiWEcszZZzTMCQbOY1sPGoLFgMH9zhp4eNgSjo4"}),
        );
        let c = password_derivation(&f, Some(&key));
        assert_eq!(c.status, Status::Fail);
        status_and(&c, "legacy V2");
    }

    #[test]
    fn endpoint_checks_host_region_port_and_mode() {
        let none = Ok(AllowedHosts::default());
        let relay = AllowedHosts::parse("smtp.example.com,localhost");
        for (extra, allowed, status, needle) in [
            (
                json!({}),
                &none,
                Status::Pass,
                "SES SMTP endpoint for eu-west-1",
            ),
            (json!({"port": 465}), &none, Status::Pass, "implicit"),
            (
                json!({"port": 465, "tls": "starttls"}),
                &none,
                Status::Fail,
                "speaks implicit",
            ),
            (
                json!({"port": 587, "tls": "implicit"}),
                &none,
                Status::Fail,
                "speaks starttls",
            ),
            (
                json!({"port": 2525}),
                &none,
                Status::Fail,
                "does not listen on port 2525",
            ),
            (
                json!({"region": "us-east-1"}),
                &none,
                Status::Fail,
                "serves eu-west-1",
            ),
            (
                json!({"host": "smtp.example.com", "region": "eu-west-1"}),
                &none,
                Status::Fail,
                "SMTP_ALLOWED_HOSTS",
            ),
            (
                json!({"host": "smtp.example.com", "region": "eu-west-1"}),
                &relay,
                Status::Pass,
                "allows it",
            ),
            (
                json!({"host": "localhost", "region": "eu-west-1", "port": 465, "tls": "starttls"}),
                &relay,
                Status::Warn,
                "usually speaks implicit",
            ),
            (
                json!({"host": "localhost", "region": "eu-west-1", "port": 40123}),
                &relay,
                Status::Pass,
                "allows it",
            ),
            (json!({"host": null}), &none, Status::Skip, "see document"),
        ] {
            let c = endpoint(&facts(extra.clone()), allowed);
            assert_eq!(c.status, status, "{extra}: {c:?}");
            status_and(&c, needle);
        }
        let c = endpoint(&facts(json!({})), &Err("SMTP_ALLOWED_HOSTS: bad".into()));
        assert_eq!(c.status, Status::Fail);
    }

    #[test]
    fn url_encoding_warns_for_plus_slash_equals() {
        for (pw, status, needle) in [
            (
                "BAbcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ",
                Status::Pass,
                "safe",
            ),
            (
                "BAbc+efghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ",
                Status::Warn,
                "'+'",
            ),
            (
                "BAbcdefg/ijklmnopqrstuvwxyzABCDEFGHIJKLMNOP=",
                Status::Warn,
                "'/', '='",
            ),
        ] {
            let c = url_encoding(&facts(json!({"username": KEY_ID, "password": pw})));
            assert_eq!(c.status, status, "{pw}");
            status_and(&c, needle);
            assert!(!c.summary.contains(pw));
        }
        assert_eq!(url_encoding(&facts(json!({}))).status, Status::Skip);
    }
}
