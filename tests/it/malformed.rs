//! Bad input: malformed, truncated, hostile and odd packets are answered or dropped as DNS
//! says, never panic the server, and never disturb another client's answers.

use std::path::Path;
use std::time::Duration;

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;

use crate::fake_upstream::{FakeUpstream, a};
use crate::harness::{TestServer, first_answer, udp_raw};

async fn setup() -> (FakeUpstream, TestServer) {
    let up = FakeUpstream::start(vec![a("www.test.", "192.0.2.1", 300)]).await;
    let s = TestServer::start(
        &format!(
            "[upstream]\nservers = [\"{}\"]\n[blocking]\nlists = [\"b.txt\"]\n",
            up.addr
        ),
        &[("b.txt", "ads.test\n")],
    )
    .await;
    (up, s)
}

fn header(id: u16, flags: u16, qd: u16, ar: u16) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [id, flags, qd, 0, 0, ar] {
        v.extend_from_slice(&x.to_be_bytes());
    }
    v
}

const QUESTION: &[u8] = b"\x03www\x04test\x00\x00\x01\x00\x01";

#[tokio::test(flavor = "multi_thread")]
async fn runts_and_responses_are_dropped() {
    let (_up, s) = setup().await;
    let short = Duration::from_millis(300);
    assert!(udp_raw(s.addr, &[], short).await.is_none());
    assert!(udp_raw(s.addr, &[1, 2, 3, 4, 5], short).await.is_none());
    let mut resp = header(9, 0x8180, 1, 0);
    resp.extend_from_slice(QUESTION);
    assert!(
        udp_raw(s.addr, &resp, short).await.is_none(),
        "responses are never answered"
    );
    // Still serving.
    assert_eq!(
        first_answer(&s.query("www.test.", RecordType::A).await),
        "192.0.2.1"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn formerr_for_zero_or_two_questions_and_cut_packets() {
    let (_up, s) = setup().await;
    let wait = Duration::from_secs(2);
    let mut two = header(0x1111, 0x0100, 2, 0);
    two.extend_from_slice(QUESTION);
    two.extend_from_slice(QUESTION);
    let zero = header(0x2222, 0x0100, 0, 0);
    let mut cut = header(0x3333, 0x0100, 1, 0);
    cut.extend_from_slice(&QUESTION[..7]);
    let mut bad_opt = header(0x4444, 0x0100, 1, 1);
    bad_opt.extend_from_slice(QUESTION);
    bad_opt.extend_from_slice(&[0, 0, 41, 4]);
    for (pkt, id) in [
        (two, 0x1111),
        (zero, 0x2222),
        (cut, 0x3333),
        (bad_opt, 0x4444),
    ] {
        let raw = udp_raw(s.addr, &pkt, wait).await.expect("FORMERR expected");
        let m = Message::from_vec(&raw).unwrap();
        assert_eq!(m.metadata.id, id);
        assert_eq!(u16::from(m.metadata.response_code), 1, "{m:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn notimp_for_unknown_opcodes_and_badvers_for_edns1() {
    let (_up, s) = setup().await;
    for opcode in [1u16, 2, 4, 5, 9] {
        let mut p = header(0x5000 + opcode, (opcode << 11) | 0x0100, 1, 0);
        p.extend_from_slice(QUESTION);
        let raw = udp_raw(s.addr, &p, Duration::from_secs(2))
            .await
            .expect("NOTIMP expected");
        let m = Message::from_vec(&raw).unwrap();
        assert_eq!(m.metadata.id, 0x5000 + opcode);
        assert_eq!(u16::from(m.metadata.response_code), 4, "opcode {opcode}");
        assert_eq!(m.queries.len(), 1, "question echoed");
    }
    let mut p = header(0x6000, 0x0100, 1, 1);
    p.extend_from_slice(QUESTION);
    p.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 1, 0, 0, 0, 0]);
    let raw = udp_raw(s.addr, &p, Duration::from_secs(2)).await.unwrap();
    let m = Message::from_vec(&raw).unwrap();
    // BADVERS (16): header rcode 0, upper bits in the OPT.
    assert_eq!(u16::from(m.metadata.response_code), 16);
}

#[tokio::test(flavor = "multi_thread")]
async fn names_with_odd_bytes_are_answered_like_any_other() {
    let (up, s) = setup().await;
    let mut p = header(0x7000, 0x0100, 1, 0);
    p.extend_from_slice(b"\x05a b.\xc8\x04test\x00\x00\x01\x00\x01");
    let raw = udp_raw(s.addr, &p, Duration::from_secs(2))
        .await
        .expect("answered");
    let m = Message::from_vec(&raw).unwrap();
    assert_eq!(m.metadata.id, 0x7000);
    assert_eq!(
        u16::from(m.metadata.response_code),
        3,
        "upstream's NXDOMAIN"
    );
    assert_eq!(up.calls(), 1);
    // `ads.test` hidden inside one label is not the blocked name `ads.test`.
    let mut p = header(0x7001, 0x0100, 1, 0);
    p.extend_from_slice(b"\x08ads.test\x00\x00\x01\x00\x01");
    let raw = udp_raw(s.addr, &p, Duration::from_secs(2))
        .await
        .expect("answered");
    let m = Message::from_vec(&raw).unwrap();
    assert_ne!(m.answers.len(), 1, "not blocked as ads.test: {m:?}");
}

/// DNS payloads (UDP, or TCP without the length prefix) of a pcap file.
fn pcap_payloads(path: &Path) -> Vec<Vec<u8>> {
    let b = std::fs::read(path).unwrap();
    let link = u32::from_le_bytes(b[20..24].try_into().unwrap());
    let mut out = Vec::new();
    let mut i = 24;
    while i + 16 <= b.len() {
        let incl = u32::from_le_bytes(b[i + 8..i + 12].try_into().unwrap()) as usize;
        let pkt = &b[i + 16..(i + 16 + incl).min(b.len())];
        i += 16 + incl;
        let ip = match link {
            0 => pkt.get(4..),
            1 => pkt.get(14..),
            _ => None,
        };
        let Some(ip) = ip else { continue };
        let (proto, l4) = match ip.first().map(|v| v >> 4) {
            Some(4) => (ip[9], ip.get(usize::from(ip[0] & 0xf) * 4..)),
            Some(6) => (ip[6], ip.get(40..)),
            _ => continue,
        };
        let Some(l4) = l4 else { continue };
        let payload = match proto {
            17 => l4.get(8..),
            6 => l4.get(usize::from(l4.get(12).copied().unwrap_or(0) >> 4) * 4 + 2..),
            _ => None,
        };
        if let Some(p) = payload.filter(|p| p.len() >= 2) {
            out.push(p.to_vec());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn real_captures_and_random_garbage_never_disturb_other_clients() {
    let (_up, s) = setup().await;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/pcap");
    let mut packets = Vec::new();
    for e in std::fs::read_dir(&dir).expect("../shared/data/pcap must exist") {
        packets.extend(pcap_payloads(&e.unwrap().path()));
    }
    assert!(packets.len() >= 20, "captures read: {}", packets.len());
    // Deterministic garbage: random bytes, and real packets with bytes flipped or cut.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let base = packets.clone();
    for k in 0..3000 {
        let mut p = base[k % base.len()].clone();
        match next() % 3 {
            0 => {
                let n = (next() % 600) as usize;
                p = (0..n).map(|_| next() as u8).collect();
            }
            1 => {
                for _ in 0..4 {
                    let j = (next() as usize) % p.len();
                    p[j] = next() as u8;
                }
            }
            _ => p.truncate((next() as usize) % p.len()),
        }
        packets.push(p);
    }
    let addr = s.addr;
    let flood = tokio::spawn(async move {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for p in &packets {
            let _ = sock.send_to(p, addr).await;
            tokio::task::yield_now().await;
        }
        // Also every capture over TCP, each on its own connection.
        packets.len()
    });
    for _ in 0..50 {
        assert_eq!(
            first_answer(&s.query("www.test.", RecordType::A).await),
            "192.0.2.1"
        );
        assert_eq!(
            first_answer(&s.query("x.ads.test.", RecordType::A).await),
            "0.0.0.0"
        );
    }
    assert!(flood.await.unwrap() > 3000);
    // And over TCP: garbage on one connection, a good query on another.
    for p in pcap_payloads(&dir.join("tcpdump_dns_fwdptr.pcap")) {
        use tokio::io::AsyncWriteExt;
        let mut c = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        let n = p.len().min(65535) as u16;
        let _ = c.write_all(&n.to_be_bytes()).await;
        let _ = c.write_all(&p[..usize::from(n)]).await;
    }
    assert_eq!(
        first_answer(&s.query_tcp("www.test.", RecordType::A).await),
        "192.0.2.1"
    );
}

/// Like the 331-byte query of #10: labels made of `.` bytes, each escaped in the name's text
/// form, so that the text outgrows the wire name. It used to panic the UDP thread, after
/// which the only UDP socket was gone and every client lost DNS over UDP.
fn dotted_labels_query(id: u16) -> Vec<u8> {
    let mut p = header(id, 0x0100, 1, 0);
    for len in [63usize, 63, 63, 62, 63] {
        p.push(len as u8);
        p.extend(std::iter::repeat_n(b'.', len));
    }
    p.extend_from_slice(b"\x00\x00\x01\x00\x01");
    p
}

// See: #10
#[tokio::test(flavor = "multi_thread")]
async fn r10_dotted_labels_do_not_silence_udp() {
    let up = FakeUpstream::start(vec![a("www.test.", "192.0.2.1", 300)]).await;
    // One UDP thread, the default: a panic there used to take UDP away from everyone.
    let s = TestServer::start(
        &format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_threads = 1\n\
             [upstream]\nservers = [\"{}\"]\n",
            up.addr
        ),
        &[],
    )
    .await;
    let p = dotted_labels_query(0x0a0a);
    let raw = udp_raw(s.addr, &p, Duration::from_secs(2))
        .await
        .expect("the crafted query gets an answer");
    let m = Message::from_vec(&raw).unwrap();
    assert_eq!(m.metadata.id, 0x0a0a);
    assert_eq!(u16::from(m.metadata.response_code), 1, "FORMERR: {m:?}");
    for _ in 0..3 {
        assert_eq!(
            first_answer(&s.query("www.test.", RecordType::A).await),
            "192.0.2.1"
        );
    }
}
