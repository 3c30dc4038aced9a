//! Domain-name normalisation for list entries: one canonical form (lower case, no trailing dot,
//! ASCII) so that a list entry and a query name compare byte for byte.
//!
//! It does not parse list formats (that is `parse.rs`) and never sees wire-format names.

use thiserror::Error;

/// Why a list entry is not a usable domain name.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DomainError {
    /// Nothing left after trimming.
    #[error("empty name")]
    Empty,
    /// Two dots in a row, or a leading dot.
    #[error("empty label")]
    EmptyLabel,
    /// A label longer than the 63 bytes DNS allows.
    #[error("label longer than 63 bytes")]
    LabelTooLong,
    /// A name longer than the 253 characters DNS allows.
    #[error("name longer than 253 characters")]
    NameTooLong,
    /// A character that no host name contains.
    #[error("invalid character {0:?}")]
    InvalidChar(char),
    /// A Unicode name that is not a valid IDN (no punycode form).
    #[error("non-ASCII name that is not a valid internationalised domain name")]
    NonAscii,
    /// An IP address where a name was expected.
    #[error("an IP address, not a domain name")]
    IpAddress,
}

/// Normalises a list entry: trims, lower-cases, drops one trailing dot, converts an IDN
/// written in Unicode to its punycode (`xn--`) form, and checks DNS limits.
///
/// Underscores are accepted (service names such as `_dns.resolver.arpa` and real blocklists
/// use them), and so are leading/trailing hyphens in labels, which real names carry too.
pub fn normalize(text: &str) -> Result<String, DomainError> {
    let mut out = String::new();
    normalize_into(text, &mut out)?;
    Ok(out)
}

/// [`normalize`] into a reused buffer (cleared first): the list loader's allocation-free path.
pub fn normalize_into(text: &str, out: &mut String) -> Result<(), DomainError> {
    out.clear();
    let t = text.trim();
    let t = t.strip_suffix('.').unwrap_or(t);
    if t.is_empty() {
        return Err(DomainError::Empty);
    }
    if !t.is_ascii() {
        // UTS #46 mapping (case folding, NFC) then punycode, as browsers and resolvers do.
        let ascii = idna::domain_to_ascii(t).map_err(|_| DomainError::NonAscii)?;
        if !ascii.is_ascii() || ascii.is_empty() {
            return Err(DomainError::NonAscii);
        }
        return normalize_into(&ascii, out);
    }
    if t.len() > 253 {
        return Err(DomainError::NameTooLong);
    }
    let b = t.as_bytes();
    if (b[0].is_ascii_digit() || b[0] == b':' || b.contains(&b':'))
        && t.parse::<std::net::IpAddr>().is_ok()
    {
        return Err(DomainError::IpAddress);
    }
    for label in t.split('.') {
        if label.is_empty() {
            return Err(DomainError::EmptyLabel);
        }
        if label.len() > 63 {
            return Err(DomainError::LabelTooLong);
        }
        if let Some(c) = label
            .bytes()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_'))
        {
            return Err(DomainError::InvalidChar(char::from(c)));
        }
    }
    out.push_str(t);
    out.make_ascii_lowercase();
    Ok(())
}

/// True when `name` (normalised) is a public suffix that no list should block or allow as a
/// whole: a suffix of the ICANN section of the Public Suffix List (`com`, `co.uk`).
/// Private-section suffixes (`github.io`) and labels the list does not know (`test`, `lan`)
/// are not refused: lists block some of them on purpose.
pub fn is_public_suffix(name: &str) -> bool {
    psl::suffix(name.as_bytes())
        .is_some_and(|s| s.as_bytes().len() == name.len() && s.typ() == Some(psl::Type::Icann))
}

/// The proper parents of `name`, nearest first: `a.b.c` gives `b.c`, then `c`.
pub fn parents(name: &str) -> impl Iterator<Item = &str> {
    name.match_indices('.').map(move |(i, _)| &name[i + 1..])
}

/// `name` and then its proper parents, as bytes: `a.b.c` gives `a.b.c`, `b.c`, `c`. The
/// walk of every suffix lookup.
pub fn suffixes(name: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::once(name).chain(memchr::memchr_iter(b'.', name).map(move |i| &name[i + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowercases_and_strips_trailing_dot() {
        assert_eq!(normalize("  WWW.Example.COM. ").unwrap(), "www.example.com");
    }

    #[test]
    fn rejects_bad_names() {
        assert_eq!(normalize(""), Err(DomainError::Empty));
        assert_eq!(normalize("."), Err(DomainError::Empty));
        assert_eq!(normalize("ads..net.ar"), Err(DomainError::EmptyLabel));
        assert_eq!(normalize(".hpyrdr.com"), Err(DomainError::EmptyLabel));
        assert_eq!(normalize(&"a".repeat(64)), Err(DomainError::LabelTooLong));
        let long = vec!["abcdefghi"; 26].join(".");
        assert_eq!(normalize(&long), Err(DomainError::NameTooLong));
        assert_eq!(normalize("a b.com"), Err(DomainError::InvalidChar(' ')));
        assert_eq!(normalize("bücher.de").unwrap(), "xn--bcher-kva.de");
        assert_eq!(normalize("BÜCHER.de.").unwrap(), "xn--bcher-kva.de");
        assert_eq!(normalize("10.0.0.1"), Err(DomainError::IpAddress));
    }

    #[test]
    fn parents_nearest_first() {
        assert_eq!(parents("a.b.c").collect::<Vec<_>>(), vec!["b.c", "c"]);
        assert_eq!(parents("com").count(), 0);
        let all: Vec<&[u8]> = suffixes(b"a..b").collect();
        assert_eq!(all, [&b"a..b"[..], b".b", b"b"]);
        assert_eq!(suffixes(b"").count(), 1);
    }

    #[test]
    fn public_suffixes() {
        for n in ["com", "co.uk", "uk", "xn--55qx5d.cn"] {
            assert!(is_public_suffix(n), "{n}");
        }
        for n in [
            "example.com",
            "bbc.co.uk",
            "github.io",
            "x.github.io",
            "test",
            "lan",
        ] {
            assert!(!is_public_suffix(n), "{n}");
        }
    }

    #[test]
    fn accepts_underscores_and_hyphens() {
        assert_eq!(
            normalize("_dns.resolver.arpa").unwrap(),
            "_dns.resolver.arpa"
        );
        assert_eq!(normalize("-container.x.com").unwrap(), "-container.x.com");
        assert_eq!(normalize(&"a".repeat(63)).unwrap().len(), 63);
    }
}
