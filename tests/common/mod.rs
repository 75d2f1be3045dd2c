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

/// The binary under test: the release build when the Makefile says so, else cargo's build.
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
    lambda: Option<Child>,
    lambda_logs: Vec<PathBuf>,
    agent: ureq::Agent,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.stop_lambda();
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
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("test artefacts kept in {}", self.dir.display());
        }
    }
}

impl Env {
    /// Starts a stand-in and waits for its ready line.
    pub fn start() -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("ses-e2e-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let stderr = File::create(dir.join("standin.log")).expect("standin log");
        let mut standin = Command::new(python())
            .arg(repo().join("tests/standin/standin.py"))
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
            lambda: None,
            lambda_logs: Vec::new(),
            agent,
        }
    }

    pub fn region(&self) -> &str {
        self.info["region"].as_str().expect("region")
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    // --- the binary ----------------------------------------------------------------------

    /// Starts the binary as Lambda would, with `extra` configuration on top of the stand-in's
    /// Lambda environment. Output (stdout and stderr) goes to a log file scanned for secrets.
    pub fn start_lambda(&mut self, extra: &[(&str, &str)]) {
        self.stop_lambda();
        let log_path = self
            .dir
            .join(format!("lambda-{}.log", self.lambda_logs.len()));
        let log = File::create(&log_path).expect("lambda log");
        let mut cmd = Command::new(binary());
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .env("SMTP_TEST_TIMEOUT_SECONDS", "20")
            .env("SMTP_CONNECT_TIMEOUT_SECONDS", "5");
        for (k, v) in self.info["lambda_env"].as_object().expect("lambda_env") {
            cmd.env(k, v.as_str().expect("env value"));
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start the binary");
        self.lambda = Some(child);
        self.lambda_logs.push(log_path);
    }

    /// SIGKILLs the running binary, as a crashed or timed-out Lambda sandbox (works through a
    /// shared reference, so another thread may be waiting on an invocation meanwhile).
    pub fn kill_lambda_hard(&self) {
        if let Some(c) = &self.lambda {
            let _ = Command::new("kill")
                .args(["-9", &c.id().to_string()])
                .status();
        }
    }

    pub fn stop_lambda(&mut self) {
        if let Some(mut c) = self.lambda.take() {
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

    /// Waits for the running binary to exit and returns its exit status code.
    pub fn wait_lambda_exit(&mut self, timeout: Duration) -> Option<i32> {
        let child = self.lambda.as_mut()?;
        let end = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < end {
            if let Ok(Some(status)) = child.try_wait() {
                self.lambda = None;
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

    pub fn smtp_config(&self, knobs: Value) {
        self.post("/smtp/config", knobs);
    }

    // --- state ---------------------------------------------------------------------------

    pub fn create_user(&self, name: &str) {
        self.block_on(self.iam.create_user().user_name(name).send())
            .expect("create user");
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
    pub fn create_secret(&self, name: &str, doc: &Value) -> String {
        let out = self
            .block_on(
                self.sm
                    .create_secret()
                    .name(name)
                    .secret_string(doc.to_string())
                    .send(),
            )
            .expect("create secret");
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

    /// Keys, stages and the AWSCURRENT document: what a refused request must not change.
    pub fn snapshot(&self, user: &str, secret: &str) -> Snapshot {
        (
            self.keys(user),
            self.stages(secret),
            self.doc(secret, "AWSCURRENT"),
            self.user_tags(user),
        )
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
    /// passwords derived from it, and every password stored in any version.
    pub fn all_secrets(&self, secret: Option<&str>) -> Vec<String> {
        let region = Region::new(self.region()).expect("region");
        let mut out = Vec::new();
        for k in self.get("/secrets-seen").as_array().expect("secrets") {
            let s = k["secret_access_key"].as_str().expect("secret").to_owned();
            let key = SecretAccessKey::new(s.clone()).expect("valid");
            out.push(derive_smtp_password(&key, &region).expose().to_owned());
            out.push(s);
        }
        if let Some(secret) = secret {
            for d in self.all_docs(secret) {
                if let Some(p) = d["password"].as_str() {
                    out.push(p.to_owned());
                }
            }
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

/// Keys, stages and the AWSCURRENT document of a secret, and the user's tags.
pub type Snapshot = (
    Vec<(String, String)>,
    Vec<(String, Vec<String>)>,
    Option<Value>,
    Vec<(String, String)>,
);

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
