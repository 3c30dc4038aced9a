//! Test support: start the real service on loopback with a config template, and talk to it
//! with real DNS messages (hickory-proto) over UDP and TCP (DNS over TLS: `tls.rs`; over
//! HTTPS: `doh.rs`).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Once;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use sinkhole::config::Config;
use sinkhole::pipeline::{Clock, Policy};
use sinkhole::service::{Service, ServiceOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

pub(crate) fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
    });
}

/// The real service, on 127.0.0.1:0, with its config and lists in a temp folder.
pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    pub(crate) dir: tempfile::TempDir,
    /// The service's clock: `clock.advance(d)` lets TTLs run down without sleeping.
    pub(crate) clock: Clock,
    service: Option<Service>,
}

impl TestServer {
    /// Starts with a config template: `{dir}` is replaced by the temp folder. Files named in
    /// `files` are written there first.
    pub(crate) async fn start(toml: &str, files: &[(&str, &str)]) -> Self {
        init_tracing();
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let toml = toml.replace("{dir}", &dir.path().display().to_string());
        let toml = if toml.contains("[server]") {
            toml
        } else {
            format!("[server]\nlisten = [\"127.0.0.1:0\"]\nudp_threads = 2\n{toml}")
        };
        let path = dir.path().join("sinkhole.toml");
        std::fs::write(&path, &toml).unwrap();
        let cfg =
            Config::load(&path).unwrap_or_else(|e| panic!("test config invalid:\n{e}\n{toml}"));
        let (policy, _) = Policy::load(&cfg).unwrap();
        let tls_listen = cfg.server.tls.as_ref().map_or(&[][..], |t| &t.listen);
        let https_listen = cfg.server.tls.as_ref().map_or(&[][..], |t| &t.https_listen);
        let quic_listen = cfg.server.tls.as_ref().map_or(&[][..], |t| &t.quic_listen);
        let sockets = sinkhole::server::bind(&cfg.server.listen, cfg.server.udp_threads)
            .and_then(|s| s.with_tls(tls_listen))
            .and_then(|s| s.with_https(https_listen))
            .and_then(|s| s.with_quic(quic_listen))
            .unwrap();
        let addr = sockets.local_addrs()[0];
        let clock = Clock::system();
        let opts = ServiceOptions {
            watch_interval: Duration::from_millis(100),
            config_path: Some(path),
            clock: clock.clone(),
            before_serving: None,
        };
        let service = start_service((cfg, policy, sockets), opts).unwrap();
        Self {
            addr,
            dir,
            clock,
            service: Some(service),
        }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) fn service(&self) -> &Service {
        self.service.as_ref().unwrap()
    }

    /// The HTTP API's address (the config must set `[http] listen = ["127.0.0.1:0"]`).
    pub(crate) fn http_addr(&self) -> SocketAddr {
        self.service().http_addrs()[0]
    }

    /// The DNS-over-TLS address (the config must set `server.tls_listen`).
    pub(crate) fn tls_addr(&self) -> SocketAddr {
        self.service().tls_addrs()[0]
    }

    /// The DNS-over-HTTPS address (the config must set `server.https_listen`).
    pub(crate) fn https_addr(&self) -> SocketAddr {
        self.service().https_addrs()[0]
    }

    /// The DNS-over-QUIC address (the config must set `server.quic_listen`).
    pub(crate) fn quic_addr(&self) -> SocketAddr {
        self.service().quic_addrs()[0]
    }

    pub(crate) async fn query(&self, name: &str, rt: RecordType) -> Message {
        udp_exchange(self.addr, &make_query(name, rt, None))
            .await
            .expect("no answer")
    }

    pub(crate) async fn query_edns(&self, name: &str, rt: RecordType) -> Message {
        udp_exchange(self.addr, &make_query(name, rt, Some(1232)))
            .await
            .expect("no answer")
    }

    /// A UDP query sent from `src` (any 127.0.0.0/8 address on Linux).
    pub(crate) async fn query_from(&self, src: &str, name: &str, rt: RecordType) -> Message {
        let s = UdpSocket::bind((src, 0)).await.unwrap();
        s.connect(self.addr).await.unwrap();
        let q = make_query(name, rt, None);
        s.send(&q.to_vec().unwrap()).await.unwrap();
        let mut buf = vec![0u8; 65535];
        let n = tokio::time::timeout(Duration::from_secs(5), s.recv(&mut buf))
            .await
            .expect("no answer")
            .unwrap();
        let m = Message::from_vec(&buf[..n]).expect("answer does not parse");
        check_matches(&q, &m);
        m
    }

    /// Stops the service (flushing the query log), as a clean shutdown does.
    pub(crate) fn stop(&mut self) {
        if let Some(s) = self.service.take() {
            s.shutdown();
        }
    }

    pub(crate) async fn query_tcp(&self, name: &str, rt: RecordType) -> Message {
        tcp_exchange(self.addr, &make_query(name, rt, None))
            .await
            .expect("no answer")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.service.take() {
            s.shutdown();
        }
    }
}

/// A query message: RD set, random-ish ID, optional EDNS payload.
pub(crate) fn make_query(name: &str, rt: RecordType, edns: Option<u16>) -> Message {
    let mut m = Message::new(rand_id(), MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    let mut q = Query::query(Name::from_str(name).unwrap(), rt);
    q.set_query_class(DNSClass::IN);
    m.add_query(q);
    if let Some(p) = edns {
        let mut e = Edns::new();
        e.set_max_payload(p);
        m.edns = Some(e);
    }
    m
}

fn rand_id() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static N: AtomicU16 = AtomicU16::new(0x4000);
    N.fetch_add(7, Ordering::Relaxed)
}

/// Sends raw bytes over UDP and waits up to `wait` for one datagram from `addr`. The
/// socket is connected, so a late answer of another test's server to a reused port (with a
/// query ID that has come round again) is not taken for this one's.
pub(crate) async fn udp_raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
    // Never the server's own port: a server not up yet (`spawn_serve` probing) leaves it
    // free, and a socket given it as its ephemeral port would send the query to itself.
    let s = loop {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        if s.local_addr().unwrap() != addr {
            break s;
        }
    };
    s.connect(addr).await.unwrap();
    s.send(bytes).await.unwrap();
    let mut buf = vec![0u8; 65535];
    match tokio::time::timeout(wait, s.recv(&mut buf)).await {
        Ok(Ok(n)) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

/// A raw A query for `name` written byte for byte (hickory may change its case), with the
/// answer's raw bytes; asserts the question comes back byte-identical.
pub(crate) async fn query_exact_case(addr: SocketAddr, name: &str) -> Message {
    let mut pkt = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.trim_end_matches('.').split('.') {
        pkt.push(label.len() as u8);
        pkt.extend_from_slice(label.as_bytes());
    }
    pkt.extend_from_slice(&[0, 0, 1, 0, 1]);
    let raw = udp_raw(addr, &pkt, Duration::from_secs(5))
        .await
        .expect("no answer");
    assert_eq!(&raw[..2], &pkt[..2], "ID");
    assert_eq!(
        &raw[12..pkt.len()],
        &pkt[12..],
        "question not echoed byte for byte"
    );
    Message::from_vec(&raw).unwrap()
}

/// One UDP exchange; checks that the answer's ID and question match the query.
pub(crate) async fn udp_exchange(addr: SocketAddr, q: &Message) -> Option<Message> {
    let raw = udp_raw(addr, &q.to_vec().unwrap(), Duration::from_secs(5)).await?;
    let m = Message::from_vec(&raw).expect("answer does not parse");
    check_matches(q, &m);
    Some(m)
}

/// One TCP exchange.
pub(crate) async fn tcp_exchange(addr: SocketAddr, q: &Message) -> Option<Message> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    let bytes = q.to_vec().unwrap();
    s.write_all(&(bytes.len() as u16).to_be_bytes())
        .await
        .ok()?;
    s.write_all(&bytes).await.ok()?;
    let len = tokio::time::timeout(Duration::from_secs(5), s.read_u16())
        .await
        .ok()?
        .ok()?;
    let mut buf = vec![0u8; len as usize];
    s.read_exact(&mut buf).await.ok()?;
    let m = Message::from_vec(&buf).expect("answer does not parse");
    check_matches(q, &m);
    Some(m)
}

fn check_matches(q: &Message, a: &Message) {
    assert_eq!(a.metadata.id, q.metadata.id, "response ID differs");
    assert_eq!(a.metadata.message_type, MessageType::Response);
    assert_eq!(a.queries.len(), 1);
    // Byte-exact question, case included.
    assert_eq!(
        a.queries[0].name().to_string(),
        q.queries[0].name().to_string()
    );
    assert_eq!(a.queries[0].query_type(), q.queries[0].query_type());
}

/// The rcode as a number.
pub(crate) fn rcode(m: &Message) -> u16 {
    u16::from(m.metadata.response_code)
}

/// The first answer's data as text.
pub(crate) fn first_answer(m: &Message) -> String {
    m.answers
        .first()
        .map(|r| r.data.to_string())
        .unwrap_or_default()
}

/// The Extended DNS Error (code, text) of a response, if any.
pub(crate) fn ede(m: &Message) -> Option<(u16, String)> {
    use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
    match m.edns.as_ref()?.options().get(EdnsCode::from(15))? {
        EdnsOption::Unknown(15, data) if data.len() >= 2 => Some((
            u16::from_be_bytes([data[0], data[1]]),
            String::from_utf8_lossy(&data[2..]).into_owned(),
        )),
        _ => None,
    }
}

/// The real binary, as a command to run.
pub(crate) fn bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_sinkhole"))
}

/// Sends `SIG{sig}` (`"HUP"`, `"TERM"`) to `child` with the `kill` command.
pub(crate) fn signal(child: &std::process::Child, sig: &str) {
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args([&format!("-{sig}"), &pid])
            .status()
            .unwrap()
            .success()
    );
}

/// Stops a server started by [`spawn_serve`] with SIGTERM, asserts that it exits with
/// success, and returns what it wrote to stderr.
pub(crate) fn stop_serve(mut child: std::process::Child) -> String {
    signal(&child, "TERM");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let mut log = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut log).unwrap();
    log
}

/// A loopback port free on both UDP and TCP, for a server started as a separate process.
pub(crate) fn free_port() -> u16 {
    loop {
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Starts the real binary as `sinkhole serve --config <config>` (stderr piped, for the test to
/// read) and waits, at most 10 s, until `probe` gets an answer from `addr`; returns the child
/// and that first answer.
// The child is returned to the caller, which signals and waits on it.
#[allow(clippy::zombie_processes)]
pub(crate) async fn spawn_serve(
    config: &std::path::Path,
    addr: SocketAddr,
    probe: &str,
) -> (std::process::Child, Message) {
    let mut child = bin()
        .args(["serve", "--config"])
        .arg(config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    loop {
        let q = make_query(probe, RecordType::A, None);
        let answer = tokio::time::timeout(Duration::from_millis(300), udp_exchange(addr, &q)).await;
        if let Ok(Some(m)) = answer {
            return (child, m);
        }
        if t.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("server did not start");
        }
    }
}

/// The HTTP client of the API tests: statuses are returned, not errors; a call that takes
/// longer than 30 s fails.
pub(crate) fn http_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// A loaded config, its policy and its bound DNS sockets: what `Service::start` takes.
pub(crate) type Bound = (Config, Policy, sinkhole::server::Sockets);

/// The config `toml`, written to `dir/s.toml` and loaded, with its DNS sockets bound.
pub(crate) fn load_and_bind(dir: &std::path::Path, toml: &str) -> Bound {
    let path = dir.join("s.toml");
    std::fs::write(&path, toml).unwrap();
    let cfg = Config::load(&path).unwrap_or_else(|e| panic!("test config invalid:\n{e}\n{toml}"));
    let (policy, _) = Policy::load(&cfg).unwrap();
    let sockets = sinkhole::server::bind(&cfg.server.listen, cfg.server.udp_threads).unwrap();
    (cfg, policy, sockets)
}

/// `Service::start` on the current runtime.
pub(crate) fn start_service(
    (cfg, policy, sockets): Bound,
    opts: ServiceOptions,
) -> std::io::Result<Service> {
    Service::start(
        cfg,
        policy,
        sockets,
        &tokio::runtime::Handle::current(),
        opts,
    )
}
