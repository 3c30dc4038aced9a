//! The newest records from PostgreSQL: a page of them for the HTTP API ([`Db::newest`],
//! paged by a [`DbCursor`]), the last lines of `sinkhole log tail` ([`Db::last`]), the rows
//! committed since for `--follow` and the API's stream ([`Db::follow`]), and the queries
//! per minute of the dashboard's chart ([`Db::per_minute`]).
//!
//! Rows come newest first by the `ts` index (or the (client, ts) and (action, ts) ones when
//! a client or an action is asked for), in a total order: time, then instance, client,
//! session and position. Following cannot go by time alone: rows are committed in batches,
//! after their arrival time, by several instances; so each poll reads the rows of the last
//! [`Db::slack`](super::read::Db) by time and prints those not printed yet.

use std::collections::HashSet;
use std::fmt;
use std::io::Write;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::DbError;
use super::read::{Db, ENTRY_COLUMNS, entry, row_us, where_of};
use crate::querylog::Entry;
use crate::querylog::filter::Filter;
use crate::querylog::report::ts_ms;
use crate::querylog::tail::{Style, render};
use tokio_postgres::Row;

/// How often `--follow` asks for new rows.
pub const POLL: Duration = Duration::from_millis(500);

/// Rows read per statement while looking for a page's records.
const CHUNK: i64 = 1000;

/// Where a page of database records ended: after the first `skip` rows (in the page order)
/// whose time is `ts_us`, and every newer row. Written `t<ts_us>-<skip>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbCursor {
    /// Microseconds since the Unix epoch.
    pub ts_us: i64,
    /// Rows of that time already read.
    pub skip: i64,
}

impl fmt::Display for DbCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}-{}", self.ts_us, self.skip)
    }
}

impl FromStr for DbCursor {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        let (ts, skip) = s.strip_prefix('t').ok_or(())?.split_once('-').ok_or(())?;
        Ok(Self {
            ts_us: ts.parse().map_err(|_| ())?,
            skip: skip.parse().map_err(|_| ())?,
        })
    }
}

fn time_of(us: i64) -> SystemTime {
    match u64::try_from(us) {
        Ok(us) => UNIX_EPOCH + Duration::from_micros(us),
        Err(_) => UNIX_EPOCH,
    }
}

/// What tells a followed row from the others: instance, client, session, seq, and its
/// time in milliseconds.
type Key = (String, String, u64, u64, i64);

fn key(e: &Entry<'_>) -> Key {
    (
        e.instance.as_deref().unwrap_or("").to_string(),
        e.client.to_string(),
        e.session,
        e.seq,
        ts_ms(&e.ts).unwrap_or(0),
    )
}

/// One page of [`Db::newest`].
#[derive(Debug, Default)]
pub struct DbPage {
    /// The records, newest first.
    pub records: Vec<Entry<'static>>,
    /// Where the next (older) page starts; `None` when no record is left.
    pub next: Option<DbCursor>,
    /// Rows looked at.
    pub scanned: u64,
}

impl Db {
    /// The newest `limit` records before `before` that pass `filter`, newest first; each
    /// names its instance when `instance`.
    pub fn newest(
        &self,
        filter: &Filter,
        before: Option<DbCursor>,
        limit: usize,
        instance: bool,
    ) -> Result<DbPage, DbError> {
        self.block_on(self.newest_async(filter, before, limit, instance))
    }

    async fn newest_async(
        &self,
        filter: &Filter,
        before: Option<DbCursor>,
        limit: usize,
        instance: bool,
    ) -> Result<DbPage, DbError> {
        let mut page = DbPage::default();
        let mut at = before;
        if limit == 0 {
            return Ok(page);
        }
        loop {
            let mut w = where_of(filter, self.instance.as_deref());
            let skip = at.map_or(0, |c| c.skip);
            if let Some(c) = at {
                w.add("ts <= $", time_of(c.ts_us));
            }
            // Exact filters fetch the page at once; others read on in chunks.
            let want = if w.exact {
                i64::try_from(limit).unwrap_or(i64::MAX)
            } else {
                CHUNK
            };
            let sql = format!(
                "SELECT {ENTRY_COLUMNS} FROM queries{} ORDER BY ts DESC, instance, client, session, seq OFFSET {skip} LIMIT {want}",
                w.sql()
            );
            let mut got = 0i64;
            let mut full = false;
            self.rows(&sql, &w, "reading the log", |r: &Row| {
                got += 1;
                page.scanned += 1;
                if full {
                    return;
                }
                let us = row_us(r);
                at = Some(match at {
                    Some(c) if c.ts_us == us => DbCursor {
                        ts_us: us,
                        skip: c.skip + 1,
                    },
                    _ => DbCursor { ts_us: us, skip: 1 },
                });
                let e = entry(r, instance);
                if filter.matches(&e) {
                    page.records.push(e);
                    if page.records.len() >= limit {
                        full = true;
                        page.next = at;
                    }
                }
            })
            .await?;
            if full || got < want {
                return Ok(page);
            }
        }
    }

    /// The last `n` records that pass `filter`, oldest first (`log tail`).
    pub fn last(&self, filter: &Filter, n: usize) -> Result<Vec<Entry<'static>>, DbError> {
        let mut v = self.newest(filter, None, n, self.several())?.records;
        v.reverse();
        Ok(v)
    }

    /// Prints the last `lines` records that pass `filter`, then every one as it is
    /// committed, at most [`POLL`] after, each naming its instance when `instance`, until a
    /// write to `out` fails (the reader went away: `Ok`). A row committed while the last
    /// lines are read is printed once, after them. Rows whose arrival time is more than
    /// the slack before now when they are committed (a writer catching up after an
    /// outage) are not shown.
    pub async fn follow<W: Write + ?Sized>(
        &self,
        filter: &Filter,
        style: Style,
        instance: bool,
        lines: usize,
        out: &mut W,
    ) -> Result<(), DbError> {
        let w = where_of(filter, self.instance.as_deref());
        let slack = self.slack.as_secs_f64();
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM queries{} {} ts >= now() - make_interval(secs => {slack}) ORDER BY ts, instance, client, session, seq",
            w.sql(),
            if w.sql().is_empty() { "WHERE" } else { "AND" }
        );
        // Rows printed, or there before, by (instance, client, session, seq, ms).
        let mut seen: HashSet<Key> = HashSet::new();
        let mut first = true;
        loop {
            let mut oldest = i64::MAX;
            let mut fresh: Vec<Entry<'static>> = Vec::new();
            self.rows(&sql, &w, "following the log", |r: &Row| {
                let e = entry(r, true);
                let k = key(&e);
                oldest = oldest.min(k.4);
                if seen.insert(k) && !first && filter.matches(&e) {
                    fresh.push(e);
                }
            })
            .await?;
            // Keys older than the window are not read again.
            if oldest != i64::MAX {
                seen.retain(|k| k.4 >= oldest);
            }
            if first && lines > 0 {
                let mut last = self.newest_async(filter, None, lines, true).await?.records;
                last.reverse();
                // Committed since the window was read: shown here, not again.
                for e in &last {
                    seen.insert(key(e));
                }
                fresh = last;
            }
            first = false;
            let written: std::io::Result<()> = fresh
                .iter_mut()
                .try_for_each(|e| {
                    if !instance {
                        e.instance = None;
                    }
                    writeln!(out, "{}", render(e, style))
                })
                .and_then(|()| out.flush());
            if written.is_err() {
                return Ok(());
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Queries and blocked queries per minute, for the `minutes` whole minutes that end
    /// with the one holding `now`, oldest first: `(minute start, queries, blocked)`, as
    /// `querylog::page::per_minute` counts them in the files.
    pub fn per_minute(
        &self,
        now: SystemTime,
        minutes: u64,
    ) -> Result<Vec<(u64, u64, u64)>, DbError> {
        let now_s = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let first = (now_s / 60).saturating_sub(minutes.saturating_sub(1)) * 60;
        let mut out: Vec<(u64, u64, u64)> = (0..minutes).map(|i| (first + i * 60, 0, 0)).collect();
        let mut w = where_of(&Filter::default(), self.instance.as_deref());
        w.add("ts >= $", UNIX_EPOCH + Duration::from_secs(first));
        w.add(
            "ts < $",
            UNIX_EPOCH + Duration::from_secs(first + minutes * 60),
        );
        let sql = format!(
            "SELECT extract(epoch FROM date_trunc('minute', ts))::bigint AS m, count(*), count(*) FILTER (WHERE action = 'blocked') FROM queries{} GROUP BY date_trunc('minute', ts)",
            w.sql()
        );
        self.block_on(self.rows(&sql, &w, "counting the log", |r: &Row| {
            let m = r
                .try_get::<_, i64>(0)
                .ok()
                .and_then(|m| u64::try_from(m).ok());
            let slot = m.and_then(|m| m.checked_sub(first)).map(|d| d / 60);
            if let Some(b) = slot.and_then(|i| out.get_mut(usize::try_from(i).ok()?)) {
                b.1 = r.try_get::<_, i64>(1).map_or(0, |n| n.unsigned_abs());
                b.2 = r.try_get::<_, i64>(2).map_or(0, |n| n.unsigned_abs());
            }
        }))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        let c = DbCursor {
            ts_us: 1_700_000_000_123_456,
            skip: 2,
        };
        assert_eq!(c.to_string().parse::<DbCursor>(), Ok(c));
        assert!("7-9".parse::<DbCursor>().is_err());
        assert!("tx-1".parse::<DbCursor>().is_err());
    }
}
