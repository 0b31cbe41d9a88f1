//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624, eqn. 3), which is
//! what lets a NAT rewrite an address without re-reading the payload.

/// Adds `data` as big-endian 16-bit words to `sum` (no folding).
pub fn sum_words(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum = sum.wrapping_add(u32::from(u16::from_be_bytes([c[0], c[1]])));
        // Fold early so very long inputs cannot overflow.
        if sum & 0x8000_0000 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
    }
    if let [last] = chunks.remainder() {
        sum = sum.wrapping_add(u32::from(*last) << 8);
    }
    sum
}

/// Folds a 32-bit sum to 16 bits, end-around carry included.
pub fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The checksum of `data` (the complement of its ones'-complement sum).
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum_words(0, data))
}

/// RFC 1624: the new checksum after one 16-bit word of the covered data changed from `old`
/// to `new`. HC' = ~(~HC + ~m + m').
#[inline]
pub fn update16(csum: u16, old: u16, new: u16) -> u16 {
    let sum = u32::from(!csum) + u32::from(!old) + u32::from(new);
    !fold(sum)
}

/// The checksum after the bytes `old` were replaced by `new` (same even length, word-aligned
/// in the covered data), e.g. an address.
#[inline]
pub fn update_bytes(csum: u16, old: &[u8], new: &[u8]) -> u16 {
    let mut sum = u32::from(!csum);
    for (o, n) in old.chunks_exact(2).zip(new.chunks_exact(2)) {
        sum += u32::from(!u16::from_be_bytes([o[0], o[1]]));
        sum += u32::from(u16::from_be_bytes([n[0], n[1]]));
    }
    !fold(sum)
}

/// RFC 1624's change term for bytes `old` replaced by `new` (same even length): the sum of
/// ~m + m' over their words, unfolded. One address change patches the IP header and the
/// transport checksum (its pseudo header) alike, so a nat rewrite computes it once.
#[inline(always)]
pub fn delta_bytes(old: &[u8], new: &[u8]) -> u32 {
    let mut sum = 0u32;
    for (o, n) in old.chunks_exact(2).zip(new.chunks_exact(2)) {
        sum += u32::from(!u16::from_be_bytes([o[0], o[1]]));
        sum += u32::from(u16::from_be_bytes([n[0], n[1]]));
    }
    sum
}

/// The change term for one word from `old` to `new`.
#[inline(always)]
pub fn delta16(old: u16, new: u16) -> u32 {
    u32::from(!old) + u32::from(new)
}

/// A checksum with change terms applied: HC' = ~(~HC + sum of terms). Two folds are enough
/// for any sum of fewer than 65 536 terms.
#[inline(always)]
pub fn apply(csum: u16, delta: u32) -> u16 {
    let s = u64::from(!csum) + u64::from(delta);
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    !((s & 0xffff) + (s >> 16)) as u16
}

/// The pseudo-header sum for TCP/UDP over IPv4 or IPv6 (addresses as raw bytes).
pub fn pseudo_header_sum(src: &[u8], dst: &[u8], proto: u8, l4_len: u32) -> u32 {
    let mut sum = sum_words(0, src);
    sum = sum_words(sum, dst);
    sum += u32::from(proto);
    sum += l4_len >> 16;
    sum += l4_len & 0xffff;
    sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc1071_example() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum_words(0, &data)), 0xddf2);
    }

    proptest! {
        /// Changing any aligned span and updating incrementally equals recomputing.
        #[test]
        fn incremental_equals_full(mut data in proptest::collection::vec(any::<u8>(), 2..256),
                                   at in 0usize..128, new in proptest::collection::vec(any::<u8>(), 2..17)) {
            let at = (at % data.len()) & !1;
            let n = (new.len() & !1).min((data.len() - at) & !1);
            prop_assume!(n >= 2);
            let before = checksum(&data);
            let old = data[at..at + n].to_vec();
            data[at..at + n].copy_from_slice(&new[..n]);
            let inc = update_bytes(before, &old, &new[..n]);
            let full = checksum(&data);
            // 0x0000 and 0xffff are the same number in ones' complement.
            prop_assert!(inc == full || (inc == 0xffff && full == 0) || (inc == 0 && full == 0xffff),
                "inc {inc:#x} full {full:#x}");
            // The change terms, applied at once, say the same as the word-by-word update.
            prop_assert_eq!(apply(before, delta_bytes(&old, &new[..n])), inc);
        }

        /// Terms summed then applied equal applying them one at a time.
        #[test]
        fn terms_add(csum in any::<u16>(), words in proptest::collection::vec((any::<u16>(), any::<u16>()), 1..12)) {
            let stepwise = words.iter().fold(csum, |c, &(o, n)| update16(c, o, n));
            let total: u32 = words.iter().map(|&(o, n)| delta16(o, n)).sum();
            prop_assert_eq!(apply(csum, total), stepwise);
        }
    }
}
