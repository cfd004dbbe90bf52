//! Helpers shared by the integration tests: corpus loading and a simple
//! reference longest-prefix matcher.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use flate2::read::GzDecoder;
use netwatch_routing::ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// `shared/corpus/routes/<name>`, located from the crate directory.
pub fn corpus_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/corpus/routes")
        .join(name)
}

/// IPv4 and IPv6 (prefix, value) lists of one corpus file.
pub type Corpus = (Vec<(Ipv4Net, u32)>, Vec<(Ipv6Net, u32)>);

/// Prefixes of a corpus file: `bart__*.txt.gz` (one CIDR a line) or
/// `pyasn__*.dat.gz` (`prefix<TAB>AS`, `;` comments), as (prefix, value)
/// where value is the AS number for pyasn and the line number otherwise.
/// Panics, naming the file, when it is absent, unreadable or damaged: the
/// tests that use it must not pass on a missing corpus.
pub fn load_corpus(name: &str) -> Corpus {
    let path = corpus_path(name);
    let file =
        std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e} (the shared corpus must sit beside the repository)", path.display()));
    let reader = BufReader::new(GzDecoder::new(file));
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line = line.unwrap_or_else(|e| panic!("{}: line {}: {e}", path.display(), n + 1));
        let line = line.trim();
        if line.is_empty() || line.starts_with(';') {
            continue;
        }
        let mut parts = line.split('\t');
        let prefix = parts.next().unwrap_or_default();
        let value = parts.next().and_then(|s| s.trim().parse::<u32>().ok()).unwrap_or(n as u32);
        match prefix.parse::<IpNet>() {
            Ok(IpNet::V4(p)) => v4.push((p.trunc(), value)),
            Ok(IpNet::V6(p)) => v6.push((p.trunc(), value)),
            Err(_) => panic!("bad prefix in {name}: {line:?}"),
        }
    }
    (v4, v6)
}

/// Reference matcher: one hash map per prefix length, probed longest first.
/// Later duplicates overwrite earlier ones, like the builder.
pub struct Reference<K> {
    by_len: Vec<(u8, HashMap<K, u32>)>,
}

macro_rules! reference_impl {
    ($k:ty, $bits:expr) => {
        impl Reference<$k> {
            pub fn new(items: impl IntoIterator<Item = ($k, u8, u32)>) -> Self {
                let mut maps: Vec<HashMap<$k, u32>> = (0..=$bits).map(|_| HashMap::new()).collect();
                for (k, l, v) in items {
                    maps[l as usize].insert(Self::mask(k, l), v);
                }
                let by_len = maps
                    .into_iter()
                    .enumerate()
                    .filter(|(_, m)| !m.is_empty())
                    .map(|(l, m)| (l as u8, m))
                    .rev()
                    .collect();
                Self { by_len }
            }
            pub fn mask(k: $k, l: u8) -> $k {
                if l == 0 {
                    0
                } else {
                    k & (<$k>::MAX << ($bits - l as u32))
                }
            }
            pub fn lookup(&self, k: $k) -> Option<(u8, u32)> {
                for (l, m) in &self.by_len {
                    if let Some(v) = m.get(&Self::mask(k, *l)) {
                        return Some((*l, *v));
                    }
                }
                None
            }
        }
    };
}
reference_impl!(u32, 32);
reference_impl!(u128, 128);

/// Tiny deterministic PRNG (splitmix64) for test addresses.
pub struct SplitMix(pub u64);
impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
