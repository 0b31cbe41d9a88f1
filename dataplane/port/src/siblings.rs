//! Flow records from worker to worker, with no control thread between: every ordered pair
//! of a node's workers has one bounded single-producer ring of batches. A worker hands its
//! core's `replicas` on after each burst and takes its siblings' between bursts.
//!
//! Nothing is lost: a record leaves the core's outbox only once every sibling's ring took
//! it. A worker whose siblings fall behind stops reading packets until there is room again
//! (`Worker::make_replica_room`), and goes on taking their records meanwhile, so two
//! workers waiting on each other both make progress. What a worker cannot sustain then
//! stays in its RX queue (the NIC counts it as missed), not in a lost record.

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use std::sync::atomic::{AtomicBool, Ordering};
use tandem_dataplane::pipeline::{Core, Replica};

/// Records per batch: one ring operation carries this many.
pub const BATCH: usize = 32;
/// Batches a ring holds (8192 records: more than a loop of bursts makes).
pub const RING_BATCHES: usize = 256;
/// Batches taken from each sibling per loop, so records cannot starve packets; at 32 a
/// batch this is four times what a loop of one 32-frame burst per port can make.
pub const BATCHES_PER_LOOP: usize = 16;

/// Up to `BATCH` records, moved through a ring by value (no allocation per message).
pub struct Batch {
    n: u8,
    items: [Replica; BATCH],
}

/// One worker's ends of the rings: one to each sibling, one from each.
#[derive(Default)]
pub struct Siblings {
    to: Vec<Sender<Batch>>,
    from: Vec<Receiver<Batch>>,
    /// Per ring in `to`: how many of the core's replicas it has taken already.
    taken: Vec<usize>,
}

/// The rings of a node of `workers` workers: entry `i` is worker `i`'s ends.
pub fn mesh(workers: usize) -> Vec<Siblings> {
    let mut ends: Vec<Siblings> = (0..workers).map(|_| Siblings::default()).collect();
    for a in 0..workers {
        for b in 0..workers {
            if a != b {
                let (tx, rx) = bounded(RING_BATCHES);
                ends[a].to.push(tx);
                ends[a].taken.push(0);
                ends[b].from.push(rx);
            }
        }
    }
    ends
}

impl Siblings {
    pub fn is_empty(&self) -> bool {
        self.to.is_empty()
    }

    /// Hands the core's replicas to every sibling as far as their rings take them; those
    /// every ring took leave the outbox.
    pub fn send(&mut self, core: &mut Core) {
        let out = &mut core.state.replicas;
        if out.is_empty() {
            return;
        }
        let counters = &core.state.counters;
        let mut least = out.len();
        for (ring, taken) in self.to.iter().zip(self.taken.iter_mut()) {
            while *taken < out.len() {
                if ring.is_full() {
                    break;
                }
                let chunk = &out[*taken..out.len().min(*taken + BATCH)];
                let mut b = Batch {
                    n: chunk.len() as u8,
                    items: [chunk[0]; BATCH],
                };
                b.items[..chunk.len()].copy_from_slice(chunk);
                match ring.try_send(b) {
                    Ok(()) => {
                        *taken += chunk.len();
                        counters.flows_replicated_out.add(chunk.len() as u64);
                    }
                    // Full (the sibling took nothing since is_full) or gone (the node is
                    // stopping): try again later.
                    Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => break,
                }
            }
            least = least.min(*taken);
        }
        if least == out.len() {
            out.clear();
        } else if least > 0 {
            out.drain(..least);
        }
        for t in &mut self.taken {
            *t -= least;
        }
    }

    /// Stores the siblings' records (at most `BATCHES_PER_LOOP` batches from each); `each`
    /// hears every key first (the parking lot retries the replies waiting for it), then
    /// each batch is stored with its buckets prefetched (`Core::apply_replicas`).
    pub fn receive(&self, core: &mut Core, mut each: impl FnMut(&Replica)) {
        for ring in &self.from {
            for _ in 0..BATCHES_PER_LOOP {
                let Ok(b) = ring.try_recv() else { break };
                let batch = &b.items[..usize::from(b.n)];
                batch.iter().for_each(&mut each);
                core.apply_replicas(batch, crate::mbuf::prefetch_addr);
            }
        }
    }

    /// Makes room in the core's outbox for `n` more records (the frames about to run make
    /// at most one each): while the siblings' rings are full, takes their records (they may
    /// be waiting on this worker in turn) and offers this core's again. Gives up only when
    /// `stop` is set. `each` is as for `receive`.
    pub fn make_room(
        &mut self,
        core: &mut Core,
        n: usize,
        stop: &AtomicBool,
        mut each: impl FnMut(&Replica),
    ) {
        if self.is_empty() || core.replica_room() >= n {
            return;
        }
        core.state.counters.replication_waits.inc();
        loop {
            self.send(core);
            if core.replica_room() >= n || stop.load(Ordering::Relaxed) {
                return;
            }
            self.receive(core, &mut each);
            std::hint::spin_loop();
        }
    }

    /// True when no sibling's ring holds records for this worker.
    pub fn idle(&self) -> bool {
        self.from.iter().all(|r| r.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Arc;
    use tandem_dataplane::counters::WorkerCounters;
    use tandem_dataplane::flow::Timeouts;
    use tandem_dataplane::pipeline::{Now, PacketBuf, Verdict};
    use tandem_dataplane::services::Services;
    use tandem_dataplane::testkit;
    use tandem_dataplane::wire::l4::SYN;

    const CONFIG: &str = r#"
[node]
id = 1
[eal]
args = []
[[port]]
name = "front"
devargs = "net_null0"
ipv4 = "10.0.0.1/24"
[[port]]
name = "back"
devargs = "net_null1"
ipv4 = "10.1.0.1/24"
[workers]
cores = [0, 1]
[[service]]
name = "web"
vip = "192.0.2.10"
port = 80
protocol = "tcp"
mode = "nat"
[[service.backend]]
name = "a"
address = "10.1.0.11"
port = 8080
paths = [{ port = "back", mac = "02:00:00:00:01:11" }]
"#;

    /// Two workers, each flooded with its own distinct SYNs far faster than a ring holds
    /// (a burst at a time, as the worker loop runs them, one worker starting late): afterwards both tables hold every
    /// flow of both, and no record was lost on the way.
    #[test]
    fn a_flood_of_new_flows_over_two_workers_reaches_both() {
        const FLOWS: u32 = 60_000;
        let cfg = tandem_config::Config::from_toml(CONFIG).unwrap();
        let macs = [[2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]];
        let services = Arc::new(Services::from_config(&cfg, &macs));
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let vip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
        let threads: Vec<_> = mesh(2)
            .into_iter()
            .enumerate()
            .map(|(w, mut sib)| {
                let services = Arc::clone(&services);
                let stop = Arc::clone(&stop);
                let done = Arc::clone(&done);
                std::thread::spawn(move || {
                    let counters = Arc::new(WorkerCounters::default());
                    let mut core = Core::new(
                        w as u16,
                        262_144,
                        Timeouts::default(),
                        services,
                        counters,
                        7,
                    );
                    core.set_now(Now::from_ms(1));
                    let first = w as u32 * FLOWS;
                    let frames: Vec<Vec<u8>> = (first..first + FLOWS)
                        .map(|i| {
                            let (src, sport) = testkit::bench_client(i);
                            testkit::tcp(
                                macs[0],
                                [2, 0, 0, 0, 0xc, 1],
                                src,
                                sport,
                                vip,
                                80,
                                SYN,
                                b"",
                            )
                        })
                        .collect();
                    let mut buf = vec![0u8; 2048];
                    // Worker 1 starts late: worker 0 fills its ring and must wait for it.
                    if w == 1 {
                        std::thread::sleep(std::time::Duration::from_millis(200));
                    }
                    for burst in frames.chunks(32) {
                        sib.make_room(&mut core, burst.len(), &stop, |_| {});
                        for f in burst {
                            buf[128..128 + f.len()].copy_from_slice(f);
                            let mut p = PacketBuf {
                                buf: &mut buf,
                                start: 128,
                                len: f.len(),
                                handle: 0,
                            };
                            assert!(matches!(core.process(0, &mut p), Verdict::Tx(_)));
                        }
                        core.state.outbox.clear();
                        sib.send(&mut core);
                        sib.receive(&mut core, |_| {});
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                    // Until both are done and nothing is left in flight either way.
                    while done.load(Ordering::SeqCst) < 2
                        || !core.state.replicas.is_empty()
                        || !sib.idle()
                    {
                        sib.send(&mut core);
                        sib.receive(&mut core, |_| {});
                        core.state.outbox.clear();
                        std::thread::yield_now();
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                    while done.load(Ordering::SeqCst) < 4 {
                        sib.receive(&mut core, |_| {});
                        std::thread::yield_now();
                    }
                    core
                })
            })
            .collect();
        let cores: Vec<Core> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        for (w, c) in cores.iter().enumerate() {
            let k = &c.state.counters;
            assert_eq!(k.flows_created.get(), u64::from(FLOWS), "worker {w}");
            assert_eq!(k.flows_replicated_in.get(), u64::from(FLOWS), "worker {w}");
            assert_eq!(k.flows_replicated_out.get(), u64::from(FLOWS), "worker {w}");
            assert_eq!(k.outbox_overflow.get(), 0);
            assert_eq!(c.state.table.len(), 2 * FLOWS as usize, "worker {w}");
            for i in 0..2 * FLOWS {
                let (src, sport) = testkit::bench_client(i);
                let key = tandem_dataplane::flow::FlowKey::new(src, sport, vip, 80, 6);
                assert!(
                    c.state.table.peek(&key).is_some(),
                    "worker {w} lacks flow {i}"
                );
            }
        }
        // Worker 0 made more than its ring holds before worker 1 took any: it waited.
        assert!(cores[0].state.counters.replication_waits.get() > 0);
    }
}
