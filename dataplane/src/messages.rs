//! What flows between the control thread and the workers. Each worker has one bounded
//! channel in and one out; messages are applied between bursts.

use crate::cluster::Membership;
use crate::flow::{FlowKey, FlowRecord};
use crate::services::Services;
use crate::wire::ethernet::Mac;
use std::sync::Arc;

/// Control thread to worker.
#[derive(Debug)]
pub enum ToWorker {
    /// A flow record created or changed elsewhere; store it (and its nat reverse entry).
    Flow { key: FlowKey, rec: FlowRecord },
    /// A new services snapshot to swap in.
    Services(Arc<Services>),
    /// A resolved next hop.
    Neighbor { port: u8, ip: [u8; 16], mac: Mac },
    /// Which cluster nodes serve and which take new flows.
    Nodes(Membership),
    /// A port's link went up or down.
    Link { port: u8, up: bool },
    /// Send an ARP request (IPv4) or neighbor solicitation (IPv6) for `ip` out of `port`.
    Solicit { port: u8, ip: [u8; 16], v6: bool },
}

/// Worker to control thread.
#[derive(Debug)]
pub enum FromWorker {
    /// A flow this worker created, whose state changed, or that is still alive (refresh).
    Flow {
        worker: u16,
        key: FlowKey,
        rec: FlowRecord,
        /// For the other nodes too: this node serves the flow and its handshake is over
        /// (or it is UDP). Otherwise only this node's other workers hear of it.
        peers: bool,
    },
    /// A neighbor learned from ARP or ND.
    Neighbor { port: u8, ip: [u8; 16], mac: Mac },
    /// A next hop the worker needed and did not know.
    NeedNeighbor { port: u8, ip: [u8; 16], v6: bool },
    /// A snapshot the worker no longer uses, to be freed off the packet path.
    Retired(Arc<Services>),
}
