//! Flows: the key, the record, and the per-worker table.

pub mod fragments;
pub mod key;
pub mod record;
pub mod table;

pub use key::{FlowKey, Tuple4};
pub use record::{FlowRecord, FlowState, Mark, Timeouts, UNBOUND};
pub use table::{Capacity, FlowTable, Insert};
