//! The cluster as a worker sees it: the nodes (from the config, the same list and order on
//! every node), which of them serve and which take new flows (bit masks the control thread
//! sends on every membership change), and the ranking that names a flow's primary and
//! backup node.

pub mod rank;

use crate::ports::PortInfo;
use crate::wire::ethernet::Mac;
use tandem_config::ClusterConfig;

pub use crate::flow::record::NO_NODE;

/// How many times a packet may be forwarded between nodes. One: the receiving node
/// forwards, the node that gets it serves it.
pub const MAX_HOPS: u8 = 1;

#[derive(Debug, Clone)]
pub struct Node {
    pub id: u16,
    pub weight: u32,
    pub addr: [u8; 16],
    pub v6: bool,
    /// A fixed MAC, or `None` to resolve `addr` (or the port's gateway) by ARP/ND.
    pub mac: Option<Mac>,
    /// The port encapsulated packets to this node leave by.
    pub port: u8,
}

#[derive(Debug, Clone)]
pub struct ClusterView {
    /// Sorted by id; a node's index here is what flow records and masks use.
    pub nodes: Vec<Node>,
    /// This node's index.
    pub me: u8,
    /// UDP port of node-to-node encapsulation.
    pub forward_port: u16,
}

impl ClusterView {
    pub fn new(cfg: &ClusterConfig, me: u16, ports: &[PortInfo]) -> Option<ClusterView> {
        let nodes: Vec<Node> = cfg
            .nodes
            .iter()
            .map(|n| {
                let addr = crate::flow::key::addr_bytes(n.address);
                let v6 = n.address.is_ipv6();
                let a: &[u8] = if v6 { &addr } else { &addr[..4] };
                // The port on the node's subnet, else the first with a gateway of its family.
                let port = ports
                    .iter()
                    .position(|p| p.on_link(a))
                    .or_else(|| {
                        ports.iter().position(|p| {
                            if v6 {
                                p.gateway6.is_some()
                            } else {
                                p.gateway.is_some()
                            }
                        })
                    })
                    .unwrap_or(0) as u8;
                Node {
                    id: n.id,
                    weight: n.weight,
                    addr,
                    v6,
                    mac: n.mac,
                    port,
                }
            })
            .collect();
        let me = nodes.iter().position(|n| n.id == me)? as u8;
        Some(ClusterView {
            nodes,
            me,
            forward_port: cfg.forward_port,
        })
    }

    /// The index of the node with this id.
    #[inline]
    pub fn index_of(&self, id: u16) -> Option<u8> {
        self.nodes.iter().position(|n| n.id == id).map(|i| i as u8)
    }

    /// The id of the node at `index` (0 for [`NO_NODE`]).
    #[inline]
    pub fn id_of(&self, index: u8) -> u16 {
        self.nodes.get(usize::from(index)).map_or(0, |n| n.id)
    }
}

/// Which nodes do what, as the control thread last saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Membership {
    /// Alive and holding the cluster's flows: may serve flows it was given.
    pub serving: u64,
    /// Serving and not draining: may take the primary role for new flows.
    pub eligible: u64,
}

impl Membership {
    #[inline]
    pub fn serves(&self, node: u8) -> bool {
        node < 64 && self.serving & (1 << node) != 0
    }

    #[inline]
    pub fn takes_new(&self, node: u8) -> bool {
        node < 64 && self.eligible & (1 << node) != 0
    }

    /// True when `node` takes new flows in `next` and did not in `self` while others did:
    /// it came back (drain ended, no longer cut off, rejoined), and the flows begun while
    /// it was away are held by the nodes that took them. (A worker's first membership is
    /// no coming back: there were no flows before it.)
    pub fn came_back(&self, next: &Membership, node: u8) -> bool {
        self.eligible != 0 && !self.takes_new(node) && next.takes_new(node)
    }
}

/// Where a packet of a known flow goes: to the flow's primary while it serves, to its
/// backup when the primary does not, and to the best-ranked serving node when neither
/// does. `None` when no node serves at all.
#[inline]
pub fn owner(view: &ClusterView, m: &Membership, primary: u8, backup: u8, h: u64) -> Option<u8> {
    if m.serves(primary) {
        return Some(primary);
    }
    if m.serves(backup) {
        return Some(backup);
    }
    rank::top2(h, &view.nodes, m.serving).0
}
