//! The kernel twins as one worker drives them (see `crate::twin`): frames for the kernel
//! (what the core absorbed for it, and copies of the ARP and ND it answered) gathered per
//! twin and sent at the end of each step; what the kernel sent out of a twin read on its
//! own clock and sent out of the twin's port.

use super::egress::{Egress, TxBuffer, MAX_BURST};
use crate::ethdev::EthPort;
use crate::mbuf::{self, Mempool, RawMbuf};
use tandem_dataplane::counters::{DropReason, WorkerCounters};
use tandem_dataplane::pipeline::{Core, MAX_BURST as CORE_BURST};

/// How often a worker reads what the kernel twins sent (a read from a TAP is a system
/// call; BFD's 100 ms and a TCP session's round trips do not notice 200 us).
const POLL_EVERY_US: u64 = 200;

/// A port's kernel twin: the TAP port, and the frames for it.
struct Twin {
    port: EthPort,
    out: TxBuffer,
}

/// Each port's twin, if it has one, and when they are read next.
pub struct Twins {
    by_port: Vec<Option<Twin>>,
    next_poll_us: u64,
}

impl Twins {
    pub fn new(twins: &[Option<EthPort>]) -> Twins {
        Twins {
            by_port: twins
                .iter()
                .map(|t| {
                    t.map(|port| Twin {
                        port,
                        out: TxBuffer::new(),
                    })
                })
                .collect(),
            next_poll_us: 0,
        }
    }

    fn of(&mut self, port: u8) -> Option<&mut Twin> {
        self.by_port
            .get_mut(usize::from(port))
            .and_then(Option::as_mut)
    }

    /// Queues mbuf `m` (a frame of `len` bytes that came in on `port`) for the port's
    /// twin; one for a port without a twin is freed.
    pub fn push(&mut self, m: RawMbuf, port: u8, len: usize, eg: &mut Egress) {
        let Some(t) = self.of(port) else {
            eg.free(m);
            return;
        };
        t.out.push(m, len);
        if t.out.is_full() {
            self.flush(eg.queue, eg.counters());
        }
    }

    /// The copies of ARP and ND frames the core answered, each in a fresh mbuf for its
    /// port's twin (`pipeline::kernel`); a copy with no room or no mbuf is counted lost.
    pub fn take_copies(&mut self, core: &mut Core, pool: &Mempool) {
        if !core.has_kernel_copies() {
            return;
        }
        let counters = std::sync::Arc::clone(&core.state.counters);
        core.take_kernel_copies(|port, frame| {
            let twin = self.of(port).filter(|t| !t.out.is_full());
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

    /// Hands each twin what is queued for it; what its queue does not take is dropped
    /// (`kernel_full`).
    pub fn flush(&mut self, queue: u16, counters: &WorkerCounters) {
        for t in self.by_port.iter_mut().flatten() {
            if t.out.is_empty() {
                continue;
            }
            let queued = t.out.len();
            let (sent, _) = t.out.send(&t.port, queue);
            for _ in sent..queued {
                counters.count_drop(DropReason::KernelFull);
            }
        }
    }

    /// When their clock says so, sends what the kernel wrote out of each twin (a burst
    /// from each, at most) out of the twin's port.
    pub fn forward_from_kernel(&mut self, now_us: u64, eg: &mut Egress) {
        if now_us < self.next_poll_us || self.by_port.is_empty() {
            return;
        }
        self.next_poll_us = now_us + POLL_EVERY_US;
        let mut got = [std::ptr::null_mut(); CORE_BURST];
        for (o, twin) in self.by_port.iter().enumerate() {
            let Some(twin) = twin else { continue };
            let n = twin.port.rx_burst(eg.queue, &mut got);
            for &m in &got[..n] {
                // SAFETY: `m` came from rx_burst and is ours until sent or freed.
                let (segs, (_, _, len)) = unsafe { (mbuf::segments(m), mbuf::data_room(m)) };
                if segs != 1 {
                    eg.counters().count_drop(DropReason::TooBig);
                    mbuf::free_bulk(&mut [m]);
                    continue;
                }
                eg.counters().from_kernel.inc();
                eg.send(m, o as u8, len);
            }
        }
    }
}

const _: () = assert!(CORE_BURST <= MAX_BURST);
