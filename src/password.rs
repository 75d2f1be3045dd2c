//! The Amazon SES SMTP password: its derivation from an IAM secret access key. Recognising
//! what a given password is (for diagnosis) lives in [`crate::identify`].
//!
//! SES does not take the secret access key as the SMTP password. It takes a value derived from
//! it with a SigV4-style chain of HMAC-SHA256 steps that binds the password to one SES region:
//!
//! ```text
//! k = HMAC_SHA256(key = "AWS4" + secret, msg = "11111111")
//! k = HMAC_SHA256(k, region); k = HMAC_SHA256(k, "ses")
//! k = HMAC_SHA256(k, "aws4_request"); k = HMAC_SHA256(k, "SendRawEmail")
//! password = base64( 0x04 || k )          -- 44 characters, always starting with 'B'
//! ```
//!
//! Everything here is pure: no I/O, no clock, no logging. Inputs are validated strictly because
//! a wrong input does not fail loudly later: it silently yields a password that SES rejects with
//! `535 Authentication Credentials Invalid`.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Length of every SMTP password this module produces (base64 of 33 bytes).
pub const SMTP_PASSWORD_LEN: usize = 44;

/// Version byte of the current (SigV4) SMTP password scheme. It comes *first*.
pub(crate) const VERSION_V4: u8 = 0x04;
/// Version byte of the legacy (SigV2) scheme, which SES no longer accepts.
pub(crate) const VERSION_V2: u8 = 0x02;

/// Fixed inputs of the derivation, from the AWS documentation.
const DATE: &str = "11111111";
const SERVICE: &str = "ses";
const TERMINAL: &str = "aws4_request";
const MESSAGE: &str = "SendRawEmail";

/// Why an input to the derivation was refused. Never carries the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// The secret access key is empty.
    #[error("the secret access key is empty")]
    EmptySecret,
    /// The secret access key has leading/trailing white space or white space inside.
    #[error(
        "the secret access key contains white space (often a stray space or line break from a copy-paste); remove it"
    )]
    SecretWhitespace,
    /// The secret access key has a character that no AWS secret key has.
    #[error(
        "the secret access key contains a non-ASCII or control character; AWS secret access keys are printable ASCII"
    )]
    SecretNotAscii,
    /// The region is not a lower-case AWS region code.
    #[error(
        "{0:?} is not an AWS region code (expected lower case like us-east-1 or eu-central-2); a wrong region silently yields a password SES rejects"
    )]
    InvalidRegion(String),
}

/// An IAM secret access key. Lives only in memory; `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretAccessKey(String);

impl SecretAccessKey {
    /// Validates and wraps a secret access key.
    ///
    /// # Errors
    /// [`PasswordError`] when the text is empty, has white space anywhere, or has a character
    /// outside printable ASCII.
    pub fn new(secret: impl Into<String>) -> Result<Self, PasswordError> {
        let secret = secret.into();
        if secret.is_empty() {
            return Err(PasswordError::EmptySecret);
        }
        if secret.chars().any(char::is_whitespace) {
            return Err(PasswordError::SecretWhitespace);
        }
        if !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(PasswordError::SecretNotAscii);
        }
        Ok(Self(secret))
    }

    /// The secret text, for the few places that must hand it on (the derivation).
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl Drop for SecretAccessKey {
    fn drop(&mut self) {
        // The raw key exists only in memory during createSecret; do not leave it in freed heap.
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl Drop for SmtpPassword {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl fmt::Debug for SecretAccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretAccessKey(<redacted>)")
    }
}

/// An SES SMTP password. `Debug` and `Display` redact it; [`SmtpPassword::expose`] is the one
/// way to read it, so every use is easy to find.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpPassword(String);

impl SmtpPassword {
    /// Wraps a password read from somewhere (the secret document, stdin).
    #[must_use]
    pub fn from_string(password: String) -> Self {
        Self(password)
    }

    /// The password text. Call only to hand it to SMTP AUTH, to store it, or to print it on
    /// the CLI's stdout when asked to.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SmtpPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SmtpPassword(<redacted>)")
    }
}

impl fmt::Display for SmtpPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A validated AWS region code such as `us-east-1`, `us-gov-west-1` or `eusc-de-east-1`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Region(String);

impl Region {
    /// Validates a region code: lower-case letter groups separated by `-`, ending in a number,
    /// e.g. `eu-central-2`. Anything else (upper case, spaces, a host name, an availability
    /// zone like `us-east-1a`) is refused.
    ///
    /// # Errors
    /// [`PasswordError::InvalidRegion`] naming the refused text (a region is not a secret).
    pub fn new(region: &str) -> Result<Self, PasswordError> {
        if is_region_code(region) {
            Ok(Self(region.to_owned()))
        } else {
            Err(PasswordError::InvalidRegion(
                region.chars().take(64).collect(),
            ))
        }
    }

    /// The region code.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_region_code(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    if parts.len() < 3 || s.len() > 32 {
        return false;
    }
    let (last, words) = parts.split_last().unwrap_or((&"", &[]));
    let number_ok = !last.is_empty() && last.len() <= 2 && last.bytes().all(|b| b.is_ascii_digit());
    let partition_ok = (2..=4).contains(&words[0].len());
    let words_ok = words
        .iter()
        .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()));
    number_ok && partition_ok && words_ok
}

type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA256 (RFC 2104). The key is brought to the block size by hand (hashed when longer,
/// zero-padded), exactly as RFC 2104 says, so the MAC is built from a fixed-size key and no
/// error path exists at all.
fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    let mut block = zeroize::Zeroizing::new([0u8; 64]);
    if key.len() > block.len() {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut mac = <HmacSha256 as KeyInit>::new(&(*block).into());
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

pub(crate) fn v4_signature(secret: &SecretAccessKey, region: &str) -> [u8; 32] {
    let mut key = zeroize::Zeroizing::new(Vec::with_capacity(4 + secret.expose().len()));
    key.extend_from_slice(b"AWS4");
    key.extend_from_slice(secret.expose().as_bytes());
    let mut k = hmac(&key, DATE.as_bytes());
    for step in [region, SERVICE, TERMINAL, MESSAGE] {
        k = hmac(&k, step.as_bytes());
    }
    k
}

pub(crate) fn v2_signature(secret: &SecretAccessKey) -> [u8; 32] {
    hmac(secret.expose().as_bytes(), MESSAGE.as_bytes())
}

pub(crate) fn encode(version: u8, sig: &[u8; 32], version_first: bool) -> String {
    let mut raw = Vec::with_capacity(33);
    if version_first {
        raw.push(version);
        raw.extend_from_slice(sig);
    } else {
        raw.extend_from_slice(sig);
        raw.push(version);
    }
    STANDARD.encode(raw)
}

/// Derives the SES SMTP password for `region` from an IAM secret access key.
#[must_use]
pub fn derive_smtp_password(secret: &SecretAccessKey, region: &Region) -> SmtpPassword {
    SmtpPassword(encode(
        VERSION_V4,
        &v4_signature(secret, region.as_str()),
        true,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn secret(s: &str) -> SecretAccessKey {
        SecretAccessKey::new(s).expect("valid secret")
    }

    fn region(s: &str) -> Region {
        Region::new(s).expect("valid region")
    }

    /// Published by the AWS SDK for PHP (`SesClientTest::testCanGenerateSmtpPasswordFromCredentials`
    /// and the v4 variant) for the documentation's example key.
    #[test]
    fn known_answer_aws_sdk_php_us_east_2() {
        let p = derive_smtp_password(&secret(EXAMPLE_SECRET), &region("us-east-2"));
        assert_eq!(p.expose(), "BMPPgbAHoFVbze1Ud0oA5uNdXRwUXUZ+qOwphGJbl/cS");
    }

    /// Vectors from terraform-provider-aws `internal/service/iam/access_key_test.go`
    /// (`TestSESSMTPPasswordFromSecretKeySigV4`).
    #[test]
    fn known_answers_terraform_provider_aws() {
        let cases = [
            (
                "eu-central-1",
                "some+secret+key",
                "BMXhUYlu5Z3gSXVQORxlVa7XPaz91aGWdfHxvkOZdWZ2",
            ),
            (
                "eu-central-1",
                "another+secret+key",
                "BBbphbrQmrKMx42d1N6+C7VINYEBGI5v9VsZeTxwskfh",
            ),
            (
                "us-west-1",
                "some+secret+key",
                "BH+jbMzper5WwlwUar9E1ySBqHa9whi0GPo+sJ0mVYJj",
            ),
            (
                "us-west-1",
                "another+secret+key",
                "BKVmjjMDFk/qqw8EROW99bjCS65PF8WKvK5bSr4Y6EqF",
            ),
        ];
        for (reg, key, want) in cases {
            let got = derive_smtp_password(&secret(key), &region(reg));
            assert_eq!(got.expose(), want, "{reg} / {key}");
        }
    }

    #[test]
    fn refuses_bad_secrets() {
        assert_eq!(SecretAccessKey::new(""), Err(PasswordError::EmptySecret));
        for bad in [" abc", "abc ", "ab c", "abc\n", "\tabc"] {
            assert_eq!(
                SecretAccessKey::new(bad),
                Err(PasswordError::SecretWhitespace),
                "{bad:?}"
            );
        }
        for bad in ["abcé", "ab\u{7f}c", "ab\0c"] {
            assert_eq!(
                SecretAccessKey::new(bad),
                Err(PasswordError::SecretNotAscii),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn accepts_and_refuses_regions() {
        for ok in [
            "us-east-1",
            "eu-central-2",
            "ap-southeast-5",
            "us-gov-west-1",
            "cn-northwest-1",
            "eusc-de-east-1",
            "us-isob-east-1",
        ] {
            assert!(Region::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "US-EAST-1",
            "us-east",
            "us-east-1a",
            "us_east_1",
            " us-east-1",
            "email-smtp.us-east-1.amazonaws.com",
            "useast1",
            "us--1",
            "-east-1",
            "us-east-123",
        ] {
            assert!(
                matches!(Region::new(bad), Err(PasswordError::InvalidRegion(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn debug_and_display_redact() {
        let s = secret(EXAMPLE_SECRET);
        let p = derive_smtp_password(&s, &region("us-east-2"));
        let shown = format!("{s:?} {p:?} {p}");
        assert!(!shown.contains(EXAMPLE_SECRET));
        assert!(!shown.contains(p.expose()));
        assert!(shown.contains("redacted"));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn any_secret() -> impl Strategy<Value = String> {
            "[A-Za-z0-9+/]{1,64}"
        }

        fn any_region() -> impl Strategy<Value = String> {
            prop::sample::select(crate::identify::KNOWN_SES_REGIONS).prop_map(str::to_owned)
        }

        proptest! {
            #[test]
            fn password_shape(sec in any_secret(), reg in any_region()) {
                let p = derive_smtp_password(&secret(&sec), &region(&reg));
                prop_assert_eq!(p.expose().len(), SMTP_PASSWORD_LEN);
                prop_assert!(p.expose().starts_with('B'));
                let raw = STANDARD.decode(p.expose()).unwrap();
                prop_assert_eq!(raw.len(), 33);
                prop_assert_eq!(raw[0], 4);
            }

            #[test]
            fn region_sensitive(sec in any_secret(), a in any_region(), b in any_region()) {
                prop_assume!(a != b);
                let s = secret(&sec);
                prop_assert_ne!(
                    derive_smtp_password(&s, &region(&a)),
                    derive_smtp_password(&s, &region(&b))
                );
            }

            #[test]
            fn secret_sensitive(a in any_secret(), b in any_secret(), reg in any_region()) {
                prop_assume!(a != b);
                let r = region(&reg);
                prop_assert_ne!(
                    derive_smtp_password(&secret(&a), &r),
                    derive_smtp_password(&secret(&b), &r)
                );
            }
        }
    }
}
