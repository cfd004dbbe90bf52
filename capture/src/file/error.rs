//! Errors and warnings of the capture file reader.
//!
//! Every message names where in the file the problem is (byte offset and,
//! where one applies, the 1-based packet number or pcapng block number) and
//! what was expected there, in the style of
//! `packet 3 at byte offset 412: record header says caplen 70000 > maximum 65535`.

use std::io;

use thiserror::Error;

/// A hard error of the capture reader.
///
/// Returned by [`CaptureReader::new`](super::CaptureReader::new) when the file
/// header is broken (the file cannot be read at all), by
/// [`CaptureReader::next_packet`](super::CaptureReader::next_packet) for I/O
/// errors of the underlying reader, and, only in
/// [strict mode](super::ReaderOptions::strict), for damage in the middle of a
/// file. In the default (lenient) mode mid-file damage is reported as
/// [`Warning::Stopped`] instead, after all valid packets before it.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The underlying reader failed (not an end of file).
    #[error("I/O error at byte offset {offset}: {source}")]
    Io {
        offset: u64,
        #[source]
        source: io::Error,
    },
    /// The input has no bytes at all.
    #[error("file header at byte offset 0: the input is empty; expected a pcap or pcapng file header")]
    Empty,
    /// The first four bytes are no known magic number.
    #[error(
        "file header at byte offset 0: unknown magic number {magic:#010x}; expected pcap \
         (a1b2c3d4, a1b23c4d or a1b2cd34, either byte order) or pcapng (0a0d0d0a)"
    )]
    UnknownMagic { magic: u32 },
    /// The file header is shorter than its fixed size.
    #[error("file header at byte offset {offset}: truncated: expected {expected} bytes of {what}, the input ends after {got}")]
    TruncatedHeader {
        offset: u64,
        what: &'static str,
        expected: u64,
        got: u64,
    },
    /// A classic pcap header with a major version other than 2.
    #[error(
        "file header at byte offset 4: unsupported pcap version {major}.{minor}; expected major version 2 (as libpcap and Wireshark do)"
    )]
    UnsupportedPcapVersion { major: u16, minor: u16 },
    /// The reserved bits 16..=25 of the classic pcap link-type field are set.
    #[error("file header at byte offset 20: link-type field {raw:#010x} has reserved bits set ({reserved:#010x}); expected them zero")]
    ReservedLinkTypeBits { raw: u32, reserved: u32 },
    /// A pcapng section header block with a version other than 1.0 / 1.2.
    #[error("block {block} at byte offset {offset}: unsupported pcapng section version {major}.{minor}; expected 1.0")]
    UnsupportedPcapngVersion { block: u64, offset: u64, major: u16, minor: u16 },
    /// A pcapng section header block whose byte-order magic is wrong.
    #[error("block {block} at byte offset {offset}: byte-order magic {magic:#010x} is neither 0x1a2b3c4d nor 0x4d3c2b1a")]
    BadByteOrderMagic { block: u64, offset: u64, magic: u32 },
    /// A record whose captured length exceeds the configured maximum.
    #[error("packet {packet} at byte offset {offset}: record header says caplen {caplen} > maximum {max}")]
    CaplenTooLarge { packet: u64, offset: u64, caplen: u64, max: u64 },
    /// A pcapng packet block larger than the configured maximum.
    #[error("packet {packet} (block {block}) at byte offset {offset}: block total length {len} > maximum {max} (max caplen + 64 KiB of options)")]
    BlockTooLarge {
        packet: u64,
        block: u64,
        offset: u64,
        len: u64,
        max: u64,
    },
    /// The input ends inside a record.
    #[error("packet {packet} at byte offset {offset}: truncated record: expected {expected} bytes of {what}, the input ends after {got}")]
    TruncatedRecord {
        packet: u64,
        offset: u64,
        what: &'static str,
        expected: u64,
        got: u64,
    },
    /// A pcapng block whose total length is impossible.
    #[error("{} at byte offset {offset}: block total length {len} is invalid: {why}", BlockLabel(*.block, *.packet))]
    BadBlockLength {
        block: u64,
        /// The packet's number when the block is a packet block.
        packet: Option<u64>,
        offset: u64,
        len: u64,
        why: &'static str,
    },
    /// The trailing copy of a pcapng block length differs from the leading one.
    #[error("{} at byte offset {offset}: trailing block total length {trailer} != leading {len}", BlockLabel(*.block, *.packet))]
    BlockLengthMismatch {
        block: u64,
        /// The packet's number when the block is a packet block.
        packet: Option<u64>,
        offset: u64,
        len: u32,
        trailer: u32,
    },
    /// A pcapng packet block names an interface that has no IDB in its section.
    #[error("packet {packet} (block {block}) at byte offset {offset}: interface id {interface} is not defined; the section has {defined} interface description blocks")]
    UnknownInterface {
        packet: u64,
        block: u64,
        offset: u64,
        interface: u32,
        defined: usize,
    },
    /// A pcapng packet block whose captured length does not fit in the block.
    #[error("packet {packet} (block {block}) at byte offset {offset}: caplen {caplen} does not fit in the block body of {body} bytes")]
    CaplenBeyondBlock {
        packet: u64,
        block: u64,
        offset: u64,
        caplen: u32,
        body: u64,
    },
    /// A pcapng block that is otherwise malformed.
    #[error("{} at byte offset {offset}: {what}", BlockLabel(*.block, *.packet))]
    MalformedBlock {
        block: u64,
        /// The packet's number when the block is a packet block.
        packet: Option<u64>,
        offset: u64,
        what: &'static str,
    },
    /// Too many interface description blocks (memory bound).
    #[error("block {block} at byte offset {offset}: more than {max} interface description blocks in one section")]
    TooManyInterfaces { block: u64, offset: u64, max: usize },
}

impl ReadError {
    /// The byte offset in the input that the error refers to, when known.
    pub fn offset(&self) -> Option<u64> {
        match self {
            ReadError::Empty | ReadError::UnknownMagic { .. } => Some(0),
            ReadError::UnsupportedPcapVersion { .. } => Some(4),
            ReadError::ReservedLinkTypeBits { .. } => Some(20),
            ReadError::Io { offset, .. }
            | ReadError::TruncatedHeader { offset, .. }
            | ReadError::UnsupportedPcapngVersion { offset, .. }
            | ReadError::BadByteOrderMagic { offset, .. }
            | ReadError::CaplenTooLarge { offset, .. }
            | ReadError::BlockTooLarge { offset, .. }
            | ReadError::TruncatedRecord { offset, .. }
            | ReadError::BadBlockLength { offset, .. }
            | ReadError::BlockLengthMismatch { offset, .. }
            | ReadError::UnknownInterface { offset, .. }
            | ReadError::CaplenBeyondBlock { offset, .. }
            | ReadError::MalformedBlock { offset, .. }
            | ReadError::TooManyInterfaces { offset, .. } => Some(*offset),
        }
    }
}

/// A non-fatal finding of the capture reader, returned through
/// [`CaptureReader::warnings`](super::CaptureReader::warnings) (never printed).
///
/// All variants but [`Warning::Stopped`] leave the packet readable and the
/// reader going on; `Stopped` means the file is damaged at that point and the
/// reader returned every valid packet before it and then ended.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Warning {
    /// The file is damaged mid-file; reading stopped there.
    #[error("{error}; stopped reading after {packets_read} valid packets")]
    Stopped { error: ReadError, packets_read: u64 },
    /// A record with more captured bytes than the file's / interface's snaplen.
    #[error("packet {packet} at byte offset {offset}: caplen {caplen} > snaplen {snaplen}; packet kept whole")]
    CaplenExceedsSnaplen {
        packet: u64,
        offset: u64,
        caplen: u32,
        snaplen: u32,
    },
    /// A record with more captured bytes than its original length.
    #[error("packet {packet} at byte offset {offset}: caplen {caplen} > original length {orig_len}")]
    CaplenExceedsOrigLen {
        packet: u64,
        offset: u64,
        caplen: u32,
        orig_len: u32,
    },
    /// A classic pcap record whose sub-second field is out of range; the
    /// timestamp is computed by carrying into the seconds.
    #[error("packet {packet} at byte offset {offset}: timestamp fraction {value} >= {limit}; carried into the seconds")]
    SubsecondOutOfRange { packet: u64, offset: u64, value: u32, limit: u32 },
    /// A classic pcap header with version 2.x other than 2.4 (read as 2.4,
    /// as Wireshark does).
    #[error("file header at byte offset 4: pcap version {major}.{minor} is not 2.4; read as 2.4")]
    UnusualVersion { major: u16, minor: u16 },
    /// A pcapng timestamp that does not fit in i64 nanoseconds (saturated).
    #[error("packet {packet} at byte offset {offset}: timestamp out of the i64 nanosecond range; saturated")]
    TimestampOverflow { packet: u64, offset: u64 },
    /// A pcapng interface description block with a malformed option.
    #[error("block {block} at byte offset {offset}: {what}; option ignored")]
    BadOption { block: u64, offset: u64, what: &'static str },
    /// The first simple packet block of the file (pcapng §4.4: no
    /// timestamp); the later ones are not warned about again.
    #[error(
        "packet {packet} at byte offset {offset}: simple packet block, which carries no timestamp; timed as the packet before it \
         (1970-01-01 when there is none), as are the simple packet blocks after it"
    )]
    NoTimestamp { packet: u64, offset: u64 },
}

impl Warning {
    /// Whether reading stopped at this warning.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Warning::Stopped { .. })
    }

    /// The byte offset in the input that the warning refers to.
    pub fn offset(&self) -> Option<u64> {
        match self {
            Warning::Stopped { error, .. } => error.offset(),
            Warning::UnusualVersion { .. } => Some(4),
            Warning::CaplenExceedsSnaplen { offset, .. }
            | Warning::CaplenExceedsOrigLen { offset, .. }
            | Warning::SubsecondOutOfRange { offset, .. }
            | Warning::TimestampOverflow { offset, .. }
            | Warning::BadOption { offset, .. }
            | Warning::NoTimestamp { offset, .. } => Some(*offset),
        }
    }
}

/// "packet P (block B)" for a packet block, else "block B": how errors
/// name a pcapng block.
struct BlockLabel(u64, Option<u64>);

impl std::fmt::Display for BlockLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.1 {
            Some(packet) => write!(f, "packet {packet} (block {})", self.0),
            None => write!(f, "block {}", self.0),
        }
    }
}
