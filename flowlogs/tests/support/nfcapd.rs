//! An `nfcapd` collector (Debian nfdump package) for tests: started on a
//! free loopback UDP port in a temp dir, stopped with SIGTERM so it writes
//! its file, read back with `nfdump -o csv`. Shared by the flowlogs tests and
//! the root package's end-to-end export test (included with `#[path]`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// An `nfcapd` on a loopback UDP port writing to a temp dir.
pub struct Collector {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

pub fn require(tool: &str) {
    match Command::new(tool).arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(_) => {}
        Err(e) => panic!("`{tool}` not found ({e}): it comes with the Debian nfdump package; run `make test` (installs it)"),
    }
}

/// The receive queue of UDP 127.0.0.1:`port` (/proc/net/udp), `None` when
/// nothing is bound there.
fn udp_rx_queue(port: u16) -> Option<u64> {
    let want = format!("0100007F:{port:04X}");
    let table = fs::read_to_string("/proc/net/udp").ok()?;
    table.lines().find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        if cols.get(1) != Some(&want.as_str()) {
            return None;
        }
        let rx = cols.get(4)?.split(':').nth(1)?;
        u64::from_str_radix(rx, 16).ok()
    })
}

impl Collector {
    pub fn start() -> Collector {
        require("nfcapd");
        require("nfdump");
        for _attempt in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            // A free port: bind, note, release (nfcapd binds it right after).
            let port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let log = fs::File::create(dir.path().join("nfcapd.log")).unwrap();
            let child = Command::new("nfcapd")
                .args(["-b", "127.0.0.1", "-p", &port.to_string(), "-w"])
                .arg(dir.path())
                .args(["-t", "3600", "-B", "2000000"])
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("spawn nfcapd");
            let mut c = Collector { child, dir, port };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if udp_rx_queue(port).is_some() {
                    return c;
                }
                if let Ok(Some(_)) = c.child.try_wait() {
                    break; // exited: the port was taken meanwhile?
                }
                sleep(Duration::from_millis(20));
            }
            eprintln!("nfcapd did not bind {port}: {}", c.log());
        }
        panic!("nfcapd did not start");
    }

    /// Waits (up to 5 s) until nfcapd's receive queue holds less than
    /// `bytes`: a sender that outruns a collector starved of CPU (a loaded
    /// machine) would otherwise overflow its socket buffer and lose
    /// datagrams, as UDP may.
    pub fn wait_below(&self, bytes: u64) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while udp_rx_queue(self.port).is_some_and(|q| q >= bytes) && Instant::now() < deadline {
            sleep(Duration::from_millis(1));
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("nfcapd.log")).unwrap_or_default()
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// SIGTERM: nfcapd flushes and closes its file. Returns the file.
    pub fn stop(&mut self) -> PathBuf {
        // Let the collector drain its socket (a busy machine may lag).
        let deadline = Instant::now() + Duration::from_secs(10);
        while udp_rx_queue(self.port).is_some_and(|q| q > 0) && Instant::now() < deadline {
            sleep(Duration::from_millis(20));
        }
        sleep(Duration::from_millis(100));
        let st = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(st.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            assert!(Instant::now() < deadline, "nfcapd did not exit on SIGTERM: {}", self.log());
            sleep(Duration::from_millis(20));
        }
        // The closed file is renamed nfcapd.YYYYMMDDhhmm; retry a little.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(f) = find_files(self.dir.path()).into_iter().next() {
                return f;
            }
            assert!(
                Instant::now() < deadline,
                "no nfcapd file in {:?}; log: {}",
                self.dir.path(),
                self.log()
            );
            sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with("nfcapd.") && !n.contains("current") && n != "nfcapd.log"
        })
        .collect();
    v.sort();
    v
}

/// `nfdump -r FILE -o csv` rows as column name → value maps (nfdump 1.7:
/// a header line `ts,te,td,sa,da,sp,dp,pr,flg,fwd,stos,ipkt,ibyt,opkt,obyt,...`,
/// the rows, then a summary block).
pub fn nfdump_csv(file: &Path) -> Vec<BTreeMap<String, String>> {
    let out = Command::new("nfdump")
        .arg("-r")
        .arg(file)
        .args(["-o", "csv"])
        .env("TZ", "UTC")
        .output()
        .expect("run nfdump");
    assert!(out.status.success(), "nfdump: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if std::env::var_os("NETWATCH_SHOW_NFDUMP").is_some() {
        eprintln!("{text}");
    }
    let mut lines = text.lines().skip_while(|l| !l.starts_with("ts,"));
    let header: Vec<String> = lines
        .next()
        .unwrap_or_else(|| panic!("no csv header in nfdump output:\n{text}"))
        .split(',')
        .map(str::to_string)
        .collect();
    for col in ["sa", "da", "sp", "dp", "pr", "ipkt", "ibyt", "opkt", "obyt"] {
        assert!(header.iter().any(|h| h == col), "nfdump csv lacks `{col}`: {header:?}");
    }
    lines
        .take_while(|l| l.split(',').count() >= header.len())
        .map(|l| header.iter().cloned().zip(l.split(',').map(str::to_string)).collect())
        .collect()
}
