//! HTTP/2 frames (RFC 9113 §4, §6): the nine-byte frame header, the types and flags the
//! client reads and writes, and the settings it sends.

/// Frame types (§6).
pub(super) const DATA: u8 = 0x0;
pub(super) const HEADERS: u8 = 0x1;
pub(super) const RST_STREAM: u8 = 0x3;
pub(super) const SETTINGS: u8 = 0x4;
pub(super) const PUSH_PROMISE: u8 = 0x5;
pub(super) const PING: u8 = 0x6;
pub(super) const GOAWAY: u8 = 0x7;
pub(super) const WINDOW_UPDATE: u8 = 0x8;
pub(super) const CONTINUATION: u8 = 0x9;

/// Flags.
pub(super) const END_STREAM: u8 = 0x1;
pub(super) const ACK: u8 = 0x1;
pub(super) const END_HEADERS: u8 = 0x4;
pub(super) const PADDED: u8 = 0x8;
pub(super) const PRIORITY_FLAG: u8 = 0x20;

/// Settings (§6.5.2).
pub(super) const HEADER_TABLE_SIZE: u16 = 0x1;
pub(super) const ENABLE_PUSH: u16 = 0x2;
pub(super) const MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub(super) const INITIAL_WINDOW_SIZE: u16 = 0x4;
pub(super) const MAX_FRAME_SIZE: u16 = 0x5;

/// Error codes (§7) the client sends or tells apart.
pub(super) const NO_ERROR: u32 = 0x0;
pub(super) const PROTOCOL_ERROR: u32 = 0x1;
pub(super) const FLOW_CONTROL_ERROR: u32 = 0x3;
pub(super) const CANCEL: u32 = 0x8;
pub(super) const REFUSED_STREAM: u32 = 0x7;

/// The connection preface (§3.4).
pub(super) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// A frame header's length.
pub(super) const HEAD_LEN: usize = 9;
/// The largest frame payload before a peer says otherwise, and the least it may say.
pub(super) const DEFAULT_MAX_FRAME: usize = 16_384;
/// `SETTINGS_HEADER_TABLE_SIZE` until the peer sets it (RFC 9113 §6.5.2).
pub(super) const DEFAULT_HEADER_TABLE_SIZE: u32 = 4096;
/// The largest frame payload a peer may allow.
pub(super) const LARGEST_MAX_FRAME: u32 = (1 << 24) - 1;
/// The largest flow-control window and stream ID (31 bits).
pub(super) const MAX_31: u32 = (1 << 31) - 1;

/// A frame's header.
#[derive(Debug, Clone, Copy)]
pub(super) struct Head {
    pub(super) len: usize,
    pub(super) kind: u8,
    pub(super) flags: u8,
    pub(super) stream: u32,
}

/// The frame header at the start of `b`, when all nine bytes are there.
pub(super) fn head(b: &[u8]) -> Option<Head> {
    let [l0, l1, l2, kind, flags, s0, s1, s2, s3] = *b.first_chunk::<HEAD_LEN>()?;
    Some(Head {
        len: usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2),
        kind,
        flags,
        stream: u32::from_be_bytes([s0, s1, s2, s3]) & MAX_31,
    })
}

/// Appends a frame header.
pub(super) fn put_head(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    let [_, l0, l1, l2] = (len as u32).to_be_bytes();
    out.extend_from_slice(&[l0, l1, l2, kind, flags]);
    out.extend_from_slice(&(stream & MAX_31).to_be_bytes());
}

/// Appends a frame whose payload is one 32-bit value (RST_STREAM, WINDOW_UPDATE).
pub(super) fn put_u32_frame(out: &mut Vec<u8>, kind: u8, stream: u32, value: u32) {
    put_head(out, 4, kind, 0, stream);
    out.extend_from_slice(&value.to_be_bytes());
}

/// A frame's payload without its padding (§6.1): `None` when the padding does not fit.
pub(super) fn unpadded(flags: u8, payload: &[u8]) -> Option<&[u8]> {
    if flags & PADDED == 0 {
        return Some(payload);
    }
    let (&pad, rest) = payload.split_first()?;
    rest.len()
        .checked_sub(usize::from(pad))
        .and_then(|n| rest.get(..n))
}

/// The first 32-bit value of a payload.
pub(super) fn u32_at(payload: &[u8], at: usize) -> Option<u32> {
    let b = payload.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes(b.try_into().ok()?))
}
