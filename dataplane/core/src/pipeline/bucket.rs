//! A token bucket on the core's millisecond clock: what a worker may send at most per
//! millisecond, with a burst (the "too big" answers, the frames to the kernel twins).

/// `rate` tokens a millisecond, at most `burst` saved up; full at the start.
pub(super) struct Bucket {
    tokens: u32,
    ms: u32,
    rate: u32,
    burst: u32,
}

impl Bucket {
    pub(super) const fn new(rate: u32, burst: u32) -> Bucket {
        Bucket {
            tokens: burst,
            ms: 0,
            rate,
            burst,
        }
    }

    /// Takes a token at `now_ms`; false when there is none.
    pub(super) fn take(&mut self, now_ms: u32) -> bool {
        let elapsed = now_ms.wrapping_sub(self.ms);
        if elapsed > 0 {
            let gained = elapsed.min(self.burst).saturating_mul(self.rate);
            self.tokens = self.tokens.saturating_add(gained).min(self.burst);
            self.ms = now_ms;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}
