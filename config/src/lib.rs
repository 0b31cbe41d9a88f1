//! tandem's configuration: the TOML schema (`schema`), the value parsers (`units`) and the
//! validation that turns a file into a [`Config`] or into the full list of its problems,
//! each naming its key and why.

pub mod cluster;
pub mod qos;
pub mod schema;
pub mod units;
mod validate;

pub use cluster::{ClusterConfig, NodeConfig};
pub use qos::{
    HealthConfig, OnBackendDown, ProbeMethod, QosConfig, QueueConfig, Selection, StandbyConfig,
};
pub use validate::*;
