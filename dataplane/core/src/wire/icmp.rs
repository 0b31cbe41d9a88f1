//! ICMP echo (RFC 792) and ICMPv6 echo and neighbor discovery (RFC 4443, RFC 4861): the
//! messages a node answers for its own addresses and VIPs; and the errors (destination
//! unreachable, fragmentation needed / packet too big, time exceeded) whose quote of the
//! packet that caused them names a flow.

use super::l4::{PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};
use super::{checksum, get_u16, ipv4, ipv6, set_u16, WireError};

pub const ECHO_REQUEST: u8 = 8;
pub const ECHO_REPLY: u8 = 0;
pub const V6_ECHO_REQUEST: u8 = 128;
pub const V6_ECHO_REPLY: u8 = 129;
pub const V6_ROUTER_SOLICIT: u8 = 133;
pub const V6_ROUTER_ADVERT: u8 = 134;
pub const V6_NEIGHBOR_SOLICIT: u8 = 135;
pub const V6_NEIGHBOR_ADVERT: u8 = 136;
pub const V6_REDIRECT: u8 = 137;
pub const DEST_UNREACHABLE: u8 = 3;
pub const TIME_EXCEEDED: u8 = 11;
/// Destination unreachable's code for "fragmentation needed and DF set" (RFC 1191).
pub const CODE_FRAG_NEEDED: u8 = 4;
pub const V6_DEST_UNREACHABLE: u8 = 1;
pub const V6_PACKET_TOO_BIG: u8 = 2;
pub const V6_TIME_EXCEEDED: u8 = 3;
/// The header of an error message: type, code, checksum, four bytes (unused, or the MTU),
/// then the quote.
pub const ERROR_HEADER_LEN: usize = 8;
/// Bytes of the transport header an error must quote to name a flow: RFC 792 promises 8.
pub const QUOTED_L4_LEN: usize = 8;

/// An ICMP error that names a flow by its quote, by kind (each is counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Unreachable,
    FragNeeded,
    TimeExceeded,
    V6Unreachable,
    V6TooBig,
    V6TimeExceeded,
}

/// The kind of error an ICMP (`v6` false) or ICMPv6 message of this type and code is, or
/// None when it is not one that quotes a packet of a flow.
pub fn error_kind(msg_type: u8, code: u8, v6: bool) -> Option<ErrorKind> {
    match (v6, msg_type) {
        (false, DEST_UNREACHABLE) if code == CODE_FRAG_NEEDED => Some(ErrorKind::FragNeeded),
        (false, DEST_UNREACHABLE) => Some(ErrorKind::Unreachable),
        (false, TIME_EXCEEDED) => Some(ErrorKind::TimeExceeded),
        (true, V6_DEST_UNREACHABLE) => Some(ErrorKind::V6Unreachable),
        (true, V6_PACKET_TOO_BIG) => Some(ErrorKind::V6TooBig),
        (true, V6_TIME_EXCEEDED) => Some(ErrorKind::V6TimeExceeded),
        _ => None,
    }
}

/// The packet an error quotes, as far as naming its flow goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quote {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    pub v6: bool,
    /// Offset of the quoted transport header in the ICMP message.
    pub l4_at: usize,
}

/// The smallest MTU a "fragmentation needed" may name (RFC 791: every IPv4 link carries
/// 68 bytes) and a "packet too big" (RFC 8200: every IPv6 link carries 1280).
pub const MIN_MTU_V4: u32 = 68;
pub const MIN_MTU_V6: u32 = 1280;

/// The next-hop MTU an error names, when it names one: a "fragmentation needed" (its
/// 16-bit field) or a "packet too big" (32 bits).
pub fn named_mtu(msg: &[u8], kind: ErrorKind) -> Option<u32> {
    match kind {
        ErrorKind::FragNeeded => Some(u32::from(get_u16(msg.get(..8)?, 6))),
        ErrorKind::V6TooBig => {
            let b = msg.get(4..8)?;
            Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        }
        _ => None,
    }
}

/// True when an error names an MTU no link has (`MIN_MTU_V4`, `MIN_MTU_V6`).
pub fn names_impossible_mtu(msg: &[u8], kind: ErrorKind) -> bool {
    match named_mtu(msg, kind) {
        Some(m) if kind == ErrorKind::V6TooBig => m < MIN_MTU_V6,
        Some(m) => m < MIN_MTU_V4,
        None => false,
    }
}

/// The TCP flags of the quoted segment, when the quote reaches them (routers must quote
/// 8 bytes of it; most quote more).
pub fn quoted_tcp_flags(msg: &[u8], q: &Quote) -> Option<u8> {
    if q.proto != PROTO_TCP {
        return None;
    }
    msg.get(q.l4_at + 13).copied()
}

/// Why an error's quote names no flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuoteError {
    /// Too short for the quoted IP header and 8 bytes after it, a quoted IP header of the
    /// other version or an impossible one, a quote of a later fragment (no ports in it), of
    /// a protocol other than TCP and UDP, or of a header chain the walk refuses.
    Bad,
    /// The quoted packet is itself ICMP: an error about an error (RFC 1122 forbids sending
    /// one) or about an echo, neither of them a flow.
    AboutIcmp,
}

/// Reads the quote of an ICMP error message `msg` (from its type byte on): the quoted IP
/// header must be of the error's own version (`v6`).
pub fn quote(msg: &[u8], v6: bool) -> Result<Quote, QuoteError> {
    let q = msg.get(ERROR_HEADER_LEN..).ok_or(QuoteError::Bad)?;
    let (mut src, mut dst) = ([0u8; 16], [0u8; 16]);
    let (proto, l4_at) = if v6 {
        let ip = ipv6::Packet::new_quoted(q).map_err(|_| QuoteError::Bad)?;
        let up = ipv6::upper_layer(ip.next_header(), ip.quoted_payload())
            .map_err(|_| QuoteError::Bad)?;
        if up.fragment.is_some_and(|f| f.offset != 0) {
            return Err(QuoteError::Bad);
        }
        src = ip.src_bytes();
        dst = ip.dst_bytes();
        (up.proto, up.offset)
    } else {
        let ip = ipv4::Packet::new_quoted(q).map_err(|_| QuoteError::Bad)?;
        if ip.frag_offset() != 0 {
            return Err(QuoteError::Bad);
        }
        src[..4].copy_from_slice(&ip.src_bytes());
        dst[..4].copy_from_slice(&ip.dst_bytes());
        (ip.protocol(), ip.header_len())
    };
    if proto == PROTO_ICMP || proto == PROTO_ICMPV6 {
        return Err(QuoteError::AboutIcmp);
    }
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return Err(QuoteError::Bad);
    }
    let l4 = q.get(l4_at..l4_at + QUOTED_L4_LEN).ok_or(QuoteError::Bad)?;
    Ok(Quote {
        src,
        dst,
        proto,
        sport: get_u16(l4, 0),
        dport: get_u16(l4, 2),
        v6,
        l4_at: ERROR_HEADER_LEN + l4_at,
    })
}

/// Fills an ICMP (IPv4) message's checksum, computed over all of it.
pub fn fill_checksum_v4(b: &mut [u8]) {
    set_u16(b, 2, 0);
    let c = checksum::checksum(b);
    set_u16(b, 2, c);
}

/// A checked view of an ICMP or ICMPv6 message: its 8-byte header is there.
pub struct Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_unchecked(buf: T) -> Self {
        Packet { buf }
    }
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        if buf.as_ref().len() < 8 {
            return Err(WireError::Truncated);
        }
        Ok(Packet { buf })
    }
    pub fn msg_type(&self) -> u8 {
        self.buf.as_ref()[0]
    }
    pub fn code(&self) -> u8 {
        self.buf.as_ref()[1]
    }
    pub fn checksum(&self) -> u16 {
        get_u16(self.buf.as_ref(), 2)
    }
    /// An echo's identifier and sequence number.
    pub fn echo_ident(&self) -> u16 {
        get_u16(self.buf.as_ref(), 4)
    }
    pub fn echo_seq(&self) -> u16 {
        get_u16(self.buf.as_ref(), 6)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the message type and patches the checksum (an echo request into its reply: for
    /// ICMPv6 the pseudo header is unchanged when the addresses are swapped).
    pub fn set_msg_type(&mut self, t: u8) {
        let b = self.buf.as_mut();
        let old = get_u16(b, 0);
        b[0] = t;
        let new = get_u16(b, 0);
        let c = checksum::update16(get_u16(b, 2), old, new);
        set_u16(b, 2, c);
    }
}

/// An echo request or reply (the owned form of an echo `Packet`; the data is not kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Echo {
    pub msg_type: u8,
    pub ident: u16,
    pub seq: u16,
}

impl Echo {
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Echo {
        Echo {
            msg_type: p.msg_type(),
            ident: p.echo_ident(),
            seq: p.echo_seq(),
        }
    }
    /// Writes the 8-byte header; the checksum is left zero (the caller sums the data).
    pub fn emit(&self, b: &mut [u8]) {
        b[0] = self.msg_type;
        b[1] = 0;
        set_u16(b, 2, 0);
        set_u16(b, 4, self.ident);
        set_u16(b, 6, self.seq);
    }
}

/// The message type, after checking the 8-byte header is there.
pub fn message_type(b: &[u8]) -> Result<u8, WireError> {
    Packet::new_checked(b).map(|p| p.msg_type())
}

/// Turns an ICMPv4 echo request into its reply in place (type 8 -> 0), checksum patched.
pub fn echo_to_reply_v4(b: &mut [u8]) {
    Packet::new_unchecked(b).set_msg_type(ECHO_REPLY)
}

/// Turns an ICMPv6 echo request into its reply in place.
pub fn echo_to_reply_v6(b: &mut [u8]) {
    Packet::new_unchecked(b).set_msg_type(V6_ECHO_REPLY)
}

/// A neighbor solicitation or advertisement (the owned form of an ND message): its target and
/// the link-layer address option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nd {
    pub kind: u8,
    pub target: [u8; 16],
    /// Source (in an NS) or target (in an NA) link-layer address option.
    pub lladdr: Option<[u8; 6]>,
}

pub fn parse_nd(b: &[u8]) -> Result<Nd, WireError> {
    if b.len() < 24 {
        return Err(WireError::Truncated);
    }
    let mut target = [0u8; 16];
    target.copy_from_slice(&b[8..24]);
    let mut lladdr = None;
    let mut opts = &b[24..];
    while opts.len() >= 8 {
        let len = usize::from(opts[1]) * 8;
        if len == 0 || len > opts.len() {
            return Err(WireError::Malformed);
        }
        if (opts[0] == 1 || opts[0] == 2) && len >= 8 {
            let mut m = [0u8; 6];
            m.copy_from_slice(&opts[2..8]);
            lladdr = Some(m);
        }
        opts = &opts[len..];
    }
    Ok(Nd {
        kind: b[0],
        target,
        lladdr,
    })
}

/// Length of an NS or NA with one link-layer address option.
pub const ND_LEN: usize = 32;

/// Writes an NS (kind 135, source lladdr option) or NA (136, solicited+override, target
/// lladdr option) into `b` (32 bytes); the checksum is filled by the caller with the
/// pseudo header.
pub fn emit_nd(b: &mut [u8], kind: u8, target: &[u8; 16], lladdr: &[u8; 6]) {
    b[0] = kind;
    b[1] = 0;
    set_u16(b, 2, 0);
    b[4..8].copy_from_slice(&if kind == V6_NEIGHBOR_ADVERT {
        [0x60, 0, 0, 0]
    } else {
        [0; 4]
    });
    b[8..24].copy_from_slice(target);
    b[24] = if kind == V6_NEIGHBOR_ADVERT { 2 } else { 1 };
    b[25] = 1;
    b[26..32].copy_from_slice(lladdr);
}

/// Fills the ICMPv6 checksum over the pseudo header.
pub fn fill_checksum_v6(src: &[u8; 16], dst: &[u8; 16], b: &mut [u8]) {
    set_u16(b, 2, 0);
    let sum = checksum::pseudo_header_sum(src, dst, super::l4::PROTO_ICMPV6, b.len() as u32);
    let c = !checksum::fold(checksum::sum_words(sum, b));
    set_u16(b, 2, c);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn echo_round_trip(request in any::<bool>(), ident in any::<u16>(), seq in any::<u16>()) {
            let e = Echo { msg_type: if request { ECHO_REQUEST } else { ECHO_REPLY }, ident, seq };
            let mut b = [0u8; 8];
            e.emit(&mut b);
            prop_assert_eq!(Echo::parse(&Packet::new_checked(&b[..]).unwrap()), e);
        }
        #[test]
        fn nd_round_trip(advert in any::<bool>(), target in any::<[u8; 16]>(), mac in any::<[u8; 6]>()) {
            let kind = if advert { V6_NEIGHBOR_ADVERT } else { V6_NEIGHBOR_SOLICIT };
            let mut b = [0u8; ND_LEN];
            emit_nd(&mut b, kind, &target, &mac);
            prop_assert_eq!(parse_nd(&b), Ok(Nd { kind, target, lladdr: Some(mac) }));
        }
        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..48)) {
            let _ = message_type(&b);
            let _ = parse_nd(&b);
            let _ = quote(&b, false);
            let _ = quote(&b, true);
        }
        #[test]
        fn a_quote_names_its_packet(v6 in any::<bool>(), tcp in any::<bool>(), sport in any::<u16>(), dport in any::<u16>(), extra in 0usize..40) {
            let proto = if tcp { PROTO_TCP } else { PROTO_UDP };
            let ip_len = if v6 { ipv6::HEADER_LEN } else { ipv4::MIN_HEADER_LEN };
            let mut m = vec![0u8; ERROR_HEADER_LEN + ip_len + QUOTED_L4_LEN + extra];
            let (src, dst) = ([0x11u8; 16], [0x22u8; 16]);
            let q = &mut m[ERROR_HEADER_LEN..];
            if v6 {
                ipv6::emit(q, src, dst, proto, 1400, 64);
            } else {
                ipv4::emit(q, [0x11; 4], [0x22; 4], proto, 1400, 64);
            }
            set_u16(q, ip_len, sport);
            set_u16(q, ip_len + 2, dport);
            let got = quote(&m, v6).unwrap();
            prop_assert_eq!((got.proto, got.sport, got.dport, got.v6), (proto, sport, dport, v6));
            prop_assert_eq!(got.l4_at, ERROR_HEADER_LEN + ip_len);
            prop_assert_eq!(&got.src[..if v6 { 16 } else { 4 }], &src[..if v6 { 16 } else { 4 }]);
            // Cut short of the 8 transport bytes, or quoted by the other version: no flow.
            prop_assert_eq!(quote(&m[..ERROR_HEADER_LEN + ip_len + 7], v6), Err(QuoteError::Bad));
            prop_assert_eq!(quote(&m, !v6), Err(QuoteError::Bad));
        }
    }

    #[test]
    fn an_error_about_an_error_names_no_flow() {
        let mut m = vec![0u8; ERROR_HEADER_LEN + 20 + 8];
        ipv4::emit(
            &mut m[ERROR_HEADER_LEN..],
            [1; 4],
            [2; 4],
            PROTO_ICMP,
            36,
            64,
        );
        assert_eq!(quote(&m, false), Err(QuoteError::AboutIcmp));
        assert_eq!(error_kind(3, 4, false), Some(ErrorKind::FragNeeded));
        assert_eq!(error_kind(2, 0, true), Some(ErrorKind::V6TooBig));
        assert_eq!(error_kind(ECHO_REQUEST, 0, false), None);
    }

    #[test]
    fn an_echo_reply_keeps_a_valid_checksum() {
        let mut b = [0u8; 16];
        Echo {
            msg_type: ECHO_REQUEST,
            ident: 7,
            seq: 9,
        }
        .emit(&mut b);
        b[8..].copy_from_slice(b"payload!");
        let c = checksum::checksum(&b);
        set_u16(&mut b, 2, c);
        echo_to_reply_v4(&mut b);
        assert_eq!(b[0], ECHO_REPLY);
        assert_eq!(checksum::checksum(&b), 0);
    }
}
