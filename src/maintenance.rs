//! The scheduled maintenance: retires old keys once senders have moved, and checks that the
//! credentials applications use still work.
//!
//! An EventBridge schedule (the template's `MaintenanceSchedule`, hourly by default) invokes
//! the function with a maintenance event instead of a rotation step:
//!
//! ```json
//! {"Action": "maintenance", "SecretIds": ["arn:aws:secretsmanager:…:secret:billing/ses-smtp-AbCdEf"]}
//! ```
//!
//! Without `SecretIds` (shared scope) it covers every secret tagged
//! `ses-smtp-rotator:managed=true`. For each secret it
//!
//! 1. reports a rotation stuck in AWSPENDING for longer than `PENDING_STUCK_HOURS`
//!    (`RotationStuck`), and acts on no key while any rotation is under way;
//! 2. retires each key the record shows replaced (`p`) once `OLD_KEY_GRACE_HOURS` has passed,
//!    with `OLD_KEY_ACTION`; if IAM reports the key used after its replacement, it emits
//!    `OldKeyStillInUse` and keeps it, up to `OLD_KEY_MAX_GRACE_HOURS`, then retires it anyway
//!    (IAM's last-use date is a signal, never proof: AWS does not document whether SES SMTP
//!    logins are recorded there);
//! 3. logs in with AWSCURRENT (one real SMTP AUTH per endpoint, no message) and emits
//!    `CurrentLoginOk` (1 or 0), unless `MAINTENANCE_CANARY=off`.
//!
//! One metric line per secret (namespace `SesSmtpRotator`, dimensions `Secret` and none), one
//! answer with every secret's report. Idempotent: a second run in the same hour finds nothing
//! more to do. Safe beside a running rotation: it only acts on keys the record shows replaced
//! by a completed promotion, never while AWSPENDING is on a version other than AWSCURRENT,
//! never on the key AWSCURRENT names.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::aws::{Clients, KeyLookup, Stage};
use crate::config::{Config, OldKeyAction};
use crate::error::Error;
use crate::record::{Entry, KeyState, tag_key};
use crate::secret::{SecretDocument, SmtpCredentials};
use crate::smtp::{LoginOutcome, SmtpTarget, try_login_and_send};
use crate::steps::{now_epoch, read_user_record};

/// Most secrets one event may name (a fleet is listed instead).
const MAX_SECRET_IDS: usize = 100;

/// A validated maintenance event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenanceEvent {
    /// The secrets to maintain; `None`: every managed secret (ListSecrets).
    pub secret_ids: Option<Vec<String>>,
}

impl MaintenanceEvent {
    /// `Some` when the payload is a maintenance event (`"Action": "maintenance"`), `None`
    /// when it is something else (a rotation step).
    ///
    /// # Errors
    /// [`Error::InvalidEvent`] for an `Action` other than `maintenance` or a malformed
    /// `SecretIds`.
    pub fn parse(payload: &Value) -> Result<Option<Self>, Error> {
        let Some(obj) = payload.as_object() else {
            return Ok(None);
        };
        let Some(action) = obj.get("Action") else {
            return Ok(None);
        };
        if action.as_str() != Some("maintenance") {
            return Err(Error::InvalidEvent(
                "\"Action\" must be \"maintenance\" (the scheduled maintenance event); a rotation event has \"Step\" instead".into(),
            ));
        }
        let secret_ids = match obj.get("SecretIds") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => {
                if items.is_empty() || items.len() > MAX_SECRET_IDS {
                    return Err(Error::InvalidEvent(format!(
                        "\"SecretIds\" must list 1 to {MAX_SECRET_IDS} secrets (omit it to maintain every managed secret)"
                    )));
                }
                let mut ids = Vec::new();
                for item in items {
                    match item.as_str() {
                        Some(s) if !s.trim().is_empty() && s.chars().count() <= 2048 => {
                            ids.push(s.to_owned());
                        }
                        _ => {
                            return Err(Error::InvalidEvent(
                                "\"SecretIds\" items must be secret ARNs or names (non-empty strings of at most 2048 characters)".into(),
                            ));
                        }
                    }
                }
                Some(ids)
            }
            Some(_) => {
                return Err(Error::InvalidEvent(
                    "\"SecretIds\" must be an array of secret ARNs or names".into(),
                ));
            }
        };
        Ok(Some(Self { secret_ids }))
    }
}

/// What happened to one replaced key.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct OldKey {
    /// The access key id.
    pub key_id: String,
    /// When it was replaced (epoch seconds).
    pub replaced_at: i64,
    /// When IAM last saw it used (epoch seconds), if it was asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used: Option<i64>,
    /// `in-grace`, `in-use` (grace extended), `deactivated`, `deleted`, `retired-in-use`,
    /// `kept` (keep), `gone`, `deferred` (a rotation began or AWSCURRENT moved meanwhile).
    pub outcome: &'static str,
    /// Until when it stays (epoch seconds), for the outcomes that keep it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
}

/// One secret's maintenance.
#[derive(Debug, Clone, Serialize, Default)]
pub struct SecretReport {
    /// The secret.
    pub secret: String,
    /// The version staged AWSPENDING other than AWSCURRENT, if a rotation is under way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_version: Option<String>,
    /// How long it has been pending (seconds), when Secrets Manager tells.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_seconds: Option<i64>,
    /// Pending for longer than `PENDING_STUCK_HOURS`.
    pub stuck: bool,
    /// The replaced keys and what became of them.
    pub old_keys: Vec<OldKey>,
    /// The canary: did AWSCURRENT log in (every endpoint)? `None` when not run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_login_ok: Option<bool>,
    /// Why the canary failed (no secret in it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_login_problem: Option<String>,
    /// What stopped this secret's maintenance (error type and message), if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
}

impl SecretReport {
    fn still_in_use(&self) -> usize {
        self.old_keys
            .iter()
            .filter(|k| k.outcome == "in-use" || k.outcome == "retired-in-use")
            .count()
    }

    fn retired(&self) -> usize {
        self.old_keys
            .iter()
            .filter(|k| matches!(k.outcome, "deactivated" | "deleted" | "retired-in-use"))
            .count()
    }

    /// The EMF line of this secret (dimension sets `[Secret]` and `[]`, so that one alarm
    /// covers a fleet).
    #[must_use]
    pub fn to_emf(&self, timestamp_ms: u64, function_name: Option<&str>) -> String {
        let mut metrics = vec![
            json!({"Name": "OldKeyStillInUse", "Unit": "Count"}),
            json!({"Name": "OldKeysRetired", "Unit": "Count"}),
            json!({"Name": "RotationStuck", "Unit": "None"}),
        ];
        let mut line = serde_json::Map::new();
        line.insert("Secret".into(), Value::String(self.secret.clone()));
        line.insert("OldKeyStillInUse".into(), json!(self.still_in_use()));
        line.insert("OldKeysRetired".into(), json!(self.retired()));
        line.insert("RotationStuck".into(), json!(u8::from(self.stuck)));
        if let Some(ok) = self.current_login_ok {
            metrics.push(json!({"Name": "CurrentLoginOk", "Unit": "None"}));
            line.insert("CurrentLoginOk".into(), json!(u8::from(ok)));
        }
        if let Some(f) = function_name {
            line.insert("FunctionName".into(), Value::String(f.to_owned()));
        }
        crate::metrics::finish(line, timestamp_ms, &json!([["Secret"], []]), metrics)
    }
}

/// Runs the maintenance for every secret the event covers; each secret's report (and its
/// metric line, through `emit`) comes even when another secret fails.
///
/// # Errors
/// Only when the managed secrets cannot be listed.
pub async fn run(
    clients: &Clients,
    config: &Config,
    event: &MaintenanceEvent,
    deadline: Option<Instant>,
    emit: impl Fn(&SecretReport),
) -> Result<Value, Error> {
    let ids = match &event.secret_ids {
        Some(ids) => ids.clone(),
        None => clients.list_managed_secrets().await?,
    };
    let mut reports = Vec::new();
    for id in ids {
        let mut report = SecretReport {
            secret: id.clone(),
            ..SecretReport::default()
        };
        if let Err(e) = maintain(clients, config, &id, deadline, &mut report).await {
            warn!(secret_id = %id, error_type = e.error_type(), "maintenance of this secret stopped: {e}");
            report.error =
                Some(json!({"error_type": e.error_type(), "error_message": e.to_string()}));
        }
        emit(&report);
        reports.push(report);
    }
    let failed = reports.iter().filter(|r| r.error.is_some()).count();
    Ok(json!({
        "action": "maintenance",
        "secrets": reports.len(),
        "failed": failed,
        "reports": reports,
    }))
}

async fn maintain(
    clients: &Clients,
    config: &Config,
    id: &str,
    deadline: Option<Instant>,
    report: &mut SecretReport,
) -> Result<(), Error> {
    let state = clients.describe(id).await?;
    let arn = state.arn.clone();
    report.secret.clone_from(&arn);
    let current_version = state.version_with(Stage::Current).map(str::to_owned);
    let pending = state
        .stages
        .iter()
        .find(|(v, stages)| {
            stages.iter().any(|s| s == Stage::Pending.as_str())
                && Some(v.as_str()) != current_version.as_deref()
        })
        .map(|(v, _)| v.clone());
    let now = now_epoch();
    if let Some(version) = &pending {
        report.pending_version = Some(version.clone());
        if let Some(created) = clients.version_created(&arn, version).await? {
            let age = (now - created).max(0);
            report.pending_seconds = Some(age);
            #[allow(clippy::cast_precision_loss)]
            let stuck = age as f64 > config.pending_stuck_after.as_secs_f64();
            report.stuck = stuck;
            if stuck {
                warn!(secret_id = %arn, version = %version, pending_seconds = age,
                      "a rotation has been stuck in AWSPENDING; see the function's errors for this secret (README, Failure behaviour)");
            }
        }
    }
    let text = clients
        .get_value(&arn, None, Stage::Current)
        .await?
        .ok_or_else(|| Error::MalformedSecret {
            secret_id: arn.clone(),
            stage: Stage::Current,
            source: crate::secret::SecretError::NoSecretString,
        })?;
    let doc = SecretDocument::parse(&text).map_err(|source| Error::MalformedSecret {
        secret_id: arn.clone(),
        stage: Stage::Current,
        source,
    })?;
    drop(text);
    if pending.is_none() {
        retire_old_keys(
            clients,
            config,
            &arn,
            &doc,
            current_version.as_deref(),
            now,
            report,
        )
        .await?;
    } else {
        info!(secret_id = %arn, "a rotation is under way: no key is retired by this run");
    }
    if config.canary {
        canary(config, &arn, &doc, deadline, report).await;
    }
    Ok(())
}

async fn retire_old_keys(
    clients: &Clients,
    config: &Config,
    arn: &str,
    doc: &SecretDocument,
    current_version: Option<&str>,
    now: i64,
    report: &mut SecretReport,
) -> Result<(), Error> {
    let user = doc.iam_user.as_str();
    let current_key = doc.credentials.as_ref().map(|c| c.username.as_str());
    let rec = read_user_record(clients, config, arn, user).await?;
    let replaced: Vec<(String, i64)> = rec
        .records
        .keys
        .iter()
        .filter(|(id, e)| {
            e.state_for(arn) == Some(KeyState::Previous) && Some(id.as_str()) != current_key
        })
        .map(|(id, e)| (id.clone(), e.at()))
        .collect();
    if replaced.is_empty() {
        return Ok(());
    }
    let keys = clients.list_keys(user).await?;
    let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    let (grace, max_grace) = (secs(config.old_key_grace), secs(config.old_key_max_grace));
    for (key, since) in replaced {
        let mut entry = OldKey {
            key_id: key.clone(),
            replaced_at: since,
            last_used: None,
            outcome: "in-grace",
            until: None,
        };
        if !keys.iter().any(|k| k.id == key) {
            // Deleted by hand (or by a deletion whose record update was cut short).
            clients.untag_user_all(user, &[tag_key(&key)]).await?;
            entry.outcome = "gone";
            report.old_keys.push(entry);
            continue;
        }
        if config.old_key_action == OldKeyAction::Keep {
            entry.outcome = "kept";
            report.old_keys.push(entry);
            continue;
        }
        if now < since.saturating_add(grace) {
            entry.until = Some(since.saturating_add(grace));
            report.old_keys.push(entry);
            continue;
        }
        if let KeyLookup::Found(u) = clients.key_usage(&key, user).await? {
            entry.last_used = u.last_used;
        }
        let in_use = entry.last_used.is_some_and(|t| t > since);
        if in_use {
            warn!(secret_id = %arn, key_id = %key, last_used = entry.last_used,
                  "OldKeyStillInUse: IAM reports the replaced key used after the new one was promoted; a sender still has the old credentials (README, OldKeyStillInUse)");
            if now < since.saturating_add(max_grace) {
                entry.outcome = "in-use";
                entry.until = Some(since.saturating_add(max_grace));
                report.old_keys.push(entry);
                continue;
            }
        }
        // Just before the change: a rotation that began (or an AWSCURRENT moved) since this
        // run looked makes what it decided stale; the next run decides again.
        let now_state = clients.describe(arn).await?;
        let moved = now_state.version_with(Stage::Current) != current_version
            || now_state.stages.values().any(|s| {
                s.iter().any(|x| x == Stage::Pending.as_str())
                    && !s.iter().any(|x| x == Stage::Current.as_str())
            });
        if moved {
            info!(secret_id = %arn, "a rotation began or AWSCURRENT moved during this run; no key retired");
            entry.outcome = "deferred";
            report.old_keys.push(entry);
            return Ok(());
        }
        match config.old_key_action {
            OldKeyAction::Delete => {
                clients.delete_key(user, &key).await?;
                clients.untag_user_all(user, &[tag_key(&key)]).await?;
                entry.outcome = "deleted";
            }
            _ => {
                clients.deactivate_key(user, &key).await?;
                clients
                    .tag_user_all(
                        user,
                        &[(
                            tag_key(&key),
                            Entry::new(arn, None, KeyState::Retired, now).to_value(),
                        )],
                    )
                    .await?;
                entry.outcome = "deactivated";
            }
        }
        if in_use {
            entry.outcome = "retired-in-use";
        }
        info!(secret_id = %arn, key_id = %key, action = config.old_key_action.as_str(),
              "retired the replaced key after its grace");
        report.old_keys.push(entry);
    }
    Ok(())
}

/// Logs in once at every endpoint with AWSCURRENT's credentials (no retries: these are the
/// credentials senders use now). Only to endpoints the function may send credentials to.
async fn canary(
    config: &Config,
    arn: &str,
    doc: &SecretDocument,
    deadline: Option<Instant>,
    report: &mut SecretReport,
) {
    let Some(creds) = doc.credentials.as_ref() else {
        return; // a bootstrap secret: nothing to test yet
    };
    let mut problems = Vec::new();
    for endpoint in doc.endpoints() {
        if !config.allowed_hosts.allows(&endpoint.host) {
            problems.push(format!(
                "{}: host not allowed (SMTP_ALLOWED_HOSTS)",
                endpoint.region
            ));
            continue;
        }
        let Some(password) = doc.password_for(&endpoint.region) else {
            problems.push(format!("{}: no password for this region", endpoint.region));
            continue;
        };
        let target = SmtpTarget {
            host: endpoint.host.clone(),
            port: endpoint.port,
            tls: endpoint.tls,
        };
        let tls = match target.tls_parameters() {
            Ok(t) => t,
            Err(e) => {
                problems.push(format!("{}: {e}", endpoint.region));
                continue;
            }
        };
        let mut until = Instant::now() + config.smtp_connect_timeout;
        if let Some(d) = deadline {
            until = until.min(d.checked_sub(Duration::from_secs(2)).unwrap_or(until));
        }
        if until.saturating_duration_since(Instant::now()) < Duration::from_secs(1) {
            // Out of time is no verdict on the credentials: no CurrentLoginOk this run.
            warn!(secret_id = %arn, "no time left in this invocation for the canary's login; skipped");
            return;
        }
        let creds = SmtpCredentials {
            username: creds.username.clone(),
            password,
        };
        let outcome = try_login_and_send(
            &target,
            &tls,
            &creds,
            config.smtp_connect_timeout,
            until,
            None,
        )
        .await;
        if !matches!(outcome, LoginOutcome::Accepted) {
            problems.push(format!("{}: {}", endpoint.region, outcome.summary()));
        }
    }
    let ok = problems.is_empty();
    report.current_login_ok = Some(ok);
    if ok {
        info!(secret_id = %arn, key_id = %creds.username, "CurrentLoginOk: SES accepts the credentials AWSCURRENT holds");
    } else {
        let problem = problems.join("; ");
        warn!(secret_id = %arn, key_id = %creds.username, problem = %problem,
              "CurrentLoginOk=0: the credentials AWSCURRENT holds do not log in; senders reading the secret get 535 (README, Troubleshooting 535)");
        report.current_login_problem = Some(problem);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_shapes_and_refuses_the_rest() {
        assert_eq!(
            MaintenanceEvent::parse(&json!({"Action": "maintenance"})).unwrap(),
            Some(MaintenanceEvent { secret_ids: None })
        );
        assert_eq!(
            MaintenanceEvent::parse(&json!({"Action": "maintenance", "SecretIds": ["a", "b"]}))
                .unwrap()
                .unwrap()
                .secret_ids,
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(
            MaintenanceEvent::parse(&json!({"Step": "createSecret"})).unwrap(),
            None
        );
        for bad in [
            json!({"Action": "rotate"}),
            json!({"Action": 1}),
            json!({"Action": "maintenance", "SecretIds": "a"}),
            json!({"Action": "maintenance", "SecretIds": []}),
            json!({"Action": "maintenance", "SecretIds": [""]}),
            json!({"Action": "maintenance", "SecretIds": [3]}),
            json!({"Action": "maintenance", "SecretIds": vec!["x"; 101]}),
        ] {
            let e = MaintenanceEvent::parse(&bad).unwrap_err();
            assert_eq!(e.error_type(), "InvalidEvent", "{bad}");
        }
    }

    #[test]
    fn the_sample_event_parses_and_its_secret_is_the_templates_form() {
        let path = format!("{}/events/maintenance.json", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).expect(&path);
        let value: Value = serde_json::from_str(&text).expect(&path);
        let e = MaintenanceEvent::parse(&value).expect(&path).expect(&path);
        let ids = e.secret_ids.expect("the sample names its secret");
        assert_eq!(ids.len(), 1);
        assert!(ids[0].starts_with("arn:aws:secretsmanager:"), "{ids:?}");
    }

    #[test]
    fn one_metric_line_per_secret_with_a_fleet_wide_dimension_set() {
        let r = SecretReport {
            secret: "arn:s".into(),
            stuck: true,
            old_keys: vec![
                OldKey {
                    key_id: "AKIAOLD".into(),
                    replaced_at: 1,
                    last_used: Some(2),
                    outcome: "in-use",
                    until: Some(3),
                },
                OldKey {
                    key_id: "AKIAOLDER".into(),
                    replaced_at: 1,
                    last_used: None,
                    outcome: "deactivated",
                    until: None,
                },
            ],
            current_login_ok: Some(false),
            ..SecretReport::default()
        };
        let line = r.to_emf(5, Some("f"));
        let v = crate::metrics::tests::assert_valid_emf(&line);
        assert_eq!(v["OldKeyStillInUse"], 1);
        assert_eq!(v["OldKeysRetired"], 1);
        assert_eq!(v["RotationStuck"], 1);
        assert_eq!(v["CurrentLoginOk"], 0);
        assert_eq!(v["Secret"], "arn:s");
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Secret"], []])
        );
        assert!(!line.contains("AKIA"), "no key id in a metric line: {line}");
        let quiet = SecretReport {
            secret: "arn:s".into(),
            ..SecretReport::default()
        };
        assert!(quiet.to_emf(5, None).find("CurrentLoginOk").is_none());
    }
}
