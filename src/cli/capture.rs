//! `netwatch capture`: variable packet capture on a live interface, Network
//! Watcher style (filters, limits, status), over libpcap.
use std::io::{self, IsTerminal, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use clap::{Args, ValueEnum};
use netwatch::watcher::packet_capture::{capture_filters_from_file, ContinuousCapture, PacketCaptureRequest};
use netwatch_capture::filter::{compile_bpf, CaptureFilter, IpMatch};
use netwatch_capture::live::{self, LiveConfig, Output, OutputFormat, Progress, Rotation};
use serde_json::{json, Map, Value};

/// Capture packets on a live interface into a pcap or pcapng file, with
/// Network Watcher's filters and limits; prints a PacketCaptureQueryStatusResult
/// JSON on stdout when it stops (on stderr when the packets go to stdout).
///
/// Filters: `--filter 'protocol=TCP,localIPAddress=10.0.0.3,remotePort=80;443'`
/// (keys protocol, localIPAddress, remoteIPAddress, localPort, remotePort,
/// case-insensitive; addresses and ports as `a`, `a-b` or `a;b;`). Several
/// filters are OR'd, the fields of one filter AND'd, an absent field matches
/// anything; protocol Any (the default) is all traffic. "Local" is the
/// interface's own addresses unless `--local-ip` is given (on loopback all of
/// 127.0.0.0/8; on `any`, every interface's). Everything becomes ONE kernel
/// BPF expression (see `--print-bpf`).
///
/// Limits: 0 means no limit. `--total-bytes` counts every byte written in the
/// session (headers and rotated files included) and the capture stops before
/// the packet that would cross it. Stop reasons: TimeExceeded,
/// SessionBytesExceeded, PacketCountReached, ManualStop (SIGINT / SIGTERM; a
/// second signal exits at once).
///
/// Rotation writes FILE, FILE.1, FILE.2, ...; each is a complete capture no
/// larger than `--rotate-bytes`; with `--max-files N` the names wrap back to
/// FILE after FILE.(N-1) (ring buffer).
#[derive(Args, Debug)]
pub struct CaptureArgs {
    /// The interface to capture on (e.g. lo, eth0, any).
    #[arg(short = 'i', long, value_name = "IF", required_unless_present = "print_bpf")]
    pub interface: Option<String>,
    /// The capture file (as tcpdump's -w); `-` writes to stdout. May come from the request's storageLocation.filePath.
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Output file format.
    #[arg(long, value_enum, default_value_t = FileFormat::Pcap)]
    pub format: FileFormat,
    /// A Network Watcher filter, e.g. 'protocol=TCP,localIPAddress=10.0.0.3,remotePort=80;443'. Repeatable (OR'd).
    #[arg(long = "filter", value_name = "FILTER", value_parser = CaptureFilter::parse)]
    pub filter: Vec<CaptureFilter>,
    /// A JSON file holding the `filters` array of a PacketCapture request (or an object with `filters`).
    #[arg(long = "filters", value_name = "FILE")]
    pub filters_file: Option<PathBuf>,
    /// A whole PacketCapture create body ({"properties": {...}} or the properties alone); options given on the command line win.
    /// Its captureSettings (or continuousCapture true) make a ring of files: fileSizeInBytes is --rotate-bytes, fileCount
    /// --max-files, sessionTimeLimitInSeconds the time limit (default 86400, and no default session byte limit).
    #[arg(long, value_name = "FILE")]
    pub request: Option<PathBuf>,
    /// The local address(es) filters refer to (default: the interface's own addresses). Repeatable.
    #[arg(long = "local-ip", value_name = "IP")]
    pub local_ip: Vec<IpAddr>,
    /// A raw tcpdump expression AND'd with the filters.
    #[arg(long, value_name = "EXPR")]
    pub bpf: Option<String>,
    /// Print the compiled BPF expression and exit.
    #[arg(long)]
    pub print_bpf: bool,
    /// Bytes kept of each packet (bytesToCapturePerPacket); 0 = whole packet. [default: 0]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(0..=4_294_967_295))]
    pub bytes_per_packet: Option<u64>,
    /// Session byte limit (totalBytesPerSession); 0 = none. [default: 1073741824]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(0..=4_294_967_295))]
    pub total_bytes: Option<u64>,
    /// Time limit in seconds (timeLimitInSeconds); 0 = none. [default: 18000]
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(0..=18_000))]
    pub time_limit: Option<u64>,
    /// Stop after this many packets (1 or more, as tcpdump's -c).
    #[arg(short = 'c', long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Kernel capture buffer size in bytes [default: 32 MiB].
    #[arg(short = 'B', long, value_name = "BYTES", value_parser = clap::value_parser!(u32).range(4096..))]
    pub buffer_size: Option<u32>,
    /// Hand each packet over as it arrives (libpcap's immediate mode) instead of in blocks, as tcpdump
    /// --immediate-mode does: lower latency, but more kernel drops at high packet rates.
    #[arg(long)]
    pub immediate: bool,
    /// Put the interface in promiscuous mode.
    #[arg(long)]
    pub promiscuous: bool,
    /// Start a new file before one would exceed this many bytes (at least 512).
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(512..))]
    pub rotate_bytes: Option<u64>,
    /// Start a new file with the first packet this many seconds after the current file was opened.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub rotate_seconds: Option<u64>,
    /// Keep at most this many rotated files (ring buffer).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_files: Option<u32>,
    /// Keep this file updated with the status JSON once a second while capturing (atomic rename).
    #[arg(long, value_name = "FILE")]
    pub status_file: Option<PathBuf>,
    /// The capture's name in the status (default: the request's name or the output file's name).
    #[arg(long)]
    pub name: Option<String>,
    /// The capture's id in the status (default: the request's id, else none).
    #[arg(long)]
    pub id: Option<String>,
    /// Live flows: NSG and VNet flow logs and IPFIX export of the captured traffic.
    #[command(flatten)]
    pub flows: super::flows::LiveFlowArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FileFormat {
    Pcap,
    Pcapng,
}

/// The filters of the command line (`--filter`, `--filters`), else of the request.
fn collect_filters(args: &CaptureArgs, req: &PacketCaptureRequest) -> Result<Vec<CaptureFilter>> {
    let mut filters = Vec::new();
    filters.extend(args.filter.iter().cloned());
    if let Some(p) = &args.filters_file {
        filters.extend(capture_filters_from_file(p).context("--filters")?);
    }
    if args.filter.is_empty() && args.filters_file.is_none() {
        if let Some(f) = &req.filters {
            filters = f.clone();
        }
    }
    Ok(filters)
}

pub fn run(args: CaptureArgs) -> Result<()> {
    // First of all, so that a SIGINT/SIGTERM during set-up is a clean ManualStop.
    let stop = Arc::new(AtomicBool::new(false));
    live::stop_on_signals(&stop).context("cannot install the SIGINT/SIGTERM handlers")?;
    args.flows.check_usage();
    let req = match &args.request {
        Some(p) => PacketCaptureRequest::from_file(p).context("--request")?,
        None => PacketCaptureRequest::default(),
    };
    for field in &req.ignored {
        tracing::warn!(field = %field, "--request: not applied by a local capture");
    }
    let filters = collect_filters(&args, &req)?;

    let iface = match &args.interface {
        Some(name) => Some(live::find_interface(name)?),
        None => None,
    };
    // "Local" in filters: --local-ip, else the interface's own addresses
    // (all of 127.0.0.0/8 on loopback; every interface's for `any`).
    let local: Vec<IpMatch> = if !args.local_ip.is_empty() {
        args.local_ip.iter().map(|a| IpMatch::Single(*a)).collect()
    } else {
        match &iface {
            Some(i) if i.local_addresses().is_empty() => live::local_addresses(i, &live::list_interfaces()?),
            Some(i) => i.local_addresses(),
            None => Vec::new(),
        }
    };
    let bpf = compile_bpf(&filters, &local, args.bpf.as_deref());
    live::check_bpf(&bpf, None)?;
    if args.print_bpf {
        let mut out = io::stdout().lock();
        writeln!(out, "{bpf}")?;
        return Ok(());
    }

    let Some(iface) = iface else {
        super::usage_error("give the interface with --interface IF (see `ip link`; e.g. lo, eth0 or any)");
    };
    let request_file = match &args.output {
        Some(_) => None,
        None => req.file_path().context("--request")?,
    };
    let output = match args.output.clone().or(request_file) {
        Some(p) if p.as_os_str() == "-" => Output::Stdout,
        Some(p) => Output::File(p),
        None => super::usage_error(
            "give the capture file with -w/--write FILE (or `-` for stdout), or a --request whose storageLocation has a filePath",
        ),
    };
    let mut cfg = LiveConfig::new(iface.name.clone(), output.clone());
    cfg.format = match args.format {
        FileFormat::Pcap => OutputFormat::Pcap,
        FileFormat::Pcapng => OutputFormat::Pcapng,
    };
    cfg.bytes_per_packet = args.bytes_per_packet.or(req.bytes_to_capture_per_packet).unwrap_or(0);
    // A continuous capture (the request's captureSettings or
    // continuousCapture) is a ring of files until its session time limit; the
    // command line's options win field by field. The ring bounds the disk by
    // itself: no default session byte limit stops it.
    let ring = req.continuous();
    cfg.total_bytes = args.total_bytes.or(req.total_bytes_per_session).unwrap_or(match ring {
        Some(_) => 0,
        None => live::DEFAULT_TOTAL_BYTES,
    });
    let secs = args
        .time_limit
        .or(ring.as_ref().map(|r| r.session_time_limit_in_seconds))
        .or(req.time_limit_in_seconds)
        .unwrap_or(live::DEFAULT_TIME_LIMIT_SECS);
    cfg.time_limit = (secs > 0).then(|| Duration::from_secs(secs));
    cfg.count = args.count;
    cfg.buffer_size = args.buffer_size;
    cfg.promiscuous = args.promiscuous;
    cfg.immediate = args.immediate;
    cfg.bpf = bpf;
    let bytes = args.rotate_bytes.or(ring.as_ref().map(|r| r.file_size_in_bytes).filter(|&b| b > 0));
    // fileSizeInBytes 0 is one file: a file count has nothing to keep then.
    let ring_files = ring
        .as_ref()
        .filter(|_| bytes.is_some() || args.rotate_seconds.is_some())
        .and_then(|r| u32::try_from(r.file_count).ok())
        .filter(|&n| n > 0);
    cfg.rotation = Rotation {
        bytes,
        seconds: args.rotate_seconds,
        max_files: args.max_files.or(ring_files),
    };
    check_limits(&args, &req, ring.as_ref(), &cfg)?;

    let name = args.name.clone().or(req.name.clone()).unwrap_or_else(|| match &output {
        Output::File(p) => p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "capture".into()),
        Output::Stdout => "capture".into(),
    });
    let id = args.id.clone().or(req.id.clone());
    let status = StatusWriter {
        name,
        id,
        file: args.status_file.clone(),
    };
    tracing::info!(interface = %cfg.interface, bpf = %cfg.bpf, "starting capture");

    // Live flows: the capture thread hands decoded packets to a tracker,
    // prepared first so that its errors (a wrong --nic, --ipfix) come before
    // the capture, not after it.
    let env = if args.flows.wanted() { args.flows.load()? } else { None };
    let tracker = if args.flows.wanted() {
        let tracker = args.flows.prepare(env.as_ref(), &args.local_ip)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1 << 16);
        cfg.tap = Some(tx);
        Some((tracker, rx))
    } else {
        None
    };
    let cap = live::start(cfg, Arc::clone(&stop))?;
    std::thread::scope(|scope| -> Result<()> {
        let tracker = tracker.map(|(tracker, rx)| {
            let flows = &args.flows;
            scope.spawn(move || super::flows::track_live(flows, tracker, rx))
        });
        let r = finish_capture(cap, &status, &output);
        if let Some(t) = tracker {
            match t.join() {
                Ok(res) => res?,
                Err(_) => return Err(anyhow!("the flow tracker panicked")),
            }
        }
        r
    })
}

/// Combinations of limits clap cannot see, checked before the capture
/// starts: from the command line they are usage errors naming the options
/// (exit 2), from the request errors naming its file and JSON path (exit 1).
/// The library checks them too, but only as it starts, without either name.
fn check_limits(args: &CaptureArgs, req: &PacketCaptureRequest, ring: Option<&ContinuousCapture>, cfg: &LiveConfig) -> Result<()> {
    let request_error = |key: &str, msg: String| Err(anyhow::Error::new(req.field_error(key, msg)).context("--request"));
    let rotation: Vec<&str> = [
        ("--rotate-bytes", args.rotate_bytes.is_some()),
        ("--rotate-seconds", args.rotate_seconds.is_some()),
        ("--max-files", args.max_files.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, given)| given.then_some(name))
    .collect();
    if cfg.output == Output::Stdout && !rotation.is_empty() {
        let need = if rotation.len() == 1 { "needs" } else { "need" };
        super::usage_error(&format!(
            "{} {need} an output file (-w FILE): rotated files cannot go to stdout (`-w -`)",
            rotation.join(" and ")
        ));
    }
    if args.max_files.is_some() && cfg.rotation.bytes.is_none() && args.rotate_seconds.is_none() {
        super::usage_error("--max-files needs --rotate-bytes or --rotate-seconds: the files it keeps are those rotation starts");
    }
    if let Some(ring) = ring {
        let r = &cfg.rotation;
        if cfg.output == Output::Stdout && (r.bytes.is_some() || r.max_files.is_some()) {
            return request_error(
                ring.key,
                "a continuous capture writes a ring of files: give an output file with -w FILE, not `-w -` (stdout)".into(),
            );
        }
        if args.rotate_bytes.is_none() && r.bytes.is_some_and(|b| b < live::MIN_ROTATE_BYTES) {
            let b = ring.file_size_in_bytes;
            return request_error(
                "captureSettings.fileSizeInBytes",
                format!(
                    "{b} is smaller than the smallest rotated file ({} bytes); 0 writes one file",
                    live::MIN_ROTATE_BYTES
                ),
            );
        }
    }
    let header = live::sink::header_len(cfg.format, &cfg.interface);
    if cfg.total_bytes > 0 && cfg.total_bytes < header {
        let format = match cfg.format {
            OutputFormat::Pcap => "pcap",
            OutputFormat::Pcapng => "pcapng",
        };
        let msg = format!("{} is smaller than the {format} file header ({header} bytes)", cfg.total_bytes);
        if args.total_bytes.is_some() {
            super::usage_error(&format!("--total-bytes {msg}"));
        }
        return request_error("totalBytesPerSession", msg);
    }
    Ok(())
}

/// Waits for the capture, keeping the status file and progress line up to date, then prints the final status.
fn finish_capture(cap: live::LiveCapture, status: &StatusWriter, output: &Output) -> Result<()> {
    let started = live::rfc3339(cap.start_time());
    status.write_file(&status.value(&started, "Running", None, &[], &cap.progress()))?;

    let tty = io::stderr().is_terminal();
    let t0 = Instant::now();
    let mut last = Instant::now();
    while !cap.is_finished() {
        std::thread::sleep(Duration::from_millis(50));
        if last.elapsed() >= Duration::from_secs(1) {
            last = Instant::now();
            let p = cap.progress();
            if !cap.is_finished() {
                status.write_file(&status.value(&started, "Running", None, &[], &p))?;
            }
            if tty {
                progress_line(&p, t0.elapsed());
            }
        }
    }
    let outcome = cap.wait();
    if tty {
        progress_line(&outcome.progress, t0.elapsed());
        eprintln!();
    }
    let (state, reason, errors, err) = match outcome.result {
        Ok(r) => ("Stopped", Some(r.as_str().to_string()), vec![], None),
        Err(e) => ("Error", Some(format!("{e}")), vec![e.azure_error()], Some(e)),
    };
    let v = status.value(&started, state, reason.as_deref(), &errors, &outcome.progress);
    status.write_file(&v)?;
    let text = serde_json::to_string_pretty(&v)?;
    if *output == Output::Stdout {
        eprintln!("{text}");
    } else {
        let mut out = io::stdout().lock();
        writeln!(out, "{text}")?;
    }
    match err {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

fn progress_line(p: &Progress, elapsed: Duration) {
    eprint!(
        "\r{} packets, {} bytes written, {} dropped by kernel, {:.0}s ",
        p.packets_captured,
        p.bytes_written,
        p.packets_dropped_by_kernel,
        elapsed.as_secs_f64()
    );
}

struct StatusWriter {
    name: String,
    id: Option<String>,
    file: Option<PathBuf>,
}

impl StatusWriter {
    /// A PacketCaptureQueryStatusResult with netwatch's counters.
    fn value(&self, started: &str, state: &str, reason: Option<&str>, errors: &[&str], p: &Progress) -> Value {
        let mut m = Map::new();
        m.insert("name".into(), json!(self.name));
        if let Some(id) = &self.id {
            m.insert("id".into(), json!(id));
        }
        m.insert("captureStartTime".into(), json!(started));
        m.insert("packetCaptureStatus".into(), json!(state));
        if let Some(r) = reason {
            m.insert("stopReason".into(), json!(r));
        }
        m.insert("packetCaptureError".into(), json!(errors));
        m.insert("packetsCaptured".into(), json!(p.packets_captured));
        m.insert("bytesWritten".into(), json!(p.bytes_written));
        m.insert("packetsDroppedByKernel".into(), json!(p.packets_dropped_by_kernel));
        m.insert("packetsDroppedByInterface".into(), json!(p.packets_dropped_by_interface));
        m.insert("files".into(), json!(p.files));
        Value::Object(m)
    }

    /// Writes the status file atomically (temporary file + rename).
    fn write_file(&self, v: &Value) -> Result<()> {
        let Some(path) = &self.file else { return Ok(()) };
        let mut tmp = path.as_os_str().to_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut text = serde_json::to_string_pretty(v)?;
        text.push('\n');
        std::fs::write(&tmp, text).with_context(|| format!("cannot write the status file {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot write the status file {}", path.display()))?;
        Ok(())
    }
}
