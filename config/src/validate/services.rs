//! `[[service]]` and its backends and paths: names unique, a VIP that is a host's and no
//! port's, a protocol and mode tandem has, backends of the VIP's family that are neither this
//! node nor a VIP, ports and weights in range, paths over ports that can reach them.

use super::ports::station_mac;
use super::qos::{admission, queue, standby};
use crate::model::*;
use crate::problem::Checker;
use crate::schema;
use crate::units::*;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};

pub(super) fn services(
    c: &mut Checker,
    list: &[schema::Service],
    ports: &[PortConfig],
) -> Vec<ServiceConfig> {
    let mut services = Vec::new();
    let mut names = HashSet::new();
    let mut vips = HashSet::new();
    for (i, s) in list.iter().enumerate() {
        let k = format!("service[{i}]");
        if let Some(why) = bad_name(&s.name) {
            c.bad(format!("{k}.name"), why);
        }
        if !names.insert(s.name.clone()) {
            c.bad(
                format!("{k}.name"),
                format!("duplicate service name \"{}\"", s.name),
            );
        }
        services.push(service(c, &k, s, ports, &mut vips));
    }
    backends_at_vips(c, &services);
    if list.len() > MAX_SERVICES {
        c.bad("service", format!("at most {MAX_SERVICES} services"));
    }
    let total: usize = list.iter().map(|s| s.backend.len()).sum();
    if total > MAX_BACKENDS {
        c.bad(
            "service",
            format!("at most {MAX_BACKENDS} backends over all services"),
        );
    }
    services
}

/// One service; `vips` holds the (VIP, port, protocol) of the services before it.
fn service(
    c: &mut Checker,
    k: &str,
    s: &schema::Service,
    ports: &[PortConfig],
    vips: &mut HashSet<(IpAddr, u16, u8)>,
) -> ServiceConfig {
    let vip = service_vip(c, k, &s.vip);
    let protocol = Protocol::parse(&s.protocol).unwrap_or_else(|| {
        c.bad(
            format!("{k}.protocol"),
            format!("\"{}\" is not tcp, udp or quic", s.protocol),
        );
        Protocol::Tcp
    });
    let mode = Mode::parse(&s.mode).unwrap_or_else(|| {
        c.bad(
            format!("{k}.mode"),
            format!("\"{}\" is not {}", s.mode, Mode::names()),
        );
        Mode::Nat
    });
    if s.port == 0 {
        c.bad(format!("{k}.port"), "must be from 1 to 65535");
    }
    if let Some(v) = vip {
        vip_is_free(c, k, (v, s.port, protocol), ports, vips);
    }
    if s.backend.is_empty() {
        c.bad(
            format!("{k}.backend"),
            "a service needs at least one [[service.backend]]",
        );
    }
    let mut backends = backends(c, k, s, (vip, mode), ports);
    let quic = super::quic::quic(c, k, s, protocol, &mut backends);
    let queue = s
        .queue
        .as_ref()
        .map(|q| queue(k, q, c.problems))
        .unwrap_or_default();
    let admission = s
        .admission
        .as_ref()
        .map(|a| admission(k, a, c.problems))
        .unwrap_or_default();
    let standby = s.standby.as_ref().map(|sb| standby(k, sb, c.problems));
    if standby.is_some() && !backends.iter().any(|b| b.state == BackendState::Standby) {
        c.bad(
            format!("{k}.standby"),
            "no backend of this service is a standby (standby = true)",
        );
    }
    ServiceConfig {
        name: s.name.clone(),
        vip: vip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        port: s.port,
        protocol,
        mode,
        backends,
        queue,
        admission,
        standby,
        clamp_mss: s.clamp_mss.unwrap_or(true),
        quic,
    }
}

/// A service's `vip`: an address of a host (not a network, broadcast or multicast one).
fn service_vip(c: &mut Checker, k: &str, vip: &str) -> Option<IpAddr> {
    match parse_ip(vip) {
        Ok(v) => {
            if let Some(why) = not_a_host(v) {
                c.bad(format!("{k}.vip"), why);
            }
            Some(v)
        }
        Err(e) => {
            c.bad(format!("{k}.vip"), e);
            None
        }
    }
}

/// Whether (VIP, port, protocol) `at` is no other service's and the VIP no port's own
/// address; `vips` holds the services' before this one.
fn vip_is_free(
    c: &mut Checker,
    k: &str,
    at: (IpAddr, u16, Protocol),
    ports: &[PortConfig],
    vips: &mut HashSet<(IpAddr, u16, u8)>,
) {
    let (v, port, protocol) = at;
    // quic is UDP on the wire: a quic and a udp service cannot share a VIP and port.
    if !vips.insert((v, port, protocol.number())) {
        c.bad(
            format!("{k}.vip"),
            format!(
                "duplicate VIP: {v} port {port} {} is already a service",
                protocol.name()
            ),
        );
    }
    for (pi, p) in ports.iter().enumerate() {
        if port_has(p, v) {
            c.bad(format!("{k}.vip"), format!("is port[{pi}]'s own address"));
        }
    }
}

/// The backends of service `s` (at `vip` in `mode`), each with a name unique in it.
fn backends(
    c: &mut Checker,
    k: &str,
    s: &schema::Service,
    (vip, mode): (Option<IpAddr>, Mode),
    ports: &[PortConfig],
) -> Vec<BackendConfig> {
    let mut backends = Vec::new();
    let mut names = HashSet::new();
    for (j, b) in s.backend.iter().enumerate() {
        let bk = format!("{k}.backend[{j}]");
        if let Some(why) = bad_name(&b.name) {
            c.bad(format!("{bk}.name"), why);
        }
        if !names.insert(b.name.clone()) {
            c.bad(
                format!("{bk}.name"),
                format!("duplicate backend name \"{}\" in service", b.name),
            );
        }
        backends.push(backend(c, &bk, b, (vip, s.port, mode), ports));
    }
    backends
}

/// True when `a` is one of the port's own addresses.
fn port_has(p: &PortConfig, a: IpAddr) -> bool {
    match a {
        IpAddr::V4(a) => p.ipv4.map(|x| x.0) == Some(a),
        IpAddr::V6(a) => p.ipv6.map(|x| x.0) == Some(a),
    }
}

/// One backend of a service at (`vip`, `vport`) in `mode`.
fn backend(
    c: &mut Checker,
    bk: &str,
    b: &schema::Backend,
    (vip, vport, mode): (Option<IpAddr>, u16, Mode),
    ports: &[PortConfig],
) -> BackendConfig {
    let address = match parse_ip(&b.address) {
        Ok(a) => {
            if let Some(why) = not_a_host(a) {
                c.bad(format!("{bk}.address"), why);
            } else if let Some(pi) = ports.iter().position(|p| port_has(p, a)) {
                c.bad(
                    format!("{bk}.address"),
                    format!("is port[{pi}]'s own address (this node, not a backend)"),
                );
            }
            if vip.is_some_and(|v| a.is_ipv4() != v.is_ipv4()) {
                c.bad(
                    format!("{bk}.address"),
                    "must be of the VIP's address family",
                );
            }
            a
        }
        Err(e) => {
            c.bad(format!("{bk}.address"), e);
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        }
    };
    let port = match (mode.keeps_vip_port(), b.port) {
        (true, Some(p)) if p != vport => {
            c.bad(
                format!("{bk}.port"),
                format!("{} keeps the VIP's port; leave port out", mode.name()),
            );
            vport
        }
        (true, _) => vport,
        (false, p) => p.unwrap_or(mode.default_port().unwrap_or(vport)),
    };
    if port == 0 {
        c.bad(format!("{bk}.port"), "must be from 1 to 65535");
    }
    if b.weight > MAX_WEIGHT {
        c.bad(format!("{bk}.weight"), format!("at most {MAX_WEIGHT}"));
    }
    let state = backend_state(c, bk, b);
    if b.max_flows == Some(0) {
        c.bad(
            format!("{bk}.max_flows"),
            "must be at least 1 (leave it out for no limit)",
        );
    }
    BackendConfig {
        name: b.name.clone(),
        address,
        port,
        weight: b.weight,
        state,
        max_flows: b.max_flows.unwrap_or(0),
        paths: paths(c, bk, &b.paths, address, mode, ports),
        server_id: Vec::new(),
    }
}

/// A backend's `state`, or `standby = true` (which must not contradict it).
fn backend_state(c: &mut Checker, bk: &str, b: &schema::Backend) -> BackendState {
    let state = match b.state.as_deref() {
        None if b.standby == Some(true) => BackendState::Standby,
        None => BackendState::Active,
        Some(st) => BackendState::parse(st).unwrap_or_else(|| {
            c.bad(
                format!("{bk}.state"),
                format!("\"{st}\" is not active, draining, standby or down"),
            );
            BackendState::Active
        }),
    };
    if b.standby == Some(true) && state != BackendState::Standby {
        c.bad(
            format!("{bk}.standby"),
            format!("contradicts state = \"{}\"", state.name()),
        );
    }
    state
}

/// A backend's paths: each over a port that has an address of the backend's family (or,
/// in dsr, a fixed MAC on the port's link), none twice.
fn paths(
    c: &mut Checker,
    bk: &str,
    list: &[schema::Path],
    address: IpAddr,
    mode: Mode,
    ports: &[PortConfig],
) -> Vec<PathConfig> {
    if list.is_empty() {
        c.bad(format!("{bk}.paths"), "a backend needs at least one path");
    }
    if list.len() > MAX_PATHS {
        c.bad(format!("{bk}.paths"), format!("at most {MAX_PATHS} paths"));
    }
    let mut paths = Vec::new();
    for (pi, p) in list.iter().enumerate() {
        let pk = format!("{bk}.paths[{pi}]");
        let Some(idx) = ports.iter().position(|x| x.name == p.port) else {
            c.bad(
                format!("{pk}.port"),
                format!("no [[port]] is named \"{}\"", p.port),
            );
            continue;
        };
        let mac = p
            .mac
            .as_deref()
            .and_then(|m| station_mac(c, &format!("{pk}.mac"), m));
        let port_cfg = &ports[idx];
        let has_family = match address {
            IpAddr::V4(_) => port_cfg.ipv4.is_some(),
            IpAddr::V6(_) => port_cfg.ipv6.is_some(),
        };
        // A mode that neither translates nor encapsulates sends the frame as it came (to a
        // fixed MAC): no address of the family is needed on the port.
        let l2_only = !mode.translates() && !mode.encapsulates();
        if !has_family && (mac.is_none() || !l2_only) {
            c.bad(
                format!("{pk}.port"),
                format!(
                    "port \"{}\" has no {} address to reach the backend from",
                    p.port,
                    if address.is_ipv4() { "ipv4" } else { "ipv6" }
                ),
            );
        }
        if has_family && mac.is_none() && !address.is_unspecified() && !port_cfg.reaches(address) {
            c.bad(
                format!("{pk}.port"),
                format!(
                    "{address} is not on port \"{}\"'s subnet and the port has no {} \
                     (give the port one, or the path the next hop's mac)",
                    p.port,
                    if address.is_ipv4() {
                        "gateway"
                    } else {
                        "gateway6"
                    }
                ),
            );
        }
        if paths
            .iter()
            .any(|x: &PathConfig| x.port == idx && x.mac == mac)
        {
            c.bad(pk, "duplicate path");
            continue;
        }
        paths.push(PathConfig { port: idx, mac });
    }
    paths
}

/// A backend at a cluster node's data-plane address would be a tandem node, not a server.
pub(super) fn backends_at_peers(
    c: &mut Checker,
    services: &[ServiceConfig],
    cluster: &ClusterConfig,
) {
    for (i, svc) in services.iter().enumerate() {
        for (j, b) in svc.backends.iter().enumerate() {
            if let Some(n) = cluster.nodes.iter().position(|n| n.address == b.address) {
                c.bad(
                    format!("service[{i}].backend[{j}].address"),
                    format!(
                        "is cluster node {}'s data-plane address (a tandem node, not a backend)",
                        cluster.nodes[n].id
                    ),
                );
            }
        }
    }
}

/// A backend at a VIP (its own service's or another's) would send its flows back into
/// this node.
fn backends_at_vips(c: &mut Checker, services: &[ServiceConfig]) {
    for (i, svc) in services.iter().enumerate() {
        for (j, b) in svc.backends.iter().enumerate() {
            let why = if b.address.is_unspecified() {
                continue; // unparsed, or refused above
            } else if b.address == svc.vip {
                "is the service's own VIP".to_string()
            } else if let Some(o) = services.iter().position(|x| x.vip == b.address) {
                format!("is service[{o}]'s VIP (this node, not a backend)")
            } else {
                continue;
            };
            c.bad(format!("service[{i}].backend[{j}].address"), why);
        }
    }
}
