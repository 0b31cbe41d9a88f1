//! The exception path: what a port with a kernel twin (`[[port]] kernel`) hands the kernel.
//! Frames to the node's own addresses that tandem does not consume (BGP, BFD, SSH, the
//! kernel's ping replies), to the port's IPv6 link-local and to multicast, and ARP and
//! neighbor discovery, which tandem answers and learns from itself and also gives the
//! kernel (as received), so that its own stack resolves and answers as on any interface.
//!
//! Bounded: at most `KERNEL_PER_MS` frames a millisecond per worker go to the kernel (a
//! write to a TAP is a system call; a flood to the node's address must not take the
//! worker's time from the flows), the rest are dropped (`kernel_limit`). Of these,
//! `ROUTING_PER_MS` are a share only the node's routing protocols use, so that no flood
//! gets a healthy node withdrawn: ARP and neighbor discovery for the port, BGP (TCP port
//! 179) with a peer on the port's link, single-hop BFD (UDP 3784/3785 with TTL 255, RFC
//! 5881) from the link. Routing frames past their share take from the rest; past both they
//! are dropped as `kernel_limit_routing`. (A multihop BGP or BFD session's frames are not
//! told apart: they share the rest with any other traffic to the node.) The copies of
//! answered ARP and ND wait in a small preallocated ring for the port layer
//! (`Core::take_kernel_copies`); when it is full a copy is left out (`kernel_copies_lost`),
//! the frame itself still answered.

use super::bucket::Bucket;
use super::context::{Rx, Via};
use super::{Core, State, Verdict};
use crate::counters::{Absorbed, DropReason};
use crate::ports::PortInfo;
use crate::services::Services;
use crate::wire::l4::{self, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};
use crate::wire::{icmp, ipv4, ipv6, scope};

/// Frames a worker hands its ports' kernel twins per millisecond, at most (100 000 a
/// second: BGP, BFD and an SSH session need a small part of it).
pub const KERNEL_PER_MS: u32 = 100;
/// Of those, the share reserved for the routing protocols (20 000 a second: BFD at 100 ms
/// sends 10 a second per session, a BGP session's updates a few thousand).
pub const ROUTING_PER_MS: u32 = 20;
/// Copies of answered ARP and ND frames waiting for the port layer.
const COPIES: usize = 8;
/// Longest copy kept (an ARP frame is 60 bytes, a neighbor solicitation 86 with options).
const COPY_MAX: usize = 256;

/// The copies of answered ARP and ND frames not yet handed to the kernel.
pub(super) struct Copies {
    frames: Box<[[u8; COPY_MAX]; COPIES]>,
    lens: [u16; COPIES],
    ports: [u8; COPIES],
    n: usize,
}

impl Default for Copies {
    fn default() -> Self {
        Copies {
            frames: Box::new([[0; COPY_MAX]; COPIES]),
            lens: [0; COPIES],
            ports: [0; COPIES],
            n: 0,
        }
    }
}

/// The per-millisecond budget of frames to the kernel but the routing share, none saved
/// up.
pub(super) fn budget() -> Bucket {
    let rest = KERNEL_PER_MS - ROUTING_PER_MS;
    Bucket::new(rest, rest)
}

/// The routing protocols' own share (`ROUTING_PER_MS`).
pub(super) fn routing_budget() -> Bucket {
    Bucket::new(ROUTING_PER_MS, ROUTING_PER_MS)
}

const BGP_PORT: u16 = 179;
const BFD_CONTROL_PORT: u16 = 3784;
const BFD_ECHO_PORT: u16 = 3785;

/// True when `ip` (an IP packet for the twin of `port`) is one of the node's routing
/// protocols' (see the module's doc): its header is read again here, off the flows' path.
fn is_routing(port: &PortInfo, ip: &[u8], v6: bool) -> bool {
    let (src, ttl, proto, l4) = if v6 {
        let Ok(p) = ipv6::Packet::new_checked(ip) else {
            return false;
        };
        let end = (ipv6::HEADER_LEN + p.payload_len()).min(ip.len());
        let l4 = ip.get(ipv6::HEADER_LEN..end).unwrap_or(&[]);
        (p.src_bytes(), p.hop_limit(), p.next_header(), l4)
    } else {
        let Ok(p) = ipv4::Packet::new_checked(ip) else {
            return false;
        };
        if p.is_fragment() {
            return false;
        }
        let mut src = [0u8; 16];
        src[..4].copy_from_slice(&p.src_bytes());
        let end = p.total_len().min(ip.len());
        let l4 = ip.get(p.header_len()..end).unwrap_or(&[]);
        (src, p.ttl(), p.protocol(), l4)
    };
    if !port.on_the_link(&src, v6) {
        return false;
    }
    match proto {
        PROTO_ICMPV6 => l4
            .first()
            .is_some_and(|t| (icmp::V6_ROUTER_SOLICIT..=icmp::V6_REDIRECT).contains(t)),
        PROTO_TCP | PROTO_UDP => {
            let Ok(p) = l4::parse(proto, l4) else {
                return false;
            };
            if proto == PROTO_TCP {
                p.src == BGP_PORT || p.dst == BGP_PORT
            } else {
                ttl == 255 && (p.dst == BFD_CONTROL_PORT || p.dst == BFD_ECHO_PORT)
            }
        }
        _ => false,
    }
}

/// True when `dst` is one the kernel twin of `port` owns or listens to: the port's own
/// address, IPv6 link-local, multicast or (IPv4) broadcast.
pub(super) fn for_the_kernel(port: &PortInfo, dst: &[u8; 16], v6: bool) -> bool {
    if !port.kernel {
        return false;
    }
    if port.has_address(dst, v6) {
        return true;
    }
    if v6 {
        scope::v6_link_local(dst) || scope::v6_multicast(dst)
    } else {
        dst[0] & 0xf0 == 0xe0 || dst[..4] == [255; 4]
    }
}

impl State {
    /// A frame from the wire that no stage claimed, to `dst`: the kernel's when the port
    /// has a twin that owns the address, else dropped as not for this node. `frame` is the
    /// whole frame (its IP header at `rx.l3()`).
    #[inline(never)]
    pub(super) fn unclaimed(
        &mut self,
        s: &Services,
        rx: &Rx,
        frame: &[u8],
        dst: &[u8; 16],
        v6: bool,
    ) -> Verdict {
        match s.ports.get(usize::from(rx.in_port)) {
            Some(p) if rx.via == Via::Direct && for_the_kernel(p, dst, v6) => {
                let ip = frame.get(rx.l3()..).unwrap_or(&[]);
                self.for_kernel(is_routing(p, ip, v6))
            }
            _ => Verdict::Drop(DropReason::NotForUs),
        }
    }

    /// The frame goes to its port's kernel twin, within the budget: a routing protocol's
    /// (`routing`) first from its own share.
    pub(super) fn for_kernel(&mut self, routing: bool) -> Verdict {
        let now = self.now.ms;
        if (routing && self.routing_budget.take(now)) || self.kernel_budget.take(now) {
            Verdict::Consumed(Absorbed::Kernel)
        } else if routing {
            Verdict::Drop(DropReason::KernelLimitRouting)
        } else {
            Verdict::Drop(DropReason::KernelLimit)
        }
    }

    /// Keeps a copy of `frame` (as received on `port`, before tandem answers it in place)
    /// for the port's kernel twin; a no-op for a port without one.
    pub(super) fn copy_to_kernel(&mut self, s: &Services, port: u8, frame: &[u8]) {
        if !s.ports.get(usize::from(port)).is_some_and(|p| p.kernel) {
            return;
        }
        let c = &mut self.kernel_copies;
        if c.n == COPIES || frame.len() > COPY_MAX {
            self.counters.kernel_copies_lost.inc();
            return;
        }
        c.frames[c.n][..frame.len()].copy_from_slice(frame);
        c.lens[c.n] = frame.len() as u16;
        c.ports[c.n] = port;
        c.n += 1;
    }
}

impl Core {
    /// True when copies for the kernel twins wait (see the module's doc).
    #[inline]
    pub fn has_kernel_copies(&self) -> bool {
        self.state.kernel_copies.n > 0
    }

    /// Hands each waiting copy (its port and bytes) to `f`, in order, and forgets them.
    pub fn take_kernel_copies(&mut self, mut f: impl FnMut(u8, &[u8])) {
        let c = &mut self.state.kernel_copies;
        for i in 0..c.n {
            f(c.ports[i], &c.frames[i][..usize::from(c.lens[i])]);
        }
        c.n = 0;
    }
}

#[cfg(test)]
mod tests {
    //! The exception path against the shared test config, its front port given a twin:
    //! what goes to the kernel, what tandem still answers itself (and copies), the budget,
    //! and that a port without a twin drops the same frames as before.
    use super::super::tests::{core, CONFIG};
    use super::*;
    use crate::testkit;
    use crate::wire::l4::{ACK, SYN};
    use std::net::IpAddr;

    const FRONT: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const ROUTER: [u8; 6] = [2, 0, 0, 0, 0xfe, 0xfe];

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// The test config's core, its front port with the kernel twin "tdm-front".
    fn twinned() -> Core {
        let text = CONFIG.replacen(
            "name = \"front\"\n",
            "name = \"front\"\nkernel = \"tdm-front\"\n",
            1,
        );
        let s = testkit::services_of(&text, &[FRONT, [2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 3]]);
        assert!(s.ports[0].kernel && !s.ports[1].kernel);
        testkit::core_of(s, 1024, 7)
    }

    fn bgp_from_router(dst: &str) -> Vec<u8> {
        let src = if dst.contains(':') {
            "fd00::fe"
        } else {
            "10.0.0.254"
        };
        testkit::tcp(FRONT, ROUTER, ip(src), 40179, ip(dst), 179, SYN, b"")
    }

    const KERNEL: Verdict = Verdict::Consumed(Absorbed::Kernel);

    #[test]
    fn the_nodes_own_traffic_goes_to_the_twin_and_nowhere_without_one() {
        let (mut with, mut without) = (twinned(), core());
        for dst in ["10.0.0.1", "fd00::1", "fe80::1"] {
            let f = bgp_from_router(dst);
            assert_eq!(testkit::run(&mut with, 0, &f, 1).0, KERNEL, "{dst}");
            assert_eq!(
                testkit::run(&mut without, 0, &f, 1).0,
                Verdict::Drop(DropReason::NotForUs),
                "{dst}"
            );
        }
        // Someone else's address on the link is not the kernel's either.
        let f = bgp_from_router("10.0.0.77");
        assert_eq!(
            testkit::run(&mut with, 0, &f, 1).0,
            Verdict::Drop(DropReason::NotForUs)
        );
        // A port without a twin (back) drops its own address's traffic as before.
        let f = testkit::tcp(
            [2, 0, 0, 0, 0, 2],
            ROUTER,
            ip("10.1.0.99"),
            1,
            ip("10.1.0.1"),
            22,
            SYN,
            b"",
        );
        assert_eq!(
            testkit::run(&mut with, 1, &f, 1).0,
            Verdict::Drop(DropReason::NotForUs)
        );
        // Services are served, echo requests answered, as without a twin.
        let syn = testkit::tcp(
            FRONT,
            ROUTER,
            ip("198.51.100.7"),
            40000,
            ip("192.0.2.10"),
            80,
            SYN,
            b"",
        );
        let v = testkit::run(&mut with, 0, &syn, 1).0;
        assert!(matches!(v, Verdict::Tx(1 | 2)), "{v:?}");
        let ping = testkit::icmp_echo(FRONT, ROUTER, ip("10.0.0.254"), ip("10.0.0.1"), 1, 1);
        assert_eq!(testkit::run(&mut with, 0, &ping, 1).0, Verdict::Tx(0));
        // ... and a reply to the kernel's own ping is the kernel's.
        let mut pong = ping.clone();
        pong[14 + 20] = 0; // echo reply
        assert_eq!(testkit::run(&mut with, 0, &pong, 1).0, KERNEL);
        let k = &with.state.counters;
        assert_eq!(k.absorbed[Absorbed::Kernel as usize].get(), 4);
    }

    #[test]
    fn arp_and_nd_for_the_port_are_answered_and_copied_to_the_kernel() {
        let mut c = twinned();
        let req = testkit::arp_request(
            ROUTER,
            "10.0.0.254".parse().unwrap(),
            "10.0.0.1".parse().unwrap(),
        );
        let (v, reply) = testkit::run(&mut c, 0, &req, 1);
        assert_eq!(v, Verdict::Tx(0));
        assert_ne!(reply, req);
        let ns = testkit::neighbor_solicit(
            ROUTER,
            "fd00::fe".parse().unwrap(),
            "fd00::1".parse().unwrap(),
        );
        assert_eq!(testkit::run(&mut c, 0, &ns, 1).0, Verdict::Tx(0));
        // A VIP's ARP is tandem's alone.
        let vip = testkit::arp_request(
            ROUTER,
            "10.0.0.254".parse().unwrap(),
            "192.0.2.10".parse().unwrap(),
        );
        assert_eq!(testkit::run(&mut c, 0, &vip, 1).0, Verdict::Tx(0));
        let mut copies = Vec::new();
        assert!(c.has_kernel_copies());
        c.take_kernel_copies(|port, f| copies.push((port, f.to_vec())));
        assert_eq!(copies, vec![(0, req.clone()), (0, ns)]);
        assert!(!c.has_kernel_copies());
        // The router's answer to the kernel's own request: learned, and the kernel's.
        let mut answer = req.clone();
        answer[..6].copy_from_slice(&FRONT);
        answer[14 + 7] = 2; // ARP reply
        assert_eq!(testkit::run(&mut c, 0, &answer, 1).0, KERNEL);
    }

    #[test]
    fn a_flood_to_the_node_is_bounded_per_millisecond() {
        let mut c = twinned();
        let f = testkit::tcp(
            FRONT,
            ROUTER,
            ip("203.0.113.9"),
            5,
            ip("10.0.0.1"),
            22,
            ACK,
            b"x",
        );
        for _ in 0..KERNEL_PER_MS - ROUTING_PER_MS {
            assert_eq!(testkit::run(&mut c, 0, &f, 3).0, KERNEL);
        }
        assert_eq!(
            testkit::run(&mut c, 0, &f, 3).0,
            Verdict::Drop(DropReason::KernelLimit)
        );
        assert_eq!(testkit::run(&mut c, 0, &f, 4).0, KERNEL);
        // Copies past the ring's room are counted, not kept.
        let req = testkit::arp_request(
            ROUTER,
            "10.0.0.254".parse().unwrap(),
            "10.0.0.1".parse().unwrap(),
        );
        for _ in 0..COPIES + 3 {
            testkit::run(&mut c, 0, &req, 5);
        }
        assert_eq!(c.state.counters.kernel_copies_lost.get(), 3);
    }

    /// A BFD control packet from `src` (single hop: TTL 255 unless said).
    fn bfd(src: &str, dst: &str, ttl: u8) -> Vec<u8> {
        let mut f = testkit::udp(FRONT, ROUTER, ip(src), 49152, ip(dst), 3784, &[0x20; 24]);
        if dst.contains(':') {
            f[14 + 7] = ttl;
        } else {
            f[14 + 8] = ttl;
            crate::wire::ipv4::fill_checksum(&mut f[14..]);
        }
        f
    }

    /// The second hostile campaign: a flood to the node's own address past the budget
    /// crowded out BGP and BFD. Their frames now have a share of their own.
    #[test]
    fn a_flood_leaves_bgp_and_bfd_their_share() {
        let mut c = twinned();
        let flood = testkit::udp(FRONT, ROUTER, ip("203.0.113.9"), 5, ip("10.0.0.1"), 9, b"x");
        let routing = [
            bgp_from_router("10.0.0.1"),
            bgp_from_router("fd00::1"),
            bfd("10.0.0.254", "10.0.0.1", 255),
            bfd("fe80::fe", "fe80::1", 255),
        ];
        let (mut ours, mut flood_in) = (0, 0);
        for ms in 10..110 {
            for i in 0..10 * KERNEL_PER_MS {
                flood_in += u32::from(testkit::run(&mut c, 0, &flood, ms).0 == KERNEL);
                if i % 100 == 0 {
                    let f = &routing[(i / 100) as usize % routing.len()];
                    assert_eq!(testkit::run(&mut c, 0, f, ms).0, KERNEL, "ms {ms}");
                    ours += 1;
                }
            }
        }
        assert_eq!(ours, 1000);
        assert_eq!(flood_in, 100 * (KERNEL_PER_MS - ROUTING_PER_MS));
        // Not the routing share: BFD routed here (TTL below 255), BGP from off the link.
        let routed_bfd = bfd("10.0.0.254", "10.0.0.1", 254);
        let far_bgp = testkit::tcp(
            FRONT,
            ROUTER,
            ip("203.0.113.9"),
            40179,
            ip("10.0.0.1"),
            179,
            SYN,
            b"",
        );
        for f in [routed_bfd, far_bgp] {
            for _ in 0..KERNEL_PER_MS {
                testkit::run(&mut c, 0, &flood, 200);
            }
            assert_eq!(
                testkit::run(&mut c, 0, &f, 200).0,
                Verdict::Drop(DropReason::KernelLimit)
            );
        }
    }
}
