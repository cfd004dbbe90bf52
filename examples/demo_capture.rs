//! Writes the demo capture: traffic as seen on vm-web1's NIC (10.1.1.4 and
//! fd00:1:0:1::4) in the bundled hub-and-spoke environment, every flow chosen
//! to exercise one rule of its NSGs.
//!
//! `cargo run --release --example demo_capture -- demo/out/web1.pcap`

use std::fs::{self, File};
use std::io::BufWriter;
use std::net::SocketAddr;
use std::path::PathBuf;

use netwatch_capture::synth::{Synth, TcpEnd};

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("literal socket address")
}

fn main() -> std::io::Result<()> {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "demo/out/web1.pcap".into()));
    if let Some(dir) = out.parent() {
        fs::create_dir_all(dir)?;
    }
    // 2026-11-28T10:00:00Z
    let t0: i64 = 1_795_860_000 * 1_000_000_000;
    let s = 1_000_000_000i64;
    let mut g = Synth::new();
    // Inbound HTTPS from the Internet: allowed by both NSGs.
    for (i, client) in ["52.178.4.10:50123", "20.38.107.36:61000", "40.112.72.205:52000"]
        .iter()
        .enumerate()
    {
        g.tcp_session(
            t0 + i as i64 * 3 * s,
            sa(client),
            sa("10.1.1.4:443"),
            &[(517, 4200), (120, 18_000)],
            TcpEnd::Fin,
        );
    }
    // A long download that crosses the 5-minute flow-log interval.
    g.tcp_session_paced(
        t0 + 10 * s,
        sa("52.178.4.11:50500"),
        sa("10.1.1.4:8085"),
        &[(300, 9000); 7],
        60 * s,
        TcpEnd::Fin,
    );
    // SSH from the Internet: denied by the subnet NSG; the client retries.
    g.tcp_unanswered(t0 + 20 * s, sa("198.18.0.0:40000"), sa("10.1.1.4:22"), 2);
    g.tcp_unanswered(t0 + 21 * s, sa("52.178.4.10:40001"), sa("10.1.1.4:22"), 3);
    // Port 8081: the subnet allows it, the NIC NSG denies it.
    g.tcp_unanswered(t0 + 25 * s, sa("52.178.4.10:40002"), sa("10.1.1.4:8081"), 1);
    // SSH from the jump host in the hub: allowed.
    g.tcp_session(
        t0 + 30 * s,
        sa("10.0.2.4:50022"),
        sa("10.1.1.4:22"),
        &[(2100, 3300), (400, 800)],
        TcpEnd::Fin,
    );
    // Outbound DNS: to the Internet denied, to the hub resolver allowed.
    g.udp(t0 + 40 * s, sa("10.1.1.4:53001"), sa("8.8.8.8:53"), &[(true, 40), (true, 40)]);
    g.udp(t0 + 41 * s, sa("10.1.1.4:53002"), sa("10.0.2.4:53"), &[(true, 40), (false, 120)]);
    // Outbound HTTPS to Storage in West Europe: allowed by the service tag rule.
    g.tcp_session(
        t0 + 45 * s,
        sa("10.1.1.4:50100"),
        sa("13.69.40.20:443"),
        &[(900, 250), (64_000, 300)],
        TcpEnd::Fin,
    );
    // Outbound SQL to an Azure SQL address: denied by the Sql service tag rule.
    g.tcp_unanswered(t0 + 50 * s, sa("10.1.1.4:50200"), sa("13.69.104.10:1433"), 2);
    // Outbound SMTP: denied by the NIC NSG.
    g.tcp_unanswered(t0 + 52 * s, sa("10.1.1.4:50300"), sa("52.178.4.10:25"), 1);
    // Ping from the jump host: allowed (Allow-Icmp-In, then AllowVnetInBound).
    g.icmp_echo(
        t0 + 55 * s,
        "10.0.2.4".parse().expect("ip"),
        "10.1.1.4".parse().expect("ip"),
        0x4242,
        3,
        true,
    );
    // IPv6: HTTPS allowed, telnet denied by the ::/0 rule.
    g.tcp_session(
        t0 + 60 * s,
        sa("[2001:4860::1]:40000"),
        sa("[fd00:1:0:1::4]:443"),
        &[(600, 5000)],
        TcpEnd::Rst,
    );
    g.tcp_unanswered(t0 + 62 * s, sa("[2001:4860::2]:40001"), sa("[fd00:1:0:1::4]:23"), 1);
    // Neither end is vm-web1: transit.
    g.udp(t0 + 70 * s, sa("10.1.1.5:123"), sa("20.101.57.9:123"), &[(true, 48), (false, 48)]);
    let n = g.write_pcap(BufWriter::new(File::create(&out)?))?;
    println!("wrote {} ({n} packets)", out.display());
    Ok(())
}
