//! `GET /api/v1/discovery?client=IP`: the dashboard's discovery view of one client, from
//! [`crate::querylog::discovery::discover`] (the reports of `sinkhole log first`,
//! `first --new`, `heartbeats` and `suggest`, in one pass over the log). Each name carries
//! its registrable domain, which is what the view's "block" button adds to a block list.
//! Suggestions leave out the domains blocked for that client now: by its group's lists
//! when it is in one, else by the default policy's. With `[log.postgres]` the reports read
//! the database (every instance's sessions, each naming its `instance`; `instance=` for
//! one).

use std::sync::Arc;

use axum::Json;
use axum::extract::State as Extract;
use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::State;
use super::api::{Answer, Params, RawQuery};
use super::auth::{Access, ApiError, authorize};
use super::querylog::{blocking, db_error, limit_param, log_at, time_param};
use crate::blocklist::Kind;
use crate::querylog::discovery::{Options, discover};
use crate::querylog::filter::Filter;
use crate::querylog::report::{self, Opening};
use crate::querylog::sessions::registrable;

/// `count` (names per session): default and most.
const COUNT: (usize, usize) = (10, 100);
/// `sessions` (latest sessions shown): default and most.
const SESSIONS: (usize, usize) = (10, 100);
/// `limit` (suggestions and heartbeats shown): default and most.
const LIMIT: (usize, usize) = (10, 100);
/// `min` (fewest beats of a heartbeat): default and most.
const MIN_BEATS: (usize, usize) = (5, 10_000);

fn sessions(v: Vec<Opening>) -> Vec<Value> {
    v.into_iter()
        .rev()
        .map(|o| {
            let names: Vec<Value> = o
                .names
                .iter()
                .map(|n| {
                    json!({
                        "name": n.name,
                        "domain": registrable(&n.name),
                        "new": n.new,
                        "action": n.action,
                        "ts": n.ts,
                    })
                })
                .collect();
            let mut v = json!({
                "session": o.session,
                "start": o.start,
                "queries": o.queries,
                "names": names,
            });
            if !o.instance.is_empty() {
                v["instance"] = json!(o.instance);
            }
            v
        })
        .collect()
}

/// `GET /api/v1/discovery?client=IP[&since=24h][&count=10][&sessions=10][&limit=10][&min=5]`:
/// the client's latest sessions (newest first) with their first names, the sessions' new
/// names, its heartbeats and the suggestions of domains to block.
pub(super) async fn discovery(
    Extract(state): Extract<Arc<State>>,
    headers: HeaderMap,
    q: RawQuery,
) -> Answer {
    authorize(&state, &headers, Access::Read)?;
    let p = Params::new(
        q,
        &[
            "client", "since", "count", "sessions", "limit", "min", "instance",
        ],
    )?;
    let text = p
        .one("client")?
        .ok_or_else(|| ApiError::bad_request("client: missing (discovery?client=192.0.2.7)"))?;
    let client = text.trim().parse::<std::net::IpAddr>().map_err(|_| {
        let c: String = text.chars().take(60).collect();
        ApiError::bad_request(format!("client: {c:?} is not an IP address"))
    })?;
    let now = state.clock.now().wall;
    let since = time_param(&p, "since", now)?
        .unwrap_or_else(|| report::parse_since("24h", now).unwrap_or_default());
    let opts = Options {
        count: limit_param(&p, "count", COUNT)?,
        sessions: limit_param(&p, "sessions", SESSIONS)?,
        min_beats: limit_param(&p, "min", MIN_BEATS)?,
        suggest: limit_param(&p, "limit", LIMIT)?,
    };
    let log = log_at(&state, &p)?.open().await?;
    let policy = state.pipeline.policy();
    let at = state.clock.now();
    let f = Filter {
        client: Some(client.into()),
        since: Some(since.clone()),
        ..Filter::default()
    };
    let d = blocking(&state, move || {
        // Blocked for this client now: its group's lists (scheduled ones too), or the
        // default policy's.
        let lists = policy
            .groups
            .select(client, &at)
            .map_or(&policy.blocking, |g| &g.blocking);
        let is_blocked = |d: &str| {
            matches!(lists.find(d.as_bytes(), &at), Some((m, _)) if m.kind == Kind::Block)
        };
        discover(log.records(), &f, opts, &is_blocked)
    })
    .await?
    .map_err(db_error)?;
    let mut beats = d.heartbeats;
    beats.truncate(opts.suggest);
    let heartbeats: Vec<Value> = beats
        .iter()
        .map(|h| {
            json!({
                "name": h.qname,
                "domain": registrable(&h.qname),
                "period_s": (h.period_s * 10.0).round() / 10.0,
                "jitter_s": (h.jitter_s * 10.0).round() / 10.0,
                "times": h.times,
            })
        })
        .collect();
    let suggestions: Vec<Value> = d
        .suggestions
        .iter()
        .map(|s| json!({ "domain": s.domain, "sessions": s.sessions, "clients": s.clients }))
        .collect();
    Ok(Json(json!({
        "client": client.to_string(),
        "since": since,
        "sessions_read": d.sessions_read,
        "sessions": sessions(d.sessions),
        "new": sessions(d.new),
        "heartbeats": heartbeats,
        "suggestions": suggestions,
    })))
}
