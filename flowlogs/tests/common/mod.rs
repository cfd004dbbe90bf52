//! Test helpers shared by the integration tests.
#![allow(dead_code)]

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use netwatch_flowlogs::{IcmpInfo, PacketInfo};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// Path of a corpus sample (never copied into the repo).
pub fn corpus(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/corpus/azure")
        .join(name)
}

/// JSON with object keys kept in document order.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Object(Vec<(String, Node)>),
    Array(Vec<Node>),
    Scalar(String),
}

impl Node {
    pub fn keys(&self) -> Vec<&str> {
        match self {
            Node::Object(kv) => kv.iter().map(|(k, _)| k.as_str()).collect(),
            _ => Vec::new(),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Object(kv) => kv.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn items(&self) -> &[Node] {
        match self {
            Node::Array(a) => a,
            _ => &[],
        }
    }

    /// Key lists of every object reachable by following `path` (object keys,
    /// `*` = every array element).
    pub fn key_sets(&self, path: &[&str]) -> Vec<Vec<String>> {
        let mut cur = vec![self];
        for p in path {
            cur = cur
                .into_iter()
                .flat_map(|n| {
                    if *p == "*" {
                        n.items().iter().collect::<Vec<_>>()
                    } else {
                        n.get(p).into_iter().collect()
                    }
                })
                .collect();
        }
        cur.iter().map(|n| n.keys().into_iter().map(String::from).collect()).collect()
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("JSON")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Node, A::Error> {
                let mut kv = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, Node>()? {
                    kv.push((k, v));
                }
                Ok(Node::Object(kv))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Node, A::Error> {
                let mut v = Vec::new();
                while let Some(n) = s.next_element::<Node>()? {
                    v.push(n);
                }
                Ok(Node::Array(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Node, E> {
                Ok(Node::Scalar(format!("s:{v}")))
            }
            fn visit_string<E>(self, v: String) -> Result<Node, E> {
                Ok(Node::Scalar(format!("s:{v}")))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
                Ok(Node::Scalar(format!("n:{v}")))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
                Ok(Node::Scalar(format!("n:{v}")))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
                Ok(Node::Scalar(format!("n:{v}")))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
                Ok(Node::Scalar(format!("b:{v}")))
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Scalar("null".into()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Records of a `{"records":[...]}` document or of NDJSON text, keys in order.
pub fn ordered_records(text: &str) -> Vec<Node> {
    let values: Vec<Node> = serde_json::Deserializer::from_str(text)
        .into_iter::<Node>()
        .map(|r| r.unwrap())
        .collect();
    match values.as_slice() {
        [doc] if doc.get("records").is_some() => doc.get("records").unwrap().items().to_vec(),
        _ => values,
    }
}

/// The shape of a tuple: one class letter per field (d = digits, i = IP,
/// L = upper-case letters/underscore, e = empty).
pub fn tuple_shape(t: &str) -> String {
    t.split(',')
        .map(|f| {
            if f.is_empty() {
                'e'
            } else if f.bytes().all(|b| b.is_ascii_digit()) {
                'd'
            } else if f.parse::<IpAddr>().is_ok() {
                'i'
            } else if f.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
                'L'
            } else {
                '?'
            }
        })
        .collect()
}

pub const S: i64 = 1_000_000_000;

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A TCP packet.
pub fn tcp(ts_s: f64, src: &str, sport: u16, dst: &str, dport: u16, flags: u8, len: u32) -> PacketInfo {
    PacketInfo {
        ts_ns: (ts_s * S as f64) as i64,
        src: ip(src),
        dst: ip(dst),
        protocol: 6,
        src_port: sport,
        dst_port: dport,
        icmp: None,
        tcp_flags: flags,
        ip_len: len,
    }
}

/// A UDP packet.
pub fn udp(ts_s: f64, src: &str, sport: u16, dst: &str, dport: u16, len: u32) -> PacketInfo {
    PacketInfo {
        protocol: 17,
        tcp_flags: 0,
        ..tcp(ts_s, src, sport, dst, dport, 0, len)
    }
}

/// An ICMPv4 packet.
pub fn icmp(ts_s: f64, src: &str, dst: &str, icmp_type: u8, id: u16, len: u32) -> PacketInfo {
    PacketInfo {
        protocol: 1,
        src_port: 0,
        dst_port: 0,
        icmp: Some(IcmpInfo { icmp_type, code: 0, id }),
        ..tcp(ts_s, src, 0, dst, 0, 0, len)
    }
}
