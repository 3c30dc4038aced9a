//! One DNS-over-HTTPS connection of a [`Relay`](super::Relay) (RFC 8484 over HTTP/2): a
//! non-blocking TCP socket in the relay's epoll, a rustls client session driven by hand,
//! and our own HTTP/2 client ([`crate::http2::Client`], no I/O of its own) between them;
//! one stream per query, a `POST` of `application/dns-message` with message ID 0, as the
//! runtime's client sends.
//!
//! Why. Made on a runtime, a miss over HTTPS woke the attempt's task and the connection's
//! and went through tokio-rustls, the reactor and timers; driven by the `h2` crate from this
//! loop, it still cost 2.9 times a miss over UDP in user-space instructions, most of them
//! `h2`'s (`docs/performance.md`). Here the loop that parsed the query writes its HEADERS
//! and DATA frames into one TLS record, and the loop that sends the answer reads the
//! server's frames from the session's buffer: a miss over HTTPS waits as often as one over
//! UDP, with a `writev` and a `read` where UDP has a `sendmmsg` and a `recvmmsg`.
//!
//! The connection is opened by the first miss that needs it: a non-blocking connect, then
//! the TLS handshake (ALPN `h2`, else the server fails), advanced whenever the socket is
//! ready; the preface and queries wait in the client meanwhile, and while the server's
//! stream limit is reached. Failures are the DNS-over-TLS connection's ([`super::tls`]):
//! broken after an answer, the queries go on at the same server on the runtime; before, the
//! server failed. Queries the server says it did not process (GOAWAY, `REFUSED_STREAM`) go
//! on at the same server on the runtime too. Bounded by [`MAX_IN_FLIGHT`] queries and
//! [`MAX_UNSENT`] bytes per connection, and by the client's own limits.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use hyper::Uri;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};
use tokio::time::Instant;

use super::super::encrypted::{MAX_IN_FLIGHT, write_query};
use super::super::{Step, Then, UpstreamError};
use super::sock::{Entry, encrypted_verdict, failed, resume, transport};
use super::tls::{
    Drained, MAX_UNSENT, RECORD_OVERHEAD, closed, connect, connected, take_plaintext, write_tls_out,
};
use super::{Relayed, Settled};
use crate::http2::{Client, Event};

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests;

/// Most bytes of ours a connection may hold unsent (handed to the session or still in the
/// client): beyond [`MAX_UNSENT`] no query is added, so only the client's replies to the
/// server's frames (PING and SETTINGS acknowledgements, resets) take it further; a server
/// that makes it owe more (a flood of PINGs, or replies it does not read) is cut off.
const MAX_PENDING: usize = 4 * MAX_UNSENT;
/// Socket reads per [`Conn::drive`]: a server that never stops sending does not hold the
/// thread (the epoll is level-triggered: what is left wakes it again).
const MAX_READS: usize = 32;

/// A relay's connection to one DNS-over-HTTPS server; see the module documentation.
pub(super) struct Conn<T> {
    pub(super) tcp: TcpStream,
    tls: ClientConnection,
    server: SocketAddr,
    h2: Client<Entry<T>>,
    /// The TCP connect is in progress.
    connecting: bool,
    /// The handshake is done and the server agreed to HTTP/2.
    agreed: bool,
    /// The epoll found the socket readable and no read has emptied it since: a write
    /// needs no read (and its system call) before it.
    readable: bool,
    /// Plaintext from the server that is not a whole frame yet.
    inbox: Vec<u8>,
    events: Vec<Event<Entry<T>>>,
    /// Bytes handed to the session and not yet written to the socket (record overhead
    /// estimated).
    unsent: usize,
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
        // Queries are bounded by `MAX_IN_FLIGHT` and `MAX_UNSENT`, not by the session.
        tls.set_buffer_limit(None);
        let authority = uri.authority().map_or("", |a| a.as_str());
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        Ok(Self {
            tcp: connect(server)?,
            tls,
            server,
            h2: Client::new(authority, path),
            connecting: true,
            agreed: false,
            readable: true,
            inbox: Vec::new(),
            events: Vec::new(),
            unsent: 0,
            answered: false,
        })
    }

    /// The server it is connected to.
    pub(super) fn server(&self) -> SocketAddr {
        self.server
    }

    /// Queries in flight or waiting for a stream.
    pub(super) fn waiting(&self) -> usize {
        self.h2.len()
    }

    /// True when no more queries may be added now.
    pub(super) fn full(&self) -> bool {
        self.h2.len() >= MAX_IN_FLIGHT || self.unsent >= MAX_UNSENT || self.h2.spent()
    }

    /// True while the connection is not ready for queries (connecting, or handshaking).
    pub(super) fn opening(&self) -> bool {
        !self.agreed
    }

    /// The epoll interest it needs: writability while connecting or while the session has
    /// bytes the socket did not take.
    pub(super) fn wants_out(&self) -> bool {
        self.connecting || self.tls.wants_write()
    }

    /// Notes that the epoll found the socket readable.
    pub(super) fn readable(&mut self) {
        self.readable = true;
    }

    /// True when the client has frames to send that [`Conn::drive`] has not written (the
    /// resets of expired queries).
    pub(super) fn woken(&self) -> bool {
        self.agreed && self.h2.output_len() > 0
    }

    /// Adds a query (its message written with ID 0); it leaves with [`Conn::drive`].
    pub(super) fn add(&mut self, entry: Entry<T>) {
        let q = entry.item.query();
        let mut body = self.h2.body_buffer();
        write_query(&mut body, q, 0);
        self.h2.ask(entry, body);
    }

    /// Does what the socket allows: completes the connect, reads and settles answers (into
    /// `out`) when it was found readable, writes. An error means the connection is broken
    /// (or was ended by the server and is done): the caller fails it ([`Conn::fail_all`])
    /// and closes it.
    pub(super) fn drive(&mut self, out: &mut Vec<Settled<T>>) -> io::Result<()> {
        if self.connecting {
            if !connected(&self.tcp)? {
                return Ok(());
            }
            self.connecting = false;
        }
        let read = if self.readable {
            self.read_in(out)
        } else {
            Ok(())
        };
        // Handshake messages, alerts, and the client's frames.
        let wrote = self.write_out();
        read.and(wrote)?;
        if self.h2.finished() {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the server ended the connection (GOAWAY)",
            ));
        }
        Ok(())
    }

    /// Reads until the socket would block, handing whole frames to the client as they come.
    fn read_in(&mut self, out: &mut Vec<Settled<T>>) -> io::Result<()> {
        for _ in 0..MAX_READS {
            let mut tcp = Drained {
                tcp: &self.tcp,
                short: false,
            };
            let read = self.tls.read_tls(&mut tcp);
            if tcp.short {
                self.readable = false;
            }
            match read {
                Ok(0) => return Err(closed()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if let Err(e) = self.tls.process_new_packets() {
                // Its alert goes out if it can; the connection is over.
                let _ = self.write_out();
                return Err(io::Error::other(e));
            }
            if !self.agreed && !self.tls.is_handshaking() {
                if self.tls.alpn_protocol() != Some(crate::tls::ALPN_H2) {
                    return Err(io::Error::other(
                        "the server does not speak HTTP/2 (ALPN h2) on this port",
                    ));
                }
                self.agreed = true;
            }
            let eof = take_plaintext(&mut self.tls, &mut self.inbox)?;
            self.settle_inbox(out)?;
            if eof {
                return Err(closed());
            }
            if self.unsent + self.h2.output_len() > MAX_PENDING {
                return Err(io::Error::other(
                    "the server sends more frames to answer than it reads answers to",
                ));
            }
            if !self.readable {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Hands the whole frames in the inbox to the client, keeps the rest, and settles the
    /// queries they ended.
    fn settle_inbox(&mut self, out: &mut Vec<Settled<T>>) -> io::Result<()> {
        let taken = self
            .h2
            .receive(&self.inbox, &mut self.events)
            .map_err(io::Error::other);
        for event in self.events.drain(..) {
            out.push(match event {
                Event::Answer(entry, body) => {
                    self.answered = true;
                    let settled = encrypted_verdict(entry, &body, 0);
                    self.h2.give_back(body);
                    settled
                }
                Event::Failed(entry, why) => {
                    failed(entry, UpstreamError::Transport(self.server, why))
                }
                Event::Retry(entry) => resume(entry, Then::Again(Step::Link)),
            });
        }
        self.inbox.drain(..taken?);
        Ok(())
    }

    /// Hands the client's frames to the session once the server agreed to HTTP/2, and
    /// writes what the session has for the socket, until it would block.
    fn write_out(&mut self) -> io::Result<()> {
        if self.connecting {
            return Ok(());
        }
        let frames = self.h2.output();
        if self.agreed && !frames.is_empty() {
            // No buffer limit: the relay bounds what it hands over (`MAX_UNSENT`).
            self.tls.writer().write_all(frames)?;
            self.unsent = self.unsent.saturating_add(frames.len() + RECORD_OVERHEAD);
            frames.clear();
        }
        write_tls_out(&mut self.tls, &self.tcp, &mut self.unsent)
    }

    /// Fails every query, the connection having broken with `e` (see `tls::Stream::fail_all`).
    pub(super) fn fail_all(&mut self, e: &io::Error, out: &mut Vec<Settled<T>>) {
        let answered = self.answered;
        for entry in self.h2.drain() {
            if answered {
                out.push(resume(entry, Then::Again(Step::Link)));
            } else {
                out.push(failed(entry, transport(self.server, e)));
            }
        }
    }

    /// Fails the queries whose attempt ends by `now` (their streams are reset with the next
    /// write); the earliest end of those left.
    pub(super) fn expire(&mut self, now: Instant, out: &mut Vec<Settled<T>>) -> Option<Instant> {
        let mut gone = Vec::new();
        self.h2.cancel_where(|e| e.end <= now, &mut gone);
        for entry in gone {
            out.push(failed(entry, UpstreamError::Timeout(self.server)));
        }
        self.h2.items().map(|e| e.end).min()
    }

    /// Ends the session politely (close_notify), as far as the socket takes it now; frames
    /// not handed to the session yet are dropped (nothing may follow the alert).
    pub(super) fn close_notify(&mut self) {
        self.h2.output().clear();
        self.tls.send_close_notify();
        let _ = self.write_out();
    }
}
