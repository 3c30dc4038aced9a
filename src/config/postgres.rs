//! `[log.postgres]` and `[sync]`: the query log written to PostgreSQL, and the local list
//! entries and pause shared by every instance that uses the same database.
//!
//! The connection string is `url` (a `postgresql://` URL or libpq `key=value` words) or
//! `url_file`, a file holding it, so that the password stays out of the config (the file
//! is read when the config is read: a reload re-reads it). Either is parsed here, so that a
//! typo is a config error at its key rather than a connection failure at run time. Only
//! plain connections are made: `sslmode=require` is refused, with a word on tunnels.

use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

/// `[log.postgres]`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLogPostgres {
    /// The connection string.
    pub url: Option<Spanned<String>>,
    /// A file holding the connection string (relative to the config).
    pub url_file: Option<Spanned<String>>,
    /// Days of records kept; older day partitions are dropped.
    pub retention_days: Spanned<u32>,
    /// How long records wait to be written together, milliseconds.
    pub batch_ms: Spanned<u64>,
}

impl Default for RawLogPostgres {
    fn default() -> Self {
        Self {
            url: None,
            url_file: None,
            retention_days: Spanned::new(0..0, 30),
            batch_ms: Spanned::new(0..0, 1000),
        }
    }
}

/// `[sync]`, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSync {
    /// Local list entries and pause kept in `[log.postgres]`'s database.
    pub postgres: Option<Spanned<bool>>,
}

/// A connection string, kept out of `Debug` output (it may hold a password).
#[derive(Clone, PartialEq, Eq)]
pub struct DbUrl(String);

impl DbUrl {
    /// The connection string, for the client library.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The parsed connection settings.
    pub fn settings(&self) -> tokio_postgres::Config {
        // Parsed when the config was read.
        tokio_postgres::Config::from_str(&self.0).unwrap_or_else(|_| tokio_postgres::Config::new())
    }

    /// Where it connects, for messages: `user@host:port/dbname`, no password.
    pub fn describe(&self) -> String {
        let c = self.settings();
        let host = c.get_hosts().first().map_or_else(String::new, |h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        });
        let port = c.get_ports().first().copied().unwrap_or(5432);
        format!(
            "{}@{host}:{port}/{}",
            c.get_user().unwrap_or("?"),
            c.get_dbname().unwrap_or("?")
        )
    }
}

impl std::fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DbUrl({})", self.describe())
    }
}

/// `[log.postgres]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresLog {
    /// Where the database is.
    pub url: DbUrl,
    /// Days of records kept.
    pub retention_days: u32,
    /// How long records wait to be written together.
    pub batch: Duration,
    /// The instance's name in the records: `server.name`, else the host name.
    pub instance: String,
}

/// Parses a connection string; the message says what is wrong.
pub fn parse_url(s: &str) -> Result<DbUrl, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err(
            "empty connection string; write postgresql://USER:PASSWORD@HOST:PORT/DB".into(),
        );
    }
    let c = tokio_postgres::Config::from_str(s).map_err(|e| {
        format!("not a PostgreSQL connection string ({e}); write postgresql://USER:PASSWORD@HOST:PORT/DB")
    })?;
    if c.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
        return Err("sslmode=require: sinkhole connects without TLS; reach a remote database over a tunnel (WireGuard, SSH) or a local socket, and use sslmode=disable or prefer".into());
    }
    if c.get_hosts().is_empty() {
        return Err("no host; write postgresql://USER:PASSWORD@HOST:PORT/DB".into());
    }
    Ok(DbUrl(s.to_string()))
}

impl super::Validator<'_> {
    /// Validates `[log.postgres]`.
    pub(super) fn log_postgres(
        &mut self,
        raw: &RawLogPostgres,
        base: Option<&Path>,
    ) -> Option<PostgresLog> {
        let days = *raw.retention_days.get_ref();
        if !(1..=3650).contains(&days) {
            self.err(
                raw.retention_days.span(),
                "log.postgres.retention_days",
                format!("{days}: must be between 1 and 3650 (days)"),
            );
        }
        let ms = *raw.batch_ms.get_ref();
        if !(10..=60_000).contains(&ms) {
            self.err(
                raw.batch_ms.span(),
                "log.postgres.batch_ms",
                format!("{ms}: must be between 10 and 60000 (milliseconds)"),
            );
        }
        let url = match (&raw.url, &raw.url_file) {
            (Some(u), None) => parse_url(u.get_ref())
                .map_err(|m| self.err(u.span(), "log.postgres.url", m))
                .ok()?,
            (None, Some(f)) => {
                let (path, text) = self.read_text(f, "log.postgres.url_file", base)?;
                parse_url(&text)
                    .map_err(|m| {
                        self.err(
                            f.span(),
                            "log.postgres.url_file",
                            format!("{}: {m}", path.display()),
                        );
                    })
                    .ok()?
            }
            (Some(u), Some(_)) => {
                self.err(
                    u.span(),
                    "log.postgres.url",
                    "set url or url_file, not both",
                );
                return None;
            }
            (None, None) => {
                self.err(
                    0..0,
                    "log.postgres",
                    "the [log.postgres] section needs url (postgresql://USER:PASSWORD@HOST:PORT/DB) or url_file",
                );
                return None;
            }
        };
        Some(PostgresLog {
            url,
            retention_days: days.clamp(1, 3650),
            batch: Duration::from_millis(ms.clamp(10, 60_000)),
            // Set from `server.name` once `[server]` is read.
            instance: String::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_adds_the_shared_entries_as_two_lists_of_the_default_policy() {
        use crate::blocklist::Kind;
        use crate::blocklist::load::Location;
        let base = "[log.postgres]\nurl = \"postgresql://u:p@127.0.0.1/db\"\n";
        let on = crate::config::Config::parse(
            &format!("{base}[sync]\npostgres = true\n"),
            "t.toml",
            None,
        )
        .unwrap();
        assert!(on.sync_postgres);
        let shared: Vec<(&str, Kind)> = on
            .blocking
            .lists
            .iter()
            .filter(|s| s.location == Location::Shared)
            .map(|s| (s.display.as_str(), s.kind))
            .collect();
        assert_eq!(
            shared,
            [
                ("postgres:shared-block", Kind::Block),
                ("postgres:shared-allow", Kind::Allow)
            ]
        );
        let off = crate::config::Config::parse(base, "t.toml", None).unwrap();
        assert!(
            !off.blocking
                .lists
                .iter()
                .any(|s| s.location == Location::Shared)
        );
    }

    #[test]
    fn connection_strings() {
        let u = parse_url("postgresql://sink:secret@127.0.0.1:5433/dns").unwrap();
        assert_eq!(u.describe(), "sink@127.0.0.1:5433/dns");
        assert!(!format!("{u:?}").contains("secret"), "{u:?}");
        assert!(parse_url("host=/run/postgresql user=sink dbname=dns").is_ok());
        assert!(parse_url("").unwrap_err().contains("empty"));
        assert!(
            parse_url("postgresql://h/db?sslmode=require")
                .unwrap_err()
                .contains("sslmode=require")
        );
        assert!(
            parse_url("postgresql://h/db?bogus=1")
                .unwrap_err()
                .contains("not a PostgreSQL")
        );
    }
}
