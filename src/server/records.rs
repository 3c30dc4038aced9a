//! One TLS record per HTTP/2 answer: the server's side of a DoH connection cuts its TLS
//! records after every HTTP/2 frame that ends a stream (END_STREAM on DATA or HEADERS),
//! so that a record never holds the end of one answer and then bytes of the next.
//!
//! Why: h2 buffers every frame that is ready and writes them with one `write`, and rustls
//! makes one record of one write; under load several answers then share a record. A
//! client that reads a record at a time and takes one answer per read (dnsperf's DoH
//! mode: OpenSSL's `SSL_read` returns at most a record, nghttp2 is paused after the first
//! complete answer, and the paused DATA chunk is lost) then misses every answer but the
//! first of each record, and its queries time out. nghttp2-based servers (unbound,
//! dnsdist) write each frame with its own `SSL_write`, so they never show it. Cutting at
//! stream ends keeps an answer's HEADERS and DATA in one record, and a flush of many
//! answers still leaves in one `writev` of the socket: the plaintext goes straight into
//! the rustls connection, record by record, and is sent when h2 flushes (or when rustls's
//! buffer is full).

use std::io::{self, IoSlice, Write as _};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::server::TlsStream;

/// HTTP/2 frame types that carry END_STREAM (RFC 9113 §6.1, §6.2).
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const END_STREAM: u8 = 0x1;
/// An HTTP/2 frame header: length (24 bits), type, flags, stream (RFC 9113 §4.1).
const FRAME_HEADER: usize = 9;

/// Capacity of the gathering buffer kept between writes, bytes.
const GATHER_KEEP: usize = 4 << 10;

/// Where the outgoing byte stream stands in its HTTP/2 frames (a server sends no preface
/// but its SETTINGS frame, so the stream is frames from its first byte).
#[derive(Clone, Copy, Debug, Default)]
struct Frames {
    /// The header of the current frame, `have` bytes of it seen so far.
    head: [u8; FRAME_HEADER],
    have: usize,
    /// Payload bytes of the current frame still to come.
    left: usize,
    /// The current frame ends its stream.
    ends: bool,
}

impl Frames {
    /// Takes in the start of `buf` up to the next boundary (header complete, frame
    /// complete); returns how many bytes, and whether a frame that ends a stream just
    /// ended.
    fn step(&mut self, buf: &[u8]) -> (usize, bool) {
        if self.have < FRAME_HEADER {
            let n = (FRAME_HEADER - self.have).min(buf.len());
            let (Some(to), Some(from)) =
                (self.head.get_mut(self.have..self.have + n), buf.get(..n))
            else {
                return (buf.len(), false);
            };
            to.copy_from_slice(from);
            self.have += n;
            if self.have < FRAME_HEADER {
                return (n, false);
            }
            let [l0, l1, l2, kind, flags, ..] = self.head;
            self.left = usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2);
            self.ends = (kind == DATA || kind == HEADERS) && flags & END_STREAM != 0;
            return (n, self.finish_if_done());
        }
        let n = self.left.min(buf.len());
        self.left -= n;
        (n, self.finish_if_done())
    }

    /// At the end of the payload, starts on the next frame; true if the one that ended
    /// ends a stream.
    fn finish_if_done(&mut self) -> bool {
        if self.left > 0 {
            return false;
        }
        self.have = 0;
        std::mem::take(&mut self.ends)
    }

    /// How many bytes of `buf`, from here, make one record: up to the end of the first
    /// frame that ends a stream, or all of it.
    fn cut(&self, buf: &[u8]) -> usize {
        let mut f = *self;
        let mut at = 0;
        while let Some(rest) = buf.get(at..).filter(|r| !r.is_empty()) {
            let (n, ended) = f.step(rest);
            at += n;
            if ended || n == 0 {
                break;
            }
        }
        at.min(buf.len())
    }

    /// Moves past `buf`, written.
    fn advance(&mut self, buf: &[u8]) {
        let mut at = 0;
        while let Some(rest) = buf.get(at..).filter(|r| !r.is_empty()) {
            let (n, _) = self.step(rest);
            if n == 0 {
                break;
            }
            at += n;
        }
    }
}

/// A server TLS stream carrying HTTP/2, writing a TLS record per answer (see the module).
pub(super) struct RecordPerAnswer<IO> {
    tls: TlsStream<IO>,
    frames: Frames,
    /// A vectored write, gathered (h2 hands a buffer and a DATA payload apart).
    gathered: Vec<u8>,
}

impl<IO> RecordPerAnswer<IO> {
    /// Wraps a TLS stream on which HTTP/2 is about to start.
    pub(super) fn new(tls: TlsStream<IO>) -> Self {
        Self {
            tls,
            frames: Frames::default(),
            gathered: Vec::new(),
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> RecordPerAnswer<IO> {
    /// Hands `buf` to rustls a record at a time; sends what rustls holds only when its
    /// buffer is full (h2 flushes after each batch).
    fn write_records(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mut done = 0;
        let mut flushed = false;
        while let Some(rest) = buf.get(done..).filter(|r| !r.is_empty()) {
            let n = self.frames.cut(rest);
            let part = rest.get(..n).unwrap_or(rest);
            let wrote = self.tls.get_mut().1.writer().write(part)?;
            self.frames.advance(part.get(..wrote).unwrap_or(part));
            done += wrote;
            if wrote > 0 {
                flushed = false;
            }
            if wrote == part.len() {
                continue;
            }
            if wrote == 0 && flushed {
                // Nothing taken even with the buffer just sent (a closed write side).
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            // rustls's buffer is full: send it, or report what was taken.
            flushed = true;
            match Pin::new(&mut self.tls).poll_flush(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) | Poll::Pending if done > 0 => return Poll::Ready(Ok(done)),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(done))
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for RecordPerAnswer<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tls).poll_read(cx, buf)
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RecordPerAnswer<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().write_records(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut full = bufs.iter().filter(|b| !b.is_empty());
        match (full.next(), full.next()) {
            (None, _) => return Poll::Ready(Ok(0)),
            (Some(one), None) => return this.write_records(cx, one),
            _ => {}
        }
        let mut all = std::mem::take(&mut this.gathered);
        all.clear();
        for b in bufs {
            all.extend_from_slice(b);
        }
        let r = this.write_records(cx, &all);
        // An idle connection keeps no large buffer.
        if all.capacity() <= GATHER_KEEP {
            this.gathered = all;
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tls).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.tls).poll_flush(cx))?;
        Pin::new(&mut this.tls).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, len: usize) -> Vec<u8> {
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend(std::iter::repeat_n(0xab, len));
        f
    }

    /// The records `bytes` makes when written in pieces of `chunk` bytes.
    fn records(bytes: &[u8], chunk: usize) -> Vec<usize> {
        let mut f = Frames::default();
        let mut out = Vec::new();
        for piece in bytes.chunks(chunk) {
            let mut at = 0;
            while at < piece.len() {
                let n = f.cut(&piece[at..]);
                f.advance(&piece[at..at + n]);
                out.push(n);
                at += n;
            }
        }
        out
    }

    #[test]
    fn records_end_after_each_frame_that_ends_a_stream() {
        let settings = frame(0x4, 0, 0, 18);
        let (h1, d1) = (frame(HEADERS, 0x4, 1, 20), frame(DATA, END_STREAM, 1, 88));
        let (h3, d3) = (frame(HEADERS, 0x4, 3, 5), frame(DATA, END_STREAM, 3, 300));
        let h5 = frame(HEADERS, 0x4 | END_STREAM, 5, 7);
        let wu = frame(0x8, 0, 0, 4);
        let all = [
            settings.clone(),
            h1.clone(),
            d1.clone(),
            h3.clone(),
            d3.clone(),
            h5.clone(),
            wu.clone(),
        ]
        .concat();
        let want = vec![
            settings.len() + h1.len() + d1.len(),
            h3.len() + d3.len(),
            h5.len(),
            wu.len(),
        ];
        assert_eq!(records(&all, all.len()), want);
        // Written a byte at a time, or in odd pieces, the cuts fall in the same places.
        let ends = |rs: Vec<usize>| {
            let mut at = 0;
            rs.iter()
                .map(|n| {
                    at += n;
                    at
                })
                .collect::<Vec<_>>()
        };
        let cuts = ends(want);
        for chunk in [1, 2, 7, 9, 10, 64] {
            let got = ends(records(&all, chunk));
            for c in &cuts {
                assert!(got.contains(c), "chunk {chunk}: {got:?} lacks {c}");
            }
        }
    }

    #[test]
    fn an_empty_frame_that_ends_a_stream_ends_a_record() {
        let (h, d) = (frame(HEADERS, 0x4, 1, 3), frame(DATA, END_STREAM, 1, 0));
        let next = frame(HEADERS, 0x4, 3, 3);
        let all = [h.clone(), d.clone(), next.clone()].concat();
        assert_eq!(
            records(&all, all.len()),
            vec![h.len() + d.len(), next.len()]
        );
    }
}
