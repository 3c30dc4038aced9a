//! One DNS-over-QUIC connection of a [`Relay`](super::Relay) (RFC 9250): a connected,
//! non-blocking UDP socket in the relay's epoll and a QUIC client connection (`quinn-proto`,
//! the state machine under quinn, with no runtime of its own) driven by hand; one
//! bidirectional stream per query, the query with message ID 0 after a two-byte length
//! and the stream finished, the answer read from the same stream (`dns::doq`'s framing).
//!
//! Why. Made with quinn on a runtime, even the UDP thread's own (`Near`), a miss over QUIC
//! woke the attempt's task and the connection's driver, took the connection's lock several
//! times and sent through quinn's socket layer: an upstream over QUIC cost about twice one
//! over UDP at a thousand misses a second. Here the loop that parsed the query writes its
//! stream and sends the packet, and the loop that sends the answer on reads the datagram,
//! as for DNS over TLS and HTTPS (`tls`, `https`).
//!
//! Timers. QUIC needs them (acknowledgements, loss recovery, the idle timeout): the
//! connection's next one joins the relay's next deadline ([`Conn::timer`]), so that the
//! thread's wait ends for it, and the relay counts as busy while one is due within
//! [`SOON`] (after the last answer, the acknowledgements still go out). With no query in
//! flight, the thread blocks on its listener alone until such a timer is near
//! ([`Relay::may_nap`](super::Relay::may_nap)): the epoll's wait would cost a system call
//! more per miss, the acknowledgement of an answer being due 25 ms after it.
//!
//! Failures, as over TLS: a connection that fails or closes fails the queries on it, at
//! the same server on the runtime's connection ([`Step::Link`](super::super::Step)) if it had
//! answered before, else at the next server; a query whose attempt runs out of time has
//! its stream cancelled (`DOQ_REQUEST_CANCELLED`). Bounded:
//! [`MAX_IN_FLIGHT`] queries per connection, an
//! answer of at most [`doq::MAX_STREAM`] bytes (QUIC's flow control holds the server to
//! that per stream, and to a window per connection: `encrypted::doq_transport`),
//! [`MAX_READS`] datagrams per drive.

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};
use quinn_proto::{
    ClientConfig, Connection, ConnectionHandle, DatagramEvent, Dir, Endpoint, EndpointConfig,
    Event, ReadError, StreamEvent, StreamId, VarInt,
};

use super::super::encrypted::{MAX_IN_FLIGHT, write_framed_query};
use super::super::{Step, Then, UpstreamError};
use super::sock::{Entry, connected_udp, encrypted_verdict, failed, resume, transport};
use super::{Relayed, Settled};
use crate::dns::doq::{self, code};

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests;

/// Datagrams read per drive, so that one busy connection cannot hold the thread.
const MAX_READS: usize = 64;
/// Datagrams taken per `recvmmsg`.
const BATCH: usize = 8;
/// A connection whose next timer is due within this keeps the relay busy.
const SOON: Duration = Duration::from_secs(1);
/// Receive buffer per datagram: the largest UDP payload our endpoint tells servers it
/// takes (quinn's default `max_udp_payload_size`, a 1,500-byte MTU's); a longer one is
/// dropped.
const DATAGRAM: usize = 1472;

/// A query whose stream is open, and its answer's bytes so far.
struct Ask<T> {
    entry: Entry<T>,
    buf: Vec<u8>,
}

/// A relay's connection to one DNS-over-QUIC server; see the module documentation.
pub(super) struct Conn<T> {
    pub(super) udp: UdpSocket,
    server: SocketAddr,
    endpoint: Endpoint,
    handle: ConnectionHandle,
    conn: Connection,
    /// The queries whose stream is open.
    asks: HashMap<StreamId, Ask<T>, foldhash::fast::RandomState>,
    /// The queries waiting for the handshake or for the server's stream credit, framed.
    queued: VecDeque<(Entry<T>, Vec<u8>)>,
    /// The handshake is done.
    connected: bool,
    /// Why the connection ended, once it has.
    lost: Option<String>,
    /// An answer came on it: a failure now is the connection's, not the server's.
    answered: bool,
    /// Its next timer, as of the last time it was driven.
    next_timer: Option<Instant>,
    /// Scratch: a query's message and its frame; datagrams in; packets out (and the
    /// endpoint's replies).
    body: Vec<u8>,
    frame: Vec<u8>,
    rx: Box<[[u8; DATAGRAM]; BATCH]>,
    headers: MultiHeaders<SockaddrStorage>,
    tx: Vec<u8>,
}

impl<T: Relayed> Conn<T> {
    /// Starts a connection to `server` (the first packets leave with the next drive).
    pub(super) fn open(server: SocketAddr, config: ClientConfig, name: &str) -> io::Result<Self> {
        let udp = connected_udp(server)?;
        let mut endpoint = Endpoint::new(Arc::new(EndpointConfig::default()), None, false, None);
        let (handle, conn) = endpoint
            .connect(Instant::now(), config, server, name)
            .map_err(io::Error::other)?;
        Ok(Self {
            udp,
            server,
            endpoint,
            handle,
            conn,
            asks: HashMap::default(),
            queued: VecDeque::new(),
            connected: false,
            lost: None,
            answered: false,
            next_timer: None,
            body: Vec::new(),
            frame: Vec::new(),
            rx: Box::new([[0u8; DATAGRAM]; BATCH]),
            headers: MultiHeaders::preallocate(BATCH, None),
            tx: Vec::new(),
        })
    }

    /// The server it is connected to.
    pub(super) fn server(&self) -> SocketAddr {
        self.server
    }

    /// Queries in flight on it.
    pub(super) fn waiting(&self) -> usize {
        self.asks.len() + self.queued.len()
    }

    /// True when no more queries may be added now.
    pub(super) fn full(&self) -> bool {
        self.waiting() >= MAX_IN_FLIGHT
    }

    /// True while the handshake is not done.
    pub(super) fn opening(&self) -> bool {
        !self.connected
    }

    /// Its next timer, as the relay's clock reads it.
    pub(super) fn timer(&self) -> Option<tokio::time::Instant> {
        self.next_timer.map(tokio::time::Instant::from_std)
    }

    /// True while a timer is due soon: acknowledgements or a retransmission to send.
    pub(super) fn busy(&self) -> bool {
        self.next_timer.is_some_and(|t| t <= Instant::now() + SOON)
    }

    /// Adds a query: written on a stream of its own at once when the connection is open
    /// and the server's credit allows, else kept (framed) until it is; it leaves with
    /// [`Conn::write`]. Gives the entry back when it cannot be written.
    pub(super) fn add(&mut self, entry: Entry<T>) -> Result<(), Entry<T>> {
        if !write_framed_query(&mut self.frame, &mut self.body, entry.item.query(), 0) {
            return Err(entry);
        }
        if self.connected && self.lost.is_none() && self.queued.is_empty() {
            match open_stream(&mut self.conn, &self.frame) {
                Some(Ok(id)) => {
                    let buf = Vec::new();
                    self.asks.insert(id, Ask { entry, buf });
                    return Ok(());
                }
                Some(Err(())) => return Err(entry),
                None => {}
            }
        }
        self.queued.push_back((entry, self.frame.clone()));
        Ok(())
    }

    /// Opens the streams of the queued queries (as far as the server's credit allows),
    /// sends what the connection has to send.
    pub(super) fn write(&mut self, out: &mut Vec<Settled<T>>) -> io::Result<()> {
        self.pump(out);
        self.transmit()?;
        self.check()
    }

    /// Reads the datagrams that came (the socket was found readable), runs the timer if it
    /// is due, settles answers into `out`, sends what follows. An error means the
    /// connection is over: the caller fails it ([`Conn::fail_all`]) and closes it.
    pub(super) fn drive(&mut self, out: &mut Vec<Settled<T>>) -> io::Result<()> {
        let mut result = Ok(());
        // One clock reading for the datagrams and the timer (the packets out read their own).
        let now = Instant::now();
        for _ in 0..MAX_READS / BATCH {
            match self.receive(now) {
                // A short batch emptied the socket: no second call to learn that it would
                // block (the epoll is level-triggered: what comes later wakes the thread).
                Ok(n) if n < BATCH => break,
                Ok(_) => {}
                // The server's ICMP "port unreachable", and the like.
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        self.on_timer(now);
        self.pump(out);
        self.transmit()?;
        result?;
        self.check()
    }

    /// Fails the queries whose attempt ends by `now` (their streams cancelled) and runs the
    /// timer if it is due; the earliest of the remaining ends and the next timer.
    pub(super) fn expire(
        &mut self,
        now: tokio::time::Instant,
        out: &mut Vec<Settled<T>>,
    ) -> Option<tokio::time::Instant> {
        let cancel = VarInt::from_u32(code::REQUEST_CANCELLED);
        let due: Vec<StreamId> = self
            .asks
            .iter()
            .filter(|(_, a)| a.entry.end <= now)
            .map(|(&id, _)| id)
            .collect();
        for id in due {
            if let Some(a) = self.asks.remove(&id) {
                let _ = self.conn.send_stream(id).reset(cancel);
                let _ = self.conn.recv_stream(id).stop(cancel);
                out.push(failed(a.entry, UpstreamError::Timeout(self.server)));
            }
        }
        let mut i = 0;
        while let Some((e, _)) = self.queued.get(i) {
            if e.end <= now {
                if let Some((e, _)) = self.queued.remove(i) {
                    out.push(failed(e, UpstreamError::Timeout(self.server)));
                }
            } else {
                i += 1;
            }
        }
        self.on_timer(now.into_std());
        self.pump(out);
        // A failed send shows with the next drive (the connection's own timers resend).
        let _ = self.transmit();
        let ends = self
            .asks
            .values()
            .map(|a| a.entry.end)
            .chain(self.queued.iter().map(|(e, _)| e.end))
            .min();
        super::earlier(ends, self.timer())
    }

    /// Fails every query in flight, the connection having broken with `e`: at the same
    /// server on the runtime when it had answered before, else at the next server.
    pub(super) fn fail_all(&mut self, e: &io::Error, out: &mut Vec<Settled<T>>) {
        let entries = self
            .asks
            .drain()
            .map(|(_, a)| a.entry)
            .chain(self.queued.drain(..).map(|(e, _)| e));
        for entry in entries {
            if self.answered {
                out.push(resume(entry, Then::Again(Step::Link)));
            } else {
                out.push(failed(entry, transport(self.server, e)));
            }
        }
    }

    /// Closes the connection (DOQ_NO_ERROR), as far as the socket takes it now.
    pub(super) fn close(&mut self) {
        self.conn.close(
            Instant::now(),
            VarInt::from_u32(code::NO_ERROR),
            Default::default(),
        );
        let _ = self.transmit();
    }

    /// Takes the datagrams waiting on the socket (one `recvmmsg`, up to [`BATCH`]) to the
    /// connection (as received at `now`); how many came.
    fn receive(&mut self, now: Instant) -> io::Result<usize> {
        let mut got = [(0usize, false); BATCH];
        let mut n = 0;
        {
            let mut iovs = self
                .rx
                .each_mut()
                .map(|b| [IoSliceMut::new(b.as_mut_slice())]);
            let flags = MsgFlags::MSG_DONTWAIT;
            match recvmmsg(
                self.udp.as_raw_fd(),
                &mut self.headers,
                iovs.iter_mut(),
                flags,
                None,
            ) {
                Ok(msgs) => {
                    for (slot, m) in got.iter_mut().zip(msgs) {
                        *slot = (m.bytes, m.flags.contains(MsgFlags::MSG_TRUNC));
                        n += 1;
                    }
                }
                Err(Errno::EAGAIN | Errno::EINTR) => return Ok(0),
                Err(e) => return Err(e.into()),
            }
        }
        for (i, &(len, cut)) in got.iter().enumerate().take(n) {
            // Longer than a server may send us: dropped, as the network would.
            if !cut {
                self.take(i, len, now);
            }
        }
        Ok(n)
    }

    /// Hands the datagram of `n` bytes in buffer `i`, received at `now`, to the connection.
    fn take(&mut self, i: usize, n: usize, now: Instant) {
        let pkt = self.rx.get(i).and_then(|b| b.get(..n)).unwrap_or_default();
        let data = BytesMut::from(pkt);
        self.tx.clear();
        let event = self
            .endpoint
            .handle(now, self.server, None, None, data, &mut self.tx);
        match event {
            Some(DatagramEvent::ConnectionEvent(h, ev)) if h == self.handle => {
                self.conn.handle_event(ev);
            }
            // A stateless reset or version negotiation: the endpoint's own reply.
            Some(DatagramEvent::Response(t)) => {
                let _ = self.udp.send(self.tx.get(..t.size).unwrap_or_default());
            }
            _ => {}
        }
    }

    fn on_timer(&mut self, now: Instant) {
        if self.conn.poll_timeout().is_some_and(|t| t <= now) {
            self.conn.handle_timeout(now);
        }
    }

    /// Passes events between the connection and its endpoint, takes the connection's
    /// events (answers settled into `out`) and opens the queued queries' streams.
    fn pump(&mut self, out: &mut Vec<Settled<T>>) {
        loop {
            while let Some(ev) = self.conn.poll_endpoint_events() {
                if let Some(back) = self.endpoint.handle_event(self.handle, ev) {
                    self.conn.handle_event(back);
                }
            }
            let mut any = false;
            while let Some(ev) = self.conn.poll() {
                any = true;
                match ev {
                    Event::Connected => self.connected = true,
                    Event::ConnectionLost { reason } => {
                        self.lost.get_or_insert_with(|| reason.to_string());
                    }
                    Event::Stream(StreamEvent::Readable { id }) => self.read(id, out),
                    // A stop (STOP_SENDING) only says that the server reads no more of a
                    // stream whose query went whole and finished: some servers send one
                    // once they have it, and answer after. A server that gives up on a
                    // query resets its side (`read`) or stays silent (`expire`).
                    _ => {}
                }
            }
            self.open_queued(out);
            if !any {
                return;
            }
        }
    }

    /// Opens a stream for each queued query while the server's credit allows, and writes
    /// the query on it, finished.
    fn open_queued(&mut self, out: &mut Vec<Settled<T>>) {
        if !self.connected || self.lost.is_some() {
            return;
        }
        while let Some((_, framed)) = self.queued.front() {
            let sent = open_stream(&mut self.conn, framed);
            let Some(sent) = sent else {
                // At the server's stream limit: more when it grants them.
                return;
            };
            let Some((entry, _)) = self.queued.pop_front() else {
                return;
            };
            match sent {
                Ok(id) => {
                    let buf = Vec::new();
                    self.asks.insert(id, Ask { entry, buf });
                }
                Err(()) => {
                    let why = "dns over quic query not written (flow control)".to_string();
                    out.push(failed(entry, UpstreamError::Transport(self.server, why)));
                }
            }
        }
    }

    /// Reads what stream `id` has; settles its query once the answer is whole.
    fn read(&mut self, id: StreamId, out: &mut Vec<Settled<T>>) {
        let Some(ask) = self.asks.get_mut(&id) else {
            return;
        };
        let mut fin = false;
        let mut broken = None;
        match self.conn.recv_stream(id).read(true) {
            Ok(mut chunks) => {
                loop {
                    let room = (doq::MAX_STREAM + 1).saturating_sub(ask.buf.len()).max(1);
                    match chunks.next(room) {
                        Ok(Some(c)) => {
                            ask.buf.extend_from_slice(&c.bytes);
                            if ask.buf.len() > doq::MAX_STREAM {
                                break;
                            }
                        }
                        Ok(None) => {
                            fin = true;
                            break;
                        }
                        Err(ReadError::Blocked) => break,
                        Err(ReadError::Reset(c)) => {
                            broken = Some(format!("dns over quic stream reset (code {c})"));
                            break;
                        }
                    }
                }
                // Flow-control credit goes back with the next transmit.
                let _ = chunks.finalize();
            }
            Err(e) => broken = Some(format!("dns over quic stream: {e}")),
        }
        let Some(Ask { entry, buf }) = self.asks.remove(&id) else {
            return;
        };
        let why = match (doq::message(&buf, fin), broken) {
            (Ok(Some(msg)), _) => {
                if !fin {
                    // The rest (the stream's end) is not needed.
                    let _ = self
                        .conn
                        .recv_stream(id)
                        .stop(VarInt::from_u32(code::NO_ERROR));
                }
                self.answered = true;
                out.push(encrypted_verdict(entry, msg, 0));
                return;
            }
            // More to come (a partial read is rare: an answer fits a packet or two).
            (Ok(None), None) => {
                self.asks.insert(id, Ask { entry, buf });
                return;
            }
            (Ok(None), Some(why)) => why,
            (Err(e), _) => format!("bad dns over quic answer: {e}"),
        };
        let _ = self
            .conn
            .recv_stream(id)
            .stop(VarInt::from_u32(code::PROTOCOL_ERROR));
        out.push(failed(entry, UpstreamError::Transport(self.server, why)));
    }

    /// Sends the packets the connection has ready, until the socket would block (the rest
    /// stays with the connection, whose timers resend what is lost).
    fn transmit(&mut self) -> io::Result<()> {
        let now = Instant::now();
        loop {
            self.tx.clear();
            let Some(t) = self.conn.poll_transmit(now, 1, &mut self.tx) else {
                self.next_timer = self.conn.poll_timeout();
                return Ok(());
            };
            match self.udp.send(self.tx.get(..t.size).unwrap_or_default()) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.next_timer = self.conn.poll_timeout();
                    return Err(e);
                }
            }
        }
        self.next_timer = self.conn.poll_timeout();
        Ok(())
    }

    /// The connection's end as an error.
    fn check(&self) -> io::Result<()> {
        match &self.lost {
            None => Ok(()),
            Some(why) => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                why.clone(),
            )),
        }
    }
}

/// Opens a stream on `conn` and writes `framed` on it, finished: its ID, `None` at the
/// server's stream limit, `Err` when flow control would split the query (the stream is
/// reset: a query is failed rather than kept half sent).
fn open_stream(conn: &mut Connection, framed: &[u8]) -> Option<Result<StreamId, ()>> {
    let id = conn.streams().open(Dir::Bi)?;
    let mut send = conn.send_stream(id);
    let whole = matches!(send.write(framed), Ok(n) if n == framed.len());
    if whole && send.finish().is_ok() {
        Some(Ok(id))
    } else {
        let _ = send.reset(VarInt::from_u32(code::INTERNAL_ERROR));
        Some(Err(()))
    }
}
