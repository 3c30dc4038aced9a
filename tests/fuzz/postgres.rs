//! Target `postgres_rows`: records built from the fuzzer's bytes (odd names, control
//! characters and NUL, TXT answers of any bytes, any type, IPv4 and IPv6 clients) encoded
//! into the `COPY` rows the PostgreSQL writer sends (`postgres::writer::encode_row`), and
//! the API's database page cursor (`postgres::recent::DbCursor`) parsed from the same bytes.
//!
//! Properties: a row decodes as PostgreSQL reads binary `COPY` (21 fields, each a length
//! and that many bytes, `-1` for NULL; `text[]` with its dimensions, element type and
//! count), fills the input exactly, and holds no byte PostgreSQL's `text` refuses (a NUL, or
//! invalid UTF-8), so one client's odd name or an upstream's odd answer can never make the
//! database refuse a batch; a cursor that parses prints back as the same text.

use std::str::FromStr;

use sinkhole::postgres::recent::DbCursor;
use sinkhole::postgres::writer::encode_row;
use sinkhole::querylog::sessions::Mark;
use sinkhole::querylog::writer::Shown;

use crate::engine::{Shape, Target, Verdict, fuzz, sig};
use crate::querylog::record_from;

/// The text fields' places among the 21 (the rest: ts, client, answers, tc, and the four
/// integers and `new`).
const TEXT: [usize; 13] = [1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 16];

fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
    if b.len() < n {
        return Err(format!("{n} bytes wanted, {} left", b.len()));
    }
    let (h, t) = b.split_at(n);
    *b = t;
    Ok(h)
}

fn int(b: &mut &[u8]) -> Result<i32, String> {
    let h = take(b, 4)?;
    Ok(i32::from_be_bytes([h[0], h[1], h[2], h[3]]))
}

fn text_ok(v: &[u8]) -> Result<(), String> {
    if v.contains(&0) {
        return Err(format!("a NUL in text: {v:?}"));
    }
    std::str::from_utf8(v).map_err(|e| format!("not UTF-8: {e}: {v:?}"))?;
    Ok(())
}

/// Reads one row as PostgreSQL does; returns how many answers it held.
fn decode(mut b: &[u8]) -> Result<u64, String> {
    let fields = take(&mut b, 2)?;
    if fields != 21i16.to_be_bytes() {
        return Err(format!("field count {fields:?}"));
    }
    let mut answers = 0;
    for i in 0..21 {
        let n = int(&mut b)?;
        if n == -1 {
            continue;
        }
        let v = take(
            &mut b,
            usize::try_from(n).map_err(|_| format!("length {n}"))?,
        )?;
        if TEXT.contains(&i) {
            text_ok(v)?;
        }
        if i == 14 {
            let mut a = v;
            let ndim = int(&mut a)?;
            let _nulls = int(&mut a)?;
            if int(&mut a)? != 25 {
                return Err("array element type is not text".into());
            }
            if ndim == 1 {
                let count = int(&mut a)?;
                if int(&mut a)? != 1 {
                    return Err("array lower bound is not 1".into());
                }
                for _ in 0..count {
                    let l = int(&mut a)?;
                    text_ok(take(
                        &mut a,
                        usize::try_from(l).map_err(|_| format!("element length {l}"))?,
                    )?)?;
                }
                answers = u64::try_from(count).unwrap_or(0);
            } else if ndim != 0 {
                return Err(format!("{ndim} array dimensions"));
            }
            if !a.is_empty() {
                return Err(format!("{} bytes after the array", a.len()));
            }
        }
    }
    if !b.is_empty() {
        return Err(format!("{} bytes after the row", b.len()));
    }
    Ok(answers)
}

fn check(b: &[u8]) -> Verdict {
    let r = record_from(b);
    let mark = Mark {
        session: 1,
        seq: 1,
        new: true,
        domain_at: b
            .first()
            .map_or(0, |&x| usize::from(x) % (r.asked.qname.as_str().len() + 1)),
    };
    let shown = Shown::of(&r);
    let mut out = Vec::new();
    encode_row(
        &r,
        &mark,
        &shown,
        "dns1.lan",
        b.len().is_multiple_of(2),
        &mut out,
    );
    let answers = decode(&out)?;
    let text = String::from_utf8_lossy(b);
    let cursor = match DbCursor::from_str(&text) {
        Ok(c) => {
            let again = DbCursor::from_str(&c.to_string())
                .map_err(|()| format!("{c} does not parse again"))?;
            if again != c {
                return Err(format!("{text:?} → {c} → {again}"));
            }
            1
        }
        Err(()) => 0,
    };
    Ok(sig(&[answers.min(8), cursor]))
}

#[test]
fn postgres_rows() {
    fuzz(
        Target {
            name: "postgres_rows",
            seeds: vec![
                b"www.example.com".to_vec(),
                b"t1796515200000000-3".to_vec(),
                b"a\0b.example\x01\x02\xff\xfe".to_vec(),
                (0u8..=255).collect(),
            ],
            dict: ["t", "-", "\0", ".", "\\0", "\u{fffd}", "17965152000000"]
                .iter()
                .map(|s| s.as_bytes().to_vec())
                .collect(),
            max_len: 1024,
            shape: Shape::Text,
        },
        check,
    );
}
