//! `Dot`: DNS over TLS to one server (RFC 7858): one TLS connection, queries pipelined on
//! it with two-byte length prefixes (RFC 7766 §6.2.1.1), answers matched to their queries
//! by message ID, in whatever order they come.
//!
//! Per connection: a writer task that takes framed queries from a bounded channel and
//! writes them (all that are waiting in one write), closing the connection after [`IDLE`]
//! without a query in flight; and a reader task that hands each answer to the query
//! waiting for its ID. When either side ends (EOF, an error, idle), the connection is
//! marked dead, every query waiting on it learns so at once, and both tasks end.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::{Alive, Failed, IDLE, MAX_IN_FLIGHT, Slot, lock, with_retry};
use crate::dns::wire::Query;
use crate::pipeline::upstream::UpstreamError;

/// One DNS-over-TLS server.
pub(in crate::pipeline::upstream) struct Dot {
    addr: SocketAddr,
    name: Option<ServerName<'static>>,
    tls: Option<TlsConnector>,
    slot: Slot<Conn>,
}

impl std::fmt::Debug for Dot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dot")
            .field("addr", &self.addr)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// One open connection.
#[derive(Debug)]
pub(super) struct Conn {
    /// Framed queries to the writer.
    tx: mpsc::Sender<Vec<u8>>,
    /// Queries waiting for an answer, by ID.
    waiting: Mutex<HashMap<u16, oneshot::Sender<Vec<u8>>>>,
    dead: AtomicBool,
    /// Tells the writer to end (the reader ended).
    stop: Notify,
}

impl Alive for Conn {
    fn alive(&self) -> bool {
        !self.dead.load(Ordering::Acquire)
    }
}

impl Conn {
    /// Marks the connection dead and fails every query waiting on it.
    fn close(&self) {
        self.dead.store(true, Ordering::Release);
        lock(&self.waiting).clear();
        self.stop.notify_one();
    }

    /// Hands an answer to the query waiting for its ID (none: a late answer, dropped).
    fn dispatch(&self, pkt: Vec<u8>) {
        let (Some(&a), Some(&b)) = (pkt.first(), pkt.get(1)) else {
            return;
        };
        if let Some(tx) = lock(&self.waiting).remove(&u16::from_be_bytes([a, b])) {
            let _ = tx.send(pkt);
        }
    }
}

/// Takes a query's waiter off the connection when the query ends (timed out, or dropped
/// with its client). Only a waiter whose receiver is gone is ours: once answered, the ID is
/// free and may already be another query's.
struct Withdraw<'a> {
    conn: &'a Conn,
    id: u16,
}

impl Drop for Withdraw<'_> {
    fn drop(&mut self) {
        let mut w = lock(&self.conn.waiting);
        if w.get(&self.id).is_some_and(oneshot::Sender::is_closed) {
            w.remove(&self.id);
        }
    }
}

impl Dot {
    pub(super) fn new(
        addr: SocketAddr,
        name: Option<ServerName<'static>>,
        tls: Option<Arc<ClientConfig>>,
    ) -> Self {
        Self {
            addr,
            name,
            tls: tls.map(TlsConnector::from),
            slot: Slot::new(),
        }
    }

    /// The same server and settings, without a connection.
    pub(super) fn twin(&self) -> Self {
        Self {
            addr: self.addr,
            name: self.name.clone(),
            tls: self.tls.clone(),
            slot: Slot::new(),
        }
    }

    /// The client config and the server's name, when both are usable.
    pub(super) fn session(&self) -> Option<(Arc<ClientConfig>, ServerName<'static>)> {
        let (tls, name) = (self.tls.as_ref()?, self.name.as_ref()?);
        Some((Arc::clone(tls.config()), name.clone()))
    }

    /// One query, answered or failed by `end`: the answer and the ID it must carry.
    pub(super) async fn exchange(
        &self,
        q: &Query,
        end: Instant,
    ) -> Result<(Vec<u8>, u16), UpstreamError> {
        let id = AtomicU16::new(0);
        let buf = with_retry(
            &self.slot,
            self.addr,
            end,
            || self.connect(),
            |conn| ask(conn, q, &id, end, self.addr),
        )
        .await?;
        Ok((buf, id.load(Ordering::Relaxed)))
    }

    async fn connect(&self) -> io::Result<Arc<Conn>> {
        let (Some(tls), Some(name)) = (&self.tls, &self.name) else {
            return Err(io::Error::other("no TLS client configuration"));
        };
        let tcp = TcpStream::connect(self.addr).await.inspect_err(|e| {
            crate::fdlimit::warn_if_exhausted("connecting to an upstream over TLS", e);
        })?;
        tcp.set_nodelay(true)?;
        let stream = tls.connect(name.clone(), tcp).await?;
        let (r, w) = tokio::io::split(stream);
        let (tx, rx) = mpsc::channel(MAX_IN_FLIGHT);
        let conn = Arc::new(Conn {
            tx,
            waiting: Mutex::new(HashMap::new()),
            dead: AtomicBool::new(false),
            stop: Notify::new(),
        });
        let reader = tokio::spawn(read(r, Arc::clone(&conn)));
        tokio::spawn(write(w, rx, Arc::clone(&conn), reader.abort_handle()));
        tracing::debug!(upstream = %self.addr, "dns over tls connection open");
        Ok(conn)
    }
}

/// Sends `q` on `conn` under a random ID not in flight there (stored in `id_out`) and
/// waits for its answer until `end`.
async fn ask(
    conn: Arc<Conn>,
    q: &Query,
    id_out: &AtomicU16,
    end: Instant,
    addr: SocketAddr,
) -> Result<Vec<u8>, Failed> {
    let (id, rx) = {
        let mut w = lock(&conn.waiting);
        if !conn.alive() {
            return Err(Failed::Closed("connection closed".into()));
        }
        if w.len() >= MAX_IN_FLIGHT {
            return Err(Failed::Error(UpstreamError::Transport(
                addr,
                "too many queries in flight".into(),
            )));
        }
        // At most MAX_IN_FLIGHT of 65,536 IDs are taken: a free one comes within a few draws.
        let id = loop {
            let id: u16 = rand::random();
            if !w.contains_key(&id) {
                break id;
            }
        };
        let (tx, rx) = oneshot::channel();
        w.insert(id, tx);
        (id, rx)
    };
    id_out.store(id, Ordering::Relaxed);
    let _withdraw = Withdraw { conn: &conn, id };
    let mut body = Vec::new();
    super::write_query(&mut body, q, id);
    let mut frame = Vec::with_capacity(2 + body.len());
    frame.extend_from_slice(&u16::try_from(body.len()).unwrap_or(0).to_be_bytes());
    frame.extend_from_slice(&body);
    match conn.tx.try_send(frame) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(_)) => {
            drop(rx);
            return Err(Failed::Error(UpstreamError::Transport(
                addr,
                "too many queries in flight".into(),
            )));
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {
            conn.close();
            return Err(Failed::Closed("connection closed".into()));
        }
    }
    match timeout_at(end, rx).await {
        Err(_) => Err(Failed::Error(UpstreamError::Timeout(addr))),
        Ok(Ok(buf)) => Ok(buf),
        Ok(Err(_)) => Err(Failed::Closed("connection closed before the answer".into())),
    }
}

/// The reader: answers to their queries until EOF or an error.
async fn read(mut r: ReadHalf<TlsStream<TcpStream>>, conn: Arc<Conn>) {
    let why = loop {
        let len = match r.read_u16().await {
            Ok(n) => n,
            Err(e) => break e,
        };
        let mut buf = vec![0u8; usize::from(len)];
        if let Err(e) = r.read_exact(&mut buf).await {
            break e;
        }
        conn.dispatch(buf);
    };
    tracing::debug!(error = %why, "dns over tls connection closed");
    conn.close();
}

/// The writer: queries out until the connection dies or is idle for [`IDLE`].
async fn write(
    mut w: WriteHalf<TlsStream<TcpStream>>,
    mut rx: mpsc::Receiver<Vec<u8>>,
    conn: Arc<Conn>,
    reader: tokio::task::AbortHandle,
) {
    let mut out = Vec::new();
    let mut idle_at = Instant::now() + IDLE;
    loop {
        tokio::select! {
            m = rx.recv() => {
                let Some(frame) = m else { break };
                out.extend_from_slice(&frame);
                while out.len() < 16 * 1024 {
                    match rx.try_recv() {
                        Ok(f) => out.extend_from_slice(&f),
                        Err(_) => break,
                    }
                }
                let sent = async {
                    w.write_all(&out).await?;
                    w.flush().await
                };
                if sent.await.is_err() {
                    break;
                }
                out.clear();
                idle_at = Instant::now() + IDLE;
            }
            () = conn.stop.notified() => break,
            () = tokio::time::sleep_until(idle_at) => {
                if lock(&conn.waiting).is_empty() {
                    tracing::debug!("dns over tls connection idle; closing it");
                    break;
                }
                idle_at = Instant::now() + IDLE;
            }
        }
    }
    conn.close();
    reader.abort();
    // close_notify, then the socket closes with `w` (the reader's half is gone).
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), w.shutdown()).await;
}
