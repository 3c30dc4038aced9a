//! `sinkhole cert self-signed --name NAME --out DIR`: a key and a self-signed certificate
//! for DNS over TLS on a LAN without a public name (the work is `tls::selfsigned`); prints
//! the files, the expiry, and the SPKI pin clients can check.

use std::path::PathBuf;
use std::time::SystemTime;

use clap::Subcommand;

use super::common::Error;
use crate::tls::selfsigned::{self, CertError, VALID_DAYS};

/// `sinkhole cert …`
#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Write DIR/key.pem (mode 0600) and DIR/cert.pem: a new ECDSA P-256 key and a
    /// certificate for NAME, self-signed, valid 825 days; prints the SPKI pin.
    SelfSigned {
        /// The server's name, as clients will be configured with it (dns.lan); an IP
        /// address is allowed too.
        #[arg(long, value_name = "NAME")]
        name: String,
        /// The folder to write into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Replace existing cert.pem / key.pem (a new key: clients that pinned the old one
        /// must be given the new pin).
        #[arg(long)]
        force: bool,
    },
}

/// Runs one `cert` subcommand.
pub(super) fn run(cmd: CertCommand) -> Result<(), Error> {
    match cmd {
        CertCommand::SelfSigned { name, out, force } => {
            let w =
                selfsigned::write(&name, &out, force, SystemTime::now()).map_err(|e| match e {
                    CertError::Name { .. } | CertError::Exists(_) => Error::usage(e),
                    e => Error::Runtime(anyhow::anyhow!("{e}")),
                })?;
            // Printed whole: the config names its files relative to its own folder.
            let (cert, key) = (
                std::path::absolute(&w.cert).unwrap_or(w.cert),
                std::path::absolute(&w.key).unwrap_or(w.key),
            );
            let until = crate::querylog::writer::format_ts(w.not_after);
            println!("certificate: {}", cert.display());
            println!("key:         {} (mode 0600)", key.display());
            println!(
                "valid until: {} ({VALID_DAYS} days)",
                until.get(..10).unwrap_or(&until)
            );
            println!("pin-sha256=\"{}\"", w.pin);
            println!();
            println!("In the config's [server] section:");
            println!("  tls_listen = [\"0.0.0.0:853\"]      # DNS over TLS");
            println!(
                "  https_listen = [\"0.0.0.0:443\"]    # DNS over HTTPS (https://NAME/dns-query)"
            );
            println!("  quic_listen = [\"0.0.0.0:853\"]     # DNS over QUIC (UDP)");
            println!("  tls_cert = \"{}\"", cert.display());
            println!("  tls_key = \"{}\"", key.display());
            println!(
                "Clients must be set to the name {:?} and trust this certificate or its pin.",
                name.trim().trim_end_matches('.').to_ascii_lowercase()
            );
            Ok(())
        }
    }
}
