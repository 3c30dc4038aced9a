//! The stage contract: every stage looks at a [`Request`] and either answers it
//! ([`Flow::Answer`]) or lets the next stage decide ([`Flow::Next`]). An [`Answer`] says
//! what to send, not how: [`Answer::write`] turns it into wire bytes once, for every stage,
//! within the client's size limit, and reports the [`Outcome`] the query log and counters
//! read.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::request::Request;
use super::{Action, Detail, Outcome, RuleRef};
use crate::dns::wire::{self, LocalAnswer, Response};

/// What a stage decided.
#[derive(Debug)]
pub enum Flow {
    /// This is the answer; the chain ends here.
    Answer(Answer),
    /// Not this stage's to answer: the next stage decides.
    Next,
}

/// An answer decided by a stage, not yet written.
#[derive(Debug)]
pub struct Answer {
    /// What was done, for the log and counters.
    pub action: Action,
    /// What to send.
    pub reply: Reply,
    /// Where the log looks up the deciding rule (only when the pipeline keeps details).
    pub rule: Option<RuleRef>,
}

/// What to send.
#[derive(Debug)]
pub enum Reply {
    /// A locally made answer: a blocked name or a bypass signal.
    Local(Local),
    /// One record owned by the question name (RFC 8482's HINFO for ANY).
    Record {
        /// Its type.
        rtype: u16,
        /// Its TTL.
        ttl: u32,
        /// Its RDATA.
        rdata: &'static [u8],
    },
    /// An upstream's answer, fresh (`age` 0) or from the cache.
    Upstream {
        /// The answer as the upstream gave it (checked, TTLs clamped).
        resp: Arc<Response>,
        /// Seconds it spent in the cache; every TTL is reduced by it.
        age: u32,
        /// The server that gave it, when fresh.
        server: Option<SocketAddr>,
        /// Expired and served because no upstream answered: every TTL 30, EDE 3 (RFC 8767).
        stale: bool,
    },
    /// An authoritative answer written ahead of time (local records, private reverse
    /// zones).
    Prepared(Arc<super::local::Prepared>),
    /// Nothing is sent (access control's `drop`); `rcode` is what the log records.
    Nothing {
        /// The response code logged.
        rcode: u16,
    },
    /// No records: an error code and an Extended DNS Error.
    Error {
        /// The response code.
        rcode: u16,
        /// EDE (code, text), sent when the query had EDNS.
        ede: Option<(u16, Cow<'static, str>)>,
        /// What DNSSEC validation found (a bogus answer's SERVFAIL), for the log.
        dnssec: Option<wire::Security>,
    },
}

/// A locally made answer (see [`wire::LocalAnswer`]), owning its EDE text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Local {
    /// Response code.
    pub rcode: u16,
    /// The single A/AAAA answer, if any.
    pub address: Option<IpAddr>,
    /// An SOA for the zone of the last `n` labels in the authority section (negative
    /// answers).
    pub soa_labels: Option<usize>,
    /// TTL of the answer and the SOA.
    pub ttl: u32,
    /// Extended DNS Error (code, text), sent when the query had EDNS.
    pub ede: Option<(u16, Cow<'static, str>)>,
}

impl Answer {
    /// An answer without a rule reference.
    pub fn new(action: Action, reply: Reply) -> Self {
        Self {
            action,
            reply,
            rule: None,
        }
    }

    /// Writes the response for `req` into `out` (cleared first), within the client's size
    /// limit, and says what was sent. `out` stays empty when nothing is to be sent. `details`: keep the rule and the answer for the log.
    pub fn write(self, req: &Request<'_>, out: &mut Vec<u8>, details: bool) -> Outcome {
        let q = &req.query;
        let limit = req.limit();
        let Self {
            action,
            reply,
            rule,
        } = self;
        let mut dnssec = None;
        let (rcode, upstream, detail) = match reply {
            Reply::Local(l) => {
                let a = LocalAnswer {
                    rcode: l.rcode,
                    address: l.address,
                    soa_labels: l.soa_labels,
                    ttl: l.ttl,
                    ede: l.ede.as_ref().map(|(c, t)| (*c, t.as_ref())),
                };
                let truncated = wire::write_local_within(out, q, &a, limit);
                let detail = if truncated {
                    Detail::Truncated
                } else {
                    Detail::Local(l.address)
                };
                (l.rcode, None, detail)
            }
            Reply::Record { rtype, ttl, rdata } => {
                wire::write_answer(out, q, rtype, ttl, rdata);
                (wire::rcode::NOERROR, None, Detail::Local(None))
            }
            Reply::Prepared(p) => {
                let truncated = wire::write_prepared_within(
                    out,
                    q,
                    p.rcode(),
                    p.count(),
                    p.answer(),
                    p.soa(),
                    limit,
                );
                let rc = p.rcode();
                let detail = if truncated {
                    Detail::Truncated
                } else {
                    Detail::Records(p)
                };
                (rc, None, detail)
            }
            Reply::Upstream {
                resp,
                age,
                server,
                stale,
            } => {
                let truncated = if stale {
                    resp.write_stale(out, q, super::forward::STALE_TEXT, limit)
                } else {
                    resp.write(out, q, age, limit)
                };
                let rc = resp.rcode();
                dnssec = resp.security();
                let detail = if !details {
                    Detail::None
                } else if truncated {
                    Detail::Truncated
                } else {
                    Detail::Response(resp)
                };
                (rc, server, detail)
            }
            Reply::Error {
                rcode,
                ede,
                dnssec: found,
            } => {
                let ede = ede.as_ref().map(|(c, t)| (*c, t.as_ref()));
                wire::write_error(out, q.id, q.flags, Some(q), rcode, ede);
                dnssec = found;
                (rcode, None, Detail::None)
            }
            Reply::Nothing { rcode } => {
                out.clear();
                (rcode, None, Detail::None)
            }
        };
        let mut o = Outcome::new(action, rcode, upstream);
        o.dnssec = dnssec;
        if details {
            o.rule = rule;
            o.detail = detail;
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::super::request::test_support::{fixed_now, request};
    use super::*;

    fn parse(out: &[u8]) -> hickory_proto::op::Message {
        hickory_proto::op::Message::from_vec(out).expect("a well-formed response")
    }

    #[test]
    fn a_local_answer_is_written_with_its_address() {
        let req = request("ads.test", wire::TYPE_A, false, fixed_now());
        let a = Answer::new(
            Action::Blocked,
            Reply::Local(Local {
                rcode: wire::rcode::NOERROR,
                address: Some(IpAddr::from([0, 0, 0, 0])),
                soa_labels: None,
                ttl: 60,
                ede: None,
            }),
        );
        let mut out = Vec::new();
        let o = a.write(&req, &mut out, true);
        assert_eq!(o.action, Action::Blocked);
        assert!(matches!(o.detail, Detail::Local(Some(_))));
        let m = parse(&out);
        assert_eq!(m.metadata.id, 0x1234);
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].ttl, 60);
    }

    #[test]
    fn without_details_nothing_is_kept() {
        let req = request("x.test", wire::TYPE_ANY, false, fixed_now());
        let a = Answer::new(
            Action::Local,
            Reply::Record {
                rtype: wire::TYPE_HINFO,
                ttl: 3600,
                rdata: wire::RFC8482_HINFO,
            },
        );
        let mut out = Vec::new();
        let o = a.write(&req, &mut out, false);
        assert!(matches!(o.detail, Detail::None));
        assert!(o.rule.is_none());
        assert_eq!(parse(&out).answers.len(), 1);
    }

    #[test]
    fn an_error_reply_echoes_the_question() {
        let req = request("slow.test", wire::TYPE_A, true, fixed_now());
        let a = Answer::new(
            Action::Failed,
            Reply::Error {
                rcode: wire::rcode::SERVFAIL,
                ede: Some((
                    wire::EDE_NO_REACHABLE_AUTHORITY,
                    "no upstream resolver answered".into(),
                )),
                dnssec: None,
            },
        );
        let mut out = Vec::new();
        let o = a.write(&req, &mut out, true);
        assert_eq!(o.rcode, wire::rcode::SERVFAIL);
        let m = parse(&out);
        assert_eq!(m.queries.len(), 1);
        assert_eq!(u16::from(m.metadata.response_code), 2);
    }
}
