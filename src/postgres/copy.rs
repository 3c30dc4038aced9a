//! Query-log rows in PostgreSQL's binary `COPY` format, encoded by the log's writer thread
//! straight into the bytes a `COPY queries (…) FROM STDIN (FORMAT binary)` sends: no
//! per-row allocation, no per-row round trip. The format: a header, then per row the field
//! count and each field as a length (`-1` for NULL) and its binary value, then a trailer
//! (PostgreSQL documentation, "COPY", binary format).

use std::net::IpAddr;
use std::time::SystemTime;

/// The columns each row holds, in order (the `COPY` statement's list).
pub const COLUMNS: &str = "ts, instance, client, proto, qname, domain, qtype, action, rule, list, grp, cname, rcode, dnssec, answers, tc, upstream, elapsed_us, session, seq, new";

/// How many columns [`COLUMNS`] names.
const FIELDS: i16 = 21;

/// The start of a binary `COPY` stream: signature, flags, header extension length.
pub const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// The end of a binary `COPY` stream.
pub const TRAILER: &[u8] = &[0xff, 0xff];

/// The `text` type's OID, for array elements.
const TEXT_OID: i32 = 25;

/// Seconds from the Unix epoch to PostgreSQL's, 2000-01-01.
const PG_EPOCH_UNIX_S: i64 = 946_684_800;

/// One query-log row, borrowed from the record being written.
#[derive(Debug)]
pub struct Row<'a> {
    /// Arrival time.
    pub ts: SystemTime,
    /// The instance writing.
    pub instance: &'a str,
    /// Client address (or network).
    pub client: IpAddr,
    /// Transport name.
    pub proto: &'a str,
    /// Query name.
    pub qname: &'a str,
    /// Its registrable domain.
    pub domain: &'a str,
    /// Type mnemonic.
    pub qtype: &'a str,
    /// The log's action.
    pub action: &'a str,
    /// Deciding rule, and where it is (`file:line`, `builtin`).
    pub rule: Option<(&'a str, &'a str)>,
    /// Client group.
    pub group: Option<&'a str>,
    /// The CNAME the rule blocked.
    pub cname: Option<&'a str>,
    /// Response code mnemonic.
    pub rcode: &'a str,
    /// DNSSEC finding.
    pub dnssec: Option<&'a str>,
    /// Truncated reply.
    pub tc: bool,
    /// The upstream that answered.
    pub upstream: Option<&'a str>,
    /// Microseconds to the answer.
    pub elapsed_us: u64,
    /// Session number.
    pub session: u64,
    /// Position in the session.
    pub seq: u64,
    /// First time for this registrable domain.
    pub new: bool,
}

/// Microseconds since 2000-01-01 UTC, PostgreSQL's `timestamptz`.
pub fn pg_micros(t: SystemTime) -> i64 {
    let unix_us = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
    };
    unix_us.saturating_sub(PG_EPOCH_UNIX_S * 1_000_000)
}

fn len(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&i32::try_from(n).unwrap_or(i32::MAX).to_be_bytes());
}

fn text(out: &mut Vec<u8>, s: &str) {
    // A field is at most 1 GB in PostgreSQL; the log's values are far below (names ≤ 255,
    // answers cut at 256 bytes), so the length never saturates in practice.
    if memchr::memchr(0, s.as_bytes()).is_none() {
        len(out, s.len());
        out.extend_from_slice(s.as_bytes());
    } else {
        // PostgreSQL's text cannot hold NUL (the whole batch would be refused): a NUL in a
        // name or an answer (a TXT string from an upstream) is stored as `\0`.
        let escaped = s.replace('\0', "\\0");
        len(out, escaped.len());
        out.extend_from_slice(escaped.as_bytes());
    }
}

/// A text this program wrote (a mnemonic, an address): no NUL to look for.
fn plain(out: &mut Vec<u8>, s: &str) {
    debug_assert!(!s.contains('\0'));
    len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn opt_plain(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => plain(out, s),
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
    }
}

fn opt_text(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => text(out, s),
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
    }
}

fn int8(out: &mut Vec<u8>, v: i64) {
    len(out, 8);
    out.extend_from_slice(&v.to_be_bytes());
}

fn boolean(out: &mut Vec<u8>, v: bool) {
    len(out, 1);
    out.push(u8::from(v));
}

fn inet(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => {
            len(out, 8);
            // family (PGSQL_AF_INET = 2), bits, is_cidr, address length, address
            out.extend_from_slice(&[2, 32, 0, 4]);
            out.extend_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            len(out, 20);
            out.extend_from_slice(&[3, 128, 0, 16]);
            out.extend_from_slice(&a.octets());
        }
    }
}

/// A `text[]` of the strings `items` hands to its callback, written as they come (no list
/// is collected first): the header's length and count are filled in at the end.
fn text_array(out: &mut Vec<u8>, items: impl FnOnce(&mut dyn FnMut(&str))) {
    let at = out.len();
    // field length, ndim, no NULL elements, element type, count, lower bound
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&1i32.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes());
    out.extend_from_slice(&TEXT_OID.to_be_bytes());
    let count_at = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&1i32.to_be_bytes());
    let mut n = 0usize;
    items(&mut |s: &str| {
        text(out, s);
        n += 1;
    });
    if n == 0 {
        // An empty array has no dimensions.
        out.truncate(count_at);
        if let Some(ndim) = out.get_mut(at + 4..at + 8) {
            ndim.copy_from_slice(&0i32.to_be_bytes());
        }
    } else if let Some(count) = out.get_mut(count_at..count_at + 4) {
        count.copy_from_slice(&i32::try_from(n).unwrap_or(i32::MAX).to_be_bytes());
    }
    let size = i32::try_from(out.len() - at - 4).unwrap_or(i32::MAX);
    if let Some(field) = out.get_mut(at..at + 4) {
        field.copy_from_slice(&size.to_be_bytes());
    }
}

/// Appends one row to a `COPY` stream (after [`HEADER`], before [`TRAILER`]); `answers`
/// hands each of the row's answers to its callback, in order.
pub fn encode(r: &Row<'_>, answers: impl FnOnce(&mut dyn FnMut(&str)), out: &mut Vec<u8>) {
    out.extend_from_slice(&FIELDS.to_be_bytes());
    int8(out, pg_micros(r.ts));
    text(out, r.instance);
    inet(out, r.client);
    plain(out, r.proto);
    text(out, r.qname);
    text(out, r.domain);
    plain(out, r.qtype);
    plain(out, r.action);
    opt_text(out, r.rule.map(|(rule, _)| rule));
    opt_text(out, r.rule.map(|(_, list)| list));
    opt_text(out, r.group);
    opt_text(out, r.cname);
    plain(out, r.rcode);
    opt_plain(out, r.dnssec);
    text_array(out, answers);
    boolean(out, r.tc);
    opt_plain(out, r.upstream);
    int8(out, i64::try_from(r.elapsed_us).unwrap_or(i64::MAX));
    int8(out, i64::try_from(r.session).unwrap_or(i64::MAX));
    int8(out, i64::try_from(r.seq).unwrap_or(i64::MAX));
    boolean(out, r.new);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn columns_and_fields_agree() {
        assert_eq!(COLUMNS.split(", ").count(), FIELDS as usize);
        assert_eq!(HEADER.len(), 19);
    }

    #[test]
    fn times_count_from_2000() {
        let y2k = SystemTime::UNIX_EPOCH + Duration::from_secs(946_684_800);
        assert_eq!(pg_micros(y2k), 0);
        assert_eq!(pg_micros(y2k + Duration::from_micros(1_500_000)), 1_500_000);
        assert_eq!(pg_micros(SystemTime::UNIX_EPOCH), -946_684_800_000_000);
    }

    #[test]
    fn arrays_carry_their_length() {
        let mut out = Vec::new();
        text_array(&mut out, |f| ["a", "bc"].into_iter().for_each(f));
        // length, ndim 1, no nulls, oid 25, 2 items from 1, then 4+1 and 4+2 bytes
        let body = 4 * 5 + 5 + 6;
        assert_eq!(&out[..4], &(body as i32).to_be_bytes());
        assert_eq!(out.len(), 4 + body);
        out.clear();
        text_array(&mut out, |_| {});
        assert_eq!(&out[..4], &12i32.to_be_bytes());
    }
}
