//! The `rotation-state` check: where the secret's rotation stands, from what Secrets Manager
//! and the IAM user say (fetched by [`super::iam`]), decided here by a pure function with a
//! table test.
//!
//! - **Pending.** A version staged `AWSPENDING` but not `AWSCURRENT` is a rotation that has not
//!   finished; its `CreatedDate` (ListSecretVersionIds) says since when. Older than the stuck
//!   threshold (`--stuck-after-hours`, default 2) it is stuck: every later rotation is blocked
//!   behind it (`fail`); younger, it is in progress (`warn`).
//! - **The key record** ([`crate::record`]): each key the function minted for this secret and
//!   its state. A record tag that does not parse stops every rotation (`KeyRecordUnreadable`):
//!   `fail`. A key in state `p` (previous: replaced, still Active) is in its grace period until
//!   the scheduled maintenance retires it: `warn`, with its last use as IAM reports it (a use
//!   after it was replaced means something still sends with the old key).
//!
//! Nothing here is secret: version ids, key ids, times and tag keys only.

use std::collections::HashMap;

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;

use super::{Check, CheckId, Status};
use crate::error::Error;
use crate::ownership::{OWNER_TAG, owner_tag_value, token_digest};
use crate::record::{Entry, KeyState, Records};

/// The default age after which a pending rotation is called stuck.
pub const DEFAULT_STUCK_AFTER_HOURS: f64 = 2.0;

/// One version of the secret, as ListSecretVersionIds lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Version {
    /// The version id (the rotation's token).
    pub id: String,
    /// Its staging labels.
    pub stages: Vec<String>,
    /// `CreatedDate`, epoch milliseconds (when Secrets Manager reported it).
    pub created_ms: Option<i64>,
}

/// What IAM reports of a key's last use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LastUse {
    /// Used at this time (epoch seconds) by this service, in this region.
    At {
        /// `LastUsedDate`, epoch seconds.
        secs: i64,
        /// `ServiceName` (`ses` for SMTP).
        service: String,
        /// `Region`.
        region: String,
    },
    /// IAM reports no use (`LastUsedDate` absent).
    Never,
    /// IAM could not be asked (the reason).
    Unknown(String),
}

/// Everything the check looks at. `Err` parts say why they could not be fetched.
#[derive(Debug, Clone)]
pub(crate) struct RotationFacts {
    /// The secret's ARN (records hold its digest).
    pub secret_arn: String,
    /// `iam_user`.
    pub user: String,
    /// The key id the document read names, when it names one.
    pub doc_key: Option<String>,
    /// The secret's versions.
    pub versions: Result<Vec<Version>, String>,
    /// The user's tags.
    pub tags: Result<HashMap<String, String>, String>,
    /// Last use of each key in state `p` (asked only for those).
    pub last_used: HashMap<String, LastUse>,
    /// Now, epoch milliseconds.
    pub now_ms: i64,
    /// A pending version older than this (seconds) is stuck.
    pub stuck_after_secs: f64,
}

/// An epoch time as `2024-05-01T12:00:00Z`.
pub(crate) fn time(secs: i64) -> String {
    DateTime::from_secs(secs)
        .fmt(Format::DateTime)
        .unwrap_or_else(|_| format!("epoch {secs}"))
}

/// A duration in words: `40 s`, `12 min`, `3 h 5 min`, `2 d 4 h`.
pub(crate) fn span(secs: f64) -> String {
    let s = secs.max(0.0).round() as i64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86400, s % 86400 / 3600),
    }
}

/// `2 h`, `0.5 h`, `0.0003 h`: the threshold as given.
fn hours(secs: f64) -> String {
    // Six decimals, trailing zeros off: the seconds went through a Duration and back.
    let h = format!("{:.6}", secs / 3600.0);
    format!("{} h", h.trim_end_matches('0').trim_end_matches('.'))
}

const GRACE: &str = "retired by the scheduled maintenance after OLD_KEY_GRACE_HOURS (default 24, up to OLD_KEY_MAX_GRACE_HOURS 72 while still in use)";

/// Pending versions: (version, age in seconds when known).
fn pending(versions: &[Version], now_ms: i64) -> Vec<(&Version, Option<f64>)> {
    versions
        .iter()
        .filter(|v| {
            v.stages.iter().any(|s| s == "AWSPENDING")
                && !v.stages.iter().any(|s| s == "AWSCURRENT")
        })
        .map(|v| {
            let age = v.created_ms.map(|c| (now_ms - c) as f64 / 1000.0);
            (v, age)
        })
        .collect()
}

/// One finding: its severity, text, and fix.
struct Finding {
    status: Status,
    text: String,
    fix: Option<String>,
}

impl Finding {
    fn note(text: impl Into<String>) -> Self {
        Self {
            status: Status::Pass,
            text: text.into(),
            fix: None,
        }
    }

    fn warn(text: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            status: Status::Warn,
            text: text.into(),
            fix: Some(fix.into()),
        }
    }

    fn fail(text: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            status: Status::Fail,
            text: text.into(),
            fix: Some(fix.into()),
        }
    }
}

/// The severity order of the findings: fail, warn, then the rest.
fn rank(s: Status) -> u8 {
    match s {
        Status::Fail => 3,
        Status::Warn => 2,
        Status::Skip => 1,
        Status::Pass => 0,
    }
}

/// What the versions say.
fn pending_findings(f: &RotationFacts, records: Option<&Records>) -> Vec<Finding> {
    let versions = match &f.versions {
        Ok(v) => v,
        Err(why) => {
            return vec![Finding {
                status: Status::Skip,
                text: format!("whether a rotation is pending is unknown: {why}"),
                fix: Some(
                    "allow secretsmanager:ListSecretVersionIds on the secret (README, Troubleshooting 535)".into(),
                ),
            }];
        }
    };
    let pending = pending(versions, f.now_ms);
    if pending.is_empty() {
        return vec![Finding::note(
            "no rotation pending (no version is AWSPENDING apart from AWSCURRENT)",
        )];
    }
    let arn = &f.secret_arn;
    pending
        .into_iter()
        .map(|(v, age)| {
            let since = v.created_ms.map_or_else(
                || "since an unknown time (Secrets Manager gave no CreatedDate)".to_owned(),
                |ms| format!("since {} ({} ago)", time(ms.div_euclid(1000)), span(age.unwrap_or(0.0))),
            );
            // The key the rotation minted for this version, when the record names one.
            let minted = records
                .into_iter()
                .flat_map(|r| r.keys.iter())
                .find(|(_, e)| {
                    matches!(e, Entry::Recorded { token, state: KeyState::Minted, .. }
                        if *token == token_digest(&v.id))
                        && e.state_for(arn).is_some()
                })
                .map(|(k, e)| format!("; its key {k} was minted at {}", time(e.at())))
                .unwrap_or_default();
            let what = format!("version {} has been AWSPENDING {since}{minted}", v.id);
            let cancel = format!(
                "aws secretsmanager update-secret-version-stage --secret-id {arn} --version-stage AWSPENDING --remove-from-version-id {}",
                v.id
            );
            match age {
                Some(a) if a > f.stuck_after_secs => Finding::fail(
                    format!(
                        "a rotation is stuck: {what}, longer than {}; every later rotation waits behind it",
                        hours(f.stuck_after_secs)
                    ),
                    format!(
                        "read the rotation function's log for this version: the failed step's error type names the cause and its fix; then retry it (aws secretsmanager rotate-secret --secret-id {arn}) or abandon it ({cancel}) and rotate again"
                    ),
                ),
                Some(_) => Finding::warn(
                    format!("a rotation is in progress: {what}"),
                    format!(
                        "let it finish (seconds to minutes); if it is still pending after {} it is stuck: run doctor again",
                        hours(f.stuck_after_secs)
                    ),
                ),
                None => Finding::warn(
                    format!("a rotation is pending: {what}"),
                    format!(
                        "if it does not finish, read the rotation function's log for this version, then retry it or abandon it ({cancel})"
                    ),
                ),
            }
        })
        .collect()
}

/// What the key record says.
fn record_findings(
    f: &RotationFacts,
    records: &Records,
    tags: &HashMap<String, String>,
) -> Vec<Finding> {
    let arn = &f.secret_arn;
    let user = &f.user;
    let mut out = Vec::new();
    match tags.get(OWNER_TAG) {
        Some(v) if *v != owner_tag_value(arn) => out.push(Finding::warn(
            format!("IAM user {user} is tagged {OWNER_TAG} for another secret: the rotation refuses to act on it"),
            format!("a user serves one secret: give this secret its own user, or correct the tag (aws iam tag-user --user-name {user} --tags Key={OWNER_TAG},Value={arn})"),
        )),
        _ => {}
    }
    if records.is_empty() {
        out.push(Finding::note(format!(
            "no key of {user} is in the key record yet (no rotation by this release has run)"
        )));
        return out;
    }
    let mut described = Vec::new();
    for (key, entry) in &records.keys {
        let Some(state) = entry.state_for(arn) else {
            described.push(format!("{key} recorded for another secret"));
            continue;
        };
        let adopted = matches!(entry, Entry::Adopted);
        match state {
            KeyState::Current if adopted => described.push(format!("{key} adopted")),
            KeyState::Current => {
                described.push(format!("{key} current since {}", time(entry.at())));
            }
            KeyState::Minted => {
                described.push(format!("{key} minted at {}", time(entry.at())));
            }
            KeyState::Retired => {
                described.push(format!("{key} retired at {}", time(entry.at())));
            }
            KeyState::Previous => {
                let since = entry.at();
                let age = span((f.now_ms as f64 / 1000.0) - since as f64);
                let use_text = match f.last_used.get(key) {
                    Some(LastUse::At {
                        secs,
                        service,
                        region,
                    }) => {
                        let after = if *secs >= since {
                            ", after it was replaced: something still sends with the old key"
                        } else {
                            ", before it was replaced"
                        };
                        format!("last used {} by {service} in {region}{after}", time(*secs))
                    }
                    Some(LastUse::Never) => "IAM reports no use of it".to_owned(),
                    Some(LastUse::Unknown(why)) => format!("its last use is unknown ({why})"),
                    None => "its last use was not asked".to_owned(),
                };
                let in_use = matches!(f.last_used.get(key), Some(LastUse::At { secs, .. }) if *secs >= since);
                let fix = if in_use {
                    "find what still sends with the old key and make it read the secret again before the grace ends (the new key is in AWSCURRENT)"
                } else {
                    "nothing to do when every application reads the new key; to retire it now, deactivate it (aws iam update-access-key ... --status Inactive)"
                };
                out.push(Finding::warn(
                    format!(
                        "the previous key {key} is Active, in grace since {} ({age} ago); {GRACE}; {use_text}",
                        time(since)
                    ),
                    fix,
                ));
            }
        }
    }
    if let Some(k) = &f.doc_key
        && records.state_of(k, arn).is_none()
    {
        out.push(Finding::warn(
            format!("{k}, the document's key, is not in the key record: the rotation did not make it, and replaces or deletes only keys it recorded"),
            format!("if it is this secret's key, hand it to the rotation: aws iam tag-user --user-name {user} --tags Key=ses-smtp-rotator:key:{k},Value=adopt"),
        ));
    }
    if !described.is_empty() {
        out.push(Finding::note(format!(
            "key record of {user}: {}",
            described.join(", ")
        )));
    }
    out
}

/// `rotation-state` from the facts.
pub(crate) fn rotation_state(f: &RotationFacts) -> Check {
    let id = CheckId::RotationState;
    let mut records = None;
    let mut findings = Vec::new();
    match &f.tags {
        Err(why) => findings.push(Finding {
            status: Status::Skip,
            text: format!("the key record of {} could not be read: {why}", f.user),
            fix: Some("allow iam:ListUserTags on the user (README, Troubleshooting 535)".into()),
        }),
        Ok(tags) => match Records::from_tags(&f.user, tags) {
            Ok(r) => records = Some((r, tags)),
            Err(Error::KeyRecordUnreadable { tag, .. }) => findings.push(Finding::fail(
                format!(
                    "the key record of {} is unreadable: tag {tag} does not parse, and every rotation refuses (KeyRecordUnreadable) until it is corrected",
                    f.user
                ),
                format!(
                    "set it to the record it had (README, The key record), to adopt if the key is this secret's, or remove it if its key is gone: aws iam untag-user --user-name {} --tag-keys {tag}",
                    f.user
                ),
            )),
            Err(e) => findings.push(Finding::fail(
                format!("the key record of {} cannot be read: {}", f.user, e.error_type()),
                "see README, The key record",
            )),
        },
    }
    let mut all = pending_findings(f, records.as_ref().map(|(r, _)| r));
    if let Some((r, tags)) = &records {
        all.extend(record_findings(f, r, tags));
    }
    all.extend(findings);
    let worst = all.iter().map(|x| rank(x.status)).max().unwrap_or(0);
    // The worst findings first, so the summary starts with what matters.
    all.sort_by_key(|x| std::cmp::Reverse(rank(x.status)));
    let summary = all
        .iter()
        .map(|x| x.text.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    let fixes: Vec<&str> = all
        .iter()
        .filter(|x| x.status != Status::Pass)
        .filter_map(|x| x.fix.as_deref())
        .collect();
    match worst {
        3 => Check::fail(id, summary, fixes.join("; ")),
        2 => Check::warn(id, summary, fixes.join("; ")),
        // Part of the state could not be read and nothing else is wrong: not a pass.
        1 => Check::skip_with(id, summary, fixes.join("; ")),
        _ => Check::pass(id, summary),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{secret_digest, tag_key};

    const ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:smtp-AbCdEf";
    const TOK: &str = "0b7c3a64-1b1e-4c39-9c39-6f1f0b9b9f0e";
    const NOW: i64 = 1_700_000_000;
    const OLD: &str = "AKIAOLDOLDOLDOLDOLD1";
    const CUR: &str = "AKIACURCURCURCURCUR1";

    fn facts() -> RotationFacts {
        let mut tags = HashMap::new();
        tags.insert(OWNER_TAG.to_owned(), ARN.to_owned());
        tags.insert(
            tag_key(CUR),
            Entry::new(ARN, Some("t1"), KeyState::Current, NOW - 7200).to_value(),
        );
        RotationFacts {
            secret_arn: ARN.into(),
            user: "sender".into(),
            doc_key: Some(CUR.into()),
            versions: Ok(vec![Version {
                id: "v-current".into(),
                stages: vec!["AWSCURRENT".into()],
                created_ms: Some((NOW - 7200) * 1000),
            }]),
            tags: Ok(tags),
            last_used: HashMap::new(),
            now_ms: NOW * 1000,
            stuck_after_secs: DEFAULT_STUCK_AFTER_HOURS * 3600.0,
        }
    }

    fn with_pending(mut f: RotationFacts, age_secs: i64) -> RotationFacts {
        if let Ok(v) = &mut f.versions {
            v.push(Version {
                id: TOK.into(),
                stages: vec!["AWSPENDING".into()],
                created_ms: Some((NOW - age_secs) * 1000),
            });
        }
        f
    }

    fn with_tag(mut f: RotationFacts, key: &str, value: &str) -> RotationFacts {
        if let Ok(t) = &mut f.tags {
            t.insert(tag_key(key), value.to_owned());
        }
        f
    }

    #[test]
    fn each_state_gets_its_status_and_words() {
        let prev = Entry::new(ARN, Some("t0"), KeyState::Previous, NOW - 3600).to_value();
        let used_after = |mut f: RotationFacts| {
            f.last_used.insert(
                OLD.into(),
                LastUse::At {
                    secs: NOW - 60,
                    service: "ses".into(),
                    region: "us-east-1".into(),
                },
            );
            f
        };
        let minted = Entry::new(ARN, Some(TOK), KeyState::Minted, NOW - 9000).to_value();
        let cases: Vec<(&str, RotationFacts, Status, Vec<&str>)> = vec![
            (
                "settled",
                facts(),
                Status::Pass,
                vec!["no rotation pending", "AKIACURCURCURCURCUR1 current since"],
            ),
            (
                "in progress",
                with_pending(facts(), 30),
                Status::Warn,
                vec!["in progress", TOK, "30 s ago"],
            ),
            (
                "stuck, with the key it minted",
                with_tag(with_pending(facts(), 3 * 3600), OLD, &minted),
                Status::Fail,
                vec![
                    "stuck",
                    "3 h 0 min ago",
                    "longer than 2 h",
                    "its key AKIAOLDOLDOLDOLDOLD1 was minted",
                    "--remove-from-version-id",
                ],
            ),
            (
                "pending on the current version is not pending",
                {
                    let mut f = facts();
                    f.versions = Ok(vec![Version {
                        id: "v".into(),
                        stages: vec!["AWSCURRENT".into(), "AWSPENDING".into()],
                        created_ms: Some(0),
                    }]);
                    f
                },
                Status::Pass,
                vec!["no rotation pending"],
            ),
            (
                "previous key in grace, never used",
                {
                    let mut f = with_tag(facts(), OLD, &prev);
                    f.last_used.insert(OLD.into(), LastUse::Never);
                    f
                },
                Status::Warn,
                vec![
                    "in grace since",
                    "1 h 0 min ago",
                    "OLD_KEY_GRACE_HOURS (default 24",
                    "OLD_KEY_MAX_GRACE_HOURS 72",
                    "no use",
                ],
            ),
            (
                "previous key in grace, used after its replacement",
                used_after(with_tag(facts(), OLD, &prev)),
                Status::Warn,
                vec![
                    "by ses in us-east-1",
                    "after it was replaced",
                    "still sends",
                ],
            ),
            (
                "unreadable record",
                with_tag(facts(), OLD, "garbage"),
                Status::Fail,
                vec![
                    "unreadable",
                    "ses-smtp-rotator:key:AKIAOLDOLDOLDOLDOLD1",
                    "untag-user",
                ],
            ),
            (
                "the document's key is not recorded",
                {
                    let mut f = facts();
                    f.doc_key = Some("AKIAHANDMADEHANDMAD1".into());
                    f
                },
                Status::Warn,
                vec!["not in the key record", "Value=adopt"],
            ),
            (
                "a user of another secret",
                with_tag(
                    {
                        let mut f = facts();
                        if let Ok(t) = &mut f.tags {
                            t.insert(OWNER_TAG.into(), "arn:other".into());
                        }
                        f
                    },
                    OLD,
                    &Entry::new("arn:other", Some("t"), KeyState::Current, 1).to_value(),
                ),
                Status::Warn,
                vec![
                    "for another secret",
                    "AKIAOLDOLDOLDOLDOLD1 recorded for another secret",
                ],
            ),
            (
                "adopted key",
                {
                    let mut f = with_tag(facts(), OLD, "adopt");
                    f.doc_key = Some(OLD.into());
                    f
                },
                Status::Pass,
                vec!["AKIAOLDOLDOLDOLDOLD1 adopted"],
            ),
            (
                "nothing readable",
                {
                    let mut f = facts();
                    f.versions = Err("AccessDenied".into());
                    f.tags = Err("AccessDenied".into());
                    f
                },
                Status::Skip,
                vec!["ListSecretVersionIds", "ListUserTags"],
            ),
            (
                "versions unreadable, record fine",
                {
                    let mut f = facts();
                    f.versions = Err("AccessDenied".into());
                    f
                },
                Status::Skip,
                vec!["unknown", "current since", "ListSecretVersionIds"],
            ),
        ];
        for (name, f, status, needles) in cases {
            let c = rotation_state(&f);
            assert_eq!(c.status, status, "{name}: {c:?}");
            let text = format!("{} {}", c.summary, c.fix.clone().unwrap_or_default());
            for n in needles {
                assert!(text.contains(n), "{name}: {n:?} not in {c:?}");
            }
            assert_eq!(c.fix.is_some(), status != Status::Pass, "{name}");
        }
    }

    #[test]
    fn the_threshold_is_the_option() {
        let mut f = with_pending(facts(), 10);
        f.stuck_after_secs = 5.0;
        assert_eq!(rotation_state(&f).status, Status::Fail);
        f.stuck_after_secs = 15.0;
        assert_eq!(rotation_state(&f).status, Status::Warn);
    }

    #[test]
    fn times_and_spans_read_well() {
        assert_eq!(time(0), "1970-01-01T00:00:00Z");
        assert_eq!(span(40.4), "40 s");
        assert_eq!(span(720.0), "12 min");
        assert_eq!(span(3.0 * 3600.0 + 300.0), "3 h 5 min");
        assert_eq!(span(52.0 * 3600.0), "2 d 4 h");
        assert_eq!(hours(7200.0), "2 h");
        assert_eq!(
            hours(std::time::Duration::from_secs_f64(0.0003 * 3600.0).as_secs_f64()),
            "0.0003 h"
        );
        assert_eq!(hours(1800.0), "0.5 h");
        assert_eq!(secret_digest(ARN).len(), 8);
    }
}
