//! Finds the system DPDK with pkg-config, generates narrow bindings and compiles the C shim
//! with exactly DPDK's own compiler flags (its `-march` and `-include rte_config.h` matter for
//! the inline rte_memcpy/ring code the shim pulls in).

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src/shim.c");
    println!("cargo:rerun-if-changed=src/shim.h");
    let lib = match pkg_config::Config::new()
        .atleast_version("22.11")
        .cargo_metadata(false)
        .probe("libdpdk")
    {
        Ok(lib) => lib,
        Err(e) => {
            eprintln!(
                "\n\ntandem-ffi: the system DPDK (pkg-config libdpdk >= 22.11) was not found: {e}\n\
                 Run `scripts/setup` (as root) to install libdpdk-dev and the other packages tandem needs.\n\n"
            );
            std::process::exit(1);
        }
    };

    // Link every DPDK library with --no-as-needed so the PMD constructors (net_pcap,
    // net_memif, ...) that the shared build loads from its plugin folder find their deps.
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    for path in &lib.link_paths {
        println!("cargo:rustc-link-search=native={}", path.display());
    }
    for l in &lib.libs {
        println!("cargo:rustc-link-lib=dylib={l}");
    }

    let cflags = pkg_config::get_variable("libdpdk", "cflags").unwrap_or_default();
    let mut flags: Vec<String> = Vec::new();
    let out = std::process::Command::new("pkg-config")
        .args(["--cflags", "libdpdk"])
        .output()
        .expect("pkg-config runs");
    let all = String::from_utf8_lossy(&out.stdout).to_string() + " " + &cflags;
    for f in all.split_whitespace() {
        if !flags.iter().any(|x| x == f) || f == "-include" {
            flags.push(f.to_string());
        }
    }

    let mut build = cc::Build::new();
    build.file("src/shim.c").warnings(false).opt_level(3);
    let mut it = flags.iter();
    while let Some(f) = it.next() {
        if f == "-include" {
            if let Some(h) = it.next() {
                build.flag("-include").flag(h);
            }
        } else {
            build.flag(f);
        }
    }
    build.compile("tandem_shim");

    let mut clang_args: Vec<String> = Vec::new();
    let mut it = flags.iter();
    while let Some(f) = it.next() {
        if f == "-include" {
            if let Some(h) = it.next() {
                clang_args.push("-include".into());
                clang_args.push(h.clone());
            }
        } else if f.starts_with("-I") || f.starts_with("-D") {
            clang_args.push(f.clone());
        }
    }

    let bindings = bindgen::Builder::default()
        .header("src/shim.h")
        .clang_args(&clang_args)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        // The port layer's whole surface; protocol headers are parsed in Rust, not here.
        .allowlist_function("rte_eal_init")
        .allowlist_function("rte_eal_cleanup")
        .allowlist_function("rte_eal_remote_launch")
        .allowlist_function("rte_eal_wait_lcore")
        .allowlist_function("rte_eal_mp_wait_lcore")
        .allowlist_function("rte_get_main_lcore")
        .allowlist_function("rte_lcore_to_cpu_id")
        .allowlist_function("rte_socket_id")
        .allowlist_function("rte_lcore_to_socket_id")
        .allowlist_function("rte_pktmbuf_pool_create")
        .allowlist_function("rte_mempool_free")
        .allowlist_function("rte_mempool_avail_count")
        .allowlist_function("rte_mempool_in_use_count")
        .allowlist_function("rte_eth_dev_count_avail")
        .allowlist_function("rte_eth_dev_get_port_by_name")
        .allowlist_function("rte_eth_dev_socket_id")
        .allowlist_function("rte_eth_dev_info_get")
        .allowlist_function("rte_eth_dev_configure")
        .allowlist_function("rte_eth_rx_queue_setup")
        .allowlist_function("rte_eth_tx_queue_setup")
        .allowlist_function("rte_eth_dev_start")
        .allowlist_function("rte_eth_dev_stop")
        .allowlist_function("rte_eth_dev_close")
        .allowlist_function("rte_eth_macaddr_get")
        .allowlist_function("rte_eth_dev_default_mac_addr_set")
        .allowlist_function("rte_eth_promiscuous_enable")
        .allowlist_function("rte_eth_allmulticast_enable")
        .allowlist_function("rte_eth_link_get_nowait")
        .allowlist_function("rte_eth_stats_get")
        .allowlist_function("rte_strerror")
        .allowlist_function("rte_get_tsc_hz")
        .allowlist_function("rte_pdump_init")
        .allowlist_function("rte_pdump_uninit")
        .allowlist_function("rte_telemetry_register_cmd")
        .allowlist_function("rte_tel_data_.*")
        .allowlist_function("tandem_.*")
        .allowlist_type("rte_mbuf")
        .allowlist_type("rte_eth_link")
        .allowlist_type("rte_eth_stats")
        .allowlist_type("rte_eth_dev_info")
        .allowlist_type("rte_eth_conf")
        .allowlist_type("rte_ether_addr")
        .allowlist_var("RTE_MAX_ETHPORTS")
        .allowlist_var("RTE_PKTMBUF_HEADROOM")
        .allowlist_var("RTE_MBUF_DEFAULT_BUF_SIZE")
        .allowlist_var("RTE_ETH_LINK_UP")
        .allowlist_var("RTE_TEL_MAX_DICT_ENTRIES")
        .opaque_type("rte_l2tpv2_combined_msg_hdr")
        .opaque_type("rte_gtp_psc_generic_hdr")
        .derive_debug(false)
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .generate()
        .expect("bindgen over the DPDK headers");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("write bindings");
}
