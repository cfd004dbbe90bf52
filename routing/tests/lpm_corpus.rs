//! The LPM tables against a hash-per-length reference on the real route
//! tables in shared/corpus/routes (a missing or damaged file fails the
//! test): random addresses plus the first/last address of every prefix and
//! the addresses just outside it.

mod common;

use common::{load_corpus, Reference, SplitMix};
use netwatch_routing::{Lpm4Builder, Lpm6Builder, LpmHit};

/// Checks both families of a corpus file, after checking that it holds
/// the number of IPv4 and IPv6 prefixes it should (its own header's
/// counts, or a floor for the list without one).
fn check(name: &str, v4_count: std::ops::RangeInclusive<usize>, v6_count: std::ops::RangeInclusive<usize>) {
    let (v4, v6) = load_corpus(name);
    assert!(
        v4_count.contains(&v4.len()),
        "{name}: {} IPv4 prefixes, expected {v4_count:?}",
        v4.len()
    );
    assert!(
        v6_count.contains(&v6.len()),
        "{name}: {} IPv6 prefixes, expected {v6_count:?}",
        v6.len()
    );
    let mut rng = SplitMix(0x5eed ^ v4.len() as u64);
    check_v4(name, &v4, &mut rng);
    check_v6(name, &v6, &mut rng);
}

fn check_v4(name: &str, v4: &[(netwatch_routing::ipnet::Ipv4Net, u32)], rng: &mut SplitMix) {
    let t0 = std::time::Instant::now();
    let t4 = v4.iter().map(|&(p, v)| (p, v)).collect::<Lpm4Builder<u32>>().build().unwrap();
    eprintln!(
        "{name}: v4 {} prefixes, build {:?}, {} bytes",
        t4.len(),
        t0.elapsed(),
        t4.memory_bytes()
    );
    let r4 = Reference::<u32>::new(v4.iter().map(|(p, v)| (u32::from(p.network()), p.prefix_len(), *v)));
    let mut keys: Vec<u32> = (0..200_000).map(|_| rng.next_u64() as u32).collect();
    for (i, (p, _)) in v4.iter().enumerate() {
        if i % 5 == 0 {
            let lo = u32::from(p.network());
            let hi = u32::from(p.broadcast());
            keys.extend([lo, hi, lo.wrapping_sub(1), hi.wrapping_add(1)]);
        }
    }
    let mut batch = vec![None; keys.len()];
    t4.lookup_batch(&keys, &mut batch);
    let mut hits = vec![LpmHit::MISS; keys.len()];
    t4.lookup_batch_hits(&keys, &mut hits);
    for (i, &k) in keys.iter().enumerate() {
        let want = r4.lookup(k);
        let got = t4.lookup_key(k).map(|m| (m.prefix.prefix_len(), *m.value));
        assert_eq!(got, want, "{name} v4 key {}", std::net::Ipv4Addr::from(k));
        assert_eq!(batch[i].map(|m| (m.prefix.prefix_len(), *m.value)), want);
        assert_eq!(hits[i].prefix_len().zip(t4.value(hits[i]).copied()), want);
    }
}

fn check_v6(name: &str, v6: &[(netwatch_routing::ipnet::Ipv6Net, u32)], rng: &mut SplitMix) {
    let t0 = std::time::Instant::now();
    let t6 = v6.iter().map(|&(p, v)| (p, v)).collect::<Lpm6Builder<u32>>().build().unwrap();
    eprintln!(
        "{name}: v6 {} prefixes, build {:?}, {} bytes",
        t6.len(),
        t0.elapsed(),
        t6.memory_bytes()
    );
    let r6 = Reference::<u128>::new(v6.iter().map(|(p, v)| (u128::from(p.network()), p.prefix_len(), *v)));
    let mut keys: Vec<u128> = Vec::new();
    for _ in 0..100_000 {
        // Random addresses, half of them inside 2000::/3 where the routes are.
        let k = (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64());
        keys.push(k);
        keys.push((k >> 3) | (1u128 << 125));
    }
    for (p, _) in v6 {
        let lo = u128::from(p.network());
        let hi = u128::from(p.broadcast());
        keys.extend([lo, hi, lo.wrapping_sub(1), hi.wrapping_add(1)]);
    }
    let mut batch = vec![None; keys.len()];
    t6.lookup_batch(&keys, &mut batch);
    let mut hits = vec![LpmHit::MISS; keys.len()];
    t6.lookup_batch_hits(&keys, &mut hits);
    for (i, &k) in keys.iter().enumerate() {
        let want = r6.lookup(k);
        let got = t6.lookup_key(k).map(|m| (m.prefix.prefix_len(), *m.value));
        assert_eq!(got, want, "{name} v6 key {}", std::net::Ipv6Addr::from(k));
        assert_eq!(batch[i].map(|m| (m.prefix.prefix_len(), *m.value)), want);
        assert_eq!(hits[i].prefix_len().zip(t6.value(hits[i]).copied()), want);
    }
}

#[test]
fn bart_tier1_full_table() {
    // A full table: ~901k IPv4 and ~160k IPv6 prefixes.
    check("bart__tier1_prefixes.txt.gz", 800_000..=1_200_000, 100_000..=300_000);
}

#[test]
fn pyasn_ipasn6_table() {
    // The file's header: "Prefixes-v4 : 606138", "Prefixes-v6 : 27693".
    check("pyasn__ipasn6_20151101.dat.gz", 606_138..=606_138, 27_693..=27_693);
}
