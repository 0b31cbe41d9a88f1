//! tandem's configuration, in the order a file goes through it: `schema` (the TOML as
//! written, serde types), `load` (text to schema, every value of the wrong type reported
//! with its key), `validate` (one file per section: schema to model, every problem with
//! its key and why), `model` (the checked [`Config`] a node runs from). `units` parses
//! durations, addresses and MACs; `problem` is what a check reports.

// No unsafe code here: only the ffi crate and the DPDK port layer have any.
#![forbid(unsafe_code)]

mod load;
pub mod model;
mod problem;
pub mod reference;
pub mod schema;
pub mod units;
mod validate;
pub mod write;

#[cfg(test)]
mod reference_tests;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

pub use load::read_owner_only;
pub use model::*;
pub use problem::Problem;
