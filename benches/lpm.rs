//! Longest-prefix-match throughput on a real route table
//! (shared/corpus/routes/bart__tier1_prefixes.txt.gz: ~901k IPv4 and ~160k
//! IPv6 prefixes): netwatch's poptrie (`lookup` one by one and
//! `lookup_batch`) against `ip_network_table` and `prefix-trie`, in one
//! process, on the same keys.
//!
//! Run from the workspace root:
//! `cargo bench --bench lpm -- --warm-up-time 1 --measurement-time 3`
//!
//! Before the criterion groups it prints build time and memory, and a
//! summary table measured as the best of several passes (robust on a
//! shared, busy machine, where criterion's means include time the process
//! was not running), with ratios to `ip_network_table`.
//!
//! Key sets: IPv4 uniformly random over the whole space. IPv6 "uniform":
//! uniformly random in 2000::/3, the globally routed space holding every
//! prefix of the table (uniform over ::/0 would miss at the first level 7
//! times in 8); IPv6 "matching": a random table prefix with random host
//! bits, so every walk goes down to a real prefix.

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
use netwatch_routing::{Lpm4, Lpm4Builder, Lpm6, Lpm6Builder, LpmHit, LpmKey, LpmMatch, LpmTable, BATCH_LANES};
use prefix_trie::PrefixMap;

/// Keys per criterion iteration.
const N_KEYS: usize = 1 << 20;
/// Keys handed to one `lookup_batch` call.
const CHUNK: usize = 1024;
/// Keys and passes for the best-of summary.
const SUMMARY_KEYS: usize = 1 << 18;
const SUMMARY_PASSES: usize = 15;

fn corpus() -> (Vec<Ipv4Net>, Vec<Ipv6Net>) {
    // Works from the workspace root package and from a member crate.
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let rel = "shared/corpus/routes/bart__tier1_prefixes.txt.gz";
    let path = [manifest.join("..").join(rel), manifest.join("../..").join(rel)]
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("corpus file {rel} not found above {}", manifest.display()));
    let file = std::fs::File::open(&path).expect("open corpus");
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for line in BufReader::new(GzDecoder::new(file)).lines() {
        let line = line.expect("read corpus");
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match line.parse::<IpNet>() {
            Ok(IpNet::V4(p)) => v4.push(p.trunc()),
            Ok(IpNet::V6(p)) => v6.push(p.trunc()),
            Err(e) => panic!("{}: {line:?}: {e}", path.display()),
        }
    }
    (v4, v6)
}

/// splitmix64.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn next_u128(&mut self) -> u128 {
        (u128::from(self.next()) << 64) | u128::from(self.next())
    }
}

fn timed<R>(what: &str, f: impl FnOnce() -> R) -> R {
    let t = Instant::now();
    let r = f();
    eprintln!("[lpm] build {what}: {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    r
}

/// The four contenders for one address family.
struct Tables<O, I, P> {
    ours: O,
    int: I,
    pt: P,
}

type V4 = Tables<Lpm4<u32>, IpNetworkTable<u32>, PrefixMap<Ipv4Net, u32>>;
type V6 = Tables<Lpm6<u32>, IpNetworkTable<u32>, PrefixMap<Ipv6Net, u32>>;

fn build_v4(v4: &[Ipv4Net]) -> V4 {
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
        "[lpm] netwatch Lpm4: {} prefixes, {:.2} MiB ({top} top entries, {nodes} nodes, {leaves} leaves)",
        ours.len(),
        ours.memory_bytes() as f64 / 1048576.0,
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
    Tables { ours, int, pt }
}

fn build_v6(v6: &[Ipv6Net]) -> V6 {
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
        "[lpm] netwatch Lpm6: {} prefixes, {:.2} MiB ({top} top entries, {nodes} nodes, {leaves} leaves)",
        ours.len(),
        ours.memory_bytes() as f64 / 1048576.0,
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
    Tables { ours, int, pt }
}

// One pass of each contender over a key slice; each returns a checksum
// (sum of matched prefix lengths) so the work cannot be optimized away and
// the contenders can be checked against each other.

fn v4_ours(t: &V4, keys: &[u32]) -> u64 {
    keys.iter()
        .map(|&k| t.ours.lookup_key(k).map_or(0, |m| u64::from(m.prefix.prefix_len())))
        .sum()
}
fn v4_ours_batch<'a>(t: &'a V4, keys: &[u32], out: &mut [Option<LpmMatch<'a, Ipv4Net, u32>>]) -> u64 {
    let mut acc = 0;
    for chunk in keys.chunks(CHUNK) {
        t.ours.lookup_batch(chunk, out);
        acc += out[..chunk.len()]
            .iter()
            .flatten()
            .map(|m| u64::from(m.prefix.prefix_len()))
            .sum::<u64>();
    }
    acc
}
fn v4_ours_hit(t: &V4, keys: &[u32]) -> u64 {
    keys.iter()
        .map(|&k| u64::from(t.ours.lookup_hit(k).prefix_len().unwrap_or(0)))
        .sum()
}
/// Our batched lookups into compact hits (either family).
fn ours_hits<K: LpmKey>(t: &LpmTable<K, u32>, keys: &[K], out: &mut [LpmHit]) -> u64 {
    let mut acc = 0;
    for chunk in keys.chunks(CHUNK) {
        t.lookup_batch_hits(chunk, out);
        acc += out[..chunk.len()]
            .iter()
            .map(|h| u64::from(h.prefix_len().unwrap_or(0)))
            .sum::<u64>();
    }
    acc
}
fn v4_int(t: &V4, keys: &[u32]) -> u64 {
    keys.iter()
        .map(|&k| {
            t.int
                .longest_match_ipv4(Ipv4Addr::from(k))
                .map_or(0, |(n, _)| u64::from(n.netmask()))
        })
        .sum()
}
fn v4_pt(t: &V4, keys: &[u32]) -> u64 {
    keys.iter()
        .map(|&k| {
            let q = Ipv4Net::new_assert(Ipv4Addr::from(k), 32);
            t.pt.get_lpm(&q).map_or(0, |(n, _)| u64::from(n.prefix_len()))
        })
        .sum()
}
fn v6_ours(t: &V6, keys: &[u128]) -> u64 {
    keys.iter()
        .map(|&k| t.ours.lookup_key(k).map_or(0, |m| u64::from(m.prefix.prefix_len())))
        .sum()
}
fn v6_ours_batch<'a>(t: &'a V6, keys: &[u128], out: &mut [Option<LpmMatch<'a, Ipv6Net, u32>>]) -> u64 {
    let mut acc = 0;
    for chunk in keys.chunks(CHUNK) {
        t.ours.lookup_batch(chunk, out);
        acc += out[..chunk.len()]
            .iter()
            .flatten()
            .map(|m| u64::from(m.prefix.prefix_len()))
            .sum::<u64>();
    }
    acc
}
fn v6_int(t: &V6, keys: &[u128]) -> u64 {
    keys.iter()
        .map(|&k| {
            t.int
                .longest_match_ipv6(Ipv6Addr::from(k))
                .map_or(0, |(n, _)| u64::from(n.netmask()))
        })
        .sum()
}
fn v6_pt(t: &V6, keys: &[u128]) -> u64 {
    keys.iter()
        .map(|&k| {
            let q = Ipv6Net::new_assert(Ipv6Addr::from(k), 128);
            t.pt.get_lpm(&q).map_or(0, |(n, _)| u64::from(n.prefix_len()))
        })
        .sum()
}

/// A contender of the summary: name, passes (prefix-trie gets few: it is
/// slow) and one pass over the keys returning a checksum.
type Racer<'a> = (&'a str, usize, Box<dyn FnMut() -> u64 + 'a>);

/// Best-of-passes lookups per second of each contender, and its checksum.
/// The contenders' passes are interleaved (pass 1 of each, pass 2 of
/// each, ...) so that a noisy moment on a shared machine falls on all of
/// them alike rather than on one: the ratios are what the targets compare.
fn race<'a>(n: usize, mut contenders: Vec<Racer<'a>>) -> Vec<(&'a str, (f64, u64))> {
    let most = contenders.iter().map(|c| c.1).max().unwrap_or(0);
    let mut best = vec![(f64::MAX, 0u64); contenders.len()];
    for pass in 0..most {
        for (c, b) in contenders.iter_mut().zip(best.iter_mut()) {
            if pass < c.1 {
                let t = Instant::now();
                let sum = black_box((c.2)());
                *b = (b.0.min(t.elapsed().as_secs_f64()), sum);
            }
        }
    }
    contenders
        .iter()
        .zip(best)
        .map(|(c, (t, sum))| (c.0, (n as f64 / t, sum)))
        .collect()
}

fn summary(group: &str, rows: Vec<(&str, (f64, u64))>) {
    let int = rows
        .iter()
        .find(|(n, _)| *n == "ip_network_table")
        .map_or(f64::NAN, |(_, (r, _))| *r);
    let check = rows.first().map(|(_, (_, s))| *s);
    for (name, (rate, sum)) in &rows {
        eprintln!(
            "[lpm] summary {group:<22} {name:<22} {:>8.1} M lookups/s  {:>6.2}x ip_network_table",
            rate / 1e6,
            rate / int,
        );
        // Every contender must have found the same matches.
        assert_eq!(Some(*sum), check, "{group}: {name}'s checksum differs from the first contender's");
    }
}

/// A labelled lookup pass over a key slice.
type Contender<'f, K> = (&'f str, &'f dyn Fn(&[K]) -> u64);

fn group<K: Copy>(c: &mut Criterion, name: &str, keys: &[K], fns: [Contender<'_, K>; 5]) {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(keys.len() as u64));
    for (label, f) in fns {
        g.bench_function(label, |b| b.iter(|| black_box(f(keys))));
    }
    g.finish();
}

fn benches(c: &mut Criterion) {
    let t = Instant::now();
    let (v4, v6) = corpus();
    eprintln!(
        "[lpm] corpus: {} IPv4 + {} IPv6 prefixes, read in {:.0} ms; batch lanes {BATCH_LANES}, chunk {CHUNK}",
        v4.len(),
        v6.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    let t4 = build_v4(&v4);
    let t6 = build_v6(&v6);

    let mut rng = Rng(42);
    let k4: Vec<u32> = (0..N_KEYS).map(|_| rng.next() as u32).collect();
    let k6u: Vec<u128> = (0..N_KEYS).map(|_| (rng.next_u128() >> 3) | (1u128 << 125)).collect();
    let k6m: Vec<u128> = (0..N_KEYS)
        .map(|_| {
            let p = v6[(rng.next() % v6.len() as u64) as usize];
            let len = u32::from(p.prefix_len());
            let host = if len == 0 { u128::MAX } else { !(u128::MAX << (128 - len)) };
            u128::from(p.network()) | (rng.next_u128() & host)
        })
        .collect();

    let f4_ours = |k: &[u32]| v4_ours(&t4, k);
    let f4_batch = |k: &[u32]| v4_ours_batch(&t4, k, &mut vec![None; CHUNK]);
    let f4_hits = |k: &[u32]| ours_hits(&t4.ours, k, &mut vec![LpmHit::MISS; CHUNK]);
    let f4_int = |k: &[u32]| v4_int(&t4, k);
    let f4_pt = |k: &[u32]| v4_pt(&t4, k);
    let f6_ours = |k: &[u128]| v6_ours(&t6, k);
    let f6_batch = |k: &[u128]| v6_ours_batch(&t6, k, &mut vec![None; CHUNK]);
    let f6_hits = |k: &[u128]| ours_hits(&t6.ours, k, &mut vec![LpmHit::MISS; CHUNK]);
    let f6_int = |k: &[u128]| v6_int(&t6, k);
    let f6_pt = |k: &[u128]| v6_pt(&t6, k);

    // Best-of summary, passes interleaved (prefix-trie gets fewer: it is slow).
    let s = SUMMARY_KEYS;
    let p = SUMMARY_PASSES;
    let mut out4 = vec![None; CHUNK];
    let mut hits4 = vec![LpmHit::MISS; CHUNK];
    summary(
        "v4 uniform",
        race(
            s,
            vec![
                ("netwatch lookup", p, Box::new(|| v4_ours(&t4, &k4[..s]))),
                ("netwatch lookup_hit", p, Box::new(|| v4_ours_hit(&t4, &k4[..s]))),
                ("netwatch lookup_batch", p, Box::new(|| v4_ours_batch(&t4, &k4[..s], &mut out4))),
                ("netwatch batch_hits", p, Box::new(|| ours_hits(&t4.ours, &k4[..s], &mut hits4))),
                ("ip_network_table", p, Box::new(|| v4_int(&t4, &k4[..s]))),
                ("prefix-trie", 3, Box::new(|| v4_pt(&t4, &k4[..s]))),
            ],
        ),
    );
    for (label, keys) in [("v6 uniform 2000::/3", &k6u), ("v6 matching", &k6m)] {
        let mut out6 = vec![None; CHUNK];
        let mut hits6 = vec![LpmHit::MISS; CHUNK];
        summary(
            label,
            race(
                s,
                vec![
                    ("netwatch lookup", p, Box::new(|| v6_ours(&t6, &keys[..s]))),
                    ("netwatch lookup_batch", p, Box::new(|| v6_ours_batch(&t6, &keys[..s], &mut out6))),
                    ("netwatch batch_hits", p, Box::new(|| ours_hits(&t6.ours, &keys[..s], &mut hits6))),
                    ("ip_network_table", p, Box::new(|| v6_int(&t6, &keys[..s]))),
                    ("prefix-trie", 3, Box::new(|| v6_pt(&t6, &keys[..s]))),
                ],
            ),
        );
    }

    group(
        c,
        "lpm_v4_uniform",
        &k4,
        [
            ("netwatch_lookup", &f4_ours),
            ("netwatch_lookup_batch", &f4_batch),
            ("netwatch_lookup_batch_hits", &f4_hits),
            ("ip_network_table", &f4_int),
            ("prefix_trie", &f4_pt),
        ],
    );
    for (label, keys) in [("lpm_v6_uniform_2000::/3", &k6u), ("lpm_v6_matching", &k6m)] {
        group(
            c,
            label,
            keys,
            [
                ("netwatch_lookup", &f6_ours),
                ("netwatch_lookup_batch", &f6_batch),
                ("netwatch_lookup_batch_hits", &f6_hits),
                ("ip_network_table", &f6_int),
                ("prefix_trie", &f6_pt),
            ],
        );
    }
}

criterion_group! {
    name = lpm;
    config = Criterion::default().sample_size(10);
    targets = benches
}
criterion_main!(lpm);
