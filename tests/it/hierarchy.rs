#![allow(dead_code)]
//! A DNS hierarchy of its own on loopback, for recursion tests: a root, TLDs and
//! authoritative servers, each an in-process hickory-server on `127.53.N.x` port 53 (the
//! recursor only speaks to port 53: root hints and glue carry addresses, not ports; tests
//! run as root). `N` is the test's own network, so tests run side by side.
//!
//! Each [`Authority`] serves one zone as an authoritative server does: a name at or under a
//! delegation (an `NS` set below the apex) gets a referral (NS in the authority section,
//! glue in the additional, AA clear); a name with records of the asked type gets them (AA),
//! following CNAMEs inside the zone as BIND does (a loop is followed once round); a name
//! that exists without that type gets NODATA, any other NXDOMAIN, both with the SOA. Every
//! query is counted.

use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, Metadata, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME, NS, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

/// TTL of every record, and the SOA minimum.
pub(crate) const TTL: u32 = 300;

/// `127.53.net.host`.
pub(crate) fn ip(net: u8, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 53, net, host)
}

pub(crate) fn name(s: &str) -> Name {
    Name::from_str(s).unwrap_or_else(|e| panic!("bad name {s:?}: {e}"))
}

/// `name A addr`.
pub(crate) fn a(n: &str, addr: &str) -> Record {
    Record::from_rdata(name(n), TTL, RData::A(A(addr.parse().unwrap())))
}

/// `name CNAME target`.
pub(crate) fn cname(n: &str, target: &str) -> Record {
    Record::from_rdata(name(n), TTL, RData::CNAME(CNAME(name(target))))
}

/// A delegation of `zone` to one server `ns.<zone>` at `addr`: the NS and its glue.
pub(crate) fn delegate(zone: &str, addr: Ipv4Addr) -> Vec<Record> {
    let ns = format!("ns.{zone}");
    vec![
        Record::from_rdata(name(zone), TTL, RData::NS(NS(name(&ns)))),
        a(&ns, &addr.to_string()),
    ]
}

/// A running authoritative server for one zone; stops on drop.
pub(crate) struct Authority {
    pub(crate) addr: Ipv4Addr,
    calls: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<String>>>,
    server: Option<Server<Zone>>,
}

impl Authority {
    /// Serves `origin` (with an SOA and `NS ns.<origin>` at `addr`) and `records` on
    /// `addr:53`, UDP and TCP.
    pub(crate) async fn start(origin: &str, addr: Ipv4Addr, records: Vec<Record>) -> Self {
        let o = name(origin);
        let mut all = apex(origin, addr);
        all.extend(records);
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let zone = Zone {
            origin: o,
            records: all,
            calls: Arc::clone(&calls),
            seen: Arc::clone(&seen),
        };
        Self {
            addr,
            calls,
            seen,
            server: Some(serve(addr, zone).await),
        }
    }

    /// Queries received so far.
    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// The questions received so far, as `NAME TYPE`.
    pub(crate) fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Authority {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown_token().cancel();
        }
    }
}

/// An address on port 53 that never answers (UDP bound, TCP listening, nothing read).
pub(crate) struct Silent {
    udp: std::net::UdpSocket,
    _tcp: std::net::TcpListener,
}

impl Silent {
    pub(crate) fn bind(addr: Ipv4Addr) -> Self {
        let sa = SocketAddr::from((addr, 53));
        let udp = std::net::UdpSocket::bind(sa).unwrap();
        udp.set_nonblocking(true).unwrap();
        Self {
            udp,
            _tcp: std::net::TcpListener::bind(sa).unwrap(),
        }
    }

    /// How many queries came over UDP since the last call (read and dropped).
    pub(crate) fn drain(&self) -> usize {
        let mut buf = [0u8; 512];
        std::iter::from_fn(|| self.udp.recv(&mut buf).ok()).count()
    }
}

/// The apex of `origin` served from `addr`: its SOA, `NS ns.<origin>`
/// (`ns.root-servers.test.` for the root) and that server's address.
pub(crate) fn apex(origin: &str, addr: Ipv4Addr) -> Vec<Record> {
    let o = name(origin);
    let ns = if o.is_root() {
        name("ns.root-servers.test.")
    } else {
        name(&format!("ns.{origin}"))
    };
    let soa = SOA::new(
        ns.clone(),
        name("hostmaster.test."),
        1,
        3600,
        600,
        86400,
        TTL,
    );
    vec![
        Record::from_rdata(o.clone(), TTL, RData::SOA(soa)),
        Record::from_rdata(o, TTL, RData::NS(NS(ns.clone()))),
        Record::from_rdata(ns, TTL, RData::A(A(addr))),
    ]
}

/// Serves `handler` on `addr:53`, UDP and TCP (tests run as root); stops on drop.
pub(crate) async fn serve<H: RequestHandler>(addr: Ipv4Addr, handler: H) -> Server<H> {
    let sa = SocketAddr::from((addr, 53));
    let udp = tokio::net::UdpSocket::bind(sa)
        .await
        .unwrap_or_else(|e| panic!("bind {sa}/udp (tests run as root): {e}"));
    let tcp = tokio::net::TcpListener::bind(sa)
        .await
        .unwrap_or_else(|e| panic!("bind {sa}/tcp: {e}"));
    let mut server = Server::new(handler);
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(5), 32);
    server
}

/// Two CNAME chains of 30 links: `c0` → … → `c30.example.test.` (A 192.0.2.30) inside
/// `example.test.`, and `d0.example.test.` → `d1.<other>.test.` → `d2.example.test.` → …
/// → `d30.example.test.` (A 192.0.2.31), alternating zones. The records of
/// `example.test.` and of `<other>.test.`.
pub(crate) fn chains(other: &str) -> (Vec<Record>, Vec<Record>) {
    let mut example = vec![a("c30.example.test.", "192.0.2.30")];
    for i in 0..30 {
        example.push(cname(
            &format!("c{i}.example.test."),
            &format!("c{}.example.test.", i + 1),
        ));
    }
    let zone = |i: usize| {
        if i.is_multiple_of(2) {
            "example"
        } else {
            other
        }
    };
    let mut away = vec![];
    for i in 0..30 {
        let link = cname(
            &format!("d{i}.{}.test.", zone(i)),
            &format!("d{}.{}.test.", i + 1, zone(i + 1)),
        );
        if i.is_multiple_of(2) {
            example.push(link);
        } else {
            away.push(link);
        }
    }
    example.push(a("d30.example.test.", "192.0.2.31"));
    (example, away)
}

/// A named.root-style hints file naming one root server.
pub(crate) fn hints(root: Ipv4Addr) -> String {
    format!(
        "; the test's own root\n.  3600000  NS  ns.root-servers.test.\nns.root-servers.test. 3600000 A {root}\n"
    )
}

pub(crate) struct Zone {
    origin: Name,
    records: Vec<Record>,
    calls: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Zone {
    /// The deepest delegation (below the apex) at or above `qname`.
    fn cut(&self, qname: &Name) -> Option<&Name> {
        self.records
            .iter()
            .filter(|r| r.record_type() == RecordType::NS && r.name != self.origin)
            .map(|r| &r.name)
            .filter(|n| n.zone_of(qname))
            .max_by_key(|n| n.num_labels())
    }

    fn answer(&self, qname: &Name, qtype: RecordType) -> Message {
        let mut m = Message::query();
        if let Some(cut) = self.cut(qname) {
            let ns: Vec<Record> = self
                .records
                .iter()
                .filter(|r| r.record_type() == RecordType::NS && &r.name == cut)
                .cloned()
                .collect();
            for r in &ns {
                if let RData::NS(NS(target)) = &r.data {
                    m.additionals.extend(
                        self.records
                            .iter()
                            .filter(|g| &g.name == target && g.record_type() == RecordType::A)
                            .cloned(),
                    );
                }
            }
            m.authorities = ns;
            return m;
        }
        m.metadata.authoritative = true;
        let mut at = qname.clone();
        let mut seen = vec![at.clone()];
        loop {
            let found: Vec<Record> = self
                .records
                .iter()
                .filter(|r| r.name == at && r.record_type() == qtype)
                .cloned()
                .collect();
            if !found.is_empty() {
                m.answers.extend(found);
                return m;
            }
            let alias = self.records.iter().find(|r| {
                r.name == at && r.record_type() == RecordType::CNAME && qtype != RecordType::CNAME
            });
            let Some(alias) = alias else { break };
            m.answers.push(alias.clone());
            let RData::CNAME(CNAME(target)) = &alias.data else {
                break;
            };
            if seen.contains(target) || !self.origin.zone_of(target) || self.cut(target).is_some() {
                return m;
            }
            seen.push(target.clone());
            at = target.clone();
        }
        if !m.answers.is_empty() {
            return m;
        }
        let exists = self.records.iter().any(|r| at.zone_of(&r.name));
        if !exists {
            m.metadata.response_code = ResponseCode::NXDomain;
        }
        m.authorities.extend(
            self.records
                .iter()
                .filter(|r| r.record_type() == RecordType::SOA)
                .cloned(),
        );
        m
    }
}

#[async_trait::async_trait]
impl RequestHandler for Zone {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let q = Message::from_vec(request.as_slice())
            .ok()
            .and_then(|m| m.queries.first().cloned());
        if let Some(q) = &q {
            let mut seen = self.seen.lock().unwrap();
            if seen.len() < 1000 {
                seen.push(format!("{} {}", q.name().to_lowercase(), q.query_type()));
            }
        }
        let m = match q {
            Some(q) => self.answer(&q.name().to_lowercase(), q.query_type()),
            None => {
                let mut m = Message::query();
                m.metadata.response_code = ResponseCode::FormErr;
                m
            }
        };
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = m.metadata.authoritative;
        metadata.response_code = m.metadata.response_code;
        metadata.recursion_available = false;
        let edns = request.edns.as_ref().map(|_| {
            let mut e = Edns::new();
            e.set_max_payload(1232).set_version(0);
            e
        });
        let response = MessageResponseBuilder::new(&request.queries, edns.as_ref()).build(
            metadata,
            m.answers.iter(),
            m.authorities.iter(),
            [],
            m.additionals.iter(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => panic!("test authority: cannot send: {e}"),
        }
    }
}
