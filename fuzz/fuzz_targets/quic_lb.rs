//! QUIC-LB decoding against arbitrary connection IDs, under a configuration drawn from the
//! input's first octets: nothing may panic, a decoded server ID has the configured length,
//! and an ID encoded from the input's octets decodes to its server ID.
//!
//! Input: [config_id % 7, server_id_len, nonce_len, keyed, key (16)] then the ID.

#![no_main]

use libfuzzer_sys::fuzz_target;
use quic_lb::{Config, MAX_CID_LEN, MAX_PLAINTEXT_LEN, MIN_NONCE_LEN};

fn config(head: &[u8]) -> Option<Config> {
    let sid_len = 1 + usize::from(head[1]) % 15;
    let room = MAX_PLAINTEXT_LEN - sid_len - MIN_NONCE_LEN;
    let nonce_len = MIN_NONCE_LEN + usize::from(head[2]) % (room + 1);
    let key: Option<[u8; 16]> = (head[3] & 1 == 1).then(|| head[4..20].try_into().unwrap());
    Config::new(head[0] % 7, sid_len, nonce_len, key).ok()
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 20 {
        return;
    }
    let (head, cid) = data.split_at(20);
    let Some(c) = config(head) else { return };
    let mut out = [0u8; MAX_PLAINTEXT_LEN];
    if let Some(sid) = c.decode(cid, &mut out) {
        assert_eq!(sid.len(), c.server_id_len());
    }
    // The same octets as a server ID and nonce: encoded, then decoded.
    let (s, n) = (c.server_id_len(), c.nonce_len());
    if cid.len() >= s + n {
        let mut id = [0u8; MAX_CID_LEN];
        let len = c.encode(&cid[..s], &cid[s..s + n], &mut id).unwrap();
        let mut back = [0u8; MAX_PLAINTEXT_LEN];
        assert_eq!(c.decode(&id[..len], &mut back), Some(&cid[..s]));
    }
});
