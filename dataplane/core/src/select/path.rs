//! Path choice for a new flow: a primary and a backup among a backend's paths, spread by the
//! flow's hash so new flows use every path; and the choice per packet, which takes the
//! backup when the primary's port is down.
//!
//! With QoS, each path has a share (its measured quality against the backend's other
//! paths) and a health: the primary is drawn by the flow's hash in proportion to the shares
//! of the healthy paths (so new flows spread over paths by quality, never all onto the
//! momentarily best one), and the backup is the best-scoring healthy path left.

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

/// Most paths a backend has (the config's limit).
pub const MAX_PATHS: usize = 8;

/// Primary and backup for a new flow over paths with these `(healthy, share)`; shares are
/// relative weights (0 takes no new flows while another path can). Falls back to the plain
/// hash spread when no path is healthy.
#[inline]
pub fn choose(hash: u64, paths: &[(bool, u16)]) -> (u8, u8) {
    let n = paths.len().min(MAX_PATHS);
    if n <= 1 {
        return (0, 0);
    }
    let total: u64 = paths[..n]
        .iter()
        .filter(|p| p.0)
        .map(|p| u64::from(p.1))
        .sum();
    if total == 0 {
        return assign(hash, n);
    }
    let mut pick = (hash >> 24) % total;
    let mut primary = 0;
    for (i, &(up, share)) in paths[..n].iter().enumerate() {
        if !up {
            continue;
        }
        if pick < u64::from(share) {
            primary = i;
            break;
        }
        pick -= u64::from(share);
    }
    // The best other healthy path; ties broken by the hash so backups spread too.
    let mut backup = None;
    let mut best = (0u16, 0u64);
    for (i, &(up, share)) in paths[..n].iter().enumerate() {
        if i == primary || !up {
            continue;
        }
        let tie = crate::flow::key::fmix(hash ^ i as u64);
        if backup.is_none() || (share, tie) > best {
            best = (share, tie);
            backup = Some(i);
        }
    }
    let backup = backup.unwrap_or_else(|| assign(hash, n).1 as usize);
    let backup = if backup == primary {
        (primary + 1) % n
    } else {
        backup
    };
    (primary as u8, backup as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_spread_primaries_and_backups_avoid_down_paths() {
        let paths = [(true, 3u16), (true, 1), (false, 5)];
        let mut counts = [0u32; 3];
        for i in 0..40_000u64 {
            let h = crate::flow::key::fmix(i);
            let (p, b) = choose(h, &paths);
            assert_ne!(p, b);
            assert_ne!(p, 2, "a down path is never a primary");
            assert_ne!(b, 2, "nor a backup while another path is up");
            counts[p as usize] += 1;
        }
        let share0 = f64::from(counts[0]) / 40_000.0;
        assert!((share0 - 0.75).abs() < 0.02, "{counts:?}");
        // Every path down: the plain spread, still two distinct paths.
        let (p, b) = choose(99, &[(false, 1), (false, 1)]);
        assert_ne!(p, b);
        assert_eq!(choose(7, &[(true, 1)]), (0, 0));
        // A zero share takes no primaries while another path is up, but may back up.
        for i in 0..1000u64 {
            let (p, b) = choose(crate::flow::key::fmix(i), &[(true, 0), (true, 10)]);
            assert_eq!((p, b), (1, 0));
        }
    }

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
