//! The LPM tables against a hash-per-length reference on the real route
//! tables in shared/corpus/routes (skipped with a note if absent): random
//! addresses plus the first/last address of every prefix and the addresses
//! just outside it.

mod common;

use common::{load_corpus, Reference, SplitMix};
use netwatch_routing::{Lpm4Builder, Lpm6Builder};

fn check(name: &str) {
    let Some((v4, v6)) = load_corpus(name) else {
        eprintln!("corpus file {name} not found; skipping");
        return;
    };
    let mut rng = SplitMix(0x5eed ^ v4.len() as u64);

    // IPv4
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
    for (i, &k) in keys.iter().enumerate() {
        let want = r4.lookup(k);
        let got = t4.lookup_key(k).map(|m| (m.prefix.prefix_len(), *m.value));
        assert_eq!(got, want, "{name} v4 key {}", std::net::Ipv4Addr::from(k));
        assert_eq!(batch[i].map(|m| (m.prefix.prefix_len(), *m.value)), want);
    }

    // IPv6
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
    for (p, _) in &v6 {
        let lo = u128::from(p.network());
        let hi = u128::from(p.broadcast());
        keys.extend([lo, hi, lo.wrapping_sub(1), hi.wrapping_add(1)]);
    }
    let mut batch = vec![None; keys.len()];
    t6.lookup_batch(&keys, &mut batch);
    for (i, &k) in keys.iter().enumerate() {
        let want = r6.lookup(k);
        let got = t6.lookup_key(k).map(|m| (m.prefix.prefix_len(), *m.value));
        assert_eq!(got, want, "{name} v6 key {}", std::net::Ipv6Addr::from(k));
        assert_eq!(batch[i].map(|m| (m.prefix.prefix_len(), *m.value)), want);
    }
}

#[test]
fn bart_tier1_full_table() {
    check("bart__tier1_prefixes.txt.gz");
}

#[test]
fn pyasn_ipasn6_table() {
    check("pyasn__ipasn6_20151101.dat.gz");
}
