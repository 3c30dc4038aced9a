//! The session reports and `top` over the database's rows: [`Db`] as the reports'
//! [`Records`] (rows grouped by instance, client and session, one client's from the
//! (client, ts) index), and `top` as a `GROUP BY` whose result is what `report::top` counts
//! in the files.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio_postgres::Row;

use super::DbError;
use super::read::{Db, client_text, int, where_of};
use crate::querylog::brief::Brief;
use crate::querylog::filter::Filter;
use crate::querylog::report::{By, DEFAULT_GROUP};
use crate::querylog::source::{Records, Split};
use crate::querylog::writer::format_ts;

impl Db {
    /// The `limit` most frequent keys, most frequent first (ties by key), as
    /// `report::top` counts them in the files: a `GROUP BY`.
    pub fn top(
        &self,
        filter: &Filter,
        by: By,
        limit: usize,
    ) -> Result<Vec<(u64, String)>, DbError> {
        let mut w = where_of(filter, self.instance.as_deref());
        let key = match by {
            By::Name => "qname",
            By::Domain => "domain",
            By::Client => "host(client)",
            By::Blocked => {
                w.add("action = $", "blocked".to_string());
                "qname"
            }
            By::Group => "coalesce(grp, $)",
        };
        let key = if by == By::Group {
            w.params.push(Box::new(DEFAULT_GROUP.to_string()));
            key.replace('$', &format!("${}", w.params.len()))
        } else {
            key.to_string()
        };
        let mut out: Vec<(u64, String)> = Vec::new();
        self.block_on(async {
            if w.exact {
                // Clients are read back as addresses, so they print as the files print them.
                let (select, group) = if by == By::Client {
                    ("client", "client")
                } else {
                    ("k", "1")
                };
                let sql = format!(
                    "SELECT {select}, count(*) AS n FROM (SELECT {key} COLLATE \"C\" AS k, client FROM queries{}) t GROUP BY {group} ORDER BY n DESC, {key_order} LIMIT {limit}",
                    w.sql(),
                    key_order = if by == By::Client { "host(client) COLLATE \"C\"" } else { "k" },
                );
                self.rows(&sql, &w, "counting the log", |r: &Row| {
                    let k = if by == By::Client {
                        client_text(r, 0)
                    } else {
                        r.try_get::<_, String>(0).unwrap_or_default()
                    };
                    out.push((int(r, 1), k));
                })
                .await
            } else {
                // A name filter only Rust decides: count its names' keys here.
                let mut counts = HashMap::<String, u64>::new();
                let sql = format!("SELECT {key} AS k, qname, client FROM queries{}", w.sql());
                let glob = filter.name.as_ref();
                self.rows(&sql, &w, "counting the log", |r: &Row| {
                    let qname: String = r.try_get(1).unwrap_or_default();
                    if glob.is_some_and(|g| !g.is_match(&qname)) {
                        return;
                    }
                    let k = if by == By::Client {
                        client_text(r, 2)
                    } else {
                        r.try_get::<_, String>(0).unwrap_or_default()
                    };
                    *counts.entry(k).or_default() += 1;
                })
                .await?;
                out = counts.into_iter().map(|(k, n)| (n, k)).collect();
                Ok(())
            }
        })?;
        out.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        out.truncate(limit);
        Ok(out)
    }
}

impl Records for Db {
    fn split(&self) -> Split {
        Split::Grouped {
            gap_ms: self.gap_ms,
        }
    }

    /// One client's rows come from the (client, ts) index; every instance's sessions
    /// are kept apart (they are numbered per instance).
    fn briefs(&self, filter: &Filter, f: &mut dyn FnMut(&Brief<'_>)) -> Result<(), DbError> {
        self.briefs_upto(filter, None, f)
    }

    /// Only the rows with `seq` up to `max_seq`: a fraction of the log.
    fn openings(
        &self,
        filter: &Filter,
        max_seq: u64,
        f: &mut dyn FnMut(&Brief<'_>),
    ) -> Result<(), DbError> {
        self.briefs_upto(filter, Some(max_seq), f)
    }
}

impl Db {
    /// [`Records::briefs`], the rows with `seq` up to `max_seq` only when given.
    fn briefs_upto(
        &self,
        filter: &Filter,
        max_seq: Option<u64>,
        f: &mut dyn FnMut(&Brief<'_>),
    ) -> Result<(), DbError> {
        let mut w = where_of(filter, self.instance.as_deref());
        if let Some(m) = max_seq {
            w.add("seq <= $", i64::try_from(m).unwrap_or(i64::MAX));
        }
        let sql = format!(
            "SELECT ts, instance, client, proto, qname, action, session, seq, new FROM queries{} ORDER BY instance, client, session, ts",
            w.sql()
        );
        self.block_on(self.rows(&sql, &w, "reading the log", |r: &Row| {
            let ts = format_ts(r.try_get::<_, SystemTime>(0).unwrap_or(UNIX_EPOCH));
            let client = client_text(r, 2);
            let b = Brief {
                instance: r.try_get(1).unwrap_or(""),
                ts: &ts,
                client: &client,
                proto: r.try_get(3).unwrap_or(None),
                qname: r.try_get(4).unwrap_or(""),
                action: r.try_get(5).unwrap_or(""),
                session: int(r, 6),
                seq: int(r, 7),
                new: r.try_get(8).unwrap_or(false),
            };
            if filter.matches_brief(&b) {
                f(&b);
            }
        }))
    }
}
