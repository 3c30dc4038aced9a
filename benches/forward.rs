//! The forwarding (cache-miss) path alone, against a loopback upstream that answers every
//! query at once (a std thread on 127.0.0.1: the query's header and question echoed with QR,
//! RA and one A record), so that what is measured is our cost, not the upstream's:
//! - `upstream`: `Upstream::forward`, the upstream stage alone (pool, ID, send, reader,
//!   match, parse), 64 queries in flight at once on one task;
//! - `pipeline`: a packet through `Handler::handle_packet` to its pending answer, run to the
//!   end (the stage, the answer checks, the cache store, the answer written, the counters),
//!   64 in flight, each a task as the UDP listener spawns it;
//! - `server`: the real UDP listener on loopback, a client sending bursts of 64 queries for
//!   new names and reading the 64 answers: everything a miss costs the server, syscalls to
//!   and from the client included.
//!
//! The time reported is CPU time, not wall time: the process's user + system time minus
//! that of the upstream's thread and of the client's (both measured per thread with
//! `getrusage(RUSAGE_THREAD)`), i.e. the server's own CPU per query as the lab counts it.
//! On a loaded machine this is far steadier than wall time.
//!
//! `cargo bench --bench forward` (add `-- --quick` for a fast run).

use std::future::Future;
use std::net::{SocketAddr, UdpSocket};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nix::sys::resource::{UsageWho, getrusage};
use sinkhole::config::Config;
use sinkhole::counters::Counters;
use sinkhole::dns::wire;
use sinkhole::handler::{Arrival, Handled, Handler};
use sinkhole::pipeline::upstream::Upstream;
use sinkhole::pipeline::{Clock, Pipeline, Policy, Transport};
use sinkhole::server::slots::ClientSlots;
use sinkhole::server::{Server, Tuning, bind};

/// Queries in flight at once.
const WINDOW: usize = 64;

fn cpu(who: UsageWho) -> Duration {
    let u = getrusage(who).unwrap();
    let us = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    us(u.user_time()) + us(u.system_time())
}

/// The loopback upstream: answers each query at once; publishes its own CPU time (µs).
struct Responder {
    addr: SocketAddr,
    cpu_us: Arc<AtomicU64>,
}

fn responder() -> Responder {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    let cpu_us = Arc::new(AtomicU64::new(0));
    let published = Arc::clone(&cpu_us);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut out = Vec::with_capacity(512);
        loop {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            if answer(buf.get(..n).unwrap_or_default(), &mut out) {
                let _ = sock.send_to(&out, from);
            }
            let t = cpu(UsageWho::RUSAGE_THREAD);
            published.store(t.as_micros() as u64, Ordering::Relaxed);
        }
    });
    Responder { addr, cpu_us }
}

/// The answer to `q`: its header and question, QR and RA set, one A record 192.0.2.1.
fn answer(q: &[u8], out: &mut Vec<u8>) -> bool {
    let mut i = 12;
    while let Some(&len) = q.get(i) {
        i += 1 + usize::from(len);
        if len == 0 {
            break;
        }
    }
    let end = i + 4;
    let (Some(head), Some(question)) = (q.get(..12), q.get(12..end)) else {
        return false;
    };
    out.clear();
    out.extend_from_slice(head);
    out[2] |= 0x80;
    out[3] = 0x80;
    out[4..12].copy_from_slice(&[0, 1, 0, 1, 0, 0, 0, 0]);
    out.extend_from_slice(question);
    out.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 192, 0, 2, 1]);
    true
}

/// The bytes of an A query for `n{i}.forward.bench` (RD).
fn query(i: u64, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&[(i >> 8) as u8, i as u8, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    let label = format!("n{i}");
    out.push(label.len() as u8);
    out.extend_from_slice(label.as_bytes());
    out.extend_from_slice(b"\x07forward\x05bench\x00\x00\x01\x00\x01");
}

fn config(upstream: SocketAddr) -> Config {
    let toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_threads = 1\n\
         [upstream]\nservers = [\"{upstream}\"]\ntimeout_ms = 2000\n\
         [cache]\nmax_entries = 100000\n[limits]\nqps = 0\n"
    );
    Config::parse(&toml, "bench.toml", None).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Polls every future of `futs` to its end, on the calling task.
async fn join_all<F: Future>(futs: Vec<F>) {
    let mut futs: Vec<Option<Pin<Box<F>>>> = futs.into_iter().map(|f| Some(Box::pin(f))).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for slot in &mut futs {
            if let Some(f) = slot {
                if f.as_mut().poll(cx).is_ready() {
                    *slot = None;
                } else {
                    pending = true;
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
}

/// Runs `iters` queries, `WINDOW` at a time, through `run`, and returns the CPU time the
/// process spent minus the upstream's and the calling thread's `exclude`d share.
fn measure(
    up: &Responder,
    iters: u64,
    exclude_self: bool,
    mut run: impl FnMut(std::ops::Range<u64>),
) -> Duration {
    let (p0, t0, u0) = (
        cpu(UsageWho::RUSAGE_SELF),
        cpu(UsageWho::RUSAGE_THREAD),
        up.cpu_us.load(Ordering::Relaxed),
    );
    let mut i = 0;
    while i < iters {
        let n = (iters - i).min(WINDOW as u64);
        run(i..i + n);
        i += n;
    }
    let (p1, t1, u1) = (
        cpu(UsageWho::RUSAGE_SELF),
        cpu(UsageWho::RUSAGE_THREAD),
        up.cpu_us.load(Ordering::Relaxed),
    );
    let mut d = (p1 - p0).saturating_sub(Duration::from_micros(u1.saturating_sub(u0)));
    if exclude_self {
        d = d.saturating_sub(t1 - t0);
    }
    d
}

fn bench(c: &mut Criterion) {
    let up = responder();
    let rt = runtime();
    let cfg = config(up.addr);
    let counters = Counters::new();
    let mut g = c.benchmark_group("forward");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_millis(500));

    // The upstream stage alone.
    let stage = Upstream::new(&cfg.upstream, &cfg.cache, &counters);
    let mut next = 0u64;
    let mut pkt = Vec::new();
    g.bench_function("upstream", |b| {
        b.iter_custom(|iters| {
            measure(&up, iters, false, |range| {
                let qs: Vec<wire::Query> = range
                    .map(|_| {
                        next += 1;
                        query(next, &mut pkt);
                        wire::parse_query(&pkt).unwrap()
                    })
                    .collect();
                rt.block_on(join_all(
                    qs.iter()
                        .map(|q| async {
                            stage.forward(q, tokio::time::Instant::now()).await.unwrap();
                        })
                        .collect(),
                ));
            })
        })
    });

    // The pipeline's miss path, as the UDP listener runs it.
    let (policy, _) = Policy::load(&cfg).unwrap();
    let pipeline = Arc::new(Pipeline::new(&cfg, policy, Arc::new(Counters::new())));
    let handler = Arc::new(Handler::new(pipeline, ClientSlots::new(4096, 8192), false));
    let clock = Clock::system();
    let mut out = Vec::with_capacity(512);
    g.bench_function("pipeline", |b| {
        b.iter_custom(|iters| {
            measure(&up, iters, false, |range| {
                let how = Arrival {
                    client: SocketAddr::from(([192, 168, 1, 9], 40000)),
                    transport: Transport::Udp,
                    arrived: tokio::time::Instant::now(),
                    now: clock.now(),
                };
                let tasks: Vec<_> = range
                    .map(|_| {
                        next += 1;
                        query(next, &mut pkt);
                        let Handled::Pending(answer) = handler.handle_packet(&pkt, how, &mut out)
                        else {
                            panic!("not a miss: {:?}", wire::parse_query(&out));
                        };
                        rt.spawn(async move {
                            let (bytes, _) = answer.run().await;
                            assert!(!bytes.is_empty());
                        })
                    })
                    .collect();
                rt.block_on(async {
                    for t in tasks {
                        t.await.unwrap();
                    }
                });
            })
        })
    });

    // The whole server, through its UDP listener.
    let sockets = bind(&cfg.server.listen, 1).unwrap();
    let addr = sockets.local_addrs()[0];
    let tuning = Tuning {
        tcp_idle: Duration::from_secs(2),
        udp_batch_wait: cfg.server.udp_batch_wait,
        tcp_max_connections: 8,
        tcp_max_per_client: 4,
    };
    let server = Server::start(
        sockets,
        Arc::clone(&handler),
        None,
        rt.handle(),
        tuning,
        Clock::system(),
    )
    .unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.connect(addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 1500];
    g.bench_function("server", |b| {
        b.iter_custom(|iters| {
            measure(&up, iters, true, |range| {
                let n = range.end - range.start;
                for _ in range {
                    next += 1;
                    query(next, &mut pkt);
                    client.send(&pkt).unwrap();
                }
                for _ in 0..n {
                    // A lost answer (a full socket buffer) only shortens the count.
                    if client.recv(&mut buf).is_err() {
                        break;
                    }
                }
            })
        })
    });
    g.finish();
    server.shutdown();
}

criterion_group!(benches, bench);
criterion_main!(benches);
