//! DNS over TCP (RFC 7766): length-prefixed messages, several per connection, answered in
//! order; idle connections are closed, and the number of connections is bounded.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::handler::{Handled, TCP_LIMIT, handle};
use crate::pipeline::Pipeline;

/// Most TCP connections served at once.
const MAX_CONNECTIONS: usize = 512;

pub(super) async fn serve(listener: TcpListener, pipeline: Arc<Pipeline>, idle: Duration) {
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
        tokio::spawn(async move {
            if let Err(e) = connection(stream, &pipeline, idle).await {
                tracing::debug!(client = %peer, error = %e, "tcp connection ended");
            }
            drop(permit);
        });
    }
}

async fn connection(mut s: TcpStream, pipeline: &Pipeline, idle: Duration) -> std::io::Result<()> {
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
        match handle(pipeline, &buf, true, &mut out) {
            Handled::Reply(_) => {}
            Handled::Drop => continue,
            Handled::Forward(q) => {
                pipeline
                    .resolve_upstream(&q, arrived, &mut out, TCP_LIMIT)
                    .await;
            }
        }
        let n = u16::try_from(out.len()).unwrap_or(u16::MAX);
        s.write_all(&n.to_be_bytes()).await?;
        s.write_all(&out).await?;
    }
}
