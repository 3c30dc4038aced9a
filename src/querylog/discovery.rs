//! The dashboard's discovery view of one client: its latest sessions with their first names
//! (what `sinkhole log first` prints), the names of those sessions that were new to it
//! (`log first --new`), the names it asks at a steady interval (`log heartbeats`), and the
//! domains that open its sessions and are not blocked yet (`log suggest`). The same reports
//! as the commands, fed from one pass over the log, so the view costs one read of the log
//! (mostly a substring search for the client: see the `Filter` prefilter).

use super::filter::Filter;
#[cfg(test)]
use super::report;
use super::report::{Beats, Heartbeat, Opening, Openings, Suggestion, Suggestions};
use super::source::Records;
use crate::postgres::DbError;

/// How much of each report [`discover`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Names shown per session.
    pub count: usize,
    /// Latest sessions shown.
    pub sessions: usize,
    /// Fewest times a name must be asked to be a heartbeat.
    pub min_beats: usize,
    /// Suggestions shown.
    pub suggest: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            count: 10,
            sessions: 10,
            min_beats: 5,
            suggest: 10,
        }
    }
}

/// The discovery view's data.
#[derive(Debug, Clone, PartialEq)]
pub struct Discovery {
    /// The latest sessions, oldest first, with their first names.
    pub sessions: Vec<Opening>,
    /// The latest sessions that asked for names new to the client, with those names.
    pub new: Vec<Opening>,
    /// Names asked at a steady interval.
    pub heartbeats: Vec<Heartbeat>,
    /// Registrable domains that open sessions and are not blocked yet.
    pub suggestions: Vec<Suggestion>,
    /// Sessions read (all of them, not only those shown).
    pub sessions_read: u64,
}

/// Reads the log `src` once and builds every report for the records `filter` passes
/// (normally one client and a start time). `is_blocked` says whether a registrable domain
/// is blocked already (left out of the suggestions).
pub fn discover<R: Records + ?Sized>(
    src: &R,
    filter: &Filter,
    opts: Options,
    is_blocked: &dyn Fn(&str) -> bool,
) -> Result<Discovery, DbError> {
    let split = src.split();
    let mut first = Openings::new(opts.count, false, opts.sessions).with_split(split);
    let mut new = Openings::new(opts.count, true, opts.sessions).with_split(split);
    let mut beats = Beats::default();
    let mut suggest = Suggestions::new(split);
    src.briefs(filter, &mut |e| {
        first.add(e);
        // A record that is not new can still start a session of `new`'s: it counts the
        // session's queries. Sessions without a new name are left out at the end.
        new.add(e);
        beats.add(e);
        suggest.add(e);
    })?;
    let (suggestions, sessions_read) = suggest.finish(is_blocked, opts.suggest);
    Ok(Discovery {
        sessions: first.finish(),
        new: new.finish(),
        heartbeats: beats.finish(opts.min_beats),
        suggestions,
        sessions_read,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log line as the writer writes it.
    fn line(ts_s: u64, client: &str, qname: &str, session: u64, seq: u64, new: bool) -> String {
        let ts = super::super::writer::format_ts(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(ts_s),
        );
        format!(
            "{{\"ts\":\"{ts}\",\"client\":\"{client}\",\"qname\":\"{qname}\",\"qtype\":\"A\",\"action\":\"allowed\",\"rcode\":\"NOERROR\",\"elapsed_us\":1,\"session\":{session},\"seq\":{seq},\"new\":{new}}}\n"
        )
    }

    #[test]
    fn one_pass_gives_each_report_for_one_client() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("q.jsonl");
        let mut text = String::new();
        // Session 1 of .7: a known name; a heartbeat every 60 s throughout.
        text += &line(1000, "192.0.2.7", "www.known.example", 1, 1, true);
        for k in 0..6 {
            text += &line(
                1010 + 60 * k,
                "192.0.2.7",
                "beat.vendor.example",
                1,
                2 + k,
                k == 0,
            );
        }
        // Another client, interleaved: never shown.
        text += &line(1100, "192.0.2.70", "other.example", 1, 1, true);
        // Session 2 of .7: an application starts.
        text += &line(2000, "192.0.2.7", "api.chat.example", 2, 1, true);
        text += &line(2001, "192.0.2.7", "cdn.chat.example", 2, 2, false);
        text += &line(2002, "192.0.2.7", "www.known.example", 2, 3, false);
        std::fs::write(&p, text).unwrap();
        let f = Filter {
            client: Some("192.0.2.7".parse::<std::net::IpAddr>().unwrap().into()),
            ..Filter::default()
        };
        let blocked = |d: &str| d == "known.example";
        let d = discover(&p, &f, Options::default(), &blocked).unwrap();
        let firsts: Vec<(u64, Vec<&str>)> = d
            .sessions
            .iter()
            .map(|o| (o.session, o.names.iter().map(|n| n.name.as_str()).collect()))
            .collect();
        assert_eq!(
            firsts[1],
            (
                2,
                vec!["api.chat.example", "cdn.chat.example", "www.known.example"]
            )
        );
        assert_eq!(
            firsts[0].1[..2],
            ["www.known.example", "beat.vendor.example"]
        );
        assert!(d.sessions.iter().all(|o| o.client == "192.0.2.7"));
        // `new`: only the names marked new.
        let new: Vec<Vec<&str>> = d
            .new
            .iter()
            .map(|o| o.names.iter().map(|n| n.name.as_str()).collect())
            .collect();
        assert_eq!(
            new,
            [
                vec!["www.known.example", "beat.vendor.example"],
                vec!["api.chat.example"]
            ]
        );
        assert_eq!(d.heartbeats.len(), 1);
        assert_eq!(d.heartbeats[0].qname, "beat.vendor.example");
        assert!((d.heartbeats[0].period_s - 60.0).abs() < 0.5);
        // Suggestions: the openings' domains, the blocked one left out.
        let domains: Vec<&str> = d.suggestions.iter().map(|s| s.domain.as_str()).collect();
        assert_eq!(domains, ["chat.example", "vendor.example"]);
        assert_eq!(d.sessions_read, 2);
        // The same as the commands' own passes.
        assert_eq!(d.sessions, report::first(&p, &f, 10, false).unwrap());
        assert_eq!(d.new, report::first(&p, &f, 10, true).unwrap());
        assert_eq!(d.heartbeats, report::heartbeats(&p, &f, 5).unwrap());
    }

    #[test]
    fn first_names_come_in_the_order_they_were_asked_not_logged() {
        // An application asks three names at once; the cached one is answered and logged
        // first, the forwarded ones as their upstream answers come.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("q.jsonl");
        let mut text = String::new();
        text += &line(1002, "192.0.2.7", "cached.app.example", 1, 1, true);
        text += &line(1003, "192.0.2.7", "late.app.example", 1, 2, false);
        text += &line(1000, "192.0.2.7", "api.app.example", 1, 3, false);
        text += &line(1001, "192.0.2.7", "cdn.app.example", 1, 4, false);
        std::fs::write(&p, text).unwrap();
        let f = Filter::default();
        let names = |count| -> Vec<String> {
            report::first(&p, &f, count, false).unwrap()[0]
                .names
                .iter()
                .map(|n| n.name.clone())
                .collect()
        };
        assert_eq!(
            names(10),
            [
                "api.app.example",
                "cdn.app.example",
                "cached.app.example",
                "late.app.example"
            ]
        );
        // Kept: the earliest asked, though the latest logged.
        assert_eq!(names(2), ["api.app.example", "cdn.app.example"]);
        let o = &report::first(&p, &f, 2, false).unwrap()[0];
        assert_eq!(
            o.start,
            super::super::writer::format_ts(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(1000)
            )
        );
        assert_eq!(o.queries, 4);
    }

    #[test]
    fn only_the_latest_sessions_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("q.jsonl");
        let mut text = String::new();
        for s in 1..=50u64 {
            // Every 10th session has a new name.
            text += &line(
                1000 * s,
                "192.0.2.7",
                &format!("s{s}.example"),
                s,
                1,
                s % 10 == 0,
            );
            text += &line(1000 * s + 1, "192.0.2.7", "again.example", s, 2, false);
        }
        std::fs::write(&p, text).unwrap();
        let opts = Options {
            sessions: 3,
            ..Options::default()
        };
        let d = discover(&p, &Filter::default(), opts, &|_| false).unwrap();
        let kept: Vec<u64> = d.sessions.iter().map(|o| o.session).collect();
        assert_eq!(kept, [48, 49, 50]);
        assert!(d.sessions.iter().all(|o| o.queries == 2));
        // The latest 3 sessions that had a new name, even though older than the last 3.
        let with_new: Vec<u64> = d.new.iter().map(|o| o.session).collect();
        assert_eq!(with_new, [30, 40, 50]);
        assert_eq!(d.sessions_read, 50);
    }
}
