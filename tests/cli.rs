//! The command-line face, through the real binary.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

fn run(args: &[&str], stdin: &str) -> (i32, String, String) {
    run_env(args, stdin, &[])
}

/// Runs the binary with only `PATH` and `env` in its environment: no AWS credentials, no
/// `SMTP_ALLOWED_HOSTS` or `SSL_CERT_FILE` from the shell that runs the tests, and no
/// instance metadata service (nothing here may reach AWS).
fn run_env(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> (i32, String, String) {
    let mut child = Command::new(common::binary())
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", std::env::temp_dir())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary");
    // The binary may refuse its arguments and exit before reading stdin: a broken pipe here
    // is part of that outcome, not a test failure.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// A TCP server on 127.0.0.1 that greets every connection with `220 ` and a line that never
/// ends (at most [`Flood::CAP`] bytes per connection, and only while the client reads), and
/// counts what it could send on each connection.
struct Flood {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    acceptor: std::thread::JoinHandle<Vec<usize>>,
}

impl Flood {
    /// What one connection may be sent at most: far beyond the client's bound, so a client
    /// that does not stop reading is seen reaching it.
    const CAP: usize = 256 << 20;

    fn start() -> Self {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let acceptor = std::thread::spawn(move || {
            let mut senders = Vec::new();
            while !stopped.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut conn, _)) => senders.push(std::thread::spawn(move || {
                        conn.set_nonblocking(false).unwrap();
                        conn.set_write_timeout(Some(std::time::Duration::from_secs(20)))
                            .unwrap();
                        let chunk = vec![b'A'; 64 * 1024];
                        let mut sent = conn.write(b"220 ").unwrap_or(0);
                        while sent < Self::CAP {
                            match conn.write(&chunk) {
                                Ok(n) => sent += n,
                                Err(_) => break,
                            }
                        }
                        sent
                    })),
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
                }
            }
            senders.into_iter().map(|s| s.join().unwrap()).collect()
        });
        Self {
            port,
            stop,
            acceptor,
        }
    }

    /// Stops accepting; the bytes sent on each connection, in order.
    fn stop(self) -> Vec<usize> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.acceptor.join().unwrap()
    }
}

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

#[test]
fn smtp_password_prints_the_published_answer() {
    for input in [
        SECRET.to_owned(),
        format!("{SECRET}\n"),
        format!("{SECRET}\r\n"),
    ] {
        let (code, out, err) = run(&["smtp-password", "--region", "us-east-2"], &input);
        assert_eq!(code, 0, "{err}");
        assert_eq!(out, "BMPPgbAHoFVbze1Ud0oA5uNdXRwUXUZ+qOwphGJbl/cS\n");
    }
}

#[test]
fn smtp_password_refuses_bad_input_with_nothing_on_stdout() {
    for (args, input, needle) in [
        (
            vec!["smtp-password", "--region", "US-EAST-2"],
            SECRET.to_owned(),
            "region",
        ),
        (
            vec!["smtp-password", "--region", "us-east-2"],
            String::new(),
            "no secret access key",
        ),
        (
            vec!["smtp-password", "--region", "us-east-2"],
            format!(" {SECRET}"),
            "white space",
        ),
        (
            vec!["smtp-password", "--region", "us-east-2"],
            format!("{SECRET}\n{SECRET}\n"),
            "one line",
        ),
        (
            vec!["smtp-password", "--region", "us-east-2"],
            "sécret".to_owned(),
            "non-ASCII",
        ),
        (vec!["smtp-password"], SECRET.to_owned(), "--region"),
    ] {
        let (code, out, err) = run(&args, &input);
        assert_ne!(code, 0, "{args:?}");
        assert_eq!(out, "", "{args:?}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains(SECRET), "the secret was echoed: {err}");
    }
}

/// A secret offered on the command line, in every form a person might try (a positional, after
/// `--`, as `--password=`, `--secret-access-key`, in the place of an accepted option's value),
/// is refused and never printed back: clap quotes the word it refuses, and the binary hides it.
/// Offered in the environment (as other tools read it), it is ignored: the key comes from
/// stdin only. (src/cli.rs checks the clap tree itself: no positional argument, and only
/// listed options take values.)
#[test]
fn secrets_are_not_accepted_as_arguments() {
    let eq = |opt: &str| format!("{opt}={SECRET}");
    let cases: Vec<Vec<String>> = vec![
        vec![
            "smtp-password".into(),
            "--region".into(),
            "us-east-2".into(),
            SECRET.into(),
        ],
        vec![
            "smtp-password".into(),
            "--region".into(),
            "us-east-2".into(),
            "--".into(),
            SECRET.into(),
        ],
        vec![
            "smtp-password".into(),
            "--region".into(),
            "us-east-2".into(),
            eq("--password"),
        ],
        vec![
            "smtp-password".into(),
            "--region".into(),
            "us-east-2".into(),
            eq("--secret-access-key"),
        ],
        vec![
            "smtp-password".into(),
            "--region".into(),
            "us-east-2".into(),
            "--secret".into(),
            SECRET.into(),
        ],
        vec!["smtp-password".into(), eq("--region")],
        vec!["identify-password".into(), "--region".into(), SECRET.into()],
        vec!["test-login".into(), eq("--timeout")],
        vec!["test-login".into(), "--password".into(), SECRET.into()],
        vec![
            "doctor".into(),
            "--document".into(),
            "-".into(),
            eq("--secret-access-key"),
        ],
        vec![
            "doctor".into(),
            "--document".into(),
            "-".into(),
            "--timeout".into(),
            SECRET.into(),
        ],
        vec![SECRET.into()],
    ];
    for args in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // stdin is empty: nothing may succeed with the key from the argument.
        let (code, out, err) = run(&args, "");
        assert_ne!(code, 0, "{args:?} was accepted: {out}");
        assert_eq!(out, "", "{args:?}");
        assert!(!err.is_empty(), "{args:?}: no reason given");
        assert!(
            !err.contains(SECRET),
            "{args:?}: the secret was echoed: {err}"
        );
        assert!(
            !err.contains("wJalrXUtnFEMI"),
            "{args:?}: part of the secret was echoed: {err}"
        );
    }
    // The refusal still says what was wrong.
    let (code, _, err) = run(&["smtp-password", "--region", "us-east-2", SECRET], "");
    assert_eq!(code, 2);
    assert!(
        err.contains("unexpected argument '<40 characters, not shown>'"),
        "{err}"
    );
    // In the environment, under the names other tools read: ignored, stdin is empty.
    let (code, out, err) = run_env(
        &["smtp-password", "--region", "us-east-2"],
        "",
        &[
            ("AWS_SECRET_ACCESS_KEY", SECRET),
            ("SECRET_ACCESS_KEY", SECRET),
            ("SMTP_PASSWORD", SECRET),
            ("SES_SMTP_ROTATOR_SECRET_ACCESS_KEY", SECRET),
        ],
    );
    assert_ne!(code, 0, "a key was taken from the environment: {out}");
    assert_eq!(out, "");
    assert!(err.contains("no secret access key on stdin"), "{err}");
    assert!(!err.contains(SECRET), "{err}");
}

#[test]
fn help_explains_the_commands() {
    let (code, out, _) = run(&["--help"], "");
    assert_eq!(code, 0);
    for word in [
        "smtp-password",
        "identify-password",
        "test-login",
        "AWS_LAMBDA_RUNTIME_API",
    ] {
        assert!(out.contains(word), "{word} missing from --help:\n{out}");
    }
    let (code, out, _) = run(&["smtp-password", "--help"], "");
    assert_eq!(code, 0);
    assert!(out.contains("stdin") && out.contains("region"), "{out}");
}

#[test]
fn identify_password_diagnoses_common_mistakes() {
    let v4_us_east_2 = "BMPPgbAHoFVbze1Ud0oA5uNdXRwUXUZ+qOwphGJbl/cS";
    let (code, out, _) = run(
        &["identify-password", "--region", "us-east-2"],
        &format!("{SECRET}\n{v4_us_east_2}\n"),
    );
    assert_eq!(code, 0);
    assert!(
        out.contains("correct SES SMTP password (V4) for us-east-2"),
        "{out}"
    );
    let (code, out, _) = run(
        &["identify-password", "--region", "eu-west-1"],
        &format!("{SECRET}\n{v4_us_east_2}\n"),
    );
    assert_eq!(code, 0);
    assert!(out.contains("derived for us-east-2"), "{out}");
    let (code, out, _) = run(
        &["identify-password", "--region", "us-east-1"],
        "some+secret+key\nAnkqhOiWEcszZZzTMCQbOY1sPGoLFgMH9zhp4eNgSjo4\n",
    );
    assert_eq!(code, 0);
    assert!(out.contains("legacy V2"), "{out}");
}

#[test]
fn help_lists_doctor_and_its_inputs() {
    let (code, out, _) = run(&["--help"], "");
    assert_eq!(code, 0);
    assert!(out.contains("doctor"), "{out}");
    let (code, out, _) = run(&["doctor", "--help"], "");
    assert_eq!(code, 0);
    for word in [
        "--secret-id",
        "--version-stage",
        "--document",
        "--secret-access-key-file",
        "--json",
        "535",
    ] {
        assert!(
            out.contains(word),
            "{word} missing from doctor --help:\n{out}"
        );
    }
}

#[test]
fn doctor_usage_errors_exit_2_with_nothing_on_stdout() {
    let key_missing = std::env::temp_dir().join("ses-smtp-rotator-no-such-key-file");
    let key_missing = key_missing.to_str().unwrap();
    for (args, needle) in [
        (vec!["doctor"], "required"),
        (
            vec!["doctor", "--secret-id", "x", "--document", "-"],
            "cannot be used with",
        ),
        (
            vec!["doctor", "--document", "-", "--verbose"],
            "unexpected argument",
        ),
        (
            vec!["doctor", "--document", "-", "--version-stage", "AWSPENDING"],
            "--secret-id",
        ),
        (
            vec![
                "doctor",
                "--document",
                "-",
                "--secret-access-key-file",
                key_missing,
            ],
            "--secret-access-key-file",
        ),
        (
            vec!["doctor", "--document", "-", "--timeout", "0"],
            "--timeout",
        ),
    ] {
        let (code, out, err) = run(&args, "{}");
        assert_eq!(code, 2, "{args:?}: {err}");
        assert_eq!(out, "", "{args:?}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn doctor_reports_a_malformed_document_as_a_failed_check() {
    // No network is needed: a document that is not JSON stops every other check.
    let (code, out, err) = run(&["doctor", "--json", "--document", "-"], "{\"iam_user\": ");
    assert_eq!(code, 1, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["checks"][0]["id"], "document");
    assert_eq!(v["checks"][0]["status"], "fail");
    assert!(
        v["checks"][0]["summary"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
    );
    let checks = v["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 11);
    assert!(checks[1..].iter().all(|c| c["status"] == "skip"), "{v:#}");
}

#[test]
fn doctor_never_echoes_a_key_file_that_is_not_a_key() {
    // A wrong file may hold another secret: its content is never printed.
    let path = std::env::temp_dir().join(format!("ses-doctor-keyfile-{}", std::process::id()));
    std::fs::write(&path, format!("{SECRET} trailing words\n")).unwrap();
    let (code, out, err) = run(
        &[
            "doctor",
            "--json",
            "--document",
            "-",
            "--secret-access-key-file",
            path.to_str().unwrap(),
        ],
        // No "host": nothing goes to the network (no IAM, no SMTP) in this test.
        r#"{"iam_user": "u", "region": "us-east-1", "username": "AKIAIOSFODNN7EXAMPLE", "password": "BMPPgbAHoFVbze1Ud0oA5uNdXRwUXUZ+qOwphGJbl/cS"}"#,
    );
    let _ = std::fs::remove_file(&path);
    assert_eq!(code, 1, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let derivation = &v["checks"][3];
    assert_eq!(derivation["id"], "password-derivation");
    assert_eq!(derivation["status"], "skip");
    assert!(
        derivation["summary"]
            .as_str()
            .unwrap()
            .contains("white space")
    );
    for text in [&out, &err] {
        assert!(!text.contains(SECRET));
        assert!(!text.contains("BMPPgbAHoFVbze1Ud0oA5uNdXRwUXUZ+qOwphGJbl/cS"));
    }
}

/// A server that greets with a line that never ends: the client must stop reading at its byte
/// bound (before TLS, where lettre's line reader would otherwise grow without limit) and fail,
/// not fill its memory until the timeout.
#[test]
fn a_server_that_never_ends_a_line_cannot_exhaust_memory() {
    let server = Flood::start();
    let doc = serde_json::json!({
        "iam_user": "u", "host": "localhost", "port": server.port, "tls": "starttls",
        "region": "us-east-1", "username": "AKIAIOSFODNN7EXAMPLE",
        "password": "BMPPgbAHoFVbze1Ud0oA5uNdXRwUXUZ+qOwphGJbl/cS",
    });
    let (code, out, err) = run_env(
        &["test-login", "--timeout", "15"],
        &doc.to_string(),
        &[("SMTP_ALLOWED_HOSTS", "localhost")],
    );
    let sent = server.stop();
    assert_ne!(code, 0, "{out}{err}");
    assert!(err.contains("more than 1048576 bytes"), "{err}");
    assert_eq!(sent.len(), 1, "one connection: {sent:?}");
    // The client stopped after its bound; what the server could push beyond it is only what
    // the kernel's socket buffers held.
    assert!(sent[0] < 64 << 20, "the client kept reading: {sent:?}");
}

/// doctor's `connect` check reads from the server within the same bound as a login: a
/// greeting line that never ends makes the probe fail at 1 MiB, quickly, in both TLS modes,
/// instead of reading (and holding in memory) whatever arrives until the step timeout.
#[test]
fn doctor_connect_reads_a_bounded_amount_from_a_server_that_never_ends_a_line() {
    let server = Flood::start();
    // No username/password: nothing but the probe talks to the server (`auth` skips), and no
    // AWS credentials: the IAM checks skip.
    let doc = serde_json::json!({
        "iam_user": "u", "host": "localhost", "port": server.port, "region": "us-east-1",
    });
    let started = std::time::Instant::now();
    let (code, out, err) = run_env(
        &["doctor", "--json", "--document", "-", "--timeout", "20"],
        &doc.to_string(),
        &[("SMTP_ALLOWED_HOSTS", "localhost")],
    );
    let took = started.elapsed();
    let sent = server.stop();
    // The plain TCP check, STARTTLS, then implicit TLS: each probe stopped at its bound, so
    // the server could push only that plus what the socket buffers held on any connection;
    // an unbounded reader takes all of Flood::CAP.
    assert!(sent.len() >= 2, "{sent:?}");
    assert!(
        sent.iter().all(|n| *n < 64 << 20),
        "a probe kept reading: {sent:?}"
    );
    assert_eq!(code, 1, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    // By id: the position of a check is not what this test is about.
    let connect = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "connect")
        .unwrap_or_else(|| panic!("no connect check: {v:#}"));
    assert_eq!(connect["status"], "fail", "{v:#}");
    let summary = connect["summary"].as_str().unwrap();
    assert!(summary.contains("more than 1048576 bytes"), "{summary}");
    // Far less than the 20 s step timeout: the bound, not the clock, ended the probe.
    assert!(took < std::time::Duration::from_secs(10), "took {took:?}");
}

/// test-login sends credentials only where the rotation and doctor would: an SES endpoint name
/// or a host SMTP_ALLOWED_HOSTS adds. Any other host is refused before a connection is made
/// (the listener records every connection); allowed, the same listener is reached, so the
/// listener does see what test-login would do.
#[test]
fn test_login_refuses_a_host_that_is_not_allowed_before_connecting() {
    const PASSWORD: &str = "BMPPgbAHoFVbze1Ud0oA5uNdXRwUXUZ+qOwphGJbl/cS";
    let server = Flood::start();
    let doc = serde_json::json!({
        "iam_user": "u", "host": "localhost", "port": server.port, "tls": "starttls",
        "region": "us-east-1", "username": "AKIAIOSFODNN7EXAMPLE", "password": PASSWORD,
    });
    for env in [
        vec![],
        vec![("SMTP_ALLOWED_HOSTS", "smtp.example.com,*.mail.example.com")],
        vec![("SMTP_ALLOWED_HOSTS", "")],
    ] {
        let (code, out, err) = run_env(&["test-login", "--timeout", "5"], &doc.to_string(), &env);
        assert_eq!(code, 1, "{env:?}: {out}{err}");
        assert_eq!(out, "", "{env:?}");
        assert!(
            err.contains("localhost is not an SES SMTP endpoint name"),
            "{env:?}: {err}"
        );
        assert!(err.contains("SMTP_ALLOWED_HOSTS"), "{env:?}: {err}");
        assert!(err.contains("no connection was made"), "{env:?}: {err}");
        assert!(!err.contains(PASSWORD), "{env:?}: {err}");
    }
    // A malformed allow-list is a refusal too, not "allow everything".
    let (code, _, err) = run_env(
        &["test-login", "--timeout", "5"],
        &doc.to_string(),
        &[("SMTP_ALLOWED_HOSTS", "smtp://localhost")],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("SMTP_ALLOWED_HOSTS: entry"), "{err}");
    let (code, _, err) = run_env(
        &["test-login", "--timeout", "5"],
        &doc.to_string(),
        &[("SMTP_ALLOWED_HOSTS", "localhost")],
    );
    assert_eq!(code, 1, "{err}");
    assert!(!err.contains("not an SES SMTP endpoint name"), "{err}");
    let connections = server.stop();
    assert_eq!(
        connections.len(),
        1,
        "only the allowed run may connect: {connections:?}"
    );
}

/// A host that is not a DNS name (control characters that would drive a terminal, a length
/// no DNS name has, an address) is refused by doctor's `document` check naming "host" and what
/// a host may hold, in text and JSON, and nothing of it reaches the output: no part of the
/// value and no control character. Nothing goes to the network (no AWS credentials; `connect`
/// and `auth` skip, as the host is unusable).
#[test]
fn doctor_refuses_a_host_that_is_no_dns_name_without_echoing_it() {
    let hostile = "Hostile-Host-9q";
    for host in [
        format!("{hostile}\u{1b}]0;owned\u{7}\u{1b}[2J.example.com"),
        format!("{hostile}.{}", "x".repeat(5000)),
        format!("{}.{hostile}.example.com", "y".repeat(64)),
        format!("postmaster@{hostile}.example.com"),
        format!("{hostile}\r\nX-Injected-1.example.com"),
    ] {
        let doc = serde_json::json!({"iam_user": "u", "host": host, "region": "us-east-1"});
        let (code, out, err) = run_env(
            &["doctor", "--json", "--document", "-"],
            &doc.to_string(),
            &[("SMTP_ALLOWED_HOSTS", "*.example.com")],
        );
        assert_eq!(code, 1, "{out}{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let document = &v["checks"][0];
        assert_eq!(document["status"], "fail", "{v:#}");
        let summary = document["summary"].as_str().unwrap();
        assert!(summary.contains("\"host\" field is invalid"), "{summary}");
        assert!(
            summary.contains("DNS") || summary.contains("host name"),
            "{summary}"
        );
        assert_eq!(document["fix"], "correct the \"host\" field", "{v:#}");
        for id in [7, 8] {
            assert_eq!(v["checks"][id]["status"], "skip", "{v:#}");
        }
        let (code, text, err2) = run_env(
            &["doctor", "--document", "-"],
            &doc.to_string(),
            &[("SMTP_ALLOWED_HOSTS", "*.example.com")],
        );
        assert_eq!(code, 1, "{text}{err2}");
        assert!(text.contains("\"host\" field is invalid"), "{text}");
        for printed in [&out, &err, &text, &err2] {
            assert!(
                !printed.contains(hostile),
                "the host was echoed: {printed:?}"
            );
            assert!(
                !printed.contains("xxxxxxxx"),
                "the host was echoed: {printed:?}"
            );
            assert!(
                !printed.contains("yyyyyyyy"),
                "the host was echoed: {printed:?}"
            );
            assert!(
                !printed.chars().any(|c| c.is_control() && c != '\n'),
                "a control character was printed: {printed:?}"
            );
            assert!(printed.len() < 4000, "{} bytes printed", printed.len());
        }
    }
}

#[test]
fn smtp_password_for_several_regions_prints_one_line_each() {
    let (code, out, err) = run(
        &[
            "smtp-password",
            "--region",
            "us-east-2",
            "--region",
            "eu-central-1",
        ],
        SECRET,
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(
        lines[0],
        "us-east-2 BMPPgbAHoFVbze1Ud0oA5uNdXRwUXUZ+qOwphGJbl/cS"
    );
    let (region, password) = lines[1].split_once(' ').unwrap();
    assert_eq!(region, "eu-central-1");
    assert_eq!(password.len(), 44);
    assert_ne!(password, "BMPPgbAHoFVbze1Ud0oA5uNdXRwUXUZ+qOwphGJbl/cS");
    let (code, _, err) = run(
        &[
            "smtp-password",
            "--region",
            "us-east-2",
            "--region",
            "us-east-2",
        ],
        SECRET,
    );
    assert_ne!(code, 0);
    assert!(err.contains("twice"), "{err}");
}
