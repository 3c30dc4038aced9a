//! `Upstream`: forwards a query to the configured resolvers in order, over UDP from a fresh
//! random port per query (RFC 5452), retrying over TCP when the answer is truncated.
//!
//! Each attempt waits at most `timeout`; a timeout, a transport error, a broken answer,
//! SERVFAIL or REFUSED moves on to the next server. The whole exchange ends by
//! `arrived + timeout × servers`, so the client always hears back in time. This is the only
//! network I/O on the query path.

use std::net::SocketAddr;
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, timeout_at};

use crate::config::{CacheConfig, UpstreamConfig};
use crate::dns::wire::{Query, Response, ResponseError, rcode, write_upstream_query};

/// Why no usable answer came back.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum UpstreamError {
    /// The server did not answer in time.
    #[error("{0}: timed out")]
    Timeout(SocketAddr),
    /// Socket error talking to the server.
    #[error("{0}: {1}")]
    Transport(SocketAddr, String),
    /// The answer was not a well-formed DNS message.
    #[error("{0}: malformed answer")]
    Malformed(SocketAddr),
    /// The server answered SERVFAIL or REFUSED.
    #[error("{0}: answered {1}")]
    Rcode(SocketAddr, &'static str),
}

/// The forwarding stage.
#[derive(Debug, Clone)]
pub struct Upstream {
    servers: Vec<SocketAddr>,
    timeout: Duration,
    min_ttl: u32,
    max_ttl: u32,
}

impl Upstream {
    /// Builds the stage from config.
    pub fn new(cfg: &UpstreamConfig, cache: &CacheConfig) -> Self {
        Self {
            servers: cfg.servers.clone(),
            timeout: cfg.timeout,
            min_ttl: cache.min_ttl,
            max_ttl: cache.max_ttl,
        }
    }

    /// The latest time a query that arrived at `arrived` can be answered.
    pub fn deadline(&self, arrived: Instant) -> Instant {
        arrived + self.timeout * u32::try_from(self.servers.len()).unwrap_or(u32::MAX)
    }

    /// Forwards `q`; returns the first usable answer and who gave it, or the last error.
    pub async fn forward(
        &self,
        q: &Query,
        arrived: Instant,
    ) -> Result<(Response, SocketAddr), UpstreamError> {
        let deadline = self.deadline(arrived);
        let Some(&first) = self.servers.first() else {
            return Err(UpstreamError::Transport(
                SocketAddr::from(([0, 0, 0, 0], 0)),
                "no upstream configured".into(),
            ));
        };
        let mut last = UpstreamError::Timeout(first);
        for &server in &self.servers {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let attempt_end = (now + self.timeout).min(deadline);
            match self.attempt(server, q, attempt_end).await {
                Ok(r) if matches!(r.rcode(), rcode::SERVFAIL | rcode::REFUSED) => {
                    last = UpstreamError::Rcode(server, rcode::name(r.rcode()));
                }
                Ok(r) => return Ok((r, server)),
                Err(e) => last = e,
            }
            tracing::debug!(qname = %q.name_lossy(), upstream = %server, error = %last, "upstream attempt failed");
        }
        Err(last)
    }

    async fn attempt(
        &self,
        server: SocketAddr,
        q: &Query,
        end: Instant,
    ) -> Result<Response, UpstreamError> {
        let id: u16 = rand::random();
        let mut msg = Vec::with_capacity(64 + q.question_len());
        write_upstream_query(&mut msg, q, id);
        let transport = |e: std::io::Error| UpstreamError::Transport(server, e.to_string());
        let bind: SocketAddr = if server.is_ipv4() {
            "0.0.0.0:0".parse().unwrap_or(server)
        } else {
            "[::]:0".parse().unwrap_or(server)
        };
        let sock = UdpSocket::bind(bind).await.map_err(transport)?;
        sock.connect(server).await.map_err(transport)?;
        sock.send(&msg).await.map_err(transport)?;
        let mut buf = vec![0u8; 4096];
        loop {
            let n = match timeout_at(end, sock.recv(&mut buf)).await {
                Err(_) => return Err(UpstreamError::Timeout(server)),
                Ok(r) => r.map_err(transport)?,
            };
            match Response::from_upstream(&buf[..n], q, id, self.min_ttl, self.max_ttl) {
                Ok(r) => return Ok(r),
                // Not ours (late answer to an earlier query, or spoofing): keep listening.
                Err(ResponseError::Mismatch) => continue,
                Err(ResponseError::Malformed) => return Err(UpstreamError::Malformed(server)),
                Err(ResponseError::Truncated) => return self.tcp(server, q, end).await,
            }
        }
    }

    async fn tcp(
        &self,
        server: SocketAddr,
        q: &Query,
        end: Instant,
    ) -> Result<Response, UpstreamError> {
        let id: u16 = rand::random();
        let mut msg = vec![0, 0];
        let mut body = Vec::with_capacity(64 + q.question_len());
        write_upstream_query(&mut body, q, id);
        msg[..2].copy_from_slice(&u16::try_from(body.len()).unwrap_or(0).to_be_bytes());
        msg.extend_from_slice(&body);
        let exchange = async {
            let mut s = TcpStream::connect(server).await?;
            s.write_all(&msg).await?;
            let len = s.read_u16().await?;
            let mut buf = vec![0u8; usize::from(len)];
            s.read_exact(&mut buf).await?;
            Ok::<_, std::io::Error>(buf)
        };
        let buf = match timeout_at(end, exchange).await {
            Err(_) => return Err(UpstreamError::Timeout(server)),
            Ok(r) => r.map_err(|e| UpstreamError::Transport(server, e.to_string()))?,
        };
        Response::from_upstream(&buf, q, id, self.min_ttl, self.max_ttl)
            .map_err(|_| UpstreamError::Malformed(server))
    }
}
