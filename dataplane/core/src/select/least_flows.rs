//! `least_flows`: power of two choices on active flows per unit of weight (an anchor QoS
//! selection is measured against).

use super::maglev::Maglev;
use super::{p2c, weight_of, Algorithm, Inputs};
use crate::qos::admission::Load;

pub(super) struct LeastFlows;

impl Algorithm for LeastFlows {
    #[inline]
    fn pick(&self, table: &Maglev, inputs: &[Inputs], load: &Load, hash: u64) -> Option<u16> {
        p2c::pick(table, hash, |b| {
            f64::from(load.active(b)) / weight_of(inputs, b)
        })
    }
}
