//! Several SES regions in one secret, end to end through the real binary against a stand-in
//! that runs one SES SMTP emulator per region (each accepts only the password derived for its
//! own region): a rotation proves the new key at every region and stores each region's
//! password; one region rejecting the key stops the rotation; bare region codes derive the
//! right endpoints and passwords; malformed `regions` change nothing.

mod common;

use common::{Env, assert_refused, steps};
use serde_json::{Value, json};
use ses_smtp_rotator::password::{Region, SecretAccessKey, derive_smtp_password};

const PRIMARY: &str = "us-east-1";
const OTHER: &str = "eu-west-1";

/// A stand-in with SMTP emulators for both regions, a user, and the binary running.
fn start(extra_env: &[(&str, &str)]) -> Env {
    let mut env = Env::start_with_args(&["--smtp-regions", &format!("{PRIMARY},{OTHER}")]);
    assert_eq!(env.region(), PRIMARY, "the stand-in's primary region");
    env.create_user("ses-smtp");
    env.start_lambda(extra_env);
    env
}

fn port(env: &Env, region: &str, which: &str) -> Value {
    let p = env.info["smtp"][region][which].clone();
    assert!(
        p.is_u64(),
        "no {which} for {region}: {:#}",
        env.info["smtp"]
    );
    p
}

/// A bootstrap document: the primary at its emulator's STARTTLS port, the other region at its
/// emulator's implicit-TLS port (both TLS modes used), and an operator field to keep.
fn two_region_doc(env: &Env) -> Value {
    let mut doc = env.bootstrap_doc("ses-smtp");
    doc["regions"] = json!([
        {"region": OTHER, "host": "localhost", "port": port(env, OTHER, "tls_port"), "tls": "implicit"}
    ]);
    doc["team"] = json!({"owner": "mail", "ids": [1, 2]});
    doc
}

/// The secret access key moto minted for `key_id`.
fn secret_of(env: &Env, key_id: &str) -> SecretAccessKey {
    let seen = env.get("/secrets-seen");
    let s = seen
        .as_array()
        .expect("secrets")
        .iter()
        .find(|k| k["access_key_id"] == key_id)
        .unwrap_or_else(|| panic!("no secret seen for {key_id}"))["secret_access_key"]
        .as_str()
        .expect("secret")
        .to_owned();
    SecretAccessKey::new(s).expect("valid secret")
}

fn password(secret: &SecretAccessKey, region: &str) -> String {
    derive_smtp_password(secret, &Region::new(region).expect("region"))
        .expose()
        .to_owned()
}

/// AUTH results one region's emulator recorded for a key: (code, reason).
fn logins(env: &Env, region: &str, key: &str) -> Vec<(i64, String)> {
    env.get(&format!("/smtp/logins?region={region}"))
        .as_array()
        .expect("logins")
        .iter()
        .filter(|l| l["username"] == key)
        .map(|l| {
            assert_eq!(l["region"], region);
            (
                l["code"].as_i64().unwrap_or_default(),
                l["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// A single-region document for an independent login (the binary's `test-login`) with the
/// credentials `doc` holds for `region`.
fn login_at(env: &Env, doc: &Value, region: &str, port_name: &str, tls: &str) -> (bool, String) {
    let pw = if region == PRIMARY {
        doc["password"].clone()
    } else {
        doc["passwords"][region].clone()
    };
    assert!(pw.is_string(), "no password for {region} in the document");
    env.login(&json!({
        "iam_user": doc["iam_user"], "host": "localhost", "region": region,
        "port": port(env, region, port_name), "tls": tls,
        "username": doc["username"], "password": pw,
    }))
}

/// Every region's password of every key minted, for the leak check (the harness's own check
/// derives the primary region's only).
fn assert_no_region_password_leaked(env: &Env) {
    let output = env.lambda_output();
    let answers = env.get("/invocations").to_string();
    assert!(!output.is_empty());
    for k in env.get("/secrets-seen").as_array().expect("secrets") {
        let secret =
            SecretAccessKey::new(k["secret_access_key"].as_str().expect("secret")).expect("valid");
        for region in [PRIMARY, OTHER, "ap-southeast-2", "ca-central-1"] {
            let p = password(&secret, region);
            assert!(!output.contains(&p), "a {region} password in the output");
            assert!(!answers.contains(&p), "a {region} password in an answer");
        }
    }
}

/// The AWSCURRENT document holds `key`, the right password for every region and nothing else
/// changed from `original`.
fn assert_current_holds(env: &Env, arn: &str, original: &Value, key: &str) {
    let doc = env.doc(arn, "AWSCURRENT").expect("AWSCURRENT");
    let secret = secret_of(env, key);
    let mut want = original.clone();
    want["username"] = key.into();
    want["password"] = password(&secret, PRIMARY).into();
    want["passwords"] = json!({
        PRIMARY: password(&secret, PRIMARY),
        OTHER: password(&secret, OTHER),
    });
    assert_eq!(doc, want);
    assert_ne!(want["passwords"][PRIMARY], want["passwords"][OTHER]);
}

#[test]
fn rotation_proves_the_new_key_at_every_region_and_stores_each_password() {
    let env = start(&[]);
    let original = two_region_doc(&env);
    let arn = env.create_secret("two-regions", &original);

    // Bootstrap, then a regular rotation (the old key is retired as usual).
    for round in 0..2 {
        let old_key = env.doc(&arn, "AWSCURRENT").unwrap()["username"].clone();
        env.post("/smtp/clear", json!({}));
        let r = env.rotate(&arn, None);
        assert_eq!(r["ok"], true, "round {round}: {r:#}");
        let test = &r["steps"].as_array().unwrap()[2];
        let answer = test["response"].to_string();
        assert!(
            answer.contains(PRIMARY) && answer.contains(OTHER),
            "{test:#}"
        );
        let key = env.current_key(&arn);
        assert_ne!(json!(key), old_key);
        assert_current_holds(&env, &arn, &original, &key);

        // Each emulator saw the binary's successful AUTH, and only successes: the right
        // password went to each region (a wrong one is refused as "wrong_region").
        for region in [PRIMARY, OTHER] {
            let seen = logins(&env, region, &key);
            assert!(!seen.is_empty(), "{region} saw no login for {key}");
            assert!(
                seen.iter().all(|(c, why)| *c == 235 && why == "ok"),
                "{region}: {seen:?}"
            );
        }
        // The stored passwords work on their own, at each region's endpoint.
        let doc = env.doc(&arn, "AWSCURRENT").unwrap();
        for (region, port_name, tls) in [
            (PRIMARY, "starttls_port", "starttls"),
            (OTHER, "tls_port", "implicit"),
        ] {
            let (ok, out) = login_at(&env, &doc, region, port_name, tls);
            assert!(ok, "{region}: {out}");
        }
        // And the primary's password is refused by the other region: the test is not vacuous.
        let mut swapped = doc.clone();
        swapped["passwords"][OTHER] = doc["password"].clone();
        let (ok, _) = login_at(&env, &swapped, OTHER, "tls_port", "implicit");
        assert!(!ok);
        assert_eq!(logins(&env, OTHER, &key).last().unwrap().1, "wrong_region");
    }
    assert_eq!(env.keys("ses-smtp").len(), 2);
    env.assert_no_secrets_leaked(Some(&arn));
    assert_no_region_password_leaked(&env);
}

#[test]
fn one_region_rejecting_the_new_key_stops_the_rotation() {
    let env = start(&[("SMTP_TEST_TIMEOUT_SECONDS", "4")]);
    let original = two_region_doc(&env);
    let arn = env.create_secret("one-rejects", &original);
    let r = env.rotate(&arn, None);
    assert_eq!(r["ok"], true, "{r:#}");
    let current_key = env.current_key(&arn);
    let current_doc = env.doc(&arn, "AWSCURRENT");
    let current_version = env.version_with(&arn, "AWSCURRENT");

    // The other region does not accept the new key (it has not propagated there).
    env.smtp_config(json!({"region": OTHER, "propagation_delay_seconds": 3600}));
    env.post("/smtp/clear", json!({}));
    let r = env.rotate(&arn, None);
    assert_eq!(r["ok"], false, "{r:#}");
    let s = steps(&r);
    assert_eq!(s.len(), 3, "finishSecret must not run: {s:?}");
    assert_eq!(s[2].2, "SmtpRegionsFailed", "{r:#}");
    let msg = r["steps"][2]["error_message"].as_str().unwrap();
    for needle in [
        "1 of 2 failed",
        &format!("[{OTHER}] SmtpAuthRejected"),
        "535",
        &format!("Accepted in: {PRIMARY}."),
        "AWSCURRENT was not changed",
    ] {
        assert!(msg.contains(needle), "{needle:?} missing: {msg}");
    }
    assert!(!msg.contains(&format!("[{PRIMARY}]")), "{msg}");

    // AWSCURRENT untouched.
    assert_eq!(env.version_with(&arn, "AWSCURRENT"), current_version);
    assert_eq!(env.doc(&arn, "AWSCURRENT"), current_doc);
    let new_key = env.doc(&arn, "AWSPENDING").unwrap()["username"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(new_key, current_key);
    // The primary accepted the new key, the other region only refused it (propagation).
    assert!(logins(&env, PRIMARY, &new_key).iter().any(|l| l.0 == 235));
    let other = logins(&env, OTHER, &new_key);
    assert!(!other.is_empty(), "the other region was not tried");
    assert!(
        other
            .iter()
            .all(|(c, why)| *c == 535 && why == "propagation_delay"),
        "{other:?}"
    );

    // The current credentials still log in at both regions.
    env.smtp_config(json!({"region": OTHER, "propagation_delay_seconds": 0}));
    let doc = current_doc.unwrap();
    assert_eq!(doc["username"], current_key);
    assert!(login_at(&env, &doc, PRIMARY, "starttls_port", "starttls").0);
    assert!(login_at(&env, &doc, OTHER, "tls_port", "implicit").0);
    assert_eq!(
        env.keys("ses-smtp")
            .iter()
            .find(|(k, _)| *k == current_key)
            .unwrap()
            .1,
        "Active"
    );
    // Once the key has propagated, the retried rotation completes.
    let pending = env.version_with(&arn, "AWSPENDING").unwrap();
    let r = env.rotate(&arn, Some(&pending));
    assert_eq!(r["ok"], true, "{r:#}");
    assert_current_holds(&env, &arn, &original, &new_key);
    env.assert_no_secrets_leaked(Some(&arn));
    assert_no_region_password_leaked(&env);
}

#[test]
fn rotate_immediately_false_tests_awscurrent_at_every_region() {
    let env = start(&[("SMTP_TEST_TIMEOUT_SECONDS", "4")]);
    let original = two_region_doc(&env);
    let arn = env.create_secret("not-immediately", &original);
    assert_eq!(env.rotate(&arn, None)["ok"], true);
    let key = env.current_key(&arn);
    let before = env.stages(&arn);

    env.post("/smtp/clear", json!({}));
    let r = env.post(
        "/rotate",
        json!({"secret_id": arn, "rotate_immediately": false}),
    );
    assert_eq!(r["ok"], true, "{r:#}");
    assert_eq!(steps(&r).len(), 1);
    for region in [PRIMARY, OTHER] {
        assert_eq!(logins(&env, region, &key), vec![(235, "ok".to_owned())]);
    }
    assert_eq!(env.stages(&arn), before);

    // One region unreachable: the test fails naming it, the other still passed.
    env.smtp_config(json!({"region": OTHER, "refuse_connections": "refuse"}));
    let r = env.post(
        "/rotate",
        json!({"secret_id": arn, "rotate_immediately": false}),
    );
    assert_eq!(r["ok"], false, "{r:#}");
    assert_eq!(steps(&r)[0].2, "SmtpRegionsFailed", "{r:#}");
    let msg = r["steps"][0]["error_message"].as_str().unwrap();
    assert!(msg.contains(&format!("[{OTHER}] SmtpUnreachable")), "{msg}");
    assert!(msg.contains(&format!("Accepted in: {PRIMARY}.")), "{msg}");
    assert_eq!(env.stages(&arn), before);
    assert_eq!(env.current_key(&arn), key);
}

#[test]
fn region_codes_with_derived_host_names_get_the_right_passwords() {
    // createSecret and setSecret only: the derived names are real SES endpoints, never
    // resolved here.
    let env = start(&[]);
    let original = json!({
        "iam_user": "ses-smtp", "host": "email-smtp.us-east-1.amazonaws.com", "port": 587,
        "regions": ["eu-west-1", "ap-southeast-2",
                    {"region": "ca-central-1", "host": "vpce-0abc123-x1y2.email-smtp.ca-central-1.vpce.amazonaws.com"}],
        "note": "kept",
    });
    let arn = env.create_secret("derived-hosts", &original);
    let token = env.pending(&arn);
    for step in ["createSecret", "setSecret"] {
        let r = env.invoke(step, &arn, &token);
        assert_eq!(r["ok"], true, "{step}: {r:#}");
    }
    let pending = env.doc(&arn, "AWSPENDING").expect("pending value");
    let key = pending["username"].as_str().unwrap().to_owned();
    let secret = secret_of(&env, &key);
    let mut want = original;
    want["username"] = key.clone().into();
    want["password"] = password(&secret, "us-east-1").into();
    want["passwords"] = json!({
        "us-east-1": password(&secret, "us-east-1"),
        "eu-west-1": password(&secret, "eu-west-1"),
        "ap-southeast-2": password(&secret, "ap-southeast-2"),
        "ca-central-1": password(&secret, "ca-central-1"),
    });
    assert_eq!(pending, want);
    // Four different passwords from one key.
    let mut all: Vec<&str> = want["passwords"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_str().unwrap())
        .collect();
    all.dedup();
    assert_eq!(all.len(), 4);
    // A re-run finds the stored version and changes nothing.
    let r = env.invoke("createSecret", &arn, &token);
    assert_eq!(r["ok"], true, "{r:#}");
    assert_eq!(env.doc(&arn, "AWSPENDING").unwrap(), want);
    assert_eq!(env.keys("ses-smtp").len(), 1);
    assert_no_region_password_leaked(&env);
}

#[test]
fn malformed_or_disallowed_regions_are_refused_with_no_change() {
    let env = start(&[]);
    let base = env.bootstrap_doc("ses-smtp");
    let eu = |port: Value| json!({"region": OTHER, "host": "localhost", "port": port});
    let eu_port = port(&env, OTHER, "starttls_port");
    let secretish = "zzSeCrEt+Value/that-must-not-leak";
    // (regions, error type, what the message must say)
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!([eu(eu_port.clone()), eu(eu_port.clone())]),
            "MalformedSecret",
            "item 2 repeats region eu-west-1",
        ),
        (
            json!([{"region": PRIMARY, "host": "localhost", "port": eu_port.clone()}]),
            "MalformedSecret",
            "repeats the primary region us-east-1",
        ),
        (
            json!(["not a region"]),
            "MalformedSecret",
            "item 1 is not an AWS region code",
        ),
        (
            json!([secretish]),
            "MalformedSecret",
            "item 1 is not an AWS region code",
        ),
        // `host` is localhost: a bare code cannot name an endpoint.
        (
            json!([OTHER]),
            "MalformedSecret",
            "item 1 gives only a region code",
        ),
        (
            json!({"region": OTHER}),
            "MalformedSecret",
            "must be an array",
        ),
        (
            json!([{"region": OTHER, "host": "localhost", "port": secretish}]),
            "MalformedSecret",
            "item 1's \"port\"",
        ),
        (
            json!([{"region": OTHER, "host": "localhost", "tls": true}]),
            "MalformedSecret",
            "item 1's \"tls\"",
        ),
        // Well formed, but the endpoint is no SES endpoint and not in SMTP_ALLOWED_HOSTS.
        (
            json!([{"region": OTHER, "host": "smtp.collector.example", "port": 587}]),
            "HostNotAllowed",
            "regions names host smtp.collector.example",
        ),
    ];
    for (i, (regions, error_type, needle)) in cases.into_iter().enumerate() {
        let mut doc = base.clone();
        doc["regions"] = regions;
        let arn = env.create_secret(&format!("bad-regions-{i}"), &doc);
        // Secrets Manager makes the empty pending version first; nothing after it may change
        // (keys, stages, every version's document, tags, keys ever created).
        let token = env.pending(&arn);
        let before = env.snapshot("ses-smtp", &arn);
        let requests_before = env.requests().len();
        let r = env.rotate(&arn, Some(&token));
        assert_eq!(steps(&r).len(), 1, "{doc}: only createSecret runs: {r:#}");
        assert_refused(&env, &arn, "ses-smtp", &r, error_type, needle, &before);
        if error_type == "MalformedSecret" {
            let msg = r["steps"][0]["error_message"].as_str().unwrap();
            assert!(msg.contains("\"regions\""), "{msg}");
        }
        assert!(!r.to_string().contains(secretish), "{r:#}");
        // No IAM call changed anything and nothing was sent anywhere.
        let writes: Vec<String> = env.requests()[requests_before..]
            .iter()
            .filter_map(|q| q["action"].as_str().map(str::to_owned))
            .filter(|a| {
                ["Create", "Delete", "Tag", "Untag", "Update", "Put"]
                    .iter()
                    .any(|w| a.starts_with(w))
            })
            .collect();
        assert!(writes.is_empty(), "{doc}: {writes:?}");
    }
    assert!(env.get("/smtp/logins").as_array().unwrap().is_empty());
    assert!(env.get("/secrets-seen").as_array().unwrap().is_empty());

    // testSecret refuses a disallowed endpoint before any connection, too (the
    // RotateImmediately=false test of a current document).
    let mut doc = base;
    doc["regions"] = json!([{"region": OTHER, "host": "smtp.collector.example"}]);
    doc["username"] = "AKIAIOSFODNN7EXAMPLE".into();
    doc["password"] = "BMPPgbAHoFVbze1Ud0oA5uNdXRwUXUZ+qOwphGJbl/cS".into();
    let arn = env.create_secret("bad-regions-test", &doc);
    let r = env.post(
        "/rotate",
        json!({"secret_id": arn, "rotate_immediately": false}),
    );
    assert_eq!(steps(&r)[0].2, "HostNotAllowed", "{r:#}");
    assert!(env.get("/smtp/logins").as_array().unwrap().is_empty());
}
