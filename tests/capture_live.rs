//! `netwatch capture` on the loopback interface, against traffic the tests
//! send themselves (TCP and UDP over 127.0.0.1 on ephemeral ports) and against
//! tcpdump capturing the same traffic with the equivalent expression.
//!
//! These tests need root (or CAP_NET_RAW + CAP_NET_ADMIN), tcpdump and tshark:
//! they FAIL (never skip) without them — run `make test` as root.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_netwatch");

fn require_root_and_tools() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?")
        .to_string();
    assert_eq!(
        uid, "0",
        "the live capture tests capture on `lo` and need root (CAP_NET_RAW and CAP_NET_ADMIN): run `make test` as root"
    );
    for tool in ["tcpdump", "tshark"] {
        let ok = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        assert!(
            ok.is_ok_and(|s| s.success()),
            "{tool} is missing: the live capture tests compare with it; run `make test` as root (it installs tcpdump and tshark)"
        );
    }
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("netwatch-capture-live-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn sigint(child: &Child) {
    let st = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(st.success());
}

/// A running `netwatch capture -i lo`; killed if the test fails before stopping it.
struct NwCapture {
    child: Option<Child>,
    out: PathBuf,
    status: PathBuf,
    ready_at: Instant,
}

impl NwCapture {
    fn start(dir: &Path, name: &str, args: &[&str]) -> Self {
        let out = dir.join(format!("{name}.pcap"));
        let status = dir.join(format!("{name}.status.json"));
        let child = Command::new(BIN)
            .args(["capture", "-i", "lo", "-w"])
            .arg(&out)
            .arg("--status-file")
            .arg(&status)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn netwatch");
        let mut nw = NwCapture {
            child: Some(child),
            out,
            status,
            ready_at: Instant::now(),
        };
        // Ready when the status file appears: the interface is open and the filter set.
        let t0 = Instant::now();
        while !nw.status.exists() {
            if let Some(st) = nw.child().try_wait().unwrap() {
                let mut e = String::new();
                nw.child().stderr.take().unwrap().read_to_string(&mut e).unwrap();
                panic!("netwatch capture exited early ({st}): {e}");
            }
            assert!(t0.elapsed() < Duration::from_secs(20), "netwatch capture did not start within 20 s");
            thread::sleep(Duration::from_millis(10));
        }
        nw.ready_at = Instant::now();
        nw
    }

    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("the capture is running")
    }

    /// Waits for the process to end by itself (a limit), within `timeout`.
    fn wait(mut self, timeout: Duration) -> (Value, Output, PathBuf) {
        let t0 = Instant::now();
        while self.child().try_wait().unwrap().is_none() {
            if t0.elapsed() > timeout {
                sigint(self.child());
                let o = self.child.take().unwrap().wait_with_output().unwrap();
                panic!(
                    "netwatch capture did not stop within {timeout:?}: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
            }
            thread::sleep(Duration::from_millis(5));
        }
        self.collect()
    }

    /// SIGINT, then the final status.
    fn interrupt(mut self) -> (Value, Output, PathBuf) {
        sigint(self.child());
        self.collect()
    }

    fn collect(mut self) -> (Value, Output, PathBuf) {
        let o = self.child.take().unwrap().wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "status JSON on stdout: {e}: {text:?}; stderr: {}",
                String::from_utf8_lossy(&o.stderr)
            )
        });
        // The status file holds the same final status.
        let file: Value = serde_json::from_str(&std::fs::read_to_string(&self.status).unwrap()).unwrap();
        assert_eq!(file, v);
        (v, o, self.out.clone())
    }
}

impl Drop for NwCapture {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A running `tcpdump -i lo -w FILE EXPR`, the reference; killed if the test fails before stopping it.
struct Tcpdump {
    child: Child,
    out: PathBuf,
    stderr: Option<thread::JoinHandle<String>>,
}

impl Tcpdump {
    fn start(dir: &Path, name: &str, expr: &str) -> Self {
        let out = dir.join(format!("{name}.ref.pcap"));
        let child = Command::new("tcpdump")
            .args(["-i", "lo", "--immediate-mode", "-B", "32768", "-U", "-nn", "-w"])
            .arg(&out)
            .arg(expr)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tcpdump");
        let mut td = Tcpdump { child, out, stderr: None };
        // tcpdump says "listening on lo" once its filter is installed.
        let mut err = BufReader::new(td.child.stderr.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            let n = err.read_line(&mut line).unwrap();
            assert!(n > 0, "tcpdump exited before listening");
            if line.contains("listening on") {
                break;
            }
        }
        // Keep draining its stderr so it never blocks; it ends with the statistics.
        td.stderr = Some(thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        }));
        td
    }

    /// Stops it; the reference must not have dropped packets itself.
    fn stop(mut self) -> PathBuf {
        sigint(&self.child);
        self.child.wait().unwrap();
        let err = self.stderr.take().unwrap().join().unwrap();
        assert!(
            err.lines().any(|l| l.trim() == "0 packets dropped by kernel"),
            "the reference tcpdump dropped packets: {err}"
        );
        self.out.clone()
    }
}

impl Drop for Tcpdump {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `tcpdump -r FILE -nn [EXPR]`: the number of packets; the file must read
/// completely (exit 0, no "truncated" warning).
fn tcpdump_count(file: &Path, expr: &str) -> usize {
    let mut cmd = Command::new("tcpdump");
    cmd.args(["-r"]).arg(file).args(["-nn"]);
    if !expr.is_empty() {
        cmd.arg(expr);
    }
    let o = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "tcpdump -r {} failed: {err}", file.display());
    assert!(!err.contains("truncated"), "tcpdump -r {}: {err}", file.display());
    String::from_utf8_lossy(&o.stdout).lines().count()
}

/// The records of a pcap file: (caplen, orig_len); checks the header.
fn pcap_records(bytes: &[u8]) -> (u32, Vec<(u32, u32)>) {
    assert!(bytes.len() >= 24, "no pcap header");
    let u32at = |o: usize| u32::from_ne_bytes(bytes[o..o + 4].try_into().unwrap());
    assert_eq!(u32at(0), 0xa1b2_c3d4, "pcap magic");
    let snaplen = u32at(16);
    let mut recs = Vec::new();
    let mut off = 24;
    while off < bytes.len() {
        assert!(off + 16 <= bytes.len(), "truncated record header at {off}");
        let (caplen, len) = (u32at(off + 8), u32at(off + 12));
        off += 16 + caplen as usize;
        assert!(off <= bytes.len(), "truncated record data");
        recs.push((caplen, len));
    }
    (snaplen, recs)
}

/// Reads a capture with netwatch's own reader: the packet count, no warnings.
fn reader_count(file: &Path) -> u64 {
    let mut r = netwatch_capture::CaptureReader::open(file).expect("netwatch reader opens the capture");
    let mut n = 0;
    while let Some(p) = r.next_packet() {
        p.expect("netwatch reader reads every record");
        n += 1;
    }
    assert!(r.warnings().is_empty(), "reader warnings on {}: {:?}", file.display(), r.warnings());
    n
}

/// UDP receivers on `n` ephemeral ports.
fn udp_receivers(n: usize) -> Vec<UdpSocket> {
    (0..n).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect()
}

fn port(s: &UdpSocket) -> u16 {
    s.local_addr().unwrap().port()
}

/// Two adjacent free UDP ports (for the port-range form).
fn adjacent_udp_pair() -> (UdpSocket, UdpSocket) {
    for _ in 0..200 {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = port(&a);
        if p == u16::MAX {
            continue;
        }
        if let Ok(b) = UdpSocket::bind(("127.0.0.1", p + 1)) {
            return (a, b);
        }
    }
    panic!("no two adjacent free UDP ports");
}

/// Sends `count` datagrams of `size` bytes to each port, a little apart.
fn send_udp(ports: &[u16], count: usize, size: usize) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let payload = vec![0x5a; size];
    for _ in 0..count {
        for p in ports {
            s.send_to(&payload, ("127.0.0.1", *p)).unwrap();
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// Checks the receivers got `count` datagrams each (the traffic really happened).
fn drain(rx: &[&UdpSocket], count: usize) {
    let mut buf = [0u8; 2048];
    for s in rx {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        for _ in 0..count {
            s.recv(&mut buf).expect("datagram received");
        }
    }
}

/// A TCP exchange with a listener: connect, `rounds` request/response pairs, close.
fn tcp_exchange(listener: TcpListener, rounds: usize) {
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 100];
        for _ in 0..rounds {
            s.read_exact(&mut buf).unwrap();
            s.write_all(&buf).unwrap();
        }
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
    });
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_nodelay(true).unwrap();
    let mut buf = [7u8; 100];
    for _ in 0..rounds {
        c.write_all(&buf).unwrap();
        c.read_exact(&mut buf).unwrap();
    }
    c.shutdown(Shutdown::Both).unwrap();
    server.join().unwrap();
}

/// A UDP flood to `port` until `stop` is raised (1 datagram a millisecond).
fn flood(port: u16, size: usize, stop: Arc<AtomicBool>) -> thread::JoinHandle<u64> {
    thread::spawn(move || {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let payload = vec![0xa5; size];
        let mut n = 0;
        let t0 = Instant::now();
        while !stop.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(20) {
            let _ = s.send_to(&payload, ("127.0.0.1", port));
            n += 1;
            thread::sleep(Duration::from_millis(1));
        }
        n
    })
}

fn settle() {
    thread::sleep(Duration::from_millis(300));
}

#[test]
fn filters_select_exactly_what_tcpdump_selects() {
    require_root_and_tools();
    let dir = tmpdir("filters");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let sp = listener.local_addr().unwrap().port();
    let rx = udp_receivers(3);
    let (u1, u2, u_other) = (port(&rx[0]), port(&rx[1]), port(&rx[2]));
    let (ra, rb) = adjacent_udp_pair();
    let (pa, pb) = (port(&ra), port(&rb));

    // Single address + single port; list of ports; address range + port range;
    // and an IP list: four filters OR'd.
    let f1 = format!("protocol=TCP,localIPAddress=127.0.0.1,localPort={sp}");
    let f2 = format!("protocol=UDP,remotePort={u1};{u2};");
    let f3 = format!("Protocol=udp,REMOTEIPADDRESS=127.0.0.0-127.0.0.3,remotePort={pa}-{pb}");
    let f4 = format!("protocol=TCP,localIPAddress=127.0.0.1;10.9.9.9;,remotePort={u1}");
    let nw = NwCapture::start(
        &dir,
        "filters",
        &["--filter", &f1, "--filter", &f2, "--filter", &f3, "--filter", &f4],
    );
    let reference = Tcpdump::start(
        &dir,
        "filters",
        &format!("(tcp and port {sp}) or (udp and (port {u1} or port {u2})) or (udp and portrange {pa}-{pb}) or (tcp and port {u1})"),
    );

    tcp_exchange(listener, 5);
    send_udp(&[u1, u2, u_other, pa, pb], 4, 64);
    // TCP to a UDP-only port: refused (SYN + RST); it matches f4 (TCP, remote port u1) only.
    assert!(TcpStream::connect(("127.0.0.1", u1)).is_err());
    drain(&[&rx[0], &rx[1], &rx[2], &ra, &rb], 4);
    settle();

    let ref_file = reference.stop();
    let (status, _, out) = nw.interrupt();
    assert_eq!(status["stopReason"], "ManualStop");
    assert_eq!(status["packetCaptureStatus"], "Stopped");

    let ours = tcpdump_count(&out, "");
    assert_eq!(ours as u64, status["packetsCaptured"].as_u64().unwrap());
    assert_eq!(
        ours,
        tcpdump_count(&ref_file, ""),
        "same packets as tcpdump with the equivalent expression"
    );
    // Per filter form.
    let tcp = tcpdump_count(&out, &format!("tcp and port {sp}"));
    assert!(tcp >= 10, "the TCP exchange ({tcp} packets)");
    assert_eq!(tcp, tcpdump_count(&ref_file, &format!("tcp and port {sp}")));
    for p in [u1, u2, pa, pb] {
        assert_eq!(tcpdump_count(&out, &format!("udp and dst port {p}")), 4, "UDP to {p}");
    }
    assert_eq!(tcpdump_count(&out, &format!("udp and port {u_other}")), 0, "UDP no filter wants");
    assert_eq!(
        tcpdump_count(&out, &format!("tcp and port {u1}")),
        2,
        "refused TCP SYN + RST (filter 4)"
    );
    assert_eq!(ours, tcp + 16 + 2, "nothing else");
    assert_eq!(reader_count(&out), ours as u64, "netwatch's reader reads the same packets");
}

#[test]
fn filters_file_and_request_file() {
    require_root_and_tools();
    let dir = tmpdir("json");
    let rx = udp_receivers(3);
    let (u1, u2, u3) = (port(&rx[0]), port(&rx[1]), port(&rx[2]));
    let filters = dir.join("filters.json");
    std::fs::write(
        &filters,
        format!(r#"[{{"protocol": "UDP", "localPort": "{u1}"}}, {{"protocol": "UDP", "remotePort": {u2}}}]"#),
    )
    .unwrap();
    let request = dir.join("request.json");
    let req_out = dir.join("from-request.pcap");
    std::fs::write(
        &request,
        format!(
            r#"{{"name": "pc1", "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkWatchers/nw/packetCaptures/pc1",
               "properties": {{"target": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1",
                 "bytesToCapturePerPacket": 50, "totalBytesPerSession": 100000, "timeLimitInSeconds": 100,
                 "storageLocation": {{"filePath": "{}"}},
                 "filters": [{{"protocol": "UDP", "remoteIPAddress": "127.0.0.1", "remotePort": "{u3}"}}]}}}}"#,
            req_out.display()
        ),
    )
    .unwrap();

    let a = NwCapture::start(&dir, "filters-file", &["--filters", filters.to_str().unwrap()]);
    // The request names the output file; --status-file is still ours.
    let b_status = dir.join("request.status.json");
    let b = Command::new(BIN)
        .args(["capture", "-i", "lo", "--request"])
        .arg(&request)
        .arg("--status-file")
        .arg(&b_status)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !b_status.exists() {
        assert!(t0.elapsed() < Duration::from_secs(20), "capture from the request did not start");
        thread::sleep(Duration::from_millis(10));
    }

    send_udp(&[u1, u2, u3], 3, 200);
    drain(&[&rx[0], &rx[1], &rx[2]], 3);
    settle();
    let (st, _, out) = a.interrupt();
    assert_eq!(st["packetsCaptured"], 6);
    assert_eq!(tcpdump_count(&out, &format!("udp and (dst port {u1} or dst port {u2})")), 6);

    sigint(&b);
    let o = b.wait_with_output().unwrap();
    let st: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(st["name"], "pc1");
    assert!(st["id"].as_str().unwrap().ends_with("/packetCaptures/pc1"));
    assert_eq!(st["packetsCaptured"], 3);
    let (snaplen, recs) = pcap_records(&std::fs::read(&req_out).unwrap());
    assert_eq!(snaplen, 50);
    assert_eq!(recs.len(), 3);
    assert!(recs.iter().all(|&(c, l)| c == 50 && l == 14 + 20 + 8 + 200), "{recs:?}");
}

/// A `--filters` file's values of the wrong JSON type are errors naming
/// the file and JSON path, exit 1, before anything is captured: a
/// `properties` that is not an object, or an object without `filters`,
/// made --filters take the `filters` beside it (a request whose properties
/// hold no filters captures everything), and a number was taken for a
/// protocol or an address, then refused as the string it made.
#[test]
fn filters_file_errors_name_the_json_path() {
    let dir = tmpdir("filters-types");
    let file = dir.join("filters.json");
    let out = dir.join("unused.pcap");
    let filters = |json: &str| {
        std::fs::write(&file, json).unwrap();
        Command::new(BIN)
            .args(["capture", "-i", "lo", "--print-bpf", "--local-ip", "10.0.0.3", "-w"])
            .arg(&out)
            .arg("--filters")
            .arg(&file)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    for (json, want) in [
        (
            r#"{"properties": "x", "filters": [{"protocol": "UDP"}]}"#,
            "properties: expected an object, found a string",
        ),
        (
            r#"{"properties": {"filters": null}, "filters": [{"protocol": "UDP"}]}"#,
            "properties.filters: expected an array of filters, found null",
        ),
        (
            r#"{"properties": {"timeLimitInSeconds": 5}, "filters": [{"protocol": "UDP"}]}"#,
            "properties.filters: not given; expected an array of filters",
        ),
        (r#"[{"protocol": 6}]"#, "[0].protocol: expected a string, found a number"),
        (
            r#"[{"protocol": "TCP"}, {"localIPAddress": 167772161}]"#,
            "[1].localIPAddress: expected a string, found a number",
        ),
        (
            r#"[{"protocol": "UDP"}, "protocol=TCP"]"#,
            "[1]: expected a filter object, found a string",
        ),
        (
            r#"[{"remotePort": false}]"#,
            "[0].remotePort: expected a string or a port number, found a boolean",
        ),
        (
            r#"{"filters": {"protocol": "TCP"}}"#,
            "filters: expected an array of filters, found an object",
        ),
    ] {
        let o = filters(json);
        assert_eq!(file_option_error(&o, "--filters", &file), want, "{json}");
        assert!(o.stdout.is_empty() && !out.exists(), "{json}: nothing printed or captured");
    }
    // Where a request holds them; a port may be a number; null is "not given".
    for json in [
        r#"[{"protocol": "UDP", "localPort": 53, "remotePort": null}]"#,
        r#"{"properties": {"filters": [{"protocol": "UDP", "localPort": "53"}]}}"#,
        r#"{"properties": null, "filters": [{"protocol": "UDP", "localPort": "53"}]}"#,
    ] {
        let o = filters(json);
        assert!(o.status.success(), "{json}: {}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim_end(),
            "udp and ((src host 10.0.0.3 and src port 53) or (dst host 10.0.0.3 and dst port 53))",
            "{json}"
        );
    }
}

#[test]
fn bytes_per_packet_truncates_each_record() {
    require_root_and_tools();
    let dir = tmpdir("snap");
    let rx = udp_receivers(1);
    let u = port(&rx[0]);
    let nw = NwCapture::start(
        &dir,
        "snap",
        &["--bytes-per-packet", "60", "--filter", &format!("protocol=UDP,localPort={u}")],
    );
    send_udp(&[u], 5, 400);
    drain(&[&rx[0]], 5);
    settle();
    let (st, _, out) = nw.interrupt();
    assert_eq!(st["packetsCaptured"], 5);
    let bytes = std::fs::read(&out).unwrap();
    let (snaplen, recs) = pcap_records(&bytes);
    assert_eq!(snaplen, 60);
    assert_eq!(recs, vec![(60, 14 + 20 + 8 + 400); 5]);
    assert_eq!(st["bytesWritten"].as_u64().unwrap(), bytes.len() as u64);
    assert_eq!(tcpdump_count(&out, ""), 5);
}

#[test]
fn total_bytes_is_never_exceeded() {
    require_root_and_tools();
    let dir = tmpdir("total");
    let rx = udp_receivers(1);
    let u = port(&rx[0]);
    // Each record: 16 + 14 + 20 + 8 + 100 = 158 bytes; 24 + 6 * 158 = 972 <= 1000 < 1130.
    let nw = NwCapture::start(
        &dir,
        "total",
        &["--total-bytes", "1000", "--filter", &format!("protocol=UDP,remotePort={u}")],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let f = flood(u, 100, Arc::clone(&stop));
    let (st, _, out) = nw.wait(Duration::from_secs(15));
    stop.store(true, Ordering::Relaxed);
    f.join().unwrap();
    assert_eq!(st["stopReason"], "SessionBytesExceeded");
    let len = std::fs::metadata(&out).unwrap().len();
    assert!(len <= 1000, "file is {len} bytes");
    assert_eq!(len, 972);
    assert_eq!(st["bytesWritten"], 972);
    assert_eq!(st["packetsCaptured"], 6);
    assert_eq!(tcpdump_count(&out, ""), 6);
}

#[test]
fn time_limit_stops_within_a_second() {
    require_root_and_tools();
    let dir = tmpdir("time");
    let spawned = Instant::now();
    let nw = NwCapture::start(&dir, "time", &["--time-limit", "2", "--filter", "protocol=UDP,localPort=9"]);
    let ready = nw.ready_at;
    // Stopped when the status file says so (the output is complete then; the
    // process may take a moment longer to free the kernel ring on a busy machine).
    let status = nw.status.clone();
    let stopped_after = loop {
        let text = std::fs::read_to_string(&status).unwrap_or_default();
        if text.contains("\"Stopped\"") {
            break ready.elapsed();
        }
        assert!(ready.elapsed() < Duration::from_secs(10), "not stopped after 10 s: {text}");
        thread::sleep(Duration::from_millis(5));
    };
    let (st, _, out) = nw.wait(Duration::from_secs(10));
    let since_spawn = spawned.elapsed();
    assert_eq!(st["stopReason"], "TimeExceeded");
    assert!(since_spawn >= Duration::from_secs(2), "stopped after {since_spawn:?}");
    assert!(
        stopped_after <= Duration::from_secs(3),
        "stopped {stopped_after:?} after it was ready"
    );
    assert_eq!(tcpdump_count(&out, ""), 0);
    assert!(st["captureStartTime"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn count_stops_at_n_packets() {
    require_root_and_tools();
    let dir = tmpdir("count");
    let rx = udp_receivers(1);
    let u = port(&rx[0]);
    let nw = NwCapture::start(
        &dir,
        "count",
        &["--count", "5", "--filter", &format!("protocol=UDP,remotePort={u}")],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let f = flood(u, 32, Arc::clone(&stop));
    let (st, _, out) = nw.wait(Duration::from_secs(15));
    stop.store(true, Ordering::Relaxed);
    f.join().unwrap();
    assert_eq!(st["stopReason"], "PacketCountReached");
    assert_eq!(st["packetsCaptured"], 5);
    assert_eq!(tcpdump_count(&out, ""), 5);
}

#[test]
fn sigint_leaves_a_complete_file() {
    require_root_and_tools();
    let dir = tmpdir("sigint");
    let rx = udp_receivers(1);
    let u = port(&rx[0]);
    let nw = NwCapture::start(&dir, "sigint", &["--filter", &format!("protocol=UDP,remotePort={u}")]);
    let stop = Arc::new(AtomicBool::new(false));
    let f = flood(u, 700, Arc::clone(&stop));
    // Wait until packets are being written (the status file is updated once a second).
    let t0 = Instant::now();
    loop {
        let st: Value = serde_json::from_str(&std::fs::read_to_string(&nw.status).unwrap()).unwrap_or(Value::Null);
        if st["packetsCaptured"].as_u64().unwrap_or(0) >= 10 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(15), "no packets captured: {st}");
        thread::sleep(Duration::from_millis(20));
    }
    // Interrupted while packets are still flowing.
    let (st, o, out) = nw.interrupt();
    stop.store(true, Ordering::Relaxed);
    f.join().unwrap();
    assert!(o.status.success(), "exit status {}", o.status);
    assert_eq!(st["stopReason"], "ManualStop");
    assert_eq!(st["packetCaptureError"], serde_json::json!([]));
    let n = st["packetsCaptured"].as_u64().unwrap();
    assert!(n > 10, "{n} packets");
    assert_eq!(tcpdump_count(&out, "") as u64, n);
    assert_eq!(reader_count(&out), n);
    assert_eq!(std::fs::metadata(&out).unwrap().len(), st["bytesWritten"].as_u64().unwrap());
}

#[test]
fn pcapng_reads_in_tshark() {
    require_root_and_tools();
    let dir = tmpdir("pcapng");
    let rx = udp_receivers(1);
    let u = port(&rx[0]);
    let nw = NwCapture::start(
        &dir,
        "ng",
        &[
            "--format",
            "pcapng",
            "--bytes-per-packet",
            "61",
            "--filter",
            &format!("protocol=UDP,remotePort={u}"),
        ],
    );
    send_udp(&[u], 7, 123);
    drain(&[&rx[0]], 7);
    settle();
    let (st, _, out) = nw.interrupt();
    assert_eq!(st["packetsCaptured"], 7);
    let o = Command::new("tshark")
        .arg("-r")
        .arg(&out)
        .args([
            "-T",
            "fields",
            "-e",
            "frame.len",
            "-e",
            "frame.cap_len",
            "-e",
            "udp.dstport",
            "-e",
            "frame.interface_name",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "tshark: {}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 7, "{text}");
    for l in lines {
        let f: Vec<&str> = l.split('\t').collect();
        assert_eq!(&f[..4], &["165", "61", &u.to_string(), "lo"], "{l}");
    }
    assert_eq!(reader_count(&out), 7);
    assert_eq!(std::fs::metadata(&out).unwrap().len(), st["bytesWritten"].as_u64().unwrap());
}

#[test]
fn rotation_by_size_keeps_each_file_complete_and_small() {
    require_root_and_tools();
    let dir = tmpdir("rotate");
    let rx = udp_receivers(1);
    let u = port(&rx[0]);
    let nw = NwCapture::start(
        &dir,
        "rot",
        &[
            "--rotate-bytes",
            "1000",
            "--max-files",
            "3",
            "--count",
            "40",
            "--filter",
            &format!("protocol=UDP,remotePort={u}"),
        ],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let f = flood(u, 100, Arc::clone(&stop));
    let (st, _, out) = nw.wait(Duration::from_secs(15));
    stop.store(true, Ordering::Relaxed);
    f.join().unwrap();
    assert_eq!(st["stopReason"], "PacketCountReached");
    let names = [
        out.clone(),
        PathBuf::from(format!("{}.1", out.display())),
        PathBuf::from(format!("{}.2", out.display())),
    ];
    for p in &names {
        let len = std::fs::metadata(p).unwrap_or_else(|_| panic!("{} exists", p.display())).len();
        assert!(len <= 1000, "{} is {len} bytes", p.display());
        let n = tcpdump_count(p, "");
        assert!((1..=6).contains(&n), "{}: {n} packets", p.display());
    }
    assert!(!PathBuf::from(format!("{}.3", out.display())).exists(), "at most 3 files");
    assert!(st["files"].as_u64().unwrap() > 3, "the ring wrapped: {st}");
}

#[test]
fn stdout_output_and_status_on_stderr() {
    require_root_and_tools();
    let rx = udp_receivers(1);
    let u = port(&rx[0]);
    let mut child = Command::new(BIN)
        .args([
            "capture",
            "-i",
            "lo",
            "-w",
            "-",
            "--count",
            "3",
            "--filter",
            &format!("protocol=UDP,remotePort={u}"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The pcap header comes first, as soon as the capture is ready.
    let mut stdout = child.stdout.take().unwrap();
    let reader = thread::spawn(move || {
        let mut v = Vec::new();
        stdout.read_to_end(&mut v).unwrap();
        v
    });
    let stop = Arc::new(AtomicBool::new(false));
    let f = flood(u, 50, Arc::clone(&stop));
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(t0.elapsed() < Duration::from_secs(15), "no stop");
        thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    f.join().unwrap();
    let bytes = reader.join().unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let (_, recs) = pcap_records(&bytes);
    assert_eq!(recs.len(), 3);
    let st: Value = serde_json::from_str(&err).unwrap_or_else(|e| panic!("status on stderr: {e}: {err}"));
    assert_eq!(st["stopReason"], "PacketCountReached");
}

#[test]
fn clear_errors() {
    require_root_and_tools();
    let dir = tmpdir("errors");
    let out = dir.join("x.pcap");
    let run = |args: &[&str]| Command::new(BIN).arg("capture").args(args).output().unwrap();

    let o = run(&["-i", "no-such-if0", "-w", out.to_str().unwrap()]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.starts_with("error: no such interface \"no-such-if0\"; interfaces: "), "{e}");
    assert!(e.contains("lo"), "{e}");

    let o = run(&[
        "-i",
        "lo",
        "-w",
        out.to_str().unwrap(),
        "--filter",
        "protocol=TCP",
        "--filter",
        "localPort=80-",
    ]);
    // A usage error (clap's), naming the value and what was wrong with it.
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.starts_with(r#"error: invalid value 'localPort=80-' for '--filter <FILTER>': "localPort=80-": "80-" is not a port, a range a-b or a list a;b;"#),
        "{e}"
    );

    let o = run(&["-i", "lo", "-w", out.to_str().unwrap(), "--bpf", "tcp and and"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).starts_with("error: the capture filter does not compile"));

    let o = run(&["-i", "lo", "-w", out.to_str().unwrap(), "--time-limit", "18001"]);
    assert_eq!(o.status.code(), Some(2), "usage error");
    let o = run(&["-i", "lo", "-w", out.to_str().unwrap(), "--bytes-per-packet", "4294967296"]);
    assert_eq!(o.status.code(), Some(2), "usage error");
    // No interface; flow logs without the resources that judge the flows.
    let o = run(&["-w", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "usage error: {}", String::from_utf8_lossy(&o.stderr));
    let o = run(&["-i", "lo", "-w", out.to_str().unwrap(), "--flow-logs", "/tmp/never-written"]);
    assert_eq!(o.status.code(), Some(2), "usage error: {}", String::from_utf8_lossy(&o.stderr));

    // Without the capabilities (as nobody, all capabilities dropped).
    let o = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(BIN)
        .args(["capture", "-i", "lo", "-w", "/dev/null"])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("CAP_NET_RAW") && e.contains("root"), "{e}");
    assert!(!out.exists());
}

#[test]
fn print_bpf() {
    let o = Command::new(BIN)
        .args(["capture", "--print-bpf", "--local-ip", "10.0.0.3"])
        .args([
            "--filter",
            "protocol=TCP,remotePort=80",
            "--filter",
            "protocol=UDP,remoteIPAddress=10.1.0.0-10.1.0.5",
        ])
        .args(["--bpf", "not port 22"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim_end(),
        "((tcp and ((src host 10.0.0.3 and dst port 80) or (dst host 10.0.0.3 and src port 80))) or \
         (udp and ((src host 10.0.0.3 and (dst net 10.1.0.0/30 or dst net 10.1.0.4/31)) or \
         (dst host 10.0.0.3 and (src net 10.1.0.0/30 or src net 10.1.0.4/31))))) and (not port 22)"
    );
}

/// On loopback all of 127.0.0.0/8 is local (the kernel delivers it all to
/// this host): a remote-port filter takes traffic between 127.0.0.2 and
/// 127.0.0.3 as it takes 127.0.0.1's, and only the direction asked for.
#[test]
fn loopback_local_is_all_of_127_8() {
    require_root_and_tools();
    let dir = tmpdir("lo-127-8");
    let rx = UdpSocket::bind("127.0.0.3:0").unwrap();
    let u = port(&rx);
    let nw = NwCapture::start(
        &dir,
        "lo-127-8",
        &["--count", "3", "--filter", &format!("protocol=UDP,remotePort={u}")],
    );
    let tx = UdpSocket::bind("127.0.0.2:0").unwrap();
    for _ in 0..3 {
        tx.send_to(b"x", ("127.0.0.3", u)).unwrap();
        thread::sleep(Duration::from_millis(20));
    }
    let (st, _, out) = nw.wait(Duration::from_secs(15));
    assert_eq!(st["stopReason"], "PacketCountReached");
    assert_eq!(tcpdump_count(&out, &format!("udp and src host 127.0.0.2 and dst port {u}")), 3);
}

/// `--count 0` is a usage error (tcpdump's -c takes 1 or more), not a
/// capture that stops before it starts.
#[test]
fn count_zero_is_a_usage_error() {
    let o = Command::new(BIN)
        .args(["capture", "-i", "lo", "-w", "/tmp/never.pcap", "-c", "0"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
}

/// `capture -w - | head -c 100`: the reader going away ends the capture
/// normally (stopReason OutputClosed, exit 0), as it ends tcpdump's; no
/// "Broken pipe" error.
#[test]
fn a_closed_stdout_pipe_is_a_normal_stop() {
    require_root_and_tools();
    let (rx, _) = adjacent_udp_pair();
    let stop = Arc::new(AtomicBool::new(false));
    let sender = flood(port(&rx), 200, Arc::clone(&stop));
    let mut child = Command::new(BIN)
        .args(["capture", "-i", "lo", "-w", "-", "--time-limit", "15", "--filter"])
        .arg(format!("protocol=UDP,remotePort={}", port(&rx)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut first = [0u8; 100];
    out.read_exact(&mut first).unwrap();
    drop(out);
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "capture still running after its reader left"
        );
        thread::sleep(Duration::from_millis(20));
    };
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(status.success(), "{status}: {err}");
    assert!(err.contains("\"stopReason\": \"OutputClosed\""), "{err}");
    assert!(
        err.contains("\"packetCaptureStatus\": \"Stopped\"") && !err.contains("Broken pipe"),
        "{err}"
    );
    assert!(
        [[0xd4, 0xc3, 0xb2, 0xa1], [0x4d, 0x3c, 0xb2, 0xa1]].contains(&[first[0], first[1], first[2], first[3]]),
        "a pcap file header first: {:02x?}",
        &first[..4]
    );
}

/// `capture --request FILE` with `json` as the request, on `lo` for at most
/// 2 s (the command line's time limit wins over the request's), writing to
/// `-w` unless `write` is false. The output file is left for the caller.
fn capture_with_request(dir: &Path, json: &str, write: bool, extra: &[&str]) -> (Output, PathBuf, PathBuf) {
    let request = dir.join("r.json");
    std::fs::write(&request, json).unwrap();
    let out = dir.join("r.pcap");
    let _ = std::fs::remove_file(&out);
    let mut cmd = Command::new(BIN);
    cmd.args(["capture", "-i", "lo", "--time-limit", "2", "--request"]).arg(&request);
    if write {
        cmd.arg("-w").arg(&out);
    }
    let o = cmd.args(extra).stdin(Stdio::null()).output().unwrap();
    (o, request, out)
}

/// A request whose `properties` is not an object is an error naming it, not
/// a capture of everything with the default limits.
#[test]
fn request_properties_must_be_an_object() {
    require_root_and_tools();
    let dir = tmpdir("req-props");
    let (o, request, out) = capture_with_request(&dir, r#"{"properties": "x"}"#, true, &[]);
    assert_eq!(request_error(&o, &request), "properties: expected an object, found a string");
    assert!(o.stdout.is_empty() && !out.exists(), "no capture was started");
}

/// Values of the wrong JSON type in a request are errors naming their JSON
/// path, not "not given" (a numeric filePath gave a usage error about a
/// missing filePath; a string storageLocation or a numeric name was dropped).
#[test]
fn request_fields_of_the_wrong_type() {
    require_root_and_tools();
    let dir = tmpdir("req-types");
    let (o, request, _) = capture_with_request(
        &dir,
        r#"{"properties":{"timeLimitInSeconds":1,"storageLocation":{"filePath":5}}}"#,
        false,
        &[],
    );
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        request_error(&o, &request),
        "properties.storageLocation.filePath: expected a string, found a number",
        "{e}"
    );
    for (json, path, want) in [
        (
            r#"{"properties":{"storageLocation":"/tmp/x.pcap"}}"#,
            "properties.storageLocation",
            "an object, found a string",
        ),
        (r#"{"name": 5, "properties":{}}"#, "name", "a string, found a number"),
        (r#"{"id": true, "properties":{}}"#, "id", "a string, found a boolean"),
    ] {
        let (o, request, out) = capture_with_request(&dir, json, true, &[]);
        assert_eq!(request_error(&o, &request), format!("{path}: expected {want}"), "{json}");
        assert!(!out.exists(), "{json}: no capture");
    }
}

/// Limits that do not go together are usage errors naming the options
/// (exit 2) on the command line, and errors naming the file and JSON path
/// (exit 1) in a request; both before anything is captured.
#[test]
fn limit_combinations_name_the_options() {
    require_root_and_tools();
    let dir = tmpdir("limit-combos");
    let out = dir.join("x.pcap");
    let out = out.to_str().unwrap();
    for (args, want) in [
        (
            &["-w", "-", "--rotate-bytes", "1000"][..],
            "error: --rotate-bytes needs an output file (-w FILE): rotated files cannot go to stdout (`-w -`)",
        ),
        (
            &["-w", "-", "--rotate-seconds", "5", "--max-files", "2"][..],
            "error: --rotate-seconds and --max-files need an output file (-w FILE)",
        ),
        (
            &["-w", out, "--max-files", "2"][..],
            "error: --max-files needs --rotate-bytes or --rotate-seconds",
        ),
        (
            &["-w", out, "--total-bytes", "10"][..],
            "error: --total-bytes 10 is smaller than the pcap file header (24 bytes)",
        ),
        (
            &["-w", out, "--total-bytes", "30", "--format", "pcapng"][..],
            "error: --total-bytes 30 is smaller than the pcapng file header (",
        ),
    ] {
        let o = Command::new(BIN)
            .args(["capture", "-i", "lo", "--time-limit", "1"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {e}");
        assert!(e.starts_with(want), "{args:?}: {e}");
        assert!(o.stdout.is_empty() && !Path::new(out).exists(), "{args:?}: nothing captured");
    }
    let (o, request, out) = capture_with_request(
        &dir,
        r#"{"properties":{"totalBytesPerSession":10,"timeLimitInSeconds":1}}"#,
        true,
        &[],
    );
    assert_eq!(
        request_error(&o, &request),
        "properties.totalBytesPerSession: 10 is smaller than the pcap file header (24 bytes)"
    );
    assert!(o.stdout.is_empty() && !out.exists());
    // The command line's --total-bytes wins over the request's.
    let (o, _, _) = capture_with_request(&dir, r#"{"totalBytesPerSession":10}"#, true, &["--total-bytes", "1000"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Runs `capture` (a command capturing on `lo`, its output set) with
/// `--filter protocol=UDP,remotePort=P` while UDP packets of `size` bytes
/// flood port P, and checks that writing `target` failed with `why`: exit 1,
/// that error line last, the status Error / LocalFileFailed. The status.
fn failed_write_status(mut capture: Command, size: usize, target: &str, why: &str) -> Value {
    let (rx, _) = adjacent_udp_pair();
    let stop = Arc::new(AtomicBool::new(false));
    let sender = flood(port(&rx), size, Arc::clone(&stop));
    let o = capture
        .arg("--filter")
        .arg(format!("protocol=UDP,remotePort={}", port(&rx)))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert_eq!(
        e.lines().last().unwrap_or_default(),
        format!("error: writing the capture to {target} failed: {why}")
    );
    let st: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(st["packetCaptureStatus"], "Error", "{st}");
    assert_eq!(st["packetCaptureError"][0], "LocalFileFailed", "{st}");
    st
}

/// A write error names the file, and the status counts only the bytes that
/// reached it: /dev/full takes none, not even the 24-byte header.
#[test]
fn write_errors_name_the_file() {
    require_root_and_tools();
    let mut capture = Command::new(BIN);
    capture.args(["capture", "-i", "lo", "-w", "/dev/full", "--time-limit", "3"]);
    let st = failed_write_status(capture, 200, "/dev/full", "No space left on device (os error 28)");
    assert_eq!(st["bytesWritten"], 0, "{st}");
    assert_eq!(st["packetsCaptured"], 0, "no packet reached /dev/full: {st}");
}

/// The records of a pcap file cut short by a write error: how many are
/// whole (a partial last record is not counted).
fn whole_pcap_records(bytes: &[u8]) -> u64 {
    assert!(bytes.len() >= 24, "no pcap header");
    let u32at = |o: usize| u32::from_ne_bytes(bytes[o..o + 4].try_into().unwrap());
    assert_eq!(u32at(0), 0xa1b2_c3d4, "pcap magic");
    let (mut off, mut n) = (24, 0);
    while off + 16 <= bytes.len() && off + 16 + u32at(off + 8) as usize <= bytes.len() {
        off += 16 + u32at(off + 8) as usize;
        n += 1;
    }
    n
}

/// A write error part way (the file may not grow past 1024 bytes: ulimit
/// -f, EFBIG): the status counts the packets the file holds whole, as it
/// counts the bytes it holds. packetsCaptured counted every packet handed
/// to the write buffer, the cut one and those behind it too.
#[test]
fn packets_captured_are_those_the_file_holds_after_a_write_error() {
    require_root_and_tools();
    let dir = tmpdir("fsize");
    let out = dir.join("small.pcap");
    // 2 blocks of 512 bytes; SIGXFSZ ignored so that the write fails with EFBIG.
    let mut capture = Command::new("sh");
    capture
        .args(["-c", r#"ulimit -f 2 && trap '' XFSZ && exec "$@""#, "sh", BIN])
        .args(["capture", "-i", "lo", "--time-limit", "10", "-w"])
        .arg(&out);
    let st = failed_write_status(capture, 100, &out.display().to_string(), "File too large (os error 27)");
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(bytes.len(), 1024, "the file grew to its limit");
    assert_eq!(st["bytesWritten"], 1024, "{st}");
    let whole = whole_pcap_records(&bytes);
    assert!(whole >= 1, "{whole} whole records");
    assert_eq!(st["packetsCaptured"], whole, "the packets the file holds whole: {st}");
}

/// The capture file is a FIFO whose reader reads the pcap header and a
/// little more, then goes away: writing fails with EPIPE. That is an error,
/// as the status says (Error, LocalFileFailed): exit 1 and the error line;
/// it exited 0 without a word, the broken pipe taken for `| head` closing
/// stdout. The status counts the packets that went into the pipe whole.
#[test]
fn a_fifo_whose_reader_went_away_is_an_error() {
    require_root_and_tools();
    let dir = tmpdir("fifo");
    let fifo = dir.join("capture.fifo");
    let st = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(st.success(), "mkfifo");
    let reader_fifo = fifo.clone();
    let reader = thread::spawn(move || {
        let mut f = std::fs::File::open(&reader_fifo).unwrap();
        let mut first = [0u8; 200];
        f.read_exact(&mut first).unwrap();
        first
    });
    let mut capture = Command::new(BIN);
    capture.args(["capture", "-i", "lo", "--time-limit", "10", "-w"]).arg(&fifo);
    let st = failed_write_status(capture, 100, &fifo.display().to_string(), "Broken pipe (os error 32)");
    if !reader.is_finished() {
        // netwatch never wrote 200 bytes: let the reader end, the checks below say why.
        let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        let _ = w.write_all(&[0u8; 200]);
    }
    let first = reader.join().unwrap();
    assert_eq!(&first[..4], &[0xd4, 0xc3, 0xb2, 0xa1], "a pcap header first");
    // Every record is 158 bytes (16 + Ethernet 14 + IPv4 20 + UDP 8 + 100).
    let (packets, bytes) = (st["packetsCaptured"].as_u64().unwrap(), st["bytesWritten"].as_u64().unwrap());
    assert!(bytes >= 200, "the reader read 200 bytes: {st}");
    assert_eq!(packets, (bytes - 24) / 158, "the whole records among the bytes written: {st}");
}

/// --resources, --service-tags and --nic serve only the live flows
/// (--flow-logs, --vnet-flow-logs, --ipfix): given without them, or half of
/// the --resources/--nic pair with --ipfix, they were silently ignored; now
/// usage errors. Nothing is captured.
#[test]
fn flow_options_without_flows_are_usage_errors() {
    let out = std::env::temp_dir().join(format!("netwatch-capture-live-{}-unused.pcap", std::process::id()));
    for (args, want) in [
        (
            &["--resources", "demo/hub-spoke", "--nic", "nic-web1"][..],
            "error: --resources and --nic serve only --flow-logs, --vnet-flow-logs and --ipfix",
        ),
        (&["--nic", "nic-web1"][..], "error: --nic serves only --flow-logs"),
        (
            &["--service-tags", "demo/ServiceTags_Demo.json"][..],
            "error: --service-tags serves only --flow-logs",
        ),
        (
            &["--ipfix", "127.0.0.1:4739", "--resources", "demo/hub-spoke"][..],
            "error: --resources needs --nic",
        ),
        (
            &["--ipfix", "127.0.0.1:4739", "--nic", "nic-web1"][..],
            "error: --nic needs --resources",
        ),
    ] {
        let o = Command::new(BIN)
            .args(["capture", "-i", "lo", "--time-limit", "1", "-w"])
            .arg(&out)
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {e}");
        assert!(e.starts_with(want), "{args:?}: {e}");
        assert!(o.stdout.is_empty() && !out.exists(), "{args:?}: nothing captured");
    }
}

/// A request's captureSettings make a ring of files, as --rotate-bytes and
/// --max-files do (they were only warned about): 2 files of at most 1000
/// bytes, the names wrapping; sessionTimeLimitInSeconds is the time limit.
#[test]
fn request_capture_settings_make_a_ring_of_files() {
    require_root_and_tools();
    let dir = tmpdir("req-ring");
    let rx = udp_receivers(1);
    let u = port(&rx[0]);
    let out = dir.join("ring.cap");
    let request = dir.join("ring.json");
    std::fs::write(
        &request,
        format!(
            r#"{{"properties": {{"continuousCapture": true, "storageLocation": {{"localPath": "{}"}},
                "captureSettings": {{"fileCount": 2, "fileSizeInBytes": 1000, "sessionTimeLimitInSeconds": 3}},
                "filters": [{{"protocol": "UDP", "remotePort": "{u}"}}]}}}}"#,
            out.display()
        ),
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let f = flood(u, 100, Arc::clone(&stop));
    let t0 = Instant::now();
    let mut child = Command::new(BIN)
        .args(["capture", "-i", "lo", "--request"])
        .arg(&request)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // sessionTimeLimitInSeconds 3 stops it; else (the 5-hour default) stop it here.
    while child.try_wait().unwrap().is_none() && t0.elapsed() < Duration::from_secs(10) {
        thread::sleep(Duration::from_millis(20));
    }
    let took = t0.elapsed();
    if child.try_wait().unwrap().is_none() {
        sigint(&child);
    }
    let o = child.wait_with_output().unwrap();
    stop.store(true, Ordering::Relaxed);
    f.join().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let st: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(st["stopReason"], "TimeExceeded", "{st}");
    assert!(took < Duration::from_secs(8), "sessionTimeLimitInSeconds 3: {took:?}");
    assert!(st["files"].as_u64().unwrap() > 2, "the ring wrapped: {st}");
    for p in [out.clone(), PathBuf::from(format!("{}.1", out.display()))] {
        let len = std::fs::metadata(&p).unwrap_or_else(|_| panic!("{} exists", p.display())).len();
        assert!(len <= 1000, "{} is {len} bytes", p.display());
        assert!(tcpdump_count(&p, "") >= 1, "{}", p.display());
    }
    assert!(!PathBuf::from(format!("{}.2", out.display())).exists(), "at most 2 files");

    // §8.2: filePath is invalid once continuousCapture is given.
    let (o, request, out) = capture_with_request(
        &dir,
        &format!(
            r#"{{"properties":{{"continuousCapture": false, "storageLocation":{{"filePath":"{}"}}, "captureSettings":{{"fileCount":2}}}}}}"#,
            dir.join("r.pcap").display()
        ),
        false,
        &[],
    );
    let e = request_error(&o, &request);
    assert!(
        e.starts_with("properties.storageLocation.filePath: invalid when continuousCapture is given"),
        "{e}"
    );
    assert!(!out.exists());
    // A ring of files cannot go to stdout; a file size below the smallest is an error naming it.
    let (o, request, _) = capture_with_request(&dir, r#"{"captureSettings": {"fileCount": 3}}"#, false, &["-w", "-"]);
    let e = request_error(&o, &request);
    assert!(e.starts_with("captureSettings: a continuous capture writes a ring of files"), "{e}");
    let (o, request, out) = capture_with_request(&dir, r#"{"properties": {"captureSettings": {"fileSizeInBytes": 100}}}"#, true, &[]);
    let e = request_error(&o, &request);
    assert!(
        e.starts_with("properties.captureSettings.fileSizeInBytes: 100 is smaller than the smallest rotated file (512 bytes)"),
        "{e}"
    );
    assert!(!out.exists());
}

/// The error of a capture refused for its `--request` file: exit 1, one
/// line `error: --request: FILE: ...`; gives what follows `FILE: `.
fn request_error(o: &Output, request: &Path) -> String {
    file_option_error(o, "--request", request)
}

/// The error of a capture refused for the file of `option`: exit 1, one
/// line `error: OPTION: FILE: ...`; gives what follows `FILE: `.
fn file_option_error(o: &Output, option: &str, file: &Path) -> String {
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert_eq!(e.lines().count(), 1, "one line: {e}");
    let prefix = format!("error: {option}: {}: ", file.display());
    match e.trim_end().strip_prefix(&prefix) {
        Some(rest) => rest.to_string(),
        None => panic!("{e}: expected to start with {prefix:?}"),
    }
}
