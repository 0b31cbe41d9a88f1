//! The node's ports as the packet core sees them: MAC, addresses and prefixes, gateways;
//! which addresses are on a port's link and which next hop reaches the others.

use crate::wire::ethernet::Mac;
use crate::wire::scope;
use tandem_config::PortConfig;

/// A port as the packet core sees it.
#[derive(Debug, Clone)]
pub struct PortInfo {
    pub name: String,
    pub mac: Mac,
    pub ipv4: Option<([u8; 4], u8)>,
    pub ipv6: Option<([u8; 16], u8)>,
    pub gateway: Option<[u8; 4]>,
    pub gateway6: Option<[u8; 16]>,
    /// The largest IP packet the port sends (`[[port]] mtu`).
    pub mtu: u16,
    /// The port has a kernel twin (`[[port]] kernel`): the node's own traffic that tandem
    /// does not consume goes to it (`pipeline::kernel`).
    pub kernel: bool,
    /// Most neighbors the node keeps on this port (`[[port]] max_neighbors`).
    pub max_neighbors: u32,
}

impl PortInfo {
    pub fn from_config(p: &PortConfig, mac: Mac) -> Self {
        PortInfo {
            name: p.name.clone(),
            mac,
            ipv4: p.ipv4.map(|(a, l)| (a.octets(), l)),
            ipv6: p.ipv6.map(|(a, l)| (a.octets(), l)),
            gateway: p.gateway.map(|g| g.octets()),
            gateway6: p.gateway6.map(|g| g.octets()),
            mtu: p.mtu,
            kernel: p.kernel.is_some(),
            max_neighbors: p.max_neighbors,
        }
    }

    /// True when `addr` (4 or 16 bytes) is on this port's subnet of its family.
    pub fn on_link(&self, addr: &[u8]) -> bool {
        match addr.len() {
            4 => self.ipv4.is_some_and(|(a, l)| {
                let m = mask_v4(l);
                let x = u32::from_be_bytes([addr[0], addr[1], addr[2], addr[3]]);
                x & m == u32::from_be_bytes(a) & m
            }),
            16 => self.ipv6.is_some_and(|(a, l)| {
                let m = if l == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(l))
                };
                let mut b = [0u8; 16];
                b.copy_from_slice(addr);
                u128::from_be_bytes(b) & m == u128::from_be_bytes(a) & m
            }),
            _ => false,
        }
    }

    /// True when `addr` is on this port's link: on its subnet, or (IPv6) link-local, which
    /// every link has.
    pub fn on_the_link(&self, addr: &[u8; 16], v6: bool) -> bool {
        if v6 {
            self.on_link(addr) || scope::v6_link_local(addr)
        } else {
            self.on_link(&addr[..4])
        }
    }

    /// True when `addr` is the port's own address of that family.
    pub fn has_address(&self, addr: &[u8; 16], v6: bool) -> bool {
        if v6 {
            self.ipv6.is_some_and(|(a, _)| a == *addr)
        } else {
            self.ipv4.is_some_and(|(a, _)| a[..] == addr[..4])
        }
    }

    /// True when `a` is the broadcast address of this port's IPv4 subnet (a /31 or /32
    /// has none).
    pub fn is_subnet_broadcast(&self, a: [u8; 4]) -> bool {
        self.ipv4.is_some_and(|(ip, len)| {
            let host = !mask_v4(len);
            len < 31 && u32::from_be_bytes(a) == u32::from_be_bytes(ip) | host
        })
    }

    /// The next hop for `addr` out of this port: the address itself on the subnet, else
    /// the port's gateway (None when there is neither).
    pub fn next_hop(&self, addr: &[u8; 16], v6: bool) -> Option<[u8; 16]> {
        let a = if v6 { &addr[..] } else { &addr[..4] };
        if self.on_link(a) {
            return Some(*addr);
        }
        if v6 {
            self.gateway6
        } else {
            self.gateway.map(|g| {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&g);
                b
            })
        }
    }
}

/// The network mask of an IPv4 prefix length (0 for /0).
fn mask_v4(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}
