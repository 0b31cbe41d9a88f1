//! `[cluster]`: the other nodes this one shares flows with, how often they hear from each
//! other, and the secret that authenticates what they say.

use crate::schema;
use crate::units::{not_a_host, not_a_station, parse_ip, parse_mac};
use crate::validate::Checker;
use crate::{PortConfig, Problem};
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Most nodes in a cluster: live-node sets travel to the workers as 64-bit masks.
pub const MAX_NODES: usize = 64;
/// The UDP port node-to-node encapsulated packets go to when `forward_port` is left out.
pub const DEFAULT_FORWARD_PORT: u16 = 6070;

#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub secret_file: PathBuf,
    pub heartbeat: Duration,
    pub dead_after: Duration,
    pub forward_port: u16,
    /// How long `node drain` keeps serving this node's own flows when no deadline is given.
    pub drain_deadline: Duration,
    /// Sorted by id, so a node's index is the same on every node with the same list.
    pub nodes: Vec<NodeConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    pub id: u16,
    pub weight: u32,
    /// Data-plane address: where node-to-node encapsulated packets go.
    pub address: IpAddr,
    pub mac: Option<[u8; 6]>,
    /// The control thread's UDP sync endpoint.
    pub sync: SocketAddr,
}

impl ClusterConfig {
    pub fn index_of(&self, id: u16) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == id)
    }
}

pub(crate) fn validate(
    c: &schema::Cluster,
    node_id: u32,
    ports: &[PortConfig],
    problems: &mut Vec<Problem>,
) -> ClusterConfig {
    let mut bad = |key: String, why: String| problems.push(Problem { key, why });
    let secret_file = match &c.secret_file {
        Some(s) if !s.is_empty() => PathBuf::from(s),
        _ => {
            bad(
                "cluster.secret_file".into(),
                "is required: the file holding the cluster's shared secret".into(),
            );
            PathBuf::new()
        }
    };
    if c.node.len() > MAX_NODES {
        bad("cluster.node".into(), format!("at most {MAX_NODES} nodes"));
    }
    let mut nodes = Vec::new();
    let (mut ids, mut addrs, mut syncs) = (HashSet::new(), HashSet::new(), HashSet::new());
    for (i, n) in c.node.iter().enumerate() {
        let k = format!("cluster.node[{i}]");
        let id = match u16::try_from(n.id) {
            Ok(id) if id > 0 => id,
            _ => {
                bad(format!("{k}.id"), "must be from 1 to 65535".into());
                0
            }
        };
        if !ids.insert(n.id) {
            bad(format!("{k}.id"), format!("duplicate node id {}", n.id));
        }
        if n.weight == 0 || n.weight > 1000 {
            bad(format!("{k}.weight"), "must be from 1 to 1000".into());
        }
        let address = match parse_ip(&n.address) {
            Ok(a) => {
                if let Some(why) = not_a_host(a) {
                    bad(format!("{k}.address"), why.into());
                }
                if !addrs.insert(a) {
                    bad(format!("{k}.address"), format!("{a} is used by two nodes"));
                }
                a
            }
            Err(e) => {
                bad(format!("{k}.address"), e);
                IpAddr::from([0, 0, 0, 0])
            }
        };
        let mac = n.mac.as_deref().and_then(|s| match parse_mac(s) {
            Ok(m) if not_a_station(&m).is_some() => {
                bad(
                    format!("{k}.mac"),
                    not_a_station(&m).unwrap_or_default().into(),
                );
                None
            }
            Ok(m) => Some(m),
            Err(e) => {
                bad(format!("{k}.mac"), e);
                None
            }
        });
        let sync = match n.sync.parse::<SocketAddr>() {
            Ok(s) if s.port() == 0 || s.ip().is_unspecified() || s.ip().is_multicast() => {
                bad(
                    format!("{k}.sync"),
                    format!(
                        "\"{}\" must name one host's address and a port above 0",
                        n.sync
                    ),
                );
                s
            }
            Ok(s) => {
                if !syncs.insert(s) {
                    bad(format!("{k}.sync"), format!("{s} is used by two nodes"));
                }
                s
            }
            Err(_) => {
                bad(
                    format!("{k}.sync"),
                    format!("\"{}\" is not an address:port", n.sync),
                );
                SocketAddr::from(([0, 0, 0, 0], 0))
            }
        };
        if u32::from(id) == node_id {
            let own = ports.iter().any(|p| match address {
                IpAddr::V4(a) => p.ipv4.is_some_and(|(x, _)| x == a),
                IpAddr::V6(a) => p.ipv6.is_some_and(|(x, _)| x == a),
            });
            if !own {
                bad(
                    format!("{k}.address"),
                    "this node's address must be one of its ports' addresses (peers send encapsulated packets to it)".into(),
                );
            }
        }
        nodes.push(NodeConfig {
            id,
            weight: n.weight,
            address,
            mac,
            sync,
        });
    }
    if !c.node.iter().any(|n| n.id == node_id) {
        bad(
            "cluster.node".into(),
            format!("no entry for this node ([node].id = {node_id})"),
        );
    }
    if c.node.len() < 2 {
        bad(
            "cluster.node".into(),
            "a cluster needs at least two nodes (leave [cluster] out for one)".into(),
        );
    }
    nodes.sort_by_key(|n| n.id);
    let mut ck = Checker { problems };
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
    let problems = ck.problems;
    let forward_port = c.forward_port.unwrap_or(DEFAULT_FORWARD_PORT);
    if forward_port == 0 {
        problems.push(Problem {
            key: "cluster.forward_port".into(),
            why: "must not be 0".into(),
        });
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
