//! A quinn server's connection IDs carrying its server ID: give the endpoint a
//! [`Generator`] (`EndpointConfig::cid_generator`) and every ID it issues routes back to
//! it through a QUIC-LB load balancer with the same configuration.
//!
//! ```
//! fn issue_routable_ids(endpoint: &mut quinn_proto::EndpointConfig) {
//!     let lb = quic_lb::Config::new(0, 2, 6, None).unwrap();
//!     let server_id = [0x0a, 0x01];
//!     endpoint.cid_generator(move || {
//!         Box::new(quic_lb::quinn::Generator::new(lb.clone(), &server_id).unwrap())
//!     });
//! }
//! ```

use crate::{Config, Error, MAX_CID_LEN, MAX_PLAINTEXT_LEN};
use quinn_proto::{ConnectionId, ConnectionIdGenerator, InvalidCid};
use std::time::Duration;

/// Issues QUIC-LB connection IDs for one server ID. Without a key the nonce is random, as
/// the draft asks (plaintext IDs must not be linkable); with one it counts from a random
/// start, so no two IDs of this generator are alike (encryption is a permutation).
pub struct Generator {
    config: Config,
    server_id: [u8; MAX_PLAINTEXT_LEN],
    counter: u128,
    lifetime: Option<Duration>,
}

impl Generator {
    /// A generator for `server_id`, which must be `config.server_id_len()` octets.
    pub fn new(config: Config, server_id: &[u8]) -> Result<Generator, Error> {
        if server_id.len() != config.server_id_len() {
            return Err(Error::Length {
                what: "a server ID",
                want: config.server_id_len(),
                got: server_id.len(),
            });
        }
        let mut id = [0u8; MAX_PLAINTEXT_LEN];
        id[..server_id.len()].copy_from_slice(server_id);
        Ok(Generator {
            config,
            server_id: id,
            counter: rand::random(),
            lifetime: None,
        })
    }

    /// Retire each ID after `d` (quinn then issues new ones).
    pub fn with_lifetime(mut self, d: Duration) -> Generator {
        self.lifetime = Some(d);
        self
    }

    fn nonce(&mut self) -> [u8; 16] {
        if self.config.encrypted() {
            self.counter = self.counter.wrapping_add(1);
            self.counter.to_be_bytes()
        } else {
            rand::random()
        }
    }
}

impl ConnectionIdGenerator for Generator {
    fn generate_cid(&mut self) -> ConnectionId {
        let n = self.config.nonce_len();
        let nonce = self.nonce();
        // A nonce longer than 16 octets is padded with random ones.
        let mut full = [0u8; MAX_PLAINTEXT_LEN];
        let take = n.min(16);
        full[n - take..n].copy_from_slice(&nonce[16 - take..]);
        if n > 16 {
            let pad: [u8; 3] = rand::random();
            full[..n - 16].copy_from_slice(&pad[..n - 16]);
        }
        let mut out = [0u8; MAX_CID_LEN];
        let s = self.config.server_id_len();
        let len = self
            .config
            .encode(&self.server_id[..s], &full[..n], &mut out)
            .expect("lengths come from the configuration");
        ConnectionId::new(&out[..len])
    }

    fn validate(&self, cid: &ConnectionId) -> Result<(), InvalidCid> {
        let mut out = [0u8; MAX_PLAINTEXT_LEN];
        match self.config.decode(cid, &mut out) {
            Some(sid) if sid == &self.server_id[..sid.len()] => Ok(()),
            _ => Err(InvalidCid),
        }
    }

    fn cid_len(&self) -> usize {
        self.config.cid_len()
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        self.lifetime
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_decode_to_the_server_and_differ() {
        for key in [None, Some([3u8; 16])] {
            for (s, n) in [(2, 6), (8, 8), (3, 16), (1, 18)] {
                let c = Config::new(2, s, n, key).unwrap();
                let sid: Vec<u8> = (1..=s as u8).collect();
                let mut g = Generator::new(c.clone(), &sid).unwrap();
                let a = g.generate_cid();
                let b = g.generate_cid();
                assert_ne!(a, b);
                assert_eq!(a.len(), g.cid_len());
                let mut out = [0u8; MAX_PLAINTEXT_LEN];
                assert_eq!(c.decode(&a, &mut out), Some(&sid[..]));
                assert!(g.validate(&a).is_ok());
                let other = Generator::new(c, &vec![0xff; s]).unwrap();
                assert!(other.validate(&a).is_err());
            }
        }
    }
}
