//! tandem's control plane, with no DPDK in it: the control thread's state (`state`), the
//! commands it answers (`commands`), the control socket (`socket`) and its client
//! (`client`); `metrics` is the Prometheus endpoint; `cluster` is membership and the sync channel between nodes; `qos` is health,
//! latency windows, QoS factors and standbys. The port layer (`tandem-port`) wires it to
//! DPDK ports and workers.

// No unsafe code here: only the ffi crate and the DPDK port layer have any.
#![forbid(unsafe_code)]

pub mod bgp;
pub mod client;
pub mod cluster;
pub mod commands;
pub mod flowmap;
pub mod metrics;
pub mod qos;
pub mod socket;
pub mod state;
pub mod systemd;
