//! Capture files written by the live capture, through the crate's file
//! writers ([`crate::file::PcapWriter`], microsecond pcap, and
//! [`crate::file::PcapngWriter`]), with the session byte limit and size/time
//! rotation.
//!
//! Every record is written whole or not at all: a limit is checked before the
//! record that would cross it, and the buffered writer is flushed at every
//! rotation and at the end, so a reader never sees a truncated record.
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Output, OutputFormat, Rotation};
use crate::file::{LinkType, PcapWriter, PcapngWriter, PCAP_FILE_HEADER_LEN};

type Out = BufWriter<Box<dyn Write + Send>>;

/// The open file, in its format.
enum FileWriter {
    Pcap(PcapWriter<Out>),
    Pcapng(PcapngWriter<Out>),
}

impl FileWriter {
    fn write_packet(&mut self, ts_ns: i64, orig_len: u32, data: &[u8]) -> io::Result<()> {
        match self {
            FileWriter::Pcap(w) => w.write_packet(ts_ns, orig_len, data),
            FileWriter::Pcapng(w) => w.write_packet(ts_ns, orig_len, data),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            FileWriter::Pcap(w) => w.flush(),
            FileWriter::Pcapng(w) => w.flush(),
        }
    }

    fn into_inner(self) -> Out {
        match self {
            FileWriter::Pcap(w) => w.into_inner(),
            FileWriter::Pcapng(w) => w.into_inner(),
        }
    }
}

fn if_name(ifname: &str) -> Option<&str> {
    (!ifname.is_empty()).then_some(ifname)
}

/// What happened to one packet handed to the sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Written; the number of bytes the record took.
    Record(u64),
    /// Not written: it would take the session past its byte limit.
    SessionFull,
}

/// The name of the `index`-th file of a rotated capture: `FILE`, `FILE.1`, `FILE.2`...
pub fn rotated_path(base: &Path, index: u32) -> PathBuf {
    if index == 0 {
        base.to_path_buf()
    } else {
        let mut s = base.as_os_str().to_os_string();
        s.push(format!(".{index}"));
        PathBuf::from(s)
    }
}

/// Length of the file header for this format and interface name.
pub fn header_len(format: OutputFormat, ifname: &str) -> u64 {
    match format {
        OutputFormat::Pcap => PCAP_FILE_HEADER_LEN,
        OutputFormat::Pcapng => PcapngWriter::<Out>::header_len(if_name(ifname)),
    }
}

/// Record length for `caplen` bytes of data.
pub fn record_len(format: OutputFormat, caplen: u64) -> u64 {
    match format {
        OutputFormat::Pcap => PcapWriter::<Out>::record_len(caplen as usize),
        OutputFormat::Pcapng => PcapngWriter::<Out>::record_len(caplen as usize),
    }
}

/// LINKTYPE_ value for a DLT_ value (they differ for a few).
pub fn dlt_to_linktype(dlt: i32) -> u32 {
    match dlt {
        // DLT_RAW is 12 on most systems (14 on OpenBSD); LINKTYPE_RAW is 101.
        12 | 14 => 101,
        d => d as u32,
    }
}

pub(crate) struct Sink {
    format: OutputFormat,
    output: Output,
    rotation: Rotation,
    total_limit: u64,
    link_type: u32,
    snaplen: u32,
    ifname: String,
    w: Option<FileWriter>,
    file_index: u32,
    file_bytes: u64,
    file_packets: u64,
    file_started: Instant,
    /// Bytes written in the whole session, every file and header included.
    pub session_bytes: u64,
    /// Files opened so far.
    pub files_opened: u64,
    last_flush: Instant,
}

impl Sink {
    pub(crate) fn new(
        format: OutputFormat,
        output: Output,
        rotation: Rotation,
        total_limit: u64,
        link_type: u32,
        snaplen: u32,
        ifname: &str,
    ) -> Self {
        let now = Instant::now();
        Sink {
            format,
            output,
            rotation,
            total_limit,
            link_type,
            snaplen,
            ifname: ifname.to_string(),
            w: None,
            file_index: 0,
            file_bytes: 0,
            file_packets: 0,
            file_started: now,
            session_bytes: 0,
            files_opened: 0,
            last_flush: now,
        }
    }

    /// Opens the first file and writes its header. Errors when even the header
    /// does not fit the session limit.
    pub(crate) fn open_first(&mut self) -> io::Result<()> {
        let h = header_len(self.format, &self.ifname);
        if self.total_limit > 0 && h > self.total_limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the session byte limit {} is smaller than the file header ({h} bytes)",
                    self.total_limit
                ),
            ));
        }
        self.open_file(0)
    }

    fn open_file(&mut self, index: u32) -> io::Result<()> {
        let inner: Box<dyn Write + Send> = match &self.output {
            Output::Stdout => Box::new(io::stdout()),
            Output::File(p) => {
                let path = rotated_path(p, index);
                let f = File::create(&path).map_err(|e| io::Error::new(e.kind(), format!("cannot create {}: {e}", path.display())))?;
                Box::new(f)
            }
        };
        let out = BufWriter::with_capacity(256 * 1024, inner);
        let link = LinkType(self.link_type as u16);
        let w = match self.format {
            OutputFormat::Pcap => FileWriter::Pcap(PcapWriter::new(out, link, self.snaplen, false)?),
            OutputFormat::Pcapng => FileWriter::Pcapng(PcapngWriter::new(out, link, self.snaplen, if_name(&self.ifname))?),
        };
        let header = header_len(self.format, &self.ifname);
        self.w = Some(w);
        self.file_index = index;
        self.file_bytes = header;
        self.file_packets = 0;
        self.file_started = Instant::now();
        self.session_bytes += header;
        self.files_opened += 1;
        Ok(())
    }

    /// Writes one packet (already cut to the bytes to keep); rotates first when
    /// the current file is full or old enough.
    pub(crate) fn write_packet(&mut self, ts_sec: i64, ts_usec: i64, data: &[u8], orig_len: u32) -> io::Result<Written> {
        // The header's snap length bounds every record (the writers cut to it too).
        let mut data = &data[..data.len().min(self.snaplen as usize)];
        // Rotation by time: on the first packet past the interval.
        if let (Some(secs), Output::File(_)) = (self.rotation.seconds, &self.output) {
            if self.file_packets > 0 && self.file_started.elapsed() >= Duration::from_secs(secs) {
                if let Some(w) = self.rotate()? {
                    return Ok(w);
                }
            }
        }
        if let (Some(limit), Output::File(_)) = (self.rotation.bytes, &self.output) {
            let need = record_len(self.format, data.len() as u64);
            if self.file_bytes + need > limit {
                if self.file_packets > 0 {
                    if let Some(w) = self.rotate()? {
                        return Ok(w);
                    }
                }
                // A record larger than a whole file: keep what fits.
                let room = limit.saturating_sub(self.file_bytes + record_len(self.format, 0));
                if (data.len() as u64) > room {
                    let keep = match self.format {
                        OutputFormat::Pcap => room,
                        OutputFormat::Pcapng => room & !3,
                    };
                    data = &data[..keep as usize];
                }
            }
        }
        let rec = record_len(self.format, data.len() as u64);
        if self.total_limit > 0 && self.session_bytes + rec > self.total_limit {
            return Ok(Written::SessionFull);
        }
        let Some(w) = self.w.as_mut() else {
            return Err(io::Error::other("capture file not open"));
        };
        w.write_packet(ts_sec * 1_000_000_000 + ts_usec * 1000, orig_len, data)?;
        self.file_bytes += rec;
        self.session_bytes += rec;
        self.file_packets += 1;
        Ok(Written::Record(rec))
    }

    /// Closes the current file and opens the next one (wrapping at
    /// `max_files`). Some(SessionFull) when the next header would not fit.
    fn rotate(&mut self) -> io::Result<Option<Written>> {
        let h = header_len(self.format, &self.ifname);
        if self.total_limit > 0 && self.session_bytes + h > self.total_limit {
            return Ok(Some(Written::SessionFull));
        }
        self.close()?;
        let mut next = self.file_index + 1;
        if let Some(max) = self.rotation.max_files {
            if max > 0 && next >= max {
                next = 0;
            }
        }
        self.open_file(next)?;
        Ok(None)
    }

    /// Flushes when the last flush is older than `every` (or always for zero).
    pub(crate) fn flush_if_due(&mut self, every: Duration) -> io::Result<()> {
        if self.last_flush.elapsed() >= every {
            self.flush()?;
        }
        Ok(())
    }

    pub(crate) fn flush(&mut self) -> io::Result<()> {
        self.last_flush = Instant::now();
        match self.w.as_mut() {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }

    /// Flushes and closes the current file.
    pub(crate) fn close(&mut self) -> io::Result<()> {
        if let Some(mut w) = self.w.take() {
            w.flush()?;
            let inner = w.into_inner().into_inner().map_err(|e| e.into_error())?;
            drop(inner);
        }
        Ok(())
    }
}
