//! `least_flows`: power of two choices on active flows per unit of weight (an anchor QoS
//! selection is measured against).

use super::{p2c, weight_of, Algorithm};
use crate::qos::admission::Load;
use crate::services::{Backend, Service};

pub(super) struct LeastFlows;

impl Algorithm for LeastFlows {
    #[inline]
    fn pick(&self, svc: &Service, backends: &[Backend], load: &Load, hash: u64) -> Option<u16> {
        p2c::pick(&svc.maglev, hash, |b| {
            f64::from(load.active(b)) / weight_of(backends, b)
        })
    }
}
