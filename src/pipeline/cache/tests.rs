//! The cache's unit tests: time is an explicit `Instant`.

use super::*;
use crate::dns::wire::{Response, parse_query};
use hickory_proto::op::{Message, MessageType, OpCode, Query as HQuery};
use hickory_proto::rr::rdata::{A, TXT};
use hickory_proto::rr::{Name, RData, Record};

const MIB: usize = 1 << 20;

fn answer_with(ttl: u32, rdata: RData) -> (crate::dns::wire::Query, Arc<Response>) {
    let name = Name::from_ascii("www.test.").unwrap();
    let mut m = Message::new(7, MessageType::Query, OpCode::Query);
    m.add_query(HQuery::query(name.clone(), rdata.record_type()));
    let q = parse_query(&m.to_vec().unwrap()).unwrap();
    m.metadata.message_type = MessageType::Response;
    m.answers.push(Record::from_rdata(name, ttl, rdata));
    let r = Response::from_upstream(&m.to_vec().unwrap(), &q, 7, 0, 86400).unwrap();
    (q, Arc::new(r))
}

fn answer(ttl: u32) -> (crate::dns::wire::Query, Arc<Response>) {
    answer_with(ttl, RData::A(A::new(192, 0, 2, 1)))
}

/// A TXT answer of about `kib` KiB.
fn big(kib: usize) -> Arc<Response> {
    let strings = vec!["x".repeat(250); kib * 1024 / 251];
    answer_with(300, RData::TXT(TXT::new(strings))).1
}

#[test]
fn hit_within_ttl_ages_and_expires() {
    let c = Cache::new(10, MIB);
    let (q, r) = answer(30);
    let mut k = [0; 262];
    let key = q.cache_key(&mut k).to_vec();
    let t0 = Instant::now();
    c.put(&key, &r, t0);
    let (_, age) = c.get(&key, t0 + Duration::from_secs(12)).unwrap();
    assert_eq!(age, 12);
    assert!(c.get(&key, t0 + Duration::from_secs(30)).is_none());
    assert_eq!(
        (c.len(), c.bytes()),
        (0, 0),
        "an expired entry is no longer charged"
    );
}

#[test]
fn bounded_by_max_entries() {
    let c = Cache::new(SHARDS, MIB);
    let (_, r) = answer(300);
    let now = Instant::now();
    for i in 0..1000u32 {
        c.put(&i.to_be_bytes(), &r, now);
    }
    assert!(c.len() <= SHARDS, "{}", c.len());
    assert_eq!(c.bytes(), c.len() * Cache::entry_size(&[0; 4], &r));
}

// See: #10 (600 names with 60 KB TXT answers took RSS from 8 to 82 MiB).
#[test]
fn r10_bounded_by_max_bytes() {
    let c = Cache::new(100_000, 4 * MIB);
    let r = big(60);
    let now = Instant::now();
    for i in 0..600u32 {
        c.put(&i.to_be_bytes(), &r, now);
    }
    let (n, bytes) = (c.len(), c.bytes());
    assert!(bytes <= 4 * MIB, "{bytes} bytes in {n} entries");
    assert!(n >= 16, "the budget still holds some large answers: {n}");
    // Small answers are evicted least recently used first, and replacing a key does
    // not count it twice.
    let (_, small) = answer(300);
    for _ in 0..3 {
        c.put(b"small", &small, now);
    }
    assert!(c.get(b"small", now).is_some());
    assert!(c.bytes() <= 4 * MIB);
}

#[test]
fn r10_answer_larger_than_a_shard_is_not_cached() {
    // 16 shards of 32 KiB: a 60 KiB answer never fits, and an older answer for the
    // same key is dropped rather than served instead.
    let c = Cache::new(100, 512 * 1024);
    let (_, small) = answer(300);
    let now = Instant::now();
    c.put(b"k", &small, now);
    c.put(b"k", &big(60), now);
    assert!(c.get(b"k", now).is_none());
    assert_eq!((c.len(), c.bytes()), (0, 0));
}

#[test]
fn resize_evicts_what_no_longer_fits_and_can_turn_the_cache_off_and_on() {
    let c = Cache::new(1000, MIB);
    let (_, r) = answer(300);
    let now = Instant::now();
    for i in 0..500u32 {
        c.put(&i.to_be_bytes(), &r, now);
    }
    assert_eq!(c.len(), 500);
    c.resize(SHARDS * 2, MIB);
    assert!(c.len() <= SHARDS * 2, "{}", c.len());
    assert_eq!(c.bytes(), c.len() * Cache::entry_size(&[0; 4], &r));
    c.clear();
    assert_eq!((c.len(), c.bytes()), (0, 0));
    c.put(b"k", &r, now);
    assert_eq!(c.len(), 1, "still on after a clear");
    c.resize(0, MIB);
    assert_eq!((c.len(), c.bytes()), (0, 0));
    c.put(b"k", &r, now);
    assert!(c.get(b"k", now).is_none(), "off");
    c.resize(100, MIB);
    c.put(b"k", &r, now);
    assert!(c.get(b"k", now).is_some(), "on again");
}

#[test]
fn the_stage_answers_from_the_cache_as_of_the_requests_now() {
    use super::super::request::test_support::{fixed_now, request};
    let c = Cache::new(10, MIB);
    let (q, r) = answer(30);
    let now = fixed_now();
    let mut req = request("www.test", q.qtype, false, now);
    req.query = std::borrow::Cow::Owned(q);
    assert!(matches!(c.check(&req).0, Flow::Next));
    c.store(&req, &r);
    req.now = now.after(Duration::from_secs(12));
    match c.check(&req).0 {
        Flow::Answer(Answer {
            action: Action::Cached,
            reply: Reply::Upstream { age, .. },
            ..
        }) => assert_eq!(age, 12),
        other => panic!("{other:?}"),
    }
    req.now = now.after(Duration::from_secs(30));
    assert!(matches!(c.check(&req).0, Flow::Next), "expired");
}

#[test]
fn zero_ttl_and_disabled_cache_store_nothing() {
    let (q, r0) = answer(0);
    let c = Cache::new(10, MIB);
    let mut k = [0; 262];
    let key = q.cache_key(&mut k).to_vec();
    c.put(&key, &r0, Instant::now());
    assert!(c.is_empty());
    let (_, r) = answer(60);
    for off in [Cache::new(0, MIB), Cache::new(10, 0)] {
        off.put(&key, &r, Instant::now());
        assert!(off.get(&key, Instant::now()).is_none());
    }
}

fn key_of(q: &crate::dns::wire::Query) -> Vec<u8> {
    let mut k = [0; 262];
    q.cache_key(&mut k).to_vec()
}

#[test]
fn a_hit_in_the_last_tenth_of_the_ttl_asks_for_one_prefetch() {
    let c = Cache::new(10, MIB);
    c.set_resilience(Duration::ZERO, true);
    let (q, r) = answer(100);
    let key = key_of(&q);
    let t0 = Instant::now();
    c.put(&key, &r, t0);
    let refresh = |at: u64| match c.lookup(&key, t0 + Duration::from_secs(at), false) {
        Some(Hit::Fresh { refresh, .. }) => refresh,
        other => panic!("{other:?}"),
    };
    assert!(!refresh(89), "before the window");
    assert!(refresh(90), "the window starts at 90% of the TTL");
    assert!(!refresh(91), "once per entry");
    assert!(!refresh(99));
    // The refreshed answer is a new entry, with a window of its own.
    c.put(&key, &r, t0 + Duration::from_secs(95));
    assert!(!refresh(96));
    assert!(refresh(185));
}

#[test]
fn prefetch_off_never_asks() {
    let c = Cache::new(10, MIB);
    c.set_resilience(Duration::ZERO, false);
    let (q, r) = answer(100);
    let key = key_of(&q);
    let t0 = Instant::now();
    c.put(&key, &r, t0);
    assert!(matches!(
        c.lookup(&key, t0 + Duration::from_secs(95), false),
        Some(Hit::Fresh { refresh: false, .. })
    ));
}

#[test]
fn expired_entries_are_kept_for_the_stale_window_and_served_only_after_a_failure() {
    let c = Cache::new(10, MIB);
    c.set_resilience(Duration::from_secs(3600), false);
    let (q, r) = answer(60);
    let key = key_of(&q);
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    c.put(&key, &r, t0);
    // Expired: a miss (the upstreams are asked), but the entry stays.
    assert!(c.lookup(&key, at(61), false).is_none());
    assert_eq!(c.len(), 1);
    // The upstreams failed: served stale, and from then on at once for the recheck time.
    assert!(matches!(
        c.lookup(&key, at(62), true),
        Some(Hit::Stale { refresh: false, .. })
    ));
    assert!(matches!(
        c.lookup(&key, at(62 + 29), false),
        Some(Hit::Stale { refresh: false, .. })
    ));
    // The recheck timer ran out: one hit asks for a background retry, the next ones wait
    // another 30 s.
    assert!(matches!(
        c.lookup(&key, at(62 + 30), false),
        Some(Hit::Stale { refresh: true, .. })
    ));
    assert!(matches!(
        c.lookup(&key, at(62 + 31), false),
        Some(Hit::Stale { refresh: false, .. })
    ));
    assert!(matches!(
        c.lookup(&key, at(62 + 60), false),
        Some(Hit::Stale { refresh: true, .. })
    ));
    // Past the stale window: gone.
    assert!(c.lookup(&key, at(60 + 3600), true).is_none());
    assert_eq!((c.len(), c.bytes()), (0, 0));
}

#[test]
fn without_serve_stale_an_expired_entry_goes_at_once() {
    let c = Cache::new(10, MIB);
    c.set_resilience(Duration::ZERO, false);
    let (q, r) = answer(60);
    let key = key_of(&q);
    let t0 = Instant::now();
    c.put(&key, &r, t0);
    assert!(c.lookup(&key, t0 + Duration::from_secs(60), true).is_none());
    assert!(c.is_empty());
}

#[test]
fn a_stale_hit_is_answered_with_the_stale_flag() {
    use super::super::request::test_support::{fixed_now, request};
    let c = Cache::new(10, MIB);
    c.set_resilience(Duration::from_secs(86_400), false);
    let (q, r) = answer(60);
    let now = fixed_now();
    // The client's query has EDNS (the cached answer was fetched for one without: the
    // key is the same).
    let mut req = request("www.test", q.qtype, true, now);
    c.store(&req, &r);
    let later = now.after(Duration::from_secs(600));
    assert!(matches!(
        c.after_failure(&req, later.mono),
        Some(Hit::Stale { .. })
    ));
    req.now = later;
    let (flow, refresh) = c.check(&req);
    assert!(!refresh);
    let Flow::Answer(a) = flow else {
        panic!("{flow:?}")
    };
    assert_eq!(a.action, Action::Stale);
    let mut out = Vec::new();
    a.write(&req, &mut out, false);
    let m = Message::from_vec(&out).unwrap();
    assert_eq!(m.answers[0].ttl, crate::dns::wire::STALE_TTL);
    let ede = m
        .edns
        .as_ref()
        .and_then(|e| e.option(hickory_proto::rr::rdata::opt::EdnsCode::Unknown(15)))
        .map(|o| format!("{o:?}"));
    assert!(ede.is_some(), "EDE present: {:?}", m.edns);
}

#[test]
fn an_entry_stays_small_enough_for_a_96_byte_lru_node() {
    // The LRU node is the key's box (16 bytes), the entry and two links (16): with the
    // allocator's 8-byte header and 16-byte rounding, an entry of at most 56 bytes makes a
    // 96-byte allocation per cached answer; three instants made it 128.
    assert!(
        std::mem::size_of::<super::Entry>() <= 56,
        "{} bytes",
        std::mem::size_of::<super::Entry>()
    );
}

/// The layout the memory figures in `docs/performance.md` rest on: an entry and its inline
/// key fit a 112-byte LRU node.
#[test]
fn an_entry_and_its_key_stay_small() {
    assert_eq!(std::mem::size_of::<Entry>(), 40);
    assert_eq!(std::mem::size_of::<Key>(), 48);
}

/// `n` keys that land in one shard.
fn keys_in_one_shard(c: &Cache, n: usize) -> Vec<Vec<u8>> {
    let first = c.shard(b"k0").map(std::ptr::from_ref);
    (0..u32::MAX)
        .map(|i| format!("k{i}").into_bytes())
        .filter(|k| c.shard(k).map(std::ptr::from_ref) == first)
        .take(n)
        .collect()
}

#[test]
fn a_hit_moves_an_entry_to_the_front_on_its_first_hit_in_a_tick() {
    // Two entries per shard: a third evicts the least recently used one. A tick is 62.5 ms.
    let c = Cache::new(2 * SHARDS, MIB);
    let (_, r) = answer(300);
    let k = keys_in_one_shard(&c, 5);
    let t0 = Instant::now();
    let at = |ms| t0 + Duration::from_millis(ms);
    c.put(&k[0], &r, at(0));
    c.put(&k[1], &r, at(0));
    // k0's first hit in tick 1 of its age moves it ahead of k1.
    assert!(c.get(&k[0], at(100)).is_some());
    c.put(&k[2], &r, at(200));
    assert!(
        c.get(&k[1], at(200)).is_none(),
        "k1 was the least recently used"
    );
    // k0 moves again in its tick 4; k2, stored at 200 ms, is hit within its own tick 0,
    // which does not move it.
    assert!(c.get(&k[0], at(250)).is_some());
    assert!(c.get(&k[2], at(260)).is_some());
    c.put(&k[3], &r, at(270));
    assert!(
        c.get(&k[2], at(270)).is_none(),
        "k2 was last moved before k0"
    );
    // A second hit in the tick of k0's last move does not move it either.
    assert!(c.get(&k[0], at(300)).is_some());
    c.put(&k[4], &r, at(310));
    assert!(
        c.get(&k[0], at(310)).is_none(),
        "k0 was last moved before k3 was stored"
    );
    assert!(c.get(&k[3], at(310)).is_some());
    assert!(c.get(&k[4], at(310)).is_some());
}

#[test]
fn a_hot_name_outlives_a_flood_of_new_names() {
    // 16 entries per shard; a new name every 12.5 ms (a random-subdomain flood) pushes an
    // entry out 200 ms after it came in, unless hits move it: a hot name hit twice in every
    // 12.5 ms must stay, moved well within those 200 ms.
    let c = Cache::new(16 * SHARDS, MIB);
    let (_, r) = answer(300);
    let k = keys_in_one_shard(&c, 241);
    let t0 = Instant::now();
    let at = |us: u64| t0 + Duration::from_micros(us);
    c.put(&k[0], &r, at(0));
    for (i, new) in k[1..].iter().enumerate() {
        let t = 12_500 * (i as u64 + 1);
        c.put(new, &r, at(t));
        for hit in [t + 2_500, t + 12_500] {
            assert!(
                c.get(&k[0], at(hit)).is_some(),
                "the hot name was pushed out after {} ms",
                hit / 1000
            );
        }
    }
}
