//! One function for a fleet (template `Scope=shared`): one binary rotates many secrets, each
//! with its own user under `IAM_USER_PATH`, and refuses a user outside that path before any
//! change. It runs under the shared variant's role policy (tagged secrets, users under the path).

mod common;

use common::{Env, assert_invariants, assert_ok, assert_refused, steps};
use serde_json::{Value, json};

fn user_under(env: &Env, name: &str, path: &str) {
    env.block_on(env.iam.create_user().user_name(name).path(path).send())
        .expect("create user");
}

fn event(step: &str, arn: &str, token: &str) -> Value {
    json!({"Step": step, "SecretId": arn, "ClientRequestToken": token})
}

#[test]
fn one_function_rotates_many_secrets_and_only_users_under_its_path() {
    let mut env = Env::start();
    env.deploy_shared(None);
    user_under(&env, "billing-smtp", "/ses-smtp/");
    user_under(&env, "alerts-smtp", "/ses-smtp/team-a/");
    user_under(&env, "intruder", "/ses-smtp-other/");
    env.start_lambda(&[]);
    let billing = env.create_secret("billing/smtp", &env.bootstrap_doc("billing-smtp"));
    let alerts = env.create_secret("alerts/smtp", &env.bootstrap_doc("alerts-smtp"));

    // One binary process, two secrets, two users: bootstrap and a regular rotation each.
    for arn in [&billing, &alerts] {
        assert_ok(&env.rotate(arn, None));
        assert_ok(&env.rotate(arn, None));
    }
    assert_invariants(&env, &billing, "billing-smtp");
    assert_invariants(&env, &alerts, "alerts-smtp");
    assert_ne!(env.current_key(&billing), env.current_key(&alerts));

    // Both secrets rotating at the same moment through two instances of the function (one
    // schedule for a fleet): neither is throttled by the other nor touches the other's keys.
    env.add_lambda(&[]);
    let tb = env.pending(&billing);
    let ta = env.pending(&alerts);
    for step in ["createSecret", "setSecret", "testSecret", "finishSecret"] {
        let events = json!({"events": [event(step, &billing, &tb), event(step, &alerts, &ta)]});
        let results = env.post("/invoke-many", events);
        for r in results.as_array().expect("results") {
            assert_eq!(r["ok"], true, "{step}: {r:#}");
        }
    }
    assert_eq!(
        env.version_with(&billing, "AWSCURRENT").as_deref(),
        Some(tb.as_str())
    );
    assert_eq!(
        env.version_with(&alerts, "AWSCURRENT").as_deref(),
        Some(ta.as_str())
    );
    assert_invariants(&env, &billing, "billing-smtp");
    assert_invariants(&env, &alerts, "alerts-smtp");

    // A user whose path only starts like the allowed one is outside it: the role's policy
    // (users under /ses-smtp/) denies even reading it, so the function refuses by name with
    // no change, and makes no other call about that user (no tag, no key call).
    let outside = env.create_secret("intruder/smtp", &env.bootstrap_doc("intruder"));
    let token = env.pending(&outside);
    let before = env.snapshot("intruder", &outside);
    let r = env.rotate(&outside, Some(&token));
    assert_refused(
        &env,
        &outside,
        "intruder",
        &r,
        "UserNotPermitted",
        "/ses-smtp/",
        &before,
    );
    assert_eq!(steps(&r).len(), 1, "{r:#}");
    assert!(env.keys("intruder").is_empty());
    let account = env.info["account"].as_str().expect("account").to_owned();
    assert_eq!(
        env.denials(),
        vec![(
            "iam:GetUser".to_owned(),
            format!("arn:aws:iam::{account}:user/ses-smtp-other/intruder")
        )]
    );
    env.expect_denial("iam:GetUser");
    env.stop_lambda();
    env.assert_no_secrets_leaked(Some(&billing));
}
