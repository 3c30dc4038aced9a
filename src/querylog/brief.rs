//! [`Brief`]: the fields of a record that the reports (`first`, `suggest`, `heartbeats`, the
//! discovery view) read, borrowed from the raw line without parsing it when it has the
//! writer's shape, which most lines do. Parsing a whole record as JSON costs several times
//! more than finding these seven fields, and a discovery view of a busy client reads
//! hundreds of thousands of records.

use std::sync::OnceLock;

use memchr::memmem::Finder;

use super::Entry;
use super::filter::{peek_str, peek_ts};

/// A record's fields that the reports read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Brief<'a> {
    /// The instance that answered (the database's rows); empty in the files.
    pub instance: &'a str,
    /// Arrival time (`ts`).
    pub ts: &'a str,
    /// Client address.
    pub client: &'a str,
    /// What carried the query (`udp`, `tcp`, `tls`, …); `None` in older files.
    pub proto: Option<&'a str>,
    /// Query name.
    pub qname: &'a str,
    /// `allowed`, `blocked`, …
    pub action: &'a str,
    /// The client's session number.
    pub session: u64,
    /// Position in the session.
    pub seq: u64,
    /// First time the client asked for the registrable domain.
    pub new: bool,
}

/// The field prefixes looked for, built once.
struct Finders {
    client: Finder<'static>,
    proto: Finder<'static>,
    qname: Finder<'static>,
    action: Finder<'static>,
    session: Finder<'static>,
    seq: Finder<'static>,
    new_true: Finder<'static>,
}

fn finders() -> &'static Finders {
    static F: OnceLock<Finders> = OnceLock::new();
    F.get_or_init(|| Finders {
        client: Finder::new(b"\"client\":\"").into_owned(),
        proto: Finder::new(b"\"proto\":\"").into_owned(),
        qname: Finder::new(b"\"qname\":\"").into_owned(),
        action: Finder::new(b"\"action\":\"").into_owned(),
        session: Finder::new(b"\"session\":").into_owned(),
        seq: Finder::new(b"\"seq\":").into_owned(),
        new_true: Finder::new(b"\"new\":true").into_owned(),
    })
}

/// The unsigned number after the field prefix `f` finds; `None` unless digits follow.
/// No string can hold the prefix (a quote inside a string is escaped), so the first one
/// found is the field.
fn peek_u64(line: &[u8], f: &Finder<'_>) -> Option<u64> {
    let at = f.find(line)? + f.needle().len();
    let digits = line.get(at..)?;
    let end = digits
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    std::str::from_utf8(digits.get(..end)?).ok()?.parse().ok()
}

impl<'a> Brief<'a> {
    /// The fields of a parsed record.
    pub fn of(e: &'a Entry<'_>) -> Self {
        Self {
            instance: e.instance.as_deref().unwrap_or(""),
            ts: &e.ts,
            client: &e.client,
            proto: e.proto.as_deref(),
            qname: &e.qname,
            action: &e.action,
            session: e.session,
            seq: e.seq,
            new: e.new,
        }
    }

    /// The fields read from a raw line as the writer writes it; `None` when the line has
    /// another shape or a string with an escape (parse it then).
    pub fn peek(line: &'a [u8]) -> Option<Self> {
        let f = finders();
        if line.last() != Some(&b'}') {
            return None;
        }
        Some(Self {
            instance: "",
            ts: std::str::from_utf8(peek_ts(line)?).ok()?,
            client: peek_str(line, &f.client)?,
            // Optional: lines written before it was recorded have none.
            proto: peek_str(line, &f.proto),
            qname: peek_str(line, &f.qname)?,
            action: peek_str(line, &f.action)?,
            session: peek_u64(line, &f.session)?,
            seq: peek_u64(line, &f.seq)?,
            new: f.new_true.find(line).is_some(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peeked_fields_are_the_parsed_ones() {
        let lines: [&[u8]; 4] = [
            br#"{"ts":"2026-11-21T10:00:01.532Z","client":"192.0.2.1","qname":"ads.example.com","qtype":"A","action":"blocked","rule":"ads.example.com","list":"l.txt:3","rcode":"NOERROR","answers":["0.0.0.0"],"upstream":null,"elapsed_us":1,"session":12,"seq":345,"new":true}"#,
            br#"{"ts":"2026-11-21T10:00:01.532Z","client":"::1","qname":"","qtype":"NS","action":"allowed","rcode":"NOERROR","answers":["a \"new\":true"],"elapsed_us":1,"session":1,"seq":1,"new":false}"#,
            br#"{"ts":"2026-11-21T10:00:01.532Z","client":"::1","qname":"x","qtype":"A","action":"cached","rcode":"NOERROR","elapsed_us":1,"session":1,"seq":2}"#,
            br#"{"ts":"2026-11-21T10:00:01.532Z","client":"::1","proto":"tls","qname":"x","qtype":"A","action":"cached","rcode":"NOERROR","elapsed_us":1,"session":1,"seq":2}"#,
        ];
        for line in lines {
            let e: Entry<'_> = serde_json::from_slice(line).unwrap();
            let peeked = Brief::peek(line);
            // An answer holding `\"new\":true` is escaped, so it is not taken for the field.
            assert_eq!(
                peeked,
                Some(Brief::of(&e)),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        // Escapes and other shapes are left to the parser.
        let escaped = br#"{"ts":"2026-11-21T10:00:01.532Z","client":"::1","qname":"a\"b","qtype":"A","action":"cached","rcode":"NOERROR","elapsed_us":1,"session":1,"seq":2}"#;
        assert_eq!(Brief::peek(escaped), None);
        assert_eq!(Brief::peek(br#"{"client":"::1"}"#), None);
        assert_eq!(
            Brief::peek(b"{\"ts\":\"2026-11-21T10:00:01.532Z\",\"client\":\"::1\""),
            None
        );
    }
}
