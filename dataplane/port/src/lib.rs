//! The DPDK port layer: the only crate above `ffi` that touches DPDK. It initialises the
//! EAL, creates mempools, configures ports (one RX and one TX queue per worker), runs the
//! pinned worker loops that move mbufs between the NIC queues and the packet core
//! (`tandem-dataplane`) and drives the load generator's I/O (`gen`). It knows nothing of
//! the control thread: `tandem-node` wires the two together.
//! Every `unsafe` block above `ffi` lives here, each with its `SAFETY:` reason.

pub mod eal;
pub mod ethdev;
pub mod gen;
pub mod mbuf;
pub mod memory;
pub mod pdump;
pub mod siblings;
pub mod telemetry;
pub mod twin;
pub mod worker;

/// A DPDK call failed: what we were doing and DPDK's own words.
#[derive(Debug)]
pub struct DpdkError {
    pub what: String,
    pub code: i32,
}

impl std::fmt::Display for DpdkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} (code {})",
            self.what,
            eal::strerror(self.code),
            self.code
        )
    }
}

impl std::error::Error for DpdkError {}

pub(crate) fn check(rc: i32, what: impl Into<String>) -> Result<i32, DpdkError> {
    if rc < 0 {
        Err(DpdkError {
            what: what.into(),
            code: -rc,
        })
    } else {
        Ok(rc)
    }
}
