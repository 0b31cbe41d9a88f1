//! The established flow's fast path, as VPP's lb plugin keeps a per-flow adjacency: what
//! a packet of a known flow needs to leave (egress port, next hop, the backend's address
//! and port) is kept ready per backend path (`Ready`), checked against one number, and the
//! packet goes out with nothing else asked of the services, the links or the neighbors.
//!
//! It takes only what the full flow stage (`flows::serve`) would do nothing more for: a
//! flow this node serves (on its own, or in a cluster the flow's primary while serving), a
//! mode that does not encapsulate (no MTU or MSS work), a whole datagram, TCP without SYN, FIN or RST (no state change), a record bound,
//! established (or UDP) and not due for its announcement, its primary path usable and its
//! next hop known. Everything else, and a packet whose ready entry is stale, takes the full
//! stage, which does what it always did; the ready entry is made again on the next packet.
//! A ready entry is stale when the services snapshot, a link, the cluster membership or a
//! neighbor entry changed since it was made (`State::epoch` counts those changes).

use super::context::{Part, Segment};
use super::xmit::{self, Egress};
use super::{timing, PacketBuf, State, Verdict};
use crate::cluster::Membership;
use crate::counters::DropReason;
use crate::flow::table::Lookahead;
use crate::flow::{FlowRecord, FlowState, Timeouts};
use crate::neighbor::{NeighborKey, Neighbors};
use crate::services::{Backend, Service, Services};
use crate::wire::ethernet::Mac;
use crate::wire::l4::{self, FIN, PROTO_TCP, PROTO_UDP, RST, SYN};
use crate::wire::{checksum, ethernet, ipv4};
use tandem_config::OnBackendDown;

/// What a packet to one backend over one of its paths needs to leave, and when it was
/// made (`epoch` of `State`: a new snapshot moves it too).
#[derive(Clone, Copy, Default)]
pub(super) struct Ready {
    epoch: u32,
    pub(super) port: u8,
    pub(super) next_mac: Mac,
    /// The egress port's MAC (the frame's new source).
    pub(super) out_mac: Mac,
    /// An IPv4 backend's address, and the checksum change term from its service's VIP to
    /// it (`checksum::delta_bytes`): what an IPv4 nat rewrite computes per packet.
    addr4: [u8; 4],
    addr_delta: u32,
}

/// What the fast path did with a packet.
pub(super) enum Fast {
    /// Sent (or dropped, as the full stage would have: a TTL run out).
    Done(Verdict),
    /// The table has no record of the flow: a new one.
    Miss,
    /// The full stage serves it.
    Full,
}

/// The ready entries of a worker, one per (backend, path) of the snapshot (`series`).
#[derive(Default)]
pub(super) struct ReadyTable {
    entries: Vec<Ready>,
}

impl ReadyTable {
    /// Room for every path of `s` (on a new snapshot; not on the packet path).
    pub(super) fn fit(&mut self, s: &Services) {
        if self.entries.len() < s.series.len() {
            self.entries.resize(s.series.len(), Ready::default());
        }
    }

    /// The ready entry of backend `b`'s path `path`, made now when stale: None when the
    /// path is not usable or its next hop not known (the full stage decides then).
    #[inline(always)]
    pub(super) fn get(
        &mut self,
        s: &Services,
        link_up: &[bool],
        neighbors: &Neighbors,
        epoch: u32,
        (b, path): (&Backend, u8),
    ) -> Option<&Ready> {
        // A record may name a path its backend no longer has (a snapshot took it away):
        // the full stage falls back to the backup then; its index would be another's entry.
        let p = b.paths.get(usize::from(path))?;
        let at = usize::from(b.series) + usize::from(path);
        let r = self.entries.get_mut(at)?;
        if r.epoch == epoch {
            return Some(r);
        }
        // As `State::egress` picks when the primary path is usable, without a failover.
        if !(p.up && link_up.get(usize::from(p.port)).copied().unwrap_or(false)) {
            return None;
        }
        let next_mac = match p.mac {
            Some(m) => m,
            None => {
                let out = s.ports.get(usize::from(p.port))?;
                let hop = out.next_hop(&b.addr, b.v6)?;
                neighbors.get(&NeighborKey::new(p.port, b.v6, hop))?
            }
        };
        let out_mac = s.ports.get(usize::from(p.port))?.mac;
        let addr4 = [b.addr[0], b.addr[1], b.addr[2], b.addr[3]];
        let vip = s.services.get(usize::from(b.service))?.vip;
        *r = Ready {
            epoch,
            port: p.port,
            next_mac,
            out_mac,
            addr4,
            addr_delta: checksum::delta_bytes(&vip[..4], &addr4),
        };
        Some(r)
    }
}

impl State {
    /// A packet of service `svc` by the fast path, when it may take it (see the module's
    /// doc). `la` is the hash of its key when the burst's first look computed it.
    #[inline(always)]
    pub(super) fn fast(
        &mut self,
        s: &Services,
        svc: &Service,
        seg: &Segment,
        la: Option<Lookahead>,
        pkt: &mut PacketBuf,
    ) -> Fast {
        let key = seg.key;
        let flags = seg.l4.flags;
        if !self.fast_path
            || svc.mode.encapsulates()
            || seg.part != Part::Whole
            || (key.proto == PROTO_TCP && flags & (SYN | FIN | RST) != 0)
        {
            return Fast::Full;
        }
        let now = self.now;
        let timeouts = *self.table.timeouts();
        let Some(r) = self.table.get_mut_hashed(&key, la, now.ms) else {
            return Fast::Miss;
        };
        let Some(b) = settled(r, s, now.ms, &timeouts, &self.membership, key.proto) else {
            return Fast::Full;
        };
        let which = (b, r.primary_path);
        let Some(ready) = self
            .ready
            .get(s, &self.link_up, &self.neighbors, self.epoch, which)
        else {
            return Fast::Full;
        };
        // What the full stage's `touch` does to a packet that changes no state.
        r.last_seen_ms = now.ms;
        if svc.mode.translates() {
            timing::request(r, seg.l4, now.us, &mut self.hist, s.options.qos_timeout_us);
        }
        if svc.mode.translates() && !key.v6 && !svc.v6 {
            return Fast::Done(nat_v4(pkt, seg, ready, b.port));
        }
        let to = Egress {
            port: ready.port,
            out: &s.ports[usize::from(ready.port)],
            next_mac: ready.next_mac,
            addr: b.addr,
            v6: b.v6,
            dport: b.port,
        };
        Fast::Done(xmit::to_backend(svc.mode, pkt, seg, &to))
    }
}

/// The backend of a record the fast path may serve (see the module's doc), or None when
/// the full stage must: not yet established, unbound, due for its announcement, another
/// node's to serve, or a UDP flow whose backend is down and whose service moves such flows.
#[inline(always)]
pub(super) fn settled<'s>(
    r: &FlowRecord,
    s: &'s Services,
    now_ms: u32,
    timeouts: &Timeouts,
    membership: &Membership,
    proto: u8,
) -> Option<&'s Backend> {
    if !matches!(r.state, FlowState::Established | FlowState::Udp)
        || !r.bound()
        || now_ms.wrapping_sub(r.last_sync_ms) >= timeouts.sync_interval(r.state)
    {
        return None;
    }
    // In a cluster, only a flow this node is the serving primary of: the full stage sends
    // the others on to their node, or counts a failover.
    if let Some(cl) = &s.cluster {
        if r.primary_node != cl.me || !membership.serves(cl.me) {
            return None;
        }
    }
    let b = s.backends.get(usize::from(r.backend))?;
    if proto == PROTO_UDP && s.options.on_backend_down == OnBackendDown::Move && !b.up {
        return None;
    }
    Some(b)
}

/// `xmit::nat`'s request rewrite of an IPv4 packet, from a ready entry: the same words
/// written and the same checksum terms applied (so the same bytes), the address change term
/// computed once per backend path instead of per packet.
#[inline(always)]
fn nat_v4(pkt: &mut PacketBuf, seg: &Segment, ready: &Ready, dport: u16) -> Verdict {
    let l3 = seg.l3();
    let hl = seg.ip_len;
    let proto = seg.key.proto;
    let f = pkt.frame_mut();
    if l3 == ethernet::HEADER_LEN && hl == IPV4_PLAIN {
        let head: Option<&mut [u8; PLAIN_HEAD]> =
            f.get_mut(..PLAIN_HEAD).and_then(|h| h.try_into().ok());
        if let Some(head) = head {
            return plain_nat_v4(head, proto, ready, dport);
        }
    }
    let mut ip = ipv4::Packet::new_unchecked(&mut f[l3..]);
    if ip.ttl() <= 1 {
        return Verdict::Drop(DropReason::TtlExpired);
    }
    ip.rewrite_routed(false, ready.addr4, ready.addr_delta);
    let total = ip.total_len();
    l4::rewrite_with(
        proto,
        &mut f[l3 + hl..l3 + total],
        ready.addr_delta,
        2,
        dport,
    );
    xmit::set_l2(pkt, l3, &ready.next_mac, &ready.out_mac, false);
    Verdict::Tx(ready.port)
}

/// The bytes an untagged frame with a 20-byte IPv4 header and a TCP header (the longer of
/// the two) has before its L4 checksum ends: what `plain_nat_v4` reads and writes.
pub(super) const PLAIN_HEAD: usize = ethernet::HEADER_LEN + IPV4_PLAIN + 18;
/// An IPv4 header without options.
const IPV4_PLAIN: usize = 20;

/// `nat_v4` for the usual frame (no VLAN tag, no IP options), at fixed offsets: the same
/// words and change terms as `ipv4::Packet::rewrite_routed` and `l4::rewrite_with`.
#[inline(always)]
pub(super) fn plain_nat_v4(
    f: &mut [u8; PLAIN_HEAD],
    proto: u8,
    ready: &Ready,
    dport: u16,
) -> Verdict {
    let to = Plain4 {
        side: Side::Dst,
        addr: ready.addr4,
        addr_delta: ready.addr_delta,
        port: dport,
    };
    plain_rewrite_v4(f, proto, &to, (&ready.next_mac, &ready.out_mac), ready.port)
}

/// Which end of a packet a nat rewrite changes: the destination of a request (to the
/// backend), the source of a reply (as from the VIP).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Src,
    Dst,
}

/// A plain frame's nat rewrite: the new address and port at one end, and the checksum
/// change term from the old address to the new.
pub(super) struct Plain4 {
    pub(super) side: Side,
    pub(super) addr: [u8; 4],
    pub(super) addr_delta: u32,
    pub(super) port: u16,
}

/// `xmit::nat`'s IPv4 rewrite of a plain frame at fixed offsets (the same words and change
/// terms as `ipv4::Packet::rewrite_routed` and `l4::rewrite_with`), then the Ethernet
/// header `(to, from)`, out of `port`.
#[inline(always)]
pub(super) fn plain_rewrite_v4(
    f: &mut [u8; PLAIN_HEAD],
    proto: u8,
    to: &Plain4,
    (dst_mac, src_mac): (&Mac, &Mac),
    port: u8,
) -> Verdict {
    const TTL: usize = 22;
    const IP_SUM: usize = 24;
    let (addr_at, port_at) = match to.side {
        Side::Src => (26, 34),
        Side::Dst => (30, 36),
    };
    let word = |f: &[u8], at: usize| u16::from_be_bytes([f[at], f[at + 1]]);
    if f[TTL] <= 1 {
        return Verdict::Drop(DropReason::TtlExpired);
    }
    let ttl = word(f, TTL);
    f[TTL] -= 1;
    f[addr_at..addr_at + 4].copy_from_slice(&to.addr);
    let ip_delta = to.addr_delta + checksum::delta16(ttl, ttl.wrapping_sub(0x100));
    let c = checksum::apply(word(f, IP_SUM), ip_delta);
    f[IP_SUM..IP_SUM + 2].copy_from_slice(&c.to_be_bytes());
    let l4_sum = ethernet::HEADER_LEN + IPV4_PLAIN + l4::checksum_offset(proto);
    let (old_sum, old_port) = (word(f, l4_sum), word(f, port_at));
    f[port_at..port_at + 2].copy_from_slice(&to.port.to_be_bytes());
    if !(proto == PROTO_UDP && old_sum == 0) {
        let mut c = checksum::apply(
            old_sum,
            to.addr_delta + checksum::delta16(old_port, to.port),
        );
        if proto == PROTO_UDP && c == 0 {
            c = 0xffff;
        }
        f[l4_sum..l4_sum + 2].copy_from_slice(&c.to_be_bytes());
    }
    ethernet::write_header(f, dst_mac, src_mac, ethernet::ETHERTYPE_IPV4);
    Verdict::Tx(port)
}

#[cfg(test)]
mod tests {
    //! The fast path against the full stage: the same frames and the same changes (links,
    //! neighbors, snapshots) through a core with it and one without must give the same
    //! verdicts, bytes, counters and records, whatever the order.
    use super::super::Core;
    use crate::flow::FlowKey;
    use crate::messages::ToWorker;
    use crate::neighbor::{Entry, NeighborKey};
    use crate::testkit;
    use crate::wire::l4::{ACK, FIN, RST, SYN};
    use proptest::prelude::*;
    use std::net::IpAddr;

    const FRONT: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const BACK: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const BACK2: [u8; 6] = [2, 0, 0, 0, 0, 3];
    const CLIENT: [u8; 6] = [2, 0, 0, 0, 0xc, 1];

    /// nat TCP over a fixed-MAC path and a resolved one, nat UDP over a resolved path, dsr;
    /// `{mac}` is the fixed path's MAC (two snapshots differ by it).
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
[[port]]
name = "back2"
devargs = "net_null2"
ipv4 = "10.2.0.1/24"
gateway = "10.2.0.254"
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
paths = [{ port = "back", mac = "{mac}" }, { port = "back2" }]
[[service]]
name = "dns"
vip = "192.0.2.10"
port = 53
protocol = "udp"
mode = "nat"
[[service.backend]]
name = "u"
address = "10.1.0.13"
port = 5353
paths = [{ port = "back" }]
[[service]]
name = "direct"
vip = "192.0.2.20"
port = 80
protocol = "tcp"
mode = "dsr"
[[service.backend]]
name = "d"
address = "10.1.0.12"
paths = [{ port = "back", mac = "02:00:00:00:01:12" }]
"#;

    /// Three nodes, this one node 1 (its front port 10.0.0.1, the others beside it).
    const CLUSTER: &str = r#"
[cluster]
secret_file = "/dev/null"
[[cluster.node]]
id = 1
address = "10.0.0.1"
mac = "02:00:00:00:00:01"
sync = "127.0.0.1:7001"
[[cluster.node]]
id = 2
address = "10.0.0.2"
mac = "02:00:00:00:00:02"
sync = "127.0.0.1:7002"
[[cluster.node]]
id = 3
address = "10.0.0.3"
mac = "02:00:00:00:00:03"
sync = "127.0.0.1:7003"
"#;

    thread_local! {
        /// Whether the snapshots of this test are a cluster's.
        static CLUSTERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    fn snapshot(mac: &str) -> std::sync::Arc<crate::services::Services> {
        snapshot_of(&CONFIG.replace("{mac}", mac))
    }

    fn snapshot_of(toml: &str) -> std::sync::Arc<crate::services::Services> {
        if !CLUSTERED.get() {
            return testkit::services_of(toml, &[FRONT, BACK, BACK2]);
        }
        let cfg = tandem_config::Config::from_toml(&format!("{toml}{CLUSTER}")).unwrap();
        let s = crate::services::Services::from_config(&cfg, &[FRONT, BACK, BACK2]);
        let view = crate::cluster::ClusterView::new(cfg.cluster.as_ref().unwrap(), 1, &s.ports);
        std::sync::Arc::new(s.with_cluster(view))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// What happens next: a frame (kind, client) or a change.
    #[derive(Debug, Clone, Copy)]
    enum Step {
        Frame(u8, u8),
        Link(u8, bool),
        Neighbor(u8, u8),
        Forget(u8),
        Snapshot(u8),
        Nodes(u8),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            8 => (0u8..9, 0u8..6).prop_map(|(k, c)| Step::Frame(k, c)),
            1 => (1u8..3, any::<bool>()).prop_map(|(p, u)| Step::Link(p, u)),
            1 => (0u8..3, 0u8..3).prop_map(|(n, m)| Step::Neighbor(n, m)),
            1 => (0u8..3).prop_map(Step::Forget),
            1 => (0u8..3).prop_map(Step::Snapshot),
            1 => (1u8..8).prop_map(Step::Nodes),
        ]
    }

    /// The neighbors the config's resolved paths need: backend u on back, backend a on
    /// back, back2's gateway.
    fn neighbor(n: u8) -> NeighborKey {
        match n {
            0 => NeighborKey::v4(1, [10, 1, 0, 13]),
            1 => NeighborKey::v4(1, [10, 1, 0, 11]),
            _ => NeighborKey::v4(2, [10, 2, 0, 254]),
        }
    }

    /// Frame `kind` of client `c`: to the nat TCP service (SYN, data, bare ACK, FIN, RST),
    /// to the UDP one, to dsr, or backend a's answer.
    fn frame(kind: u8, c: u8) -> (u8, Vec<u8>) {
        let client = ip("198.51.100.7");
        let sport = 40_000 + u16::from(c);
        let tcp = |vip: &str, flags, data: &[u8]| {
            testkit::tcp(FRONT, CLIENT, client, sport, ip(vip), 80, flags, data)
        };
        match kind {
            0 => (0, tcp("192.0.2.10", SYN, b"")),
            1 => (0, tcp("192.0.2.10", ACK | 0x08, b"request")),
            2 => (0, tcp("192.0.2.10", ACK, b"")),
            3 => (
                0,
                tcp("192.0.2.10", [FIN | ACK, RST][usize::from(c % 2)], b""),
            ),
            // Short and long datagrams (the rewrite at fixed offsets wants 52 bytes).
            4 => {
                let q = vec![b'q'; 1 + usize::from(c) * 5];
                (
                    0,
                    testkit::udp(FRONT, CLIENT, client, sport, ip("192.0.2.10"), 53, &q),
                )
            }
            // No UDP checksum (IPv4 allows it): it stays zero.
            8 => {
                let mut f =
                    testkit::udp(FRONT, CLIENT, client, sport, ip("192.0.2.10"), 53, &[7; 20]);
                f[40] = 0;
                f[41] = 0;
                (0, f)
            }
            5 => (0, tcp("192.0.2.20", [SYN, ACK][usize::from(c % 2)], b"x")),
            6 => (
                1,
                testkit::tcp(
                    BACK,
                    [2, 0, 0, 0, 1, 0x11],
                    ip("10.1.0.11"),
                    8080,
                    client,
                    sport,
                    [SYN | ACK, ACK][usize::from(c % 2)],
                    b"answer",
                ),
            ),
            _ => {
                // An expired TTL: dropped by either path.
                let mut f = tcp("192.0.2.10", ACK, b"");
                f[22] = 1;
                (0, f)
            }
        }
    }

    fn change(step: Step) -> Option<ToWorker> {
        Some(match step {
            Step::Frame(..) => return None,
            Step::Link(port, up) => ToWorker::Link { port, up },
            Step::Neighbor(n, m) => ToWorker::Neighbor {
                key: neighbor(n),
                entry: Entry::Learned([2, 0, 0, 0, 9, m]),
            },
            Step::Forget(n) => ToWorker::ForgetNeighbor(neighbor(n)),
            Step::Snapshot(0) => ToWorker::Services(snapshot("02:00:00:00:01:11")),
            Step::Snapshot(1) => ToWorker::Services(snapshot("02:00:00:00:01:99")),
            // Backend a loses its second path: records still name it.
            Step::Snapshot(_) => ToWorker::Services(snapshot_of(&CONFIG.replace(
                r#"{ port = "back", mac = "{mac}" }, { port = "back2" }"#,
                r#"{ port = "back", mac = "02:00:00:00:01:11" }"#,
            ))),
            // Which of the three nodes serve (node 1, this one, among them or not).
            Step::Nodes(mask) => ToWorker::Nodes(crate::cluster::Membership {
                serving: u64::from(mask),
                eligible: u64::from(mask),
            }),
        })
    }

    fn counters(c: &Core) -> Vec<u64> {
        let mut v = Vec::new();
        c.state.counters.each(|_, n| v.push(n));
        v
    }

    /// Runs `steps` through a core with the fast path and one without; `clustered`: as
    /// node 1 of three.
    fn both_ways(steps: &[Step], clustered: bool) -> Result<(), TestCaseError> {
        CLUSTERED.set(clustered);
        let s = snapshot("02:00:00:00:01:11");
        let mut fast = testkit::core_of(std::sync::Arc::clone(&s), 1024, 7);
        let mut full = testkit::core_of(s, 1024, 7).full_stage_only();
        if clustered {
            // All three nodes serving, until a step says otherwise.
            for c in [&mut fast, &mut full] {
                c.apply(change(Step::Nodes(0b111)).unwrap());
            }
        }
        for (i, st) in steps.iter().enumerate() {
            // A millisecond a step: announcements fall due now and then.
            let now = 10 + i as u32 * 400;
            if let (Some(a), Some(b)) = (change(*st), change(*st)) {
                fast.apply(a);
                full.apply(b);
                continue;
            }
            let Step::Frame(k, c) = *st else { continue };
            let (port, f) = frame(k, c);
            let a = testkit::run(&mut fast, port, &f, now);
            let b = testkit::run(&mut full, port, &f, now);
            prop_assert_eq!(a, b, "step {} ({:?})", i, st);
        }
        prop_assert_eq!(counters(&fast), counters(&full));
        prop_assert_eq!(fast.state.table.len(), full.state.table.len());
        for c in 0..6u16 {
            for (vip, port, proto) in [
                ([192, 0, 2, 10], 80, 6),
                ([192, 0, 2, 10], 53, 17),
                ([192, 0, 2, 20], 80, 6),
            ] {
                let k = FlowKey::v4([198, 51, 100, 7], vip, 40_000 + c, port, proto);
                prop_assert_eq!(fast.state.table.peek(&k), full.state.table.peek(&k));
            }
        }
        prop_assert_eq!(fast.state.outbox.len(), full.state.outbox.len());
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn the_fast_path_does_what_the_full_stage_does(
            steps in proptest::collection::vec(step(), 1..160),
        ) {
            both_ways(&steps, false)?;
        }

        #[test]
        fn in_a_cluster_too(steps in proptest::collection::vec(step(), 1..160)) {
            both_ways(&steps, true)?;
        }
    }
}
