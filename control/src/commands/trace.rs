//! The packet tracer: `trace add FILTER [COUNT]`, `trace clear`, `show trace` (see
//! `tandem_dataplane::trace` for what a trace records and `state::trace` for how it
//! reaches every node).

use super::{err, no_args, ok, Command, Spec};
use crate::state::Control;
use serde_json::{Map, Value};
use tandem_dataplane::trace::{Filter, DEFAULT_COUNT};

/// Most frames one `trace add` traces per node.
pub const MAX_COUNT: u32 = 10_000;

#[derive(Debug, Clone, PartialEq)]
pub enum Cmd {
    Add { filter: Filter, count: u32 },
    Clear,
    Show,
}

pub(super) const COMMANDS: &[Spec] = &[
    Spec {
        name: "trace add",
        example: "trace add host 198.51.100.7 and port 80 20",
        args: "FILTER [COUNT]",
        about: "trace the next COUNT frames (default 50) matching FILTER on every node: \
                host ADDR, port N, proto tcp|udp|icmp, vip ADDR, joined by and",
        parse: parse_add,
    },
    Spec {
        name: "trace clear",
        example: "trace clear",
        args: "",
        about: "stop tracing on every node and forget the traced frames",
        parse: |a| no_args(a, Command::Trace(Cmd::Clear)),
    },
    Spec {
        name: "show trace",
        example: "show trace",
        args: "",
        about: "the traced frames of every node, oldest first: each stage and what it \
                decided, and the verdict",
        parse: |a| no_args(a, Command::Trace(Cmd::Show)),
    },
];

/// FILTER, then COUNT when the last word is a number that is not a term's value
/// (`port 80`) nor a bare port after `and`.
fn parse_add(args: &[&str]) -> Result<Command, String> {
    let (words, count) = match args {
        [rest @ .., before, last]
            if last.parse::<u64>().is_ok()
                && !matches!(*before, "port" | "and" | "host" | "vip" | "proto") =>
        {
            let mut w = rest.to_vec();
            w.push(before);
            (w, Some(*last))
        }
        _ => (args.to_vec(), None),
    };
    let count = match count {
        None => DEFAULT_COUNT,
        Some(c) => match c.parse::<u32>() {
            Ok(n) if (1..=MAX_COUNT).contains(&n) => n,
            _ => return Err(format!("COUNT {c}: from 1 to {MAX_COUNT}")),
        },
    };
    let filter = Filter::parse(&words.join(" ")).map_err(|e| format!("trace add: {e}"))?;
    Ok(Command::Trace(Cmd::Add { filter, count }))
}

pub(super) fn run(ctl: &mut Control, c: Cmd) -> Value {
    match c {
        Cmd::Add { filter, count } => {
            let text = filter.text().to_string();
            ctl.trace_add(filter, count);
            ok(
                "trace add",
                Map::from_iter([
                    ("filter".into(), Value::String(text)),
                    ("count".into(), Value::from(count)),
                ]),
            )
        }
        Cmd::Clear => {
            ctl.trace_clear();
            ok("trace clear", Map::new())
        }
        Cmd::Show => match ctl.trace_view() {
            Value::Object(m) => ok("show trace", m),
            _ => err("show trace: no answer"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::parse;

    #[test]
    fn count_is_the_last_number_unless_a_term_owns_it() {
        let add = |l: &str| match parse(l) {
            Ok(Command::Trace(Cmd::Add { filter, count })) => (filter.text().to_string(), count),
            other => panic!("{l}: {other:?}"),
        };
        assert_eq!(add("trace add host 10.0.0.1"), ("host 10.0.0.1".into(), 50));
        assert_eq!(
            add("trace add host 10.0.0.1 7"),
            ("host 10.0.0.1".into(), 7)
        );
        assert_eq!(add("trace add port 80"), ("port 80".into(), 50));
        assert_eq!(add("trace add port 80 3"), ("port 80".into(), 3));
        assert_eq!(add("trace add tcp and 443"), ("tcp and 443".into(), 50));
        assert_eq!(add("trace add 10.0.0.1 5"), ("10.0.0.1".into(), 5));
        assert!(parse("trace add host 10.0.0.1 0")
            .unwrap_err()
            .contains("COUNT 0"));
        assert!(parse("trace add").unwrap_err().contains("empty filter"));
        assert!(parse("trace add host nowhere")
            .unwrap_err()
            .contains("host `nowhere`"));
    }
}
