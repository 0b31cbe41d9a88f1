//! `[service.quic]`, validated: the QUIC-LB configuration a `protocol = "quic"` service
//! shares with its backends (draft-ietf-quic-load-balancers). The balancer reads each
//! short-header packet's server ID out of its destination connection ID and routes by it.

use std::fmt;
use std::path::{Path, PathBuf};

/// Most octets a server ID and nonce take together (QUIC v1 IDs are at most 20 octets).
pub const MAX_QUIC_PLAINTEXT: u8 = 19;

#[derive(Clone, PartialEq, Eq)]
pub struct QuicConfig {
    /// The config rotation codepoint in the IDs' first three bits (0–6).
    pub config_id: u8,
    pub server_id_len: u8,
    pub nonce_len: u8,
    /// Where the 16-octet key lives; None: server IDs in plaintext.
    pub key_file: Option<PathBuf>,
    /// The key read from `key_file` (`Config::from_path` reads it; a config from text has
    /// none until then).
    pub key: Option<[u8; 16]>,
}

impl Default for QuicConfig {
    fn default() -> Self {
        QuicConfig {
            config_id: 0,
            server_id_len: 2,
            nonce_len: 6,
            key_file: None,
            key: None,
        }
    }
}

impl fmt::Debug for QuicConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key stays out of logs and answers.
        f.debug_struct("QuicConfig")
            .field("config_id", &self.config_id)
            .field("server_id_len", &self.server_id_len)
            .field("nonce_len", &self.nonce_len)
            .field("key_file", &self.key_file)
            .field("key", &self.key.map(|_| "(16 octets)"))
            .finish()
    }
}

/// Reads a QUIC-LB key: 16 octets, or 32 hex digits (a trailing newline allowed), in a file
/// only its owner may read (the same rule as the cluster's secret).
pub fn read_quic_key(path: &Path) -> Result<[u8; 16], String> {
    let bytes = crate::read_owner_only(path)?;
    quic_lb::parse_key(&bytes).map_err(|why| format!("{} {why}", path.display()))
}
