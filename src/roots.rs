//! The root certificates the process trusts (SMTP and the AWS SDK), loaded once per process.
//!
//! Where they come from is what the system's TLS stack would use:
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

/// The trusted root certificates (DER), read now. Not kept: each user keeps what it built
/// from them (the SDK its trust store, [`crate::smtp`] one TLS configuration per host), so the
/// bundle is read once per process for the SDK and once per SMTP host, and no second copy of
/// it stays in memory (the resident set is a target, bench/README.md).
///
/// # Errors
/// When no certificate could be loaded: the message names the source and what to do.
pub(crate) fn trusted() -> Loaded {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if env("SSL_CERT_DIR").is_some() {
        return native();
    }
    if let Some(file) = env("SSL_CERT_FILE") {
        return from_file(std::path::Path::new(&file), "SSL_CERT_FILE");
    }
    match BUNDLES
        .iter()
        .map(std::path::Path::new)
        .find(|p| p.is_file())
    {
        Some(bundle) => from_file(bundle, "the system's CA bundle"),
        None => native(),
    }
}

/// The same certificates as PEM, the form the AWS SDK's trust store takes (its client asks
/// once per process and keeps it).
///
/// # Errors
/// As [`trusted`].
pub(crate) fn trusted_pem() -> Result<Vec<u8>, String> {
    let certs = trusted()?;
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

fn from_file(path: &std::path::Path, what: &str) -> Loaded {
    let pem = std::fs::read(path).map_err(|e| {
        format!(
            "{what} {} cannot be read ({}); point SSL_CERT_FILE at a PEM CA bundle",
            path.display(),
            e.kind()
        )
    })?;
    let certs = usable(pem_certificates(&pem));
    if certs.is_empty() {
        return Err(format!(
            "{what} {} holds no PEM certificate; point SSL_CERT_FILE at a PEM CA bundle",
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
        assert_eq!(rustls_reads(&pem), super::trusted().expect("loaded"));
        // Read anew each time, the same each time.
        assert_eq!(super::trusted(), super::trusted());
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
