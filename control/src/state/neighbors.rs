//! Neighbors and links: next hops the workers learned (shared with them all), the ones this
//! node must resolve and refresh, solicitations paced per next hop, and port links.

use super::Control;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tandem_dataplane::counters::MAX_PORTS;
use tandem_dataplane::messages::ToWorker;
use tandem_dataplane::wire::ethernet::Mac;

/// How long a resolved neighbor is trusted before it is asked again.
pub const NEIGHBOR_REFRESH: Duration = Duration::from_secs(30);
/// Least time between two solicitations of the same next hop.
pub const SOLICIT_INTERVAL: Duration = Duration::from_secs(1);

/// What the node knows of its links and next hops.
pub(super) struct Neighborhood {
    pub neighbors: HashMap<(u8, [u8; 16]), (Mac, Instant)>,
    pub solicited: HashMap<(u8, [u8; 16]), Instant>,
    pub link_up: Vec<bool>,
}

impl Control {
    /// Asks a worker to send an ARP request / neighbor solicitation, at most once per
    /// interval per next hop.
    pub(super) fn solicit(&mut self, port: u8, ip: [u8; 16], v6: bool, now: Instant) {
        if self
            .net
            .solicited
            .get(&(port, ip))
            .is_some_and(|t| now.duration_since(*t) < SOLICIT_INTERVAL)
        {
            return;
        }
        self.net.solicited.insert((port, ip), now);
        if let Some(w) = self.workers.first_mut() {
            w.send(ToWorker::Solicit { port, ip, v6 });
        }
    }

    /// The next hops this node must know: backends' (or their gateways') on paths without a
    /// fixed MAC, and every port's gateway.
    pub fn wanted_next_hops(&self) -> Vec<(u8, [u8; 16], bool)> {
        let mut out = Vec::new();
        for (pi, p) in self.ports.iter().enumerate() {
            if let Some(g) = p.gateway {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&g);
                out.push((pi as u8, b, false));
            }
            if let Some(g) = p.gateway6 {
                out.push((pi as u8, g, true));
            }
        }
        if let Some(view) = &self.snapshot.cluster {
            for (i, n) in view.nodes.iter().enumerate() {
                if i != usize::from(view.me) && n.mac.is_none() {
                    if let Some(hop) = self.ports[usize::from(n.port)].next_hop(&n.addr, n.v6) {
                        out.push((n.port, hop, n.v6));
                    }
                }
            }
        }
        for b in &self.snapshot.backends {
            for path in b.paths.iter().filter(|p| p.mac.is_none()) {
                if let Some(hop) = self.ports[usize::from(path.port)].next_hop(&b.addr, b.v6) {
                    out.push((path.port, hop, b.v6));
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// Resolves next hops that are unknown or due for a refresh.
    pub fn refresh_neighbors(&mut self, now: Instant) {
        for (port, ip, v6) in self.wanted_next_hops() {
            let fresh = self
                .net
                .neighbors
                .get(&(port, ip))
                .is_some_and(|(_, t)| now.duration_since(*t) < NEIGHBOR_REFRESH);
            if !fresh {
                self.solicit(port, ip, v6, now);
            }
        }
    }

    /// A port's link changed: tell the workers, which move flows to their backup paths.
    pub fn set_link(&mut self, port: usize, up: bool) {
        if port < self.net.link_up.len() && port < MAX_PORTS && self.net.link_up[port] != up {
            self.net.link_up[port] = up;
            tracing::warn!(port = %self.ports[port].name, up, "link changed");
            self.broadcast(None, || ToWorker::Link {
                port: port as u8,
                up,
            });
        }
    }
}
