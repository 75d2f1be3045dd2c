//! The root certificates the process trusts (SMTP and the AWS SDK), loaded once per process.
//!
//! SMTP trusts these roots plus the certificates of `SMTP_CA_FILE` when it is set
//! ([`smtp_trusted`]): a private relay's CA is *added* for SMTP, and the AWS SDK's trust
//! ([`trusted_pem`]) does not change. `SSL_CERT_FILE`, by contrast, replaces the roots of every
//! connection (as OpenSSL's does), AWS's included: the tests point it at their CA.
//!
//! Where the roots come from is what the system's TLS stack would use:
//!
//! - `SSL_CERT_DIR` set: rustls-native-certs reads it (and `SSL_CERT_FILE`, if set), as before.
//! - `SSL_CERT_FILE` set: that file alone.
//! - Otherwise the system's one CA bundle: the first of the well-known bundle paths that exists
//!   (`/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem` and `/etc/pki/tls/certs/ca-bundle.crt`
//!   on Amazon Linux, `/etc/ssl/certs/ca-certificates.crt` on Debian and Ubuntu, ...).
//! - No bundle (macOS, Windows, an unusual Linux): rustls-native-certs.
//!
//! rustls-native-certs, which lettre used to call for every connection's TLS parameters, reads
//! the bundle *and* every file of the certificate directories beside it, which hold the same
//! certificates again (Debian: 146 certificates parsed three times; Amazon Linux adds the
//! 'trusted' bundle), through a constant-time base64 decoder. Here the bundle alone is read,
//! with an ordinary base64 decoder (these are public certificates, not keys), once for the
//! AWS SDK and once per SMTP host in a process: a warm Lambda sandbox does not read it again.

use base64::Engine as _;

/// Linux's well-known CA bundle paths, in openssl-probe's order (the list rustls-native-certs
/// probes), Amazon Linux's first.
const BUNDLES: &[&str] = &[
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/ssl/cert.pem",
];

/// DER certificates, or why none could be loaded.
type Loaded = Result<Vec<Vec<u8>>, String>;

/// The variable naming a PEM file of CA certificates that SMTP trusts besides the roots.
pub(crate) const SMTP_CA_FILE: &str = "SMTP_CA_FILE";

/// An environment lookup: the variable's value, `None` when unset or empty.
type Env<'a> = &'a dyn Fn(&str) -> Option<std::ffi::OsString>;

fn process_env(k: &str) -> Option<std::ffi::OsString> {
    std::env::var_os(k).filter(|v| !v.is_empty())
}

/// What SMTP trusts: the roots the AWS SDK is given ([`trusted_pem`]) plus every certificate
/// of `SMTP_CA_FILE` (a private relay's CA, or a TLS-inspecting proxy's), added, not
/// replacing. When the roots cannot be loaded but `SMTP_CA_FILE` can, its certificates alone
/// (a private relay needs no public root).
///
/// # Errors
/// When `SMTP_CA_FILE` is set and holds no usable certificate (named, with what to do), or
/// when nothing at all could be loaded.
pub(crate) fn smtp_trusted() -> Loaded {
    smtp_trusted_from(&process_env)
}

fn smtp_trusted_from(env: Env<'_>) -> Loaded {
    let base = trusted_from(env);
    let Some(file) = env(SMTP_CA_FILE) else {
        return base;
    };
    let extra = from_file(
        std::path::Path::new(&file),
        SMTP_CA_FILE,
        "point SMTP_CA_FILE at a PEM file holding the relay's CA certificate, or unset it",
    )?;
    let mut certs = base.unwrap_or_default();
    for cert in extra {
        if !certs.contains(&cert) {
            certs.push(cert);
        }
    }
    Ok(certs)
}

/// The trusted root certificates (DER), read now. Not kept: each user keeps what it built
/// from them (the SDK its trust store, [`crate::smtp`] one TLS configuration per host), so the
/// bundle is read once per process for the SDK and once per SMTP host, and no second copy of
/// it stays in memory (the resident set is a target, bench/README.md).
///
/// # Errors
/// When no certificate could be loaded: the message names the source and what to do.
fn trusted_from(env: Env<'_>) -> Loaded {
    const HINT: &str = "point SSL_CERT_FILE at a PEM CA bundle";
    if env("SSL_CERT_DIR").is_some() {
        return native();
    }
    if let Some(file) = env("SSL_CERT_FILE") {
        return from_file(std::path::Path::new(&file), "SSL_CERT_FILE", HINT);
    }
    match BUNDLES
        .iter()
        .map(std::path::Path::new)
        .find(|p| p.is_file())
    {
        Some(bundle) => from_file(bundle, "the system's CA bundle", HINT),
        None => native(),
    }
}

/// The same certificates as PEM, the form the AWS SDK's trust store takes (its client asks
/// once per process and keeps it).
///
/// # Errors
/// When no certificate could be loaded: the message names the source and what to do.
pub(crate) fn trusted_pem() -> Result<Vec<u8>, String> {
    trusted_pem_from(&process_env)
}

fn trusted_pem_from(env: Env<'_>) -> Result<Vec<u8>, String> {
    let certs = trusted_from(env)?;
    let mut pem = Vec::with_capacity(certs.iter().map(|c| c.len() * 4 / 3 + 64).sum());
    for der in &certs {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        pem.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.extend_from_slice(line);
            pem.push(b'\n');
        }
        pem.extend_from_slice(b"-----END CERTIFICATE-----\n");
    }
    Ok(pem)
}

/// Keeps the certificates rustls accepts as trust anchors, the rule rustls-native-certs'
/// callers apply (`add_parsable_certificates`): one certificate rustls cannot use must not
/// make every TLS set-up fail (lettre and the SDK's custom trust store refuse the whole set).
fn usable(certs: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let mut store = rustls::RootCertStore::empty();
    certs
        .into_iter()
        .filter(|der| {
            store
                .add(rustls::pki_types::CertificateDer::from(der.as_slice()))
                .is_ok()
        })
        .collect()
}

fn from_file(path: &std::path::Path, what: &str, hint: &str) -> Loaded {
    let pem = std::fs::read(path).map_err(|e| {
        format!(
            "{what} {} cannot be read ({}); {hint}",
            path.display(),
            e.kind()
        )
    })?;
    let certs = usable(pem_certificates(&pem));
    if certs.is_empty() {
        return Err(format!(
            "{what} {} holds no PEM certificate; {hint}",
            path.display()
        ));
    }
    Ok(certs)
}

fn native() -> Loaded {
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        return Err(format!(
            "no root certificate could be loaded from the system ({} errors); set SSL_CERT_FILE to a PEM CA bundle",
            found.errors.len()
        ));
    }
    let certs = usable(found.certs.into_iter().map(|c| c.to_vec()).collect());
    if certs.is_empty() {
        return Err("no usable root certificate in the system's store; set SSL_CERT_FILE to a PEM CA bundle".into());
    }
    Ok(certs)
}

/// The DER bodies of the `CERTIFICATE` blocks of a PEM file, in order. Other blocks (`TRUSTED
/// CERTIFICATE`, keys) and text between blocks are skipped, as are blocks whose body is not
/// base64 (one damaged entry does not lose the rest of a bundle). CRLF line ends are accepted.
pub(crate) fn pem_certificates(pem: &[u8]) -> Vec<Vec<u8>> {
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    const END: &[u8] = b"-----END CERTIFICATE-----";
    let mut certs = Vec::new();
    let mut body: Option<Vec<u8>> = None;
    for line in pem.split(|&b| b == b'\n') {
        let line = line.trim_ascii();
        match body.as_mut() {
            None if line == BEGIN => body = Some(Vec::with_capacity(2048)),
            None => {}
            Some(_) if line == END => {
                if let Some(b64) = body.take()
                    && let Ok(der) = base64::engine::general_purpose::STANDARD.decode(&b64)
                    && !der.is_empty()
                {
                    certs.push(der);
                }
            }
            // A block that never ends before the next begins: drop it, start again.
            Some(_) if line.starts_with(b"-----BEGIN ") => {
                body = (line == BEGIN).then(|| Vec::with_capacity(2048));
            }
            Some(b64) if line.iter().any(u8::is_ascii_whitespace) => {
                b64.extend(line.iter().filter(|b| !b.is_ascii_whitespace()));
            }
            Some(b64) => b64.extend_from_slice(line),
        }
    }
    certs
}

#[cfg(test)]
mod tests {
    use super::pem_certificates;
    use base64::Engine as _;

    fn block(label: &str, der: &[u8], eol: &str) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let mut s = format!("-----BEGIN {label}-----{eol}");
        for chunk in b64.as_bytes().chunks(64) {
            s.push_str(std::str::from_utf8(chunk).unwrap_or_default());
            s.push_str(eol);
        }
        s.push_str(&format!("-----END {label}-----{eol}"));
        s
    }

    #[test]
    fn reads_certificate_blocks_and_skips_everything_else() {
        let a: Vec<u8> = (0u8..=200).collect();
        let b: Vec<u8> = (0..1500u32).map(|i| (i * 7 % 251) as u8).collect();
        let c = vec![0x30, 0x82, 0x01];
        let pem = [
            "# Amazon Root CA 1\n".to_owned(),
            block("CERTIFICATE", &a, "\n"),
            "\n# a trusted-certificate block (OpenSSL's aux format) is not a certificate\n".into(),
            block("TRUSTED CERTIFICATE", &c, "\n"),
            block("CERTIFICATE", &b, "\r\n"),
            "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n".into(),
            "-----BEGIN CERTIFICATE-----\nAAAA\n".into(), // never ends ...
            block("CERTIFICATE", &c, "\n"),               // ... the next block still counts
            block("PRIVATE KEY", &a, "\n"),
        ]
        .concat();
        assert_eq!(pem_certificates(pem.as_bytes()), vec![a, b, c.clone()]);
        assert!(pem_certificates(b"").is_empty());
        assert!(pem_certificates(block("TRUSTED CERTIFICATE", &c, "\n").as_bytes()).is_empty());
    }

    /// The system's CA bundle (its path and contents), if this machine has one.
    fn system_bundle() -> Option<(&'static str, Vec<u8>)> {
        let path = super::BUNDLES
            .iter()
            .find(|p| std::path::Path::new(p).is_file())?;
        Some((path, std::fs::read(path).expect("read the bundle")))
    }

    /// The certificates of `pem` as rustls-pki-types' PEM reader (rustls-native-certs' and the
    /// SDK's) reads them.
    fn rustls_reads(pem: &[u8]) -> Vec<Vec<u8>> {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        CertificateDer::pem_slice_iter(pem)
            .map(|c| c.expect("rustls reads the PEM").to_vec())
            .collect()
    }

    #[test]
    fn only_certificates_rustls_can_use_are_kept_and_the_pem_reads_back() {
        let Some((_, pem)) = system_bundle() else {
            return;
        };
        let mut certs = pem_certificates(&pem);
        let real = certs.len();
        certs.insert(1, vec![0x30, 0x03, 0x02, 0x01, 0x00]); // DER, but no certificate
        let kept = super::usable(certs);
        assert_eq!(kept.len(), real);
        assert!(kept.iter().all(|c| c.len() > 100));
        // What the SDK is given reads back, through rustls' own PEM reader, as what was loaded.
        let pem = super::trusted_pem().expect("the system's roots load");
        assert_eq!(
            rustls_reads(&pem),
            super::trusted_from(&super::process_env).expect("loaded")
        );
        // Read anew each time, the same each time.
        assert_eq!(
            super::trusted_from(&super::process_env),
            super::trusted_from(&super::process_env)
        );
    }

    /// A private relay's CA, made for this test (self-signed, P-256, valid to 2126).
    const RELAY_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBuTCCAV+gAwIBAgIUYNHp+KXb7BM8x/dTI8rRluQ5d8gwCgYIKoZIzj0EAwIw
KTEnMCUGA1UEAwwec2VzLXNtdHAtcm90YXRvciB0ZXN0IHJlbGF5IENBMCAXDTI2
MTIwNjAzNDEyOVoYDzIxMjYxMTEyMDM0MTI5WjApMScwJQYDVQQDDB5zZXMtc210
cC1yb3RhdG9yIHRlc3QgcmVsYXkgQ0EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNC
AARCJO9xgIo0stDB17CB6QmVmmxCSDbNn9mzhvTiYjtdU0JRWeeb7Haa0iMFd/wa
fOxH9qLVDwqutdaIdmEoJGqFo2MwYTAdBgNVHQ4EFgQUjryklevGV8bInU36TU4W
PaCwu0cwHwYDVR0jBBgwFoAUjryklevGV8bInU36TU4WPaCwu0cwDwYDVR0TAQH/
BAUwAwEB/zAOBgNVHQ8BAf8EBAMCAQYwCgYIKoZIzj0EAwIDSAAwRQIhAMo4y8/d
VSAg4ukif4UXMG8+J+AtEcu8yyGW/KqvbdBPAiASwJlLL2/HaBtAKkS1qpa44COJ
+ELGcaRmbsh20iW5MA==
-----END CERTIFICATE-----
";

    /// An environment holding only `vars`.
    fn env_of(
        vars: &[(&'static str, std::path::PathBuf)],
    ) -> impl Fn(&str) -> Option<std::ffi::OsString> + use<> {
        let vars: Vec<(&'static str, std::path::PathBuf)> = vars.to_vec();
        move |k: &str| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.clone().into_os_string())
        }
    }

    fn has_subject(der: &[u8], name: &[u8]) -> bool {
        der.windows(name.len()).any(|w| w == name)
    }

    /// SMTP_CA_FILE adds the relay's CA to what SMTP trusts, the public roots stay (Amazon
    /// Root CA 1, which SES's certificates chain to, among them), and what the AWS SDK is
    /// given does not change. SSL_CERT_FILE still replaces the roots (the tests' set-up).
    #[test]
    fn smtp_ca_file_adds_to_the_roots_for_smtp_only() {
        let Some((_, system)) = system_bundle() else {
            eprintln!("no system CA bundle here; nothing to add to");
            return;
        };
        let dir = std::env::temp_dir().join(format!("roots-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let ca = dir.join("relay-ca.pem");
        std::fs::write(&ca, RELAY_CA).expect("write");
        let relay = pem_certificates(RELAY_CA.as_bytes()).remove(0);
        let public = super::usable(pem_certificates(&system));
        assert!(public.len() > 50);
        assert!(!public.contains(&relay));

        let plain = env_of(&[]);
        let with_extra = env_of(&[(super::SMTP_CA_FILE, ca.clone())]);
        // The SDK: byte for byte the same trust store with or without SMTP_CA_FILE.
        assert_eq!(
            super::trusted_pem_from(&with_extra),
            super::trusted_pem_from(&plain)
        );
        assert_eq!(super::trusted_from(&with_extra), Ok(public.clone()));
        // SMTP: every public root, then the relay's CA.
        let smtp = super::smtp_trusted_from(&with_extra).expect("loads");
        assert_eq!(smtp.len(), public.len() + 1);
        assert_eq!(smtp[..public.len()], public[..]);
        assert_eq!(smtp.last(), Some(&relay));
        assert!(
            smtp.iter().any(|c| has_subject(c, b"Amazon Root CA 1")),
            "a public root SES chains to is still trusted"
        );
        // Every one is a usable trust anchor (a store built from them accepts them all).
        let mut store = rustls::RootCertStore::empty();
        let (added, _) = store.add_parsable_certificates(smtp.iter().map(|d| d.as_slice().into()));
        assert_eq!(added, smtp.len());
        // Without SMTP_CA_FILE, SMTP trusts what the SDK trusts.
        assert_eq!(super::smtp_trusted_from(&plain), Ok(public.clone()));
        // SSL_CERT_FILE replaces the roots for both (how the tests trust their CA).
        let replaced = env_of(&[("SSL_CERT_FILE", ca.clone())]);
        assert_eq!(super::trusted_from(&replaced), Ok(vec![relay.clone()]));
        assert_eq!(super::smtp_trusted_from(&replaced), Ok(vec![relay.clone()]));
        // Roots that cannot load: the relay's CA alone still serves SMTP.
        let no_roots = env_of(&[
            ("SSL_CERT_FILE", dir.join("missing.pem")),
            (super::SMTP_CA_FILE, ca.clone()),
        ]);
        assert!(super::trusted_from(&no_roots).is_err());
        assert_eq!(super::smtp_trusted_from(&no_roots), Ok(vec![relay]));
        // A bad SMTP_CA_FILE is named, not ignored.
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").expect("write");
        for bad in [empty, dir.join("missing.pem")] {
            let e = super::smtp_trusted_from(&env_of(&[(super::SMTP_CA_FILE, bad)]))
                .expect_err("refused");
            assert!(e.starts_with("SMTP_CA_FILE "), "{e}");
            assert!(e.contains("point SMTP_CA_FILE at"), "{e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The system's own bundle gives what rustls-pki-types' PEM reader (the one
    /// rustls-native-certs uses) gives: the same certificates, byte for byte, in order.
    #[test]
    fn agrees_with_rustls_on_the_system_bundle() {
        let Some((path, pem)) = system_bundle() else {
            eprintln!("no system CA bundle here; nothing to compare");
            return;
        };
        let ours = pem_certificates(&pem);
        assert!(ours.len() > 50, "{path}: only {} certificates", ours.len());
        assert_eq!(ours, rustls_reads(&pem), "{path}");
    }
}
