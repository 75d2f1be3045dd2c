//! Graceful retirement (issue 22): the old key stays Active for a grace after promotion, the
//! scheduled maintenance retires it once senders have moved (later while IAM sees it used),
//! logs in with AWSCURRENT, and reports a rotation stuck in AWSPENDING. Grace is given in
//! hours; fractional values let these tests run in seconds.

mod common;

use std::time::Duration;

use common::{Env, assert_invariants, assert_ok, emf_lines, setup};
use serde_json::{Value, json};

/// 0.0008 h = 2.9 s.
const GRACE: &str = "0.0008";
const GRACE_SECS: f64 = 2.88;

fn wait(secs: f64) {
    std::thread::sleep(Duration::from_secs_f64(secs));
}

/// The report of `arn` in a maintenance answer.
fn report<'a>(r: &'a Value, arn: &str) -> &'a Value {
    assert_eq!(r["ok"], true, "{r:#}");
    r["response"]["reports"]
        .as_array()
        .expect("reports")
        .iter()
        .find(|x| x["secret"] == arn)
        .unwrap_or_else(|| panic!("no report for {arn}: {r:#}"))
}

/// The maintenance metric line of `arn` written last.
fn metric_line(env: &Env, arn: &str) -> Value {
    emf_lines(env)
        .into_iter()
        .rev()
        .find(|l| l["Secret"] == arn)
        .expect("a metric line for the secret")
}

fn status(env: &Env, user: &str, key: &str) -> Option<String> {
    env.keys(user)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, s)| s)
}

/// A secret after one rotation with the grace on, and a second rotation that replaced its
/// first key: (env, secret, the replaced key, its document).
fn rotated_with_grace(extra: &[(&str, &str)]) -> (Env, String, String, Value) {
    let mut env_vars = vec![("OLD_KEY_GRACE_HOURS", GRACE)];
    env_vars.extend_from_slice(extra);
    let (env, arn) = setup(&env_vars);
    assert_ok(&env.rotate(&arn, None));
    let old_doc = env.doc(&arn, "AWSCURRENT").unwrap();
    let old = env.current_key(&arn);
    let r = env.rotate(&arn, None);
    assert_ok(&r);
    assert!(
        r["steps"][3]["response"]["result"]
            .as_str()
            .is_some_and(|m| m.contains("kept Active for its grace")),
        "{r:#}"
    );
    (env, arn, old, old_doc)
}

#[test]
fn the_old_key_works_through_its_grace_and_is_retired_after_it() {
    let (env, arn, old, old_doc) = rotated_with_grace(&[]);
    // Right after the promotion the old key is Active and still logs in (a sender with the
    // cached password gets no 535). The check's own login is not recorded as a use.
    env.smtp_config(json!({"record_last_use": false}));
    assert_eq!(status(&env, "ses-smtp", &old).as_deref(), Some("Active"));
    let (ok, out) = env.login(&old_doc);
    assert!(ok, "the old key stopped working at promotion: {out}");
    env.smtp_config(json!({"record_last_use": true}));

    // Maintenance during the grace: nothing retired, the report says until when.
    let r = env.maintain(Some(&[&arn]));
    let rep = report(&r, &arn);
    assert_eq!(rep["old_keys"][0]["key_id"], old.as_str(), "{rep:#}");
    assert_eq!(rep["old_keys"][0]["outcome"], "in-grace", "{rep:#}");
    assert_eq!(status(&env, "ses-smtp", &old).as_deref(), Some("Active"));

    // After the grace: deactivated, recorded retired; a second run does nothing more.
    wait(GRACE_SECS);
    let r = env.maintain(Some(&[&arn]));
    let rep = report(&r, &arn);
    assert_eq!(rep["old_keys"][0]["outcome"], "deactivated", "{rep:#}");
    assert_eq!(status(&env, "ses-smtp", &old).as_deref(), Some("Inactive"));
    let line = metric_line(&env, &arn);
    assert_eq!(line["OldKeysRetired"], 1, "{line}");
    assert_eq!(line["OldKeyStillInUse"], 0, "{line}");
    let keys_before = env.keys("ses-smtp");
    let r = env.maintain(Some(&[&arn]));
    assert_eq!(report(&r, &arn)["old_keys"], json!([]), "{r:#}");
    assert_eq!(env.keys("ses-smtp"), keys_before);
    assert_invariants(&env, &arn, "ses-smtp");
    env.assert_no_secrets_leaked(Some(&arn));
}

#[test]
fn with_old_key_action_delete_the_maintenance_deletes_it() {
    let (env, arn, old, _) = rotated_with_grace(&[("OLD_KEY_ACTION", "delete")]);
    wait(GRACE_SECS);
    let r = env.maintain(Some(&[&arn]));
    assert_eq!(
        report(&r, &arn)["old_keys"][0]["outcome"],
        "deleted",
        "{r:#}"
    );
    assert_eq!(status(&env, "ses-smtp", &old), None);
    assert!(
        !env.user_tags("ses-smtp")
            .iter()
            .any(|(k, _)| k.ends_with(&old)),
        "the deleted key's record stayed"
    );
    assert_invariants(&env, &arn, "ses-smtp");
}

#[test]
fn an_old_key_still_in_use_is_kept_up_to_the_max_grace_then_retired_anyway() {
    // Max grace 0.0025 h = 9 s.
    let (env, arn, old, old_doc) = rotated_with_grace(&[("OLD_KEY_MAX_GRACE_HOURS", "0.0025")]);
    // A sender still uses the old password after the promotion (IAM records the login).
    wait(1.1);
    let (ok, out) = env.login(&old_doc);
    assert!(ok, "{out}");
    wait(GRACE_SECS);
    let r = env.maintain(Some(&[&arn]));
    let rep = report(&r, &arn);
    assert_eq!(rep["old_keys"][0]["outcome"], "in-use", "{rep:#}");
    assert!(
        rep["old_keys"][0]["last_used"].as_i64().is_some(),
        "{rep:#}"
    );
    assert_eq!(status(&env, "ses-smtp", &old).as_deref(), Some("Active"));
    let line = metric_line(&env, &arn);
    assert_eq!(line["OldKeyStillInUse"], 1, "{line}");
    let log = env.lambda_output();
    assert!(
        log.lines()
            .any(|l| l.contains("OldKeyStillInUse") && l.contains(&old) && l.contains(&arn)),
        "no warning naming secret and key"
    );
    // Past the max grace it goes, used or not.
    wait(9.0 - GRACE_SECS);
    let r = env.maintain(Some(&[&arn]));
    let rep = report(&r, &arn);
    assert_eq!(rep["old_keys"][0]["outcome"], "retired-in-use", "{rep:#}");
    assert_eq!(status(&env, "ses-smtp", &old).as_deref(), Some("Inactive"));
    env.assert_no_secrets_leaked(Some(&arn));
}

#[test]
fn when_iam_records_no_smtp_use_the_old_key_goes_at_the_end_of_its_grace() {
    let (env, arn, old, old_doc) = rotated_with_grace(&[("OLD_KEY_MAX_GRACE_HOURS", "1")]);
    // AWS does not document that SES SMTP logins show in GetAccessKeyLastUsed: a sender's
    // use may be invisible, and the grace is then all the time it gets.
    env.smtp_config(json!({"record_last_use": false}));
    wait(1.1);
    assert!(env.login(&old_doc).0);
    wait(GRACE_SECS);
    let r = env.maintain(Some(&[&arn]));
    assert_eq!(
        report(&r, &arn)["old_keys"][0]["outcome"],
        "deactivated",
        "{r:#}"
    );
    assert_eq!(status(&env, "ses-smtp", &old).as_deref(), Some("Inactive"));
}

#[test]
fn a_rotation_during_the_grace_ends_it_cleanly() {
    let (env, arn, old, _) = rotated_with_grace(&[("OLD_KEY_GRACE_HOURS", "1")]);
    assert_eq!(status(&env, "ses-smtp", &old).as_deref(), Some("Active"));
    assert_ok(&env.rotate(&arn, None));
    assert_eq!(
        status(&env, "ses-smtp", &old),
        None,
        "the two-key limit ends the grace"
    );
    assert!(
        env.lambda_output()
            .lines()
            .any(|l| l.contains("ending the grace") && l.contains(&old)),
        "the log does not say the grace was ended"
    );
    assert_invariants(&env, &arn, "ses-smtp");
}

#[test]
fn the_canary_reports_whether_awscurrent_logs_in() {
    let (env, arn) = setup(&[]);
    assert_ok(&env.rotate(&arn, None));
    let r = env.maintain(Some(&[&arn]));
    assert_eq!(report(&r, &arn)["current_login_ok"], true, "{r:#}");
    assert_eq!(metric_line(&env, &arn)["CurrentLoginOk"], 1);
    // Someone deactivates the current key by hand: applications now get 535.
    let key = env.current_key(&arn);
    env.block_on(
        env.iam
            .update_access_key()
            .user_name("ses-smtp")
            .access_key_id(&key)
            .status(aws_sdk_iam::types::StatusType::Inactive)
            .send(),
    )
    .unwrap();
    let r = env.maintain(Some(&[&arn]));
    let rep = report(&r, &arn);
    assert_eq!(rep["current_login_ok"], false, "{r:#}");
    assert!(
        rep["current_login_problem"]
            .as_str()
            .is_some_and(|p| p.contains("rejected") || p.contains("535")),
        "{rep:#}"
    );
    assert_eq!(metric_line(&env, &arn)["CurrentLoginOk"], 0);
    env.assert_no_secrets_leaked(Some(&arn));
}

#[test]
fn a_stuck_rotation_is_reported_and_no_key_is_retired_while_one_is_pending() {
    let (env, arn, old, _) = rotated_with_grace(&[("PENDING_STUCK_HOURS", "0.0005")]);
    wait(GRACE_SECS);
    // A rotation began and never got further (its version is staged AWSPENDING; its
    // createSecret would have ended the grace to make room, so it has not run yet).
    let token = env.pending(&arn);
    wait(2.0);
    let r = env.maintain(Some(&[&arn]));
    let rep = report(&r, &arn);
    assert_eq!(rep["pending_version"], token.as_str(), "{rep:#}");
    assert_eq!(rep["stuck"], true, "{rep:#}");
    assert_eq!(rep["old_keys"], json!([]), "{rep:#}");
    assert_eq!(metric_line(&env, &arn)["RotationStuck"], 1);
    // The replaced key is past its grace, but a rotation is under way: left alone.
    assert_eq!(status(&env, "ses-smtp", &old).as_deref(), Some("Active"));
}

#[test]
fn a_shared_deployment_maintains_every_managed_secret_and_nothing_else() {
    let mut env = Env::start();
    env.deploy_shared(None);
    env.start_lambda(&[
        ("OLD_KEY_GRACE_HOURS", GRACE),
        ("PENDING_STUCK_HOURS", "0.0005"),
    ]);
    let mut arns = Vec::new();
    for team in ["team-a", "team-b"] {
        env.create_user(team);
        let arn = env.create_secret(&format!("{team}/smtp"), &env.bootstrap_doc(team));
        assert_ok(&env.rotate(&arn, None));
        assert_ok(&env.rotate(&arn, None));
        arns.push(arn);
    }
    // A secret nobody tagged managed is not the shared function's.
    let unmanaged = env.create_secret_as("other/smtp", &env.bootstrap_doc("team-a"), false, None);
    // A pending rotation of team B (ListSecretVersionIds tells since when).
    let token = env.pending(&arns[1]);
    wait(GRACE_SECS);
    let r = env.maintain(None);
    assert_eq!(r["response"]["secrets"], 2, "{r:#}");
    assert_eq!(
        report(&r, &arns[0])["old_keys"][0]["outcome"],
        "deactivated",
        "{r:#}"
    );
    assert_eq!(
        report(&r, &arns[1])["pending_version"],
        token.as_str(),
        "{r:#}"
    );
    assert!(
        !r.to_string().contains(&unmanaged),
        "maintained a secret that is not managed: {r:#}"
    );
    for arn in &arns {
        assert_eq!(report(&r, arn)["current_login_ok"], true, "{r:#}");
    }
}

#[test]
fn a_malformed_maintenance_event_is_refused_by_name() {
    let (env, arn) = setup(&[]);
    for (event, needle) in [
        (json!({"Action": "maintain"}), "\"Action\""),
        (
            json!({"Action": "maintenance", "SecretIds": arn}),
            "\"SecretIds\"",
        ),
    ] {
        let r = env.invoke_raw(event);
        assert_eq!(r["ok"], false, "{r:#}");
        assert_eq!(r["error_type"], "InvalidEvent", "{r:#}");
        let m = r["error_message"].as_str().unwrap_or_default();
        assert!(m.contains(needle), "{m}");
    }
}
