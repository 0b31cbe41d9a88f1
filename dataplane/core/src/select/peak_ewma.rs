//! `peak_ewma`: Finagle's and Linkerd's cost, latency (the peak EWMA the control thread
//! keeps) x (active flows + 1) per unit of weight, compared between two choices (an anchor
//! QoS selection is measured against).

use super::maglev::Maglev;
use super::{p2c, weight_of, Algorithm, Inputs};
use crate::qos::admission::Load;
use crate::qos::live::BackendLive;

pub(super) struct PeakEwma;

impl Algorithm for PeakEwma {
    #[inline]
    fn pick(&self, table: &Maglev, inputs: &[Inputs], load: &Load, hash: u64) -> Option<u16> {
        p2c::pick(table, hash, |b| {
            let ewma = f64::from(inputs[usize::from(b)].ewma_us.max(1));
            ewma * f64::from(load.active(b) + 1) / weight_of(inputs, b)
        })
    }

    fn reads_live(&self, old: &BackendLive, new: &BackendLive) -> bool {
        old.ewma_us != new.ewma_us
    }
}
