//! `[cluster]`, validated: the other nodes this one shares flows with, how often they hear
//! from each other, and the secret that authenticates what they say.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Most nodes in a cluster: live-node sets travel to the workers as 64-bit masks.
pub const MAX_NODES: usize = 64;
/// The UDP port node-to-node encapsulated packets go to when `forward_port` is left out.
pub const DEFAULT_FORWARD_PORT: u16 = 6070;

#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub secret_file: PathBuf,
    pub heartbeat: Duration,
    pub dead_after: Duration,
    pub forward_port: u16,
    /// How long `node drain` keeps serving this node's own flows when no deadline is given.
    pub drain_deadline: Duration,
    /// Sorted by id, so a node's index is the same on every node with the same list.
    pub nodes: Vec<NodeConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    pub id: u16,
    pub weight: u32,
    /// Data-plane address: where node-to-node encapsulated packets go.
    pub address: IpAddr,
    pub mac: Option<[u8; 6]>,
    /// The control thread's UDP sync endpoint.
    pub sync: SocketAddr,
}

impl ClusterConfig {
    pub fn index_of(&self, id: u16) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == id)
    }
}
