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

const IDS: [&str; 10] = [
    "document",
    "username",
    "password-format",
    "password-derivation",
    "endpoint",
    "iam-key",
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
        Self {
            env: Env::start(),
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
    let used = d.env.allowed_actions();
    for action in [
        "secretsmanager:GetSecretValue",
        "iam:ListAccessKeys",
        "iam:GetUser",
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
