//! Schedules: the time windows in which a group's or a list's blocking applies, written
//! `schedule = ["mon-fri 09:00-17:30", "sat 10:00-12:00"]`.
//!
//! A window is `[DAYS] HH:MM-HH:MM` in the local time of `server.timezone`. DAYS is a day
//! (`mon` … `sun`), a range (`mon-fri`, `fri-mon` wraps), or a comma list of both; without
//! DAYS the window is every day. `00:00-24:00` is the whole day; an end before the start runs
//! overnight into the next day (`fri 22:00-02:00` ends Saturday 02:00). A schedule is kept
//! as one bit per minute of the week, so that asking whether it is active is one load.

use std::fmt;

/// Minutes in a week; a week minute counts from Monday 00:00 local time.
pub const WEEK_MINUTES: u16 = 7 * 24 * 60;
const DAY: u16 = 24 * 60;
const WORDS: usize = (WEEK_MINUTES as usize).div_ceil(64);
const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// A parsed schedule: the windows as written, and the minutes of the week they cover.
#[derive(Clone, PartialEq, Eq)]
pub struct Schedule {
    text: Vec<String>,
    minutes: Box<[u64; WORDS]>,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Schedule").field(&self.text).finish()
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text.join(", "))
    }
}

impl Schedule {
    /// Parses the windows of one `schedule` key; the error names the window and the problem.
    pub fn parse<S: AsRef<str>>(windows: &[S]) -> Result<Self, String> {
        if windows.is_empty() {
            return Err("an empty schedule never applies: leave the key out, or write a window such as \"mon-fri 09:00-17:30\"".into());
        }
        let mut s = Self {
            text: Vec::new(),
            minutes: Box::new([0; WORDS]),
        };
        for w in windows {
            let w = w.as_ref();
            let (days, start, end) = window(w).map_err(|m| format!("{w:?}: {m}"))?;
            for d in 0..7u16 {
                if days & (1 << d) == 0 {
                    continue;
                }
                let from = d * DAY + start;
                let len = if end > start {
                    end - start
                } else {
                    end + DAY - start
                };
                for m in from..from + len {
                    s.set(m % WEEK_MINUTES);
                }
            }
            s.text.push(w.trim().to_string());
        }
        Ok(s)
    }

    fn set(&mut self, m: u16) {
        let m = usize::from(m);
        if let Some(w) = self.minutes.get_mut(m / 64) {
            *w |= 1 << (m % 64);
        }
    }

    /// True when `week_minute` (0 = Monday 00:00 local time) is inside a window.
    pub fn active(&self, week_minute: u16) -> bool {
        let m = usize::from(week_minute % WEEK_MINUTES);
        self.minutes
            .get(m / 64)
            .is_some_and(|w| w & (1 << (m % 64)) != 0)
    }

    /// The windows as written.
    pub fn windows(&self) -> &[String] {
        &self.text
    }
}

/// One window: (day bits, Monday = bit 0; start minute; end minute, 1..=1440).
fn window(w: &str) -> Result<(u8, u16, u16), String> {
    const FORM: &str = "write [DAYS] HH:MM-HH:MM, e.g. \"mon-fri 09:00-17:30\"";
    let mut parts = w.split_whitespace();
    let (days, times) = match (parts.next(), parts.next(), parts.next()) {
        (Some(t), None, None) => (0x7f, t),
        (Some(d), Some(t), None) => (days(d)?, t),
        _ => return Err(FORM.into()),
    };
    let (a, b) = times.split_once('-').ok_or(FORM)?;
    let (start, end) = (time(a)?, time(b)?);
    if start == DAY {
        return Err("a window cannot start at 24:00".into());
    }
    if start == end {
        return Err("the window is empty (for a whole day write 00:00-24:00)".into());
    }
    Ok((days, start, end))
}

/// `mon-fri,sun` as bits.
fn days(s: &str) -> Result<u8, String> {
    let mut bits = 0u8;
    for item in s.split(',') {
        let (a, b) = item.split_once('-').unwrap_or((item, item));
        let (a, b) = (day(a)?, day(b)?);
        let mut d = a;
        loop {
            bits |= 1 << d;
            if d == b {
                break;
            }
            d = (d + 1) % 7;
        }
    }
    Ok(bits)
}

fn day(s: &str) -> Result<u8, String> {
    let lower = s.trim().to_ascii_lowercase();
    let short = lower.get(..3).unwrap_or(&lower);
    let full = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    DAYS.iter()
        .position(|d| *d == short)
        .filter(|&i| full.get(i).is_some_and(|f| f.starts_with(lower.as_str())))
        .map(|i| i as u8)
        .ok_or_else(|| format!("{s:?} is not a day (mon, tue, wed, thu, fri, sat, sun)"))
}

/// `HH:MM` as minutes, 0..=1440.
fn time(s: &str) -> Result<u16, String> {
    let bad = || format!("{s} is not a time (HH:MM, 00:00 to 24:00)");
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u16 = h.parse().map_err(|_| bad())?;
    let m: u16 = m.parse().map_err(|_| bad())?;
    if h > 24 || m > 59 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: u16, h: u16, m: u16) -> u16 {
        day * DAY + h * 60 + m
    }

    #[test]
    fn office_hours_cover_weekdays_only() {
        let s = Schedule::parse(&["mon-fri 09:00-17:30"]).unwrap();
        assert!(s.active(at(0, 9, 0)));
        assert!(s.active(at(4, 17, 29)));
        assert!(!s.active(at(4, 17, 30)), "the end is exclusive");
        assert!(!s.active(at(0, 8, 59)));
        assert!(!s.active(at(5, 12, 0)), "saturday");
        assert_eq!(s.to_string(), "mon-fri 09:00-17:30");
    }

    #[test]
    fn overnight_windows_and_wrapping_ranges() {
        let s = Schedule::parse(&["sun 22:00-02:00"]).unwrap();
        assert!(s.active(at(6, 23, 0)));
        assert!(s.active(at(0, 1, 59)), "into monday");
        assert!(!s.active(at(0, 2, 0)));
        let s = Schedule::parse(&["fri-mon 00:00-24:00", "wed 12:00-13:00"]).unwrap();
        for d in [4, 5, 6, 0] {
            assert!(s.active(at(d, 12, 0)), "{d}");
        }
        assert!(!s.active(at(1, 12, 0)));
        assert!(s.active(at(2, 12, 30)));
        let every = Schedule::parse(&["12:00-13:00"]).unwrap();
        assert!((0..7).all(|d| every.active(at(d, 12, 0))));
        let list = Schedule::parse(&["Mon,wednesday,fri 08:00-09:00"]).unwrap();
        assert!(list.active(at(2, 8, 0)) && !list.active(at(1, 8, 0)));
    }

    #[test]
    fn bad_windows_say_what_is_wrong() {
        for (w, want) in [
            ("mon-fri 25:00", "HH:MM-HH:MM"),
            ("mon-fri 25:00-26:00", "25:00 is not a time"),
            ("mon-fri 09:00-09:60", "09:60 is not a time"),
            ("mon-frx 09:00-10:00", "\"frx\" is not a day"),
            ("09:00-09:00", "empty"),
            ("24:00-01:00", "cannot start at 24:00"),
            ("mon 9-17", "9 is not a time"),
            ("a b c", "HH:MM-HH:MM"),
        ] {
            let e = Schedule::parse(&[w]).unwrap_err();
            assert!(e.contains(want), "{w}: {e}");
            assert!(e.starts_with(&format!("{w:?}")), "{e}");
        }
        assert!(Schedule::parse::<&str>(&[]).is_err());
    }
}
