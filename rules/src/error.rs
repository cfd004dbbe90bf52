//! Errors of the rules crate.

use thiserror::Error;

/// A field value that does not parse: what was found and what was expected.
/// The caller adds where (file and JSON path).
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("{value:?} is not {expected}")]
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
    #[error("network security group {nsg:?}, rule {rule:?}: unknown service tag {tag:?} (load the service tags file with --service-tags, or fix the tag name)")]
    UnknownTag { nsg: String, rule: String, tag: String },
    /// An application security group id that is not among the loaded resources.
    #[error("network security group {nsg:?}, rule {rule:?}: application security group {asg:?} is not among the loaded resources")]
    UnknownAsg { nsg: String, rule: String, asg: String },
}
