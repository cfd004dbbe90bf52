//! IPv4 level boundaries (top array at /18, then 6-bit levels): prefixes
//! of every length from /0 to /32 nested on one address, probed at both
//! ends of every prefix and just outside, one by one and batched (batch
//! lengths below, at and around `BATCH_LANES` included).

use netwatch_routing::Lpm4Builder;

fn mask(k: u32, l: u32) -> u32 {
    if l == 0 {
        0
    } else {
        k & (u32::MAX << (32 - l))
    }
}

fn reference(table: &[(u32, u32)], k: u32) -> Option<u8> {
    table.iter().filter(|&&(p, l)| mask(k, l) == p).map(|&(_, l)| l as u8).max()
}

#[test]
fn nested_every_length_and_block_edges() {
    // Two nests: one on a /18 boundary and one inside a /24.
    let mut table = Vec::new();
    for base in [0x0a40_0000u32, 0xc0a8_01a5] {
        for l in 0..=32 {
            table.push((mask(base, l), l));
        }
    }
    // Siblings at the ends of a /18 and of a /24.
    for (k, l) in [(0x0a7f_ff00u32, 24), (0x0a7f_ffff, 32), (0x0a44_0000, 26), (0x0a44_00c0, 26)] {
        table.push((k, l));
    }
    let mut b = Lpm4Builder::new();
    for &(k, l) in &table {
        b.insert_key(k, l as u8, l);
    }
    let t = b.build().unwrap();
    let (_, nodes, leaves) = t.shape();
    assert!(nodes >= 2 && leaves >= 3, "shape {:?}", t.shape());

    let mut keys = Vec::new();
    for &(k, l) in &table {
        let hi = k | if l == 0 { u32::MAX } else { !(u32::MAX << (32 - l)) };
        keys.extend([k, hi, k.wrapping_sub(1), hi.wrapping_add(1)]);
    }
    for n in [0, 1, 15, 16, 17, 63, 64, 65, keys.len()] {
        let n = n.min(keys.len());
        let mut out = vec![None; n];
        t.lookup_batch(&keys, &mut out);
        for (o, &k) in out.iter().zip(&keys) {
            assert_eq!(o.map(|m| m.prefix.prefix_len()), reference(&table, k), "batch {n} key {k:#x}");
        }
    }
    for &k in &keys {
        let got = t.lookup_key(k);
        assert_eq!(got.map(|m| m.prefix.prefix_len()), reference(&table, k), "key {k:#x}");
        if let Some(m) = got {
            assert_eq!(*m.value, u32::from(m.prefix.prefix_len()));
            assert_eq!(u32::from(m.prefix.network()), mask(k, u32::from(m.prefix.prefix_len())));
        }
    }
}

#[test]
fn empty_and_default_route_only() {
    let t = Lpm4Builder::<u8>::new().build().unwrap();
    assert!(t.lookup_key(0x0102_0304).is_none());
    assert_eq!(t.shape(), (1 << 18, 0, 0));
    let mut b = Lpm4Builder::new();
    b.insert("0.0.0.0/0".parse().unwrap(), 7u8);
    let t = b.build().unwrap();
    let keys = [0u32, u32::MAX, 0x8000_0000];
    let mut out = [None; 3];
    t.lookup_batch(&keys, &mut out);
    assert!(out.iter().all(|m| m.map(|m| *m.value) == Some(7)));
}
