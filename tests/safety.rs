//! Safety under overlap, faults, edits and hostile input (DESIGN "Safety under overlap, edits
//! and hostile documents"), end to end through the real binary against the stand-ins.
//!
//! - Two binaries run createSecret for one token at the same moment (regular and bootstrap).
//! - A fault matrix: every AWS call a full rotation makes, in turn, fails before reaching the
//!   server, loses its response after the server acted, or is throttled; Secrets Manager's
//!   next moves (the step again, then the rest) must converge with the invariants holding
//!   after every step.
//! - Hostile events and documents: a stable error type, a message naming the field and never
//!   the value, and no state change.

mod common;

use std::collections::BTreeMap;

use common::{
    Env, assert_invariants, assert_no_limit_exceeded, assert_ok, assert_refused,
    assert_state_invariants, limit_refusals, setup, steps,
};
use serde_json::{Value, json};

const STEPS: [&str; 4] = ["createSecret", "setSecret", "testSecret", "finishSecret"];

fn event(step: &str, arn: &str, token: &str) -> Value {
    json!({"Step": step, "SecretId": arn, "ClientRequestToken": token, "RotationToken": "e2e-rotation-token"})
}

/// Runs a step until it succeeds, as Secrets Manager retries a failed rotation: only
/// retryable error types may come back meanwhile.
fn step_until_ok(env: &Env, step: &str, arn: &str, token: &str) -> Value {
    for _ in 0..10 {
        let r = env.invoke(step, arn, token);
        if r["ok"] == true {
            return r;
        }
        let t = r["error_type"].as_str().unwrap_or_default();
        assert!(
            matches!(t, "AttemptInProgress" | "KeyNotYetVisible"),
            "{step} failed with a non-retryable error: {r:#}"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    panic!("{step} never succeeded");
}

/// Every key a version of the secret names exists (no stored version names a deleted key).
fn assert_versions_name_existing_keys(env: &Env, arn: &str, user: &str) {
    let keys: Vec<String> = env.keys(user).into_iter().map(|(k, _)| k).collect();
    for doc in env.all_docs(arn) {
        if let Some(k) = doc["username"].as_str() {
            assert!(
                keys.iter().any(|x| x == k),
                "a stored version names deleted key {k}: {keys:?}"
            );
        }
    }
}

fn overlap(bootstrap: bool) {
    let (mut env, arn) = setup(&[]);
    if !bootstrap {
        assert_ok(&env.rotate(&arn, None));
    }
    env.add_lambda(&[]);
    let keys_before = env.keys_created();
    // Server-side latency on every IAM call, so that the two attempts truly interleave.
    env.post(
        "/latency",
        json!({"service": "iam", "action": "*", "seconds": 0.15}),
    );
    let token = env.pending(&arn);
    let results = env.invoke_concurrently(event("createSecret", &arn, &token), 2);
    env.delete("/latency");
    // They ran at the same time: each was handed out before the other answered.
    let delivered = |r: &Value| r["delivered_at"].as_f64().expect("delivered_at");
    let finished = |r: &Value| r["finished_at"].as_f64().expect("finished_at");
    assert!(
        delivered(&results[0]).max(delivered(&results[1]))
            < finished(&results[0]).min(finished(&results[1])),
        "the two invocations did not overlap: {results:#?}"
    );
    assert_ne!(
        results[0]["delivered_to"], results[1]["delivered_to"],
        "one binary ran both"
    );
    for r in &results {
        let t = r["error_type"].as_str().unwrap_or_default();
        assert!(
            r["ok"] == true || matches!(t, "AttemptInProgress" | "KeyNotYetVisible"),
            "an overlapping createSecret failed for good: {r:#}"
        );
    }
    // At this instant the stored versions name only keys that exist.
    assert_versions_name_existing_keys(&env, &arn, "ses-smtp");
    // Secrets Manager's retries then complete the rotation.
    for step in STEPS {
        step_until_ok(&env, step, &arn, &token);
        assert_versions_name_existing_keys(&env, &arn, "ses-smtp");
    }
    assert_eq!(
        env.version_with(&arn, "AWSCURRENT").as_deref(),
        Some(token.as_str())
    );
    assert!(env.most_keys_at_once("ses-smtp", 0) <= 2);
    // Tags are no lock (DESIGN "Overlap"): when both attempts read the marker before either
    // wrote it, both reach CreateAccessKey. In a regular rotation the user holds the current
    // key, so IAM's two-key limit lets exactly one through and refuses the other, which then
    // answers as a re-run (or retryably) without deleting anything: the token's rotation made
    // one key, and at most one CreateAccessKey met the limit. In a bootstrap the user holds
    // none, both keys fit, the loser at PutSecretValue deletes its own, and none meets the
    // limit.
    let made = env.keys_created() - keys_before;
    if bootstrap {
        assert_no_limit_exceeded(&env);
        assert!((1..=2).contains(&made), "{made} keys made");
    } else {
        let refused = limit_refusals(&env);
        assert!(
            refused.len() <= 1,
            "CreateAccessKey met the limit more than once: {refused:?}"
        );
        assert_eq!(made, 1, "a regular rotation made {made} keys for one token");
    }
    assert_state_invariants(&env, &arn, "ses-smtp");
    env.assert_no_secrets_leaked(Some(&arn));
}

/// The interleaving tags cannot prevent, forced: attempt B reads the user's tags, then its
/// marker write is held at the server while attempt A of the same token runs to the end
/// (marker, key, AWSPENDING stored, attempt ended). B's write then overwrites A's record, B
/// sees no other attempt, and IAM refuses its key for the two-key limit. The pending version
/// already holds A's credentials for this token, so B is done too: it answers as a re-run
/// would, not with IAM's LimitExceeded (which Secrets Manager would report as a failed
/// rotation), and it made no key.
#[test]
fn an_attempt_that_loses_the_race_to_a_finished_one_is_done_too() {
    let (mut env, arn) = setup(&[]);
    assert_ok(&env.rotate(&arn, None));
    env.add_lambda(&[]);
    let token = env.pending(&arn);
    let keys_before = env.keys_created();
    // The first TagUser to arrive (one attempt's marker write) waits 3 s before IAM acts on it.
    env.post(
        "/faults",
        json!({"service": "iam", "action": "TagUser", "mode": "delay", "count": 1, "delay_seconds": 3}),
    );
    let results = env.invoke_concurrently(event("createSecret", &arn, &token), 2);
    env.delete("/faults");
    for r in &results {
        assert_eq!(r["ok"], true, "an attempt failed: {r:#}");
    }
    // One key for the token: the held attempt's CreateAccessKey was refused, not retried.
    assert_eq!(env.keys_created(), keys_before + 1);
    let refused = limit_refusals(&env).len();
    assert_eq!(
        refused, 1,
        "the held attempt never reached the two-key limit"
    );
    assert_versions_name_existing_keys(&env, &arn, "ses-smtp");
    for step in &STEPS[1..] {
        step_until_ok(&env, step, &arn, &token);
    }
    assert_eq!(
        env.version_with(&arn, "AWSCURRENT").as_deref(),
        Some(token.as_str())
    );
    assert_state_invariants(&env, &arn, "ses-smtp");
    env.assert_no_secrets_leaked(Some(&arn));
}

#[test]
fn two_create_secret_runs_at_once_in_a_regular_rotation() {
    overlap(false);
}

#[test]
fn two_create_secret_runs_at_once_in_a_bootstrap() {
    overlap(true);
}

/// The AWS calls (service, action) a regular rotation makes, in order, as the stand-in saw
/// them.
fn calls_of_a_rotation(env: &Env, arn: &str) -> Vec<(String, String)> {
    let before = env.requests().len();
    assert_ok(&env.rotate(arn, None));
    env.requests()[before..]
        .iter()
        .map(|r| {
            (
                r["service"].as_str().unwrap_or_default().to_owned(),
                r["action"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// For every AWS call of a regular rotation in turn: the fault `mode` hits it once, then
/// Secrets Manager's next moves run (the failed step again, then the rest). After every step
/// AWSCURRENT logs in and the user never held more than two keys; once complete, no key is
/// named by no version. Returns the number of points.
fn fault_matrix(mode: &str) -> usize {
    let mut env = Env::start();
    env.start_lambda(&[]);
    // The reference: which calls a regular rotation makes (the third of a secret's life, so
    // that it also deletes the key the one before retired).
    env.create_user("ref");
    let arn = env.create_secret("ref", &env.bootstrap_doc("ref"));
    assert_ok(&env.rotate(&arn, None));
    assert_ok(&env.rotate(&arn, None));
    let calls = calls_of_a_rotation(&env, &arn);
    assert!(calls.len() >= 15, "{calls:?}");
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for (i, (service, action)) in calls.iter().enumerate() {
        let user = format!("u{i}");
        env.create_user(&user);
        let arn = env.create_secret(&format!("s{i}"), &env.bootstrap_doc(&user));
        assert_ok(&env.rotate(&arn, None));
        assert_ok(&env.rotate(&arn, None));
        let old_key = env.current_key(&arn);
        let token = env.pending(&arn);
        let skip = calls[..i]
            .iter()
            .filter(|(s, a)| s == service && a == action)
            .count();
        env.fault_once(service, action, mode, skip);
        let point = format!("#{i} {service}:{action} {mode}");
        let mut failed_step = None;
        for step in STEPS {
            let r = env.invoke(step, &arn, &token);
            if r["ok"] != true {
                failed_step = Some(step);
                *outcomes
                    .entry(r["error_type"].as_str().unwrap_or("?").to_owned())
                    .or_default() += 1;
                // What Secrets Manager runs next: the same step again.
                let again = env.invoke(step, &arn, &token);
                assert_eq!(again["ok"], true, "{point}: {step} retried: {again:#}");
            }
            let current = env.doc(&arn, "AWSCURRENT").expect("AWSCURRENT");
            let (ok, out) = env.login(&current);
            assert!(
                ok,
                "{point}: after {step} AWSCURRENT does not log in: {out}"
            );
            assert!(
                env.most_keys_at_once(&user, 0) <= 2,
                "{point}: more than two keys after {step}"
            );
        }
        if failed_step.is_none() {
            *outcomes.entry("absorbed by SDK retry".into()).or_default() += 1;
        }
        assert_eq!(
            env.version_with(&arn, "AWSCURRENT").as_deref(),
            Some(token.as_str()),
            "{point}"
        );
        assert_invariants(&env, &arn, &user);
        let keys = env.keys(&user);
        assert!(
            keys.contains(&(old_key.clone(), "Inactive".to_owned())),
            "{point}: the old key was not retired: {keys:?}"
        );
        env.delete("/faults");
    }
    assert_no_limit_exceeded(&env);
    env.stop_lambda();
    env.assert_no_secrets_leaked(None);
    println!(
        "fault matrix, {mode}: {} points (AWS calls of one rotation) all converged; first failures by error type: {outcomes:?}",
        calls.len()
    );
    calls.len()
}

#[test]
fn fault_matrix_error_before_the_server() {
    fault_matrix("fail_before");
}

#[test]
fn fault_matrix_lost_response_after_the_server_acted() {
    fault_matrix("fail_after");
}

#[test]
fn fault_matrix_throttled() {
    fault_matrix("throttle");
}

// A pending key deleted by hand: tests/permissions.rs, under both of IAM's answers for a key
// that no longer exists.

#[test]
fn a_pending_version_for_another_destination_is_never_tested_nor_promoted() {
    let (env, arn) = setup(&[]);
    assert_ok(&env.rotate(&arn, None));
    let keys = env.keys("ses-smtp");
    let current = env.doc(&arn, "AWSCURRENT").expect("current");
    env.post("/smtp/clear", json!({}));
    for step in ["createSecret", "setSecret", "testSecret", "finishSecret"] {
        let token = env.pending(&arn);
        // A principal that may write the secret stores a pending value behind the rotation's
        // back: same credentials, its own port (an SMTP server of its own on localhost).
        let mut forged = current.clone();
        forged["port"] = env.info["smtp_tls_port"].clone();
        forged["tls"] = "implicit".into();
        env.block_on(
            env.sm
                .put_secret_value()
                .secret_id(&arn)
                .client_request_token(&token)
                .secret_string(forged.to_string())
                .version_stages("AWSPENDING")
                .send(),
        )
        .expect("forge");
        let r = env.invoke(step, &arn, &token);
        assert_eq!(r["ok"], false, "{step}: {r:#}");
        assert_eq!(r["error_type"], "PendingMismatch", "{step}: {r:#}");
        let m = r["error_message"].as_str().unwrap_or_default();
        assert!(m.contains("port, tls") && m.contains("starts fresh"), "{m}");
        // The version can never be promoted: it is cleared (AWSPENDING removed), and nothing
        // else changes: the key it names is the current one, which is never deleted.
        assert!(
            !env.stages(&arn)
                .iter()
                .any(|(_, s)| s.iter().any(|x| x == "AWSPENDING")),
            "{step}: {:?}",
            env.stages(&arn)
        );
        assert_eq!(env.keys("ses-smtp"), keys, "{step}");
        assert_eq!(
            env.doc(&arn, "AWSCURRENT").as_ref(),
            Some(&current),
            "{step}"
        );
    }
    let logins = env.get("/smtp/logins");
    assert_eq!(
        logins,
        json!([]),
        "credentials were sent somewhere: {logins:#}"
    );
    // The next rotation starts fresh and completes.
    assert_ok(&env.rotate(&arn, None));
    assert_invariants(&env, &arn, "ses-smtp");
}

#[test]
fn a_host_that_is_not_ses_gets_no_credentials() {
    // Without SMTP_ALLOWED_HOSTS, localhost (the emulator) is not an SES endpoint.
    let (env, arn) = setup(&[("SMTP_ALLOWED_HOSTS", "")]);
    let token = env.pending(&arn);
    let before = env.snapshot("ses-smtp", &arn);
    let r = env.invoke("createSecret", &arn, &token);
    assert_refused(
        &env,
        &arn,
        "ses-smtp",
        &r,
        "HostNotAllowed",
        "SMTP_ALLOWED_HOSTS",
        &before,
    );
    // testSecret (RotateImmediately=false: AWSCURRENT) refuses before any connection too.
    let mut doc = env.bootstrap_doc("ses-smtp");
    doc["username"] = "AKIAIOSFODNN7EXAMPLE".into();
    doc["password"] = "BMPPgbAHoFVbze1Ud0oA5uNdXRwUXUZ+qOwphGJbl/cS".into();
    let arn2 = env.create_secret("has-creds", &doc);
    let token2 = env.pending(&arn2);
    let r = env.invoke("testSecret", &arn2, &token2);
    assert_eq!(r["error_type"], "HostNotAllowed", "{r:#}");
    assert_eq!(env.get("/smtp/logins"), json!([]));
}

#[test]
fn hostile_events_are_refused_by_name_and_change_nothing() {
    let (env, arn) = setup(&[]);
    assert_ok(&env.rotate(&arn, None));
    let token = env.pending(&arn);
    let other = env.create_secret("other", &env.bootstrap_doc("ses-smtp"));
    let other_token = env.pending(&other);
    let before = env.snapshot("ses-smtp", &arn);
    let huge = "H".repeat(1 << 20);
    // The missing secret is a stack's own, deleted (another is AccessDenied before lookup).
    env.deploy_single_stack(
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:nope-AbCdEf",
        Some("ses-smtp"),
    );
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"SecretId": arn, "ClientRequestToken": token}),
            "InvalidEvent",
            "\"Step\" is missing",
        ),
        (
            json!({"Step": "createSecret", "ClientRequestToken": token}),
            "InvalidEvent",
            "\"SecretId\" is missing",
        ),
        (
            json!({"Step": 7, "SecretId": arn, "ClientRequestToken": token}),
            "InvalidEvent",
            "\"Step\" is not a string",
        ),
        (
            json!({"Step": "createSecret", "SecretId": [arn], "ClientRequestToken": token}),
            "InvalidEvent",
            "\"SecretId\" is not a string",
        ),
        (
            json!({"Step": "createSecret", "SecretId": arn, "ClientRequestToken": {"t": token}}),
            "InvalidEvent",
            "\"ClientRequestToken\" is not a string",
        ),
        (
            json!({"Step": "createSecret", "SecretId": arn, "ClientRequestToken": token, "RotationToken": 5}),
            "InvalidEvent",
            "\"RotationToken\" is not a string",
        ),
        (
            json!({"Step": huge, "SecretId": arn, "ClientRequestToken": token}),
            "UnknownStep",
            "expected createSecret",
        ),
        (
            json!({"Step": "create_secret", "SecretId": arn, "ClientRequestToken": token}),
            "UnknownStep",
            "expected createSecret",
        ),
        (
            json!({"Step": "CreateSecret", "SecretId": arn, "ClientRequestToken": token}),
            "UnknownStep",
            "expected createSecret",
        ),
        (
            json!({"Step": "createSecret", "SecretId": arn, "ClientRequestToken": other_token}),
            "VersionNotFound",
            "is not a version",
        ),
        (
            json!({"Step": "createSecret", "SecretId": huge, "ClientRequestToken": token}),
            "InvalidEvent",
            "\"SecretId\" is longer than 2048",
        ),
        (
            json!({"Step": "createSecret", "SecretId": arn, "ClientRequestToken": "short"}),
            "InvalidEvent",
            "\"ClientRequestToken\" must be 32 to 64",
        ),
        (
            json!({"Step": "createSecret", "SecretId": "arn:aws:secretsmanager:us-east-1:123456789012:secret:nope-AbCdEf", "ClientRequestToken": token}),
            "SecretNotFound",
            "not found",
        ),
        (json!(null), "InvalidEvent", "not a JSON object"),
        (json!([1, 2]), "InvalidEvent", "not a JSON object"),
    ];
    for (ev, error_type, needle) in cases {
        let r = env.invoke_raw(ev.clone());
        assert_refused(&env, &arn, "ses-smtp", &r, error_type, needle, &before);
        // The message is bounded and never echoes a megabyte value.
        let m = r["error_message"].as_str().unwrap_or_default();
        assert!(m.len() < 2000, "{} bytes", m.len());
    }
    // And the rotation still completes with its own token.
    assert_ok(&env.rotate(&arn, Some(&token)));
    env.assert_no_secrets_leaked(Some(&arn));
}

/// Whether `doc` holds `probe` as (part of) one of its strings, keys included, at any depth.
fn holds(doc: &Value, probe: &str) -> bool {
    match doc {
        Value::String(s) => s.contains(probe),
        Value::Array(items) => items.iter().any(|i| holds(i, probe)),
        Value::Object(fields) => fields
            .iter()
            .any(|(k, v)| k.contains(probe) || holds(v, probe)),
        _ => false,
    }
}

#[test]
fn hostile_documents_are_refused_by_field_and_change_nothing() {
    let mut env = Env::start();
    env.create_user("ses-smtp");
    env.create_user("someone-else");
    env.start_lambda(&[]);
    let other = env
        .block_on(env.iam.create_access_key().user_name("someone-else").send())
        .expect("key");
    let other_id = other.access_key().expect("key").access_key_id().to_owned();
    // The marker every hostile string carries: what must never come back.
    let v = "Hostile-Value-7x";
    let base = env.bootstrap_doc("ses-smtp");
    assert!(!holds(&base, v));
    let with = |field: &str, value: Value| {
        let mut d = base.clone();
        d[field] = value;
        d
    };
    let without = |field: &str| {
        let mut d = base.clone();
        d.as_object_mut().expect("object").remove(field);
        d
    };
    let creds = |user: Value, password: Value| {
        let mut d = base.clone();
        d["username"] = user;
        d["password"] = password;
        d
    };
    let pw_text = "BMPPgbAHoFVbze1Ud0oA5uNdXRwUXUZ+qOwphGJbl/cS";
    let pw = json!(pw_text);
    let long_label = "a".repeat(64);
    let long_name = "b.".repeat(140);
    // (document, error type, needle, values the document holds that must not come back).
    let cases: Vec<(Value, &str, &str, Vec<String>)> = vec![
        (
            without("iam_user"),
            "MalformedSecret",
            "\"iam_user\"",
            vec![],
        ),
        (
            with("iam_user", json!(42)),
            "MalformedSecret",
            "\"iam_user\"",
            vec![],
        ),
        (
            with("iam_user", json!("")),
            "MalformedSecret",
            "\"iam_user\"",
            vec![],
        ),
        (
            with("iam_user", json!(format!("arn:aws:iam::1:user/{v}"))),
            "MalformedSecret",
            "\"iam_user\"",
            vec![v.into()],
        ),
        (
            with("iam_user", json!(format!("{v}{}", "u".repeat(60)))),
            "MalformedSecret",
            "\"iam_user\"",
            vec![v.into()],
        ),
        (without("host"), "MalformedSecret", "\"host\"", vec![]),
        (
            with("host", json!([format!("{v}.example")])),
            "MalformedSecret",
            "\"host\"",
            vec![v.into()],
        ),
        (
            with("host", json!(format!("smtp://{v}"))),
            "MalformedSecret",
            "\"host\"",
            vec![v.into()],
        ),
        (
            with("host", json!(format!("{v}.example:587"))),
            "MalformedSecret",
            "\"host\"",
            vec![v.into()],
        ),
        // Hosts that are no DNS name: terminal control, header injection, '@', white space,
        // NUL, a 64-character label, a name longer than 253 characters.
        (
            with(
                "host",
                json!(format!("{v}\u{1b}]0;x\u{7}\u{1b}[2J.example")),
            ),
            "MalformedSecret",
            "\"host\"",
            vec![v.into()],
        ),
        (
            with("host", json!(format!("{v}\r\nX-Injected-1.example"))),
            "MalformedSecret",
            "\"host\"",
            vec![v.into()],
        ),
        (
            with("host", json!(format!("postmaster@{v}.example"))),
            "MalformedSecret",
            "\"host\"",
            vec![v.into()],
        ),
        (
            with("host", json!(format!("{v} .example"))),
            "MalformedSecret",
            "\"host\"",
            vec![v.into()],
        ),
        (
            with("host", json!(format!("{v}\u{0}.example"))),
            "MalformedSecret",
            "\"host\"",
            vec![v.into()],
        ),
        (
            with("host", json!(format!("{long_label}.{v}.example"))),
            "MalformedSecret",
            "\"host\"",
            vec![v.into(), long_label.clone()],
        ),
        (
            with("host", json!(format!("{long_name}{v}.example"))),
            "MalformedSecret",
            "\"host\"",
            vec![v.into(), long_name.clone()],
        ),
        (
            with(
                "regions",
                json!([{"region": "eu-west-1", "host": format!("{v}\u{1b}[31m.example")}]),
            ),
            "MalformedSecret",
            "\"regions\"",
            vec![v.into()],
        ),
        // Host names, not allowed: refused by name (a DNS name is not secret and is safe to
        // print); the leak scan has nothing to look for here.
        (
            with("host", json!("smtp.evil.example")),
            "HostNotAllowed",
            "SMTP_ALLOWED_HOSTS",
            vec![],
        ),
        (
            with(
                "host",
                json!("email-smtp.us-east-1.amazonaws.com.evil.example"),
            ),
            "HostNotAllowed",
            "SMTP_ALLOWED_HOSTS",
            vec![],
        ),
        (
            with("port", json!(v)),
            "MalformedSecret",
            "\"port\"",
            vec![v.into()],
        ),
        (
            with("port", json!(0)),
            "MalformedSecret",
            "\"port\"",
            vec![],
        ),
        (
            with("port", json!(70000)),
            "MalformedSecret",
            "\"port\"",
            vec![],
        ),
        (
            with("port", json!(-25)),
            "MalformedSecret",
            "\"port\"",
            vec![],
        ),
        (
            with("port", json!(587.5)),
            "MalformedSecret",
            "\"port\"",
            vec![],
        ),
        (
            with("tls", json!(v)),
            "MalformedSecret",
            "\"tls\"",
            vec![v.into()],
        ),
        (
            with("tls", json!("none")),
            "MalformedSecret",
            "\"tls\"",
            vec![],
        ),
        (
            with("tls", json!(true)),
            "MalformedSecret",
            "\"tls\"",
            vec![],
        ),
        (
            with("region", json!(v)),
            "MalformedSecret",
            "\"region\"",
            vec![v.into()],
        ),
        (
            with("region", json!("US-EAST-1")),
            "MalformedSecret",
            "\"region\"",
            vec![],
        ),
        (
            with("region", json!(1)),
            "MalformedSecret",
            "\"region\"",
            vec![],
        ),
        (
            creds(json!("ASIAIOSFODNN7EXAMPLE"), pw.clone()),
            "MalformedSecret",
            "IAM role",
            vec![pw_text.into()],
        ),
        (
            creds(json!(format!("{v}-user")), pw.clone()),
            "MalformedSecret",
            "\"username\"",
            vec![v.into(), pw_text.into()],
        ),
        (
            creds(json!("akiaiosfodnn7example"), pw.clone()),
            "MalformedSecret",
            "\"username\"",
            vec!["akiaiosfodnn7example".into(), pw_text.into()],
        ),
        (
            creds(json!(12), pw.clone()),
            "MalformedSecret",
            "\"username\"",
            vec![pw_text.into()],
        ),
        (
            creds(json!("AKIAIOSFODNN7EXAMPLE"), json!("")),
            "MalformedSecret",
            "\"password\"",
            vec![],
        ),
        (
            creds(json!("AKIAIOSFODNN7EXAMPLE"), json!(44)),
            "MalformedSecret",
            "\"password\"",
            vec![],
        ),
        (
            with("username", json!("AKIAIOSFODNN7EXAMPLE")),
            "MalformedSecret",
            "\"password\"",
            vec![],
        ),
        (
            with("password", json!(v)),
            "MalformedSecret",
            "\"username\"",
            vec![v.into()],
        ),
        // Another user's key: this stack's role may not inspect it (AccessDenied), so it is
        // refused as not this user's key (shared scope names the owner: permissions.rs).
        (
            creds(json!(other_id), pw.clone()),
            "CurrentKeyMissing",
            "may not inspect",
            vec![pw_text.into()],
        ),
        (
            json!([v]),
            "MalformedSecret",
            "not an object",
            vec![v.into()],
        ),
        (json!(v), "MalformedSecret", "not an object", vec![v.into()]),
    ];
    env.expect_denial("iam:GetAccessKeyLastUsed");
    let n = cases.len();
    let mut probes: Vec<String> = Vec::new();
    for (i, (doc, error_type, needle, planted)) in cases.into_iter().enumerate() {
        // The scan looks for what this document really holds, or it proves nothing.
        for p in &planted {
            assert!(
                holds(&doc, p),
                "case {i}: {p:?} is not in the document {doc}"
            );
        }
        let r = refused(&env, &format!("hostile-{i}"), &doc, error_type, needle);
        let text = r.to_string();
        for p in &planted {
            assert!(
                !text.contains(p.as_str()),
                "case {i}: {p:?} was echoed: {text}"
            );
        }
        probes.extend(planted);
    }
    assert!(
        probes.iter().any(|p| p == v) && probes.len() > 20,
        "{probes:?}"
    );
    // Nor in anything the binary logged while refusing them.
    let output = env.lambda_output();
    assert!(!output.is_empty());
    for p in &probes {
        assert!(
            !output.contains(p.as_str()),
            "{p:?} appears in the binary's output"
        );
    }
    // A key of another user was not touched.
    assert_eq!(env.keys("someone-else").len(), 1);
    env.stop_lambda();
    env.assert_no_secrets_leaked(None);
    println!("hostile documents: {n} cases refused by name with no change");
}

fn refused(env: &Env, name: &str, doc: &Value, error_type: &str, needle: &str) -> Value {
    let arn = env.create_secret(name, doc);
    let token = env.pending(&arn);
    let before = env.snapshot("ses-smtp", &arn);
    let r = env.rotate(&arn, Some(&token));
    assert_refused(env, &arn, "ses-smtp", &r, error_type, needle, &before);
    assert_eq!(steps(&r).len(), 1, "{r:#}");
    r
}

/// No secret is logged whatever RUST_LOG asks, and each value runs at the level it claims:
/// span and field directives are not supported, so those values log at `info` (with a
/// warning saying so, and none of our debug lines), while `trace` and a per-target `trace`
/// really log our crate's debug lines (so the scan ran over the most the binary prints, and
/// a directive that silently did nothing would fail here).
#[test]
fn nothing_secret_is_logged_under_span_and_field_directives() {
    let ours_debug = |out: &str| {
        out.lines()
            .filter(|l| l.contains("\"level\":\"DEBUG\"") && l.contains("parsed rotation event"))
            .count()
    };
    let info_lines = |out: &str| {
        out.lines()
            .filter(|l| l.contains("\"level\":\"INFO\""))
            .count()
    };
    for (directives, at_trace) in [
        ("[rotation]=trace,[{step}]=trace", false),
        ("[]=trace,trace", false),
        ("trace", true),
        (
            "warn,ses_smtp_rotator=trace,aws_smithy_runtime=trace,rustls=trace",
            true,
        ),
    ] {
        let (env, arn) = setup(&[("RUST_LOG", directives)]);
        assert_ok(&env.rotate(&arn, None));
        assert_ok(&env.rotate(&arn, None));
        let out = env.lambda_output();
        let fallback =
            out.contains("is not understood (span and field directives are not supported");
        if at_trace {
            // Two rotations, four steps each: one debug line per invocation.
            assert!(
                ours_debug(&out) >= 8,
                "{directives}: no debug lines of ours:\n{out}"
            );
            assert!(!fallback, "{directives}: fell back to info:\n{out}");
        } else {
            assert!(
                fallback,
                "{directives}: no warning about the fallback:\n{out}"
            );
            assert_eq!(
                ours_debug(&out),
                0,
                "{directives}: debug lines at info:\n{out}"
            );
            assert!(info_lines(&out) > 0, "{directives}: not even info:\n{out}");
        }
        env.assert_no_secrets_leaked(Some(&arn));
    }
}
