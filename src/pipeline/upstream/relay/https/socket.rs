//! The socket and the TLS session of a relay's DNS-over-HTTPS connection, as `h2` reads
//! and writes them: a non-blocking TCP socket and a rustls client session driven by hand,
//! "not yet" (`Pending`) wherever the socket would block. Nothing here registers a waker:
//! the relay polls the connection again when its epoll finds the socket ready.

use std::io::{self, BufRead, Write};
use std::net::TcpStream;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use rustls::ClientConnection;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::super::tls::Drained;

/// A TLS 1.3 record's bytes beyond its plaintext: header, content type and AEAD tag.
const RECORD_OVERHEAD: usize = 5 + 1 + 16;

/// What the relay and the socket's side tell each other.
#[derive(Default)]
pub(super) struct IoState {
    pub(super) want_out: AtomicBool,
    pub(super) unsent: AtomicUsize,
    /// The socket may have bytes to read: set when the epoll says so, cleared by a read
    /// that found it empty (a short read, or one that would block). `h2` polls its reader
    /// several times per query; only the first of them needs a system call.
    pub(super) readable: AtomicBool,
}

/// The socket and TLS session as `h2` sees them: "not yet" (`Pending`) where the socket
/// would block; the relay polls again when the epoll says it is ready.
pub(super) struct Io {
    pub(super) tcp: TcpStream,
    pub(super) tls: ClientConnection,
    pub(super) connecting: bool,
    pub(super) state: Arc<IoState>,
}

impl Io {
    /// Completes the connect when it has; `Err` when it failed.
    fn connected(&mut self) -> io::Result<bool> {
        if !self.connecting {
            return Ok(true);
        }
        if let Some(e) = self.tcp.take_error()? {
            return Err(e);
        }
        match self.tcp.peer_addr() {
            Ok(_) => {
                self.connecting = false;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Writes what the session has for the socket; true when all of it went.
    fn flush_tls(&mut self) -> io::Result<bool> {
        let done = self.write_tls();
        self.note();
        done
    }

    fn write_tls(&mut self) -> io::Result<bool> {
        if !self.connected()? {
            return Ok(false);
        }
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.tcp) {
                Ok(n) => {
                    let left = self.state.unsent.load(Ordering::Acquire).saturating_sub(n);
                    self.state.unsent.store(left, Ordering::Release);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.state.unsent.store(0, Ordering::Release);
        Ok(true)
    }

    /// Tells the relay whether the socket must be watched for writability.
    fn note(&self) {
        let want = self.connecting || self.tls.wants_write();
        self.state.want_out.store(want, Ordering::Release);
    }

    /// The server must have agreed to HTTP/2 once the handshake is done.
    fn check_alpn(&self) -> io::Result<()> {
        if !self.tls.is_handshaking() && self.tls.alpn_protocol() != Some(crate::tls::ALPN_H2) {
            return Err(io::Error::other(
                "the server does not speak HTTP/2 (ALPN h2) on this port",
            ));
        }
        Ok(())
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            // Copied from the session's own buffer into the unfilled part of `buf`, which is
            // not zeroed first: `h2` hands over up to 8 KiB of fresh space per read, five
            // reads a miss, and zeroing it was a quarter of the miss's user-space
            // instructions (`docs/performance.md`).
            let mut reader = this.tls.reader();
            match reader.fill_buf() {
                // Empty only after the server's close_notify (rustls keeps no empty chunk):
                // no bytes read, which `h2` takes as the end.
                Ok(chunk) => {
                    let n = chunk.len().min(buf.remaining());
                    buf.put_slice(chunk.get(..n).unwrap_or_default());
                    reader.consume(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            match this.connected() {
                Ok(true) => {}
                Ok(false) => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
            if !this.state.readable.load(Ordering::Acquire) {
                this.note();
                return Poll::Pending;
            }
            let mut tcp = Drained {
                tcp: &this.tcp,
                short: false,
            };
            let read = this.tls.read_tls(&mut tcp);
            if tcp.short {
                this.state.readable.store(false, Ordering::Release);
            }
            match read {
                // EOF: no bytes read, which `h2` takes as the end.
                Ok(0) => return Poll::Ready(Ok(())),
                Ok(_) => {
                    if let Err(e) = this.tls.process_new_packets() {
                        let _ = this.flush_tls();
                        return Poll::Ready(Err(io::Error::other(e)));
                    }
                    if let Err(e) = this.check_alpn() {
                        return Poll::Ready(Err(e));
                    }
                    // Handshake messages to answer.
                    if let Err(e) = this.flush_tls() {
                        return Poll::Ready(Err(e));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    this.state.readable.store(false, Ordering::Release);
                    this.note();
                    return Poll::Pending;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // No buffer limit: the relay bounds what it hands over (`MAX_UNSENT`).
        match this.tls.writer().write(buf) {
            Ok(n) => {
                this.state
                    .unsent
                    .fetch_add(n + RECORD_OVERHEAD, Ordering::AcqRel);
                this.note();
                Poll::Ready(Ok(n))
            }
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.flush_tls() {
            Ok(true) => Poll::Ready(Ok(())),
            Ok(false) => Poll::Pending,
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.tls.send_close_notify();
        let _ = this.flush_tls();
        Poll::Ready(Ok(()))
    }
}
