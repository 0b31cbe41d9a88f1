//! What the control thread hands a worker between bursts (replicated flows, snapshots,
//! neighbors, membership, links, fresh histograms) and the table's housekeeping.

use super::{Core, Replica, State};
use crate::flow::table::Lookahead;
use crate::flow::{FlowKey, FlowRecord, FlowState, Mark};
use crate::messages::{FromWorker, ToWorker};

impl Core {
    /// Applies one message from the control thread. `Solicit` and `Probe` are the port
    /// layer's to carry out (they need a fresh buffer); they are handed back.
    pub fn apply(&mut self, msg: ToWorker) -> Option<ToWorker> {
        let st = &mut self.state;
        if !matches!(
            msg,
            ToWorker::Flow { .. } | ToWorker::Measure(_) | ToWorker::Trace(_)
        ) {
            // What a ready egress was made from may have changed (`fast`).
            st.epoch = st.epoch.wrapping_add(1);
        }
        match msg {
            ToWorker::Flow { key, rec } => self.apply_replica(key, rec),
            ToWorker::Measure(fresh) => {
                let old = std::mem::replace(&mut st.hist, fresh);
                let worker = st.worker;
                st.emit(FromWorker::Measured { worker, hist: old });
            }
            ToWorker::Trace(t) => {
                if let Some(old) = std::mem::replace(&mut st.trace, t) {
                    st.emit(FromWorker::Traced(old));
                }
            }
            ToWorker::Services(s) => {
                st.table.set_timeouts(s.options.timeouts);
                st.ready.fit(&s);
                let old = std::mem::replace(&mut self.services, s);
                st.emit(FromWorker::Retired(old));
            }
            ToWorker::Neighbor { key, entry } => st.neighbors.install(key, entry, st.now.ms),
            ToWorker::ForgetNeighbor(key) => st.neighbors.forget(&key),
            ToWorker::Nodes(m) => {
                let me = self.services.cluster.as_ref().map(|c| c.me);
                if me.is_some_and(|me| st.membership.came_back(&m, me)) {
                    st.back_since_ms = Some(st.now.ms);
                }
                st.membership = m;
            }
            ToWorker::Link { port, up } => {
                if let Some(l) = st.link_up.get_mut(usize::from(port)) {
                    *l = up;
                }
            }
            m @ (ToWorker::Solicit { .. } | ToWorker::Probe { .. }) => return Some(m),
        }
        None
    }

    /// Stores a record another worker (of this node, or of another node through the control
    /// thread) made or changed, keeping what is this worker's own (`merge_local`).
    #[inline]
    pub fn apply_replica(&mut self, key: FlowKey, rec: FlowRecord) {
        self.state.apply_replica(key, None, rec);
    }

    /// Stores a batch of another worker's records (`apply_replica` each), hashing each key
    /// once and prefetching (`prefetch`, as for `process_burst`) every record's bucket
    /// before storing the first: a sibling's flood of new flows lands in a table past the
    /// cache, where each insert's bucket is a miss.
    pub fn apply_replicas(&mut self, batch: &[Replica], prefetch: impl Fn(*const u8)) {
        let st = &mut self.state;
        let mut la = [None; super::MAX_BURST];
        for chunk in batch.chunks(super::MAX_BURST) {
            for (l, r) in la.iter_mut().zip(chunk) {
                let h = st.table.lookahead(&r.key);
                prefetch(st.table.tags_addr(h));
                *l = Some(h);
            }
            for (l, r) in la.iter().zip(chunk) {
                st.apply_replica(r.key, *l, r.rec);
            }
        }
    }

    /// Removes expired flows from a slice of the table; call between bursts.
    pub fn housekeeping(&mut self, buckets: usize) {
        let n = self.state.table.sweep(self.state.now.ms, buckets);
        self.state.swept(n);
    }

    /// Removes expired flows at the table's own pace (`FlowTable::sweep_paced`); call
    /// between bursts, as often as you like.
    pub fn housekeeping_paced(&mut self) {
        let n = self.state.table.sweep_paced(self.state.now.ms);
        self.state.swept(n);
    }
}

impl State {
    fn swept(&mut self, n: usize) {
        if n > 0 {
            self.counters.flows_expired.add(n as u64);
            self.counters.flows_in_table.set(self.table.len() as u64);
        }
        self.give_back_released();
    }

    /// A record from another worker replaces this worker's copy: the copy's admission slot
    /// and its passive measurement under way are this worker's and stay with it (the slot is
    /// given back if the flow closed or moved to another backend).
    /// `la`: the key's hash, if known.
    #[inline]
    fn apply_replica(&mut self, key: FlowKey, la: Option<Lookahead>, mut rec: FlowRecord) {
        self.counters.flows_replicated_in.inc();
        self.merge_local(&key, la, &mut rec);
        self.store_hashed(key, la, rec);
        self.give_back_released();
    }

    fn merge_local(&mut self, key: &FlowKey, la: Option<Lookahead>, rec: &mut FlowRecord) {
        rec.admitted = false;
        let Some(old) = self.table.peek_hashed(key, la).copied() else {
            rec.mark = Mark::None;
            return;
        };
        if old.admitted {
            if rec.state == FlowState::Closing || old.backend != rec.backend {
                self.load.release(old.backend);
            } else {
                rec.admitted = true;
            }
        }
        if old.backend == rec.backend {
            rec.mark = old.mark;
            rec.mark_us = old.mark_us;
        } else {
            rec.mark = Mark::None;
        }
    }
}
