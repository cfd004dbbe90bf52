//! A traffic synthesizer: real Ethernet/IP/TCP/UDP/ICMP frames with correct
//! lengths and checksums (built with `etherparse`), for demos and tests that
//! need a capture whose every flow is known in advance.

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};

use etherparse::PacketBuilder;

use crate::file::{LinkType, PcapWriter};

/// How a synthesized TCP session ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpEnd {
    /// FIN from the client, FIN from the server, final ACK.
    Fin,
    /// RST from the server.
    Rst,
    /// No close: the flow stays open (ends by idle timeout).
    Open,
}

/// One synthesized frame.
#[derive(Clone, Debug)]
pub struct SynthFrame {
    pub ts_ns: i64,
    pub data: Vec<u8>,
}

/// Builds a capture of known flows.
#[derive(Default)]
pub struct Synth {
    frames: Vec<SynthFrame>,
}

const RTT_NS: i64 = 20_000_000;
const GAP_NS: i64 = 1_000_000;
const MSS: u32 = 1400;

fn mac(ip: IpAddr) -> [u8; 6] {
    match ip {
        IpAddr::V4(v) => {
            let o = v.octets();
            [0x02, 0x00, o[0], o[1], o[2], o[3]]
        }
        IpAddr::V6(v) => {
            let o = v.octets();
            [0x02, 0x06, o[12], o[13], o[14], o[15]]
        }
    }
}

fn base(src: IpAddr, dst: IpAddr) -> Option<etherparse::PacketBuilderStep<etherparse::IpHeaders>> {
    let eth = PacketBuilder::ethernet2(mac(src), mac(dst));
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Some(eth.ipv4(s.octets(), d.octets(), 64)),
        (IpAddr::V6(s), IpAddr::V6(d)) => Some(eth.ipv6(s.octets(), d.octets(), 64)),
        _ => None,
    }
}

impl Synth {
    /// An empty capture.
    pub fn new() -> Self {
        Self::default()
    }

    fn push(&mut self, ts_ns: i64, data: Vec<u8>) {
        self.frames.push(SynthFrame { ts_ns, data });
    }

    #[allow(clippy::too_many_arguments)]
    fn tcp(&mut self, ts: i64, from: SocketAddr, to: SocketAddr, seq: u32, ack: Option<u32>, flags: &str, len: u32) {
        let Some(b) = base(from.ip(), to.ip()) else { return };
        let mut t = b.tcp(from.port(), to.port(), seq, 64240);
        for f in flags.chars() {
            t = match f {
                'S' => t.syn(),
                'F' => t.fin(),
                'R' => t.rst(),
                'P' => t.psh(),
                _ => t,
            };
        }
        if let Some(a) = ack {
            t = t.ack(a);
        }
        let payload = vec![0x5a; len as usize];
        let mut out = Vec::with_capacity(t.size(payload.len()));
        if t.write(&mut out, &payload).is_ok() {
            self.push(ts, out);
        }
    }

    /// One TCP segment of `len` payload bytes; `flags` holds `S`, `F`, `R`,
    /// `P` and `A` (an acknowledgment), as tcpdump prints them. For
    /// captures that start inside a session or hold odd segments.
    pub fn tcp_segment(&mut self, ts_ns: i64, from: SocketAddr, to: SocketAddr, flags: &str, len: u32) {
        let ack = flags.contains('A').then_some(1);
        self.tcp(ts_ns, from, to, 1_000, ack, flags, len);
    }

    /// A TCP session: handshake, request/response exchanges of the given
    /// sizes (split into MSS segments, each acknowledged), then `end`.
    /// Returns the time of its last packet.
    pub fn tcp_session(&mut self, t0_ns: i64, client: SocketAddr, server: SocketAddr, exchanges: &[(u32, u32)], end: TcpEnd) -> i64 {
        self.tcp_session_paced(t0_ns, client, server, exchanges, 0, end)
    }

    /// Like [`Synth::tcp_session`], with `pause_ns` of silence before each
    /// exchange after the first (a long-lived, mostly idle connection).
    pub fn tcp_session_paced(
        &mut self,
        t0_ns: i64,
        client: SocketAddr,
        server: SocketAddr,
        exchanges: &[(u32, u32)],
        pause_ns: i64,
        end: TcpEnd,
    ) -> i64 {
        let (mut cs, mut ss) = (1_000u32, 5_000_000u32);
        let mut t = t0_ns;
        self.tcp(t, client, server, cs, None, "S", 0);
        t += RTT_NS / 2;
        self.tcp(t, server, client, ss, Some(cs + 1), "S", 0);
        t += RTT_NS / 2;
        cs += 1;
        ss += 1;
        self.tcp(t, client, server, cs, Some(ss), "", 0);
        for (i, &(req, resp)) in exchanges.iter().enumerate() {
            if i > 0 {
                t += pause_ns;
            }
            for client_sends in [true, false] {
                let (from, to, total) = if client_sends {
                    (client, server, req)
                } else {
                    (server, client, resp)
                };
                let mut left = total;
                while left > 0 {
                    let n = left.min(MSS);
                    let (seq, peer) = if client_sends { (&mut cs, &mut ss) } else { (&mut ss, &mut cs) };
                    t += GAP_NS;
                    self.tcp(t, from, to, *seq, Some(*peer), "P", n);
                    *seq = seq.wrapping_add(n);
                    left -= n;
                    t += RTT_NS / 2;
                    self.tcp(t, to, from, *peer, Some(*seq), "", 0);
                }
            }
        }
        match end {
            TcpEnd::Fin => {
                t += GAP_NS;
                self.tcp(t, client, server, cs, Some(ss), "F", 0);
                t += RTT_NS / 2;
                self.tcp(t, server, client, ss, Some(cs + 1), "F", 0);
                t += RTT_NS / 2;
                self.tcp(t, client, server, cs + 1, Some(ss + 1), "", 0);
            }
            TcpEnd::Rst => {
                t += GAP_NS;
                self.tcp(t, server, client, ss, Some(cs), "R", 0);
            }
            TcpEnd::Open => {}
        }
        t
    }

    /// A connection attempt nobody answers (what a denied flow looks like
    /// from the sender's side): a SYN and `retries` retransmissions with
    /// exponential backoff from 1 s.
    pub fn tcp_unanswered(&mut self, t0_ns: i64, client: SocketAddr, server: SocketAddr, retries: u32) -> i64 {
        let mut t = t0_ns;
        let mut backoff = 1_000_000_000i64;
        for i in 0..=retries {
            if i > 0 {
                t += backoff;
                backoff *= 2;
            }
            self.tcp(t, client, server, 1_000, None, "S", 0);
        }
        t
    }

    /// UDP datagrams between `a` and `b`: `(a_to_b, payload_len)` each,
    /// spaced by the round-trip time.
    pub fn udp(&mut self, t0_ns: i64, a: SocketAddr, b: SocketAddr, datagrams: &[(bool, u32)]) -> i64 {
        let mut t = t0_ns;
        for (i, &(fwd, len)) in datagrams.iter().enumerate() {
            if i > 0 {
                t += RTT_NS / 2;
            }
            let (from, to) = if fwd { (a, b) } else { (b, a) };
            let Some(bld) = base(from.ip(), to.ip()) else { continue };
            let u = bld.udp(from.port(), to.port());
            let payload = vec![0x33; len as usize];
            let mut out = Vec::with_capacity(u.size(payload.len()));
            if u.write(&mut out, &payload).is_ok() {
                self.push(t, out);
            }
        }
        t
    }

    /// ICMP (or ICMPv6) echo requests from `a` to `b`, one a second, each
    /// answered when `answered`.
    pub fn icmp_echo(&mut self, t0_ns: i64, a: IpAddr, b: IpAddr, id: u16, count: u16, answered: bool) -> i64 {
        let mut t = t0_ns;
        for seq in 0..count {
            t = t0_ns + i64::from(seq) * 1_000_000_000;
            for (from, to, reply) in [(a, b, false), (b, a, true)] {
                if reply && !answered {
                    continue;
                }
                let Some(bld) = base(from, to) else { continue };
                let payload = [0x61u8; 32];
                let mut out = Vec::new();
                let ok = match (from.is_ipv4(), reply) {
                    (true, false) => bld.icmpv4_echo_request(id, seq).write(&mut out, &payload).is_ok(),
                    (true, true) => bld.icmpv4_echo_reply(id, seq).write(&mut out, &payload).is_ok(),
                    (false, false) => bld.icmpv6_echo_request(id, seq).write(&mut out, &payload).is_ok(),
                    (false, true) => bld.icmpv6_echo_reply(id, seq).write(&mut out, &payload).is_ok(),
                };
                if ok {
                    self.push(t + if reply { RTT_NS / 2 } else { 0 }, out);
                }
            }
        }
        t
    }

    /// The frames in time order.
    pub fn into_frames(mut self) -> Vec<SynthFrame> {
        self.frames.sort_by_key(|f| f.ts_ns);
        self.frames
    }

    /// Writes the frames, in time order, as an Ethernet pcap with nanosecond
    /// timestamps. Returns the number of packets.
    pub fn write_pcap<W: Write>(self, out: W) -> io::Result<usize> {
        let frames = self.into_frames();
        let mut w = PcapWriter::new(out, LinkType::ETHERNET, 262_144, true)?;
        for f in &frames {
            w.write_packet(f.ts_ns, f.data.len() as u32, &f.data)?;
        }
        w.flush()?;
        Ok(frames.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode, CaptureReader, DecodeOptions};

    #[test]
    fn synthesized_frames_decode() {
        let mut s = Synth::new();
        let c: SocketAddr = "10.0.0.1:40000".parse().unwrap();
        let v: SocketAddr = "10.0.0.2:443".parse().unwrap();
        s.tcp_session(1_000_000_000, c, v, &[(500, 3000)], TcpEnd::Fin);
        s.udp(
            2_000_000_000,
            "[fd00::1]:5353".parse().unwrap(),
            "[fd00::2]:53".parse().unwrap(),
            &[(true, 40), (false, 120)],
        );
        s.icmp_echo(3_000_000_000, "10.0.0.1".parse().unwrap(), "10.0.0.3".parse().unwrap(), 7, 2, true);
        let mut buf = Vec::new();
        let n = s.write_pcap(&mut buf).unwrap();
        let mut r = CaptureReader::new(&buf[..]).unwrap();
        let mut seen = 0;
        let mut tcp_bytes = 0;
        while let Some(p) = r.next_packet() {
            let p = p.unwrap();
            let m = decode(p.link_type, p.data, DecodeOptions::default()).unwrap();
            if m.protocol == 6 {
                tcp_bytes += m.ip_total_len;
            }
            seen += 1;
        }
        assert_eq!(seen, n);
        // 3 handshake + (1 data + 1 ack) + (3 data + 3 acks) + 3 close = 14 segments of 40 bytes of headers, plus payload.
        assert_eq!(tcp_bytes, 14 * 40 + 500 + 3000);
    }
}
