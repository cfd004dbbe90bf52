//! Flows as the rules see them: the 5-tuple (spec §1.1).

use std::net::IpAddr;

use crate::addr::ip_to_u128;

/// IANA protocol numbers used by NSG protocols.
pub mod ip_protocol {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ESP: u8 = 50;
    pub const AH: u8 = 51;
    pub const ICMPV6: u8 = 58;
}

/// A 5-tuple. Protocols without ports carry port 0, so they match only
/// rules whose port range includes 0 (in practice `*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Flow {
    /// IANA protocol number.
    pub protocol: u8,
    pub source: IpAddr,
    pub source_port: u16,
    pub destination: IpAddr,
    pub destination_port: u16,
}

impl Flow {
    /// The key the classifiers match on.
    #[inline]
    pub fn key(&self) -> FlowKey {
        FlowKey {
            protocol: self.protocol,
            source: ip_to_u128(self.source),
            source_port: self.source_port,
            destination: ip_to_u128(self.destination),
            destination_port: self.destination_port,
        }
    }
}

/// A 5-tuple with addresses in the unified 128-bit space
/// (see [`crate::addr`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    pub protocol: u8,
    pub source: u128,
    pub source_port: u16,
    pub destination: u128,
    pub destination_port: u16,
}
