//! The packet tracer on the control thread (`trace add`, `trace clear`, `show trace`; the
//! workers' side is `tandem_dataplane::trace`): tracers out to the workers, swapped for
//! empty ones every 100 ms while a trace runs; each traced frame told (stages and words,
//! with the snapshot's names) and kept; and in a cluster, the trace armed and cleared on
//! every node, and each node's accounts sent to every other, so `show trace` on any node
//! shows a packet's way through all of them.

use super::Control;
use crate::cluster::codec::{TraceMsg, MAX_TRACE_PARTS, TRACE_PART_BYTES};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tandem_dataplane::messages::ToWorker;
use tandem_dataplane::trace::{explain, Filter, Tracer};

/// How often a running trace's tracers are swapped for empty ones (and their frames told).
const SWAP_EVERY: Duration = Duration::from_millis(100);
/// Accounts kept, from every node (the oldest go first).
pub const MAX_ENTRIES: usize = 2000;
/// A peer's account whose parts have not all come within this long is given up.
const PARTS_TIMEOUT: Duration = Duration::from_secs(2);
/// Most half-received accounts kept at once.
const MAX_PENDING: usize = 256;

/// The trace that runs.
pub(super) struct Armed {
    pub(super) id: u64,
    filter: Filter,
    count: u32,
    /// Frames the filter may still pick on this node (shared by the workers' tracers).
    left: Arc<AtomicU32>,
    /// The node that ran `trace add`.
    by: u16,
}

/// A peer's account as its parts come: each part's bytes once it is here, and when the
/// first came.
type Parts = (Vec<Option<Vec<u8>>>, Instant);

pub(super) struct Tracing {
    pub(super) armed: Option<Armed>,
    /// Emptied tracers, handed out again (their room allocated once).
    #[allow(clippy::vec_box)]
    spare: Vec<Box<Tracer>>,
    pub(super) last_swap: Instant,
    /// Every node's accounts, oldest first.
    entries: VecDeque<Value>,
    /// Frames that matched while a worker's tracer was full (not traced).
    missed: u64,
    /// This node's next account number (names its parts to peers).
    next_entry: u32,
    /// Peers' accounts in parts: (node, entry) -> parts so far, since when.
    pending: HashMap<(u16, u32), Parts>,
    /// Accounts from peers that did not arrive whole, or did not parse.
    lost_from_peers: u64,
}

impl Tracing {
    pub(super) fn new(now: Instant) -> Tracing {
        Tracing {
            armed: None,
            spare: Vec::new(),
            last_swap: now,
            entries: VecDeque::new(),
            missed: 0,
            next_entry: 0,
            pending: HashMap::new(),
            lost_from_peers: 0,
        }
    }
}

/// Microseconds since 1970 by this host's clock.
fn wall_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

impl Control {
    /// `trace add`: traces up to `count` frames matching `filter` on this node, and in a
    /// cluster on every node (each its own count). Replaces a trace that runs; keeps the
    /// accounts so far (`trace clear` empties them).
    pub fn trace_add(&mut self, filter: Filter, count: u32) -> u64 {
        let id = wall_us();
        let me = self.cfg.node_id as u16;
        if let Some(c) = self.cluster.as_mut() {
            c.send_trace(&TraceMsg::Arm {
                id,
                count,
                filter: filter.text().to_string(),
            });
        }
        self.arm(id, filter, count, me);
        id
    }

    fn arm(&mut self, id: u64, filter: Filter, count: u32, by: u16) {
        let left = Arc::new(AtomicU32::new(count));
        for w in &mut self.workers {
            let t = Tracer::new(id, filter.clone(), Arc::clone(&left));
            w.send(ToWorker::Trace(Some(Box::new(t))));
        }
        self.tracing.armed = Some(Armed {
            id,
            filter,
            count,
            left,
            by,
        });
    }

    /// `trace clear`: stops the trace on every node and forgets every account.
    pub fn trace_clear(&mut self) {
        let id = self.tracing.armed.as_ref().map_or(0, |a| a.id);
        if let Some(c) = self.cluster.as_mut() {
            c.send_trace(&TraceMsg::Clear { id });
        }
        self.disarm();
    }

    fn disarm(&mut self) {
        self.tracing.armed = None;
        for w in &mut self.workers {
            w.send(ToWorker::Trace(None));
        }
        self.tracing.entries.clear();
        self.tracing.pending.clear();
        self.tracing.missed = 0;
    }

    /// Each tick: while a trace runs, every 100 ms each worker gets an empty tracer and
    /// hands back the one it filled (`traced`).
    pub fn trace_tick(&mut self, now: Instant) {
        let t = &mut self.tracing;
        t.pending
            .retain(|_, (_, since)| now.duration_since(*since) < PARTS_TIMEOUT);
        let Some(a) = &t.armed else {
            return;
        };
        if now.duration_since(t.last_swap) < SWAP_EVERY {
            return;
        }
        t.last_swap = now;
        for w in &mut self.workers {
            let fresh = match t.spare.pop() {
                Some(mut s) => {
                    s.id = a.id;
                    s.filter = a.filter.clone();
                    s.left = Arc::clone(&a.left);
                    s
                }
                None => Box::new(Tracer::new(a.id, a.filter.clone(), Arc::clone(&a.left))),
            };
            w.send(ToWorker::Trace(Some(fresh)));
        }
    }

    /// A worker's filled tracer: each frame told, kept, and sent to the peers.
    pub(super) fn traced(&mut self, mut t: Box<Tracer>) {
        let me = self.cfg.node_id as u16;
        // The workers' clock (`Now`) in time of day, read now, so the nodes' accounts
        // interleave (an origin taken at start would drift by the TSC's calibration error,
        // about a millisecond a minute); without it, about when the node started.
        let clock0 = match &self.node_clock {
            Some(now_us) => wall_us().saturating_sub(now_us()),
            None => wall_us().saturating_sub(self.started.elapsed().as_micros() as u64),
        };
        self.tracing.missed += u64::from(t.missed);
        for r in t.records() {
            let told = explain::tell(r, &self.snapshot);
            let entry = json!({
                "node": me,
                "worker": told.worker,
                "port": told.port,
                "at_us": clock0 + told.us,
                "stages": told.stages.iter()
                    .map(|(s, d)| json!({"stage": s, "detail": d}))
                    .collect::<Vec<_>>(),
                "verdict": told.verdict,
            });
            self.send_entry(t.id, &entry);
            self.keep_entry(entry);
        }
        let current = self.tracing.armed.as_ref().is_some_and(|a| a.id == t.id);
        if current {
            t.clear();
            self.tracing.spare.push(t);
        }
    }

    fn keep_entry(&mut self, e: Value) {
        let q = &mut self.tracing.entries;
        if q.len() == MAX_ENTRIES {
            q.pop_front();
        }
        q.push_back(e);
    }

    fn send_entry(&mut self, id: u64, e: &Value) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let bytes = e.to_string().into_bytes();
        let parts = bytes.len().div_ceil(TRACE_PART_BYTES);
        if parts > usize::from(MAX_TRACE_PARTS) {
            tracing::warn!(
                bytes = bytes.len(),
                "a traced frame's account is too long for peers"
            );
            return;
        }
        let entry = self.tracing.next_entry;
        self.tracing.next_entry = entry.wrapping_add(1);
        for (i, chunk) in bytes.chunks(TRACE_PART_BYTES).enumerate() {
            c.send_trace(&TraceMsg::Part {
                id,
                entry,
                part: i as u8,
                parts: parts as u8,
                bytes: chunk.to_vec(),
            });
        }
    }

    /// The tracer's news from peer `from` (authenticated by the sync channel).
    pub(super) fn peer_trace(&mut self, from: u16, msg: TraceMsg, now: Instant) {
        match msg {
            TraceMsg::Arm { id, count, filter } => {
                if self.tracing.armed.as_ref().is_some_and(|a| a.id == id) {
                    return;
                }
                match Filter::parse(&filter) {
                    Ok(f) => self.arm(id, f, count, from),
                    Err(e) => tracing::warn!(from, %e, "a peer's trace filter does not parse"),
                }
            }
            TraceMsg::Clear { .. } => self.disarm(),
            TraceMsg::Part {
                entry,
                part,
                parts,
                bytes,
                ..
            } => {
                let t = &mut self.tracing;
                if t.pending.len() >= MAX_PENDING && !t.pending.contains_key(&(from, entry)) {
                    t.lost_from_peers += 1;
                    return;
                }
                let (slots, _) = t
                    .pending
                    .entry((from, entry))
                    .or_insert_with(|| (vec![None; usize::from(parts)], now));
                if slots.len() != usize::from(parts) {
                    t.pending.remove(&(from, entry));
                    t.lost_from_peers += 1;
                    return;
                }
                slots[usize::from(part)] = Some(bytes);
                if slots.iter().any(Option::is_none) {
                    return;
                }
                let Some((slots, _)) = t.pending.remove(&(from, entry)) else {
                    return;
                };
                let whole: Vec<u8> = slots.into_iter().flatten().flatten().collect();
                match serde_json::from_slice::<Value>(&whole) {
                    // A peer names itself: an account naming another node is refused.
                    Ok(v) if v["node"] == json!(from) && v["stages"].is_array() => {
                        self.keep_entry(v)
                    }
                    _ => self.tracing.lost_from_peers += 1,
                }
            }
        }
    }

    /// `show trace`: the trace that runs and every node's accounts, oldest first.
    pub fn trace_view(&self) -> Value {
        let t = &self.tracing;
        let mut packets: Vec<&Value> = t.entries.iter().collect();
        packets.sort_by_key(|e| e["at_us"].as_u64().unwrap_or(0));
        json!({
            "running": t.armed.as_ref().map(|a| json!({
                "filter": a.filter.text(),
                "count": a.count,
                "left_here": a.left.load(Ordering::Relaxed),
                "added_on_node": a.by,
            })),
            "missed": t.missed,
            "lost_from_peers": t.lost_from_peers,
            "packets": packets,
        })
    }
}
