//! The whole no-I/O query path, packet bytes in to response bytes out, through the same
//! `Handler::handle_packet` every listener calls (parse → request → chain → write → record),
//! with a 1M-entry block list:
//! - `blocked`: a name under a listed domain, answered with the sinkhole address;
//! - `cached`: an unlisted name whose answer is in the cache;
//! - `allowed_listed`: a name under a listed domain that an allow rule lets through, its
//!   answer in the cache (the lookup finds both rules, then the cache answers);
//!
//! each with the query log off and on (on: the record is made, not written), and the
//! blocked and cached cases again with 200 local records and a wildcard configured
//! (`_local200`: the cost of the local-records stage on queries it does not answer). The
//! client is a LAN address under the rate limits, at a rate they never refuse (10^6 qps,
//! the clock moved 1 µs per query), so that their stage is in every case.
//!
//! `cargo bench --bench pipeline` (add `-- --quick` for a fast run).

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hickory_proto::op::Message;
use sinkhole::config::Config;
use sinkhole::counters::Counters;
use sinkhole::handler::{Arrival, Handled, Handler};
use sinkhole::pipeline::{Clock, Pipeline, Policy, Transport};
use sinkhole::server::slots::ClientSlots;
use support::{cache, query};

mod support;

const N: usize = 1_000_000;

/// The i-th listed domain: `d{i}.{label}.test`-like names of realistic length.
fn domain(i: usize) -> String {
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut label = String::new();
    for _ in 0..(6 + (x % 10) as usize) {
        label.push((b'a' + (x % 26) as u8) as char);
        x = x.rotate_left(7).wrapping_mul(0x2545_F491_4F6C_DD1D);
    }
    format!("{label}{i}.com")
}

/// 200 `[[local.records]]` and one wildcard.
fn local_records() -> String {
    let mut t = String::new();
    for i in 0..200 {
        t.push_str(&format!(
            "[[local.records]]\nname = \"host{i}.lan\"\na = [\"10.1.{}.{}\"]\n",
            i / 250,
            i % 250 + 1
        ));
    }
    t.push_str("[[local.records]]\nname = \"*.lab.lan\"\na = [\"10.2.0.1\"]\n");
    t
}

fn handler(dir: &std::path::Path, log: bool, local: bool) -> Handler {
    let log_section = if log {
        "[log]\npath = \"q.jsonl\"\n"
    } else {
        ""
    };
    let toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstream]\nservers = [\"127.0.0.1:9\"]\n\
         [blocking]\nlists = [\"big.txt\"]\nallow = [\"allow.txt\"]\n{log_section}\
         [limits]\nqps = 1000000\nburst = 1000000\n{}",
        if local {
            local_records()
        } else {
            String::new()
        }
    );
    let cfg = Config::parse(&toml, "bench.toml", Some(dir)).unwrap();
    let t = Instant::now();
    let (policy, _) = Policy::load(&cfg).unwrap();
    eprintln!(
        "pipeline bench: {} rules loaded in {:?}",
        policy.blocking.list().len(),
        t.elapsed()
    );
    let p = Pipeline::new(&cfg, policy, Arc::new(Counters::new()));
    Handler::new(Arc::new(p), ClientSlots::new(256, 8192), log)
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::with_capacity(N * 20);
    for i in 0..N {
        text.push_str(&domain(i));
        text.push('\n');
    }
    std::fs::write(dir.path().join("big.txt"), text).unwrap();
    let listed = domain(123_457);
    std::fs::write(dir.path().join("allow.txt"), format!("ok.{listed}\n")).unwrap();

    let blocked = query(&format!("www.{}.", domain(777_777)));
    let cached = query("www.example.org.");
    let allowed = query(&format!("cdn.ok.{listed}."));
    let client: SocketAddr = "192.168.1.10:53000".parse().unwrap();
    let clock = Clock::system();

    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(1));
    // One simulated clock for every case: each timed loop moves it 1 µs per query, far
    // ahead of the real clock, and a case started from the real clock again would look to
    // the rate limiter like time running backwards (its client refused: no answer).
    let mut now = clock.now();
    for (log, local) in [(false, false), (true, false), (false, true)] {
        let h = handler(dir.path(), log, local);
        cache(h.pipeline(), &cached);
        cache(h.pipeline(), &allowed);
        let suffix = match (log, local) {
            (true, _) => "_log",
            (false, true) => "_local200",
            (false, false) => "",
        };
        let mut out = Vec::with_capacity(1500);
        for (name, pkt, want) in [
            ("blocked", &blocked, "0.0.0.0"),
            ("cached", &cached, "192.0.2.1"),
            ("allowed_listed", &allowed, "192.0.2.1"),
        ] {
            if local && name == "allowed_listed" {
                continue;
            }
            // The answer is what the case says, before it is timed.
            now.mono += std::time::Duration::from_millis(1);
            let how = Arrival {
                client,
                transport: Transport::Udp,
                arrived: tokio::time::Instant::now(),
                now,
            };
            assert!(matches!(
                h.handle_packet(pkt, how, &mut out),
                Handled::Reply(_)
            ));
            let m = Message::from_vec(&out).unwrap();
            assert_eq!(m.answers[0].data.to_string(), want, "{name}");
            // The clock is read once per UDP batch, not per query: outside the loop.
            let mut how = how;
            g.bench_function(format!("{name}{suffix}"), |b| {
                b.iter(|| {
                    how.now.mono += std::time::Duration::from_micros(1);
                    black_box(h.handle_packet(black_box(pkt), how, &mut out));
                    black_box(out.len())
                })
            });
            now = how.now;
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
