//! Where the reader's bytes come from: a buffered stream (any [`Read`]:
//! stdin, a pipe, a socket) or a regular file mapped into memory a window
//! at a time.
//!
//! Mapping saves the kernel's copy of every byte into a user buffer: on a
//! page-cached capture the reader then only touches the record headers and
//! the packet headers it decodes. Windows (not the whole file) keep the
//! mapped, resident part of a file of any size small (peak RSS stays
//! bounded, as with streaming).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};

/// Bytes mapped at a time. Large enough that remapping costs nothing
/// measurable (one mmap/munmap pair per window), small enough to keep the
/// resident set small.
const WINDOW: usize = 8 << 20;
/// Window starts are aligned to this (a multiple of every page size Linux
/// uses: 4, 16 and 64 KiB).
const ALIGN: u64 = 64 << 10;

/// The reader's input.
pub(crate) enum Input<R> {
    Stream(BufReader<R>),
    Mapped(MappedFile),
}

impl<R: Read> Input<R> {
    /// The bytes available without waiting for I/O, from the current
    /// position. A mapped file makes sure at least `want` bytes are there
    /// when the file has them, so that records are borrowed in place; a
    /// stream returns what is buffered (possibly nothing).
    pub(crate) fn peek(&mut self, want: usize) -> &[u8] {
        match self {
            Input::Stream(s) => s.buffer(),
            Input::Mapped(m) => m.peek(want),
        }
    }
}

impl<R: Read> Read for Input<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match self {
            Input::Stream(s) => s.read(out),
            Input::Mapped(m) => {
                let avail = m.fill()?;
                let n = avail.len().min(out.len());
                out[..n].copy_from_slice(&avail[..n]);
                m.pos += n;
                Ok(n)
            }
        }
    }
}

impl<R: Read> BufRead for Input<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        match self {
            Input::Stream(s) => s.fill_buf(),
            Input::Mapped(m) => m.fill(),
        }
    }

    fn consume(&mut self, n: usize) {
        match self {
            Input::Stream(s) => s.consume(n),
            Input::Mapped(m) => m.pos = (m.pos + n).min(m.window_len()),
        }
    }
}

/// A regular file read through a sliding read-only memory mapping.
pub(crate) struct MappedFile {
    file: File,
    /// File length when opened: a file that grows later is read up to
    /// this length (what a mapping can safely cover).
    len: u64,
    map: Option<window::Window>,
    /// File offset of the window's first byte.
    map_offset: u64,
    /// Position in the window.
    pos: usize,
}

impl MappedFile {
    /// Maps `file` if it is a non-empty regular file; `Ok(None)` when it
    /// is something else (a pipe, a character device, empty), which is
    /// then read as a stream.
    pub(crate) fn new(file: File) -> io::Result<Result<Self, File>> {
        let meta = file.metadata()?;
        if !meta.is_file() || meta.len() == 0 {
            return Ok(Err(file));
        }
        let mut m = MappedFile {
            file,
            len: meta.len(),
            map: None,
            map_offset: 0,
            pos: 0,
        };
        m.remap(0, 0)?;
        Ok(Ok(m))
    }

    fn window_len(&self) -> usize {
        self.map.as_ref().map_or(0, |w| w.bytes().len())
    }

    fn position(&self) -> u64 {
        self.map_offset + self.pos as u64
    }

    /// Maps a window that starts at or before file offset `at` and holds
    /// at least `want` bytes from it (as far as the file goes).
    fn remap(&mut self, at: u64, want: usize) -> io::Result<()> {
        let start = at - at % ALIGN;
        let lead = (at - start) as usize;
        let len = (lead + WINDOW.max(want)) as u64;
        let len = len.min(self.len - start) as usize;
        // Unmap the old window first: at most one window is resident.
        self.map = None;
        self.map = Some(window::Window::map(&self.file, start, len)?);
        self.map_offset = start;
        self.pos = lead;
        Ok(())
    }

    /// The rest of the window; a new window when this one is used up.
    fn fill(&mut self) -> io::Result<&[u8]> {
        if self.pos >= self.window_len() && self.position() < self.len {
            self.remap(self.position(), 0)?;
        }
        Ok(self.bytes())
    }

    fn peek(&mut self, want: usize) -> &[u8] {
        let left = self.window_len() - self.pos;
        if left < want && self.position() + (left as u64) < self.len {
            // A failed remap leaves the current window; the next read
            // reports the error.
            let _ = self.remap(self.position(), want);
        }
        self.bytes()
    }

    fn bytes(&self) -> &[u8] {
        self.map.as_ref().map_or(&[][..], |w| w.bytes().get(self.pos..).unwrap_or(&[]))
    }
}

/// The crate's only `unsafe`: creating a memory mapping.
#[allow(unsafe_code)]
mod window {
    use std::fs::File;
    use std::io;

    use memmap2::{Mmap, MmapOptions};

    /// A read-only mapping of `len` bytes of a file from `offset`.
    pub(super) struct Window(Mmap);

    impl Window {
        pub(super) fn map(file: &File, offset: u64, len: usize) -> io::Result<Window> {
            // SAFETY: the mapping is private and read-only, and the slice
            // it lends never outlives it (`bytes` borrows `self`). What a
            // mapping cannot guard against is another process truncating
            // the file while it is mapped: reading the vanished pages then
            // raises SIGBUS. Captures are not truncated in place by the
            // tools that write them (tcpdump, dumpcap and netwatch itself
            // write new files and rotate); for inputs that may be, read
            // them as a stream (`ReaderOptions::memory_map = false`, or
            // from stdin).
            let map = unsafe { MmapOptions::new().offset(offset).len(len).map(file)? };
            // No madvise: the kernel's fault-around and read-ahead serve
            // sequential reading well. (MADV_SEQUENTIAL would let it drop
            // the pages behind the reader, evicting the capture from the
            // page cache; MADV_WILLNEED costs a walk of every page.)
            Ok(Window(map))
        }

        pub(super) fn bytes(&self) -> &[u8] {
            &self.0
        }
    }
}
