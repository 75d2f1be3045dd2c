//! The key record (issue 21): only keys the function can prove it made for a secret are ever
//! retired, whatever a document says; a shared deployment never claims a user; an operator's
//! edit never wedges a secret. Each test here is one way the function used to be steered or
//! wedged, end to end through the binary under the deployed role policy.

mod common;

use common::{Env, Snapshot, assert_invariants, assert_ok, assert_refused, setup, steps};
use serde_json::{Value, json};

fn put_current(env: &Env, arn: &str, doc: &Value) -> String {
    let out = env
        .block_on(
            env.sm
                .put_secret_value()
                .secret_id(arn)
                .secret_string(doc.to_string())
                .send(),
        )
        .expect("put secret value");
    out.version_id().expect("version").to_owned()
}

fn move_stage(env: &Env, arn: &str, stage: &str, to: &str, from: Option<&str>) {
    env.block_on(
        env.sm
            .update_secret_version_stage()
            .secret_id(arn)
            .version_stage(stage)
            .move_to_version_id(to)
            .set_remove_from_version_id(from.map(str::to_owned))
            .send(),
    )
    .expect("update stage");
}

fn last_step(result: &Value) -> (String, String) {
    let last = result["steps"]
        .as_array()
        .and_then(|s| s.last())
        .cloned()
        .unwrap_or_else(|| result.clone());
    (
        last["error_type"].as_str().unwrap_or_default().to_owned(),
        last["error_message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

fn tag(env: &Env, user: &str, key: &str) -> Option<String> {
    env.user_tags(user)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

fn record_state(env: &Env, user: &str, key_id: &str) -> Option<String> {
    tag(env, user, &format!("ses-smtp-rotator:key:{key_id}")).map(|v| {
        if v == "adopt" {
            v
        } else {
            v.split(':').nth(2).unwrap_or_default().to_owned()
        }
    })
}

/// A key made by hand for `ses-smtp`: its id and its SMTP password for the stand-in's region.
fn hand_made_key(env: &Env) -> (String, String) {
    let made = env
        .block_on(env.iam.create_access_key().user_name("ses-smtp").send())
        .expect("create key");
    let key = made.access_key().expect("key");
    let password = ses_smtp_rotator::password::derive_smtp_password(
        &ses_smtp_rotator::password::SecretAccessKey::new(key.secret_access_key()).expect("secret"),
        &ses_smtp_rotator::password::Region::new(env.region()).expect("region"),
    );
    (key.access_key_id().to_owned(), password.expose().to_owned())
}

/// Everything of another team's secret and user (the stand-in-wide count of keys created
/// left out: other teams make keys meanwhile).
fn team_state(env: &Env, user: &str, arn: &str) -> Snapshot {
    Snapshot {
        keys_created: 0,
        ..env.snapshot(user, arn)
    }
}

/// A second team in a shared deployment: its user, its secret, its first rotation.
fn team(env: &Env, name: &str) -> String {
    env.create_user(name);
    let arn = env.create_secret(&format!("{name}/smtp"), &env.bootstrap_doc(name));
    assert_ok(&env.rotate(&arn, None));
    arn
}

#[test]
fn a_tenant_cannot_switch_off_another_teams_key_through_awsprevious() {
    let mut env = Env::start();
    env.deploy_shared(None);
    env.start_lambda(&[]);
    let a = team(&env, "team-a");
    let b = team(&env, "team-b");
    assert_ok(&env.rotate(&a, None));
    let token = env.version_with(&a, "AWSCURRENT").expect("current");
    let b_before = team_state(&env, "team-b", &b);
    let a_keys = env.keys("team-a");

    // A principal that may write team A's versions: AWSPREVIOUS becomes a document naming
    // team B's user and working key, AWSCURRENT goes back to the rotation's token, and
    // finishSecret is invoked again for that token.
    let hostile = env.doc(&b, "AWSCURRENT").expect("team B's document");
    let written = put_current(&env, &a, &hostile);
    move_stage(&env, &a, "AWSCURRENT", &token, Some(&written));
    assert_eq!(
        env.version_with(&a, "AWSPREVIOUS").as_deref(),
        Some(written.as_str()),
        "the set-up must leave the hostile document as AWSPREVIOUS"
    );
    let r = env.invoke("finishSecret", &a, &token);
    assert_eq!(r["ok"], true, "{r:#}");

    // Team B: nothing changed at all, and its mail still logs in.
    assert_eq!(team_state(&env, "team-b", &b), b_before);
    let (ok, out) = env.login(&env.doc(&b, "AWSCURRENT").unwrap());
    assert!(ok, "team B's credentials were switched off: {out}");
    assert_eq!(env.keys("team-a"), a_keys);
}

#[test]
fn a_shared_deployment_never_claims_an_untagged_user() {
    let mut env = Env::start();
    env.deploy_shared(None);
    env.start_lambda(&[]);
    let a = team(&env, "team-a");
    let a_before = team_state(&env, "team-a", &a);
    // A user under the path whose stack has not tagged it yet; a managed secret names it.
    env.create_user("team-c");
    let c = env.create_secret_as("squatter/smtp", &env.bootstrap_doc("team-c"), true, None);
    let token = env.pending(&c);
    let before = env.snapshot("team-c", &c);
    let r = env.rotate(&c, Some(&token));
    assert_refused(
        &env,
        &c,
        "team-c",
        &r,
        "UserNotAssigned",
        "never claims",
        &before,
    );
    assert!(
        env.user_tags("team-c").is_empty(),
        "{:?}",
        env.user_tags("team-c")
    );
    assert_eq!(team_state(&env, "team-a", &a), a_before);

    // Once the stack that owns both tags the user, the same secret rotates.
    env.assign_user("team-c", &c);
    assert_ok(&env.rotate(&c, Some(&token)));
    assert_invariants(&env, &c, "team-c");
    assert_eq!(team_state(&env, "team-a", &a), a_before);
}

fn an_edit_after_a_rotation_does_not_wedge_the_next(action: &str) {
    let (env, arn) = setup(&[("OLD_KEY_ACTION", action)]);
    assert_ok(&env.rotate(&arn, None));
    assert_ok(&env.rotate(&arn, None));
    // The operator adds a field, as README suggests: AWSPREVIOUS moves onto the current key's
    // version, and the key the last rotation retired is named by no version any more.
    let mut doc = env.doc(&arn, "AWSCURRENT").unwrap();
    doc["note"] = "added by an operator".into();
    put_current(&env, &arn, &doc);
    let old: Vec<String> = env
        .keys("ses-smtp")
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| *k != env.current_key(&arn))
        .collect();
    assert_eq!(old.len(), 1, "the last rotation's old key is still there");
    assert_eq!(
        env.doc(&arn, "AWSPREVIOUS").unwrap()["username"],
        env.current_key(&arn).as_str(),
        "the set-up must leave AWSPREVIOUS naming the current key"
    );
    let r = env.rotate(&arn, None);
    assert_ok(&r);
    assert_invariants(&env, &arn, "ses-smtp");
    assert_eq!(
        env.doc(&arn, "AWSCURRENT").unwrap()["note"],
        "added by an operator"
    );
    for k in &old {
        assert!(
            !env.keys("ses-smtp").iter().any(|(x, _)| x == k),
            "{k} was not retired"
        );
    }
}

#[test]
fn an_operator_edit_after_a_rotation_that_deactivated_the_old_key_does_not_wedge() {
    an_edit_after_a_rotation_does_not_wedge_the_next("deactivate");
}

#[test]
fn an_operator_edit_after_a_rotation_that_kept_the_old_key_does_not_wedge() {
    an_edit_after_a_rotation_does_not_wedge_the_next("keep");
}

#[test]
fn a_failed_rotation_then_a_fixed_port_is_cleared_and_the_next_rotation_completes() {
    let (env, arn) = setup(&[]);
    assert_ok(&env.rotate(&arn, None));
    let good = env.doc(&arn, "AWSCURRENT").unwrap();
    let current_key = env.current_key(&arn);
    // The operator sets a wrong port; the next rotation fails at testSecret.
    let mut wrong = good.clone();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    wrong["port"] = json!(closed);
    put_current(&env, &arn, &wrong);
    let r = env.rotate(&arn, None);
    assert_eq!(
        steps(&r).last().map(|s| s.0.as_str()),
        Some("testSecret"),
        "{r:#}"
    );
    assert_eq!(r["ok"], false, "{r:#}");
    let token = env
        .version_with(&arn, "AWSPENDING")
        .expect("the failed rotation's version");
    let pending_key = env.doc(&arn, "AWSPENDING").unwrap()["username"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(env.keys("ses-smtp").len(), 2);

    // The operator puts the right port back; Secrets Manager retries the same token.
    put_current(&env, &arn, &good);
    let r = env.rotate(&arn, Some(&token));
    let (t, m) = last_step(&r);
    assert_eq!(t, "PendingMismatch", "{r:#}");
    assert!(m.contains("port") && m.contains("starts fresh"), "{m}");
    // Cleared: AWSPENDING on no version, the pending key deleted, the current one untouched.
    assert!(
        !env.stages(&arn)
            .iter()
            .any(|(_, s)| s.iter().any(|x| x == "AWSPENDING")),
        "{:?}",
        env.stages(&arn)
    );
    let keys: Vec<String> = env.keys("ses-smtp").into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, vec![current_key.clone()]);
    assert!(!keys.contains(&pending_key));

    // The next rotation starts fresh and completes.
    assert_ok(&env.rotate(&arn, None));
    assert_invariants(&env, &arn, "ses-smtp");
    assert_eq!(env.doc(&arn, "AWSCURRENT").unwrap()["port"], good["port"]);
}

#[test]
fn a_lagging_read_of_the_pending_version_never_deletes_its_key() {
    let (env, arn) = setup(&[]);
    assert_ok(&env.rotate(&arn, None));
    let token = env.pending(&arn);
    let r = env.invoke("createSecret", &arn, &token);
    assert_eq!(r["ok"], true, "{r:#}");
    let pending_key = env.doc(&arn, "AWSPENDING").unwrap()["username"]
        .as_str()
        .unwrap()
        .to_owned();
    // createSecret again while the pending version's value is not yet readable (the second
    // GetSecretValue of the step: AWSCURRENT's is the first).
    env.post(
        "/faults",
        json!({"service": "secretsmanager", "action": "GetSecretValue", "mode": "fail_before",
               "status": 400, "code": "ResourceNotFoundException",
               "message": "Secrets Manager can't find the specified secret value for VersionId",
               "count": 1, "skip": 1}),
    );
    let r = env.invoke("createSecret", &arn, &token);
    assert_eq!(r["ok"], false, "{r:#}");
    assert_eq!(r["error_type"], "PendingNotReadable", "{r:#}");
    assert!(
        env.keys("ses-smtp").iter().any(|(k, _)| *k == pending_key),
        "the pending version's own key was deleted"
    );
    // The retry completes the rotation with that very key.
    assert_ok(&env.rotate(&arn, Some(&token)));
    assert_eq!(env.current_key(&arn), pending_key);
    assert_invariants(&env, &arn, "ses-smtp");
}

#[test]
fn writing_awscurrent_cannot_choose_which_key_is_deleted() {
    let (env, arn) = setup(&[]);
    assert_ok(&env.rotate(&arn, None));
    let production = env.current_key(&arn);
    // Someone made a key by hand; a principal with PutSecretValue alone names it in AWSCURRENT.
    let (hand_id, _) = hand_made_key(&env);
    let mut doc = env.doc(&arn, "AWSCURRENT").unwrap();
    doc["username"] = hand_id.clone().into();
    put_current(&env, &arn, &doc);
    let token = env.pending(&arn);
    let before = env.snapshot("ses-smtp", &arn);
    let r = env.rotate(&arn, Some(&token));
    assert_refused(
        &env,
        &arn,
        "ses-smtp",
        &r,
        "UnadoptedAccessKey",
        &hand_id,
        &before,
    );
    let (_, m) = last_step(&r);
    assert!(
        m.contains("named by AWSCURRENT") && m.contains("Value=adopt"),
        "{m}"
    );
    assert!(
        env.keys("ses-smtp")
            .contains(&(production.clone(), "Active".to_owned())),
        "the production key was touched"
    );
}

#[test]
fn an_adopted_key_is_rotated_and_then_retired() {
    let (env, arn) = setup(&[]);
    assert_ok(&env.rotate(&arn, None));
    let ours = env.current_key(&arn);
    // The operator hands a key of their own to the rotation: they put it in AWSCURRENT and
    // tag it as adopted (PutSecretValue alone cannot do the second).
    let (key_id, password) = hand_made_key(&env);
    let mut doc = env.doc(&arn, "AWSCURRENT").unwrap();
    doc["username"] = key_id.as_str().into();
    doc["password"] = password.clone().into();
    put_current(&env, &arn, &doc);
    env.tag_user(
        "ses-smtp",
        &format!("ses-smtp-rotator:key:{}", key_id.as_str()),
        "adopt",
    );
    // Our earlier key is recorded current but no longer named by AWSCURRENT: the record
    // proves it this secret's, so the rotation deletes it to make room; the adopted key is
    // then retired like any recorded key.
    assert_ok(&env.rotate(&arn, None));
    let keys = env.keys("ses-smtp");
    assert!(!keys.iter().any(|(k, _)| *k == ours), "{keys:?}");
    assert!(
        keys.contains(&(key_id.clone(), "Inactive".to_owned())),
        "{keys:?}"
    );
    assert_eq!(
        record_state(&env, "ses-smtp", key_id.as_str()).as_deref(),
        Some("r")
    );
    assert_invariants(&env, &arn, "ses-smtp");
}

#[test]
fn a_user_an_earlier_release_rotated_is_taken_over_without_an_error() {
    // What the previous release left: the owner tag, AWSCURRENT naming the current key,
    // AWSPREVIOUS the deactivated old one, and no key record.
    let (env, arn) = setup(&[]);
    assert_ok(&env.rotate(&arn, None));
    assert_ok(&env.rotate(&arn, None));
    let current = env.current_key(&arn);
    let old: Vec<String> = env
        .keys("ses-smtp")
        .into_iter()
        .filter(|(_, s)| s == "Inactive")
        .map(|(k, _)| k)
        .collect();
    assert_eq!(old.len(), 1);
    let records: Vec<String> = env
        .user_tags("ses-smtp")
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("ses-smtp-rotator:key:"))
        .collect();
    assert_eq!(records.len(), 2, "a record per key");
    env.block_on(
        env.iam
            .untag_user()
            .user_name("ses-smtp")
            .set_tag_keys(Some(records))
            .send(),
    )
    .expect("untag");
    assert_ok(&env.rotate(&arn, None));
    assert_invariants(&env, &arn, "ses-smtp");
    let keys = env.keys("ses-smtp");
    assert!(!keys.iter().any(|(k, _)| *k == old[0]), "{keys:?}");
    assert!(
        keys.contains(&(current.clone(), "Inactive".to_owned())),
        "{keys:?}"
    );
    assert_eq!(
        record_state(&env, "ses-smtp", &current).as_deref(),
        Some("r")
    );
}

#[test]
fn an_unreadable_record_is_refused_before_any_change() {
    let (env, arn) = setup(&[]);
    assert_ok(&env.rotate(&arn, None));
    let current = env.current_key(&arn);
    for (key, value) in [
        (format!("ses-smtp-rotator:key:{current}"), "current"),
        ("ses-smtp-rotator:creating-key".to_owned(), "edited by hand"),
        (
            "ses-smtp-rotator:creating-key:0a1b2c3d.1765000000000.beef".to_owned(),
            "edited by hand",
        ),
    ] {
        let saved = tag(&env, "ses-smtp", &key);
        env.tag_user("ses-smtp", &key, value);
        let token = env.pending(&arn);
        let before: Snapshot = env.snapshot("ses-smtp", &arn);
        let r = env.rotate(&arn, Some(&token));
        assert_refused(
            &env,
            &arn,
            "ses-smtp",
            &r,
            "KeyRecordUnreadable",
            &key,
            &before,
        );
        match saved {
            Some(v) => env.tag_user("ses-smtp", &key, &v),
            None => {
                env.block_on(
                    env.iam
                        .untag_user()
                        .user_name("ses-smtp")
                        .tag_keys(&key)
                        .send(),
                )
                .expect("untag");
            }
        }
        // The pending version the refused attempt left is cleared by the next attempt's
        // orchestration; here the test simply cancels it.
        if let Some(p) = env.version_with(&arn, "AWSPENDING") {
            env.block_on(
                env.sm
                    .update_secret_version_stage()
                    .secret_id(&arn)
                    .version_stage("AWSPENDING")
                    .remove_from_version_id(p)
                    .send(),
            )
            .expect("cancel");
        }
    }
    assert_ok(&env.rotate(&arn, None));
    assert_invariants(&env, &arn, "ses-smtp");
}

#[test]
fn the_record_names_every_key_and_what_became_of_it() {
    let (env, arn) = setup(&[]);
    assert_ok(&env.rotate(&arn, None));
    let first = env.current_key(&arn);
    assert_eq!(record_state(&env, "ses-smtp", &first).as_deref(), Some("c"));
    assert_ok(&env.rotate(&arn, None));
    let second = env.current_key(&arn);
    assert_eq!(
        record_state(&env, "ses-smtp", &second).as_deref(),
        Some("c")
    );
    assert_eq!(record_state(&env, "ses-smtp", &first).as_deref(), Some("r"));
    // The next rotation deletes the retired key and its record with it.
    assert_ok(&env.rotate(&arn, None));
    assert_eq!(record_state(&env, "ses-smtp", &first), None);
    let ours: Vec<(String, String)> = env
        .user_tags("ses-smtp")
        .into_iter()
        .filter(|(k, _)| k.starts_with("ses-smtp-rotator:"))
        .collect();
    // Owner tag + one record per existing key; the marker is gone after a completed rotation.
    assert_eq!(ours.len(), 3, "{ours:?}");
    for (k, v) in &ours {
        assert!(k.len() <= 128 && v.len() <= 256, "{k}={v}");
    }
}

#[test]
fn stage_moves_and_edits_by_an_operator_are_followed_by_a_rotation_that_completes() {
    let (env, arn) = setup(&[("OLD_KEY_ACTION", "keep")]);
    assert_ok(&env.rotate(&arn, None));
    assert_ok(&env.rotate(&arn, None));

    // 1. Promoted by hand: AWSCURRENT moved onto a pending version, finishSecret never ran.
    let token = env.pending(&arn);
    for step in ["createSecret", "setSecret", "testSecret"] {
        assert_eq!(env.invoke(step, &arn, &token)["ok"], true, "{step}");
    }
    let from = env.version_with(&arn, "AWSCURRENT");
    move_stage(&env, &arn, "AWSCURRENT", &token, from.as_deref());
    assert_ok(&env.rotate(&arn, None));
    assert_invariants(&env, &arn, "ses-smtp");

    // 2. Rolled back: AWSCURRENT moved back onto AWSPREVIOUS (its key still Active: keep).
    let previous = env.version_with(&arn, "AWSPREVIOUS").expect("previous");
    let from = env.version_with(&arn, "AWSCURRENT");
    move_stage(&env, &arn, "AWSCURRENT", &previous, from.as_deref());
    assert_ok(&env.rotate(&arn, None));
    assert_invariants(&env, &arn, "ses-smtp");

    // 3. An operator field edited during a rotation: the pending version would undo the edit,
    //    so it is cleared; the next rotation keeps the edit.
    let token = env.pending(&arn);
    assert_eq!(env.invoke("createSecret", &arn, &token)["ok"], true);
    let mut doc = env.doc(&arn, "AWSCURRENT").unwrap();
    doc["team"] = json!({"owner": "someone new"});
    put_current(&env, &arn, &doc);
    let r = env.rotate(&arn, Some(&token));
    let (t, m) = last_step(&r);
    assert_eq!(t, "PendingMismatch", "{r:#}");
    assert!(
        m.contains("other fields") && !m.contains("someone new"),
        "{m}"
    );
    assert_ok(&env.rotate(&arn, None));
    assert_eq!(
        env.doc(&arn, "AWSCURRENT").unwrap()["team"],
        json!({"owner": "someone new"})
    );
    assert_invariants(&env, &arn, "ses-smtp");
}

#[test]
fn a_key_deleted_while_it_is_promoted_never_stays_awscurrent() {
    let (env, arn) = setup(&[]);
    assert_ok(&env.rotate(&arn, None));
    let before = env.doc(&arn, "AWSCURRENT").unwrap();
    let token = env.pending(&arn);
    for step in ["createSecret", "setSecret", "testSecret"] {
        assert_eq!(env.invoke(step, &arn, &token)["ok"], true, "{step}");
    }
    let pending_key = env.doc(&arn, "AWSPENDING").unwrap()["username"]
        .as_str()
        .unwrap()
        .to_owned();
    // finishSecret has checked the key; while its stage move is on the way, someone deletes
    // the key.
    env.post(
        "/latency",
        json!({"service": "secretsmanager", "action": "UpdateSecretVersionStage", "seconds": 2}),
    );
    let r = std::thread::scope(|s| {
        let finish = s.spawn(|| env.invoke("finishSecret", &arn, &token));
        std::thread::sleep(std::time::Duration::from_millis(1000));
        env.block_on(
            env.iam
                .delete_access_key()
                .user_name("ses-smtp")
                .access_key_id(&pending_key)
                .send(),
        )
        .expect("delete");
        finish.join().expect("finish")
    });
    env.delete("/latency");
    assert_eq!(r["ok"], false, "{r:#}");
    assert_eq!(r["error_type"], "PendingKeyGone", "{r:#}");
    // AWSCURRENT is back on the working credentials; the next rotation completes.
    assert_eq!(env.doc(&arn, "AWSCURRENT").as_ref(), Some(&before));
    let (ok, out) = env.login(&before);
    assert!(ok, "{out}");
    assert_ok(&env.rotate(&arn, None));
    assert_invariants(&env, &arn, "ses-smtp");
}

#[test]
fn a_pending_key_deactivated_by_hand_is_cleared_and_the_next_rotation_completes() {
    let (env, arn) = setup(&[]);
    assert_ok(&env.rotate(&arn, None));
    let current = env.current_key(&arn);
    let token = env.pending(&arn);
    assert_eq!(env.invoke("createSecret", &arn, &token)["ok"], true);
    let pending_key = env.doc(&arn, "AWSPENDING").unwrap()["username"]
        .as_str()
        .unwrap()
        .to_owned();
    env.block_on(
        env.iam
            .update_access_key()
            .user_name("ses-smtp")
            .access_key_id(&pending_key)
            .status(aws_sdk_iam::types::StatusType::Inactive)
            .send(),
    )
    .unwrap();
    let r = env.invoke("setSecret", &arn, &token);
    assert_eq!(r["error_type"], "PendingKeyNotActive", "{r:#}");
    assert!(
        r["error_message"]
            .as_str()
            .is_some_and(|m| m.contains("starts fresh")),
        "{r:#}"
    );
    assert!(
        !env.stages(&arn)
            .iter()
            .any(|(_, s)| s.iter().any(|x| x == "AWSPENDING")),
        "AWSPENDING left on the version: the secret would be wedged"
    );
    assert_eq!(env.current_key(&arn), current);
    assert_ok(&env.rotate(&arn, None));
    assert!(
        !env.keys("ses-smtp").iter().any(|(k, _)| *k == pending_key),
        "the abandoned key stayed"
    );
    assert_invariants(&env, &arn, "ses-smtp");
}
