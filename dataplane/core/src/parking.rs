//! Where a nat reply waits for its flow record. A backend's reply can reach a worker before
//! the record its own request made on another worker (or node) has been replicated here,
//! so such a frame is parked, not dropped. What parking may cost is bounded, because anyone
//! can send a frame that looks like a reply with no flow:
//!
//! - a frame is parked once, with a hint of its flow's client side (address, port,
//!   protocol; the part of the key a reply and its request share);
//! - the worker notes the hint of every flow record replication brings it, and a parked
//!   frame is run through the core again only when a record with its hint has arrived
//!   since (so a spoofed reply, whose record never comes, is retried only on a hint
//!   collision), at most `RETRY_PER_LOOP` a loop; one that still finds nothing keeps
//!   waiting;
//! - each kind of frame has a lot of its own (`Lot`: early nat replies, fragments that came
//!   before their first), of `CAPACITY` frames each, so a flood of one kind cannot push out
//!   the other; when a lot is full its oldest (the likeliest to be spoofed, and the one its
//!   record is least likely to reach still) makes room; a frame pushed out, or that waits
//!   `MAX_WAIT_MS`, is dropped (`no_flow`, `fragment_timeout`). Under a flood every frame
//!   of that kind so still gets a share of waiting, rather than the flood holding the lot.
//!
//! A flood of spoofed replies so costs each frame about one pass through the core, instead
//! of a pass on every loop for 20 ms.

/// Longest a frame waits for its record, in milliseconds.
pub const MAX_WAIT_MS: u32 = 20;
/// Frames retried per loop.
pub const RETRY_PER_LOOP: usize = 64;
/// Frames parked at once, per lot.
pub const CAPACITY: usize = 256;
/// Lots: one per kind of frame that waits (`Lot`).
pub const LOTS: usize = 2;
/// Bits of the hint: records arrived in one loop are noted in a bitmap this wide (8 KiB),
/// so that a loop's few hundred records rarely hit a spoofed frame's hint.
const HINT_BITS: u32 = 16;
/// Hints noted one by one (and cleared one by one); past this many a loop, the whole bitmap
/// is cleared instead.
const NOTED_MAX: usize = 512;
/// Retries one frame may have (its hint may collide with other flows' records).
pub const MAX_RETRIES: u8 = 2;

/// The hint of a flow's client side, for a reply (its destination) or a record (its
/// source).
#[inline]
pub fn hint(client: &[u8; 16], port: u16, proto: u8) -> u16 {
    let mut h: u64 = u64::from(port) << 8 | u64::from(proto);
    for c in client.chunks_exact(8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    (h >> (64 - HINT_BITS)) as u16
}

/// Which lot a frame waits in: each kind has its own quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lot {
    /// A nat reply whose flow record has not reached the worker yet.
    Replies = 0,
    /// A later fragment that came before its first.
    Fragments = 1,
}

/// What a deferred frame waits for (a `hint`), in which lot, and what it is counted as when
/// it is dropped unserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    pub hint: u16,
    pub lot: Lot,
    pub expired: crate::counters::DropReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parked<H> {
    pub handle: H,
    pub port: u8,
    pub since_ms: u32,
    pub hint: u16,
    pub lot: Lot,
    /// Retries it has had.
    pub retries: u8,
    /// A record with its hint came while the loop's retries were used up: retry it next.
    pub due: bool,
    /// What it is counted as when it is dropped unserved (`no_flow` for a nat reply,
    /// `fragment_timeout` for a fragment).
    pub expired: crate::counters::DropReason,
}

/// What to do with a frame taken out of the lot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due<H> {
    /// A record with its hint arrived: run it through the core once more (and `repark` it
    /// if it still finds nothing).
    Retry(Parked<H>),
    /// It waited `MAX_WAIT_MS`: drop it (no_flow).
    Expired(Parked<H>),
}

/// The parked frames of one worker. Preallocated: parking allocates nothing.
#[derive(Debug)]
pub struct Parking<H> {
    lots: [std::collections::VecDeque<Parked<H>>; LOTS],
    /// Frames per lot.
    cap: usize,
    /// Hints of the records that arrived since the last sweep: a bitmap, and the hints
    /// noted (to clear just those bits).
    arrived: Box<[u64; 1 << (HINT_BITS - 6)]>,
    noted: [u16; NOTED_MAX],
    n_noted: usize,
    any_arrived: bool,
    last_sweep_ms: u32,
}

impl<H: Copy> Parking<H> {
    /// Lots of `cap` frames each.
    pub fn with_capacity(cap: usize) -> Self {
        Parking {
            lots: std::array::from_fn(|_| std::collections::VecDeque::with_capacity(cap)),
            cap,
            arrived: Box::new([0; 1 << (HINT_BITS - 6)]),
            noted: [0; NOTED_MAX],
            n_noted: 0,
            any_arrived: false,
            last_sweep_ms: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.lots.iter().map(|l| l.len()).sum()
    }

    /// Frames waiting in one lot.
    pub fn len_of(&self, lot: Lot) -> usize {
        self.lots[lot as usize].len()
    }

    pub fn is_empty(&self) -> bool {
        self.lots.iter().all(|l| l.is_empty())
    }

    /// Parks a frame seen for the first time; when its lot is full, that lot's oldest frame
    /// makes room and is given back, to be dropped.
    pub fn park(&mut self, handle: H, port: u8, now_ms: u32, wait: Wait) -> Option<Parked<H>> {
        let p = Parked {
            handle,
            port,
            since_ms: now_ms,
            hint: wait.hint,
            lot: wait.lot,
            retries: 0,
            due: false,
            expired: wait.expired,
        };
        if self.cap == 0 {
            return Some(p);
        }
        let lot = &mut self.lots[wait.lot as usize];
        let out = if lot.len() >= self.cap {
            lot.pop_front()
        } else {
            None
        };
        lot.push_back(p);
        out
    }

    /// Puts back a frame whose retry found nothing: it waits on, from when it first came.
    pub fn repark(&mut self, p: Parked<H>) -> Result<(), H> {
        let lot = &mut self.lots[p.lot as usize];
        if lot.len() >= self.cap {
            return Err(p.handle);
        }
        lot.push_back(p);
        Ok(())
    }

    /// A flow record with this hint has reached the worker.
    #[inline]
    pub fn record_arrived(&mut self, hint: u16) {
        if self.is_empty() {
            return;
        }
        let h = usize::from(hint);
        self.arrived[h >> 6] |= 1 << (h & 63);
        if self.n_noted < NOTED_MAX {
            self.noted[self.n_noted] = hint;
        }
        self.n_noted += 1;
        self.any_arrived = true;
    }

    fn forget_arrivals(&mut self) {
        if self.n_noted > NOTED_MAX {
            self.arrived.fill(0);
        } else {
            for &h in &self.noted[..self.n_noted] {
                self.arrived[usize::from(h) >> 6] = 0;
            }
        }
        self.n_noted = 0;
        self.any_arrived = false;
    }

    /// Moves into `out` the frames that expired and (up to RETRY_PER_LOOP) those whose
    /// record may have arrived; the rest keep waiting in order. Scans the lot only when
    /// records arrived or once a millisecond (for expiry).
    pub fn sweep(&mut self, now_ms: u32, out: &mut Vec<Due<H>>) {
        if self.is_empty() {
            if self.any_arrived {
                self.forget_arrivals();
            }
            return;
        }
        if !self.any_arrived && now_ms == self.last_sweep_ms {
            return;
        }
        self.last_sweep_ms = now_ms;
        let mut retries = 0;
        for li in 0..LOTS {
            self.sweep_lot(li, now_ms, &mut retries, out);
        }
        if self.any_arrived {
            self.forget_arrivals();
        }
    }

    fn sweep_lot(&mut self, li: usize, now_ms: u32, retries: &mut usize, out: &mut Vec<Due<H>>) {
        for _ in 0..self.lots[li].len() {
            let Some(mut p) = self.lots[li].pop_front() else {
                break;
            };
            let h = usize::from(p.hint);
            let noted = self.any_arrived && self.arrived[h >> 6] & (1 << (h & 63)) != 0;
            let hinted = p.due || noted;
            if now_ms.wrapping_sub(p.since_ms) as i32 >= MAX_WAIT_MS as i32 {
                out.push(Due::Expired(p));
            } else if hinted && p.retries < MAX_RETRIES && *retries < RETRY_PER_LOOP {
                *retries += 1;
                out.push(Due::Retry(Parked {
                    retries: p.retries + 1,
                    due: false,
                    ..p
                }));
            } else {
                // Hinted but over this loop's cap: it goes first next loop.
                p.due = hinted && p.retries < MAX_RETRIES;
                self.lots[li].push_back(p);
            }
        }
    }

    /// Every frame still parked (at shutdown).
    pub fn drain(&mut self) -> impl Iterator<Item = Parked<H>> + '_ {
        self.lots.iter_mut().flat_map(|l| l.drain(..))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::DropReason;

    fn reply(hint: u16) -> Wait {
        Wait {
            hint,
            lot: Lot::Replies,
            expired: DropReason::NoFlow,
        }
    }

    fn client(i: u32) -> [u8; 16] {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&(0xc633_6400 + i).to_be_bytes());
        a
    }

    /// Drives the lot as the worker does: each millisecond a loop, 100 frames arrive; one in
    /// ten is a real reply whose record comes one to three loops later, among a stream of
    /// other flows' records; the rest are spoofed replies whose record never comes. Counts
    /// how many times the core would process frames.
    #[test]
    fn a_flood_of_spoofed_replies_costs_about_one_pass_a_frame_and_real_ones_are_served() {
        let mut lot: Parking<u32> = Parking::with_capacity(CAPACITY);
        let (mut passes, mut arrived, mut dropped, mut served) = (0u64, 0u64, 0u64, 0u64);
        let mut real_lost = 0u64;
        let mut pending: Vec<(u32, u32)> = Vec::new(); // (record due at, frame id)
        let mut real = std::collections::HashSet::new();
        let mut recorded = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(CAPACITY);
        let mut next = 0u32;

        for now in 0..10_000u32 {
            for _ in 0..100 {
                let id = next;
                next += 1;
                arrived += 1;
                passes += 1; // first pass: no record yet
                if id.is_multiple_of(10) {
                    real.insert(id);
                    pending.push((now + 1 + id % 3, id));
                }
                if let Some(old) = lot.park(id, 0, now, reply(hint(&client(id), 53, 17))) {
                    dropped += 1;
                    real_lost += u64::from(real.contains(&old.handle));
                }
            }
            // Records: the real replies' when due, and 300 of flows no frame waits for.
            for (_, id) in pending.iter().filter(|(at, _)| *at == now) {
                recorded.insert(*id);
                lot.record_arrived(hint(&client(*id), 53, 17));
            }
            pending.retain(|(at, _)| *at > now);
            for k in 0..300 {
                lot.record_arrived(hint(&client(5_000_000 + now * 300 + k), 80, 6));
            }
            out.clear();
            lot.sweep(now, &mut out);
            for d in out.drain(..) {
                match d {
                    Due::Expired(p) => {
                        dropped += 1;
                        real_lost += u64::from(real.contains(&p.handle));
                    }
                    Due::Retry(p) => {
                        passes += 1;
                        if recorded.contains(&p.handle) {
                            served += 1;
                        } else if lot.repark(p).is_err() {
                            dropped += 1;
                        }
                    }
                }
            }
        }
        let per_frame = passes as f64 / arrived as f64;

        println!(
            "{arrived} frames: {passes} passes ({per_frame:.3} a frame), {served} served, \
             {dropped} dropped ({real_lost} of them real)"
        );
        assert!(per_frame < 1.2, "{per_frame} passes a frame");
        assert!(passes <= arrived * (1 + u64::from(MAX_RETRIES)));
        assert!(lot.len() <= CAPACITY);
        assert_eq!(arrived, served + dropped + lot.len() as u64);
        // Nine spoofed frames to a real one, 100 000 a second, fill the lot: the oldest make
        // room, so every frame waits about 2.5 ms, and the real replies whose record comes
        // within that are served (those at 3 ms are not: the price of bounding the lot).
        let real_total = arrived / 10;
        assert!(
            served * 10 >= real_total * 4,
            "{served} of {real_total} real replies served"
        );
    }

    /// About 300 orphan fragments in 20 ms used to push real frames out of the one lot: a
    /// flood of fragments now fills only the fragments' lot.
    #[test]
    fn a_flood_of_one_kind_cannot_push_out_the_other() {
        let mut lot: Parking<u32> = Parking::with_capacity(CAPACITY);
        let frag = |h| Wait {
            hint: h,
            lot: Lot::Fragments,
            expired: DropReason::FragmentTimeout,
        };
        assert_eq!(lot.park(1, 0, 0, reply(hint(&client(1), 53, 17))), None);
        assert_eq!(lot.park(2, 0, 0, frag(7)), None);
        let mut pushed_out = Vec::new();
        for i in 0..10 * CAPACITY as u32 {
            if let Some(p) = lot.park(100 + i, 0, 1, frag(i as u16)) {
                pushed_out.push(p.handle);
            }
        }
        assert_eq!(lot.len_of(Lot::Fragments), CAPACITY);
        assert_eq!(lot.len_of(Lot::Replies), 1, "the reply still waits");
        assert_eq!(pushed_out[0], 2, "the oldest fragment made room first");
        assert!(!pushed_out.contains(&1));
        // And the other way round.
        for i in 0..10 * CAPACITY as u32 {
            lot.park(100_000 + i, 0, 2, reply(i as u16));
        }
        assert_eq!(lot.len_of(Lot::Fragments), CAPACITY);
        assert_eq!(lot.len_of(Lot::Replies), CAPACITY);
    }

    #[test]
    fn hints_spread() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..10_000u32 {
            seen.insert(hint(&client(i), 53, 17));
        }
        println!("distinct hints of 10000 clients: {}", seen.len());
        assert!(seen.len() > 9000);
    }

    #[test]
    fn a_frame_is_retried_only_when_its_record_may_have_come_and_expires_on_time() {
        let mut lot: Parking<u8> = Parking::with_capacity(2);
        let (h1, h2) = (hint(&client(1), 53, 17), hint(&client(2), 53, 17));
        assert_ne!(h1, h2);
        assert_eq!(lot.park(9, 0, 99, reply(h1)), None);
        assert_eq!(lot.park(1, 0, 100, reply(h1)), None);
        assert_eq!(
            lot.park(2, 0, 101, reply(h2)).map(|p| p.handle),
            Some(9),
            "full: the oldest makes room"
        );
        let mut out = Vec::new();
        for t in 101..119 {
            lot.sweep(t, &mut out);
        }
        assert!(out.is_empty(), "nothing arrived: {out:?}");
        lot.record_arrived(h2);
        lot.sweep(119, &mut out);
        assert!(
            matches!(out[..], [Due::Retry(p)] if p.handle == 2),
            "{out:?}"
        );
        // Its retry found nothing: back it goes, and it expires with its first arrival.
        if let Due::Retry(p) = out[0] {
            lot.repark(p).unwrap();
        }
        out.clear();
        lot.sweep(120, &mut out);
        assert!(
            matches!(out[..], [Due::Expired(p)] if p.handle == 1),
            "{out:?}"
        );
        out.clear();
        lot.sweep(121, &mut out);
        assert!(
            matches!(out[..], [Due::Expired(p)] if p.handle == 2),
            "{out:?}"
        );
        assert!(lot.is_empty());
    }
}
