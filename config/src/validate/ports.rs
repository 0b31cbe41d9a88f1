//! `[[port]]`: names and devices unique, addresses that are a host's with a real prefix,
//! gateways on the port's subnet, a station MAC, descriptor counts DPDK takes.

use crate::model::{
    PortConfig, DEFAULT_MAX_NEIGHBORS, DEFAULT_MTU, MAX_MAX_NEIGHBORS, MAX_MTU, MIN_MAX_NEIGHBORS,
    MIN_MTU,
};
use crate::problem::Checker;
use crate::schema;
use crate::units::*;
use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr};

pub(super) fn ports(c: &mut Checker, list: &[schema::Port]) -> Vec<PortConfig> {
    if list.is_empty() {
        c.bad("port", "at least one [[port]] is needed");
    }
    let mut ports = Vec::new();
    let mut names = HashSet::new();
    let mut devs = HashSet::new();
    for (i, p) in list.iter().enumerate() {
        let k = format!("port[{i}]");
        if let Some(why) = bad_name(&p.name) {
            c.bad(format!("{k}.name"), why);
        }
        if !names.insert(p.name.clone()) {
            c.bad(
                format!("{k}.name"),
                format!("duplicate port name \"{}\"", p.name),
            );
        }
        let dev = p.devargs.split(',').next().unwrap_or("").to_string();
        if dev.is_empty() {
            c.bad(
                format!("{k}.devargs"),
                "must name a device, like net_pcap0,rx_pcap=...",
            );
        } else if !devs.insert(dev.clone()) {
            c.bad(
                format!("{k}.devargs"),
                format!("device \"{dev}\" is used by two ports"),
            );
        } else if let Some(why) = super::devargs::problem(&p.devargs) {
            c.bad(format!("{k}.devargs"), why);
        }
        ports.push(port(c, &k, p));
    }
    let mut twins = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        if let Some(k) = &p.kernel {
            if !twins.insert(k.clone()) {
                c.bad(
                    format!("port[{i}].kernel"),
                    format!("\"{k}\" is the kernel twin of another port too"),
                );
            }
        }
    }
    ports
}

/// A kernel interface name Linux takes: 1 to 15 bytes (IFNAMSIZ less its NUL), no '/',
/// ':', whitespace or NUL, not "." or "..".
fn interface_name(c: &mut Checker, key: &str, name: &str) -> bool {
    let why = if name.is_empty() || name.len() > 15 {
        Some("must be 1 to 15 characters (a Linux interface name)")
    } else if name == "." || name == ".." {
        Some("is not an interface name Linux takes")
    } else if name
        .chars()
        .any(|ch| ch == '/' || ch == ':' || ch.is_whitespace() || ch.is_control())
    {
        Some("must not hold '/', ':', spaces or control characters")
    } else {
        None
    };
    if let Some(w) = why {
        c.bad(key, w);
    }
    why.is_none()
}

fn port(c: &mut Checker, k: &str, p: &schema::Port) -> PortConfig {
    let ipv4 = p.ipv4.as_deref().and_then(|s| {
        let key = format!("{k}.ipv4");
        host_prefix(c, &key, parse_cidr4(s).map(|(a, l)| ((a, l), a.into())))
    });
    let ipv6 = p.ipv6.as_deref().and_then(|s| {
        let key = format!("{k}.ipv6");
        host_prefix(c, &key, parse_cidr6(s).map(|(a, l)| ((a, l), a.into())))
    });
    let (gateway, gateway6) = gateways(c, k, p, ipv4, ipv6);
    let mac = p
        .mac
        .as_deref()
        .and_then(|s| station_mac(c, &format!("{k}.mac"), s));
    let mut desc = |key: &str, v: Option<u16>| -> u16 {
        let v = v.unwrap_or(1024);
        if !(64..=16384).contains(&v) || !v.is_power_of_two() {
            c.bad(
                format!("{k}.{key}"),
                "must be a power of two from 64 to 16384",
            );
        }
        v
    };
    let rx_descriptors = desc("rx_descriptors", p.rx_descriptors);
    let tx_descriptors = desc("tx_descriptors", p.tx_descriptors);
    let mtu = p.mtu.unwrap_or(DEFAULT_MTU);
    if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
        c.bad(
            format!("{k}.mtu"),
            format!("must be from {MIN_MTU} (IPv6's minimum) to {MAX_MTU} (what one buffer holds)"),
        );
    }
    let max_neighbors = p.max_neighbors.unwrap_or(DEFAULT_MAX_NEIGHBORS);
    if !(MIN_MAX_NEIGHBORS..=MAX_MAX_NEIGHBORS).contains(&max_neighbors) {
        c.bad(
            format!("{k}.max_neighbors"),
            format!("must be from {MIN_MAX_NEIGHBORS} to {MAX_MAX_NEIGHBORS}"),
        );
    }
    let kernel = p
        .kernel
        .as_deref()
        .filter(|n| interface_name(c, &format!("{k}.kernel"), n))
        .map(String::from);
    if kernel.is_some() && ipv4.is_none() && ipv6.is_none() {
        c.bad(
            format!("{k}.kernel"),
            "a kernel twin needs the port's ipv4 or ipv6 address (it is the twin's)",
        );
    }
    PortConfig {
        name: p.name.clone(),
        devargs: p.devargs.clone(),
        ipv4,
        ipv6,
        gateway,
        gateway6,
        mac,
        rx_descriptors,
        tx_descriptors,
        mtu,
        kernel,
        max_neighbors,
    }
}

/// A port's IPv4 and IPv6 gateways, each on the link of the port's address of its family.
fn gateways(
    c: &mut Checker,
    k: &str,
    p: &schema::Port,
    ipv4: Option<(Ipv4Addr, u8)>,
    ipv6: Option<(Ipv6Addr, u8)>,
) -> (Option<Ipv4Addr>, Option<Ipv6Addr>) {
    let gateway = p.gateway.as_deref().and_then(|s| {
        let key = format!("{k}.gateway");
        let Ok(g) = s.parse::<Ipv4Addr>() else {
            c.bad(key, format!("\"{s}\" is not an IPv4 address"));
            return None;
        };
        let on = ipv4.map(|(a, l)| (a == g, in_subnet4(g, a, l)));
        gateway_on_link(c, &key, on, "ipv4");
        Some(g)
    });
    let gateway6 = p.gateway6.as_deref().and_then(|s| {
        let key = format!("{k}.gateway6");
        let Ok(g) = s.parse::<Ipv6Addr>() else {
            c.bad(key, format!("\"{s}\" is not an IPv6 address"));
            return None;
        };
        let on = ipv6.map(|(a, l)| (a == g, in_subnet6(g, a, l)));
        gateway_on_link(c, &key, on, "ipv6");
        Some(g)
    });
    (gateway, gateway6)
}

/// A port's address and prefix: a host's address (not loopback, multicast, ...) and a
/// prefix that is not /0.
fn host_prefix<A>(
    c: &mut Checker,
    key: &str,
    parsed: Result<((A, u8), std::net::IpAddr), String>,
) -> Option<(A, u8)> {
    match parsed {
        Ok((_, ip)) if not_a_host(ip).is_some() => {
            c.bad(key, not_a_host(ip).unwrap_or_default());
            None
        }
        Ok(((_, 0), _)) => {
            c.bad(
                key,
                "a /0 subnet puts every address on this port's link; give the real prefix",
            );
            None
        }
        Ok((v, _)) => Some(v),
        Err(e) => {
            c.bad(key, e);
            None
        }
    }
}

/// A gateway must be another host on the port's subnet: `on` is (the port's own address,
/// on its subnet), or None when the port has no address of that family.
fn gateway_on_link(c: &mut Checker, key: &str, on: Option<(bool, bool)>, family: &str) {
    match on {
        Some((true, _)) => c.bad(key, "is the port's own address"),
        Some((false, true)) => {}
        Some((false, false)) => c.bad(key, format!("is not on the port's {family} subnet")),
        None => c.bad(key, format!("needs the port's {family} address")),
    }
}

/// A MAC a station may have (not all zeros, not a group address).
pub(super) fn station_mac(c: &mut Checker, key: &str, s: &str) -> Option<[u8; 6]> {
    match parse_mac(s) {
        Ok(m) if not_a_station(&m).is_some() => {
            c.bad(key, not_a_station(&m).unwrap_or_default());
            None
        }
        Ok(m) => Some(m),
        Err(e) => {
            c.bad(key, e);
            None
        }
    }
}
