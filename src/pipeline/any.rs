//! `AnyQuery`: answers ANY itself, as RFC 8482 §4.2 recommends: one small HINFO record
//! instead of everything an upstream holds for the name. ANY is what amplification attacks
//! ask for, and no real client needs it. It comes after blocking (a blocked name stays
//! blocked whatever the type) and before the cache (nothing to look up).

use super::Action;
use super::flow::{Answer, Flow, Reply};
use super::request::Request;
use crate::dns::wire::{RFC8482_HINFO, TYPE_ANY, TYPE_HINFO};

/// TTL of the HINFO answer to ANY (unbound's choice).
pub const ANY_TTL: u32 = 3600;

/// The ANY stage.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnyQuery;

impl AnyQuery {
    /// HINFO "RFC8482" for ANY; anything else goes on.
    pub fn check(self, req: &Request<'_>) -> Flow {
        if req.query.qtype != TYPE_ANY {
            return Flow::Next;
        }
        Flow::Answer(Answer::new(
            Action::Local,
            Reply::Record {
                rtype: TYPE_HINFO,
                ttl: ANY_TTL,
                rdata: RFC8482_HINFO,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::request::test_support::{fixed_now, request};
    use super::*;

    #[test]
    fn any_gets_one_hinfo_and_other_types_go_on() {
        let f = AnyQuery.check(&request("example.test", TYPE_ANY, false, fixed_now()));
        assert!(
            matches!(
                f,
                Flow::Answer(Answer {
                    action: Action::Local,
                    reply: Reply::Record {
                        rtype: TYPE_HINFO,
                        ttl: ANY_TTL,
                        ..
                    },
                    ..
                })
            ),
            "{f:?}"
        );
        let f = AnyQuery.check(&request("example.test", 1, false, fixed_now()));
        assert!(matches!(f, Flow::Next));
    }
}
