//! Memory of the rate limits under a spoofed flood: one query from each of N distinct source
//! addresses (default 1,000,000; `limits_memory N`), through the same `Handler::handle_packet`
//! every listener calls, with the default `[limits]` and response-rate limiting on. Prints
//! the process's resident memory before and after each round, and the tables' own size
//! (capacity × entry size): a second round of as many new sources must not grow either.
//!
//! ```sh
//! cargo run --release --example limits_memory
//! ```
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use sinkhole::config::Config;
use sinkhole::handler::{Arrival, Handled, Handler};
use sinkhole::pipeline::{Clock, Pipeline, Policy, Transport};

/// Resident memory of this process, from /proc (kB → bytes).
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / f64::from(1u32 << 20))
}

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ads.txt"), "ads.test\n").unwrap();
    let toml = "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstream]\nservers = [\"127.0.0.1:9\"]\n\
                [blocking]\nlists = [\"ads.txt\"]\n[access]\nallow = [\"0.0.0.0/0\"]\n\
                [limits]\nrrl_rps = 5\n";
    let cfg = Config::parse(toml, "limits.toml", Some(dir.path())).unwrap();
    let (policy, _) = Policy::load(&cfg).unwrap();
    let p = Pipeline::new(&cfg, policy, Arc::new(sinkhole::counters::Counters::new()));
    let h = Handler::new(
        Arc::new(p),
        sinkhole::server::slots::ClientSlots::new(64, 64),
        false,
    );
    // An A query for x.ads.test (ID 0x4242, RD).
    let pkt =
        b"\x42\x42\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x01x\x03ads\x04test\x00\x00\x01\x00\x01";
    let clock = Clock::system();
    let mut out = Vec::with_capacity(1500);
    let start = rss();
    println!("start: rss {}", mib(start));
    for round in 0..2u32 {
        let before = rss();
        let t = std::time::Instant::now();
        let (mut sent, mut refused) = (0u64, 0u64);
        for i in 0..n {
            // 10.0.0.0/8 in the first round, 11.0.0.0/8 in the second: all new sources.
            let ip = Ipv4Addr::from(0x0A00_0000 + (round << 24) + i);
            let how = Arrival {
                client: SocketAddr::from((ip, 40000)),
                transport: Transport::Udp,
                arrived: tokio::time::Instant::now(),
                now: clock.now(),
            };
            match h.handle_packet(pkt, how, &mut out) {
                Handled::Reply(_) if out.get(3).is_some_and(|b| b & 0x0F == 5) => refused += 1,
                Handled::Reply(_) => sent += 1,
                _ => {}
            }
        }
        let state = h.pipeline().limit_state();
        println!(
            "round {}: {n} new sources in {:?}; replied {sent} (full or truncated), refused {refused}; \
             rss {} -> {} (+{}); tables {} (clients {} of {} slots, rrl {} of {})",
            round + 1,
            t.elapsed(),
            mib(before),
            mib(rss()),
            mib(rss().saturating_sub(before)),
            mib(state.bytes() as u64),
            state.clients().len(),
            state.clients().capacity(),
            state.rrl_table().len(),
            state.rrl_table().capacity(),
        );
    }
    let counters = h.pipeline().counters().snapshot(Default::default());
    let text = counters.lines();
    for l in text
        .lines()
        .filter(|l| l.contains("ratelimit") || l.contains("rrl"))
    {
        println!("{l}");
    }
    println!("total rss growth: {}", mib(rss().saturating_sub(start)));
}
