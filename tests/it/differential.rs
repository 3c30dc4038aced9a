//! The differential test of recursion (issue 16): sinkhole (`upstream.mode = "recursive"`)
//! and a real unbound, both resolving from the same test root (`hierarchy`, on
//! `127.53.70.x:53`), are asked the same questions; their rcode, answer set (names, types,
//! rdata; TTLs ignored), AD bit and Extended DNS Error are compared.
//!
//! The cases are data ([`ROWS`]): each row names sinkhole's exact answer, and either says
//! that unbound agrees (same rcode, answers and AD; same EDE code where unbound sets one) or
//! gives unbound's own exact answer and why the two legitimately differ. Nothing is
//! weakened silently: a row that differs still pins both sides.
//!
//! Signed cases later (secure, bogus signature, expired signature, NSEC and NSEC3 denials):
//! sign the zones in `hierarchy`, write the root's DS or DNSKEY to `anchor.key` in both
//! servers' folders, start unbound with `validator iterator` as its `module-config` and
//! `trust-anchor-file: "<dir>/anchor.key"` (the `validating` argument of
//! [`Unbound::start`] below, and `upstream.trust_anchor`/`upstream.dnssec = "validate"` for
//! sinkhole), then add rows: a secure answer wants `ad: true` (`ok` and `fail` below build
//! unvalidated answers, AD clear), a bogus one SERVFAIL with its EDE code (6, 7, 9, 10,
//! 12), which unbound sets too.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::NS;
use hickory_proto::rr::{RData, Record, RecordType};

use crate::harness::{TestServer, ede, free_port, make_query, udp_raw};
use crate::hierarchy::{Authority, Silent, a, cname, delegate, hints, ip, name};

/// The test's own network, `127.53.70.0/24`.
const NET: u8 = 70;
/// The longest wait for one answer, of either server. unbound drops a client's query that
/// is still resolving after its `discard-timeout` (1.9 s), and sinkhole answers by its
/// `recursion_timeout_ms` (3 s here): nothing after 5 s means no answer at all.
const WAIT: Duration = Duration::from_secs(5);
/// sinkhole answers every row by its recursion deadline (3 s), with some slack.
const SINKHOLE_BY: Duration = Duration::from_millis(4000);

/// What one server answered, in the terms compared.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    rcode: ResponseCode,
    /// `name TYPE rdata`, lowercase, sorted.
    answers: Vec<String>,
    ad: bool,
    /// The EDE code, if any.
    ede: Option<u16>,
}

/// An exact expected answer.
struct Want {
    rcode: ResponseCode,
    answers: &'static [&'static str],
    ad: bool,
    ede: Option<u16>,
}

impl Want {
    fn outcome(&self) -> Outcome {
        let mut answers: Vec<String> = self.answers.iter().map(|s| s.to_string()).collect();
        answers.sort();
        Outcome {
            rcode: self.rcode,
            answers,
            ad: self.ad,
            ede: self.ede,
        }
    }
}

/// What unbound answers, against sinkhole's.
enum UnboundSays {
    /// Same rcode, answers and AD; the same EDE code where unbound sets one.
    Agrees,
    /// unbound's exact answer, and why the difference is legitimate (or, for a known gap
    /// of sinkhole's, what is left to fix).
    Differs(Want, &'static str),
    /// No answer within [`WAIT`], and why.
    Drops(&'static str),
}
use UnboundSays::{Agrees, Differs, Drops};

/// One question and what each side must answer.
struct Row {
    case: &'static str,
    qname: &'static str,
    qtype: RecordType,
    /// sinkhole's exact answer.
    sinkhole: Want,
    unbound: UnboundSays,
}

const fn ok(answers: &'static [&'static str]) -> Want {
    Want {
        rcode: ResponseCode::NoError,
        answers,
        ad: false,
        ede: None,
    }
}

/// A validated answer: AD set.
const fn secure(rcode: ResponseCode, answers: &'static [&'static str]) -> Want {
    Want {
        rcode,
        answers,
        ad: true,
        ede: None,
    }
}

const fn fail(rcode: ResponseCode, answers: &'static [&'static str], ede: Option<u16>) -> Want {
    Want {
        rcode,
        answers,
        ad: false,
        ede,
    }
}

/// EDE 22, No Reachable Authority: sinkhole's code for a resolution from the root that
/// failed or timed out. unbound 1.17 sets no EDE on these failures (loops, long chains,
/// referral loops: SERVFAIL alone), so only sinkhole's code is pinned there.
const NO_REACHABLE: Option<u16> = Some(22);

const ROWS: &[Row] = &[
    Row {
        case: "a plain A two delegations down",
        qname: "www.example.test.",
        qtype: RecordType::A,
        sinkhole: ok(&["www.example.test. A 192.0.2.10"]),
        unbound: Agrees,
    },
    Row {
        case: "NXDOMAIN",
        qname: "nope.example.test.",
        qtype: RecordType::A,
        sinkhole: fail(ResponseCode::NXDomain, &[], None),
        unbound: Agrees,
    },
    Row {
        case: "NODATA",
        qname: "www.example.test.",
        qtype: RecordType::AAAA,
        sinkhole: ok(&[]),
        unbound: Agrees,
    },
    Row {
        case: "a CNAME inside one zone",
        qname: "alias.example.test.",
        qtype: RecordType::A,
        sinkhole: ok(&[
            "alias.example.test. CNAME www.example.test.",
            "www.example.test. A 192.0.2.10",
        ]),
        unbound: Agrees,
    },
    Row {
        case: "a CNAME across zones",
        qname: "away.example.test.",
        qtype: RecordType::A,
        sinkhole: ok(&[
            "away.example.test. CNAME cdn.other.test.",
            "cdn.other.test. A 192.0.2.20",
        ]),
        unbound: Agrees,
    },
    Row {
        case: "a CNAME to a name that does not exist, in another zone",
        qname: "dangling.example.test.",
        qtype: RecordType::A,
        // RFC 6604 §3: the rcode is the last name's, and the answer keeps the chain.
        sinkhole: fail(
            ResponseCode::NXDomain,
            &["dangling.example.test. CNAME gone.other.test."],
            None,
        ),
        unbound: Agrees,
    },
    Row {
        case: "a CNAME across zones to a name without the asked type (NODATA)",
        qname: "away.example.test.",
        qtype: RecordType::AAAA,
        sinkhole: ok(&["away.example.test. CNAME cdn.other.test."]),
        unbound: Agrees,
    },
    Row {
        case: "a CNAME loop inside one zone",
        qname: "loop.example.test.",
        qtype: RecordType::A,
        sinkhole: fail(ResponseCode::ServFail, &[], NO_REACHABLE),
        unbound: Agrees,
    },
    Row {
        case: "a CNAME loop across zones",
        qname: "cross.example.test.",
        qtype: RecordType::A,
        sinkhole: fail(ResponseCode::ServFail, &[], NO_REACHABLE),
        unbound: Agrees,
    },
    Row {
        case: "a CNAME chain of 30 links inside one zone",
        qname: "c0.example.test.",
        qtype: RecordType::A,
        sinkhole: fail(ResponseCode::ServFail, &[], NO_REACHABLE),
        unbound: Agrees,
    },
    Row {
        case: "a CNAME chain of 30 links alternating between two zones",
        qname: "d0.example.test.",
        qtype: RecordType::A,
        sinkhole: fail(ResponseCode::ServFail, &[], NO_REACHABLE),
        unbound: Agrees,
    },
    Row {
        case: "a delegation whose servers are all silent",
        qname: "www.dead.test.",
        qtype: RecordType::A,
        // sinkhole waits `timeout_ms` (500 ms) per server, then answers SERVFAIL with
        // EDE 22 (the issue: never a hang past the query deadline).
        sinkhole: fail(ResponseCode::ServFail, &[], NO_REACHABLE),
        // unbound keeps retrying silent servers with exponential backoff (no answer even
        // with `discard-timeout: 0` after 90 s, tried by hand) and, by default, drops the
        // client's query after its `discard-timeout` of 1.9 s: the client gets no answer
        // and retries on its own.
        unbound: Drops("unbound drops a query still resolving after discard-timeout (1.9 s)"),
    },
    Row {
        case: "a referral loop (ping.test. served by ns.pong.test. and back, no glue)",
        qname: "www.ping.test.",
        qtype: RecordType::A,
        sinkhole: fail(ResponseCode::ServFail, &[], NO_REACHABLE),
        unbound: Agrees,
    },
    Row {
        case: "a name under an unsigned delegation",
        qname: "www.insecure.test.",
        qtype: RecordType::A,
        sinkhole: ok(&["www.insecure.test. A 192.0.2.60"]),
        unbound: Agrees,
    },
];

/// The hierarchy of [`ROWS`]: the root, `test.` and the zones under it; kept running
/// (and the silent servers bound) while the test runs.
struct Tree {
    root: Authority,
    _zones: Vec<Authority>,
    _silent: Vec<Silent>,
}

fn ns(zone: &str, target: &str) -> Record {
    Record::from_rdata(name(zone), 300, RData::NS(NS(name(target))))
}

impl Tree {
    async fn start() -> Self {
        let root = Authority::start(".", ip(NET, 1), delegate("test.", ip(NET, 2))).await;
        let mut tld = delegate("example.test.", ip(NET, 3));
        tld.extend(delegate("other.test.", ip(NET, 4)));
        tld.extend(delegate("chain.test.", ip(NET, 5)));
        tld.extend(delegate("insecure.test.", ip(NET, 6)));
        // dead.test.: two servers that never answer.
        for h in [10, 11] {
            let server = format!("ns{h}.dead.test.");
            tld.push(ns("dead.test.", &server));
            tld.push(a(&server, &ip(NET, h).to_string()));
        }
        // The root server's own name is under test.: its address belongs in this zone too
        // (the root's copy is glue below the cut, given out in referrals only). unbound's
        // priming query (". NS") looks it up here.
        tld.push(a("ns.root-servers.test.", &ip(NET, 1).to_string()));
        // A referral loop: each zone's only server is named under the other, without glue.
        tld.push(ns("ping.test.", "ns.pong.test."));
        tld.push(ns("pong.test.", "ns.ping.test."));

        let mut example = vec![
            a("www.example.test.", "192.0.2.10"),
            cname("alias.example.test.", "www.example.test."),
            cname("away.example.test.", "cdn.other.test."),
            cname("dangling.example.test.", "gone.other.test."),
            cname("loop.example.test.", "loop2.example.test."),
            cname("loop2.example.test.", "loop.example.test."),
            cname("cross.example.test.", "back.other.test."),
        ];
        // c0 → … → c30 (A) in example.test.; d0 → d1 (chain.test.) → d2 → … → d30 (A).
        let (chained, chain) = crate::hierarchy::chains("chain");
        example.extend(chained);

        let silent = [10, 11].map(|h| Silent::bind(ip(NET, h))).into();
        let zones = vec![
            Authority::start("test.", ip(NET, 2), tld).await,
            Authority::start("example.test.", ip(NET, 3), example).await,
            Authority::start(
                "other.test.",
                ip(NET, 4),
                vec![
                    a("cdn.other.test.", "192.0.2.20"),
                    cname("back.other.test.", "cross.example.test."),
                ],
            )
            .await,
            Authority::start("chain.test.", ip(NET, 5), chain).await,
            Authority::start(
                "insecure.test.",
                ip(NET, 6),
                vec![a("www.insecure.test.", "192.0.2.60")],
            )
            .await,
        ];
        Self {
            root,
            _zones: zones,
            _silent: silent,
        }
    }
}

/// A real unbound on `127.0.0.1:<free port>`, resolving from the test's root; killed on
/// drop.
struct Unbound {
    addr: SocketAddr,
    child: Child,
    dir: tempfile::TempDir,
}

impl Unbound {
    /// Starts unbound with a generated config and waits (at most 10 s) until it answers.
    /// With an `anchor` (a DNSKEY line), the validator is on, from that key.
    async fn start(root: Ipv4Addr, anchor: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        std::fs::write(dir.path().join("root.hints"), hints(root)).unwrap();
        let port = free_port();
        let (modules, anchor) = match anchor {
            Some(key) => {
                std::fs::write(dir.path().join("anchor.key"), format!("{key}\n")).unwrap();
                (
                    "validator iterator",
                    // No clock-skew allowance (unbound's default is 10% of a signature's
                    // validity, at least an hour): expired is expired, as for hickory.
                    format!(
                        "    trust-anchor-file: \"{d}/anchor.key\"\n    val-sig-skew-min: 0\n    val-sig-skew-max: 0\n"
                    ),
                )
            }
            None => ("iterator", String::new()),
        };
        let conf = format!(
            r#"server:
    interface: 127.0.0.1@{port}
    port: {port}
    do-ip6: no
    num-threads: 1
    so-reuseport: no
    username: ""
    chroot: ""
    directory: "{d}"
    pidfile: "{d}/unbound.pid"
    logfile: "{d}/unbound.log"
    use-syslog: no
    verbosity: 0
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    root-hints: "{d}/root.hints"
    module-config: "{modules}"
{anchor}    qname-minimisation: yes
    ede: yes
    # test. is one of unbound's built-in empty zones (RFC 6761); here it is the hierarchy's.
    local-zone: "test." nodefault
    local-zone: "probe." static
    local-data: "ready.probe. A 127.0.0.1"
"#
        );
        let path = dir.path().join("unbound.conf");
        std::fs::write(&path, conf).unwrap();
        let child = Command::new("unbound")
            .arg("-d")
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("unbound runs (Debian: apt-get install unbound; .ci/run installs it)");
        let mut me = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child,
            dir,
        };
        let t = Instant::now();
        loop {
            let q = make_query("ready.probe.", RecordType::A, None)
                .to_vec()
                .unwrap();
            if udp_raw(me.addr, &q, Duration::from_millis(200))
                .await
                .is_some()
            {
                return me;
            }
            if let Ok(Some(status)) = me.child.try_wait() {
                panic!("unbound exited: {status}; {}", me.log());
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "unbound did not start"
            );
        }
    }

    /// unbound's log file, for failure messages.
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("unbound.log")).unwrap_or_default()
    }
}

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asks `addr` one question (RD, AD, EDNS 1232, no DO) and waits at most [`WAIT`]; `None`
/// when no answer came.
async fn ask(addr: SocketAddr, qname: &str, qtype: RecordType) -> Option<Outcome> {
    let mut q = make_query(qname, qtype, Some(1232));
    // AD in a query asks for the AD bit of a validated answer (RFC 6840 §5.7).
    q.metadata.authentic_data = true;
    let raw = udp_raw(addr, &q.to_vec().unwrap(), WAIT).await?;
    let m = Message::from_vec(&raw).expect("answer does not parse");
    assert_eq!(m.metadata.id, q.metadata.id, "{addr}: answer ID");
    assert_eq!(m.queries.len(), 1, "{addr}: {m:?}");
    let mut answers: Vec<String> = m
        .answers
        .iter()
        .map(|r| format!("{} {} {}", r.name.to_lowercase(), r.record_type(), r.data))
        .collect();
    answers.sort();
    Some(Outcome {
        rcode: m.metadata.response_code,
        answers,
        ad: m.metadata.authentic_data,
        ede: ede(&m).map(|(code, _)| code),
    })
}

/// Whether unbound's answer agrees with sinkhole's: rcode, answers and AD equal, and the
/// EDE code equal where unbound sets one.
fn agree(s: &Outcome, u: &Outcome) -> bool {
    s.rcode == u.rcode
        && s.answers == u.answers
        && s.ad == u.ad
        && (u.ede.is_none() || s.ede == u.ede)
}

/// What is wrong with one row's two answers, if anything.
fn check(row: &Row, s: Option<&Outcome>, s_took: Duration, u: Option<&Outcome>) -> Option<String> {
    let s_want = row.sinkhole.outcome();
    let problem = match (s, &row.unbound) {
        (None, _) => "sinkhole did not answer".to_string(),
        (Some(_), _) if s_took > SINKHOLE_BY => format!("sinkhole took {s_took:?}"),
        (Some(s), _) if *s != s_want => format!("sinkhole should be {s_want:?}"),
        (Some(s), Agrees) => match u {
            Some(u) if agree(s, u) => return None,
            _ => "the two should agree".to_string(),
        },
        (Some(_), Differs(want, _)) => {
            let want = want.outcome();
            if u == Some(&want) {
                return None;
            }
            format!("unbound should be {want:?}")
        }
        (Some(_), Drops(_)) if u.is_none() => return None,
        (Some(_), Drops(_)) => "unbound should not answer".to_string(),
    };
    Some(format!(
        "{} ({} {}): {problem}\n  sinkhole {s:?} in {s_took:?}\n  unbound  {u:?}",
        row.case, row.qname, row.qtype
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn sinkhole_and_unbound_agree_on_the_test_hierarchy() {
    let tree = Tree::start().await;
    let s = TestServer::start(
        "[upstream]\nmode = \"recursive\"\ndnssec = \"off\"\nroot_hints = \"{dir}/root.hints\"\n\
         timeout_ms = 500\nrecursion_timeout_ms = 3000\n",
        &[("root.hints", &hints(tree.root.addr))],
    )
    .await;
    let u = Unbound::start(tree.root.addr, None).await;

    compare(ROWS, s.addr, &u).await;
}

/// Asks every row of `rows` of sinkhole at `s` and of `u`, and checks each pair.
async fn compare(rows: &'static [Row], s: SocketAddr, u: &Unbound) {
    // Every row at once on each server: the rows do not depend on one another, and the
    // test lasts as long as its slowest row.
    let mut tasks = tokio::task::JoinSet::new();
    for (i, row) in rows.iter().enumerate() {
        for (side, addr) in [(0, s), (1, u.addr)] {
            tasks.spawn(async move {
                let t = Instant::now();
                let got = ask(addr, row.qname, row.qtype).await;
                (i, side, got, t.elapsed())
            });
        }
    }
    let mut got: Vec<[(Option<Outcome>, Duration); 2]> = vec![Default::default(); rows.len()];
    while let Some(r) = tasks.join_next().await {
        let (i, side, outcome, took) = r.unwrap();
        got[i][side] = (outcome, took);
    }
    // The table, for `--nocapture` readers: what each side said, and why rows differ.
    for (row, [(s, s_took), (u, u_took)]) in rows.iter().zip(&got) {
        let why = match &row.unbound {
            Agrees => "",
            Differs(_, why) | Drops(why) => why,
        };
        eprintln!(
            "{}: sinkhole {s:?} ({s_took:?}); unbound {u:?} ({u_took:?}) {why}",
            row.case
        );
    }
    let wrong: Vec<String> = rows
        .iter()
        .zip(&got)
        .filter_map(|(row, [(s, s_took), (u, _)])| check(row, s.as_ref(), *s_took, u.as_ref()))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {} rows wrong:\n{}\nunbound's log:\n{}",
        wrong.len(),
        rows.len(),
        wrong.join("\n"),
        u.log()
    );
}

/// The signed rows, on `dnssec.rs`'s signed tree (one key per zone, ECDSA P-256).
const SIGNED_ROWS: &[Row] = &[
    Row {
        case: "a secure A",
        qname: "www.example.test.",
        qtype: RecordType::A,
        sinkhole: secure(ResponseCode::NoError, &["www.example.test. A 192.0.2.10"]),
        unbound: Agrees,
    },
    Row {
        case: "a secure NXDOMAIN (NSEC)",
        qname: "nope.example.test.",
        qtype: RecordType::A,
        sinkhole: secure(ResponseCode::NXDomain, &[]),
        unbound: Agrees,
    },
    Row {
        case: "a secure NODATA (NSEC)",
        qname: "www.example.test.",
        qtype: RecordType::AAAA,
        sinkhole: secure(ResponseCode::NoError, &[]),
        unbound: Agrees,
    },
    Row {
        case: "a wildcard expansion (NSEC)",
        qname: "any.wild.example.test.",
        qtype: RecordType::A,
        sinkhole: secure(
            ResponseCode::NoError,
            &["any.wild.example.test. A 192.0.2.110"],
        ),
        unbound: Agrees,
    },
    Row {
        case: "a wildcard expansion (NSEC3)",
        qname: "any.wild.nsec3.test.",
        qtype: RecordType::A,
        sinkhole: secure(
            ResponseCode::NoError,
            &["any.wild.nsec3.test. A 192.0.2.111"],
        ),
        unbound: Agrees,
    },
    Row {
        case: "a secure A in an NSEC3 zone",
        qname: "www.nsec3.test.",
        qtype: RecordType::A,
        sinkhole: secure(ResponseCode::NoError, &["www.nsec3.test. A 192.0.2.11"]),
        unbound: Agrees,
    },
    Row {
        case: "a secure NXDOMAIN (NSEC3)",
        qname: "nope.nsec3.test.",
        qtype: RecordType::A,
        sinkhole: secure(ResponseCode::NXDomain, &[]),
        unbound: Agrees,
    },
    Row {
        case: "a DS that matches no key of the zone",
        qname: "www.bad.test.",
        qtype: RecordType::A,
        // EDE 9, DNSKEY Missing: a DS exists, no key it vouches for signs the zone.
        sinkhole: fail(ResponseCode::ServFail, &[], Some(9)),
        unbound: Agrees,
    },
    Row {
        case: "a signature that does not verify (an address changed after signing)",
        qname: "www.forged.test.",
        qtype: RecordType::A,
        sinkhole: fail(ResponseCode::ServFail, &[], Some(6)),
        unbound: Agrees,
    },
    Row {
        case: "expired signatures",
        qname: "www.expired.test.",
        qtype: RecordType::A,
        sinkhole: fail(ResponseCode::ServFail, &[], Some(7)),
        unbound: Differs(
            fail(ResponseCode::ServFail, &[], Some(9)),
            "both refuse it; unbound names the zone's DNSKEY set, whose signatures expired \
             first in its chain (EDE 9), sinkhole the answer's own expired signatures (EDE 7)",
        ),
    },
    Row {
        case: "an unsigned delegation (insecure)",
        qname: "www.unsigned.test.",
        qtype: RecordType::A,
        sinkhole: ok(&["www.unsigned.test. A 192.0.2.14"]),
        unbound: Agrees,
    },
];

#[tokio::test(flavor = "multi_thread")]
async fn sinkhole_and_unbound_agree_on_the_signed_hierarchy() {
    let tree = crate::dnssec::Tree::start(64).await;
    // The expired zone's signatures live one second.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let s = crate::dnssec::sinkhole(&tree, "").await;
    let u = Unbound::start(tree.root(), Some(&tree.anchor)).await;
    compare(SIGNED_ROWS, s.addr, &u).await;
}
