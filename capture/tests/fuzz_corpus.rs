//! Property test: corpus files truncated at random offsets and with random
//! bytes flipped never make the reader or the decoder panic, and memory and
//! work stay bounded (packets <= input bytes / 12, buffer bounded by the
//! configured maximum caplen).

mod common;

use common::corpus;
use netwatch_capture::decode::{decode, DecodeOptions, FragmentTracker};
use netwatch_capture::file::{CaptureReader, ReaderOptions};
use proptest::prelude::*;

const SEEDS: &[(&str, &str)] = &[
    ("pcap", "tcpdump__ssh.pcap"),
    ("pcap", "tcpdump__pptp.pcap"),
    ("pcap", "tcpdump__vxlan.pcap"),
    ("pcap", "tcpdump__geneve.pcap"),
    ("pcap", "tcpdump__various_gre.pcap"),
    ("pcap", "tcpdump__tcp-handshake-nano.pcap"),
    ("pcap", "libpcap__ipv6_ext_headers.pcap"),
    ("pcap", "pcapplusplus__MplsPackets.pcap"),
    ("pcap", "pcapplusplus__null_loopback.pcap"),
    ("pcap", "pcapplusplus__ip6_fragments.pcap"),
    ("pcap", "pcapng-testsuite__test102_be.pcapng"),
    ("pcap", "pcapng-testsuite__test202_le.pcapng"),
    ("pcap", "pcapng-testsuite__test010_le.pcapng"),
    ("pcap", "pcapplusplus__pcapng-example.pcapng"),
    ("pcap-malformed", "pcap-parser__modified-format.pcap"),
    ("pcap-malformed", "tcpdump__hoobr_rt6_print.pcap"),
];

const MAX_CAPLEN: u32 = 65_536;

fn exercise(bytes: &[u8]) {
    let opts = ReaderOptions {
        max_caplen: MAX_CAPLEN,
        ..ReaderOptions::default()
    };
    let Ok(mut r) = CaptureReader::with_options(bytes, opts) else {
        return;
    };
    let mut frags = FragmentTracker::new(16);
    let mut n = 0usize;
    while let Some(p) = r.next_packet() {
        let Ok(p) = p else { break };
        n += 1;
        assert!(n <= bytes.len() / 12 + 1, "more packets than the input can hold");
        assert!(p.data.len() <= MAX_CAPLEN as usize);
        for decap in [false, true] {
            if let Ok(mut m) = decode(p.link_type, p.data, DecodeOptions { decap }) {
                frags.process(&mut m);
                assert!(m.ip_offset <= p.data.len());
            }
        }
        let _ = p;
        assert!(r.buffer_capacity() <= 2 * (MAX_CAPLEN as usize + 64 * 1024) + 64);
    }
    assert!(frags.len() <= 16);
    for w in r.warnings() {
        let _ = w.to_string();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_corpus_never_panics(
        seed in 0..SEEDS.len(),
        cut in 0.0f64..1.0,
        flips in proptest::collection::vec((0.0f64..1.0, 1u8..=255), 0..24),
    ) {
        let (dir, file) = SEEDS[seed];
        let mut bytes = std::fs::read(corpus(dir).join(file)).unwrap();
        // Flip bytes, favouring the headers at the start half of the time.
        for (i, (pos, x)) in flips.iter().enumerate() {
            let span = if i % 2 == 0 { bytes.len().min(256) } else { bytes.len() };
            let at = ((*pos * span as f64) as usize).min(bytes.len().saturating_sub(1));
            if let Some(b) = bytes.get_mut(at) {
                *b ^= x;
            }
        }
        let keep = ((cut * bytes.len() as f64) as usize).max(1);
        // Half the cases keep the whole (mutated) file.
        let keep = if cut < 0.5 { keep * 2 } else { bytes.len() };
        bytes.truncate(keep.min(bytes.len()));
        exercise(&bytes);
    }
}
