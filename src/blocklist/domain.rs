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
    /// An IDN written in Unicode: lists must use the punycode (`xn--`) form for now.
    #[error("non-ASCII name (write internationalised names as punycode, xn--…)")]
    NonAscii,
    /// An IP address where a name was expected.
    #[error("an IP address, not a domain name")]
    IpAddress,
}

/// Normalises a list entry: trims, lower-cases, drops one trailing dot, and checks DNS limits.
///
/// Underscores are accepted (service names such as `_dns.resolver.arpa` and real blocklists
/// use them), and so are leading/trailing hyphens in labels, which real names carry too.
pub fn normalize(text: &str) -> Result<String, DomainError> {
    let t = text.trim();
    let t = t.strip_suffix('.').unwrap_or(t);
    if t.is_empty() {
        return Err(DomainError::Empty);
    }
    if !t.is_ascii() {
        return Err(DomainError::NonAscii);
    }
    if t.len() > 253 {
        return Err(DomainError::NameTooLong);
    }
    if t.parse::<std::net::IpAddr>().is_ok() {
        return Err(DomainError::IpAddress);
    }
    let mut out = String::with_capacity(t.len());
    for label in t.split('.') {
        if label.is_empty() {
            return Err(DomainError::EmptyLabel);
        }
        if label.len() > 63 {
            return Err(DomainError::LabelTooLong);
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(DomainError::InvalidChar(c));
        }
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(label);
    }
    out.make_ascii_lowercase();
    Ok(out)
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
        assert_eq!(normalize("bücher.de"), Err(DomainError::NonAscii));
        assert_eq!(normalize("10.0.0.1"), Err(DomainError::IpAddress));
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
