//! The packet core against arbitrary frames on any port, on a node alone and in a cluster.
//! The input is a run of frames, each `[port][flags][len lo][len hi]` then `len` bytes, so
//! the flows a frame makes are there for the next (replies, retransmits, closes). Every
//! verdict must leave the frame inside its buffer; nothing may panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use tandem_dataplane::pipeline::{Core, Now, PacketBuf, Verdict};

thread_local! {
    static CORES: RefCell<[Core; 2]> = RefCell::new([tandem_fuzz::core(false), tandem_fuzz::core(true)]);
}

/// Headroom in front of each frame, as an mbuf has (encapsulation moves into it).
const HEADROOM: usize = 128;

fuzz_target!(|data: &[u8]| {
    CORES.with(|cores| {
        let mut cores = cores.borrow_mut();
        let mut buf = vec![0u8; 2048 + HEADROOM];
        let mut rest = data;
        let mut now_us = 1_000_000u64;
        let mut handle = 1usize;
        while let [port, flags, lo, hi, tail @ ..] = rest {
            let len = usize::from(u16::from_le_bytes([*lo, *hi]))
                .min(tail.len())
                .min(2048);
            let (frame, next) = tail.split_at(len);
            rest = next;
            let core = &mut cores[usize::from(flags & 1)];
            // Time moves on by up to a quarter second a frame.
            now_us += u64::from(flags >> 1) * 2_000;
            core.set_now(Now::from_us(now_us));
            buf[..HEADROOM].fill(0);
            buf[HEADROOM..HEADROOM + frame.len()].copy_from_slice(frame);
            let mut p = PacketBuf {
                buf: &mut buf,
                start: HEADROOM,
                len: frame.len(),
                handle,
            };
            handle += 1;
            let v = if flags & 0x80 != 0 {
                core.process_again(port % 3, &mut p)
            } else {
                core.process(port % 3, &mut p)
            };
            if let Verdict::Tx(_) = v {
                assert!(p.start + p.len <= p.buf.len());
                assert!(p.len >= 14, "a frame sent is at least an Ethernet header");
            }
            core.take_arrivals(|_| {});
            core.release_queued(|_, _| true, |_| {});
            core.housekeeping_paced();
            core.state.outbox.clear();
        }
    });
});
