//! Neighbors and links. The control thread's neighbor table is the authority the workers'
//! follow (`tandem_dataplane::neighbor`): it holds, per port and bounded by the port's
//! `max_neighbors`,
//!
//! - the next hops the node needs (each port's gateways, and the backends' and peers' on
//!   paths without a fixed MAC): *wanted*, kept and refreshed while the config names them;
//! - the addresses a worker asked it to resolve (`FromWorker::NeedNeighbor`): *resolving*,
//!   kept while they answer, dropped when they stop, the oldest pushed out when the port's
//!   table is full;
//! - the MACs the config fixes (paths and peers with `mac`): *fixed*, never changed by
//!   anything heard on the wire.
//!
//! Every entry goes to every worker, incomplete ones included: a worker fills in or
//! refreshes an entry from what it hears (ARP, ND) and reports news here, but creates none.
//! So what strangers send can neither grow the table nor change a next hop the node does
//! not resolve. Solicitations are paced per neighbor and sent through the first worker.

use super::Control;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tandem_dataplane::counters::MAX_PORTS;
use tandem_dataplane::messages::ToWorker;
use tandem_dataplane::neighbor::{Entry, NeighborKey};
use tandem_dataplane::wire::ethernet::Mac;

/// How long a resolved neighbor is trusted before it is asked again.
pub const NEIGHBOR_REFRESH: Duration = Duration::from_secs(30);
/// Least time between two solicitations of the same next hop.
pub const SOLICIT_INTERVAL: Duration = Duration::from_secs(1);
/// How long a neighbor the node is only resolving may go unanswered (about three
/// solicitations) before it is dropped.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(3);

/// Why the node keeps a neighbor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// A next hop of the config (gateway, backend's or peer's path).
    Wanted,
    /// A worker needed it (a client's next hop, say).
    Resolving,
    /// The config fixes its MAC.
    Fixed,
}

impl Why {
    pub fn name(self) -> &'static str {
        match self {
            Why::Wanted => "next hop",
            Why::Resolving => "resolving",
            Why::Fixed => "fixed",
        }
    }
}

/// One neighbor as the control thread knows it.
#[derive(Debug, Clone, Copy)]
pub struct Known {
    pub mac: Option<Mac>,
    pub why: Why,
    pub created: Instant,
    /// When an answer last confirmed the MAC.
    pub confirmed: Option<Instant>,
}

impl Known {
    fn entry(&self) -> Entry {
        match (self.why, self.mac) {
            (Why::Fixed, Some(m)) => Entry::Fixed(m),
            (_, Some(m)) => Entry::Learned(m),
            (_, None) => Entry::Incomplete,
        }
    }
}

/// What the neighbor table refused or dropped, for `show stats` and `/metrics`.
#[derive(Debug, Default, Clone, Copy)]
pub struct NeighborCounts {
    /// Resolving entries pushed out by newer ones on a full port.
    pub evicted: u64,
    /// Resolving entries dropped after going unanswered.
    pub expired: u64,
    /// Requests to resolve refused: the port's table full of next hops it needs.
    pub refused_full: u64,
    /// Workers' news about a neighbor the table no longer holds.
    pub stale_reports: u64,
}

/// What the node knows of its links and next hops.
pub(super) struct Neighborhood {
    pub table: HashMap<NeighborKey, Known>,
    /// Entries per port.
    pub per_port: [usize; MAX_PORTS],
    pub solicited: HashMap<NeighborKey, Instant>,
    pub counts: NeighborCounts,
    pub link_up: Vec<bool>,
}

impl Neighborhood {
    pub fn new(ports: usize) -> Self {
        Neighborhood {
            table: HashMap::new(),
            per_port: [0; MAX_PORTS],
            solicited: HashMap::new(),
            counts: NeighborCounts::default(),
            link_up: vec![true; ports],
        }
    }
}

impl Control {
    /// Asks a worker to send an ARP request / neighbor solicitation, at most once per
    /// interval per next hop.
    pub(super) fn solicit(&mut self, key: NeighborKey, now: Instant) {
        if self
            .net
            .solicited
            .get(&key)
            .is_some_and(|t| now.duration_since(*t) < SOLICIT_INTERVAL)
        {
            return;
        }
        self.net.solicited.insert(key, now);
        if let Some(w) = self.workers.first_mut() {
            w.send(ToWorker::Solicit {
                port: key.port,
                ip: key.ip,
                v6: key.v6,
            });
        }
    }

    /// The neighbors the config names: next hops to resolve (each port's gateways; the
    /// backends' and peers' on paths without a fixed MAC), and the MACs it fixes.
    pub fn configured_neighbors(&self) -> Vec<(NeighborKey, Option<Mac>)> {
        let mut out = Vec::new();
        let mut hop = |port: u8, addr: &[u8; 16], v6: bool, mac: Option<Mac>| {
            let Some(p) = self.ports.get(usize::from(port)) else {
                return;
            };
            let Some(h) = p.next_hop(addr, v6) else {
                return;
            };
            match mac {
                // A fixed MAC is the backend's (or peer's) own when it is on the link (its
                // own next hop); off the link it is a router's, for this path alone.
                Some(m) if h == *addr => out.push((NeighborKey::new(port, v6, h), Some(m))),
                Some(_) => {}
                None => out.push((NeighborKey::new(port, v6, h), None)),
            }
        };
        for (pi, p) in self.ports.iter().enumerate() {
            if let Some(g) = p.gateway {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&g);
                hop(pi as u8, &b, false, None);
            }
            if let Some(g) = p.gateway6 {
                hop(pi as u8, &g, true, None);
            }
        }
        if let Some(view) = &self.snapshot.cluster {
            for (i, n) in view.nodes.iter().enumerate() {
                if i != usize::from(view.me) {
                    hop(n.port, &n.addr, n.v6, n.mac);
                }
            }
        }
        for b in &self.snapshot.backends {
            for path in &b.paths {
                hop(path.port, &b.addr, b.v6, path.mac);
            }
        }
        out.sort();
        // A fixed MAC wins over a next hop to resolve at the same address.
        out.dedup_by(|later, first| {
            later.0 == first.0 && {
                first.1 = first.1.or(later.1);
                true
            }
        });
        out
    }

    /// The next hops this node must resolve (wanted, not fixed).
    pub fn wanted_next_hops(&self) -> Vec<NeighborKey> {
        self.configured_neighbors()
            .into_iter()
            .filter(|(_, m)| m.is_none())
            .map(|(k, _)| k)
            .collect()
    }

    /// Sets an entry and hands it to every worker.
    fn put_neighbor(&mut self, key: NeighborKey, known: Known) {
        let port = usize::from(key.port);
        if self.net.table.insert(key, known).is_none() && port < MAX_PORTS {
            self.net.per_port[port] += 1;
        }
        let entry = known.entry();
        self.broadcast(None, || ToWorker::Neighbor { key, entry });
    }

    /// Removes an entry from here and every worker.
    fn drop_neighbor(&mut self, key: NeighborKey) {
        if self.net.table.remove(&key).is_some() && usize::from(key.port) < MAX_PORTS {
            self.net.per_port[usize::from(key.port)] -= 1;
        }
        self.net.solicited.remove(&key);
        self.broadcast(None, || ToWorker::ForgetNeighbor(key));
    }

    /// Makes room on `port` for one more entry: the oldest resolving entry goes when the
    /// port is full. False when the port is full of entries the config needs.
    fn room_on(&mut self, port: u8, now: Instant) -> bool {
        let limit = self
            .ports
            .get(usize::from(port))
            .map_or(0, |p| p.max_neighbors as usize);
        if self
            .net
            .per_port
            .get(usize::from(port))
            .copied()
            .unwrap_or(0)
            < limit
        {
            return true;
        }
        let oldest = self
            .net
            .table
            .iter()
            .filter(|(k, v)| k.port == port && v.why == Why::Resolving)
            .min_by_key(|(_, v)| v.confirmed.unwrap_or(v.created).min(now))
            .map(|(k, _)| *k);
        match oldest {
            Some(k) => {
                self.drop_neighbor(k);
                self.net.counts.evicted += 1;
                true
            }
            None => false,
        }
    }

    /// Brings the table in line with the config: next hops it names are added (ahead of
    /// resolving entries), fixed MACs set, and entries it no longer names become resolving
    /// (they age out if unanswered) or, if fixed, go.
    fn sync_configured(&mut self, now: Instant) {
        let conf = self.configured_neighbors();
        let named: HashMap<NeighborKey, Option<Mac>> = conf.iter().copied().collect();
        let stale: Vec<(NeighborKey, Known)> = self
            .net
            .table
            .iter()
            .filter(|(k, v)| v.why != Why::Resolving && !named.contains_key(*k))
            .map(|(k, v)| (*k, *v))
            .collect();
        for (k, v) in stale {
            match v.why {
                Why::Fixed => self.drop_neighbor(k),
                _ => {
                    if let Some(e) = self.net.table.get_mut(&k) {
                        e.why = Why::Resolving;
                    }
                }
            }
        }
        for (key, fixed) in conf {
            let have = self.net.table.get(&key).copied();
            let want = match (fixed, have) {
                (Some(m), Some(h)) if h.why == Why::Fixed && h.mac == Some(m) => continue,
                (Some(m), _) => Known {
                    mac: Some(m),
                    why: Why::Fixed,
                    created: now,
                    confirmed: None,
                },
                (None, Some(h)) if h.why == Why::Wanted => continue,
                (None, Some(h)) if h.why == Why::Resolving => {
                    if let Some(e) = self.net.table.get_mut(&key) {
                        e.why = Why::Wanted;
                    }
                    continue;
                }
                (None, _) => Known {
                    mac: None,
                    why: Why::Wanted,
                    created: now,
                    confirmed: None,
                },
            };
            if have.is_none() && !self.room_on(key.port, now) {
                // Only next hops and fixed MACs fill the port: the config names more than
                // `max_neighbors` (config checks make that unlikely).
                self.net.counts.refused_full += 1;
                continue;
            }
            self.put_neighbor(key, want);
        }
    }

    /// Resolves next hops that are unknown or due for a refresh, and drops resolving
    /// entries that stopped answering. Called once a second.
    pub fn refresh_neighbors(&mut self, now: Instant) {
        self.sync_configured(now);
        let mut ask = Vec::new();
        let mut gone = Vec::new();
        for (k, v) in &self.net.table {
            if v.why == Why::Fixed {
                continue;
            }
            let since = v.confirmed.unwrap_or(v.created);
            let age = now.saturating_duration_since(since);
            let due = v.confirmed.is_none() || age >= NEIGHBOR_REFRESH;
            let unanswered = match v.confirmed {
                None => age >= GIVE_UP_AFTER,
                Some(_) => age >= NEIGHBOR_REFRESH + GIVE_UP_AFTER,
            };
            if v.why == Why::Resolving && unanswered {
                gone.push(*k);
            } else if due {
                ask.push(*k);
            }
        }
        for k in gone {
            self.drop_neighbor(k);
            self.net.counts.expired += 1;
        }
        for k in ask {
            self.solicit(k, now);
        }
    }

    /// A worker needs `key` and its table has no MAC for it: resolved entries are handed
    /// to the workers again (one may have lost it), others resolved.
    pub(super) fn need_neighbor(&mut self, key: NeighborKey, now: Instant) {
        match self.net.table.get(&key).copied() {
            Some(k) if k.mac.is_some() => {
                if self
                    .net
                    .solicited
                    .get(&key)
                    .is_none_or(|t| now.duration_since(*t) >= SOLICIT_INTERVAL)
                {
                    self.net.solicited.insert(key, now);
                    self.put_neighbor(key, k);
                }
            }
            Some(_) => self.solicit(key, now),
            None => {
                if usize::from(key.port) >= self.ports.len() {
                    return;
                }
                if !self.room_on(key.port, now) {
                    self.net.counts.refused_full += 1;
                    return;
                }
                let k = Known {
                    mac: None,
                    why: Why::Resolving,
                    created: now,
                    confirmed: None,
                };
                self.put_neighbor(key, k);
                self.solicit(key, now);
            }
        }
    }

    /// A worker heard `mac` for an entry it holds: recorded and shared with the others.
    pub(super) fn neighbor_heard(&mut self, key: NeighborKey, mac: Mac, now: Instant) {
        let Some(k) = self.net.table.get_mut(&key) else {
            self.net.counts.stale_reports += 1;
            return;
        };
        if k.why == Why::Fixed {
            return;
        }
        let news = k.mac != Some(mac);
        k.mac = Some(mac);
        k.confirmed = Some(now);
        if news {
            let k = *k;
            self.put_neighbor(key, k);
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
