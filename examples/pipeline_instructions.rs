//! Deterministic cost of the no-I/O query path, for A/B comparisons on machines without
//! hardware counters (noisy VMs): `pipeline_instructions CASE ITERS` runs the path of
//! `benches/pipeline.rs` ITERS times (10k-entry list), CASE one of `blocked`, `cached`,
//! `allowed_listed`, each optionally with `_log`, then optionally `_local200` (200 local
//! records and a wildcard configured). Under callgrind, the instructions of a run
//! with ITERS = N minus those of a run with ITERS = 0, divided by N, are the instructions
//! per query:
//!
//! ```sh
//! cargo build --release --example pipeline_instructions
//! B=target/release/examples/pipeline_instructions
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null $B blocked 0
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null $B blocked 20000
//! ```
#[path = "../benches/support/mod.rs"]
mod support;

use sinkhole::config::Config;
use std::hint::black_box;
use std::sync::Arc;
fn cfg(dir: &std::path::Path, log: bool, local: bool) -> Config {
    let mut text = String::new();
    for i in 0..10_000 {
        text.push_str(&format!("d{i}.example.com\n"));
    }
    std::fs::write(dir.join("big.txt"), text).unwrap();
    std::fs::write(dir.join("allow.txt"), "ok.d77.example.com\n").unwrap();
    let l = if log {
        "[log]\npath = \"q.jsonl\"\n"
    } else {
        ""
    };
    let mut toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstream]\nservers = [\"127.0.0.1:9\"]\n[blocking]\nlists = [\"big.txt\"]\nallow = [\"allow.txt\"]\n{l}"
    );
    if local {
        for i in 0..200 {
            toml.push_str(&format!(
                "[[local.records]]\nname = \"host{i}.lan\"\na = [\"10.1.0.{}\"]\n",
                i + 1
            ));
        }
        toml.push_str("[[local.records]]\nname = \"*.lab.lan\"\na = [\"10.2.0.1\"]\n");
    }
    Config::parse(&toml, "ab.toml", Some(dir)).unwrap()
}
fn case(c: &str) -> (Vec<u8>, bool, bool) {
    let local = c.ends_with("_local200");
    let c = c.trim_end_matches("_local200");
    let log = c.ends_with("_log");
    let pkt = match c.trim_end_matches("_log") {
        "blocked" => support::query("www.d5000.example.com."),
        "cached" => support::query("www.example.org."),
        _ => support::query("cdn.ok.d77.example.com."),
    };
    (pkt, log, local)
}
fn main() {
    use sinkhole::handler::{Arrival, Handler};
    // The arguments are the tool's interface; a wrong one panics with a message.
    use sinkhole::pipeline::{Clock, Pipeline, Policy, Transport};
    let a: Vec<String> = std::env::args().collect();
    let (pkt, log, local) = case(&a[1]);
    let iters: usize = a[2].parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), log, local);
    let (policy, _) = Policy::load(&c).unwrap();
    let p = Pipeline::new(&c, policy, Arc::new(sinkhole::counters::Counters::new()));
    support::cache(&p, &pkt);
    let h = Handler::new(
        Arc::new(p),
        sinkhole::server::slots::ClientSlots::new(64, 64),
        log,
    );
    let how = Arrival {
        client: "192.168.1.10:53000".parse().unwrap(),
        transport: Transport::Udp,
        arrived: tokio::time::Instant::now(),
        now: Clock::system().now(),
    };
    let mut out = Vec::with_capacity(1500);
    for _ in 0..iters {
        black_box(h.handle_packet(black_box(&pkt), how, &mut out));
    }
    black_box(out.len());
}
