//! HPACK (RFC 7541) as the DNS-over-HTTPS client needs it. A request's header block is
//! written with the static table and literals only: nothing is added to the server's
//! dynamic table, so no state is shared. A response's header block is read with a dynamic
//! table of size 0 (the client's `SETTINGS_HEADER_TABLE_SIZE`), so reading it needs no
//! state either; only `:status` and `content-type` are kept, other fields are skipped
//! without decoding their strings.

use super::huffman;

/// Static-table indices (RFC 7541 Appendix A) of what a request and an answer use.
const METHOD_POST: usize = 3;
const SCHEME_HTTPS: usize = 7;
const PATH: usize = 4;
const AUTHORITY: usize = 1;
const ACCEPT: usize = 19;
const CONTENT_LENGTH: usize = 28;
const CONTENT_TYPE: usize = 31;
/// `:status` entries 8 to 14, with their values.
const STATUSES: [u16; 7] = [200, 204, 206, 304, 400, 404, 500];
/// Entries of the static table.
const STATIC_ENTRIES: usize = 61;

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
#[derive(Debug, PartialEq, Eq)]
pub enum ContentType {
    /// `application/dns-message`.
    Dns,
    /// Another type (as sent, lossily as text).
    Other(String),
}

/// A header block that cannot be read: a connection error (`COMPRESSION_ERROR`).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad HPACK header block: {0}")]
pub struct Error(pub &'static str);

/// The fixed part of every request's header block: a dynamic table size update to 0 (our
/// encoder's table, which we never use: legal under any `SETTINGS_HEADER_TABLE_SIZE` the
/// server sets, and the signal §4.2 asks for after a change), `POST`, `https`, the path,
/// the authority, and the content type and accepted type (`application/dns-message`).
pub fn request_prefix(authority: &str, path: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + authority.len() + path.len());
    put_int(&mut out, 0x20, 5, 0);
    put_int(&mut out, 0x80, 7, METHOD_POST);
    put_int(&mut out, 0x80, 7, SCHEME_HTTPS);
    literal(&mut out, PATH, path.as_bytes());
    literal(&mut out, AUTHORITY, authority.as_bytes());
    literal(&mut out, CONTENT_TYPE, DNS_MESSAGE.as_bytes());
    literal(&mut out, ACCEPT, DNS_MESSAGE.as_bytes());
    out
}

/// Appends a request's `content-length: len`.
pub fn put_content_length(out: &mut Vec<u8>, len: usize) {
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
    literal(out, CONTENT_LENGTH, digits.get(at..).unwrap_or_default());
}

/// A literal field without indexing (§6.2.2), its name from the static table.
fn literal(out: &mut Vec<u8>, name: usize, value: &[u8]) {
    put_int(out, 0x00, 4, name);
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

/// Reads a response's header block. `dns_coded` is `application/dns-message` Huffman-coded
/// (see [`dns_message_coded`]): a coded type is compared as it came, not decoded.
pub fn read_response(block: &[u8], dns_coded: &[u8]) -> Result<Head, Error> {
    let mut at = 0;
    let mut status = None;
    let mut content_type = None;
    let mut fields = 0usize;
    while let Some(&first) = block.get(at) {
        if first & 0x80 != 0 {
            // Indexed field (§6.1): only the static table, the dynamic one being empty.
            let index = int(block, &mut at, 7)?;
            match index {
                0 => return Err(Error("index 0")),
                8..=14 => status = STATUSES.get(index - 8).copied(),
                CONTENT_TYPE => content_type = Some(ContentType::Other(String::new())),
                i if i > STATIC_ENTRIES => return Err(Error("index beyond the static table")),
                _ => {}
            }
        } else if first & 0xe0 == 0x20 {
            // Dynamic table size update (§6.3): only to 0, and only before the fields.
            if fields > 0 {
                return Err(Error("table size update after a field"));
            }
            if int(block, &mut at, 5)? != 0 {
                return Err(Error("table size above the 0 the client allows"));
            }
            continue;
        } else {
            // Literal field (§6.2): with incremental indexing (the entry does not fit a
            // table of size 0 and empties it, which it is), without, or never indexed.
            let prefix = if first & 0xc0 == 0x40 { 6 } else { 4 };
            let index = int(block, &mut at, prefix)?;
            let name = match index {
                0 => {
                    let (coded, raw) = string(block, &mut at)?;
                    name_of(coded, raw)?
                }
                8..=14 => Name::Status,
                CONTENT_TYPE => Name::ContentType,
                i if i > STATIC_ENTRIES => return Err(Error("index beyond the static table")),
                _ => Name::Other,
            };
            let (coded, value) = string(block, &mut at)?;
            match name {
                Name::Status => status = Some(status_of(coded, value)?),
                Name::ContentType => content_type = Some(type_of(coded, value, dns_coded)?),
                Name::Other => {}
            }
        }
        fields += 1;
    }
    Ok(Head {
        status,
        content_type,
    })
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

/// A string's text: `raw` itself, or its Huffman decoding (into `decoded`).
fn text<'a>(coded: bool, raw: &'a [u8], decoded: &'a mut Vec<u8>) -> Result<&'a [u8], Error> {
    if !coded {
        return Ok(raw);
    }
    huffman::decode(raw, decoded).map_err(|_| Error("bad Huffman code"))?;
    Ok(decoded.as_slice())
}

fn name_of(coded: bool, raw: &[u8]) -> Result<Name, Error> {
    let mut decoded = Vec::new();
    Ok(match text(coded, raw, &mut decoded)? {
        b":status" => Name::Status,
        b"content-type" => Name::ContentType,
        _ => Name::Other,
    })
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
    Ok(ContentType::Other(
        String::from_utf8_lossy(text).into_owned(),
    ))
}

/// An integer with an `n`-bit prefix (§5.1) at `*at`, which moves past it; at most 2^28.
fn int(block: &[u8], at: &mut usize, n: u32) -> Result<usize, Error> {
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
fn string<'a>(block: &'a [u8], at: &mut usize) -> Result<(bool, &'a [u8]), Error> {
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

    fn read(block: &[u8]) -> Result<Head, Error> {
        read_response(block, &dns_message_coded())
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
        let s: String = block.split_whitespace().collect();
        let bytes: Vec<u8> = (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect();
        let head = read(&bytes).unwrap();
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
    fn the_dynamic_table_is_refused_beyond_size_0() {
        // A size update to 0 first is fine; to 4096 is not; an index past the static table
        // (the dynamic table's first entry) is not.
        assert_eq!(read(&[0x20, 0x88]).unwrap().status, Some(200));
        assert!(read(&[0x3f, 0xe1, 0x1f, 0x88]).is_err());
        assert!(read(&[0xbe]).is_err());
        assert!(read(&[0x88, 0x20]).is_err());
        assert_eq!(read(&[]).unwrap().status, None);
        assert!(read(&[0x08, 0x83, 0x64]).is_err());
    }

    #[test]
    fn a_request_prefix_is_a_size_update_then_static_indices_and_plain_literals() {
        // Written without the dynamic table: every field is a literal without indexing or
        // a static index, and its strings are plain.
        let mut block = request_prefix("dns.example:8443", "/dns-query?x=1");
        put_content_length(&mut block, 1234);
        assert_eq!(block[0], 0x20, "a table size update to 0 first");
        let mut at = 1;
        let mut seen = Vec::new();
        while at < block.len() {
            let first = block[at];
            if first & 0x80 != 0 {
                seen.push((int(&block, &mut at, 7).unwrap(), Vec::new()));
            } else {
                assert_eq!(first & 0xf0, 0, "literal without indexing");
                let name = int(&block, &mut at, 4).unwrap();
                let (coded, v) = string(&block, &mut at).unwrap();
                assert!(!coded);
                seen.push((name, v.to_vec()));
            }
        }
        let want: Vec<(usize, Vec<u8>)> = vec![
            (3, vec![]),
            (7, vec![]),
            (4, b"/dns-query?x=1".to_vec()),
            (1, b"dns.example:8443".to_vec()),
            (31, DNS_MESSAGE.into()),
            (19, DNS_MESSAGE.into()),
            (28, b"1234".to_vec()),
        ];
        assert_eq!(seen, want);
        let mut zero = Vec::new();
        put_content_length(&mut zero, 0);
        assert_eq!(zero, [0x0f, 0x0d, 0x01, b'0']);
    }
}
