//! The one field of a certificate that rustls does not expose and the server needs: when
//! it expires (`notAfter`), read by a small DER walk over the certificate's first fields.
//! Anything unexpected gives `None` (no warning then), never a panic.

use std::time::{Duration, SystemTime};

/// One DER element: its tag, its content, and what follows it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let (bytes, rest) = rest.split_at_checked(n)?;
        let len = bytes.iter().fold(0usize, |l, &b| (l << 8) | usize::from(b));
        (len, rest)
    };
    let (content, rest) = rest.split_at_checked(len)?;
    Some((tag, content, rest))
}

const SEQUENCE: u8 = 0x30;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
/// `[0] EXPLICIT`: the version field of a v2/v3 certificate.
const VERSION: u8 = 0xa0;

/// The certificate's `notAfter`, or `None` when `cert` is not a certificate this walk
/// understands.
pub fn not_after(cert: &[u8]) -> Option<SystemTime> {
    let (SEQUENCE, cert, _) = element(cert)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = element(cert)? else {
        return None;
    };
    let mut rest = tbs;
    let (tag, _, after) = element(rest)?;
    if tag == VERSION {
        rest = after;
    }
    // serialNumber, signature, issuer
    for _ in 0..3 {
        rest = element(rest)?.2;
    }
    let (SEQUENCE, validity, _) = element(rest)? else {
        return None;
    };
    let (_, _, validity) = element(validity)?;
    let (tag, text, _) = element(validity)?;
    time_of(tag, std::str::from_utf8(text).ok()?)
}

/// A `UTCTime` (`YYMMDDHHMMSSZ`, years 1950–2049) or `GeneralizedTime`
/// (`YYYYMMDDHHMMSSZ`) as written in certificates (RFC 5280 §4.1.2.5: always UTC, seconds,
/// no fraction).
fn time_of(tag: u8, text: &str) -> Option<SystemTime> {
    let digits = text.strip_suffix('Z')?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let num = |a: usize, b: usize| digits.get(a..b)?.parse::<u32>().ok();
    let (year, rest) = match (tag, digits.len()) {
        (UTC_TIME, 12) => {
            let yy = num(0, 2)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
        }
        (GENERALIZED_TIME, 14) => (num(0, 4)?, 4),
        _ => return None,
    };
    let month = time::Month::try_from(u8::try_from(num(rest, rest + 2)?).ok()?).ok()?;
    let date = time::Date::from_calendar_date(
        i32::try_from(year).ok()?,
        month,
        u8::try_from(num(rest + 2, rest + 4)?).ok()?,
    )
    .ok()?;
    let t = time::Time::from_hms(
        u8::try_from(num(rest + 4, rest + 6)?).ok()?,
        u8::try_from(num(rest + 6, rest + 8)?).ok()?,
        u8::try_from(num(rest + 8, rest + 10)?).ok()?,
    )
    .ok()?;
    let secs = time::PrimitiveDateTime::new(date, t)
        .assume_utc()
        .unix_timestamp();
    let secs = u64::try_from(secs).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_time_forms() {
        let t = |tag, s| {
            time_of(tag, s).map(|t| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs())
        };
        assert_eq!(t(UTC_TIME, "700101000000Z"), Some(0));
        assert_eq!(t(UTC_TIME, "300101000000Z"), Some(1_893_456_000));
        assert_eq!(t(GENERALIZED_TIME, "20300101000000Z"), Some(1_893_456_000));
        assert_eq!(t(UTC_TIME, "20300101000000Z"), None);
        assert_eq!(t(UTC_TIME, "301301000000Z"), None);
        assert_eq!(t(UTC_TIME, "30010100000+Z"), None);
    }

    #[test]
    fn garbage_is_none() {
        for b in [
            &b""[..],
            b"\x30",
            b"\x30\x85\0\0\0\0\0",
            b"\x30\x02\x30\x00",
            b"\x04\x00",
        ] {
            assert_eq!(not_after(b), None);
        }
    }
}
