//! tandem's data plane.
//!
//! The packet logic (`wire`, `flow`, `select`, `services`, `neighbor`, `pipeline`) works on
//! byte slices and takes `now` as an argument: no DPDK, no clock, no allocation per packet,
//! so it is unit-tested, property-tested and fuzzed without an EAL; nothing in this crate's
//! dependency tree is DPDK. The thin DPDK layer under it (EAL, mempools, ethdev ports, the
//! pinned worker loops) is the `tandem-port` crate next to it. `qos` holds what
//! the packet path measures (latency histograms, probes) and admits (flow counts, queues).

// No unsafe code here: only the ffi crate and the DPDK port layer have any.
#![forbid(unsafe_code)]

pub mod cluster;
pub mod counters;
pub mod fasthash;
pub mod flow;
pub mod gen;
pub mod messages;
pub mod neighbor;
pub mod parking;
pub mod pipeline;
pub mod ports;
pub mod qos;
pub mod select;
pub mod services;
/// Frame builders for tests, benches and the fuzz seeds: not in the product's build.
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod trace;
pub mod wire;
