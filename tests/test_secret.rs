//! testSecret in real-life conditions, end to end against the SES emulator: propagation delay,
//! temporary failures, deadlines, unreachable endpoints, TLS, and the optional real send.

mod common;

use common::{Env, steps};
use serde_json::{Value, json};

fn setup(extra_env: &[(&str, &str)], implicit: bool) -> (Env, String) {
    let mut env = Env::start();
    env.create_user("ses-smtp");
    let mut doc = env.bootstrap_doc("ses-smtp");
    if implicit {
        doc["port"] = env.info["smtp_tls_port"].clone();
        doc["tls"] = "implicit".into();
    }
    let arn = env.create_secret("smtp", &doc);
    env.start_lambda(extra_env);
    (env, arn)
}

fn test_step(result: &Value) -> &Value {
    result["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["step"] == "testSecret")
        .expect("testSecret ran")
}

/// AUTH attempts recorded by the emulator for one key: (code, reason, tls mode).
fn logins_for(env: &Env, key: &str) -> Vec<(i64, String, String)> {
    env.get("/smtp/logins")
        .as_array()
        .expect("logins")
        .iter()
        .filter(|l| l["username"] == key)
        .map(|l| {
            (
                l["code"].as_i64().unwrap_or_default(),
                l["reason"].as_str().unwrap_or_default().to_owned(),
                l["tls_mode"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[test]
fn propagation_delay_is_ridden_out_with_retries() {
    let (env, arn) = setup(&[], false);
    env.smtp_config(json!({"propagation_delay_seconds": 3}));
    let r = env.rotate(&arn, None);
    assert_eq!(r["ok"], true, "{r:#}");
    let key = env.current_key(&arn);
    let logins = logins_for(&env, &key);
    assert!(logins.len() >= 2, "{logins:?}");
    assert!(
        logins[..logins.len() - 1]
            .iter()
            .all(|(c, why, _)| *c == 535 && why == "propagation_delay"),
        "{logins:?}"
    );
    assert_eq!(logins.last().unwrap().0, 235, "{logins:?}");
    env.assert_no_secrets_leaked(Some(&arn));
}

#[test]
fn delay_longer_than_budget_fails_in_time_with_guidance() {
    let (env, arn) = setup(&[("SMTP_TEST_TIMEOUT_SECONDS", "3")], false);
    env.smtp_config(json!({"propagation_delay_seconds": 3600}));
    let r = env.rotate(&arn, None);
    assert_eq!(r["ok"], false);
    let t = test_step(&r);
    assert_eq!(t["error_type"], "SmtpAuthRejected", "{r:#}");
    let msg = t["error_message"].as_str().unwrap();
    for needle in [
        "535",
        "attempts",
        "not propagated",
        "another region",
        "NOT a cause of 535",
        "not enabled for SES",
        "AWSCURRENT was not changed",
    ] {
        assert!(msg.contains(needle), "{needle:?} missing: {msg}");
    }
    // It gave up on its own budget, well before the orchestrator's 300 s deadline.
    assert!(t["duration_ms"].as_u64().unwrap() < 60_000, "{t:#}");
    // Bootstrap secret: AWSCURRENT is still the original document without credentials.
    assert!(
        env.doc(&arn, "AWSCURRENT")
            .unwrap()
            .get("username")
            .is_none()
    );
    assert_eq!(steps(&r).len(), 3, "finishSecret must not run");
}

#[test]
fn temporary_454_is_retried() {
    let (env, arn) = setup(&[], false);
    env.smtp_config(json!({"force_454": 2}));
    let r = env.rotate(&arn, None);
    assert_eq!(r["ok"], true, "{r:#}");
    let key = env.current_key(&arn);
    let codes: Vec<i64> = logins_for(&env, &key).iter().map(|l| l.0).collect();
    assert_eq!(codes, vec![454, 454, 235]);
}

#[test]
fn refused_connection_fails_fast_with_network_advice() {
    let (env, arn) = setup(&[("SMTP_TEST_TIMEOUT_SECONDS", "60")], false);
    env.smtp_config(json!({"refuse_connections": "refuse"}));
    let r = env.rotate(&arn, None);
    let t = test_step(&r);
    assert_eq!(t["error_type"], "SmtpUnreachable", "{r:#}");
    let msg = t["error_message"].as_str().unwrap();
    let endpoint = format!("localhost:{}", env.info["smtp_starttls_port"]);
    for needle in [
        endpoint.as_str(),
        "NAT gateway",
        "security group",
        "port 25",
        "AWSCURRENT was not changed",
    ] {
        assert!(msg.contains(needle), "{needle:?} missing: {msg}");
    }
    // Not retried for the whole 60 s budget.
    assert!(t["duration_ms"].as_u64().unwrap() < 30_000, "{t:#}");
}

#[test]
fn silent_server_and_tls_mode_mismatch_are_bounded_by_the_connect_timeout() {
    // STARTTLS spoken to the implicit-TLS port: the server waits for a TLS hello, the client
    // for a greeting. lettre alone would hang; the exchange timeout ends it.
    let (env, arn) = setup(
        &[
            ("SMTP_TEST_TIMEOUT_SECONDS", "60"),
            ("SMTP_CONNECT_TIMEOUT_SECONDS", "2"),
        ],
        false,
    );
    env.create_user("mismatch-user");
    let mut doc = env.bootstrap_doc("mismatch-user");
    doc["port"] = env.info["smtp_tls_port"].clone();
    doc["tls"] = "starttls".into();
    let mismatch = env.create_secret("mismatch", &doc);
    let r = env.rotate(&mismatch, None);
    let t = test_step(&r);
    assert_eq!(t["error_type"], "SmtpUnreachable", "{r:#}");
    assert!(
        t["error_message"].as_str().unwrap().contains("mismatch"),
        "{t:#}"
    );
    assert!(t["duration_ms"].as_u64().unwrap() < 30_000, "{t:#}");

    env.smtp_config(json!({"refuse_connections": "hang"}));
    let r = env.rotate(&arn, None);
    let t = test_step(&r);
    assert_eq!(t["error_type"], "SmtpUnreachable", "{r:#}");
}

fn logs_in_with_tls_mode(implicit: bool, mode: &str) {
    let (env, arn) = setup(&[], implicit);
    let r = env.rotate(&arn, None);
    assert_eq!(r["ok"], true, "{r:#}");
    let logins = logins_for(&env, &env.current_key(&arn));
    assert_eq!(
        logins.last().map(|l| (l.0, l.2.as_str())),
        Some((235, mode)),
        "{logins:?}"
    );
}

#[test]
fn implicit_tls_works() {
    logs_in_with_tls_mode(true, "implicit");
}

#[test]
fn starttls_is_used_on_the_starttls_port() {
    logs_in_with_tls_mode(false, "starttls");
}

#[test]
fn certificate_is_always_verified() {
    // The emulator's certificate is signed by the test CA; the public roots do not trust it,
    // and the rotation must fail rather than skip verification.
    let (mut env, arn) = setup(&[], false);
    env.start_lambda(&[("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")]);
    let r = env.rotate(&arn, None);
    let t = test_step(&r);
    assert_eq!(t["error_type"], "SmtpCertificateUntrusted", "{r:#}");
    let m = t["error_message"].as_str().unwrap();
    assert!(m.contains("certificate not trusted for localhost"), "{t:#}");
    assert!(m.contains("SSL_CERT_FILE"), "{t:#}");
    // Each cause once (lettre repeats its source in its own message).
    assert_eq!(m.matches("UnknownIssuer").count(), 1, "{m}");
    // No AUTH was ever sent over an unverified connection.
    assert!(env.get("/smtp/logins").as_array().unwrap().is_empty());
}

#[test]
fn test_send_delivers_a_message_and_554_gets_its_own_error() {
    let (mut env, arn) = setup(
        &[
            ("TEST_SEND_FROM", "mailer@example.com"),
            ("TEST_SEND_TO", "success@simulator.amazonses.com"),
        ],
        false,
    );
    let r = env.rotate(&arn, None);
    assert_eq!(r["ok"], true, "{r:#}");
    let key = env.current_key(&arn);
    let messages = env.get("/smtp/messages");
    let m = messages.as_array().unwrap();
    assert_eq!(m.len(), 1, "{messages:#}");
    assert_eq!(m[0]["key_id"], key.as_str());
    assert_eq!(m[0]["from"], "mailer@example.com");

    env.smtp_config(json!({"deny_send_from": ["denied@example.com"]}));
    env.start_lambda(&[
        ("TEST_SEND_FROM", "denied@example.com"),
        ("TEST_SEND_TO", "success@simulator.amazonses.com"),
    ]);
    let before = env.doc(&arn, "AWSCURRENT");
    let r = env.rotate(&arn, None);
    let t = test_step(&r);
    assert_eq!(t["error_type"], "SmtpSendNotAuthorized", "{r:#}");
    let msg = t["error_message"].as_str().unwrap();
    assert!(msg.contains("ses:SendRawEmail"), "{msg}");
    assert!(msg.contains("denied@example.com"), "{msg}");
    assert_eq!(env.doc(&arn, "AWSCURRENT"), before);
    env.assert_no_secrets_leaked(Some(&arn));
}

#[test]
fn rotate_immediately_false_tests_the_current_credentials() {
    let (env, arn) = setup(&[], false);
    assert_eq!(env.rotate(&arn, None)["ok"], true);
    let current = env.doc(&arn, "AWSCURRENT").unwrap();
    let key = current["username"].as_str().unwrap().to_owned();
    let stages = env.stages(&arn);
    let keys = env.keys("ses-smtp");
    env.post("/smtp/clear", json!({}));
    let r = env.post(
        "/rotate",
        json!({"secret_id": arn, "rotate_immediately": false}),
    );
    assert_eq!(r["ok"], true, "{r:#}");
    assert_eq!(steps(&r).len(), 1, "{r:#}");
    assert!(
        test_step(&r)["response"].to_string().contains("current"),
        "{r:#}"
    );
    assert_eq!(
        logins_for(&env, &key)
            .iter()
            .map(|l| l.0)
            .collect::<Vec<_>>(),
        vec![235]
    );
    assert!(env.lambda_output().contains("RotateImmediately=false"));
    assert_eq!(env.stages(&arn), stages);
    assert_eq!(env.keys("ses-smtp"), keys);
}

#[test]
fn the_invocation_deadline_caps_the_budget() {
    // The function's own budget (60 s) is longer than the invocation's 8 s deadline: the binary
    // must answer with its own error before the deadline, not be timed out.
    let (env, arn) = setup(&[("SMTP_TEST_TIMEOUT_SECONDS", "60")], false);
    env.smtp_config(json!({"propagation_delay_seconds": 3600}));
    let r = env.post("/rotate", json!({"secret_id": arn, "deadline_seconds": 8}));
    let t = test_step(&r);
    assert_eq!(t["error_type"], "SmtpAuthRejected", "{r:#}");
    assert!(t["duration_ms"].as_u64().unwrap() < 8_000, "{t:#}");
}

#[test]
fn unusable_ca_file_fails_at_start_clearly() {
    let mut env = Env::start();
    let empty_ca = env.dir.join("empty-ca.pem");
    std::fs::write(&empty_ca, "").unwrap();
    env.start_lambda(&[("SSL_CERT_FILE", empty_ca.to_str().unwrap())]);
    let code = env.wait_lambda_exit(std::time::Duration::from_secs(20));
    assert_eq!(code, Some(1));
    let out = env.lambda_output();
    assert!(out.contains("SSL_CERT_FILE"), "{out}");
    assert!(!out.contains("panicked"), "{out}");
}

#[test]
fn invalid_configuration_fails_at_start_clearly() {
    let mut env = Env::start();
    env.start_lambda(&[("OLD_KEY_ACTION", "remove")]);
    let code = env.wait_lambda_exit(std::time::Duration::from_secs(20));
    assert_eq!(code, Some(1));
    let out = env.lambda_output();
    assert!(
        out.contains("OLD_KEY_ACTION must be deactivate, delete or keep"),
        "{out}"
    );
}

#[test]
fn rotate_immediately_false_on_a_bootstrap_secret_has_nothing_to_test() {
    let (env, arn) = setup(&[], false);
    let r = env.post(
        "/rotate",
        json!({"secret_id": arn, "rotate_immediately": false}),
    );
    assert_eq!(r["ok"], true, "{r:#}");
    assert!(
        test_step(&r)["response"].to_string().contains("bootstrap"),
        "{r:#}"
    );
    assert!(env.keys("ses-smtp").is_empty());
}
