//! The per-query counter add (`Counters::query`), on one thread and on two threads at once,
//! against the same three adds on one unsharded set of atomics (what sharding avoids: every
//! add moving the same cache line between cores).
//!
//! `cargo bench --bench counters -- --warm-up-time 1 --measurement-time 3`
//! The two-thread figures are wall time per iteration, one `query()` on each thread per
//! iteration; they need two idle cores to mean anything.

use std::hint::black_box;
use std::sync::Barrier;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use sinkhole::counters::{Counters, Transport};
use sinkhole::pipeline::Action;

/// The same three counters, unsharded: one copy shared by every thread.
#[derive(Default)]
struct Shared {
    actions: [AtomicU64; 6],
    qtypes: [AtomicU64; 17],
    transports: [AtomicU64; 5],
}

impl Shared {
    fn query(&self, action: usize, qtype: usize, transport: usize) {
        self.actions[action].fetch_add(1, Relaxed);
        self.qtypes[qtype].fetch_add(1, Relaxed);
        self.transports[transport].fetch_add(1, Relaxed);
    }
}

/// Runs `f(i)` `iters` times on each of two threads started together; returns the wall time.
fn two_threads(iters: u64, f: &(dyn Fn(u64) + Sync)) -> Duration {
    let start = Barrier::new(3);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                start.wait();
                for i in 0..iters {
                    f(i);
                }
            });
        }
        start.wait();
        let t = Instant::now();
        // The scope joins both threads before returning.
        t
    })
    .elapsed()
}

fn bench(c: &mut Criterion) {
    let counters = Counters::new();
    let shared = Shared::default();
    let action = |i: u64| {
        if i.is_multiple_of(4) {
            Action::Blocked
        } else {
            Action::Cached
        }
    };
    let mut g = c.benchmark_group("counters");
    g.bench_function("query/1 thread", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            counters.query(action(black_box(i)), black_box(1), Transport::Udp);
        });
    });
    g.bench_function("query/2 threads", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, &|i| {
                counters.query(action(black_box(i)), black_box(1), Transport::Udp);
            })
        });
    });
    g.bench_function("unsharded/1 thread", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            shared.query(black_box(i as usize % 2), black_box(0), 0);
        });
    });
    g.bench_function("unsharded/2 threads", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, &|i| {
                shared.query(black_box(i as usize % 2), black_box(0), 0);
            })
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
