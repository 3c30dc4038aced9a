//! `GET /api/v1/log` (the query log, newest first, filtered and paged) and
//! `GET /api/v1/log/stream` (new records as server-sent events).
//!
//! With `[log.postgres]`, both read the database instead of the file, across every
//! instance (`instance=` for one; each record names its `instance`): the page is
//! `postgres::read::Db::newest`, the stream polls it as `sinkhole log tail --follow` does.
//!
//! Both call the `sinkhole log` code: the page is [`crate::querylog::page::newest`] (the files read
//! backwards, rotated ones included), the stream is [`crate::querylog::tail::run`] with `--follow`
//! on a thread of its own, which polls the file as `sinkhole log tail --follow` does (every
//! 200 ms, across rotation and truncation) and writes JSON lines into a [`SseSink`]. The
//! file is followed rather than the writer tapped: the query path and the writer know
//! nothing of the streams, so no client can slow them. Each stream holds at most
//! [`STREAM_BUFFER`] events; a client that does not read them in time is dropped (the
//! stream ends) instead of being buffered for. At most [`MAX_LOG_STREAMS`] streams are open.

use std::io::Write;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::State as Extract;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use hyper::body::Frame;
use serde_json::json;
use tokio::sync::mpsc;

use super::State;
use super::api::{Answer, Params, RawQuery};
use super::auth::{Access, ApiError, authorize};
use crate::config::postgres::PostgresLog;
use crate::pipeline::Transport;
use crate::postgres::DbError;
use crate::postgres::read::Db;
use crate::postgres::recent::DbCursor;
use crate::querylog::filter::Filter;
use crate::querylog::page::{Cursor, newest};
use crate::querylog::source::Log;
use crate::querylog::{report, tail};

/// Records a page holds by default, and at most.
pub const LOG_LIMIT: (usize, usize) = (100, 1000);
/// Live log streams open at once.
pub const MAX_LOG_STREAMS: usize = 8;
/// Events a stream holds for a slow client; one more and the stream is dropped.
pub const STREAM_BUFFER: usize = 256;
/// A stream with nothing to send sends a comment this often (proxies, dead clients).
const KEEPALIVE: Duration = Duration::from_secs(15);
/// A record longer than this is not streamed (the writer writes none this long).
const MAX_EVENT: usize = 64 << 10;
use crate::querylog::ACTION_NAMES as ACTIONS;

fn bad(key: &str, value: &str, why: impl std::fmt::Display) -> ApiError {
    let v: String = value.chars().take(60).collect();
    ApiError::bad_request(format!("{key}: {v:?}: {why}"))
}

/// Where the API reads the query log.
pub(super) enum LogAt {
    /// The current file.
    File(PathBuf),
    /// `[log.postgres]`'s database, every instance's records or `instance`'s.
    Db {
        pg: Box<PostgresLog>,
        gap: Duration,
        instance: Option<String>,
    },
}

/// Where the log is: `[log.postgres]`'s database when configured (the `instance`
/// parameter narrows it), else the current file; 404 when the log is off.
pub(super) fn log_at(state: &State, p: &Params) -> Result<LogAt, ApiError> {
    let instance = p.one("instance")?.map(|i| i.trim().to_string());
    let Some(log) = state.reloader.config().log else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "the query log is off (set [log] path or [log.postgres] to keep one)",
        ));
    };
    match (log.postgres, log.path) {
        (Some(pg), _) => Ok(LogAt::Db {
            pg: Box::new(pg),
            gap: log.session_gap,
            instance,
        }),
        (None, Some(_)) if instance.is_some() => Err(ApiError::bad_request(
            "instance: the query log is a file of this instance only ([log.postgres] is not set)",
        )),
        (None, Some(path)) => Ok(LogAt::File(path)),
        (None, None) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "the query log is off (set [log] path or [log.postgres] to keep one)",
        )),
    }
}

/// A database that cannot be read: 503, with what failed.
pub(super) fn db_error(e: DbError) -> ApiError {
    ApiError::unavailable(format!(
        "the query log's database: {}",
        crate::postgres::read::error_text(&e)
    ))
}

impl LogAt {
    /// Opens the log: connects to the database (async).
    pub(super) async fn open(self) -> Result<Log, ApiError> {
        match self {
            Self::File(p) => Ok(Log::File(p)),
            Self::Db { pg, gap, instance } => {
                let db = Db::open(&pg, gap, instance.clone())
                    .await
                    .map_err(db_error)?;
                if let Some(i) = &instance
                    && !db.instances().contains(i)
                {
                    let i: String = i.chars().take(60).collect();
                    return Err(ApiError::bad_request(format!(
                        "instance: {i:?}: no instance of that name writes to the database (instances: {})",
                        db.instances().join(", ")
                    )));
                }
                Ok(Log::Db(Box::new(db)))
            }
        }
    }
}

/// A time parameter: unix seconds, RFC 3339, a date, or an age (`15m`, `24h`) before `now`;
/// returns the log's `ts` text.
pub(super) fn time_param(
    p: &Params,
    key: &str,
    now: SystemTime,
) -> Result<Option<String>, ApiError> {
    let Some(s) = p.one(key)? else {
        return Ok(None);
    };
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        // Up to the end of year 9999.
        let secs = s
            .parse::<u64>()
            .ok()
            .filter(|n| *n <= 253_402_300_799)
            .ok_or_else(|| bad(key, s, "unix seconds out of range"))?;
        return Ok(Some(crate::querylog::writer::format_ts(
            UNIX_EPOCH + Duration::from_secs(secs),
        )));
    }
    report::parse_since(s, now).map(Some).map_err(|_| {
        bad(
            key,
            s,
            "write unix seconds, RFC 3339 (2026-11-21T10:00:00Z), a date or an age (15m, 24h)",
        )
    })
}

/// A count parameter from 1 to `max`, `default` when absent.
pub(super) fn limit_param(
    p: &Params,
    key: &str,
    (default, max): (usize, usize),
) -> Result<usize, ApiError> {
    match p.one(key)? {
        None => Ok(default),
        Some(s) => s
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| bad(key, s, format_args!("write a number from 1 to {max}"))),
    }
}

/// The `client`, `name`, `action` and `proto` filters (and `from`/`to` when `times`).
fn filter(p: &Params, now: SystemTime, times: bool) -> Result<Filter, ApiError> {
    let client = p
        .one("client")?
        .map(|c| {
            let c = c.trim();
            c.parse::<ipnet::IpNet>()
                .or_else(|_| c.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| bad("client", c, "not an IP address or network"))
        })
        .transpose()?;
    let action = match p.one("action")? {
        Some(a) if !ACTIONS.contains(&a) => {
            return Err(bad(
                "action",
                a,
                format_args!("use one of {}", ACTIONS.join(", ")),
            ));
        }
        a => a.map(str::to_string),
    };
    let name = p
        .one("name")?
        .map(|g| {
            if g.len() > 255 {
                return Err(bad("name", g, "longer than 255 characters"));
            }
            globset::GlobBuilder::new(&g.trim().to_ascii_lowercase())
                .literal_separator(false)
                .build()
                .map(|g| g.compile_matcher())
                .map_err(|e| bad("name", g, e))
        })
        .transpose()?;
    let (since, until) = if times {
        (time_param(p, "from", now)?, time_param(p, "to", now)?)
    } else {
        (None, None)
    };
    if let (Some(f), Some(t)) = (&since, &until)
        && f > t
    {
        return Err(ApiError::bad_request(format!(
            "to: {t} is before from ({f})"
        )));
    }
    let proto = match p.one("proto")? {
        Some(t) if !Transport::ALL.iter().any(|x| x.name() == t) => {
            let names: Vec<&str> = Transport::ALL.iter().map(|x| x.name()).collect();
            return Err(bad(
                "proto",
                t,
                format_args!("use one of {}", names.join(", ")),
            ));
        }
        t => t.map(str::to_string),
    };
    Ok(Filter {
        client,
        action,
        name,
        since,
        until,
        proto,
    })
}

/// Runs `f` on a blocking thread, at most two at a time (the permit travels with it, so a
/// request that times out does not free its place before the work ends).
pub(super) async fn blocking<T: Send + 'static>(
    state: &State,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    let permit = Arc::clone(&state.log_busy)
        .acquire_owned()
        .await
        .map_err(|_| ApiError::unavailable("shutting down"))?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        f()
    })
    .await
    .map_err(|e| ApiError::internal(format!("reading the query log failed: {e}")))
}

/// `GET /api/v1/log?client=&name=&action=&from=&to=&limit=&before=&instance=`: the
/// matching records, newest first, at most `limit` (100; up to 1000); `next` is the
/// `before` of the next (older) page, `null` on the last one.
pub(super) async fn log(
    Extract(state): Extract<Arc<State>>,
    headers: HeaderMap,
    q: RawQuery,
) -> Answer {
    authorize(&state, &headers, Access::Read)?;
    let p = Params::new(
        q,
        &[
            "client", "name", "action", "proto", "from", "to", "limit", "before", "instance",
        ],
    )?;
    let f = filter(&p, state.clock.now().wall, true)?;
    let limit = limit_param(&p, "limit", LOG_LIMIT)?;
    let before = p.one("before")?;
    let not_cursor = |b: &str| bad("before", b, "not a cursor; pass a page's \"next\"");
    let page = match log_at(&state, &p)?.open().await? {
        Log::File(path) => {
            let before = before
                .map(|b| b.parse::<Cursor>().map_err(|()| not_cursor(b)))
                .transpose()?;
            let page = blocking(&state, move || newest(&path, &f, before, limit)).await?;
            json!({
                "records": page.records,
                "next": page.next.map(|c| c.to_string()),
                "scanned": page.scanned,
            })
        }
        Log::Db(db) => {
            let before = before
                .map(|b| b.parse::<DbCursor>().map_err(|()| not_cursor(b)))
                .transpose()?;
            let page = blocking(&state, move || db.newest(&f, before, limit, true))
                .await?
                .map_err(db_error)?;
            json!({
                "records": page.records,
                "next": page.next.map(|c| c.to_string()),
                "scanned": page.scanned,
            })
        }
    };
    Ok(Json(page))
}

/// `GET /api/v1/log/stream?client=&name=&action=&proto=&instance=`: new matching records as
/// server-sent events (`data: <the record's JSON>`), from now on.
pub(super) async fn stream(
    Extract(state): Extract<Arc<State>>,
    headers: HeaderMap,
    q: RawQuery,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, Access::Read)?;
    let p = Params::new(q, &["client", "name", "action", "proto", "instance"])?;
    let f = filter(&p, state.clock.now().wall, false)?;
    let log = log_at(&state, &p)?.open().await?;
    let permit = Arc::clone(&state.streams)
        .try_acquire_owned()
        .map_err(|_| {
            ApiError::unavailable(format!(
                "{MAX_LOG_STREAMS} log streams are open already; close one"
            ))
        })?;
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    let mut sink = SseSink {
        tx,
        line: Vec::new(),
        last: Instant::now(),
    };
    // Sent at once, so that the client sees the stream open before the first record.
    sink.send(Bytes::from_static(b": sinkhole query log\n\n"))
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let style = tail::Style {
        color: false,
        json: true,
    };
    match log {
        Log::File(path) => {
            std::thread::Builder::new()
                .name("http-log-stream".into())
                .spawn(move || {
                    let _permit = permit;
                    if let Err(e) = tail::run(&path, &f, 0, true, style, &mut sink) {
                        tracing::debug!(error = %e, "query log stream ended");
                    }
                })
                .map_err(|e| ApiError::internal(format!("cannot start the stream: {e}")))?;
        }
        // Polled on the runtime: the follower sleeps between polls.
        Log::Db(db) => {
            tokio::spawn(async move {
                let _permit = permit;
                if let Err(e) = db.follow(&f, style, true, 0, &mut sink).await {
                    tracing::debug!(error = %e, "query log stream ended");
                }
            });
        }
    }
    let mut r = Body::new(EventBody(rx)).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    Ok(r)
}

/// The stream's body: the events the follower thread sends.
struct EventBody(mpsc::Receiver<Bytes>);

impl HttpBody for EventBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

/// What `sinkhole log tail --follow --json` writes to, turned into events: one per line.
/// A full buffer (the client reads too slowly) or a closed stream is a write error, which
/// ends the follower.
struct SseSink {
    tx: mpsc::Sender<Bytes>,
    line: Vec<u8>,
    last: Instant,
}

impl SseSink {
    fn send(&mut self, b: Bytes) -> std::io::Result<()> {
        use std::io::{Error, ErrorKind};
        self.tx.try_send(b).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                tracing::info!("query log stream dropped: the client reads too slowly");
                Error::other("the client reads too slowly")
            }
            mpsc::error::TrySendError::Closed(_) => Error::from(ErrorKind::BrokenPipe),
        })?;
        self.last = Instant::now();
        Ok(())
    }
}

impl Write for SseSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(buf);
        while let Some(i) = memchr::memchr(b'\n', &self.line) {
            let mut ev = Vec::with_capacity(i + 8);
            ev.extend_from_slice(b"data: ");
            ev.extend_from_slice(&self.line[..i]);
            ev.extend_from_slice(b"\n\n");
            self.line.drain(..=i);
            self.send(Bytes::from(ev))?;
        }
        if self.line.len() > MAX_EVENT {
            self.line.clear();
        }
        Ok(buf.len())
    }

    /// Called by the follower after every poll: notices a closed stream, sends keep-alives.
    fn flush(&mut self) -> std::io::Result<()> {
        if self.tx.is_closed() {
            return Err(std::io::ErrorKind::BrokenPipe.into());
        }
        if self.last.elapsed() >= KEEPALIVE {
            self.send(Bytes::from_static(b": keep-alive\n\n"))?;
        }
        Ok(())
    }
}
