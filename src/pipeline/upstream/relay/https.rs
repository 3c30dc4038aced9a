//! One DNS-over-HTTPS connection of a [`Relay`](super::Relay) (RFC 8484 over HTTP/2): the
//! `h2` crate's client polled by the relay's loop whenever the socket is ready, over a
//! non-blocking TCP socket and a rustls session driven by hand; one stream per query, a
//! `POST` of `application/dns-message` with message ID 0, as the runtime's client sends.
//!
//! Why. On a runtime, even the UDP thread's own (`Near`), a miss over HTTPS woke the
//! attempt's task and the connection's, went through tokio-rustls and tokio's reactor and
//! timers, and copied its future into a task: at a thousand misses a second all of that runs
//! cold. `h2` needs no runtime, only I/O that says "not yet": here its futures are polled
//! with a waker that marks the connection for another poll, and the socket sits in the
//! relay's epoll with the listener. A miss over HTTPS then waits as often as one over UDP.
//!
//! The connection is opened by the first miss that needs it: a non-blocking connect, the
//! TLS handshake (ALPN `h2`, else the server fails) and HTTP/2's preface advance whenever the
//! socket is ready; queries wait meanwhile, and while the server's stream limit is reached.
//! Failures are the DNS-over-TLS connection's ([`super::tls`]): broken after an answer, the
//! queries go on at the same server on the runtime; before, the server failed. Bounded by
//! [`MAX_IN_FLIGHT`] queries and [`MAX_UNSENT`] bytes per connection.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use hyper::Uri;
use hyper::body::Bytes;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};
use tokio::time::Instant;

use super::super::encrypted::{MAX_IN_FLIGHT, MAX_MESSAGE, check_head, request, write_query};
use super::super::{Step, Then, UpstreamError};
use super::sock::{Entry, encrypted_verdict, failed, resume, transport};
use super::tls::{MAX_UNSENT, connect};
use super::{Relayed, Settled};

use socket::{Io, IoState};

mod socket;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests;

/// Polls of one connection per call of [`Conn::drive`] while its futures keep waking it.
const MAX_POLLS: usize = 8;

type Handshake = Pin<
    Box<
        dyn Future<
            Output = Result<
                (
                    h2::client::SendRequest<Bytes>,
                    h2::client::Connection<Io, Bytes>,
                ),
                h2::Error,
            >,
        >,
    >,
>;

/// Where the connection is.
enum State {
    /// TCP, TLS and HTTP/2's preface in progress.
    Opening(Handshake),
    Open(Box<Open>),
}

/// An open connection: where requests go, and the connection's own future.
struct Open {
    send: h2::client::SendRequest<Bytes>,
    conn: h2::client::Connection<Io, Bytes>,
}

/// A query on its way: waiting for a stream, for the answer's head, for its body.
enum Stage {
    Queued(Bytes),
    Head(h2::client::ResponseFuture),
    Body(h2::RecvStream, Vec<u8>),
}

struct Query<T> {
    entry: Entry<T>,
    stage: Stage,
}

/// A waker that marks its connection for another poll.
#[derive(Default)]
struct Woken(AtomicBool);

impl Wake for Woken {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::Release);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::Release);
    }
}

/// A relay's connection to one DNS-over-HTTPS server; see the module documentation.
pub(super) struct Conn<T> {
    /// A second descriptor of the socket, for the relay's epoll (`h2` owns the first).
    pub(super) watch: TcpStream,
    state: State,
    server: SocketAddr,
    uri: Uri,
    queries: VecDeque<Query<T>>,
    woken: Arc<Woken>,
    waker: Waker,
    /// Shared with the socket's side: writability wanted, bytes not yet taken.
    io: Arc<IoState>,
    /// An answer came on it: a failure now is the connection's, not the server's.
    answered: bool,
}

impl<T: Relayed> Conn<T> {
    /// Starts connecting to `server` (`uri`: where the queries go).
    pub(super) fn open(
        server: SocketAddr,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
        uri: Uri,
    ) -> io::Result<Self> {
        let mut tls = ClientConnection::new(config, name).map_err(io::Error::other)?;
        tls.set_buffer_limit(None);
        let tcp = connect(server)?;
        let watch = tcp.try_clone()?;
        let state = Arc::new(IoState::default());
        state.want_out.store(true, Ordering::Release);
        state.readable.store(true, Ordering::Release);
        let io = Io {
            tcp,
            tls,
            connecting: true,
            state: Arc::clone(&state),
        };
        let handshake = h2::client::Builder::new()
            .enable_push(false)
            .handshake::<_, Bytes>(io);
        let woken = Arc::new(Woken::default());
        Ok(Self {
            watch,
            state: State::Opening(Box::pin(handshake)),
            server,
            uri,
            queries: VecDeque::new(),
            waker: Waker::from(Arc::clone(&woken)),
            woken,
            io: state,
            answered: false,
        })
    }

    /// The server it is connected to.
    pub(super) fn server(&self) -> SocketAddr {
        self.server
    }

    /// Queries in flight or waiting for a stream.
    pub(super) fn waiting(&self) -> usize {
        self.queries.len()
    }

    /// True when no more queries may be added now.
    pub(super) fn full(&self) -> bool {
        self.queries.len() >= MAX_IN_FLIGHT || self.io.unsent.load(Ordering::Acquire) >= MAX_UNSENT
    }

    /// True while the connection is not open yet.
    pub(super) fn opening(&self) -> bool {
        matches!(self.state, State::Opening(_))
    }

    /// The epoll interest it needs (see `tls::Stream::wants_out`).
    pub(super) fn wants_out(&self) -> bool {
        self.io.want_out.load(Ordering::Acquire)
    }

    /// Notes that the epoll found the socket readable.
    pub(super) fn readable(&self) {
        self.io.readable.store(true, Ordering::Release);
    }

    /// True when its futures asked for another poll that [`Conn::drive`] has not made.
    pub(super) fn woken(&self) -> bool {
        self.woken.0.load(Ordering::Acquire)
    }

    /// Adds a query (its message written with ID 0); it leaves with [`Conn::drive`].
    pub(super) fn add(&mut self, entry: Entry<T>) {
        let q = entry.item.query();
        let mut body = Vec::with_capacity(64 + q.question_len());
        write_query(&mut body, q, 0);
        self.queries.push_back(Query {
            entry,
            stage: Stage::Queued(Bytes::from(body)),
        });
    }

    /// Polls the connection and its queries until nothing wakes them: writes what can be
    /// written, settles the answers that came (into `out`). An error means the connection is
    /// broken: the caller fails it ([`Conn::fail_all`]) and closes it.
    pub(super) fn drive(&mut self, out: &mut Vec<Settled<T>>) -> io::Result<()> {
        let waker = self.waker.clone();
        let mut cx = Context::from_waker(&waker);
        for _ in 0..MAX_POLLS {
            self.woken.0.store(false, Ordering::Release);
            if let State::Opening(hs) = &mut self.state {
                match hs.as_mut().poll(&mut cx) {
                    Poll::Pending => return Ok(()),
                    Poll::Ready(Err(e)) => return Err(h2_error(e)),
                    Poll::Ready(Ok((send, conn))) => {
                        self.state = State::Open(Box::new(Open { send, conn }));
                    }
                }
            }
            let State::Open(open) = &mut self.state else {
                return Ok(());
            };
            if let Poll::Ready(r) = Pin::new(&mut open.conn).poll(&mut cx) {
                return Err(match r {
                    Ok(()) => io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed by the server",
                    ),
                    Err(e) => h2_error(e),
                });
            }
            self.step_queries(&mut cx, out)?;
            if !self.woken.0.load(Ordering::Acquire) {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Moves each query on as far as it goes: a stream for those waiting (while the server
    /// allows more), the answer's head, its body; settles those done.
    fn step_queries(&mut self, cx: &mut Context<'_>, out: &mut Vec<Settled<T>>) -> io::Result<()> {
        let State::Open(open) = &mut self.state else {
            return Ok(());
        };
        let send = &mut open.send;
        let mut i = 0;
        while i < self.queries.len() {
            let Some(q) = self.queries.get_mut(i) else {
                break;
            };
            let verdict = match step(q, send, &self.uri, cx) {
                Ok(None) => {
                    i += 1;
                    continue;
                }
                Ok(Some(body)) => Ok(body),
                Err(Failure::Query(why)) => Err(why),
                Err(Failure::Connection(e)) => return Err(e),
            };
            let Some(q) = self.queries.remove(i) else {
                break;
            };
            match verdict {
                Ok(body) => {
                    self.answered = true;
                    out.push(encrypted_verdict(q.entry, &body, 0));
                }
                Err(why) => out.push(failed(q.entry, UpstreamError::Transport(self.server, why))),
            }
        }
        Ok(())
    }

    /// Fails every query, the connection having broken with `e` (see `tls::Stream::fail_all`).
    pub(super) fn fail_all(&mut self, e: &io::Error, out: &mut Vec<Settled<T>>) {
        for q in self.queries.drain(..) {
            if self.answered {
                out.push(resume(q.entry, Then::Again(Step::Link)));
            } else {
                out.push(failed(q.entry, transport(self.server, e)));
            }
        }
    }

    /// Fails the queries whose attempt ends by `now` (their streams are reset when dropped);
    /// the earliest end of those left.
    pub(super) fn expire(&mut self, now: Instant, out: &mut Vec<Settled<T>>) -> Option<Instant> {
        let mut i = 0;
        let mut soonest: Option<Instant> = None;
        while let Some(q) = self.queries.get(i) {
            if q.entry.end <= now {
                if let Some(q) = self.queries.remove(i) {
                    out.push(failed(q.entry, UpstreamError::Timeout(self.server)));
                }
                // The reset goes out with the next drive.
                self.woken.0.store(true, Ordering::Release);
                continue;
            }
            soonest = Some(soonest.map_or(q.entry.end, |s| s.min(q.entry.end)));
            i += 1;
        }
        soonest
    }
}

/// Why a query did not get its answer.
enum Failure {
    /// This query's stream failed (an HTTP status, a reset, a wrong type): the server failed
    /// for it.
    Query(String),
    /// The connection failed.
    Connection(io::Error),
}

/// Moves one query on; `Some(body)` once its answer is whole.
fn step<T>(
    q: &mut Query<T>,
    send: &mut h2::client::SendRequest<Bytes>,
    uri: &Uri,
    cx: &mut Context<'_>,
) -> Result<Option<Vec<u8>>, Failure> {
    loop {
        match &mut q.stage {
            Stage::Queued(body) => {
                match send.poll_ready(cx) {
                    Poll::Pending => return Ok(None),
                    Poll::Ready(Err(e)) => return Err(Failure::Connection(h2_error(e))),
                    Poll::Ready(Ok(())) => {}
                }
                let req = request(uri, body.len());
                let (head, mut stream) = send
                    .send_request(req, false)
                    .map_err(|e| Failure::Connection(h2_error(e)))?;
                stream
                    .send_data(std::mem::take(body), true)
                    .map_err(|e| Failure::Connection(h2_error(e)))?;
                q.stage = Stage::Head(head);
            }
            Stage::Head(head) => match Pin::new(head).poll(cx) {
                Poll::Pending => return Ok(None),
                Poll::Ready(Err(e)) if e.is_go_away() || e.is_io() => {
                    return Err(Failure::Connection(h2_error(e)));
                }
                Poll::Ready(Err(e)) => return Err(Failure::Query(e.to_string())),
                Poll::Ready(Ok(response)) => {
                    check_head(&response).map_err(Failure::Query)?;
                    q.stage = Stage::Body(response.into_body(), Vec::new());
                }
            },
            Stage::Body(recv, got) => match recv.poll_data(cx) {
                Poll::Pending => return Ok(None),
                Poll::Ready(None) => return Ok(Some(std::mem::take(got))),
                Poll::Ready(Some(Err(e))) => return Err(Failure::Query(e.to_string())),
                Poll::Ready(Some(Ok(chunk))) => {
                    if got.len() + chunk.len() > MAX_MESSAGE {
                        return Err(Failure::Query("answer larger than a DNS message".into()));
                    }
                    got.extend_from_slice(&chunk);
                    let _ = recv.flow_control().release_capacity(chunk.len());
                }
            },
        }
    }
}

fn h2_error(e: h2::Error) -> io::Error {
    if e.is_io() {
        e.into_io()
            .unwrap_or_else(|| io::Error::other("connection error"))
    } else {
        io::Error::other(e)
    }
}
