//! Which of an IAM user's access keys this rotation may delete: the user tags that record
//! ownership, and the rule that decides, as a pure function over facts fetched first.
//!
//! The function's user tags (all under `ses-smtp-rotator:`, the only tag keys the template
//! lets it write):
//!
//! - [`OWNER_TAG`] = the secret's ARN (or its digest): the one secret whose rotation owns the
//!   user's keys. Two secrets on one user would delete each other's working keys.
//! - the key record ([`crate::record`]), one tag per key.
//! - the marker: createSecret's attempts, **one tag per attempt**
//!   ([`ATTEMPT_TAG_PREFIX`]`<token>.<started ms>.<nonce>`), so that an attempt only ever
//!   writes its own tag and two overlapping attempts can never erase each other's entry (IAM
//!   tags have no compare-and-swap; a shared tag rewritten whole loses concurrent updates).
//!   Before CreateAccessKey an attempt records itself (its invocation deadline), then the key
//!   id CreateAccessKey returned, then that it ended, before it answers. Its *lease* holds
//!   until it ended or its deadline passed (Lambda cannot outlive the deadline, so a killed
//!   attempt simply runs out). When CreateAccessKey fails definitely (a 4xx answer) the
//!   attempt is recorded as having made nothing; when the outcome is unknown (timeout, lost
//!   or 5xx response) a never-used key created within [`WINDOW_SECS`] of its start is its
//!   key. Earlier releases kept every attempt in one tag, [`MARKER_TAG`]: it is still read,
//!   never written, and removed once nothing in it proves anything.
//!
//! Only provably stale keys are deleted (see [`plan_keys`]). A key a live attempt may still
//! be storing is never deleted (the step answers a retryable error); a key named by
//! AWSCURRENT is never deleted; any other key is left alone and named, and refused
//! ([`Error::UnadoptedAccessKey`]) only when it leaves no room for the new key.

use std::collections::HashMap;

use crate::aws::{KeyInfo, KeyLookup};
use crate::error::Error;
use crate::record::{Entry, KeyState, Records};

/// User tag naming the one secret whose rotation owns the user's keys.
pub const OWNER_TAG: &str = "ses-smtp-rotator:secret";

/// The user tag in which earlier releases kept every createSecret attempt (read, never
/// written; removed once nothing in it proves anything).
pub const MARKER_TAG: &str = "ses-smtp-rotator:creating-key";

/// Prefix of an attempt's own tag: `ses-smtp-rotator:creating-key:<token>.<started ms>.<nonce>`
/// = `<lease seconds>:<o|e|s|a>[:<key id>]`.
pub const ATTEMPT_TAG_PREFIX: &str = "ses-smtp-rotator:creating-key:";

/// How long after an attempt's start a key whose id it never learned (lost response) still
/// counts as that attempt's: CreateAccessKey's own 10 s attempt limit plus slack.
pub const WINDOW_SECS: i64 = 15;
/// Tolerated clock difference between this function and IAM (whose dates have 1 s resolution).
pub const SKEW_SECS: i64 = 2;
/// Longest lease an attempt can hold: Lambda's maximum timeout (15 minutes). An invocation
/// cannot outlive it, so neither can its lease.
pub const MAX_LEASE_SECS: i64 = 900;
/// Most attempt tags kept on a user (IAM allows 50 tags per user): past it createSecret
/// removes the oldest that are not live. Dropping an attempt only ever makes a key it made
/// unexplained, which is left alone and reported, never deleted.
pub const MAX_ATTEMPT_TAGS: usize = 8;

/// The value of [`OWNER_TAG`] for a secret: its ARN, or a digest of it when too long for a tag.
#[must_use]
pub fn owner_tag_value(secret_arn: &str) -> String {
    if secret_arn.len() <= 256 {
        return secret_arn.to_owned();
    }
    format!("sha256:{}", hex_digest(secret_arn, 32))
}

/// The first `bytes` bytes of SHA-256(`text`), in hex.
#[must_use]
pub fn hex_digest(text: &str, bytes: usize) -> String {
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

/// Four random hex digits telling apart two attempts that began in the same millisecond
/// (from the standard library's per-process random hash keys, mixed with the time and a
/// counter; no cryptographic quality is needed).
fn nonce(started_ms: i64) -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_i64(started_ms);
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    format!("{:04x}", h.finish() & 0xffff)
}

/// What an attempt has recorded about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptState {
    /// Running (or killed): its lease holds until its deadline.
    Open,
    /// Answered; it made exactly the key it names (or none), and did not store it (or
    /// recorded nothing more).
    Ended,
    /// Answered after storing the key it names as the token's pending value.
    Stored,
    /// Answered after a CreateAccessKey whose outcome is unknown: a never-used key created in
    /// its window is its key.
    Ambiguous,
}

/// One createSecret attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// [`token_digest`] of the rotation's token.
    pub token: String,
    /// Epoch milliseconds when it began.
    pub started_ms: i64,
    /// Epoch seconds when it began (IAM's dates have one-second resolution).
    pub start: i64,
    /// Epoch seconds when its invocation's deadline passes (its lease ends at the latest).
    pub deadline: i64,
    /// The key CreateAccessKey returned to it.
    pub key: Option<String>,
    /// What it recorded.
    pub state: AttemptState,
    /// The tag that holds it (its identity): its own, or [`MARKER_TAG`] for an attempt an
    /// earlier release recorded.
    pub tag: String,
}

impl Attempt {
    /// A new attempt of `token` (full) beginning at `started_ms` whose invocation must answer
    /// by `deadline` (epoch seconds), with its own tag.
    #[must_use]
    pub fn begin(token: &str, started_ms: i64, deadline: i64) -> Self {
        let token = token_digest(token);
        let tag = format!(
            "{ATTEMPT_TAG_PREFIX}{token}.{started_ms}.{}",
            nonce(started_ms)
        );
        let start = started_ms.div_euclid(1000);
        Self {
            token,
            started_ms,
            start,
            deadline: deadline.min(start + MAX_LEASE_SECS),
            key: None,
            state: AttemptState::Open,
            tag,
        }
    }

    /// Whether its lease still holds at `now`.
    #[must_use]
    pub fn is_live(&self, now: i64) -> bool {
        self.state == AttemptState::Open && now <= self.deadline
    }

    /// Whether a key whose id it never recorded may be its key: its CreateAccessKey outcome is
    /// unknown (ambiguous answer, or it never recorded one).
    #[must_use]
    pub fn has_window(&self) -> bool {
        self.key.is_none() && !matches!(self.state, AttemptState::Ended | AttemptState::Stored)
    }

    /// Whether a key created at `created` (epoch seconds) falls in its window.
    #[must_use]
    pub fn covers(&self, created: i64) -> bool {
        self.has_window()
            && created >= self.start - SKEW_SECS
            && created <= self.start + WINDOW_SECS
    }

    /// Whether an earlier release recorded it (in the shared [`MARKER_TAG`]).
    #[must_use]
    pub fn is_legacy(&self) -> bool {
        self.tag == MARKER_TAG
    }

    /// The value of its own tag: `<lease>:<flag>[:<key>]` (at most 26 characters).
    #[must_use]
    pub fn tag_value(&self) -> String {
        let mut v = format!(
            "{}:{}",
            (self.deadline - self.start).clamp(0, MAX_LEASE_SECS),
            self.flag()
        );
        if let Some(k) = &self.key {
            v.push(':');
            v.push_str(k);
        }
        v
    }

    fn flag(&self) -> char {
        match self.state {
            AttemptState::Open => 'o',
            AttemptState::Ended => 'e',
            AttemptState::Stored => 's',
            AttemptState::Ambiguous => 'a',
        }
    }

    fn parse_flag(flag: &str) -> Option<AttemptState> {
        Some(match flag {
            "o" => AttemptState::Open,
            "e" => AttemptState::Ended,
            "s" => AttemptState::Stored,
            "a" => AttemptState::Ambiguous,
            _ => return None,
        })
    }

    /// Reads an attempt's own tag; `None` when it is not one this function wrote.
    #[must_use]
    pub fn from_tag(tag: &str, value: &str) -> Option<Self> {
        let mut id = tag.strip_prefix(ATTEMPT_TAG_PREFIX)?.split('.');
        let token = id.next()?.to_owned();
        let started_ms = id.next()?.parse::<i64>().ok()?;
        let nonce = id.next()?;
        let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
        if id.next().is_some() || !hex(&token) || !hex(nonce) {
            return None;
        }
        let mut parts = value.split(':');
        let attempt = Self::from_parts(token, started_ms, &mut parts, tag)?;
        parts.next().is_none().then_some(attempt)
    }

    /// `<lease>:<flag>[:<key>]` after the identity.
    fn from_parts<'a>(
        token: String,
        started_ms: i64,
        parts: &mut impl Iterator<Item = &'a str>,
        tag: &str,
    ) -> Option<Self> {
        let start = started_ms.div_euclid(1000);
        // A lease never outlives Lambda's 15-minute maximum, whatever a tag says.
        let lease = parts.next()?.parse::<i64>().ok()?.clamp(0, MAX_LEASE_SECS);
        let state = Self::parse_flag(parts.next()?)?;
        let key = match parts.next() {
            Some("") => return None,
            k => k.map(str::to_owned),
        };
        Some(Self {
            token,
            started_ms,
            start,
            deadline: start + lease,
            key,
            state,
            tag: tag.to_owned(),
        })
    }

    /// One item of the earlier releases' shared marker: `<token>:<started_ms>:<lease>:<flag>[:<key>]`.
    fn from_legacy_item(item: &str) -> Option<Self> {
        let mut parts = item.split(':');
        let token = parts.next()?.to_owned();
        let started_ms = parts.next()?.parse::<i64>().ok()?;
        if token.is_empty() {
            return None;
        }
        let attempt = Self::from_parts(token, started_ms, &mut parts, MARKER_TAG)?;
        parts.next().is_none().then_some(attempt)
    }
}

/// The attempts recorded on a user: every attempt tag, plus the earlier releases' shared
/// marker tag.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Marker {
    /// Oldest first.
    pub attempts: Vec<Attempt>,
    /// Whether the earlier releases' [`MARKER_TAG`] is present (even empty).
    pub legacy_tag: bool,
}

impl Marker {
    /// Parses the value of the earlier releases' shared [`MARKER_TAG`]; `None` when an item
    /// cannot be read (the marker is then refused, never silently reset: see [`marker_of`]).
    /// Two formats: `<token8>:<started_ms>:<lease>:<flag>[:<key>] …` (the release before
    /// per-attempt tags) and `<token> <epoch>… k:<key>…` (the first release), whose times
    /// become ambiguous attempts and whose keys ended ones, so a rotation interrupted across
    /// the upgrade still recognises its keys.
    #[must_use]
    pub fn parse_legacy(value: &str) -> Option<Vec<Attempt>> {
        let items: Vec<&str> = value.split_whitespace().collect();
        let first_release = items
            .first()
            .is_some_and(|first| !first.contains(':') && items.len() > 1);
        if first_release {
            let token = token_digest(items[0]);
            return items[1..]
                .iter()
                .map(|p| match p.strip_prefix("k:") {
                    Some(k) => Some(Attempt {
                        token: token.clone(),
                        started_ms: 0,
                        start: 0,
                        deadline: 0,
                        key: Some(k.to_owned()),
                        state: AttemptState::Ended,
                        tag: MARKER_TAG.to_owned(),
                    }),
                    None => p.parse::<i64>().ok().map(|t| Attempt {
                        token: token.clone(),
                        started_ms: t.saturating_mul(1000),
                        start: t,
                        deadline: t + WINDOW_SECS,
                        key: None,
                        state: AttemptState::Ambiguous,
                        tag: MARKER_TAG.to_owned(),
                    }),
                })
                .collect();
        }
        items.iter().map(|i| Attempt::from_legacy_item(i)).collect()
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

    /// A live attempt of `own`'s token other than `own`. With `earlier_only`, only one that
    /// began before it (by start, then tag): of two attempts that each see the other, exactly
    /// one yields.
    #[must_use]
    pub fn other_live(&self, own: &Attempt, now: i64, earlier_only: bool) -> Option<&Attempt> {
        self.attempts.iter().find(|a| {
            a.token == own.token
                && a.tag != own.tag
                && a.is_live(now)
                && (!earlier_only || (a.started_ms, &a.tag) < (own.started_ms, &own.tag))
        })
    }

    /// The tags to remove so that only the attempts `keep` selects remain: every other
    /// attempt's own tag, and the shared [`MARKER_TAG`] once none of its attempts is kept.
    /// Past [`MAX_ATTEMPT_TAGS`], the oldest kept attempts that are not live go too.
    #[must_use]
    pub fn tags_to_drop(&self, now: i64, keep: impl Fn(&Attempt) -> bool) -> Vec<String> {
        let mut drop: Vec<String> = Vec::new();
        let mut kept_own = Vec::new();
        for a in &self.attempts {
            if a.is_legacy() {
                continue;
            }
            if keep(a) {
                kept_own.push(a);
            } else {
                drop.push(a.tag.clone());
            }
        }
        let mut excess = kept_own.len().saturating_sub(MAX_ATTEMPT_TAGS);
        for a in kept_own {
            if excess == 0 {
                break;
            }
            if !a.is_live(now) {
                drop.push(a.tag.clone());
                excess -= 1;
            }
        }
        let legacy_kept = self.attempts.iter().any(|a| a.is_legacy() && keep(a));
        if self.legacy_tag && !legacy_kept {
            drop.push(MARKER_TAG.to_owned());
        }
        drop
    }
}

/// The marker among a user's tags (empty when there is none).
///
/// # Errors
/// [`Error::KeyRecordUnreadable`] naming the tag, when an attempt tag (or the earlier
/// releases' marker tag) holds something this function did not write.
pub fn marker_of(user: &str, tags: &HashMap<String, String>) -> Result<Marker, Error> {
    let unreadable = |tag: &str| Error::KeyRecordUnreadable {
        iam_user: user.to_owned(),
        tag: tag.to_owned(),
    };
    let mut marker = Marker::default();
    if let Some(v) = tags.get(MARKER_TAG) {
        marker.legacy_tag = true;
        marker.attempts = Marker::parse_legacy(v).ok_or_else(|| unreadable(MARKER_TAG))?;
    }
    for (k, v) in tags {
        if k.starts_with(ATTEMPT_TAG_PREFIX) {
            marker
                .attempts
                .push(Attempt::from_tag(k, v).ok_or_else(|| unreadable(k))?);
        }
    }
    marker
        .attempts
        .sort_by(|a, b| (a.started_ms, &a.tag).cmp(&(b.started_ms, &b.tag)));
    Ok(marker)
}

/// Everything the key decision looks at, fetched before it is made.
#[derive(Debug)]
pub struct KeyFacts<'a> {
    /// The secret's ARN.
    pub secret_id: &'a str,
    /// The IAM user.
    pub user: &'a str,
    /// This rotation's token (full).
    pub token: &'a str,
    /// The key AWSCURRENT names, if any (none in a bootstrap).
    pub current_key: Option<&'a str>,
    /// The key AWSPREVIOUS names, if it is this user's document: consulted only while the
    /// user has no key record at all (a user an earlier release served), never as proof
    /// otherwise.
    pub previous_key: Option<&'a str>,
    /// The user's keys as ListAccessKeys gave them.
    pub keys: &'a [KeyInfo],
    /// The key record.
    pub records: &'a Records,
    /// The marker's attempts.
    pub marker: &'a Marker,
    /// GetAccessKeyLastUsed for the keys that need it ([`keys_to_look_up`]).
    pub lookups: &'a HashMap<String, KeyLookup>,
    /// Now, in epoch seconds.
    pub now: i64,
}

/// What createSecret does with the user's keys before it mints one.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct KeyPlan {
    /// Keys to delete: the record (or, for a lost CreateAccessKey answer, an attempt's
    /// window) proves this function made them for this secret, and no version needs them.
    pub stale: Vec<String>,
    /// Records to write first: the current key's, when it is not recorded as current (a
    /// promotion whose record update was interrupted, an adopted key, or the one-time
    /// adoption of a user an earlier release served).
    pub record: Vec<(String, Entry)>,
    /// Keys left alone because nothing proves them this secret's (reported by name).
    pub foreign: Vec<String>,
}

/// How long after an attempt made a key IAM and Secrets Manager must show what it did: past
/// this, a key that is not listed is gone, and a stored value that cannot be read was never
/// stored.
pub const LISTING_LAG_SECS: i64 = 120;

/// The keys whose GetAccessKeyLastUsed the decision needs: the current key when it is not
/// listed (whose is it?), and every listed key that no record, version or attempt explains
/// (was it ever used?).
#[must_use]
pub fn keys_to_look_up(
    current_key: Option<&str>,
    keys: &[KeyInfo],
    records: &Records,
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
            || records.get(&k.id).is_some()
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

/// Decides what happens to the user's keys before a new one is made. Only keys the record
/// proves this function made for this secret are deleted (and a never-used key in the window
/// of an attempt whose CreateAccessKey answer was lost); what a document says is never proof.
/// A key nothing proves ours is left alone and reported, and refused by name only when it
/// leaves no room for the new key (IAM's two-key limit). Refuses, deleting nothing, when the
/// current key is not this user's or not this secret's, or when a live attempt may still be
/// storing a key.
///
/// # Errors
/// [`Error::KeyBelongsToOtherUser`], [`Error::CurrentKeyMissing`],
/// [`Error::UnadoptedAccessKey`], [`Error::AttemptInProgress`], [`Error::KeyNotYetVisible`],
/// [`Error::PendingNotReadable`].
#[allow(clippy::too_many_lines)]
pub fn plan_keys(f: &KeyFacts<'_>) -> Result<KeyPlan, Error> {
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
    let unadopted = |key: &str, named: &'static str| Error::UnadoptedAccessKey {
        iam_user: f.user.to_owned(),
        key_id: key.to_owned(),
        secret_id: f.secret_id.to_owned(),
        named,
    };
    let migrating = f.records.is_empty();
    let mut plan = KeyPlan::default();
    if let Some(current) = f.current_key {
        match f.records.state_of(current, f.secret_id) {
            Some(KeyState::Current) if !matches!(f.records.get(current), Some(Entry::Adopted)) => {}
            Some(_) => plan.record.push((
                current.to_owned(),
                Entry::new(f.secret_id, None, KeyState::Current, f.now),
            )),
            None if migrating => plan.record.push((
                current.to_owned(),
                Entry::new(f.secret_id, None, KeyState::Current, f.now),
            )),
            None => return Err(unadopted(current, " (named by AWSCURRENT)")),
        }
    }
    let in_progress = |a: &Attempt, key: &str| Error::AttemptInProgress {
        secret_id: f.secret_id.to_owned(),
        key: key.to_owned(),
        started_secs_ago: f.now - a.start,
        deadline_in_secs: a.deadline - f.now,
    };
    let live_attempt = |id: &str| {
        f.marker
            .attempts
            .iter()
            .find(|a| a.key.as_deref() == Some(id) && a.is_live(f.now))
    };
    for k in f.keys {
        let id = k.id.as_str();
        if Some(id) == f.current_key {
            continue;
        }
        if let Some(entry) = f.records.get(id) {
            match entry.state_for(f.secret_id) {
                None => plan.foreign.push(k.id.clone()),
                Some(KeyState::Minted) => {
                    if let Some(a) = live_attempt(id) {
                        return Err(in_progress(a, id));
                    }
                    // This rotation's own key that the pending version does not name
                    // (createSecret runs this only when the pending value is not there): a
                    // value its attempt stored moments ago may not be readable yet. A key
                    // whose attempt ended without storing it (or died: its lease ran out) is
                    // an orphan.
                    let attempt = f
                        .marker
                        .attempts
                        .iter()
                        .find(|a| a.key.as_deref() == Some(id));
                    let maybe_stored = attempt.is_none_or(|a| a.state == AttemptState::Stored);
                    if entry.minted_by(f.secret_id, f.token)
                        && maybe_stored
                        && entry.at() > f.now - LISTING_LAG_SECS
                    {
                        return Err(Error::PendingNotReadable {
                            secret_id: f.secret_id.to_owned(),
                            token: f.token.to_owned(),
                            key_id: k.id.clone(),
                        });
                    }
                    plan.stale.push(k.id.clone());
                }
                Some(_) => plan.stale.push(k.id.clone()),
            }
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
            plan.stale.push(k.id.clone());
            continue;
        }
        let created = k.created.map(|d| d.secs());
        if let Some(a) = created.and_then(|c| f.marker.attempts.iter().find(|a| a.covers(c))) {
            if a.is_live(f.now) {
                return Err(in_progress(a, id));
            }
            match f.lookups.get(id) {
                Some(KeyLookup::Found(u)) if !u.ever_used => plan.stale.push(k.id.clone()),
                Some(KeyLookup::Found(_)) => plan.foreign.push(k.id.clone()),
                // Listed, yet IAM says it does not exist: it was just deleted; nothing to do.
                Some(KeyLookup::NoSuchKey) => {}
                Some(KeyLookup::Denied) | None => {
                    return Err(Error::KeyNotYetVisible {
                        key_id: k.id.clone(),
                        iam_user: f.user.to_owned(),
                    });
                }
            }
            continue;
        }
        // The one-time adoption of a user an earlier release served (no record yet): the
        // key it retired (Inactive, named by AWSPREVIOUS) goes, as that release would have
        // done. An Active one may be someone's: left alone.
        if migrating && Some(id) == f.previous_key && !k.active {
            plan.stale.push(k.id.clone());
            continue;
        }
        plan.foreign.push(k.id.clone());
    }
    if let Some(first) = plan.foreign.first()
        && f.keys.len() - plan.stale.len() >= 2
    {
        return Err(unadopted(first, ""));
    }
    Ok(plan)
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
            key: key.map(str::to_owned),
            state,
            ..Attempt::begin(TOK, start * 1000, start + 300)
        }
    }

    fn used(ever: bool) -> KeyLookup {
        KeyLookup::Found(KeyUsage {
            owner: Some("smtp".into()),
            ever_used: ever,
            last_used: ever.then_some(NOW - 100),
        })
    }

    const ARN: &str = "arn:secret";

    fn rec(state: KeyState, token: Option<&str>, at: i64) -> Entry {
        Entry::new(ARN, token, state, at)
    }

    /// (stale, recorded as current, foreign).
    type Want = (Vec<&'static str>, Vec<&'static str>, Vec<&'static str>);

    struct Row {
        name: &'static str,
        current: Option<&'static str>,
        previous: Option<&'static str>,
        keys: Vec<KeyInfo>,
        records: Vec<(&'static str, Entry)>,
        attempts: Vec<Attempt>,
        lookups: Vec<(&'static str, KeyLookup)>,
        /// Ok((stale, recorded-as-current, foreign)) or the error type.
        want: Result<Want, &'static str>,
    }

    impl Default for Row {
        fn default() -> Self {
            Self {
                name: "",
                current: Some("AKIACUR"),
                previous: None,
                keys: vec![key("AKIACUR", NOW - 9000)],
                records: vec![("AKIACUR", rec(KeyState::Current, Some("t0"), NOW - 9000))],
                attempts: vec![],
                lookups: vec![],
                want: Ok((vec![], vec![], vec![])),
            }
        }
    }

    fn run(r: &Row) -> Result<KeyPlan, Error> {
        let marker = Marker {
            attempts: r.attempts.clone(),
            legacy_tag: false,
        };
        let records = Records {
            keys: r
                .records
                .iter()
                .map(|(k, e)| ((*k).to_owned(), e.clone()))
                .collect(),
        };
        let lookups: HashMap<String, KeyLookup> = r
            .lookups
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        plan_keys(&KeyFacts {
            secret_id: ARN,
            user: "smtp",
            token: TOK,
            current_key: r.current,
            previous_key: r.previous,
            keys: &r.keys,
            records: &records,
            marker: &marker,
            lookups: &lookups,
            now: NOW,
        })
    }

    fn inactive(mut k: KeyInfo) -> KeyInfo {
        k.active = false;
        k
    }

    #[test]
    #[allow(clippy::too_many_lines)]
    fn decides_every_case() {
        let two = || vec![key("AKIAOLD", NOW - 9000), key("AKIACUR", NOW - 5000)];
        let with_cur = |extra: Vec<(&'static str, Entry)>| {
            let mut v = vec![("AKIACUR", rec(KeyState::Current, Some("t0"), NOW - 5000))];
            v.extend(extra);
            v
        };
        let rows = vec![
            Row {
                name: "regular: only the current key, nothing to delete",
                ..Row::default()
            },
            Row {
                name: "the previous rotation's retired key goes",
                keys: two(),
                records: with_cur(vec![("AKIAOLD", rec(KeyState::Retired, None, NOW - 5000))]),
                want: Ok((vec!["AKIAOLD"], vec![], vec![])),
                ..Row::default()
            },
            Row {
                name: "a key kept Active (keep, or in grace) goes: the two-key limit ends its grace",
                keys: two(),
                records: with_cur(vec![("AKIAOLD", rec(KeyState::Previous, None, NOW - 5000))]),
                want: Ok((vec!["AKIAOLD"], vec![], vec![])),
                ..Row::default()
            },
            Row {
                name: "AWSPREVIOUS naming a key is no proof once the user has a record",
                previous: Some("AKIAOLD"),
                keys: two(),
                records: with_cur(vec![]),
                lookups: vec![("AKIAOLD", used(true))],
                want: Err("UnadoptedAccessKey"),
                ..Row::default()
            },
            Row {
                name: "AWSCURRENT naming a key the record does not know: the real current key is not touched",
                current: Some("AKIAHAND"),
                keys: vec![key("AKIAPROD", NOW - 9000), key("AKIAHAND", NOW - 100)],
                records: vec![("AKIAPROD", rec(KeyState::Current, Some("t0"), NOW - 9000))],
                want: Err("UnadoptedAccessKey"),
                ..Row::default()
            },
            Row {
                name: "AWSCURRENT naming another secret's key is refused",
                records: vec![(
                    "AKIACUR",
                    Entry::new("arn:other", Some("t0"), KeyState::Current, 1),
                )],
                want: Err("UnadoptedAccessKey"),
                ..Row::default()
            },
            Row {
                name: "another secret's key beside the current one leaves no room: refused",
                keys: two(),
                records: with_cur(vec![(
                    "AKIAOLD",
                    Entry::new("arn:other", None, KeyState::Retired, 1),
                )]),
                want: Err("UnadoptedAccessKey"),
                ..Row::default()
            },
            Row {
                name: "bootstrap: a key nothing explains is left alone and reported, the rotation proceeds",
                current: None,
                keys: vec![key("AKIAOPS", NOW - 10)],
                records: vec![],
                lookups: vec![("AKIAOPS", used(false))],
                want: Ok((vec![], vec![], vec!["AKIAOPS"])),
                ..Row::default()
            },
            Row {
                name: "an abandoned earlier rotation's minted key goes",
                keys: two(),
                records: with_cur(vec![(
                    "AKIAOLD",
                    rec(KeyState::Minted, Some("earlier"), NOW - 4000),
                )]),
                want: Ok((vec!["AKIAOLD"], vec![], vec![])),
                ..Row::default()
            },
            Row {
                name: "this rotation's key minted moments ago, its value not readable yet: retry",
                keys: two(),
                records: with_cur(vec![("AKIAOLD", rec(KeyState::Minted, Some(TOK), NOW - 5))]),
                want: Err("PendingNotReadable"),
                ..Row::default()
            },
            Row {
                name: "this rotation's key its attempt stored moments ago, not readable yet: retry",
                keys: two(),
                records: with_cur(vec![("AKIAOLD", rec(KeyState::Minted, Some(TOK), NOW - 5))]),
                attempts: vec![attempt(NOW - 5, Some("AKIAOLD"), AttemptState::Stored)],
                want: Err("PendingNotReadable"),
                ..Row::default()
            },
            Row {
                name: "this rotation's key whose attempt ended without storing it: it goes at once",
                keys: two(),
                records: with_cur(vec![("AKIAOLD", rec(KeyState::Minted, Some(TOK), NOW - 5))]),
                attempts: vec![attempt(NOW - 5, Some("AKIAOLD"), AttemptState::Ended)],
                want: Ok((vec!["AKIAOLD"], vec![], vec![])),
                ..Row::default()
            },
            Row {
                name: "this rotation's key whose attempt died (lease over) before storing: it goes",
                keys: two(),
                records: with_cur(vec![("AKIAOLD", rec(KeyState::Minted, Some(TOK), NOW - 5))]),
                attempts: vec![Attempt {
                    deadline: NOW - 1,
                    ..attempt(NOW - 5, Some("AKIAOLD"), AttemptState::Open)
                }],
                want: Ok((vec!["AKIAOLD"], vec![], vec![])),
                ..Row::default()
            },
            Row {
                name: "this rotation's key minted long ago and never stored: it goes",
                keys: two(),
                records: with_cur(vec![(
                    "AKIAOLD",
                    rec(KeyState::Minted, Some(TOK), NOW - LISTING_LAG_SECS - 1),
                )]),
                want: Ok((vec!["AKIAOLD"], vec![], vec![])),
                ..Row::default()
            },
            Row {
                name: "a minted key whose attempt is live is not deleted: retry later",
                keys: two(),
                records: with_cur(vec![(
                    "AKIAOLD",
                    rec(KeyState::Minted, Some("earlier"), NOW - 2),
                )]),
                attempts: vec![attempt(NOW - 2, Some("AKIAOLD"), AttemptState::Open)],
                want: Err("AttemptInProgress"),
                ..Row::default()
            },
            Row {
                name: "bootstrap: a key an ended attempt named (an earlier release's) goes",
                current: None,
                keys: vec![key("AKIAORPHAN", NOW - 60)],
                records: vec![],
                attempts: vec![attempt(NOW - 60, Some("AKIAORPHAN"), AttemptState::Ended)],
                want: Ok((vec!["AKIAORPHAN"], vec![], vec![])),
                ..Row::default()
            },
            Row {
                name: "a key an expired open attempt named goes (killed after CreateAccessKey)",
                current: None,
                keys: vec![key("AKIAORPHAN", NOW - 400)],
                records: vec![],
                attempts: vec![attempt(NOW - 400, Some("AKIAORPHAN"), AttemptState::Open)],
                want: Ok((vec!["AKIAORPHAN"], vec![], vec![])),
                ..Row::default()
            },
            Row {
                name: "window-covered never-used key of an ambiguous attempt goes",
                current: None,
                keys: vec![key("AKIALOST", NOW - 55)],
                records: vec![],
                attempts: vec![attempt(NOW - 60, None, AttemptState::Ambiguous)],
                lookups: vec![("AKIALOST", used(false))],
                want: Ok((vec!["AKIALOST"], vec![], vec![])),
                ..Row::default()
            },
            Row {
                name: "window-covered key that was used is someone's: refused when it leaves no room",
                keys: vec![key("AKIACUR", NOW - 9000), key("AKIALOST", NOW - 55)],
                attempts: vec![attempt(NOW - 60, None, AttemptState::Ambiguous)],
                lookups: vec![("AKIALOST", used(true))],
                want: Err("UnadoptedAccessKey"),
                ..Row::default()
            },
            Row {
                name: "window-covered key IAM cannot describe yet: retry",
                current: None,
                keys: vec![key("AKIALOST", NOW - 55)],
                records: vec![],
                attempts: vec![attempt(NOW - 60, None, AttemptState::Ambiguous)],
                lookups: vec![("AKIALOST", KeyLookup::Denied)],
                want: Err("KeyNotYetVisible"),
                ..Row::default()
            },
            Row {
                name: "a key in the window of a live attempt may be its key: retry later",
                current: None,
                keys: vec![key("AKIANEW", NOW - 1)],
                records: vec![],
                attempts: vec![attempt(NOW - 2, None, AttemptState::Open)],
                lookups: vec![("AKIANEW", used(false))],
                want: Err("AttemptInProgress"),
                ..Row::default()
            },
            Row {
                name: "a user an earlier release served: its current key is recorded, its retired key goes",
                previous: Some("AKIAOLD"),
                keys: vec![
                    inactive(key("AKIAOLD", NOW - 9000)),
                    key("AKIACUR", NOW - 5000),
                ],
                records: vec![],
                lookups: vec![("AKIAOLD", used(true))],
                want: Ok((vec!["AKIAOLD"], vec!["AKIACUR"], vec![])),
                ..Row::default()
            },
            Row {
                name: "an earlier release's user whose AWSPREVIOUS key is Active: left alone, no room",
                previous: Some("AKIAOLD"),
                keys: two(),
                records: vec![],
                lookups: vec![("AKIAOLD", used(true))],
                want: Err("UnadoptedAccessKey"),
                ..Row::default()
            },
            Row {
                name: "a promotion whose record update was cut short: the current key is recorded current, the older one goes",
                current: Some("AKIANEW"),
                keys: vec![key("AKIAOLD", NOW - 9000), key("AKIANEW", NOW - 5000)],
                records: vec![
                    ("AKIAOLD", rec(KeyState::Current, Some("t0"), NOW - 9000)),
                    ("AKIANEW", rec(KeyState::Minted, Some("t1"), NOW - 5000)),
                ],
                want: Ok((vec!["AKIAOLD"], vec!["AKIANEW"], vec![])),
                ..Row::default()
            },
            Row {
                name: "an adopted current key is recorded; an adopted other key is retired",
                keys: two(),
                records: vec![("AKIACUR", Entry::Adopted), ("AKIAOLD", Entry::Adopted)],
                want: Ok((vec!["AKIAOLD"], vec!["AKIACUR"], vec![])),
                ..Row::default()
            },
            Row {
                name: "current key missing and owned by another user",
                current: Some("AKIAOTHER"),
                keys: vec![],
                lookups: vec![(
                    "AKIAOTHER",
                    KeyLookup::Found(KeyUsage {
                        owner: Some("someone-else".into()),
                        ever_used: true,
                        last_used: Some(NOW - 100),
                    }),
                )],
                want: Err("KeyBelongsToOtherUser"),
                ..Row::default()
            },
            Row {
                name: "current key missing altogether",
                current: Some("AKIAGONE"),
                keys: vec![key("AKIAX", NOW - 10)],
                lookups: vec![("AKIAGONE", KeyLookup::NoSuchKey)],
                want: Err("CurrentKeyMissing"),
                ..Row::default()
            },
            Row {
                name: "the current key is never deleted, even when an attempt names it",
                attempts: vec![attempt(NOW - 60, Some("AKIACUR"), AttemptState::Ended)],
                ..Row::default()
            },
        ];
        for r in &rows {
            let got = run(r);
            match (&r.want, got) {
                (Ok((stale, recorded, foreign)), Ok(plan)) => {
                    assert_eq!(&plan.stale, stale, "{}: stale", r.name);
                    let rec: Vec<&str> = plan.record.iter().map(|(k, _)| k.as_str()).collect();
                    assert_eq!(&rec, recorded, "{}: recorded", r.name);
                    for (_, e) in &plan.record {
                        assert_eq!(e.state_for(ARN), Some(KeyState::Current), "{}", r.name);
                        assert!(!matches!(e, Entry::Adopted), "{}", r.name);
                    }
                    assert_eq!(&plan.foreign, foreign, "{}: foreign", r.name);
                }
                (Err(want), Err(e)) => assert_eq!(e.error_type(), *want, "{}: {e}", r.name),
                (want, got) => panic!("{}: want {want:?}, got {got:?}", r.name),
            }
        }
    }

    #[test]
    fn lookups_cover_exactly_the_unexplained_keys() {
        let marker = Marker {
            attempts: vec![attempt(NOW, Some("AKIAB"), AttemptState::Ended)],
            legacy_tag: false,
        };
        let records = Records {
            keys: [("AKIAD".to_owned(), Entry::Adopted)].into_iter().collect(),
        };
        let keys = [
            key("AKIAA", NOW),
            key("AKIAB", NOW),
            key("AKIAC", NOW),
            key("AKIAD", NOW),
        ];
        assert_eq!(
            keys_to_look_up(Some("AKIAA"), &keys, &records, &marker),
            vec!["AKIAC".to_owned()]
        );
        assert_eq!(
            keys_to_look_up(Some("AKIAZ"), &keys[..1], &records, &marker),
            vec!["AKIAZ".to_owned(), "AKIAA".to_owned()]
        );
    }

    fn tags_of(m: &[&Attempt]) -> HashMap<String, String> {
        m.iter().map(|a| (a.tag.clone(), a.tag_value())).collect()
    }

    #[test]
    fn attempt_tags_round_trip_and_fit() {
        let a = Attempt {
            key: Some("AKIAABCDEFGHIJKLMNOP".into()),
            state: AttemptState::Ambiguous,
            ..Attempt::begin(TOK, NOW * 1000 + 999, NOW + 900)
        };
        // IAM: a tag key holds 128 characters, a value 256.
        assert!(a.tag.len() <= 128 && a.tag_value().len() <= 26, "{a:?}");
        assert!(a.tag.starts_with(ATTEMPT_TAG_PREFIX), "{}", a.tag);
        let b = Attempt::begin(TOK, NOW * 1000, NOW + 60);
        let m = marker_of("u", &tags_of(&[&a, &b])).unwrap();
        // Oldest first, every field back.
        assert_eq!(m.attempts, vec![b.clone(), a.clone()]);
        assert!(!m.legacy_tag);
        // Two attempts of one token in the same millisecond have different tags.
        let twin = Attempt::begin(TOK, NOW * 1000, NOW + 60);
        assert_ne!(twin.tag, b.tag);
        // Something this function did not write is refused by its tag, not read as nothing.
        for (tag, value) in [
            (a.tag.clone(), "60:o:".to_owned()),
            (a.tag.clone(), "60:x".to_owned()),
            (a.tag.clone(), "60:o:AKIA:more".to_owned()),
            (a.tag.clone(), "edited by hand".to_owned()),
            (format!("{ATTEMPT_TAG_PREFIX}zz.1.ab"), "60:o".to_owned()),
            (format!("{ATTEMPT_TAG_PREFIX}abcd.1"), "60:o".to_owned()),
            (MARKER_TAG.to_owned(), "garbage x:y".to_owned()),
        ] {
            let tags: HashMap<_, _> = [(tag.clone(), value)].into_iter().collect();
            match marker_of("u", &tags) {
                Err(Error::KeyRecordUnreadable { tag: t, .. }) => assert_eq!(t, tag),
                other => panic!("{tag}: {other:?}"),
            }
        }
    }

    #[test]
    fn reads_the_shared_marker_of_earlier_releases() {
        // The release before per-attempt tags: `<token>:<ms>:<lease>:<flag>[:<key>]`.
        let tags: HashMap<_, _> = [(
            MARKER_TAG.to_owned(),
            format!(
                "{t}:{}:300:o {t}:{}:300:e:AKIAOLD",
                NOW * 1000,
                NOW * 1000 + 5,
                t = token_digest(TOK)
            ),
        )]
        .into_iter()
        .collect();
        let m = marker_of("u", &tags).unwrap();
        assert!(m.legacy_tag && m.attempts.iter().all(Attempt::is_legacy));
        assert!(m.attempts[0].covers(NOW) && m.attempts[0].is_live(NOW));
        assert_eq!(m.attempts[1].key.as_deref(), Some("AKIAOLD"));
        // The first release: `<token> <epoch>… k:<key>…`.
        let first = Marker::parse_legacy(&format!("{TOK} 100 160 k:AKIAOLD")).unwrap();
        assert_eq!(first.len(), 3);
        assert!(first[0].covers(110) && !first[0].covers(120));
        let m = Marker {
            attempts: first,
            legacy_tag: true,
        };
        assert!(m.made_key_for(TOK).is_some());
        assert!(m.made_key_for("other").is_none());
        // An empty shared tag records nothing but still goes.
        let empty: HashMap<_, _> = [(MARKER_TAG.to_owned(), String::new())]
            .into_iter()
            .collect();
        let m = marker_of("u", &empty).unwrap();
        assert!(m.attempts.is_empty() && m.legacy_tag);
        assert_eq!(m.tags_to_drop(NOW, |_| false), vec![MARKER_TAG.to_owned()]);
    }

    #[test]
    fn dropping_attempts_names_their_own_tags_only() {
        let old = attempt(NOW - 100, None, AttemptState::Ended);
        let live = attempt(NOW, None, AttemptState::Open);
        let legacy = Attempt {
            tag: MARKER_TAG.to_owned(),
            ..attempt(NOW - 50, Some("AKIAOLD"), AttemptState::Ended)
        };
        let m = Marker {
            attempts: vec![legacy.clone(), old.clone(), live.clone()],
            legacy_tag: true,
        };
        // The shared tag stays while one of its attempts is kept, and goes with the last.
        assert_eq!(
            m.tags_to_drop(NOW, |a| a.is_live(NOW) || a.key.is_some()),
            vec![old.tag.clone()]
        );
        let mut all = m.tags_to_drop(NOW, |_| false);
        all.sort();
        let mut want = vec![old.tag.clone(), live.tag.clone(), MARKER_TAG.to_owned()];
        want.sort();
        assert_eq!(all, want);
        // Past the cap the oldest kept attempts that are not live go; a live one never does.
        let mut many: Vec<Attempt> = (0..12)
            .map(|i| attempt(NOW - 100 + i, None, AttemptState::Ambiguous))
            .collect();
        many[0].state = AttemptState::Open;
        many[0].deadline = NOW + 10;
        let m = Marker {
            attempts: many.clone(),
            legacy_tag: false,
        };
        let drop = m.tags_to_drop(NOW, |_| true);
        assert_eq!(drop.len(), 12 - MAX_ATTEMPT_TAGS);
        assert!(!drop.contains(&many[0].tag));
        assert_eq!(
            drop,
            many[1..=12 - MAX_ATTEMPT_TAGS]
                .iter()
                .map(|a| a.tag.clone())
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn of_two_attempts_that_see_each_other_exactly_one_yields() {
        let a = attempt(NOW, None, AttemptState::Open);
        let b = Attempt {
            state: AttemptState::Open,
            ..Attempt::begin(TOK, NOW * 1000 + 1, NOW + 300)
        };
        let other_token = Attempt::begin("another", NOW * 1000 - 5, NOW + 300);
        let m = Marker {
            attempts: vec![other_token, a.clone(), b.clone()],
            legacy_tag: false,
        };
        assert_eq!(m.other_live(&a, NOW, true), None);
        assert_eq!(m.other_live(&b, NOW, true), Some(&a));
        // Without the tie-break each sees the other.
        assert_eq!(m.other_live(&a, NOW, false), Some(&b));
        // An ended or expired attempt is no reason to yield.
        assert_eq!(m.other_live(&b, NOW + 301, true), None);
    }

    #[test]
    fn a_lease_never_outlives_lambdas_fifteen_minutes() {
        let long = Attempt {
            deadline: NOW + 86_400,
            ..attempt(NOW, Some("AKIAABCDEFGHIJKLMNOP"), AttemptState::Open)
        };
        let m = marker_of("u", &tags_of(&[&long])).unwrap();
        assert_eq!(m.attempts[0].deadline, NOW + MAX_LEASE_SECS);
        assert!(!m.attempts[0].is_live(NOW + MAX_LEASE_SECS + 1));
        assert_eq!(
            Attempt::begin(TOK, NOW * 1000, NOW + 86_400).deadline,
            NOW + MAX_LEASE_SECS
        );
        // A tag written by hand (or by an older release) with a longer lease is clamped too.
        let hand: HashMap<_, _> = [(long.tag.clone(), "99999:o".to_owned())]
            .into_iter()
            .collect();
        assert_eq!(
            marker_of("u", &hand).unwrap().attempts[0].deadline,
            NOW + MAX_LEASE_SECS
        );
        let legacy = format!("{}:{}:99999:o", token_digest(TOK), NOW * 1000);
        assert_eq!(
            Marker::parse_legacy(&legacy).unwrap()[0].deadline,
            NOW + MAX_LEASE_SECS
        );
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
