//! Prometheus metrics: the node's counters as the text exposition format, served at
//! `/metrics` by a thread of its own (`server`). The control thread renders the page (it owns
//! what the page reads) when a scrape finds it more than a second old, and every second
//! while someone scrapes; the server hands out the latest page, so a slow or stuck scraper
//! never reaches the control loop. Values are
//! those `show stats`, `show backends`, `show latency` and `show nodes` give, in base units
//! (seconds, bytes), counters named `_total`. The `prometheus` crate writes the format.

mod server;

pub use server::{MetricsServer, Page};

use crate::qos::window::{Totals, BUCKET_BOUNDS_US};
use crate::state::Control;
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType, Quantile,
    Summary,
};
use prometheus::Encoder;
use std::time::Instant;
use tandem_dataplane::counters::{Absorbed, DropReason};
use tandem_dataplane::qos::hist::Kind;

/// The families of one page, in the order first named.
#[derive(Default)]
struct Families {
    families: Vec<MetricFamily>,
}

fn labels(ls: &[(&str, &str)]) -> Vec<LabelPair> {
    ls.iter()
        .map(|(k, v)| {
            let mut l = LabelPair::default();
            l.set_name(k.to_string());
            l.set_value(v.to_string());
            l
        })
        .collect()
}

impl Families {
    fn family(&mut self, name: &str, help: &str, ty: MetricType) -> &mut MetricFamily {
        let i = match self.families.iter().position(|f| f.get_name() == name) {
            Some(i) => i,
            None => {
                let mut f = MetricFamily::default();
                f.set_name(name.to_string());
                f.set_help(help.to_string());
                f.set_field_type(ty);
                self.families.push(f);
                self.families.len() - 1
            }
        };
        &mut self.families[i]
    }

    fn counter(&mut self, name: &str, help: &str, ls: &[(&str, &str)], v: u64) {
        let mut m = Metric::default();
        m.set_label(labels(ls));
        let mut c = Counter::default();
        c.set_value(v as f64);
        m.set_counter(c);
        self.family(name, help, MetricType::COUNTER)
            .mut_metric()
            .push(m);
    }

    fn gauge(&mut self, name: &str, help: &str, ls: &[(&str, &str)], v: f64) {
        let mut m = Metric::default();
        m.set_label(labels(ls));
        let mut g = Gauge::default();
        g.set_value(v);
        m.set_gauge(g);
        self.family(name, help, MetricType::GAUGE)
            .mut_metric()
            .push(m);
    }

    fn summary(
        &mut self,
        name: &str,
        help: &str,
        ls: &[(&str, &str)],
        quantiles: &[(f64, f64)],
        (count, sum): (u64, f64),
    ) {
        let mut m = Metric::default();
        m.set_label(labels(ls));
        let mut s = Summary::default();
        s.set_sample_count(count);
        s.set_sample_sum(sum);
        s.set_quantile(
            quantiles
                .iter()
                .map(|&(q, v)| {
                    let mut x = Quantile::default();
                    x.set_quantile(q);
                    x.set_value(v);
                    x
                })
                .collect(),
        );
        m.set_summary(s);
        self.family(name, help, MetricType::SUMMARY)
            .mut_metric()
            .push(m);
    }

    /// A cumulative histogram: `buckets` per bound (not cumulative; the last past them).
    fn histogram(&mut self, name: &str, help: &str, ls: &[(&str, &str)], t: &Totals) {
        let mut m = Metric::default();
        m.set_label(labels(ls));
        let mut h = Histogram::default();
        h.set_sample_count(t.count);
        h.set_sample_sum(t.sum_us as f64 / 1e6);
        let mut below = 0;
        h.set_bucket(
            BUCKET_BOUNDS_US
                .iter()
                .zip(t.buckets)
                .map(|(&le, n)| {
                    below += n;
                    let mut b = Bucket::default();
                    b.set_upper_bound(le as f64 / 1e6);
                    b.set_cumulative_count(below);
                    b
                })
                .collect(),
        );
        m.set_histogram(h);
        self.family(name, help, MetricType::HISTOGRAM)
            .mut_metric()
            .push(m);
    }

    fn text(&self) -> String {
        let mut out = Vec::new();
        // Only an I/O error of the writer fails it; a Vec has none.
        let _ = prometheus::TextEncoder::new().encode(&self.families, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The page's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The node's metrics as a page of the text format.
pub fn render(ctl: &Control) -> String {
    let mut p = Families::default();
    let node = ctl.config().node_id.to_string();
    p.gauge(
        "tandem_info",
        "The node: its id and tandem's version (value 1).",
        &[("node", &node), ("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    p.gauge(
        "tandem_uptime_seconds",
        "Seconds since the node started.",
        &[],
        ctl.started().elapsed().as_secs_f64(),
    );
    ports(ctl, &mut p);
    workers(ctl, &mut p);
    neighbors(ctl, &mut p);
    backends(ctl, &mut p);
    services(ctl, &mut p);
    cluster(ctl, &mut p);
    p.text()
}

fn ports(ctl: &Control, p: &mut Families) {
    for (i, port) in ctl.ports().iter().enumerate() {
        let sum = |f: fn(&tandem_dataplane::counters::PortCounters) -> u64| -> u64 {
            ctl.workers().iter().map(|w| f(&w.counters.ports[i])).sum()
        };
        let l = [("port", port.name.as_str())];
        p.counter(
            "tandem_port_received_packets_total",
            "Frames received on the port.",
            &l,
            sum(|c| c.rx_packets.get()),
        );
        p.counter(
            "tandem_port_received_bytes_total",
            "Bytes received on the port.",
            &l,
            sum(|c| c.rx_bytes.get()),
        );
        p.counter(
            "tandem_port_sent_packets_total",
            "Frames sent on the port.",
            &l,
            sum(|c| c.tx_packets.get()),
        );
        p.counter(
            "tandem_port_sent_bytes_total",
            "Bytes sent on the port.",
            &l,
            sum(|c| c.tx_bytes.get()),
        );
        let d = ctl.device_stats().get(i).copied().unwrap_or_default();
        p.counter(
            "tandem_port_missed_packets_total",
            "Frames the device dropped for want of room in the receive ring (imissed).",
            &l,
            d.imissed,
        );
        p.gauge(
            "tandem_port_link_up",
            "1 while the port's link is up.",
            &l,
            f64::from(u8::from(ctl.link_up().get(i).copied().unwrap_or(true))),
        );
    }
}

fn workers(ctl: &Control, p: &mut Families) {
    for (i, w) in ctl.workers().iter().enumerate() {
        let c = &w.counters;
        let wk = i.to_string();
        let l = [("worker", wk.as_str())];
        for r in DropReason::ALL {
            let n = c.dropped(*r);
            if n > 0 {
                p.counter(
                    "tandem_dropped_packets_total",
                    "Frames dropped, by worker and reason (show stats' drops).",
                    &[("worker", &wk), ("reason", r.name())],
                    n,
                );
            }
        }
        for k in Absorbed::ALL {
            p.counter(
                "tandem_absorbed_packets_total",
                "Frames taken in without an answer or a drop, by worker and kind (show stats' \
                 absorbed_by_kind).",
                &[("worker", &wk), ("kind", k.name())],
                c.absorbed[*k as usize].get(),
            );
        }
        c.each_with_help(|name, help, v| {
            let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
            match GAUGES.iter().find(|(n, _)| *n == name) {
                Some((_, series)) => p.gauge(series, &help, &l, v as f64),
                None => p.counter(&format!("tandem_worker_{name}_total"), &help, &l, v),
            }
        });
    }
}

/// Worker counters that are levels, not totals, and the series they are paged as; every
/// other one is `tandem_worker_NAME_total`.
const GAUGES: &[(&str, &str)] = &[
    ("flows_in_table", "tandem_worker_flows"),
    ("waiting", "tandem_worker_waiting"),
];

/// The neighbor table: entries per port against its limit, and what it pushed out, let
/// expire or refused.
fn neighbors(ctl: &Control, p: &mut Families) {
    for (i, port) in ctl.ports().iter().enumerate() {
        let n = ctl
            .neighbors()
            .keys()
            .filter(|k| usize::from(k.port) == i)
            .count();
        p.gauge(
            "tandem_neighbors",
            "Neighbors the node keeps on the port (next hops, addresses it resolves, fixed).",
            &[("port", port.name.as_str())],
            n as f64,
        );
    }
    let c = ctl.neighbor_counts();
    for (name, help, v) in [
        (
            "tandem_neighbors_evicted_total",
            "Neighbors being resolved pushed out by newer ones on a full port.",
            c.evicted,
        ),
        (
            "tandem_neighbors_expired_total",
            "Neighbors being resolved dropped after going unanswered.",
            c.expired,
        ),
        (
            "tandem_neighbors_refused_total",
            "Requests to resolve refused: the port's table full of next hops the config names.",
            c.refused_full,
        ),
    ] {
        p.counter(name, help, &[], v);
    }
}

fn backends(ctl: &Control, p: &mut Families) {
    let s = ctl.snapshot();
    let active = ctl.active_flows_by_backend();
    let w = &ctl.qos().windows;
    for b in s.backends.iter().filter(|b| !b.is_vacant()) {
        let svc = &s.services[usize::from(b.service)].name;
        let l = [("service", svc.as_str()), ("backend", b.name.as_str())];
        let i = usize::from(b.id);
        p.gauge(
            "tandem_backend_flows",
            "Live flows on the backend (the node's view).",
            &l,
            active.get(i).copied().unwrap_or(0) as f64,
        );
        p.counter(
            "tandem_backend_new_flows_total",
            "New flows the backend took.",
            &l,
            ctl.backend_new_flows(b.id),
        );
        p.gauge(
            "tandem_backend_up",
            "1 while the backend's probes pass (health).",
            &l,
            f64::from(u8::from(b.up)),
        );
        p.gauge(
            "tandem_backend_eligible",
            "1 while the backend takes new flows (active or an activated standby, and up).",
            &l,
            f64::from(u8::from(b.eligible)),
        );
        p.gauge(
            "tandem_backend_removing",
            "1 while a removed backend drains.",
            &l,
            f64::from(u8::from(b.removing)),
        );
        p.gauge(
            "tandem_backend_weight",
            "The backend's configured weight.",
            &l,
            f64::from(b.weight),
        );
        p.gauge(
            "tandem_backend_qos_factor",
            "The backend's QoS factor (1: full share).",
            &l,
            ctl.qos().live.get(i).map_or(1.0, |x| x.factor),
        );
        p.gauge(
            "tandem_backend_admitted_flows",
            "Flows holding one of the backend's admission slots.",
            &l,
            f64::from(ctl.load().active(b.id)),
        );
        if b.max_flows > 0 {
            p.gauge(
                "tandem_backend_max_flows",
                "The backend's admission limit.",
                &l,
                f64::from(b.max_flows),
            );
        }
        admission_limit(ctl, b, &l, p);
        latency(w, b.id, &l, p);
    }
}

/// A backend's admission limit as it stands (learned, or `max_flows`; no series without
/// one) and its flows in flight; for a learned one, the latencies it was learned from.
fn admission_limit(
    ctl: &Control,
    b: &tandem_dataplane::services::Backend,
    l: &[(&str, &str); 2],
    p: &mut Families,
) {
    p.gauge(
        "tandem_backend_in_flight",
        "Flows holding one of the backend's admission slots (what its limit counts).",
        l,
        f64::from(ctl.load().active(b.id)),
    );
    let learned = ctl.learned_limit(b.id);
    let limit = match learned {
        Some(_) => ctl.load().learned(b.id),
        None => b.max_flows,
    };
    if limit > 0 {
        p.gauge(
            "tandem_backend_limit",
            "Flows the backend may serve at once: learned from its latency \
             ([service.admission] limit = \"adaptive\"), or its max_flows.",
            l,
            f64::from(limit),
        );
    }
    let Some(x) = learned else { return };
    let sec = |us: Option<u64>| us.map_or(f64::NAN, |u| u as f64 / 1e6);
    if x.min_us.is_some() {
        p.gauge(
            "tandem_backend_limit_min_latency_seconds",
            "The minimum latency an adaptive limit is learned against.",
            l,
            sec(x.min_us),
        );
    }
    if x.sample_us.is_some() {
        p.gauge(
            "tandem_backend_limit_sampled_latency_seconds",
            "The last period's sampled latency an adaptive limit was moved by.",
            l,
            sec(x.sample_us),
        );
    }
}

/// A backend's latency: over the QoS window, a summary per kind of sample; since the
/// backend took its id, a histogram per kind in fixed buckets (which add up over nodes).
fn latency(w: &crate::qos::window::Windows, id: u16, l: &[(&str, &str); 2], p: &mut Families) {
    let slots = w.slots();
    for kind in Kind::ALL {
        let t = w.totals(id, kind);
        if t.count > 0 {
            p.histogram(
                "tandem_backend_latency_bucketed_seconds",
                "Latency to the backend since it was added, by kind (probe, handshake or \
                 response), in fixed buckets from 50us to 10s: sum by (le) over nodes for \
                 histogram_quantile.",
                &[l[0], l[1], ("kind", kind.name())],
                &t,
            );
        }
        let x = w.summary(id, None, kind, slots);
        if x.count == 0 {
            continue;
        }
        let sec = |us: u64| us as f64 / 1e6;
        p.summary(
            "tandem_backend_latency_seconds",
            "Latency to the backend over the QoS window (show latency), by kind: \
             probe, handshake or response.",
            &[l[0], l[1], ("kind", kind.name())],
            &[
                (0.5, sec(x.p50_us)),
                (0.9, sec(x.p90_us)),
                (0.99, sec(x.p99_us)),
            ],
            (x.count, x.mean_us * x.count as f64 / 1e6),
        );
    }
}

fn services(ctl: &Control, p: &mut Families) {
    let s = ctl.snapshot();
    for svc in s.services.iter().filter(|x| !x.is_vacant() && x.admission) {
        let sum = |f| ctl.queue_total(svc.id, f);
        let l = [("service", svc.name.as_str())];
        p.gauge(
            "tandem_service_queue_length",
            "New flows waiting in the admission queue.",
            &l,
            sum(|q| q.length.get()) as f64,
        );
        p.gauge(
            "tandem_service_queue_limit",
            "The admission queue's length limit.",
            &l,
            svc.queue_max_len as f64,
        );
        p.counter(
            "tandem_service_queue_waits_total",
            "New flows that waited in the admission queue.",
            &l,
            sum(|q| q.queued.get()),
        );
        p.counter(
            "tandem_service_queue_released_total",
            "Waiting flows that got a slot and went on.",
            &l,
            sum(|q| q.released.get()),
        );
        p.counter(
            "tandem_service_queue_timed_out_total",
            "Waiting flows dropped after the queue's max_wait.",
            &l,
            sum(|q| q.timed_out.get()),
        );
        p.counter(
            "tandem_service_queue_full_total",
            "New flows refused: the queue was full.",
            &l,
            sum(|q| q.full.get()),
        );
        p.counter(
            "tandem_service_queue_wait_seconds_total",
            "Seconds the released flows waited, in all.",
            &l,
            sum(|q| q.wait_us.get()) / 1_000_000,
        );
    }
}

fn cluster(ctl: &Control, p: &mut Families) {
    let Some(c) = ctl.cluster() else {
        return;
    };
    let now = Instant::now();
    let sync = &c.sync;
    p.gauge(
        "tandem_node_ready",
        "1 once this node's snapshot of the cluster's flows is complete.",
        &[],
        f64::from(u8::from(sync.readiness == crate::cluster::Readiness::Ready)),
    );
    for n in &sync.view.nodes {
        let id = n.id.to_string();
        let l = [("node", id.as_str())];
        let peer = sync.peers.iter().find(|x| x.cfg.id == n.id);
        // This node: alive, serving as its membership says; a peer: as last heard.
        let (alive, index) = match peer {
            _ if n.id == sync.me => (true, sync.view.me),
            Some(peer) => (peer.alive, peer.index),
            None => continue,
        };
        p.gauge(
            "tandem_node_alive",
            "1 while the node is heard from (this node: always).",
            &l,
            f64::from(u8::from(alive)),
        );
        p.gauge(
            "tandem_node_serving",
            "1 while the node serves new flows.",
            &l,
            f64::from(u8::from(sync.membership.serves(index))),
        );
        let Some(peer) = peer.filter(|_| n.id != sync.me) else {
            continue;
        };
        let st = &peer.stats;
        for (name, help, v) in [
            (
                "tandem_sync_datagrams_received_total",
                "Sync datagrams accepted from the node.",
                st.datagrams_in,
            ),
            (
                "tandem_sync_datagrams_sent_total",
                "Sync datagrams sent to the node (heartbeats included).",
                st.datagrams_out + c.heartbeats_sent(n.id),
            ),
            (
                "tandem_sync_records_received_total",
                "Flow records received from the node.",
                st.records_in,
            ),
            (
                "tandem_sync_records_sent_total",
                "Flow records sent to the node.",
                st.records_out,
            ),
            (
                "tandem_sync_records_unsent_total",
                "Flow records the kernel refused to send to the node while it was alive.",
                st.records_unsent,
            ),
        ] {
            p.counter(name, help, &l, v);
        }
        p.gauge(
            "tandem_sync_lag_seconds",
            "How far behind the node's acknowledgements are.",
            &l,
            sync.lag(peer, now).as_secs_f64(),
        );
    }
    refusals(sync, p);
}

/// Sync datagrams and records refused, by reason.
fn refusals(sync: &crate::cluster::Endpoint, p: &mut Families) {
    for (r, n) in crate::cluster::REFUSALS.iter().zip(sync.refused) {
        p.counter(
            "tandem_sync_refused_datagrams_total",
            "Sync datagrams refused, by reason (forged, replayed, malformed, ...).",
            &[("reason", r.name())],
            n,
        );
    }
    for (r, n) in crate::cluster::RecordRefusal::ALL
        .iter()
        .zip(sync.records_invalid)
    {
        p.counter(
            "tandem_sync_refused_records_total",
            "Records from authentic datagrams that were not applied, by reason.",
            &[("reason", r.name())],
            n,
        );
    }
}

#[cfg(test)]
mod tests;
