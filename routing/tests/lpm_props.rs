//! Property tests: the LPM tables agree with a linear-scan reference on
//! random tables (spec §5.4, longest prefix wins), including /0, /32, /128,
//! nested prefixes and duplicate inserts (last value wins).

use netwatch_routing::{Lpm4Builder, Lpm6Builder, LpmHit, LpmKey, LpmTable};
use proptest::prelude::*;

fn scan<K: Copy + Eq>(table: &[(K, u8, u32)], key: K, mask: impl Fn(K, u8) -> K) -> Option<(u8, u32)> {
    // Longest length wins; among equal prefixes the last insert wins.
    let mut best: Option<(u8, u32)> = None;
    for &(k, l, v) in table {
        if mask(key, l) == mask(k, l) && best.is_none_or(|(bl, _)| l >= bl) {
            best = Some((l, v));
        }
    }
    best
}

/// A compact hit as (prefix length, value), like the reference's answer.
fn hit_pair<K: LpmKey>(t: &LpmTable<K, u32>, hit: LpmHit) -> Option<(u8, u32)> {
    assert_eq!(hit.is_match(), hit.prefix_len().is_some());
    assert_eq!(hit.is_match(), t.value(hit).is_some());
    Some((hit.prefix_len()?, *t.value(hit)?))
}

fn m4(k: u32, l: u8) -> u32 {
    if l == 0 {
        0
    } else {
        k & (u32::MAX << (32 - l as u32))
    }
}
fn m6(k: u128, l: u8) -> u128 {
    if l == 0 {
        0
    } else {
        k & (u128::MAX << (128 - l as u32))
    }
}

/// Keys clustered in a few regions so that prefixes nest and collide.
fn key4() -> impl Strategy<Value = u32> {
    prop_oneof![
        any::<u32>(),
        (0u32..4, any::<u16>()).prop_map(|(hi, lo)| (0x0a00_0000 | (hi << 16)) | lo as u32),
        (0u32..64).prop_map(|x| 0xc0a8_0000 | x),
    ]
}
fn len4() -> impl Strategy<Value = u8> {
    prop_oneof![0u8..=32, Just(0u8), Just(32u8), 16u8..=26, 28u8..=32]
}
fn key6() -> impl Strategy<Value = u128> {
    prop_oneof![
        any::<u128>(),
        (0u128..8, any::<u16>()).prop_map(|(a, b)| (0x2001_0db8u128 << 96) | (a << 80) | b as u128),
        (0u128..16).prop_map(|x| x),
    ]
}
fn len6() -> impl Strategy<Value = u8> {
    prop_oneof![0u8..=128, Just(0u8), Just(128u8), 28u8..=64, 120u8..=128]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn v4_matches_linear_scan(
        table in prop::collection::vec((key4(), len4(), any::<u32>()), 0..60),
        probes in prop::collection::vec(key4(), 1..60),
    ) {
        let mut b = Lpm4Builder::new();
        for &(k, l, v) in &table {
            b.insert_key(k, l, v);
        }
        let t = b.build().unwrap();
        // Probe random keys, every prefix's first and last address and
        // the addresses just outside it.
        let mut all = probes.clone();
        for &(k, l, _) in &table {
            let lo = m4(k, l);
            let hi = lo | if l == 0 { u32::MAX } else { !(u32::MAX << (32 - l as u32)) };
            all.extend([lo, hi, lo.wrapping_sub(1), hi.wrapping_add(1)]);
        }
        let mut batch = vec![None; all.len()];
        t.lookup_batch(&all, &mut batch);
        let mut hits = vec![LpmHit::MISS; all.len()];
        t.lookup_batch_hits(&all, &mut hits);
        for (i, &k) in all.iter().enumerate() {
            let want = scan(&table, k, m4);
            let got = t.lookup_key(k).map(|m| (m.prefix.prefix_len(), *m.value));
            prop_assert_eq!(got, want, "key {:#x}", k);
            let gb = batch[i].map(|m| (m.prefix.prefix_len(), *m.value));
            prop_assert_eq!(gb, want, "batch key {:#x}", k);
            prop_assert_eq!(hits[i], t.lookup_hit(k), "hit key {:#x}", k);
            prop_assert_eq!(hit_pair(&t, hits[i]), want, "hit key {:#x}", k);
            prop_assert_eq!(t.resolve(k, hits[i]), t.lookup_key(k));
            if let Some(m) = t.lookup_key(k) {
                prop_assert_eq!(u32::from(m.prefix.network()), m4(k, m.prefix.prefix_len()));
            }
        }
    }

    #[test]
    fn v6_matches_linear_scan(
        table in prop::collection::vec((key6(), len6(), any::<u32>()), 0..60),
        probes in prop::collection::vec(key6(), 1..40),
    ) {
        let mut b = Lpm6Builder::new();
        for &(k, l, v) in &table {
            b.insert_key(k, l, v);
        }
        let t = b.build().unwrap();
        let mut all = probes.clone();
        for &(k, l, _) in &table {
            let lo = m6(k, l);
            let hi = lo | if l == 0 { u128::MAX } else { !(u128::MAX << (128 - l as u32)) };
            all.extend([lo, hi, lo.wrapping_sub(1), hi.wrapping_add(1)]);
        }
        let mut batch = vec![None; all.len()];
        t.lookup_batch(&all, &mut batch);
        let mut hits = vec![LpmHit::MISS; all.len()];
        t.lookup_batch_hits(&all, &mut hits);
        for (i, &k) in all.iter().enumerate() {
            let want = scan(&table, k, m6);
            let got = t.lookup_key(k).map(|m| (m.prefix.prefix_len(), *m.value));
            prop_assert_eq!(got, want, "key {:#x}", k);
            let gb = batch[i].map(|m| (m.prefix.prefix_len(), *m.value));
            prop_assert_eq!(gb, want, "batch key {:#x}", k);
            prop_assert_eq!(hits[i], t.lookup_hit(k), "hit key {:#x}", k);
            prop_assert_eq!(hit_pair(&t, hits[i]), want, "hit key {:#x}", k);
            prop_assert_eq!(t.resolve(k, hits[i]), t.lookup_key(k));
        }
    }
}
