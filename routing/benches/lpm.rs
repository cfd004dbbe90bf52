//! Longest-prefix-match throughput on the real route table
//! (shared/corpus/routes/bart__tier1_prefixes.txt.gz, ~901k IPv4 and ~160k
//! IPv6 prefixes): netwatch's poptrie (one-by-one and batched) against
//! `ip_network_table` and `prefix-trie`, in one process.
//!
//! Run: `cargo bench --bench lpm -- --warm-up-time 1 --measurement-time 3`
//! Throughput is reported in elements (lookups) per second.

use std::hint::black_box;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flate2::read::GzDecoder;
use ip_network::{Ipv4Network, Ipv6Network};
use ip_network_table::IpNetworkTable;
use netwatch_routing::ipnet::{IpNet, Ipv4Net, Ipv6Net};
use netwatch_routing::{Lpm4Builder, Lpm6Builder, LpmMatch, BATCH_LANES};
use prefix_trie::PrefixMap;

const N_KEYS: usize = 1 << 20;
const CHUNK: usize = 1024;

fn corpus() -> (Vec<Ipv4Net>, Vec<Ipv6Net>) {
    // Works from the workspace root (benches/) and from a member crate.
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let rel = "shared/corpus/routes/bart__tier1_prefixes.txt.gz";
    let path = [manifest.join("..").join(rel), manifest.join("../..").join(rel)]
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("corpus file {rel} not found above {}", manifest.display()));
    let reader = BufReader::new(GzDecoder::new(std::fs::File::open(&path).expect("open corpus")));
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for line in reader.lines() {
        let line = line.expect("read corpus");
        match line.trim().parse::<IpNet>() {
            Ok(IpNet::V4(p)) => v4.push(p.trunc()),
            Ok(IpNet::V6(p)) => v6.push(p.trunc()),
            Err(_) => {}
        }
    }
    (v4, v6)
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn timed<R>(what: &str, f: impl FnOnce() -> R) -> R {
    let t = Instant::now();
    let r = f();
    eprintln!("[lpm] build {what}: {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    r
}

fn bench_v4(c: &mut Criterion, v4: &[Ipv4Net]) {
    let ours = timed("netwatch Lpm4", || {
        v4.iter()
            .enumerate()
            .map(|(i, p)| (*p, i as u32))
            .collect::<Lpm4Builder<u32>>()
            .build()
            .expect("build")
    });
    let (top, nodes, leaves) = ours.shape();
    eprintln!(
        "[lpm] netwatch Lpm4: {} prefixes, {:.2} MiB ({} top entries, {} nodes, {} leaves)",
        ours.len(),
        ours.memory_bytes() as f64 / 1048576.0,
        top,
        nodes,
        leaves
    );
    let int = timed("ip_network_table v4", || {
        let mut t = IpNetworkTable::new();
        for (i, p) in v4.iter().enumerate() {
            let n = Ipv4Network::new(p.network(), p.prefix_len()).expect("truncated prefix");
            t.insert(n, i as u32);
        }
        t
    });
    let pt = timed("prefix-trie v4", || {
        let mut t = PrefixMap::<Ipv4Net, u32>::new();
        for (i, p) in v4.iter().enumerate() {
            t.insert(*p, i as u32);
        }
        t
    });

    let mut rng = Rng(42);
    let keys: Vec<u32> = (0..N_KEYS).map(|_| rng.next() as u32).collect();

    let mut g = c.benchmark_group("lpm_v4_uniform");
    g.throughput(Throughput::Elements(N_KEYS as u64));
    g.bench_function("netwatch_lookup", |b| {
        b.iter(|| {
            let mut acc = 0u64;
            for &k in &keys {
                if let Some(m) = ours.lookup_key(k) {
                    acc += u64::from(m.prefix.prefix_len());
                }
            }
            black_box(acc)
        })
    });
    g.bench_function("netwatch_lookup_batch", |b| {
        let mut out: Vec<Option<LpmMatch<'_, Ipv4Net, u32>>> = vec![None; CHUNK];
        b.iter(|| {
            let mut acc = 0u64;
            for chunk in keys.chunks(CHUNK) {
                ours.lookup_batch(chunk, &mut out);
                for m in out.iter().take(chunk.len()).flatten() {
                    acc += u64::from(m.prefix.prefix_len());
                }
            }
            black_box(acc)
        })
    });
    g.bench_function("ip_network_table", |b| {
        b.iter(|| {
            let mut acc = 0u64;
            for &k in &keys {
                if let Some((n, _)) = int.longest_match_ipv4(Ipv4Addr::from(k)) {
                    acc += u64::from(n.netmask());
                }
            }
            black_box(acc)
        })
    });
    g.bench_function("prefix_trie", |b| {
        b.iter(|| {
            let mut acc = 0u64;
            for &k in &keys {
                let q = Ipv4Net::new_assert(Ipv4Addr::from(k), 32);
                if let Some((n, _)) = pt.get_lpm(&q) {
                    acc += u64::from(n.prefix_len());
                }
            }
            black_box(acc)
        })
    });
    g.finish();
}

fn bench_v6(c: &mut Criterion, v6: &[Ipv6Net]) {
    let ours = timed("netwatch Lpm6", || {
        v6.iter()
            .enumerate()
            .map(|(i, p)| (*p, i as u32))
            .collect::<Lpm6Builder<u32>>()
            .build()
            .expect("build")
    });
    let (top, nodes, leaves) = ours.shape();
    eprintln!(
        "[lpm] netwatch Lpm6: {} prefixes, {:.2} MiB ({} top entries, {} nodes, {} leaves)",
        ours.len(),
        ours.memory_bytes() as f64 / 1048576.0,
        top,
        nodes,
        leaves
    );
    let int = timed("ip_network_table v6", || {
        let mut t = IpNetworkTable::new();
        for (i, p) in v6.iter().enumerate() {
            let n = Ipv6Network::new(p.network(), p.prefix_len()).expect("truncated prefix");
            t.insert(n, i as u32);
        }
        t
    });
    let pt = timed("prefix-trie v6", || {
        let mut t = PrefixMap::<Ipv6Net, u32>::new();
        for (i, p) in v6.iter().enumerate() {
            t.insert(*p, i as u32);
        }
        t
    });

    let mut rng = Rng(7);
    // "uniform": uniformly random in 2000::/3, the globally routed space that
    // holds every prefix of the table (uniform over all of ::/0 would miss at
    // the first level 7 times in 8). "matching": a random table prefix with
    // random host bits, so the walk goes to the prefix's depth.
    let uniform: Vec<u128> = (0..N_KEYS)
        .map(|_| {
            let k = (u128::from(rng.next()) << 64) | u128::from(rng.next());
            (k >> 3) | (1u128 << 125)
        })
        .collect();
    let matching: Vec<u128> = (0..N_KEYS)
        .map(|_| {
            let p = v6[(rng.next() % v6.len() as u64) as usize];
            let host = (u128::from(rng.next()) << 64) | u128::from(rng.next());
            let hostmask = if p.prefix_len() == 0 {
                u128::MAX
            } else {
                !(u128::MAX << (128 - u32::from(p.prefix_len())))
            };
            u128::from(p.network()) | (host & hostmask)
        })
        .collect();

    for (name, keys) in [("lpm_v6_uniform_2000::/3", &uniform), ("lpm_v6_matching", &matching)] {
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Elements(N_KEYS as u64));
        g.bench_function("netwatch_lookup", |b| {
            b.iter(|| {
                let mut acc = 0u64;
                for &k in keys.iter() {
                    if let Some(m) = ours.lookup_key(k) {
                        acc += u64::from(m.prefix.prefix_len());
                    }
                }
                black_box(acc)
            })
        });
        g.bench_function("netwatch_lookup_batch", |b| {
            let mut out: Vec<Option<LpmMatch<'_, Ipv6Net, u32>>> = vec![None; CHUNK];
            b.iter(|| {
                let mut acc = 0u64;
                for chunk in keys.chunks(CHUNK) {
                    ours.lookup_batch(chunk, &mut out);
                    for m in out.iter().take(chunk.len()).flatten() {
                        acc += u64::from(m.prefix.prefix_len());
                    }
                }
                black_box(acc)
            })
        });
        g.bench_function("ip_network_table", |b| {
            b.iter(|| {
                let mut acc = 0u64;
                for &k in keys.iter() {
                    if let Some((n, _)) = int.longest_match_ipv6(Ipv6Addr::from(k)) {
                        acc += u64::from(n.netmask());
                    }
                }
                black_box(acc)
            })
        });
        g.bench_function("prefix_trie", |b| {
            b.iter(|| {
                let mut acc = 0u64;
                for &k in keys.iter() {
                    let q = Ipv6Net::new_assert(Ipv6Addr::from(k), 128);
                    if let Some((n, _)) = pt.get_lpm(&q) {
                        acc += u64::from(n.prefix_len());
                    }
                }
                black_box(acc)
            })
        });
        g.finish();
    }
}

fn benches(c: &mut Criterion) {
    let t = Instant::now();
    let (v4, v6) = corpus();
    eprintln!(
        "[lpm] corpus: {} IPv4 + {} IPv6 prefixes, read in {:.0} ms; batch lanes {BATCH_LANES}",
        v4.len(),
        v6.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    bench_v4(c, &v4);
    bench_v6(c, &v6);
}

criterion_group! {
    name = lpm;
    config = Criterion::default().sample_size(10);
    targets = benches
}
criterion_main!(lpm);
