//! The mutational fuzzer: a seeded PRNG, byte and text mutations, a run loop with a time or
//! iteration budget, panic capture, a shrinker, and the one-line report per target.
//!
//! It is deliberately small: no coverage instrumentation (that needs nightly). Instead each
//! target returns an *outcome signature* (which branch the input took, bucketed sizes), and
//! an input that produces a signature not seen before joins the corpus, so mutations build
//! on inputs that reached somewhere new.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;
use std::time::{Duration, Instant};

/// Default time budget per target: the six targets take about 60 s of CPU in all (debug
/// build), about 30 s of wall clock with the two test threads CI has.
const DEFAULT_SECS: f64 = 10.0;
/// Largest corpus kept per target (older inputs stay; new ones are dropped past it).
const MAX_CORPUS: usize = 4096;
/// Attempts the shrinker makes at most.
const SHRINK_TRIES: usize = 4000;

/// splitmix64: tiny, fast, and fully determined by its seed.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`; 0 when `n == 0`).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.next() % n as u64) as usize
    }

    /// True with probability 1/n.
    pub(crate) fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    pub(crate) fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

/// The run's seed: `SINKHOLE_FUZZ_SEED`, else one from the clock (printed, so a failure can
/// be replayed).
pub(crate) fn run_seed() -> u64 {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SEED.get_or_init(|| {
        let seed = std::env::var("SINKHOLE_FUZZ_SEED")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        println!("fuzz: seed {seed} (replay with SINKHOLE_FUZZ_SEED={seed})");
        seed
    })
}

/// How long a target runs: `SINKHOLE_FUZZ_ITERS` inputs if set, else `SINKHOLE_FUZZ_SECS`
/// seconds (default [`DEFAULT_SECS`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    iters: Option<u64>,
    time: Duration,
}

impl Budget {
    pub(crate) fn from_env() -> Self {
        let iters = std::env::var("SINKHOLE_FUZZ_ITERS")
            .ok()
            .and_then(|s| s.trim().parse().ok());
        let secs = std::env::var("SINKHOLE_FUZZ_SECS")
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .unwrap_or(DEFAULT_SECS);
        Self {
            iters,
            time: Duration::from_secs_f64(secs),
        }
    }

    fn done(&self, n: u64, start: Instant) -> bool {
        match self.iters {
            Some(max) => n >= max,
            None => start.elapsed() >= self.time,
        }
    }
}

/// What a target's check says about one input: an outcome signature, or a broken property.
pub(crate) type Verdict = Result<u64, String>;

/// Hashes a few values into an outcome signature.
pub(crate) fn sig(parts: &[u64]) -> u64 {
    parts.iter().fold(0xcbf2_9ce4_8422_2325, |h, &p| {
        (h ^ p).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// Kinds of input, for the mutations that know their structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// A DNS message: label-length and count tweaks on top of the byte mutations.
    Dns,
    /// Lines of text: line swaps, duplicates and splices on top of the byte mutations.
    Text,
}

/// One fuzz target: its name, seed inputs, dictionary of tokens, and size cap.
pub(crate) struct Target {
    pub(crate) name: &'static str,
    pub(crate) seeds: Vec<Vec<u8>>,
    pub(crate) dict: Vec<Vec<u8>>,
    pub(crate) max_len: usize,
    pub(crate) shape: Shape,
}

thread_local! {
    static QUIET: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// A panic hook that keeps panics inside a fuzz iteration quiet (recorded for the report)
/// and passes every other panic to the previous hook.
fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET.get() {
                // The frames down to the fuzzer's own: where the target broke.
                let bt = std::backtrace::Backtrace::capture().to_string();
                let frames: Vec<&str> = bt
                    .lines()
                    .take_while(|l| !l.contains("fuzz::engine"))
                    .collect();
                let msg = format!("{info}\n{}", frames.join("\n"));
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(msg));
            } else {
                prev(info);
            }
        }));
    });
}

/// Runs `check` on `input`, turning a panic into `Err("panic: …")`.
fn run_one(check: &mut dyn FnMut(&[u8]) -> Verdict, input: &[u8]) -> Verdict {
    QUIET.set(true);
    let r = catch_unwind(AssertUnwindSafe(|| check(input)));
    QUIET.set(false);
    match r {
        Ok(v) => v,
        Err(_) => {
            let msg = LAST_PANIC
                .with(|p| p.borrow_mut().take())
                .unwrap_or_else(|| "panic (no message)".into());
            Err(format!("panic: {msg}"))
        }
    }
}

/// Lower-case hex of `b`.
pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Fuzzes `check` with mutations of the target's seeds within the budget. On a panic or a
/// broken property it shrinks the input, prints both in hex with the replay command, and
/// panics (failing the test). Returns the number of inputs run.
pub(crate) fn fuzz(t: Target, check: impl FnMut(&[u8]) -> Verdict) -> u64 {
    fuzz_with(t, Budget::from_env(), check)
}

/// [`fuzz`] with an explicit budget.
fn fuzz_with(t: Target, budget: Budget, mut check: impl FnMut(&[u8]) -> Verdict) -> u64 {
    install_hook();
    let name_hash = sig(&t.name.bytes().map(u64::from).collect::<Vec<_>>());
    let mut rng = Rng::new(run_seed() ^ name_hash);
    let mut corpus: Vec<Vec<u8>> = t.seeds.iter().filter(|s| !s.is_empty()).cloned().collect();
    assert!(!corpus.is_empty(), "fuzz {}: no seed inputs", t.name);
    let mut outcomes: HashSet<u64> = HashSet::new();
    let mut failures: Vec<Failure> = Vec::new();
    let last_dir = std::env::var_os("SINKHOLE_FUZZ_LAST").map(std::path::PathBuf::from);
    let start = Instant::now();
    let mut n: u64 = 0;
    let mut queue: Vec<Vec<u8>> = corpus.iter().rev().cloned().collect();
    while !budget.done(n, start) && failures.len() < MAX_FAILURES {
        // The seeds first, as they are; then mutations.
        let input = queue.pop().unwrap_or_else(|| {
            let mut x = rng.pick(&corpus).clone();
            let rounds = 1 + rng.below(4) + if rng.one_in(8) { rng.below(12) } else { 0 };
            for _ in 0..rounds {
                crate::mutate::mutate(&mut rng, &mut x, &corpus, &t);
            }
            x
        });
        n += 1;
        if let Some(dir) = &last_dir {
            // For crashes that cannot be caught (stack overflow, abort): the input is on disk.
            let _ = std::fs::write(dir.join(format!("{}.last", t.name)), &input);
        }
        match run_one(&mut check, &input) {
            Ok(o) => {
                if outcomes.insert(o) && corpus.len() < MAX_CORPUS {
                    corpus.push(input);
                }
            }
            Err(why) => {
                let key = failure_key(&why);
                if !failures.iter().any(|f| f.key == key) {
                    failures.push(Failure {
                        key,
                        why,
                        input,
                        at: n,
                        secs: start.elapsed().as_secs_f64(),
                    });
                }
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "fuzz {}: {n} inputs in {secs:.1}s ({:.0}/s), {} distinct outcomes, corpus {}, {} failures",
        t.name,
        n as f64 / secs.max(1e-9),
        outcomes.len(),
        corpus.len(),
        failures.len()
    );
    if !failures.is_empty() {
        report_failures(&t, &mut check, &failures);
    }
    n
}

/// Failures kept per run: a few distinct ones, each with its first input.
const MAX_FAILURES: usize = 4;

/// A distinct failure: what broke (the key groups repeats) and the first input that did.
struct Failure {
    key: String,
    why: String,
    input: Vec<u8>,
    at: u64,
    secs: f64,
}

/// What makes two failures the same: the panic's location, or the first line of the
/// message without its numbers.
fn failure_key(why: &str) -> String {
    if let Some(rest) = why.strip_prefix("panic: ") {
        let loc = rest.lines().next().unwrap_or("");
        return loc.split(':').take(2).collect::<Vec<_>>().join(":");
    }
    let first = why.lines().next().unwrap_or("");
    first.chars().filter(|c| !c.is_ascii_digit()).collect()
}

fn report_failures(t: &Target, check: &mut dyn FnMut(&[u8]) -> Verdict, failures: &[Failure]) -> ! {
    let seed = run_seed();
    let mut msg = String::new();
    for f in failures {
        let small = shrink(check, &f.input);
        let small_why = run_one(check, &small).err().unwrap_or_default();
        msg.push_str(&format!(
            "\n=== fuzz {}: failure at input {} after {:.1}s: {}\n{}\ninput ({} bytes): {}\n\
             shrunk ({} bytes): {}\n{:?}\nshrunk fails with: {}\n\
             replay: SINKHOLE_FUZZ_SEED={seed} SINKHOLE_FUZZ_ITERS={} cargo test --test fuzz {} -- --include-ignored\n",
            t.name,
            f.at,
            f.secs,
            f.key,
            f.why,
            f.input.len(),
            hex(&f.input),
            small.len(),
            hex(&small),
            String::from_utf8_lossy(&small),
            small_why.lines().next().unwrap_or(""),
            f.at,
            t.name,
        ));
    }
    panic!("fuzz {}: {} distinct failures{msg}", t.name, failures.len());
}

/// Removes chunks of `input` (halves down to single bytes) while it still fails.
fn shrink(check: &mut dyn FnMut(&[u8]) -> Verdict, input: &[u8]) -> Vec<u8> {
    let mut cur = input.to_vec();
    let mut tries = 0;
    let mut chunk = cur.len() / 2;
    while chunk >= 1 && tries < SHRINK_TRIES {
        let mut i = 0;
        let mut progressed = false;
        while i + chunk <= cur.len() && tries < SHRINK_TRIES {
            let mut cand = cur.clone();
            cand.drain(i..i + chunk);
            tries += 1;
            if run_one(check, &cand).is_err() {
                cur = cand;
                progressed = true;
            } else {
                i += chunk;
            }
        }
        if !progressed {
            chunk /= 2;
        }
    }
    cur
}

/// The fuzzer finds a planted bug (a parser that breaks on a 3-byte pattern no seed has)
/// within a fixed number of inputs, shrinks it, and fails.
#[test]
#[should_panic(expected = "fuzz planted: 1 distinct failures")]
fn engine_finds_a_planted_bug() {
    let t = Target {
        name: "planted",
        seeds: vec![b"www.example.com".to_vec(), b"\x03www\x00".to_vec()],
        dict: vec![b"\xc0".to_vec()],
        max_len: 256,
        shape: Shape::Text,
    };
    // Independent of the environment's budget.
    let budget = Budget {
        iters: Some(200_000),
        time: Duration::MAX,
    };
    let _ = fuzz_with(t, budget, |b| {
        if b.windows(3).any(|w| w[0] == 0xc0 && w[2] == b'.') {
            return Err("planted".into());
        }
        Ok(b.len() as u64 / 8)
    });
}
