//! The binary under the role policy that `template.yaml` deploys (rendered per variant by the
//! stand-in, deploy/cfn.py; authorized per request on action, resource ARN and condition keys,
//! tests/standin/sesstandin/policy.py). Every other end-to-end test runs under it too and fails
//! on any AccessDenied it did not provoke (tests/common, `Env`'s drop); these tests prove the
//! check bites, and cover what only a policy shows: shared scope's tag and path limits, a
//! customer managed KMS key, and IAM's real answer for a key that no longer exists.

mod common;

use common::{Env, USER_PATH, assert_invariants, assert_ok, setup, steps};
use serde_json::{Value, json};

const KMS_KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const OTHER_KMS_KEY: &str =
    "arn:aws:kms:us-east-1:123456789012:key/99999999-12ab-34cd-56ef-1234567890ab";

fn user_arn(env: &Env, name: &str) -> String {
    format!(
        "arn:aws:iam::{}:user{USER_PATH}{name}",
        env.info["account"].as_str().expect("account")
    )
}

#[test]
fn a_grant_missing_from_the_template_fails_the_rotation_and_names_what_it_lacked() {
    // The template as it was before iam:GetUser was granted: the deployed stack could not
    // rotate, and under its policy the tests cannot pass either.
    let (env, arn) = setup(&[]);
    let template = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("template.yaml"),
    )
    .expect("template");
    let without: String = template
        .lines()
        .filter(|l| l.trim() != "- iam:GetUser")
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(without, template, "template.yaml grants iam:GetUser");
    let old = env.dir.join("template-without-getuser.yaml");
    std::fs::write(&old, without).expect("write");
    env.policy(json!({
        "label": format!("single:{arn}"), "variant": "single-old",
        "template": old.to_str().expect("path"),
        "parameters": {"SmtpIamUserName": "ses-smtp", "SmtpIamUserPath": USER_PATH},
        "physical": {"SmtpSecret": arn},
    }));
    // Secrets Manager makes the empty pending version first; nothing after it may change.
    let token = env.pending(&arn);
    let before = env.snapshot("ses-smtp", &arn);
    let r = env.rotate(&arn, Some(&token));
    assert_eq!(r["ok"], false, "{r:#}");
    let s = steps(&r);
    assert_eq!(s.len(), 1, "{r:#}");
    assert_eq!(s[0].0, "createSecret");
    assert_eq!(s[0].2, "UserNotPermitted", "{r:#}");
    // The check names the action, the resource (the user's ARN with its path) and why no
    // statement of the stack's policy allowed it.
    assert_eq!(
        env.denials(),
        vec![("iam:GetUser".to_owned(), user_arn(&env, "ses-smtp"))]
    );
    let found = env.unexpected_denials();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("iam:GetUser")
            && found[0].contains(&user_arn(&env, "ses-smtp"))
            && found[0].contains("no statement grants iam:GetUser"),
        "{found:?}"
    );
    // Refused before any change; AccessDenied answered as IAM answers it.
    assert_eq!(env.snapshot("ses-smtp", &arn), before);
    let denied: Vec<Value> = env
        .requests()
        .into_iter()
        .filter(|q| q["error_code"] == "AccessDenied")
        .collect();
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(denied[0]["status"], 403);
    env.expect_denial("iam:GetUser");
}

/// A `Scope=shared` deployment (with `KmsKeyArn` = `kms`) whose secret `billing/smtp` has had
/// its bootstrap and one regular rotation.
fn shared_after_two_rotations(kms: Option<&str>) -> (Env, String) {
    let mut env = Env::start();
    env.deploy_shared(kms);
    env.create_user("billing-smtp");
    env.start_lambda(&[]);
    let billing = env.create_secret("billing/smtp", &env.bootstrap_doc("billing-smtp"));
    // Bootstrap, then two regular rotations: the last deletes the first one's old key.
    for _ in 0..3 {
        assert_ok(&env.rotate(&billing, None));
    }
    assert_invariants(&env, &billing, "billing-smtp");
    refuses_another_teams_key(&env);
    (env, billing)
}

/// A document whose current key is another team's user's (under the path, so the role may
/// read who owns it): refused by name before any change.
fn refuses_another_teams_key(env: &Env) {
    env.create_user("other-team");
    env.create_user("fresh-smtp");
    let other_key = env
        .block_on(env.iam.create_access_key().user_name("other-team").send())
        .expect("key");
    let other_id = other_key
        .access_key()
        .expect("key")
        .access_key_id()
        .to_owned();
    let mut doc = env.bootstrap_doc("fresh-smtp");
    doc["username"] = other_id.into();
    doc["password"] = "BMPPgbAHoFVbze1Ud0oA5uNdXRwUXUZ+qOwphGJbl/cS".into();
    let wrong = env.create_secret("wrong/smtp", &doc);
    let token = env.pending(&wrong);
    let before = env.snapshot("fresh-smtp", &wrong);
    let r = env.rotate(&wrong, Some(&token));
    common::assert_refused(
        env,
        &wrong,
        "fresh-smtp",
        &r,
        "KeyBelongsToOtherUser",
        "other-team",
        &before,
    );
    assert_eq!(env.keys("other-team").len(), 1);
}

#[test]
fn shared_scope_reaches_only_tagged_secrets_and_users_under_its_path() {
    let (env, _billing) = shared_after_two_rotations(None);

    // A secret without the managed tag: Secrets Manager refuses the function its first call.
    let untagged = env.create_secret_as(
        "untagged/smtp",
        &env.bootstrap_doc("billing-smtp"),
        false,
        None,
    );
    let keys_before = env.keys("billing-smtp");
    let r = env.rotate(&untagged, None);
    assert_eq!(r["ok"], false, "{r:#}");
    let s = steps(&r);
    assert_eq!(s[0].2, "SecretsManagerError", "{r:#}");
    assert!(!s[0].1 && r.to_string().contains("AccessDenied"), "{r:#}");
    assert_eq!(
        env.denials(),
        vec![("secretsmanager:DescribeSecret".to_owned(), untagged.clone())]
    );
    assert_eq!(env.keys("billing-smtp"), keys_before);
    env.expect_denial("secretsmanager:DescribeSecret");
}

#[test]
fn a_secret_under_a_customer_managed_key_rotates_through_secrets_manager_only() {
    let (env, arn) = shared_after_two_rotations(Some(KMS_KEY));
    let used = env.allowed_actions();
    for action in ["kms:Decrypt", "kms:GenerateDataKey"] {
        assert!(used.iter().any(|a| a == action), "{action} never used");
    }

    // The scheduled maintenance under the same role: it finds the managed secrets
    // (ListSecrets), asks how long a rotation has been pending (ListSecretVersionIds) and
    // reads AWSCURRENT through the key for its login.
    let token = env.pending(&arn);
    let r = env.maintain(None);
    assert_eq!(r["ok"], true, "{r:#}");
    let report = &r["response"]["reports"][0];
    assert_eq!(report["secret"], arn.as_str(), "{r:#}");
    assert_eq!(report["pending_version"], token.as_str(), "{r:#}");
    assert_eq!(report["current_login_ok"], true, "{r:#}");
    let used = env.allowed_actions();
    for action in [
        "secretsmanager:ListSecrets",
        "secretsmanager:ListSecretVersionIds",
    ] {
        assert!(used.iter().any(|a| a == action), "{action} never used");
    }

    // A managed secret under another key: the role may not use that key.
    env.create_user("alerts-smtp");
    let other = env.create_secret_as(
        "alerts/smtp",
        &env.bootstrap_doc("alerts-smtp"),
        true,
        Some(OTHER_KMS_KEY),
    );
    let r = env.rotate(&other, None);
    assert_eq!(r["ok"], false, "{r:#}");
    assert!(
        r.to_string().contains("Access to KMS is not allowed"),
        "{r:#}"
    );
    assert!(env.keys("alerts-smtp").is_empty());
    assert_eq!(
        env.denials(),
        vec![("kms:Decrypt".to_owned(), OTHER_KMS_KEY.to_owned())]
    );
    env.expect_denial("kms:Decrypt");
}

/// Moves every createSecret attempt recorded on the user back by `secs` (as if that much
/// time had passed since they began). An attempt's start is part of its tag's key
/// (`ses-smtp-rotator:creating-key:<token>.<started ms>.<nonce>`), so each becomes a new tag.
fn age_marker(env: &Env, user: &str, secs: i64) {
    const PREFIX: &str = "ses-smtp-rotator:creating-key:";
    let attempts: Vec<(String, String)> = env
        .user_tags(user)
        .into_iter()
        .filter(|(k, _)| k.starts_with(PREFIX))
        .collect();
    assert!(!attempts.is_empty(), "no attempt recorded on {user}");
    for (key, value) in attempts {
        let id: Vec<&str> = key[PREFIX.len()..].split('.').collect();
        let ms: i64 = id[1].parse().expect("started ms");
        env.block_on(env.iam.untag_user().user_name(user).tag_keys(&key).send())
            .expect("untag");
        let aged = format!("{PREFIX}{}.{}.{}", id[0], ms - secs * 1000, id[2]);
        env.tag_user(user, &aged, &value);
    }
}

/// A pending key deleted by hand, with GetAccessKeyLastUsed answering for the missing key as
/// AWS does (AccessDenied) or as moto does (NoSuchEntity): the rotation converges either way.
fn pending_key_deleted(answer: &str) {
    let (env, arn) = setup(&[]);
    env.policy(json!({"missing_key_answer": answer}));
    assert_ok(&env.rotate(&arn, None));
    let token = env.pending(&arn);
    assert_eq!(env.invoke("createSecret", &arn, &token)["ok"], true);
    let current_key = env.current_key(&arn);
    let key = env
        .all_docs(&arn)
        .into_iter()
        .filter_map(|d| d["username"].as_str().map(str::to_owned))
        .find(|u| *u != current_key)
        .expect("pending key");
    env.block_on(
        env.iam
            .delete_access_key()
            .user_name("ses-smtp")
            .access_key_id(&key)
            .send(),
    )
    .expect("delete");
    let mut r = env.invoke("setSecret", &arn, &token);
    if answer == "AccessDenied" {
        // AccessDenied is also what IAM answers for a key too new to be visible: while the
        // attempt that made it is recent the step waits (retryable, nothing changed).
        assert_eq!(r["error_type"], "KeyNotYetVisible", "{r:#}");
        assert_eq!(
            env.version_with(&arn, "AWSPENDING").as_deref(),
            Some(token.as_str())
        );
        age_marker(&env, "ses-smtp", 600);
        r = env.invoke("setSecret", &arn, &token);
    }
    assert_eq!(r["error_type"], "PendingKeyGone", "{r:#}");
    assert!(
        r["error_message"]
            .as_str()
            .is_some_and(|m| m.contains(&key) && m.contains("next rotation starts fresh")),
        "{r:#}"
    );
    assert_eq!(env.version_with(&arn, "AWSPENDING"), None);
    assert_ok(&env.rotate(&arn, None));
    assert_invariants(&env, &arn, "ses-smtp");
    let answered: Vec<Value> = env.get("/policy")["decisions"]
        .as_array()
        .expect("decisions")
        .iter()
        .filter(|d| d["decision"] == "missing-key")
        .cloned()
        .collect();
    assert!(!answered.is_empty(), "the missing key was never looked up");
    assert!(answered.iter().all(|d| d["by"] == answer), "{answered:?}");
}

#[test]
fn a_pending_key_deleted_by_hand_converges_with_aws_answer_for_a_missing_key() {
    pending_key_deleted("AccessDenied");
}

#[test]
fn a_pending_key_deleted_by_hand_converges_with_motos_answer_for_a_missing_key() {
    pending_key_deleted("NoSuchEntity");
}
