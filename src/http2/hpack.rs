//! HPACK (RFC 7541) as the DNS-over-HTTPS client reads it (its requests' blocks are
//! [`super::request`]'s). A response's header block is read with the connection's dynamic table
//! ([`super::table`]): empty for a server that honours the client's
//! `SETTINGS_HEADER_TABLE_SIZE` of 0, kept (bounded) for one that does not. Only `:status`
//! and `content-type` are kept; other fields' strings are decoded only to count an indexed
//! one into the table.

use super::huffman;
use super::table::{self, Field, STATIC_ENTRIES, Table, static_name_len};

/// Static-table index (RFC 7541 Appendix A) of `content-type`.
pub(super) const CONTENT_TYPE: usize = 31;
/// `:status` entries 8 to 14, with their values.
const STATUSES: [u16; 7] = [200, 204, 206, 304, 400, 404, 500];

/// The most bytes of another content type kept (for the error that names it).
const SHOWN_TYPE: usize = 64;

/// The media type of DNS messages (RFC 8484 §6).
pub const DNS_MESSAGE: &str = "application/dns-message";

/// What a response's header block said.
#[derive(Debug, PartialEq, Eq)]
pub struct Head {
    /// The `:status` (none in trailers).
    pub status: Option<u16>,
    /// The `content-type`, when there was one.
    pub content_type: Option<ContentType>,
}

/// A response's `content-type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentType {
    /// `application/dns-message`.
    Dns,
    /// Another type (as sent, its first 64 bytes, lossily as text).
    Other(String),
}

/// A header block that cannot be read: a connection error (`COMPRESSION_ERROR`).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad HPACK header block: {0}")]
pub struct Error(pub &'static str);

/// Reads a response's header block with the connection's dynamic `table`, which the
/// block's size updates and indexed literals change (every block of the connection must
/// pass through it, in order). `dns_coded` is `application/dns-message` Huffman-coded (see
/// [`dns_message_coded`]): a coded type is compared as it came, not decoded. Strings of
/// other fields are decoded only to count them into the table.
pub fn read_response(block: &[u8], dns_coded: &[u8], table: &mut Table) -> Result<Head, Error> {
    let mut at = 0;
    let mut status = None;
    let mut content_type = None;
    let mut fields = 0usize;
    let mut scratch = Vec::new();
    while let Some(&first) = block.get(at) {
        if first & 0x80 != 0 {
            // Indexed field (§6.1).
            let index = int(block, &mut at, 7)?;
            match index {
                0 => return Err(Error("index 0")),
                8..=14 => status = STATUSES.get(index - 8).copied(),
                CONTENT_TYPE => content_type = Some(ContentType::Other(String::new())),
                i if i > STATIC_ENTRIES => match &dynamic(table, i)?.field {
                    Field::Status(s) => status = Some(*s),
                    Field::ContentType(t) => content_type = Some(t.clone()),
                    Field::Other => {}
                },
                _ => {}
            }
        } else if first & 0xe0 == 0x20 {
            // Dynamic table size update (§6.3): only before the fields (§4.2).
            if fields > 0 {
                return Err(Error("table size update after a field"));
            }
            let max = int(block, &mut at, 5)?;
            table.resize(max)?;
            continue;
        } else {
            // Literal field (§6.2): with incremental indexing (then added to the table),
            // without, or never indexed.
            let indexed = first & 0xc0 == 0x40;
            let index = int(block, &mut at, if indexed { 6 } else { 4 })?;
            let (name, name_len) = match index {
                0 => {
                    let (coded, raw) = string(block, &mut at)?;
                    let name = text(coded, raw, &mut scratch)?;
                    (name_of(name), name.len())
                }
                i if i > STATIC_ENTRIES => {
                    let e = dynamic(table, i)?;
                    let name = match e.field {
                        Field::Status(_) => Name::Status,
                        Field::ContentType(_) => Name::ContentType,
                        Field::Other => Name::Other,
                    };
                    (name, e.name_len)
                }
                i => {
                    let name = match i {
                        8..=14 => Name::Status,
                        CONTENT_TYPE => Name::ContentType,
                        _ => Name::Other,
                    };
                    (name, static_name_len(i).unwrap_or_default())
                }
            };
            let (coded, value) = string(block, &mut at)?;
            let field = match name {
                Name::Status => {
                    let s = status_of(coded, value)?;
                    status = Some(s);
                    Field::Status(s)
                }
                Name::ContentType => {
                    let t = type_of(coded, value, dns_coded)?;
                    content_type = Some(t.clone());
                    Field::ContentType(t)
                }
                Name::Other => Field::Other,
            };
            if indexed {
                let value_len = text(coded, value, &mut scratch)?.len();
                table.insert(field, name_len, value_len);
            }
        }
        fields += 1;
    }
    Ok(Head {
        status,
        content_type,
    })
}

/// The dynamic table's entry at `index`; an index past it is a connection error.
fn dynamic(table: &Table, index: usize) -> Result<&table::Entry, Error> {
    table
        .get(index)
        .ok_or(Error("index beyond the dynamic table"))
}

/// The Huffman coding of `application/dns-message`, for [`read_response`].
pub fn dns_message_coded() -> Vec<u8> {
    let mut out = Vec::new();
    huffman::encode(DNS_MESSAGE.as_bytes(), &mut out);
    out
}

/// A field name that matters here.
enum Name {
    Status,
    ContentType,
    Other,
}

/// A string's text: `raw` itself, or its Huffman decoding (into `decoded`, emptied first).
fn text<'a>(coded: bool, raw: &'a [u8], decoded: &'a mut Vec<u8>) -> Result<&'a [u8], Error> {
    if !coded {
        return Ok(raw);
    }
    decoded.clear();
    huffman::decode(raw, decoded).map_err(|_| Error("bad Huffman code"))?;
    Ok(decoded.as_slice())
}

fn name_of(name: &[u8]) -> Name {
    match name {
        b":status" => Name::Status,
        b"content-type" => Name::ContentType,
        _ => Name::Other,
    }
}

fn status_of(coded: bool, raw: &[u8]) -> Result<u16, Error> {
    let mut decoded = Vec::new();
    match text(coded, raw, &mut decoded)? {
        [a, b, c] if [a, b, c].iter().all(|d| d.is_ascii_digit()) => {
            Ok(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
        }
        _ => Err(Error(":status is not three digits")),
    }
}

fn type_of(coded: bool, raw: &[u8], dns_coded: &[u8]) -> Result<ContentType, Error> {
    if (coded && raw == dns_coded) || (!coded && raw == DNS_MESSAGE.as_bytes()) {
        return Ok(ContentType::Dns);
    }
    let mut decoded = Vec::new();
    let text = text(coded, raw, &mut decoded)?;
    // Only an error message shows it: its first bytes do, and a table entry that holds it
    // stays small however often a block refers to it.
    let shown = text.get(..SHOWN_TYPE).unwrap_or(text);
    Ok(ContentType::Other(
        String::from_utf8_lossy(shown).into_owned(),
    ))
}

/// An integer with an `n`-bit prefix (§5.1) at `*at`, which moves past it; at most 2^28.
pub(super) fn int(block: &[u8], at: &mut usize, n: u32) -> Result<usize, Error> {
    let truncated = Error("truncated");
    let first = *block.get(*at).ok_or(truncated)?;
    *at += 1;
    let max = (1usize << n) - 1;
    let mut v = usize::from(first) & max;
    if v < max {
        return Ok(v);
    }
    let mut shift = 0;
    loop {
        let b = *block.get(*at).ok_or(Error("truncated"))?;
        *at += 1;
        v += usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
        shift += 7;
        if shift > 21 {
            return Err(Error("integer too large"));
        }
    }
}

/// A string literal (§5.2) at `*at`, which moves past it: whether it is Huffman-coded, and
/// its bytes as sent.
pub(super) fn string<'a>(block: &'a [u8], at: &mut usize) -> Result<(bool, &'a [u8]), Error> {
    let coded = block.get(*at).ok_or(Error("truncated"))? & 0x80 != 0;
    let len = int(block, at, 7)?;
    let end = at.checked_add(len).ok_or(Error("truncated"))?;
    let bytes = block
        .get(*at..end)
        .ok_or(Error("string beyond the block"))?;
    *at = end;
    Ok((coded, bytes))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    use crate::test_util::hex;

    fn read(block: &[u8]) -> Result<Head, Error> {
        read_response(block, &dns_message_coded(), &mut Table::default())
    }

    #[test]
    fn an_indexed_200_and_a_coded_dns_type_are_read() {
        let mut block = vec![0x88, 0x5f];
        let coded = dns_message_coded();
        block.push(0x80 | coded.len() as u8);
        block.extend_from_slice(&coded);
        let head = read(&block).unwrap();
        assert_eq!(head.status, Some(200));
        assert_eq!(head.content_type, Some(ContentType::Dns));
    }

    #[test]
    fn rfc_7541_c_6_1_response_is_read_with_its_literal_status() {
        // RFC 7541 C.6.1: :status 302 (literal, indexed name 8), cache-control, date,
        // location, all Huffman-coded, with incremental indexing.
        let block = "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 \
                     82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3";
        let head = read(&hex(block)).unwrap();
        assert_eq!(head.status, Some(302));
        assert_eq!(head.content_type, None);
    }

    #[test]
    fn a_literal_name_and_a_plain_other_type_are_read() {
        let mut block = vec![0x00, 0x07];
        block.extend_from_slice(b":status");
        block.push(0x03);
        block.extend_from_slice(b"404");
        block.extend_from_slice(&[0x0f, 0x10, 0x0a]);
        block.extend_from_slice(b"text/plain");
        let head = read(&block).unwrap();
        assert_eq!(head.status, Some(404));
        assert_eq!(
            head.content_type,
            Some(ContentType::Other("text/plain".into()))
        );
    }

    #[test]
    fn the_dynamic_table_is_bounded_at_4096_and_its_indices_checked() {
        // Size updates to 0 and to 4,096 first are fine; above 4,096, or after a field, not;
        // an index past the static table with nothing in the dynamic one is not.
        assert_eq!(read(&[0x20, 0x88]).unwrap().status, Some(200));
        assert_eq!(read(&[0x3f, 0xe1, 0x1f, 0x88]).unwrap().status, Some(200));
        assert!(read(&[0x3f, 0xe2, 0x1f, 0x88]).is_err());
        assert!(read(&[0xbe]).is_err());
        assert!(read(&[0x88, 0x20]).is_err());
        assert_eq!(read(&[]).unwrap().status, None);
        assert!(read(&[0x08, 0x83, 0x64]).is_err());
    }

    #[test]
    fn rfc_7541_c_5_responses_fill_and_evict_a_256_byte_table() {
        // RFC 7541 C.5: three responses on one connection, literals with incremental
        // indexing and references to them, in a table of 256 bytes: its size after each
        // (222, 222, 215) is the RFC's.
        let coded = dns_message_coded();
        let mut t = Table::new(256);
        let first = hex(
            "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 \
                         7420 3230 3133 2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 \
                         3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
        );
        assert_eq!(
            read_response(&first, &coded, &mut t).unwrap().status,
            Some(302)
        );
        assert_eq!((t.size(), t.len()), (222, 4));
        // :status 307 (a literal), then cache-control, date and location by dynamic index:
        // :status 302, the oldest, is evicted.
        let second = hex("4803 3330 37c1 c0bf");
        assert_eq!(
            read_response(&second, &coded, &mut t).unwrap().status,
            Some(307)
        );
        assert_eq!((t.size(), t.len()), (222, 4));
        let third = hex(
            "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 \
                         3a32 3220 474d 54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 \
                         514b 425a 584f 5157 454f 5049 5541 5851 5745 4f49 553b 206d 6178 \
                         2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31",
        );
        assert_eq!(
            read_response(&third, &coded, &mut t).unwrap().status,
            Some(200)
        );
        assert_eq!((t.size(), t.len()), (215, 3));
        // The 307 went with the third response's additions: index 65 is past the table.
        assert!(read_response(&[0xc1], &coded, &mut t).is_err());
    }

    #[test]
    fn a_status_and_a_type_indexed_by_the_server_are_read_back_by_index() {
        // As dnsdist 1.7 (h2o) answers whatever the client's settings: the first answer
        // adds :status 200 and the DNS type to the table, later ones refer to them.
        let coded = dns_message_coded();
        let mut t = Table::default();
        let mut first = vec![0x48, 0x03];
        first.extend_from_slice(b"200");
        first.extend_from_slice(&[0x5f, 0x80 | coded.len() as u8]);
        first.extend_from_slice(&coded);
        first.extend_from_slice(&[0x5c, 0x02]);
        first.extend_from_slice(b"49");
        let head = read_response(&first, &coded, &mut t).unwrap();
        assert_eq!(head.status, Some(200));
        assert_eq!(head.content_type, Some(ContentType::Dns));
        // content-length 49 (14 + 2 + 32), content-type (12 + 23 + 32), :status (7 + 3 + 32).
        assert_eq!((t.size(), t.len()), (48 + 67 + 42, 3));
        // :status is now 64, the type 63, the length 62: a new length takes index 62's name.
        let mut later = vec![0xc0, 0xbf, 0x7e, 0x02];
        later.extend_from_slice(b"51");
        let head = read_response(&later, &coded, &mut t).unwrap();
        assert_eq!(head.status, Some(200));
        assert_eq!(head.content_type, Some(ContentType::Dns));
        let newest = t.get(62).unwrap();
        assert_eq!((&newest.field, newest.name_len), (&table::Field::Other, 14));
        assert_eq!((t.size(), t.len()), (157 + 48, 4));
        // A size update to 0 empties the table.
        assert_eq!(
            read_response(&[0x20, 0x88], &coded, &mut t).unwrap().status,
            Some(200)
        );
        assert!(t.is_empty());
    }

    #[test]
    fn another_type_is_kept_to_its_first_64_bytes() {
        // content-type (static name 31, a literal without indexing) of 100 bytes.
        let mut block = vec![0x88, 0x0f, 0x10, 100];
        block.extend_from_slice(&[b't'; 100]);
        assert_eq!(
            read(&block).unwrap().content_type,
            Some(ContentType::Other("t".repeat(64)))
        );
    }

    #[test]
    fn a_field_larger_than_the_table_empties_it() {
        let coded = dns_message_coded();
        let mut t = Table::new(64);
        read_response(&hex("4803 3330 32"), &coded, &mut t).unwrap();
        assert_eq!(t.len(), 1);
        // A 40-byte value with a 4-byte name: 76 bytes, over 64.
        let mut big = vec![0x40, 0x04];
        big.extend_from_slice(b"x-no");
        big.push(40);
        big.extend_from_slice(&[b'v'; 40]);
        read_response(&big, &coded, &mut t).unwrap();
        assert!(t.is_empty());
        assert_eq!(t.size(), 0);
    }
}
