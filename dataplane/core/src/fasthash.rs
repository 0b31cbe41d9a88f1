//! A fast hasher for the maps keyed by addresses and flows: a multiply-rotate mix over the
//! key's few words, finished by MurmurHash3's finaliser. SipHash, std's default, was a tenth
//! of the control thread's time at a million new flows a second.
//!
//! `FastMap` (seed 0) is for keys the configuration chooses (services, VIPs, backends);
//! maps keyed by what the network sends (flows) take a [`SeededHash`] with a per-process
//! random seed, so an attacker who cannot see it cannot aim keys at one probe sequence.

use crate::flow::key::fmix;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

/// The hasher; `Default` starts it at seed 0.
#[derive(Default)]
pub struct FastHasher(u64);

impl FastHasher {
    #[inline]
    pub const fn with_seed(seed: u64) -> Self {
        FastHasher(seed)
    }

    #[inline]
    fn word(&mut self, w: u64) {
        self.0 = (self.0 ^ w)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn finish(&self) -> u64 {
        fmix(self.0)
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            self.word(u64::from_le_bytes(w));
        }
    }
    // One word each, as `write` would make of their bytes, without the loop.
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.word(u64::from(i));
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.word(u64::from(i));
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.word(i as u64);
    }
}

/// A map on [`FastHasher`] at seed 0.
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// Builds [`FastHasher`]s from one seed.
#[derive(Clone, Copy)]
pub struct SeededHash {
    seed: u64,
}

impl SeededHash {
    /// A seed random per process (borrowed from std's own random hasher keys).
    pub fn random() -> Self {
        let seed = std::collections::hash_map::RandomState::new().hash_one(0x7a6e_6465_6d00u64);
        SeededHash { seed }
    }
}

impl BuildHasher for SeededHash {
    type Hasher = FastHasher;
    #[inline]
    fn build_hasher(&self) -> FastHasher {
        FastHasher::with_seed(self.seed)
    }
}
