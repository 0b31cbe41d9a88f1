//! `[cluster]` and its `[[cluster.node]]`s: a secret file, this node among them, ids,
//! addresses and sync endpoints unique, timers that make sense together.

use crate::model::*;
use crate::problem::{Checker, Problem};
use crate::schema;
use crate::units::{not_a_host, not_a_station, parse_ip, parse_mac};
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

pub(super) fn cluster(
    c: &schema::Cluster,
    node_id: u32,
    ports: &[PortConfig],
    problems: &mut Vec<Problem>,
) -> ClusterConfig {
    let mut ck = Checker { problems };
    let secret_file = match &c.secret_file {
        Some(s) if !s.is_empty() => PathBuf::from(s),
        _ => {
            ck.bad(
                "cluster.secret_file",
                "is required: the file holding the cluster's shared secret",
            );
            PathBuf::new()
        }
    };
    if c.node.len() > MAX_NODES {
        ck.bad("cluster.node", format!("at most {MAX_NODES} nodes"));
    }
    let mut nodes = Vec::new();
    let mut seen = Seen::default();
    for (i, n) in c.node.iter().enumerate() {
        nodes.push(node(&mut ck, &format!("cluster.node[{i}]"), n, &mut seen));
        if u32::from(nodes[i].id) == node_id {
            own_address(
                &mut ck,
                &format!("cluster.node[{i}]"),
                nodes[i].address,
                ports,
            );
        }
    }
    if !c.node.iter().any(|n| n.id == node_id) {
        ck.bad(
            "cluster.node",
            format!("no entry for this node ([node].id = {node_id})"),
        );
    }
    if c.node.len() < 2 {
        ck.bad(
            "cluster.node",
            "a cluster needs at least two nodes (leave [cluster] out for one)",
        );
    }
    nodes.sort_by_key(|n| n.id);
    let (heartbeat, dead_after, drain_deadline) = timers(&mut ck, c);
    let forward_port = c.forward_port.unwrap_or(DEFAULT_FORWARD_PORT);
    if forward_port == 0 {
        ck.bad("cluster.forward_port", "must not be 0");
    }
    ClusterConfig {
        secret_file,
        heartbeat,
        dead_after,
        forward_port,
        drain_deadline,
        nodes,
    }
}

/// What the nodes before this one took: ids, addresses and sync endpoints are each one
/// node's.
#[derive(Default)]
struct Seen {
    ids: HashSet<u32>,
    addrs: HashSet<IpAddr>,
    syncs: HashSet<SocketAddr>,
}

fn node(ck: &mut Checker, k: &str, n: &schema::ClusterNode, seen: &mut Seen) -> NodeConfig {
    let id = match u16::try_from(n.id) {
        Ok(id) if id > 0 => id,
        _ => {
            ck.bad(format!("{k}.id"), "must be from 1 to 65535");
            0
        }
    };
    if !seen.ids.insert(n.id) {
        ck.bad(format!("{k}.id"), format!("duplicate node id {}", n.id));
    }
    if n.weight == 0 || n.weight > 1000 {
        ck.bad(format!("{k}.weight"), "must be from 1 to 1000");
    }
    let address = match parse_ip(&n.address) {
        Ok(a) => {
            if let Some(why) = not_a_host(a) {
                ck.bad(format!("{k}.address"), why);
            }
            if !seen.addrs.insert(a) {
                ck.bad(format!("{k}.address"), format!("{a} is used by two nodes"));
            }
            a
        }
        Err(e) => {
            ck.bad(format!("{k}.address"), e);
            IpAddr::from([0, 0, 0, 0])
        }
    };
    let mac = n.mac.as_deref().and_then(|s| match parse_mac(s) {
        Ok(m) if not_a_station(&m).is_some() => {
            ck.bad(format!("{k}.mac"), not_a_station(&m).unwrap_or_default());
            None
        }
        Ok(m) => Some(m),
        Err(e) => {
            ck.bad(format!("{k}.mac"), e);
            None
        }
    });
    let sync = match n.sync.parse::<SocketAddr>() {
        Ok(s) if s.port() == 0 || s.ip().is_unspecified() || s.ip().is_multicast() => {
            ck.bad(
                format!("{k}.sync"),
                format!(
                    "\"{}\" must name one host's address and a port above 0",
                    n.sync
                ),
            );
            s
        }
        Ok(s) => {
            if !seen.syncs.insert(s) {
                ck.bad(format!("{k}.sync"), format!("{s} is used by two nodes"));
            }
            s
        }
        Err(_) => {
            ck.bad(
                format!("{k}.sync"),
                format!("\"{}\" is not an address:port", n.sync),
            );
            SocketAddr::from(([0, 0, 0, 0], 0))
        }
    };
    NodeConfig {
        id,
        weight: n.weight,
        address,
        mac,
        sync,
    }
}

/// This node's entry must name one of its ports' addresses: peers send it encapsulated
/// packets there.
fn own_address(ck: &mut Checker, k: &str, address: IpAddr, ports: &[PortConfig]) {
    let own = ports.iter().any(|p| match address {
        IpAddr::V4(a) => p.ipv4.is_some_and(|(x, _)| x == a),
        IpAddr::V6(a) => p.ipv6.is_some_and(|(x, _)| x == a),
    });
    if !own {
        ck.bad(
            format!("{k}.address"),
            "this node's address must be one of its ports' addresses (peers send encapsulated packets to it)",
        );
    }
}

/// Heartbeat, dead_after (at least two heartbeats) and the drain deadline.
fn timers(ck: &mut Checker, c: &schema::Cluster) -> (Duration, Duration, Duration) {
    let heartbeat = ck.duration_in(
        "cluster.heartbeat",
        c.heartbeat.as_deref(),
        Duration::from_millis(100),
        (Duration::from_millis(10), Duration::from_secs(10)),
    );
    let dead_after = ck.duration_in(
        "cluster.dead_after",
        c.dead_after.as_deref(),
        heartbeat.saturating_mul(3),
        (Duration::from_millis(20), Duration::from_secs(600)),
    );
    if dead_after < heartbeat.saturating_mul(2) {
        ck.bad(
            "cluster.dead_after",
            "must be at least two heartbeats, or one lost datagram kills a node",
        );
    }
    let drain_deadline = ck.duration_in(
        "cluster.drain_deadline",
        c.drain_deadline.as_deref(),
        Duration::from_secs(300),
        (Duration::ZERO, Duration::from_secs(7 * 24 * 3600)),
    );
    (heartbeat, dead_after, drain_deadline)
}

#[cfg(test)]
mod tests {
    use crate::Config;

    const BASE: &str = r#"
[node]
id = 2
[eal]
args = []
[[port]]
name = "front"
devargs = "net_null0"
ipv4 = "10.0.0.2/24"
[[service]]
name = "web"
vip = "192.0.2.10"
port = 80
protocol = "tcp"
mode = "dsr"
[[service.backend]]
name = "a"
address = "10.0.0.11"
paths = [{ port = "front" }]
"#;

    #[test]
    fn cluster_section_as_in_the_issue() {
        let text = format!(
            "{BASE}
[cluster]
secret_file = \"/etc/tandem/cluster.key\"
heartbeat = \"100ms\"
dead_after = \"300ms\"
[[cluster.node]]
id = 2
weight = 1
address = \"10.0.0.2\"
mac = \"02:00:00:00:00:02\"
sync = \"127.0.0.1:7002\"
[[cluster.node]]
id = 1
address = \"10.0.0.1\"
sync = \"127.0.0.1:7001\"
"
        );
        let c = Config::from_toml(&text).unwrap();
        let cl = c.cluster.unwrap();
        assert_eq!(cl.nodes[0].id, 1, "sorted by id");
        assert_eq!(cl.nodes[1].mac, Some([2, 0, 0, 0, 0, 2]));
        assert_eq!(cl.dead_after.as_millis(), 300);
        assert_eq!(cl.forward_port, super::DEFAULT_FORWARD_PORT);
        assert_eq!(cl.index_of(2), Some(1));
    }

    #[test]
    fn cluster_problems_name_their_keys() {
        let text = format!(
            "{BASE}
[cluster]
heartbeat = \"100ms\"
dead_after = \"150ms\"
[[cluster.node]]
id = 1
address = \"10.0.0.9\"
sync = \"127.0.0.1:7001\"
[[cluster.node]]
id = 1
address = \"10.0.0.9\"
sync = \"nowhere\"
"
        );
        let p = Config::from_toml(&text).unwrap_err();
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        for k in [
            "cluster.secret_file",
            "cluster.node[1].id",
            "cluster.node[1].address",
            "cluster.node[1].sync",
            "cluster.node",
            "cluster.dead_after",
        ] {
            assert!(keys.contains(&k), "{k} missing from {p:?}");
        }
    }
}
