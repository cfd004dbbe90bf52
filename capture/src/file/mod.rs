//! Streaming reader for capture files: classic pcap and pcapng.
//!
//! Formats (the format is detected from the magic number, never from the
//! file name):
//!
//! * classic pcap, as specified in draft-ietf-opsawg-pcap (the libpcap file
//!   format): microsecond magic `a1b2c3d4`, nanosecond magic `a1b23c4d`, both
//!   byte orders, and Alexey Kuznetzov's "modified" pcap (magic `a1b2cd34`)
//!   whose record header carries 8 more bytes (ifindex, protocol, pkt_type).
//! * pcapng, as specified in draft-ietf-opsawg-pcapng: any number of sections,
//!   each with its own byte order (§4.1 Section Header Block); Interface
//!   Description Blocks (§4.2) with link type, snaplen, `if_tsresol` (decimal
//!   and power-of-two forms) and `if_tsoffset`; Enhanced Packet Blocks (§4.3),
//!   Simple Packet Blocks (§4.4, using the snaplen of interface 0) and the
//!   obsolete Packet Block (Appendix A). All other blocks (Name Resolution,
//!   Interface Statistics, Decryption Secrets, custom and unknown blocks) are
//!   skipped by their length without being buffered.
//!
//! The reader streams from any [`io::Read`] (a file or stdin) through one
//! reusable buffer: [`CaptureReader::next_packet`] lends a [`PacketRef`] into
//! that buffer and allocates nothing per packet once the buffer has grown to
//! the largest record. Memory is bounded by [`ReaderOptions::max_caplen`].
//!
//! Damage after the file header ends the packet stream: every valid packet
//! before the damage is returned, and a [`Warning::Stopped`] naming the packet
//! number and byte offset is recorded (see [`CaptureReader::warnings`]).

mod error;
mod writer;

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

pub use error::{ReadError, Warning};
pub use writer::{PcapWriter, PcapngWriter, PCAP_FILE_HEADER_LEN, PCAP_RECORD_HEADER_LEN};

/// A link-layer header type (`LINKTYPE_*` value of tcpdump.org's registry).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkType(pub u16);

impl LinkType {
    /// BSD loopback: 4-byte address family in the writer's byte order.
    pub const NULL: LinkType = LinkType(0);
    /// IEEE 802.3 Ethernet (and Ethernet II).
    pub const ETHERNET: LinkType = LinkType(1);
    /// Raw IP on some platforms (`DLT_RAW` value 12 on most BSDs / Linux).
    pub const RAW_12: LinkType = LinkType(12);
    /// Raw IP on BSD/OS (`DLT_RAW` value 14).
    pub const RAW_14: LinkType = LinkType(14);
    /// Raw IPv4 or IPv6, version from the first nibble.
    pub const RAW: LinkType = LinkType(101);
    /// OpenBSD loopback: 4-byte address family in network byte order.
    pub const LOOP: LinkType = LinkType(108);
    /// Linux "cooked" capture v1.
    pub const LINUX_SLL: LinkType = LinkType(113);
    /// Raw IPv4 only.
    pub const IPV4: LinkType = LinkType(228);
    /// Raw IPv6 only.
    pub const IPV6: LinkType = LinkType(229);
    /// Linux "cooked" capture v2.
    pub const LINUX_SLL2: LinkType = LinkType(276);
}

/// The container format of a capture file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    /// Classic libpcap format.
    Pcap {
        /// Nanosecond timestamps (magic `a1b23c4d`).
        nanos: bool,
        /// Big-endian header and records.
        big_endian: bool,
        /// Kuznetzov's modified format (magic `a1b2cd34`, 24-byte records).
        modified: bool,
        /// Version from the file header.
        version: (u16, u16),
    },
    /// pcapng.
    Pcapng,
}

/// One capture interface: the single implicit interface of a classic pcap
/// file, or one Interface Description Block of a pcapng file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceInfo {
    /// Link type of all packets on the interface.
    pub link_type: LinkType,
    /// Maximum captured length (0 = unlimited).
    pub snaplen: u32,
    /// Raw `if_tsresol` byte: bit 7 clear = 10^-n s units, set = 2^-n s.
    pub tsresol: u8,
    /// `if_tsoffset`: seconds added to every timestamp.
    pub ts_offset_s: i64,
    /// Number of FCS bytes at the end of each frame, when known
    /// (`if_fcslen`, or the FCS bits of a classic pcap link-type field).
    pub fcs_len: Option<u8>,
    /// 0-based index of the pcapng section the interface belongs to.
    pub section: u32,
}

/// A packet lent by [`CaptureReader::next_packet`]; `data` borrows the
/// reader's buffer until the next call.
#[derive(Clone, Copy, Debug)]
pub struct PacketRef<'a> {
    /// 1-based packet number: the count of packet records (tcpdump's
    /// numbering; tshark's `frame.number` is the same except that tshark
    /// also numbers some non-packet pcapng blocks, such as custom blocks,
    /// as frames).
    pub number: u64,
    /// Byte offset of the record (pcap record header / pcapng block) in the input.
    pub offset: u64,
    /// Nanoseconds since the Unix epoch. For pcapng Simple Packet Blocks,
    /// which carry no time, this is the previous packet's timestamp (or 0).
    pub timestamp_ns: i64,
    /// False for Simple Packet Blocks, which carry no timestamp.
    pub timestamp_known: bool,
    /// Captured length (`data.len()`).
    pub caplen: u32,
    /// Length of the packet on the wire.
    pub orig_len: u32,
    /// Link type of `data`.
    pub link_type: LinkType,
    /// The interface's number in the whole file, counted across pcapng
    /// sections (the index into [`CaptureReader::interfaces`] unless earlier
    /// sections' interfaces were forgotten; see
    /// [`ReaderOptions::max_interfaces`]).
    pub interface_id: u32,
    /// The captured bytes.
    pub data: &'a [u8],
}

/// Options of a [`CaptureReader`].
#[derive(Clone, Debug)]
pub struct ReaderOptions {
    /// Largest captured length accepted for one record; larger ones stop the
    /// reader ([`ReadError::CaplenTooLarge`]). Clamped to
    /// [`ReaderOptions::HARD_MAX_CAPLEN`]. Default 262 144, the limit of
    /// libpcap (`MAXIMUM_SNAPLEN`) and Wireshark.
    pub max_caplen: u32,
    /// Return mid-file damage as an `Err` from `next_packet` instead of a
    /// [`Warning::Stopped`].
    pub strict: bool,
    /// Keep at most this many warnings (the rest are only counted; a
    /// [`Warning::Stopped`] is always kept).
    pub max_warnings: usize,
    /// Accept at most this many pcapng interfaces in a section (memory
    /// stays bounded over any number of sections: the interfaces of earlier
    /// sections are forgotten once this many are kept).
    pub max_interfaces: usize,
}

impl ReaderOptions {
    /// Absolute ceiling of [`ReaderOptions::max_caplen`]: 256 MiB.
    pub const HARD_MAX_CAPLEN: u32 = 256 * 1024 * 1024;
}

impl Default for ReaderOptions {
    fn default() -> Self {
        ReaderOptions {
            max_caplen: 262_144,
            strict: false,
            max_warnings: 1024,
            max_interfaces: 4096,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endian {
    Little,
    Big,
}

impl Endian {
    /// Reads a u16 at `at`; 0 if out of range (callers check lengths first).
    fn u16(self, b: &[u8], at: usize) -> u16 {
        match b.get(at..at.saturating_add(2)) {
            Some(&[x, y]) => match self {
                Endian::Little => u16::from_le_bytes([x, y]),
                Endian::Big => u16::from_be_bytes([x, y]),
            },
            _ => 0,
        }
    }

    /// Reads a u32 at `at`; 0 if out of range (callers check lengths first).
    fn u32(self, b: &[u8], at: usize) -> u32 {
        match b.get(at..at.saturating_add(4)) {
            Some(&[a, b2, c, d]) => match self {
                Endian::Little => u32::from_le_bytes([a, b2, c, d]),
                Endian::Big => u32::from_be_bytes([a, b2, c, d]),
            },
            _ => 0,
        }
    }

    fn u64(self, b: &[u8], at: usize) -> u64 {
        let hi_lo = (u64::from(self.u32(b, at)), u64::from(self.u32(b, at + 4)));
        match self {
            Endian::Little => hi_lo.0 | (hi_lo.1 << 32),
            Endian::Big => (hi_lo.0 << 32) | hi_lo.1,
        }
    }
}

const PCAPNG_SHB: u32 = 0x0A0D_0D0A;
const PCAPNG_IDB: u32 = 1;
const PCAPNG_PB: u32 = 2;
const PCAPNG_SPB: u32 = 3;
const PCAPNG_EPB: u32 = 6;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
/// Room for options in a buffered pcapng packet block beyond `max_caplen`.
const OPTION_SLACK: u64 = 64 * 1024;

/// Input buffer size. 128 KiB measured fastest on a page-cached 228 MB pcap
/// (benches/compare.sh, reading on its own thread): 64 KiB the same, 256 KiB
/// and 1 MiB 1.6x slower (the buffer no longer stays in the core's L2 cache
/// between the kernel's copy and the parse). Reading through a memory map
/// (8 MiB windows) measured 10% slower than this buffer, in wall and CPU
/// time: the page-table work per 4 KiB page costs more than the copy.
const READ_BUFFER: usize = 128 * 1024;

/// Where the current record's bytes are in the buffer, and its metadata.
struct Record {
    offset: u64,
    start: usize,
    caplen: u32,
    orig_len: u32,
    timestamp_ns: i64,
    timestamp_known: bool,
    interface: usize,
    /// The bytes are at `start` in the input buffer (not copied to `buf`);
    /// they are consumed when the next record is read.
    in_src: bool,
}

/// Per-file constants of the classic pcap record fast path
/// ([`CaptureReader::next_packet`]): a record whose header and data are in
/// the input buffer and that needs no check beyond these is returned in
/// place without going through [`CaptureReader::next_pcap_record`].
#[derive(Clone, Copy, Debug)]
struct PcapFast {
    big_endian: bool,
    /// Largest captured length that is neither an error nor a warning:
    /// `min(max_caplen, snaplen)` (snaplen 0 = unlimited).
    caplen_limit: u32,
    /// Sub-second field bound (1e6 or 1e9) and its multiplier to nanoseconds.
    frac_limit: u32,
    frac_mult: i64,
    link_type: LinkType,
}

impl PcapFast {
    /// The record at the front of `avail` (timestamp seconds and fraction,
    /// captured and original length) when the fast path takes it: header
    /// and data in `avail`, and no error or warning to record.
    #[inline(always)]
    fn record(&self, avail: &[u8]) -> Option<(u32, u32, u32, u32)> {
        let h = avail.first_chunk::<PCAP_RECORD_HEADER>()?;
        let field = |i: usize| {
            let b = [h[i], h[i + 1], h[i + 2], h[i + 3]];
            if self.big_endian {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        let (ts_sec, ts_frac, caplen, orig_len) = (field(0), field(4), field(8), field(12));
        let fits = avail.len() - PCAP_RECORD_HEADER >= caplen as usize;
        (fits && caplen <= self.caplen_limit && caplen <= orig_len && ts_frac < self.frac_limit)
            .then_some((ts_sec, ts_frac, caplen, orig_len))
    }
}

/// Record header length of classic (unmodified) pcap.
const PCAP_RECORD_HEADER: usize = 16;

/// A streaming pcap / pcapng reader. See the [module docs](self).
pub struct CaptureReader<R: Read> {
    src: BufReader<R>,
    buf: Vec<u8>,
    /// Bytes at the front of `src`'s buffer that belong to the packet last
    /// returned (borrowed in place) and are consumed before the next read.
    pending: usize,
    /// Classic pcap (not the modified format): the record fast path.
    pcap_fast: Option<PcapFast>,
    opts: ReaderOptions,
    format: FileFormat,
    endian: Endian,
    /// Bytes consumed from the input.
    offset: u64,
    /// Packets returned so far.
    packets: u64,
    /// pcapng blocks seen so far (1-based number of the current block).
    blocks: u64,
    interfaces: Vec<InterfaceInfo>,
    /// Interfaces of earlier sections no longer kept in `interfaces` (the
    /// file-wide number of `interfaces[0]`).
    interfaces_dropped: usize,
    /// Index in `interfaces` of the current pcapng section's interface 0.
    section_base: usize,
    section: u32,
    last_ts: i64,
    warnings: Vec<Warning>,
    warnings_dropped: u64,
    /// A packet without a timestamp (simple packet block) was read.
    untimed_seen: bool,
    done: bool,
}

impl CaptureReader<File> {
    /// Opens a capture file with default options.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ReadError> {
        let file = File::open(path).map_err(|source| ReadError::Io { offset: 0, source })?;
        CaptureReader::new(file)
    }
}

impl<R: Read> CaptureReader<R> {
    /// Reads and checks the file header with default options.
    pub fn new(src: R) -> Result<Self, ReadError> {
        Self::with_options(src, ReaderOptions::default())
    }

    /// Reads and checks the file header (the pcap file header, or the first
    /// pcapng Section Header Block). A broken header is a hard error.
    pub fn with_options(src: R, mut opts: ReaderOptions) -> Result<Self, ReadError> {
        opts.max_caplen = opts.max_caplen.min(ReaderOptions::HARD_MAX_CAPLEN);
        let mut r = CaptureReader {
            src: BufReader::with_capacity(READ_BUFFER, src),
            buf: Vec::new(),
            pending: 0,
            pcap_fast: None,
            opts,
            format: FileFormat::Pcapng,
            endian: Endian::Little,
            offset: 0,
            packets: 0,
            blocks: 0,
            interfaces: Vec::new(),
            interfaces_dropped: 0,
            section_base: 0,
            section: 0,
            last_ts: 0,
            warnings: Vec::new(),
            warnings_dropped: 0,
            untimed_seen: false,
            done: false,
        };
        let mut magic = [0u8; 4];
        let got = r.read_up_to(&mut magic)?;
        if got == 0 {
            return Err(ReadError::Empty);
        }
        if got < 4 {
            return Err(ReadError::TruncatedHeader {
                offset: 0,
                what: "magic number",
                expected: 4,
                got: got as u64,
            });
        }
        let le = u32::from_le_bytes(magic);
        let be = u32::from_be_bytes(magic);
        if le == PCAPNG_SHB {
            r.blocks = 1;
            r.read_section_header(magic, 0)?;
            return Ok(r);
        }
        let (endian, magic_val) = match (le, be) {
            (0xA1B2_C3D4 | 0xA1B2_3C4D | 0xA1B2_CD34, _) => (Endian::Little, le),
            (_, 0xA1B2_C3D4 | 0xA1B2_3C4D | 0xA1B2_CD34) => (Endian::Big, be),
            _ => return Err(ReadError::UnknownMagic { magic: be }),
        };
        r.read_pcap_header(endian, magic_val)?;
        Ok(r)
    }

    /// The container format.
    pub fn format(&self) -> FileFormat {
        self.format
    }

    /// The interfaces seen so far (for classic pcap exactly one); after
    /// more than [`ReaderOptions::max_interfaces`] in several pcapng
    /// sections, those of the current section and the ones after the last
    /// forgetting.
    pub fn interfaces(&self) -> &[InterfaceInfo] {
        &self.interfaces
    }

    /// Warnings recorded so far (at most [`ReaderOptions::max_warnings`]).
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// Removes and returns the recorded warnings.
    pub fn take_warnings(&mut self) -> Vec<Warning> {
        std::mem::take(&mut self.warnings)
    }

    /// Warnings not kept because of [`ReaderOptions::max_warnings`].
    pub fn warnings_dropped(&self) -> u64 {
        self.warnings_dropped
    }

    /// Packets returned so far.
    pub fn packets_read(&self) -> u64 {
        self.packets
    }

    /// Capacity of the reusable record buffer: the reader's only memory
    /// that grows with the input, bounded by about twice
    /// [`ReaderOptions::max_caplen`] + 64 KiB.
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Bytes consumed from the input so far.
    pub fn byte_offset(&self) -> u64 {
        self.offset
    }

    /// Returns the next packet, `None` at the end of the input or after
    /// damage (then [`CaptureReader::warnings`] ends with a
    /// [`Warning::Stopped`]). `Some(Err(_))` is returned for I/O errors and,
    /// in strict mode, for damage; the reader ends after it.
    #[inline(always)]
    pub fn next_packet(&mut self) -> Option<Result<PacketRef<'_>, ReadError>> {
        if self.done {
            return None;
        }
        if self.pending > 0 {
            self.src.consume(self.pending);
            self.pending = 0;
        }
        // Fast path for classic pcap: the whole record (header and data) is
        // in the input buffer and passes every check without a warning; it
        // is then lent in place and consumed on the next call. Anything else
        // (a record across the buffer's end, the end of the input, damage,
        // a warning) takes the general path, which re-reads the record.
        if let Some(f) = self.pcap_fast {
            if let Some((ts_sec, ts_frac, caplen, orig_len)) = f.record(self.src.buffer()) {
                let end = PCAP_RECORD_HEADER + caplen as usize;
                let offset = self.offset;
                self.pending = end;
                self.offset += end as u64;
                self.packets += 1;
                // u32 seconds * 1e9 + fraction < 2^63.
                let timestamp_ns = i64::from(ts_sec) * 1_000_000_000 + i64::from(ts_frac) * f.frac_mult;
                self.last_ts = timestamp_ns;
                let data = self.src.buffer().get(PCAP_RECORD_HEADER..end).unwrap_or(&[]);
                return Some(Ok(PacketRef {
                    number: self.packets,
                    offset,
                    timestamp_ns,
                    timestamp_known: true,
                    caplen: data.len() as u32,
                    orig_len,
                    link_type: f.link_type,
                    interface_id: 0,
                    data,
                }));
            }
        }
        self.next_packet_general()
    }

    /// [`CaptureReader::next_packet`] for every record the fast path does
    /// not take.
    #[inline(never)]
    fn next_packet_general(&mut self) -> Option<Result<PacketRef<'_>, ReadError>> {
        let res = match self.format {
            FileFormat::Pcap { .. } => self.next_pcap_record(),
            FileFormat::Pcapng => self.next_pcapng_record(),
        };
        match res {
            Ok(Some(rec)) => {
                self.packets += 1;
                self.last_ts = rec.timestamp_ns;
                let iface = self.interfaces.get(rec.interface);
                let link_type = iface.map_or(LinkType(u16::MAX), |i| i.link_type);
                let end = rec.start.saturating_add(rec.caplen as usize);
                let data = if rec.in_src {
                    self.src.buffer().get(rec.start..end).unwrap_or(&[])
                } else {
                    self.buf.get(rec.start..end).unwrap_or(&[])
                };
                Some(Ok(PacketRef {
                    number: self.packets,
                    offset: rec.offset,
                    timestamp_ns: rec.timestamp_ns,
                    timestamp_known: rec.timestamp_known,
                    caplen: data.len() as u32,
                    orig_len: rec.orig_len,
                    link_type,
                    interface_id: (self.interfaces_dropped + rec.interface) as u32,
                    data,
                }))
            }
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                if self.opts.strict || matches!(e, ReadError::Io { .. }) {
                    Some(Err(e))
                } else {
                    let packets_read = self.packets;
                    self.push_warning(Warning::Stopped { error: e, packets_read });
                    None
                }
            }
        }
    }

    // ----- low-level input -------------------------------------------------

    fn push_warning(&mut self, w: Warning) {
        // The reader's stop is the warning that matters most: it says data
        // was left unread. It is kept whatever came before it.
        if self.warnings.len() < self.opts.max_warnings || w.is_fatal() {
            self.warnings.push(w);
        } else {
            self.warnings_dropped += 1;
        }
    }

    /// Fills `out` as far as the input allows; returns the bytes read.
    fn read_up_to(&mut self, out: &mut [u8]) -> Result<usize, ReadError> {
        let mut n = 0;
        while n < out.len() {
            match self.src.read(&mut out[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(ReadError::Io {
                        offset: self.offset + n as u64,
                        source,
                    })
                }
            }
        }
        self.offset += n as u64;
        Ok(n)
    }

    /// Replaces the buffer's contents with up to `n` bytes of input; returns
    /// how many were read. Allocates only when `n` exceeds the capacity.
    fn read_into_buf(&mut self, n: usize) -> Result<usize, ReadError> {
        self.buf.clear();
        self.buf.reserve(n);
        let offset = self.offset;
        let got = (&mut self.src)
            .take(n as u64)
            .read_to_end(&mut self.buf)
            .map_err(|source| ReadError::Io { offset, source })?;
        self.offset += got as u64;
        Ok(got)
    }

    /// Discards up to `n` bytes of input without buffering them.
    fn skip(&mut self, n: u64) -> Result<u64, ReadError> {
        let offset = self.offset;
        let got = io::copy(&mut (&mut self.src).take(n), &mut io::sink()).map_err(|source| ReadError::Io { offset, source })?;
        self.offset += got;
        Ok(got)
    }

    // ----- classic pcap ----------------------------------------------------

    /// Parses the 24-byte pcap file header; the magic is already consumed.
    fn read_pcap_header(&mut self, endian: Endian, magic: u32) -> Result<(), ReadError> {
        let mut h = [0u8; 20];
        let got = self.read_up_to(&mut h)?;
        if got < h.len() {
            return Err(ReadError::TruncatedHeader {
                offset: 0,
                what: "pcap file header",
                expected: 24,
                got: 4 + got as u64,
            });
        }
        let major = endian.u16(&h, 0);
        let minor = endian.u16(&h, 2);
        // h[4..12]: thiszone and sigfigs, ignored (always 0 in practice).
        let snaplen = endian.u32(&h, 12);
        let raw_link = endian.u32(&h, 16);
        if major != 2 {
            return Err(ReadError::UnsupportedPcapVersion { major, minor });
        }
        if minor != 4 {
            self.push_warning(Warning::UnusualVersion { major, minor });
        }
        // Link-type field layout (draft-ietf-opsawg-pcap §4): bits 0-15 link
        // type, 16-25 reserved, 26 F (FCS length present), 28-31 FCS length
        // in 16-bit words.
        let reserved = raw_link & 0x03FF_0000;
        if reserved != 0 {
            return Err(ReadError::ReservedLinkTypeBits { raw: raw_link, reserved });
        }
        let fcs_len = if raw_link & 0x0400_0000 != 0 {
            Some(((raw_link >> 28) * 2) as u8)
        } else {
            None
        };
        let nanos = magic == 0xA1B2_3C4D;
        self.format = FileFormat::Pcap {
            nanos,
            big_endian: endian == Endian::Big,
            modified: magic == 0xA1B2_CD34,
            version: (major, minor),
        };
        self.endian = endian;
        if magic != 0xA1B2_CD34 {
            let max = self.opts.max_caplen;
            self.pcap_fast = Some(PcapFast {
                big_endian: endian == Endian::Big,
                caplen_limit: if snaplen == 0 { max } else { max.min(snaplen) },
                frac_limit: if nanos { 1_000_000_000 } else { 1_000_000 },
                frac_mult: if nanos { 1 } else { 1_000 },
                link_type: LinkType(raw_link as u16),
            });
        }
        self.interfaces.push(InterfaceInfo {
            link_type: LinkType(raw_link as u16),
            snaplen,
            tsresol: if nanos { 9 } else { 6 },
            ts_offset_s: 0,
            fcs_len,
            section: 0,
        });
        Ok(())
    }

    fn next_pcap_record(&mut self) -> Result<Option<Record>, ReadError> {
        let FileFormat::Pcap { nanos, modified, .. } = self.format else {
            return Ok(None);
        };
        let offset = self.offset;
        let packet = self.packets + 1;
        let hdr_len = if modified { 24 } else { 16 };
        let mut h = [0u8; 24];
        // Fast path: the whole record is in the input buffer; the packet is
        // then borrowed in place instead of copied.
        let avail = self.src.buffer();
        let in_src = avail.len() >= hdr_len
            && avail.len() - hdr_len >= self.endian.u32(avail, 8) as usize
            && self.endian.u32(avail, 8) <= self.opts.max_caplen;
        let got = if in_src {
            h[..hdr_len].copy_from_slice(&avail[..hdr_len]);
            self.src.consume(hdr_len);
            self.offset += hdr_len as u64;
            hdr_len
        } else {
            self.read_up_to(&mut h[..hdr_len])?
        };
        if got == 0 {
            return Ok(None);
        }
        if got < hdr_len {
            return Err(ReadError::TruncatedRecord {
                packet,
                offset,
                what: "record header",
                expected: hdr_len as u64,
                got: got as u64,
            });
        }
        let e = self.endian;
        let ts_sec = e.u32(&h, 0);
        let ts_frac = e.u32(&h, 4);
        let caplen = e.u32(&h, 8);
        let orig_len = e.u32(&h, 12);
        if caplen > self.opts.max_caplen {
            return Err(ReadError::CaplenTooLarge {
                packet,
                offset,
                caplen: caplen.into(),
                max: self.opts.max_caplen.into(),
            });
        }
        let snaplen = self.interfaces.first().map_or(0, |i| i.snaplen);
        if snaplen != 0 && caplen > snaplen {
            self.push_warning(Warning::CaplenExceedsSnaplen {
                packet,
                offset,
                caplen,
                snaplen,
            });
        }
        if caplen > orig_len {
            self.push_warning(Warning::CaplenExceedsOrigLen {
                packet,
                offset,
                caplen,
                orig_len,
            });
        }
        let (limit, mult) = if nanos { (1_000_000_000, 1) } else { (1_000_000, 1_000) };
        if ts_frac >= limit {
            self.push_warning(Warning::SubsecondOutOfRange {
                packet,
                offset,
                value: ts_frac,
                limit,
            });
        }
        let got = if in_src {
            self.pending = caplen as usize;
            self.offset += u64::from(caplen);
            caplen as usize
        } else {
            self.read_into_buf(caplen as usize)?
        };
        if got < caplen as usize {
            return Err(ReadError::TruncatedRecord {
                packet,
                offset,
                what: "packet data",
                expected: caplen.into(),
                got: got as u64,
            });
        }
        // u32 seconds (unsigned: valid past 2038) * 1e9 + fraction < 2^63.
        let timestamp_ns = i64::from(ts_sec) * 1_000_000_000 + i64::from(ts_frac) * mult;
        Ok(Some(Record {
            offset,
            start: 0,
            caplen,
            orig_len,
            timestamp_ns,
            timestamp_known: true,
            interface: 0,
            in_src,
        }))
    }

    // ----- pcapng ----------------------------------------------------------

    fn max_block(&self) -> u64 {
        u64::from(self.opts.max_caplen) + OPTION_SLACK
    }

    /// Reads a Section Header Block whose first 4 bytes (`head`) are consumed.
    fn read_section_header(&mut self, head: [u8; 4], offset: u64) -> Result<(), ReadError> {
        let _ = head;
        let block = self.blocks;
        let mut h = [0u8; 8];
        let got = self.read_up_to(&mut h)?;
        if got < 8 {
            return Err(ReadError::TruncatedRecord {
                packet: self.packets + 1,
                offset,
                what: "section header block",
                expected: 12,
                got: 4 + got as u64,
            });
        }
        let bom_le = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        let endian = if bom_le == BYTE_ORDER_MAGIC {
            Endian::Little
        } else if bom_le.swap_bytes() == BYTE_ORDER_MAGIC {
            Endian::Big
        } else {
            return Err(ReadError::BadByteOrderMagic {
                block,
                offset,
                magic: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
            });
        };
        let len = endian.u32(&h, 0);
        self.check_block_len(block, None, offset, len, 28)?;
        if u64::from(len) > self.max_block() {
            return Err(ReadError::BadBlockLength {
                packet: None,
                block,
                offset,
                len: len.into(),
                why: "larger than the maximum record size",
            });
        }
        let rest = len as usize - 12;
        let got = self.read_into_buf(rest)?;
        if got < rest {
            return Err(ReadError::TruncatedRecord {
                packet: self.packets + 1,
                offset,
                what: "section header block",
                expected: len.into(),
                got: 12 + got as u64,
            });
        }
        let trailer = endian.u32(&self.buf, rest - 4);
        if trailer != len {
            return Err(ReadError::BlockLengthMismatch {
                packet: None,
                block,
                offset,
                len,
                trailer,
            });
        }
        let major = endian.u16(&self.buf, 0);
        let minor = endian.u16(&self.buf, 2);
        // 1.2 was written by some old tools and is read by Wireshark as 1.0.
        if !(major == 1 && (minor == 0 || minor == 2)) {
            return Err(ReadError::UnsupportedPcapngVersion {
                block,
                offset,
                major,
                minor,
            });
        }
        // Options start after version (4) and section length (8).
        let body_end = rest - 4;
        if let Err(what) = walk_options(endian, self.buf.get(12..body_end).unwrap_or(&[]), |_, _| {}) {
            return Err(ReadError::MalformedBlock {
                block,
                packet: None,
                offset,
                what,
            });
        }
        if self.blocks > 1 {
            self.section += 1;
        }
        self.endian = endian;
        // Packets of a new section cannot refer to earlier sections'
        // interfaces: forget them when they are many (concatenated ring
        // buffer files have a section each).
        if self.interfaces.len() >= self.opts.max_interfaces {
            self.interfaces_dropped += self.interfaces.len();
            self.interfaces.clear();
        }
        self.section_base = self.interfaces.len();
        self.format = FileFormat::Pcapng;
        Ok(())
    }

    fn check_block_len(&self, block: u64, packet: Option<u64>, offset: u64, len: u32, min: u32) -> Result<(), ReadError> {
        if len < min {
            return Err(ReadError::BadBlockLength {
                packet,
                block,
                offset,
                len: len.into(),
                why: "smaller than the block's fixed fields",
            });
        }
        if len % 4 != 0 {
            return Err(ReadError::BadBlockLength {
                packet,
                block,
                offset,
                len: len.into(),
                why: "not a multiple of 4",
            });
        }
        Ok(())
    }

    fn next_pcapng_record(&mut self) -> Result<Option<Record>, ReadError> {
        loop {
            let offset = self.offset;
            let packet = self.packets + 1;
            let mut h = [0u8; 8];
            let got = self.read_up_to(&mut h[..4])?;
            if got == 0 {
                return Ok(None);
            }
            self.blocks += 1;
            let block = self.blocks;
            if got < 4 {
                return Err(ReadError::TruncatedRecord {
                    packet,
                    offset,
                    what: "block header",
                    expected: 8,
                    got: got as u64,
                });
            }
            if u32::from_le_bytes([h[0], h[1], h[2], h[3]]) == PCAPNG_SHB {
                self.read_section_header([h[0], h[1], h[2], h[3]], offset)?;
                continue;
            }
            let got = self.read_up_to(&mut h[4..])?;
            if got < 4 {
                return Err(ReadError::TruncatedRecord {
                    packet,
                    offset,
                    what: "block header",
                    expected: 8,
                    got: 4 + got as u64,
                });
            }
            let e = self.endian;
            let btype = e.u32(&h, 0);
            let len = e.u32(&h, 4);
            let is_packet = matches!(btype, PCAPNG_EPB | PCAPNG_SPB | PCAPNG_PB);
            let packet_block = is_packet.then_some(packet);
            self.check_block_len(block, packet_block, offset, len, 12)?;
            if !(is_packet || btype == PCAPNG_IDB) {
                // Skip NRB, ISB, DSB, custom and unknown blocks unbuffered.
                let body = u64::from(len) - 12;
                let got = self.skip(body)?;
                let mut t = [0u8; 4];
                let got_t = self.read_up_to(&mut t)?;
                if got < body || got_t < 4 {
                    return Err(ReadError::TruncatedRecord {
                        packet,
                        offset,
                        what: "block",
                        expected: len.into(),
                        got: 8 + got + got_t as u64,
                    });
                }
                let trailer = e.u32(&t, 0);
                if trailer != len {
                    return Err(ReadError::BlockLengthMismatch {
                        packet: None,
                        block,
                        offset,
                        len,
                        trailer,
                    });
                }
                continue;
            }
            if u64::from(len) > self.max_block() {
                return Err(ReadError::BlockTooLarge {
                    packet,
                    block,
                    offset,
                    len: len.into(),
                    max: self.max_block(),
                });
            }
            let rest = len as usize - 8;
            let got = self.read_into_buf(rest)?;
            if got < rest {
                return Err(ReadError::TruncatedRecord {
                    packet,
                    offset,
                    what: "block",
                    expected: len.into(),
                    got: 8 + got as u64,
                });
            }
            let trailer = e.u32(&self.buf, rest - 4);
            if trailer != len {
                return Err(ReadError::BlockLengthMismatch {
                    packet: packet_block,
                    block,
                    offset,
                    len,
                    trailer,
                });
            }
            let body_len = rest - 4;
            match btype {
                PCAPNG_IDB => self.parse_idb(block, offset, body_len)?,
                PCAPNG_EPB | PCAPNG_PB => return self.parse_epb(btype, packet, block, offset, body_len).map(Some),
                _ => return self.parse_spb(packet, block, offset, body_len).map(Some),
            }
        }
    }

    fn parse_idb(&mut self, block: u64, offset: u64, body_len: usize) -> Result<(), ReadError> {
        if body_len < 8 {
            return Err(ReadError::MalformedBlock {
                packet: None,
                block,
                offset,
                what: "interface description block shorter than 20 bytes",
            });
        }
        if self.interfaces.len() - self.section_base >= self.opts.max_interfaces {
            return Err(ReadError::TooManyInterfaces {
                block,
                offset,
                max: self.opts.max_interfaces,
            });
        }
        let e = self.endian;
        let body = self.buf.get(..body_len).unwrap_or(&[]);
        let mut info = InterfaceInfo {
            link_type: LinkType(e.u16(body, 0)),
            snaplen: e.u32(body, 4),
            tsresol: 6,
            ts_offset_s: 0,
            fcs_len: None,
            section: self.section,
        };
        let mut bad = None;
        let walked = walk_options(e, body.get(8..).unwrap_or(&[]), |code, val| match code {
            // if_tsresol (§4.2): one byte.
            9 => match val.first() {
                Some(&r) => info.tsresol = r,
                None => bad = Some("if_tsresol option without a value"),
            },
            // if_fcslen: one byte.
            13 => info.fcs_len = val.first().copied(),
            // if_tsoffset: signed 64-bit seconds.
            14 => {
                if val.len() >= 8 {
                    info.ts_offset_s = e.u64(val, 0) as i64;
                } else {
                    bad = Some("if_tsoffset option shorter than 8 bytes");
                }
            }
            _ => {}
        });
        if let Err(what) = walked {
            bad = Some(what);
        }
        if let Some(what) = bad {
            self.push_warning(Warning::BadOption { block, offset, what });
        }
        self.interfaces.push(info);
        Ok(())
    }

    fn interface_index(&self, packet: u64, block: u64, offset: u64, id: u32) -> Result<usize, ReadError> {
        let defined = self.interfaces.len() - self.section_base;
        if (id as usize) < defined {
            Ok(self.section_base + id as usize)
        } else {
            Err(ReadError::UnknownInterface {
                packet,
                block,
                offset,
                interface: id,
                defined,
            })
        }
    }

    /// Enhanced Packet Block (§4.3) or obsolete Packet Block (Appendix A):
    /// both have 20 fixed bytes before the data.
    fn parse_epb(&mut self, btype: u32, packet: u64, block: u64, offset: u64, body_len: usize) -> Result<Record, ReadError> {
        if body_len < 20 {
            return Err(ReadError::MalformedBlock {
                packet: Some(packet),
                block,
                offset,
                what: "packet block shorter than its 20 fixed bytes",
            });
        }
        let e = self.endian;
        let id = if btype == PCAPNG_EPB {
            e.u32(&self.buf, 0)
        } else {
            u32::from(e.u16(&self.buf, 0))
        };
        let ts_units = (u64::from(e.u32(&self.buf, 4)) << 32) | u64::from(e.u32(&self.buf, 8));
        let caplen = e.u32(&self.buf, 12);
        let orig_len = e.u32(&self.buf, 16);
        let interface = self.interface_index(packet, block, offset, id)?;
        if caplen > self.opts.max_caplen {
            return Err(ReadError::CaplenTooLarge {
                packet,
                offset,
                caplen: caplen.into(),
                max: self.opts.max_caplen.into(),
            });
        }
        if caplen as usize > body_len - 20 {
            return Err(ReadError::CaplenBeyondBlock {
                packet,
                block,
                offset,
                caplen,
                body: (body_len - 20) as u64,
            });
        }
        let (snaplen, tsresol, ts_off) = match self.interfaces.get(interface) {
            Some(i) => (i.snaplen, i.tsresol, i.ts_offset_s),
            None => (0, 6, 0),
        };
        if snaplen != 0 && caplen > snaplen {
            self.push_warning(Warning::CaplenExceedsSnaplen {
                packet,
                offset,
                caplen,
                snaplen,
            });
        }
        if caplen > orig_len {
            self.push_warning(Warning::CaplenExceedsOrigLen {
                packet,
                offset,
                caplen,
                orig_len,
            });
        }
        let (timestamp_ns, overflow) = pcapng_ts_to_ns(ts_units, tsresol, ts_off);
        if overflow {
            self.push_warning(Warning::TimestampOverflow { packet, offset });
        }
        Ok(Record {
            offset,
            start: 20,
            caplen,
            orig_len,
            timestamp_ns,
            timestamp_known: true,
            interface,
            in_src: false,
        })
    }

    /// Simple Packet Block (§4.4): interface 0 of the section, no timestamp;
    /// captured length = min(original length, snaplen, bytes in the block).
    fn parse_spb(&mut self, packet: u64, block: u64, offset: u64, body_len: usize) -> Result<Record, ReadError> {
        if body_len < 4 {
            return Err(ReadError::MalformedBlock {
                packet: Some(packet),
                block,
                offset,
                what: "simple packet block shorter than 16 bytes",
            });
        }
        let interface = self.interface_index(packet, block, offset, 0)?;
        let orig_len = self.endian.u32(&self.buf, 0);
        let snaplen = self.interfaces.get(interface).map_or(0, |i| i.snaplen);
        let mut caplen = orig_len.min((body_len - 4) as u32);
        if snaplen != 0 {
            caplen = caplen.min(snaplen);
        }
        if caplen > self.opts.max_caplen {
            return Err(ReadError::CaplenTooLarge {
                packet,
                offset,
                caplen: caplen.into(),
                max: self.opts.max_caplen.into(),
            });
        }
        if !self.untimed_seen {
            self.untimed_seen = true;
            self.push_warning(Warning::NoTimestamp { packet, offset });
        }
        Ok(Record {
            offset,
            start: 4,
            caplen,
            orig_len,
            timestamp_ns: self.last_ts,
            timestamp_known: false,
            interface,
            in_src: false,
        })
    }
}

/// Walks pcapng options (§3.5): 2-byte code, 2-byte length, value padded to
/// 4 bytes, ended by `opt_endofopt` or the end of the block.
fn walk_options(e: Endian, opts: &[u8], mut f: impl FnMut(u16, &[u8])) -> Result<(), &'static str> {
    let mut i = 0usize;
    while i + 4 <= opts.len() {
        let code = e.u16(opts, i);
        let len = e.u16(opts, i + 2) as usize;
        if code == 0 {
            break;
        }
        let start = i + 4;
        let end = start + len;
        let Some(val) = opts.get(start..end) else {
            return Err("option length exceeds the block");
        };
        f(code, val);
        i = start + ((len + 3) & !3);
    }
    Ok(())
}

/// Converts a pcapng timestamp in `if_tsresol` units plus `if_tsoffset`
/// seconds to nanoseconds since the epoch; saturates (and says so) when the
/// result leaves the i64 range.
fn pcapng_ts_to_ns(units: u64, tsresol: u8, offset_s: i64) -> (i64, bool) {
    let units = i128::from(units);
    let ns: i128 = if tsresol & 0x80 == 0 {
        let p = u32::from(tsresol);
        if p <= 9 {
            units * 10i128.pow(9 - p)
        } else if p - 9 <= 38 {
            units / 10i128.pow(p - 9)
        } else {
            0
        }
    } else {
        // 2^-k seconds: units * 1e9 / 2^k (< 2^94 before the shift).
        let k = u32::from(tsresol & 0x7F);
        (units * 1_000_000_000) >> k
    };
    let total = ns + i128::from(offset_s) * 1_000_000_000;
    match i64::try_from(total) {
        Ok(v) => (v, false),
        Err(_) => (if total < 0 { i64::MIN } else { i64::MAX }, true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsresol_forms() {
        assert_eq!(pcapng_ts_to_ns(1_500_000, 6, 0), (1_500_000_000, false));
        assert_eq!(pcapng_ts_to_ns(1_500_000_123, 9, 0), (1_500_000_123, false));
        assert_eq!(pcapng_ts_to_ns(3, 0, 1), (4_000_000_000, false));
        // 2^-10 s units: 1024 units = 1 s.
        assert_eq!(pcapng_ts_to_ns(1024, 0x8A, 0), (1_000_000_000, false));
        assert!(pcapng_ts_to_ns(u64::MAX, 0, 0).1);
        assert_eq!(pcapng_ts_to_ns(5, 200, 0), (0, false));
    }
}
