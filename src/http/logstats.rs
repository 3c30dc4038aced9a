//! Stats from the query log for the dashboard: `GET /api/v1/stats/top` (the most frequent
//! names, domains, clients or blocked names: [`report::top`], what `sinkhole log top`
//! prints) and `GET /api/v1/stats/series` (queries and blocked queries per minute:
//! [`page::per_minute`]). Both read the log on a blocking thread; answers are kept for
//! [`CACHE_TTL`] per parameter set, so a dashboard polling them reads the log once. With
//! `[log.postgres]` they count in the database (`GROUP BY`), across every instance or the
//! one `instance=` names.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State as Extract;
use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::State;
use super::api::{Answer, Params, RawQuery};
use super::auth::{Access, ApiError, authorize};
use super::querylog::{LogAt, blocking, db_error, limit_param, log_at, time_param};
use crate::querylog::filter::Filter;
use crate::querylog::page;
use crate::querylog::report::{self, By};
use crate::querylog::source::Log;

/// How long a `top` or `series` answer is reused.
pub(super) const CACHE_TTL: Duration = Duration::from_secs(10);
/// Answers kept at most (all are dropped when more would be).
const CACHE_ENTRIES: usize = 64;
/// `top`'s `limit`: default and most.
pub(super) const TOP_LIMIT: (usize, usize) = (10, 1000);
/// `series`' `minutes`: default (24 h) and most.
pub(super) const SERIES_MINUTES: (usize, usize) = (1440, 1440);

/// Recent answers by their parameters.
#[derive(Debug, Default)]
pub(crate) struct Cache(Mutex<HashMap<String, (Instant, Value)>>);

impl Cache {
    fn get(&self, key: &str, now: Instant) -> Option<Value> {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.get(key)
            .filter(|(at, _)| now.saturating_duration_since(*at) < CACHE_TTL)
            .map(|(_, v)| v.clone())
    }

    fn put(&self, key: String, now: Instant, v: Value) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= CACHE_ENTRIES {
            m.clear();
        }
        m.insert(key, (now, v));
    }
}

/// The answer for `key` from the cache, or `make`'s from the log at `at` (then kept).
async fn cached(
    state: &Arc<State>,
    key: String,
    at: LogAt,
    make: impl FnOnce(Log) -> Result<Value, ApiError> + Send + 'static,
) -> Answer {
    let now = state.clock.now().mono;
    if let Some(v) = state.log_cache.get(&key, now) {
        return Ok(Json(v));
    }
    let log = at.open().await?;
    let v = blocking(state, move || make(log)).await??;
    state.log_cache.put(key, now, v.clone());
    Ok(Json(v))
}

/// `GET /api/v1/stats/top?by=name|domain|client|blocked|group&limit=10&since=24h`: the most
/// frequent keys since then (default the last 24 h), most frequent first.
pub(super) async fn top(
    Extract(state): Extract<Arc<State>>,
    headers: HeaderMap,
    q: RawQuery,
) -> Answer {
    authorize(&state, &headers, Access::Read)?;
    let p = Params::new(q, &["by", "limit", "since", "instance"])?;
    let by_text = p.one("by")?.unwrap_or("name");
    let by = match by_text {
        "name" => By::Name,
        "domain" => By::Domain,
        "client" => By::Client,
        "blocked" => By::Blocked,
        "group" => By::Group,
        other => {
            let o: String = other.chars().take(40).collect();
            return Err(ApiError::bad_request(format!(
                "by: {o:?}: use name, domain, client, blocked or group"
            )));
        }
    };
    let limit = limit_param(&p, "limit", TOP_LIMIT)?;
    let now = state.clock.now().wall;
    // Cached by the parameter as written: `since=24h` moves with the clock.
    let since_text = p.one("since")?.unwrap_or("24h").to_string();
    let since = time_param(&p, "since", now)?
        .unwrap_or_else(|| report::parse_since("24h", now).unwrap_or_default());
    let at = log_at(&state, &p)?;
    let instance = p.one("instance")?.unwrap_or("");
    let key = format!("top {by_text} {limit} {since_text} {instance}");
    let by_text = by_text.to_string();
    cached(&state, key, at, move |log| {
        let f = Filter {
            since: Some(since.clone()),
            ..Filter::default()
        };
        let rows = match log {
            Log::File(path) => report::top(&path, &f, by, limit),
            Log::Db(db) => db.top(&f, by, limit).map_err(db_error)?,
        };
        let top: Vec<Value> = rows
            .into_iter()
            .map(|(count, key)| json!({ "key": key, "count": count }))
            .collect();
        Ok(json!({ "by": by_text, "since": since, "top": top }))
    })
    .await
}

/// `GET /api/v1/stats/series?minutes=1440`: queries and blocked queries per minute for the
/// last `minutes` minutes (the current one last), from the log.
pub(super) async fn series(
    Extract(state): Extract<Arc<State>>,
    headers: HeaderMap,
    q: RawQuery,
) -> Answer {
    authorize(&state, &headers, Access::Read)?;
    let p = Params::new(q, &["minutes", "instance"])?;
    let minutes = limit_param(&p, "minutes", SERIES_MINUTES)?;
    let at = log_at(&state, &p)?;
    let instance = p.one("instance")?.unwrap_or("");
    let now = state.clock.now().wall;
    let this_minute = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 60);
    let key = format!("series {minutes} {this_minute} {instance}");
    cached(&state, key, at, move |log| {
        let m = match log {
            Log::File(path) => page::per_minute(&path, now, minutes as u64),
            Log::Db(db) => db.per_minute(now, minutes as u64).map_err(db_error)?,
        };
        Ok(json!({
            "start": m.first().map_or(0, |b| b.0),
            "step": 60,
            "queries": m.iter().map(|b| b.1).collect::<Vec<_>>(),
            "blocked": m.iter().map(|b| b.2).collect::<Vec<_>>(),
        }))
    })
    .await
}
