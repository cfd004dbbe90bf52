// Temporary exploration harness: min-of-N timing (robust to descheduling).
use flate2::read::GzDecoder;
use netwatch_routing::ipnet::{IpNet, Ipv4Net, Ipv6Net};
use netwatch_routing::{Lpm4Builder, Lpm6Builder, LpmMatch};
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::time::Instant;

fn main() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/corpus/routes/bart__tier1_prefixes.txt.gz"
    );
    let r = BufReader::new(GzDecoder::new(std::fs::File::open(path).unwrap()));
    let (mut v4, mut v6) = (vec![], vec![]);
    for l in r.lines() {
        match l.unwrap().parse::<IpNet>() {
            Ok(IpNet::V4(p)) => v4.push(p.trunc()),
            Ok(IpNet::V6(p)) => v6.push(p.trunc()),
            _ => {}
        }
    }
    let t4 = v4
        .iter()
        .enumerate()
        .map(|(i, p)| (*p, i as u32))
        .collect::<Lpm4Builder<u32>>()
        .build()
        .unwrap();
    let mut int = ip_network_table::IpNetworkTable::new();
    for (i, p) in v4.iter().enumerate() {
        int.insert(ip_network::Ipv4Network::new(p.network(), p.prefix_len()).unwrap(), i as u32);
    }
    let mut s = 12345u64;
    let s0 = s;
    let keys: Vec<u32> = (0..1 << 16)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 16) as u32
        })
        .collect();
    let reps = 300;
    let time = |name: &str, f: &dyn Fn() -> u64| {
        let mut best = f64::MAX;
        let mut acc = 0;
        for _ in 0..reps {
            let t = Instant::now();
            acc += f();
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!("{name:30} {:8.1} M/s  (acc {acc})", keys.len() as f64 / best / 1e6);
    };
    time("v4 netwatch lookup", &|| {
        keys.iter()
            .map(|&k| t4.lookup_key(k).map_or(0, |m| m.prefix.prefix_len() as u64))
            .sum()
    });
    time("v4 netwatch batch", &|| {
        let mut out: Vec<Option<LpmMatch<'_, Ipv4Net, u32>>> = vec![None; 1024];
        let mut a = 0;
        for c in keys.chunks(1024) {
            t4.lookup_batch(c, &mut out);
            a += out.iter().flatten().map(|m| m.prefix.prefix_len() as u64).sum::<u64>();
        }
        a
    });
    time("v4 ip_network_table", &|| {
        keys.iter()
            .map(|&k| int.longest_match_ipv4(Ipv4Addr::from(k)).map_or(0, |(n, _)| n.netmask() as u64))
            .sum()
    });
    let t6 = v6
        .iter()
        .enumerate()
        .map(|(i, p)| (*p, i as u32))
        .collect::<Lpm6Builder<u32>>()
        .build()
        .unwrap();
    let mut int6 = ip_network_table::IpNetworkTable::new();
    for (i, p) in v6.iter().enumerate() {
        int6.insert(ip_network::Ipv6Network::new(p.network(), p.prefix_len()).unwrap(), i as u32);
    }
    let mut rnd = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let k6: Vec<u128> = (0..1 << 16)
        .map(|_| {
            let p: Ipv6Net = v6[(rnd() % v6.len() as u64) as usize];
            let h = ((rnd() as u128) << 64) | rnd() as u128;
            let hm = if p.prefix_len() == 0 {
                u128::MAX
            } else {
                !(u128::MAX << (128 - p.prefix_len() as u32))
            };
            u128::from(p.network()) | (h & hm)
        })
        .collect();
    let k6u: Vec<u128> = (0..1 << 16)
        .map(|_| {
            let h = ((rnd() as u128) << 64) | rnd() as u128;
            (h >> 3) | (1u128 << 125)
        })
        .collect();
    for (nm, ks) in [("matching", &k6), ("uniform2000", &k6u)] {
        let time = |name: &str, f: &dyn Fn() -> u64| {
            let mut best = f64::MAX;
            let mut acc = 0;
            for _ in 0..reps {
                let t = Instant::now();
                acc += f();
                best = best.min(t.elapsed().as_secs_f64());
            }
            println!("{name:30} {:8.1} M/s  (acc {acc})", ks.len() as f64 / best / 1e6);
        };
        time(&format!("v6 {nm} netwatch lookup"), &|| {
            ks.iter()
                .map(|&k| t6.lookup_key(k).map_or(0, |m| m.prefix.prefix_len() as u64))
                .sum()
        });
        time(&format!("v6 {nm} netwatch batch"), &|| {
            let mut out: Vec<Option<LpmMatch<'_, Ipv6Net, u32>>> = vec![None; 1024];
            let mut a = 0;
            for c in ks.chunks(1024) {
                t6.lookup_batch(c, &mut out);
                a += out
                    .iter()
                    .take(c.len())
                    .flatten()
                    .map(|m| m.prefix.prefix_len() as u64)
                    .sum::<u64>();
            }
            a
        });
        time(&format!("v6 {nm} ip_network_table"), &|| {
            ks.iter()
                .map(|&k| {
                    int6.longest_match_ipv6(std::net::Ipv6Addr::from(k))
                        .map_or(0, |(n, _)| n.netmask() as u64)
                })
                .sum()
        });
    }
}
