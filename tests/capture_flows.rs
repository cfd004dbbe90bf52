//! Live flow logs: `netwatch capture` on the loopback interface with
//! `--flow-logs` and `--vnet-flow-logs` tracks the captured flows, judges
//! them with the NIC's NSGs and writes both flow-log formats.
//! Needs root (CI runs as root); fails, never skips, otherwise.

mod common;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netwatch_flowlogs::{read_file, FlowLogRecord, VnetFlowState};

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "PT1H.json") {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn live_capture_writes_flow_logs() {
    let uid = Command::new("id").arg("-u").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "live capture tests need root: run `make test` as root (CI does)"
    );
    let dir = std::env::temp_dir().join(format!("netwatch-live-flows-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let status = dir.join("status.json");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = 40000 + (std::process::id() % 20000) as u16;
    let child = Command::new(env!("CARGO_BIN_EXE_netwatch"))
        .args(["capture", "-i", "lo", "--time-limit", "4", "--local-ip", "127.0.0.1"])
        .arg("--filter")
        .arg(format!("protocol=UDP,remotePort={port}"))
        .arg("-w")
        .arg(dir.join("lo.pcap"))
        .arg("--status-file")
        .arg(&status)
        .args(common::DEMO_WEB1)
        .arg("--flow-logs")
        .arg(dir.join("nsg"))
        .arg("--vnet-flow-logs")
        .arg(dir.join("vnet"))
        .current_dir(common::root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !status.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(status.exists(), "the capture did not start");
    for _ in 0..20 {
        sock.send_to(b"netwatch live flow", ("127.0.0.1", port)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("NSG flow logs:") && err.contains("VNet flow logs:"), "{err}");
    let me = sock.local_addr().unwrap().port();
    // 127.0.0.1 -> 127.0.0.1: outbound from the NIC, neither VirtualNetwork nor
    // Internet: the NIC NSG's DenyAllOutBound decides.
    let nsg = files(&dir.join("nsg"));
    assert_eq!(nsg.len(), 1, "{nsg:?}");
    assert!(nsg[0].to_string_lossy().contains("/NETWORKSECURITYGROUPS/NSG-WEB-NIC/"), "{nsg:?}");
    let mut seen = false;
    for rec in read_file(&nsg[0]).unwrap().records {
        let FlowLogRecord::Nsg(r) = rec else { panic!() };
        for (rule, _, t) in r.tuples() {
            if t.src_port == me && t.dst_port == port {
                assert_eq!(rule, "DefaultRule_DenyAllOutBound");
                assert_eq!(t.decision, netwatch_rules::Access::Deny);
                seen = true;
            }
        }
    }
    assert!(seen, "no tuple for 127.0.0.1:{me} -> :{port}");
    let vnet = files(&dir.join("vnet"));
    assert_eq!(vnet.len(), 1);
    let mut denied = false;
    for rec in read_file(&vnet[0]).unwrap().records {
        let FlowLogRecord::Vnet(r) = rec else { panic!() };
        for (_, rule, t) in r.tuples() {
            if t.src_port == me && t.dst_port == port {
                assert_eq!(rule, "DefaultRule_DenyAllOutBound");
                denied |= t.state == VnetFlowState::Denied;
            }
        }
    }
    assert!(denied);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A wrong `--nic` or an unresolvable `--ipfix` collector fails before the
/// capture starts: at once, exit 1, no status, no capture file (they were
/// found only when the capture ended, after its whole time limit).
#[test]
fn flow_setup_errors_come_before_the_capture() {
    let uid = Command::new("id").arg("-u").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&uid.stdout).trim(), "0", "live capture tests need root");
    let dir = std::env::temp_dir().join(format!("netwatch-live-flows-setup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("x.pcap");
    let run = |extra: &[&str]| {
        let t0 = Instant::now();
        let o = Command::new(env!("CARGO_BIN_EXE_netwatch"))
            .args(["capture", "-i", "lo", "--time-limit", "6", "-w"])
            .arg(&pcap)
            .args(extra)
            .current_dir(common::root())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (o, t0.elapsed())
    };
    let fl = dir.join("fl");
    let (o, took) = run(&[
        "--resources",
        "demo/hub-spoke",
        "--nic",
        "nope",
        "--flow-logs",
        fl.to_str().unwrap(),
    ]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.starts_with("error: ") && e.contains("\"nope\""), "{e}");
    assert!(took < Duration::from_secs(4), "failed only after the capture: {took:?}");
    assert!(o.stdout.is_empty(), "no status: {}", String::from_utf8_lossy(&o.stdout));
    assert!(!pcap.exists());

    let (o, took) = run(&["--ipfix", "nosuchhost.invalid:4739"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.starts_with("error: --ipfix \"nosuchhost.invalid:4739\""), "{e}");
    assert!(took < Duration::from_secs(4), "failed only after the capture: {took:?}");
    assert!(o.stdout.is_empty(), "no status: {}", String::from_utf8_lossy(&o.stdout));
    assert!(!pcap.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Resources Azure refuses to create (a subnet outside its VNet's address
/// space, a peering of a VNet with itself, a learned route with host bits
/// set) stop `capture --flow-logs` as they load, before the capture
/// starts: exit 1, one line naming the file and the JSON path, no status,
/// no capture file (they loaded without a word).
#[test]
fn impossible_topologies_fail_before_the_capture() {
    let uid = Command::new("id").arg("-u").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&uid.stdout).trim(), "0", "live capture tests need root");
    let dir = std::env::temp_dir().join(format!("netwatch-live-flows-topology-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("x.pcap");
    let fl = dir.join("fl");
    for (file, at) in [
        ("subnet-outside-space.json", "properties.subnets[1].properties.addressPrefix"),
        ("subnet-standalone-outside-space.json", "[1].properties.addressPrefix"),
        (
            "peering-to-itself.json",
            "properties.virtualNetworkPeerings[0].properties.remoteVirtualNetwork.id",
        ),
        ("learned-route-host-bits.json", "value[1].network"),
    ] {
        let path = format!("tests/data/malformed/{file}");
        let t0 = Instant::now();
        let o = Command::new(env!("CARGO_BIN_EXE_netwatch"))
            .args(["capture", "-i", "lo", "--time-limit", "6", "-w"])
            .arg(&pcap)
            .args([
                "--resources",
                "demo/hub-spoke",
                "--resources",
                &path,
                "--nic",
                "nic-web1",
                "--flow-logs",
            ])
            .arg(&fl)
            .current_dir(common::root())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{file}: {e}");
        assert_eq!(e.lines().count(), 1, "{file}: {e}");
        assert!(e.starts_with(&format!("error: {path}: {at}: ")), "{file}: {e}");
        assert!(t0.elapsed() < Duration::from_secs(4), "{file}: failed only after the capture");
        assert!(o.stdout.is_empty(), "{file}: no status: {}", String::from_utf8_lossy(&o.stdout));
        assert!(!pcap.exists(), "{file}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
