//! DNS over TCP (RFC 7766): length-prefixed messages, several per connection, answered in
//! order; idle connections are closed, and the number of connections is bounded.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::handler::{Asked, Handled, TCP_LIMIT, handle};
use crate::pipeline::Pipeline;
use crate::querylog::{QueryLog, Record};

/// Most TCP connections served at once.
const MAX_CONNECTIONS: usize = 512;

pub(super) async fn serve(
    listener: TcpListener,
    pipeline: Arc<Pipeline>,
    log: Option<QueryLog>,
    idle: Duration,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "tcp accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!(client = %peer, "too many tcp connections; closing");
            continue;
        };
        let pipeline = Arc::clone(&pipeline);
        let log = log.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(stream, peer.ip(), &pipeline, log.as_ref(), idle).await {
                tracing::debug!(client = %peer, error = %e, "tcp connection ended");
            }
            drop(permit);
        });
    }
}

async fn connection(
    mut s: TcpStream,
    client: std::net::IpAddr,
    pipeline: &Pipeline,
    log: Option<&QueryLog>,
    idle: Duration,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut out = Vec::with_capacity(512);
    loop {
        let len = match tokio::time::timeout(idle, s.read_u16()).await {
            Err(_) => return Ok(()),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(r) => r?,
        };
        buf.resize(usize::from(len), 0);
        tokio::time::timeout(idle, s.read_exact(&mut buf))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        let arrived = tokio::time::Instant::now();
        let ts = log.map(|_| std::time::SystemTime::now());
        let logged = match handle(pipeline, &buf, true, &mut out) {
            Handled::Reply(o, asked) => asked.map(|a| (o, a)),
            Handled::Drop => continue,
            Handled::Forward(q) => {
                let o = pipeline
                    .resolve_upstream(&q, arrived, &mut out, TCP_LIMIT)
                    .await;
                log.map(|_| (o, Asked::of(&q)))
            }
        };
        let n = u16::try_from(out.len()).unwrap_or(u16::MAX);
        s.write_all(&n.to_be_bytes()).await?;
        s.write_all(&out).await?;
        // Log after the answer is sent; never awaits.
        if let (Some(log), Some(ts), Some((outcome, asked))) = (log, ts, logged) {
            log.record(Record {
                ts,
                client,
                asked,
                outcome,
                elapsed: arrived.elapsed(),
            });
        }
    }
}
