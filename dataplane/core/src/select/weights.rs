//! `weights`: plain weighted consistent hashing (Maglev), no feedback: the flow's hash
//! picks its backend from the service's table.

use super::maglev::Maglev;
use super::{Algorithm, Inputs};
use crate::qos::admission::Load;

pub(super) struct Weights;

impl Algorithm for Weights {
    #[inline]
    fn pick(&self, table: &Maglev, _: &[Inputs], _: &Load, hash: u64) -> Option<u16> {
        table.lookup(hash)
    }

    fn counts_flows(&self) -> bool {
        false
    }
}
