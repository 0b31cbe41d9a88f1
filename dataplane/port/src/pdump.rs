//! Live capture: DPDK's packet-capture framework, so Debian's `dpdk-dumpcap` (a secondary
//! process) can copy any port's received and sent frames while the node runs. The node
//! registers the server side once after the EAL starts; capture then costs nothing until a
//! dumpcap asks for it, when DPDK adds RX/TX callbacks to the ports it names (the workers'
//! `rte_eth_rx_burst`/`rte_eth_tx_burst` run them: see `ffi`'s shim).

use crate::DpdkError;
use tandem_ffi as ffi;

/// Registers the capture server; after `Eal::init`, in the primary process. A secondary
/// can attach only to a primary whose memory it can map: on hugepages, not `--no-huge` or
/// `--in-memory` (`shares_memory`).
pub fn init() -> Result<(), DpdkError> {
    // SAFETY: called once after the EAL is up, on the main lcore's thread; it registers a
    // multi-process action and allocates its rings from the EAL's memory.
    let rc = unsafe { ffi::rte_pdump_init() };
    if rc < 0 {
        return Err(DpdkError {
            what: "rte_pdump_init (live capture)".into(),
            // SAFETY: reads the calling thread's rte_errno.
            code: unsafe { ffi::tandem_errno() },
        });
    }
    Ok(())
}

/// Unregisters the capture server before the EAL is cleaned up.
pub fn uninit() {
    // SAFETY: after `init`, before `rte_eal_cleanup`; it only unregisters the action.
    unsafe {
        ffi::rte_pdump_uninit();
    }
}

/// True when a secondary process (dumpcap, dpdk-proc-info) can attach to a primary run
/// with these EAL arguments.
pub fn shares_memory(eal_args: &[String]) -> bool {
    !eal_args
        .iter()
        .any(|a| a == "--no-huge" || a == "--in-memory")
}

/// The EAL file prefix these arguments give the primary (the last `--file-prefix` wins;
/// DPDK's default is "rte"): what a secondary process names to find it.
pub fn file_prefix(eal_args: &[String]) -> String {
    let mut prefix = "rte".to_string();
    let mut it = eal_args.iter();
    while let Some(a) = it.next() {
        if let Some(p) = a.strip_prefix("--file-prefix=") {
            prefix = p.to_string();
        } else if a == "--file-prefix" {
            if let Some(p) = it.next() {
                prefix = p.clone();
            }
        }
    }
    prefix
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn the_prefix_and_whether_a_secondary_can_attach() {
        assert_eq!(file_prefix(&args("--no-pci")), "rte");
        assert_eq!(
            file_prefix(&args("--file-prefix a -m 1 --file-prefix=b")),
            "b"
        );
        assert_eq!(file_prefix(&args("--file-prefix=b --file-prefix c")), "c");
        assert!(shares_memory(&args("-m 512 --file-prefix x")));
        assert!(!shares_memory(&args("--no-huge -m 512")));
        assert!(!shares_memory(&args("--in-memory")));
    }
}
