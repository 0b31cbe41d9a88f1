//! `weights`: plain weighted consistent hashing (Maglev), no feedback: the flow's hash
//! picks its backend from the service's table.

use super::Algorithm;
use crate::qos::admission::Load;
use crate::services::{Backend, Service};

pub(super) struct Weights;

impl Algorithm for Weights {
    #[inline]
    fn pick(&self, svc: &Service, _: &[Backend], _: &Load, hash: u64) -> Option<u16> {
        svc.maglev.lookup(hash)
    }

    fn counts_flows(&self) -> bool {
        false
    }
}
