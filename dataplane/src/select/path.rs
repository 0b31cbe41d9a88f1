//! Path choice for a new flow: a primary and a backup among a backend's paths, spread by the
//! flow's hash so new flows use every path; and the choice per packet, which takes the
//! backup when the primary's port is down.

/// Primary and backup path indices for a backend with `n` paths (n >= 1).
#[inline]
pub fn assign(hash: u64, n: usize) -> (u8, u8) {
    if n <= 1 {
        return (0, 0);
    }
    let p = ((hash >> 40) % n as u64) as usize;
    let b = (p + 1 + ((hash >> 20) % (n as u64 - 1)) as usize) % n;
    (p as u8, b as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_and_distinct() {
        let n = 3;
        let mut counts = [0u32; 3];
        for i in 0..30_000u64 {
            let h = crate::flow::key::fmix(i);
            let (p, b) = assign(h, n);
            assert_ne!(p, b);
            assert!((b as usize) < n);
            counts[p as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 9000), "{counts:?}");
        assert_eq!(assign(5, 1), (0, 0));
    }
}
