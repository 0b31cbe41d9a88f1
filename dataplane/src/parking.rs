//! Where a nat reply waits for its flow record. A backend's reply can reach a worker before
//! the record its own request made on another worker (or node) has been replicated here,
//! so such a frame is parked, not dropped. What parking may cost is bounded, because anyone
//! can send a frame that looks like a reply with no flow: a frame is parked at most once,
//! retried once only after replication messages have arrived since it was parked (nothing
//! else can make its record appear), at most `RETRY_PER_LOOP` a loop, and the lot holds at
//! most its capacity; a frame that finds no record on its retry, waits past `MAX_WAIT_MS`,
//! or finds the lot full is dropped as `no_flow`. A flood of spoofed replies so costs each
//! frame at most two passes through the core, instead of a pass every loop for 20 ms.

/// Longest a frame waits for its record, in milliseconds.
pub const MAX_WAIT_MS: u32 = 20;
/// Frames retried per loop.
pub const RETRY_PER_LOOP: usize = 64;
/// Frames parked at once.
pub const CAPACITY: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parked<H> {
    pub handle: H,
    pub port: u8,
    pub since_ms: u32,
    /// The replication generation when it was parked.
    pub generation: u32,
}

/// The parked frames of one worker, oldest first. Preallocated: parking allocates nothing.
#[derive(Debug)]
pub struct Parking<H> {
    frames: std::collections::VecDeque<Parked<H>>,
    cap: usize,
}

/// What to do with a frame taken out of the lot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due<H> {
    /// Records arrived since it was parked: run it through the core once more.
    Retry(Parked<H>),
    /// It waited `MAX_WAIT_MS` with no record: drop it (no_flow).
    Expired(Parked<H>),
}

impl<H: Copy> Parking<H> {
    pub fn with_capacity(cap: usize) -> Self {
        Parking {
            frames: std::collections::VecDeque::with_capacity(cap),
            cap,
        }
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Parks a frame seen for the first time; gives it back when the lot is full.
    pub fn park(&mut self, handle: H, port: u8, now_ms: u32, generation: u32) -> Result<(), H> {
        if self.frames.len() >= self.cap {
            return Err(handle);
        }
        self.frames.push_back(Parked {
            handle,
            port,
            since_ms: now_ms,
            generation,
        });
        Ok(())
    }

    /// The next frame due, oldest first: one whose wait is over, or one parked before
    /// replication generation `generation`. Call until None, at most `RETRY_PER_LOOP` times.
    pub fn next_due(&mut self, now_ms: u32, generation: u32) -> Option<Due<H>> {
        let p = *self.frames.front()?;
        if now_ms.wrapping_sub(p.since_ms) >= MAX_WAIT_MS {
            self.frames.pop_front();
            return Some(Due::Expired(p));
        }
        if p.generation != generation {
            self.frames.pop_front();
            return Some(Due::Retry(p));
        }
        // Parked since the last replication messages: nothing can have changed for it, nor
        // (parked later) for any frame behind it.
        None
    }

    /// Every frame still parked (at shutdown).
    pub fn drain(&mut self) -> impl Iterator<Item = Parked<H>> + '_ {
        self.frames.drain(..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives the lot as the worker does: each loop, frames arrive (spoofed replies that
    /// never find a record, interleaved with replies whose record arrives one loop later),
    /// and every few loops replication messages move the generation on. Counts how many
    /// times the core would process frames.
    #[test]
    fn a_flood_of_replies_with_no_flow_costs_each_frame_at_most_two_passes() {
        let mut lot: Parking<u32> = Parking::with_capacity(CAPACITY);
        let (mut passes, mut arrived, mut dropped, mut served) = (0u64, 0u64, 0u64, 0u64);
        let mut generation = 0u32;
        let mut real_waiting = std::collections::HashSet::new();
        let mut next = 0u32;
        for now in 0..10_000u32 {
            // 100 frames a loop (a loop every millisecond): one in ten is a real reply.
            for _ in 0..100 {
                let id = next;
                next += 1;
                arrived += 1;
                passes += 1; // first pass: no record yet
                if id.is_multiple_of(10) {
                    real_waiting.insert(id);
                }
                if lot.park(id, 0, now, generation).is_err() {
                    dropped += 1;
                    real_waiting.remove(&id);
                }
            }
            // Replication arrives every other loop: the real replies' records with it.
            if now % 2 == 1 {
                generation += 1;
            }
            let mut retried = 0;
            while retried < RETRY_PER_LOOP {
                match lot.next_due(now, generation) {
                    None => break,
                    Some(Due::Expired(p)) => {
                        dropped += 1;
                        real_waiting.remove(&p.handle);
                    }
                    Some(Due::Retry(p)) => {
                        retried += 1;
                        passes += 1;
                        if real_waiting.remove(&p.handle) {
                            served += 1;
                        } else {
                            dropped += 1;
                        }
                    }
                }
            }
        }
        assert!(
            passes <= 2 * arrived,
            "{passes} passes for {arrived} frames"
        );
        // Retries are bounded per loop whatever arrives.
        assert!(passes - arrived <= 10_000 * RETRY_PER_LOOP as u64);
        assert!(lot.len() <= CAPACITY);
        assert!(served > 0);
        assert_eq!(arrived, served + dropped + lot.len() as u64);
        println!(
            "{arrived} frames: {passes} passes ({:.2} per frame), {served} served, {dropped} dropped",
            passes as f64 / arrived as f64
        );
    }

    #[test]
    fn a_frame_is_retried_only_after_replication_and_expires_on_time() {
        let mut lot: Parking<u8> = Parking::with_capacity(2);
        lot.park(1, 0, 100, 7).unwrap();
        lot.park(2, 0, 101, 7).unwrap();
        assert_eq!(lot.park(3, 0, 101, 7), Err(3), "full");
        // Same generation: nothing due, however often asked.
        for t in 100..119 {
            assert_eq!(lot.next_due(t, 7), None);
        }
        assert!(matches!(lot.next_due(120, 7), Some(Due::Expired(p)) if p.handle == 1));
        assert!(matches!(lot.next_due(120, 8), Some(Due::Retry(p)) if p.handle == 2));
        assert!(lot.is_empty());
    }
}
