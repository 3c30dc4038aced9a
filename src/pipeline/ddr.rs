//! `Ddr`: Discovery of Designated Resolvers (RFC 9462) that points clients at sinkhole's
//! own encrypted listeners.
//!
//! A client that learns its resolver's address from DHCP asks `_dns.resolver.arpa` (type
//! SVCB) whether that resolver also speaks DNS over TLS, HTTPS or QUIC, and upgrades to it.
//! When sinkhole serves encrypted DNS and `server.name` is set, the answer is its own
//! endpoints: one SVCB record per listener kind and port (ALPN `dot`, `h2` or `doq`, the
//! port, the addresses
//! of listeners bound to a specific address as `ipv4hint`/`ipv6hint`, and for DoH the
//! `dohpath`), with `server.name` as the target, the name the certificate must carry for
//! the client to accept it. `_dns.<server.name>` (RFC 9461's discovery by name) gets the
//! same records. So an upgraded client still gets filtered answers. Without an encrypted
//! listener, or without a name, the stage answers nothing and the bypass signal's NODATA
//! (see `blocking`) keeps clients from upgrading to a resolver of their own choosing.
//!
//! Before the lists: the answer describes this resolver, whatever a list says. The records
//! are written once, when the pipeline is built; a query costs one type compare when the
//! stage is on, one branch when it is off.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::flow::{Answer, Flow, Reply};
use super::local::Prepared;
use super::request::Request;
use super::{Action, RuleRef};
use crate::config::ServerConfig;
use crate::dns::wire::CLASS_IN;

/// The SVCB record type (RFC 9460).
pub const TYPE_SVCB: u16 = 64;
/// TTL of the answers: the endpoints change only with a restart.
const TTL: u32 = 300;
/// The path template of DNS over HTTPS (RFC 8484; the `dohpath` key of RFC 9461).
pub const DOH_PATH: &str = "/dns-query{?dns}";

/// SvcParamKeys (RFC 9460 §14.3.2, RFC 9461).
const KEY_ALPN: u16 = 1;
const KEY_PORT: u16 = 3;
const KEY_IPV4HINT: u16 = 4;
const KEY_IPV6HINT: u16 = 6;
const KEY_DOHPATH: u16 = 7;

/// One encrypted endpoint kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// DNS over TLS (RFC 7858), ALPN `dot`.
    Tls,
    /// DNS over HTTPS (RFC 8484), ALPN `h2`.
    Https,
    /// DNS over QUIC (RFC 9250), ALPN `doq`.
    Quic,
}

impl Kind {
    /// The ALPN id advertised for this kind.
    fn alpn(self) -> &'static str {
        match self {
            Self::Tls => "dot",
            Self::Https => "h2",
            Self::Quic => "doq",
        }
    }

    /// The order of the records: DoT, DoH, then DoQ (the SVCB priority follows it).
    fn rank(self) -> u8 {
        match self {
            Self::Tls => 0,
            Self::Https => 1,
            Self::Quic => 2,
        }
    }
}

/// The DDR stage: the prepared answer, and the names it answers.
#[derive(Debug, Default)]
pub struct Ddr {
    /// `None`: off (no encrypted listener, or no `server.name`).
    on: Option<On>,
}

#[derive(Debug)]
struct On {
    /// `_dns.<server.name>`, lower case, dotted.
    own: Box<[u8]>,
    answer: Arc<Prepared>,
}

impl Ddr {
    /// The stage for `server`'s encrypted listeners and name.
    pub fn new(server: &ServerConfig) -> Self {
        let mut endpoints = Vec::new();
        // Port 0 (an ephemeral port, tests only) cannot be advertised.
        if let Some(t) = &server.tls {
            let bound = |a: &&SocketAddr| a.port() != 0;
            endpoints.extend(t.listen.iter().filter(bound).map(|&a| (Kind::Tls, a)));
            endpoints.extend(
                t.https_listen
                    .iter()
                    .filter(bound)
                    .map(|&a| (Kind::Https, a)),
            );
            endpoints.extend(t.quic_listen.iter().filter(bound).map(|&a| (Kind::Quic, a)));
        }
        Self::with(server.name.as_deref(), &endpoints)
    }

    /// The stage for `name` and the listeners `endpoints`; off when either is missing.
    pub fn with(name: Option<&str>, endpoints: &[(Kind, SocketAddr)]) -> Self {
        let Some(name) = name.filter(|_| !endpoints.is_empty()) else {
            return Self::default();
        };
        let (answer, count, texts) = records(name, endpoints);
        let prepared = Prepared::records(count, answer.into(), "ddr", texts);
        Self {
            on: Some(On {
                own: format!("_dns.{name}").into_bytes().into(),
                answer: Arc::new(prepared),
            }),
        }
    }

    /// True when DDR answers with our endpoints.
    pub fn is_on(&self) -> bool {
        self.on.is_some()
    }

    /// The stage: our endpoints for an SVCB query of `_dns.resolver.arpa` or
    /// `_dns.<server.name>`, else `Next`.
    pub fn check(&self, req: &Request<'_>, details: bool) -> Flow {
        let Some(on) = &self.on else {
            return Flow::Next;
        };
        let q = &req.query;
        if q.qtype != TYPE_SVCB || q.qclass != CLASS_IN {
            return Flow::Next;
        }
        let name = q.name();
        if name != b"_dns.resolver.arpa" && name != &*on.own {
            return Flow::Next;
        }
        Flow::Answer(Answer {
            action: Action::Local,
            reply: Reply::Prepared(Arc::clone(&on.answer)),
            rule: details.then(|| RuleRef::Local(Arc::clone(&on.answer))),
        })
    }
}

/// The answer section (owners a pointer to the question), its record count, and the
/// records as text for the log: one SVCB per kind and port, priority by kind then port.
fn records(name: &str, endpoints: &[(Kind, SocketAddr)]) -> (Vec<u8>, u16, Vec<Box<str>>) {
    let mut keys: Vec<(Kind, u16)> = endpoints.iter().map(|&(k, a)| (k, a.port())).collect();
    keys.sort_by_key(|&(k, p)| (k.rank(), p));
    keys.dedup();
    let mut out = Vec::new();
    let mut texts = Vec::new();
    for (priority, &(kind, port)) in (1u16..).zip(&keys) {
        let hints: Vec<IpAddr> = endpoints
            .iter()
            .filter(|&&(k, a)| k == kind && a.port() == port && !a.ip().is_unspecified())
            .map(|&(_, a)| a.ip())
            .collect();
        let rdata = svcb(priority, name, kind, port, &hints);
        out.extend_from_slice(&[0xC0, 0x0C]);
        out.extend_from_slice(&TYPE_SVCB.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&TTL.to_be_bytes());
        out.extend_from_slice(&u16::try_from(rdata.len()).unwrap_or(0).to_be_bytes());
        out.extend_from_slice(&rdata);
        texts.push(text(priority, name, kind, port, &hints).into());
    }
    (out, u16::try_from(keys.len()).unwrap_or(u16::MAX), texts)
}

/// The RDATA of one SVCB record (RFC 9460 §2.2): priority, target, then the parameters in
/// increasing key order.
fn svcb(priority: u16, target: &str, kind: Kind, port: u16, hints: &[IpAddr]) -> Vec<u8> {
    let mut r = priority.to_be_bytes().to_vec();
    for label in target.split('.').filter(|l| !l.is_empty()) {
        r.push(u8::try_from(label.len()).unwrap_or(63));
        r.extend_from_slice(label.as_bytes());
    }
    r.push(0);
    let alpn = kind.alpn().as_bytes();
    let mut value = vec![u8::try_from(alpn.len()).unwrap_or(0)];
    value.extend_from_slice(alpn);
    param(&mut r, KEY_ALPN, &value);
    param(&mut r, KEY_PORT, &port.to_be_bytes());
    let (v4, v6): (Vec<IpAddr>, Vec<IpAddr>) = hints.iter().partition(|ip| ip.is_ipv4());
    for (key, ips) in [(KEY_IPV4HINT, v4), (KEY_IPV6HINT, v6)] {
        let value: Vec<u8> = ips
            .iter()
            .flat_map(|ip| match ip {
                IpAddr::V4(a) => a.octets().to_vec(),
                IpAddr::V6(a) => a.octets().to_vec(),
            })
            .collect();
        if !value.is_empty() {
            param(&mut r, key, &value);
        }
    }
    if kind == Kind::Https {
        param(&mut r, KEY_DOHPATH, DOH_PATH.as_bytes());
    }
    r
}

fn param(r: &mut Vec<u8>, key: u16, value: &[u8]) {
    r.extend_from_slice(&key.to_be_bytes());
    r.extend_from_slice(&u16::try_from(value.len()).unwrap_or(0).to_be_bytes());
    r.extend_from_slice(value);
}

/// The record in presentation form, for the query log.
fn text(priority: u16, target: &str, kind: Kind, port: u16, hints: &[IpAddr]) -> String {
    let alpn = kind.alpn();
    let mut t = format!("SVCB {priority} {target}. alpn={alpn} port={port}");
    let (v4, v6): (Vec<&IpAddr>, Vec<&IpAddr>) = hints.iter().partition(|ip| ip.is_ipv4());
    for (key, ips) in [("ipv4hint", v4), ("ipv6hint", v6)] {
        if !ips.is_empty() {
            let list: Vec<String> = ips.iter().map(ToString::to_string).collect();
            t.push_str(&format!(" {key}={}", list.join(",")));
        }
    }
    if kind == Kind::Https {
        t.push_str(&format!(" dohpath={DOH_PATH}"));
    }
    t
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use hickory_proto::op::Message;
    use hickory_proto::rr::RData;
    use hickory_proto::rr::rdata::svcb::{SvcParamKey, SvcParamValue};

    use super::*;
    use crate::pipeline::request::test_support::{fixed_now, request};

    fn answered(d: &Ddr, name: &str, qtype: u16) -> Option<Message> {
        let req = request(name, qtype, false, fixed_now());
        let Flow::Answer(a) = d.check(&req, true) else {
            return None;
        };
        let mut out = Vec::new();
        a.write(&req, &mut out, true);
        Some(Message::from_vec(&out).unwrap())
    }

    #[test]
    fn our_endpoints_are_answered_as_svcb_a_client_library_reads() {
        let d = Ddr::with(
            Some("dns.lan"),
            &[
                (Kind::Tls, "192.168.1.2:853".parse().unwrap()),
                (Kind::Tls, "[fd00::2]:853".parse().unwrap()),
                (Kind::Https, "0.0.0.0:443".parse().unwrap()),
            ],
        );
        assert!(d.is_on());
        for name in ["_dns.resolver.arpa", "_dns.dns.lan"] {
            let m = answered(&d, name, TYPE_SVCB).unwrap();
            assert_eq!(m.answers.len(), 2, "{name}");
            let svcb: Vec<_> = m
                .answers
                .iter()
                .map(|r| match &r.data {
                    RData::SVCB(s) => s.clone(),
                    other => panic!("{other:?}"),
                })
                .collect();
            let dot = &svcb[0];
            assert_eq!(dot.svc_priority, 1);
            assert_eq!(dot.target_name.to_ascii(), "dns.lan.");
            // hickory writes a list with a trailing comma.
            let params: Vec<String> = dot
                .svc_params
                .iter()
                .map(|(_, v)| v.to_string().trim_end_matches(',').to_string())
                .collect();
            assert!(
                matches!(&dot.svc_params[0], (SvcParamKey::Alpn, SvcParamValue::Alpn(a)) if a.0 == ["dot"]),
                "{params:?}"
            );
            assert!(matches!(
                dot.svc_params[1],
                (SvcParamKey::Port, SvcParamValue::Port(853))
            ));
            assert_eq!(params[2], "192.168.1.2", "ipv4hint");
            assert_eq!(params[3], "fd00::2", "ipv6hint");
            let doh = &svcb[1];
            assert_eq!(doh.svc_priority, 2);
            assert!(
                matches!(&doh.svc_params[0], (SvcParamKey::Alpn, SvcParamValue::Alpn(a)) if a.0 == ["h2"])
            );
            assert!(matches!(
                doh.svc_params[1],
                (SvcParamKey::Port, SvcParamValue::Port(443))
            ));
            // A wildcard listener gives no hint; the DoH path comes last (key 7).
            assert_eq!(doh.svc_params.len(), 3);
            let (key, value) = &doh.svc_params[2];
            assert_eq!(u16::from(*key), KEY_DOHPATH);
            let SvcParamValue::Unknown(u) = value else {
                panic!("{value:?}");
            };
            assert_eq!(u.0, DOH_PATH.as_bytes());
        }
        // Other types and names go on down the chain.
        assert!(answered(&d, "_dns.resolver.arpa", 1).is_none());
        assert!(answered(&d, "_dns.other.lan", TYPE_SVCB).is_none());
    }

    #[test]
    fn a_quic_listener_is_its_own_doq_endpoint_after_dot_and_h2() {
        let d = Ddr::with(
            Some("dns.lan"),
            &[
                (Kind::Quic, "192.168.1.2:853".parse().unwrap()),
                (Kind::Tls, "192.168.1.2:853".parse().unwrap()),
                (Kind::Quic, "[fd00::2]:8853".parse().unwrap()),
            ],
        );
        let m = answered(&d, "_dns.resolver.arpa", TYPE_SVCB).unwrap();
        let got: Vec<(u16, Vec<String>, u16, usize)> = m
            .answers
            .iter()
            .map(|r| {
                let RData::SVCB(s) = &r.data else {
                    panic!("{r:?}")
                };
                let alpn = s
                    .svc_params
                    .iter()
                    .find_map(|(_, v)| match v {
                        SvcParamValue::Alpn(a) => Some(a.0.clone()),
                        _ => None,
                    })
                    .unwrap();
                let port = s
                    .svc_params
                    .iter()
                    .find_map(|(_, v)| match v {
                        SvcParamValue::Port(p) => Some(*p),
                        _ => None,
                    })
                    .unwrap();
                (s.svc_priority, alpn, port, s.svc_params.len())
            })
            .collect();
        // No dohpath on DoT and DoQ: alpn, port, one hint.
        assert_eq!(
            got,
            [
                (1, vec!["dot".to_string()], 853, 3),
                (2, vec!["doq".to_string()], 853, 3),
                (3, vec!["doq".to_string()], 8853, 3),
            ]
        );
    }

    #[test]
    fn without_a_listener_or_a_name_the_stage_is_off() {
        let tls = [(Kind::Tls, "192.168.1.2:853".parse().unwrap())];
        for d in [Ddr::with(None, &tls), Ddr::with(Some("dns.lan"), &[])] {
            assert!(!d.is_on());
            assert!(answered(&d, "_dns.resolver.arpa", TYPE_SVCB).is_none());
        }
    }
}
