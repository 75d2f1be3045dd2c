//! SES SMTP endpoint host names: which region a host name serves, and which hosts fresh
//! credentials may be sent to.
//!
//! One parser serves the secret document (the region defaults to the host's), the destination
//! allow-list (a rotation sends credentials only to an SES endpoint or a host the operator
//! allowed), the `regions` field (an endpoint for another region is the same host form with the
//! region replaced) and `doctor`. The built-in forms, from the SES endpoint documentation
//! (<https://docs.aws.amazon.com/general/latest/gr/ses.html>) and the VPC endpoint guide
//! (<https://docs.aws.amazon.com/ses/latest/dg/send-email-set-up-vpc-endpoints.html>):
//!
//! | form | example |
//! |---|---|
//! | standard | `email-smtp.eu-west-1.amazonaws.com` |
//! | FIPS | `email-smtp-fips.us-gov-west-1.amazonaws.com` |
//! | China | `email-smtp.cn-northwest-1.amazonaws.com.cn` |
//! | dual-stack (IPv4 + IPv6) | `email-smtp.eu-west-1.api.aws`, `email-smtp-fips.us-east-1.api.aws` |
//! | VPC interface endpoint | `vpce-0abc…-x1y2z3.email-smtp.us-east-1.vpce.amazonaws.com` |
//!
//! Host names are compared case-insensitively and without a trailing dot. Pure: no DNS.

use std::fmt;

use crate::password::Region;

/// Which of the built-in SES SMTP host forms a name has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostForm {
    /// `email-smtp.<region>.amazonaws.com`
    Standard,
    /// `email-smtp-fips.<region>.amazonaws.com`
    Fips,
    /// `email-smtp.<region>.amazonaws.com.cn`
    China,
    /// `email-smtp.<region>.api.aws`
    DualStack,
    /// `email-smtp-fips.<region>.api.aws`
    DualStackFips,
    /// `vpce-<id>[-<suffix>].email-smtp.<region>.vpce.amazonaws.com[.cn]`
    VpcEndpoint,
}

impl HostForm {
    /// A short name for messages.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "SES SMTP endpoint",
            Self::Fips => "SES SMTP FIPS endpoint",
            Self::China => "SES SMTP endpoint (China)",
            Self::DualStack => "SES SMTP dual-stack endpoint",
            Self::DualStackFips => "SES SMTP dual-stack FIPS endpoint",
            Self::VpcEndpoint => "SES SMTP VPC interface endpoint",
        }
    }
}

/// A host name recognised as an SES SMTP endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SesHost {
    /// The region the endpoint serves (and so the region the password must be derived for).
    pub region: Region,
    /// Its form.
    pub form: HostForm,
}

/// Lower case, without a trailing dot.
fn normalise(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// A VPC endpoint's first label: `vpce-` then lower-case letters, digits and dashes.
fn is_vpce_label(label: &str) -> bool {
    label.strip_prefix("vpce-").is_some_and(|rest| {
        !rest.is_empty()
            && rest.len() <= 58
            && rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !rest.ends_with('-')
    })
}

/// Recognises an SES SMTP endpoint host name and the region it serves.
#[must_use]
pub fn parse_ses_host(host: &str) -> Option<SesHost> {
    let host = normalise(host);
    let labels: Vec<&str> = host.split('.').collect();
    let (form, region) = match labels.as_slice() {
        ["email-smtp", r, "amazonaws", "com"] => (HostForm::Standard, *r),
        ["email-smtp-fips", r, "amazonaws", "com"] => (HostForm::Fips, *r),
        ["email-smtp", r, "amazonaws", "com", "cn"] => (HostForm::China, *r),
        ["email-smtp", r, "api", "aws"] => (HostForm::DualStack, *r),
        ["email-smtp-fips", r, "api", "aws"] => (HostForm::DualStackFips, *r),
        [v, "email-smtp", r, "vpce", "amazonaws", "com"]
        | [v, "email-smtp", r, "vpce", "amazonaws", "com", "cn"]
            if is_vpce_label(v) =>
        {
            (HostForm::VpcEndpoint, *r)
        }
        _ => return None,
    };
    let region = Region::new(region).ok()?;
    // China's regions are served only under amazonaws.com.cn, and that suffix only serves them.
    let china_region = region.as_str().starts_with("cn-");
    let china_name = host.ends_with(".cn");
    if china_region != china_name && form != HostForm::DualStack && form != HostForm::DualStackFips
    {
        return None;
    }
    if china_region && matches!(form, HostForm::DualStack | HostForm::DualStackFips) {
        return None;
    }
    Some(SesHost { region, form })
}

/// The region an SES SMTP host name serves, if it is one.
#[must_use]
pub fn region_from_host(host: &str) -> Option<Region> {
    parse_ses_host(host).map(|h| h.region)
}

/// The same SES endpoint form for another region (`email-smtp.eu-west-1.amazonaws.com` →
/// `email-smtp.us-east-1.amazonaws.com`). `None` when `host` is not an SES endpoint name, or
/// is a VPC endpoint (whose name cannot be derived for another region), or when the form does
/// not exist for that region (China names only for China regions).
#[must_use]
pub fn host_for_region(host: &str, region: &Region) -> Option<String> {
    let parsed = parse_ses_host(host)?;
    let name = match parsed.form {
        HostForm::Standard | HostForm::China => {
            if region.as_str().starts_with("cn-") {
                format!("email-smtp.{region}.amazonaws.com.cn")
            } else {
                format!("email-smtp.{region}.amazonaws.com")
            }
        }
        HostForm::Fips => format!("email-smtp-fips.{region}.amazonaws.com"),
        HostForm::DualStack => format!("email-smtp.{region}.api.aws"),
        HostForm::DualStackFips => format!("email-smtp-fips.{region}.api.aws"),
        HostForm::VpcEndpoint => return None,
    };
    parse_ses_host(&name).map(|_| name)
}

/// One entry of `SMTP_ALLOWED_HOSTS`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// An exact host name.
    Exact(String),
    /// `*.suffix`: any host name ending in `.suffix` (not `suffix` itself).
    Suffix(String),
}

/// The hosts a rotation may send credentials to: every built-in SES endpoint form, plus what
/// `SMTP_ALLOWED_HOSTS` adds (comma-separated exact names, or `*.suffix`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AllowedHosts {
    extra: Vec<Pattern>,
}

/// A host name label check: letters, digits, dashes; 1–63 characters.
fn valid_label(l: &str) -> bool {
    (1..=63).contains(&l.len())
        && l.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn valid_name(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(valid_label)
}

impl AllowedHosts {
    /// Parses `SMTP_ALLOWED_HOSTS`.
    ///
    /// # Errors
    /// A message naming the entry that is not a host name or `*.suffix` pattern (host names
    /// are not secret).
    pub fn parse(value: &str) -> Result<Self, String> {
        let mut extra = Vec::new();
        for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let e = normalise(entry);
            let pattern = match e.strip_prefix("*.") {
                Some(suffix) if valid_name(suffix) && suffix.contains('.') => {
                    Pattern::Suffix(suffix.to_owned())
                }
                Some(_) => {
                    return Err(format!(
                        "entry {:?} is not a *.suffix pattern with at least two labels (like *.mail.example.com)",
                        entry.chars().take(80).collect::<String>()
                    ));
                }
                None if valid_name(&e) => Pattern::Exact(e),
                None => {
                    return Err(format!(
                        "entry {:?} is not a host name (letters, digits, dashes and dots; no scheme, port or wildcard inside)",
                        entry.chars().take(80).collect::<String>()
                    ));
                }
            };
            extra.push(pattern);
        }
        Ok(Self { extra })
    }

    /// Whether credentials may be sent to `host`.
    #[must_use]
    pub fn allows(&self, host: &str) -> bool {
        parse_ses_host(host).is_some() || self.allowed_by_operator(host)
    }

    /// Whether `SMTP_ALLOWED_HOSTS` names `host` (the built-in forms aside).
    #[must_use]
    pub fn allowed_by_operator(&self, host: &str) -> bool {
        let host = normalise(host);
        self.extra.iter().any(|p| match p {
            Pattern::Exact(e) => *e == host,
            Pattern::Suffix(s) => host
                .strip_suffix(s.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
        })
    }

    /// Whether the operator added any host.
    #[must_use]
    pub fn is_extended(&self) -> bool {
        !self.extra.is_empty()
    }
}

impl fmt::Display for AllowedHosts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SES SMTP endpoints")?;
        for p in &self.extra {
            match p {
                Pattern::Exact(e) => write!(f, ", {e}")?,
                Pattern::Suffix(s) => write!(f, ", *.{s}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(host: &str) -> Option<String> {
        region_from_host(host).map(|r| r.to_string())
    }

    #[test]
    fn every_built_in_form_parses_to_its_region() {
        for (host, want, form) in [
            (
                "email-smtp.us-east-1.amazonaws.com",
                "us-east-1",
                HostForm::Standard,
            ),
            (
                "EMAIL-SMTP.EU-WEST-2.AMAZONAWS.COM.",
                "eu-west-2",
                HostForm::Standard,
            ),
            (
                "email-smtp-fips.us-gov-west-1.amazonaws.com",
                "us-gov-west-1",
                HostForm::Fips,
            ),
            (
                "email-smtp.cn-northwest-1.amazonaws.com.cn",
                "cn-northwest-1",
                HostForm::China,
            ),
            (
                "email-smtp.eu-central-1.api.aws",
                "eu-central-1",
                HostForm::DualStack,
            ),
            (
                "email-smtp-fips.us-east-1.api.aws",
                "us-east-1",
                HostForm::DualStackFips,
            ),
            (
                "vpce-0123456789abcdef0-abcdefgh.email-smtp.us-east-1.vpce.amazonaws.com",
                "us-east-1",
                HostForm::VpcEndpoint,
            ),
            (
                "vpce-0123456789abcdef0-abcdefgh-us-east-1a.email-smtp.us-east-1.vpce.amazonaws.com",
                "us-east-1",
                HostForm::VpcEndpoint,
            ),
            (
                "vpce-0abc.email-smtp.cn-north-1.vpce.amazonaws.com.cn",
                "cn-north-1",
                HostForm::VpcEndpoint,
            ),
        ] {
            let parsed = parse_ses_host(host).unwrap_or_else(|| panic!("{host} not parsed"));
            assert_eq!(parsed.region.as_str(), want, "{host}");
            assert_eq!(parsed.form, form, "{host}");
        }
    }

    #[test]
    fn look_alikes_are_not_ses_hosts() {
        for host in [
            "smtp.example.com",
            "email-smtp.amazonaws.com",
            "email-smtp.us-east-1.amazonaws.com.evil.example",
            "evil.email-smtp.us-east-1.amazonaws.com",
            "email-smtp.us-east-1a.amazonaws.com",
            "email-smtp.US_EAST_1.amazonaws.com",
            "email-smtp.us-east-1.amazonaws.co",
            "email-smtp.cn-north-1.amazonaws.com",
            "email-smtp.us-east-1.amazonaws.com.cn",
            "email-smtp.cn-north-1.api.aws",
            "email-smtp.us-east-1.api.aws.example",
            "vpce-.email-smtp.us-east-1.vpce.amazonaws.com",
            "vpce-abc_def.email-smtp.us-east-1.vpce.amazonaws.com",
            "x.vpce-abc.email-smtp.us-east-1.vpce.amazonaws.com",
            "vpce-abc.email-smtp.us-east-1.amazonaws.com",
            "email-smtp-fips.us-east-1.vpce.amazonaws.com",
            "",
            ".",
        ] {
            assert_eq!(region(host), None, "{host}");
        }
    }

    #[test]
    fn host_for_region_keeps_the_form() {
        let r = |s: &str| Region::new(s).unwrap();
        for (host, reg, want) in [
            (
                "email-smtp.eu-west-1.amazonaws.com",
                "us-east-1",
                Some("email-smtp.us-east-1.amazonaws.com"),
            ),
            (
                "email-smtp-fips.us-east-1.amazonaws.com",
                "us-west-2",
                Some("email-smtp-fips.us-west-2.amazonaws.com"),
            ),
            (
                "email-smtp.eu-west-1.api.aws",
                "ap-south-1",
                Some("email-smtp.ap-south-1.api.aws"),
            ),
            (
                "email-smtp.cn-north-1.amazonaws.com.cn",
                "cn-northwest-1",
                Some("email-smtp.cn-northwest-1.amazonaws.com.cn"),
            ),
            (
                "email-smtp.eu-west-1.amazonaws.com",
                "cn-north-1",
                Some("email-smtp.cn-north-1.amazonaws.com.cn"),
            ),
            ("email-smtp.eu-west-1.api.aws", "cn-north-1", None),
            (
                "vpce-0abc.email-smtp.us-east-1.vpce.amazonaws.com",
                "us-west-2",
                None,
            ),
            ("smtp.example.com", "us-west-2", None),
        ] {
            assert_eq!(
                host_for_region(host, &r(reg)).as_deref(),
                want,
                "{host} {reg}"
            );
        }
    }

    #[test]
    fn allow_list_adds_exact_names_and_suffixes_only() {
        let a = AllowedHosts::parse(" localhost , *.relay.example.com,Mail.Example.org ").unwrap();
        for ok in [
            "localhost",
            "LOCALHOST.",
            "a.relay.example.com",
            "x.y.relay.example.com",
            "mail.example.org",
            "email-smtp.us-east-1.amazonaws.com",
        ] {
            assert!(a.allows(ok), "{ok}");
        }
        for no in [
            "relay.example.com",
            "evilrelay.example.com",
            "localhost.evil.example",
            "mail.example.org.evil",
            "127.0.0.2",
            "smtp.gmail.com",
        ] {
            assert!(!a.allows(no), "{no}");
        }
        let none = AllowedHosts::default();
        assert!(!none.allows("localhost"));
        assert!(none.allows("email-smtp.eu-west-1.api.aws"));
        assert!(!none.is_extended());
        assert_eq!(
            a.to_string(),
            "SES SMTP endpoints, localhost, *.relay.example.com, mail.example.org"
        );
    }

    #[test]
    fn allow_list_refuses_what_is_not_a_name_or_pattern() {
        for bad in [
            "*",
            "*.com",
            "smtp://relay.example.com",
            "relay.example.com:587",
            "a.*.example.com",
            "*example.com",
            "exa mple.com",
        ] {
            let e = AllowedHosts::parse(bad).unwrap_err();
            assert!(e.contains("entry"), "{bad}: {e}");
        }
        assert_eq!(AllowedHosts::parse(" , ").unwrap(), AllowedHosts::default());
    }
}
