//! Out-of-bailiwick records in upstream answers are stripped before caching and relaying
//! (the rules of unbound's scrubber for a forwarder): answers only for the question name and
//! its CNAME chain, authority records only for zones above those names, additional records
//! only for names the kept records point at.
//!
//! The upstream here is a scripted loopback DNS server (UDP), because an honest
//! authoritative server (`fake_upstream`) never sends such records.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME, MX, NS, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::net::UdpSocket;

use crate::harness::TestServer;

/// A loopback UDP DNS server answering every query with `script(query)`; counts queries.
struct ScriptedUpstream {
    addr: SocketAddr,
    calls: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl ScriptedUpstream {
    async fn start(script: fn(&Message) -> Message) -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&calls);
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                let Ok(q) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                let mut r = script(&q);
                r.metadata.id = q.metadata.id;
                r.metadata.message_type = MessageType::Response;
                r.metadata.recursion_desired = q.metadata.recursion_desired;
                r.metadata.recursion_available = true;
                r.queries = q.queries.clone();
                // A fresh OPT: echoing the query's options would echo our COOKIE without a
                // server cookie, which RFC 7873 §5.3 has the forwarder discard.
                r.edns = q.edns.as_ref().map(|_| {
                    let mut e = hickory_proto::op::Edns::new();
                    e.set_max_payload(1232);
                    e
                });
                let _ = sock.send_to(&r.to_vec().unwrap(), from).await;
            }
        });
        Self { addr, calls, task }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Drop for ScriptedUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn n(s: &str) -> Name {
    Name::from_str(s).unwrap()
}

fn rr(name: &str, data: RData) -> Record {
    Record::from_rdata(n(name), 300, data)
}

fn a(name: &str, ip: &str) -> Record {
    rr(name, RData::A(A::from_str(ip).unwrap()))
}

fn soa(zone: &str) -> Record {
    let s = SOA::new(
        n(&format!("ns.{zone}")),
        n(&format!("h.{zone}")),
        1,
        3600,
        600,
        86400,
        60,
    );
    Record::from_rdata(n(zone), 60, RData::SOA(s))
}

/// A poisoning upstream: every answer carries records for other names and zones.
fn script(q: &Message) -> Message {
    let mut m = Message::response(0, hickory_proto::op::OpCode::Query);
    let qname = q.queries[0].name().to_ascii().to_ascii_lowercase();
    let qtype = q.queries[0].query_type();
    let evil_ns = rr("evil.test.", RData::NS(NS(n("ns.evil.test."))));
    match (qname.as_str(), qtype) {
        ("www.example.com.", RecordType::A) => {
            m.answers.push(a("www.example.com.", "192.0.2.80"));
            m.answers.push(a("victim.bank.test.", "6.6.6.6"));
            m.authorities.push(evil_ns);
            m.authorities
                .push(rr("example.com.", RData::NS(NS(n("ns1.example.com.")))));
            m.additionals.push(a("ns.evil.test.", "6.6.6.7"));
            m.additionals.push(a("ns1.example.com.", "192.0.2.53"));
        }
        ("alias.example.com.", RecordType::A) => {
            // The chain's records in any order, each kept; a stray one dropped.
            m.answers.push(a("edge.cdn.test.", "192.0.2.81"));
            m.answers.push(rr(
                "alias.example.com.",
                RData::CNAME(CNAME(n("edge.cdn.test."))),
            ));
            m.answers.push(a("www.bank.test.", "6.6.6.8"));
        }
        ("gone.example.com.", RecordType::AAAA) => {
            // NODATA at the end of a chain: the SOA of the target's zone stays.
            m.answers.push(rr(
                "gone.example.com.",
                RData::CNAME(CNAME(n("x.cdn.test."))),
            ));
            m.authorities.push(soa("cdn.test."));
            m.authorities.push(soa("bank.test."));
        }
        ("example.com.", RecordType::MX) => {
            m.answers.push(rr(
                "example.com.",
                RData::MX(MX::new(10, n("mx.example.net."))),
            ));
            m.additionals.push(a("mx.example.net.", "192.0.2.25"));
            m.additionals.push(a("mx.bank.test.", "6.6.6.9"));
        }
        ("victim.bank.test.", RecordType::A) => {
            m.answers.push(a("victim.bank.test.", "192.0.2.99"));
        }
        _ => m.metadata.response_code = ResponseCode::NXDomain,
    }
    m
}

fn names(rs: &[Record]) -> Vec<String> {
    rs.iter()
        .map(|r| format!("{} {}", r.name.to_ascii().to_ascii_lowercase(), r.data))
        .collect()
}

// See: #10 (an out-of-bailiwick record in an upstream answer was relayed and cached).
#[tokio::test(flavor = "multi_thread")]
async fn r10_out_of_bailiwick_records_are_stripped() {
    let up = ScriptedUpstream::start(script).await;
    let s = TestServer::start(&format!("[upstream]\nservers = [\"{}\"]\n", up.addr), &[]).await;
    for _ in 0..2 {
        // The second time from the cache: stripped there too.
        let m = s.query_edns("www.example.com.", RecordType::A).await;
        assert_eq!(names(&m.answers), ["www.example.com. 192.0.2.80"]);
        assert_eq!(names(&m.authorities), ["example.com. ns1.example.com."]);
        assert_eq!(names(&m.additionals), ["ns1.example.com. 192.0.2.53"]);
    }
    assert_eq!(up.calls(), 1);
    // The stray record was not cached for its own name either.
    let m = s.query("victim.bank.test.", RecordType::A).await;
    assert_eq!(names(&m.answers), ["victim.bank.test. 192.0.2.99"]);
    assert_eq!(up.calls(), 2, "victim.bank.test must be asked upstream");

    let m = s.query("alias.example.com.", RecordType::A).await;
    assert_eq!(
        names(&m.answers),
        [
            "edge.cdn.test. 192.0.2.81",
            "alias.example.com. edge.cdn.test."
        ]
    );
    let m = s.query("gone.example.com.", RecordType::AAAA).await;
    assert_eq!(names(&m.answers), ["gone.example.com. x.cdn.test."]);
    assert_eq!(names(&m.authorities).len(), 1);
    assert!(names(&m.authorities)[0].starts_with("cdn.test. "));
    let m = s.query("example.com.", RecordType::MX).await;
    assert_eq!(names(&m.answers), ["example.com. 10 mx.example.net."]);
    assert_eq!(names(&m.additionals), ["mx.example.net. 192.0.2.25"]);
}
