//! What the fuzz targets share: the node they run against, one on its own and one that is
//! node 1 of a three-node cluster, with nat, dsr and gue services, admission, IPv4 and IPv6.

use std::sync::Arc;
use tandem_config::Config;
use tandem_dataplane::counters::WorkerCounters;
use tandem_dataplane::flow::Timeouts;
use tandem_dataplane::pipeline::Core;
use tandem_dataplane::services::Services;

pub const PORT_MACS: [[u8; 6]; 2] = [[2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]];

pub const NODE: &str = r#"
[node]
id = 1
[eal]
args = []
[[port]]
name = "front"
devargs = "net_null0"
ipv4 = "10.0.0.1/24"
ipv6 = "fd00::1/64"
gateway = "10.0.0.254"
[[port]]
name = "back"
devargs = "net_null1"
ipv4 = "10.1.0.1/24"
ipv6 = "fd01::1/64"
[health]
probe = "tcp"
[[service]]
name = "web"
vip = "192.0.2.10"
port = 80
protocol = "tcp"
mode = "nat"
queue = { max_len = 4, max_wait = "10ms" }
[[service.backend]]
name = "a"
address = "10.1.0.11"
port = 8080
max_flows = 2
paths = [{ port = "back", mac = "02:00:00:00:01:11" }, { port = "front" }]
[[service.backend]]
name = "b"
address = "10.1.0.12"
port = 8080
paths = [{ port = "back" }]
[[service]]
name = "dns"
vip = "192.0.2.20"
port = 53
protocol = "udp"
mode = "dsr"
[[service.backend]]
name = "c"
address = "10.1.0.13"
paths = [{ port = "back", mac = "02:00:00:00:01:13" }]
[[service]]
name = "h3"
vip = "192.0.2.30"
port = 443
protocol = "quic"
mode = "nat"
quic = { config_id = 1, server_id_len = 2, nonce_len = 6 }
[[service.backend]]
name = "q1"
address = "10.1.0.21"
port = 4433
server_id = "0a01"
paths = [{ port = "back", mac = "02:00:00:00:01:21" }]
[[service.backend]]
name = "q2"
address = "10.1.0.22"
port = 4433
server_id = "0a02"
paths = [{ port = "back" }]
[[service]]
name = "v6"
vip = "2001:db8::10"
port = 443
protocol = "tcp"
mode = "gue"
[[service.backend]]
name = "d"
address = "fd01::14"
paths = [{ port = "back" }]
"#;

pub const CLUSTER: &str = r#"
[cluster]
secret_file = "/dev/null"
[[cluster.node]]
id = 1
address = "10.0.0.1"
sync = "127.0.0.1:7201"
[[cluster.node]]
id = 2
address = "10.0.0.2"
mac = "02:00:00:00:00:22"
sync = "127.0.0.1:7202"
[[cluster.node]]
id = 3
address = "10.0.0.3"
sync = "127.0.0.1:7203"
"#;

/// The node's config, on its own or in the cluster.
pub fn config(clustered: bool) -> Config {
    let text = if clustered {
        format!("{NODE}{CLUSTER}")
    } else {
        NODE.to_string()
    };
    let mut cfg = Config::from_toml(&text).expect("the fuzz node's config is valid");
    // The quic service's IDs encrypted (a key the file would name).
    if let Some(q) = cfg.services.iter_mut().find_map(|s| s.quic.as_mut()) {
        q.key = Some(QUIC_KEY);
    }
    cfg
}

/// The fuzz node's QUIC-LB key.
pub const QUIC_KEY: [u8; 16] = *b"tandem-fuzz-key!";

/// A packet core for the node, as a worker holds it.
pub fn core(clustered: bool) -> Core {
    let cfg = config(clustered);
    let services = Services::from_config(&cfg, &PORT_MACS);
    let services = match cfg.cluster.as_ref() {
        Some(cl) => {
            let view = tandem_dataplane::cluster::ClusterView::new(cl, 1, &services.ports);
            services.with_cluster(view)
        }
        None => services,
    };
    let timeouts = Timeouts::of(&cfg.flows);
    let mut c = Core::new(
        0,
        1024,
        timeouts,
        Arc::new(services),
        Arc::new(WorkerCounters::default()),
        7,
    );
    if clustered {
        let all = tandem_dataplane::cluster::Membership {
            serving: 0b111,
            eligible: 0b111,
        };
        c.set_now(tandem_dataplane::pipeline::Now::from_ms(0));
        c.apply(tandem_dataplane::messages::ToWorker::Nodes(all));
    }
    c
}
