//! Which frames a trace picks: `host ADDR`, `port N`, `proto tcp|udp|icmp`, `vip ADDR`,
//! joined by `and` (a small part of BPF's syntax, the part that names a flow). A bare
//! address is `host`, a bare number `port`, a bare protocol `proto`. A frame matches when
//! every term does, on the packet the stages serve: for a packet another node sent on,
//! the one inside the node header.

use super::{Seen, Tuple};
use crate::flow::key::addr_bytes;
use crate::wire::l4::{PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Term {
    /// Either address.
    Host([u8; 16], bool),
    /// Either port.
    Port(u16),
    /// TCP, UDP, or ICMP (either family's).
    Proto(u8),
    /// A service's address: the destination of a request, the source of a dsr or icmp
    /// answer.
    Vip([u8; 16], bool),
}

/// A parsed FILTER; at most `MAX_TERMS` terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    terms: [Option<Term>; MAX_TERMS],
    text: String,
}

const MAX_TERMS: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError(pub String);

impl std::fmt::Display for FilterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Filter {
    /// Parses a FILTER (see the module's doc); the error says which word is wrong and why.
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        let words: Vec<&str> = text.split_whitespace().collect();
        if words.is_empty() {
            return Err(FilterError(
                "empty filter: say what to trace, e.g. `host 198.51.100.7 and port 80`".into(),
            ));
        }
        let mut terms = [None; MAX_TERMS];
        let mut n = 0;
        let mut i = 0;
        while i < words.len() {
            if n > 0 {
                if words[i] != "and" {
                    return Err(FilterError(format!(
                        "`{}`: terms are joined by `and`",
                        words[i]
                    )));
                }
                i += 1;
            }
            let Some(&w) = words.get(i) else {
                return Err(FilterError("`and` at the end: a term must follow".into()));
            };
            let (term, used) = match w {
                "host" | "vip" | "port" | "proto" => {
                    let Some(&arg) = words.get(i + 1) else {
                        return Err(FilterError(format!("`{w}` needs a value")));
                    };
                    (term(w, arg)?, 2)
                }
                _ => (bare(w)?, 1),
            };
            if n == MAX_TERMS {
                return Err(FilterError(format!("more than {MAX_TERMS} terms")));
            }
            terms[n] = Some(term);
            n += 1;
            i += used;
        }
        Ok(Filter {
            terms,
            text: words.join(" "),
        })
    }

    /// The filter as written (its words single-spaced).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether a frame as `Seen` matches every term.
    pub fn matches(&self, seen: &Seen) -> bool {
        let Some(t) = seen.innermost() else {
            return false;
        };
        self.terms.iter().flatten().all(|term| one(term, &t))
    }
}

fn one(term: &Term, t: &Tuple) -> bool {
    match *term {
        Term::Host(a, v6) => t.v6 == v6 && (t.src == a || t.dst == a),
        // A later fragment carries no ports: it matches no port.
        Term::Port(p) => t.sport == p || t.dport == p,
        Term::Proto(PROTO_ICMP) => t.proto == PROTO_ICMP || t.proto == PROTO_ICMPV6,
        Term::Proto(p) => t.proto == p,
        Term::Vip(a, v6) => t.v6 == v6 && (t.dst == a || t.src == a),
    }
}

fn addr(key: &str, s: &str) -> Result<([u8; 16], bool), FilterError> {
    let a: IpAddr = s
        .parse()
        .map_err(|_| FilterError(format!("{key} `{s}`: not an IPv4 or IPv6 address")))?;
    Ok((addr_bytes(a), a.is_ipv6()))
}

fn term(key: &str, arg: &str) -> Result<Term, FilterError> {
    Ok(match key {
        "host" => {
            let (a, v6) = addr("host", arg)?;
            Term::Host(a, v6)
        }
        "vip" => {
            let (a, v6) = addr("vip", arg)?;
            Term::Vip(a, v6)
        }
        "port" => Term::Port(
            arg.parse()
                .map_err(|_| FilterError(format!("port `{arg}`: not a number from 0 to 65535")))?,
        ),
        _ => Term::Proto(match arg {
            "tcp" => PROTO_TCP,
            "udp" => PROTO_UDP,
            "icmp" | "icmp6" => PROTO_ICMP,
            _ => return Err(FilterError(format!("proto `{arg}`: one of tcp, udp, icmp"))),
        }),
    })
}

/// A term written without its keyword.
fn bare(w: &str) -> Result<Term, FilterError> {
    if let Ok(a) = w.parse::<IpAddr>() {
        return Ok(Term::Host(addr_bytes(a), a.is_ipv6()));
    }
    if let Ok(p) = w.parse::<u16>() {
        return Ok(Term::Port(p));
    }
    match w {
        "tcp" | "udp" | "icmp" | "icmp6" => term("proto", w),
        _ => Err(FilterError(format!(
            "`{w}`: not a term (host ADDR, port N, proto tcp|udp|icmp, vip ADDR, joined by `and`)"
        ))),
    }
}
