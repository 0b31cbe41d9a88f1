//! tandem's control plane: the control thread's state (`state`), the commands it answers
//! (`commands`), the control socket (`socket`) and its client (`client`), and the daemon
//! that wires DPDK ports, workers and the control loop together (`daemon`); `cluster` is
//! membership and the sync channel between nodes; `qos` is health, latency windows, QoS
//! factors and standbys; `gen` is the load generator (`tandem gen`).

pub mod client;
pub mod cluster;
pub mod commands;
pub mod daemon;
pub mod flowmap;
pub mod gen;
pub mod qos;
pub mod socket;
pub mod state;
