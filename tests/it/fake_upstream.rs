#![allow(dead_code)]
//! A real, in-process authoritative DNS server for tests (hickory-server 0.26).
//!
//! [`FakeUpstream::start`] serves the zone `test.` on `127.0.0.1` (one ephemeral port, UDP and
//! TCP) through hickory's own `Catalog` + `InMemoryZoneHandler`, so NXDOMAIN/NODATA (with the SOA
//! in the authority section), EDNS and truncation (TC over UDP, full answer over TCP) are
//! hickory's real behaviour. A thin [`RequestHandler`] wrapper counts the queries and keeps the
//! last one before delegating; over UDP it also passes a response-handler wrapper that removes the
//! junk hickory 0.26 leaves after a truncated response to a query without EDNS (see
//! `CleanUdpTruncation`).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    str::FromStr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use hickory_proto::{
    op::{Edns, Header, HeaderCounts, Message, MessageType, Metadata, OpCode, ResponseCode},
    rr::{
        LowerName, Name, RData, Record,
        rdata::{A, AAAA, CNAME, NS, SOA, TXT},
    },
    serialize::binary::{BinDecodable, BinDecoder, BinEncoder},
};
use hickory_server::{
    Server,
    net::{
        NetError,
        runtime::{Time, TokioRuntimeProvider},
        xfer::Protocol,
    },
    server::{Request, RequestHandler, ResponseHandler, ResponseInfo},
    store::in_memory::InMemoryZoneHandler,
    zone_handler::{
        AxfrPolicy, Catalog, MessageResponse, MessageResponseBuilder, Queries, ZoneType,
    },
};

/// Origin of the zone served by [`FakeUpstream::start`].
pub(crate) const ZONE: &str = "test.";
/// TTL of the SOA record, also its `minimum` (negative-caching TTL).
pub(crate) const SOA_TTL: u32 = 60;

/// How long an idle TCP connection is kept open by the server.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Per-connection buffer of outgoing TCP responses (the value hickory's own tests use).
const TCP_RESPONSE_BUFFER: usize = 32;

/// A running authoritative server for `test.`; stopped by [`FakeUpstream::stop`] or on drop.
pub(crate) struct FakeUpstream {
    /// UDP and TCP address (same port) of the server.
    pub(crate) addr: SocketAddr,
    stats: Arc<Stats>,
    server: Option<Server<CountingHandler>>,
}

impl FakeUpstream {
    /// Starts an authoritative server for zone `test.` with an SOA (minimum 60, SOA TTL 60) and
    /// NS, plus the records given.
    ///
    /// Panics if a record cannot be added to the zone (outside `test.`, CNAME clash, not class
    /// IN), or if no port can be bound.
    pub(crate) async fn start(records: Vec<Record>) -> Self {
        Self::spawn(Answer::Zone(zone_catalog(records))).await
    }

    /// Same, but every query is answered with this rcode (e.g. SERVFAIL, REFUSED) and no records.
    pub(crate) async fn start_rcode(rcode: ResponseCode) -> Self {
        Self::spawn(Answer::Rcode(rcode)).await
    }

    async fn spawn(answer: Answer) -> Self {
        let (udp, tcp) = bind_same_port().await;
        let addr = udp.local_addr().expect("fake upstream: local_addr");
        let stats = Arc::new(Stats::default());
        let mut server = Server::new(CountingHandler {
            answer,
            stats: Arc::clone(&stats),
        });
        server.register_socket(udp);
        server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
        Self {
            addr,
            stats,
            server: Some(server),
        }
    }

    /// Number of DNS queries received so far (UDP + TCP together).
    pub(crate) fn calls(&self) -> usize {
        self.stats.calls.load(Ordering::SeqCst)
    }

    /// Number of queries received over TCP only.
    pub(crate) fn tcp_calls(&self) -> usize {
        self.stats.tcp_calls.load(Ordering::SeqCst)
    }

    /// Number of queries received over DNS over QUIC only.
    pub(crate) fn quic_calls(&self) -> usize {
        self.stats.quic_calls.load(Ordering::SeqCst)
    }

    /// The distinct client addresses (IP and port) queries came from: over QUIC, one per
    /// connection (the client's endpoint).
    pub(crate) fn sources(&self) -> usize {
        self.stats.sources.lock().unwrap().len()
    }

    /// Serves DNS over QUIC too (hickory-server's DoQ listener, ALPN `doq`), with the
    /// certificate `certs` chooses, on a UDP port of its own; returns that address.
    pub(crate) async fn serve_quic(
        &mut self,
        certs: Arc<dyn rustls::server::ResolvesServerCert>,
    ) -> SocketAddr {
        let udp = tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("fake upstream: bind quic");
        let addr = udp.local_addr().expect("fake upstream: local_addr");
        self.server
            .as_mut()
            .expect("fake upstream: stopped")
            .register_quic_listener(udp, TCP_IDLE_TIMEOUT, certs)
            .expect("fake upstream: quic listener");
        addr
    }

    /// The last query message received (to check the forwarded RD/CD flags and EDNS DO bit).
    pub(crate) fn last_query(&self) -> Option<Message> {
        self.stats.last_query.lock().unwrap().clone()
    }

    /// Stops the server (also on drop). The sockets are closed once the runtime has dropped the
    /// aborted tasks, so later queries get no answer.
    pub(crate) fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown_token().cancel();
            // Dropping `Server` drops its `JoinSet`, which aborts the UDP/TCP tasks (and, through
            // their own `JoinSet`s, the per-request and per-connection tasks).
            drop(server);
        }
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sockets of a [`dead_upstream`]; the address stays silent as long as this is alive.
pub(crate) struct DeadUpstreamGuard {
    _udp: std::net::UdpSocket,
    _tcp: std::net::TcpListener,
}

/// A loopback UDP+TCP address (same port) that never answers: the UDP socket is bound and the
/// TCP listener listens (so connects succeed through the backlog) but nothing is ever read.
pub(crate) fn dead_upstream() -> (SocketAddr, DeadUpstreamGuard) {
    for _ in 0..64 {
        let udp = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("dead upstream: udp");
        let addr = udp.local_addr().expect("dead upstream: local_addr");
        if let Ok(tcp) = std::net::TcpListener::bind(addr) {
            return (
                addr,
                DeadUpstreamGuard {
                    _udp: udp,
                    _tcp: tcp,
                },
            );
        }
    }
    panic!("dead upstream: no free port for both UDP and TCP");
}

/// `A` record, e.g. `a("www.test.", "192.0.2.1", 300)`.
pub(crate) fn a(name: &str, ip: &str, ttl: u32) -> Record {
    let ip = Ipv4Addr::from_str(ip).expect("a(): bad IPv4 address");
    Record::from_rdata(name_of(name), ttl, RData::A(A(ip)))
}

/// `AAAA` record, e.g. `aaaa("www.test.", "2001:db8::1", 300)`.
pub(crate) fn aaaa(name: &str, ip: &str, ttl: u32) -> Record {
    let ip = Ipv6Addr::from_str(ip).expect("aaaa(): bad IPv6 address");
    Record::from_rdata(name_of(name), ttl, RData::AAAA(AAAA(ip)))
}

/// `TXT` record with one character-string per element (each at most 255 bytes).
pub(crate) fn txt(name: &str, strings: Vec<String>, ttl: u32) -> Record {
    Record::from_rdata(name_of(name), ttl, RData::TXT(TXT::new(strings)))
}

/// `CNAME` record `name -> target`.
pub(crate) fn cname(name: &str, target: &str, ttl: u32) -> Record {
    Record::from_rdata(name_of(name), ttl, RData::CNAME(CNAME(name_of(target))))
}

fn name_of(name: &str) -> Name {
    Name::from_str(name).unwrap_or_else(|e| panic!("bad DNS name {name:?}: {e}"))
}

/// Builds the `test.` zone: SOA + NS at the apex, then `records`.
fn zone_catalog(records: Vec<Record>) -> Catalog {
    let origin = name_of(ZONE);
    let serial = 1;
    let mut zone = InMemoryZoneHandler::<TokioRuntimeProvider>::empty(
        origin.clone(),
        ZoneType::Primary,
        AxfrPolicy::Deny,
        None,
    );
    let soa = SOA::new(
        name_of("ns.test."),
        name_of("hostmaster.test."),
        serial,
        3600,
        600,
        86400,
        SOA_TTL,
    );
    let apex = [
        Record::from_rdata(origin.clone(), SOA_TTL, RData::SOA(soa)),
        Record::from_rdata(origin.clone(), 3600, RData::NS(NS(name_of("ns.test.")))),
        a("ns.test.", "127.0.0.1", 3600),
    ];
    for record in apex.into_iter().chain(records) {
        let shown = record.to_string();
        assert!(
            zone.upsert_mut(record, serial),
            "fake upstream: cannot add {shown} to zone {ZONE}"
        );
    }
    let mut catalog = Catalog::new();
    catalog.upsert(LowerName::new(&origin), vec![Arc::new(zone)]);
    catalog
}

/// Binds UDP and TCP on the same ephemeral loopback port.
async fn bind_same_port() -> (tokio::net::UdpSocket, tokio::net::TcpListener) {
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    for _ in 0..64 {
        let udp = tokio::net::UdpSocket::bind((localhost, 0))
            .await
            .expect("fake upstream: bind udp");
        let addr = udp.local_addr().expect("fake upstream: local_addr");
        if let Ok(tcp) = tokio::net::TcpListener::bind(addr).await {
            return (udp, tcp);
        }
    }
    panic!("fake upstream: no free port for both UDP and TCP");
}

#[derive(Default)]
struct Stats {
    calls: AtomicUsize,
    tcp_calls: AtomicUsize,
    quic_calls: AtomicUsize,
    sources: Mutex<std::collections::HashSet<SocketAddr>>,
    last_query: Mutex<Option<Message>>,
}

enum Answer {
    /// hickory's own authoritative lookup.
    Zone(Catalog),
    /// Fixed rcode, no records.
    Rcode(ResponseCode),
}

struct CountingHandler {
    answer: Answer,
    stats: Arc<Stats>,
}

#[async_trait::async_trait]
impl RequestHandler for CountingHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        // The raw bytes are exactly what the client sent (EDNS OPT included).
        if let Ok(message) = Message::from_vec(request.as_slice()) {
            *self.stats.last_query.lock().unwrap() = Some(message);
        }
        // Count after storing, so `calls() == n` implies `last_query()` is the n-th query.
        if request.protocol() == Protocol::Tcp {
            self.stats.tcp_calls.fetch_add(1, Ordering::SeqCst);
        }
        if request.protocol() == Protocol::Quic {
            self.stats.quic_calls.fetch_add(1, Ordering::SeqCst);
        }
        self.stats.sources.lock().unwrap().insert(request.src());
        self.stats.calls.fetch_add(1, Ordering::SeqCst);

        match &self.answer {
            Answer::Zone(catalog) if request.protocol() == Protocol::Udp => {
                let response_handle = CleanUdpTruncation(response_handle);
                catalog
                    .handle_request::<_, T>(request, response_handle)
                    .await
            }
            Answer::Zone(catalog) => {
                catalog
                    .handle_request::<R, T>(request, response_handle)
                    .await
            }
            Answer::Rcode(rcode) => send_rcode(request, *rcode, response_handle).await,
        }
    }
}

/// Answers with `rcode` and no records, with the same EDNS handling as hickory's `Catalog`
/// (OPT echoed only if the query had one, payload = max(query payload, 512), version 0, high
/// rcode bits in the OPT). The response goes through hickory's encoder, so UDP size limits hold.
async fn send_rcode<R: ResponseHandler>(
    request: &Request,
    rcode: ResponseCode,
    mut response_handle: R,
) -> ResponseInfo {
    let edns = request.edns.as_ref().map(|query_edns| {
        let mut edns = Edns::new();
        edns.set_max_payload(query_edns.max_payload())
            .set_version(0)
            .set_rcode_high(rcode.high());
        edns
    });
    let response = MessageResponseBuilder::new(&request.queries, edns.as_ref())
        .error_msg(&request.metadata, rcode);
    match response_handle.send_response(response).await {
        Ok(info) => info,
        Err(_) => {
            let mut metadata = Metadata::response_from_request(&request.metadata);
            metadata.response_code = ResponseCode::ServFail;
            ResponseInfo::from(Header {
                metadata,
                counts: HeaderCounts::default(),
            })
        }
    }
}

/// UDP response handler fixing a hickory-server 0.26 encoder bug.
///
/// hickory truncates an oversize UDP answer correctly (it drops the records that do not fit and
/// sets TC), but when the response has no OPT record (query without EDNS, 512-byte limit) the
/// bytes of the record that did not fit are left after the end of the message: e.g. a 298-byte
/// datagram whose header describes a 26-byte message. The counts are right, so lenient decoders
/// (hickory's own) do not notice, but it is not a valid DNS message.
///
/// This wrapper encodes the response exactly as hickory's `ResponseHandle` does for UDP (limit:
/// the response OPT payload, else 512), keeps only the bytes up to the encoder offset, decodes
/// them and hands the clean, already-fitting message to the real handler, which re-encodes it
/// unchanged (TC kept, no further truncation).
#[derive(Clone)]
struct CleanUdpTruncation<R>(R);

#[async_trait::async_trait]
impl<R: ResponseHandler> ResponseHandler for CleanUdpTruncation<R> {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let id = response.metadata().id;
        let max_size = response.edns().map_or(512, Edns::max_payload);
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(max_size);
        let emitted = response.destructive_emit(&mut encoder);
        let end = encoder.offset();
        bytes.truncate(end);

        let clean = emitted.map_err(NetError::from).and_then(|_| {
            let message = Message::from_vec(&bytes)?;
            let mut decoder = BinDecoder::new(&bytes);
            let header = Header::read(&mut decoder)?;
            let queries = Queries::read(&mut decoder, usize::from(header.counts.queries))?;
            Ok((message, queries))
        });
        match clean {
            Ok((message, queries)) => {
                let rebuilt = MessageResponseBuilder::new(&queries, message.edns.as_ref()).build(
                    message.metadata,
                    message.answers.iter(),
                    message.authorities.iter(),
                    [],
                    message.additionals.iter(),
                );
                self.0.send_response(rebuilt).await
            }
            // What hickory's own encoder does on an encoding error: a bare SERVFAIL.
            Err(_) => {
                let queries = Queries::read(&mut BinDecoder::new(&[]), 0)?;
                let mut metadata = Metadata::new(id, MessageType::Response, OpCode::Query);
                metadata.response_code = ResponseCode::ServFail;
                let response =
                    MessageResponseBuilder::new(&queries, None).build_no_records(metadata);
                self.0.send_response(response).await
            }
        }
    }
}
