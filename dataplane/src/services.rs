//! The services snapshot: everything a worker needs to place a new flow (VIPs, backends,
//! their paths and selection tables, the node's own ports). The control thread builds a new
//! snapshot on every change (drain, weight, reload) and hands it to each worker, which swaps
//! it in between bursts and hands the old one back to be freed off the packet path.

use crate::cluster::ClusterView;
use crate::flow::key::{addr_bytes, fmix};
use crate::select::maglev::{Candidate, Maglev};
use crate::wire::ethernet::Mac;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;
use tandem_config::{BackendState, Config, Mode, PortConfig, ServiceConfig};

/// A port as the packet core sees it.
#[derive(Debug, Clone)]
pub struct PortInfo {
    pub name: String,
    pub mac: Mac,
    pub ipv4: Option<([u8; 4], u8)>,
    pub ipv6: Option<([u8; 16], u8)>,
    pub gateway: Option<[u8; 4]>,
    pub gateway6: Option<[u8; 16]>,
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
        }
    }

    /// True when `addr` (4 or 16 bytes) is on this port's subnet of its family.
    pub fn on_link(&self, addr: &[u8]) -> bool {
        match addr.len() {
            4 => self.ipv4.is_some_and(|(a, l)| {
                let m = if l == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(l))
                };
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Path {
    pub port: u8,
    /// A fixed next-hop MAC; `None` means resolve the backend (or gateway) by ARP/ND.
    pub mac: Option<Mac>,
}

#[derive(Debug, Clone)]
pub struct Backend {
    pub id: u16,
    pub service: u16,
    pub name: String,
    pub addr: [u8; 16],
    pub v6: bool,
    pub port: u16,
    pub weight: u32,
    pub state: BackendState,
    pub paths: Vec<Path>,
}

#[derive(Debug, Clone)]
pub struct Service {
    pub id: u16,
    pub name: String,
    pub vip: [u8; 16],
    pub v6: bool,
    pub port: u16,
    pub proto: u8,
    pub mode: Mode,
    /// Global ids of this service's backends.
    pub backends: Vec<u16>,
    pub maglev: Maglev,
}

#[derive(Default)]
struct FastHasher(u64);

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        fmix(self.0)
    }
    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            self.0 = (self.0 ^ u64::from_le_bytes(w))
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                .rotate_left(29);
        }
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ServiceKey {
    vip: [u8; 16],
    port: u16,
    proto: u8,
}

/// Seed of the hash that selects backends and paths: fixed, so every worker (and every
/// node) places the same flow the same way.
pub const SELECTION_SEED: u64 = 0x7461_6e64_656d_0001;

pub struct Services {
    pub generation: u64,
    pub ports: Vec<PortInfo>,
    pub services: Vec<Service>,
    /// Indexed by global backend id.
    pub backends: Vec<Backend>,
    by_key: FastMap<ServiceKey, u16>,
    vips: FastMap<[u8; 16], ()>,
    /// (address, port, protocol) of every nat backend: where nat replies come from.
    nat_sources: FastMap<ServiceKey, ()>,
    /// The other nodes, when this one is part of a cluster.
    pub cluster: Option<ClusterView>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Services(gen {}, {} services)",
            self.generation,
            self.services.len()
        )
    }
}

fn name_identity(service: &str, backend: &str) -> u64 {
    let mut h = FastHasher(0x1234_5678);
    h.write(service.as_bytes());
    h.write(&[0xff]);
    h.write(backend.as_bytes());
    h.finish()
}

impl Services {
    /// Builds a snapshot from the services as they stand now (state and weight included)
    /// and the ports with their MACs.
    pub fn build(generation: u64, ports: Vec<PortInfo>, services: &[ServiceConfig]) -> Services {
        let mut out = Services {
            generation,
            ports,
            services: Vec::new(),
            backends: Vec::new(),
            by_key: FastMap::default(),
            vips: FastMap::default(),
            nat_sources: FastMap::default(),
            cluster: None,
        };
        for (si, s) in services.iter().enumerate() {
            let sid = si as u16;
            let mut ids = Vec::new();
            let mut cands = Vec::new();
            for b in &s.backends {
                let id = out.backends.len() as u16;
                ids.push(id);
                let eligible = b.state == BackendState::Active;
                if s.mode == Mode::Nat {
                    out.nat_sources.insert(
                        ServiceKey {
                            vip: addr_bytes(b.address),
                            port: b.port,
                            proto: s.protocol.number(),
                        },
                        (),
                    );
                }
                cands.push(Candidate {
                    id,
                    weight: if eligible { b.weight } else { 0 },
                    identity: name_identity(&s.name, &b.name),
                });
                out.backends.push(Backend {
                    id,
                    service: sid,
                    name: b.name.clone(),
                    addr: addr_bytes(b.address),
                    v6: b.address.is_ipv6(),
                    port: b.port,
                    weight: b.weight,
                    state: b.state,
                    paths: b
                        .paths
                        .iter()
                        .map(|p| Path {
                            port: p.port as u8,
                            mac: p.mac,
                        })
                        .collect(),
                });
            }
            let vip = addr_bytes(s.vip);
            out.by_key.insert(
                ServiceKey {
                    vip,
                    port: s.port,
                    proto: s.protocol.number(),
                },
                sid,
            );
            out.vips.insert(vip, ());
            out.services.push(Service {
                id: sid,
                name: s.name.clone(),
                vip,
                v6: s.vip.is_ipv6(),
                port: s.port,
                proto: s.protocol.number(),
                mode: s.mode,
                backends: ids,
                maglev: Maglev::build(&cands),
            });
        }
        out
    }

    /// The same snapshot, part of a cluster.
    pub fn with_cluster(mut self, cluster: Option<ClusterView>) -> Services {
        self.cluster = cluster;
        self
    }

    /// Convenience for tests and the demo: ports from the config with the given MACs.
    pub fn from_config(cfg: &Config, macs: &[Mac]) -> Services {
        let ports = cfg
            .ports
            .iter()
            .zip(macs)
            .map(|(p, m)| PortInfo::from_config(p, *m))
            .collect();
        Services::build(1, ports, &cfg.services)
    }

    /// The service for a destination. With a handful of services a scan beats hashing the
    /// 16-byte key (1k-flow pcap replay: 7.88 Mpps scanning vs 7.53 Mpps hashing, 3 runs
    /// each), so small tables scan and larger ones use the map.
    #[inline]
    pub fn lookup(&self, vip: &[u8; 16], port: u16, proto: u8) -> Option<&Service> {
        if self.services.len() <= 4 {
            return self
                .services
                .iter()
                .find(|s| s.vip == *vip && s.port == port && s.proto == proto);
        }
        self.by_key
            .get(&ServiceKey {
                vip: *vip,
                port,
                proto,
            })
            .map(|&i| &self.services[usize::from(i)])
    }

    #[inline]
    pub fn is_vip(&self, addr: &[u8; 16]) -> bool {
        if self.services.len() <= 4 {
            return self.services.iter().any(|s| s.vip == *addr);
        }
        self.vips.contains_key(addr)
    }

    /// True when a packet from `addr:port` could be a nat backend's reply.
    #[inline]
    pub fn is_nat_source(&self, addr: &[u8; 16], port: u16, proto: u8) -> bool {
        !self.nat_sources.is_empty()
            && self.nat_sources.contains_key(&ServiceKey {
                vip: *addr,
                port,
                proto,
            })
    }

    /// The port whose own address `addr` is.
    pub fn port_with_addr(&self, addr: &[u8; 16], v6: bool) -> Option<usize> {
        self.ports.iter().position(|p| {
            if v6 {
                p.ipv6.is_some_and(|(a, _)| a == *addr)
            } else {
                p.ipv4.is_some_and(|(a, _)| a[..] == addr[..4])
            }
        })
    }

    pub fn backend_by_name(&self, service: &str, backend: &str) -> Option<&Backend> {
        let s = self.services.iter().find(|s| s.name == service)?;
        s.backends
            .iter()
            .map(|&id| &self.backends[usize::from(id)])
            .find(|b| b.name == backend)
    }

    pub fn vip_addr(&self, s: &Service) -> IpAddr {
        crate::flow::key::bytes_addr(&s.vip, s.v6)
    }
}
