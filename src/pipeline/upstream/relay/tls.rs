//! One DNS-over-TLS connection of a [`Relay`](super::Relay): a non-blocking TCP socket in
//! the relay's epoll and a rustls client session driven by hand; queries pipelined on it
//! with two-byte length prefixes (RFC 7766 §6.2.1.1), answers matched by ID and question.
//!
//! Why. Made on a runtime, even the UDP thread's own (`Near`), a miss over TLS woke three
//! tasks (the attempt, the connection's writer and its reader), went through a channel, a
//! one-shot and a timer, and copied its future into a task of its own. At a thousand misses
//! a second all of that runs cold, and an upstream over TLS cost 1.66 times one over UDP.
//! Here the loop that parsed the query encrypts it into the socket, and the loop that sends
//! the answer on decrypts it: a miss over TLS waits as often as one over UDP, with a
//! `writev` and a `read` where UDP has a `sendmmsg` and a `recvmmsg`, plus the cipher.
//!
//! The connection is opened by the first miss that needs it: a non-blocking connect, then a
//! handshake that advances whenever the socket is ready; queries written meanwhile wait in
//! the session's buffer. Queries carry no cookie and are padded, as on the runtime's
//! connections (`encrypted::write_query`). A connection that fails or closes fails the
//! queries in flight on it: if it had answered before (the server may have closed it while
//! idle), they go on at the same server on the runtime's connection
//! ([`Step::Link`](super::super::Step)), else the server failed and the forward goes on at
//! the next. Bounded: [`MAX_IN_FLIGHT`] queries and [`MAX_UNSENT`] bytes not yet taken by
//! the socket per connection (beyond, a miss goes to the runtime, as when every UDP socket
//! is full); a connection idle for [`IDLE`](super::super::encrypted::IDLE) is closed.

use std::collections::HashMap;
use std::io::{self, BufRead, Read};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};
use socket2::{Domain, Protocol, Socket, Type};

use super::super::encrypted::{MAX_IN_FLIGHT, write_framed_query};
use super::super::pool::{answer_id, question_matches};
use super::super::{Step, Then};
use super::sock::{Entry, encrypted_verdict, failed, resume, transport};
use super::{Relayed, Settled};
use crate::dns::wire::next_frame;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests;

/// Most bytes handed to a connection and not yet written to its socket.
pub(super) const MAX_UNSENT: usize = 64 * 1024;
/// A TLS 1.3 record's bytes beyond its plaintext: header, content type and AEAD tag.
pub(super) const RECORD_OVERHEAD: usize = 5 + 1 + 16;
/// A relay's connection to one DNS-over-TLS server; see the module documentation.
pub(super) struct Stream<T> {
    pub(super) tcp: TcpStream,
    tls: ClientConnection,
    server: SocketAddr,
    pub(super) waiting: HashMap<u16, Entry<T>, foldhash::fast::RandomState>,
    /// The TCP connect is in progress.
    connecting: bool,
    /// Scratch for a query: the message, then the message framed.
    body: Vec<u8>,
    frame: Vec<u8>,
    /// Answer bytes received that do not make a whole message yet.
    inbox: Vec<u8>,
    /// Bytes handed to the session and not yet written to the socket (record overhead
    /// estimated).
    unsent: usize,
    /// An answer came on it: a failure now is the connection's, not the server's.
    answered: bool,
}

impl<T: Relayed> Stream<T> {
    /// Starts connecting to `server`.
    pub(super) fn open(
        server: SocketAddr,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> io::Result<Self> {
        let mut tls = ClientConnection::new(config, name).map_err(io::Error::other)?;
        // Queries are bounded by `MAX_IN_FLIGHT` and `MAX_UNSENT`, not by the session.
        tls.set_buffer_limit(None);
        Ok(Self {
            tcp: connect(server)?,
            tls,
            server,
            waiting: HashMap::default(),
            connecting: true,
            body: Vec::new(),
            frame: Vec::new(),
            inbox: Vec::new(),
            unsent: 0,
            answered: false,
        })
    }

    /// The server it is connected to.
    pub(super) fn server(&self) -> SocketAddr {
        self.server
    }

    /// True when no more queries may be written to it now.
    pub(super) fn full(&self) -> bool {
        self.waiting.len() >= MAX_IN_FLIGHT || self.unsent >= MAX_UNSENT
    }

    /// True while the connection is not ready for queries (connecting, or handshaking).
    pub(super) fn opening(&self) -> bool {
        self.connecting || self.tls.is_handshaking()
    }

    /// Adds a query under a random ID not in flight here, framed and handed to the session;
    /// it leaves with [`Stream::write_out`]. Gives the entry back when it cannot be written.
    pub(super) fn add(&mut self, entry: Entry<T>) -> Result<(), Entry<T>> {
        // At most MAX_IN_FLIGHT of 65,536 IDs are taken: a free one comes within a few draws.
        let id = loop {
            let id: u16 = rand::random();
            if !self.waiting.contains_key(&id) {
                break id;
            }
        };
        if !write_framed_query(&mut self.frame, &mut self.body, entry.item.query(), id) {
            return Err(entry);
        }
        if io::Write::write_all(&mut self.tls.writer(), &self.frame).is_err() {
            return Err(entry);
        }
        self.unsent = self
            .unsent
            .saturating_add(self.frame.len() + RECORD_OVERHEAD);
        self.waiting.insert(id, entry);
        Ok(())
    }

    /// The epoll interest it needs: writability while connecting or while the session has
    /// bytes the socket did not take.
    pub(super) fn wants_out(&self) -> bool {
        self.connecting || self.tls.wants_write()
    }

    /// Writes what the session has for the socket, until it would block.
    pub(super) fn write_out(&mut self) -> io::Result<()> {
        if self.connecting {
            return Ok(());
        }
        write_tls_out(&mut self.tls, &self.tcp, &mut self.unsent)
    }

    /// Does what the socket's readiness allows: completes the connect, reads and settles
    /// answers (into `out`), writes. An error means the connection is broken: the caller
    /// fails it ([`Stream::fail_all`]) and closes it.
    pub(super) fn drive(&mut self, out: &mut Vec<Settled<T>>) -> io::Result<()> {
        if self.connecting {
            if !connected(&self.tcp)? {
                return Ok(());
            }
            self.connecting = false;
        }
        let read = self.read_in(out);
        // Handshake messages, alerts and queries that waited for the handshake.
        let wrote = self.write_out();
        read.and(wrote)
    }

    /// Reads until the socket would block, settling each whole answer as it comes (so
    /// that the inbox never holds more than one message and a read's worth).
    fn read_in(&mut self, out: &mut Vec<Settled<T>>) -> io::Result<()> {
        loop {
            let mut tcp = Drained {
                tcp: &self.tcp,
                short: false,
            };
            let drained = match self.tls.read_tls(&mut tcp) {
                Ok(0) => return Err(closed()),
                // A short read emptied the socket: no second read to learn that it would
                // block (the epoll is level-triggered: what comes later wakes the thread).
                Ok(_) => tcp.short,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if let Err(e) = self.tls.process_new_packets() {
                // Its alert goes out if it can; the connection is over.
                let _ = self.write_out();
                return Err(io::Error::other(e));
            }
            let eof = take_plaintext(&mut self.tls, &mut self.inbox)?;
            self.settle_inbox(out);
            if eof {
                return Err(closed());
            }
            if drained {
                return Ok(());
            }
        }
    }

    /// Settles the whole answers in the inbox and keeps what is left of the last one.
    fn settle_inbox(&mut self, out: &mut Vec<Settled<T>>) {
        let mut rest = self.inbox.as_slice();
        while let Some((msg, after)) = next_frame(rest) {
            if let Some(s) = answer(&mut self.waiting, msg) {
                self.answered = true;
                out.push(s);
            }
            rest = after;
        }
        let taken = self.inbox.len().saturating_sub(rest.len());
        self.inbox.drain(..taken);
    }

    /// Fails every query in flight, the connection having broken with `e`: at the same
    /// server on the runtime when it had answered before, else at the next server.
    pub(super) fn fail_all(&mut self, e: &io::Error, out: &mut Vec<Settled<T>>) {
        let server = self.server;
        for (_, entry) in self.waiting.drain() {
            if self.answered {
                out.push(resume(entry, Then::Again(Step::Link)));
            } else {
                out.push(failed(entry, transport(server, e)));
            }
        }
    }

    /// Ends the session politely (close_notify), as far as the socket takes it now.
    pub(super) fn close_notify(&mut self) {
        self.tls.send_close_notify();
        let _ = self.write_out();
    }
}

/// True once the non-blocking connect of `tcp` is done; its error if it failed.
pub(super) fn connected(tcp: &TcpStream) -> io::Result<bool> {
    if let Some(e) = tcp.take_error()? {
        return Err(e);
    }
    match tcp.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}

/// Writes what `tls` has for the socket until it would block, taking what went from
/// `unsent` (0 once all went).
pub(super) fn write_tls_out(
    tls: &mut ClientConnection,
    mut tcp: &TcpStream,
    unsent: &mut usize,
) -> io::Result<()> {
    while tls.wants_write() {
        match tls.write_tls(&mut tcp) {
            Ok(n) => *unsent = unsent.saturating_sub(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    *unsent = 0;
    Ok(())
}

/// Appends the session's plaintext to `inbox`, straight from the session's buffer (no
/// zeroed buffer between: zeroing one cost more than the copy; docs/performance.md); true
/// once the server's close_notify came (rustls keeps no empty chunk otherwise).
pub(super) fn take_plaintext(tls: &mut ClientConnection, inbox: &mut Vec<u8>) -> io::Result<bool> {
    loop {
        let mut reader = tls.reader();
        match reader.fill_buf() {
            Ok([]) => return Ok(true),
            Ok(chunk) => {
                let n = chunk.len();
                inbox.extend_from_slice(chunk);
                reader.consume(n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        }
    }
}

/// The socket as read by the session, noting a read shorter than the room it was given.
pub(super) struct Drained<'a> {
    pub(super) tcp: &'a TcpStream,
    pub(super) short: bool,
}

impl Read for Drained<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (&mut &*self.tcp).read(buf)?;
        self.short = n < buf.len();
        Ok(n)
    }
}

/// A non-blocking TCP socket (no Nagle) connecting to `server`: done when it is writable.
pub(super) fn connect(server: SocketAddr) -> io::Result<TcpStream> {
    let sock = Socket::new(
        Domain::for_address(server),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    sock.set_nonblocking(true)?;
    sock.set_tcp_nodelay(true)?;
    match sock.connect(&server.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(nix::libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from(sock))
}

/// The error of a connection the server closed.
pub(super) fn closed() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "connection closed by the server",
    )
}

/// The query that `msg` answers, settled; `None` when it answers none in flight (late, or
/// not ours).
fn answer<T: Relayed>(
    waiting: &mut HashMap<u16, Entry<T>, foldhash::fast::RandomState>,
    msg: &[u8],
) -> Option<Settled<T>> {
    let id = answer_id(msg)?;
    let q = waiting.get(&id)?.item.query();
    let ([t0, t1], [c0, c1]) = (q.qtype.to_be_bytes(), q.qclass.to_be_bytes());
    if !question_matches(msg, q.wire_name(), &[t0, t1, c0, c1]) {
        return None;
    }
    let entry = waiting.remove(&id)?;
    Some(encrypted_verdict(entry, msg, id))
}
