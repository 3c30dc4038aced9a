//! PostgreSQL, for several resolvers that share one view: the query log written there
//! ([`writer`], rows encoded by [`copy`]) and read back ([`read`], [`reports`],
//! [`recent`]), its schema ([`migrate`]), the local list entries and pause shared by
//! `[sync] postgres = true` ([`shared`], kept applied by [`sync`]), and the connection every
//! part opens ([`connect`]).
//!
//! Nothing here is on the query path: the writer takes finished records from the query
//! log's writer thread through a bounded queue, so a database that is slow, down or gone
//! never delays an answer (records wait in the queue up to its bound, then are dropped and
//! counted). Connections are plain TCP or a Unix socket (see `config::postgres`).

pub mod copy;
pub mod migrate;
pub mod read;
pub mod recent;
pub mod reports;
pub mod shared;
pub mod sync;
pub mod writer;

use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use crate::config::postgres::DbUrl;

/// How long a connection attempt may take, unless the URL sets `connect_timeout`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What failed talking to the database; each message names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The connection could not be made (down, refused, wrong password).
    #[error("PostgreSQL at {target}: cannot connect: {}", text(source))]
    Connect {
        /// `user@host:port/db`.
        target: String,
        /// Why (in the message: not a separate cause).
        source: tokio_postgres::Error,
    },
    /// A statement failed.
    #[error("PostgreSQL: {what}: {}", text(source))]
    Query {
        /// What was being done.
        what: String,
        /// Why (in the message: not a separate cause).
        source: tokio_postgres::Error,
    },
    /// The schema was made by a newer sinkhole.
    #[error(
        "PostgreSQL: the schema is at version {found}, newer than this sinkhole knows ({known}); upgrade sinkhole on this host (nothing is written until then)"
    )]
    SchemaTooNew {
        /// The database's version.
        found: i32,
        /// The newest this build knows.
        known: i32,
    },
    /// The schema is missing or older than this build needs.
    #[error(
        "PostgreSQL: the schema is at version {found}, this sinkhole needs {known}; run `sinkhole db migrate --config FILE`"
    )]
    SchemaTooOld {
        /// The database's version (0: none).
        found: i32,
        /// The version this build writes.
        known: i32,
    },
}

/// The whole of a client error in one line: the server's message (and hint) for an
/// error the server sent, else the error and each cause (`error connecting to server:
/// Connection refused`), where the client's own `Display` says only "db error".
pub fn text(e: &tokio_postgres::Error) -> String {
    if let Some(d) = e.as_db_error() {
        return match d.hint() {
            Some(h) => format!("{} (hint: {h})", d.message()),
            None => d.message().to_string(),
        };
    }
    let mut s = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

impl DbError {
    /// A failed statement, with what it was doing.
    pub fn query(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> Self {
        let what = what.into();
        move |source| Self::Query { what, source }
    }

    /// True when the error means the connection is gone (reconnect), rather than a
    /// statement the server refused.
    pub fn is_closed(&self) -> bool {
        match self {
            Self::Connect { .. } => true,
            Self::Query { source, .. } => source.is_closed() || source.as_db_error().is_none(),
            _ => false,
        }
    }
}

/// Connects; the connection's I/O runs on a task of the current runtime until the client
/// is dropped or the server goes away.
pub async fn connect(url: &DbUrl) -> Result<Client, DbError> {
    let (client, conn) = connect_raw(url).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "PostgreSQL connection ended");
        }
    });
    Ok(client)
}

/// Connects, leaving the connection's I/O to the caller (who may read its notifications).
pub(crate) async fn connect_raw(
    url: &DbUrl,
) -> Result<
    (
        Client,
        tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
    ),
    DbError,
> {
    let mut settings = url.settings();
    if settings.get_connect_timeout().is_none() {
        settings.connect_timeout(CONNECT_TIMEOUT);
    }
    if settings.get_application_name().is_none() {
        settings.application_name("sinkhole");
    }
    settings
        .connect(NoTls)
        .await
        .map_err(|source| DbError::Connect {
            target: url.describe(),
            source,
        })
}

/// The name this instance writes under: `server.name`, else the host name.
pub fn instance_name(cfg: &crate::config::Config) -> String {
    cfg.server.name.clone().unwrap_or_else(host_name)
}

/// This machine's host name (`localhost` when it cannot be read).
pub fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}
