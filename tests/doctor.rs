//! `ses-smtp-rotator doctor`, through the real binary, against the stand-ins: moto for IAM and
//! Secrets Manager, the SES SMTP emulator for `connect` and `auth`.
//!
//! Every cause of a 535 that doctor tells apart gets a document made for it; the test checks
//! the check that must name it (status, finding, fix), the exit status, and that nothing the
//! binary printed holds a secret of the run (keys, passwords in every form the test made, and
//! the base64 AUTH PLAIN / LOGIN forms of each).

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::Env;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use ses_smtp_rotator::password::{Region, SecretAccessKey, derive_smtp_password};

const IDS: [&str; 11] = [
    "document",
    "username",
    "password-format",
    "password-derivation",
    "endpoint",
    "iam-key",
    "rotation-state",
    "iam-permission",
    "connect",
    "auth",
    "url-encoding",
];

/// Longest a run may take before the test gives up on it: DESIGN bounds a run against an
/// unreachable host to 30 s; this only keeps a hung binary from hanging the suite.
const HANG_GUARD: Duration = Duration::from_secs(30);

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("--json output is not JSON ({e}): {}", self.stdout))
    }
}

/// One stand-in, the secrets the test made, and everything the binary printed.
struct Doctor {
    env: Env,
    secrets: Vec<String>,
    printed: Vec<String>,
    runs: usize,
}

impl Doctor {
    fn start() -> Self {
        Self::on(Env::start())
    }

    fn on(env: Env) -> Self {
        Self {
            env,
            secrets: Vec::new(),
            printed: Vec::new(),
            runs: 0,
        }
    }

    /// The environment a person at a shell would have: the stand-in's AWS settings (not its
    /// Lambda runtime), the emulator's CA, and `localhost` allowed.
    fn base_env(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self.env.info["lambda_env"]
            .as_object()
            .expect("lambda_env")
            .iter()
            .filter(|(k, _)| !k.starts_with("AWS_LAMBDA_") && k.as_str() != "AWS_SESSION_TOKEN")
            .map(|(k, v)| (k.clone(), v.as_str().expect("value").to_owned()))
            .collect();
        // An operator's own credentials, not the function's role (whose requests the stand-in
        // authorizes against the rotation policy).
        for (k, v) in &mut v {
            if k == "AWS_ACCESS_KEY_ID" || k == "AWS_SECRET_ACCESS_KEY" {
                *v = "test".into();
            }
        }
        v.push(("SMTP_ALLOWED_HOSTS".into(), "localhost".into()));
        v.push(("AWS_EC2_METADATA_DISABLED".into(), "true".into()));
        v
    }

    /// Runs the binary with `args`, `stdin`, the base environment with `set` on top and
    /// `unset` removed. Waits at most [`HANG_GUARD`].
    fn run(&mut self, args: &[&str], stdin: &str, set: &[(&str, &str)], unset: &[&str]) -> Run {
        self.runs += 1;
        let out_path = self.env.dir.join(format!("doctor-{}.out", self.runs));
        let err_path = self.env.dir.join(format!("doctor-{}.err", self.runs));
        let mut cmd = Command::new(common::binary());
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.env.dir);
        for (k, v) in self.base_env() {
            if !unset.contains(&k.as_str()) {
                cmd.env(k, v);
            }
        }
        for (k, v) in set {
            cmd.env(k, v);
        }
        let mut child = cmd
            .args(args)
            .stdin(Stdio::piped())
            .stdout(std::fs::File::create(&out_path).expect("out"))
            .stderr(std::fs::File::create(&err_path).expect("err"))
            .spawn()
            .expect("start the binary");
        // The binary may exit before reading stdin (a usage error): a broken pipe is fine.
        let _ = child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes());
        let start = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break s;
            }
            if start.elapsed() > HANG_GUARD {
                let _ = child.kill();
                let _ = child.wait();
                panic!("doctor {args:?} did not finish within {HANG_GUARD:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let run = Run {
            code: status.code().unwrap_or(-1),
            stdout: std::fs::read_to_string(&out_path).expect("stdout"),
            stderr: std::fs::read_to_string(&err_path).expect("stderr"),
        };
        self.printed.push(run.stdout.clone());
        self.printed.push(run.stderr.clone());
        run
    }

    /// `doctor --json --document -` on `doc`, with the key file when given.
    fn diagnose(&mut self, doc: &Value, key_secret: Option<&str>) -> (i32, Value) {
        let key_file;
        let mut args = vec!["doctor", "--json", "--document", "-"];
        if let Some(s) = key_secret {
            key_file = self.key_file(s);
            args.extend(["--secret-access-key-file", key_file.as_str()]);
        }
        self.remember_doc(doc);
        let r = self.run(&args, &doc.to_string(), &[], &[]);
        assert!(r.stderr.is_empty(), "stderr: {}", r.stderr);
        let v = r.json();
        assert_design_shape(&v, r.code);
        (r.code, v)
    }

    fn key_file(&self, secret: &str) -> String {
        let path = self.env.dir.join(format!("key-{}.txt", self.runs + 1));
        // A key file may end with a newline.
        std::fs::write(&path, format!("{secret}\n")).expect("key file");
        path.to_str().expect("path").to_owned()
    }

    /// Adds a document's password (as stored and trimmed) and its AUTH forms to the secrets.
    fn remember_doc(&mut self, doc: &Value) {
        let user = doc["username"].as_str().unwrap_or_default().to_owned();
        if let Some(p) = doc["password"].as_str() {
            for p in [p, p.trim(), p.trim().trim_matches('"').trim()] {
                self.remember(p);
                self.secrets.push(STANDARD.encode(format!("\0{user}\0{p}")));
                self.secrets.push(STANDARD.encode(p));
            }
        }
    }

    fn remember(&mut self, s: &str) {
        if s.len() >= 8 {
            self.secrets.push(s.to_owned());
        }
    }

    /// A new access key of `user`: (key id, secret).
    fn key(&mut self, user: &str) -> (String, String) {
        let out = self
            .env
            .block_on(self.env.iam.create_access_key().user_name(user).send())
            .expect("create key");
        let k = out.access_key().expect("key");
        let secret = k.secret_access_key().to_owned();
        self.remember(&secret);
        (k.access_key_id().to_owned(), secret)
    }

    fn password(&mut self, secret: &str, region: &str) -> String {
        let p = derive_smtp_password(
            &SecretAccessKey::new(secret).expect("secret"),
            &Region::new(region).expect("region"),
        )
        .expose()
        .to_owned();
        self.remember(&p);
        p
    }

    /// A complete document for the emulator's STARTTLS port.
    fn doc(&self, user: &str, key_id: &str, password: &str) -> Value {
        let mut d = self.env.bootstrap_doc(user);
        d["username"] = key_id.into();
        d["password"] = password.into();
        d
    }

    fn region(&self) -> String {
        self.env.region().to_owned()
    }

    /// Fails if any secret of the run appears in anything the binary printed.
    fn assert_no_secrets_printed(&self) {
        let mut secrets = self.secrets.clone();
        secrets.extend(self.env.all_secrets(None));
        assert!(!secrets.is_empty());
        assert!(self.printed.iter().any(|p| !p.is_empty()));
        for s in &secrets {
            for p in &self.printed {
                assert!(!p.contains(s.as_str()), "a secret appears in the output");
            }
        }
    }
}

/// `{"ok", "checks": [{"id", "status", "summary", "fix"}]}` with every id once, in order, and
/// `ok` true exactly when the exit status is 0.
fn assert_design_shape(v: &Value, code: i32) {
    let o = v.as_object().expect("object");
    assert_eq!(o.len(), 2, "{v:#}");
    assert_eq!(v["ok"].as_bool().expect("ok"), code == 0, "{v:#}");
    assert!(code == 0 || code == 1, "exit {code}");
    let checks = v["checks"].as_array().expect("checks");
    let ids: Vec<&str> = checks
        .iter()
        .map(|c| c["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, IDS);
    for c in checks {
        assert_eq!(c.as_object().expect("check").len(), 4, "{c}");
        assert!(
            ["pass", "fail", "warn", "skip"].contains(&c["status"].as_str().expect("status")),
            "{c}"
        );
        assert!(!c["summary"].as_str().expect("summary").is_empty(), "{c}");
        if ["fail", "warn"].contains(&c["status"].as_str().unwrap()) {
            assert!(!c["fix"].as_str().expect("a fix").is_empty(), "{c}");
        }
    }
}

fn check<'a>(v: &'a Value, id: &str) -> &'a Value {
    v["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["id"] == id)
        .expect("check")
}

/// Asserts a check's status and that its summary or fix holds `needle`.
fn expect(v: &Value, id: &str, status: &str, needle: &str) {
    let c = check(v, id);
    let text = format!(
        "{} {}",
        c["summary"].as_str().unwrap_or_default(),
        c["fix"].as_str().unwrap_or_default()
    );
    assert_eq!(c["status"], status, "{id}: {v:#}");
    assert!(text.contains(needle), "{id}: {needle:?} not in {c:#}");
}

fn logins(env: &Env) -> usize {
    env.get("/smtp/logins").as_array().expect("logins").len()
}

fn legacy_v2(secret: &str) -> String {
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(b"SendRawEmail");
    let mut bytes = vec![0x02];
    bytes.extend_from_slice(&mac.finalize().into_bytes());
    STANDARD.encode(bytes)
}

fn version_byte_appended(v4: &str) -> String {
    let mut bytes = STANDARD.decode(v4).expect("base64");
    bytes.rotate_left(1);
    STANDARD.encode(bytes)
}

impl Doctor {
    /// A stand-in with user `sender`, one key of it, and a document with that key's working
    /// V4 password: (doctor, key id, secret access key, document).
    fn with_working_credentials() -> (Self, String, String, Value) {
        let mut d = Self::start();
        d.env.create_user("sender");
        let (id, secret) = d.key("sender");
        let region = d.region();
        let pw = d.password(&secret, &region);
        let doc = d.doc("sender", &id, &pw);
        (d, id, secret, doc)
    }
}

#[test]
fn working_credentials_pass_and_exit_0_in_text_and_json() {
    let (mut d, _, secret, doc) = Doctor::with_working_credentials();
    let region = d.region();
    let pw = doc["password"].as_str().expect("password").to_owned();

    let (code, v) = d.diagnose(&doc, Some(&secret));
    assert_eq!(code, 0, "{v:#}");
    for id in IDS {
        let status = check(&v, id)["status"].as_str().unwrap();
        match id {
            // moto has no SimulatePrincipalPolicy: the check says so and does not count.
            "iam-permission" => assert_eq!(status, "skip", "{v:#}"),
            // A document alone has no rotation to look at.
            "rotation-state" => assert_eq!(status, "skip", "{v:#}"),
            "url-encoding" if pw.contains(['+', '/', '=']) => assert_eq!(status, "warn"),
            _ => assert_eq!(status, "pass", "{id}: {v:#}"),
        }
    }
    expect(&v, "iam-permission", "skip", "simulation");
    expect(&v, "auth", "pass", "235");
    expect(
        &v,
        "password-derivation",
        "pass",
        &format!("correct V4 password for {region}"),
    );

    // The same as text: one line per check in order with its mark, and a verdict.
    let key_file = d.key_file(&secret);
    let r = d.run(
        &[
            "doctor",
            "--document",
            "-",
            "--secret-access-key-file",
            &key_file,
        ],
        &doc.to_string(),
        &[],
        &[],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let lines: Vec<&str> = r.stdout.lines().filter(|l| !l.starts_with(' ')).collect();
    assert_eq!(lines.len(), IDS.len() + 1, "{}", r.stdout);
    for (line, id) in lines.iter().zip(IDS) {
        let mark = line.split(' ').next().unwrap();
        assert!(["✓", "✗", "!", "-"].contains(&mark), "{line}");
        assert_eq!(line.split_whitespace().nth(1), Some(id), "{line}");
    }
    assert!(lines[IDS.len()].starts_with("OK"), "{}", r.stdout);
    assert!(!r.stdout.contains('\x1b'), "colour on a pipe: {}", r.stdout);

    // From Secrets Manager, AWSCURRENT by default; a missing stage is a failed document check.
    let arn = d.env.create_secret("smtp", &doc);
    let r = d.run(&["doctor", "--json", "--secret-id", &arn], "", &[], &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    expect(&r.json(), "auth", "pass", "235");
    expect(&r.json(), "rotation-state", "pass", "no rotation pending");
    let r = d.run(
        &[
            "doctor",
            "--json",
            "--secret-id",
            "smtp",
            "--version-stage",
            "AWSPENDING",
        ],
        "",
        &[],
        &[],
    );
    assert_eq!(r.code, 1);
    let v = r.json();
    assert_design_shape(&v, 1);
    expect(&v, "document", "fail", "AWSPENDING");
    expect(&v, "auth", "skip", "document");
    d.assert_no_secrets_printed();
}

#[test]
fn every_cause_of_535_is_told_apart_with_its_fix() {
    let mut d = Doctor::start();
    d.env.create_user("sender");
    d.env.create_user("someone-else");
    let region = d.region();
    let (id, secret) = d.key("sender");
    let pw = d.password(&secret, &region);
    let other_region = if region == "eu-west-1" {
        "us-east-2"
    } else {
        "eu-west-1"
    };
    let pw_other_region = d.password(&secret, other_region);
    let v2 = legacy_v2(&secret);
    d.remember(&v2);
    let appended = version_byte_appended(&pw);
    d.remember(&appended);
    let asia = format!("ASIA{}", &id[4..]);

    // (what, document, check that names it, needle, whether AUTH gets 535)
    let cases: Vec<(&str, Value, &str, String)> = vec![
        (
            "temporary key id",
            d.doc("sender", &asia, &pw),
            "username",
            "temporary access key id".into(),
        ),
        (
            "IAM user name as username",
            d.doc("sender", "sender", &pw),
            "username",
            "IAM user name (sender)".into(),
        ),
        (
            "white space around username",
            d.doc("sender", &format!("{id} "), &pw),
            "username",
            "white space".into(),
        ),
        (
            "quotes around password",
            d.doc("sender", &id, &format!("\"{pw}\"")),
            "password-format",
            "quotes".into(),
        ),
        (
            "line break after password",
            d.doc("sender", &id, &format!("{pw}\n")),
            "password-format",
            "white space".into(),
        ),
        (
            "legacy V2 password",
            d.doc("sender", &id, &v2),
            "password-derivation",
            "legacy V2".into(),
        ),
        (
            "version byte appended",
            d.doc("sender", &id, &appended),
            "password-derivation",
            "appended".into(),
        ),
        (
            "raw secret as password",
            d.doc("sender", &id, &secret),
            "password-derivation",
            "raw secret access key".into(),
        ),
        (
            "password for another region",
            d.doc("sender", &id, &pw_other_region),
            "password-derivation",
            format!("derived for {other_region}, but the endpoint serves {region}"),
        ),
    ];
    for (what, doc, id_at_fault, needle) in &cases {
        let (code, v) = d.diagnose(doc, Some(&secret));
        assert_eq!(code, 1, "{what}: {v:#}");
        expect(&v, id_at_fault, "fail", needle);
        // The real server agrees: 535, and auth points back at the cause.
        expect(&v, "auth", "fail", "535");
        expect(&v, "auth", "fail", id_at_fault);
    }
    // The shapes alone (no key file) already tell V2, appended byte and raw secret apart.
    for (doc, needle) in [
        (d.doc("sender", &id, &v2), "legacy V2"),
        (d.doc("sender", &id, &secret), "raw secret access key"),
    ] {
        let (_, v) = d.diagnose(&doc, None);
        expect(&v, "password-format", "fail", needle);
        expect(
            &v,
            "password-derivation",
            "skip",
            "--secret-access-key-file",
        );
    }

    // IAM: an inactive key, a deleted key, another user's key.
    let (inactive, inactive_secret) = d.key("sender");
    let inactive_pw = d.password(&inactive_secret, &region);
    d.env
        .block_on(
            d.env
                .iam
                .update_access_key()
                .user_name("sender")
                .access_key_id(&inactive)
                .status(aws_sdk_iam::types::StatusType::Inactive)
                .send(),
        )
        .expect("deactivate");
    let (code, v) = d.diagnose(
        &d.doc("sender", &inactive, &inactive_pw),
        Some(&inactive_secret),
    );
    assert_eq!(code, 1);
    expect(&v, "iam-key", "fail", "Inactive");
    expect(&v, "password-derivation", "pass", "correct");
    expect(&v, "auth", "fail", "iam-key");

    let (gone, gone_secret) = d.key("someone-else");
    let gone_pw = d.password(&gone_secret, &region);
    d.env
        .block_on(
            d.env
                .iam
                .delete_access_key()
                .user_name("someone-else")
                .access_key_id(&gone)
                .send(),
        )
        .expect("delete");
    let (code, v) = d.diagnose(&d.doc("sender", &gone, &gone_pw), None);
    assert_eq!(code, 1);
    expect(&v, "iam-key", "fail", "deleted");
    expect(&v, "auth", "fail", "535");

    let (theirs, theirs_secret) = d.key("someone-else");
    let theirs_pw = d.password(&theirs_secret, &region);
    let (code, v) = d.diagnose(&d.doc("sender", &theirs, &theirs_pw), None);
    // SES takes any active key; rotating this document would act on the wrong user.
    assert_eq!(code, 1);
    expect(
        &v,
        "iam-key",
        "fail",
        "belongs to IAM user someone-else, not to sender",
    );
    expect(&v, "auth", "pass", "235");

    // A malformed document is a failed document check, naming the field.
    let mut bad = d.doc("sender", &id, &pw);
    bad["port"] = "smtp".into();
    let (code, v) = d.diagnose(&bad, None);
    assert_eq!(code, 1);
    expect(&v, "document", "fail", "\"port\"");
    d.assert_no_secrets_printed();
}

#[test]
fn a_right_password_that_still_gets_535_means_ses_is_not_enabled_there() {
    // The emulator is SES in its own region only: for a document in another region it is an
    // endpoint where this account has no SES, answering 535 to correct credentials.
    let mut d = Doctor::start();
    d.env.create_user("sender");
    let (id, secret) = d.key("sender");
    let other = if d.region() == "eu-west-1" {
        "us-east-2"
    } else {
        "eu-west-1"
    };
    let pw = d.password(&secret, other);
    let mut doc = d.doc("sender", &id, &pw);
    doc["region"] = other.into();
    let (code, v) = d.diagnose(&doc, Some(&secret));
    assert_eq!(code, 1, "{v:#}");
    for id in [
        "document",
        "username",
        "password-format",
        "password-derivation",
        "endpoint",
        "iam-key",
        "connect",
    ] {
        assert_eq!(check(&v, id)["status"], "pass", "{id}: {v:#}");
    }
    expect(
        &v,
        "auth",
        "fail",
        &format!("SES is not enabled for SMTP for this account in {other}"),
    );
    d.assert_no_secrets_printed();
}

#[test]
fn url_style_settings_get_a_warning_not_a_failure() {
    let mut d = Doctor::start();
    d.env.create_user("sender");
    let region = d.region();
    // Three V4 passwords in four hold a + or /: make keys until one does (IAM allows two keys
    // per user, so each unsuitable one is deleted first).
    let (id, secret, pw) = loop {
        let (id, secret) = d.key("sender");
        let pw = d.password(&secret, &region);
        if pw.contains(['+', '/']) {
            break (id, secret, pw);
        }
        d.env
            .block_on(
                d.env
                    .iam
                    .delete_access_key()
                    .user_name("sender")
                    .access_key_id(&id)
                    .send(),
            )
            .expect("delete");
    };
    let (code, v) = d.diagnose(&d.doc("sender", &id, &pw), Some(&secret));
    assert_eq!(code, 0, "a warning does not fail the run: {v:#}");
    expect(&v, "url-encoding", "warn", "percent-encoded");
    expect(&v, "url-encoding", "warn", "%2F");
    d.assert_no_secrets_printed();
}

#[test]
fn a_tls_mode_that_does_not_fit_the_port_names_the_mode_that_answers() {
    let mut d = Doctor::start();
    d.env.create_user("sender");
    let (id, secret) = d.key("sender");
    let pw = d.password(&secret, &d.region());
    let implicit_port = d.env.info["smtp_tls_port"].clone();
    let mut doc = d.doc("sender", &id, &pw);
    doc["port"] = implicit_port;
    doc["tls"] = "starttls".into();
    let (code, v) = d.diagnose(&doc, None);
    assert_eq!(code, 1);
    expect(&v, "connect", "fail", "the port speaks implicit TLS");
    expect(&v, "connect", "fail", "\"tls\": \"implicit\"");
    expect(&v, "auth", "skip", "connect");

    let mut doc = d.doc("sender", &id, &pw);
    doc["tls"] = "implicit".into();
    let (code, v) = d.diagnose(&doc, None);
    assert_eq!(code, 1);
    expect(&v, "connect", "fail", "the port speaks STARTTLS");
    expect(&v, "connect", "fail", "\"tls\": \"starttls\"");
    assert_eq!(logins(&d.env), 0, "no AUTH after a failed connect");
    d.assert_no_secrets_printed();
}

#[test]
fn unreachable_and_silent_hosts_fail_connect_within_the_bound() {
    let mut d = Doctor::start();
    d.env.create_user("sender");
    let (id, secret) = d.key("sender");
    let pw = d.password(&secret, &d.region());

    // Refused: a port nothing listens on.
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let refused_port = free.local_addr().expect("addr").port();
    drop(free);
    let mut doc = d.doc("sender", &id, &pw);
    doc["port"] = refused_port.into();
    let (code, v) = d.diagnose(&doc, None);
    assert_eq!(code, 1);
    expect(&v, "connect", "fail", "refused the connection");
    expect(&v, "auth", "skip", "connect");

    // Silent: a socket that accepts connections and never says a word (the guard in `run`
    // fails the test if the run does not end within 30 s).
    let blackhole = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut doc = d.doc("sender", &id, &pw);
    doc["port"] = blackhole.local_addr().expect("addr").port().into();
    let (code, v) = d.diagnose(&doc, None);
    assert_eq!(code, 1);
    expect(&v, "connect", "fail", "gets no SMTP answer");
    expect(&v, "connect", "fail", "implicit TLS does not answer either");
    expect(&v, "auth", "skip", "connect");
    drop(blackhole);
    d.assert_no_secrets_printed();
}

#[test]
fn a_host_that_is_not_allowed_gets_no_connection_and_no_credentials() {
    let mut d = Doctor::start();
    d.env.create_user("sender");
    let (id, secret) = d.key("sender");
    let pw = d.password(&secret, &d.region());
    let doc = d.doc("sender", &id, &pw);
    d.remember_doc(&doc);
    let r = d.run(
        &["doctor", "--json", "--document", "-"],
        &doc.to_string(),
        &[],
        &["SMTP_ALLOWED_HOSTS"],
    );
    assert_eq!(r.code, 1);
    let v = r.json();
    assert_design_shape(&v, 1);
    expect(&v, "endpoint", "fail", "SMTP_ALLOWED_HOSTS");
    expect(
        &v,
        "endpoint",
        "fail",
        &format!("email-smtp.{}.amazonaws.com", d.region()),
    );
    expect(&v, "connect", "skip", "endpoint");
    expect(&v, "auth", "skip", "endpoint");
    assert_eq!(logins(&d.env), 0);
    d.assert_no_secrets_printed();
}

#[test]
fn without_aws_credentials_the_iam_checks_skip_and_the_rest_runs() {
    let mut d = Doctor::start();
    d.env.create_user("sender");
    let (id, secret) = d.key("sender");
    let pw = d.password(&secret, &d.region());
    let doc = d.doc("sender", &id, &pw);
    d.remember_doc(&doc);
    let r = d.run(
        &["doctor", "--json", "--document", "-"],
        &doc.to_string(),
        &[],
        &["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
    );
    assert!(r.stderr.is_empty(), "{}", r.stderr);
    let v = r.json();
    assert_eq!(r.code, 0, "skips do not fail the run: {v:#}");
    expect(&v, "iam-key", "skip", "no AWS credentials");
    expect(&v, "iam-permission", "skip", "no AWS credentials");
    expect(&v, "auth", "pass", "235");

    // Reading the secret itself needs credentials: a failed document check, not a crash.
    let r = d.run(
        &["doctor", "--secret-id", "smtp"],
        "",
        &[],
        &["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
    );
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.starts_with("✗ document"), "{}", r.stdout);
    assert!(r.stdout.contains("no AWS credentials"), "{}", r.stdout);
    d.assert_no_secrets_printed();
}

#[test]
fn an_untrusted_certificate_is_named_once_by_doctor_and_test_login() {
    let mut d = Doctor::start();
    d.env.create_user("sender");
    let (id, secret) = d.key("sender");
    let pw = d.password(&secret, &d.region());
    let doc = d.doc("sender", &id, &pw);
    d.remember_doc(&doc);
    // The public roots do not hold the emulator's test CA.
    let public = [("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")];
    let r = d.run(
        &["doctor", "--json", "--document", "-"],
        &doc.to_string(),
        &public,
        &[],
    );
    assert_eq!(r.code, 1);
    let v = r.json();
    expect(
        &v,
        "connect",
        "fail",
        "certificate not trusted for localhost",
    );
    expect(&v, "connect", "fail", "SSL_CERT_FILE");
    expect(&v, "auth", "skip", "connect");

    let r = d.run(
        &["test-login", "--timeout", "5"],
        &doc.to_string(),
        &public,
        &[],
    );
    assert_eq!(r.code, 1);
    assert!(r.stdout.is_empty());
    assert_eq!(
        r.stderr
            .matches("certificate not trusted for localhost")
            .count(),
        1,
        "{}",
        r.stderr
    );
    assert_eq!(
        r.stderr.matches("invalid peer certificate").count(),
        1,
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("unreachable"), "{}", r.stderr);
    assert!(r.stderr.contains("SSL_CERT_FILE"), "{}", r.stderr);
    assert_eq!(logins(&d.env), 0, "no AUTH over an unverified connection");

    // test-login checks SSL_CERT_FILE up front, as the Lambda does.
    let not_pem = d.env.dir.join("not-a-bundle.pem");
    std::fs::write(&not_pem, "not a certificate\n").expect("write");
    let r = d.run(
        &["test-login"],
        &doc.to_string(),
        &[("SSL_CERT_FILE", not_pem.to_str().unwrap())],
        &[],
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("SSL_CERT_FILE names a file with no PEM certificate"),
        "{}",
        r.stderr
    );
    let r = d.run(
        &["doctor", "--json", "--document", "-"],
        &doc.to_string(),
        &[("SSL_CERT_FILE", not_pem.to_str().unwrap())],
        &[],
    );
    let v = r.json();
    expect(
        &v,
        "connect",
        "fail",
        "SSL_CERT_FILE names a file with no PEM certificate",
    );
    expect(&v, "iam-key", "skip", "SSL_CERT_FILE");
    d.assert_no_secrets_printed();
}

#[test]
fn a_temporary_failure_is_not_called_a_rejection() {
    let mut d = Doctor::start();
    d.env.create_user("sender");
    let (id, secret) = d.key("sender");
    let pw = d.password(&secret, &d.region());
    d.env.smtp_config(json!({"force_454": 1}));
    let (code, v) = d.diagnose(&d.doc("sender", &id, &pw), None);
    assert_eq!(code, 1);
    expect(&v, "auth", "fail", "454");
    expect(&v, "auth", "fail", "try again");
    d.assert_no_secrets_printed();
}

/// README's documented policy for `doctor` (the block between the doctor-policy markers),
/// placeholders filled in.
fn readme_doctor_policy(region: &str, account: &str, name: &str, user: &str) -> Value {
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .expect("README");
    let block = readme
        .split("<!-- doctor-policy:begin -->")
        .nth(1)
        .and_then(|s| s.split("<!-- doctor-policy:end -->").next())
        .expect("README has the doctor policy block");
    let json_text = block
        .trim()
        .trim_start_matches("```json")
        .trim_end_matches("```")
        .replace("<region>", region)
        .replace("<account>", account)
        .replace("<name>", name)
        .replace("<path>", common::USER_PATH)
        .replace("<user>", user);
    serde_json::from_str(&json_text).expect("the README's doctor policy is JSON")
}

#[test]
fn doctor_needs_no_more_than_the_permissions_readme_documents() {
    let (mut d, id, _, doc) = Doctor::with_working_credentials();
    let region = d.region();
    // Created as the operator (no rotation stack's policy is bound): doctor's credentials get
    // README's policy and nothing else.
    let arn = d.env.create_secret_as("smtp", &doc, false, None);
    let account = d.env.info["account"].as_str().expect("account").to_owned();
    let policy = readme_doctor_policy(&region, &account, "smtp", "sender");
    d.env
        .policy(json!({"label": "doctor", "variant": "doctor", "statements": policy["Statement"]}));
    let lambda_env = d.env.info["lambda_env"].clone();
    let creds: Vec<(&str, &str)> = [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ]
    .iter()
    .map(|k| (*k, lambda_env[*k].as_str().expect("credential")))
    .collect();
    let r = d.run(&["doctor", "--json", "--secret-id", &arn], "", &creds, &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let v = r.json();
    expect(&v, "iam-key", "pass", &id);
    expect(&v, "auth", "pass", "235");
    expect(&v, "rotation-state", "pass", "no rotation pending");
    let used = d.env.allowed_actions();
    for action in [
        "secretsmanager:GetSecretValue",
        "secretsmanager:ListSecretVersionIds",
        "iam:ListAccessKeys",
        "iam:GetUser",
        "iam:ListUserTags",
    ] {
        assert!(used.iter().any(|a| a == action), "{action}: {used:?}");
    }
    assert!(d.env.denials().is_empty(), "{:?}", d.env.denials());
}

/// A private relay's CA given in SMTP_CA_FILE is trusted for SMTP in addition to the public
/// roots, not instead of them: with the system's roots (SSL_CERT_FILE unset, or pointing at
/// the public bundle) plus SMTP_CA_FILE = the emulator's test CA, doctor's connect and auth
/// pass and test-login gets its 235; with the public roots alone the same server is not
/// trusted (so the pass is the added CA's doing). The IAM checks, which go through the AWS
/// SDK, run the same either way, and a bad SMTP_CA_FILE fails `connect` by name without
/// skipping them (the SDK does not read it). roots.rs's unit test shows the public roots
/// (Amazon Root CA 1 among them) stay in SMTP's set and the SDK's set does not change.
#[test]
fn a_relay_ca_in_smtp_ca_file_is_added_to_the_public_roots_for_smtp() {
    let (mut d, _, _, doc) = Doctor::with_working_credentials();
    d.remember_doc(&doc);
    let test_ca = d.env.info["lambda_env"]["SSL_CERT_FILE"]
        .as_str()
        .expect("the stand-in's CA file")
        .to_owned();
    let public = "/etc/ssl/certs/ca-certificates.crt";
    let json = ["doctor", "--json", "--document", "-"];

    // The control: the public roots alone do not trust the emulator.
    let r = d.run(&json, &doc.to_string(), &[("SSL_CERT_FILE", public)], &[]);
    let v = r.json();
    expect(
        &v,
        "connect",
        "fail",
        "certificate not trusted for localhost",
    );
    expect(&v, "connect", "fail", "SMTP_CA_FILE");

    for (set, unset) in [
        (
            vec![("SMTP_CA_FILE", test_ca.as_str())],
            vec!["SSL_CERT_FILE"],
        ),
        (
            vec![
                ("SSL_CERT_FILE", public),
                ("SMTP_CA_FILE", test_ca.as_str()),
            ],
            vec![],
        ),
    ] {
        let r = d.run(&json, &doc.to_string(), &set, &unset);
        let v = r.json();
        assert_eq!(r.code, 0, "{set:?}: {v:#}");
        expect(
            &v,
            "connect",
            "pass",
            "certificate is trusted for localhost",
        );
        expect(&v, "auth", "pass", "235");
        expect(&v, "iam-key", "pass", "");
        let r = d.run(
            &["test-login", "--timeout", "10"],
            &doc.to_string(),
            &set,
            &unset,
        );
        assert_eq!(r.code, 0, "{set:?}: {}{}", r.stdout, r.stderr);
        assert!(r.stdout.starts_with("235 accepted"), "{}", r.stdout);
    }

    // A bad SMTP_CA_FILE is named; the IAM checks (the SDK's trust) are not affected by it.
    let not_pem = d.env.dir.join("not-a-ca.pem");
    std::fs::write(&not_pem, "not a certificate\n").expect("write");
    let bad = [("SMTP_CA_FILE", not_pem.to_str().expect("path"))];
    let r = d.run(&json, &doc.to_string(), &bad, &[]);
    let v = r.json();
    expect(
        &v,
        "connect",
        "fail",
        "SMTP_CA_FILE names a file with no PEM certificate",
    );
    expect(&v, "auth", "skip", "connect");
    expect(&v, "iam-key", "pass", "");
    let r = d.run(&["test-login"], &doc.to_string(), &bad, &[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("SMTP_CA_FILE names a file with no PEM certificate"),
        "{}",
        r.stderr
    );
    d.assert_no_secrets_printed();
}

/// Binds README's doctor policy for secret `name` and user `user` and returns the
/// credentials that run under it (the stand-in authorizes requests signed with them).
fn under_readme_policy(d: &Doctor, name: &str, user: &str) -> Vec<(String, String)> {
    let account = d.env.info["account"].as_str().expect("account").to_owned();
    let policy = readme_doctor_policy(&d.region(), &account, name, user);
    d.env
        .policy(json!({"label": "doctor", "variant": "doctor", "statements": policy["Statement"]}));
    let lambda_env = d.env.info["lambda_env"].clone();
    [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ]
    .iter()
    .map(|k| {
        (
            (*k).to_owned(),
            lambda_env[*k].as_str().expect("credential").to_owned(),
        )
    })
    .collect()
}

fn pairs(v: &[(String, String)]) -> Vec<(&str, &str)> {
    v.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// An epoch time as doctor prints it.
fn printed_time(secs: i64) -> String {
    aws_smithy_types::DateTime::from_secs(secs)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .expect("time")
}

/// A key record value as README documents it: `<secret>:<token>:<state>:<epoch>`, the first
/// two the first 4 bytes of SHA-256 of the secret's ARN and of the minting token, in hex.
fn record_value(arn: &str, state: &str, at: i64) -> String {
    use sha2::Digest;
    let digest = |s: &str| -> String {
        sha2::Sha256::digest(s.as_bytes())[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    format!(
        "{}:{}:{state}:{at}",
        digest(arn),
        digest("an-earlier-token-of-36-characters-x")
    )
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// A version staged AWSPENDING (and not AWSCURRENT) is a rotation in progress: reported with
/// its version id and since when (Secrets Manager's CreatedDate, not the time of the run),
/// as a warning while young and as a failure once older than the stuck threshold (here a
/// fraction of an hour, `--stuck-after-hours`), with the commands that retry or abandon it.
#[test]
fn a_pending_rotation_is_in_progress_then_stuck_with_its_age() {
    let (mut d, _, _, doc) = Doctor::with_working_credentials();
    let arn = d.env.create_secret("smtp", &doc);
    let token = d.env.pending(&arn);
    let created = d.env.get(&format!("/versions?secret_id={arn}"));
    let created = created
        .as_array()
        .expect("versions")
        .iter()
        .find(|v| v["version_id"] == token.as_str())
        .expect("the pending version")["created_date"]
        .as_f64()
        .expect("created_date");
    let since = printed_time(created.floor() as i64);

    // Young: in progress, a warning (the run still passes: SES accepts AWSCURRENT).
    let r = d.run(&["doctor", "--json", "--secret-id", &arn], "", &[], &[]);
    let v = r.json();
    assert_design_shape(&v, r.code);
    assert_eq!(r.code, 0, "{v:#}");
    expect(&v, "rotation-state", "warn", "a rotation is in progress");
    expect(
        &v,
        "rotation-state",
        "warn",
        &format!("version {token} has been AWSPENDING since {since}"),
    );
    expect(&v, "rotation-state", "warn", "after 2 h it is stuck");

    // Older than the threshold: stuck, a failure naming the version and how to get out.
    std::thread::sleep(Duration::from_millis(1500));
    let r = d.run(
        &[
            "doctor",
            "--json",
            "--secret-id",
            &arn,
            "--stuck-after-hours",
            "0.0003",
        ],
        "",
        &[],
        &[],
    );
    let v = r.json();
    assert_design_shape(&v, r.code);
    assert_eq!(r.code, 1, "a stuck rotation fails the run: {v:#}");
    expect(&v, "rotation-state", "fail", "a rotation is stuck");
    expect(&v, "rotation-state", "fail", &format!("since {since}"));
    expect(&v, "rotation-state", "fail", "longer than 0.0003 h");
    expect(
        &v,
        "rotation-state",
        "fail",
        &format!("--version-stage AWSPENDING --remove-from-version-id {token}"),
    );
    expect(&v, "auth", "pass", "235");

    // As text: the failed check is named in the verdict.
    let r = d.run(
        &[
            "doctor",
            "--secret-id",
            &arn,
            "--stuck-after-hours",
            "0.0003",
        ],
        "",
        &[],
        &[],
    );
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("✗ rotation-state"), "{}", r.stdout);
    assert!(
        r.stdout.contains("1 check failed (rotation-state)"),
        "{}",
        r.stdout
    );

    // A threshold that is not a positive number of hours is a usage error.
    let r = d.run(
        &["doctor", "--secret-id", &arn, "--stuck-after-hours", "0"],
        "",
        &[],
        &[],
    );
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--stuck-after-hours"), "{}", r.stderr);
    d.assert_no_secrets_printed();
}

/// A key recorded `p` (previous: replaced by a promotion, still Active) is in its grace:
/// doctor says since when, what retires it, and its last use as IAM reports it — none at
/// first, then the use the test makes with that key, which came after the replacement. An
/// unreadable record fails the check by its tag. All under README's doctor policy.
#[test]
fn an_old_key_in_grace_is_reported_with_its_last_use() {
    let (mut d, current, _, doc) = Doctor::with_working_credentials();
    let (old, old_secret) = d.key("sender");
    // Under README's policy only: no rotation stack's policy is bound.
    let arn = d.env.create_secret_as("smtp", &doc, false, None);
    d.env.assign_user("sender", &arn);
    let now = now_secs();
    let replaced = now - 1800;
    let tag_key = |k: &str| format!("ses-smtp-rotator:key:{k}");
    d.env.tag_user(
        "sender",
        &tag_key(&current),
        &record_value(&arn, "c", replaced),
    );
    d.env
        .tag_user("sender", &tag_key(&old), &record_value(&arn, "p", replaced));
    let creds = under_readme_policy(&d, "smtp", "sender");

    let r = d.run(
        &["doctor", "--json", "--secret-id", &arn],
        "",
        &pairs(&creds),
        &[],
    );
    let v = r.json();
    assert_design_shape(&v, r.code);
    assert_eq!(r.code, 0, "a key in grace is a warning: {v:#}");
    let grace = format!(
        "the previous key {old} is Active, in grace since {}",
        printed_time(replaced)
    );
    expect(&v, "rotation-state", "warn", &grace);
    expect(
        &v,
        "rotation-state",
        "warn",
        "retired by the scheduled maintenance after OLD_KEY_GRACE_HOURS (default 24, up to OLD_KEY_MAX_GRACE_HOURS 72 while still in use)",
    );
    expect(&v, "rotation-state", "warn", "IAM reports no use of it");
    expect(
        &v,
        "rotation-state",
        "warn",
        &format!("{current} current since"),
    );
    expect(&v, "rotation-state", "warn", "no rotation pending");

    // The old key is used (an AWS request signed with it: IAM records its last use).
    let conf = d
        .env
        .iam
        .config()
        .to_builder()
        .credentials_provider(aws_sdk_iam::config::Credentials::new(
            &old,
            &old_secret,
            None,
            None,
            "old-key",
        ))
        .build();
    let as_old = aws_sdk_iam::Client::from_conf(conf);
    d.env
        .block_on(as_old.list_access_keys().user_name("sender").send())
        .expect("a request with the old key");
    let r = d.run(
        &["doctor", "--json", "--secret-id", &arn],
        "",
        &pairs(&creds),
        &[],
    );
    let v = r.json();
    assert_eq!(r.code, 0, "{v:#}");
    expect(&v, "rotation-state", "warn", &grace);
    expect(&v, "rotation-state", "warn", "last used ");
    expect(&v, "rotation-state", "warn", "by iam in");
    expect(
        &v,
        "rotation-state",
        "warn",
        "after it was replaced: something still sends with the old key",
    );
    expect(
        &v,
        "rotation-state",
        "warn",
        "make it read the secret again",
    );
    let used = d.env.allowed_actions();
    for action in [
        "secretsmanager:ListSecretVersionIds",
        "iam:ListUserTags",
        "iam:GetAccessKeyLastUsed",
    ] {
        assert!(used.iter().any(|a| a == action), "{action}: {used:?}");
    }
    assert!(d.env.denials().is_empty(), "{:?}", d.env.denials());

    // A record tag that does not parse stops every rotation: a failure naming the tag.
    d.env.tag_user("sender", &tag_key(&old), "not-a-record");
    let r = d.run(
        &["doctor", "--json", "--secret-id", &arn],
        "",
        &pairs(&creds),
        &[],
    );
    let v = r.json();
    assert_design_shape(&v, r.code);
    assert_eq!(r.code, 1, "{v:#}");
    expect(&v, "rotation-state", "fail", "is unreadable");
    expect(&v, "rotation-state", "fail", &tag_key(&old));
    expect(&v, "rotation-state", "fail", "KeyRecordUnreadable");
    expect(&v, "auth", "pass", "235");
    d.assert_no_secrets_printed();
}

/// A document with `regions`: every region gets its own login, at its own endpoint with its
/// own password (the stand-in runs one SES emulator per region, each accepting only its
/// region's password). A wrong password for one region fails `password-derivation` and `auth`
/// for that region by name while the other region's login passes; a region without its
/// password is named by `password-format`.
#[test]
fn every_region_of_a_document_gets_a_login_and_the_wrong_one_is_named() {
    const OTHER: &str = "eu-west-1";
    let mut d = Doctor::on(Env::start_with_args(&[
        "--smtp-regions",
        &format!("us-east-1,{OTHER}"),
    ]));
    let primary = d.region();
    assert_eq!(primary, "us-east-1");
    d.env.create_user("sender");
    let (id, secret) = d.key("sender");
    let pw = d.password(&secret, &primary);
    let pw_other = d.password(&secret, OTHER);
    let other_port = d.env.info["smtp"][OTHER]["tls_port"].clone();
    assert!(other_port.is_u64(), "{:#}", d.env.info["smtp"]);
    let mut doc = d.doc("sender", &id, &pw);
    doc["regions"] =
        json!([{"region": OTHER, "host": "localhost", "port": other_port, "tls": "implicit"}]);
    doc["passwords"] = json!({ primary.as_str(): pw, OTHER: pw_other });
    let logins_of = |env: &Env, region: &str| -> Vec<i64> {
        env.get(&format!("/smtp/logins?region={region}"))
            .as_array()
            .expect("logins")
            .iter()
            .filter(|l| l["username"] == id.as_str())
            .map(|l| l["code"].as_i64().unwrap_or_default())
            .collect()
    };

    // Right everywhere: one 235 per region, each region named.
    let (code, v) = d.diagnose(&doc, Some(&secret));
    assert_eq!(code, 0, "{v:#}");
    expect(&v, "auth", "pass", &format!("[{primary}] 235"));
    expect(&v, "auth", "pass", &format!("[{OTHER}] 235"));
    expect(
        &v,
        "password-derivation",
        "pass",
        &format!("[{OTHER}] the correct V4 password for {OTHER}"),
    );
    expect(
        &v,
        "connect",
        "pass",
        &format!("[{OTHER}] localhost:{other_port} answers SMTP with implicit TLS"),
    );
    assert_eq!(logins_of(&d.env, &primary), [235]);
    assert_eq!(logins_of(&d.env, OTHER), [235]);

    // The primary region's password stored for the other region: that region fails by name.
    let mut wrong = doc.clone();
    wrong["passwords"][OTHER] = pw.clone().into();
    let (code, v) = d.diagnose(&wrong, Some(&secret));
    assert_eq!(code, 1, "{v:#}");
    expect(&v, "auth", "fail", &format!("[{primary}] 235"));
    expect(&v, "auth", "fail", &format!("[{OTHER}] 535"));
    expect(
        &v,
        "auth",
        "fail",
        "as the failed checks explain: password-derivation",
    );
    expect(
        &v,
        "password-derivation",
        "fail",
        &format!("[{OTHER}] a V4 password derived for {primary}, but the endpoint serves {OTHER}"),
    );
    expect(
        &v,
        "password-derivation",
        "fail",
        &format!("[{OTHER}] derive it for {OTHER}"),
    );
    let summary = check(&v, "password-derivation")["summary"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        summary.starts_with(&format!(
            "[{primary}] the correct V4 password for {primary}"
        )),
        "{summary}"
    );
    assert!(
        !check(&v, "auth")["fix"]
            .as_str()
            .unwrap()
            .contains(&format!("[{primary}]")),
        "{v:#}"
    );
    assert_eq!(logins_of(&d.env, &primary), [235, 235]);
    assert_eq!(logins_of(&d.env, OTHER), [235, 535]);

    // Without the key file, the login alone names the region.
    let (code, v) = d.diagnose(&wrong, None);
    assert_eq!(code, 1, "{v:#}");
    expect(&v, "auth", "fail", &format!("[{OTHER}] 535"));

    // A region with no password: named, and not logged in to.
    let mut missing = doc.clone();
    missing["passwords"] = json!({ primary.as_str(): pw });
    let (code, v) = d.diagnose(&missing, None);
    assert_eq!(code, 1, "{v:#}");
    expect(
        &v,
        "password-format",
        "fail",
        &format!("[{OTHER}] \"passwords\" has no password for {OTHER}"),
    );
    expect(&v, "auth", "skip", &format!("[{primary}] 235"));
    assert_eq!(
        logins_of(&d.env, OTHER).len(),
        3,
        "no login without a password"
    );
    d.assert_no_secrets_printed();
}

/// A password of the legacy V2 form (44 characters starting with A) is named as such with
/// the command that derives the V4 one, even when its version byte is mangled — never "not an
/// SES SMTP password" — and SES's 535 is explained by it.
#[test]
fn a_v2_form_password_is_named_with_the_fix() {
    let (mut d, id, secret, _) = Doctor::with_working_credentials();
    let region = d.region();
    let v2 = legacy_v2(&secret);
    // The second character carries the version byte's low bits: 'A' makes it 0x00.
    let mangled = format!("AA{}", &v2[2..]);
    d.remember(&mangled);
    for pw in [v2.as_str(), mangled.as_str()] {
        let doc = d.doc("sender", &id, pw);
        let (code, v) = d.diagnose(&doc, None);
        assert_eq!(code, 1, "{v:#}");
        expect(&v, "password-format", "fail", "a SigV2 SMTP password");
        expect(&v, "password-format", "fail", "no longer accepted by SES");
        expect(
            &v,
            "password-format",
            "fail",
            &format!(
                "derive the V4 password with `ses-smtp-rotator smtp-password --region {region}` from the secret access key"
            ),
        );
        let c = check(&v, "password-format");
        assert!(
            !c["summary"]
                .as_str()
                .unwrap()
                .contains("not an SES SMTP password"),
            "{c}"
        );
        expect(&v, "auth", "fail", "535");
        expect(&v, "auth", "fail", "password-format");
    }
    let (_, v) = d.diagnose(&d.doc("sender", &id, &mangled), Some(&secret));
    expect(
        &v,
        "password-derivation",
        "fail",
        "a SigV2 SMTP password by its form",
    );
    d.assert_no_secrets_printed();
}
