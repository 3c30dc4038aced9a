//! The stage and RRL on requests, with the clock injected (`req.now`), and the memory bound
//! under a million spoofed sources.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::super::request::test_support::{fixed_now, request};
use super::*;
use crate::counters::Gauges;

fn cfg(qps: u32, burst: u32, ban_s: u64) -> LimitsConfig {
    LimitsConfig {
        qps,
        burst,
        ban: Duration::from_secs(ban_s),
        ..LimitsConfig::default()
    }
}

fn from(req: &Request<'static>, ip: [u8; 4]) -> Request<'static> {
    let mut r = req.clone();
    r.client = SocketAddr::from((ip, 5353));
    r
}

/// What the stage did: `None` passed, `Some(quiet)` refused.
fn verdict(r: Option<Refusal>) -> Option<bool> {
    r.map(|r| {
        assert_eq!(r.answer.action, Action::Rejected);
        r.quiet
    })
}

#[test]
fn a_client_over_its_rate_is_banned_for_ban_s_while_others_are_served() {
    let (limits, state, counters) = (
        Limits::new(&cfg(1, 3, 60)),
        LimitState::new(4096),
        Counters::new(),
    );
    let now = fixed_now();
    let req = request("www.example.test", 1, true, now);
    let a = from(&req, [192, 168, 1, 2]);
    for _ in 0..3 {
        assert_eq!(verdict(limits.check(&state, &a, &counters)), None);
    }
    assert_eq!(
        verdict(limits.check(&state, &a, &counters)),
        Some(false),
        "the query that starts the ban is logged"
    );
    assert_eq!(
        verdict(limits.check(&state, &a, &counters)),
        Some(true),
        "the ones during it are not"
    );
    let b = from(&req, [192, 168, 1, 3]);
    assert_eq!(verdict(limits.check(&state, &b, &counters)), None);
    // 59 s later: still banned, though the bucket would have refilled.
    let mut later = a.clone();
    later.now = now.after(Duration::from_secs(59));
    assert_eq!(verdict(limits.check(&state, &later, &counters)), Some(true));
    later.now = now.after(Duration::from_secs(60));
    assert_eq!(verdict(limits.check(&state, &later, &counters)), None);
    let s = counters.snapshot(Gauges::default());
    assert_eq!(s.limit_events(LimitEvent::Ban), 1);
    assert_eq!(s.limit_events(LimitEvent::Refused), 3);
}

#[test]
fn exempt_clients_and_limits_off_are_never_refused() {
    let state = LimitState::new(512);
    let counters = Counters::new();
    let req = request("www.example.test", 1, false, fixed_now());
    let mut c = cfg(1, 1, 60);
    c.exempt.push("192.0.2.0/24".parse().unwrap());
    for limits in [Limits::new(&c), Limits::default()] {
        for _ in 0..100 {
            assert_eq!(verdict(limits.check(&state, &req, &counters)), None);
        }
    }
    // The default exempts the host itself only.
    let limits = Limits::new(&cfg(1, 1, 60));
    let local = from(&req, [127, 0, 0, 1]);
    let other = from(&req, [127, 0, 0, 2]);
    for _ in 0..10 {
        assert_eq!(verdict(limits.check(&state, &local, &counters)), None);
    }
    assert_eq!(verdict(limits.check(&state, &other, &counters)), None);
    assert!(verdict(limits.check(&state, &other, &counters)).is_some());
}

#[test]
fn drop_sends_nothing_and_refuse_says_why() {
    let state = LimitState::new(512);
    let counters = Counters::new();
    let req = request("www.example.test", 1, true, fixed_now());
    let mut c = cfg(1, 1, 60);
    let refuse = Limits::new(&c);
    assert!(refuse.check(&state, &req, &counters).is_none());
    let Some(Refusal { answer: a, .. }) = refuse.check(&state, &req, &counters) else {
        panic!("refused")
    };
    let mut out = Vec::new();
    a.write(&req, &mut out, false);
    let m = hickory_proto::op::Message::from_vec(&out).unwrap();
    assert_eq!(u16::from(m.metadata.response_code), rcode::REFUSED);
    c.ban_action = BanAction::Drop;
    let other = from(&req, [10, 0, 0, 9]);
    let drop = Limits::new(&c);
    drop.check(&state, &other, &counters);
    let Some(Refusal { answer: a, .. }) = drop.check(&state, &other, &counters) else {
        panic!("dropped")
    };
    let o = a.write(&other, &mut out, false);
    assert!(out.is_empty(), "nothing to send");
    assert_eq!(o.rcode, rcode::REFUSED);
}

/// An outcome and the bytes of a blocked answer for `req`.
fn blocked(req: &Request<'_>) -> (Outcome, Vec<u8>) {
    let a = Answer::new(
        Action::Blocked,
        Reply::Local(super::super::Local {
            rcode: rcode::NOERROR,
            address: Some(IpAddr::from([0, 0, 0, 0])),
            soa_labels: None,
            ttl: 10,
            ede: None,
        }),
    );
    let mut out = Vec::new();
    let o = a.write(req, &mut out, false);
    (o, out)
}

#[test]
fn rrl_sends_the_rate_then_drops_and_slips_truncated_answers() {
    let mut c = cfg(0, 1, 0);
    c.rrl_rps = 2;
    c.rrl_slip = 2;
    let (limits, state, counters) = (Limits::new(&c), LimitState::new(512), Counters::new());
    let req = request("ads.example.test", 1, true, fixed_now());
    let mut sent = Vec::new();
    for _ in 0..6 {
        let k = limits.rrl_key(&state, &req).expect("UDP, not exempt");
        let (mut o, mut out) = blocked(&req);
        state.rrl(&k, &mut o, &mut out, &counters);
        sent.push(if out.is_empty() {
            "drop"
        } else {
            let m = hickory_proto::op::Message::from_vec(&out).unwrap();
            assert_eq!(m.queries.len(), 1, "the question is echoed");
            if m.metadata.truncation {
                assert!(m.answers.is_empty() && m.edns.is_none());
                assert!(o.quiet);
                "tc"
            } else {
                assert_eq!(m.answers.len(), 1);
                "sent"
            }
        });
    }
    assert_eq!(sent, ["sent", "sent", "drop", "tc", "drop", "tc"]);
    // Another /24 has its own budget; the same /24 shares it; TCP is never limited.
    let far = from(&req, [192, 0, 3, 7]);
    let near = from(&req, [192, 0, 2, 200]);
    let k = limits.rrl_key(&state, &far).unwrap();
    let (mut o, mut out) = blocked(&far);
    state.rrl(&k, &mut o, &mut out, &counters);
    assert!(!o.quiet);
    let k = limits.rrl_key(&state, &near).unwrap();
    let (mut o, mut out) = blocked(&near);
    state.rrl(&k, &mut o, &mut out, &counters);
    assert!(o.quiet, "same network, same answer class");
    let mut tcp = req.clone();
    tcp.transport = Transport::Tcp;
    assert!(limits.rrl_key(&state, &tcp).is_none());
    let s = counters.snapshot(Gauges::default());
    assert_eq!(s.limit_events(LimitEvent::RrlSlipped), 2);
    assert_eq!(s.limit_events(LimitEvent::RrlDropped), 3);
}

#[test]
fn bans_outlive_a_million_spoofed_sources_in_bounded_memory() {
    // The default table and RRL on, fed one query from each of 1,000,000 addresses.
    let mut c = cfg(100, 1000, 60);
    c.rrl_rps = 5;
    let (limits, state, counters) = (
        Limits::new(&c),
        LimitState::new(c.max_clients),
        Counters::new(),
    );
    let now = fixed_now();
    let req = request("www.example.test", 1, false, now);
    // A real client goes over its rate first and is banned.
    let abuser = from(&req, [192, 168, 7, 7]);
    while verdict(limits.check(&state, &abuser, &counters)) != Some(false) {}
    for i in 0..1_000_000u32 {
        let mut r = req.clone();
        r.client = SocketAddr::from((Ipv4Addr::from(0x0A00_0000 + i), 53));
        assert_eq!(verdict(limits.check(&state, &r, &counters)), None);
        let k = limits.rrl_key(&state, &r).unwrap();
        let (mut o, mut out) = (Outcome::new(Action::Cached, 0, None), vec![0; 12]);
        state.rrl(&k, &mut o, &mut out, &counters);
    }
    assert_eq!(
        verdict(limits.check(&state, &abuser, &counters)),
        Some(true),
        "still banned"
    );
    let bytes = state.bytes();
    assert!(bytes < 64 << 20, "{bytes} bytes");
    assert_eq!(state.clients().len(), state.clients().capacity());
    assert_eq!(
        bytes,
        state.clients().max_bytes() + state.rrl_table().max_bytes()
    );
    let s = counters.snapshot(Gauges::default());
    assert_eq!(
        s.limit_events(LimitEvent::Evicted),
        1_000_001 - state.clients().capacity() as u64
    );
    eprintln!("1,000,000 spoofed sources: rate-limit state {bytes} bytes");
}

#[test]
fn warnings_are_bounded_per_second_and_count_what_they_leave_out() {
    let w = WarnBudget::default();
    for _ in 0..WarnBudget::PER_SECOND {
        assert_eq!(w.allow(5), Some(0));
    }
    assert_eq!(w.allow(900), None);
    assert_eq!(w.allow(999), None);
    assert_eq!(w.allow(1_000), Some(2));
}

#[test]
fn exempt_ranges_match_with_few_and_many_networks() {
    let nets = |v: &[&str]| -> Vec<ipnet::IpNet> { v.iter().map(|n| n.parse().unwrap()).collect() };
    let ip = |s: &str| key_of(s.parse().unwrap());
    let few = Exempt::new(&nets(&["127.0.0.1/32", "::1/128", "10.1.0.0/16"]));
    for yes in ["127.0.0.1", "::1", "::ffff:127.0.0.1", "10.1.255.255"] {
        assert!(few.contains(ip(yes)), "{yes}");
    }
    for no in ["127.0.0.2", "10.2.0.0", "::2", "::"] {
        assert!(!few.contains(ip(no)), "{no}");
    }
    let many: Vec<String> = (0..20).map(|i| format!("10.{i}.0.0/16")).collect();
    let many = Exempt::new(&nets(&many.iter().map(String::as_str).collect::<Vec<_>>()));
    assert!(many.contains(ip("10.19.1.1")));
    assert!(many.contains(ip("10.0.0.0")));
    assert!(!many.contains(ip("10.20.0.0")));
    assert!(!many.contains(ip("9.255.255.255")));
}
