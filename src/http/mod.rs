//! The HTTP server: the dashboard at `/`, the JSON API under `/api/v1` and `/metrics`, on
//! the addresses of `[http] listen` (off unless configured). Started by [`crate::service::Service::start`],
//! stopped (every connection closed) by its shutdown.
//!
//! One router (`router`) on hyper's HTTP/1 server, served by our own accept loop so that a
//! slow or hostile client cannot hold memory or stall anything: at most
//! [`MAX_CONNECTIONS`] connections ([`MAX_CONNECTIONS_PER_CLIENT`] from one address; more are
//! closed at once), request heads of at most [`MAX_HEAD_BYTES`] (URI and headers together;
//! larger ones get 431), a head that does not arrive within [`HEAD_TIMEOUT`] (also an idle
//! keep-alive connection) closes the connection, bodies of at most [`MAX_BODY_BYTES`], and
//! every request answered within [`REQUEST_TIMEOUT`]. The DNS listeners share nothing with
//! it but the tokio runtime: blocking work (a `check` reading lists) runs on blocking
//! threads, one at a time.
//!
//! - `dashboard`: `/` and `/assets/…`, the page, embedded in the binary.
//! - `auth`: the bearer token and the JSON error every call returns.
//! - `metrics`: `/metrics`, the counters in the Prometheus text format.
//! - `api`: the `/api/v1` calls.
//! - `lists`: the `/api/v1/lists/block|allow` edits of local list files; `lists_shared`:
//!   the same edits of the entries shared through PostgreSQL (`[sync] postgres = true`).
//! - `querylog`: `/api/v1/log` and its live stream; `logstats`: `/api/v1/stats/top|series`.
//! - `discovery`: `/api/v1/discovery`, one client's sessions, new names, heartbeats and
//!   suggestions.

mod api;
mod auth;
mod dashboard;
mod discovery;
mod lists;
mod lists_shared;
mod logstats;
mod metrics;
mod querylog;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::task::JoinSet;

use crate::config::HttpConfig;
use crate::pipeline::{Clock, Pipeline};
use crate::postgres::sync::Shared;
use crate::querylog::QueryLog;
use crate::reload::Reloader;
use crate::server::slots::ClientSlots;

pub use api::MAX_CHECK_NAMES;
pub use auth::ApiError;
pub use lists::MAX_EDIT_NAMES;
pub use querylog::{LOG_LIMIT, MAX_LOG_STREAMS, STREAM_BUFFER};

/// Connections open at once, from all clients together.
pub const MAX_CONNECTIONS: usize = 64;
/// Connections open at once from one client address.
pub const MAX_CONNECTIONS_PER_CLIENT: usize = 16;
/// Largest request head (request line and headers), bytes: hyper's smallest read buffer.
pub const MAX_HEAD_BYTES: usize = 8192;
/// Largest request body, bytes (the API's bodies are a few bytes of JSON).
pub const MAX_BODY_BYTES: usize = 16 << 10;
/// A request head must arrive within this (a connection idle this long is closed too).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Every request is answered within this; a reload still running goes on.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What the handlers share.
pub(crate) struct State {
    pipeline: Arc<Pipeline>,
    reloader: Arc<Reloader>,
    log: Option<QueryLog>,
    /// With `[sync] postgres = true`: list edits and pause go to the database.
    shared: Option<Arc<Shared>>,
    clock: Clock,
    token: Option<String>,
    public_read: bool,
    /// One `check` at a time: it reads every list again.
    check_busy: tokio::sync::Semaphore,
    /// One list edit at a time: it reads and writes a whole list, then reloads.
    edit_busy: tokio::sync::Semaphore,
    /// Query-log reads (`log`, `stats/top|series`): two at a time, on blocking threads.
    log_busy: Arc<tokio::sync::Semaphore>,
    /// Open live log streams, at most [`MAX_LOG_STREAMS`].
    streams: Arc<tokio::sync::Semaphore>,
    /// Recent `stats/top|series` answers.
    log_cache: logstats::Cache,
}

/// The running HTTP server.
pub struct HttpServer {
    addrs: Vec<SocketAddr>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl HttpServer {
    /// Binds the API's addresses (`[http] listen`), to be served by [`HttpServer::start`].
    pub fn bind(addrs: &[SocketAddr]) -> std::io::Result<Vec<std::net::TcpListener>> {
        addrs
            .iter()
            .map(|&addr| {
                std::net::TcpListener::bind(addr)
                    .and_then(|l| l.set_nonblocking(true).map(|()| l))
                    .map_err(|e| std::io::Error::new(e.kind(), format!("http.listen {addr}: {e}")))
            })
            .collect()
    }

    /// Serves the API on `listeners` (from [`HttpServer::bind`]). Call within the runtime.
    pub fn start(
        listeners: Vec<std::net::TcpListener>,
        cfg: &HttpConfig,
        pipeline: Arc<Pipeline>,
        reloader: Arc<Reloader>,
        log: Option<QueryLog>,
        shared: Option<Arc<Shared>>,
        clock: Clock,
    ) -> std::io::Result<Self> {
        let state = Arc::new(State {
            pipeline,
            reloader,
            log,
            shared,
            clock,
            token: cfg.token.clone(),
            public_read: cfg.public_read,
            check_busy: tokio::sync::Semaphore::new(1),
            edit_busy: tokio::sync::Semaphore::new(1),
            log_busy: Arc::new(tokio::sync::Semaphore::new(2)),
            streams: Arc::new(tokio::sync::Semaphore::new(MAX_LOG_STREAMS)),
            log_cache: logstats::Cache::default(),
        });
        let app = router(state);
        let slots = ClientSlots::new(MAX_CONNECTIONS_PER_CLIENT, MAX_CONNECTIONS);
        let mut addrs = Vec::new();
        let mut tasks = Vec::new();
        for l in listeners {
            let l = tokio::net::TcpListener::from_std(l)?;
            addrs.push(l.local_addr()?);
            tasks.push(tokio::spawn(accept_loop(
                l,
                app.clone(),
                Arc::clone(&slots),
            )));
        }
        tracing::info!(listen = ?addrs, "serving the HTTP API");
        Ok(Self { addrs, tasks })
    }

    /// The bound addresses (with the ports the kernel chose for port 0).
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Stops accepting and closes every connection.
    pub fn shutdown(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The routes: `/metrics` and `/api/v1/…`, with the body limit and the request timeout.
fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/", get(dashboard::index))
        .route("/assets/{file}", get(dashboard::asset))
        .route("/metrics", get(metrics::metrics))
        .route("/api/v1/check", get(api::check))
        .route("/api/v1/lists", get(api::lists))
        .route("/api/v1/stats", get(api::stats))
        .route("/api/v1/status", get(api::status))
        .route("/api/v1/reload", post(api::reload))
        .route("/api/v1/pause", post(api::pause))
        .route("/api/v1/resume", post(api::resume))
        .route(
            "/api/v1/lists/block",
            post(lists::add_block).delete(lists::remove_block),
        )
        .route(
            "/api/v1/lists/allow",
            post(lists::add_allow).delete(lists::remove_allow),
        )
        .route("/api/v1/log", get(querylog::log))
        .route("/api/v1/log/stream", get(querylog::stream))
        .route("/api/v1/stats/top", get(logstats::top))
        .route("/api/v1/stats/series", get(logstats::series))
        .route("/api/v1/discovery", get(discovery::discovery))
        .fallback(|| async { ApiError::not_found() })
        .layer(axum::middleware::from_fn(timeout))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// The headers every page of ours carries (the dashboard's files, the block page): no type
/// sniffing, no referrer, the content security policy `csp` when given, and no framing
/// when `no_framing`.
pub(crate) fn security_headers(
    h: &mut axum::http::HeaderMap,
    csp: Option<&'static str>,
    no_framing: bool,
) {
    use axum::http::header::{self, HeaderValue};
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if let Some(csp) = csp {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(csp),
        );
    }
    if no_framing {
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
}

/// Answers 503 when a request takes longer than [`REQUEST_TIMEOUT`].
async fn timeout(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::unavailable("the request took too long").into_response(),
    }
}

/// Accepts connections on `l` while slots are free; each is served on a task of its own,
/// owned by this loop, so that ending the loop (abort) closes them all.
async fn accept_loop(l: tokio::net::TcpListener, app: Router, slots: Arc<ClientSlots>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = l.accept() => {
                let (stream, peer) = match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of descriptors, mostly: wait instead of spinning.
                        tracing::warn!(error = %e, "http accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(slot) = slots.try_take(peer.ip()) else {
                    tracing::debug!(client = %peer, "http connection limit reached; closed");
                    continue;
                };
                let service = hyper_util::service::TowerToHyperService::new(app.clone());
                conns.spawn(async move {
                    let _slot = slot;
                    let r = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEAD_TIMEOUT)
                        .max_buf_size(MAX_HEAD_BYTES)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                    if let Err(e) = r {
                        tracing::debug!(client = %peer, error = %e, "http connection ended");
                    }
                });
            }
            // Reap finished connections, so the set holds only open ones.
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    /// The shared page headers: always no sniffing and no referrer; the policy and the
    /// framing ban only when asked for.
    #[test]
    fn security_headers_are_set_as_asked() {
        let mut h = axum::http::HeaderMap::new();
        super::security_headers(&mut h, Some("default-src 'none'"), true);
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert_eq!(h["content-security-policy"], "default-src 'none'");
        assert_eq!(h["x-frame-options"], "DENY");
        let mut h = axum::http::HeaderMap::new();
        super::security_headers(&mut h, None, false);
        assert_eq!(h.len(), 2);
    }

    /// Every route of the router is described in `docs/openapi.yaml`.
    #[test]
    fn every_route_is_in_the_openapi_file() {
        let openapi = include_str!("../../docs/openapi.yaml");
        let source = include_str!("mod.rs");
        let source = source.split("#[cfg(test)]").next().unwrap_or_default();
        let routes: Vec<&str> = source
            .split(".route(")
            .skip(1)
            .filter_map(|s| s.trim_start().strip_prefix('"')?.split('"').next())
            .filter(|r| !r.starts_with("/assets/"))
            .collect();
        assert!(routes.len() >= 16, "{routes:?}");
        for r in routes {
            assert!(
                openapi.contains(&format!("\n  {r}:\n")),
                "{r} is not in docs/openapi.yaml"
            );
        }
    }

    /// The log record's `action` in `docs/openapi.yaml` lists every action the log writes.
    #[test]
    fn the_openapi_record_lists_every_action() {
        let openapi = include_str!("../../docs/openapi.yaml");
        let line = openapi
            .lines()
            .find(|l| {
                l.trim_start()
                    .starts_with("action: { type: string, enum: [")
            })
            .expect("the Record's action");
        let want = format!("enum: [{}]", crate::querylog::ACTION_NAMES.join(", "));
        assert!(line.contains(&want), "{line}\nwant {want}");
    }
}
