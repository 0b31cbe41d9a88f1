//! A quic service's routing by connection ID: the QUIC-LB configuration it shares with its
//! backends, and which backend each server ID names.

use super::Placed;
use tandem_config::QuicConfig;

/// What a short-header packet's destination connection ID routes to.
#[derive(Clone, Debug)]
pub struct QuicRoute {
    lb: quic_lb::Config,
    /// (server ID packed big-endian into a u128, global backend id), sorted by ID. A
    /// server ID is at most 15 octets, so it fits; the length is the configuration's.
    ids: Vec<(u128, u16)>,
}

fn pack(id: &[u8]) -> u128 {
    id.iter().fold(0u128, |a, &b| a << 8 | u128::from(b))
}

impl QuicRoute {
    /// The route of a placed quic service: every running backend's server ID, draining ones
    /// too (their connections go on). None when the service has no QUIC-LB configuration.
    pub(super) fn of(q: &QuicConfig, placed: &Placed) -> Option<QuicRoute> {
        let lb = quic_lb::Config::new(
            q.config_id,
            usize::from(q.server_id_len),
            usize::from(q.nonce_len),
            q.key,
        )
        .ok()?;
        let mut ids: Vec<(u128, u16)> = placed
            .running()
            .filter(|(_, b, _)| b.server_id.len() == lb.server_id_len())
            .map(|(id, b, _)| (pack(&b.server_id), id))
            .collect();
        ids.sort_unstable();
        Some(QuicRoute { lb, ids })
    }

    /// The backend the destination connection ID `dcid` (a short header's, from its first
    /// octet on) names; None when it is not this configuration's or names no backend.
    #[inline]
    pub fn backend(&self, dcid: &[u8]) -> Option<u16> {
        let mut out = [0u8; quic_lb::MAX_PLAINTEXT_LEN];
        let sid = self.lb.decode(dcid, &mut out)?;
        let k = pack(sid);
        self.ids
            .binary_search_by_key(&k, |e| e.0)
            .ok()
            .map(|i| self.ids[i].1)
    }

    /// The configuration (for tests and the tracer).
    pub fn config(&self) -> &quic_lb::Config {
        &self.lb
    }
}
