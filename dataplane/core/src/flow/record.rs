//! What a flow table stores for a flow, and the TCP state machine that picks its timeout.

use crate::wire::l4::{ACK, FIN, RST, SYN};
use std::time::Duration;

/// "No node": a record of a node on its own, or a backup that does not exist.
pub const NO_NODE: u8 = u8::MAX;

/// Where a flow is in its life; each state has its own idle timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum FlowState {
    /// A SYN was seen, the handshake has not completed.
    #[default]
    SynSeen = 0,
    Established = 1,
    /// A FIN or RST was seen.
    Closing = 2,
    /// UDP: no states, one idle timeout.
    Udp = 3,
}

impl FlowState {
    pub fn name(self) -> &'static str {
        match self {
            FlowState::SynSeen => "syn_seen",
            FlowState::Established => "established",
            FlowState::Closing => "closing",
            FlowState::Udp => "udp",
        }
    }
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => FlowState::SynSeen,
            1 => FlowState::Established,
            2 => FlowState::Closing,
            3 => FlowState::Udp,
            _ => return None,
        })
    }

    /// The state of a new flow whose first packet carried `flags` (0 for UDP).
    pub fn initial(proto: u8, flags: u8) -> Self {
        if proto != crate::wire::l4::PROTO_TCP {
            FlowState::Udp
        } else if flags & (FIN | RST) != 0 {
            FlowState::Closing
        } else if flags & SYN != 0 && flags & ACK == 0 {
            FlowState::SynSeen
        } else {
            // A mid-stream packet with no record (a table lost to a restart, say): carry on.
            FlowState::Established
        }
    }

    /// The next state after a packet with `flags` in either direction.
    pub fn next(self, flags: u8) -> Self {
        match self {
            FlowState::Udp => FlowState::Udp,
            _ if flags & (FIN | RST) != 0 => FlowState::Closing,
            FlowState::SynSeen if flags & ACK != 0 && flags & SYN == 0 => FlowState::Established,
            s => s,
        }
    }
}

/// Idle timeouts per state, in milliseconds (the tables' clock).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub syn_ms: u32,
    pub established_ms: u32,
    pub closing_ms: u32,
    pub udp_ms: u32,
}

impl Timeouts {
    pub fn new(syn: Duration, established: Duration, closing: Duration, udp: Duration) -> Self {
        let ms = |d: Duration| d.as_millis().min(u128::from(u32::MAX / 2)) as u32;
        Timeouts {
            syn_ms: ms(syn),
            established_ms: ms(established),
            closing_ms: ms(closing),
            udp_ms: ms(udp),
        }
    }
    /// The timeouts `[flows]` gives.
    pub fn of(f: &tandem_config::FlowsConfig) -> Self {
        Timeouts::new(
            f.tcp_syn_timeout,
            f.tcp_established_timeout,
            f.tcp_closing_timeout,
            f.udp_timeout,
        )
    }
    /// How often a live flow in state `s` is re-announced to the control thread (ms): a
    /// quarter of its timeout, within [250ms, 30s].
    #[inline]
    pub fn sync_interval(&self, s: FlowState) -> u32 {
        (self.for_state(s) / 4).clamp(250, 30_000)
    }

    /// The longest `sync_interval` of any state: a live flow is heard of at least this often.
    pub fn longest_sync_interval(&self) -> u32 {
        [
            FlowState::SynSeen,
            FlowState::Established,
            FlowState::Closing,
            FlowState::Udp,
        ]
        .into_iter()
        .map(|s| self.sync_interval(s))
        .max()
        .unwrap_or(30_000)
    }

    #[inline]
    pub fn for_state(&self, s: FlowState) -> u32 {
        match s {
            FlowState::SynSeen => self.syn_ms,
            FlowState::Established => self.established_ms,
            FlowState::Closing => self.closing_ms,
            FlowState::Udp => self.udp_ms,
        }
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            syn_ms: 10_000,
            established_ms: 900_000,
            closing_ms: 10_000,
            udp_ms: 300_000,
        }
    }
}

/// The record of one flow, as every worker stores it.
///
/// Keyed by the client's 5-tuple to the VIP, one entry per flow. A nat reply (backend to
/// client) finds it by the services its source belongs to: the client's side of the reply
/// and the service's VIP make the key back (`Services::nat_services_of`).
///
/// 32 bytes, so an IPv4 flow fits a 48-byte table entry: keep new fields within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowRecord {
    pub service: u16,
    /// Global backend id, or [`UNBOUND`] on a receiving node that forwarded the flow's
    /// first packet to its primary node and has not yet heard which backend it picked.
    pub backend: u16,
    /// Indices into the backend's path list.
    pub primary_path: u8,
    pub backup_path: u8,
    pub state: FlowState,
    /// The port the flow's requests arrive on; nat replies leave by it.
    pub ingress_port: u8,
    /// The flow's primary and backup node (indices into the cluster's node list; both
    /// [`NO_NODE`] on a node on its own). Fixed when the flow starts, whatever changes after.
    pub primary_node: u8,
    pub backup_node: u8,
    /// The L2 source of the flow's requests: the fallback next hop for replies.
    pub client_mac: [u8; 6],
    /// Node-local clock (ms since the node started; wraps after 49 days, compared wrapping).
    pub last_seen_ms: u32,
    /// When this worker last told the control thread the flow is alive.
    pub last_sync_ms: u32,
    /// True on the one copy (the admitting worker's) that holds a slot of its backend's
    /// admission count; that copy gives the slot back when it closes, expires or is evicted.
    pub admitted: bool,
    /// A passive measurement under way (nat): what is being timed, since when.
    pub mark: Mark,
    /// Microseconds on the node's clock (low 32 bits) when the measurement started.
    pub mark_us: u32,
}

// A record outgrowing 32 bytes makes every IPv4 table entry 8 bytes bigger (48 -> 56, over
// the 64 bytes per flow the table is sized for): fail the build instead.
const _: () = assert!(std::mem::size_of::<FlowRecord>() == 32);

/// What a flow's passive measurement is timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum Mark {
    #[default]
    None = 0,
    /// The SYN went to the backend; waiting for its SYN-ACK.
    Handshake = 1,
    /// Client payload went to the backend; waiting for the first server payload.
    Response = 2,
}

/// The backend of a flow whose backend is not known here yet.
pub const UNBOUND: u16 = u16::MAX;

impl Default for FlowRecord {
    fn default() -> Self {
        FlowRecord {
            service: 0,
            backend: 0,
            primary_path: 0,
            backup_path: 0,
            state: FlowState::default(),
            ingress_port: 0,
            primary_node: NO_NODE,
            backup_node: NO_NODE,
            client_mac: [0; 6],
            last_seen_ms: 0,
            last_sync_ms: 0,
            admitted: false,
            mark: Mark::None,
            mark_us: 0,
        }
    }
}

impl FlowRecord {
    /// True when the record names its backend (see [`UNBOUND`]).
    #[inline]
    pub fn bound(&self) -> bool {
        self.backend != UNBOUND
    }

    /// True when the flow has been idle longer than its state allows.
    #[inline]
    pub fn expired(&self, now_ms: u32, t: &Timeouts) -> bool {
        now_ms.wrapping_sub(self.last_seen_ms) as i32 > t.for_state(self.state) as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_states() {
        assert_eq!(FlowState::initial(6, SYN), FlowState::SynSeen);
        assert_eq!(FlowState::initial(6, ACK), FlowState::Established);
        assert_eq!(FlowState::initial(17, 0), FlowState::Udp);
        assert_eq!(FlowState::SynSeen.next(SYN | ACK), FlowState::SynSeen);
        assert_eq!(FlowState::SynSeen.next(ACK), FlowState::Established);
        assert_eq!(FlowState::Established.next(FIN | ACK), FlowState::Closing);
        assert_eq!(FlowState::Closing.next(ACK), FlowState::Closing);
        assert_eq!(FlowState::Udp.next(FIN), FlowState::Udp);
    }

    #[test]
    fn expiry_by_state() {
        let t = Timeouts::default();
        let r = FlowRecord {
            state: FlowState::SynSeen,
            last_seen_ms: 1000,
            ..Default::default()
        };
        assert!(!r.expired(11_000, &t));
        assert!(r.expired(11_001, &t));
        let e = FlowRecord {
            state: FlowState::Established,
            ..r
        };
        assert!(!e.expired(11_001, &t));
        // Wrapping clock.
        let w = FlowRecord {
            last_seen_ms: u32::MAX - 10,
            state: FlowState::SynSeen,
            ..r
        };
        assert!(!w.expired(100, &t));
    }
}
