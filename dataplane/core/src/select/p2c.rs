//! Power of two choices: two candidates drawn (by two hashes of the flow) from the service's
//! weights table, and the cheaper of the two takes the flow. The draw keeps shares near the
//! weights and the comparison steers away from a loaded or slow backend without herding every
//! new flow onto the single cheapest one (Mitzenmacher; Finagle's and Linkerd's balancers).
//! Used by the `least_flows` and `peak_ewma` selections, the anchors QoS selection is
//! measured against.

use super::maglev::Maglev;
use crate::flow::key::fmix;

/// Extra draws tried for a second candidate distinct from the first.
const REDRAWS: u64 = 4;

/// The cheaper of two candidates for `hash` (lower `cost` wins, the first on a tie).
#[inline]
pub fn pick(table: &Maglev, hash: u64, cost: impl Fn(u16) -> f64) -> Option<u16> {
    let a = table.lookup(hash)?;
    let mut b = a;
    for i in 1..=REDRAWS {
        b = table.lookup(fmix(hash ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15)))?;
        if b != a {
            break;
        }
    }
    if b == a {
        // A backend with most of the weight drew both times: compare it with its
        // neighbour in the table, so two backends are always compared when there are two.
        b = table.next_other(hash, a).unwrap_or(a);
    }
    if b != a && cost(b) < cost(a) {
        Some(b)
    } else {
        Some(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::select::maglev::Candidate;

    fn table(n: u16) -> Maglev {
        let c: Vec<Candidate> = (0..n)
            .map(|i| Candidate {
                id: i,
                weight: 1,
                identity: fmix(u64::from(i) + 77),
            })
            .collect();
        Maglev::build(&c)
    }

    #[test]
    fn the_costliest_backend_only_wins_when_drawn_twice() {
        let t = table(4);
        let mut counts = [0u32; 4];
        for i in 0..40_000u64 {
            let b = pick(&t, fmix(i), |b| if b == 0 { 100.0 } else { 1.0 }).unwrap();
            counts[usize::from(b)] += 1;
        }
        // Backend 0 is always compared with another, so it never wins.
        assert_eq!(counts[0], 0, "{counts:?}");
        // The others share the rest evenly: no herding onto one.
        for c in &counts[1..] {
            assert!((12_000..14_700).contains(c), "{counts:?}");
        }
        assert_eq!(pick(&Maglev::build(&[]), 1, |_| 0.0), None);
        // One backend: itself, at once (no search for a second candidate).
        let one = table(1);
        assert_eq!(pick(&one, 5, |_| 1.0), Some(0));
        assert_eq!(one.next_other(5, 0), None);
    }
}
