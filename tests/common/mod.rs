//! End-to-end harness: starts the AWS stand-in (tests/standin/standin.py) and the real
//! `ses-smtp-rotator` binary under its Lambda Runtime API, and reads state back from moto (with
//! the AWS SDK) and from the SES emulator (admin API).
//!
//! Every test gets its own stand-in on its own ports, so tests run in parallel. The stand-in
//! exits when its stdin closes (when this harness is dropped or the test process dies).
#![allow(dead_code)]

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_config::BehaviorVersion;
use serde_json::{Value, json};
use ses_smtp_rotator::password::{Region, SecretAccessKey, derive_smtp_password};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The binary under test: the Lambda build (`SES_SMTP_ROTATOR_BIN`, set by the Makefile), else
/// cargo's debug build.
pub fn binary() -> PathBuf {
    std::env::var_os("SES_SMTP_ROTATOR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_ses-smtp-rotator")))
}

fn python() -> PathBuf {
    std::env::var_os("STANDIN_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/bin/python"))
}

/// One stand-in, at most one running Lambda binary, and SDK clients pointed at moto.
pub struct Env {
    standin: Child,
    standin_stdin: Option<ChildStdin>,
    pub info: Value,
    pub dir: PathBuf,
    rt: tokio::runtime::Runtime,
    pub iam: aws_sdk_iam::Client,
    pub sm: aws_sdk_secretsmanager::Client,
    lambdas: Vec<Child>,
    lambda_logs: Vec<PathBuf>,
    agent: ureq::Agent,
    /// The deployment the binary runs as (its role policy, its `IAM_USER_PATH`).
    scope: Scope,
    /// Actions whose AccessDenied the test provokes on purpose (checked at drop).
    expected_denials: std::sync::Mutex<Vec<String>>,
}

/// The path of every user `create_user` makes: the template's default `SmtpIamUserPath`.
pub const USER_PATH: &str = "/ses-smtp/";

/// How the binary is deployed, for its role policy (rendered by the stand-in from
/// `template.yaml`, deploy/cfn.py) and its environment (`IAM_USER_PATH`, as the template sets
/// it from `SmtpIamUserPath`).
#[derive(Clone, Debug, PartialEq)]
pub enum Scope {
    /// `Scope=single` with the template's defaults: the stack creates the user under
    /// [`USER_PATH`] and the secret. Each secret the test creates is one such stack (its ARN
    /// and its document's `iam_user`), and the binary's role holds the policies of them all:
    /// a request is allowed when one stack's policy allows it.
    Single,
    /// `Scope=shared` (one policy for every secret tagged `ses-smtp-rotator:managed=true` and
    /// every user under [`USER_PATH`]); `kms` = with `KmsKeyArn`, and secrets encrypted with it.
    Shared { kms: Option<String> },
}

impl Drop for Env {
    fn drop(&mut self) {
        self.stop_lambda();
        // Every AWS request of the binary ran under the deployed role policy: one it denied
        // fails the test (unless the test provoked it), naming action, resource and why.
        let unexpected = if std::thread::panicking() {
            Vec::new()
        } else {
            self.unexpected_denials()
        };
        // Closing its stdin lets the stand-in exit cleanly (removing its certificates); kill
        // it only if it does not.
        drop(self.standin_stdin.take());
        let end = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < end {
            if let Ok(Some(_)) = self.standin.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.standin.kill();
        let _ = self.standin.wait();
        if !std::thread::panicking() && unexpected.is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("test artefacts kept in {}", self.dir.display());
        }
        assert!(
            unexpected.is_empty(),
            "the role policy rendered from template.yaml ({:?}) denied requests of the binary:\n{}",
            self.scope,
            unexpected.join("\n")
        );
    }
}

impl Env {
    /// Starts a stand-in and waits for its ready line.
    pub fn start() -> Self {
        Self::start_with_args(&[])
    }

    pub fn region(&self) -> &str {
        self.info["region"].as_str().expect("region")
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    // --- the binary ----------------------------------------------------------------------

    /// Starts the binary as Lambda would, with `extra` configuration on top of the stand-in's
    /// Lambda environment (stopping any binary already running). Output (stdout and stderr)
    /// goes to a log file scanned for secrets.
    pub fn start_lambda(&mut self, extra: &[(&str, &str)]) {
        self.stop_lambda();
        self.add_lambda(extra);
    }

    /// Starts one more binary polling the same Runtime API (for concurrent invocations).
    pub fn add_lambda(&mut self, extra: &[(&str, &str)]) {
        let log_path = self
            .dir
            .join(format!("lambda-{}.log", self.lambda_logs.len()));
        let log = File::create(&log_path).expect("lambda log");
        let mut cmd = Command::new(binary());
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .env("SMTP_TEST_TIMEOUT_SECONDS", "20")
            // Most tests check what finishSecret itself does with the old key (the template's
            // default keeps it for 24 hours); the graceful-retirement tests set their own.
            .env("OLD_KEY_GRACE_HOURS", "0")
            .env("SMTP_CONNECT_TIMEOUT_SECONDS", "5");
        for (k, v) in self.info["lambda_env"].as_object().expect("lambda_env") {
            cmd.env(k, v.as_str().expect("env value"));
        }
        // template.yaml sets IAM_USER_PATH to SmtpIamUserPath and ROTATION_SCOPE to Scope in
        // every deployment.
        cmd.env("IAM_USER_PATH", USER_PATH);
        cmd.env(
            "ROTATION_SCOPE",
            if self.scope == Scope::Single {
                "single"
            } else {
                "shared"
            },
        );
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start the binary");
        self.lambdas.push(child);
        self.lambda_logs.push(log_path);
    }

    /// SIGKILLs the running binaries, as a crashed or timed-out Lambda sandbox (works through a
    /// shared reference, so another thread may be waiting on an invocation meanwhile).
    pub fn kill_lambda_hard(&self) {
        for c in &self.lambdas {
            let _ = Command::new("kill")
                .args(["-9", &c.id().to_string()])
                .status();
        }
    }

    pub fn stop_lambda(&mut self) {
        for mut c in self.lambdas.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Everything every binary started by this test printed.
    pub fn lambda_output(&self) -> String {
        self.lambda_logs
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits for the (single) running binary to exit and returns its exit status code.
    pub fn wait_lambda_exit(&mut self, timeout: Duration) -> Option<i32> {
        let child = self.lambdas.last_mut()?;
        let end = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < end {
            if let Ok(Some(status)) = child.try_wait() {
                self.lambdas.pop();
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    // --- admin API -----------------------------------------------------------------------

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.info["admin"].as_str().expect("admin"))
    }

    pub fn get(&self, path: &str) -> Value {
        let mut res = self.agent.get(&self.url(path)).call().expect("admin GET");
        res.body_mut().read_json().expect("admin JSON")
    }

    pub fn post(&self, path: &str, body: Value) -> Value {
        let mut res = self
            .agent
            .post(&self.url(path))
            .send_json(body)
            .expect("admin POST");
        res.body_mut().read_json().expect("admin JSON")
    }

    pub fn delete(&self, path: &str) {
        self.agent
            .delete(&self.url(path))
            .call()
            .expect("admin DELETE");
    }

    /// A full rotation through the orchestrator (a fresh token unless one is given).
    pub fn rotate(&self, secret: &str, token: Option<&str>) -> Value {
        let mut body = json!({"secret_id": secret});
        if let Some(t) = token {
            body["token"] = t.into();
        }
        self.post("/rotate", body)
    }

    /// One step invoked by hand.
    pub fn invoke(&self, step: &str, secret: &str, token: &str) -> Value {
        self.post(
            "/invoke",
            json!({"event": {"Step": step, "SecretId": secret, "ClientRequestToken": token, "RotationToken": "e2e-rotation-token"}}),
        )
    }

    pub fn invoke_raw(&self, event: Value) -> Value {
        self.post("/invoke", json!({ "event": event }))
    }

    pub fn pending(&self, secret: &str) -> String {
        self.post("/pending", json!({"secret_id": secret}))["token"]
            .as_str()
            .expect("token")
            .to_owned()
    }

    /// Makes every matching AWS request fail (the SDK's own retries included) until
    /// `DELETE /faults`.
    pub fn fault(&self, service: &str, action: &str, mode: &str) {
        self.post(
            "/faults",
            json!({"service": service, "action": action, "mode": mode, "count": -1}),
        );
    }

    /// Makes the `skip`+1-th next matching AWS request fail once with `mode` (`fail_before`,
    /// `fail_after` = lost response, `throttle`).
    pub fn fault_once(&self, service: &str, action: &str, mode: &str, skip: usize) {
        self.post(
            "/faults",
            json!({"service": service, "action": action, "mode": mode, "count": 1, "skip": skip}),
        );
    }

    /// Invokes the scheduled maintenance (`{"Action": "maintenance"}`, with `SecretIds` when
    /// given) and returns the stand-in's invocation result.
    pub fn maintain(&self, secret_ids: Option<&[&str]>) -> Value {
        let mut event = json!({"Action": "maintenance"});
        if let Some(ids) = secret_ids {
            event["SecretIds"] = json!(ids);
        }
        self.invoke_raw(event)
    }

    /// Queues the same event `n` times at once (one per polling binary) and returns each result.
    pub fn invoke_concurrently(&self, event: Value, n: usize) -> Vec<Value> {
        let events: Vec<Value> = std::iter::repeat_n(event, n).collect();
        self.post("/invoke-many", json!({ "events": events }))
            .as_array()
            .expect("results")
            .clone()
    }

    /// Every AWS request the stand-in served so far: (service, action, status, fault).
    pub fn requests(&self) -> Vec<Value> {
        self.get("/requests").as_array().expect("requests").clone()
    }

    /// How many access keys CreateAccessKey made so far (from its answers, lost ones included).
    pub fn keys_created(&self) -> usize {
        self.get("/iam/created-keys")
            .as_array()
            .expect("created keys")
            .len()
    }

    /// The most keys `user` held at any instant, replayed from the stand-in's records: each
    /// key a CreateAccessKey made (its answer delivered or lost) counts from its creation, each
    /// key a DeleteAccessKey removed ends then; `preexisting` keys count from the start.
    /// Independent of moto's own two-key cap.
    pub fn most_keys_at_once(&self, user: &str, preexisting: usize) -> usize {
        let mut events: Vec<(f64, i64)> = Vec::new();
        for k in self.get("/iam/created-keys").as_array().expect("created") {
            if k["user"] == user {
                events.push((k["time"].as_f64().expect("time"), 1));
            }
        }
        for k in self.get("/iam/deleted-keys").as_array().expect("deleted") {
            if k["user"] == user {
                events.push((k["time"].as_f64().expect("time"), -1));
            }
        }
        events.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (mut now, mut most) = (preexisting as i64, preexisting as i64);
        for (_, d) in events {
            now += d;
            most = most.max(now);
        }
        usize::try_from(most).unwrap_or(0)
    }

    pub fn smtp_config(&self, knobs: Value) {
        self.post("/smtp/config", knobs);
    }

    // --- state ---------------------------------------------------------------------------

    /// Creates an IAM user under [`USER_PATH`], as the template does.
    pub fn create_user(&self, name: &str) {
        self.block_on(
            self.iam
                .create_user()
                .user_name(name)
                .path(USER_PATH)
                .send(),
        )
        .expect("create user");
    }

    // --- the deployment: role policy and environment ---------------------------------------

    /// Runs the binary as a `Scope=shared` deployment from now on (before `start_lambda`).
    pub fn deploy_shared(&mut self, kms: Option<&str>) {
        self.scope = Scope::Shared {
            kms: kms.map(str::to_owned),
        };
        let mut parameters = json!({"Scope": "shared", "SmtpIamUserPath": USER_PATH});
        if let Some(k) = kms {
            parameters["KmsKeyArn"] = k.into();
        }
        let label = if kms.is_some() {
            "shared-kms"
        } else {
            "shared"
        };
        self.policy(json!({"label": label, "variant": label, "parameters": parameters}));
    }

    /// The role policy of one `Scope=single` stack for `secret`, whose user is `user`
    /// (`create_secret` calls it in `Scope::Single`).
    pub fn deploy_single_stack(&self, secret: &str, user: Option<&str>) {
        // A name the template's SmtpIamUserName pattern refuses (a hostile document's) could
        // not have been deployed: the stack then serves the default user.
        let user = user
            .filter(|u| {
                !u.is_empty()
                    && u.len() <= 64
                    && u.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
            })
            .unwrap_or("ses-smtp-sender");
        self.policy(json!({
            "label": format!("single:{secret}"),
            "variant": "single",
            "parameters": {"SmtpIamUserName": user, "SmtpIamUserPath": USER_PATH},
            "physical": {"SmtpSecret": secret},
        }));
    }

    /// `POST /policy` (a stack's role policy, or a knob), failing the test when the stand-in
    /// refuses it (a template it cannot render).
    pub fn policy(&self, body: Value) -> Value {
        let mut res = self
            .agent
            .post(&self.url("/policy"))
            .send_json(body)
            .expect("admin POST");
        let status = res.status();
        let v: Value = res.body_mut().read_json().expect("admin JSON");
        assert!(status.is_success(), "POST /policy refused: {v:#}");
        v
    }

    /// Declares that the test provokes AccessDenied for `action` (e.g. `iam:GetUser` on a
    /// user outside the deployment) on purpose.
    pub fn expect_denial(&self, action: &str) {
        self.expected_denials
            .lock()
            .expect("lock")
            .push(action.to_owned());
    }

    /// The policy's denials of the binary's requests that the test did not declare.
    pub fn unexpected_denials(&self) -> Vec<String> {
        let expected = self.expected_denials.lock().expect("lock").clone();
        let Ok(mut res) = self.agent.get(&self.url("/policy")).call() else {
            return vec!["the stand-in did not answer GET /policy".into()];
        };
        let state: Value = res.body_mut().read_json().unwrap_or_default();
        state["denials"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter(|d| !expected.iter().any(|a| d["action"] == a.as_str()))
            .map(|d| {
                format!(
                    "  AccessDenied {} on {}: {}",
                    d["action"].as_str().unwrap_or("?"),
                    d["resource"].as_str().unwrap_or("?"),
                    d["by"].as_str().unwrap_or("?")
                )
            })
            .collect()
    }

    /// The actions the role policy allowed the binary so far (one entry per request).
    pub fn allowed_actions(&self) -> Vec<String> {
        self.get("/policy")["decisions"]
            .as_array()
            .expect("decisions")
            .iter()
            .filter(|d| d["decision"] == "allow")
            .filter_map(|d| d["action"].as_str().map(str::to_owned))
            .collect()
    }

    /// The denials of the binary's requests so far: (action, resource).
    pub fn denials(&self) -> Vec<(String, String)> {
        self.get("/policy")["denials"]
            .as_array()
            .expect("denials")
            .iter()
            .map(|d| {
                (
                    d["action"].as_str().unwrap_or_default().to_owned(),
                    d["resource"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// A bootstrap document pointing at the SES emulator's STARTTLS port.
    pub fn bootstrap_doc(&self, user: &str) -> Value {
        json!({
            "iam_user": user,
            "host": "localhost",
            "port": self.info["smtp_starttls_port"],
            "tls": "starttls",
            "region": self.region(),
        })
    }

    /// Creates a secret and enables rotation on it; returns its ARN.
    /// In `Scope=single` the secret is one deployed stack's (its role policy is added); in
    /// `Scope=shared` it carries `ses-smtp-rotator:managed=true` (and the KMS key), as
    /// deploy/app-stack.yaml creates it.
    pub fn create_secret(&self, name: &str, doc: &Value) -> String {
        match &self.scope {
            Scope::Single => {
                let arn = self.create_secret_as(name, doc, false, None);
                self.deploy_single_stack(&arn, doc["iam_user"].as_str());
                arn
            }
            Scope::Shared { kms } => {
                let arn = self.create_secret_as(name, doc, true, kms.as_deref());
                // deploy/app-stack.yaml creates user and secret together and tags the user as
                // the secret's; the shared function never claims a user itself.
                if let Some(user) = doc["iam_user"].as_str() {
                    self.assign_user(user, &arn);
                }
                arn
            }
        }
    }

    /// Tags `user` as `secret`'s (`ses-smtp-rotator:secret`), as deploy/app-stack.yaml does;
    /// a user that does not exist is left alone.
    pub fn assign_user(&self, user: &str, secret: &str) {
        let tag = aws_sdk_iam::types::Tag::builder()
            .key("ses-smtp-rotator:secret")
            .value(secret)
            .build()
            .expect("tag");
        let _ = self.block_on(self.iam.tag_user().user_name(user).tags(tag).send());
    }

    /// Sets one tag on a user as an operator would (not the function).
    pub fn tag_user(&self, user: &str, key: &str, value: &str) {
        let tag = aws_sdk_iam::types::Tag::builder()
            .key(key)
            .value(value)
            .build()
            .expect("tag");
        self.block_on(self.iam.tag_user().user_name(user).tags(tag).send())
            .expect("tag user");
    }

    /// Creates a secret as an operator might, whatever the deployment: tagged
    /// `ses-smtp-rotator:managed=true` or not, under a KMS key or not; no stack's policy is
    /// added for it. Rotation is enabled on it; returns its ARN.
    pub fn create_secret_as(
        &self,
        name: &str,
        doc: &Value,
        managed: bool,
        kms: Option<&str>,
    ) -> String {
        let mut req = self
            .sm
            .create_secret()
            .name(name)
            .secret_string(doc.to_string())
            .set_kms_key_id(kms.map(str::to_owned));
        if managed {
            req = req.tags(
                aws_sdk_secretsmanager::types::Tag::builder()
                    .key("ses-smtp-rotator:managed")
                    .value("true")
                    .build(),
            );
        }
        let out = self.block_on(req.send()).expect("create secret");
        let arn = out.arn().expect("arn").to_owned();
        self.post(
            "/secret/rotation",
            json!({"secret_id": arn, "enabled": true}),
        );
        arn
    }

    /// Key id → status ("Active"/"Inactive") of a user's keys.
    pub fn keys(&self, user: &str) -> Vec<(String, String)> {
        let mut keys: Vec<(String, String)> = self
            .get(&format!("/keys?user={user}"))
            .as_array()
            .expect("keys")
            .iter()
            .map(|k| {
                (
                    k["access_key_id"].as_str().expect("id").to_owned(),
                    k["status"].as_str().expect("status").to_owned(),
                )
            })
            .collect();
        keys.sort();
        keys
    }

    pub fn versions(&self, secret: &str) -> Vec<Value> {
        self.get(&format!("/versions?secret_id={secret}"))
            .as_array()
            .expect("versions")
            .clone()
    }

    /// Version id → stages, sorted, for comparing states.
    pub fn stages(&self, secret: &str) -> Vec<(String, Vec<String>)> {
        let mut v: Vec<(String, Vec<String>)> = self
            .versions(secret)
            .iter()
            .map(|v| {
                let mut stages: Vec<String> = v["stages"]
                    .as_array()
                    .expect("stages")
                    .iter()
                    .map(|s| s.as_str().expect("stage").to_owned())
                    .collect();
                stages.sort();
                (v["version_id"].as_str().expect("id").to_owned(), stages)
            })
            .collect();
        v.sort();
        v
    }

    pub fn version_with(&self, secret: &str, stage: &str) -> Option<String> {
        self.stages(secret)
            .into_iter()
            .find(|(_, s)| s.iter().any(|x| x == stage))
            .map(|(v, _)| v)
    }

    /// The JSON document of a stage (or `None` when it has none / no value).
    pub fn doc(&self, secret: &str, stage: &str) -> Option<Value> {
        let out = self
            .block_on(
                self.sm
                    .get_secret_value()
                    .secret_id(secret)
                    .version_stage(stage)
                    .send(),
            )
            .ok()?;
        serde_json::from_str(out.secret_string()?).ok()
    }

    /// The documents of every version that has a value.
    pub fn all_docs(&self, secret: &str) -> Vec<Value> {
        self.stages(secret)
            .into_iter()
            .filter_map(|(v, _)| {
                let out = self
                    .block_on(
                        self.sm
                            .get_secret_value()
                            .secret_id(secret)
                            .version_id(v)
                            .send(),
                    )
                    .ok()?;
                serde_json::from_str(out.secret_string()?).ok()
            })
            .collect()
    }

    /// Everything a refused request must not change.
    pub fn snapshot(&self, user: &str, secret: &str) -> Snapshot {
        Snapshot {
            keys: self.keys(user),
            stages: self.stages(secret),
            current: self.doc(secret, "AWSCURRENT"),
            documents: self.all_docs(secret),
            tags: self.user_tags(user),
            keys_created: self.keys_created(),
        }
    }

    /// A user's tags as sorted (key, value) pairs; empty when the user does not exist.
    pub fn user_tags(&self, user: &str) -> Vec<(String, String)> {
        let Ok(out) = self.block_on(self.iam.list_user_tags().user_name(user).send()) else {
            return Vec::new();
        };
        let mut tags: Vec<(String, String)> = out
            .tags()
            .iter()
            .map(|t| (t.key().to_owned(), t.value().to_owned()))
            .collect();
        tags.sort();
        tags
    }

    /// The access key id AWSCURRENT names.
    pub fn current_key(&self, secret: &str) -> String {
        self.doc(secret, "AWSCURRENT").expect("AWSCURRENT")["username"]
            .as_str()
            .expect("username")
            .to_owned()
    }

    /// Key ids named by any version of the secret.
    pub fn named_keys(&self, secret: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .all_docs(secret)
            .iter()
            .filter_map(|d| d["username"].as_str().map(str::to_owned))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Tries SMTP AUTH with a document's credentials, through the binary's own `test-login`
    /// (an independent connection, not the rotation's). Returns (accepted, output).
    pub fn login(&self, doc: &Value) -> (bool, String) {
        let mut child = Command::new(binary())
            .args(["test-login", "--timeout", "5"])
            .env_remove("AWS_LAMBDA_RUNTIME_API")
            .env("SSL_CERT_FILE", self.info["ca_file"].as_str().expect("ca"))
            // test-login sends credentials only where the function would: the emulator is
            // localhost, allowed as the tests' functions allow it.
            .env("SMTP_ALLOWED_HOSTS", "localhost")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("test-login");
        // A broken pipe means test-login exited early; its output says why.
        let _ = child
            .stdin
            .take()
            .expect("stdin")
            .write_all(doc.to_string().as_bytes());
        let out = child.wait_with_output().expect("output");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// Every secret that existed during the test: each secret access key moto minted, the SMTP
    /// passwords derived from it (for every region the stand-in serves), every password stored
    /// in any version, and the base64 forms an SMTP AUTH carries them in (PLAIN's
    /// `\0user\0password`, LOGIN's password line).
    pub fn all_secrets(&self, secret: Option<&str>) -> Vec<String> {
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let mut regions = vec![self.region().to_owned()];
        if let Some(m) = self.info["smtp"].as_object() {
            regions.extend(m.keys().cloned());
        }
        let mut creds: Vec<(String, String)> = Vec::new();
        let mut out = Vec::new();
        for k in self.get("/secrets-seen").as_array().expect("secrets") {
            let id = k["access_key_id"].as_str().expect("key id").to_owned();
            let s = k["secret_access_key"].as_str().expect("secret").to_owned();
            let key = SecretAccessKey::new(s.clone()).expect("valid");
            for r in &regions {
                let region = Region::new(r).expect("region");
                creds.push((
                    id.clone(),
                    derive_smtp_password(&key, &region).expose().to_owned(),
                ));
            }
            out.push(b64(&s));
            out.push(s);
        }
        if let Some(secret) = secret {
            for d in self.all_docs(secret) {
                if let (Some(u), Some(p)) = (d["username"].as_str(), d["password"].as_str()) {
                    creds.push((u.to_owned(), p.to_owned()));
                }
            }
        }
        for (user, password) in creds {
            out.push(b64(&format!("\0{user}\0{password}")));
            out.push(b64(&format!("{user}\0{user}\0{password}")));
            out.push(b64(&password));
            out.push(password);
        }
        out.sort();
        out.dedup();
        out
    }

    /// Fails if any secret appears in anything the binary printed or answered.
    pub fn assert_no_secrets_leaked(&self, secret: Option<&str>) {
        let secrets = self.all_secrets(secret);
        assert!(
            !secrets.is_empty(),
            "the test created no secrets to look for"
        );
        let output = self.lambda_output();
        assert!(!output.is_empty(), "the binary printed nothing");
        let answers = self.get("/invocations").to_string();
        let logins = self.get("/smtp/logins").to_string();
        let standin_log = std::fs::read_to_string(self.dir.join("standin.log")).unwrap_or_default();
        for s in &secrets {
            for (what, text) in [
                ("the binary's output", &output),
                ("the binary's answers", &answers),
                ("the SMTP login records", &logins),
                ("the stand-in's log", &standin_log),
            ] {
                assert!(
                    !text.contains(s.as_str()),
                    "a secret value appears in {what}"
                );
            }
        }
    }
}

/// What a refused request must leave exactly as it was; compared field by field, whole.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The user's keys and their status.
    pub keys: Vec<(String, String)>,
    /// Every version of the secret and its stages.
    pub stages: Vec<(String, Vec<String>)>,
    /// The AWSCURRENT document.
    pub current: Option<Value>,
    /// Every version's document.
    pub documents: Vec<Value>,
    /// The user's tags.
    pub tags: Vec<(String, String)>,
    /// How many keys CreateAccessKey made in the whole stand-in.
    pub keys_created: usize,
}

/// Shorthand: a rotation result's step outcomes as (step, ok, error_type).
pub fn steps(result: &Value) -> Vec<(String, bool, String)> {
    result["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap_or_default().to_owned(),
                s["ok"].as_bool().unwrap_or(false),
                s["error_type"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

// --- assertions shared by the end-to-end suites ---------------------------------------------

pub const OK4: [(&str, bool, &str); 4] = [
    ("createSecret", true, ""),
    ("setSecret", true, ""),
    ("testSecret", true, ""),
    ("finishSecret", true, ""),
];

/// The CreateAccessKey requests IAM refused for the two-key limit, as the stand-in saw them.
pub fn limit_refusals(env: &Env) -> Vec<Value> {
    env.requests()
        .into_iter()
        .filter(|r| r["action"] == "CreateAccessKey" && r["error_code"] == "LimitExceeded")
        .collect()
}

/// No CreateAccessKey was ever refused for the two-key limit: the function never tried a third.
pub fn assert_no_limit_exceeded(env: &Env) {
    let refused = limit_refusals(env);
    assert!(refused.is_empty(), "{refused:?}");
}

pub fn assert_ok(result: &Value) {
    let got = steps(result);
    let want: Vec<(String, bool, String)> = OK4
        .iter()
        .map(|(s, ok, e)| ((*s).to_owned(), *ok, (*e).to_owned()))
        .collect();
    assert_eq!(got, want, "{result:#}");
    assert_eq!(result["ok"], true, "{result:#}");
}

/// A user, a bootstrap secret with an extra field, and a running binary.
pub fn setup(extra_env: &[(&str, &str)]) -> (Env, String) {
    let mut env = Env::start();
    env.create_user("ses-smtp");
    let mut doc = env.bootstrap_doc("ses-smtp");
    doc["team"] = json!({"owner": "mail-ops", "tags": [1, 2]});
    let arn = env.create_secret("smtp/prod", &doc);
    env.start_lambda(extra_env);
    (env, arn)
}

/// After a completed rotation: never more than 2 keys at once (replayed from CreateAccessKey's
/// and DeleteAccessKey's records, not from a list moto caps), no CreateAccessKey refused for
/// the limit, every key named by some version, AWSPENDING on no version but the current one,
/// and the current credentials log in.
pub fn assert_invariants(env: &Env, arn: &str, user: &str) {
    assert_no_limit_exceeded(env);
    assert_state_invariants(env, arn, user);
}

/// [`assert_invariants`] but for the check that no CreateAccessKey met the limit (for the
/// test that forces one).
pub fn assert_state_invariants(env: &Env, arn: &str, user: &str) {
    assert!(env.most_keys_at_once(user, 0) <= 2);
    let keys = env.keys(user);
    let named = env.named_keys(arn);
    for (k, _) in &keys {
        assert!(
            named.contains(k),
            "key {k} is named by no version: {named:?}"
        );
    }
    for (v, stages) in env.stages(arn) {
        if stages.iter().any(|s| s == "AWSPENDING") {
            assert!(
                stages.iter().any(|s| s == "AWSCURRENT"),
                "AWSPENDING left on {v}"
            );
        }
    }
    let current = env.doc(arn, "AWSCURRENT").expect("current");
    let (ok, out) = env.login(&current);
    assert!(ok, "current credentials do not log in: {out}");
}

/// Invokes a bad request and checks it fails with `error_type` and changes nothing.
pub fn assert_refused(
    env: &Env,
    arn: &str,
    user: &str,
    result: &Value,
    error_type: &str,
    needle: &str,
    before: &Snapshot,
) {
    assert_eq!(result["ok"], false, "{result:#}");
    let (t, m) = match result.get("steps") {
        Some(s) => {
            let last = s.as_array().unwrap().last().unwrap();
            (last["error_type"].clone(), last["error_message"].clone())
        }
        None => (
            result["error_type"].clone(),
            result["error_message"].clone(),
        ),
    };
    assert_eq!(t, error_type, "{result:#}");
    assert!(m.as_str().unwrap().contains(needle), "{m}");
    assert_eq!(
        &env.snapshot(user, arn),
        before,
        "a refused request changed something"
    );
}

/// The CloudWatch EMF lines the binaries printed, each checked against the EMF specification
/// (an `_aws` member with an integer Timestamp; every directive's dimensions and metrics are
/// members of the root, strings and numbers respectively; known units).
pub fn emf_lines(env: &Env) -> Vec<Value> {
    env.lambda_output()
        .lines()
        .filter(|l| l.contains("\"_aws\""))
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("an EMF line is JSON");
            let aws = &v["_aws"];
            assert!(aws["Timestamp"].is_u64(), "{line}");
            for d in aws["CloudWatchMetrics"].as_array().expect("directives") {
                assert_eq!(d["Namespace"], "SesSmtpRotator", "{line}");
                for set in d["Dimensions"].as_array().expect("dimensions") {
                    for name in set.as_array().expect("dimension set") {
                        let name = name.as_str().expect("name");
                        assert!(v[name].is_string(), "dimension {name}: {line}");
                    }
                }
                for m in d["Metrics"].as_array().expect("metrics") {
                    let name = m["Name"].as_str().expect("name");
                    assert!(v[name].is_number(), "metric {name}: {line}");
                    assert!(
                        ["Milliseconds", "Seconds", "Count", "None"]
                            .contains(&m["Unit"].as_str().expect("unit")),
                        "{line}"
                    );
                }
            }
            v
        })
        .collect()
}

impl Env {
    /// Starts a stand-in with extra command-line arguments (e.g. `["--smtp-regions",
    /// "us-east-1,eu-west-1"]`) and waits for its ready line. The same as [`Env::start`]
    /// otherwise (appended here while `start` is being restructured: fold the two together).
    pub fn start_with_args(args: &[&str]) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("ses-e2e-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let stderr = File::create(dir.join("standin.log")).expect("standin log");
        let mut standin = Command::new(python())
            .arg(repo().join("tests/standin/standin.py"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start the stand-in (run `make venv` first)");
        let stdin = standin.stdin.take().expect("stdin");
        let mut line = String::new();
        BufReader::new(standin.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("ready line");
        let info: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
            let log = std::fs::read_to_string(dir.join("standin.log")).unwrap_or_default();
            panic!("stand-in did not start ({e}): {line}\n{log}")
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let endpoint = info["endpoint"].as_str().expect("endpoint").to_owned();
        let region = info["region"].as_str().expect("region").to_owned();
        let conf = rt.block_on(
            aws_config::defaults(BehaviorVersion::latest())
                .endpoint_url(endpoint)
                .region(aws_config::Region::new(region))
                .credentials_provider(aws_sdk_iam::config::Credentials::new(
                    "test", "test", None, None, "e2e",
                ))
                .load(),
        );
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(600)))
            .build()
            .new_agent();
        Self {
            standin,
            standin_stdin: Some(stdin),
            info,
            dir,
            iam: aws_sdk_iam::Client::new(&conf),
            sm: aws_sdk_secretsmanager::Client::new(&conf),
            rt,
            lambdas: Vec::new(),
            lambda_logs: Vec::new(),
            agent,
            scope: Scope::Single,
            expected_denials: std::sync::Mutex::new(Vec::new()),
        }
    }
}
