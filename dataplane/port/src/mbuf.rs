//! Mempools and raw mbuf access. Workers handle `*mut rte_mbuf` directly (bursts of raw
//! pointers are what the PMDs speak); these helpers are the only places that read or write
//! mbuf fields.

use crate::DpdkError;
use std::ffi::CString;
use tandem_ffi as ffi;

pub type RawMbuf = *mut ffi::rte_mbuf;

/// A pktmbuf pool. Never freed while ports use it (the process ends first).
pub struct Mempool {
    pub(crate) ptr: *mut ffi::rte_mempool,
}

// SAFETY: a DPDK mempool is designed for concurrent use from many lcores.
unsafe impl Send for Mempool {}
// SAFETY: as above; all operations on it are thread-safe in DPDK.
unsafe impl Sync for Mempool {}

impl Mempool {
    pub fn new(name: &str, mbufs: u32, cache: u32, socket: i32) -> Result<Mempool, DpdkError> {
        let cname = CString::new(name).unwrap_or_default();
        // SAFETY: valid after EAL init; the name is copied by DPDK.
        let ptr = unsafe {
            ffi::rte_pktmbuf_pool_create(
                cname.as_ptr(),
                mbufs,
                cache,
                0,
                ffi::RTE_MBUF_DEFAULT_BUF_SIZE as u16,
                socket,
            )
        };
        if ptr.is_null() {
            // SAFETY: reads rte_errno.
            let code = unsafe { ffi::tandem_errno() };
            return Err(DpdkError {
                what: format!("rte_pktmbuf_pool_create({name}, {mbufs} mbufs)"),
                code,
            });
        }
        Ok(Mempool { ptr })
    }

    pub fn alloc(&self) -> Option<RawMbuf> {
        // SAFETY: the pool pointer is valid for the process's life.
        let m = unsafe { ffi::tandem_pktmbuf_alloc(self.ptr) };
        (!m.is_null()).then_some(m)
    }

    pub fn available(&self) -> u32 {
        // SAFETY: read-only query on a valid pool.
        unsafe { ffi::rte_mempool_avail_count(self.ptr) }
    }
}

/// The whole data room of an mbuf and the frame's place in it: (room, data_off, data_len).
///
/// # Safety
/// `m` must be a valid single-owner mbuf for the lifetime `'a`.
#[inline(always)]
pub unsafe fn data_room<'a>(m: RawMbuf) -> (&'a mut [u8], usize, usize) {
    // SAFETY: per the contract, `m` is valid; buf_addr..buf_addr+buf_len is its data room.
    unsafe {
        let r = &*m;
        let room = std::slice::from_raw_parts_mut(r.buf_addr as *mut u8, usize::from(r.buf_len));
        (room, usize::from(r.data_off), usize::from(r.data_len))
    }
}

/// Number of segments (tandem handles single-segment frames only).
///
/// # Safety
/// `m` must be a valid mbuf.
#[inline(always)]
pub unsafe fn segments(m: RawMbuf) -> u16 {
    // SAFETY: per the contract.
    unsafe { (*m).nb_segs }
}

/// Sets where the frame starts in the data room and its length.
///
/// # Safety
/// `m` must be a valid single-segment mbuf and `start + len` within its data room.
#[inline(always)]
pub unsafe fn set_frame(m: RawMbuf, start: usize, len: usize) {
    // SAFETY: per the contract.
    unsafe {
        let r = &mut *m;
        r.data_off = start as u16;
        r.data_len = len as u16;
        r.pkt_len = len as u32;
    }
}

/// Returns mbufs to their pool.
#[inline]
pub fn free_bulk(ms: &mut [RawMbuf]) {
    if ms.is_empty() {
        return;
    }
    // SAFETY: every pointer is a valid mbuf owned by the caller, handed back here once.
    unsafe { ffi::tandem_pktmbuf_free_bulk(ms.as_mut_ptr(), ms.len() as u32) }
}

/// Prefetches the start of an mbuf's frame into the cache.
///
/// # Safety
/// `m` must be a valid mbuf.
#[inline(always)]
pub unsafe fn prefetch(m: RawMbuf) {
    // SAFETY: per the contract `m` is valid; prefetching is only a hint.
    let data = unsafe {
        let r = &*m;
        (r.buf_addr as *const u8).add(usize::from(r.data_off))
    };
    prefetch_addr(data);
}

/// Prefetches the cache line at `p` (a hint; `p` need not be valid memory).
#[inline(always)]
pub fn prefetch_addr(p: *const u8) {
    // Inline where the instruction is known (the shim's is a call per prefetch: 4% of a
    // worker's time at 1 000 flows).
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p as *const i8)
    }
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: a prefetch never faults, whatever the address.
    unsafe {
        ffi::tandem_prefetch0(p as *const _)
    }
}
