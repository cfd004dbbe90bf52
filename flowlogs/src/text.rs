//! Allocation-free text for hot output paths (one JSON line per flow):
//! IP addresses written straight into a byte buffer, byte for byte as
//! `std`'s `Display` writes them (RFC 5952 for IPv6: lowercase hex, leading
//! zeros dropped, the first longest run of two or more zero groups as `::`,
//! IPv4-mapped addresses as `::ffff:a.b.c.d`), without the `fmt` machinery.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Appends `ip` as `Display` would write it.
pub fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => push_ipv4(out, a),
        IpAddr::V6(a) => push_ipv6(out, a),
    }
}

/// A small stack buffer the address is written into before one append
/// (a `Vec::push` per character checks the capacity every time).
struct Text<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Text<N> {
    fn new() -> Self {
        Text { buf: [0; N], len: 0 }
    }

    #[inline(always)]
    fn push(&mut self, c: u8) {
        // N is the longest text of its kind; `get_mut` keeps it panic-free.
        if let Some(b) = self.buf.get_mut(self.len) {
            *b = c;
            self.len += 1;
        }
    }

    fn bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }
}

/// Appends a dotted-quad IPv4 address.
pub fn push_ipv4(out: &mut Vec<u8>, a: Ipv4Addr) {
    let mut t = Text::<15>::new();
    ipv4_text(&mut t, a);
    out.extend_from_slice(t.bytes());
}

fn ipv4_text<const N: usize>(t: &mut Text<N>, a: Ipv4Addr) {
    for (i, o) in a.octets().into_iter().enumerate() {
        if i > 0 {
            t.push(b'.');
        }
        if o >= 100 {
            t.push(b'0' + o / 100);
        }
        if o >= 10 {
            t.push(b'0' + o / 10 % 10);
        }
        t.push(b'0' + o % 10);
    }
}

/// Appends an IPv6 address in RFC 5952 form.
pub fn push_ipv6(out: &mut Vec<u8>, a: Ipv6Addr) {
    // 8 groups of 4 hex digits and 7 colons, or `::ffff:` and a dotted quad.
    if let Some(v4) = a.to_ipv4_mapped() {
        let mut t = Text::<22>::new();
        for &c in b"::ffff:" {
            t.push(c);
        }
        ipv4_text(&mut t, v4);
        out.extend_from_slice(t.bytes());
        return;
    }
    let seg = a.segments();
    // The first longest run of zero groups (RFC 5952 §4.2.3).
    let (mut best, mut best_len, mut cur_len) = (8, 0, 0);
    for (i, &s) in seg.iter().enumerate() {
        cur_len = if s == 0 { cur_len + 1 } else { 0 };
        if cur_len > best_len {
            (best, best_len) = (i + 1 - cur_len, cur_len);
        }
    }
    if best_len < 2 {
        best = 8;
    }
    // Each group is written as 4 digits and the position advanced past its
    // significant ones: no branch per digit. 4 bytes of slack.
    let mut buf = [0u8; 43];
    let mut n = 0;
    let mut i = 0;
    while i < 8 {
        if i == best {
            buf[n] = b':';
            buf[n + 1] = b':';
            n += 2;
            i += best_len;
            continue;
        }
        if i > 0 && i != best + best_len {
            buf[n] = b':';
            n += 1;
        }
        n += put_group(&mut buf, n, seg[i]);
        i += 1;
    }
    out.extend_from_slice(&buf[..n]);
}

/// Writes group `g` in lowercase hex without leading zeros at `buf[at..]`
/// (4 bytes are written); returns the digits.
#[inline(always)]
fn put_group(buf: &mut [u8; 43], at: usize, g: u16) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = ((19 - g.leading_zeros()) / 4).max(1) as usize;
    let w = [
        HEX[usize::from(g >> 12)],
        HEX[usize::from(g >> 8 & 15)],
        HEX[usize::from(g >> 4 & 15)],
        HEX[usize::from(g & 15)],
    ];
    let w = u32::from_be_bytes(w) << (8 * (4 - digits));
    buf[at..at + 4].copy_from_slice(&w.to_be_bytes());
    digits
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text(ip: IpAddr) -> String {
        let mut v = Vec::new();
        push_ip(&mut v, ip);
        String::from_utf8(v).unwrap_or_default()
    }

    #[test]
    fn known_forms() {
        for s in [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.3.10",
            "::",
            "::1",
            "1::",
            "2001:db8::1",
            "2001:db8:0:1:1:1:1:1",
            "2001:0:0:1::1",
            "::ffff:192.0.2.1",
            "::192.0.2.1",
            "fe80::1:0:0:1",
            "1:0:0:2:0:0:0:3",
            "1:0:0:0:1:0:0:0",
            "0:1:0:1:0:1:0:1",
            "0:0:1::",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "a:bc:def:1234::",
        ] {
            let ip: IpAddr = s.parse().unwrap();
            assert_eq!(text(ip), ip.to_string(), "{s}");
        }
    }

    proptest! {
        #[test]
        fn same_as_display_v4(b in any::<[u8; 4]>()) {
            let ip = IpAddr::from(b);
            prop_assert_eq!(text(ip), ip.to_string());
        }

        /// Groups drawn mostly from 0 and small values, so that zero runs
        /// of every length and position appear.
        #[test]
        fn same_as_display_v6(g in proptest::array::uniform8(prop_oneof![Just(0u16), Just(0u16), 1u16..16, any::<u16>()])) {
            let ip = IpAddr::V6(Ipv6Addr::from(g));
            prop_assert_eq!(text(ip), ip.to_string());
        }
    }
}
