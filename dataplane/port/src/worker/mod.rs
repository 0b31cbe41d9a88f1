//! A worker's poll loop, in the shape of DPDK's l3fwd: a burst step (read a burst from each
//! port's queue, run it through the core, send what it became) and a step between bursts
//! for everything else (the other workers' flow records, control messages, the frames
//! waiting for a record or an admission slot, the kernel twins, housekeeping), each on its
//! own clock where it has one.
//! Nothing on this path locks, allocates or makes a system call; the only syscalls are the
//! idle back-off sleep after a round of empty bursts and the twins' reads (every 200 us).

mod egress;
mod kernel;

pub use egress::{Egress, TxBuffer, MAX_BURST};
pub use kernel::Twins;

use crate::eal::rdtsc;
use crate::ethdev::EthPort;
use crate::mbuf::{self, Mempool, RawMbuf};
use crate::siblings::Siblings;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tandem_dataplane::counters::{Absorbed, DropReason};
use tandem_dataplane::messages::{FromWorker, ToWorker};
use tandem_dataplane::parking::{Due, Parked, Parking, Wait};
use tandem_dataplane::pipeline::{
    Core, Now, PacketBuf, Verdict, EVENTS_PER_FRAME, MAX_BURST as CORE_BURST, OUTBOX_CAP,
};
use tandem_dataplane::qos::probe::Method;

/// Control messages applied per loop, so a flood of replication cannot starve packets.
const MAX_MESSAGES_PER_LOOP: usize = 512;
/// Most frames held waiting for their flow record.
pub const MAX_PARKED: usize = tandem_dataplane::parking::CAPACITY * tandem_dataplane::parking::LOTS;

/// The node's clock as the workers read it: TSC ticks per millisecond and the TSC at the
/// node's start (every worker shares the TSC).
#[derive(Clone, Copy)]
pub struct Clock {
    pub tsc_per_ms: u64,
    pub tsc0: u64,
}

impl Clock {
    /// Milliseconds (flow tables) and microseconds (latency) since the node started.
    #[inline(always)]
    pub fn now(&self) -> Now {
        let ticks = rdtsc().wrapping_sub(self.tsc0);
        let per_ms = self.tsc_per_ms.max(1);
        let ms = ticks / per_ms;
        let us = ms * 1000 + (ticks % per_ms) * 1000 / per_ms;
        Now { ms: ms as u32, us }
    }
}

/// What a worker is started with besides its core.
pub struct Setup {
    /// The worker's queue on every port (RX and TX) and on every kernel twin.
    pub queue: u16,
    /// Ports in config order, and each one's kernel twin if it has one.
    pub ports: Vec<EthPort>,
    pub twins: Vec<Option<EthPort>>,
    /// Where the worker takes mbufs for frames it makes (probes, solicitations, copies).
    pub pool: Arc<Mempool>,
    pub burst: usize,
    pub idle_sleep: Duration,
    pub clock: Clock,
    /// Rings to and from the node's other workers, for flow records.
    pub siblings: Siblings,
    /// The control thread's messages in, the core's events out.
    pub inbox: Receiver<ToWorker>,
    pub outbox: Sender<FromWorker>,
    pub stop: Arc<AtomicBool>,
}

/// Everything a worker owns.
pub struct Worker {
    core: Core,
    out: Egress,
    twins: Twins,
    /// Where a burst is read into.
    rx: Vec<RawMbuf>,
    /// Nat replies waiting for their flow record (see `tandem_dataplane::parking`), and the
    /// frames the lot gives back each loop.
    parked: Parking<ParkedMbuf>,
    due: Vec<Due<ParkedMbuf>>,
    siblings: Siblings,
    inbox: Receiver<ToWorker>,
    outbox: Sender<FromWorker>,
    /// The core's events the control thread had no room for, in order, until it has: a
    /// record for the peers is never dropped (`send_events`).
    held: Vec<FromWorker>,
    stop: Arc<AtomicBool>,
    pool: Arc<Mempool>,
    clock: Clock,
    /// The time of this round, read once at its start.
    now: Now,
    idle_sleep: Duration,
}

// SAFETY: a worker holds mbufs (in its burst, TX buffers, free list and parking lot) only
// while it runs on its lcore; it is built on the main thread and handed over with all of
// them empty.
unsafe impl Send for Worker {}

/// An mbuf in the parking lot.
#[derive(Clone, Copy)]
pub struct ParkedMbuf(RawMbuf);

/// A frame in an mbuf: where it starts in the data room and how long it is.
#[derive(Clone, Copy)]
struct Frame {
    m: RawMbuf,
    start: usize,
    len: usize,
}

impl Worker {
    pub fn new(core: Core, s: Setup) -> Worker {
        let counters = Arc::clone(&core.state.counters);
        let out = Egress::new(s.ports, s.queue, s.burst, counters);
        Worker {
            rx: vec![std::ptr::null_mut(); out.burst],
            twins: Twins::new(&s.twins),
            out,
            core,
            parked: Parking::with_capacity(tandem_dataplane::parking::CAPACITY),
            due: Vec::with_capacity(MAX_PARKED),
            siblings: s.siblings,
            inbox: s.inbox,
            outbox: s.outbox,
            held: Vec::with_capacity(OUTBOX_CAP),
            stop: s.stop,
            pool: s.pool,
            clock: s.clock,
            now: Now { ms: 0, us: 0 },
            idle_sleep: s.idle_sleep,
        }
    }

    /// Runs until `stop` is set; flushes what is queued before returning.
    pub fn run(mut self) -> i32 {
        tracing::info!(
            worker = self.core.state.worker,
            lcore = crate::eal::lcore_id(),
            "worker polling"
        );
        while !self.stop.load(Ordering::Relaxed) {
            self.now = self.clock.now();
            self.core.set_now(self.now);
            let got = self.burst_step();
            self.between_bursts();
            self.rest_if_idle(got);
        }
        self.shut_down();
        tracing::info!(worker = self.core.state.worker, "worker stopped");
        0
    }

    /// Reads a burst from each port's queue, runs it through the core in core bursts and
    /// sends what it became. How many frames came in.
    fn burst_step(&mut self) -> usize {
        let mut got = 0;
        let mut rx = std::mem::take(&mut self.rx);
        for pi in 0..self.out.ports.len() {
            self.make_replica_room(self.out.burst);
            self.make_event_room(self.out.burst);
            let n = self.out.ports[pi].rx_burst(self.out.queue, &mut rx);
            if n == 0 {
                continue;
            }
            got += n;
            self.core.state.counters.ports[pi].rx_packets.add(n as u64);
            for chunk in rx[..n].chunks(CORE_BURST) {
                self.run_burst(chunk, pi as u8);
                self.twins.take_copies(&mut self.core, &self.pool);
            }
            self.out.free_gathered();
            self.siblings.send(&mut self.core);
        }
        self.rx = rx;
        self.out.flush();
        self.twins.flush(self.out.queue, self.out.counters());
        got
    }

    /// Everything but the packets: the other workers' records and the control thread's
    /// messages, the frames waiting for a record or an admission slot, what the kernel
    /// twins sent (every 200 us), housekeeping (paced by the core); then sends what these
    /// made.
    fn between_bursts(&mut self) {
        self.control();
        let parked = &mut self.parked;
        self.core.take_arrivals(|hint| parked.record_arrived(hint));
        self.retry_parked();
        if self.core.has_queued() {
            self.release_queued();
        }
        self.twins.forward_from_kernel(self.now.us, &mut self.out);
        self.out.flush();
        self.twins.flush(self.out.queue, self.out.counters());
        self.core.housekeeping_paced();
        let counters = &self.core.state.counters;
        counters.loops.inc();
        counters
            .waiting
            .set((self.parked.len() + self.core.queued_len()) as u64);
    }

    /// After a round that read nothing, sleeps `idle_sleep` (when set) unless the other
    /// workers' rings still hold records.
    fn rest_if_idle(&self, got: usize) {
        if got > 0 {
            return;
        }
        self.core.state.counters.idle_loops.inc();
        if !self.idle_sleep.is_zero() && self.siblings.idle() {
            std::thread::sleep(self.idle_sleep);
        }
    }

    /// Sends what is queued and frees every frame still held.
    fn shut_down(&mut self) {
        self.out.flush();
        self.twins.flush(self.out.queue, self.out.counters());
        for p in self.parked.drain() {
            mbuf::free_bulk(&mut [p.handle.0]);
        }
        for w in self.core.drain_queued() {
            mbuf::free_bulk(&mut [w.handle as RawMbuf]);
        }
    }

    /// Runs up to a core burst of fresh mbufs from `port` through the core
    /// (`Core::process_burst`, which prefetches the frames and their table lines) and
    /// carries out the verdicts. A frame of more than one segment is dropped here.
    #[inline(always)]
    fn run_burst(&mut self, mbufs: &[RawMbuf], port: u8) {
        let mut held = [std::ptr::null_mut(); CORE_BURST];
        let mut pkts: [PacketBuf; CORE_BURST] = std::array::from_fn(|_| PacketBuf {
            buf: &mut [],
            start: 0,
            len: 0,
            handle: 0,
        });
        let (mut k, mut bytes) = (0, 0u64);
        for &m in mbufs.iter().take(CORE_BURST) {
            // SAFETY: `m` came from rx_burst and is ours until sent or freed.
            if unsafe { mbuf::segments(m) } != 1 {
                self.core.state.counters.count_drop(DropReason::TooBig);
                self.out.free(m);
                continue;
            }
            // SAFETY: as above; the slice lives until the verdicts are carried out, below,
            // and nothing else touches the mbuf meanwhile.
            let (room, start, len) = unsafe { mbuf::data_room(m) };
            bytes += len as u64;
            pkts[k] = PacketBuf {
                buf: room,
                start,
                len,
                handle: m as usize,
            };
            held[k] = m;
            k += 1;
        }
        self.core.state.counters.ports[usize::from(port)]
            .rx_bytes
            .add(bytes);
        let mut verdicts = [Verdict::Hold(0); CORE_BURST];
        self.core.process_burst(
            port,
            &mut pkts[..k],
            &mut verdicts[..k],
            mbuf::prefetch_addr,
        );
        for i in 0..k {
            let frame = Frame {
                m: held[i],
                start: pkts[i].start,
                len: pkts[i].len,
            };
            self.carry_out(frame, port, verdicts[i], None);
        }
    }

    /// Carries out the core's verdict on `frame`, which came in on `port`. `parked` is set
    /// when the frame is a parked nat reply getting another chance.
    #[inline(always)]
    fn carry_out(
        &mut self,
        frame: Frame,
        port: u8,
        verdict: Verdict,
        parked: Option<Parked<ParkedMbuf>>,
    ) {
        let m = frame.m;
        match verdict {
            Verdict::Tx(out) => {
                // SAFETY: start/len stay within the data room (the core checks).
                unsafe { mbuf::set_frame(m, frame.start, frame.len) };
                self.out.send(m, out, frame.len);
            }
            // The core holds it in the service's admission queue.
            Verdict::Hold(_) => {}
            Verdict::Defer(wait) => self.park(m, port, wait, parked),
            Verdict::Consumed(Absorbed::Kernel) => {
                self.twins.push(m, port, frame.len, &mut self.out)
            }
            Verdict::Consumed(_) | Verdict::Drop(_) => self.out.free(m),
        }
    }

    /// Parks nat reply `m` until its flow record comes (or back in the lot, if it was
    /// parked already); one the lot cannot take is dropped.
    fn park(&mut self, m: RawMbuf, port: u8, wait: Wait, again: Option<Parked<ParkedMbuf>>) {
        let dropped = match again {
            Some(p) => self.parked.repark(p).err().map(|h| (h.0, p.expired)),
            None => {
                self.core.state.counters.deferred.inc();
                self.parked
                    .park(ParkedMbuf(m), port, self.now.ms, wait)
                    .map(|p| (p.handle.0, p.expired))
            }
        };
        if let Some((d, why)) = dropped {
            self.core.state.counters.count_drop(why);
            self.out.free(d);
        }
    }

    /// Gives parked nat replies another chance when a record that may be theirs has come
    /// (a bounded number per loop), and drops those that waited too long.
    fn retry_parked(&mut self) {
        if self.parked.is_empty() {
            return;
        }
        self.make_replica_room(MAX_PARKED);
        let mut due = std::mem::take(&mut self.due);
        self.parked.sweep(self.now.ms, &mut due);
        for d in due.drain(..) {
            match d {
                Due::Expired(p) => {
                    self.core.state.counters.count_drop(p.expired);
                    self.out.free(p.handle.0);
                }
                Due::Retry(p) => self.dispatch_parked(p),
            }
        }
        self.due = due;
        self.siblings.send(&mut self.core);
        self.out.free_gathered();
    }

    /// Runs one parked mbuf through the core again and carries out the verdict (it goes
    /// back to the lot if still early).
    fn dispatch_parked(&mut self, p: Parked<ParkedMbuf>) {
        let m = p.handle.0;
        // SAFETY: a parked mbuf is ours until sent or freed; the slice does not outlive
        // this call.
        let (room, start, len) = unsafe { mbuf::data_room(m) };
        let mut pkt = PacketBuf {
            buf: room,
            start,
            len,
            handle: m as usize,
        };
        let verdict = self.core.process_again(p.port, &mut pkt);
        let frame = Frame {
            m,
            start: pkt.start,
            len: pkt.len,
        };
        self.carry_out(frame, p.port, verdict, Some(p));
    }

    /// Runs the packets waiting in the admission queues again, in order, as slots free.
    /// A frame that is not sent is freed at once (there may be more than a burst of them).
    fn release_queued(&mut self) {
        let out = &mut self.out;
        self.core.release_queued(
            |core, w| {
                // Each release may make a record for the other workers: released no
                // further until they take what is there.
                if core.replica_room() == 0 {
                    return false;
                }
                let m = w.handle as RawMbuf;
                // SAFETY: a queued mbuf is ours until sent or freed; the slice does not
                // outlive this call.
                let (room, start, len) = unsafe { mbuf::data_room(m) };
                let mut pkt = PacketBuf {
                    buf: room,
                    start,
                    len,
                    handle: w.handle,
                };
                match core.process_again(w.port, &mut pkt) {
                    Verdict::Hold(_) => false,
                    Verdict::Tx(port) => {
                        // SAFETY: start/len stay within the data room (the core checks).
                        unsafe { mbuf::set_frame(m, pkt.start, pkt.len) };
                        out.send(m, port, pkt.len);
                        true
                    }
                    Verdict::Defer(_) | Verdict::Consumed(_) | Verdict::Drop(_) => {
                        mbuf::free_bulk(&mut [m]);
                        true
                    }
                }
            },
            |w| mbuf::free_bulk(&mut [w.handle as RawMbuf]),
        );
        self.siblings.send(&mut self.core);
    }

    /// Takes the other workers' records: stored, and the replies parked for them retried.
    fn take_replicas(&mut self) {
        let parked = &mut self.parked;
        self.siblings
            .receive(&mut self.core, |r| parked.record_arrived(hint_of(&r.key)));
    }

    /// Makes room for `n` more records to the other workers before running `n` frames
    /// (`Siblings::make_room`: reading packets waits; no record is dropped).
    fn make_replica_room(&mut self, n: usize) {
        let parked = &mut self.parked;
        self.siblings.make_room(&mut self.core, n, &self.stop, |r| {
            parked.record_arrived(hint_of(&r.key))
        });
    }

    /// Applies control messages and hands the core's events to the control thread.
    fn control(&mut self) {
        // Records still waiting for a sibling's ring go every loop, not only after a busy
        // burst: the last of a flood must reach the others once the queues fall quiet.
        self.siblings.send(&mut self.core);
        self.take_replicas();
        for _ in 0..MAX_MESSAGES_PER_LOOP {
            let Ok(msg) = self.inbox.try_recv() else {
                break;
            };
            if let ToWorker::Flow { key, .. } = &msg {
                self.parked.record_arrived(hint_of(key));
            }
            match self.core.apply(msg) {
                Some(ToWorker::Solicit { port, ip, v6 }) => self.solicit(port, &ip, v6),
                Some(ToWorker::Probe {
                    backend,
                    path,
                    round,
                    method,
                }) => self.probe(backend, path, round, method),
                _ => {}
            }
        }
        self.send_events();
    }

    /// Hands the core's events to the control thread, in order; those it has no room for
    /// stay in the core's outbox for the next try (none is dropped: a flow's record must
    /// reach the peers). Only a control thread that is gone loses them, counted.
    fn send_events(&mut self) {
        let st = &mut self.core.state;
        let mut lost = 0;
        {
            let mut events = st.outbox.drain(..);
            while let Some(ev) = events.next() {
                match self.outbox.try_send(ev) {
                    Ok(()) => {}
                    Err(TrySendError::Full(ev)) => {
                        self.held.push(ev);
                        self.held.extend(events);
                        break;
                    }
                    Err(TrySendError::Disconnected(_)) => lost += 1,
                }
            }
        }
        st.counters.outbox_overflow.add(lost);
        // Both hold at most OUTBOX_CAP: no allocation.
        st.outbox.append(&mut self.held);
    }

    /// Waits to read packets until the core's outbox to the control thread has room for
    /// `n` frames' events: the control thread has fallen behind a flood, and reading on
    /// would lose records (`control_waits` counts the waits). The siblings' records are
    /// taken meanwhile, so no two workers wait on each other.
    fn make_event_room(&mut self, n: usize) {
        let room = |c: &Core| OUTBOX_CAP.saturating_sub(c.state.outbox.len());
        if room(&self.core) >= n * EVENTS_PER_FRAME {
            return;
        }
        self.core.state.counters.control_waits.inc();
        loop {
            self.send_events();
            if room(&self.core) >= n * EVENTS_PER_FRAME || self.stop.load(Ordering::Relaxed) {
                return;
            }
            self.take_replicas();
            std::hint::spin_loop();
        }
    }

    /// Sends one health probe; one that cannot go is reported so it counts as a failure.
    fn probe(&mut self, backend: u16, path: u8, round: u8, method: Method) {
        let unsent = FromWorker::ProbeUnsent {
            backend,
            path,
            round,
        };
        let Some(m) = self.pool.alloc() else {
            self.core.report(unsent);
            return;
        };
        // SAFETY: a fresh mbuf from our pool, owned here.
        let (room, start, _) = unsafe { mbuf::data_room(m) };
        match self
            .core
            .build_probe(backend, path, round, method, &mut room[start..])
        {
            Some((port, len)) if usize::from(port) < self.out.ports.len() => {
                // SAFETY: the frame was written within the data room.
                unsafe { mbuf::set_frame(m, start, len) };
                self.out.send_now(m, port, len);
            }
            _ => {
                mbuf::free_bulk(&mut [m]);
                self.core.report(unsent);
            }
        }
    }

    /// Sends an ARP request or neighbor solicitation for `ip` out of `port`.
    fn solicit(&mut self, port: u8, ip: &[u8; 16], v6: bool) {
        if usize::from(port) >= self.out.ports.len() {
            return;
        }
        let Some(m) = self.pool.alloc() else { return };
        // SAFETY: a fresh mbuf from our pool, owned here.
        let (room, start, _) = unsafe { mbuf::data_room(m) };
        match self.core.build_solicit(port, ip, v6, &mut room[start..]) {
            Some(len) => {
                // SAFETY: the frame was written within the data room.
                unsafe { mbuf::set_frame(m, start, len) };
                self.out.send_now(m, port, len);
            }
            None => mbuf::free_bulk(&mut [m]),
        }
    }
}

/// The parking hint a record of flow `key` answers (its client side), wherever the record
/// came from (a sibling's ring or the control thread).
#[inline]
fn hint_of(key: &tandem_dataplane::flow::FlowKey) -> u16 {
    tandem_dataplane::parking::hint(&key.src, key.sport, key.proto)
}
