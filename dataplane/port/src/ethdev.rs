//! Ethernet ports: find a port by device name, configure it with one RX and one TX queue per
//! worker, start, stop, close, and read its link and counters.

use crate::mbuf::{Mempool, RawMbuf};
use crate::{check, DpdkError};
use std::ffi::CString;
use tandem_ffi as ffi;

#[derive(Debug, Clone, Copy, Default)]
pub struct PortStats {
    pub ipackets: u64,
    pub opackets: u64,
    pub ibytes: u64,
    pub obytes: u64,
    pub imissed: u64,
    pub ierrors: u64,
    pub oerrors: u64,
    pub rx_nombuf: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct Link {
    pub up: bool,
    pub speed_mbps: u32,
}

/// A started ethdev port.
#[derive(Debug, Clone, Copy)]
pub struct EthPort {
    pub id: u16,
    pub queues: u16,
}

/// A port's queues: one RX and one TX queue per worker, each ring this many descriptors.
#[derive(Clone, Copy)]
pub struct Queues {
    pub pairs: u16,
    pub rx_descriptors: u16,
    pub tx_descriptors: u16,
}

impl Queues {
    /// `pairs` queue pairs of 1024 descriptors each.
    pub fn of(pairs: u16) -> Queues {
        Queues {
            pairs,
            rx_descriptors: 1024,
            tx_descriptors: 1024,
        }
    }
}

impl EthPort {
    /// Looks a port up by its device name (the devargs up to the first comma).
    pub fn by_name(name: &str) -> Result<u16, DpdkError> {
        let c = CString::new(name).unwrap_or_default();
        let mut id = 0u16;
        // SAFETY: valid after EAL init; `id` is a valid out pointer.
        let rc = unsafe { ffi::rte_eth_dev_get_port_by_name(c.as_ptr(), &mut id) };
        check(
            rc,
            format!("no DPDK port named {name} (is its devargs right?)"),
        )?;
        Ok(id)
    }

    /// Configures the queue pairs `q` asks for, sets the MAC if asked, enables promiscuous
    /// mode (frames for VIPs carry the port's MAC but an af_packet port may see others), and
    /// starts the port.
    pub fn start(
        id: u16,
        q: Queues,
        pool: &Mempool,
        mac: Option<[u8; 6]>,
    ) -> Result<EthPort, DpdkError> {
        let Queues {
            pairs: queues,
            rx_descriptors: rx_desc,
            tx_descriptors: tx_desc,
        } = q;
        let mut info = ffi::rte_eth_dev_info::default();
        // SAFETY: `info` is a valid out pointer; the port id exists.
        check(
            unsafe { ffi::rte_eth_dev_info_get(id, &mut info) },
            "rte_eth_dev_info_get",
        )?;
        if info.max_rx_queues < queues || info.max_tx_queues < queues {
            return Err(DpdkError {
                what: format!(
                    "port {id} ({}) has {} RX / {} TX queues, {queues} workers need one each \
                     (for net_af_packet add qpairs={queues} to devargs)",
                    driver_name(&info),
                    info.max_rx_queues,
                    info.max_tx_queues
                ),
                code: libc::EINVAL,
            });
        }
        let conf = ffi::rte_eth_conf::default();
        // SAFETY: conf is a zeroed, valid configuration (no offloads, no RSS).
        check(
            unsafe { ffi::rte_eth_dev_configure(id, queues, queues, &conf) },
            format!("rte_eth_dev_configure port {id}"),
        )?;
        // SAFETY: plain query.
        let socket = unsafe { ffi::rte_eth_dev_socket_id(id) };
        let socket = if socket < 0 { 0 } else { socket as u32 };
        for q in 0..queues {
            // SAFETY: the port is configured with `queues` queues; the pool outlives the port.
            check(
                unsafe {
                    ffi::rte_eth_rx_queue_setup(id, q, rx_desc, socket, std::ptr::null(), pool.ptr)
                },
                format!("rte_eth_rx_queue_setup port {id} queue {q}"),
            )?;
            // SAFETY: as above.
            check(
                unsafe { ffi::rte_eth_tx_queue_setup(id, q, tx_desc, socket, std::ptr::null()) },
                format!("rte_eth_tx_queue_setup port {id} queue {q}"),
            )?;
        }
        if let Some(m) = mac {
            let mut addr = ffi::rte_ether_addr { addr_bytes: m };
            // SAFETY: valid port and address.
            let rc = unsafe { ffi::rte_eth_dev_default_mac_addr_set(id, &mut addr) };
            if rc < 0 {
                tracing::warn!(
                    port = id,
                    "could not set the port's MAC ({}); using it in software",
                    crate::eal::strerror(-rc)
                );
            }
        }
        // SAFETY: configured port.
        check(
            unsafe { ffi::rte_eth_dev_start(id) },
            format!("rte_eth_dev_start port {id}"),
        )?;
        // SAFETY: started port; failure is harmless (some PMDs have no promiscuous mode).
        unsafe {
            ffi::rte_eth_promiscuous_enable(id);
            ffi::rte_eth_allmulticast_enable(id);
        }
        Ok(EthPort { id, queues })
    }

    pub fn mac(&self) -> [u8; 6] {
        let mut a = ffi::rte_ether_addr::default();
        // SAFETY: valid port and out pointer.
        unsafe { ffi::rte_eth_macaddr_get(self.id, &mut a) };
        a.addr_bytes
    }

    pub fn link(&self) -> Link {
        let mut l = ffi::rte_eth_link::default();
        // SAFETY: valid port and out pointer; never blocks.
        let rc = unsafe { ffi::rte_eth_link_get_nowait(self.id, &mut l) };
        if rc < 0 {
            return Link {
                up: true,
                speed_mbps: 0,
            };
        }
        Link {
            up: l.link_status() != 0,
            speed_mbps: l.link_speed,
        }
    }

    pub fn stats(&self) -> PortStats {
        let mut s = ffi::rte_eth_stats::default();
        // SAFETY: valid port and out pointer.
        unsafe { ffi::rte_eth_stats_get(self.id, &mut s) };
        PortStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            ibytes: s.ibytes,
            obytes: s.obytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        }
    }

    /// Stops and closes the port (a pcap PMD flushes and closes its output file here).
    pub fn stop_and_close(&self) {
        // SAFETY: no worker polls the port any more (the caller waited for them).
        unsafe {
            ffi::rte_eth_dev_stop(self.id);
            ffi::rte_eth_dev_close(self.id);
        }
    }

    #[inline(always)]
    pub fn rx_burst(&self, queue: u16, pkts: &mut [RawMbuf]) -> usize {
        // SAFETY: each queue is polled by exactly one worker; `pkts` has room for len.
        usize::from(unsafe {
            ffi::tandem_rx_burst(self.id, queue, pkts.as_mut_ptr(), pkts.len() as u16)
        })
    }

    #[inline(always)]
    pub fn tx_burst(&self, queue: u16, pkts: &mut [RawMbuf]) -> usize {
        // SAFETY: each TX queue is used by exactly one worker; mbuf ownership passes to the
        // PMD for the first `n` returned.
        usize::from(unsafe {
            ffi::tandem_tx_burst(self.id, queue, pkts.as_mut_ptr(), pkts.len() as u16)
        })
    }
}

fn driver_name(info: &ffi::rte_eth_dev_info) -> String {
    if info.driver_name.is_null() {
        return "?".into();
    }
    // SAFETY: DPDK fills driver_name with a static NUL-terminated string.
    unsafe {
        std::ffi::CStr::from_ptr(info.driver_name)
            .to_string_lossy()
            .into_owned()
    }
}

/// The kernel's view of an interface's link, for PMDs that report "always up" (net_af_packet
/// on a veth): true unless /sys says the interface is down.
pub fn kernel_link_up(iface: &str) -> Option<bool> {
    let s = std::fs::read_to_string(format!("/sys/class/net/{iface}/operstate")).ok()?;
    let s = s.trim();
    Some(s == "up" || s == "unknown")
}

/// The kernel's packet sockets on one interface (a net_af_packet port's queues), found
/// through /proc: `/proc/net/packet` names each packet socket's interface and inode, and
/// `/proc/self/fd` which of our descriptors is that inode. The PMD keeps its sockets to
/// itself and reports no drops, so this is how the ring's losses are read.
pub struct PacketSockets {
    fds: Vec<i32>,
}

impl PacketSockets {
    /// This process's packet sockets bound to `iface`; empty when there are none (or /proc
    /// cannot be read).
    pub fn of(iface: &str) -> PacketSockets {
        let ifindex: Option<u32> =
            std::fs::read_to_string(format!("/sys/class/net/{iface}/ifindex"))
                .ok()
                .and_then(|s| s.trim().parse().ok());
        let Some(ifindex) = ifindex else {
            return PacketSockets { fds: Vec::new() };
        };
        let inodes: Vec<u64> = std::fs::read_to_string("/proc/net/packet")
            .unwrap_or_default()
            .lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let on = f.get(4)?.parse::<u32>().ok()? == ifindex;
                on.then(|| f.get(8)?.parse().ok()).flatten()
            })
            .collect();
        let mut fds = Vec::new();
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            for e in dir.flatten() {
                let Ok(target) = std::fs::read_link(e.path()) else {
                    continue;
                };
                let t = target.to_string_lossy();
                let inode = t
                    .strip_prefix("socket:[")
                    .and_then(|r| r.strip_suffix(']'))
                    .and_then(|n| n.parse::<u64>().ok());
                let fd = e.file_name().to_string_lossy().parse::<i32>().ok();
                if let (Some(i), Some(fd)) = (inode, fd) {
                    if inodes.contains(&i) {
                        fds.push(fd);
                    }
                }
            }
        }
        PacketSockets { fds }
    }

    /// Frames the kernel dropped on these sockets' rings since the last call (the kernel
    /// resets its counts when they are read).
    pub fn take_drops(&self) -> u64 {
        let mut drops = 0;
        for &fd in &self.fds {
            // tpacket_stats_v3 is the larger of the two layouts; the kernel fills what fits.
            let mut st = [0u32; 3];
            let mut len = std::mem::size_of_val(&st) as libc::socklen_t;
            // SAFETY: `fd` is a packet socket of this process (found above and held open by
            // the PMD while the port runs); the buffer and its length are ours and valid.
            let rc = unsafe {
                libc::getsockopt(
                    fd,
                    libc::SOL_PACKET,
                    6, // PACKET_STATISTICS
                    st.as_mut_ptr().cast(),
                    &mut len,
                )
            };
            if rc == 0 {
                drops += u64::from(st[1]);
            }
        }
        drops
    }
}
