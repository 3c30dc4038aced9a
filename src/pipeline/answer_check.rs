//! `AnswerCheck`: the stage after the upstream. Every upstream answer passes it before it
//! is cached or sent, so that what the resolver relays and remembers is only what it checked.
//!
//! Today it strips the records outside the question's bailiwick (unbound's scrubber rules
//! for a forwarder: answers only for the question name and its CNAME chain, authority
//! records only for zones above those names, additional records only for names the kept
//! records point at), so that an upstream, or someone forging its answers, cannot plant
//! records for other names in the cache. CNAME-target and response-IP blocking, rebinding
//! protection and DNSSEC validation belong here too: each is one more check in
//! [`AnswerCheck::check`], and an answer that fails one is replaced by the [`Answer`] it
//! returns.

use super::Action;
use super::flow::{Answer, Reply};
use super::request::Request;
use crate::dns::wire::{EDE_NO_REACHABLE_AUTHORITY, Response, rcode};

/// The answer-check stage.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnswerCheck;

impl AnswerCheck {
    /// The answer to cache and send (`Ok`), or the answer that replaces it (`Err`).
    pub fn check(self, req: &Request<'_>, resp: Response) -> Result<Response, Answer> {
        resp.without_strays(&req.query).map_err(|e| {
            tracing::debug!(qname = %req.query.name_lossy(), error = ?e, "upstream answer failed the checks");
            Answer::new(
                Action::Failed,
                Reply::Error {
                    rcode: rcode::SERVFAIL,
                    ede: Some((EDE_NO_REACHABLE_AUTHORITY, "no upstream resolver answered")),
                },
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::request::test_support::{fixed_now, query_bytes, request};
    use super::*;
    use hickory_proto::op::{Message, MessageType};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Name, RData, Record};

    /// An upstream answer for `www.test` A, with `extra` answer records besides its own.
    fn answer(extra: &[&str]) -> (Request<'static>, Response) {
        let req = request("www.test", 1, false, fixed_now());
        let mut m = Message::from_vec(&query_bytes("www.test", 1, false)).unwrap();
        m.metadata.message_type = MessageType::Response;
        let a = |n: &str| {
            Record::from_rdata(
                Name::from_ascii(n).unwrap(),
                300,
                RData::A(A::new(192, 0, 2, 1)),
            )
        };
        m.answers.push(a("www.test."));
        for n in extra {
            m.answers.push(a(n));
        }
        let resp = Response::parse(&m.to_vec().unwrap(), &req.query, 0x1234, 0, 86_400).unwrap();
        (req, resp)
    }

    #[test]
    fn an_answer_within_the_bailiwick_passes_unchanged() {
        let (req, resp) = answer(&[]);
        let kept = AnswerCheck.check(&req, resp.clone()).unwrap();
        assert_eq!(kept, resp, "byte for byte");
    }

    #[test]
    fn a_record_for_another_name_is_stripped_before_caching() {
        let (req, resp) = answer(&["bank.example."]);
        assert_eq!(resp.answer_count(), 2, "parse keeps what came");
        let kept = AnswerCheck.check(&req, resp).unwrap();
        assert_eq!(kept.answer_count(), 1);
        let mut out = Vec::new();
        kept.write(&mut out, &req.query, 0, 512);
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].name.to_ascii(), "www.test.");
    }
}
