//! Reading the query log back from PostgreSQL: [`Db`], the reader the `sinkhole log`
//! commands and the HTTP API use when `[log.postgres]` is configured, across every
//! instance that writes there or one of them (`--instance`, `instance=`).
//!
//! A [`Filter`] becomes a `WHERE` the indexes serve (client and time, action and time, a
//! name glob as `LIKE`); rows are then checked against the same filter in Rust, so what
//! SQL cannot say exactly (a glob with classes) is still decided as the files decide it.
//! The session reports read rows through `querylog::source::Records`, grouped by instance,
//! client and session, and run the same code as over the files; `top` is a `GROUP BY`
//! (both in `reports.rs`). Newest-first pages, `tail` and its `--follow` are in
//! `recent.rs`.
//!
//! The reader is synchronous for the reports (they take a callback per record): it owns a
//! handle on a multi-threaded runtime that drives the connection, and blocks on it; call
//! it from a thread that is not a runtime's worker (`spawn_blocking`, the CLI's main).

use std::borrow::Cow;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::TryStreamExt as _;
use tokio::runtime::Handle;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row};

use super::{DbError, connect, migrate};
use crate::config::postgres::PostgresLog;
use crate::querylog::Entry;
use crate::querylog::filter::Filter;
use crate::querylog::report::ts_ms;
use crate::querylog::writer::format_ts;

/// The columns of a whole record, in [`entry`]'s order.
pub(super) const ENTRY_COLUMNS: &str = "ts, instance, client, proto, qname, qtype, action, rule, list, grp, cname, rcode, dnssec, answers, tc, upstream, elapsed_us, session, seq, new";

/// The error with its causes (`db error: FATAL: password authentication failed …`): the
/// client library's own text of a refusal is only "db error".
pub fn error_text(e: &DbError) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.ends_with(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// A connection to the query log's database, narrowed to one instance or not.
pub struct Db {
    pub(super) client: Client,
    rt: Handle,
    /// Only this instance's records.
    pub(super) instance: Option<String>,
    /// Every instance that has written (the `instances` table), by name.
    instances: Vec<String>,
    pub(super) gap_ms: i64,
    /// How late a row may be committed after its arrival time and still be followed.
    pub(super) slack: Duration,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("instance", &self.instance)
            .field("instances", &self.instances)
            .finish_non_exhaustive()
    }
}

/// A statement's `WHERE` and its parameters.
#[derive(Default)]
pub(super) struct Where {
    clauses: Vec<String>,
    pub(super) params: Vec<Box<dyn ToSql + Sync + Send>>,
    /// True when the clauses decide exactly what the filter passes (no check in Rust
    /// needed).
    pub(super) exact: bool,
}

impl Where {
    /// Adds `clause`, whose `$` is the next parameter, `value`.
    pub(super) fn add(&mut self, clause: &str, value: impl ToSql + Sync + Send + 'static) {
        self.params.push(Box::new(value));
        let n = self.params.len();
        self.clauses.push(clause.replace('$', &format!("${n}")));
    }

    /// `WHERE …` (empty when there is no condition).
    pub(super) fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        }
    }

    /// The parameters, for `query_raw`.
    pub(super) fn args(&self) -> impl ExactSizeIterator<Item = &(dyn ToSql + Sync)> {
        self.params.iter().map(|p| &**p as &(dyn ToSql + Sync))
    }
}

/// A glob over names as a `LIKE` pattern (`*` → `%`, `?` → `_`); `None` when it has
/// classes, alternatives or escapes, which only the Rust check decides.
fn glob_like(glob: &str) -> Option<String> {
    if glob.contains(['[', '{', '\\']) {
        return None;
    }
    let mut out = String::with_capacity(glob.len() + 4);
    for c in glob.chars() {
        match c {
            '*' => out.push('%'),
            '?' => out.push('_'),
            '%' | '_' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    Some(out)
}

/// The time a `ts` text stands for.
fn ts_time(ts: &str) -> SystemTime {
    let ms = ts_ms(ts).unwrap_or(0);
    match u64::try_from(ms) {
        Ok(ms) => UNIX_EPOCH + Duration::from_millis(ms),
        Err(_) => UNIX_EPOCH,
    }
}

/// The `WHERE` of `filter` and `instance`.
pub(super) fn where_of(filter: &Filter, instance: Option<&str>) -> Where {
    let mut w = Where {
        exact: true,
        ..Where::default()
    };
    if let Some(i) = instance {
        w.add("instance = $", i.to_string());
    }
    if let Some(net) = &filter.client {
        if net.prefix_len() == net.max_prefix_len() {
            w.add("client = $", net.addr());
        } else {
            // Stored clients are host addresses: a range the (client, ts) index serves.
            w.add("client >= $", net.network());
            w.add("client <= $", net.broadcast());
        }
    }
    if let Some(a) = &filter.action {
        w.add("action = $", a.clone());
    }
    if let Some(p) = &filter.proto {
        w.add("proto = $", p.clone());
    }
    if let Some(s) = &filter.since {
        w.add("ts >= $", ts_time(s));
    }
    if let Some(u) = &filter.until {
        // The files compare milliseconds: a row within the last one still passes.
        w.add("ts < $", ts_time(u) + Duration::from_millis(1));
    }
    if let Some(g) = &filter.name {
        match glob_like(g.glob().glob()) {
            Some(like) => w.add("qname LIKE $", like),
            None => w.exact = false,
        }
    }
    w
}

/// The client column's text, as the files write it.
pub(super) fn client_text(row: &Row, idx: usize) -> String {
    row.try_get::<_, IpAddr>(idx)
        .map(|ip| ip.to_string())
        .unwrap_or_default()
}

pub(super) fn int(row: &Row, idx: usize) -> u64 {
    row.try_get::<_, i64>(idx)
        .ok()
        .and_then(|v| u64::try_from(v).ok())
        .unwrap_or(0)
}

fn opt(row: &Row, idx: usize) -> Option<Cow<'static, str>> {
    row.try_get::<_, Option<String>>(idx)
        .ok()
        .flatten()
        .map(Cow::Owned)
}

fn text(row: &Row, idx: usize) -> Cow<'static, str> {
    Cow::Owned(row.try_get::<_, String>(idx).unwrap_or_default())
}

/// The row's time in microseconds since the Unix epoch.
pub(super) fn row_us(row: &Row) -> i64 {
    match row.try_get::<_, SystemTime>(0) {
        Ok(t) => match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
        },
        Err(_) => 0,
    }
}

/// A record from a row of [`ENTRY_COLUMNS`]; the instance is set when `instance`.
pub(super) fn entry(row: &Row, instance: bool) -> Entry<'static> {
    let ts = row.try_get::<_, SystemTime>(0).unwrap_or(UNIX_EPOCH);
    Entry {
        ts: Cow::Owned(format_ts(ts)),
        instance: instance.then(|| text(row, 1)),
        client: Cow::Owned(client_text(row, 2)),
        proto: opt(row, 3),
        qname: text(row, 4),
        qtype: text(row, 5),
        action: text(row, 6),
        rule: opt(row, 7),
        list: opt(row, 8),
        group: opt(row, 9),
        cname: opt(row, 10),
        rcode: text(row, 11),
        dnssec: opt(row, 12),
        answers: row
            .try_get::<_, Vec<String>>(13)
            .unwrap_or_default()
            .into_iter()
            .map(Cow::Owned)
            .collect(),
        tc: row.try_get(14).unwrap_or(false),
        upstream: opt(row, 15),
        elapsed_us: int(row, 16),
        session: int(row, 17),
        seq: int(row, 18),
        new: row.try_get(19).unwrap_or(false),
    }
}

impl Db {
    /// Connects to `[log.postgres]`'s database and checks its schema; `instance` narrows
    /// every read to one instance's records; `session_gap` is `log.session_gap_s`.
    pub async fn open(
        pg: &PostgresLog,
        session_gap: Duration,
        instance: Option<String>,
    ) -> Result<Self, DbError> {
        let client = connect(&pg.url).await?;
        let found = migrate::version(&client).await?;
        if found < migrate::SCHEMA_VERSION {
            return Err(DbError::SchemaTooOld {
                found,
                known: migrate::SCHEMA_VERSION,
            });
        }
        let instances = client
            .query("SELECT name FROM instances ORDER BY name", &[])
            .await
            .map_err(DbError::query("reading the instances"))?
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect();
        Ok(Self {
            client,
            rt: Handle::current(),
            instance,
            instances,
            gap_ms: i64::try_from(session_gap.as_millis()).unwrap_or(i64::MAX),
            slack: (pg.batch * 3).max(Duration::from_secs(10)),
        })
    }

    /// Every instance that has written to the database, by name.
    pub fn instances(&self) -> &[String] {
        &self.instances
    }

    /// True when records shown may come from more than one instance (each then names
    /// its own).
    pub fn several(&self) -> bool {
        self.instance.is_none() && self.instances.len() > 1
    }

    /// Blocks on `f` on the reader's runtime.
    pub(super) fn block_on<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.rt.block_on(f)
    }

    /// Calls `f` with each row of `sql` (whose parameters `w` holds).
    pub(super) async fn rows(
        &self,
        sql: &str,
        w: &Where,
        what: &str,
        mut f: impl FnMut(&Row),
    ) -> Result<(), DbError> {
        let stream = self
            .client
            .query_raw(sql, w.args())
            .await
            .map_err(DbError::query(what))?;
        let mut stream = std::pin::pin!(stream);
        while let Some(row) = stream.try_next().await.map_err(DbError::query(what))? {
            f(&row);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_as_like_patterns() {
        assert_eq!(glob_like("*.example.com").as_deref(), Some("%.example.com"));
        assert_eq!(glob_like("a?_b%").as_deref(), Some("a_\\_b\\%"));
        assert_eq!(glob_like("[ab].example"), None);
        assert_eq!(glob_like("{a,b}.example"), None);
    }

    #[test]
    fn filters_as_where_clauses() {
        let f = Filter {
            client: Some("192.0.2.0/24".parse().unwrap()),
            action: Some("blocked".into()),
            name: Some(globset::Glob::new("*.x").unwrap().compile_matcher()),
            since: Some("2026-11-21T10:00:00.000Z".into()),
            ..Filter::default()
        };
        let w = where_of(&f, Some("dns1"));
        assert_eq!(
            w.sql(),
            " WHERE instance = $1 AND client >= $2 AND client <= $3 AND action = $4 AND ts >= $5 AND qname LIKE $6"
        );
        assert!(w.exact);
        let f = Filter {
            name: Some(globset::Glob::new("[ab].x").unwrap().compile_matcher()),
            ..Filter::default()
        };
        let w = where_of(&f, None);
        assert_eq!(w.sql(), "");
        assert!(!w.exact);
    }
}
