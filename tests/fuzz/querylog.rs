//! Target `querylog_lines`: query-log lines through the reader `querylog::read::parse_line`
//! (what `sinkhole log …` uses), its renderers and filters; and records built from the same
//! bytes through the real writer thread (`querylog::writer::Writer`) to a file, read back
//! with `querylog::read::for_each`.
//!
//! Properties: no panic; a line that reads is written back by serde and reads equal; every
//! record the writer writes (odd names, control characters, any type, any answer text)
//! reads back with the same fields, and the reports' shortcut (`querylog::brief::Brief`)
//! reads the same fields from its raw line as the parser does.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hickory_proto::op::{Message, MessageType, OpCode};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{Name, RData, Record as HRecord, RecordType};
use sinkhole::config::LogConfig;
use sinkhole::dns::wire::{self, Response, rcode};
use sinkhole::handler::Asked;
use sinkhole::pipeline::{Action, Detail, Outcome};
use sinkhole::querylog::brief::Brief;
use sinkhole::querylog::read::{Warnings, for_each, parse_line};
use sinkhole::querylog::report::ts_ms;
use sinkhole::querylog::tail::{Filter, Style, render};
use sinkhole::querylog::writer::{Writer, client_text, format_ts};
use sinkhole::querylog::{Entry, Msg, Record, action_name, qtype_name};

use crate::engine::{Shape, Target, Verdict, fuzz, sig};
use crate::seeds::{data_dir, query};

const ACTIONS: [Action; 5] = [
    Action::Allowed,
    Action::Cached,
    Action::Blocked,
    Action::Failed,
    Action::Rejected,
];

/// An upstream answer whose TXT strings are `b`, as the writer renders answers from.
fn txt_answer(b: &[u8]) -> Option<Arc<Response>> {
    let qpkt = query(7, "t.example.", RecordType::TXT, None);
    let q = wire::parse_query(&qpkt).ok()?;
    let hq = Message::from_vec(&qpkt).ok()?;
    let mut m = Message::new(7, MessageType::Response, OpCode::Query);
    m.queries = hq.queries;
    let strings: Vec<&[u8]> = b.chunks(255).take(8).collect();
    let owner = Name::from_ascii("t.example.").ok()?;
    m.add_answer(HRecord::from_rdata(
        owner,
        60,
        RData::TXT(TXT::from_bytes(strings)),
    ));
    let bytes = m.to_vec().ok()?;
    Response::from_upstream(&bytes, &q, 7, 0, 86_400)
        .ok()
        .map(Arc::new)
}

/// A record whose every field comes from `b`.
pub(crate) fn record_from(b: &[u8]) -> Record {
    let at = |i: usize| b.get(i % b.len().max(1)).copied().unwrap_or(0);
    let ip = if at(1) & 1 == 0 {
        IpAddr::V4(Ipv4Addr::new(at(2), at(3), at(4), at(5)))
    } else {
        IpAddr::V6(Ipv6Addr::from(u128::from_le_bytes(std::array::from_fn(
            |i| at(i + 2),
        ))))
    };
    let action = ACTIONS[usize::from(at(6)) % ACTIONS.len()];
    let upstream = (at(7) & 1 == 1).then(|| SocketAddr::new(ip, u16::from(at(8)) * 257));
    let mut o = Outcome::new(action, u16::from(at(9) % 24), upstream);
    o.detail = match at(10) % 3 {
        0 => Detail::None,
        1 => Detail::Local(Some(ip)),
        _ => txt_answer(b).map_or(Detail::Local(None), Detail::Response),
    };
    Record {
        // 2001..2100, millisecond resolution.
        ts: SystemTime::UNIX_EPOCH
            + Duration::from_millis(
                978_307_200_000
                    + u64::from_le_bytes(std::array::from_fn(|i| at(i + 11))) % 3_155_760_000_000,
            ),
        client: ip,
        transport: sinkhole::pipeline::Transport::ALL[usize::from(at(23)) % 5],
        asked: Asked {
            qname: String::from_utf8_lossy(b).as_ref().into(),
            qtype: u16::from_be_bytes([at(19), at(20)]),
        },
        outcome: o,
        elapsed: Duration::from_micros(u64::from(at(21)) << (at(22) % 40)),
    }
}

/// The fields of `e` that the writer derives from `r` alone (session marks aside).
fn same(e: &Entry<'_>, r: &Record, anonymize: bool) -> Result<(), String> {
    let answers: Vec<String> = match &r.outcome.detail {
        Detail::None | Detail::Local(None) | Detail::Truncated => vec![],
        Detail::Local(Some(a)) => vec![a.to_string()],
        Detail::Response(resp) => resp.answers().iter().map(|s| s.to_string()).collect(),
        Detail::Records(p) => p.texts().iter().map(|s| s.to_string()).collect(),
    };
    let want = (
        format_ts(r.ts),
        client_text(r.client, anonymize),
        r.asked.qname.as_str().to_string(),
        qtype_name(r.asked.qtype).into_owned(),
        action_name(r.outcome.action),
        rcode::name(r.outcome.rcode),
        answers,
        r.outcome.upstream.map(|u| u.to_string()),
        r.elapsed.as_micros() as u64,
    );
    let got = (
        e.ts.to_string(),
        e.client.to_string(),
        e.qname.to_string(),
        e.qtype.to_string(),
        &*e.action,
        &*e.rcode,
        e.answers.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        e.upstream.as_ref().map(|u| u.to_string()),
        e.elapsed_us,
    );
    if e.proto.as_deref() != Some(r.transport.name()) {
        return Err(format!(
            "proto {:?} read back, {:?} written",
            e.proto,
            r.transport.name()
        ));
    }
    if want.0 != got.0
        || want.1 != got.1
        || want.2 != got.2
        || want.3 != got.3
        || want.4 != got.4
        || want.5 != got.5
        || want.6 != got.6
        || want.7 != got.7
        || want.8 != got.8
    {
        return Err(format!(
            "record read back differs:\nwritten {want:?}\nread    {got:?}"
        ));
    }
    Ok(())
}

/// Writes `records` with the real writer thread and reads them back.
fn write_and_read(dir: &Path, records: Vec<Record>, anonymize: bool) -> Result<u64, String> {
    let path = dir.join("q.jsonl");
    let _ = std::fs::remove_file(&path);
    let cfg = LogConfig {
        path: Some(path.clone()),
        postgres: None,
        max_bytes: 1 << 30,
        keep: 0,
        anonymize_clients: anonymize,
        session_gap: Duration::from_secs(30),
    };
    let (tx, rx) = std::sync::mpsc::sync_channel(records.len() + 1);
    // Kept to compare with what is read back; the writer gets its own copies.
    let expected: Vec<Record> = records
        .iter()
        .map(|r| Record {
            ts: r.ts,
            client: r.client,
            transport: r.transport,
            asked: r.asked.clone(),
            outcome: r.outcome.clone(),
            elapsed: r.elapsed,
        })
        .collect();
    let _ = tx.send(Msg::Batch(records));
    let _ = tx.send(Msg::Stop);
    Writer::new(cfg, Arc::default(), None, Arc::default()).run(&rx);
    let mut i = 0;
    let mut err = None;
    for_each(&path, &mut Warnings::default(), &|_| true, &mut |e| {
        if err.is_none() {
            err = match expected.get(i) {
                Some(r) => same(&e, r, anonymize).err(),
                None => Some("more records read than written".into()),
            };
        }
        i += 1;
    });
    if let Some(e) = err {
        return Err(e);
    }
    // The reports read these fields from the raw line: for the writer's lines, the same as
    // the parser reads, or no shortcut at all.
    let text = std::fs::read(&path).map_err(|e| e.to_string())?;
    for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let parsed = parse_line(line).map_err(|e| format!("written line unreadable: {e}"))?;
        if let Some(peeked) = Brief::peek(line)
            && peeked != Brief::of(&parsed)
        {
            return Err(format!(
                "fields read from the raw line {peeked:?} differ from the parsed {:?}",
                Brief::of(&parsed)
            ));
        }
    }
    if i != expected.len() {
        return Err(format!("{} records written, {i} read back", expected.len()));
    }
    // Newest first, as the HTTP API pages it: the same records, one page at a time.
    let mut back = 0;
    let mut before = None;
    loop {
        let page = sinkhole::querylog::page::newest(&path, &Filter::default(), before, 3);
        back += page.records.len();
        match page.next {
            Some(c) if back <= expected.len() => before = Some(c),
            _ => break,
        }
    }
    if back != expected.len() {
        return Err(format!(
            "{} records written, {back} paged back",
            expected.len()
        ));
    }
    Ok(i as u64)
}

fn check_line(line: &[u8], filters: &[Filter]) -> Verdict {
    let Ok(e) = parse_line(line) else {
        return Ok(1);
    };
    let again = serde_json::to_vec(&e).map_err(|x| format!("serde cannot write back: {x}"))?;
    match parse_line(&again) {
        Ok(e2) if e2 == e => {}
        other => return Err(format!("written back and read again: {other:?}, was {e:?}")),
    }
    for color in [false, true] {
        for json in [false, true] {
            let _ = render(&e, Style { color, json });
        }
    }
    let _ = ts_ms(&e.ts);
    // The reports' shortcut never panics on a line of any shape (it may differ from the
    // parser on lines the writer cannot write, such as a duplicated key; see below for
    // the writer's own lines).
    let _ = Brief::peek(line);
    let passed = filters
        .iter()
        .map(|f| u64::from(f.matches(&e)))
        .sum::<u64>();
    Ok(sig(&[2, passed, e.answers.len().min(4) as u64]))
}

/// Real-shaped lines: the writer's output for the queries of a real Pi-hole log.
fn seeds(dir: &Path) -> Vec<Vec<u8>> {
    let log =
        std::fs::read_to_string(data_dir().join("observed/pihole_dnsmasq_log_bazmonk_2024-05.log"))
            .expect("the Pi-hole log in shared/data/observed");
    let mut records = Vec::new();
    for (i, l) in log
        .lines()
        .filter(|l| l.contains(": query["))
        .take(300)
        .enumerate()
    {
        let Some((_, rest)) = l.split_once(": query[") else {
            continue;
        };
        let Some((qt, rest)) = rest.split_once("] ") else {
            continue;
        };
        let Some((name, client)) = rest.split_once(" from ") else {
            continue;
        };
        let mut r = record_from(name.as_bytes());
        r.asked.qtype = qt.parse::<RecordType>().map_or(0, u16::from);
        r.client = client.trim().parse().unwrap_or(r.client);
        r.outcome.action = ACTIONS[i % ACTIONS.len()];
        records.push(r);
    }
    write_and_read(dir, records, false).expect("seed records round-trip");
    let text = std::fs::read(dir.join("q.jsonl")).expect("seed log written");
    let mut out: Vec<Vec<u8>> = text
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    out.push(br#"{"ts":"2026-11-21T10:00:01.532Z","client":"192.0.2.1","qname":"a\u0000\ud800b","qtype":"A","action":"blocked","rule":"x","list":"l:1","rcode":"NXDOMAIN","answers":["\u2028"],"upstream":null,"elapsed_us":18446744073709551615,"session":1,"seq":1,"new":true}"#.to_vec());
    out
}

#[test]
fn querylog_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let filters = vec![
        Filter {
            client: "192.168.1.0/24".parse().ok(),
            action: Some("blocked".into()),
            name: globset::Glob::new("*.google.com")
                .ok()
                .map(|g| g.compile_matcher()),
            since: Some("2024-05-08T00:00:00.000Z".into()),
            until: None,
            proto: Some("udp".into()),
        },
        Filter {
            client: "192.168.1.116/32".parse().ok(),
            ..Filter::default()
        },
    ];
    let dict: Vec<Vec<u8>> = [
        "\"",
        "\\",
        "\\u0000",
        "\\ud800",
        "\\u2028",
        "null",
        "[]",
        "{}",
        ",",
        ":",
        "\"ts\":",
        "\"answers\":[\"",
        "\"elapsed_us\":",
        "-1",
        "1e999",
        "18446744073709551616",
        "é",
        "\n",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    fuzz(
        Target {
            name: "querylog_lines",
            seeds: seeds(dir.path()),
            dict,
            max_len: 4096,
            shape: Shape::Text,
        },
        |b| {
            let mut parts = Vec::new();
            for line in b.split(|&c| c == b'\n') {
                parts.push(check_line(line, &filters)?);
            }
            // The writer round trip on about every fourth input (it costs a file), chosen by
            // the input so that a replay takes the same path.
            let pick = b.len() + usize::from(b.first().copied().unwrap_or(0));
            if pick % 4 == 0 {
                let records: Vec<Record> =
                    b.split(|&c| c == b'\n').take(8).map(record_from).collect();
                parts.push(write_and_read(dir.path(), records, pick % 8 == 0)?);
            }
            Ok(sig(&parts))
        },
    );
}
