//! The dynamic table of the answers' HPACK decoder (RFC 7541 §2.3.2, §4): the fields a
//! server added with incremental indexing, newest first, for later blocks to refer to by
//! index (62 and up, after the static table's 61).
//!
//! Why. The client asks for no dynamic table (`SETTINGS_HEADER_TABLE_SIZE` 0), and most
//! servers honour that (hyper's h2 does). Some do not: dnsdist 1.7's DNS over HTTPS (h2o)
//! indexes its answers' fields in a table of the protocol's default 4,096 bytes anyway, and
//! a decoder without a table fails the connection at its first answer. So the table is
//! kept, as any HPACK decoder keeps it, bounded by that default whatever a server says:
//! at most [`MAX_SIZE`] bytes of fields by the RFC's count (a field's name and value and 32
//! bytes), so at most 128 entries. Only what the client reads is kept of an entry: a
//! `:status`, a `content-type`, or that it is some other field (and its size).

use std::collections::VecDeque;

use super::hpack::{ContentType, Error};

/// The most bytes of fields the table holds (RFC 7541 §4.1): `SETTINGS_HEADER_TABLE_SIZE`'s
/// initial value, the largest table a server may assume before our settings reach it.
pub const MAX_SIZE: usize = 4096;
/// Bytes an entry counts beyond its name and value (RFC 7541 §4.1).
const ENTRY_OVERHEAD: usize = 32;
/// Entries of the static table (RFC 7541 Appendix A); dynamic indices follow.
pub const STATIC_ENTRIES: usize = 61;

/// The static table's names (RFC 7541 Appendix A), for the size of an entry whose name
/// was given by static index.
const STATIC_NAMES: [&str; STATIC_ENTRIES] = [
    ":authority",
    ":method",
    ":method",
    ":path",
    ":path",
    ":scheme",
    ":scheme",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "accept",
    "access-control-allow-origin",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-range",
    "content-type",
    "cookie",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "link",
    "location",
    "max-forwards",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "refresh",
    "retry-after",
    "server",
    "set-cookie",
    "strict-transport-security",
    "transfer-encoding",
    "user-agent",
    "vary",
    "via",
    "www-authenticate",
];

/// The length of static entry `index`'s name (1 to 61).
pub fn static_name_len(index: usize) -> Option<usize> {
    STATIC_NAMES.get(index.checked_sub(1)?).map(|n| n.len())
}

/// What an entry holds, as far as the client reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// A `:status`.
    Status(u16),
    /// A `content-type`.
    ContentType(ContentType),
    /// Any other field (its value is not kept).
    Other,
}

/// One field of the table.
#[derive(Debug)]
pub struct Entry {
    /// The field.
    pub field: Field,
    /// Its name's length, for an entry that takes this one's name.
    pub name_len: usize,
    /// Its size by the RFC's count.
    size: usize,
}

/// The decoder's dynamic table; see the module documentation.
#[derive(Debug)]
pub struct Table {
    entries: VecDeque<Entry>,
    size: usize,
    max: usize,
}

impl Default for Table {
    fn default() -> Self {
        Self::new(MAX_SIZE)
    }
}

impl Table {
    /// An empty table of at most `max` bytes (above [`MAX_SIZE`], [`MAX_SIZE`]).
    pub fn new(max: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            size: 0,
            max: max.min(MAX_SIZE),
        }
    }

    /// The bytes of fields it holds (RFC 7541 §4.1).
    pub fn size(&self) -> usize {
        self.size
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry at HPACK index `index` (62 is the newest).
    pub fn get(&self, index: usize) -> Option<&Entry> {
        self.entries.get(index.checked_sub(STATIC_ENTRIES + 1)?)
    }

    /// A dynamic table size update (§6.3): the server's new maximum, evicting what no longer
    /// fits. Above [`MAX_SIZE`] is an error (§4.2): we never allow more.
    pub fn resize(&mut self, max: usize) -> Result<(), Error> {
        if max > MAX_SIZE {
            return Err(Error("table size update above 4,096"));
        }
        self.max = max;
        self.evict_to(max);
        Ok(())
    }

    /// Adds a field whose name is `name_len` bytes and value `value_len` bytes (§4.4): the
    /// oldest entries make room; a field larger than the table empties it and is not kept.
    pub fn insert(&mut self, field: Field, name_len: usize, value_len: usize) {
        let size = ENTRY_OVERHEAD
            .saturating_add(name_len)
            .saturating_add(value_len);
        if size > self.max {
            self.entries.clear();
            self.size = 0;
            return;
        }
        self.evict_to(self.max - size);
        self.size += size;
        self.entries.push_front(Entry {
            field,
            name_len,
            size,
        });
    }

    /// Drops the oldest entries until it holds at most `room` bytes.
    fn evict_to(&mut self, room: usize) {
        while self.size > room {
            let Some(old) = self.entries.pop_back() else {
                self.size = 0;
                return;
            };
            self.size -= old.size;
        }
    }
}
