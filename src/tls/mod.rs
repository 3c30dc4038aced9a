//! TLS for the encrypted listeners: the certificate and key read from PEM files
//! ([`load_pair`]), served through [`Certs`] (a rustls `ResolvesServerCert` over an
//! `ArcSwap`) so that a renewed pair (certbot replacing the files) is used for new
//! handshakes while established connections keep theirs, and the rustls server configs of
//! DNS over TLS ([`dot_config`]: ALPN `dot`), over HTTPS ([`doh_config`]: ALPN `h2`,
//! `http/1.1`) and over QUIC ([`doq_config`]: ALPN `doq`, TLS 1.3 only), all with the ring
//! provider. [`selfsigned`] makes a
//! certificate for a LAN without a public name, and its SPKI pin; [`der`] reads a
//! certificate's expiry (warned about at start and on every reload).
//!
//! What it does not do: accept connections (that is `server::tls`), or know about DNS.

pub mod der;
pub mod selfsigned;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The ALPN protocol id of DNS over TLS (RFC 7858, IANA registry).
pub const ALPN_DOT: &[u8] = b"dot";
/// The ALPN protocol id of HTTP/2 (RFC 9113), DNS over HTTPS's first choice.
pub const ALPN_H2: &[u8] = b"h2";
/// The ALPN protocol id of HTTP/1.1 (RFC 7301).
pub const ALPN_HTTP11: &[u8] = b"http/1.1";
/// The ALPN protocol id of DNS over QUIC (RFC 9250 §4.1).
pub const ALPN_DOQ: &[u8] = b"doq";

/// Why a certificate or key file cannot be used; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file cannot be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No `CERTIFICATE` block in the file, or one that does not parse.
    #[error("{}: {reason}; give the certificate chain in PEM (-----BEGIN CERTIFICATE-----), the server's own certificate first", path.display())]
    Cert {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// No private key block in the file, or a key that cannot be used.
    #[error("{}: {reason}; give the private key in PEM (-----BEGIN PRIVATE KEY-----, EC or RSA), unencrypted", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The key is not the certificate's.
    #[error("{} and {}: the private key does not belong to the certificate ({reason}); give the key the certificate was issued for", cert.display(), key.display())]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        reason: String,
    },
}

/// The crypto provider of every TLS config here: ring (already built for the list
/// downloads), not aws-lc.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a certificate chain (`cert`) and its private key (`key`), both PEM, and checks
/// that the key belongs to the first certificate.
pub fn load_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let cert_err = |reason: String| TlsError::Cert {
        path: cert.to_path_buf(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(format!("not a PEM certificate chain ({e})")))?;
    let first = chain
        .first()
        .ok_or_else(|| cert_err("no certificate in the file".into()))?;
    rustls::server::ParsedCertificate::try_from(first)
        .map_err(|e| cert_err(format!("the first certificate does not parse ({e})")))?;
    let key_err = |reason: String| TlsError::Key {
        path: key.to_path_buf(),
        reason,
    };
    let der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => key_err("no private key in the file".into()),
        e => key_err(format!("not a PEM private key ({e})")),
    })?;
    let signing = provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| key_err(format!("unsupported private key ({e})")))?;
    let pair = CertifiedKey::new(chain, signing);
    match pair.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(pair)
        }
        Err(e) => Err(TlsError::Mismatch {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

/// A WARN when the pair's certificate has expired or expires within 14 days; clients
/// (Android among them) refuse an expired certificate.
fn warn_expiry(cert_path: &Path, pair: &CertifiedKey, now: SystemTime) {
    let Some(not_after) = pair.cert.first().and_then(|c| der::not_after(c)) else {
        return;
    };
    match not_after.duration_since(now) {
        Err(_) => tracing::warn!(
            file = %cert_path.display(),
            "tls certificate has expired: clients will refuse it; renew it (certbot renew) or make a new one (sinkhole cert self-signed)"
        ),
        Ok(left) if left < Duration::from_secs(14 * 86_400) => tracing::warn!(
            file = %cert_path.display(),
            days_left = left.as_secs() / 86_400,
            "tls certificate expires soon"
        ),
        Ok(_) => {}
    }
}

/// What identifies a version of a file: modification time, size, inode (after symlinks,
/// as certbot's `live/` links are).
type Stamp = Option<(SystemTime, u64, u64)>;

fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// The certificate every new handshake gets: the last good pair read from the files.
#[derive(Debug)]
pub struct Certs {
    cert: PathBuf,
    key: PathBuf,
    current: ArcSwap<CertifiedKey>,
    /// The files' stamps when last read (good or bad), and whether a change is waiting
    /// for the files to settle.
    seen: Mutex<((Stamp, Stamp), bool)>,
}

impl Certs {
    /// Reads the pair; an error names the file (see [`TlsError`]).
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let stamps = (stamp(cert), stamp(key));
        let pair = load_pair(cert, key)?;
        warn_expiry(cert, &pair, SystemTime::now());
        Ok(Self {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: ArcSwap::from_pointee(pair),
            seen: Mutex::new((stamps, false)),
        })
    }

    /// The pair served now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }

    /// Reads the files again and serves the new pair; a bad pair is logged (WARN, naming
    /// the file and why) and the last good one stays. True when the new pair is served.
    pub fn reload(&self) -> bool {
        let stamps = (stamp(&self.cert), stamp(&self.key));
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = (stamps, false);
        match load_pair(&self.cert, &self.key) {
            Ok(pair) => {
                warn_expiry(&self.cert, &pair, SystemTime::now());
                self.current.store(Arc::new(pair));
                tracing::info!(cert = %self.cert.display(), "tls certificate reloaded; new connections use it");
                true
            }
            Err(e) => {
                tracing::warn!("tls certificate not reloaded, still serving the previous one: {e}");
                false
            }
        }
    }

    /// One poll: a file whose stamp changed and then stayed the same for one poll (so a
    /// file being written is not read half-way) is read again. True when a new pair is
    /// served.
    pub fn poll(&self) -> bool {
        let now = (stamp(&self.cert), stamp(&self.key));
        let settled = {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if now != seen.0 {
                *seen = (now, true);
                return false;
            }
            std::mem::replace(&mut seen.1, false)
        };
        settled && self.reload()
    }

    /// Polls the files every `interval` (a stat of two files) until the task is aborted.
    pub fn spawn_watch(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let me = Arc::clone(&me);
                // Reading and parsing a key is file I/O: off the runtime's workers.
                let _ = tokio::task::spawn_blocking(move || me.poll()).await;
            }
        })
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The rustls config of the DNS-over-TLS listeners: TLS 1.2 and 1.3, ALPN `dot` (a client
/// that offers ALPN without `dot` is refused, as RFC 7301 says), the certificate from
/// `certs`.
pub fn dot_config(certs: Arc<Certs>) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    server_config(certs, &[ALPN_DOT])
}

/// The rustls config of the DNS-over-HTTPS listeners: as [`dot_config`], with ALPN `h2`
/// then `http/1.1` (a client offering no ALPN speaks HTTP/1.1).
pub fn doh_config(certs: Arc<Certs>) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    server_config(certs, &[ALPN_H2, ALPN_HTTP11])
}

/// The rustls config of the DNS-over-QUIC listeners: ALPN `doq` and TLS 1.3 only (QUIC
/// carries no other version, RFC 9001 §4.2), the certificate from `certs` (so a renewal
/// applies to new QUIC connections as it does to new TLS ones). No 0-RTT: a replayed
/// query could be answered twice (RFC 9250 §4.5 leaves it to the server).
pub fn doq_config(certs: Arc<Certs>) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    cfg.alpn_protocols = vec![ALPN_DOQ.to_vec()];
    cfg.max_early_data_size = 0;
    Ok(Arc::new(cfg))
}

fn server_config(
    certs: Arc<Certs>,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests;
