//! Variable packet capture on a live interface (Network Watcher's packet
//! capture, spec §8) over libpcap.
//!
//! [`start`] opens the interface (immediate mode, non-blocking reads so that
//! stops are prompt — libpcap's read timeout never fires in immediate mode —,
//! an optional kernel buffer size, a snap length from the bytes to keep per
//! packet), installs ONE BPF expression (see
//! [`crate::filter::compile_bpf`]) so the kernel drops the packets no filter
//! wants, creates the first output file, and hands the handle to a dedicated
//! capture thread. The thread writes every packet to the [`sink`] until a limit
//! is reached or the stop flag is raised (see [`stop_on_signals`]); the caller
//! polls [`LiveCapture::progress`] and collects the [`CaptureOutcome`] with
//! [`LiveCapture::wait`].
//!
//! Limits (Azure's names in brackets; 0 means "no limit" for each):
//! * bytes per packet [`bytesToCapturePerPacket`]: each record keeps at most
//!   that many bytes (caplen = min(len, N)); 0 keeps whole packets;
//! * total bytes [`totalBytesPerSession`]: bytes written in the session, file
//!   headers and every rotated file included; the capture stops BEFORE the
//!   record that would cross it (`SessionBytesExceeded`);
//! * time limit [`timeLimitInSeconds`]: `TimeExceeded`, checked at least every
//!   read timeout;
//! * packet count: `PacketCountReached`.
//!
//! Rotation: files are named `FILE`, `FILE.1`, `FILE.2`... Each is a complete
//! capture with its own header and never exceeds the rotation size (a single
//! packet larger than a whole file is cut to fit). With a maximum file count N
//! the names wrap after `FILE.(N-1)` back to `FILE`, which is overwritten (a
//! ring buffer, like tcpdump's `-W` with `-C`).
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub mod sink;

use crate::filter::IpMatch;
use sink::{Sink, Written};

/// Largest snap length libpcap accepts (MAXIMUM_SNAPLEN).
pub const MAX_SNAPLEN: u32 = 262_144;
/// Azure's default `totalBytesPerSession`.
pub const DEFAULT_TOTAL_BYTES: u64 = 1_073_741_824;
/// Azure's default (and maximum) `timeLimitInSeconds`.
pub const DEFAULT_TIME_LIMIT_SECS: u64 = 18_000;
/// Default kernel buffer in immediate mode: there libpcap uses a ring of
/// fixed-size frames (TPACKET_V2) sized for the interface MTU, so on `lo`
/// (MTU 65536) libpcap's 2 MiB default would hold only ~32 packets.
pub const IMMEDIATE_BUFFER_SIZE: u32 = 32 * 1024 * 1024;
/// Longest sleep of the capture thread when the kernel ring is empty.
pub const IDLE_SLEEP: Duration = Duration::from_millis(1);
/// Smallest accepted rotation size.
pub const MIN_ROTATE_BYTES: u64 = 512;

/// File format of the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    #[default]
    Pcap,
    Pcapng,
}

/// Where packets go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    File(PathBuf),
    Stdout,
}

/// File rotation (files only, not stdout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rotation {
    /// Start a new file before one would exceed this many bytes.
    pub bytes: Option<u64>,
    /// Start a new file with the first packet this many seconds after the current one was opened.
    pub seconds: Option<u64>,
    /// Keep at most this many files (ring buffer).
    pub max_files: Option<u32>,
}

/// A live capture's settings; [`LiveConfig::new`] gives Network Watcher's defaults.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    pub interface: String,
    pub output: Output,
    pub format: OutputFormat,
    /// 0 = whole packet.
    pub bytes_per_packet: u64,
    /// 0 = no limit.
    pub total_bytes: u64,
    /// None (or zero) = no limit.
    pub time_limit: Option<Duration>,
    /// None = no limit.
    pub count: Option<u64>,
    /// Kernel buffer size in bytes; when None, [`IMMEDIATE_BUFFER_SIZE`] in
    /// immediate mode, libpcap's default (2 MiB) otherwise.
    pub buffer_size: Option<u32>,
    /// Passed to libpcap as the read timeout; also how often the output is
    /// flushed and the kernel statistics refreshed while packets flow.
    pub read_timeout: Duration,
    pub promiscuous: bool,
    /// libpcap's immediate mode (TPACKET_V2 on Linux: each packet is handed
    /// over at once). When false, the kernel hands packets over in blocks
    /// (TPACKET_V3) at most `read_timeout` late: far fewer wake-ups and a
    /// ring that holds many more packets on links with a large MTU such as `lo`.
    pub immediate: bool,
    /// The tcpdump expression to install; empty = everything.
    pub bpf: String,
    pub rotation: Rotation,
    /// Also hand every written packet, decoded, to this channel (flow
    /// tracking, flow logs, flow export of live traffic). The capture never
    /// waits on it: when the channel is full the packet is counted in
    /// [`Progress::tap_dropped`] instead.
    pub tap: Option<std::sync::mpsc::SyncSender<TapPacket>>,
}

/// A captured packet as the tap sees it.
#[derive(Clone, Copy, Debug)]
pub struct TapPacket {
    /// Capture time, nanoseconds since the Unix epoch.
    pub ts_ns: i64,
    pub meta: crate::PacketMeta,
}

impl LiveConfig {
    pub fn new(interface: impl Into<String>, output: Output) -> Self {
        LiveConfig {
            interface: interface.into(),
            output,
            format: OutputFormat::Pcap,
            bytes_per_packet: 0,
            total_bytes: DEFAULT_TOTAL_BYTES,
            time_limit: Some(Duration::from_secs(DEFAULT_TIME_LIMIT_SECS)),
            count: None,
            buffer_size: None,
            read_timeout: Duration::from_millis(100),
            promiscuous: false,
            immediate: true,
            bpf: String::new(),
            rotation: Rotation::default(),
            tap: None,
        }
    }

    /// The snap length handed to libpcap and written in the file header.
    pub fn snaplen(&self) -> u32 {
        if self.bytes_per_packet == 0 || self.bytes_per_packet > MAX_SNAPLEN as u64 {
            MAX_SNAPLEN
        } else {
            self.bytes_per_packet as u32
        }
    }

    /// The kernel buffer size handed to libpcap (None: libpcap's default).
    pub fn effective_buffer_size(&self) -> Option<u32> {
        match (self.buffer_size, self.immediate) {
            (Some(b), _) => Some(b),
            // Block mode needs room too: at full speed on lo, libpcap's
            // 2 MiB default drops where 32 MiB does not (benches/capture.sh).
            (None, _) => Some(IMMEDIATE_BUFFER_SIZE),
        }
    }

    /// The snap length asked of libpcap: a little more than [`Self::snaplen`],
    /// because the kernel's ring frames can keep a few bytes less than the
    /// snap length (header alignment); each record is then cut to exactly
    /// `bytes_per_packet` by the capture thread.
    pub fn kernel_snaplen(&self) -> u32 {
        self.snaplen().saturating_add(256).min(MAX_SNAPLEN)
    }

    fn validate(&self) -> Result<(), LiveError> {
        let cfg = |m: String| Err(LiveError::Config(m));
        let r = &self.rotation;
        if self.output == Output::Stdout && (r.bytes.is_some() || r.seconds.is_some() || r.max_files.is_some()) {
            return cfg("rotation needs an output file, not stdout".into());
        }
        if let Some(b) = r.bytes {
            if b < MIN_ROTATE_BYTES {
                return cfg(format!("the rotation size must be at least {MIN_ROTATE_BYTES} bytes (got {b})"));
            }
        }
        if r.seconds == Some(0) {
            return cfg("the rotation interval must be at least 1 second".into());
        }
        if r.max_files.is_some() && r.bytes.is_none() && r.seconds.is_none() {
            return cfg("a maximum file count needs rotation by size or by time".into());
        }
        if r.max_files == Some(0) {
            return cfg("the maximum file count must be at least 1".into());
        }
        let h = sink::header_len(self.format, &self.interface);
        if self.total_bytes > 0 && self.total_bytes < h {
            return cfg(format!(
                "the session byte limit {} is smaller than the file header ({h} bytes)",
                self.total_bytes
            ));
        }
        if self.read_timeout.is_zero() {
            return cfg("the read timeout must be positive".into());
        }
        Ok(())
    }
}

/// Why a capture stopped (Network Watcher's `stopReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    TimeExceeded,
    SessionBytesExceeded,
    PacketCountReached,
    ManualStop,
    /// Writing to stdout, the reader went away (`netwatch capture -w - |
    /// head -c 1000`): a normal end, as for tcpdump.
    OutputClosed,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::TimeExceeded => "TimeExceeded",
            StopReason::SessionBytesExceeded => "SessionBytesExceeded",
            StopReason::PacketCountReached => "PacketCountReached",
            StopReason::ManualStop => "ManualStop",
            StopReason::OutputClosed => "OutputClosed",
        }
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors of a live capture.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("no such interface \"{name}\"; interfaces: {}", available.join(", "))]
    NoSuchInterface { name: String, available: Vec<String> },
    #[error("no permission to capture on \"{interface}\" ({detail}): capturing needs root or the CAP_NET_RAW and CAP_NET_ADMIN capabilities (e.g. `setcap cap_net_raw,cap_net_admin=eip $(command -v netwatch)`)")]
    Permission { interface: String, detail: String },
    #[error("the capture filter does not compile: {detail}; expression: {expr}")]
    Filter { expr: String, detail: String },
    #[error("cannot capture on \"{interface}\": {detail}")]
    Open { interface: String, detail: String },
    #[error("capture failed: {0}")]
    Capture(String),
    #[error("cannot create the capture file {}: {source}", path.display())]
    Create { path: PathBuf, source: io::Error },
    /// `target` is the file being written (or `stdout`).
    #[error("writing the capture to {target} failed: {source}")]
    Output { target: String, source: io::Error },
    #[error("{0}")]
    Config(String),
}

impl LiveError {
    /// Network Watcher's `packetCaptureError` value for this error.
    pub fn azure_error(&self) -> &'static str {
        match self {
            LiveError::Output { .. } | LiveError::Create { .. } => "LocalFileFailed",
            LiveError::Capture(_) => "CaptureFailed",
            _ => "InternalError",
        }
    }
}

/// An interface pcap can capture on.
#[derive(Debug, Clone)]
pub struct Interface {
    pub name: String,
    pub description: Option<String>,
    pub addresses: Vec<IpAddr>,
    pub loopback: bool,
    pub up: bool,
}

impl Interface {
    /// The addresses that count as this interface's own ("local" in
    /// capture filters): its addresses, and on a loopback interface all of
    /// 127.0.0.0/8, which the kernel delivers locally whatever the
    /// interface lists (RFC 1122 §3.2.1.3).
    pub fn local_addresses(&self) -> Vec<IpMatch> {
        let in_127 = |a: &IpAddr| matches!(a, IpAddr::V4(v) if v.octets()[0] == 127);
        let mut out = Vec::new();
        if self.loopback {
            out.push(IpMatch::Range(IpAddr::from([127, 0, 0, 0]), IpAddr::from([127, 255, 255, 255])));
        }
        for a in &self.addresses {
            let covered = self.loopback && in_127(a);
            let m = IpMatch::Single(*a);
            if !covered && !out.contains(&m) {
                out.push(m);
            }
        }
        out
    }
}

/// The local addresses of a capture on `iface`: its own; for an interface
/// without addresses of its own (Linux `any`, which captures on every
/// interface), those of every interface, so that filters keep their
/// local/remote meaning.
pub fn local_addresses(iface: &Interface, all: &[Interface]) -> Vec<IpMatch> {
    let own = iface.local_addresses();
    if !own.is_empty() {
        return own;
    }
    let mut out: Vec<IpMatch> = Vec::new();
    for m in all.iter().flat_map(Interface::local_addresses) {
        if !out.contains(&m) {
            out.push(m);
        }
    }
    out
}

/// The interfaces libpcap knows (pcap_findalldevs).
pub fn list_interfaces() -> Result<Vec<Interface>, LiveError> {
    let devs = pcap::Device::list().map_err(|e| LiveError::Capture(format!("cannot list interfaces: {e}")))?;
    Ok(devs
        .into_iter()
        .map(|d| Interface {
            loopback: d.flags.is_loopback(),
            up: d.flags.is_up(),
            addresses: d.addresses.iter().map(|a| a.addr).collect(),
            description: d.desc,
            name: d.name,
        })
        .collect())
}

/// One interface by name; `NoSuchInterface` lists the ones that exist.
pub fn find_interface(name: &str) -> Result<Interface, LiveError> {
    let all = list_interfaces()?;
    let names: Vec<String> = all.iter().map(|i| i.name.clone()).collect();
    all.into_iter().find(|i| i.name == name).ok_or_else(|| LiveError::NoSuchInterface {
        name: name.to_string(),
        available: names,
    })
}

/// Checks that `expr` compiles for a link type (default Ethernet) without a device.
pub fn check_bpf(expr: &str, link_type: Option<i32>) -> Result<(), LiveError> {
    if expr.trim().is_empty() {
        return Ok(());
    }
    let dead = pcap::Capture::dead(pcap::Linktype(link_type.unwrap_or(1))).map_err(|e| LiveError::Capture(e.to_string()))?;
    dead.compile(expr, true).map(|_| ()).map_err(|e| LiveError::Filter {
        expr: expr.to_string(),
        detail: e.to_string(),
    })
}

/// Raises `stop` on SIGINT and SIGTERM; a second signal while `stop` is
/// already raised ends the process at once (exit 130 / 143).
pub fn stop_on_signals(stop: &Arc<AtomicBool>) -> io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    for (sig, code) in [(SIGINT, 130), (SIGTERM, 143)] {
        signal_hook::flag::register_conditional_shutdown(sig, code, Arc::clone(stop))?;
        signal_hook::flag::register(sig, Arc::clone(stop))?;
    }
    Ok(())
}

/// Counters of a running or finished capture.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Packets written to the output: while capturing, those still
    /// buffered too; in the outcome, those whose records reached it whole
    /// (after a write error, not the ones left in the buffer).
    pub packets_captured: u64,
    /// Bytes written to the output (all files, headers included): while
    /// capturing, those still buffered too; in the outcome, what reached it.
    pub bytes_written: u64,
    /// Packets that passed the filter as counted by the kernel (pcap_stats ps_recv).
    pub packets_received: u64,
    /// pcap_stats ps_drop: no room in the kernel buffer.
    pub packets_dropped_by_kernel: u64,
    /// pcap_stats ps_ifdrop: dropped by the interface or its driver.
    pub packets_dropped_by_interface: u64,
    /// Files opened so far.
    pub files: u64,
    /// Packets the tap's channel had no room for (see [`LiveConfig::tap`]).
    pub tap_dropped: u64,
}

#[derive(Default)]
struct Shared {
    tap_dropped: AtomicU64,
    packets: AtomicU64,
    bytes: AtomicU64,
    received: AtomicU64,
    kdrop: AtomicU64,
    ifdrop: AtomicU64,
    files: AtomicU64,
    finished: AtomicBool,
}

impl Shared {
    fn snapshot(&self) -> Progress {
        Progress {
            packets_captured: self.packets.load(Ordering::Relaxed),
            bytes_written: self.bytes.load(Ordering::Relaxed),
            packets_received: self.received.load(Ordering::Relaxed),
            packets_dropped_by_kernel: self.kdrop.load(Ordering::Relaxed),
            packets_dropped_by_interface: self.ifdrop.load(Ordering::Relaxed),
            files: self.files.load(Ordering::Relaxed),
            tap_dropped: self.tap_dropped.load(Ordering::Relaxed),
        }
    }
}

/// How a capture ended.
#[derive(Debug)]
pub struct CaptureOutcome {
    pub start_time: SystemTime,
    pub end_time: SystemTime,
    pub result: Result<StopReason, LiveError>,
    pub progress: Progress,
}

/// A running capture.
pub struct LiveCapture {
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    result: Receiver<Result<StopReason, LiveError>>,
    thread: Option<JoinHandle<()>>,
    start_time: SystemTime,
    link_type: u32,
    bpf: String,
}

impl LiveCapture {
    /// When the capture started (the interface was open and the filter set).
    pub fn start_time(&self) -> SystemTime {
        self.start_time
    }
    /// LINKTYPE_ of the packets.
    pub fn link_type(&self) -> u32 {
        self.link_type
    }
    /// The BPF expression installed in the kernel.
    pub fn bpf(&self) -> &str {
        &self.bpf
    }
    pub fn progress(&self) -> Progress {
        self.shared.snapshot()
    }
    pub fn is_finished(&self) -> bool {
        self.shared.finished.load(Ordering::Acquire)
    }
    /// Asks the capture thread to stop (it notices within the read timeout).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }
    /// Waits until the capture has stopped and its output is complete (the
    /// capture thread may still be closing the kernel socket).
    pub fn wait(mut self) -> CaptureOutcome {
        let result = match self.result.recv() {
            Ok(r) => r,
            Err(_) => {
                let panicked = self.thread.take().map(|t| t.join().is_err()).unwrap_or(false);
                Err(LiveError::Capture(if panicked {
                    "the capture thread panicked".into()
                } else {
                    "the capture thread is gone".into()
                }))
            }
        };
        CaptureOutcome {
            start_time: self.start_time,
            end_time: SystemTime::now(),
            result,
            progress: self.shared.snapshot(),
        }
    }
}

fn open_error(interface: &str, e: pcap::Error) -> LiveError {
    let detail = e.to_string();
    let l = detail.to_ascii_lowercase();
    if l.contains("permission") || l.contains("not permitted") {
        LiveError::Permission {
            interface: interface.to_string(),
            detail,
        }
    } else if l.contains("no such device") {
        let available = list_interfaces()
            .map(|v| v.into_iter().map(|i| i.name).collect())
            .unwrap_or_default();
        LiveError::NoSuchInterface {
            name: interface.to_string(),
            available,
        }
    } else {
        LiveError::Open {
            interface: interface.to_string(),
            detail,
        }
    }
}

/// Opens the interface, sets the filter, creates the first output file and
/// starts the capture thread. `stop` stops it when raised (see [`stop_on_signals`]).
pub fn start(config: LiveConfig, stop: Arc<AtomicBool>) -> Result<LiveCapture, LiveError> {
    config.validate()?;
    // The device must exist: a clear message listing the ones that do.
    find_interface(&config.interface)?;
    let timeout_ms = config.read_timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
    let mut inactive = pcap::Capture::from_device(config.interface.as_str())
        .map_err(|e| open_error(&config.interface, e))?
        .immediate_mode(config.immediate)
        .timeout(timeout_ms)
        .promisc(config.promiscuous)
        .snaplen(config.kernel_snaplen() as i32);
    if let Some(b) = config.effective_buffer_size() {
        inactive = inactive.buffer_size(b.min(i32::MAX as u32) as i32);
    }
    // Non-blocking reads: in immediate mode libpcap (1.10, TPACKET_V2) never
    // returns on the read timeout, so the thread polls the ring and sleeps at
    // most IDLE_SLEEP when it is empty (stops and limits are noticed within a
    // few milliseconds).
    let mut cap = inactive
        .open()
        .map_err(|e| open_error(&config.interface, e))?
        .setnonblock()
        .map_err(|e| open_error(&config.interface, e))?;
    let dlt = cap.get_datalink().0;
    if !config.bpf.trim().is_empty() {
        cap.filter(&config.bpf, true).map_err(|e| LiveError::Filter {
            expr: config.bpf.clone(),
            detail: e.to_string(),
        })?;
    }
    let link_type = sink::dlt_to_linktype(dlt);
    let mut sink = Sink::new(
        config.format,
        config.output.clone(),
        config.rotation,
        config.total_bytes,
        link_type,
        config.snaplen(),
        &config.interface,
    );
    sink.open_first()?;
    let start_time = SystemTime::now();
    let shared = Arc::new(Shared::default());
    shared.bytes.store(sink.session_bytes, Ordering::Relaxed);
    shared.files.store(sink.files_opened, Ordering::Relaxed);
    let th_shared = Arc::clone(&shared);
    let th_stop = Arc::clone(&stop);
    let bpf = config.bpf.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("netwatch-capture".into())
        .spawn(move || {
            let r = capture_loop(link_type, &mut cap, &mut sink, &config, &th_shared, &th_stop);
            let pipe_closed = |e: &LiveError| {
                matches!(config.output, Output::Stdout)
                    && matches!(e, LiveError::Output { source, .. } if source.kind() == io::ErrorKind::BrokenPipe)
            };
            let r = match r {
                Err(e) if pipe_closed(&e) => Ok(StopReason::OutputClosed),
                other => other,
            };
            let closed = match (sink.close(), &r) {
                (Err(e), Ok(StopReason::OutputClosed)) if pipe_closed(&e) => Ok(()),
                (c, _) => c,
            };
            update_stats(&mut cap, &th_shared);
            // What reached the output, not what was buffered: after a write
            // error the two differ (a full disk took nothing, not the header,
            // and no packet; a file size limit took the packets before the
            // record it cut).
            th_shared.bytes.store(sink.bytes_delivered(), Ordering::Relaxed);
            th_shared.packets.store(sink.packets_delivered(), Ordering::Relaxed);
            let result = match (r, closed) {
                (Ok(reason), Ok(())) => Ok(reason),
                (Err(e), _) => Err(e),
                (Ok(_), Err(e)) => Err(e),
            };
            // The output is complete: report now. Closing the packet socket
            // (dropping `cap`) frees the kernel ring and can take a second or
            // more on a loaded machine; nobody needs to wait for it.
            th_shared.finished.store(true, Ordering::Release);
            let _ = tx.send(result);
            drop(cap);
        })
        .map_err(|e| LiveError::Capture(format!("cannot start the capture thread: {e}")))?;
    Ok(LiveCapture {
        shared,
        stop,
        result: rx,
        thread: Some(thread),
        start_time,
        link_type,
        bpf,
    })
}

fn update_stats(cap: &mut pcap::Capture<pcap::Active>, shared: &Shared) {
    if let Ok(s) = cap.stats() {
        shared.received.store(s.received as u64, Ordering::Relaxed);
        shared.kdrop.store(s.dropped as u64, Ordering::Relaxed);
        shared.ifdrop.store(s.if_dropped as u64, Ordering::Relaxed);
    }
}

fn capture_loop(
    link_type: u32,
    cap: &mut pcap::Capture<pcap::Active>,
    sink: &mut Sink,
    config: &LiveConfig,
    shared: &Shared,
    stop: &AtomicBool,
) -> Result<StopReason, LiveError> {
    let started = Instant::now();
    let deadline = config.time_limit.filter(|d| !d.is_zero()).map(|d| started + d);
    let keep = if config.bytes_per_packet == 0 {
        usize::MAX
    } else {
        config.bytes_per_packet as usize
    };
    let mut packets: u64 = 0;
    let mut last_stats = Instant::now();
    let flush_every = config.read_timeout;
    let mut idle = false;
    if config.count == Some(0) {
        return Ok(StopReason::PacketCountReached);
    }
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(StopReason::ManualStop);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(StopReason::TimeExceeded);
        }
        if last_stats.elapsed() >= config.read_timeout {
            update_stats(cap, shared);
            last_stats = Instant::now();
        }
        match cap.next_packet() {
            Ok(p) => {
                idle = false;
                let data = &p.data[..p.data.len().min(keep)];
                // time_t / suseconds_t are not i64 on every platform.
                #[allow(clippy::unnecessary_cast)]
                let (sec, usec) = (p.header.ts.tv_sec as i64, p.header.ts.tv_usec as i64);
                match sink.write_packet(sec, usec, data, p.header.len)? {
                    Written::Record(_) => {
                        if let Some(tap) = &config.tap {
                            // Decode the whole packet, not the truncated record: flows count real lengths.
                            if let Ok(meta) = crate::decode(crate::LinkType(link_type as u16), p.data, crate::DecodeOptions::default()) {
                                let ts_ns = sec * 1_000_000_000 + usec * 1000;
                                if tap.try_send(TapPacket { ts_ns, meta }).is_err() {
                                    shared.tap_dropped.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                        packets += 1;
                        shared.packets.store(packets, Ordering::Relaxed);
                        shared.bytes.store(sink.session_bytes, Ordering::Relaxed);
                        shared.files.store(sink.files_opened, Ordering::Relaxed);
                        if config.count.is_some_and(|c| packets >= c) {
                            return Ok(StopReason::PacketCountReached);
                        }
                    }
                    Written::SessionFull => return Ok(StopReason::SessionBytesExceeded),
                }
                sink.flush_if_due(flush_every)?;
            }
            Err(pcap::Error::TimeoutExpired) => {
                // The ring is empty: make what was captured visible to readers, then wait a little.
                if !idle {
                    sink.flush()?;
                    idle = true;
                }
                std::thread::sleep(IDLE_SLEEP);
            }
            Err(e) => return Err(LiveError::Capture(e.to_string())),
        }
    }
}

/// RFC 3339 UTC with microseconds, e.g. `2016-12-06T17:20:01.567127Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, dd) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_micros()
    )
}

/// Days since 1970-01-01 to (year, month, day) (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_format() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        let t = UNIX_EPOCH + Duration::from_micros(1_481_044_801_567_127);
        assert_eq!(rfc3339(t), "2016-12-06T17:20:01.567127Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400); // leap day
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00.000000Z");
    }

    #[test]
    fn rotated_names() {
        let b = std::path::Path::new("/tmp/x.pcap");
        assert_eq!(sink::rotated_path(b, 0), b);
        assert_eq!(sink::rotated_path(b, 3), std::path::Path::new("/tmp/x.pcap.3"));
    }

    #[test]
    fn config_validation() {
        let mut c = LiveConfig::new("lo", Output::Stdout);
        assert!(c.validate().is_ok());
        c.rotation.bytes = Some(10_000);
        assert!(c.validate().is_err());
        let mut c = LiveConfig::new("lo", Output::File("/tmp/x".into()));
        c.total_bytes = 10;
        assert!(c.validate().is_err());
        c.total_bytes = 24;
        assert!(c.validate().is_ok());
        c.rotation.max_files = Some(3);
        assert!(c.validate().is_err());
        c.rotation.bytes = Some(100);
        assert!(c.validate().is_err());
        c.rotation.bytes = Some(1000);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn compiled_filters_are_valid_tcpdump_expressions() {
        use crate::filter::{compile_bpf, CaptureFilter, IpMatch};
        let f = |t: &str| CaptureFilter::parse(t).unwrap();
        let local: Vec<IpMatch> = vec![
            IpMatch::Range("127.0.0.0".parse().unwrap(), "127.255.255.255".parse().unwrap()),
            IpMatch::Single("10.0.0.4".parse().unwrap()),
            IpMatch::Single("fe80::1".parse().unwrap()),
        ];
        let filters = [
            f("protocol=TCP,localIPAddress=10.0.0.3,remotePort=80;443;"),
            f("protocol=UDP,remoteIPAddress=10.0.0.1-10.0.0.77,localPort=1000-2000"),
            f("remoteIPAddress=2001:db8::1-2001:db8::ff,remotePort=53"),
            f("protocol=Any,localIPAddress=10.0.0.1;10.0.0.9"),
        ];
        let expr = compile_bpf(&filters, &local, Some("not port 22"));
        check_bpf(&expr, None).unwrap();
        assert!(check_bpf("tcp and and", None).is_err());
        check_bpf("", None).unwrap();
    }

    #[test]
    fn snaplen_from_bytes_per_packet() {
        let mut c = LiveConfig::new("lo", Output::Stdout);
        assert_eq!(c.snaplen(), MAX_SNAPLEN);
        c.bytes_per_packet = 34;
        assert_eq!(c.snaplen(), 34);
        c.bytes_per_packet = 4_294_967_295;
        assert_eq!(c.snaplen(), MAX_SNAPLEN);
    }
}
