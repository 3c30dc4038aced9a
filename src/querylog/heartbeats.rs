//! `sinkhole log heartbeats`: names a client asks at a steady interval (devices and
//! applications phoning home), found from the times of each (client, name) pair.

use std::collections::HashMap;

use super::brief::Brief;
use super::source::Records;
use super::tail::Filter;
use crate::postgres::DbError;

/// A name asked at a steady interval, for `heartbeats`.
#[derive(Debug, Clone, PartialEq)]
pub struct Heartbeat {
    /// The client.
    pub client: String,
    /// The name.
    pub qname: String,
    /// The interval, seconds (least-squares fit over the beats).
    pub period_s: f64,
    /// How far beats fall from the fitted schedule on average, seconds.
    pub jitter_s: f64,
    /// Times asked (queries within 2 s of each other count once: A and AAAA together).
    pub times: usize,
}

/// Parses the `ts` field into Unix milliseconds.
pub fn ts_ms(ts: &str) -> Option<i64> {
    if let Some(ms) = writer_ts_ms(ts.as_bytes()) {
        return Some(ms);
    }
    let t = time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Unix milliseconds of a time as the writer writes it (`2026-11-21T10:00:01.532Z`); `None`
/// for any other form. A general RFC 3339 parser costs several times more, once per record.
fn writer_ts_ms(b: &[u8]) -> Option<i64> {
    if b.len() != 24
        || [
            (4, b'-'),
            (7, b'-'),
            (10, b'T'),
            (13, b':'),
            (16, b':'),
            (19, b'.'),
            (23, b'Z'),
        ]
        .iter()
        .any(|&(i, c)| b.get(i) != Some(&c))
    {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        b.get(from..to)?.iter().try_fold(0i64, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
        })
    };
    let (y, m, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (h, mi, s, ms) = (num(11, 13)?, num(14, 16)?, num(17, 19)?, num(20, 23)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    // Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + h) * 60 + mi) * 60_000 + s * 1000 + ms)
}

/// Names a client asks at a steady interval: at least `min_times` times, the median
/// interval at least 10 s, and the intervals within 10% (at least 2 s) of it on average.
/// A client's records from several instances count together: the device asks whichever
/// resolver it asks.
pub fn heartbeats<R: Records + ?Sized>(
    src: &R,
    filter: &Filter,
    min_times: usize,
) -> Result<Vec<Heartbeat>, DbError> {
    let mut b = Beats::default();
    src.briefs(filter, &mut |e| b.add(e))?;
    Ok(b.finish(min_times))
}

/// [`heartbeats`] fed one record at a time (see [`super::report::Openings`]).
#[derive(Default)]
pub struct Beats {
    /// "client name" → times; one key string per pair, looked up without allocating.
    seen: HashMap<String, Vec<i64>, foldhash::fast::RandomState>,
    key: String,
}

impl Beats {
    /// Takes the next record (in any order: times out of order are sorted at the end).
    pub fn add(&mut self, e: &Brief<'_>) {
        let Some(t) = ts_ms(e.ts) else { return };
        self.key.clear();
        self.key.push_str(e.client);
        self.key.push(' ');
        self.key.push_str(e.qname);
        let times = match self.seen.get_mut(self.key.as_str()) {
            Some(v) => v,
            None => self.seen.entry(self.key.clone()).or_default(),
        };
        // Within 2 s after the last one: the same beat (A and AAAA together).
        if times.last().is_none_or(|&l| !(0..2_000).contains(&(t - l))) {
            times.push(t);
        }
    }

    /// The names asked steadily, at least `min_times` times; most often asked first.
    pub fn finish(self, min_times: usize) -> Vec<Heartbeat> {
        let seen = self.seen;
        let mut out = Vec::new();
        for (key, mut times) in seen {
            let (client, qname) = key.split_once(' ').unwrap_or((&key, ""));
            let (client, qname) = (client.to_string(), qname.to_string());
            if times.len() < min_times.max(3) {
                continue;
            }
            times.sort_unstable();
            // Records read out of time order (several instances, one after the other)
            // may leave beats closer than 2 s: they count once.
            let mut last = i64::MIN;
            times.retain(|&t| {
                let keep = t.saturating_sub(last) >= 2_000;
                if keep {
                    last = t;
                }
                keep
            });
            if times.len() < min_times.max(3) {
                continue;
            }
            let mut iv: Vec<i64> = times.windows(2).map(|p| p[1] - p[0]).collect();
            iv.sort_unstable();
            let median = iv[iv.len() / 2] as f64;
            if median < 10_000.0 {
                continue;
            }
            let jitter =
                iv.iter().map(|&x| (x as f64 - median).abs()).sum::<f64>() / iv.len() as f64;
            if jitter > (median * 0.1).max(2_000.0) {
                continue;
            }
            // Period and jitter from a least-squares line through (beat number, time): the
            // jitter is how far beats fall from that line on average.
            let n = times.len() as f64;
            let t0 = times[0];
            let ys: Vec<f64> = times.iter().map(|&t| (t - t0) as f64).collect();
            let mean_k = (n - 1.0) / 2.0;
            let mean_y = ys.iter().sum::<f64>() / n;
            let (mut sxy, mut sxx) = (0.0, 0.0);
            for (k, y) in ys.iter().enumerate() {
                let dk = k as f64 - mean_k;
                sxy += dk * (y - mean_y);
                sxx += dk * dk;
            }
            let period = if sxx > 0.0 { sxy / sxx } else { median };
            let resid = ys
                .iter()
                .enumerate()
                .map(|(k, y)| (y - (mean_y + period * (k as f64 - mean_k))).abs())
                .sum::<f64>()
                / n;
            out.push(Heartbeat {
                client,
                qname,
                period_s: period / 1000.0,
                jitter_s: resid / 1000.0,
                times: times.len(),
            });
        }
        out.sort_by(|a, b| {
            b.times
                .cmp(&a.times)
                .then_with(|| a.client.cmp(&b.client))
                .then_with(|| a.qname.cmp(&b.qname))
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writers_times_read_as_the_general_parser_reads_them() {
        let general = |ts: &str| {
            let t = time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
                .unwrap();
            i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap()
        };
        for secs in [
            0u64,
            951_782_400,
            1_700_000_000,
            1_709_164_800,
            4_102_444_799,
            86_399,
        ] {
            for ms in [0u64, 7, 999] {
                let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(secs * 1000 + ms);
                let ts = super::super::writer::format_ts(t);
                assert_eq!(writer_ts_ms(ts.as_bytes()), Some(general(&ts)), "{ts}");
            }
        }
        assert_eq!(writer_ts_ms(b"2026-13-21T10:00:01.532Z"), None);
        assert_eq!(writer_ts_ms(b"2026-11-21T10:00:01.532+01:00"), None);
        assert_eq!(
            ts_ms("2026-11-21T11:00:01.532+01:00"),
            ts_ms("2026-11-21T10:00:01.532Z")
        );
    }
}
