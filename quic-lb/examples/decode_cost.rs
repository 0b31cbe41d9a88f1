//! What decoding costs a load balancer, per connection ID, for each form: plaintext, the
//! four-pass network with the server ID in the left half (three passes), with a long
//! server ID (four passes), and the single AES pass. Prints nanoseconds per decode; under
//! `valgrind --tool=callgrind` its instruction counts are repeatable.
//!
//! `cargo run --release -p quic-lb --example decode_cost [ROUNDS]`

use quic_lb::{Config, MAX_CID_LEN, MAX_PLAINTEXT_LEN};
use std::hint::black_box;
use std::time::Instant;

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let key = Some([0x5a; 16]);
    for (name, sid, nonce, key) in [
        ("plaintext 2+6", 2, 6, None),
        ("four-pass 2+6 (3 passes)", 2, 6, key),
        ("four-pass 10+5 (4 passes)", 10, 5, key),
        ("single pass 8+8", 8, 8, key),
    ] {
        let c = Config::new(0, sid, nonce, key).unwrap();
        // 256 IDs of distinct nonces, decoded in turn.
        let ids: Vec<[u8; MAX_CID_LEN]> = (0..256u32)
            .map(|i| {
                let mut id = [0u8; MAX_CID_LEN];
                let n = vec![i as u8; nonce];
                c.encode(&vec![7u8; sid], &n, &mut id).unwrap();
                id
            })
            .collect();
        let mut out = [0u8; MAX_PLAINTEXT_LEN];
        let mut found = 0usize;
        let start = Instant::now();
        for r in 0..rounds {
            let id = &ids[r & 255][..c.cid_len()];
            found += black_box(c.decode(black_box(id), &mut out)).map_or(0, |s| s.len());
        }
        let ns = start.elapsed().as_nanos() as f64 / rounds as f64;
        println!("{name}: {ns:.1} ns per decode ({found} octets found)");
    }
}
