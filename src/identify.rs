//! Recognising what an SMTP password is, given the secret access key it should derive from:
//! the right V4 password, one for another region, the legacy V2 password, a misplaced version
//! byte, the raw secret key pasted as the password, or something unrelated. Used by the CLI
//! (`identify-password`, `doctor`) to explain a `535`; the rotation itself only derives.
//!
//! Pure: no I/O, no logging; the secret never leaves [`SecretAccessKey`].

use std::fmt;

use crate::password::{
    Region, SecretAccessKey, VERSION_V2, VERSION_V4, encode, v2_signature, v4_signature,
};

/// SES regions with an SMTP endpoint, used to tell "a V4 password for another region" apart
/// from "not derived from this secret at all" when diagnosing. Derivation itself accepts any
/// well-formed region code, so a region missing here still works.
pub const KNOWN_SES_REGIONS: &[&str] = &[
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "af-south-1",
    "ap-east-1",
    "ap-south-1",
    "ap-south-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "eu-central-1",
    "eu-central-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-south-1",
    "eu-south-2",
    "eu-north-1",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-gov-east-1",
    "us-gov-west-1",
    "cn-north-1",
    "cn-northwest-1",
];

/// What a password turned out to be, relative to a secret access key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordKind {
    /// The correct V4 password for the expected region.
    V4 {
        /// The region it was derived for.
        region: Region,
    },
    /// A V4 password derived from this secret, but for a different region than expected.
    V4OtherRegion {
        /// The region it was derived for.
        region: Region,
    },
    /// The legacy SigV2 password (`0x02` version byte), which SES no longer accepts.
    LegacyV2,
    /// The signature is right but the version byte was appended instead of prepended — a
    /// published bug; the result looks plausible and never works.
    VersionByteLast {
        /// The misplaced version byte (`0x04` or `0x02`).
        version: u8,
    },
    /// The text is the raw secret access key itself, not a derived password.
    RawSecretKey,
    /// Not derived from this secret by any scheme we know (a different key, or garbled).
    Unrelated,
}

/// Recognises what `candidate` is, given the secret it should derive from and the region it
/// should be for. Other regions are taken from [`KNOWN_SES_REGIONS`].
#[must_use]
pub fn identify_password(
    secret: &SecretAccessKey,
    expected_region: &Region,
    candidate: &str,
) -> PasswordKind {
    if candidate == secret.expose() {
        return PasswordKind::RawSecretKey;
    }
    let expected_sig = v4_signature(secret, expected_region.as_str());
    if candidate == encode(VERSION_V4, &expected_sig, true) {
        return PasswordKind::V4 {
            region: expected_region.clone(),
        };
    }
    if candidate == encode(VERSION_V4, &expected_sig, false) {
        return PasswordKind::VersionByteLast {
            version: VERSION_V4,
        };
    }
    let v2 = v2_signature(secret);
    if candidate == encode(VERSION_V2, &v2, true) {
        return PasswordKind::LegacyV2;
    }
    if candidate == encode(VERSION_V2, &v2, false) {
        return PasswordKind::VersionByteLast {
            version: VERSION_V2,
        };
    }
    let others = KNOWN_SES_REGIONS
        .iter()
        .filter(|r| **r != expected_region.as_str())
        .filter_map(|r| Region::new(r).ok());
    for other in others {
        let sig = v4_signature(secret, other.as_str());
        if candidate == encode(VERSION_V4, &sig, true) {
            return PasswordKind::V4OtherRegion { region: other };
        }
        if candidate == encode(VERSION_V4, &sig, false) {
            return PasswordKind::VersionByteLast {
                version: VERSION_V4,
            };
        }
    }
    PasswordKind::Unrelated
}

impl fmt::Display for PasswordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4 { region } => write!(f, "a correct SES SMTP password (V4) for {region}"),
            Self::V4OtherRegion { region } => write!(
                f,
                "a V4 password derived for {region}, not for the endpoint's region: derive it again for the right region"
            ),
            Self::LegacyV2 => f.write_str(
                "a legacy V2 (SigV2) password, which SES no longer accepts: derive the V4 password",
            ),
            Self::VersionByteLast { version } => write!(
                f,
                "the signature with its version byte 0x{version:02x} appended instead of prepended (a known bug in published scripts): derive it again"
            ),
            Self::RawSecretKey => f.write_str(
                "the raw secret access key, not an SMTP password: derive the password from it",
            ),
            Self::Unrelated => f.write_str(
                "not derived from this secret access key (a different key, or a garbled password)",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::password::derive_smtp_password;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use hmac::{Hmac, KeyInit, Mac};
    use sha2::Sha256;

    type HmacSha256 = Hmac<Sha256>;

    const EXAMPLE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn secret(s: &str) -> SecretAccessKey {
        SecretAccessKey::new(s).expect("valid secret")
    }

    fn region(s: &str) -> Region {
        Region::new(s).expect("valid region")
    }

    /// terraform-provider-aws `TestSesSmtpPasswordFromSecretKeySigV2`: legacy passwords we must
    /// recognise (and never produce).
    #[test]
    fn recognises_published_legacy_v2_passwords() {
        let r = region("us-east-1");
        for (key, v2) in [
            (
                "some+secret+key",
                "AnkqhOiWEcszZZzTMCQbOY1sPGoLFgMH9zhp4eNgSjo4",
            ),
            (
                "another+secret+key",
                "Akwqr0Giwi8FsQFgW3DXWCC2DiiQ/jZjqLDWK8TeTBgL",
            ),
        ] {
            assert_eq!(
                identify_password(&secret(key), &r, v2),
                PasswordKind::LegacyV2
            );
        }
    }

    #[test]
    fn identifies_each_kind() {
        let s = secret(EXAMPLE_SECRET);
        let r = region("us-east-2");
        let v4 = derive_smtp_password(&s, &r);
        assert_eq!(
            identify_password(&s, &r, v4.expose()),
            PasswordKind::V4 { region: r.clone() }
        );
        let other = derive_smtp_password(&s, &region("eu-west-1"));
        assert_eq!(
            identify_password(&s, &r, other.expose()),
            PasswordKind::V4OtherRegion {
                region: region("eu-west-1")
            }
        );
        // Legacy V2, built independently of the module's helpers.
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(EXAMPLE_SECRET.as_bytes()).unwrap();
        mac.update(b"SendRawEmail");
        let sig: [u8; 32] = mac.finalize().into_bytes().into();
        let mut v2 = vec![2u8];
        v2.extend_from_slice(&sig);
        let v2 = STANDARD.encode(&v2);
        assert!(v2.starts_with('A'));
        assert_eq!(identify_password(&s, &r, &v2), PasswordKind::LegacyV2);
        // Version byte appended after the V4 signature.
        let raw = STANDARD.decode(v4.expose()).unwrap();
        let mut wrong = raw[1..].to_vec();
        wrong.push(4);
        assert_eq!(
            identify_password(&s, &r, &STANDARD.encode(&wrong)),
            PasswordKind::VersionByteLast { version: 4 }
        );
        assert_eq!(
            identify_password(&s, &r, EXAMPLE_SECRET),
            PasswordKind::RawSecretKey
        );
        let unrelated = derive_smtp_password(&secret("another+secret+key"), &r);
        assert_eq!(
            identify_password(&s, &r, unrelated.expose()),
            PasswordKind::Unrelated
        );
    }

    #[test]
    fn every_known_region_is_a_region_code() {
        for r in KNOWN_SES_REGIONS {
            assert!(Region::new(r).is_ok(), "{r}");
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn any_secret() -> impl Strategy<Value = String> {
            "[A-Za-z0-9+/]{1,64}"
        }

        fn any_region() -> impl Strategy<Value = String> {
            prop::sample::select(KNOWN_SES_REGIONS).prop_map(str::to_owned)
        }

        proptest! {
            #[test]
            fn identify_round_trips(sec in any_secret(), reg in any_region()) {
                let s = secret(&sec);
                let r = region(&reg);
                let p = derive_smtp_password(&s, &r);
                prop_assert_eq!(identify_password(&s, &r, p.expose()), PasswordKind::V4 { region: r.clone() });
            }
        }
    }
}
