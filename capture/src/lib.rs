//! netwatch-capture: packet sources and sinks (live interfaces, pcap and pcapng
//! files), decoding of link/network/transport headers to packet metadata,
//! capture filters, sessions and limits.
//!
//! * [`file`]: streaming pcap / pcapng reader ([`CaptureReader`]).
//! * [`decode`]: frame to [`PacketMeta`] (5-tuple, flags, fragments, tunnels).
#![forbid(unsafe_code)]

pub mod decode;
pub mod file;
pub mod filter;
pub mod live;
pub mod synth;

pub use decode::{decode, Attribution, DecodeOptions, FragmentTracker, IpVersion, NotIp, PacketMeta};
pub use file::{CaptureReader, LinkType, PacketRef, ReadError, ReaderOptions, Warning};
