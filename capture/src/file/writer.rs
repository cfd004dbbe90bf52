//! Capture file writers: classic pcap and pcapng, readable by tcpdump,
//! Wireshark and [`super::CaptureReader`].
//!
//! Each record is written with one `write_all` of a buffer assembled in
//! memory, so a writer over a file never leaves a half record behind a
//! successful call; `flush` makes the file complete for readers.

use std::io::{self, Write};

use super::LinkType;

/// Classic pcap (draft-ietf-opsawg-pcap §4), little-endian, microsecond or
/// nanosecond timestamps.
pub struct PcapWriter<W: Write> {
    out: W,
    nanos: bool,
    snaplen: u32,
    record: Vec<u8>,
    bytes_written: u64,
}

/// Size of the pcap file header.
pub const PCAP_FILE_HEADER_LEN: u64 = 24;
/// Size of a pcap record header.
pub const PCAP_RECORD_HEADER_LEN: u64 = 16;

impl<W: Write> PcapWriter<W> {
    /// Writes the file header (§4: magic, version 2.4, snaplen, link type).
    pub fn new(mut out: W, link_type: LinkType, snaplen: u32, nanos: bool) -> io::Result<Self> {
        let magic: u32 = if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&magic.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&0i32.to_le_bytes()); // thiszone
        h.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
        h.extend_from_slice(&snaplen.to_le_bytes());
        h.extend_from_slice(&(link_type.0 as u32).to_le_bytes());
        out.write_all(&h)?;
        Ok(PcapWriter {
            out,
            nanos,
            snaplen,
            record: Vec::with_capacity(2048),
            bytes_written: PCAP_FILE_HEADER_LEN,
        })
    }

    /// Bytes a record of `caplen` captured bytes takes in the file.
    pub fn record_len(caplen: usize) -> u64 {
        PCAP_RECORD_HEADER_LEN + caplen as u64
    }

    /// Writes one packet; `data` longer than the snaplen is truncated, and
    /// `orig_len` is the length on the wire.
    pub fn write_packet(&mut self, ts_ns: i64, orig_len: u32, data: &[u8]) -> io::Result<()> {
        let cap = data.len().min(self.snaplen as usize);
        let secs = ts_ns.div_euclid(1_000_000_000);
        let frac = ts_ns.rem_euclid(1_000_000_000);
        let frac = if self.nanos { frac } else { frac / 1000 };
        self.record.clear();
        self.record.extend_from_slice(&(secs as u32).to_le_bytes());
        self.record.extend_from_slice(&(frac as u32).to_le_bytes());
        self.record.extend_from_slice(&(cap as u32).to_le_bytes());
        self.record.extend_from_slice(&orig_len.max(cap as u32).to_le_bytes());
        self.record.extend_from_slice(&data[..cap]);
        self.out.write_all(&self.record)?;
        self.bytes_written += self.record.len() as u64;
        Ok(())
    }

    /// Bytes written so far, file header included.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// Flushes buffered output.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// The underlying writer.
    pub fn into_inner(self) -> W {
        self.out
    }
}

/// pcapng (draft-ietf-opsawg-pcapng): one section, one interface with
/// nanosecond resolution (`if_tsresol` = 9), Enhanced Packet Blocks.
pub struct PcapngWriter<W: Write> {
    out: W,
    snaplen: u32,
    block: Vec<u8>,
    bytes_written: u64,
}

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

/// An interface name as the `if_name` option carries it (at most 255 bytes).
fn if_name_bytes(name: Option<&str>) -> &[u8] {
    let b = name.unwrap_or("").as_bytes();
    &b[..b.len().min(255)]
}

impl<W: Write> PcapngWriter<W> {
    /// Writes the Section Header Block (§4.1) and one Interface Description
    /// Block (§4.2).
    pub fn new(mut out: W, link_type: LinkType, snaplen: u32, if_name: Option<&str>) -> io::Result<Self> {
        let mut b = Vec::new();
        // SHB: type, length, byte-order magic, version 1.0, section length -1.
        b.extend_from_slice(&0x0A0D_0D0Au32.to_le_bytes());
        b.extend_from_slice(&28u32.to_le_bytes());
        b.extend_from_slice(&0x1A2B_3C4Du32.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&(-1i64).to_le_bytes());
        b.extend_from_slice(&28u32.to_le_bytes());
        // IDB with if_name (2) and if_tsresol (9) options.
        let mut opts = Vec::new();
        let name = if_name_bytes(if_name);
        if !name.is_empty() {
            opts.extend_from_slice(&2u16.to_le_bytes());
            opts.extend_from_slice(&(name.len() as u16).to_le_bytes());
            opts.extend_from_slice(name);
            opts.extend(std::iter::repeat_n(0u8, pad4(name.len())));
        }
        opts.extend_from_slice(&9u16.to_le_bytes());
        opts.extend_from_slice(&1u16.to_le_bytes());
        opts.extend_from_slice(&[9, 0, 0, 0]);
        opts.extend_from_slice(&[0, 0, 0, 0]); // opt_endofopt
        let idb_len = 20 + opts.len() as u32;
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&idb_len.to_le_bytes());
        b.extend_from_slice(&link_type.0.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&snaplen.to_le_bytes());
        b.extend_from_slice(&opts);
        b.extend_from_slice(&idb_len.to_le_bytes());
        out.write_all(&b)?;
        Ok(PcapngWriter {
            out,
            snaplen,
            block: Vec::with_capacity(2048),
            bytes_written: b.len() as u64,
        })
    }

    /// Bytes the Section Header and Interface Description Blocks take.
    pub fn header_len(if_name: Option<&str>) -> u64 {
        let name = if_name_bytes(if_name).len();
        let name_opt = if name == 0 { 0 } else { 4 + name + pad4(name) };
        // SHB 28; IDB 20 + if_name + if_tsresol (8) + opt_endofopt (4).
        (28 + 20 + name_opt + 8 + 4) as u64
    }

    /// Bytes an Enhanced Packet Block of `caplen` bytes takes.
    pub fn record_len(caplen: usize) -> u64 {
        32 + (caplen + pad4(caplen)) as u64
    }

    /// Writes one Enhanced Packet Block (§4.3) on interface 0.
    pub fn write_packet(&mut self, ts_ns: i64, orig_len: u32, data: &[u8]) -> io::Result<()> {
        let cap = data.len().min(self.snaplen as usize);
        let len = Self::record_len(cap) as u32;
        let ts = ts_ns.max(0) as u64;
        self.block.clear();
        self.block.extend_from_slice(&6u32.to_le_bytes());
        self.block.extend_from_slice(&len.to_le_bytes());
        self.block.extend_from_slice(&0u32.to_le_bytes());
        self.block.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        self.block.extend_from_slice(&(ts as u32).to_le_bytes());
        self.block.extend_from_slice(&(cap as u32).to_le_bytes());
        self.block.extend_from_slice(&orig_len.max(cap as u32).to_le_bytes());
        self.block.extend_from_slice(&data[..cap]);
        self.block.extend(std::iter::repeat_n(0u8, pad4(cap)));
        self.block.extend_from_slice(&len.to_le_bytes());
        self.out.write_all(&self.block)?;
        self.bytes_written += u64::from(len);
        Ok(())
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// Flushes buffered output.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// The underlying writer.
    pub fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::CaptureReader;

    #[test]
    fn pcap_round_trip() {
        let mut w = PcapWriter::new(Vec::new(), LinkType::ETHERNET, 65535, true).unwrap();
        w.write_packet(1_700_000_000_123_456_789, 60, &[0xab; 60]).unwrap();
        w.write_packet(1_700_000_001_000_000_001, 1514, &[0xcd; 100]).unwrap();
        assert_eq!(w.bytes_written(), 24 + 16 + 60 + 16 + 100);
        let buf = w.into_inner();
        let mut r = CaptureReader::new(&buf[..]).unwrap();
        let p = r.next_packet().unwrap().unwrap();
        assert_eq!((p.timestamp_ns, p.caplen, p.orig_len), (1_700_000_000_123_456_789, 60, 60));
        let p = r.next_packet().unwrap().unwrap();
        assert_eq!((p.caplen, p.orig_len, p.data[0]), (100, 1514, 0xcd));
        assert!(r.next_packet().is_none());
    }

    #[test]
    fn pcapng_round_trip_and_snaplen() {
        let mut w = PcapngWriter::new(Vec::new(), LinkType::ETHERNET, 64, Some("lo")).unwrap();
        w.write_packet(1_700_000_000_123_456_789, 99, &[7; 99]).unwrap();
        let n = w.bytes_written();
        let buf = w.into_inner();
        assert_eq!(n as usize, buf.len());
        let mut r = CaptureReader::new(&buf[..]).unwrap();
        let p = r.next_packet().unwrap().unwrap();
        assert_eq!((p.timestamp_ns, p.caplen, p.orig_len), (1_700_000_000_123_456_789, 64, 99));
        assert!(r.next_packet().is_none());
        assert!(r.warnings().is_empty(), "{:?}", r.warnings());
    }
}
