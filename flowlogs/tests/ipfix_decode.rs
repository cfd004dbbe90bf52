//! Our IPFIX and NetFlow v9 messages parsed back with an independent
//! decoder (templates + data, RFC 7011 / RFC 3954 framing): every field of
//! every record, headers, sequence numbers, template refresh, MTU.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netwatch_flowlogs::ipfix::{end_reason_code, Encoder, ExportOptions, ExportProtocol, NsgDecision};
use netwatch_flowlogs::table::tcp_flags::{ACK, FIN, PSH, RST, SYN};
use netwatch_flowlogs::{FlowRecord, FlowRecordKind, FlowTable, FlowTableConfig, IcmpInfo, PacketInfo};
use netwatch_rules::{Access, Direction};

const BASE_NS: i64 = 1_760_000_000 * 1_000_000_000;

/// (enterprise number, element id) → raw value.
type Fields = HashMap<(u32, u16), Vec<u8>>;

#[derive(Debug)]
struct Message {
    version: u16,
    /// IPFIX export time / v9 unix secs.
    time: u32,
    /// v9 sysUptime.
    uptime: u32,
    sequence: u32,
    domain: u32,
    /// Records the v9 header announced.
    v9_count: u16,
    templates: Vec<u16>,
    records: Vec<(u16, Fields)>,
    len: usize,
}

#[derive(Default)]
struct Decoder {
    /// template id → [(pen, id, length)]
    templates: HashMap<u16, Vec<(u32, u16, u16)>>,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

fn uint(v: &[u8]) -> u64 {
    v.iter().fold(0, |a, &b| a << 8 | u64::from(b))
}

impl Decoder {
    fn decode(&mut self, m: &[u8]) -> Message {
        let version = be16(m, 0);
        let (hdr, mut msg) = match version {
            10 => {
                assert_eq!(usize::from(be16(m, 2)), m.len(), "IPFIX length field");
                (
                    16,
                    Message {
                        version,
                        time: be32(m, 4),
                        uptime: 0,
                        sequence: be32(m, 8),
                        domain: be32(m, 12),
                        v9_count: 0,
                        templates: Vec::new(),
                        records: Vec::new(),
                        len: m.len(),
                    },
                )
            }
            9 => (
                20,
                Message {
                    version,
                    v9_count: be16(m, 2),
                    uptime: be32(m, 4),
                    time: be32(m, 8),
                    sequence: be32(m, 12),
                    domain: be32(m, 16),
                    templates: Vec::new(),
                    records: Vec::new(),
                    len: m.len(),
                },
            ),
            v => panic!("version {v}"),
        };
        let template_set = if version == 10 { 2 } else { 0 };
        let mut off = hdr;
        while off < m.len() {
            let set_id = be16(m, off);
            let set_len = usize::from(be16(m, off + 2));
            assert!(set_len >= 4 && off + set_len <= m.len(), "set length {set_len} at {off}");
            let body = &m[off + 4..off + set_len];
            if set_id == template_set {
                let mut p = 0;
                while p + 4 <= body.len() {
                    let id = be16(body, p);
                    let n = be16(body, p + 2);
                    p += 4;
                    let mut fs = Vec::new();
                    for _ in 0..n {
                        let raw = be16(body, p);
                        let len = be16(body, p + 2);
                        p += 4;
                        let pen = if version == 10 && raw & 0x8000 != 0 {
                            p += 4;
                            be32(body, p - 4)
                        } else {
                            0
                        };
                        fs.push((pen, raw & if version == 10 { 0x7fff } else { 0xffff }, len));
                    }
                    self.templates.insert(id, fs);
                    msg.templates.push(id);
                }
                assert_eq!(p, body.len(), "template set fully used");
            } else {
                assert!(set_id >= 256, "set id {set_id}");
                let tpl = self
                    .templates
                    .get(&set_id)
                    .unwrap_or_else(|| panic!("data set {set_id} before its template"))
                    .clone();
                let min: usize = tpl.iter().map(|&(_, _, l)| if l == 65535 { 1 } else { usize::from(l) }).sum();
                let mut p = 0;
                // v9 pads sets to 4 octets; a remainder shorter than a record is padding.
                while body.len() - p >= min && (version == 10 || body.len() - p >= 4) {
                    let mut f = Fields::new();
                    for &(pen, id, len) in &tpl {
                        let l = if len == 65535 {
                            let l0 = usize::from(body[p]);
                            p += 1;
                            if l0 == 255 {
                                p += 2;
                                usize::from(be16(body, p - 2))
                            } else {
                                l0
                            }
                        } else {
                            usize::from(len)
                        };
                        f.insert((pen, id), body[p..p + l].to_vec());
                        p += l;
                    }
                    msg.records.push((set_id, f));
                }
                if version == 10 {
                    assert_eq!(p, body.len(), "no padding in our IPFIX sets");
                } else {
                    assert!(body[p..].iter().all(|&b| b == 0) && set_len % 4 == 0, "v9 padding");
                }
            }
            off += set_len;
        }
        if version == 9 {
            assert_eq!(usize::from(msg.v9_count), msg.templates.len() + msg.records.len(), "v9 count");
        }
        msg
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[allow(clippy::too_many_arguments)]
fn pkt(t_ms: i64, src: &str, sport: u16, dst: &str, dport: u16, proto: u8, flags: u8, len: u32) -> PacketInfo {
    PacketInfo {
        ts_ns: BASE_NS + t_ms * 1_000_000,
        src: ip(src),
        dst: ip(dst),
        protocol: proto,
        src_port: sport,
        dst_port: dport,
        icmp: None,
        tcp_flags: flags,
        ip_len: len,
    }
}

/// Many flows: TCP/UDP/ICMP/GRE, v4/v6, short and long (reports).
fn records() -> Vec<FlowRecord<u32>> {
    let mut p = Vec::new();
    for i in 0..60u16 {
        let t = i64::from(i) * 1000;
        let (c, s) = if i % 2 == 0 {
            (format!("10.0.{i}.4"), "52.1.2.3")
        } else {
            (format!("2001:db8::{i:x}:4"), "2001:db8:9::3")
        };
        let c = c.as_str();
        let port = 40000 + i;
        match i % 5 {
            0 | 1 => {
                p.push(pkt(t, c, port, s, 443, 6, SYN, 60));
                p.push(pkt(t + 10, s, 443, c, port, 6, SYN | ACK, 60));
                p.push(pkt(t + 20, c, port, s, 443, 6, PSH | ACK, 500 + u32::from(i)));
                p.push(pkt(t + 30, s, 443, c, port, 6, PSH | ACK, 1500));
                let end = if i % 10 == 0 { RST } else { FIN | ACK };
                p.push(pkt(t + 40, c, port, s, 443, 6, end, 52));
                p.push(pkt(t + 50, s, 443, c, port, 6, FIN | ACK, 52));
            }
            2 => {
                // Long UDP: 11 minutes, two reports.
                for k in 0..34 {
                    p.push(pkt(t + k * 20_000, c, port, s, 53, 17, 0, 100 + k as u32));
                }
                p.push(pkt(t + 5, s, 53, c, port, 17, 0, 300));
            }
            3 => {
                let (proto, req) = if c.contains(':') { (58, 128) } else { (1, 8) };
                let mut q = pkt(t, c, 0, s, 0, proto, 0, 84);
                q.icmp = Some(IcmpInfo {
                    icmp_type: req,
                    code: 0,
                    id: i,
                });
                let mut r = pkt(t + 1, s, 0, c, 0, proto, 0, 84);
                r.icmp = Some(IcmpInfo {
                    icmp_type: req + if proto == 1 { 0 } else { 1 },
                    code: 0,
                    id: i,
                });
                if proto == 1 {
                    r.icmp = Some(IcmpInfo {
                        icmp_type: 0,
                        code: 0,
                        id: i,
                    });
                }
                p.push(q);
                p.push(r);
            }
            _ => p.push(pkt(t, c, 0, s, 0, 47, 0, 1400)),
        }
    }
    p.sort_by_key(|x| x.ts_ns);
    let mut t: FlowTable<u32> = FlowTable::new(FlowTableConfig::default()).unwrap();
    let mut out = Vec::new();
    let mut n = 0;
    for x in &p {
        t.observe(x, |_, _| {
            n += 1;
            n
        });
        out.extend(t.drain_records());
    }
    t.finish();
    out.extend(t.drain_records());
    out
}

fn nsg_of(user: u32) -> (String, String, Option<Direction>, Option<Access>) {
    match user % 3 {
        0 => (String::new(), String::new(), None, None),
        1 => (
            format!("nsg-{user}"),
            format!("UserRule_Allow{user}"),
            Some(Direction::Inbound),
            Some(Access::Allow),
        ),
        // Long names: RFC 7011 long varlen form is not needed (cut to 254), and é is 2 octets.
        _ => (
            "é".repeat(140),
            "DefaultRule_DenyAllInBound".into(),
            Some(Direction::Outbound),
            Some(Access::Deny),
        ),
    }
}

fn encode_all(protocol: ExportProtocol, opts: ExportOptions, recs: &[FlowRecord<u32>]) -> (Vec<Vec<u8>>, Vec<i64>) {
    let mut e = Encoder::new(protocol, opts).unwrap();
    let mut out = Vec::new();
    let mut times = Vec::new();
    for (i, r) in recs.iter().enumerate() {
        let (name, rule, direction, access) = nsg_of(r.user);
        let nsg = NsgDecision {
            direction,
            access,
            nsg_name: &name,
            rule_name: &rule,
        };
        let now = BASE_NS / 1_000_000 + 800_000 + i as i64 * 1500;
        let before = out.len();
        e.push(r, if r.user % 3 == 0 { None } else { Some(&nsg) }, now, &mut out);
        times.extend(std::iter::repeat_n(now, out.len() - before));
    }
    let now = BASE_NS / 1_000_000 + 800_000 + recs.len() as i64 * 1500;
    if let Some(m) = e.flush(now) {
        out.push(m);
        times.push(now);
    }
    assert_eq!(e.stats().messages as usize, out.len());
    (out, times)
}

fn addr(v: &[u8]) -> IpAddr {
    match v.len() {
        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(v).unwrap())),
        16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(v).unwrap())),
        n => panic!("address of {n} octets"),
    }
}

fn exported(recs: &[FlowRecord<u32>]) -> Vec<&FlowRecord<u32>> {
    recs.iter().filter(|r| r.kind != FlowRecordKind::Begin).collect()
}

#[test]
fn ipfix_messages_decode_to_the_flow_records() {
    let recs = records();
    let opts = ExportOptions {
        mtu: 1200,
        observation_domain_id: 42,
        template_refresh_messages: 4,
        ..ExportOptions::default()
    };
    let (msgs, times) = encode_all(ExportProtocol::Ipfix, opts, &recs);
    assert!(msgs.len() > 8, "{} messages", msgs.len());
    let mut d = Decoder::default();
    let mut got = Vec::new();
    let mut seq = 0u32;
    for (i, m) in msgs.iter().enumerate() {
        let msg = d.decode(m);
        assert_eq!(msg.version, 10);
        assert!(msg.len <= 1200);
        assert_eq!(msg.domain, 42);
        assert_eq!(msg.sequence, seq, "message {i}: sequence = data records before");
        assert_eq!(i64::from(msg.time), times[i] / 1000);
        assert_eq!(!msg.templates.is_empty(), i % 4 == 0, "message {i}: templates every 4th");
        if !msg.templates.is_empty() {
            assert_eq!(msg.templates, [256, 257, 258, 259]);
        }
        seq += msg.records.len() as u32;
        got.extend(msg.records);
    }
    let want = exported(&recs);
    assert_eq!(got.len(), want.len());
    let mut sums: HashMap<_, [u64; 4]> = HashMap::new();
    for ((tpl, f), r) in got.iter().zip(&want) {
        let t = &r.tuple;
        let v6 = t.src.is_ipv6();
        let icmp = matches!(t.protocol, 1 | 58);
        assert_eq!(*tpl, [[256, 257], [258, 259]][usize::from(icmp)][usize::from(v6)]);
        let g = |pen: u32, id: u16| f.get(&(pen, id)).unwrap_or_else(|| panic!("missing {pen}/{id} in {tpl}"));
        let (s, dd) = if v6 { (27, 28) } else { (8, 12) };
        assert_eq!(addr(g(0, s)), t.src);
        assert_eq!(addr(g(0, dd)), t.dst);
        assert_eq!(uint(g(0, 4)), u64::from(t.protocol));
        if icmp {
            assert!(!f.contains_key(&(0, 7)) && !f.contains_key(&(0, 11)), "no ports for ICMP");
            let tc = uint(g(0, if v6 { 139 } else { 32 }));
            assert_eq!(tc, if v6 { 128 << 8 } else { 8 << 8 }, "echo request type forward");
        } else {
            assert_eq!(uint(g(0, 7)), u64::from(t.src_port));
            assert_eq!(uint(g(0, 11)), u64::from(t.dst_port));
            assert_eq!(g(0, 6).len(), 1);
            assert_eq!(uint(g(0, 6)), u64::from(if t.protocol == 6 { r.forward.tcp_flags } else { 0 }));
        }
        assert_eq!(uint(g(0, 1)), r.interval_forward.bytes);
        assert_eq!(uint(g(0, 2)), r.interval_forward.packets);
        assert_eq!(uint(g(29305, 1)), r.interval_reverse.bytes);
        assert_eq!(uint(g(29305, 2)), r.interval_reverse.packets);
        assert_eq!(uint(g(0, 152)) as i64, r.first_ns / 1_000_000);
        assert_eq!(uint(g(0, 153)) as i64, r.last_ns / 1_000_000);
        assert_eq!(uint(g(0, 136)) as u8, end_reason_code(r.kind).unwrap());
        let (name, rule, dir, acc) = nsg_of(r.user);
        let cut = |s: &str| {
            let mut n = s.len().min(254);
            while !s.is_char_boundary(n) {
                n -= 1;
            }
            s[..n].to_string()
        };
        assert_eq!(String::from_utf8(g(32473, 4).clone()).unwrap(), cut(&name));
        assert_eq!(String::from_utf8(g(32473, 3).clone()).unwrap(), rule);
        assert_eq!(uint(g(32473, 1)), [0, 1, 2][acc.map_or(0, |a| 1 + (a == Access::Deny) as usize)]);
        assert_eq!(
            uint(g(32473, 2)),
            [0, 1, 2][dir.map_or(0, |d| 1 + (d == Direction::Outbound) as usize)]
        );
        let e = sums.entry(r.tuple).or_default();
        e[0] += r.interval_forward.packets;
        e[1] += r.interval_forward.bytes;
        e[2] += r.interval_reverse.packets;
        e[3] += r.interval_reverse.bytes;
    }
    // Delta counters over a flow's records sum to its totals.
    let ends: Vec<_> = recs.iter().filter(|r| matches!(r.kind, FlowRecordKind::End(_))).collect();
    assert_eq!(ends.len(), 60);
    assert!(want.iter().filter(|r| r.kind == FlowRecordKind::Report).count() >= 12);
    for e in ends {
        assert_eq!(
            sums[&e.tuple],
            [e.forward.packets, e.forward.bytes, e.reverse.packets, e.reverse.bytes]
        );
    }
}

#[test]
fn netflow_v9_messages_decode_to_unidirectional_records() {
    let recs = records();
    let opts = ExportOptions {
        mtu: 300,
        observation_domain_id: 7,
        ..ExportOptions::default()
    };
    let (msgs, _) = encode_all(ExportProtocol::NetflowV9, opts, &recs);
    assert!(msgs.len() > 20, "{} messages: templates every 20th", msgs.len());
    let mut d = Decoder::default();
    let mut got = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        let msg = d.decode(m);
        assert_eq!(msg.version, 9);
        assert!(msg.len <= 300);
        assert_eq!(msg.domain, 7);
        assert_eq!(msg.sequence, i as u32, "v9 sequence counts packets");
        assert_eq!(!msg.templates.is_empty(), i % 20 == 0, "message {i}");
        let boot = i64::from(msg.time) * 1000 - i64::from(msg.uptime);
        for (tpl, f) in msg.records {
            got.push((tpl, f, boot));
        }
    }
    let mut want = Vec::new();
    for r in exported(&recs) {
        if r.interval_forward.packets > 0 {
            want.push((r, true));
        }
        if r.interval_reverse.packets > 0 {
            want.push((r, false));
        }
    }
    assert_eq!(got.len(), want.len());
    for ((tpl, f, boot), (r, fwd)) in got.iter().zip(&want) {
        let t = &r.tuple;
        let v6 = t.src.is_ipv6();
        let icmp = matches!(t.protocol, 1 | 58);
        assert_eq!(*tpl, [[256, 257], [258, 259]][usize::from(icmp)][usize::from(v6)]);
        assert!(f.keys().all(|&(pen, _)| pen == 0));
        let g = |id: u16| f.get(&(0, id)).unwrap_or_else(|| panic!("missing {id} in {tpl}"));
        let (s, dd) = if v6 { (27, 28) } else { (8, 12) };
        let (src, dst, sp, dp, c, flags) = if *fwd {
            (t.src, t.dst, t.src_port, t.dst_port, r.interval_forward, r.forward.tcp_flags)
        } else {
            (t.dst, t.src, t.dst_port, t.src_port, r.interval_reverse, r.reverse.tcp_flags)
        };
        assert_eq!(addr(g(s)), src);
        assert_eq!(addr(g(dd)), dst);
        assert_eq!(uint(g(4)), u64::from(t.protocol));
        if icmp {
            let (req, rep) = if v6 { (128, 129) } else { (8, 0) };
            assert_eq!(uint(g(32)), if *fwd { req << 8 } else { rep << 8 });
        } else {
            assert_eq!(uint(g(7)), u64::from(sp));
            assert_eq!(uint(g(11)), u64::from(dp));
            assert_eq!(uint(g(6)), u64::from(if t.protocol == 6 { flags } else { 0 }));
        }
        assert_eq!(uint(g(1)), c.bytes);
        assert_eq!(uint(g(2)), c.packets);
        assert_eq!(boot + uint(g(22)) as i64, r.first_ns / 1_000_000, "FIRST_SWITCHED");
        assert_eq!(boot + uint(g(21)) as i64, r.last_ns / 1_000_000, "LAST_SWITCHED");
    }
}
