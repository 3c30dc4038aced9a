//! The `/api/v1` calls: `check` (the answer of `sinkhole lists check`), `lists` (each
//! list's entries and last load, the last reload's outcome), `stats` (totals from the
//! counters), `status`, and the mutating `reload`, `pause` and `resume`.
//!
//! Parameters come in the query string (`pause` also takes a JSON body); an unknown,
//! repeated or bad parameter is a 400 that names it. The work is the library's:
//! [`crate::blocklist::explain::check`], [`crate::reload::Reloader`], the counters, the
//! pipeline's [`Pause`](crate::pipeline::pause::Pause).

use std::sync::Arc;
use std::time::SystemTime;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State as Extract};
use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::State;
use super::auth::{Access, ApiError, authorize};
use crate::blocklist::Kind;
use crate::blocklist::explain::{CheckError, Decision, Explanation};
use crate::config::parse_duration;
use crate::counters::ACTIONS;
use crate::pipeline::pause::MAX_PAUSE;
use crate::querylog::action_name;

/// Most names one `check` call explains.
pub const MAX_CHECK_NAMES: usize = 100;

pub(super) type Answer = Result<Json<Value>, ApiError>;
pub(super) type RawQuery = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// The query string's parameters, checked against the names a call knows.
pub(super) struct Params(Vec<(String, String)>);

impl Params {
    pub(super) fn new(q: RawQuery, known: &[&str]) -> Result<Self, ApiError> {
        let Query(pairs) = q.map_err(|e| ApiError::bad_request(format!("query string: {e}")))?;
        if let Some((k, _)) = pairs.iter().find(|(k, _)| !known.contains(&k.as_str())) {
            let k: String = k.chars().take(40).collect();
            return Err(ApiError::bad_request(format!(
                "unknown parameter {k:?}; this call takes {}",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        }
        Ok(Self(pairs))
    }

    fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The one value of `key`, if given; given twice is an error.
    pub(super) fn one<'a>(&'a self, key: &'a str) -> Result<Option<&'a str>, ApiError> {
        let mut it = self.all(key);
        let first = it.next();
        if it.next().is_some() {
            return Err(ApiError::bad_request(format!(
                "{key}: given more than once"
            )));
        }
        Ok(first)
    }
}

/// RFC 3339 (UTC) text of `t`.
pub(super) fn rfc3339(t: SystemTime) -> Value {
    jiff::Timestamp::try_from(t).map_or(Value::Null, |ts| Value::String(ts.to_string()))
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn kind(k: Kind) -> &'static str {
    match k {
        Kind::Block => "block",
        Kind::Allow => "allow",
    }
}

fn decision(d: &Decision) -> Value {
    json!({ "kind": kind(d.kind), "rule": d.text, "list": d.source, "line": d.line })
}

fn explanation(x: &Explanation) -> Value {
    let also: Vec<Value> = x
        .also
        .iter()
        .map(|r| json!({ "kind": kind(r.kind), "rule": r.text, "list": r.source, "line": r.line }))
        .collect();
    json!({
        "name": x.name,
        "verdict": x.verdict().to_string(),
        "decision": x.decision.as_ref().map(decision),
        "also": also,
    })
}

/// `GET /api/v1/check?name=…[&name=…][&client=IP]`: for each name, blocked, allowed or
/// not blocked, the rule that decides and every other rule that matches, for the client's
/// group (or the default policy), as `sinkhole lists check` answers.
pub(super) async fn check(
    Extract(state): Extract<Arc<State>>,
    headers: HeaderMap,
    q: RawQuery,
) -> Answer {
    authorize(&state, &headers, Access::Read)?;
    let p = Params::new(q, &["name", "client"])?;
    let names: Vec<String> = p.all("name").map(str::to_string).collect();
    if names.is_empty() {
        return Err(ApiError::bad_request(
            "name: missing (check?name=example.com)",
        ));
    }
    if names.len() > MAX_CHECK_NAMES {
        return Err(ApiError::bad_request(format!(
            "name: at most {MAX_CHECK_NAMES} names per call"
        )));
    }
    let client = match p.one("client")? {
        None => None,
        Some(c) => Some(c.trim().parse::<std::net::IpAddr>().map_err(|_| {
            let c: String = c.chars().take(60).collect();
            ApiError::bad_request(format!("client: {c:?} is not an IP address"))
        })?),
    };
    // It reads every list again: one at a time, on a blocking thread. A call that waits
    // longer than the request timeout is answered 503.
    let permit = state
        .check_busy
        .acquire()
        .await
        .map_err(|_| ApiError::unavailable("shutting down"))?;
    let cfg = state.reloader.config();
    let now = state.clock.now();
    let paused = state.pipeline.pause().active(&now);
    let checked = tokio::task::spawn_blocking(move || {
        let read_mac = || {
            let ip = client?;
            let table = crate::neighbours::dump().ok()?;
            table.get(&ip.to_canonical()).copied()
        };
        crate::blocklist::explain::check(&cfg, client, &names, now.wall, read_mac)
    })
    .await
    .map_err(|e| ApiError::internal(format!("check failed: {e}")))?;
    drop(permit);
    let c = checked.map_err(|e| match e {
        CheckError::Name { .. } => ApiError::bad_request(format!("name: {e}")),
        CheckError::Lists(e) => ApiError::internal(e.to_string()),
    })?;
    let client = c
        .client
        .as_ref()
        .map(|(ip, g)| json!({ "ip": ip.to_string(), "group": g }));
    Ok(Json(json!({
        "client": client,
        "off_schedule": c.off_schedule,
        "paused": paused,
        "names": c.names.iter().map(explanation).collect::<Vec<_>>(),
    })))
}

/// `GET /api/v1/lists`: each list's entries and last load, and how the last reload ended.
pub(super) async fn lists(
    Extract(state): Extract<Arc<State>>,
    headers: HeaderMap,
    q: RawQuery,
) -> Answer {
    authorize(&state, &headers, Access::Read)?;
    Params::new(q, &[])?;
    let policy = state.pipeline.policy();
    let lists: Vec<Value> = policy
        .lists
        .iter()
        .map(|l| {
            json!({
                "name": l.name,
                "entries": l.entries,
                "loaded": rfc3339(l.loaded),
                "loaded_unix": unix(l.loaded),
            })
        })
        .collect();
    let last = state
        .reloader
        .last_reload()
        .map(|(at, error)| json!({ "at": rfc3339(at), "ok": error.is_none(), "error": error }));
    Ok(Json(json!({
        "lists": lists,
        "rules": policy.blocking.list().len(),
        "last_reload": last,
    })))
}

/// `GET /api/v1/stats`: totals by action, the blocked share, the cache's hit ratio, per
/// upstream queries, errors and mean latency, query-log totals.
pub(super) async fn stats(
    Extract(state): Extract<Arc<State>>,
    headers: HeaderMap,
    q: RawQuery,
) -> Answer {
    authorize(&state, &headers, Access::Read)?;
    Params::new(q, &[])?;
    let s = crate::service::snapshot(&state.pipeline, state.log.as_ref());
    let total: u64 = s.by_action.iter().sum();
    let mut by_action = serde_json::Map::new();
    for (a, n) in ACTIONS.iter().zip(s.by_action) {
        by_action.insert(action_name(*a).into(), n.into());
    }
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let blocked = s.queries(crate::pipeline::Action::Blocked);
    let lookups = s.cache_hits + s.cache_misses;
    let upstreams: Vec<Value> = s
        .upstreams
        .iter()
        .map(|u| {
            json!({
                "address": u.addr.to_string(),
                "queries": u.queries,
                "errors": u.errors,
                "answered": u.answered,
                "mean_latency_ms": ratio(u.latency_us, u.answered) / 1000.0,
            })
        })
        .collect();
    Ok(Json(json!({
        "queries": { "total": total, "by_action": by_action },
        "blocked_share": ratio(blocked, total),
        "cache": {
            "hits": s.cache_hits,
            "misses": s.cache_misses,
            "hit_ratio": ratio(s.cache_hits, lookups),
            "entries": s.gauges.cache_entries,
            "bytes": s.gauges.cache_bytes,
        },
        "upstreams": upstreams,
        "querylog": { "written": s.gauges.querylog_written, "dropped": s.gauges.querylog_dropped },
    })))
}

/// The pause state and the basics, as `status`, `pause` and `resume` answer.
fn status_of(state: &State) -> Value {
    let now = state.clock.now();
    let left = state.pipeline.pause().remaining(&now);
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "blocking": if left.is_some() { "paused" } else { "enabled" },
        "paused": left.is_some(),
        "pause_remaining_secs": left.map(|d| d.as_secs_f64().ceil() as u64),
        "paused_until": left.map(|d| rfc3339(now.wall + d)),
        "rules": state.pipeline.policy().blocking.list().len(),
    })
}

/// `GET /api/v1/status`: blocking enabled or paused (and until when), version, rules.
pub(super) async fn status(
    Extract(state): Extract<Arc<State>>,
    headers: HeaderMap,
    q: RawQuery,
) -> Answer {
    authorize(&state, &headers, Access::Read)?;
    Params::new(q, &[])?;
    Ok(Json(status_of(&state)))
}

/// `POST /api/v1/pause` with `?duration=5m` or `{"duration": "5m"}` (or a number of
/// seconds): blocking paused for everyone until then (at most a week); a new pause
/// replaces one running. With `[sync] postgres = true`, on every instance (503 when the
/// database cannot be reached: nothing paused).
pub(super) async fn pause(
    Extract(state): Extract<Arc<State>>,
    headers: HeaderMap,
    q: RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    authorize(&state, &headers, Access::Write)?;
    let p = Params::new(q, &["duration"])?;
    // Too large (413) or cut off: the rejection's own status.
    let body = body.map_err(|e| ApiError::new(e.status(), format!("body: {}", e.body_text())))?;
    let from_body = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let v: Value = serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!(
                "body: not JSON ({e}); send {{\"duration\": \"5m\"}}"
            ))
        })?;
        match v.get("duration") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(_) => {
                return Err(ApiError::bad_request(
                    "duration: write \"5m\" or a number of seconds",
                ));
            }
            None => return Err(ApiError::bad_request("duration: missing in the body")),
        }
    };
    let text = match (p.one("duration")?, from_body) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "duration: given in both the query and the body",
            ));
        }
        (Some(q), None) => q.to_string(),
        (None, Some(b)) => b,
        (None, None) => {
            return Err(ApiError::bad_request(
                "duration: missing (pause?duration=5m, or {\"duration\": \"5m\"})",
            ));
        }
    };
    let d = parse_duration(&text)
        .filter(|d| !d.is_zero() && *d <= MAX_PAUSE)
        .ok_or_else(|| {
            let t: String = text.chars().take(40).collect();
            ApiError::bad_request(format!(
                "duration: {t:?}: write a duration from 1s to 7d, such as 30s, 5m or 2h"
            ))
        })?;
    let applied = match &state.shared {
        Some(shared) => {
            shared
                .pause(d)
                .await
                .map_err(|e| super::lists_shared::shared_error(&e, "blocking was not paused"))?;
            d.min(MAX_PAUSE)
        }
        None => state.pipeline.pause().pause(&state.clock.now(), d),
    };
    tracing::info!(
        secs = applied.as_secs(),
        "blocking paused through the HTTP API"
    );
    Ok(Json(status_of(&state)))
}

/// `POST /api/v1/resume`: ends a pause now (with `[sync] postgres = true`, on every
/// instance).
pub(super) async fn resume(
    Extract(state): Extract<Arc<State>>,
    headers: HeaderMap,
    q: RawQuery,
) -> Answer {
    authorize(&state, &headers, Access::Write)?;
    Params::new(q, &[])?;
    if let Some(shared) = &state.shared {
        shared
            .resume()
            .await
            .map_err(|e| super::lists_shared::shared_error(&e, "blocking was not resumed"))?;
        tracing::info!("blocking resumed for every instance through the HTTP API");
    } else if state.pipeline.pause().resume(&state.clock.now()) {
        tracing::info!("blocking resumed through the HTTP API");
    }
    Ok(Json(status_of(&state)))
}

/// `POST /api/v1/reload`: reads the config and every list again, as SIGHUP does. A failure
/// keeps the running config and lists and is answered 500 with the reason. The reload runs
/// on a task of its own: a client that goes away does not cut it short.
pub(super) async fn reload(
    Extract(state): Extract<Arc<State>>,
    headers: HeaderMap,
    q: RawQuery,
) -> Answer {
    authorize(&state, &headers, Access::Write)?;
    Params::new(q, &[])?;
    let started = std::time::Instant::now();
    let r = Arc::clone(&state.reloader);
    let done = tokio::spawn(async move { r.reload(true).await })
        .await
        .map_err(|e| ApiError::internal(format!("reload task failed: {e}")))?;
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    match done {
        Ok(()) => Ok(Json(json!({
            "reloaded": true,
            "elapsed_ms": elapsed_ms,
            "rules": state.pipeline.policy().blocking.list().len(),
        }))),
        Err(e) => Err(ApiError::internal(format!(
            "reload failed, still serving the previous config and lists: {e:#}"
        ))),
    }
}
