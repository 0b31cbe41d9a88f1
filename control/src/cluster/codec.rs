//! The sync channel's datagrams, sans-IO: encode, authenticate, decode, and the replay
//! window. Nothing here touches a socket, so every check is property-tested.
//!
//! ```text
//! header (34 bytes)                                       body              trailer
//! +------+---+----+------+-------+-----+-------+-------+ +--------------+ +---------+
//! |"TNDS"|ver|kind|sender| epoch | seq | count | fprint| | records or   | | MAC(16) |
//! |  4   | 1 | 1  |  2   |   8   |  8  |   2   |   8   | | heartbeat    | |         |
//! +------+---+----+------+-------+-----+-------+-------+ +--------------+ +---------+
//! ```
//!
//! The MAC is BLAKE3 in keyed mode over header and body, with a key derived from the
//! cluster secret, truncated to 16 bytes. `epoch` is the sender's start time, so a restarted
//! node starts a fresh sequence and a datagram from an earlier life is refused as a replay.
//! `fprint` is a fingerprint of the sender's ports: records name ports by index, so two
//! nodes must agree on them to share records. A record names its service by its key (the
//! VIP, port and protocol) and its backend by a tag of the names (`Backend::tag`), never by
//! index, so nodes whose services differ share the records of the services both have.

use tandem_dataplane::flow::{FlowKey, FlowRecord, FlowState};

pub const MAGIC: [u8; 4] = *b"TNDS";
pub const VERSION: u8 = 2;
pub const HEADER_LEN: usize = 34;
pub const MAC_LEN: usize = 16;
/// Largest datagram: one Ethernet MTU of UDP payload over IPv4.
pub const MAX_DATAGRAM: usize = 1472;
/// Room for records in one datagram.
pub const MAX_BODY: usize = MAX_DATAGRAM - HEADER_LEN - MAC_LEN;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Heartbeat = 1,
    /// New, changed or refreshed flow records.
    Records = 2,
    /// "Send me every flow you hold."
    SnapshotRequest = 3,
    /// Part of an answer to a snapshot request.
    SnapshotRecords = 4,
    /// The answer is complete; `count` in the body says how many records it had.
    SnapshotEnd = 5,
    /// The packet tracer: a trace armed or cleared on every node, or part of a traced
    /// frame's account (`TraceMsg`).
    Trace = 6,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            1 => Kind::Heartbeat,
            2 => Kind::Records,
            3 => Kind::SnapshotRequest,
            4 => Kind::SnapshotRecords,
            5 => Kind::SnapshotEnd,
            6 => Kind::Trace,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    pub sender: u16,
    pub epoch: u64,
    pub seq: u64,
    pub count: u16,
    pub fingerprint: u64,
}

/// Heartbeat flags.
pub const HB_READY: u8 = 1;
pub const HB_DRAINING: u8 = 2;
/// The sender reaches no backend (every path down, or its ports' links): it still holds the
/// cluster's flows (and answers snapshot requests) but serves none.
pub const HB_CUT_OFF: u8 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Heartbeat {
    pub flags: u8,
    /// Flows the sender holds.
    pub flows: u32,
    /// The highest sequence number the sender accepted from the receiver (current epoch).
    pub ack: u64,
    /// For SnapshotEnd: records in the snapshot.
    pub total: u64,
}

pub const HEARTBEAT_LEN: usize = 1 + 4 + 8 + 8;

/// What a `Trace` datagram says. A traced frame's account (JSON, told by the node that
/// traced it) may outgrow a datagram: it travels in parts, reassembled by the receiver.
///
/// ```text
/// arm:   1 | trace id (8) | count (4) | filter (UTF-8)
/// clear: 2 | trace id (8)
/// part:  3 | trace id (8) | entry (4) | part (1) | parts (1) | bytes
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceMsg {
    Arm {
        id: u64,
        count: u32,
        filter: String,
    },
    Clear {
        id: u64,
    },
    Part {
        id: u64,
        entry: u32,
        part: u8,
        parts: u8,
        bytes: Vec<u8>,
    },
}

/// Most parts of one account (8 x about 1,400 bytes).
pub const MAX_TRACE_PARTS: u8 = 8;
/// Room for an account's bytes in one part.
pub const TRACE_PART_BYTES: usize = MAX_BODY - (1 + 8 + 4 + 1 + 1);

impl TraceMsg {
    fn write(&self, buf: &mut Vec<u8>) {
        match self {
            TraceMsg::Arm { id, count, filter } => {
                buf.push(1);
                buf.extend_from_slice(&id.to_be_bytes());
                buf.extend_from_slice(&count.to_be_bytes());
                buf.extend_from_slice(filter.as_bytes());
            }
            TraceMsg::Clear { id } => {
                buf.push(2);
                buf.extend_from_slice(&id.to_be_bytes());
            }
            TraceMsg::Part {
                id,
                entry,
                part,
                parts,
                bytes,
            } => {
                buf.push(3);
                buf.extend_from_slice(&id.to_be_bytes());
                buf.extend_from_slice(&entry.to_be_bytes());
                buf.push(*part);
                buf.push(*parts);
                buf.extend_from_slice(bytes);
            }
        }
    }

    fn read(b: &[u8]) -> Option<TraceMsg> {
        let u64_at = |i: usize| -> Option<u64> {
            Some(u64::from_be_bytes(b.get(i..i + 8)?.try_into().ok()?))
        };
        let u32_at = |i: usize| -> Option<u32> {
            Some(u32::from_be_bytes(b.get(i..i + 4)?.try_into().ok()?))
        };
        match *b.first()? {
            1 => {
                let filter = std::str::from_utf8(b.get(13..)?).ok()?;
                if filter.is_empty() || filter.len() > 512 {
                    return None;
                }
                Some(TraceMsg::Arm {
                    id: u64_at(1)?,
                    count: u32_at(9)?,
                    filter: filter.to_string(),
                })
            }
            2 if b.len() == 9 => Some(TraceMsg::Clear { id: u64_at(1)? }),
            3 => {
                let (part, parts) = (*b.get(13)?, *b.get(14)?);
                if parts == 0 || parts > MAX_TRACE_PARTS || part >= parts {
                    return None;
                }
                Some(TraceMsg::Part {
                    id: u64_at(1)?,
                    entry: u32_at(9)?,
                    part,
                    parts,
                    bytes: b.get(15..)?.to_vec(),
                })
            }
            _ => None,
        }
    }
}

/// A flow record as it travels: node ids, not indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireRecord {
    pub key: FlowKey,
    /// The backend's tag (from its service's name and its own): ids differ between nodes.
    pub backend: u32,
    pub primary_path: u8,
    pub backup_path: u8,
    pub state: FlowState,
    pub ingress_port: u8,
    pub primary_node: u16,
    pub backup_node: u16,
    pub client_mac: [u8; 6],
}

/// Encoded size of a record: 32 bytes for IPv4, 56 for IPv6.
pub fn record_len(v6: bool) -> usize {
    let a = if v6 { 16 } else { 4 };
    2 + 2 * a + 4 + 4 + 4 + 4 + 6
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Too short, bad magic, version or kind, or a body that does not parse.
    Malformed,
    /// The MAC does not match: forged, corrupted, or keyed with another secret.
    Auth,
    /// Seen before, or older than the replay window, or from an earlier life of the sender.
    Replay,
    /// The sender is not in the config, or not at its configured address.
    UnknownNode,
    /// The sender's services differ from ours.
    ConfigMismatch,
    /// The sender's epoch (its start time) lies further ahead of our clock than
    /// `EPOCH_TOLERANCE`.
    FutureEpoch,
}

impl Refusal {
    pub fn name(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::Auth => "auth_failed",
            Refusal::Replay => "replay",
            Refusal::UnknownNode => "unknown_node",
            Refusal::ConfigMismatch => "config_mismatch",
            Refusal::FutureEpoch => "future_epoch",
        }
    }
}

/// The MAC key: derived from the secret file's bytes, so any length of secret works.
#[derive(Clone)]
pub struct Key([u8; 32]);

impl Key {
    pub fn derive(secret: &[u8]) -> Key {
        Key(blake3::derive_key("tandem cluster sync v1", secret))
    }
    fn mac(&self, data: &[u8]) -> [u8; MAC_LEN] {
        let h = blake3::keyed_hash(&self.0, data);
        let mut m = [0u8; MAC_LEN];
        m.copy_from_slice(&h.as_bytes()[..MAC_LEN]);
        m
    }
}

/// Constant-time comparison, so a forger learns nothing from timing.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Builds datagrams: header, body, MAC.
pub struct Writer {
    pub buf: Vec<u8>,
    count: u16,
}

impl Writer {
    pub fn new(h: &Header) -> Writer {
        let mut buf = Vec::with_capacity(MAX_DATAGRAM);
        buf.extend_from_slice(&MAGIC);
        buf.push(VERSION);
        buf.push(h.kind as u8);
        buf.extend_from_slice(&h.sender.to_be_bytes());
        buf.extend_from_slice(&h.epoch.to_be_bytes());
        buf.extend_from_slice(&h.seq.to_be_bytes());
        buf.extend_from_slice(&0u16.to_be_bytes());
        buf.extend_from_slice(&h.fingerprint.to_be_bytes());
        Writer { buf, count: 0 }
    }

    /// Room left for body bytes.
    pub fn room(&self) -> usize {
        MAX_DATAGRAM - MAC_LEN - self.buf.len()
    }

    pub fn heartbeat(&mut self, hb: &Heartbeat) {
        self.buf.push(hb.flags);
        self.buf.extend_from_slice(&hb.flows.to_be_bytes());
        self.buf.extend_from_slice(&hb.ack.to_be_bytes());
        self.buf.extend_from_slice(&hb.total.to_be_bytes());
    }

    /// Appends a record; false (and nothing written) when it does not fit.
    pub fn record(&mut self, r: &WireRecord) -> bool {
        let k = &r.key;
        if record_len(k.v6) > self.room() || self.count == u16::MAX {
            return false;
        }
        let alen = k.addr_len();
        self.buf.push(u8::from(k.v6));
        self.buf.push(k.proto);
        self.buf.extend_from_slice(&k.src[..alen]);
        self.buf.extend_from_slice(&k.dst[..alen]);
        self.buf.extend_from_slice(&k.sport.to_be_bytes());
        self.buf.extend_from_slice(&k.dport.to_be_bytes());
        self.buf.extend_from_slice(&r.backend.to_be_bytes());
        self.buf.push(r.primary_path);
        self.buf.push(r.backup_path);
        self.buf.push(r.state as u8);
        self.buf.push(r.ingress_port);
        self.buf.extend_from_slice(&r.primary_node.to_be_bytes());
        self.buf.extend_from_slice(&r.backup_node.to_be_bytes());
        self.buf.extend_from_slice(&r.client_mac);
        self.count += 1;
        true
    }

    pub fn count(&self) -> u16 {
        self.count
    }

    /// Writes a trace message (one per datagram; it fits by construction).
    pub fn trace(&mut self, m: &TraceMsg) {
        m.write(&mut self.buf);
    }

    /// Writes the record count and the MAC; the datagram is ready to send.
    pub fn finish(mut self, key: &Key) -> Vec<u8> {
        self.buf[24..26].copy_from_slice(&self.count.to_be_bytes());
        let m = key.mac(&self.buf);
        self.buf.extend_from_slice(&m);
        self.buf
    }
}

/// What a datagram holds, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Heartbeat(Heartbeat),
    Records(Vec<WireRecord>),
    SnapshotRequest,
    Trace(TraceMsg),
}

/// The header, read before authentication only to find the sender.
pub fn peek(d: &[u8]) -> Result<Header, Refusal> {
    if d.len() < HEADER_LEN + MAC_LEN || d[0..4] != MAGIC || d[4] != VERSION {
        return Err(Refusal::Malformed);
    }
    let u16_at = |i: usize| u16::from_be_bytes([d[i], d[i + 1]]);
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&d[i..i + 8]);
        u64::from_be_bytes(b)
    };
    Ok(Header {
        kind: Kind::from_u8(d[5]).ok_or(Refusal::Malformed)?,
        sender: u16_at(6),
        epoch: u64_at(8),
        seq: u64_at(16),
        count: u16_at(24),
        fingerprint: u64_at(26),
    })
}

/// Checks the MAC, then parses the body. Nothing is trusted before the MAC matches.
pub fn open(d: &[u8], key: &Key) -> Result<(Header, Body), Refusal> {
    let h = peek(d)?;
    let (signed, mac) = d.split_at(d.len() - MAC_LEN);
    if !same(&key.mac(signed), mac) {
        return Err(Refusal::Auth);
    }
    let mut b = &signed[HEADER_LEN..];
    let body = match h.kind {
        Kind::Heartbeat | Kind::SnapshotEnd => {
            if b.len() != HEARTBEAT_LEN {
                return Err(Refusal::Malformed);
            }
            let u64_at = |i: usize| {
                let mut x = [0u8; 8];
                x.copy_from_slice(&b[i..i + 8]);
                u64::from_be_bytes(x)
            };
            Body::Heartbeat(Heartbeat {
                flags: b[0],
                flows: u32::from_be_bytes([b[1], b[2], b[3], b[4]]),
                ack: u64_at(5),
                total: u64_at(13),
            })
        }
        Kind::SnapshotRequest => {
            if !b.is_empty() {
                return Err(Refusal::Malformed);
            }
            Body::SnapshotRequest
        }
        Kind::Trace => Body::Trace(TraceMsg::read(b).ok_or(Refusal::Malformed)?),
        Kind::Records | Kind::SnapshotRecords => {
            let mut out = Vec::with_capacity(usize::from(h.count));
            for _ in 0..h.count {
                let (r, rest) = read_record(b).ok_or(Refusal::Malformed)?;
                out.push(r);
                b = rest;
            }
            if !b.is_empty() {
                return Err(Refusal::Malformed);
            }
            Body::Records(out)
        }
    };
    Ok((h, body))
}

fn read_record(b: &[u8]) -> Option<(WireRecord, &[u8])> {
    let v6 = match *b.first()? {
        0 => false,
        1 => true,
        _ => return None,
    };
    let n = record_len(v6);
    if b.len() < n {
        return None;
    }
    let (r, rest) = b.split_at(n);
    let alen = if v6 { 16 } else { 4 };
    let mut key = FlowKey {
        proto: r[1],
        v6,
        ..FlowKey::default()
    };
    key.src[..alen].copy_from_slice(&r[2..2 + alen]);
    key.dst[..alen].copy_from_slice(&r[2 + alen..2 + 2 * alen]);
    let mut at = 2 + 2 * alen;
    let mut u16_next = || {
        let v = u16::from_be_bytes([r[at], r[at + 1]]);
        at += 2;
        v
    };
    key.sport = u16_next();
    key.dport = u16_next();
    let at = 2 + 2 * alen + 4;
    let backend = u32::from_be_bytes([r[at], r[at + 1], r[at + 2], r[at + 3]]);
    let at = at + 4;
    let state = FlowState::from_u8(r[at + 2])?;
    let primary_node = u16::from_be_bytes([r[at + 4], r[at + 5]]);
    let backup_node = u16::from_be_bytes([r[at + 6], r[at + 7]]);
    let mut client_mac = [0u8; 6];
    client_mac.copy_from_slice(&r[at + 8..at + 14]);
    Some((
        WireRecord {
            key,
            backend,
            primary_path: r[at],
            backup_path: r[at + 1],
            state,
            ingress_port: r[at + 3],
            primary_node,
            backup_node,
            client_mac,
        },
        rest,
    ))
}

impl WireRecord {
    /// The record as it travels: `tag` names its backend (`Backend::tag`), `id_of` turns
    /// node indices into ids.
    pub fn from_record(
        key: FlowKey,
        r: &FlowRecord,
        tag: u32,
        id_of: impl Fn(u8) -> u16,
    ) -> WireRecord {
        WireRecord {
            key,
            backend: tag,
            primary_path: r.primary_path,
            backup_path: r.backup_path,
            state: r.state,
            ingress_port: r.ingress_port,
            primary_node: id_of(r.primary_node),
            backup_node: id_of(r.backup_node),
            client_mac: r.client_mac,
        }
    }
}

/// Width of the replay window, in sequence numbers.
pub const WINDOW: u64 = 1024;

/// Per-sender replay protection (RFC 4303's sliding window, with the sender's epoch in
/// front): a datagram is accepted once, and only if it is not older than the window.
#[derive(Debug, Clone, Default)]
pub struct ReplayWindow {
    pub epoch: u64,
    pub top: u64,
    bits: [u64; (WINDOW / 64) as usize],
}

impl ReplayWindow {
    fn bit(&mut self, seq: u64) -> (&mut u64, u64) {
        let i = seq % WINDOW;
        (&mut self.bits[(i / 64) as usize], 1u64 << (i % 64))
    }

    /// Would `(epoch, seq)` be new? Does not record it.
    pub fn check(&self, epoch: u64, seq: u64) -> bool {
        if epoch != self.epoch {
            return epoch > self.epoch;
        }
        if seq > self.top {
            return true;
        }
        if self.top - seq >= WINDOW {
            return false;
        }
        let i = seq % WINDOW;
        self.bits[(i / 64) as usize] & (1 << (i % 64)) == 0
    }

    /// Records `(epoch, seq)` as seen; call only after `check` and authentication.
    pub fn accept(&mut self, epoch: u64, seq: u64) {
        if epoch != self.epoch {
            *self = ReplayWindow {
                epoch,
                top: seq,
                ..Default::default()
            };
        } else if seq > self.top {
            // Clear the slots the window slides over.
            let span = (seq - self.top).min(WINDOW);
            for s in 1..=span {
                let (w, m) = self.bit(self.top + s);
                *w &= !m;
            }
            self.top = seq;
        }
        let (w, m) = self.bit(seq);
        *w |= m;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> Key {
        Key::derive(b"correct horse battery staple")
    }

    fn header(kind: Kind, seq: u64) -> Header {
        Header {
            kind,
            sender: 2,
            epoch: 77,
            seq,
            count: 0,
            fingerprint: 0xfeed,
        }
    }

    fn arb_record() -> impl Strategy<Value = WireRecord> {
        (
            any::<bool>(),
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
            any::<(u16, u16, u32)>(),
            any::<(u8, u8, u8)>(),
            0u8..4,
            any::<(u16, u16)>(),
            any::<[u8; 6]>(),
        )
            .prop_map(|(v6, mut s, mut d, p, q, st, n, mac)| {
                if !v6 {
                    s[4..].fill(0);
                    d[4..].fill(0);
                }
                WireRecord {
                    key: FlowKey {
                        src: s,
                        dst: d,
                        sport: p.0,
                        dport: p.1,
                        proto: q.2,
                        v6,
                    },
                    backend: p.2,
                    primary_path: q.0,
                    backup_path: q.1,
                    state: FlowState::from_u8(st).unwrap(),
                    ingress_port: q.2,
                    primary_node: n.0,
                    backup_node: n.1,
                    client_mac: mac,
                }
            })
    }

    proptest! {
        #[test]
        fn records_round_trip(recs in proptest::collection::vec(arb_record(), 0..60)) {
            let mut w = Writer::new(&header(Kind::Records, 5));
            let mut sent = Vec::new();
            for r in &recs {
                if !w.record(r) {
                    break;
                }
                sent.push(*r);
            }
            let d = w.finish(&key());
            prop_assert!(d.len() <= MAX_DATAGRAM);
            let (h, body) = open(&d, &key()).unwrap();
            prop_assert_eq!(h.seq, 5);
            prop_assert_eq!(h.count as usize, sent.len());
            prop_assert_eq!(body, Body::Records(sent));
        }

        #[test]
        fn heartbeat_round_trip(flags in any::<u8>(), flows in any::<u32>(), ack in any::<u64>()) {
            let mut w = Writer::new(&header(Kind::Heartbeat, 9));
            let hb = Heartbeat { flags, flows, ack, total: 0 };
            w.heartbeat(&hb);
            let (_, body) = open(&w.finish(&key()), &key()).unwrap();
            prop_assert_eq!(body, Body::Heartbeat(hb));
        }

        #[test]
        fn trace_messages_round_trip_and_bad_bodies_are_refused(
            id in any::<u64>(),
            count in any::<u32>(),
            filter in "[a-z0-9 .:]{1,80}",
            part in 0u8..8,
            bytes in proptest::collection::vec(any::<u8>(), 0..TRACE_PART_BYTES),
            junk in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            for m in [
                TraceMsg::Arm { id, count, filter: filter.clone() },
                TraceMsg::Clear { id },
                TraceMsg::Part { id, entry: count, part, parts: 8, bytes: bytes.clone() },
            ] {
                let mut w = Writer::new(&header(Kind::Trace, 3));
                w.trace(&m);
                let d = w.finish(&key());
                prop_assert!(d.len() <= MAX_DATAGRAM);
                prop_assert_eq!(open(&d, &key()).unwrap().1, Body::Trace(m));
            }
            // A body that is not a trace message, authenticated all the same, is refused.
            let mut w = Writer::new(&header(Kind::Trace, 4));
            w.buf.extend_from_slice(&junk);
            match open(&w.finish(&key()), &key()) {
                Ok((_, Body::Trace(m))) => prop_assert_eq!(TraceMsg::read(&junk), Some(m)),
                Ok(other) => prop_assert!(false, "{:?}", other),
                Err(e) => prop_assert_eq!(e, Refusal::Malformed),
            }
        }

        /// Arbitrary bytes never panic and never open.
        #[test]
        fn arbitrary_bytes_are_refused(d in proptest::collection::vec(any::<u8>(), 0..1600)) {
            prop_assert!(open(&d, &key()).is_err());
        }

        /// Any change to a valid datagram is refused (one flipped bit anywhere).
        #[test]
        fn tampering_is_refused(recs in proptest::collection::vec(arb_record(), 1..10), at in any::<prop::sample::Index>(), bit in 0u8..8) {
            let mut w = Writer::new(&header(Kind::Records, 1));
            for r in &recs {
                w.record(r);
            }
            let mut d = w.finish(&key());
            let i = at.index(d.len());
            d[i] ^= 1 << bit;
            prop_assert!(open(&d, &key()).is_err());
        }

        /// Every sequence number is accepted once, in any order, within the window.
        #[test]
        fn window_accepts_each_once(seqs in proptest::collection::vec(0u64..3000, 1..300)) {
            let mut w = ReplayWindow::default();
            let mut seen = std::collections::HashSet::new();
            let mut top = 0u64;
            for s in seqs {
                let fresh = !seen.contains(&s) && (s > top || top - s < WINDOW);
                let ok = w.check(1, s);
                prop_assert_eq!(ok, fresh || (w.epoch != 1));
                if ok {
                    w.accept(1, s);
                    seen.insert(s);
                    top = top.max(s);
                }
            }
        }
    }

    #[test]
    fn another_secret_does_not_open() {
        let d = Writer::new(&header(Kind::SnapshotRequest, 1)).finish(&key());
        assert_eq!(open(&d, &Key::derive(b"guess")), Err(Refusal::Auth));
        assert!(open(&d, &key()).is_ok());
    }

    #[test]
    fn replay_and_old_epochs_are_refused() {
        let mut w = ReplayWindow::default();
        assert!(w.check(10, 1));
        w.accept(10, 1);
        assert!(!w.check(10, 1), "same datagram twice");
        assert!(w.check(10, 5));
        w.accept(10, 5);
        assert!(w.check(10, 3), "late but inside the window");
        w.accept(10, 3 + WINDOW * 3);
        assert!(!w.check(10, 5), "slid out of the window");
        assert!(!w.check(9, 100_000), "an earlier life of the sender");
        assert!(w.check(11, 0), "the sender restarted");
    }

    #[test]
    fn record_sizes() {
        assert_eq!(record_len(false), 32);
        assert_eq!(record_len(true), 56);
        assert_eq!(MAX_BODY / record_len(false), 44);
    }
}
