//! Rates: the workers' counters sampled each second into packets per second per port and
//! per worker and new flows per second per backend; and the device counters the port layer
//! reads from DPDK.

use super::Control;
use std::time::Instant;

/// Device counters the port layer reads from DPDK.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeviceStats {
    pub ipackets: u64,
    pub opackets: u64,
    pub imissed: u64,
    pub ierrors: u64,
    pub oerrors: u64,
    pub rx_nombuf: u64,
    /// Frames the kernel dropped on a net_af_packet port's rings (its RX ring full).
    pub kernel_drops: u64,
}

#[derive(Default, Clone)]
struct Sample {
    port_rx: Vec<u64>,
    port_tx: Vec<u64>,
    worker_rx: Vec<u64>,
    worker_tx: Vec<u64>,
    backend_new: Vec<u64>,
}

/// Per-second rates from the last two samples.
#[derive(Default, Clone, Debug)]
pub struct Rates {
    pub port_rx_pps: Vec<f64>,
    pub port_tx_pps: Vec<f64>,
    pub worker_rx_pps: Vec<f64>,
    pub worker_tx_pps: Vec<f64>,
    pub backend_new_per_s: Vec<f64>,
}

/// The rates and what they are computed from.
#[derive(Default)]
pub(super) struct RateMeter {
    pub rates: Rates,
    last_sample: Option<(Instant, Sample)>,
    pub device_stats: Vec<DeviceStats>,
}

impl RateMeter {
    /// Rates from nothing yet, for `ports` ports.
    pub fn new(ports: usize) -> RateMeter {
        RateMeter {
            device_stats: vec![DeviceStats::default(); ports],
            ..Default::default()
        }
    }
}

impl Control {
    /// Samples counters and computes per-second rates.
    pub fn sample_rates(&mut self, now: Instant) {
        let nports = self.ports.len();
        let mut s = Sample {
            port_rx: vec![0; nports],
            port_tx: vec![0; nports],
            worker_rx: vec![0; self.workers.len()],
            worker_tx: vec![0; self.workers.len()],
            backend_new: vec![0; self.snapshot.backends.len()],
        };
        for (wi, w) in self.workers.iter().enumerate() {
            for p in 0..nports {
                let rx = w.counters.ports[p].rx_packets.get();
                let tx = w.counters.ports[p].tx_packets.get();
                s.port_rx[p] += rx;
                s.port_tx[p] += tx;
                s.worker_rx[wi] += rx;
                s.worker_tx[wi] += tx;
            }
            for (b, n) in s.backend_new.iter_mut().enumerate() {
                *n += w.counters.backend_new_flows[b].get();
            }
        }
        if let Some((t0, prev)) = &self.meter.last_sample {
            let dt = now.duration_since(*t0).as_secs_f64().max(1e-3);
            let rate = |a: &[u64], b: &[u64]| -> Vec<f64> {
                a.iter()
                    .zip(b.iter().chain(std::iter::repeat(&0)))
                    .map(|(x, y)| x.saturating_sub(*y) as f64 / dt)
                    .collect()
            };
            self.meter.rates = Rates {
                port_rx_pps: rate(&s.port_rx, &prev.port_rx),
                port_tx_pps: rate(&s.port_tx, &prev.port_tx),
                worker_rx_pps: rate(&s.worker_rx, &prev.worker_rx),
                worker_tx_pps: rate(&s.worker_tx, &prev.worker_tx),
                backend_new_per_s: rate(&s.backend_new, &prev.backend_new),
            };
        }
        self.meter.last_sample = Some((now, s));
    }
}
