//! One question to one authoritative server, and what its answer is to the walk.
//!
//! A query goes out over UDP from a socket of its own (a fresh port and a random ID per
//! question, so that a spoofed answer has both to guess), with EDNS (1232 bytes, DO when
//! validating) and RD clear; an answer with TC is asked again over TCP. Only an answer with
//! our ID and our question is taken; anything else on the socket is ignored.
//!
//! [`classify`] reads what the walk needs from the answer's header, and parses the message
//! only when it may be a referral: the common case (the answer to the question, from the
//! zone's own server) costs no parse here.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use hickory_resolver::proto::op::Message;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, timeout_at};

use crate::dns::wire::{AA, EDNS_PAYLOAD, HEADER_LEN, MAX_MESSAGE, QR, TC, TYPE_OPT, rcode};

/// Why one exchange gave nothing usable.
#[derive(Debug)]
pub(super) enum Failed {
    /// No answer by the wait's end.
    Silent,
    /// The socket failed, or the server closed the connection.
    Io,
}

/// Bytes of the OPT record a query ends with.
const OPT_LEN: usize = 11;

/// The query for `qname` (written lower case) and `qtype`, ID `id`: RD clear, EDNS with our
/// payload size, DO when `dnssec_ok`.
pub(super) fn query(qname: &Name, qtype: RecordType, id: u16, dnssec_ok: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + 64 + 4 + OPT_LEN);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 1]);
    // A name read by hickory has labels of at most 63 bytes.
    for label in qname.iter() {
        out.push(u8::try_from(label.len()).unwrap_or(63));
        out.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    out.push(0);
    out.extend_from_slice(&u16::from(qtype).to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    // OPT: root owner, payload size as class, flags in the TTL (DO is its top bit).
    out.push(0);
    out.extend_from_slice(&TYPE_OPT.to_be_bytes());
    out.extend_from_slice(&EDNS_PAYLOAD.to_be_bytes());
    out.extend_from_slice(&[0, 0, if dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
    out
}

/// Sets the ID of query `sent`.
pub(super) fn set_id(sent: &mut [u8], id: u16) {
    if let Some(at) = sent.get_mut(..2) {
        at.copy_from_slice(&id.to_be_bytes());
    }
}

/// True when message `pkt` has TC set.
fn truncated(pkt: &[u8]) -> bool {
    pkt.get(2).is_some_and(|f| f & (TC >> 8) as u8 != 0)
}

/// True when `pkt` answers `sent` (same ID and question).
fn answers(pkt: &[u8], sent: &[u8]) -> bool {
    let q = HEADER_LEN..sent.len().saturating_sub(OPT_LEN);
    let flags = pkt.get(2).copied().unwrap_or(0);
    pkt.get(0..2) == sent.get(0..2)
        && flags & 0x80 != 0
        && pkt.get(4..6) == Some(&[0, 1])
        && match (pkt.get(q.clone()), sent.get(q)) {
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            _ => false,
        }
}

/// Asks `server` the query `sent`, waiting until `until`: the answer (over TCP when the UDP
/// one was truncated).
pub(super) async fn ask(
    server: SocketAddr,
    sent: &[u8],
    until: Instant,
) -> Result<Vec<u8>, Failed> {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(local).await.map_err(|_| Failed::Io)?;
    sock.connect(server).await.map_err(|_| Failed::Io)?;
    sock.send(sent).await.map_err(|_| Failed::Io)?;
    // Room for more than the payload size we asked for (a server may ignore it), not
    // zeroed: `recv_buf` fills the spare capacity.
    let mut buf = Vec::with_capacity(usize::from(EDNS_PAYLOAD) * 4);
    loop {
        buf.clear();
        match timeout_at(until, sock.recv_buf(&mut buf)).await {
            Err(_) => return Err(Failed::Silent),
            // An ICMP error (port unreachable) on a connected socket: nobody there.
            Ok(Err(_)) => return Err(Failed::Io),
            Ok(Ok(_)) => {}
        }
        if answers(&buf, sent) {
            break;
        }
    }
    if !truncated(&buf) {
        return Ok(buf);
    }
    // Boxed: the TCP exchange's future is only made for the rare truncated answer.
    timeout_at(until, Box::pin(over_tcp(server, sent)))
        .await
        .map_err(|_| Failed::Silent)?
}

/// The same question over TCP (RFC 7766): one query, one answer, then the connection closes.
async fn over_tcp(server: SocketAddr, sent: &[u8]) -> Result<Vec<u8>, Failed> {
    let mut s = TcpStream::connect(server).await.map_err(|_| Failed::Io)?;
    let mut framed = Vec::with_capacity(sent.len() + 2);
    framed.extend_from_slice(&u16::try_from(sent.len()).unwrap_or(0).to_be_bytes());
    framed.extend_from_slice(sent);
    s.write_all(&framed).await.map_err(|_| Failed::Io)?;
    loop {
        let len = usize::from(s.read_u16().await.map_err(|_| Failed::Io)?);
        let mut pkt = vec![0u8; len.min(MAX_MESSAGE)];
        s.read_exact(&mut pkt).await.map_err(|_| Failed::Io)?;
        if answers(&pkt, sent) {
            // Still truncated over TCP: of no use.
            if truncated(&pkt) {
                return Err(Failed::Io);
            }
            return Ok(pkt);
        }
    }
}

/// What an answer is to the walk.
#[derive(Debug, PartialEq, Eq)]
pub enum Kind {
    /// The zone's answer to the question: records, a CNAME, no data, or NXDOMAIN.
    Answer,
    /// A delegation to `zone`, below the zone asked and at or above the name asked.
    Referral(Referral),
    /// No use (an error rcode, a referral sideways or up, an empty non-authoritative
    /// answer): the zone's next server is asked.
    Lame,
}

/// A referral's name servers and the glue that came with it.
#[derive(Debug, PartialEq, Eq)]
pub struct Referral {
    /// The zone delegated.
    pub zone: Name,
    /// Its name servers' names (lower case).
    pub servers: Vec<Name>,
    /// Addresses of those names given in the additional section (within `from`, the zone
    /// that referred).
    pub glue: Vec<(Name, std::net::IpAddr)>,
    /// The lowest TTL of the NS records.
    pub ttl: u32,
}

/// What `pkt` (an answer to `asked`, sent to a server of `from`) is to the walk.
pub fn classify(pkt: &[u8], from: &Name, asked: &Name) -> Kind {
    let (Some(&f1), Some(&f2)) = (pkt.get(2), pkt.get(3)) else {
        return Kind::Lame;
    };
    let flags = u16::from_be_bytes([f1, f2]);
    let count = |i: usize| {
        pkt.get(i..i + 2)
            .and_then(|b| <[u8; 2]>::try_from(b).ok())
            .map_or(0, u16::from_be_bytes)
    };
    let (an, ns) = (count(6), count(8));
    // A message cut short or garbled: the zone's next server is asked.
    if !crate::dns::wire::well_formed(pkt) {
        return Kind::Lame;
    }
    match flags & 0x000F {
        rcode::NXDOMAIN => return Kind::Answer,
        rcode::NOERROR => {}
        _ => return Kind::Lame,
    }
    if flags & QR == 0 {
        return Kind::Lame;
    }
    if an > 0 || (flags & AA != 0 && ns == 0) {
        return Kind::Answer;
    }
    let Ok(msg) = Message::from_vec(pkt) else {
        return Kind::Lame;
    };
    let mut referral: Option<Referral> = None;
    let mut soa = false;
    for r in &msg.authorities {
        match &r.data {
            RData::NS(target) => {
                let owner = r.name.to_lowercase();
                let below = owner.num_labels() > from.num_labels() && from.zone_of(&owner);
                if !below || !owner.zone_of(asked) {
                    continue;
                }
                let entry = referral.get_or_insert_with(|| Referral {
                    zone: owner.clone(),
                    servers: Vec::new(),
                    glue: Vec::new(),
                    ttl: u32::MAX,
                });
                if entry.zone == owner && entry.servers.len() < 16 {
                    entry.servers.push(target.0.to_lowercase());
                    entry.ttl = entry.ttl.min(r.ttl);
                }
            }
            RData::SOA(_) => soa = true,
            _ => {}
        }
    }
    if let Some(mut referral) = referral {
        // Glue only from within the referring zone (its bailiwick), for the names named.
        for r in &msg.additionals {
            let addr = match &r.data {
                RData::A(a) => std::net::IpAddr::V4(a.0),
                RData::AAAA(a) => std::net::IpAddr::V6(a.0),
                _ => continue,
            };
            let owner = r.name.to_lowercase();
            if from.zone_of(&owner) && referral.servers.contains(&owner) {
                referral.glue.push((owner, addr));
            }
        }
        return Kind::Referral(referral);
    }
    // No data from a server that did not set AA but says whose zone it is.
    if soa || flags & AA != 0 {
        return Kind::Answer;
    }
    Kind::Lame
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn n(s: &str) -> Name {
        Name::from_str(s).unwrap()
    }

    #[test]
    fn queries_carry_edns_and_do_when_asked() {
        let q = query(&n("WWW.Example."), RecordType::AAAA, 0xBEEF, true);
        let m = Message::from_vec(&q).unwrap();
        assert_eq!(m.metadata.id, 0xBEEF);
        assert!(!m.metadata.recursion_desired);
        assert_eq!(m.queries[0].name(), &n("www.example."));
        assert_eq!(m.queries[0].query_type(), RecordType::AAAA);
        let edns = m.edns.as_ref().unwrap();
        assert!(edns.flags().dnssec_ok);
        assert_eq!(edns.max_payload(), EDNS_PAYLOAD);
        let plain = Message::from_vec(&query(&Name::root(), RecordType::NS, 1, false)).unwrap();
        assert!(!plain.edns.unwrap().flags().dnssec_ok);
        assert!(plain.queries[0].name().is_root());
    }

    #[test]
    fn a_garbled_or_cut_answer_is_of_no_use() {
        let (from, asked) = (n("example."), n("a.example."));
        let sent = query(&asked, RecordType::A, 7, false);
        let mut reply = sent[..sent.len() - 11].to_vec();
        reply[2] = 0x84; // QR, AA
        reply[10..12].copy_from_slice(&[0, 0]);
        reply[6..8].copy_from_slice(&[0, 1]);
        reply.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
        assert_eq!(classify(&reply, &from, &asked), Kind::Answer);
        let cut = &reply[..reply.len() - 2];
        assert_eq!(
            classify(cut, &from, &asked),
            Kind::Lame,
            "a record cut short"
        );
        let mut more = reply.clone();
        more[7] = 2;
        assert_eq!(
            classify(&more, &from, &asked),
            Kind::Lame,
            "a record missing"
        );
        let mut nx = reply.clone();
        nx[3] = 3;
        assert_eq!(classify(&nx, &from, &asked), Kind::Answer, "NXDOMAIN");
        let mut refused = reply;
        refused[3] = 5;
        assert_eq!(classify(&refused, &from, &asked), Kind::Lame);
    }

    #[test]
    fn only_our_id_and_question_answer() {
        let mut sent = query(&n("a.example."), RecordType::A, 6, false);
        set_id(&mut sent, 7);
        let mut reply = sent.clone();
        reply[2] |= 0x80;
        assert!(answers(&reply, &sent));
        let mut upper = reply.clone();
        upper[13] = b'A';
        assert!(answers(&upper, &sent), "case does not matter");
        let mut other_id = reply.clone();
        other_id[1] = 8;
        assert!(!answers(&other_id, &sent));
        let mut other_name = reply.clone();
        other_name[13] = b'b';
        assert!(!answers(&other_name, &sent));
        assert!(!answers(&sent, &sent), "a query is not an answer");
        assert!(!answers(&reply[..5], &sent));
    }
}
