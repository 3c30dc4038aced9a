//! A request's header block (RFC 7541) as the DNS-over-HTTPS client writes it. Every request
//! has the same fields but its `content-length`: `POST`, `https`, the path, the authority,
//! and `application/dns-message` as content type and accepted type. Until the server's
//! SETTINGS say how large a table its decoder keeps, they go as static indices and plain
//! literals that add nothing to that table; once its table takes them, the next request adds
//! the four literals to it (incremental indexing, §6.2.1), and every later one names them by
//! index: a block of 15 bytes (for a padded query of 128 bytes) where the literals take
//! about 80 for a short URL. (General clients such as the `h2` crate and nghttp2 index
//! `:authority` and the types but never `:path`, which changes from request to request;
//! ours never does.)
//!
//! Why: each byte of a request is copied, encrypted and sent by us, and decrypted and
//! decoded by the server; a server's HPACK decoder copies and checks every literal it reads,
//! where an index costs it a lookup.
//!
//! Every block starts with a dynamic table size update (§6.3), as §4.2 asks after a change
//! of the server's setting: to 0 while the fields go as literals (whatever the server's
//! setting, its table is then empty), else to exactly what the four entries take, so that
//! nothing is ever evicted and their indices never move. The block that adds them starts
//! with two updates, to 0 and then to that size: the table is empty before they go in, and
//! the smallest size since the last block is signalled whatever the server set in between
//! (§4.2: it may have lowered its setting below theirs and raised it again).

use super::hpack::{CONTENT_TYPE, DNS_MESSAGE};
use super::table::{MAX_SIZE, STATIC_ENTRIES};

/// Static-table indices (RFC 7541 Appendix A) of a request's fields.
const METHOD_POST: usize = 3;
const SCHEME_HTTPS: usize = 7;
const PATH: usize = 4;
const AUTHORITY: usize = 1;
const ACCEPT: usize = 19;
const CONTENT_LENGTH: usize = 28;

/// The lengths of the names of the indexed fields, for their entries' sizes (§4.1).
const NAME_LENS: [usize; 4] = [
    ":path".len(),
    ":authority".len(),
    "content-type".len(),
    "accept".len(),
];

/// What the server's decoder holds of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing: the fields go as literals (the server's table is not known yet, or too small).
    Plain,
    /// Its table takes the fields: the next request adds them.
    Index,
    /// The fields are in its table.
    Indexed,
}

/// The request blocks of one connection; see the module documentation.
#[derive(Debug)]
pub struct Requests {
    /// Size update to 0, the fields as plain literals without indexing.
    plain: Vec<u8>,
    /// Size updates to 0 and to `size`, the fields as literals with incremental indexing.
    index: Vec<u8>,
    /// Size update to `size`, the fields by index.
    indexed: Vec<u8>,
    /// What the four entries take in the server's table.
    size: usize,
    state: State,
}

impl Requests {
    /// The blocks of requests for `path` at `authority`; literals until [`Requests::settings`].
    pub fn new(authority: &str, path: &str) -> Self {
        let values = [
            path.as_bytes(),
            authority.as_bytes(),
            DNS_MESSAGE.as_bytes(),
            DNS_MESSAGE.as_bytes(),
        ];
        let names = [PATH, AUTHORITY, CONTENT_TYPE, ACCEPT];
        let size = values
            .iter()
            .zip(NAME_LENS)
            .map(|(v, n)| v.len() + n + 32)
            .sum();
        let mut plain = Vec::with_capacity(64 + authority.len() + path.len());
        let mut index = plain.clone();
        let mut indexed = Vec::with_capacity(16);
        put_int(&mut plain, 0x20, 5, 0);
        put_int(&mut index, 0x20, 5, 0);
        put_int(&mut index, 0x20, 5, size);
        put_int(&mut indexed, 0x20, 5, size);
        for out in [&mut plain, &mut index, &mut indexed] {
            put_int(out, 0x80, 7, METHOD_POST);
            put_int(out, 0x80, 7, SCHEME_HTTPS);
        }
        for (i, (name, value)) in names.into_iter().zip(values).enumerate() {
            literal(&mut plain, 0x00, 4, name, value);
            literal(&mut index, 0x40, 6, name, value);
            // Added in this order, the last one added is the first dynamic entry.
            put_int(&mut indexed, 0x80, 7, STATIC_ENTRIES + names.len() - i);
        }
        Self {
            plain,
            index,
            indexed,
            size,
            state: State::Plain,
        }
    }

    /// The server's SETTINGS came, its `SETTINGS_HEADER_TABLE_SIZE` being `table` (the last
    /// one it sent, else 4,096): the fields are indexed from the next request if they fit,
    /// else they go as literals.
    pub fn settings(&mut self, table: u32) {
        let limit = usize::try_from(table).unwrap_or(usize::MAX).min(MAX_SIZE);
        if self.size > limit {
            self.state = State::Plain;
        } else if self.state == State::Plain {
            self.state = State::Index;
        }
    }

    /// Appends the header block of the next request, whose body is `len` bytes.
    pub fn write(&mut self, out: &mut Vec<u8>, len: usize) {
        let fixed = match self.state {
            State::Plain => &self.plain,
            State::Index => {
                self.state = State::Indexed;
                &self.index
            }
            State::Indexed => &self.indexed,
        };
        out.extend_from_slice(fixed);
        put_content_length(out, len);
    }
}

/// Appends a request's `content-length: len`, a literal without indexing.
fn put_content_length(out: &mut Vec<u8>, len: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = len;
    loop {
        at -= 1;
        if let Some(d) = digits.get_mut(at) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || at == 0 {
            break;
        }
    }
    literal(
        out,
        0x00,
        4,
        CONTENT_LENGTH,
        digits.get(at..).unwrap_or_default(),
    );
}

/// A literal field (§6.2) of kind `flags` (its index taking `n` bits), its name from the
/// static table, its value plain.
fn literal(out: &mut Vec<u8>, flags: u8, n: u32, name: usize, value: &[u8]) {
    put_int(out, flags, n, name);
    put_int(out, 0x00, 7, value.len());
    out.extend_from_slice(value);
}

/// An integer with an `n`-bit prefix (§5.1), the first byte's other bits from `flags`.
fn put_int(out: &mut Vec<u8>, flags: u8, n: u32, v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(flags | v as u8);
        return;
    }
    out.push(flags | max as u8);
    let mut rest = v - max;
    while rest >= 0x80 {
        out.push(0x80 | (rest & 0x7f) as u8);
        rest >>= 7;
    }
    out.push(rest as u8);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    use super::super::hpack::{int, string};

    /// A field as written: its representation's flags, name or entry index, and value.
    type Written = (u8, usize, Vec<u8>);

    /// A request block's leading table size updates, and its fields.
    fn fields(block: &[u8]) -> (Vec<usize>, Vec<Written>) {
        assert_eq!(block[0] & 0xe0, 0x20, "a table size update first");
        let mut at = 0;
        let mut sizes = Vec::new();
        while block[at] & 0xe0 == 0x20 {
            sizes.push(int(block, &mut at, 5).unwrap());
        }
        let mut seen = Vec::new();
        while at < block.len() {
            let first = block[at];
            let (kind, n) = match first {
                _ if first & 0x80 != 0 => (0x80, 7),
                _ if first & 0xc0 == 0x40 => (0x40, 6),
                _ if first & 0xf0 == 0x00 => (0x00, 4),
                _ => panic!("unexpected representation {first:#x}"),
            };
            let index = int(block, &mut at, n).unwrap();
            let value = if kind == 0x80 {
                Vec::new()
            } else {
                let (coded, v) = string(block, &mut at).unwrap();
                assert!(!coded, "plain strings");
                v.to_vec()
            };
            seen.push((kind, index, value));
        }
        (sizes, seen)
    }

    #[test]
    fn requests_go_as_literals_until_the_servers_settings_then_add_their_fields_once() {
        let mut r = Requests::new("dns.example:8443", "/dns-query?x=1");
        let mut plain = Vec::new();
        r.write(&mut plain, 1234);
        let (sizes, seen) = fields(&plain);
        assert_eq!(sizes, [0], "the server's table emptied");
        let literals = |kind: u8| -> Vec<Written> {
            vec![
                (0x80, 3, vec![]),
                (0x80, 7, vec![]),
                (kind, 4, b"/dns-query?x=1".to_vec()),
                (kind, 1, b"dns.example:8443".to_vec()),
                (kind, 31, DNS_MESSAGE.into()),
                (kind, 19, DNS_MESSAGE.into()),
                (0x00, 28, b"1234".to_vec()),
            ]
        };
        assert_eq!(seen, literals(0x00));
        // Entry sizes (RFC 7541 §4.1): name + value + 32 each.
        let want_size = (5 + 14 + 32) + (10 + 16 + 32) + (12 + 23 + 32) + (6 + 23 + 32);
        r.settings(4096);
        let mut index = Vec::new();
        r.write(&mut index, 1234);
        let (sizes, seen) = fields(&index);
        assert_eq!(
            sizes,
            [0, want_size],
            "emptied, then set to what the entries take"
        );
        assert_eq!(seen, literals(0x40), "literals with incremental indexing");
        let mut indexed = Vec::new();
        r.write(&mut indexed, 128);
        let (sizes, seen) = fields(&indexed);
        assert_eq!(sizes, [want_size]);
        // Newest first: accept (62), content-type, authority, path (65).
        let by_index: Vec<_> = [3, 7, 65, 64, 63, 62]
            .into_iter()
            .map(|i| (0x80, i, vec![]))
            .chain([(0x00, 28, b"128".to_vec())])
            .collect();
        assert_eq!(seen, by_index);
        assert_eq!(indexed.len(), 15, "3 + 6 + a 6-byte content-length");
        assert_eq!(plain.len(), 96);
        // Settings again: the entries stay.
        r.settings(8192);
        let mut again = Vec::new();
        r.write(&mut again, 128);
        assert_eq!(again, indexed);
    }

    #[test]
    fn a_server_table_too_small_for_the_fields_gets_literals_and_a_larger_one_again_indexes() {
        let mut r = Requests::new("dns.example", "/dns-query");
        let mut plain = Vec::new();
        r.write(&mut plain, 0);
        r.settings(0);
        let mut b = Vec::new();
        r.write(&mut b, 0);
        assert_eq!(b, plain, "a table of 0: literals");
        r.settings(4096);
        r.write(&mut Vec::new(), 0);
        r.settings(100);
        let mut b = Vec::new();
        r.write(&mut b, 0);
        assert_eq!(
            b, plain,
            "lowered below the entries: literals, the table emptied"
        );
        r.settings(4096);
        let mut b = Vec::new();
        r.write(&mut b, 0);
        assert_eq!(fields(&b).1[2].0, 0x40, "added again");
        // Lowered below the entries and raised again before the next block: that block
        // signals the smaller size first (0), then adds them again.
        r.write(&mut Vec::new(), 0);
        r.settings(100);
        r.settings(4096);
        let mut b = Vec::new();
        r.write(&mut b, 0);
        let (sizes, seen) = fields(&b);
        assert_eq!(sizes.first(), Some(&0));
        assert_eq!(seen[2].0, 0x40);
    }

    #[test]
    fn a_path_too_long_for_any_table_always_goes_as_a_literal() {
        let path = format!("/{}", "p".repeat(5000));
        let mut r = Requests::new("dns.example", &path);
        r.settings(u32::MAX);
        let mut b = Vec::new();
        r.write(&mut b, 7);
        let (sizes, seen) = fields(&b);
        assert_eq!(sizes, [0]);
        assert_eq!(seen[2], (0x00, 4, path.into_bytes()));
    }

    #[test]
    fn content_length_is_written_in_decimal() {
        let mut zero = Vec::new();
        put_content_length(&mut zero, 0);
        assert_eq!(zero, [0x0f, 0x0d, 0x01, b'0']);
    }
}
