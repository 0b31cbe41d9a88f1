//! Selection: which backend a new flow goes to, and over which paths (`path`). Each
//! algorithm is one file here behind `Algorithm`, as pingora's `selection/` does; the
//! algorithms are the ones config's `for_each_selection!` lists, each with its file, so
//! adding one is its line there and its file here. `maglev` (the weighted table every
//! algorithm draws from) and `p2c` (two choices) are the pieces they are built of.

pub mod maglev;
pub mod p2c;
pub mod path;

use crate::qos::admission::Load;
use crate::qos::live::BackendLive;
use maglev::Maglev;
use tandem_config::Selection;

/// What selection reads of a backend (the snapshot keeps one per backend id).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Inputs {
    /// The configured weight.
    pub weight: u32,
    /// Weight x QoS factor x ramp: the capacity the `qos` selection compares flows against.
    pub qos_weight: f64,
    /// The backend's peak-EWMA latency estimate in microseconds (`peak_ewma`).
    pub ewma_us: u32,
}

/// A backend selection algorithm.
pub trait Algorithm {
    /// The backend a new flow with flow hash `hash` goes to: drawn from the service's
    /// `table`, weighed by what is known of each backend (`inputs`, by id) and its active
    /// flows (`load`). None: the service has no backend taking flows.
    fn pick(&self, table: &Maglev, inputs: &[Inputs], load: &Load, hash: u64) -> Option<u16>;

    /// A backend's weight in the service's table, from its configured weight and what the
    /// control thread has measured of it (`live`); 0 takes no new flows.
    fn table_weight(&self, weight: u32, _live: &BackendLive) -> u32 {
        weight
    }

    /// True when `pick` reads active flow counts (every new flow is then counted).
    fn counts_flows(&self) -> bool {
        true
    }

    /// True when a change from `old` to `new` in what is measured of a backend changes
    /// what `pick` or `table_weight` decide (the workers then get a new snapshot).
    fn reads_live(&self, _old: &BackendLive, _new: &BackendLive) -> bool {
        false
    }
}

/// The registry, from config's list: each algorithm's file, `pick` (the per-flow call,
/// dispatched statically so it inlines) and `algorithm` (the rest).
macro_rules! algorithms {
    ($($(#[doc = $doc:literal])* $v:ident => $name:literal => $m:ident :: $t:ident,)*) => {
        $(mod $m;)*

        /// The backend a new flow goes to, by the configured selection.
        #[inline]
        pub fn pick(
            sel: Selection,
            table: &Maglev,
            inputs: &[Inputs],
            load: &Load,
            hash: u64,
        ) -> Option<u16> {
            match sel {
                $(Selection::$v => $m::$t.pick(table, inputs, load, hash),)*
            }
        }

        /// The algorithm behind a selection.
        pub fn algorithm(sel: Selection) -> &'static dyn Algorithm {
            match sel {
                $(Selection::$v => &$m::$t,)*
            }
        }
    };
}

tandem_config::for_each_selection!(algorithms);

/// A backend's configured weight as a cost divisor (never zero).
#[inline]
fn weight_of(inputs: &[Inputs], b: u16) -> f64 {
    f64::from(inputs[usize::from(b)].weight.max(1))
}
