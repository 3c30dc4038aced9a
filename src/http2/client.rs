//! The client side of one HTTP/2 connection (RFC 9113) for DNS over HTTPS, without I/O:
//! queries go in with [`Client::ask`], the server's bytes with [`Client::receive`], and
//! what to send comes out of [`Client::output`]. One stream per query: a `POST` of its
//! message (RFC 8484 §4.1), HEADERS and DATA written together so that they leave in one TLS
//! record.
//!
//! Why not the `h2` crate: its general client (streams store, frame queue, futures, HPACK
//! with tables) was about 26,000 of the 48,700 user-space instructions a miss over HTTPS
//! cost under callgrind, where the whole of DNS over TLS's difference from UDP is about
//! 3,000 (`docs/performance.md`). A DNS client needs one request shape: a fixed header
//! block (its fields indexed in the server's table once it takes them, [`super::request`]),
//! answers read for two fields (with the dynamic table
//! a server keeps against our settings, [`super::table`]).
//!
//! What the server may do is bounded: frames of at most 16 KiB (the default it may not
//! exceed), header blocks of at most [`MAX_HEADER_BLOCK`], an answer of at most
//! [`MAX_ANSWER`] bytes, flow-control windows ([`STREAM_WINDOW`] per stream, never
//! re-opened; [`CONNECTION_WINDOW`] per connection). A violation of the protocol is an
//! [`Error`] (the connection is over); a failure of one stream (a reset, a status other than
//! 200, another type) is that query's [`Event::Failed`]; streams the server says it never
//! processed (GOAWAY above them, `REFUSED_STREAM`) come back as [`Event::Retry`].

use std::collections::VecDeque;

use super::frame::{self, Head};
use super::hpack::{self, ContentType};
use super::request::Requests;
use super::table::Table;

/// Our receive window of each stream (`SETTINGS_INITIAL_WINDOW_SIZE`): an answer and its
/// padding fit, so no stream is ever given more.
pub const STREAM_WINDOW: u32 = 1 << 17;
/// Our receive window of the connection, given back once half of it is used.
pub const CONNECTION_WINDOW: u32 = 1 << 22;
/// The largest header block read (HEADERS and its CONTINUATIONs).
pub const MAX_HEADER_BLOCK: usize = 16 * 1024;
/// The largest answer read: a DNS message.
pub const MAX_ANSWER: usize = 65_535;
/// Streams opened before the server's SETTINGS say how many it takes (RFC 9113 §6.5.2
/// recommends servers allow at least 100).
const FIRST_STREAM_LIMIT: usize = 100;
/// Windows before the peer's SETTINGS (§6.9.2).
const DEFAULT_WINDOW: u32 = 65_535;
/// Buffers kept for reuse, of each kind (queries' bodies, answers).
const SPARE: usize = 8;
/// The largest buffer kept for reuse: a query, or an answer with its padding (RFC 8467
/// pads answers to 468 bytes); a larger answer's goes back to the allocator.
const SPARE_CAPACITY: usize = 4096;

/// A protocol violation by the server: the connection is over.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Frames that break RFC 9113.
    #[error("HTTP/2 protocol error by the server: {0}")]
    Protocol(&'static str),
    /// A header block that cannot be read.
    #[error(transparent)]
    Hpack(#[from] hpack::Error),
}

/// What became of a query.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<E> {
    /// Its answer: the body of a 200 response.
    Answer(E, Vec<u8>),
    /// This server failed for it (a reset, a status, another type, too large).
    Failed(E, String),
    /// The server did not process it: it may be asked again.
    Retry(E),
}

/// A stream we opened.
struct Stream<E> {
    id: u32,
    item: E,
    body: Vec<u8>,
    /// Bytes of `body` sent.
    sent: usize,
    /// What the server still lets us send on it.
    window: i64,
    /// Flow-controlled bytes the server sent on it.
    received: usize,
    /// The answer so far, once a 200 head came.
    answer: Option<Vec<u8>>,
}

/// Whether closing a stream resets it (RST_STREAM).
#[derive(Clone, Copy)]
enum Reset {
    /// With this error code.
    With(u32),
    /// Only if its body was not all sent: the server ended its side first (§8.1).
    IfUnsent,
    /// Never: the server reset it, or will not process it (GOAWAY), and §5.4.2 forbids
    /// answering a reset with a reset.
    Never,
}

/// A header block waiting for its CONTINUATION frames.
struct Partial {
    stream: u32,
    end_stream: bool,
    block: Vec<u8>,
}

/// One connection's HTTP/2 state; see the module documentation.
pub struct Client<E> {
    out: Vec<u8>,
    /// Every request's header block, written for the server's decoder.
    requests: Requests,
    /// `application/dns-message`, Huffman-coded.
    dns_coded: Vec<u8>,
    /// The answers' HPACK dynamic table.
    table: Table,
    /// Queries waiting for a stream (the server's stream limit).
    queued: VecDeque<(E, Vec<u8>)>,
    /// Open streams, by ascending ID.
    streams: VecDeque<Stream<E>>,
    /// A stream's body waits for a window.
    blocked: bool,
    next_id: u32,
    max_streams: usize,
    peer_initial_window: i64,
    peer_max_frame: usize,
    /// The server's `SETTINGS_HEADER_TABLE_SIZE`: the last it set, else the default.
    peer_table: u32,
    send_window: i64,
    /// Flow-controlled bytes received since the connection's window was last given back.
    received: u64,
    partial: Option<Partial>,
    /// The last stream the server will process, after its GOAWAY.
    goaway: Option<u32>,
    scratch: Vec<u8>,
    /// Bodies of closed streams, for the next queries ([`Client::body_buffer`]).
    spare_bodies: Vec<Vec<u8>>,
    /// Answers given back ([`Client::give_back`]), for the next answers.
    spare_answers: Vec<Vec<u8>>,
}

impl<E> Client<E> {
    /// A connection to `authority`, queries going to `path`: the preface and our settings
    /// (no push, no dynamic table for answers, our windows) are the first output.
    pub fn new(authority: &str, path: &str) -> Self {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(frame::PREFACE);
        let settings = [
            (frame::ENABLE_PUSH, 0),
            (frame::HEADER_TABLE_SIZE, 0),
            (frame::INITIAL_WINDOW_SIZE, STREAM_WINDOW),
        ];
        frame::put_head(&mut out, settings.len() * 6, frame::SETTINGS, 0, 0);
        for (id, value) in settings {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&value.to_be_bytes());
        }
        frame::put_u32_frame(
            &mut out,
            frame::WINDOW_UPDATE,
            0,
            CONNECTION_WINDOW - DEFAULT_WINDOW,
        );
        Self {
            out,
            requests: Requests::new(authority, path),
            dns_coded: hpack::dns_message_coded(),
            table: Table::default(),
            queued: VecDeque::new(),
            streams: VecDeque::new(),
            blocked: false,
            next_id: 1,
            max_streams: FIRST_STREAM_LIMIT,
            peer_initial_window: i64::from(DEFAULT_WINDOW),
            peer_max_frame: frame::DEFAULT_MAX_FRAME,
            peer_table: frame::DEFAULT_HEADER_TABLE_SIZE,
            send_window: i64::from(DEFAULT_WINDOW),
            received: 0,
            partial: None,
            goaway: None,
            scratch: Vec::new(),
            spare_bodies: Vec::new(),
            spare_answers: Vec::new(),
        }
    }

    /// Asks `body` (a DNS message) for `item`: on a stream now, or when one is free.
    pub fn ask(&mut self, item: E, body: Vec<u8>) {
        self.queued.push_back((item, body));
        self.pump();
    }

    /// An empty buffer for a query's body: a closed stream's, so that a miss allocates none
    /// once the connection is warm.
    pub fn body_buffer(&mut self) -> Vec<u8> {
        self.spare_bodies.pop().unwrap_or_default()
    }

    /// Takes back an answer's buffer (of [`Event::Answer`]) once read, for a later answer.
    pub fn give_back(&mut self, answer: Vec<u8>) {
        keep(&mut self.spare_answers, answer);
    }

    /// Bytes to send to the server; the caller takes them (and clears the vector).
    pub fn output(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    /// How many bytes there are to send.
    pub fn output_len(&self) -> usize {
        self.out.len()
    }

    /// Queries asked and not settled.
    pub fn len(&self) -> usize {
        self.queued.len() + self.streams.len()
    }

    /// True when no query is in flight or waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The items of the queries asked and not settled.
    pub fn items(&self) -> impl Iterator<Item = &E> {
        self.queued
            .iter()
            .map(|(e, _)| e)
            .chain(self.streams.iter().map(|s| &s.item))
    }

    /// True when no more queries may be asked here (the server's GOAWAY, or stream IDs
    /// used up).
    pub fn spent(&self) -> bool {
        self.goaway.is_some() || self.next_id > frame::MAX_31
    }

    /// True when the connection is spent and nothing is left on it: it may be closed.
    pub fn finished(&self) -> bool {
        self.spent() && self.is_empty()
    }

    /// Takes out every query, settled by the caller (the connection failed).
    pub fn drain(&mut self) -> impl Iterator<Item = E> + '_ {
        self.blocked = false;
        self.queued
            .drain(..)
            .map(|(e, _)| e)
            .chain(self.streams.drain(..).map(|s| s.item))
    }

    /// Gives up the queries for which `gone` is true (into `out`); their streams are reset.
    pub fn cancel_where(&mut self, mut gone: impl FnMut(&E) -> bool, out: &mut Vec<E>) {
        let mut i = 0;
        while let Some(q) = self.queued.get(i) {
            if gone(&q.0) {
                if let Some((e, _)) = self.queued.remove(i) {
                    out.push(e);
                }
            } else {
                i += 1;
            }
        }
        let mut i = 0;
        while let Some(s) = self.streams.get(i) {
            if gone(&s.item) {
                if let Some(s) = self.close(i, Reset::With(frame::CANCEL)) {
                    out.push(s.item);
                }
            } else {
                i += 1;
            }
        }
        // Streams freed: queries waiting for one go now.
        self.pump();
    }

    /// Reads the whole frames at the start of `inbox`, settling queries into `events`; how
    /// many bytes were read (the rest is a frame not yet whole).
    pub fn receive(&mut self, inbox: &[u8], events: &mut Vec<Event<E>>) -> Result<usize, Error> {
        let mut at = 0;
        while let Some(head) = inbox.get(at..).and_then(frame::head) {
            if head.len > frame::DEFAULT_MAX_FRAME {
                return Err(Error::Protocol("a frame larger than the client allows"));
            }
            let start = at + frame::HEAD_LEN;
            let Some(payload) = inbox.get(start..start + head.len) else {
                break;
            };
            self.frame(head, payload, events)?;
            at = start + head.len;
        }
        if self.received >= u64::from(CONNECTION_WINDOW / 2) {
            let used = u32::try_from(self.received).unwrap_or(CONNECTION_WINDOW);
            frame::put_u32_frame(&mut self.out, frame::WINDOW_UPDATE, 0, used);
            self.received = 0;
        }
        self.pump();
        Ok(at)
    }

    fn frame(&mut self, h: Head, payload: &[u8], events: &mut Vec<Event<E>>) -> Result<(), Error> {
        if let Some(p) = &self.partial
            && (h.kind != frame::CONTINUATION || h.stream != p.stream)
        {
            return Err(Error::Protocol("a header block interrupted"));
        }
        match h.kind {
            frame::DATA => self.data(h, payload, events),
            frame::HEADERS => {
                if h.stream == 0 {
                    return Err(Error::Protocol("HEADERS on stream 0"));
                }
                let mut block = frame::unpadded(h.flags, payload)
                    .ok_or(Error::Protocol("padding longer than the frame"))?;
                if h.flags & frame::PRIORITY_FLAG != 0 {
                    block = block.get(5..).ok_or(Error::Protocol("HEADERS too short"))?;
                }
                let end_stream = h.flags & frame::END_STREAM != 0;
                if h.flags & frame::END_HEADERS != 0 {
                    return self.head(h.stream, block, end_stream, events);
                }
                if block.len() > MAX_HEADER_BLOCK {
                    return Err(Error::Protocol("a header block too large"));
                }
                self.partial = Some(Partial {
                    stream: h.stream,
                    end_stream,
                    block: block.to_vec(),
                });
                Ok(())
            }
            frame::CONTINUATION => {
                let Some(mut part) = self.partial.take() else {
                    return Err(Error::Protocol("CONTINUATION without HEADERS"));
                };
                if part.block.len() + payload.len() > MAX_HEADER_BLOCK {
                    return Err(Error::Protocol("a header block too large"));
                }
                part.block.extend_from_slice(payload);
                if h.flags & frame::END_HEADERS != 0 {
                    return self.head(part.stream, &part.block, part.end_stream, events);
                }
                self.partial = Some(part);
                Ok(())
            }
            frame::RST_STREAM => {
                let code = frame::u32_at(payload, 0)
                    .filter(|_| h.len == 4 && h.stream != 0)
                    .ok_or(Error::Protocol("a malformed RST_STREAM"))?;
                let Some(i) = self.find(h.stream)? else {
                    return Ok(());
                };
                if let Some(s) = self.close(i, Reset::Never) {
                    events.push(if code == frame::REFUSED_STREAM {
                        Event::Retry(s.item)
                    } else {
                        Event::Failed(
                            s.item,
                            format!("stream reset by the server (HTTP/2 error {code:#x})"),
                        )
                    });
                }
                Ok(())
            }
            frame::SETTINGS => self.settings(h, payload),
            frame::PUSH_PROMISE => Err(Error::Protocol("PUSH_PROMISE with push disabled")),
            frame::PING => {
                if h.stream != 0 || h.len != 8 {
                    return Err(Error::Protocol("a malformed PING"));
                }
                if h.flags & frame::ACK == 0 {
                    frame::put_head(&mut self.out, 8, frame::PING, frame::ACK, 0);
                    self.out.extend_from_slice(payload);
                }
                Ok(())
            }
            frame::GOAWAY => {
                let last = frame::u32_at(payload, 0)
                    .filter(|_| h.stream == 0 && h.len >= 8)
                    .ok_or(Error::Protocol("a malformed GOAWAY"))?
                    & frame::MAX_31;
                self.go_away(last, events);
                Ok(())
            }
            frame::WINDOW_UPDATE => self.window_update(h, payload, events),
            // PRIORITY is advisory; unknown types are ignored (§5.5).
            _ => Ok(()),
        }
    }

    fn data(&mut self, h: Head, payload: &[u8], events: &mut Vec<Event<E>>) -> Result<(), Error> {
        if h.stream == 0 {
            return Err(Error::Protocol("DATA on stream 0"));
        }
        self.received += h.len as u64;
        if self.received > u64::from(CONNECTION_WINDOW) {
            return Err(Error::Protocol("DATA beyond the connection's window"));
        }
        let body = frame::unpadded(h.flags, payload)
            .ok_or(Error::Protocol("padding longer than the frame"))?;
        let Some(i) = self.find(h.stream)? else {
            return Ok(());
        };
        let end = h.flags & frame::END_STREAM != 0;
        let Some(s) = self.streams.get_mut(i) else {
            return Ok(());
        };
        s.received += h.len;
        let (why, code) = match &mut s.answer {
            _ if s.received > STREAM_WINDOW as usize => {
                ("DATA beyond the stream's window", frame::FLOW_CONTROL_ERROR)
            }
            None => ("DATA before the response's head", frame::PROTOCOL_ERROR),
            Some(answer) if answer.len() + body.len() > MAX_ANSWER => {
                ("answer larger than a DNS message", frame::CANCEL)
            }
            Some(answer) => {
                answer.extend_from_slice(body);
                if end && let Some(s) = self.close(i, Reset::IfUnsent) {
                    events.push(Event::Answer(s.item, s.answer.unwrap_or_default()));
                }
                return Ok(());
            }
        };
        self.fail(i, end, code, why.into(), events);
        Ok(())
    }

    /// A whole header block on `stream`: the response's head, or its trailers.
    fn head(
        &mut self,
        stream: u32,
        block: &[u8],
        end: bool,
        events: &mut Vec<Event<E>>,
    ) -> Result<(), Error> {
        let head = hpack::read_response(block, &self.dns_coded, &mut self.table)?;
        let Some(i) = self.find(stream)? else {
            return Ok(());
        };
        let Some(s) = self.streams.get(i) else {
            return Ok(());
        };
        let mut code = frame::CANCEL;
        let failure = if s.answer.is_some() {
            // Trailers: they end the stream.
            if end {
                if let Some(s) = self.close(i, Reset::IfUnsent) {
                    events.push(Event::Answer(s.item, s.answer.unwrap_or_default()));
                }
                return Ok(());
            }
            code = frame::PROTOCOL_ERROR;
            "trailers that do not end the stream".to_string()
        } else if head.status.is_some_and(|s| (100..200).contains(&s)) && !end {
            // Informational: the response follows.
            return Ok(());
        } else if head.status != Some(200) {
            head.status.map_or_else(
                || "a response without :status".to_string(),
                |s| format!("HTTP status {s}"),
            )
        } else if let Some(ContentType::Other(t)) = head.content_type {
            format!("answer of type {t:?}, not {}", hpack::DNS_MESSAGE)
        } else {
            let buffer = self.spare_answers.pop().unwrap_or_default();
            if let Some(s) = self.streams.get_mut(i) {
                s.answer = Some(buffer);
            }
            if end && let Some(s) = self.close(i, Reset::IfUnsent) {
                events.push(Event::Answer(s.item, s.answer.unwrap_or_default()));
            }
            return Ok(());
        };
        self.fail(i, end, code, failure, events);
        Ok(())
    }

    fn settings(&mut self, h: Head, payload: &[u8]) -> Result<(), Error> {
        if h.stream != 0 {
            return Err(Error::Protocol("SETTINGS on a stream"));
        }
        if h.flags & frame::ACK != 0 {
            return if h.len == 0 {
                Ok(())
            } else {
                Err(Error::Protocol("a SETTINGS acknowledgement with a payload"))
            };
        }
        if !h.len.is_multiple_of(6) {
            return Err(Error::Protocol("a malformed SETTINGS"));
        }
        let mut table_set = false;
        for setting in payload.chunks_exact(6) {
            let [a, b, v0, v1, v2, v3] = *setting else {
                continue;
            };
            let value = u32::from_be_bytes([v0, v1, v2, v3]);
            match u16::from_be_bytes([a, b]) {
                frame::ENABLE_PUSH if value != 0 => {
                    return Err(Error::Protocol("SETTINGS_ENABLE_PUSH from a server"));
                }
                frame::MAX_CONCURRENT_STREAMS => {
                    self.max_streams = usize::try_from(value).unwrap_or(usize::MAX);
                }
                frame::INITIAL_WINDOW_SIZE => {
                    if value > frame::MAX_31 {
                        return Err(Error::Protocol("a window above 2^31-1"));
                    }
                    let delta = i64::from(value) - self.peer_initial_window;
                    for s in &mut self.streams {
                        s.window += delta;
                        if s.window > i64::from(frame::MAX_31) {
                            return Err(Error::Protocol("a window above 2^31-1"));
                        }
                    }
                    self.peer_initial_window = i64::from(value);
                }
                frame::MAX_FRAME_SIZE => {
                    if !(frame::DEFAULT_MAX_FRAME as u32..=frame::LARGEST_MAX_FRAME)
                        .contains(&value)
                    {
                        return Err(Error::Protocol("SETTINGS_MAX_FRAME_SIZE out of range"));
                    }
                    self.peer_max_frame = value as usize;
                }
                // Each value in turn: a decoder that applies them in order expects the
                // smallest one at the next block (RFC 7541 §4.2).
                frame::HEADER_TABLE_SIZE => {
                    self.peer_table = value;
                    self.requests.settings(value);
                    table_set = true;
                }
                _ => {}
            }
        }
        if !table_set {
            self.requests.settings(self.peer_table);
        }
        frame::put_head(&mut self.out, 0, frame::SETTINGS, frame::ACK, 0);
        Ok(())
    }

    fn window_update(
        &mut self,
        h: Head,
        payload: &[u8],
        events: &mut Vec<Event<E>>,
    ) -> Result<(), Error> {
        let inc = frame::u32_at(payload, 0)
            .filter(|_| h.len == 4)
            .ok_or(Error::Protocol("a malformed WINDOW_UPDATE"))?
            & frame::MAX_31;
        if h.stream == 0 {
            if inc == 0 {
                return Err(Error::Protocol("a WINDOW_UPDATE of 0"));
            }
            self.send_window += i64::from(inc);
            if self.send_window > i64::from(frame::MAX_31) {
                return Err(Error::Protocol("a window above 2^31-1"));
            }
            return Ok(());
        }
        let Some(i) = self.find(h.stream)? else {
            return Ok(());
        };
        let Some(s) = self.streams.get_mut(i) else {
            return Ok(());
        };
        s.window += i64::from(inc);
        let code = if inc == 0 {
            frame::PROTOCOL_ERROR
        } else if s.window > i64::from(frame::MAX_31) {
            frame::FLOW_CONTROL_ERROR
        } else {
            return Ok(());
        };
        if let Some(s) = self.close(i, Reset::With(code)) {
            events.push(Event::Failed(s.item, "a bad WINDOW_UPDATE".into()));
        }
        Ok(())
    }

    /// The server processes no stream above `last`: those go back, and so do the queries
    /// not sent yet.
    fn go_away(&mut self, last: u32, events: &mut Vec<Event<E>>) {
        self.goaway = Some(self.goaway.map_or(last, |g| g.min(last)));
        while self.streams.back().is_some_and(|s| s.id > last) {
            let i = self.streams.len() - 1;
            if let Some(s) = self.close(i, Reset::Never) {
                events.push(Event::Retry(s.item));
            }
        }
        for (e, _) in self.queued.drain(..) {
            events.push(Event::Retry(e));
        }
    }

    /// Where stream `id` is among the open ones: `None` for one closed already; an error for
    /// one we never opened.
    fn find(&self, id: u32) -> Result<Option<usize>, Error> {
        if id.is_multiple_of(2) || id >= self.next_id {
            return Err(Error::Protocol(
                "a frame on a stream the client did not open",
            ));
        }
        Ok(self.streams.binary_search_by_key(&id, |s| s.id).ok())
    }

    /// Fails stream `i`'s query with `why`: reset with `code` unless the server ended the
    /// stream (`end`), then only if our body was not all sent.
    fn fail(&mut self, i: usize, end: bool, code: u32, why: String, events: &mut Vec<Event<E>>) {
        let reset = if end {
            Reset::IfUnsent
        } else {
            Reset::With(code)
        };
        if let Some(s) = self.close(i, reset) {
            events.push(Event::Failed(s.item, why));
        }
    }

    /// Closes stream `i`, resetting it as `reset` says.
    fn close(&mut self, i: usize, reset: Reset) -> Option<Stream<E>> {
        let mut s = self.streams.remove(i)?;
        let code = match reset {
            Reset::With(code) => Some(code),
            Reset::IfUnsent => (s.sent < s.body.len()).then_some(frame::NO_ERROR),
            Reset::Never => None,
        };
        if let Some(code) = code {
            frame::put_u32_frame(&mut self.out, frame::RST_STREAM, s.id, code);
        }
        keep(&mut self.spare_bodies, std::mem::take(&mut s.body));
        Some(s)
    }

    /// Opens streams for queued queries while the server allows, and sends the bodies the
    /// windows allow.
    fn pump(&mut self) {
        if self.blocked && self.send_window > 0 {
            self.blocked = false;
            for i in 0..self.streams.len() {
                self.send_body(i);
            }
        }
        while self.goaway.is_none()
            && self.next_id <= frame::MAX_31
            && self.streams.len() < self.max_streams
        {
            let Some((item, body)) = self.queued.pop_front() else {
                break;
            };
            self.open(item, body);
        }
    }

    fn open(&mut self, item: E, body: Vec<u8>) {
        let id = self.next_id;
        self.next_id += 2;
        self.scratch.clear();
        self.requests.write(&mut self.scratch, body.len());
        let end_stream = if body.is_empty() {
            frame::END_STREAM
        } else {
            0
        };
        let mut chunks = self.scratch.chunks(self.peer_max_frame).peekable();
        let mut kind = frame::HEADERS;
        while let Some(chunk) = chunks.next() {
            let mut flags = if kind == frame::HEADERS {
                end_stream
            } else {
                0
            };
            if chunks.peek().is_none() {
                flags |= frame::END_HEADERS;
            }
            frame::put_head(&mut self.out, chunk.len(), kind, flags, id);
            self.out.extend_from_slice(chunk);
            kind = frame::CONTINUATION;
        }
        self.streams.push_back(Stream {
            id,
            item,
            body,
            sent: 0,
            window: self.peer_initial_window,
            received: 0,
            answer: None,
        });
        self.send_body(self.streams.len() - 1);
    }

    /// Sends as much of stream `i`'s body as the windows allow; notes it when they stop it.
    fn send_body(&mut self, i: usize) {
        let Some(s) = self.streams.get_mut(i) else {
            return;
        };
        while s.sent < s.body.len() {
            let left = s.body.len() - s.sent;
            let room = s.window.min(self.send_window).max(0) as usize;
            let n = left.min(room).min(self.peer_max_frame);
            if n == 0 {
                self.blocked = true;
                return;
            }
            let flags = if n == left { frame::END_STREAM } else { 0 };
            frame::put_head(&mut self.out, n, frame::DATA, flags, s.id);
            self.out
                .extend_from_slice(s.body.get(s.sent..s.sent + n).unwrap_or_default());
            s.sent += n;
            s.window -= n as i64;
            self.send_window -= n as i64;
        }
    }
}

/// Keeps `buffer` emptied in `spare` for reuse, unless `spare` is full or it is large.
fn keep(spare: &mut Vec<Vec<u8>>, mut buffer: Vec<u8>) {
    if spare.len() < SPARE && (1..=SPARE_CAPACITY).contains(&buffer.capacity()) {
        buffer.clear();
        spare.push(buffer);
    }
}
