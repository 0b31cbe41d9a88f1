//! The neighbor table: (port, IP) to MAC, learned from ARP and neighbor discovery and shared
//! by all workers through the control thread. Fixed size, open addressing with a short
//! probe; when a probe run is full the stalest entry is replaced.

use crate::flow::key::fmix;
use crate::wire::ethernet::Mac;

const SLOTS: usize = 1024;
const PROBE: usize = 16;

#[derive(Clone, Copy, Default)]
struct Slot {
    used: bool,
    port: u8,
    ip: [u8; 16],
    mac: Mac,
    updated_ms: u32,
}

pub struct Neighbors {
    slots: Box<[Slot]>,
}

impl Default for Neighbors {
    fn default() -> Self {
        Neighbors {
            slots: vec![Slot::default(); SLOTS].into_boxed_slice(),
        }
    }
}

fn index(port: u8, ip: &[u8; 16]) -> usize {
    let a = u64::from_le_bytes(ip[..8].try_into().unwrap_or([0; 8]));
    let b = u64::from_le_bytes(ip[8..].try_into().unwrap_or([0; 8]));
    (fmix(a ^ b.rotate_left(7) ^ u64::from(port) << 56) as usize) % SLOTS
}

impl Neighbors {
    #[inline]
    pub fn get(&self, port: u8, ip: &[u8; 16]) -> Option<Mac> {
        let start = index(port, ip);
        for i in 0..PROBE {
            let s = &self.slots[(start + i) % SLOTS];
            if !s.used {
                return None;
            }
            if s.port == port && s.ip == *ip {
                return Some(s.mac);
            }
        }
        None
    }

    /// Records `mac` for (port, ip); returns true when that is news (new or changed).
    pub fn set(&mut self, port: u8, ip: [u8; 16], mac: Mac, now_ms: u32) -> bool {
        let start = index(port, &ip);
        let mut stalest = start;
        let mut stalest_age = 0u32;
        for i in 0..PROBE {
            let at = (start + i) % SLOTS;
            let s = &mut self.slots[at];
            if !s.used || (s.port == port && s.ip == ip) {
                let news = !s.used || s.mac != mac;
                *s = Slot {
                    used: true,
                    port,
                    ip,
                    mac,
                    updated_ms: now_ms,
                };
                return news;
            }
            let age = now_ms.wrapping_sub(s.updated_ms);
            if age >= stalest_age {
                stalest_age = age;
                stalest = at;
            }
        }
        self.slots[stalest] = Slot {
            used: true,
            port,
            ip,
            mac,
            updated_ms: now_ms,
        };
        true
    }

    pub fn iter(&self) -> impl Iterator<Item = (u8, [u8; 16], Mac)> + '_ {
        self.slots
            .iter()
            .filter(|s| s.used)
            .map(|s| (s.port, s.ip, s.mac))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_replace() {
        let mut n = Neighbors::default();
        let ip = [10, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(n.get(0, &ip).is_none());
        assert!(n.set(0, ip, [2, 0, 0, 0, 0, 5], 1));
        assert!(!n.set(0, ip, [2, 0, 0, 0, 0, 5], 2));
        assert!(n.set(0, ip, [2, 0, 0, 0, 0, 6], 3));
        assert_eq!(n.get(0, &ip), Some([2, 0, 0, 0, 0, 6]));
        assert!(n.get(1, &ip).is_none());
        for i in 0..5000u32 {
            let mut a = [0u8; 16];
            a[..4].copy_from_slice(&i.to_be_bytes());
            n.set(1, a, [2, 0, 0, 0, 0, 1], i);
        }
        assert_eq!(n.iter().count(), SLOTS);
    }
}
