//! Selection: which backend a new flow goes to (`maglev` by weight, or by weight times QoS
//! factor; `p2c` for the load- and latency-aware anchors) and over which paths (`path`).

pub mod maglev;
pub mod p2c;
pub mod path;
