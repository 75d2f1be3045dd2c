//! The key record: what the function knows it did with each access key it minted.
//!
//! Documents (AWSCURRENT, AWSPREVIOUS, a pending value) are claims anyone with
//! `secretsmanager:PutSecretValue` can write. The record is what proves a key is this
//! function's to retire: one IAM user tag per key, written only by the function (the role may
//! write no other tag keys), next to the owner tag naming the one secret the user serves.
//!
//! - Tag key: [`KEY_TAG_PREFIX`] + the access key id (`ses-smtp-rotator:key:AKIA…`, 41
//!   characters; IAM allows 128).
//! - Tag value: `<secret>:<token>:<state>:<epoch>`, 30 characters (IAM allows 256): an 8-hex
//!   digest of the secret's ARN, an 8-hex digest of the token that minted the key (`-` for a
//!   key adopted, not minted), the state and when the key entered it (epoch seconds):
//!   - `m` minted by that token's createSecret (stored, or being stored, as its AWSPENDING);
//!   - `c` promoted: the key AWSCURRENT names;
//!   - `p` previous: superseded by a promotion at that time, still Active;
//!   - `r` retired: deactivated at that time.
//!
//!   A deleted key's tag is removed with it.
//! - The literal value [`ADOPT`] is written by an operator (`aws iam tag-user`) to hand the
//!   function a key it did not mint: it is then this secret's like any recorded key.
//!
//! A user holds at most two keys, so the record has at most two live tags, plus one per key
//! whose deletion was interrupted before its tag was removed (the next createSecret removes
//! those). With the owner tag and createSecret's marker that is at most 6 of IAM's 50 tags
//! per user (README, "The key record").

use std::collections::BTreeMap;
use std::collections::HashMap;

use crate::error::Error;

/// Prefix of a key's record tag; the access key id follows.
pub const KEY_TAG_PREFIX: &str = "ses-smtp-rotator:key:";

/// The record value an operator writes to hand the function a key it did not mint.
pub const ADOPT: &str = "adopt";

/// The record tag key of an access key.
#[must_use]
pub fn tag_key(key_id: &str) -> String {
    format!("{KEY_TAG_PREFIX}{key_id}")
}

/// The digest of a secret's ARN kept in each record (8 hex digits).
#[must_use]
pub fn secret_digest(secret_arn: &str) -> String {
    crate::ownership::hex_digest(secret_arn, 4)
}

/// What became of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Minted by a token's createSecret; not (yet) promoted.
    Minted,
    /// Promoted: AWSCURRENT names it.
    Current,
    /// Superseded by a later promotion, still Active.
    Previous,
    /// Deactivated.
    Retired,
}

impl KeyState {
    fn code(self) -> char {
        match self {
            Self::Minted => 'm',
            Self::Current => 'c',
            Self::Previous => 'p',
            Self::Retired => 'r',
        }
    }
}

/// One key's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// Recorded by the function for the secret whose digest it holds.
    Recorded {
        /// [`secret_digest`] of the secret the key was minted (or adopted) for.
        secret: String,
        /// [`crate::ownership::token_digest`] of the minting token, `-` for an adopted key.
        token: String,
        /// What became of it.
        state: KeyState,
        /// When it entered that state (epoch seconds).
        at: i64,
    },
    /// Handed to the function by an operator ([`ADOPT`]).
    Adopted,
}

impl Entry {
    /// A record for `secret_arn`.
    #[must_use]
    pub fn new(secret_arn: &str, token: Option<&str>, state: KeyState, at: i64) -> Self {
        Self::Recorded {
            secret: secret_digest(secret_arn),
            token: token.map_or_else(|| "-".to_owned(), crate::ownership::token_digest),
            state,
            at,
        }
    }

    /// The tag value.
    #[must_use]
    pub fn to_value(&self) -> String {
        match self {
            Self::Recorded {
                secret,
                token,
                state,
                at,
            } => format!("{secret}:{token}:{}:{at}", state.code()),
            Self::Adopted => ADOPT.to_owned(),
        }
    }

    fn parse(value: &str) -> Option<Self> {
        if value == ADOPT {
            return Some(Self::Adopted);
        }
        let mut parts = value.split(':');
        let secret = parts.next()?;
        let token = parts.next()?;
        let state = match parts.next()? {
            "m" => KeyState::Minted,
            "c" => KeyState::Current,
            "p" => KeyState::Previous,
            "r" => KeyState::Retired,
            _ => return None,
        };
        let at = parts.next()?.parse::<i64>().ok()?;
        let hex = |s: &str| s.len() == 8 && s.bytes().all(|b| b.is_ascii_hexdigit());
        if parts.next().is_some() || !hex(secret) || !(token == "-" || hex(token)) {
            return None;
        }
        Some(Self::Recorded {
            secret: secret.to_owned(),
            token: token.to_owned(),
            state,
            at,
        })
    }

    /// The state, for a record of `secret_arn` (an adopted key counts as current: it is the
    /// key the operator handed over); `None` for another secret's record.
    #[must_use]
    pub fn state_for(&self, secret_arn: &str) -> Option<KeyState> {
        match self {
            Self::Adopted => Some(KeyState::Current),
            Self::Recorded { secret, state, .. } => {
                (*secret == secret_digest(secret_arn)).then_some(*state)
            }
        }
    }

    /// Whether this records the key as minted by `token` (full token) for `secret_arn`.
    #[must_use]
    pub fn minted_by(&self, secret_arn: &str, token: &str) -> bool {
        matches!(self, Self::Recorded { secret, token: t, state: KeyState::Minted, .. }
            if *secret == secret_digest(secret_arn) && *t == crate::ownership::token_digest(token))
    }

    /// When the key entered its state (adopted: unknown, 0).
    #[must_use]
    pub fn at(&self) -> i64 {
        match self {
            Self::Recorded { at, .. } => *at,
            Self::Adopted => 0,
        }
    }
}

/// Every key record on one user, by access key id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Records {
    /// Access key id → its record.
    pub keys: BTreeMap<String, Entry>,
}

impl Records {
    /// Reads the record tags among a user's tags. A record tag that does not parse is refused
    /// ([`Error::KeyRecordUnreadable`]): a record is never silently reset.
    ///
    /// # Errors
    /// [`Error::KeyRecordUnreadable`].
    pub fn from_tags(user: &str, tags: &HashMap<String, String>) -> Result<Self, Error> {
        let mut keys = BTreeMap::new();
        for (k, v) in tags {
            let Some(id) = k.strip_prefix(KEY_TAG_PREFIX) else {
                continue;
            };
            let entry = Entry::parse(v).filter(|_| is_key_id(id)).ok_or_else(|| {
                Error::KeyRecordUnreadable {
                    iam_user: user.to_owned(),
                    tag: k.clone(),
                }
            })?;
            keys.insert(id.to_owned(), entry);
        }
        Ok(Self { keys })
    }

    /// The record of one key.
    #[must_use]
    pub fn get(&self, key_id: &str) -> Option<&Entry> {
        self.keys.get(key_id)
    }

    /// Whether no key is recorded at all (a user this release has not yet served).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The state of `key_id` for `secret_arn`, if recorded for it.
    #[must_use]
    pub fn state_of(&self, key_id: &str, secret_arn: &str) -> Option<KeyState> {
        self.get(key_id).and_then(|e| e.state_for(secret_arn))
    }
}

/// Whether `id` looks like an access key id (letters and digits, 16 to 128 characters).
fn is_key_id(id: &str) -> bool {
    (16..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:smtp-AbCdEf";
    const TOK: &str = "0b7c3a64-1b1e-4c39-9c39-6f1f0b9b9f0e";

    #[test]
    fn values_round_trip_and_fit_iam_limits() {
        for state in [
            KeyState::Minted,
            KeyState::Current,
            KeyState::Previous,
            KeyState::Retired,
        ] {
            for token in [Some(TOK), None] {
                let e = Entry::new(ARN, token, state, 9_999_999_999);
                let v = e.to_value();
                assert!(v.len() <= 30, "{v}");
                assert!(
                    v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_.:/=+-@ ".contains(&b)),
                    "IAM tag value characters: {v}"
                );
                assert_eq!(Entry::parse(&v), Some(e.clone()));
                assert_eq!(e.state_for(ARN), Some(state));
                assert_eq!(e.state_for(&format!("{ARN}x")), None);
            }
        }
        assert!(tag_key("AKIAABCDEFGHIJKLMNOPQRSTUVWXYZ").len() <= 128);
    }

    #[test]
    fn minted_by_names_secret_and_token() {
        let e = Entry::new(ARN, Some(TOK), KeyState::Minted, 1);
        assert!(e.minted_by(ARN, TOK));
        assert!(!e.minted_by(ARN, "another-token"));
        assert!(!e.minted_by("arn:other", TOK));
        assert!(!Entry::new(ARN, Some(TOK), KeyState::Current, 1).minted_by(ARN, TOK));
        assert!(!Entry::Adopted.minted_by(ARN, TOK));
        assert_eq!(Entry::Adopted.state_for(ARN), Some(KeyState::Current));
    }

    #[test]
    fn unreadable_records_are_refused_not_reset() {
        let mut tags = HashMap::new();
        tags.insert("ses-smtp-rotator:secret".to_owned(), ARN.to_owned());
        tags.insert("other".to_owned(), "x".to_owned());
        tags.insert(tag_key("AKIAAAAAAAAAAAAAAAAA"), ADOPT.to_owned());
        tags.insert(
            tag_key("AKIABBBBBBBBBBBBBBBB"),
            Entry::new(ARN, Some(TOK), KeyState::Current, 5).to_value(),
        );
        let r = Records::from_tags("u", &tags).unwrap();
        assert_eq!(r.keys.len(), 2);
        assert_eq!(
            r.state_of("AKIABBBBBBBBBBBBBBBB", ARN),
            Some(KeyState::Current)
        );
        for bad in [
            "",
            "adopted",
            "0123abcd:-:c",
            "0123abcd:-:x:5",
            "0123abcd:-:c:5:6",
            "0123abc:-:c:5",
            "0123abcd:zz:c:5",
            "0123abcd:-:c:five",
        ] {
            let mut t = tags.clone();
            t.insert(tag_key("AKIACCCCCCCCCCCCCCCC"), bad.to_owned());
            let e = Records::from_tags("u", &t).unwrap_err();
            assert_eq!(e.error_type(), "KeyRecordUnreadable", "{bad:?}");
            assert!(e.to_string().contains("AKIACCCCCCCCCCCCCCCC"), "{e}");
        }
        let mut t = tags.clone();
        t.insert(format!("{KEY_TAG_PREFIX}not a key"), ADOPT.to_owned());
        assert!(Records::from_tags("u", &t).is_err());
    }
}
