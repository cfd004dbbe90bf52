//! `netwatch evaluate` decisions (and the `flows` records under them) on
//! small synthesized captures through the demo environment, each checked
//! against `ip-flow-verify` for the flow's initiator packet (the same NSG
//! chain, Azure's own answer shape): the cases a replay can get wrong that
//! a single IP flow verify cannot.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use netwatch_capture::synth::Synth;
use serde_json::Value;

const T0: i64 = 1_795_860_000 * 1_000_000_000;
const DEMO: &[&str] = &["--resources", "demo/hub-spoke", "--service-tags", "demo/ServiceTags_Demo.json"];

use common::netwatch;

/// This test run's scratch directory.
fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("netwatch-evaluate-semantics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn capture(name: &str, g: Synth) -> PathBuf {
    let path = scratch().join(name);
    g.write_pcap(std::fs::File::create(&path).unwrap()).unwrap();
    path
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// `evaluate`'s rows (JSON lines) for `nic` over `pcap`.
fn evaluate(nic: &str, extra: &[&str], pcap: &Path) -> Vec<Value> {
    let args = [
        &["evaluate"],
        DEMO,
        &["--nic", nic],
        extra,
        &[pcap.to_str().unwrap(), "-o", "jsonl"],
    ]
    .concat();
    jsonl(&args)
}

/// The JSON lines a successful run prints.
fn jsonl(args: &[&str]) -> Vec<Value> {
    let o = netwatch(args);
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// IP flow verify's (access, ruleName) for a row's initiator packet.
fn ip_flow_verify(nic: &str, row: &Value) -> (String, String) {
    let ep = |a: &Value, p: &Value| {
        let a = a.as_str().unwrap();
        if a.contains(':') {
            format!("[{a}]:{p}")
        } else {
            format!("{a}:{p}")
        }
    };
    let initiator = ep(&row["initiator"], &row["initiatorPort"]);
    let responder = ep(&row["responder"], &row["responderPort"]);
    let (local, remote) = match row["direction"].as_str().unwrap() {
        "Outbound" => (initiator, responder),
        _ => (responder, initiator),
    };
    let args = [
        &["ip-flow-verify"],
        DEMO,
        &[
            "--nic",
            nic,
            "--direction",
            row["direction"].as_str().unwrap(),
            "--protocol",
            row["protocol"].as_str().unwrap(),
            "--local",
            &local,
            "--remote",
            &remote,
        ],
    ]
    .concat();
    let o = netwatch(&args);
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    (
        v["access"].as_str().unwrap().to_string(),
        v["ruleName"].as_str().unwrap_or("").to_string(),
    )
}

fn verdict(row: &Value) -> (String, String) {
    (
        row["access"].as_str().unwrap().to_string(),
        row["ruleName"].as_str().unwrap_or("").to_string(),
    )
}

/// A capture started on app1 with an SSH session from db1 already open: its
/// first packet is app1's data to the client. The flow is db1's, inbound
/// to app1, allowed as the same session seen from its SYN is (a flow judged
/// from the server's side would be an outbound flow from port 22, denied by
/// the NIC's `Deny-Db-Subnet-Out`, with the replies of a denied flow).
#[test]
fn a_session_seen_mid_stream_is_judged_from_its_client() {
    let (app, db) = (sa("10.2.1.4:22"), sa("10.2.2.4:51000"));
    let mut g = Synth::new();
    g.tcp_segment(T0, app, db, "PA", 200);
    g.tcp_segment(T0 + 10_000_000, db, app, "A", 0);
    g.tcp_segment(T0 + 500_000_000, db, app, "PA", 50);
    g.tcp_session(
        T0 + 1_000_000_000,
        sa("10.2.2.4:51001"),
        app,
        &[(100, 100)],
        netwatch_capture::synth::TcpEnd::Fin,
    );
    let pcap = capture("mid-stream.pcap", g);
    let rows = evaluate("nic-app1", &[], &pcap);
    assert_eq!(rows.len(), 2, "{rows:?}");
    for r in &rows {
        assert_eq!(r["initiator"], "10.2.2.4", "{r}");
        assert_eq!(r["responderPort"], 22, "{r}");
        assert_eq!(r["direction"], "Inbound", "{r}");
        assert_eq!(verdict(r), ("Allow".into(), "defaultSecurityRules/AllowVnetInBound".into()), "{r}");
        assert_eq!(verdict(r), ip_flow_verify("nic-app1", r), "{r}");
    }
    // The mid-stream flow: app1's packet is a reply.
    assert_eq!(
        (rows[0]["packetsSent"].as_u64(), rows[0]["packetsReceived"].as_u64()),
        (Some(2), Some(1))
    );
}

/// An IPv6 packet whose addresses are IPv4-mapped (`::ffff:10.0.2.4`) is
/// IPv6 traffic: the jump host's IPv4 address does not make it the jump
/// host (the NIC's `Allow-SSH-From-Jump` is an IPv4 rule), it is not in
/// `VirtualNetwork`, and `::ffff:10.1.1.4` is not web1's 10.1.1.4.
#[test]
fn ipv4_mapped_ipv6_addresses_are_not_ipv4() {
    let mut g = Synth::new();
    g.tcp_segment(T0, sa("10.0.2.4:50000"), sa("10.1.1.4:22"), "S", 0);
    g.tcp_segment(T0 + 1_000_000_000, sa("[::ffff:10.0.2.4]:50001"), sa("[fd00:1:0:1::4]:22"), "S", 0);
    g.tcp_segment(
        T0 + 2_000_000_000,
        sa("[::ffff:10.0.2.4]:50002"),
        sa("[::ffff:10.1.1.4]:22"),
        "S",
        0,
    );
    let pcap = capture("mapped.pcap", g);
    let rows = evaluate("nic-web1", &[], &pcap);
    assert_eq!(rows.len(), 3, "{rows:?}");
    let ipv4_verdict = verdict(&rows[0]);
    assert_eq!(ipv4_verdict.0, "Allow", "{}", rows[0]);
    assert_eq!(rows[1]["direction"], "Inbound", "{}", rows[1]);
    assert_eq!(
        verdict(&rows[1]),
        ("Deny".into(), "defaultSecurityRules/DenyAllInBound".into()),
        "{}",
        rows[1]
    );
    for r in &rows[..2] {
        assert_eq!(verdict(r), ip_flow_verify("nic-web1", r), "{r}");
    }
    assert_eq!(rows[2]["direction"], "Transit", "{}", rows[2]);
}

/// `--local` replays a capture "as if" taken on the NIC: traffic to a
/// stand-in address gets the verdicts the same traffic to the NIC's real
/// address gets, including rules on the NIC's application security groups
/// (app1 in asg-app, db1 in asg-db) and the `VirtualNetwork` default rules.
#[test]
fn local_addresses_are_judged_as_the_nics_own() {
    // (NIC, its address, a stand-in, a web-tier peer, an app-tier peer).
    let cases: [(&str, &str, &str, &str, &str); 3] = [
        ("nic-app1", "10.2.1.4", "192.168.50.10", "10.1.1.4", "10.2.2.4"),
        ("nic-db1", "10.2.2.4", "192.168.1.10", "10.1.1.4", "10.2.1.4"),
        ("nic-web1", "fd00:1:0:1::4", "fd00:99::4", "fd00:1:0:1::5", "fd00:1:0:1::5"),
    ];
    let mut verdicts = std::collections::BTreeSet::new();
    for (nic, real, stand_in, web, app) in cases {
        let traffic = |me: &str| {
            let at = |a: &str, port: u16| -> SocketAddr {
                let ip: std::net::IpAddr = a.parse().unwrap();
                SocketAddr::new(ip, port)
            };
            let mut g = Synth::new();
            // Web tier to app (8443), app to db (1433), a datagram, a ping.
            g.tcp_segment(T0, at(web, 50000), at(me, 8443), "S", 0);
            g.tcp_segment(T0 + 10_000_000, at(me, 8443), at(web, 50000), "SA", 0);
            g.tcp_segment(T0 + 1_000_000_000, at(app, 50001), at(me, 1433), "S", 0);
            g.udp(T0 + 2_000_000_000, at(app, 40000), at(me, 5000), &[(true, 20)]);
            g.icmp_echo(T0 + 3_000_000_000, at(web, 0).ip(), at(me, 0).ip(), 5, 1, true);
            g
        };
        let real_rows = evaluate(nic, &[], &capture(&format!("{nic}-real.pcap"), traffic(real)));
        let local_rows = evaluate(
            nic,
            &["--local", stand_in],
            &capture(&format!("{nic}-local.pcap"), traffic(stand_in)),
        );
        assert_eq!(real_rows.len(), local_rows.len(), "{nic}");
        for (r, l) in real_rows.iter().zip(&local_rows) {
            assert_eq!(r["direction"], l["direction"], "{nic}: {r} / {l}");
            assert_eq!(verdict(r), verdict(l), "{nic}: {r} / {l}");
        }
        verdicts.extend(real_rows.iter().map(verdict));
    }
    // The cases tell rules apart: ASG rules, VNet defaults, denies.
    assert!(verdicts.len() > 3, "{verdicts:?}");
}

/// Flow records carry the TCP flags seen each way (nfdump's `CEUAPRSF`,
/// `.` for a flag not seen) in JSON lines, CSV and the table, and CSV the
/// ICMP type.
#[test]
fn flow_records_carry_tcp_flags() {
    use netwatch_capture::synth::TcpEnd;
    let mut g = Synth::new();
    g.tcp_session(T0, sa("10.0.0.4:50000"), sa("10.0.0.5:443"), &[(100, 2000)], TcpEnd::Fin);
    g.tcp_unanswered(T0 + 5_000_000_000, sa("10.0.0.4:50001"), sa("10.0.0.5:22"), 0);
    g.icmp_echo(
        T0 + 6_000_000_000,
        "10.0.0.4".parse().unwrap(),
        "10.0.0.5".parse().unwrap(),
        3,
        1,
        true,
    );
    let pcap = capture("flags.pcap", g);
    let rows = flows(&[&pcap]);
    assert_eq!(rows.len(), 3);
    assert_eq!(
        (&rows[0]["tcpFlagsSent"], &rows[0]["tcpFlagsReceived"]),
        (&"...AP.SF".into(), &"...AP.SF".into())
    );
    assert_eq!(
        (&rows[1]["tcpFlagsSent"], &rows[1]["tcpFlagsReceived"]),
        (&"......S.".into(), &"........".into())
    );
    assert!(rows[2].get("tcpFlagsSent").is_none(), "ICMP has no TCP flags: {}", rows[2]);
    let o = netwatch(&["flows", pcap.to_str().unwrap(), "-o", "csv"]);
    let csv = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    let col = |name: &str| lines[0].iter().position(|c| *c == name).unwrap();
    assert_eq!(lines[1][col("tcpFlagsSent")], "...AP.SF");
    assert_eq!(lines[2][col("tcpFlagsReceived")], "........");
    assert_eq!(lines[3][col("icmpType")], "8");
    assert_eq!(lines[3][col("tcpFlagsSent")], "");
    // The table for people: sent/received in one column.
    let o = netwatch(&["flows", pcap.to_str().unwrap(), "-o", "table"]);
    let table = String::from_utf8_lossy(&o.stdout);
    let rows: Vec<&str> = table.lines().collect();
    assert!(rows[0].contains("Flags>/<"), "{table}");
    let cell = |row: &str, c: &str| row.split_whitespace().any(|x| x == c);
    assert!(cell(rows[1], "...AP.SF/...AP.SF"), "{table}");
    assert!(cell(rows[2], "......S./........"), "{table}");
    assert!(!rows[3].contains('/'), "ICMP has no TCP flags: {table}");
}

/// Writes a classic pcap of raw IPv4 packets (link type 228) with their
/// times (microseconds since 2023-11-14T22:13:20Z).
fn raw_ipv4_pcap(name: &str, packets: &[(u32, Vec<u8>)]) -> PathBuf {
    let mut file = vec![
        0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 228, 0, 0, 0,
    ];
    for (us, f) in packets {
        file.extend(1_700_000_000u32.to_le_bytes());
        file.extend(us.to_le_bytes());
        file.extend((f.len() as u32).to_le_bytes());
        file.extend((f.len() as u32).to_le_bytes());
        file.extend(f);
    }
    let path = scratch().join(name);
    std::fs::write(&path, file).unwrap();
    path
}

/// The two fragments of one UDP datagram 10.0.0.1:7000 -> 10.0.0.2:8000,
/// (later, first).
fn udp_fragments() -> (Vec<u8>, Vec<u8>) {
    let ipv4 = |id, flags_frag, payload: &[u8]| common::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 17, id, flags_frag, payload);
    let mut udp = vec![0x1b, 0x58, 0x1f, 0x40, 0, 48, 0, 0];
    udp.extend([0x42; 40]);
    (ipv4(78, 3, &udp[24..]), ipv4(78, 0x2000, &udp[..24]))
}

/// `flows`' rows for `files`.
fn flows(files: &[&Path]) -> Vec<Value> {
    let mut args = vec!["flows"];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    args.extend(["-o", "jsonl"]);
    jsonl(&args)
}

/// A UDP datagram sent last fragment first (as Linux sends large ones) is
/// one flow of two packets, as tshark counts it, not a flow plus a portless
/// stray (the later fragment waits for its first), also when rotated files
/// split it.
#[test]
fn fragments_sent_last_first_join_their_flow() {
    let (later, first) = udp_fragments();
    let one = raw_ipv4_pcap("fragments.pcap", &[(0, later.clone()), (1000, first.clone())]);
    let a = raw_ipv4_pcap("fragments-a.pcap", &[(0, later)]);
    let b = raw_ipv4_pcap("fragments-b.pcap", &[(1000, first)]);
    for files in [vec![one.as_path()], vec![a.as_path(), b.as_path()]] {
        let rows = flows(&files);
        assert_eq!(rows.len(), 1, "{files:?}: {rows:?}");
        assert_eq!((&rows[0]["initiatorPort"], &rows[0]["responderPort"]), (&7000.into(), &8000.into()));
        assert_eq!(
            (&rows[0]["packetsSent"], &rows[0]["bytesSent"]),
            (&2.into(), &(20 + 24 + 20 + 24).into())
        );
        assert_eq!(
            rows[0]["firstTime"], "2023-11-14T22:13:20.0000000Z",
            "the later fragment came first"
        );
    }
}

/// A NIC whose secondary IP configuration is in another subnet: `evaluate`
/// judges every flow with the primary configuration's subnet and says so
/// (ip-flow-verify judges the secondary address with its own subnet).
#[test]
fn a_secondary_configuration_in_another_subnet_is_warned_about() {
    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let target = to.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                copy_dir(&e.path(), &target);
            } else {
                std::fs::copy(e.path(), target).unwrap();
            }
        }
    }
    let env = scratch().join("two-subnets");
    copy_dir(&common::root().join("demo/hub-spoke"), &env);
    let nics_file = env.join("rg-spokes/networkInterfaces.json");
    let mut nics: Value = serde_json::from_str(&std::fs::read_to_string(&nics_file).unwrap()).unwrap();
    let app1 = nics["value"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|n| n["name"] == "nic-app1")
        .unwrap();
    let configs = app1["properties"]["ipConfigurations"].as_array_mut().unwrap();
    let mut second = configs[0].clone();
    let subnet = second["properties"]["subnet"]["id"]
        .as_str()
        .unwrap()
        .replace("/snet-app", "/snet-db");
    second["name"] = "ipconfig2".into();
    second["id"] = second["id"].as_str().unwrap().replace("ipconfig1", "ipconfig2").into();
    second["properties"]["privateIPAddress"] = "10.2.2.9".into();
    second["properties"]["primary"] = false.into();
    second["properties"]["subnet"]["id"] = subnet.into();
    configs.push(second);
    std::fs::write(&nics_file, serde_json::to_string_pretty(&nics).unwrap()).unwrap();
    let mut g = Synth::new();
    g.tcp_segment(T0, sa("10.1.1.4:50000"), sa("10.2.2.9:1433"), "S", 0);
    let pcap = capture("two-subnets.pcap", g);
    let o = netwatch(&[
        "evaluate",
        "--resources",
        env.to_str().unwrap(),
        "--nic",
        "nic-app1",
        pcap.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("IP configuration \"ipconfig2\" (10.2.2.9) is in subnet \"snet-db\", not the primary's \"snet-app\""),
        "{err}"
    );
    // The demo's own NICs have one subnet each: no warning.
    let o = netwatch(&[
        "evaluate",
        "--resources",
        "demo/hub-spoke",
        "--nic",
        "nic-app1",
        pcap.to_str().unwrap(),
    ]);
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("WARN"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// An IPv4 packet 10.0.2.4:5000 -> 10.1.1.4:9000 of `protocol` (its
/// transport header starts with the two ports).
fn ipv4_with_ports(protocol: u8, transport_len: usize) -> Vec<u8> {
    let mut t = vec![0u8; transport_len];
    t[..4].copy_from_slice(&[0x13, 0x88, 0x23, 0x28]);
    if protocol == 6 {
        t[12] = 5 << 4;
        t[13] = 0x02; // SYN
    }
    common::ipv4([10, 0, 2, 4], [10, 1, 1, 4], protocol, 1, 0, &t)
}

/// SCTP carries ports (its flows are keyed on them, and rows show them),
/// but NSG rules filter ports for TCP and UDP only: a `*`-protocol rule for
/// port 9000 denies the TCP flow to port 9000, not the SCTP one, which is
/// judged as portless (spec §1.1) and allowed from the VNet.
#[test]
fn sctp_flows_have_ports_that_nsg_rules_do_not_filter() {
    let mut nsg: Value =
        serde_json::from_str(&std::fs::read_to_string(common::root().join("tests/data/nsg-web-nic-strict.json")).unwrap()).unwrap();
    let mut rule = nsg["properties"]["securityRules"][1].clone();
    rule["name"] = "Deny-Any-9000-In".into();
    let id = rule["id"].as_str().unwrap().replace("Deny-8081-In", "Deny-Any-9000-In");
    rule["id"] = id.into();
    rule["properties"]["protocol"] = "*".into();
    rule["properties"]["priority"] = 101.into();
    rule["properties"]["destinationPortRange"] = "9000".into();
    nsg["properties"]["securityRules"].as_array_mut().unwrap().push(rule);
    let nsg_path = scratch().join("nsg-web-nic-any-9000.json");
    std::fs::write(&nsg_path, serde_json::to_vec(&nsg).unwrap()).unwrap();
    let pcap = raw_ipv4_pcap("sctp-and-tcp.pcap", &[(0, ipv4_with_ports(132, 12)), (1, ipv4_with_ports(6, 20))]);
    let rows = evaluate("nic-web1", &["--resources", nsg_path.to_str().unwrap()], &pcap);
    let row = |proto: &str| {
        rows.iter()
            .find(|r| r["protocol"] == proto)
            .unwrap_or_else(|| panic!("no {proto} row: {rows:?}"))
    };
    let (sctp, tcp) = (row("132"), row("TCP"));
    assert_eq!((&sctp["initiatorPort"], &sctp["responderPort"]), (&5000.into(), &9000.into()));
    assert_eq!(verdict(tcp), ("Deny".into(), "securityRules/Deny-Any-9000-In".into()));
    assert_eq!(verdict(sctp), ("Allow".into(), "defaultSecurityRules/AllowVnetInBound".into()));
}
