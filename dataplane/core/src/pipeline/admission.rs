//! Admission: a new flow takes a slot on a backend below its limit (`max_flows`, or the
//! limit the control thread learned, `Load::learned`), on another of the
//! service's backends when its own is full (late binding), or waits in the service's queue,
//! first come first served, until a slot frees or `max_wait` passes. The slot goes back
//! when the flow closes or leaves the table.

use super::context::Segment;
use super::{Core, PacketBuf, State, Verdict};
use crate::counters::DropReason;
use crate::flow::{FlowRecord, FlowState};
use crate::qos::admission::{Load, Queue, Refused, Waiting};
use crate::services::{Service, Services};
use std::sync::Arc;

/// One queue per service, sized at start (a service without admission gets none).
pub(super) fn queues_for(s: &Services) -> Vec<Queue> {
    s.services
        .iter()
        .map(|svc| {
            let len = if svc.admission { svc.queue_max_len } else { 0 };
            Queue::new(len, svc.queue_max_wait_us)
        })
        .collect()
}

/// The flow closed: the copy that holds its backend's admission slot gives it back.
#[inline]
pub(super) fn release_if_closed(load: &Load, r: &mut FlowRecord) {
    if r.admitted && r.state == FlowState::Closing {
        load.release(r.backend);
        r.admitted = false;
    }
}

impl State {
    /// Slots of admitted flows the table dropped (expired, evicted) go back to their
    /// backends.
    #[inline]
    pub(super) fn give_back_released(&mut self) {
        if self.table.has_released() {
            for b in self.table.take_released() {
                self.load.release(b);
            }
        }
    }

    /// True when a new flow of `svc` must wait behind others already waiting (unless it is
    /// the head of that queue being run again).
    #[inline]
    pub(super) fn must_wait(&self, svc: &Service) -> bool {
        svc.admission
            && self.releasing != Some(svc.id)
            && self
                .queues
                .get(usize::from(svc.id))
                .is_some_and(|q| !q.is_empty())
    }

    /// A slot for a new flow on `chosen`, else on whichever eligible backend of the
    /// service has one (starting from a place drawn by `hash`); the backend that has it.
    /// With no slot anywhere the flow waits (`Hold`) when the service queues, else it
    /// finds no backend.
    #[inline]
    pub(super) fn admit(
        &self,
        s: &Services,
        svc: &Service,
        chosen: u16,
        hash: u64,
    ) -> Result<u16, Verdict> {
        let load = &self.load;
        // A learned limit where there is one (it already respects `max_flows`).
        let max = |b: u16| match load.learned(b) {
            0 => s.backends[usize::from(b)].max_flows,
            l => l,
        };
        if load.try_take(chosen, max(chosen)) {
            return Ok(chosen);
        }
        let n = svc.backends.len();
        let start = (hash >> 32) as usize % n.max(1);
        let other = (0..n)
            .map(|i| svc.backends[(start + i) % n])
            .find(|&b| s.backends[usize::from(b)].eligible && load.try_take(b, max(b)));
        match other {
            Some(b) => Ok(b),
            None if svc.admission => Err(Verdict::Hold(svc.id)),
            None => Err(Verdict::Drop(DropReason::NoBackend)),
        }
    }

    /// A new flow of `service` that must wait: the frame goes to the back of the
    /// service's queue (`Hold`), or is dropped when the queue is full or already holds the
    /// flow. The head of a queue being run again keeps its place (`Hold`, not queued again).
    #[cold]
    pub(super) fn hold(&mut self, service: u16, seg: &Segment, pkt: &PacketBuf) -> Verdict {
        if self.releasing == Some(service) {
            return Verdict::Hold(service);
        }
        let w = Waiting {
            handle: pkt.handle,
            port: seg.rx.in_port,
            key: seg.key,
            since_us: self.now.us,
        };
        let r = match self.queues.get_mut(usize::from(service)) {
            Some(q) => q.push(w).map(|()| q.len()),
            None => Err(Refused::Full),
        };
        let qc = self.counters.queues.get(usize::from(service));
        match r {
            Ok(len) => {
                if let Some(c) = qc {
                    c.queued.inc();
                    c.length.set(len as u64);
                }
                Verdict::Hold(service)
            }
            Err(Refused::Full) => {
                if let Some(c) = qc {
                    c.full.inc();
                }
                Verdict::Drop(DropReason::QueueFull)
            }
            Err(Refused::Duplicate) => Verdict::Drop(DropReason::QueueDuplicate),
        }
    }
}

impl Core {
    /// True when some service has packets waiting.
    #[inline]
    pub fn has_queued(&self) -> bool {
        self.state.queues.iter().any(|q| !q.is_empty())
    }

    /// Frames waiting in the admission queues.
    pub fn queued_len(&self) -> usize {
        self.state.queues.iter().map(|q| q.len()).sum()
    }

    /// Lets waiting packets go, in order, as slots free. For each service: heads that
    /// waited past `max_wait` go to `expire` (counted `queue_timeout`); then the head is run
    /// again through `rerun` (which calls `process_again` and carries out the verdict,
    /// returning false when the verdict was `Hold` again: no slot yet, the head keeps its
    /// place).
    pub fn release_queued(
        &mut self,
        mut rerun: impl FnMut(&mut Core, &Waiting) -> bool,
        mut expire: impl FnMut(Waiting),
    ) {
        // Its own handle on the counters: `rerun` needs the core mutably meanwhile.
        let counters = Arc::clone(&self.state.counters);
        for si in 0..self.state.queues.len() {
            let Some(qc) = counters.queues.get(si) else {
                break;
            };
            loop {
                let now_us = self.state.now.us;
                if let Some(w) = self.state.queues[si].pop_expired(now_us) {
                    counters.count_drop(DropReason::QueueTimeout);
                    qc.timed_out.inc();
                    qc.length.set(self.state.queues[si].len() as u64);
                    expire(w);
                    continue;
                }
                let Some(w) = self.state.queues[si].head().copied() else {
                    break;
                };
                self.state.releasing = Some(si as u16);
                let went = rerun(self, &w);
                self.state.releasing = None;
                if !went {
                    break;
                }
                self.state.queues[si].pop();
                let waited = now_us.saturating_sub(w.since_us);
                qc.released.inc();
                qc.wait_us.add(waited);
                if waited > qc.max_wait_us.get() {
                    qc.max_wait_us.set(waited);
                }
                qc.length.set(self.state.queues[si].len() as u64);
            }
        }
    }

    /// Every waiting packet, handed back (when the worker stops).
    pub fn drain_queued(&mut self) -> Vec<Waiting> {
        self.state
            .queues
            .iter_mut()
            .flat_map(|q| q.drain().collect::<Vec<_>>())
            .collect()
    }
}
