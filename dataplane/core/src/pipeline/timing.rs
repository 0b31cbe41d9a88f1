//! Passive timing of nat flows: the handshake (SYN to SYN-ACK) and the response time (a
//! client's payload to the server's first payload), from the packets the node forwards
//! anyway, recorded into this period's histograms per (backend, path).

use super::context::Segment;
use super::Now;
use crate::flow::{FlowRecord, FlowState, Mark};
use crate::qos::hist::{HistSet, Kind};
use crate::services::Services;
use crate::wire::l4::{self, ACK, FIN, RST, SYN};

/// A histogram set shaped for these services' backends and paths.
pub fn hist_for(s: &Services) -> HistSet {
    let paths: Vec<usize> = s.backends.iter().map(|b| b.paths.len()).collect();
    HistSet::new(&paths)
}

#[inline]
fn mark_kind(m: Mark) -> Kind {
    if m == Mark::Handshake {
        Kind::Handshake
    } else {
        Kind::Response
    }
}

/// A new nat flow: its SYN starts a handshake timing, or its first payload a response one.
#[inline]
pub(super) fn start(r: &mut FlowRecord, seg: &Segment, now: Now) {
    if r.state == FlowState::SynSeen {
        r.mark = Mark::Handshake;
        r.mark_us = now.us as u32;
    } else if seg.l4.payload_len > 0 {
        r.mark = Mark::Response;
        r.mark_us = now.us as u32;
    }
}

/// Request side: client payload starts a response timing when none is under way. A timing
/// pending past `timeout_us` is recorded as a timeout. A client that gives up (FIN or RST)
/// while waiting records how long it waited: a timeout when that reached `timeout_us`, else
/// a plain sample (the response took at least that long), so a client that half-closes
/// right after its request does not make a backend look slow.
#[inline(always)]
pub(super) fn request(
    r: &mut FlowRecord,
    seg: l4::Ports,
    now_us: u64,
    h: &mut HistSet,
    timeout_us: u64,
) {
    if r.mark != Mark::None {
        let waited = u64::from((now_us as u32).wrapping_sub(r.mark_us));
        let kind = mark_kind(r.mark);
        if waited >= timeout_us {
            h.record_timeout(r.backend, r.primary_path, kind, timeout_us);
            r.mark = Mark::None;
        } else if seg.flags & (FIN | RST) != 0 {
            h.record(r.backend, r.primary_path, kind, waited);
            r.mark = Mark::None;
        }
    }
    if r.mark == Mark::None && seg.payload_len > 0 && seg.flags & RST == 0 {
        r.mark = Mark::Response;
        r.mark_us = now_us as u32;
    }
}

/// Reply side: the SYN-ACK ends a handshake timing, the first server payload a response
/// timing; a server reset ends either as a reset. True when a sample was recorded.
#[inline]
pub(super) fn reply(
    r: &mut FlowRecord,
    seg: l4::Ports,
    now_us: u64,
    h: &mut HistSet,
    timeout_us: u64,
) -> bool {
    let kind = match r.mark {
        Mark::None => return false,
        m => mark_kind(m),
    };
    let took = u64::from((now_us as u32).wrapping_sub(r.mark_us));
    if seg.flags & RST != 0 {
        h.record_reset(r.backend, r.primary_path, kind, timeout_us);
    } else if (r.mark == Mark::Handshake && seg.flags & (SYN | ACK) == SYN | ACK)
        || (r.mark == Mark::Response && seg.payload_len > 0)
    {
        if took > timeout_us {
            h.record_timeout(r.backend, r.primary_path, kind, timeout_us);
        } else {
            h.record(r.backend, r.primary_path, kind, took);
        }
    } else {
        return false;
    }
    r.mark = Mark::None;
    true
}
