//! A port's kernel twin (`[[port]] kernel = "IFNAME"`): a TAP interface, DPDK's `net_tap`
//! PMD, with the port's MAC, MTU and addresses, so that the node's own traffic tandem does
//! not consume (BGP to the router, BFD, SSH) reaches the kernel and a routing daemon on the
//! node has an interface to speak over. Like DPVS's KNI interfaces, but with nothing to
//! load: the TAP is not persistent, so it lives exactly as long as the process that opened
//! it, and a node killed with SIGKILL takes it (and the BGP sessions over it) along.
//!
//! The twin has one queue pair per worker: worker `w` hands the kernel what the core gave
//! it on queue `w` and sends what the kernel wrote on queue `w` out of the data port, on
//! its own TX queue (see `worker`), so no queue is shared.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

/// The DPDK device name of port `i`'s twin.
pub fn device_name(i: usize) -> String {
    format!("net_tap_twin{i}")
}

/// The `--vdev` argument that creates port `i`'s twin named `ifname`.
pub fn vdev(i: usize, ifname: &str) -> String {
    format!("{},iface={ifname}", device_name(i))
}

/// True when an interface of this name exists in this network namespace already: a
/// second node, or something else, owns it (net_tap would take it over or fail obscurely).
pub fn exists(ifname: &str) -> bool {
    Path::new("/sys/class/net").join(ifname).exists()
}

/// An `ifreq` naming `ifname` (checked to fit by the config: at most 15 bytes).
fn ifreq(ifname: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain data; all zeros is a valid value.
    let mut r: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in r.ifr_name.iter_mut().zip(ifname.bytes().take(15)) {
        *d = s as libc::c_char;
    }
    r
}

/// A datagram socket of `family` to issue interface ioctls on, closed on drop.
struct Ctl(libc::c_int);

impl Ctl {
    fn open(family: libc::c_int) -> Result<Ctl, String> {
        // SAFETY: plain socket(2) call.
        let fd = unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(format!("socket: {}", std::io::Error::last_os_error()));
        }
        Ok(Ctl(fd))
    }

    /// ioctl `req` on `arg`; `what` names the step in the error.
    fn ioctl<T>(&self, req: libc::c_ulong, arg: &mut T, what: &str) -> Result<(), String> {
        // SAFETY: `arg` is the structure this request reads or writes (ifreq or in6_ifreq),
        // valid for the call.
        let rc = unsafe { libc::ioctl(self.0, req as _, arg as *mut T) };
        if rc < 0 {
            return Err(format!("{what}: {}", std::io::Error::last_os_error()));
        }
        Ok(())
    }
}

impl Drop for Ctl {
    fn drop(&mut self) {
        // SAFETY: our own descriptor, closed once.
        unsafe { libc::close(self.0) };
    }
}

fn sockaddr4(a: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(a.octets()),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr are both 16 bytes; the kernel reads it as sockaddr_in
    // by its family.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

/// Gives the twin `ifname` the port's MTU and addresses and brings it up.
pub fn configure(
    ifname: &str,
    mtu: u16,
    ipv4: Option<(Ipv4Addr, u8)>,
    ipv6: Option<(Ipv6Addr, u8)>,
) -> Result<(), String> {
    let ctl = Ctl::open(libc::AF_INET)?;
    let mut r = ifreq(ifname);
    r.ifr_ifru.ifru_mtu = libc::c_int::from(mtu);
    ctl.ioctl(libc::SIOCSIFMTU, &mut r, "setting the MTU")?;
    if let Some((a, len)) = ipv4 {
        let mut r = ifreq(ifname);
        r.ifr_ifru.ifru_addr = sockaddr4(a);
        ctl.ioctl(libc::SIOCSIFADDR, &mut r, "setting the IPv4 address")?;
        let mask = if len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(len))
        };
        let mut r = ifreq(ifname);
        r.ifr_ifru.ifru_netmask = sockaddr4(Ipv4Addr::from(mask));
        ctl.ioctl(libc::SIOCSIFNETMASK, &mut r, "setting the IPv4 prefix")?;
    }
    let mut r = ifreq(ifname);
    ctl.ioctl(libc::SIOCGIFFLAGS, &mut r, "reading the flags")?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    let flags = unsafe { r.ifr_ifru.ifru_flags };
    r.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    ctl.ioctl(libc::SIOCSIFFLAGS, &mut r, "bringing it up")?;
    if let Some((a, len)) = ipv6 {
        let mut r = ifreq(ifname);
        ctl.ioctl(libc::SIOCGIFINDEX, &mut r, "reading its index")?;
        // SAFETY: SIOCGIFINDEX filled the ifindex member of the union.
        let index = unsafe { r.ifr_ifru.ifru_ifindex };
        let ctl6 =
            Ctl::open(libc::AF_INET6).map_err(|e| format!("IPv6 is not available here ({e})"))?;
        let mut r6 = libc::in6_ifreq {
            ifr6_addr: libc::in6_addr {
                s6_addr: a.octets(),
            },
            ifr6_prefixlen: u32::from(len),
            ifr6_ifindex: index,
        };
        ctl6.ioctl(libc::SIOCSIFADDR, &mut r6, "setting the IPv6 address")?;
    }
    Ok(())
}
