//! Matcher benchmark: build a 1M-rule list of deterministic synthetic domains in memory, then
//! measure lookups that hit (listed name, deep subdomain) and miss.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sinkhole::blocklist::{Blocklist, BlocklistBuilder, Kind};

const N: usize = 1_000_000;
const TLDS: [&str; 6] = ["com", "net", "org", "io", "de", "co.uk"];

/// The i-th synthetic domain: 2 or 3 labels, realistic lengths.
fn domain(i: usize) -> String {
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut label = String::new();
    let len = 6 + (x % 10) as usize;
    for _ in 0..len {
        label.push((b'a' + (x % 26) as u8) as char);
        x = x.rotate_left(7).wrapping_mul(0x2545_F491_4F6C_DD1D);
    }
    let tld = TLDS[i % TLDS.len()];
    if i.is_multiple_of(3) {
        format!("ads{}.{label}.{tld}", i % 97)
    } else {
        format!("{label}{i}.{tld}")
    }
}

fn build(n: usize) -> Blocklist {
    let mut b = BlocklistBuilder::new();
    let src = b.add_source("synthetic");
    for i in 0..n {
        b.insert(&domain(i), Kind::Block, src, i as u32 + 1);
    }
    b.build()
}

fn bench(c: &mut Criterion) {
    let names: Vec<String> = (0..N).map(domain).collect();
    let mut g = c.benchmark_group("blocklist_1m");
    g.sample_size(10);
    g.bench_function("build", |b| b.iter(|| black_box(build(N))));
    let list = build(N);
    eprintln!(
        "1M list: {} rules, ~{} MiB heap",
        list.len(),
        list.heap_bytes() >> 20
    );
    let hits: Vec<String> = (0..1000).map(|i| names[i * 997].clone()).collect();
    let deep: Vec<String> = (0..1000)
        .map(|i| format!("a.b.c.{}", names[i * 991]))
        .collect();
    let misses: Vec<String> = (0..1000)
        .map(|i| format!("www.miss{i}.example.com"))
        .collect();
    g.sample_size(50);
    g.throughput(Throughput::Elements(1000));
    for (label, set) in [
        ("find_hit", &hits),
        ("find_deep_hit", &deep),
        ("find_miss", &misses),
    ] {
        g.bench_function(label, |b| {
            b.iter(|| {
                let mut n = 0;
                for name in set.iter() {
                    n += usize::from(list.find(black_box(name.as_bytes())).is_some());
                }
                n
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
