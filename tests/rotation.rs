//! The rotation contract end to end: the real binary under the local Lambda Runtime API,
//! driven by the Secrets-Manager-like orchestrator, with state read back from moto and the SES
//! emulator.

mod common;

use common::{Env, assert_invariants, assert_ok, assert_refused, emf_lines, setup, steps};
use serde_json::{Value, json};

#[test]
fn bootstrap_creates_working_credentials_and_keeps_other_fields() {
    let (env, arn) = setup(&[]);
    let result = env.rotate(&arn, None);
    assert_ok(&result);

    let doc = env.doc(&arn, "AWSCURRENT").expect("current");
    let username = doc["username"].as_str().expect("username");
    assert!(username.starts_with("AKIA"), "{username}");
    let password = doc["password"].as_str().expect("password");
    assert_eq!(password.len(), 44);
    assert!(password.starts_with('B'));
    assert_eq!(doc["team"], json!({"owner": "mail-ops", "tags": [1, 2]}));
    assert_eq!(doc["iam_user"], "ses-smtp");
    assert_eq!(doc["tls"], "starttls");
    assert_eq!(
        env.keys("ses-smtp"),
        vec![(username.to_owned(), "Active".to_owned())]
    );
    // The token became AWSCURRENT and AWSPENDING is gone.
    assert_eq!(
        env.version_with(&arn, "AWSCURRENT").as_deref(),
        result["token"].as_str()
    );
    assert_eq!(env.version_with(&arn, "AWSPENDING"), None);
    // testSecret really logged in at the emulator with the new key.
    let logins = env.get("/smtp/logins");
    assert!(
        logins
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["username"] == username && l["code"] == 235),
        "{logins:#}"
    );
    assert_invariants(&env, &arn, "ses-smtp");
    env.assert_no_secrets_leaked(Some(&arn));
}

fn regular_rotation(action: &str) {
    let (env, arn) = setup(&[("OLD_KEY_ACTION", action)]);
    assert_ok(&env.rotate(&arn, None));
    let first = env.doc(&arn, "AWSCURRENT").expect("first");
    let k1 = first["username"].as_str().unwrap().to_owned();

    assert_ok(&env.rotate(&arn, None));
    let second = env.doc(&arn, "AWSCURRENT").expect("second");
    let k2 = second["username"].as_str().unwrap().to_owned();
    assert_ne!(k1, k2);
    assert_eq!(
        env.doc(&arn, "AWSPREVIOUS").expect("previous")["username"],
        k1.as_str()
    );
    let keys = env.keys("ses-smtp");
    let old_status = keys.iter().find(|(k, _)| *k == k1).map(|(_, s)| s.as_str());
    match action {
        "deactivate" => assert_eq!(old_status, Some("Inactive")),
        "delete" => assert_eq!(old_status, None),
        "keep" => assert_eq!(old_status, Some("Active")),
        _ => unreachable!(),
    }
    assert!(
        keys.contains(&(k2.clone(), "Active".to_owned())),
        "{keys:?}"
    );
    let (old_ok, out) = env.login(&first);
    assert_eq!(old_ok, action == "keep", "old key login: {out}");
    assert_invariants(&env, &arn, "ses-smtp");

    // A third rotation removes the first key whatever the action, and never exceeds 2 keys.
    assert_ok(&env.rotate(&arn, None));
    let k3 = env.current_key(&arn);
    let keys = env.keys("ses-smtp");
    assert!(!keys.iter().any(|(k, _)| *k == k1), "{keys:?}");
    assert!(keys.contains(&(k3, "Active".to_owned())), "{keys:?}");
    assert_invariants(&env, &arn, "ses-smtp");
    // The IAM calls never hit the 2-key limit.
    let requests = env.get("/requests");
    assert!(
        !requests.to_string().contains("LimitExceeded"),
        "{requests:#}"
    );
    env.assert_no_secrets_leaked(Some(&arn));
}

#[test]
fn regular_rotation_deactivates_old_key() {
    regular_rotation("deactivate");
}

#[test]
fn regular_rotation_deletes_old_key() {
    regular_rotation("delete");
}

#[test]
fn regular_rotation_keeps_old_key() {
    regular_rotation("keep");
}

#[test]
fn every_step_twice_in_a_row_gives_the_same_end_state() {
    every_step_twice("deactivate");
}

#[test]
fn every_step_twice_with_old_key_deletion() {
    every_step_twice("delete");
}

fn every_step_twice(action: &str) {
    let (env, arn) = setup(&[("OLD_KEY_ACTION", action)]);
    assert_ok(&env.rotate(&arn, None));
    let token = env.pending(&arn);
    for step in ["createSecret", "setSecret", "testSecret", "finishSecret"] {
        let first = env.invoke(step, &arn, &token);
        assert_eq!(first["ok"], true, "{step}: {first:#}");
        let keys = env.keys("ses-smtp");
        let stages = env.stages(&arn);
        let pending_value = env.doc(&arn, "AWSPENDING");
        let second = env.invoke(step, &arn, &token);
        assert_eq!(second["ok"], true, "{step} again: {second:#}");
        assert_eq!(env.keys("ses-smtp"), keys, "{step} again changed the keys");
        assert_eq!(env.stages(&arn), stages, "{step} again changed the stages");
        assert_eq!(
            env.doc(&arn, "AWSPENDING"),
            pending_value,
            "{step} again changed the value"
        );
    }
    assert_eq!(
        env.version_with(&arn, "AWSCURRENT").as_deref(),
        Some(token.as_str())
    );
    assert_invariants(&env, &arn, "ses-smtp");
    env.assert_no_secrets_leaked(Some(&arn));
}

/// A crash or lost response inside a step, then Secrets Manager's retry with the same token.
fn crash_then_retry(service: &str, action: &str, mode: &str, failing_step: &str, bootstrap: bool) {
    let (env, arn) = setup(&[]);
    if !bootstrap {
        assert_ok(&env.rotate(&arn, None));
    }
    let before = env.doc(&arn, "AWSCURRENT").expect("current");
    // In a bootstrap the orphan key is made within the same second as the pending version:
    // the case IAM's one-second dates make hard.
    let token = env.pending(&arn);
    for step in ["createSecret", "setSecret", "testSecret", "finishSecret"] {
        if step == failing_step {
            env.fault(service, action, mode);
            let r = env.invoke(step, &arn, &token);
            if (action, mode) == ("PutSecretValue", "fail_after") {
                // The write happened; createSecret reads it back and carries on.
                assert_eq!(r["ok"], true, "{step} should see its stored value: {r:#}");
            } else {
                assert_eq!(r["ok"], false, "{step} should fail under the fault: {r:#}");
            }
            env.delete("/faults");
            break;
        }
        let r = env.invoke(step, &arn, &token);
        assert_eq!(r["ok"], true, "{step}: {r:#}");
    }
    assert!(env.most_keys_at_once("ses-smtp", 0) <= 2);
    // Until finishSecret moved the stage, AWSCURRENT still holds the old, working value.
    if failing_step != "finishSecret" {
        assert_eq!(env.doc(&arn, "AWSCURRENT").as_ref(), Some(&before));
        if !bootstrap {
            let (ok, out) = env.login(&before);
            assert!(ok, "AWSCURRENT broken by the failed attempt: {out}");
        }
    }
    let retry = env.rotate(&arn, Some(&token));
    assert_ok(&retry);
    assert_eq!(
        env.version_with(&arn, "AWSCURRENT").as_deref(),
        Some(token.as_str())
    );
    assert_invariants(&env, &arn, "ses-smtp");
    if !bootstrap {
        // The old key was retired even when the stage move itself was the lost response.
        let old = before["username"].as_str().unwrap();
        let keys = env.keys("ses-smtp");
        assert!(
            keys.contains(&(old.to_owned(), "Inactive".to_owned())),
            "{keys:?}"
        );
        assert_eq!(keys.len(), 2, "{keys:?}");
    } else {
        assert_eq!(env.keys("ses-smtp").len(), 1);
    }
    env.assert_no_secrets_leaked(Some(&arn));
}

#[test]
fn create_key_response_lost_then_retry() {
    crash_then_retry(
        "iam",
        "CreateAccessKey",
        "fail_after",
        "createSecret",
        false,
    );
}

#[test]
fn create_key_response_lost_in_bootstrap_then_retry() {
    crash_then_retry("iam", "CreateAccessKey", "fail_after", "createSecret", true);
}

#[test]
fn put_secret_value_fails_then_retry() {
    crash_then_retry(
        "secretsmanager",
        "PutSecretValue",
        "fail_before",
        "createSecret",
        false,
    );
}

#[test]
fn put_secret_value_response_lost_then_retry() {
    crash_then_retry(
        "secretsmanager",
        "PutSecretValue",
        "fail_after",
        "createSecret",
        false,
    );
}

#[test]
fn set_secret_fails_then_retry() {
    crash_then_retry("iam", "ListAccessKeys", "fail_before", "setSecret", false);
}

#[test]
fn test_secret_fails_then_retry() {
    crash_then_retry(
        "secretsmanager",
        "GetSecretValue",
        "fail_before",
        "testSecret",
        false,
    );
}

#[test]
fn stage_move_response_lost_then_retry() {
    crash_then_retry(
        "secretsmanager",
        "UpdateSecretVersionStage",
        "fail_after",
        "finishSecret",
        false,
    );
}

#[test]
fn old_key_retirement_fails_after_stage_move_then_retry() {
    crash_then_retry(
        "iam",
        "UpdateAccessKey",
        "fail_before",
        "finishSecret",
        false,
    );
}

#[test]
fn failed_test_leaves_current_untouched_and_next_attempt_completes() {
    let (mut env, arn) = setup(&[]);
    assert_ok(&env.rotate(&arn, None));
    let before = env.doc(&arn, "AWSCURRENT").unwrap();
    let stages_before = env.stages(&arn);
    // SES answers 535 to the new key: it is younger than the propagation delay, which is
    // longer than the test budget. The current key is older than the delay.
    std::thread::sleep(std::time::Duration::from_secs(3));
    env.smtp_config(json!({"propagation_delay_seconds": 3}));
    env.start_lambda(&[("SMTP_TEST_TIMEOUT_SECONDS", "1")]);
    let failed = env.rotate(&arn, None);
    assert_eq!(failed["ok"], false);
    let st = steps(&failed);
    assert_eq!(
        st[2],
        (
            "testSecret".to_owned(),
            false,
            "SmtpAuthRejected".to_owned()
        ),
        "{failed:#}"
    );
    assert_eq!(st.len(), 3, "finishSecret must not run: {failed:#}");
    let msg = failed["steps"][2]["error_message"].as_str().unwrap();
    assert!(msg.contains("AWSCURRENT was not changed"), "{msg}");
    assert!(msg.contains("attempts"), "{msg}");
    assert_eq!(env.doc(&arn, "AWSCURRENT").as_ref(), Some(&before));
    let (ok, out) = env.login(&before);
    assert!(ok, "current credentials broken: {out}");
    assert!(env.most_keys_at_once("ses-smtp", 0) <= 2);
    // The stages are unchanged but for the failed rotation's AWSPENDING version.
    let pending = failed["token"].as_str().unwrap();
    let stages_now: Vec<_> = env
        .stages(&arn)
        .into_iter()
        .filter(|(v, _)| v != pending)
        .collect();
    assert_eq!(stages_now, stages_before);

    // Fault cleared: Secrets Manager retries the same rotation and it completes.
    env.smtp_config(json!({"propagation_delay_seconds": 0}));
    assert_ok(&env.rotate(&arn, Some(pending)));
    assert_invariants(&env, &arn, "ses-smtp");
    env.assert_no_secrets_leaked(Some(&arn));
}

#[test]
fn preamble_and_input_errors_change_nothing() {
    let (env, arn) = setup(&[]);
    assert_ok(&env.rotate(&arn, None));
    let token = env.pending(&arn);
    let before = env.snapshot("ses-smtp", &arn);

    // Token that is not a version of the secret.
    let r = env.invoke("createSecret", &arn, "00000000-0000-4000-8000-000000000000");
    assert_refused(
        &env,
        &arn,
        "ses-smtp",
        &r,
        "VersionNotFound",
        "is not a version",
        &before,
    );
    // Token that is a version without AWSPENDING (the previous, bootstrap version).
    let first = env
        .version_with(&arn, "AWSPREVIOUS")
        .expect("the bootstrap version is AWSPREVIOUS after one rotation");
    let r = env.invoke("createSecret", &arn, &first);
    assert_refused(
        &env,
        &arn,
        "ses-smtp",
        &r,
        "VersionNotPending",
        "AWSPENDING",
        &before,
    );
    // Unknown step, malformed events, missing secret.
    let r = env.invoke("rotateSecret", &arn, &token);
    assert_refused(
        &env,
        &arn,
        "ses-smtp",
        &r,
        "UnknownStep",
        "createSecret, setSecret, testSecret or finishSecret",
        &before,
    );
    let r = env.invoke_raw(json!({"Step": "createSecret", "SecretId": arn}));
    assert_refused(
        &env,
        &arn,
        "ses-smtp",
        &r,
        "InvalidEvent",
        "ClientRequestToken",
        &before,
    );
    let r = env.invoke_raw(json!("hello"));
    assert_refused(
        &env,
        &arn,
        "ses-smtp",
        &r,
        "InvalidEvent",
        "not a JSON object",
        &before,
    );
    // A missing secret: a stack's own secret deleted (any other secret is AccessDenied to a
    // single-scope role before it is looked up: tests/permissions.rs).
    let nope = "arn:aws:secretsmanager:us-east-1:123456789012:secret:nope-AbCdEf";
    env.deploy_single_stack(nope, Some("ses-smtp"));
    let r = env.invoke("createSecret", nope, &token);
    assert_refused(
        &env,
        &arn,
        "ses-smtp",
        &r,
        "SecretNotFound",
        "not found",
        &before,
    );
    // Rotation disabled.
    env.post(
        "/secret/rotation",
        json!({"secret_id": arn, "enabled": false}),
    );
    let r = env.invoke("createSecret", &arn, &token);
    assert_refused(
        &env,
        &arn,
        "ses-smtp",
        &r,
        "RotationNotEnabled",
        "rotation is not enabled",
        &before,
    );
    env.post(
        "/secret/rotation",
        json!({"secret_id": arn, "enabled": true}),
    );
    // And the rotation still completes afterwards with the same token.
    assert_ok(&env.rotate(&arn, Some(&token)));
    assert_invariants(&env, &arn, "ses-smtp");
    env.assert_no_secrets_leaked(Some(&arn));
}

/// Creates a secret, rotates it and checks the rotation is refused and changes nothing.
fn refused_rotation(
    env: &Env,
    name: &str,
    user: &str,
    doc: &Value,
    error_type: &str,
    needle: &str,
) -> Value {
    let arn = env.create_secret(name, doc);
    // Secrets Manager makes the empty pending version first; nothing after it may change.
    let token = env.pending(&arn);
    let before = env.snapshot(user, &arn);
    let r = env.rotate(&arn, Some(&token));
    assert_refused(env, &arn, user, &r, error_type, needle, &before);
    r
}

#[test]
fn bad_secrets_are_refused_and_change_nothing() {
    let mut env = Env::start();
    env.create_user("ses-smtp");
    env.create_user("someone-else");
    env.start_lambda(&[]);
    let other_key = env
        .block_on(env.iam.create_access_key().user_name("someone-else").send())
        .unwrap();
    let other_id = other_key.access_key().unwrap().access_key_id().to_owned();

    // The current key belongs to another IAM user, one this stack's role may not inspect:
    // GetAccessKeyLastUsed is denied for it (as in AWS), so the function cannot name the owner
    // and refuses it as not this user's key. (Where the role may read the owner, shared scope,
    // it is named: tests/permissions.rs.)
    let mut doc = env.bootstrap_doc("ses-smtp");
    doc["username"] = other_id.clone().into();
    doc["password"] = "BMPPgbAHoFVbze1Ud0oA5uNdXRwUXUZ+qOwphGJbl/cS".into();
    refused_rotation(
        &env,
        "wrong-user",
        "ses-smtp",
        &doc,
        "CurrentKeyMissing",
        "belongs to a user this function may not inspect",
    );
    assert_eq!(env.keys("someone-else").len(), 1);
    env.expect_denial("iam:GetAccessKeyLastUsed");

    // Temporary credentials.
    let mut doc = env.bootstrap_doc("ses-smtp");
    doc["username"] = "ASIAIOSFODNN7EXAMPLE".into();
    doc["password"] = "whatever".into();
    refused_rotation(
        &env,
        "temporary",
        "ses-smtp",
        &doc,
        "MalformedSecret",
        "IAM role",
    );

    // Malformed document: the error names the field and does not echo the value.
    let r = refused_rotation(
        &env,
        "malformed",
        "ses-smtp",
        &json!({"iam_user": "ses-smtp", "host": "localhost", "port": "SeCrEt-Value"}),
        "MalformedSecret",
        "\"port\"",
    );
    assert!(!r.to_string().contains("SeCrEt-Value"));

    // Bootstrap while the user already has a key someone made: there is room for one more, so
    // the rotation proceeds, names the key and leaves it alone; the next one has no room and is
    // refused by name, before any change, with the fix.
    env.create_user("adopt-me");
    let existing = env
        .block_on(env.iam.create_access_key().user_name("adopt-me").send())
        .unwrap();
    let existing_id = existing.access_key().unwrap().access_key_id().to_owned();
    let arn = env.create_secret("bootstrap-existing", &env.bootstrap_doc("adopt-me"));
    let r = env.rotate(&arn, None);
    assert_ok(&r);
    let created = &r["steps"][0]["response"]["result"];
    assert!(
        created
            .as_str()
            .is_some_and(|m| m.contains(&existing_id) && m.contains("adopt")),
        "{r:#}"
    );
    assert!(
        env.keys("adopt-me")
            .contains(&(existing_id.clone(), "Active".to_owned())),
        "the operator's key was touched"
    );
    let token = env.pending(&arn);
    let before = env.snapshot("adopt-me", &arn);
    let r = env.rotate(&arn, Some(&token));
    assert_refused(
        &env,
        &arn,
        "adopt-me",
        &r,
        "UnadoptedAccessKey",
        &existing_id,
        &before,
    );
    assert!(r.to_string().contains("Value=adopt"), "{r:#}");

    // Missing IAM user: IAM authorizes before it looks the user up, and a user that does not
    // exist has no path, so the role (users under /ses-smtp/) is denied reading it.
    let arn = env.create_secret("no-user", &env.bootstrap_doc("ghost"));
    let r = env.rotate(&arn, None);
    assert_eq!(steps(&r)[0].2, "UserNotPermitted", "{r:#}");
    assert!(r.to_string().contains("IAM user ghost"), "{r:#}");
    env.expect_denial("iam:GetUser");
    env.stop_lambda();
    env.assert_no_secrets_leaked(None);
}

#[test]
fn a_key_made_by_someone_during_a_bootstrap_is_never_taken_for_an_orphan() {
    // The rotation began (pending version exists), then an operator made a key for the user,
    // e.g. to adopt it: it is newer than the rotation and unused, yet not ours to delete.
    let (env, arn) = setup(&[]);
    let token = env.pending(&arn);
    let made = env
        .block_on(env.iam.create_access_key().user_name("ses-smtp").send())
        .unwrap();
    let key = made.access_key().unwrap().access_key_id().to_owned();
    let r = env.invoke("createSecret", &arn, &token);
    assert_eq!(r["ok"], true, "{r:#}");
    assert!(
        r.to_string().contains(&key),
        "the key left alone is named: {r:#}"
    );
    assert_ok(&env.rotate(&arn, Some(&token)));
    assert!(
        env.keys("ses-smtp")
            .contains(&(key.clone(), "Active".to_owned())),
        "the operator's key was touched: {:?}",
        env.keys("ses-smtp")
    );
}

#[test]
fn nothing_secret_is_logged_even_at_trace_level() {
    let (env, arn) = setup(&[("RUST_LOG", "trace")]);
    assert_ok(&env.rotate(&arn, None));
    assert_ok(&env.rotate(&arn, None));
    // The filter really was at trace for our own crate.
    assert!(env.lambda_output().contains("TRACE") || env.lambda_output().contains("DEBUG"));
    env.assert_no_secrets_leaked(Some(&arn));
}

#[test]
fn bootstrap_leaves_only_the_owner_tag_and_a_second_secret_may_not_share_the_user() {
    let (env, arn) = setup(&[]);
    assert_ok(&env.rotate(&arn, None));
    let tags = env
        .block_on(env.iam.list_user_tags().user_name("ses-smtp").send())
        .unwrap();
    let tags: Vec<(String, String)> = tags
        .tags()
        .iter()
        .map(|t| (t.key().to_owned(), t.value().to_owned()))
        .collect();
    // The owner tag and the key's record (the marker is gone after a completed rotation).
    let key = env.current_key(&arn);
    assert_eq!(tags.len(), 2, "{tags:?}");
    assert!(tags.contains(&("ses-smtp-rotator:secret".to_owned(), arn.clone())));
    let record = tags
        .iter()
        .find(|(k, _)| *k == format!("ses-smtp-rotator:key:{key}"))
        .map(|(_, v)| v.clone())
        .expect("the current key's record");
    assert_eq!(record.split(':').nth(2), Some("c"), "{record}");

    // Another secret for the same user would delete this secret's keys: refused, no change.
    let mut doc = env.doc(&arn, "AWSCURRENT").unwrap();
    doc["team"] = "other".into();
    let other = env.create_secret("smtp/other", &doc);
    let other_token = env.pending(&other);
    let before = env.snapshot("ses-smtp", &other);
    let r = env.rotate(&other, Some(&other_token));
    assert_refused(
        &env,
        &other,
        "ses-smtp",
        &r,
        "UserNotDedicated",
        "dedicated",
        &before,
    );
    let (ok, out) = env.login(&env.doc(&arn, "AWSCURRENT").unwrap());
    assert!(ok, "the first secret's credentials were broken: {out}");
}

#[test]
fn bootstrap_orphan_hidden_by_iam_eventual_consistency_is_removed_by_finish() {
    // createSecret's CreateAccessKey response is lost; the retry comes so soon that IAM does not
    // list that key yet, so the retry makes a second one. finishSecret must still leave no key
    // that no version names.
    let (env, arn) = setup(&[]);
    let token = env.pending(&arn);
    env.fault("iam", "CreateAccessKey", "fail_after");
    let r = env.invoke("createSecret", &arn, &token);
    assert_eq!(r["ok"], false, "{r:#}");
    env.delete("/faults");
    let orphan = env.keys("ses-smtp");
    assert_eq!(orphan.len(), 1, "{orphan:?}");
    env.post("/iam/config", json!({"list_lag_seconds": 3600}));
    let r = env.invoke("createSecret", &arn, &token);
    assert_eq!(r["ok"], true, "{r:#}");
    env.post("/iam/config", json!({"list_lag_seconds": 0}));
    assert_eq!(
        env.keys("ses-smtp").len(),
        2,
        "the retry could not see the orphan"
    );
    let r = env.rotate(&arn, Some(&token));
    assert_ok(&r);
    let keys = env.keys("ses-smtp");
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_ne!(keys[0].0, orphan[0].0, "the orphan survived");
    assert!(
        r["steps"][3]["response"]
            .to_string()
            .contains("failed attempt left"),
        "{r:#}"
    );
    assert_invariants(&env, &arn, "ses-smtp");
    env.assert_no_secrets_leaked(Some(&arn));
}

/// Kills the binary (SIGKILL) while a step waits on `action`, then lets Secrets Manager retry
/// the rotation with the same token on a fresh process.
fn killed_mid_step_then_retry(service: &str, action: &str) {
    let (mut env, arn) = setup(&[]);
    assert_ok(&env.rotate(&arn, None));
    let before = env.doc(&arn, "AWSCURRENT").unwrap();
    env.post(
        "/faults",
        json!({"service": service, "action": action, "mode": "delay", "delay_seconds": 20, "count": 1}),
    );
    let token = "6b0f7e4c-3a51-4c1e-9d7e-2f3a4b5c6d7e";
    let failed = std::thread::scope(|scope| {
        let rotation = scope.spawn(|| {
            env.post(
                "/rotate",
                json!({"secret_id": arn, "token": token, "deadline_seconds": 10}),
            )
        });
        // Wait until the step is stuck in the delayed call, then crash the process.
        let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !env
            .get("/requests")
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["action"] == action && r["fault"] == "delay")
        {
            assert!(
                std::time::Instant::now() < end,
                "the step never reached {action}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        env.kill_lambda_hard();
        rotation.join().unwrap()
    });
    assert_eq!(failed["ok"], false, "{failed:#}");
    assert!(env.most_keys_at_once("ses-smtp", 0) <= 2);
    let (ok, out) = env.login(&env.doc(&arn, "AWSCURRENT").unwrap());
    assert!(ok, "AWSCURRENT broken by the crash: {out}");

    env.start_lambda(&[]);
    assert_ok(&env.rotate(&arn, Some(token)));
    assert_eq!(env.version_with(&arn, "AWSCURRENT").as_deref(), Some(token));
    assert_ne!(
        env.doc(&arn, "AWSCURRENT").unwrap()["username"],
        before["username"]
    );
    assert_invariants(&env, &arn, "ses-smtp");
    env.assert_no_secrets_leaked(Some(&arn));
}

#[test]
fn process_killed_between_create_key_and_storing_it() {
    killed_mid_step_then_retry("secretsmanager", "PutSecretValue");
}

#[test]
fn process_killed_while_retiring_the_old_key() {
    killed_mid_step_then_retry("iam", "UpdateAccessKey");
}

#[test]
fn every_invocation_writes_one_valid_emf_line_without_secrets() {
    let (env, arn) = setup(&[]);
    // A key that needs two seconds before SES accepts it: testSecret retries and measures.
    env.smtp_config(json!({"propagation_delay_seconds": 2}));
    assert_ok(&env.rotate(&arn, None));
    let token = env.pending(&arn);
    let bad = env.invoke("bogusStep", &arn, &token);
    assert_eq!(bad["ok"], false);
    let lines = emf_lines(&env);
    let got: Vec<(String, i64)> = lines
        .iter()
        .map(|l| {
            (
                l["Step"].as_str().expect("step").to_owned(),
                l["Success"].as_i64().expect("success"),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("createSecret".to_owned(), 1),
            ("setSecret".to_owned(), 1),
            ("testSecret".to_owned(), 1),
            ("finishSecret".to_owned(), 1),
            ("invalid".to_owned(), 0),
        ]
    );
    let test = &lines[2];
    assert!(
        test["AuthAttempts"].as_u64().expect("attempts") >= 2,
        "{test}"
    );
    let p = test["PropagationSeconds"].as_f64().expect("propagation");
    assert!((1.0..30.0).contains(&p), "{test}");
    assert!(lines[0].get("AuthAttempts").is_none());
    assert!(lines.iter().all(|l| l["Duration"].as_u64().is_some()));
    env.assert_no_secrets_leaked(Some(&arn));
}

#[test]
fn propagation_is_reported_only_when_this_test_measured_it() {
    // A short test budget: a key older than it when testSecret first logs in is not being
    // propagated any more, so its age is no propagation time.
    let (env, arn) = setup(&[("SMTP_TEST_TIMEOUT_SECONDS", "1")]);
    assert_ok(&env.rotate(&arn, None));
    let token = env.pending(&arn);
    for step in ["createSecret", "setSecret"] {
        assert_eq!(env.invoke(step, &arn, &token)["ok"], true);
    }
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(env.invoke("testSecret", &arn, &token)["ok"], true);
    let lines = emf_lines(&env);
    let test = lines.last().expect("testSecret's line");
    assert_eq!(test["Step"], "testSecret");
    assert_eq!(test["AuthAttempts"], 1, "{test}");
    assert!(
        test.get("PropagationSeconds").is_none(),
        "a key's age was reported as its propagation: {test}"
    );
}

#[test]
fn slow_bookkeeping_never_fails_a_proven_login() {
    let (env, arn) = setup(&[]);
    assert_ok(&env.rotate(&arn, None));
    let token = env.pending(&arn);
    for step in ["createSecret", "setSecret"] {
        assert_eq!(env.invoke(step, &arn, &token)["ok"], true);
    }
    // testSecret's only IAM call comes after the login (to measure propagation); make it take
    // longer than the whole invocation may.
    env.post(
        "/latency",
        json!({"service": "iam", "action": "ListAccessKeys", "seconds": 30}),
    );
    let r = env.post(
        "/invoke",
        json!({"event": {"Step": "testSecret", "SecretId": arn, "ClientRequestToken": token},
               "deadline_seconds": 10}),
    );
    env.delete("/latency");
    assert_eq!(r["ok"], true, "a proven login became a failed step: {r:#}");
    assert_ok(&env.rotate(&arn, Some(&token)));
}
