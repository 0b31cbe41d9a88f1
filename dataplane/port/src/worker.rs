//! A worker's poll loop, in the shape of DPDK's l3fwd: receive a burst from each of its
//! queues, run every packet through the core (prefetching ahead), queue the results per
//! output port, flush, then take the other workers' flow records (`siblings`), apply control
//! messages and hand events to the control thread.
//! Nothing on this path locks, allocates or makes a system call; the only syscall is the
//! idle back-off sleep after a round of empty bursts.

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
use tandem_dataplane::parking::{Due, Parking};
use tandem_dataplane::pipeline::{Core, Now, PacketBuf, Verdict, MAX_BURST as CORE_BURST};
use tandem_dataplane::qos::probe::Method;

/// Control messages applied per loop, so a flood of replication cannot starve packets.
const MAX_MESSAGES_PER_LOOP: usize = 512;
/// Most frames held waiting for their flow record.
pub const MAX_PARKED: usize = tandem_dataplane::parking::CAPACITY * tandem_dataplane::parking::LOTS;
/// Largest burst the loop supports.
pub const MAX_BURST: usize = 512;

/// Everything a worker owns.
pub struct Worker {
    pub core: Core,
    /// Ports in config order; the worker polls queue `queue` of each.
    pub ports: Vec<EthPort>,
    pub queue: u16,
    pub burst: usize,
    pub idle_sleep: Duration,
    pub inbox: Receiver<ToWorker>,
    pub outbox: Sender<FromWorker>,
    pub stop: Arc<AtomicBool>,
    pub pool: Arc<Mempool>,
    /// TSC ticks per millisecond and the TSC at the node's start: the core's clock.
    pub tsc_per_ms: u64,
    pub tsc0: u64,
    /// Nat replies waiting for their flow record (see `tandem_dataplane::parking`).
    pub parked: Parking<ParkedMbuf>,
    /// Frames the lot gives back each loop (capacity MAX_PARKED, allocated by the caller).
    pub due: Vec<Due<ParkedMbuf>>,
    /// Rings to and from the node's other workers, for flow records.
    pub siblings: Siblings,
    /// Each port's kernel twin, if it has one (`twin`): the worker uses queue `queue`.
    pub twins: Vec<Option<Twin>>,
    /// When the twins' queues are read next (the node's microseconds).
    pub twin_poll_us: u64,
}

/// A port's kernel twin as one worker drives it: the TAP port, and the frames for it,
/// sent at the end of each loop.
pub struct Twin {
    pub port: EthPort,
    out: TxBuffer,
}

impl Twin {
    pub fn new(port: EthPort) -> Twin {
        Twin {
            port,
            out: TxBuffer::new(),
        }
    }
}

/// How often a worker reads what the kernel twins sent (a read from a TAP is a system
/// call; BFD's 100 ms and a TCP session's round trips do not notice 200 us).
const TWIN_POLL_US: u64 = 200;

/// An mbuf in the parking lot.
#[derive(Clone, Copy)]
pub struct ParkedMbuf(RawMbuf);

// SAFETY: a parked mbuf is owned by exactly one worker; the lot only moves between threads
// while empty (when the worker is handed to its lcore).
unsafe impl Send for ParkedMbuf {}

pub struct TxBuffer {
    pkts: [RawMbuf; MAX_BURST],
    lens: [u16; MAX_BURST],
    n: usize,
}

// SAFETY: a TX buffer is filled and flushed by one worker only; it crosses threads only
// empty, when the worker is handed to its lcore.
unsafe impl Send for TxBuffer {}

impl TxBuffer {
    fn new() -> TxBuffer {
        TxBuffer {
            pkts: [std::ptr::null_mut(); MAX_BURST],
            lens: [0; MAX_BURST],
            n: 0,
        }
    }

    /// Queues `m`, a frame of `len` bytes (the caller keeps `n` below `MAX_BURST`).
    #[inline(always)]
    fn push(&mut self, m: RawMbuf, len: usize) {
        self.pkts[self.n] = m;
        self.lens[self.n] = len as u16;
        self.n += 1;
    }

    /// Hands what is queued to `port`'s TX queue `queue`; frees what it did not take and
    /// returns how many it took.
    fn send(&mut self, port: &EthPort, queue: u16) -> usize {
        let sent = port.tx_burst(queue, &mut self.pkts[..self.n]);
        if sent < self.n {
            mbuf::free_bulk(&mut self.pkts[sent..self.n]);
        }
        sent
    }
}

impl Worker {
    /// The node's clock: milliseconds (flow tables) and microseconds (latency), from the
    /// TSC every worker shares.
    #[inline(always)]
    fn now(&self) -> Now {
        let ticks = rdtsc().wrapping_sub(self.tsc0);
        let per_ms = self.tsc_per_ms.max(1);
        let ms = ticks / per_ms;
        let us = ms * 1000 + (ticks % per_ms) * 1000 / per_ms;
        Now { ms: ms as u32, us }
    }

    /// Runs until `stop` is set; flushes what is queued before returning.
    pub fn run(mut self) -> i32 {
        let burst = self.burst.clamp(1, MAX_BURST);
        let mut rx: Vec<RawMbuf> = vec![std::ptr::null_mut(); burst];
        let mut free: Vec<RawMbuf> = Vec::with_capacity(burst);
        let mut tx: Vec<TxBuffer> = (0..self.ports.len()).map(|_| TxBuffer::new()).collect();
        let counters = Arc::clone(&self.core.state.counters);
        tracing::info!(
            worker = self.core.state.worker,
            lcore = crate::eal::lcore_id(),
            "worker polling"
        );
        while !self.stop.load(Ordering::Relaxed) {
            let now = self.now();
            self.core.set_now(now);
            let mut got = 0;
            for pi in 0..self.ports.len() {
                self.make_replica_room(burst);
                let port = self.ports[pi];
                let n = port.rx_burst(self.queue, &mut rx[..burst]);
                if n == 0 {
                    continue;
                }
                got += n;
                let pc = &counters.ports[pi];
                pc.rx_packets.add(n as u64);
                for chunk in rx[..n].chunks(CORE_BURST) {
                    self.run_burst(chunk, pi as u8, now.ms, &mut tx, &mut free, burst);
                    self.copies_to_kernel();
                }
                mbuf::free_bulk(&mut free);
                free.clear();
                self.siblings.send(&mut self.core);
            }
            self.control(&mut tx);
            let parked = &mut self.parked;
            self.core.take_arrivals(|hint| parked.record_arrived(hint));
            self.retry_parked(now.ms, &mut tx, &mut free, burst);
            if self.core.has_queued() {
                self.release_queued(&mut tx, burst);
            }
            if now.us >= self.twin_poll_us && !self.twins.is_empty() {
                self.twin_poll_us = now.us + TWIN_POLL_US;
                self.forward_from_kernel(&mut tx, burst);
            }
            for (o, b) in tx.iter_mut().enumerate() {
                if b.n > 0 {
                    flush(&self.ports[o], self.queue, b, &counters, o);
                }
            }
            self.flush_kernel();
            self.core.housekeeping_paced();
            counters.loops.inc();
            counters
                .waiting
                .set((self.parked.len() + self.core.queued_len()) as u64);
            if got == 0 {
                counters.idle_loops.inc();
                if !self.idle_sleep.is_zero() && self.siblings.idle() {
                    std::thread::sleep(self.idle_sleep);
                }
            }
        }
        for (o, b) in tx.iter_mut().enumerate() {
            if b.n > 0 {
                flush(&self.ports[o], self.queue, b, &counters, o);
            }
        }
        for p in self.parked.drain() {
            mbuf::free_bulk(&mut [p.handle.0]);
        }
        for w in self.core.drain_queued() {
            mbuf::free_bulk(&mut [w.handle as RawMbuf]);
        }
        tracing::info!(worker = self.core.state.worker, "worker stopped");
        0
    }

    /// Runs up to a core burst of fresh mbufs from `port` through the core
    /// (`Core::process_burst`, which prefetches the frames and their table lines) and
    /// carries out the verdicts. A frame of more than one segment is dropped here.
    #[inline(always)]
    fn run_burst(
        &mut self,
        mbufs: &[RawMbuf],
        port: u8,
        now: u32,
        tx: &mut [TxBuffer],
        free: &mut Vec<RawMbuf>,
        burst: usize,
    ) {
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
                free.push(m);
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
            let (start, len) = (pkts[i].start, pkts[i].len);
            self.carry_out(
                held[i],
                port,
                now,
                verdicts[i],
                (start, len),
                tx,
                free,
                burst,
                None,
            );
        }
    }

    /// Runs one parked mbuf through the core again and carries out the verdict (it goes
    /// back to the lot if still early).
    fn dispatch_parked(
        &mut self,
        p: tandem_dataplane::parking::Parked<ParkedMbuf>,
        now: u32,
        tx: &mut [TxBuffer],
        free: &mut Vec<RawMbuf>,
        burst: usize,
    ) {
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
        let frame = (pkt.start, pkt.len);
        self.carry_out(m, p.port, now, verdict, frame, tx, free, burst, Some(p));
    }

    /// Carries out the core's verdict on mbuf `m` (its frame now at `frame`: start and
    /// length in the data room). `parked` is set when the mbuf is a parked nat reply
    /// getting another chance.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn carry_out(
        &mut self,
        m: RawMbuf,
        port: u8,
        now: u32,
        verdict: Verdict,
        (start, len): (usize, usize),
        tx: &mut [TxBuffer],
        free: &mut Vec<RawMbuf>,
        burst: usize,
        parked: Option<tandem_dataplane::parking::Parked<ParkedMbuf>>,
    ) {
        match verdict {
            Verdict::Tx(out) => {
                // SAFETY: start/len stay within the data room (the core checks).
                unsafe { mbuf::set_frame(m, start, len) };
                let counters = &self.core.state.counters;
                enqueue(&self.ports, self.queue, tx, counters, m, out, len, burst);
            }
            // The core holds it in the service's admission queue.
            Verdict::Hold(_) => {}
            Verdict::Defer(wait) => {
                let dropped = match parked {
                    Some(p) => self.parked.repark(p).err().map(|h| (h.0, p.expired)),
                    None => {
                        self.core.state.counters.deferred.inc();
                        self.parked
                            .park(ParkedMbuf(m), port, now, wait)
                            .map(|p| (p.handle.0, p.expired))
                    }
                };
                if let Some((d, why)) = dropped {
                    self.core.state.counters.count_drop(why);
                    free.push(d);
                }
            }
            Verdict::Consumed(Absorbed::Kernel) => self.kernel_bound(m, port, len, free),
            Verdict::Consumed(_) | Verdict::Drop(_) => free.push(m),
        }
    }

    /// Queues mbuf `m` (a frame of `len` bytes from `port`) for the port's kernel twin.
    fn kernel_bound(&mut self, m: RawMbuf, port: u8, len: usize, free: &mut Vec<RawMbuf>) {
        let Some(t) = self
            .twins
            .get_mut(usize::from(port))
            .and_then(Option::as_mut)
        else {
            free.push(m);
            return;
        };
        t.out.push(m, len);
        if t.out.n == MAX_BURST {
            self.flush_kernel();
        }
    }

    /// Hands each twin what is queued for it; what its queue does not take is dropped
    /// (`kernel_full`).
    fn flush_kernel(&mut self) {
        for t in self.twins.iter_mut().flatten().filter(|t| t.out.n > 0) {
            let sent = t.out.send(&t.port, self.queue);
            for _ in sent..t.out.n {
                self.core.state.counters.count_drop(DropReason::KernelFull);
            }
            t.out.n = 0;
        }
    }

    /// The copies of ARP and ND frames tandem answered, for the twins (`pipeline::kernel`).
    fn copies_to_kernel(&mut self) {
        if !self.core.has_kernel_copies() {
            return;
        }
        let (pool, twins) = (&self.pool, &mut self.twins);
        let counters = Arc::clone(&self.core.state.counters);
        self.core.take_kernel_copies(|port, frame| {
            let twin = twins
                .get_mut(usize::from(port))
                .and_then(Option::as_mut)
                .filter(|t| t.out.n < MAX_BURST);
            let Some((t, m)) = twin.and_then(|t| Some((t, pool.alloc()?))) else {
                counters.kernel_copies_lost.inc();
                return;
            };
            // SAFETY: a fresh mbuf from our pool, owned here.
            let (room, start, _) = unsafe { mbuf::data_room(m) };
            room[start..start + frame.len()].copy_from_slice(frame);
            // SAFETY: the frame was written within the data room (at most 256 bytes).
            unsafe { mbuf::set_frame(m, start, frame.len()) };
            t.out.push(m, frame.len());
            counters.kernel_copies.inc();
        });
    }

    /// Sends what the kernel twins wrote out of their ports (a burst from each, at most).
    fn forward_from_kernel(&mut self, tx: &mut [TxBuffer], burst: usize) {
        let mut got = [std::ptr::null_mut(); CORE_BURST];
        for o in 0..self.twins.len() {
            let Some(twin) = self.twins[o].as_ref().map(|t| t.port) else {
                continue;
            };
            let n = twin.rx_burst(self.queue, &mut got);
            let counters = &self.core.state.counters;
            for &m in &got[..n] {
                // SAFETY: `m` came from rx_burst and is ours until sent or freed.
                let (segs, (_, _, len)) = unsafe { (mbuf::segments(m), mbuf::data_room(m)) };
                if segs != 1 {
                    counters.count_drop(DropReason::TooBig);
                    mbuf::free_bulk(&mut [m]);
                    continue;
                }
                counters.from_kernel.inc();
                enqueue(
                    &self.ports,
                    self.queue,
                    tx,
                    counters,
                    m,
                    o as u8,
                    len,
                    burst,
                );
            }
        }
    }

    /// Gives parked nat replies another chance when a record that may be theirs has come
    /// (a bounded number per loop), and drops those that waited too long.
    fn retry_parked(
        &mut self,
        now: u32,
        tx: &mut [TxBuffer],
        free: &mut Vec<RawMbuf>,
        burst: usize,
    ) {
        if self.parked.is_empty() {
            return;
        }
        self.make_replica_room(MAX_PARKED);
        let mut due = std::mem::take(&mut self.due);
        self.parked.sweep(now, &mut due);
        for d in due.drain(..) {
            match d {
                Due::Expired(p) => {
                    self.core.state.counters.count_drop(p.expired);
                    free.push(p.handle.0);
                }
                Due::Retry(p) => self.dispatch_parked(p, now, tx, free, burst),
            }
        }
        self.due = due;
        self.siblings.send(&mut self.core);
        if !free.is_empty() {
            mbuf::free_bulk(free);
            free.clear();
        }
    }

    /// Runs the packets waiting in the admission queues again, in order, as slots free.
    /// A frame that is not sent is freed at once (there may be more than a burst of them).
    fn release_queued(&mut self, tx: &mut [TxBuffer], burst: usize) {
        let ports = &self.ports;
        let queue = self.queue;
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
                    Verdict::Tx(out) => {
                        // SAFETY: start/len stay within the data room (the core checks).
                        unsafe { mbuf::set_frame(m, pkt.start, pkt.len) };
                        enqueue(
                            ports,
                            queue,
                            tx,
                            &core.state.counters,
                            m,
                            out,
                            pkt.len,
                            burst,
                        );
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
    fn control(&mut self, tx: &mut [TxBuffer]) {
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
                Some(ToWorker::Solicit { port, ip, v6 }) => self.solicit(port, &ip, v6, tx),
                Some(ToWorker::Probe {
                    backend,
                    path,
                    round,
                    method,
                }) => self.probe(backend, path, round, method, tx),
                _ => {}
            }
        }
        let st = &mut self.core.state;
        for ev in st.outbox.drain(..) {
            match self.outbox.try_send(ev) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    st.counters.outbox_overflow.inc();
                }
            }
        }
    }

    /// Sends one health probe; one that cannot go is reported so it counts as a failure.
    fn probe(&mut self, backend: u16, path: u8, round: u8, method: Method, tx: &mut [TxBuffer]) {
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
            Some((port, len)) if usize::from(port) < self.ports.len() => {
                // SAFETY: the frame was written within the data room.
                unsafe { mbuf::set_frame(m, start, len) };
                let counters = Arc::clone(&self.core.state.counters);
                enqueue(&self.ports, self.queue, tx, &counters, m, port, len, 1);
            }
            _ => {
                mbuf::free_bulk(&mut [m]);
                self.core.report(unsent);
            }
        }
    }

    fn solicit(&mut self, port: u8, ip: &[u8; 16], v6: bool, tx: &mut [TxBuffer]) {
        let o = usize::from(port);
        if o >= self.ports.len() {
            return;
        }
        let Some(m) = self.pool.alloc() else { return };
        // SAFETY: a fresh mbuf from our pool, owned here.
        let (room, start, _) = unsafe { mbuf::data_room(m) };
        match self.core.build_solicit(port, ip, v6, &mut room[start..]) {
            Some(len) => {
                // SAFETY: the frame was written within the data room.
                unsafe { mbuf::set_frame(m, start, len) };
                let b = &mut tx[o];
                b.push(m, len);
                let counters = Arc::clone(&self.core.state.counters);
                flush(&self.ports[o], self.queue, b, &counters, o);
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

/// Queues a frame for `out`'s TX buffer, flushing the buffer when it holds `burst`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn enqueue(
    ports: &[EthPort],
    queue: u16,
    tx: &mut [TxBuffer],
    counters: &tandem_dataplane::counters::WorkerCounters,
    m: RawMbuf,
    out: u8,
    len: usize,
    burst: usize,
) {
    let o = usize::from(out);
    let b = &mut tx[o];
    b.push(m, len);
    if b.n >= burst {
        flush(&ports[o], queue, b, counters, o);
    }
}

fn flush(
    port: &EthPort,
    queue: u16,
    b: &mut TxBuffer,
    counters: &tandem_dataplane::counters::WorkerCounters,
    o: usize,
) {
    let sent = b.send(port, queue);
    let pc = &counters.ports[o];
    pc.tx_packets.add(sent as u64);
    pc.tx_bytes
        .add(b.lens[..sent].iter().map(|&l| u64::from(l)).sum());
    for _ in sent..b.n {
        counters.count_drop(DropReason::TxFull);
    }
    b.n = 0;
}
