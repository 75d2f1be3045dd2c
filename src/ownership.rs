//! Which of an IAM user's access keys this rotation may delete: the user tags that record
//! ownership, and the rule that decides, as a pure function over facts fetched first.
//!
//! Two user tags (both under `ses-smtp-rotator:`, the only tag keys the template lets the
//! function write):
//!
//! - [`OWNER_TAG`] = the secret's ARN (or its digest): the one secret whose rotation owns the
//!   user's keys. Two secrets on one user would delete each other's working keys.
//! - [`MARKER_TAG`]: createSecret's attempts. Before CreateAccessKey an attempt records itself
//!   (a digest of the token, its start and its invocation deadline), then the key id
//!   CreateAccessKey returned, then that it ended, before it answers. Its *lease* holds until
//!   it ended or its deadline passed (Lambda cannot outlive the deadline, so a killed attempt
//!   simply runs out). When CreateAccessKey fails definitely (a 4xx answer) the attempt is
//!   recorded as having made nothing; when the outcome is unknown (timeout, lost or 5xx
//!   response) a never-used key created within [`WINDOW_SECS`] of its start is its key.
//!
//! Only provably stale keys are deleted, in every rotation: the key AWSPREVIOUS names, and
//! keys that an ended or expired attempt made. A key a live attempt may still be storing is
//! never deleted (the step answers a retryable error); a key named by AWSCURRENT is never
//! deleted; any other key is refused by name ([`Error::UnadoptedAccessKey`]).

use std::collections::HashMap;

use crate::aws::{KeyInfo, KeyLookup};
use crate::error::Error;

/// User tag naming the one secret whose rotation owns the user's keys.
pub const OWNER_TAG: &str = "ses-smtp-rotator:secret";

/// User tag holding createSecret's attempts.
pub const MARKER_TAG: &str = "ses-smtp-rotator:creating-key";

/// How long after an attempt's start a key whose id it never learned (lost response) still
/// counts as that attempt's: CreateAccessKey's own 10 s attempt limit plus slack.
pub const WINDOW_SECS: i64 = 15;
/// Tolerated clock difference between this function and IAM (whose dates have 1 s resolution).
pub const SKEW_SECS: i64 = 2;
/// Attempts remembered (an IAM tag value holds 256 characters).
const KEEP_ATTEMPTS: usize = 5;

/// The value of [`OWNER_TAG`] for a secret: its ARN, or a digest of it when too long for a tag.
#[must_use]
pub fn owner_tag_value(secret_arn: &str) -> String {
    if secret_arn.len() <= 256 {
        return secret_arn.to_owned();
    }
    format!("sha256:{}", hex_digest(secret_arn, 32))
}

fn hex_digest(text: &str, bytes: usize) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .take(bytes)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The short form of a token kept in the marker (tokens are 36+ characters; a tag is 256).
#[must_use]
pub fn token_digest(token: &str) -> String {
    hex_digest(token, 4)
}

/// What an attempt has recorded about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptState {
    /// Running (or killed): its lease holds until its deadline.
    Open,
    /// Answered; it made exactly the key it names (or none).
    Ended,
    /// Answered after a CreateAccessKey whose outcome is unknown: a never-used key created in
    /// its window is its key.
    Ambiguous,
}

/// One createSecret attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// [`token_digest`] of the rotation's token.
    pub token: String,
    /// Epoch seconds when it began.
    pub start: i64,
    /// Epoch seconds when its invocation's deadline passes (its lease ends at the latest).
    pub deadline: i64,
    /// The key CreateAccessKey returned to it.
    pub key: Option<String>,
    /// What it recorded.
    pub state: AttemptState,
}

impl Attempt {
    /// Whether its lease still holds at `now`.
    #[must_use]
    pub fn is_live(&self, now: i64) -> bool {
        self.state == AttemptState::Open && now <= self.deadline
    }

    /// Whether a key whose id it never recorded may be its key: its CreateAccessKey outcome is
    /// unknown (ambiguous answer, or it never recorded one).
    #[must_use]
    pub fn has_window(&self) -> bool {
        self.key.is_none() && self.state != AttemptState::Ended
    }

    /// Whether a key created at `created` (epoch seconds) falls in its window.
    #[must_use]
    pub fn covers(&self, created: i64) -> bool {
        self.has_window()
            && created >= self.start - SKEW_SECS
            && created <= self.start + WINDOW_SECS
    }

    fn encode(&self) -> String {
        let flag = match self.state {
            AttemptState::Open => 'o',
            AttemptState::Ended => 'e',
            AttemptState::Ambiguous => 'a',
        };
        let mut v = format!(
            "{}:{}:{}:{flag}",
            self.token,
            self.start,
            (self.deadline - self.start).clamp(0, 99_999)
        );
        if let Some(k) = &self.key {
            v.push(':');
            v.push_str(k);
        }
        v
    }

    fn decode(item: &str) -> Option<Self> {
        let mut parts = item.split(':');
        let token = parts.next()?.to_owned();
        let start = parts.next()?.parse::<i64>().ok()?;
        let lease = parts.next()?.parse::<i64>().ok()?;
        let state = match parts.next()? {
            "o" => AttemptState::Open,
            "e" => AttemptState::Ended,
            "a" => AttemptState::Ambiguous,
            _ => return None,
        };
        let key = parts.next().map(str::to_owned);
        if parts.next().is_some() || token.is_empty() {
            return None;
        }
        Some(Self {
            token,
            start,
            deadline: start + lease,
            key,
            state,
        })
    }
}

/// The attempts a [`MARKER_TAG`] value records.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Marker {
    /// Oldest first.
    pub attempts: Vec<Attempt>,
}

impl Marker {
    /// Parses a tag value. The earlier format (`<token> <epoch>… k:<key>…`, written by the
    /// first release) is read too: its times become ambiguous attempts and its keys ended
    /// ones, so a rotation interrupted across the upgrade still recognises its keys.
    /// Unreadable items are dropped (they prove nothing, so the keys they meant are refused).
    #[must_use]
    pub fn parse(value: &str) -> Self {
        let items: Vec<&str> = value.split_whitespace().collect();
        let legacy = items
            .first()
            .is_some_and(|first| !first.contains(':') && items.len() > 1);
        if legacy {
            let token = token_digest(items[0]);
            let attempts = items[1..]
                .iter()
                .filter_map(|p| match p.strip_prefix("k:") {
                    Some(k) => Some(Attempt {
                        token: token.clone(),
                        start: 0,
                        deadline: 0,
                        key: Some(k.to_owned()),
                        state: AttemptState::Ended,
                    }),
                    None => p.parse::<i64>().ok().map(|t| Attempt {
                        token: token.clone(),
                        start: t,
                        deadline: t + WINDOW_SECS,
                        key: None,
                        state: AttemptState::Ambiguous,
                    }),
                })
                .collect();
            return Self { attempts };
        }
        Self {
            attempts: items.iter().filter_map(|i| Attempt::decode(i)).collect(),
        }
    }

    /// The tag value (the most recent attempts that fit).
    #[must_use]
    pub fn to_value(&self) -> String {
        let skip = self.attempts.len().saturating_sub(KEEP_ATTEMPTS);
        self.attempts[skip..]
            .iter()
            .map(Attempt::encode)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Whether the marker records nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.attempts.is_empty()
    }

    /// The attempt that began at `start` for `token`, if recorded.
    pub fn find_mut(&mut self, token: &str, start: i64) -> Option<&mut Attempt> {
        self.attempts
            .iter_mut()
            .find(|a| a.token == token && a.start == start)
    }

    /// Whether any attempt of `token` (full token) made a key or may have.
    #[must_use]
    pub fn made_key_for(&self, token: &str) -> Option<&Attempt> {
        let t = token_digest(token);
        self.attempts
            .iter()
            .rev()
            .find(|a| a.token == t && (a.key.is_some() || a.has_window()))
    }

    /// A live attempt of `token` (full token) other than the one that began at `start`.
    #[must_use]
    pub fn other_live(&self, token: &str, start: i64, now: i64) -> Option<&Attempt> {
        let t = token_digest(token);
        self.attempts
            .iter()
            .find(|a| a.token == t && a.start != start && a.is_live(now))
    }
}

/// Everything the key decision looks at, fetched before it is made.
#[derive(Debug)]
pub struct KeyFacts<'a> {
    /// The secret (for messages).
    pub secret_id: &'a str,
    /// The IAM user.
    pub user: &'a str,
    /// The key AWSCURRENT names, if any (none in a bootstrap).
    pub current_key: Option<&'a str>,
    /// The key AWSPREVIOUS names, if it is this user's document.
    pub previous_key: Option<&'a str>,
    /// The user's keys as ListAccessKeys gave them.
    pub keys: &'a [KeyInfo],
    /// The marker's attempts.
    pub marker: &'a Marker,
    /// GetAccessKeyLastUsed for the keys that need it ([`keys_to_look_up`]).
    pub lookups: &'a HashMap<String, KeyLookup>,
    /// Now, in epoch seconds.
    pub now: i64,
}

/// The keys whose GetAccessKeyLastUsed the decision needs: the current key when it is not
/// listed (whose is it?), and every listed key that neither AWSCURRENT, AWSPREVIOUS nor an
/// attempt names (was it ever used?).
#[must_use]
pub fn keys_to_look_up(
    current_key: Option<&str>,
    previous_key: Option<&str>,
    keys: &[KeyInfo],
    marker: &Marker,
) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(c) = current_key
        && !keys.iter().any(|k| k.id == c)
    {
        out.push(c.to_owned());
    }
    for k in keys {
        let named = Some(k.id.as_str()) == current_key
            || Some(k.id.as_str()) == previous_key
            || marker
                .attempts
                .iter()
                .any(|a| a.key.as_deref() == Some(k.id.as_str()));
        if !named {
            out.push(k.id.clone());
        }
    }
    out
}

/// Decides which of the user's keys go before a new one is made: the provably stale ones.
/// Refuses (deleting nothing) when the current key is not this user's, when a key is not
/// ours to delete, or when a live attempt may still be storing a key.
///
/// # Errors
/// [`Error::KeyBelongsToOtherUser`], [`Error::CurrentKeyMissing`],
/// [`Error::UnadoptedAccessKey`], [`Error::AttemptInProgress`], [`Error::KeyNotYetVisible`].
pub fn stale_keys(f: &KeyFacts<'_>) -> Result<Vec<String>, Error> {
    if let Some(current) = f.current_key
        && !f.keys.iter().any(|k| k.id == current)
    {
        return Err(match f.lookups.get(current) {
            Some(KeyLookup::Found(u)) if u.owner.as_deref().is_some_and(|o| o != f.user) => {
                Error::KeyBelongsToOtherUser {
                    key_id: current.to_owned(),
                    owner: u.owner.clone().unwrap_or_default(),
                    iam_user: f.user.to_owned(),
                }
            }
            _ => Error::CurrentKeyMissing {
                key_id: current.to_owned(),
                iam_user: f.user.to_owned(),
            },
        });
    }
    let in_progress = |a: &Attempt, key: &str| Error::AttemptInProgress {
        secret_id: f.secret_id.to_owned(),
        key: key.to_owned(),
        started_secs_ago: f.now - a.start,
        deadline_in_secs: a.deadline - f.now,
    };
    let mut stale = Vec::new();
    for k in f.keys {
        let id = k.id.as_str();
        if Some(id) == f.current_key {
            continue;
        }
        if Some(id) == f.previous_key {
            stale.push(k.id.clone());
            continue;
        }
        if let Some(a) = f
            .marker
            .attempts
            .iter()
            .find(|a| a.key.as_deref() == Some(id))
        {
            if a.is_live(f.now) {
                return Err(in_progress(a, id));
            }
            stale.push(k.id.clone());
            continue;
        }
        let created = k.created.map(|d| d.secs());
        let window = created.and_then(|c| f.marker.attempts.iter().find(|a| a.covers(c)));
        let Some(a) = window else {
            return Err(Error::UnadoptedAccessKey {
                iam_user: f.user.to_owned(),
                key_id: k.id.clone(),
            });
        };
        if a.is_live(f.now) {
            return Err(in_progress(a, id));
        }
        match f.lookups.get(id) {
            Some(KeyLookup::Found(u)) if !u.ever_used => stale.push(k.id.clone()),
            Some(KeyLookup::Found(_)) => {
                return Err(Error::UnadoptedAccessKey {
                    iam_user: f.user.to_owned(),
                    key_id: k.id.clone(),
                });
            }
            // Listed, yet IAM says it does not exist: it was just deleted; nothing to do.
            Some(KeyLookup::NoSuchKey) => {}
            Some(KeyLookup::Denied) | None => {
                return Err(Error::KeyNotYetVisible {
                    key_id: k.id.clone(),
                    iam_user: f.user.to_owned(),
                });
            }
        }
    }
    Ok(stale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::KeyUsage;
    use aws_smithy_types::DateTime;

    const NOW: i64 = 1_800_000_000;
    const TOK: &str = "0b7c3a64-1b1e-4c39-9c39-6f1f0b9b9f0e";

    fn key(id: &str, created: i64) -> KeyInfo {
        KeyInfo {
            id: id.into(),
            active: true,
            created: Some(DateTime::from_secs(created)),
        }
    }

    fn attempt(start: i64, key: Option<&str>, state: AttemptState) -> Attempt {
        Attempt {
            token: token_digest(TOK),
            start,
            deadline: start + 300,
            key: key.map(str::to_owned),
            state,
        }
    }

    fn used(ever: bool) -> KeyLookup {
        KeyLookup::Found(KeyUsage {
            owner: Some("smtp".into()),
            ever_used: ever,
        })
    }

    struct Row {
        name: &'static str,
        current: Option<&'static str>,
        previous: Option<&'static str>,
        keys: Vec<KeyInfo>,
        attempts: Vec<Attempt>,
        lookups: Vec<(&'static str, KeyLookup)>,
        want: Result<Vec<&'static str>, &'static str>,
    }

    fn run(r: &Row) -> Result<Vec<String>, Error> {
        let marker = Marker {
            attempts: r.attempts.clone(),
        };
        let lookups: HashMap<String, KeyLookup> = r
            .lookups
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        stale_keys(&KeyFacts {
            secret_id: "arn:secret",
            user: "smtp",
            current_key: r.current,
            previous_key: r.previous,
            keys: &r.keys,
            marker: &marker,
            lookups: &lookups,
            now: NOW,
        })
    }

    #[test]
    fn decides_every_case() {
        let rows = vec![
            Row {
                name: "regular: only the current key, nothing to delete",
                current: Some("AKIACUR"),
                previous: None,
                keys: vec![key("AKIACUR", NOW - 9000)],
                attempts: vec![],
                lookups: vec![],
                want: Ok(vec![]),
            },
            Row {
                name: "regular: the previous rotation's old key goes",
                current: Some("AKIACUR"),
                previous: Some("AKIAOLD"),
                keys: vec![key("AKIAOLD", NOW - 9000), key("AKIACUR", NOW - 5000)],
                attempts: vec![],
                lookups: vec![],
                want: Ok(vec!["AKIAOLD"]),
            },
            Row {
                name: "a key no version and no attempt names is refused, even in a regular rotation",
                current: Some("AKIACUR"),
                previous: None,
                keys: vec![key("AKIACUR", NOW - 9000), key("AKIAOPS", NOW - 10)],
                attempts: vec![],
                lookups: vec![("AKIAOPS", used(false))],
                want: Err("UnadoptedAccessKey"),
            },
            Row {
                name: "bootstrap: a key an ended attempt named goes",
                current: None,
                previous: None,
                keys: vec![key("AKIAORPHAN", NOW - 60)],
                attempts: vec![attempt(NOW - 60, Some("AKIAORPHAN"), AttemptState::Ended)],
                lookups: vec![],
                want: Ok(vec!["AKIAORPHAN"]),
            },
            Row {
                name: "a key an expired open attempt named goes (killed after CreateAccessKey)",
                current: None,
                previous: None,
                keys: vec![key("AKIAORPHAN", NOW - 400)],
                attempts: vec![attempt(NOW - 400, Some("AKIAORPHAN"), AttemptState::Open)],
                lookups: vec![],
                want: Ok(vec!["AKIAORPHAN"]),
            },
            Row {
                name: "a key a live attempt named is not deleted: retry later",
                current: Some("AKIACUR"),
                previous: None,
                keys: vec![key("AKIACUR", NOW - 9000), key("AKIANEW", NOW - 1)],
                attempts: vec![attempt(NOW - 2, Some("AKIANEW"), AttemptState::Open)],
                lookups: vec![],
                want: Err("AttemptInProgress"),
            },
            Row {
                name: "window-covered never-used key of an ambiguous attempt goes",
                current: None,
                previous: None,
                keys: vec![key("AKIALOST", NOW - 55)],
                attempts: vec![attempt(NOW - 60, None, AttemptState::Ambiguous)],
                lookups: vec![("AKIALOST", used(false))],
                want: Ok(vec!["AKIALOST"]),
            },
            Row {
                name: "window-covered key that was used is someone's",
                current: None,
                previous: None,
                keys: vec![key("AKIALOST", NOW - 55)],
                attempts: vec![attempt(NOW - 60, None, AttemptState::Ambiguous)],
                lookups: vec![("AKIALOST", used(true))],
                want: Err("UnadoptedAccessKey"),
            },
            Row {
                name: "window-covered key IAM cannot describe yet: retry",
                current: None,
                previous: None,
                keys: vec![key("AKIALOST", NOW - 55)],
                attempts: vec![attempt(NOW - 60, None, AttemptState::Ambiguous)],
                lookups: vec![("AKIALOST", KeyLookup::Denied)],
                want: Err("KeyNotYetVisible"),
            },
            Row {
                name: "a definite CreateAccessKey failure has no window: an operator's key then is refused",
                current: None,
                previous: None,
                keys: vec![key("AKIAOPS", NOW - 58)],
                attempts: vec![attempt(NOW - 60, None, AttemptState::Ended)],
                lookups: vec![("AKIAOPS", used(false))],
                want: Err("UnadoptedAccessKey"),
            },
            Row {
                name: "a key outside every window is refused",
                current: None,
                previous: None,
                keys: vec![key("AKIAOPS", NOW - 30)],
                attempts: vec![attempt(NOW - 60, None, AttemptState::Ambiguous)],
                lookups: vec![("AKIAOPS", used(false))],
                want: Err("UnadoptedAccessKey"),
            },
            Row {
                name: "a key in the window of a live attempt may be its key: retry later",
                current: None,
                previous: None,
                keys: vec![key("AKIANEW", NOW - 1)],
                attempts: vec![attempt(NOW - 2, None, AttemptState::Open)],
                lookups: vec![("AKIANEW", used(false))],
                want: Err("AttemptInProgress"),
            },
            Row {
                name: "an abandoned earlier rotation's attempt (other token) proves its key ours",
                current: Some("AKIACUR"),
                previous: None,
                keys: vec![key("AKIACUR", NOW - 9000), key("AKIAOLDTRY", NOW - 5000)],
                attempts: vec![Attempt {
                    token: token_digest("an-earlier-token"),
                    ..attempt(NOW - 5000, Some("AKIAOLDTRY"), AttemptState::Ended)
                }],
                lookups: vec![],
                want: Ok(vec!["AKIAOLDTRY"]),
            },
            Row {
                name: "current key missing and owned by another user",
                current: Some("AKIAOTHER"),
                previous: None,
                keys: vec![],
                attempts: vec![],
                lookups: vec![(
                    "AKIAOTHER",
                    KeyLookup::Found(KeyUsage {
                        owner: Some("someone-else".into()),
                        ever_used: true,
                    }),
                )],
                want: Err("KeyBelongsToOtherUser"),
            },
            Row {
                name: "current key missing altogether",
                current: Some("AKIAGONE"),
                previous: None,
                keys: vec![key("AKIAX", NOW - 10)],
                attempts: vec![],
                lookups: vec![("AKIAGONE", KeyLookup::NoSuchKey)],
                want: Err("CurrentKeyMissing"),
            },
            Row {
                name: "the current key is never deleted, even when an attempt or AWSPREVIOUS names it",
                current: Some("AKIACUR"),
                previous: Some("AKIACUR"),
                keys: vec![key("AKIACUR", NOW - 60)],
                attempts: vec![attempt(NOW - 60, Some("AKIACUR"), AttemptState::Ended)],
                lookups: vec![],
                want: Ok(vec![]),
            },
        ];
        for r in &rows {
            let got = run(r);
            match (&r.want, got) {
                (Ok(want), Ok(got)) => assert_eq!(&got, want, "{}", r.name),
                (Err(want), Err(e)) => assert_eq!(e.error_type(), *want, "{}: {e}", r.name),
                (want, got) => panic!("{}: want {want:?}, got {got:?}", r.name),
            }
        }
    }

    #[test]
    fn lookups_cover_exactly_the_unnamed_keys() {
        let marker = Marker {
            attempts: vec![attempt(NOW, Some("AKIAB"), AttemptState::Ended)],
        };
        let keys = [key("AKIAA", NOW), key("AKIAB", NOW), key("AKIAC", NOW)];
        assert_eq!(
            keys_to_look_up(Some("AKIAA"), Some("AKIAP"), &keys, &marker),
            vec!["AKIAC".to_owned()]
        );
        assert_eq!(
            keys_to_look_up(Some("AKIAZ"), None, &keys[..1], &marker),
            vec!["AKIAZ".to_owned(), "AKIAA".to_owned()]
        );
    }

    #[test]
    fn marker_round_trips_and_fits_a_tag() {
        let mut m = Marker::default();
        for i in 0..9 {
            m.attempts.push(Attempt {
                token: token_digest(TOK),
                start: NOW + i,
                deadline: NOW + i + 900,
                key: Some("AKIAABCDEFGHIJKLMNOP".into()),
                state: AttemptState::Ambiguous,
            });
        }
        let v = m.to_value();
        assert!(v.len() <= 256, "{} chars: {v}", v.len());
        let back = Marker::parse(&v);
        assert_eq!(back.attempts.len(), KEEP_ATTEMPTS);
        assert_eq!(back.attempts, m.attempts[9 - KEEP_ATTEMPTS..]);
        assert_eq!(Marker::parse(""), Marker::default());
        assert_eq!(Marker::parse("garbage x:y"), Marker::default());
    }

    #[test]
    fn reads_the_first_release_marker() {
        let m = Marker::parse(&format!("{TOK} 100 160 k:AKIAOLD"));
        assert_eq!(m.attempts.len(), 3);
        assert!(m.attempts[0].covers(110) && !m.attempts[0].covers(120));
        assert_eq!(m.attempts[2].key.as_deref(), Some("AKIAOLD"));
        assert!(m.made_key_for(TOK).is_some());
        assert!(m.made_key_for("other").is_none());
    }

    #[test]
    fn lease_and_window() {
        let a = attempt(NOW, None, AttemptState::Open);
        assert!(a.is_live(NOW + 300) && !a.is_live(NOW + 301));
        assert!(a.covers(NOW - SKEW_SECS) && !a.covers(NOW - SKEW_SECS - 1));
        assert!(a.covers(NOW + WINDOW_SECS) && !a.covers(NOW + WINDOW_SECS + 1));
        let ended = attempt(NOW, None, AttemptState::Ended);
        assert!(!ended.covers(NOW) && !ended.is_live(NOW));
        let named = attempt(NOW, Some("AKIAX"), AttemptState::Ambiguous);
        assert!(!named.covers(NOW));
    }

    #[test]
    fn owner_tag_value_fits_a_tag() {
        let short = "arn:aws:secretsmanager:us-east-1:123456789012:secret:smtp-AbCdEf";
        assert_eq!(owner_tag_value(short), short);
        let long = format!(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:{}-AbCdEf",
            "n".repeat(300)
        );
        let v = owner_tag_value(&long);
        assert!(v.starts_with("sha256:") && v.len() <= 256, "{v}");
        assert_ne!(v, owner_tag_value(&format!("{long}x")));
    }
}
