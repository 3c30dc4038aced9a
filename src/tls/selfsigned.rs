//! `sinkhole cert self-signed`: a private key and a self-signed certificate for a LAN
//! without a public name, and the SPKI pin clients can check instead of a CA
//! (RFC 7858 §4.2: `pin-sha256="…"`, the base64 SHA-256 of the DER SubjectPublicKeyInfo).
//!
//! The key is ECDSA P-256 (what every DoT client supports, and small handshakes); the
//! certificate names the host in its subjectAltName (and CN), is a leaf (not a CA), for
//! server authentication, valid from an hour ago (clock skew) for [`VALID_DAYS`] days
//! (825: the longest that Apple's platforms accept for a TLS server certificate).

use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use rustls::pki_types::CertificateDer;

/// How long a made certificate is valid.
pub const VALID_DAYS: u64 = 825;

/// Why no certificate was made or written.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The name cannot go in a certificate.
    #[error("--name {name:?}: {reason}")]
    Name {
        /// The name given.
        name: String,
        /// Why not.
        reason: String,
    },
    /// rcgen failed (should not happen for a valid name).
    #[error("cannot make the certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A certificate whose public key cannot be read back.
    #[error("cannot read the certificate's public key: {0}")]
    Parse(String),
    /// A file that would be overwritten.
    #[error("{}: already exists; pass --force to replace it (clients that pinned the old key must be given the new pin)", .0.display())]
    Exists(PathBuf),
    /// Writing failed.
    #[error("{}: {source}", path.display())]
    Write {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A key and its self-signed certificate, in PEM, with the certificate's pin.
#[derive(Debug, Clone)]
pub struct SelfSigned {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key (PKCS#8), PEM.
    pub key_pem: String,
    /// `base64(sha256(SubjectPublicKeyInfo))`.
    pub pin: String,
    /// The end of the validity.
    pub not_after: SystemTime,
}

/// The name in a certificate: an IP address, or a host name (letters, digits, `-`,
/// labels of 1–63, at most 253 in all), lower-cased, without a trailing dot.
fn check_name(name: &str) -> Result<String, CertError> {
    let bad = |reason: &str| CertError::Name {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    let n = name.trim().trim_end_matches('.').to_ascii_lowercase();
    if n.parse::<IpAddr>().is_ok() {
        return Ok(n);
    }
    if n.is_empty() || n.len() > 253 {
        return Err(bad(
            "write a host name such as dns.lan (1 to 253 characters)",
        ));
    }
    for label in n.split('.') {
        let ok = (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(bad(
                "not a host name: labels of letters, digits and inner hyphens, 1 to 63 long (an IDN in its xn-- form)",
            ));
        }
    }
    Ok(n)
}

/// The SPKI pin of a DER certificate: `base64(sha256(SubjectPublicKeyInfo))`.
pub fn spki_pin(cert_der: &[u8]) -> Result<String, CertError> {
    let der = CertificateDer::from(cert_der);
    let parsed = rustls::server::ParsedCertificate::try_from(&der)
        .map_err(|e| CertError::Parse(e.to_string()))?;
    let spki = parsed.subject_public_key_info();
    let digest = ring::digest::digest(&ring::digest::SHA256, spki.as_ref());
    Ok(base64::engine::general_purpose::STANDARD.encode(digest.as_ref()))
}

/// Makes a new key and a certificate for `name`, valid from `now` minus an hour for
/// [`VALID_DAYS`] days.
pub fn generate(name: &str, now: SystemTime) -> Result<SelfSigned, CertError> {
    let name = check_name(name)?;
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(vec![name.clone()])?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name.as_str());
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let start = now - Duration::from_secs(3600);
    let not_after = now + Duration::from_secs(VALID_DAYS * 86_400);
    params.not_before = time::OffsetDateTime::from(start);
    params.not_after = time::OffsetDateTime::from(not_after);
    let cert = params.self_signed(&key)?;
    Ok(SelfSigned {
        pin: spki_pin(cert.der())?,
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        not_after,
    })
}

/// What [`write()`] wrote.
#[derive(Debug, Clone)]
pub struct Written {
    /// `DIR/cert.pem`.
    pub cert: PathBuf,
    /// `DIR/key.pem` (mode 0600).
    pub key: PathBuf,
    /// The certificate's SPKI pin.
    pub pin: String,
    /// The end of the validity.
    pub not_after: SystemTime,
}

/// Makes a pair for `name` (see [`generate`]) and writes `dir/cert.pem` and `dir/key.pem`
/// (the key readable by its owner only), creating `dir`. Existing files are replaced only
/// with `force`: a new key invalidates every pin of the old one.
pub fn write(name: &str, dir: &Path, force: bool, now: SystemTime) -> Result<Written, CertError> {
    let made = generate(name, now)?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    if !force && let Some(p) = [&cert, &key].into_iter().find(|p| p.exists()) {
        return Err(CertError::Exists(p.clone()));
    }
    std::fs::create_dir_all(dir).map_err(|source| CertError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    write_file(&key, made.key_pem.as_bytes(), 0o600)?;
    write_file(&cert, made.cert_pem.as_bytes(), 0o644)?;
    Ok(Written {
        cert,
        key,
        pin: made.pin,
        not_after: made.not_after,
    })
}

/// Writes `bytes` to a temporary file with `mode` beside `path`, then renames it over
/// `path`: a server polling the file never reads it half-written, and the key is never
/// readable by others, not even for a moment.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CertError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let err = |source| CertError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::PublicKeyData as _;

    #[test]
    fn names_are_checked() {
        assert_eq!(check_name("DNS.Lan.").unwrap(), "dns.lan");
        assert_eq!(check_name("192.168.1.2").unwrap(), "192.168.1.2");
        assert_eq!(
            check_name("xn--bcher-kva.lan").unwrap(),
            "xn--bcher-kva.lan"
        );
        for bad in [
            "",
            "a..b",
            "-a.lan",
            "a b.lan",
            "bücher.lan",
            &"a".repeat(64),
        ] {
            let e = check_name(bad).unwrap_err().to_string();
            assert!(e.starts_with("--name "), "{bad:?}: {e}");
        }
    }

    #[test]
    fn pin_is_the_sha256_of_the_keys_spki() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let made = generate("dns.lan", now).unwrap();
        // Independently: the SPKI from the private key (rcgen), not from the certificate.
        let key = rcgen::KeyPair::from_pem(&made.key_pem).unwrap();
        let digest = ring::digest::digest(&ring::digest::SHA256, &key.subject_public_key_info());
        let expected = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
        assert_eq!(made.pin, expected);
        assert_eq!(made.pin.len(), 44, "32 bytes in padded base64");
        // The certificate and key load as a matching pair, for the right name and time.
        let dir = tempfile::tempdir().unwrap();
        let w = write("dns.lan", dir.path(), false, now).unwrap();
        let pair = crate::tls::load_pair(&w.cert, &w.key).unwrap();
        let der = pair.cert.first().unwrap();
        assert_eq!(spki_pin(der).unwrap(), w.pin);
        assert_eq!(
            crate::tls::der::not_after(der),
            Some(now + Duration::from_secs(825 * 86_400))
        );
        let parsed = rustls::server::ParsedCertificate::try_from(der).unwrap();
        let name = rustls::pki_types::ServerName::try_from("dns.lan").unwrap();
        rustls::client::verify_server_name(&parsed, &name).unwrap();
        let other = rustls::pki_types::ServerName::try_from("other.lan").unwrap();
        assert!(rustls::client::verify_server_name(&parsed, &other).is_err());
    }

    #[test]
    fn key_is_private_and_files_are_not_replaced_without_force() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("tls");
        let now = SystemTime::now();
        let w = write("dns.lan", &out, false, now).unwrap();
        let mode = std::fs::metadata(&w.key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let e = write("dns.lan", &out, false, now).unwrap_err();
        assert!(matches!(e, CertError::Exists(_)), "{e}");
        let again = write("dns.lan", &out, true, now).unwrap();
        assert_ne!(again.pin, w.pin, "a new key");
    }
}
