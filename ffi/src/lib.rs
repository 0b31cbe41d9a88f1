//! Raw bindings to the system DPDK 22.11: a narrow bindgen allowlist (the ~40 functions and
//! types the port layer calls) and `tandem_*` wrappers from `shim.c` for DPDK's static-inline
//! functions. Nothing here is safe to call directly; `tandem-dataplane`'s `port` module wraps it.
#![allow(
    non_upper_case_globals,
    non_camel_case_types,
    non_snake_case,
    dead_code
)]
#![allow(clippy::all)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
