//! Errors of the rules crate.

use thiserror::Error;

/// A value from the input, quoted for a message as `{:?}` quotes it, and
/// cut after [`Quoted::MAX`] characters, then `…(N bytes)` with its whole
/// length: a megabyte string makes a short error line.
#[derive(Clone, Copy, Debug)]
pub struct Quoted<'a>(pub &'a str);

impl Quoted<'_> {
    /// Characters shown of a longer value.
    pub const MAX: usize = 64;
}

impl std::fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.char_indices().nth(Self::MAX) {
            None => write!(f, "{:?}", self.0),
            Some((cut, _)) => write!(f, "{:?}…({} bytes)", &self.0[..cut], self.0.len()),
        }
    }
}

/// `s` quoted for a message (see [`Quoted`]).
pub fn quoted(s: &str) -> Quoted<'_> {
    Quoted(s)
}

/// A field value that does not parse: what was found and what was expected.
/// The caller adds where (file and JSON path).
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("{} is not {expected}", Quoted(value))]
pub struct FieldError {
    pub value: String,
    pub expected: std::borrow::Cow<'static, str>,
}

impl FieldError {
    /// A new error for `value`.
    pub fn new(value: &str, expected: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        FieldError {
            value: value.to_string(),
            expected: expected.into(),
        }
    }
}

/// Why a string is not an IP address or CIDR prefix.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum PrefixError {
    /// Whitespace anywhere, around the value too: Azure rejects it.
    #[error("it has whitespace in it or around it; a prefix is written without spaces")]
    Whitespace,
    /// The part before `/` (or the whole) is not an address.
    #[error("it does not start with an IPv4 or IPv6 address")]
    Address,
    /// The part after `/` is not digits only (`+8`, `8x`, empty).
    #[error("the prefix length after '/' is not a number (digits 0-9 only)")]
    Length,
    /// A length beyond the address family's bits.
    #[error("the prefix length is more than {0}")]
    TooLong(u8),
}

/// Errors resolving a rule against tags and application security groups.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ResolveError {
    /// A tag that is neither special nor in the loaded service tags.
    #[error(
        "network security group {}, rule {}: unknown service tag {} (load the service tags file with --service-tags, or fix the tag name)",
        Quoted(nsg),
        Quoted(rule),
        Quoted(tag)
    )]
    UnknownTag { nsg: String, rule: String, tag: String },
    /// An application security group id that is not among the loaded resources.
    #[error(
        "network security group {}, rule {}: application security group {} is not among the loaded resources",
        Quoted(nsg),
        Quoted(rule),
        Quoted(asg)
    )]
    UnknownAsg { nsg: String, rule: String, asg: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_are_cut_after_64_characters() {
        assert_eq!(quoted("Tcp").to_string(), "\"Tcp\"");
        let exact = "x".repeat(64);
        assert_eq!(quoted(&exact).to_string(), format!("{exact:?}"));
        let long = "é".repeat(1000);
        assert_eq!(quoted(&long).to_string(), format!("{:?}…(2000 bytes)", "é".repeat(64)));
        // Escapes are as `{:?}` writes them.
        assert_eq!(quoted("a\nb").to_string(), "\"a\\nb\"");
        let e = FieldError::new(&"x".repeat(1 << 20), "one of Tcp, Udp");
        assert_eq!(
            e.to_string(),
            format!("{:?}…(1048576 bytes) is not one of Tcp, Udp", "x".repeat(64))
        );
    }
}
