//! Parsers for the value formats the config uses in strings: durations ("250ms"), MAC
//! addresses ("02:00:00:00:00:01") and interface addresses with a prefix ("10.0.0.1/24").

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// Parses "0us", "50us", "250ms", "10s", "15m", "1h", "7d" (an integer and a unit, nothing
/// else).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("\"{s}\" has no unit (use us, ms, s, m, h or d)"))?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("\"{s}\" does not start with a whole number"))?;
    let d = match unit {
        "us" => Duration::from_micros(n),
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        "d" => Duration::from_secs(n.saturating_mul(86_400)),
        _ => {
            return Err(format!(
                "\"{s}\": unknown unit \"{unit}\" (use us, ms, s, m, h or d)"
            ))
        }
    };
    if d > MAX_DURATION {
        return Err(format!(
            "\"{s}\" is longer than any setting allows ({})",
            format_duration(MAX_DURATION)
        ));
    }
    Ok(d)
}

/// No duration in a config is longer than this; each key has its own, smaller range.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// A duration in the config's own notation, in the largest unit that writes it exactly
/// ("24h", "250ms", "0us"), so a range in a problem reads like the values it bounds.
pub fn format_duration(d: Duration) -> String {
    let us = d.as_micros();
    if us == 0 {
        return "0us".into();
    }
    for (unit, per) in [
        ("d", 86_400_000_000u128),
        ("h", 3_600_000_000),
        ("m", 60_000_000),
        ("s", 1_000_000),
        ("ms", 1_000),
    ] {
        if us.is_multiple_of(per) {
            return format!("{}{unit}", us / per);
        }
    }
    format!("{us}us")
}

/// Parses octets written as hex digits, two per octet (`0a01`).
pub fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    if s.is_empty() || !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "\"{s}\" is not hex octets (two hex digits each, as in \"0a01\")"
        ));
    }
    Ok((0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or(0))
        .collect())
}

/// Octets as hex digits, two per octet.
pub fn format_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Parses a MAC address written as six colon-separated hex octets.
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let mut out = [0u8; 6];
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(format!(
            "\"{s}\" is not a MAC address (six hex octets joined by ':')"
        ));
    }
    for (o, p) in out.iter_mut().zip(parts) {
        if p.is_empty() || p.len() > 2 {
            return Err(format!("\"{s}\" is not a MAC address"));
        }
        *o = u8::from_str_radix(p, 16).map_err(|_| format!("\"{s}\" is not a MAC address"))?;
    }
    Ok(out)
}

pub fn format_mac(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

pub fn parse_cidr4(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let (a, p) = s
        .split_once('/')
        .ok_or_else(|| format!("\"{s}\" needs a prefix length, like 10.0.0.1/24"))?;
    let addr: Ipv4Addr = a
        .parse()
        .map_err(|_| format!("\"{a}\" is not an IPv4 address"))?;
    let len: u8 = p
        .parse()
        .ok()
        .filter(|l| *l <= 32)
        .ok_or_else(|| format!("\"{p}\" is not a prefix length from 0 to 32"))?;
    Ok((addr, len))
}

pub fn parse_cidr6(s: &str) -> Result<(Ipv6Addr, u8), String> {
    let (a, p) = s
        .split_once('/')
        .ok_or_else(|| format!("\"{s}\" needs a prefix length, like fd00::1/64"))?;
    let addr: Ipv6Addr = a
        .parse()
        .map_err(|_| format!("\"{a}\" is not an IPv6 address"))?;
    let len: u8 = p
        .parse()
        .ok()
        .filter(|l| *l <= 128)
        .ok_or_else(|| format!("\"{p}\" is not a prefix length from 0 to 128"))?;
    Ok((addr, len))
}

pub fn parse_ip(s: &str) -> Result<IpAddr, String> {
    if s.is_empty() {
        return Err("is required (an IPv4 or IPv6 address)".into());
    }
    s.parse()
        .map_err(|_| format!("\"{s}\" is not an IPv4 or IPv6 address"))
}

/// Longest name a port, service or backend may have.
pub const MAX_NAME_LEN: usize = 63;

/// Why `name` cannot name a port, service or backend, or None when it can: 1 to
/// `MAX_NAME_LEN` ASCII letters, digits, '-', '_' and '.', starting with a letter or digit.
/// Names reach logs, JSON answers, Prometheus labels and `PORT/ADDRESS` cursors, so nothing
/// that is a separator, a quote, a control or escape character, or a bidirectional
/// override anywhere else may be in one.
pub fn bad_name(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Some(format!("is longer than {MAX_NAME_LEN} characters"));
    }
    if let Some(ch) = name
        .chars()
        .find(|ch| !(ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.')))
    {
        return Some(format!(
            "has {}: names take letters, digits, '-', '_' and '.'",
            if ch.is_ascii_graphic() || ch == ' ' {
                format!("'{ch}'")
            } else {
                format!("U+{:04X}", u32::from(ch))
            }
        ));
    }
    if !name.starts_with(|ch: char| ch.is_ascii_alphanumeric()) {
        return Some("must start with a letter or digit".into());
    }
    None
}

/// Why `ip` cannot be a host's address on a network (unspecified, loopback, multicast or
/// the IPv4 broadcast address), or None when it can.
pub fn not_a_host(ip: IpAddr) -> Option<&'static str> {
    if ip.is_unspecified() {
        Some("is the unspecified address")
    } else if ip.is_loopback() {
        Some("is a loopback address")
    } else if ip.is_multicast() {
        Some("is a multicast address")
    } else if ip == IpAddr::V4(Ipv4Addr::BROADCAST) {
        Some("is the broadcast address")
    } else {
        None
    }
}

/// Why `m` cannot be a station's MAC address (all zeros, or a group address), or None.
pub fn not_a_station(m: &[u8; 6]) -> Option<&'static str> {
    if *m == [0; 6] {
        Some("is the all-zeros MAC address")
    } else if m[0] & 1 == 1 {
        Some("is a multicast address")
    } else {
        None
    }
}

/// True when `addr` lies in `net/len`.
pub fn in_subnet4(addr: Ipv4Addr, net: Ipv4Addr, len: u8) -> bool {
    if len == 0 {
        return true;
    }
    let mask = u32::MAX << (32 - u32::from(len));
    u32::from(addr) & mask == u32::from(net) & mask
}

pub fn in_subnet6(addr: Ipv6Addr, net: Ipv6Addr, len: u8) -> bool {
    if len == 0 {
        return true;
    }
    let mask = u128::MAX << (128 - u32::from(len));
    u128::from(addr) & mask == u128::from(net) & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("0us").unwrap(), Duration::ZERO);
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("ms").is_err());
        assert!(parse_duration("5 days").is_err());
        assert!(parse_duration("18446744073709551615s").is_err());
        assert!(parse_duration("99999999999999999h").is_err());
        assert!(parse_duration("99999999999999999999999s").is_err());
        assert_eq!(format_duration(Duration::from_secs(24 * 3600)), "1d");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_micros(50)), "50us");
    }

    #[test]
    fn macs_and_cidrs() {
        assert_eq!(
            parse_mac("02:00:00:00:01:aB").unwrap(),
            [2, 0, 0, 0, 1, 0xab]
        );
        assert!(parse_mac("02:00:00:00:01").is_err());
        assert!(parse_mac("02:00:00:00:01:100").is_err());
        assert_eq!(parse_cidr4("10.0.0.1/24").unwrap().1, 24);
        assert!(parse_cidr4("10.0.0.1/33").is_err());
        assert!(parse_cidr4("10.0.0.1").is_err());
        assert!(in_subnet4(
            "10.0.0.9".parse().unwrap(),
            "10.0.0.1".parse().unwrap(),
            24
        ));
        assert!(!in_subnet4(
            "10.0.1.9".parse().unwrap(),
            "10.0.0.1".parse().unwrap(),
            24
        ));
        assert!(in_subnet6(
            "fd00::9".parse().unwrap(),
            "fd00::1".parse().unwrap(),
            64
        ));
    }
}
