//! Memory hints for the big tables the workers walk.
//!
//! A flow table of a million flows spans hundreds of megabytes: with 4 KiB pages nearly
//! every lookup misses the TLB as well as the cache (a page walk, often itself a cache miss).
//! Transparent huge pages cut that to one 2 MiB page per 2 MiB of table. Debian's default is
//! `madvise`, so the table asks for them; where THP is off this is a no-op.

/// Asks the kernel to back `[ptr, ptr + len)` with transparent huge pages. Called on memory
/// not yet touched (before the table is filled), so it is faulted in huge from the start.
pub fn advise_huge_pages(ptr: *mut u8, len: usize) {
    advise(ptr, len, libc::MADV_HUGEPAGE);
}

/// Asks the kernel for 4 KiB pages under `[ptr, ptr + len)` even where THP is `always`
/// (`[flows] huge_pages = false`: what the huge pages buy, measured).
pub fn advise_small_pages(ptr: *mut u8, len: usize) {
    advise(ptr, len, libc::MADV_NOHUGEPAGE);
}

fn advise(ptr: *mut u8, len: usize, advice: libc::c_int) {
    const PAGE: usize = 4096;
    let start = (ptr as usize).next_multiple_of(PAGE);
    let end = (ptr as usize + len) & !(PAGE - 1);
    if end <= start {
        return;
    }
    // SAFETY: madvise only changes how the kernel backs these pages; the range is page
    // aligned and inside one live allocation of the caller's, and MADV_HUGEPAGE and
    // MADV_NOHUGEPAGE neither free nor change its contents. A failure (THP compiled out)
    // leaves 4 KiB pages.
    unsafe {
        libc::madvise(start as *mut libc::c_void, end - start, advice);
    }
}
