//! Helpers shared by the unit tests of several modules.

/// Bytes from hex digits, whitespace ignored (as the RFCs print their examples).
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
pub(crate) fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
