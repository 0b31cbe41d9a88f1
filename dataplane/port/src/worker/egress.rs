//! What one worker sends and frees: a TX buffer per port, flushed when it holds a burst or at
//! the end of a step, and the mbufs to free in bulk. The scratch every step of the loop
//! shares, so no function passes the buffers along as separate arguments.

use crate::ethdev::EthPort;
use crate::mbuf::{self, RawMbuf};
use std::sync::Arc;
use tandem_dataplane::counters::{DropReason, WorkerCounters};

/// Largest burst the loop supports.
pub const MAX_BURST: usize = 512;

/// Frames queued for one TX queue, with their lengths (for the byte counters).
pub struct TxBuffer {
    pkts: [RawMbuf; MAX_BURST],
    lens: [u16; MAX_BURST],
    n: usize,
}

impl TxBuffer {
    pub fn new() -> TxBuffer {
        TxBuffer {
            pkts: [std::ptr::null_mut(); MAX_BURST],
            lens: [0; MAX_BURST],
            n: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    pub fn is_full(&self) -> bool {
        self.n == MAX_BURST
    }

    /// Queues `m`, a frame of `len` bytes (the caller keeps the buffer below `MAX_BURST`).
    #[inline(always)]
    pub fn push(&mut self, m: RawMbuf, len: usize) {
        self.pkts[self.n] = m;
        self.lens[self.n] = len as u16;
        self.n += 1;
    }

    /// Hands what is queued to `port`'s TX queue `queue` and empties the buffer; frees what
    /// the queue did not take. How many it took, and their bytes.
    pub fn send(&mut self, port: &EthPort, queue: u16) -> (usize, u64) {
        let sent = port.tx_burst(queue, &mut self.pkts[..self.n]);
        if sent < self.n {
            mbuf::free_bulk(&mut self.pkts[sent..self.n]);
        }
        let bytes = self.lens[..sent].iter().map(|&l| u64::from(l)).sum();
        self.n = 0;
        (sent, bytes)
    }
}

impl Default for TxBuffer {
    fn default() -> TxBuffer {
        TxBuffer::new()
    }
}

/// A worker's way out: its TX queue (`queue`) on every port, a buffer for each, and the
/// mbufs to free.
pub struct Egress {
    /// Ports in config order; the worker owns queue `queue` of each, RX and TX.
    pub ports: Vec<EthPort>,
    pub queue: u16,
    /// Frames a TX buffer gathers before it is flushed.
    pub burst: usize,
    tx: Vec<TxBuffer>,
    free: Vec<RawMbuf>,
    counters: Arc<WorkerCounters>,
}

impl Egress {
    pub fn new(
        ports: Vec<EthPort>,
        queue: u16,
        burst: usize,
        counters: Arc<WorkerCounters>,
    ) -> Egress {
        let burst = burst.clamp(1, MAX_BURST);
        Egress {
            tx: (0..ports.len()).map(|_| TxBuffer::new()).collect(),
            free: Vec::with_capacity(MAX_BURST + crate::worker::MAX_PARKED),
            ports,
            queue,
            burst,
            counters,
        }
    }

    /// Queues a frame of `len` bytes for port `out`, flushing its buffer once it holds a
    /// burst.
    #[inline(always)]
    pub fn send(&mut self, m: RawMbuf, out: u8, len: usize) {
        let o = usize::from(out);
        self.tx[o].push(m, len);
        if self.tx[o].len() >= self.burst {
            self.flush_port(o);
        }
    }

    /// Sends a frame of `len` bytes out of port `out` now, with what is queued before it.
    pub fn send_now(&mut self, m: RawMbuf, out: u8, len: usize) {
        let o = usize::from(out);
        self.tx[o].push(m, len);
        self.flush_port(o);
    }

    /// Sends what every port's buffer holds.
    pub fn flush(&mut self) {
        for o in 0..self.tx.len() {
            if !self.tx[o].is_empty() {
                self.flush_port(o);
            }
        }
    }

    fn flush_port(&mut self, o: usize) {
        let queued = self.tx[o].len();
        let (sent, bytes) = self.tx[o].send(&self.ports[o], self.queue);
        let pc = &self.counters.ports[o];
        pc.tx_packets.add(sent as u64);
        pc.tx_bytes.add(bytes);
        for _ in sent..queued {
            self.counters.count_drop(DropReason::TxFull);
        }
    }

    pub fn counters(&self) -> &WorkerCounters {
        &self.counters
    }

    /// Frees `m` with the next bulk free.
    #[inline(always)]
    pub fn free(&mut self, m: RawMbuf) {
        self.free.push(m);
    }

    /// Frees what `free` gathered.
    pub fn free_gathered(&mut self) {
        if !self.free.is_empty() {
            mbuf::free_bulk(&mut self.free);
            self.free.clear();
        }
    }
}
