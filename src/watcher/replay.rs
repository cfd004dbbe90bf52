//! Replaying captures: read pcap/pcapng files, decode each packet, track
//! flows, and (for `evaluate`) decide each flow once with the NIC's NSG chain.
//!
//! The NIC's perspective (spec §13.3): packets from the NIC's addresses are
//! outbound, packets to them inbound. A flow is evaluated on its first
//! packet, in its initiator's direction; its return traffic shares the
//! verdict (NSGs are stateful, spec §1.3). A flow with neither end on the
//! NIC is transit.
//!
//! Reading and decoding run on a thread of their own ([`PacketStream`]), the
//! flow table on the caller's; a caller with slow preparations (`evaluate`
//! loads resources and compiles rules) lets that thread track the first
//! flows itself meanwhile ([`PacketStream::start_tracking`]).

use std::fs::File;
use std::io::{self, Read};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use netwatch_capture::decode::{decode_fast, decode_walk};
use netwatch_capture::{CaptureReader, DecodeOptions, FragmentTracker, LinkType, NotIp, PacketMeta};
use netwatch_flowlogs::table::ip_protocol;
use netwatch_flowlogs::{FlowRecord, FlowTable, FlowTableConfig, FlowTuple, IcmpInfo, PacketInfo};
use netwatch_rules::{Access, AddrSet, Direction, Flow, IpPrefix};
use thiserror::Error;

use super::context::NsgChain;

/// Errors replaying a capture.
#[derive(Debug, Error)]
pub enum ReplayError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: {source}", path.display())]
    Capture {
        path: PathBuf,
        source: netwatch_capture::ReadError,
    },
    #[error("{0}")]
    Config(String),
}

/// Where packets come from: a file, or `-` for standard input.
#[derive(Clone, Debug)]
pub enum CaptureInput {
    File(PathBuf),
    Stdin,
}

impl CaptureInput {
    /// `-` is standard input, anything else a path.
    pub fn parse(s: &str) -> Self {
        if s == "-" {
            CaptureInput::Stdin
        } else {
            CaptureInput::File(PathBuf::from(s))
        }
    }

    fn name(&self) -> PathBuf {
        match self {
            CaptureInput::File(p) => p.clone(),
            CaptureInput::Stdin => PathBuf::from("<stdin>"),
        }
    }
}

/// How to read and track.
#[derive(Clone, Debug, Default)]
pub struct ReplayOptions {
    /// Report the innermost packet of GRE/VXLAN/GENEVE tunnels.
    pub decap: bool,
    pub table: FlowTableConfig,
}

/// What reading the captures found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaptureStats {
    pub files: usize,
    pub packets: u64,
    /// IP packets accounted to flows: every frame with an IP packet once,
    /// also (with `decap`) a later fragment of a fragmented tunnel datagram,
    /// which is no packet of a flow of its own but the rest of the inner
    /// packet its first fragment was reported as.
    pub ip_packets: u64,
    /// Frames that carry no IP packet (ARP, STP, ...).
    pub non_ip_frames: u64,
    /// IP packets cut short by the capture (snaplen) or malformed.
    pub truncated_packets: u64,
    /// Warnings about damaged input, each naming file, packet and offset.
    pub warnings: Vec<String>,
    /// IP packets the decoding thread tracked itself before the caller took
    /// the flows over ([`PacketStream::start_tracking`]).
    pub tracked_early: u64,
}

/// Packets per batch handed from the decoding thread to the flow table:
/// about 64 KiB of [`PacketInfo`], which stays in cache between the two.
const BATCH: usize = 1024;
/// Batches in flight: bounds the memory between the two threads (32 x
/// 64 KiB = 2 MiB). `evaluate` tracks on the decoding thread while it loads
/// and compiles, so the decoding runs ahead only by what the flow thread
/// lags behind (the hand-over, a slow output); 256 measured the same.
const BATCHES_IN_FLIGHT: usize = 32;

/// Records of flows ended while the decoding thread tracks early, held
/// until the caller takes them over (~150 bytes each: ~10 MiB at most;
/// a capture whose flows end that fast while the rules compile is rare);
/// past it the thread waits.
const EARLY_RECORDS: usize = 1 << 16;

/// Emptied vectors handed back by the thread that consumed them, for the
/// thread that fills them to reuse. A stack, so that the vector reused next
/// is the one the other thread just finished with, still in cache (a queue
/// would cycle through every vector ever in flight, and refill each from
/// memory); and no allocation per batch: fresh batches fault in new pages,
/// and frees on the other thread trim the heap, an unmapping that flushes
/// both cores' TLBs.
pub struct Spares<T>(Arc<Mutex<Vec<Vec<T>>>>);

impl<T> Default for Spares<T> {
    fn default() -> Self {
        Spares(Arc::default())
    }
}

impl<T> Clone for Spares<T> {
    fn clone(&self) -> Self {
        Spares(self.0.clone())
    }
}

impl<T> Spares<T> {
    /// Keeps `v`, emptied, for [`Spares::take`].
    pub fn put(&self, mut v: Vec<T>) {
        v.clear();
        if let Ok(mut s) = self.0.lock() {
            s.push(v);
        }
    }

    /// An empty vector: the one put last, or a new one with room for `capacity`.
    pub fn take(&self, capacity: usize) -> Vec<T> {
        self.0
            .lock()
            .ok()
            .and_then(|mut s| s.pop())
            .unwrap_or_else(|| Vec::with_capacity(capacity))
    }
}

/// Emptied batch vectors, handed back to the decoding thread.
type SparePool = Spares<PacketInfo>;

/// What the decoding thread sends.
enum Event<T> {
    /// Decoded IP packets of input `input`, in file order.
    Packets {
        input: usize,
        packets: Vec<PacketInfo>,
        input_bytes: u64,
        packets_read: u64,
    },
    /// The end of an input (its warnings are in the final counts).
    InputDone { input: usize, input_bytes: u64, packets_read: u64 },
    /// The flows the decoding thread tracked itself before
    /// [`PacketStream::track`] was called (see
    /// [`PacketStream::start_tracking`]), and the records they gave, in
    /// order. Sent once, before any `Packets`.
    Handover {
        tracker: Box<Tracker<T>>,
        records: Vec<FlowRecord<T>>,
    },
}

/// One flow table over the inputs of a replay, in order.
struct Tracker<T> {
    table: FlowTable<T>,
    last_input: usize,
}

impl<T: Clone> Tracker<T> {
    fn new(config: FlowTableConfig) -> Result<Self, ReplayError> {
        Ok(Tracker {
            table: FlowTable::new(config).map_err(|e| ReplayError::Config(e.to_string()))?,
            last_input: 0,
        })
    }

    /// Tracks decoded packets of input `input`.
    fn packets(
        &mut self,
        input: usize,
        packets: &[PacketInfo],
        init: &mut impl FnMut(&FlowTuple) -> T,
        sink: &mut impl FnMut(FlowRecord<T>),
    ) -> Result<(), ReplayError> {
        // Inputs are read as one capture when they follow each other in
        // time (rotated files). An input that starts before the previous
        // ones ended is another capture: end their flows first, rather than
        // expire each of its packets against a clock from the future.
        if input != self.last_input {
            self.last_input = input;
            if packets.first().is_some_and(|p| p.ts_ns < self.table.now_ns()) {
                self.table.finish_each(&mut *sink);
                self.table = FlowTable::new(*self.table.config()).map_err(|e| ReplayError::Config(e.to_string()))?;
            }
        }
        self.table.observe_batch(packets, |t, _| init(t), sink);
        Ok(())
    }
}

/// Captures being read and decoded on their own thread, in order: the first
/// stage of a replay. Start it early (before loading resources, say) and
/// hand it to [`PacketStream::track`]. Dropping it stops the thread. `T` is
/// the user value of a flow (see [`replay`]).
pub struct PacketStream<T = ()> {
    events: Receiver<Result<Event<T>, ReplayError>>,
    recycle: SparePool,
    thread: Option<JoinHandle<CaptureStats>>,
    /// Set by [`PacketStream::track`] when the decoding thread tracks flows
    /// itself until then ([`PacketStream::start_tracking`]).
    handover: Option<Arc<AtomicBool>>,
}

impl<T: Clone + Send + 'static> PacketStream<T> {
    /// Starts reading `inputs` in order.
    pub fn start(inputs: &[CaptureInput], opts: &ReplayOptions) -> Self {
        Self::spawn(inputs, opts, None)
    }

    /// Starts reading `inputs` in order, and tracking their flows on the
    /// same thread until [`PacketStream::track`] is called, each flow with
    /// `placeholder` as its user value; the flows and their records so far
    /// are then handed over and their user values replaced by `track`'s
    /// `init` (which sees only the flow's tuple, so the result is the same
    /// as with [`PacketStream::start`]).
    ///
    /// For a caller with slow preparations of its own (`evaluate` loads the
    /// resources and compiles the rules, ~16 ms for 2k rules, more with the
    /// decoding beside it): both cores track flows meanwhile, where with
    /// [`PacketStream::start`] one of them would only queue decoded packets
    /// for later. `opts` must be those given to `track`.
    pub fn start_tracking(inputs: &[CaptureInput], opts: &ReplayOptions, placeholder: T) -> Self {
        Self::spawn(inputs, opts, Some(placeholder))
    }

    fn spawn(inputs: &[CaptureInput], opts: &ReplayOptions, placeholder: Option<T>) -> Self {
        let (tx, events) = mpsc::sync_channel(BATCHES_IN_FLIGHT);
        let recycle = SparePool::default();
        let spare = recycle.clone();
        let inputs = inputs.to_vec();
        let decap = opts.decap;
        let handover = placeholder.is_some().then(|| Arc::new(AtomicBool::new(false)));
        let early = match (&handover, placeholder) {
            (Some(flag), Some(placeholder)) => match Tracker::new(opts.table) {
                Ok(tracker) => Some(Early {
                    flag: flag.clone(),
                    tracker,
                    records: Vec::new(),
                    placeholder,
                }),
                Err(e) => return Self::failed(e, recycle),
            },
            _ => None,
        };
        let thread = thread::Builder::new()
            .name("netwatch-decode".into())
            .spawn(move || decode_inputs(&inputs, DecodeOptions { decap }, &tx, &spare, early));
        match thread {
            Ok(t) => PacketStream {
                events,
                recycle,
                thread: Some(t),
                handover,
            },
            Err(e) => Self::failed(ReplayError::Config(format!("cannot start the decoding thread: {e}")), recycle),
        }
    }

    /// A stream whose first event is `e`.
    fn failed(e: ReplayError, recycle: SparePool) -> Self {
        let (tx, events) = mpsc::sync_channel(1);
        let _ = tx.send(Err(e));
        PacketStream {
            events,
            recycle,
            thread: None,
            handover: None,
        }
    }

    /// Tracks the stream's packets through one flow table: see [`replay`].
    pub fn track<I, S, P>(mut self, opts: &ReplayOptions, mut init: I, mut sink: S, mut progress: P) -> Result<CaptureStats, ReplayError>
    where
        I: FnMut(&FlowTuple) -> T,
        S: FnMut(FlowRecord<T>),
        P: FnMut(ReplayProgress),
    {
        // Until the decoding thread hands its flows over, there is no table here.
        let mut tracker = match &self.handover {
            Some(flag) => {
                flag.store(true, Ordering::Release);
                None
            }
            None => Some(Tracker::new(opts.table)?),
        };
        while let Ok(event) = self.events.recv() {
            match event? {
                Event::Handover {
                    tracker: mut early,
                    records,
                } => {
                    if *early.table.config() != opts.table {
                        return Err(ReplayError::Config(
                            "PacketStream::start_tracking and track were given different flow table options".into(),
                        ));
                    }
                    let started = std::time::Instant::now();
                    let (flows, queued) = (early.table.len(), records.len());
                    for mut r in records {
                        r.user = init(&r.tuple);
                        sink(r);
                    }
                    early.table.for_each_user_mut(|t, user| *user = init(t));
                    tracker = Some(*early);
                    tracing::debug!(flows, records = queued, elapsed = ?started.elapsed(), "flows tracked on the decoding thread taken over");
                }
                Event::Packets {
                    input,
                    packets,
                    input_bytes,
                    packets_read,
                } => {
                    let Some(tracker) = tracker.as_mut() else {
                        return Err(ReplayError::Config("packets arrived before the decoding thread's flows".into()));
                    };
                    tracker.packets(input, &packets, &mut init, &mut sink)?;
                    progress(ReplayProgress {
                        input,
                        input_bytes,
                        packets: packets_read,
                    });
                    self.recycle.put(packets);
                }
                Event::InputDone {
                    input,
                    input_bytes,
                    packets_read,
                } => progress(ReplayProgress {
                    input,
                    input_bytes,
                    packets: packets_read,
                }),
            }
        }
        let stats = match self.thread.take().map(JoinHandle::join) {
            Some(Ok(stats)) => stats,
            Some(Err(_)) => return Err(ReplayError::Config("the decoding thread failed".into())),
            None => CaptureStats::default(),
        };
        let Some(Tracker { mut table, .. }) = tracker else {
            return Err(ReplayError::Config(
                "the decoding thread ended without handing its flows over".into(),
            ));
        };
        tracing::debug!(
            packets = stats.packets,
            tracked_early = stats.tracked_early,
            live_flows = table.len(),
            "capture read"
        );
        let ending = std::time::Instant::now();
        table.finish_each(&mut sink);
        tracing::debug!(elapsed = ?ending.elapsed(), "flows live at the end of the capture ended");
        Ok(stats)
    }
}

impl<T> Drop for PacketStream<T> {
    /// A stream dropped before [`PacketStream::track`] (the caller's
    /// preparations failed) stops its thread: one tracking early notices
    /// at its next batch, when its hand-over finds nobody listening; one
    /// decoding notices when it sends.
    fn drop(&mut self) {
        if let Some(flag) = &self.handover {
            flag.store(true, Ordering::Release);
        }
    }
}

/// The decoding thread: reads and decodes every input in order, sends the
/// IP packets in batches and returns the counts. Stops at the first error
/// (sent as an event) or when the receiver is gone.
fn decode_inputs<T: Clone>(
    inputs: &[CaptureInput],
    dopts: DecodeOptions,
    tx: &SyncSender<Result<Event<T>, ReplayError>>,
    spare: &SparePool,
    early: Option<Early<T>>,
) -> CaptureStats {
    let mut d = Decoder {
        dopts,
        tx,
        spare,
        stats: CaptureStats::default(),
        fragments: FragmentTracker::new(4096),
        early,
    };
    for (input, source) in inputs.iter().enumerate() {
        let last = input + 1 == inputs.len();
        let name = source.name();
        let capture = |source| ReplayError::Capture {
            path: name.clone(),
            source,
        };
        let more = match source {
            CaptureInput::File(p) => File::open(p)
                .map_err(|source| ReplayError::Io { path: p.clone(), source })
                .and_then(|f| CaptureReader::new(f).map_err(capture))
                .map(|r| d.run(input, last, &name, r)),
            CaptureInput::Stdin => CaptureReader::new(io::stdin())
                .map_err(capture)
                .map(|r| d.run(input, last, &name, r)),
        };
        match more {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                d.fail(e);
                break;
            }
        }
    }
    // Still tracking here (the caller was not ready): hand everything over.
    d.hand_over();
    tracing::debug!(packets = d.stats.packets, "capture decoded (decoding thread done)");
    d.stats
}

/// The decoding thread's own flow tracking, before the caller takes over
/// (see [`PacketStream::start_tracking`]).
struct Early<T> {
    /// Set when the caller is ready for the flows.
    flag: Arc<AtomicBool>,
    tracker: Tracker<T>,
    records: Vec<FlowRecord<T>>,
    /// The user value of flows until the caller gives theirs.
    placeholder: T,
}

/// Packets far earlier than one before them: flows are timed by the
/// latest packet time seen (the flow table's clock), so a packet from far
/// in the future (a damaged or rewritten timestamp) makes every later flow
/// look idle. Reported, with the first such packet's number and offset.
#[derive(Default)]
struct TimeOrder {
    latest: i64,
    first: Option<(u64, u64, i64)>,
    count: u64,
}

impl TimeOrder {
    /// Earlier than the latest time by more than this: longer than the
    /// shortest default idle timeout (1 minute), so it can split flows.
    const SLACK_NS: i64 = 60_000_000_000;

    #[inline(always)]
    fn check(&mut self, ts: i64, number: u64, offset: u64) {
        if ts < self.latest.saturating_sub(Self::SLACK_NS) {
            self.count += 1;
            self.first.get_or_insert((number, offset, self.latest - ts));
        }
        self.latest = self.latest.max(ts);
    }

    fn warning(&self) -> Option<String> {
        let (number, offset, behind) = self.first?;
        let more = match self.count {
            1 => String::new(),
            n => format!(" ({} more such packets)", n - 1),
        };
        Some(format!(
            "packet {number} at byte offset {offset}: time {:.3} s earlier than an earlier packet's; flows are timed by the latest time seen, so flows around it may be split or ended early{more}",
            behind as f64 / 1e9
        ))
    }
}

/// The decoding thread's state.
struct Decoder<'a, T> {
    dopts: DecodeOptions,
    tx: &'a SyncSender<Result<Event<T>, ReplayError>>,
    spare: &'a SparePool,
    stats: CaptureStats,
    fragments: FragmentTracker,
    early: Option<Early<T>>,
}

impl<T: Clone> Decoder<'_, T> {
    /// Hands a full (or an input's last) batch on: to the flow thread, or
    /// to this thread's own flow table while tracking early. False when
    /// the replay is to stop.
    fn flush(&mut self, input: usize, batch: &mut Vec<PacketInfo>, input_bytes: u64) -> bool {
        if let Some(Early {
            flag,
            tracker,
            records,
            placeholder,
        }) = &mut self.early
        {
            if let Err(e) = tracker.packets(input, batch, &mut |_| placeholder.clone(), &mut |r| records.push(r)) {
                self.fail(e);
                return false;
            }
            self.stats.tracked_early += batch.len() as u64;
            batch.clear();
            // Records wait here for their user values: past a bound, so
            // does this thread (as it would on a full channel).
            while records.len() >= EARLY_RECORDS && !flag.load(Ordering::Acquire) {
                thread::sleep(std::time::Duration::from_millis(1));
            }
            return !flag.load(Ordering::Acquire) || self.hand_over();
        }
        let packets = std::mem::replace(batch, self.batch());
        self.send(Ok(Event::Packets {
            input,
            packets,
            input_bytes,
            packets_read: self.stats.packets,
        }))
    }

    /// Ends the replay with `e`, after handing over what was tracked early:
    /// the caller gets the records of the packets before the error, as it
    /// would from batches.
    fn fail(&mut self, e: ReplayError) {
        if self.hand_over() {
            self.send(Err(e));
        }
    }

    /// Sends the early tracking's flows and records to the caller, if this
    /// thread is tracking; false when nobody listens any more.
    fn hand_over(&mut self) -> bool {
        match self.early.take() {
            Some(Early { tracker, records, .. }) => self.send(Ok(Event::Handover {
                tracker: Box::new(tracker),
                records,
            })),
            None => true,
        }
    }

    fn batch(&self) -> Vec<PacketInfo> {
        self.spare.take(BATCH)
    }

    fn send(&self, ev: Result<Event<T>, ReplayError>) -> bool {
        self.tx.send(ev).is_ok()
    }

    /// A frame the decoder's fast path does not cover, through the full
    /// walk: counts non-IP, truncated and malformed frames, and fills the
    /// ports of non-first fragments (holding back those that come before
    /// their first fragment). Adds what it decodes to `batch`; false for
    /// frames without an IP packet.
    #[inline(never)]
    fn decode_other(&mut self, ts_ns: i64, link: LinkType, data: &[u8], batch: &mut Vec<PacketInfo>) -> bool {
        let stats = &mut self.stats;
        let meta = match decode_walk(link, data, self.dopts) {
            Ok(m) => m,
            Err(NotIp::Truncated { .. }) => {
                stats.truncated_packets += 1;
                return false;
            }
            Err(_) => {
                stats.non_ip_frames += 1;
                return false;
            }
        };
        if meta.truncated || meta.malformed {
            stats.truncated_packets += 1;
        }
        // Fragments, and packets decapsulated out of a fragmented tunnel
        // datagram (the tracker tells them apart, and keeps back the later
        // fragments of such a datagram: the inner packet counts them);
        // others go straight on.
        self.fragments
            .process_in_order(ts_ns, meta, &mut |t, m| batch.push(packet_info(t, &m)));
        true
    }

    /// Decodes one input (`last`: the last of the run); false when the
    /// replay is to stop (an error was sent, or nobody listens any more).
    fn run<R: Read>(&mut self, input: usize, last: bool, name: &Path, mut reader: CaptureReader<R>) -> bool {
        self.stats.files += 1;
        let mut batch = self.batch();
        let mut offset = 0;
        let mut order = TimeOrder::default();
        while let Some(next) = reader.next_packet() {
            let pkt = match next {
                Ok(p) => p,
                Err(source) => {
                    self.fail(ReplayError::Capture {
                        path: name.to_path_buf(),
                        source,
                    });
                    return false;
                }
            };
            self.stats.packets += 1;
            offset = pkt.offset;
            order.check(pkt.timestamp_ns, pkt.number, pkt.offset);
            // The decoder's fast path covers the common frames, and what it
            // returns is complete, well-formed and not a fragment: nothing
            // to count or track. Built straight into the batch entry, the
            // metadata never goes through memory.
            match decode_fast(pkt.link_type, pkt.data) {
                Some(meta) => batch.push(packet_info(pkt.timestamp_ns, &meta)),
                None => {
                    if !self.decode_other(pkt.timestamp_ns, pkt.link_type, pkt.data, &mut batch) {
                        continue;
                    }
                }
            }
            self.stats.ip_packets += 1;
            if batch.len() >= BATCH {
                // Fragments held for a first fragment that never came go
                // on unattributed once their wait is over.
                if self.fragments.holds_fragments() {
                    let now = pkt.timestamp_ns;
                    self.fragments.expire(now, &mut |t, m| batch.push(packet_info(t, &m)));
                }
                if !self.flush(input, &mut batch, offset) {
                    return false;
                }
            }
        }
        // Fragments still waiting for their first one go on after the last
        // input (rotated files read as one capture can split a datagram).
        if last {
            self.fragments.release_all(&mut |t, m| batch.push(packet_info(t, &m)));
        }
        if let Some(w) = order.warning() {
            self.stats.warnings.push(format!("{}: {w}", name.display()));
        }
        let dropped = reader.warnings_dropped();
        for w in reader.take_warnings() {
            self.stats.warnings.push(format!("{}: {w}", name.display()));
        }
        if dropped > 0 {
            self.stats
                .warnings
                .push(format!("{}: {dropped} more warnings not shown", name.display()));
        }
        if !batch.is_empty() && !self.flush(input, &mut batch, offset) {
            return false;
        }
        self.send(Ok(Event::InputDone {
            input,
            input_bytes: reader.byte_offset(),
            packets_read: self.stats.packets,
        }))
    }
}

/// Reads every input in order through one flow table. `init` runs on each
/// new flow (its return value rides along in the records); `sink` gets every
/// record (begin, reports, end) in time order; `progress` gets each file's
/// byte offset now and then.
///
/// Reading and decoding run on a thread of their own ([`PacketStream`]),
/// the flow table and the callbacks on the caller's.
pub fn replay<T, I, S>(inputs: &[CaptureInput], opts: &ReplayOptions, init: I, sink: S) -> Result<CaptureStats, ReplayError>
where
    T: Clone + Send + 'static,
    I: FnMut(&FlowTuple) -> T,
    S: FnMut(FlowRecord<T>),
{
    replay_with_progress(inputs, opts, init, sink, |_| {})
}

/// Where a replay is, for progress displays.
#[derive(Clone, Copy, Debug)]
pub struct ReplayProgress {
    /// Index of the input being read.
    pub input: usize,
    /// Bytes of that input read so far.
    pub input_bytes: u64,
    /// Packets read so far, all inputs.
    pub packets: u64,
}

/// [`replay`], calling `progress` after every batch of packets and after
/// each input.
pub fn replay_with_progress<T, I, S, P>(
    inputs: &[CaptureInput],
    opts: &ReplayOptions,
    init: I,
    sink: S,
    progress: P,
) -> Result<CaptureStats, ReplayError>
where
    T: Clone + Send + 'static,
    I: FnMut(&FlowTuple) -> T,
    S: FnMut(FlowRecord<T>),
    P: FnMut(ReplayProgress),
{
    PacketStream::start(inputs, opts).track(opts, init, sink, progress)
}

/// What the flow table needs of a decoded packet.
pub fn packet_info(ts_ns: i64, meta: &PacketMeta) -> PacketInfo {
    PacketInfo {
        ts_ns,
        src: meta.src,
        dst: meta.dst,
        protocol: meta.protocol,
        src_port: meta.src_port,
        dst_port: meta.dst_port,
        icmp: meta.icmp.map(|i| IcmpInfo {
            icmp_type: i.icmp_type,
            code: i.code,
            id: i.echo_id.unwrap_or(0),
        }),
        tcp_flags: (meta.tcp_flags & 0xff) as u8,
        ip_len: meta.ip_total_len,
    }
}

/// A flow's NSG verdict from the NIC's perspective.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// `None` for transit: neither end is the NIC's.
    pub direction: Option<Direction>,
    pub access: Access,
    /// Deciding NSG (index into the direction's chain) and rule index.
    pub decided_by: Option<(u8, u32)>,
}

/// The NIC side of an evaluation: its addresses and its two compiled chains.
pub struct NicEvaluator<'e> {
    pub local: AddrSet,
    /// With `--local` (a capture replayed "as if" taken on the NIC): the
    /// NIC's private IPs, primary first. A flow's local end that is not one
    /// of them is judged as the NIC's address of its family, so that rules
    /// on the NIC's own address, its application security groups and
    /// `VirtualNetwork` see the NIC; the remote end keeps its address.
    /// Empty without `--local`.
    pub stand_in_for: Vec<IpAddr>,
    pub inbound: NsgChain<'e>,
    pub outbound: NsgChain<'e>,
}

impl NicEvaluator<'_> {
    /// The verdict of a flow with neither end on the NIC.
    pub const TRANSIT: Verdict = Verdict {
        direction: None,
        access: Access::Allow,
        decided_by: None,
    };

    /// Decides a new flow from its initiator's side.
    pub fn evaluate(&self, t: &FlowTuple) -> Verdict {
        let (dir, chain) = if self.local.contains(t.src) {
            (Direction::Outbound, &self.outbound)
        } else if self.local.contains(t.dst) {
            (Direction::Inbound, &self.inbound)
        } else {
            return Verdict {
                direction: None,
                access: Access::Allow,
                decided_by: None,
            };
        };
        // NSG rules filter ports for TCP and UDP only; other protocols are
        // portless to them (spec §1.1), whatever ports their flows carry.
        let (source_port, destination_port) = match t.protocol {
            ip_protocol::TCP | ip_protocol::UDP => (t.src_port, t.dst_port),
            _ => (0, 0),
        };
        let mut flow = Flow {
            protocol: t.protocol,
            source: t.src,
            source_port,
            destination: t.dst,
            destination_port,
        };
        let local_end = match dir {
            Direction::Outbound => &mut flow.source,
            Direction::Inbound => &mut flow.destination,
        };
        *local_end = self.as_nic(*local_end);
        let d = chain.decide(&flow.key());
        Verdict {
            direction: Some(dir),
            access: d.access,
            decided_by: d.decided_by.and_then(|v| v.rule_index.map(|r| (v.chain_index as u8, r as u32))),
        }
    }

    /// The address a flow's local end is judged as (see
    /// [`NicEvaluator::stand_in_for`]).
    fn as_nic(&self, ip: IpAddr) -> IpAddr {
        if self.stand_in_for.is_empty() || self.stand_in_for.contains(&ip) {
            return ip;
        }
        let same_family = |a: &&IpAddr| a.is_ipv4() == ip.is_ipv4();
        self.stand_in_for.iter().find(same_family).copied().unwrap_or(ip)
    }

    /// The deciding NSG's name and the qualified rule name of a verdict.
    pub fn names(&self, v: &Verdict) -> (Option<String>, Option<String>) {
        match (v.direction, v.decided_by) {
            (Some(d), Some((link, rule))) => {
                let chain = self.chain(d);
                (
                    chain.links.get(link as usize).map(|l| l.nsg.name.clone()),
                    chain.rule_name(link as usize, rule as usize),
                )
            }
            _ => (None, None),
        }
    }

    /// The deciding rule of a verdict in the flow-log spelling
    /// (`UserRule_x` / `DefaultRule_x`, spec §7.1), as IPFIX exports it.
    pub fn flow_log_rule_name(&self, v: &Verdict) -> Option<String> {
        let (d, (link, rule)) = (v.direction?, v.decided_by?);
        self.chain(d).rule(link as usize, rule as usize).map(|r| r.flow_log_name())
    }

    /// The chain of a direction.
    pub fn chain(&self, d: Direction) -> &NsgChain<'_> {
        match d {
            Direction::Inbound => &self.inbound,
            Direction::Outbound => &self.outbound,
        }
    }
}

/// Parses `--local` values: CIDR prefixes or single addresses.
pub fn parse_local(list: &[String]) -> Result<AddrSet, String> {
    let mut v = Vec::new();
    for s in list {
        let p = s
            .parse::<IpPrefix>()
            .map_err(|_| format!("--local {s:?} is not an IP address or CIDR prefix"))?;
        // As tcpdump's `net`: a prefix with host bits set is a mistake
        // (the address alone, or the network, was meant).
        if let (Some(network), Some((addr, _))) = (p.host_bits_network(s), s.split_once('/')) {
            return Err(format!(
                "--local {s:?} has host bits set: use {network} for the network, or {addr} for the address alone"
            ));
        }
        v.push(p);
    }
    Ok(AddrSet::from_prefixes(v))
}

/// The NIC's own addresses.
pub fn nic_addresses(nic: &crate::azure::NetworkInterface) -> AddrSet {
    host_addresses(nic.ip_configurations.iter().filter_map(|c| c.private_ip_address))
}

/// Single addresses as a set of host prefixes.
pub fn host_addresses(ips: impl IntoIterator<Item = IpAddr>) -> AddrSet {
    AddrSet::from_prefixes(
        ips.into_iter()
            .filter_map(|ip| IpPrefix::new(ip, if ip.is_ipv4() { 32 } else { 128 })),
    )
}
