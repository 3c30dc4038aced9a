//! Blocklist benchmark, the figures issue 3 asks for:
//! - a 1M-domain synthetic list written to a file, loaded from it (read + parse + build), its
//!   memory above the process baseline (RSS), and lookups that hit, hit deep, and miss;
//! - the real 1.9M aggregate from `../shared/data` (decompressed with `xz` to a temp file), the
//!   same figures, when the file and `xz` are there;
//! - the slow path: a miss through a set holding the AdGuard DNS filter's globs and regexes and
//!   both Pi-hole regex lists, against the same set without patterns.
//!
//! `cargo bench --bench blocklist` (add `-- --quick` for a fast run).

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sinkhole::blocklist::load::{ListSource, load_all_with};
use sinkhole::blocklist::{Blocklist, Kind};

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

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn load(path: &Path) -> Blocklist {
    let src = ListSource::file(&path.display().to_string(), path, Kind::Block);
    load_all_with(&[src], Path::new("/nonexistent"), false)
        .expect("list loads")
        .0
}

/// Loads once outside criterion to report load time and memory above the baseline.
fn report(label: &str, path: &Path) -> Blocklist {
    let before = rss_kib();
    let t = Instant::now();
    let list = load(path);
    let elapsed = t.elapsed();
    let after = rss_kib();
    eprintln!(
        "{label}: {} rules ({} duplicates) loaded from file in {:.0} ms; RSS +{:.1} MiB above baseline (heap estimate {:.1} MiB)",
        list.len(),
        list.stats().duplicates,
        elapsed.as_secs_f64() * 1e3,
        (after.saturating_sub(before)) as f64 / 1024.0,
        list.heap_bytes() as f64 / 1048576.0
    );
    list
}

fn lookups(c: &mut Criterion, group: &str, list: &Blocklist, hits: &[String], misses: &[String]) {
    let deep: Vec<String> = hits.iter().map(|n| format!("a.b.c.{n}")).collect();
    let mut g = c.benchmark_group(group);
    g.sample_size(30);
    g.throughput(Throughput::Elements(hits.len() as u64));
    for (label, set) in [
        ("find_hit", hits),
        ("find_deep_hit", &deep),
        ("find_miss", misses),
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

/// Lookups as a server makes them: batches of 32 names (one `recvmmsg`), each batch after
/// the CPU caches were flushed (on a server the kernel's network work runs between two
/// batches and evicts the list). One by one, and with [`Blocklist::prefetch`] of the whole
/// batch first. Only the lookups are timed.
fn cold_batches(c: &mut Criterion, group: &str, list: &Blocklist, names: &[String]) {
    const BATCH: usize = 32;
    let flush: Vec<u64> = (0..(8u64 << 20) / 8).collect();
    let mut hashes = Vec::new();
    let mut g = c.benchmark_group(group);
    g.sample_size(30);
    g.throughput(Throughput::Elements(BATCH as u64));
    for prefetch in [false, true] {
        let label = if prefetch {
            "cold_batch_prefetch"
        } else {
            "cold_batch"
        };
        let mut at = 0;
        g.bench_function(label, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    black_box(flush.iter().step_by(8).fold(0, |s, x| s ^ x));
                    let batch = &names[at..at + BATCH];
                    at = (at + BATCH) % (names.len() - BATCH);
                    // The names are in packets just received: in the cache.
                    black_box(batch.iter().map(|n| n.as_bytes()[0]).fold(0, |s, b| s ^ b));
                    let t = Instant::now();
                    if prefetch {
                        let names = batch.iter().map(|n| black_box(n.as_bytes()));
                        black_box(list.prefetch(names, &mut hashes));
                    }
                    let mut n = 0;
                    for name in batch {
                        n += usize::from(list.find(black_box(name.as_bytes())).is_some());
                    }
                    black_box(n);
                    total += t.elapsed();
                }
                total
            })
        });
    }
    g.finish();
}

fn misses() -> Vec<String> {
    (0..1000)
        .map(|i| format!("www.miss{i}.example.com"))
        .collect()
}

fn synthetic(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("synthetic-1m.txt");
    let mut text = String::with_capacity(N * 22);
    for i in 0..N {
        text.push_str(&domain(i));
        text.push('\n');
    }
    std::fs::write(&path, &text).expect("write list");
    drop(text);
    let list = report("synthetic 1M", &path);
    let hits: Vec<String> = (0..1000).map(|i| domain(i * 997)).collect();
    lookups(c, "synthetic_1m", &list, &hits, &misses());
    // Half hits (a name below a listed one), half misses, spread over the whole list.
    let mixed: Vec<String> = (0..100_000)
        .map(|i| {
            if i % 2 == 0 {
                format!("www.{}", domain(i * 10 % N))
            } else {
                format!("www.miss{i}.example.com")
            }
        })
        .collect();
    cold_batches(c, "synthetic_1m", &list, &mixed);
    drop(list);
    let mut g = c.benchmark_group("synthetic_1m_load");
    g.sample_size(10);
    g.bench_function("load_from_file", |b| b.iter(|| black_box(load(&path))));
    g.finish();
}

fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/blocklists")
}

fn real_big(c: &mut Criterion) {
    let xz = shared().join("domains_wallacebrf_aggregate_1.9M.txt.xz");
    if !xz.exists() {
        eprintln!("skipping the 1.9M list: {} not found", xz.display());
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("aggregate.txt");
    let out = std::process::Command::new("xz")
        .arg("-dc")
        .arg(&xz)
        .output();
    let Ok(out) = out.map(|o| o.stdout).map_err(|e| eprintln!("xz: {e}")) else {
        return;
    };
    std::fs::write(&path, &out).expect("write list");
    let text = String::from_utf8_lossy(&out).into_owned();
    drop(out);
    let hits: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.len() > 4 && l.contains('.'))
        .step_by(1900)
        .take(1000)
        .map(str::to_ascii_lowercase)
        .collect();
    drop(text);
    let list = report("wallacebrf aggregate 1.9M", &path);
    lookups(c, "real_1_9m", &list, &hits, &misses());
    drop(list);
    let mut g = c.benchmark_group("real_1_9m_load");
    g.sample_size(10);
    g.bench_function("load_from_file", |b| b.iter(|| black_box(load(&path))));
    g.finish();
}

fn patterns(c: &mut Criterion) {
    let lists: Vec<ListSource> = [
        "adblock_adguard_dns_filter.txt",
        "regex_mmotti_pihole.list",
        "regex_perflyst_pihole.list",
    ]
    .iter()
    .map(|n| ListSource::file(n, shared().join(n), Kind::Block))
    .filter(|s| matches!(&s.location, sinkhole::blocklist::load::Location::File(p) if p.exists()))
    .collect();
    if lists.len() < 3 {
        eprintln!("skipping the pattern bench: shared lists not found");
        return;
    }
    let (with, _) = load_all_with(&lists, Path::new("/nonexistent"), false).expect("loads");
    eprintln!(
        "patterns: {} block patterns ({} globs without a prefilter literal); {} name rules",
        with.patterns().len(Kind::Block),
        with.patterns().unfiltered_globs(Kind::Block),
        with.len()
    );
    let names: Vec<String> = (0..1000)
        .map(|i| format!("www{i}.shop{}.example.org", i % 17))
        .collect();
    let mut g = c.benchmark_group("patterns");
    g.throughput(Throughput::Elements(names.len() as u64));
    g.sample_size(30);
    g.bench_function("miss_with_patterns", |b| {
        b.iter(|| {
            let mut n = 0;
            for name in &names {
                n += usize::from(with.find(black_box(name.as_bytes())).is_some());
            }
            n
        })
    });
    let (globs_only, _) =
        load_all_with(&lists[..1], Path::new("/nonexistent"), false).expect("loads");
    let (regex_only, _) =
        load_all_with(&lists[1..], Path::new("/nonexistent"), false).expect("loads");
    for (label, list) in [
        ("miss_adguard_patterns_only", &globs_only),
        ("miss_pihole_regexes_only", &regex_only),
    ] {
        g.bench_function(label, |b| {
            b.iter(|| {
                let mut n = 0;
                for name in &names {
                    n += usize::from(list.find(black_box(name.as_bytes())).is_some());
                }
                n
            })
        });
    }
    g.bench_function("miss_named_only", |b| {
        b.iter(|| {
            let mut n = 0;
            for name in &names {
                n += usize::from(with.find_named(black_box(name.as_bytes())).is_some());
            }
            n
        })
    });
    g.finish();
}

criterion_group!(benches, synthetic, real_big, patterns);
criterion_main!(benches);
