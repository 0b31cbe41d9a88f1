//! A port's `devargs` checked as DPDK 22.11 would take them, without starting an EAL: the
//! device a driver of Debian's DPDK names (a virtual device's name starts with its
//! driver's, `net_pcap0`; a PCI address names a NIC), then `key=value` pairs the driver
//! takes, with values of the kind it parses. The keys are each driver's
//! `RTE_PMD_REGISTER_PARAM_STRING`, as the installed PMDs list them. A PCI device's own
//! keys depend on its driver: only their syntax is checked here, the rest at start.

/// What a value must look like.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Int,
    /// 0 or 1.
    Flag,
    /// One of the words listed.
    Word(&'static [&'static str]),
    /// A MAC address (or, for net_tap, "fixed").
    Mac,
}

use Kind::*;

/// (driver, aliases, keys the driver takes, keys it requires one of).
type Driver = (
    &'static str,
    &'static [&'static str],
    &'static [(&'static str, Kind)],
    &'static [&'static str],
);

const DRIVERS: &[Driver] = &[
    (
        "net_pcap",
        &["eth_pcap"],
        &[
            ("rx_pcap", Text),
            ("tx_pcap", Text),
            ("rx_iface", Text),
            ("rx_iface_in", Text),
            ("tx_iface", Text),
            ("iface", Text),
            ("phy_mac", Int),
            ("infinite_rx", Flag),
        ],
        &[
            "rx_pcap",
            "tx_pcap",
            "rx_iface",
            "rx_iface_in",
            "tx_iface",
            "iface",
        ],
    ),
    (
        "net_af_packet",
        &["eth_af_packet"],
        &[
            ("iface", Text),
            ("qpairs", Int),
            ("blocksz", Int),
            ("framesz", Int),
            ("framecnt", Int),
            ("qdisc_bypass", Flag),
        ],
        &["iface"],
    ),
    (
        "net_af_xdp",
        &[],
        &[
            ("iface", Text),
            ("start_queue", Int),
            ("queue_count", Int),
            ("shared_umem", Int),
            ("xdp_prog", Text),
            ("busy_budget", Int),
            ("force_copy", Int),
        ],
        &["iface"],
    ),
    (
        "net_memif",
        &[],
        &[
            ("id", Int),
            ("role", Word(&["server", "client"])),
            ("bsize", Int),
            ("rsize", Int),
            ("socket", Text),
            ("socket-abstract", Word(&["yes", "no"])),
            ("mac", Mac),
            ("zero-copy", Word(&["yes", "no"])),
            ("secret", Text),
        ],
        &[],
    ),
    (
        "net_tap",
        &[],
        &[("iface", Text), ("mac", Mac), ("remote", Text)],
        &[],
    ),
    ("net_tun", &[], &[("iface", Text)], &[]),
    (
        "net_null",
        &["eth_null"],
        &[("size", Int), ("copy", Int), ("no-rx", Flag)],
        &[],
    ),
    ("net_ring", &["eth_ring"], &[("nodeaction", Text)], &[]),
    (
        "net_vhost",
        &["eth_vhost"],
        &[
            ("iface", Text),
            ("queues", Int),
            ("client", Flag),
            ("iommu-support", Flag),
            ("postcopy-support", Flag),
            ("tso", Flag),
            ("linear-buffer", Flag),
            ("ext-buffer", Flag),
        ],
        &["iface"],
    ),
];

/// True when `s` is a PCI address: DDDD:BB:DD.F or BB:DD.F (hexadecimal).
fn is_pci(s: &str) -> bool {
    let hex = |p: &str, n: usize| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit());
    let (head, func) = match s.rsplit_once('.') {
        Some(x) => x,
        None => return false,
    };
    if func.len() != 1 || !func.chars().all(|c| ('0'..='7').contains(&c)) {
        return false;
    }
    let parts: Vec<&str> = head.split(':').collect();
    match parts[..] {
        [d, b, dev] => hex(d, 4) && hex(b, 2) && hex(dev, 2),
        [b, dev] => hex(b, 2) && hex(dev, 2),
        _ => false,
    }
}

fn value_ok(kind: Kind, v: &str) -> Result<(), String> {
    let ok = match kind {
        Text => !v.is_empty(),
        Int => {
            let v = v.strip_prefix("0x").map_or(v, |h| h);
            !v.is_empty() && v.chars().all(|c| c.is_ascii_hexdigit())
        }
        Flag => v == "0" || v == "1",
        Word(ws) => ws.contains(&v),
        Mac => {
            v == "fixed"
                || (v.len() == 17
                    && v.split(':').count() == 6
                    && v.split(':')
                        .all(|b| b.len() == 2 && b.chars().all(|c| c.is_ascii_hexdigit())))
        }
    };
    if ok {
        return Ok(());
    }
    Err(match kind {
        Text => "needs a value".into(),
        Int => format!("\"{v}\" is not a number"),
        Flag => format!("\"{v}\" is not 0 or 1"),
        Word(ws) => format!("\"{v}\" is not {}", ws.join(" or ")),
        Mac => format!("\"{v}\" is not a MAC address"),
    })
}

/// Why DPDK would refuse these devargs, or None when it would take them.
pub(super) fn problem(devargs: &str) -> Option<String> {
    let mut parts = devargs.split(',');
    let dev = parts.next().unwrap_or("");
    let pairs: Vec<&str> = parts.collect();
    for p in &pairs {
        match p.split_once('=') {
            None => return Some(format!("\"{p}\" is not key=value")),
            Some(("", _)) => return Some(format!("\"{p}\" has no key")),
            Some((k, "")) => return Some(format!("{k} needs a value")),
            Some(_) => {}
        }
    }
    if is_pci(dev) {
        return None;
    }
    let Some(&(name, _, keys, needs)) = DRIVERS.iter().find(|(name, aliases, _, _)| {
        dev.starts_with(name) || aliases.iter().any(|a| dev.starts_with(a))
    }) else {
        let known: Vec<&str> = DRIVERS.iter().map(|d| d.0).collect();
        return Some(format!(
            "\"{dev}\" is neither a PCI address nor a device of a DPDK driver tandem knows \
             ({}, followed by a number: net_pcap0)",
            known.join(", ")
        ));
    };
    let mut given = Vec::new();
    for p in &pairs {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        let Some(&(_, kind)) = keys.iter().find(|(key, _)| *key == k) else {
            let names: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
            return Some(format!(
                "{name} takes no key \"{k}\" (it takes {})",
                names.join(", ")
            ));
        };
        if let Err(why) = value_ok(kind, v) {
            return Some(format!("{k}: {why}"));
        }
        given.push(k);
    }
    if !needs.is_empty() && !needs.iter().any(|n| given.contains(n)) {
        return Some(format!("{name} needs {}", needs.join(" or ")));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::problem;

    #[test]
    fn devargs_dpdk_takes_pass_and_others_say_why() {
        for ok in [
            "net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap",
            "net_pcap1,rx_pcap=a.pcap,infinite_rx=1",
            "net_af_packet0,iface=lb1-front,framecnt=8192,qpairs=2",
            "net_memif0,role=server,socket=/run/m.sock,id=0",
            "net_tap0,iface=t0,mac=fixed",
            "net_null0",
            "net_ring0,nodeaction=r0:0:CREATE",
            "net_af_xdp0,iface=veth0,start_queue=0",
            "0000:01:00.0",
            "01:00.1,some_driver_key=3",
            "eth_null1,size=64",
        ] {
            assert_eq!(problem(ok), None, "{ok}");
        }
        for (bad, says) in [
            ("net_pcapx0,rx_pcap=a", ""),
            ("net_foo0", "neither a PCI address"),
            ("pcap0,rx_pcap=a", "neither"),
            ("net_pcap0,rx_pcap", "not key=value"),
            ("net_pcap0,=x", "no key"),
            ("net_pcap0,rx_pcap=", "needs a value"),
            ("net_pcap0,rx_pcapp=a", "takes no key \"rx_pcapp\""),
            ("net_pcap0", "needs rx_pcap"),
            ("net_pcap0,rx_pcap=a,infinite_rx=2", "not 0 or 1"),
            ("net_af_packet0", "needs iface"),
            ("net_af_packet0,iface=a,framecnt=lots", "not a number"),
            ("net_memif0,role=master", "server or client"),
            ("net_tap0,mac=02:00:00", "not a MAC"),
            ("01:00.9", "neither"),
        ] {
            let p = problem(bad);
            if says.is_empty() {
                // A name that starts with a driver's is that driver's (DPDK matches the
                // prefix): net_pcapx0 is a pcap device.
                assert_eq!(p, None, "{bad}");
            } else {
                assert!(
                    p.as_deref().is_some_and(|p| p.contains(says)),
                    "{bad}: {p:?}"
                );
            }
        }
    }
}
