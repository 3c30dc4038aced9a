//! `LocalTime`: the minute of the week in `server.timezone`, for schedules.
//!
//! Converting a wall-clock instant to local time costs a time-zone lookup, so the result
//! is kept for the current UTC minute: every query of that minute pays one atomic load.
//! (Every zone in use today is offset from UTC by whole minutes, so a UTC minute is one
//! local minute.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use jiff::tz::TimeZone;

use crate::config::schedule::WEEK_MINUTES;

/// Local time for schedules: a time zone and the last minute converted.
#[derive(Debug)]
pub struct LocalTime {
    tz: TimeZone,
    /// `(UTC minute + 1) << 16 | week minute`; 0 = nothing kept yet.
    kept: AtomicU64,
}

impl LocalTime {
    /// Local time in the zone named `name` (IANA, as `server.timezone` checked it), or the
    /// system's zone. A zone that cannot be loaded (checked at config time, so only if the
    /// zone database changed since) falls back to UTC with a warning.
    pub fn new(name: Option<&str>) -> Self {
        let tz = match name {
            None => TimeZone::system(),
            Some(n) => TimeZone::get(n).unwrap_or_else(|e| {
                tracing::warn!(timezone = n, error = %e, "time zone not found; schedules use UTC");
                TimeZone::UTC
            }),
        };
        Self {
            tz,
            kept: AtomicU64::new(0),
        }
    }

    /// The minute of the week at `wall` (0 = Monday 00:00 local time).
    pub fn week_minute(&self, wall: SystemTime) -> u16 {
        let secs = wall
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .min(i64::MAX as u64 / 2);
        let minute = secs / 60;
        let kept = self.kept.load(Ordering::Relaxed);
        if kept >> 16 == minute + 1 {
            return (kept & 0xffff) as u16;
        }
        let wm = self.convert(secs);
        self.kept
            .store(((minute + 1) << 16) | u64::from(wm), Ordering::Relaxed);
        wm
    }

    fn convert(&self, secs: u64) -> u16 {
        let Ok(ts) = jiff::Timestamp::from_second(i64::try_from(secs).unwrap_or(0)) else {
            return 0;
        };
        let dt = self.tz.to_datetime(ts);
        let day = u16::try_from(dt.weekday().to_monday_zero_offset()).unwrap_or(0);
        let (h, m) = (
            u16::try_from(dt.hour()).unwrap_or(0),
            u16::try_from(dt.minute()).unwrap_or(0),
        );
        (day * 24 * 60 + h * 60 + m) % WEEK_MINUTES
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn week_minutes_follow_the_zone() {
        // 2026-12-07 is a Monday. 08:30 UTC is 09:30 in Berlin (CET, UTC+1).
        let monday = UNIX_EPOCH + Duration::from_secs(1_796_631_600); // 2026-12-07T08:20:00Z
        let utc = LocalTime::new(Some("UTC"));
        assert_eq!(utc.week_minute(monday), 8 * 60 + 20);
        assert_eq!(
            utc.week_minute(monday + Duration::from_secs(59)),
            8 * 60 + 20,
            "kept"
        );
        assert_eq!(
            utc.week_minute(monday + Duration::from_secs(60)),
            8 * 60 + 21
        );
        let berlin = LocalTime::new(Some("Europe/Berlin"));
        assert_eq!(berlin.week_minute(monday), 9 * 60 + 20);
        // Sunday 23:30 UTC is Monday 00:30 in Berlin: the week wraps.
        let sunday = monday - Duration::from_secs(8 * 3600 + 50 * 60);
        assert_eq!(utc.week_minute(sunday), 6 * 24 * 60 + 23 * 60 + 30);
        assert_eq!(berlin.week_minute(sunday), 30);
    }
}
