//! What flows between the control thread and the workers. Each worker has one bounded
//! channel in and one out; messages are applied between bursts.

use crate::cluster::Membership;
use crate::flow::{FlowKey, FlowRecord};
use crate::neighbor::{Entry, NeighborKey};
use crate::qos::hist::HistSet;
use crate::qos::probe::{Method, Outcome};
use crate::services::Services;
use crate::trace::Tracer;
use crate::wire::ethernet::Mac;
use std::sync::Arc;

/// Control thread to worker.
#[derive(Debug)]
pub enum ToWorker {
    /// A flow record created or changed elsewhere; store it.
    Flow { key: FlowKey, rec: FlowRecord },
    /// A new services snapshot to swap in.
    Services(Arc<Services>),
    /// A neighbor the node needs (resolved or not yet), or a MAC the config fixes.
    Neighbor { key: NeighborKey, entry: Entry },
    /// A neighbor the node no longer needs, or that stopped answering.
    ForgetNeighbor(NeighborKey),
    /// Which cluster nodes serve and which take new flows.
    Nodes(Membership),
    /// A port's link went up or down.
    Link { port: u8, up: bool },
    /// Send an ARP request (IPv4) or neighbor solicitation (IPv6) for `ip` out of `port`.
    Solicit { port: u8, ip: [u8; 16], v6: bool },
    /// A fresh histogram set: swap it in and hand the filled one back (once per period).
    Measure(Box<HistSet>),
    /// Send a health probe to a backend over one of its paths.
    Probe {
        backend: u16,
        path: u8,
        round: u8,
        method: Method,
    },
    /// Trace with this tracer from now on (None: stop tracing); hand the one in use back.
    Trace(Option<Box<Tracer>>),
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
    /// A MAC heard (ARP or ND) for a neighbor the worker's table holds: new or changed.
    Neighbor { key: NeighborKey, mac: Mac },
    /// A next hop the worker needed and did not know.
    NeedNeighbor(NeighborKey),
    /// A snapshot the worker no longer uses, to be freed off the packet path.
    Retired(Arc<Services>),
    /// The histograms this worker filled during the last period.
    Measured { worker: u16, hist: Box<HistSet> },
    /// A probe's answer (a probe that never comes back is the control thread's to time out).
    Probe {
        backend: u16,
        path: u8,
        round: u8,
        outcome: Outcome,
    },
    /// A probe the worker could not send (no address of the family on the port, or the
    /// next hop is not resolved yet): counts as a failure.
    ProbeUnsent { backend: u16, path: u8, round: u8 },
    /// The tracer the worker traced with until `ToWorker::Trace` replaced it.
    Traced(Box<Tracer>),
}
