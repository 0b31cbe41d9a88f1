//! `qos` (the default): two candidates drawn from a table weighted by weight x QoS factor
//! x slow-start ramp, the one with fewer active flows per unit of that winning (README,
//! "Quality of service").

use super::maglev::Maglev;
use super::{p2c, Algorithm, Inputs};
use crate::qos::admission::Load;
use crate::qos::live::BackendLive;

pub(super) struct Qos;

impl Algorithm for Qos {
    #[inline]
    fn pick(&self, table: &Maglev, inputs: &[Inputs], load: &Load, hash: u64) -> Option<u16> {
        // Load per unit of weight: with no flows anywhere both candidates tie and the first
        // draw (already in proportion to the weights) wins, so shares follow the weights at
        // low load; an (active + 1) numerator would hand every tie to the heavier backend.
        p2c::pick(table, hash, |b| {
            f64::from(load.active(b)) / inputs[usize::from(b)].qos_weight.max(1e-6)
        })
    }

    /// Weight x factor x ramp in thousandths, at least 1 so a slow backend keeps a trickle
    /// of flows and its measurements stay current.
    fn table_weight(&self, weight: u32, live: &BackendLive) -> u32 {
        let f = (live.factor * live.ramp).clamp(0.0, 1.0);
        ((f64::from(weight) * f * 1000.0).round() as u32).max(u32::from(weight > 0))
    }

    fn reads_live(&self, old: &BackendLive, new: &BackendLive) -> bool {
        (old.factor - new.factor).abs() > 1e-9 || (old.ramp - new.ramp).abs() > 0.01
    }
}
