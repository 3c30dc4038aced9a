//! Deterministic cost of the no-I/O query path, for A/B comparisons on machines without
//! hardware counters (noisy VMs): `pipeline_instructions CASE ITERS` runs the path of
//! `benches/pipeline.rs` ITERS times (10k-entry list), CASE one of `blocked`, `cached`,
//! `allowed_listed`, each optionally followed by `_log`, `_nolimits` and `_local200` (in
//! that order). The client is a LAN address under the rate limits (at a rate they never
//! refuse: 10^6 qps), so that their stage is measured; `_nolimits` turns them off
//! (`limits.qps = 0`); `_local200` configures 200 local records and a wildcard. Two
//! environment variables widen it: `CLIENT` (default `192.168.1.10`) is the client's
//! address, and `SINKHOLE_CONFIG_EXTRA` names a TOML file appended to the config (groups,
//! access CIDRs, …; absolute paths inside it). Under callgrind, the instructions of a run
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

/// What a CASE asks for.
struct Case {
    pkt: Vec<u8>,
    log: bool,
    limits: bool,
    local: bool,
}

fn cfg(dir: &std::path::Path, c: &Case) -> Config {
    let mut text = String::new();
    for i in 0..10_000 {
        text.push_str(&format!("d{i}.example.com\n"));
    }
    std::fs::write(dir.join("big.txt"), text).unwrap();
    std::fs::write(dir.join("allow.txt"), "ok.d77.example.com\n").unwrap();
    let l = if c.log {
        "[log]\npath = \"q.jsonl\"\n"
    } else {
        ""
    };
    let limits = if c.limits {
        "[limits]\nqps = 1000000\nburst = 1000000\n"
    } else {
        "[limits]\nqps = 0\n"
    };
    let mut toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstream]\nservers = [\"127.0.0.1:9\"]\n[blocking]\nlists = [\"big.txt\"]\nallow = [\"allow.txt\"]\n{l}{limits}"
    );
    if c.local {
        for i in 0..200 {
            toml.push_str(&format!(
                "[[local.records]]\nname = \"host{i}.lan\"\na = [\"10.1.0.{}\"]\n",
                i + 1
            ));
        }
        toml.push_str("[[local.records]]\nname = \"*.lab.lan\"\na = [\"10.2.0.1\"]\n");
    }
    if let Ok(extra) = std::env::var("SINKHOLE_CONFIG_EXTRA") {
        toml.push('\n');
        toml.push_str(&std::fs::read_to_string(extra).unwrap());
    }
    Config::parse(&toml, "ab.toml", Some(dir)).unwrap()
}

fn case(c: &str) -> Case {
    let local = c.ends_with("_local200");
    let c = c.trim_end_matches("_local200");
    let limits = !c.ends_with("_nolimits");
    let c = c.trim_end_matches("_nolimits");
    let log = c.ends_with("_log");
    let pkt = match c.trim_end_matches("_log") {
        "blocked" => support::query("www.d5000.example.com."),
        "cached" => support::query("www.example.org."),
        _ => support::query("cdn.ok.d77.example.com."),
    };
    Case {
        pkt,
        log,
        limits,
        local,
    }
}

fn main() {
    use sinkhole::handler::{Arrival, Handler};
    // The arguments are the tool's interface; a wrong one panics with a message.
    use sinkhole::pipeline::{Clock, Pipeline, Policy, Transport};
    let a: Vec<String> = std::env::args().collect();
    let c = case(&a[1]);
    let iters: usize = a[2].parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = cfg(dir.path(), &c);
    let (policy, _) = Policy::load(&cfg).unwrap();
    let p = Pipeline::new(&cfg, policy, Arc::new(sinkhole::counters::Counters::new()));
    support::cache(&p, &c.pkt);
    let h = Handler::new(
        Arc::new(p),
        sinkhole::server::slots::ClientSlots::new(64, 64),
        c.log,
    );
    let client = std::env::var("CLIENT").unwrap_or_else(|_| "192.168.1.10".into());
    let how = Arrival {
        client: std::net::SocketAddr::new(client.parse().unwrap(), 53000),
        transport: Transport::Udp,
        arrived: tokio::time::Instant::now(),
        now: Clock::system().now(),
    };
    let mut out = Vec::with_capacity(1500);
    for _ in 0..iters {
        black_box(h.handle_packet(black_box(&c.pkt), how, &mut out));
    }
    black_box(out.len());
}
