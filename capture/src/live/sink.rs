//! Capture files written by the live capture, through the crate's file
//! writers ([`crate::file::PcapWriter`], microsecond pcap, and
//! [`crate::file::PcapngWriter`]), with the session byte limit and size/time
//! rotation.
//!
//! Every record is written whole or not at all: a limit is checked before the
//! record that would cross it, and the buffered writer is flushed at every
//! rotation and at the end, so a reader never sees a truncated record.
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{LiveError, Output, OutputFormat, Rotation};
use crate::file::{LinkType, PcapWriter, PcapngWriter, PCAP_FILE_HEADER_LEN};

type Out = BufWriter<Box<dyn Write + Send>>;

/// The file (or stdout) under the buffer, counting the bytes it accepted:
/// what really reached the output, which the status reports, not what was
/// buffered (a full disk takes none of it).
struct Counted {
    inner: Box<dyn Write + Send>,
    accepted: Arc<AtomicU64>,
}

impl Write for Counted {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.accepted.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

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
    /// Bytes the files (or stdout) accepted; see [`Counted`].
    accepted: Arc<AtomicU64>,
    /// Where the records not yet known to have reached the output end, in
    /// the session's byte stream (the offsets [`Self::session_bytes`] had
    /// after each), oldest first: at most the buffer's worth.
    pending: VecDeque<u64>,
    /// Records that reached the output whole.
    delivered: u64,
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
            accepted: Arc::new(AtomicU64::new(0)),
            pending: VecDeque::new(),
            delivered: 0,
        }
    }

    /// Bytes that reached the output (every file, headers included): less
    /// than [`Self::session_bytes`] while some are buffered or when writing
    /// failed.
    pub(crate) fn bytes_delivered(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Packets whose records reached the output whole (every file): fewer
    /// than were written while some are buffered, or when writing failed
    /// (a record cut by a full disk does not count).
    pub(crate) fn packets_delivered(&mut self) -> u64 {
        self.settle();
        self.delivered
    }

    /// Counts the pending records the output has now accepted to their last
    /// byte. The files' bytes and [`Self::session_bytes`] grow together
    /// (headers, then records in order), so a record is in the output once
    /// the accepted bytes reach its end.
    fn settle(&mut self) {
        let accepted = self.accepted.load(Ordering::Relaxed);
        while self.pending.front().is_some_and(|&end| end <= accepted) {
            self.pending.pop_front();
            self.delivered += 1;
        }
    }

    /// The file being written, for errors.
    fn current(&self) -> String {
        match &self.output {
            Output::Stdout => "stdout".into(),
            Output::File(p) => rotated_path(p, self.file_index).display().to_string(),
        }
    }

    /// A write error, naming the file it happened to.
    fn output_error(&self, source: io::Error) -> LiveError {
        LiveError::Output {
            target: self.current(),
            source,
        }
    }

    /// Opens the first file and writes its header. Errors when even the header
    /// does not fit the session limit.
    pub(crate) fn open_first(&mut self) -> Result<(), LiveError> {
        let h = header_len(self.format, &self.ifname);
        if self.total_limit > 0 && h > self.total_limit {
            return Err(LiveError::Config(format!(
                "the session byte limit {} is smaller than the file header ({h} bytes)",
                self.total_limit
            )));
        }
        self.open_file(0)
    }

    fn open_file(&mut self, index: u32) -> Result<(), LiveError> {
        let inner: Box<dyn Write + Send> = match &self.output {
            Output::Stdout => Box::new(io::stdout()),
            Output::File(p) => {
                let path = rotated_path(p, index);
                let f = File::create(&path).map_err(|source| LiveError::Create { path, source })?;
                Box::new(f)
            }
        };
        let inner: Box<dyn Write + Send> = Box::new(Counted {
            inner,
            accepted: Arc::clone(&self.accepted),
        });
        let out = BufWriter::with_capacity(256 * 1024, inner);
        let link = LinkType(self.link_type as u16);
        self.file_index = index;
        let w = match self.format {
            OutputFormat::Pcap => PcapWriter::new(out, link, self.snaplen, false).map(FileWriter::Pcap),
            OutputFormat::Pcapng => PcapngWriter::new(out, link, self.snaplen, if_name(&self.ifname)).map(FileWriter::Pcapng),
        }
        .map_err(|e| self.output_error(e))?;
        let header = header_len(self.format, &self.ifname);
        self.w = Some(w);
        self.file_bytes = header;
        self.file_packets = 0;
        self.file_started = Instant::now();
        self.session_bytes += header;
        self.files_opened += 1;
        Ok(())
    }

    /// Writes one packet (already cut to the bytes to keep); rotates first when
    /// the current file is full or old enough.
    pub(crate) fn write_packet(&mut self, ts_sec: i64, ts_usec: i64, data: &[u8], orig_len: u32) -> Result<Written, LiveError> {
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
        let written = match self.w.as_mut() {
            Some(w) => w.write_packet(ts_sec * 1_000_000_000 + ts_usec * 1000, orig_len, data),
            None => Err(io::Error::other("capture file not open")),
        };
        written.map_err(|e| self.output_error(e))?;
        self.file_bytes += rec;
        self.session_bytes += rec;
        self.file_packets += 1;
        self.pending.push_back(self.session_bytes);
        self.settle();
        Ok(Written::Record(rec))
    }

    /// Closes the current file and opens the next one (wrapping at
    /// `max_files`). Some(SessionFull) when the next header would not fit.
    fn rotate(&mut self) -> Result<Option<Written>, LiveError> {
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
    pub(crate) fn flush_if_due(&mut self, every: Duration) -> Result<(), LiveError> {
        if self.last_flush.elapsed() >= every {
            self.flush()?;
        }
        Ok(())
    }

    pub(crate) fn flush(&mut self) -> Result<(), LiveError> {
        self.last_flush = Instant::now();
        match self.w.as_mut() {
            Some(w) => w.flush().map_err(|e| self.output_error(e)),
            None => Ok(()),
        }
    }

    /// Flushes and closes the current file.
    pub(crate) fn close(&mut self) -> Result<(), LiveError> {
        if let Some(mut w) = self.w.take() {
            let closed = w
                .flush()
                .and_then(|()| w.into_inner().into_inner().map(drop).map_err(|e| e.into_error()));
            closed.map_err(|e| self.output_error(e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full disk: the error names the file, and no byte counts as
    /// delivered (the header and the record stayed in the buffer).
    #[test]
    fn write_errors_name_the_file_and_count_nothing() {
        let full = Path::new("/dev/full");
        let mut sink = Sink::new(
            OutputFormat::Pcap,
            Output::File(full.to_path_buf()),
            Rotation::default(),
            0,
            1,
            65535,
            "lo",
        );
        sink.open_first().expect("the header is buffered");
        assert_eq!(sink.write_packet(1, 0, &[0u8; 60], 60).expect("buffered"), Written::Record(76));
        assert_eq!(sink.session_bytes, 24 + 76);
        let e = sink.flush().expect_err("/dev/full takes nothing");
        assert!(
            matches!(&e, LiveError::Output { source, .. } if source.raw_os_error() == Some(28)),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "writing the capture to /dev/full failed: No space left on device (os error 28)"
        );
        assert_eq!(sink.bytes_delivered(), 0);
        assert_eq!(sink.packets_delivered(), 0, "the packet never reached the file");
    }

    /// Packets count as delivered once their records reached the file
    /// whole: none while they sit in the buffer, all after a flush.
    #[test]
    fn delivered_packets_are_the_flushed_records() {
        let dir = std::env::temp_dir().join(format!("netwatch-sink-flushed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("one.pcap");
        let snaplen = super::super::MAX_SNAPLEN;
        let mut sink = Sink::new(
            OutputFormat::Pcap,
            Output::File(path.clone()),
            Rotation::default(),
            0,
            1,
            snaplen,
            "lo",
        );
        sink.open_first().expect("open");
        for i in 0..3 {
            sink.write_packet(i, 0, &[0u8; 100], 100).expect("write");
        }
        assert_eq!((sink.packets_delivered(), sink.bytes_delivered()), (0, 0), "all buffered");
        sink.flush().expect("flush");
        assert_eq!(sink.packets_delivered(), 3);
        // A record larger than the buffer (256 KiB) goes through at once.
        let big = vec![0u8; snaplen as usize];
        sink.write_packet(4, 0, &big, big.len() as u32).expect("write");
        assert_eq!(sink.packets_delivered(), 4);
        sink.write_packet(5, 0, &[0u8; 100], 100).expect("write");
        sink.close().expect("close");
        assert_eq!(sink.packets_delivered(), 5);
        assert_eq!(sink.bytes_delivered(), std::fs::metadata(&path).expect("file").len());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn delivered_bytes_are_the_files_sizes() {
        let dir = std::env::temp_dir().join(format!("netwatch-sink-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let base = dir.join("ring.pcap");
        let rotation = Rotation {
            bytes: Some(600),
            seconds: None,
            max_files: None,
        };
        let mut sink = Sink::new(OutputFormat::Pcap, Output::File(base.clone()), rotation, 0, 1, 65535, "lo");
        sink.open_first().expect("open");
        for i in 0..10 {
            sink.write_packet(i, 0, &[0u8; 200], 200).expect("write");
        }
        sink.close().expect("close");
        let on_disk: u64 = (0..sink.files_opened as u32)
            .map(|i| std::fs::metadata(rotated_path(&base, i)).expect("file").len())
            .sum();
        assert_eq!(sink.bytes_delivered(), on_disk);
        assert_eq!(sink.bytes_delivered(), sink.session_bytes);
        assert_eq!(sink.packets_delivered(), 10);
        let e = Sink::new(
            OutputFormat::Pcap,
            Output::File(dir.join("no/such/dir.pcap")),
            Rotation::default(),
            0,
            1,
            65535,
            "lo",
        )
        .open_first()
        .expect_err("no directory");
        assert!(
            e.to_string().starts_with(&format!(
                "cannot create the capture file {}: ",
                dir.join("no/such/dir.pcap").display()
            )),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
