//! Control socket commands: one line parsed into a typed `Command`, run against the control
//! state, one JSON document answered. A bad command gets `{"ok": false, "error": ...}`,
//! never a dropped connection.
//!
//! Each group of commands is one file: its `Cmd` enum, its table of `Spec`s (name,
//! arguments, description, parser) and what each does. `help` is generated from the same
//! tables that dispatch, so a command cannot exist without its help or the other way round.
//! Adding a command is a line in its group's table, its variant and its arm there.

mod bgp;
mod cluster;
mod config;
mod flows;
mod neighbors;
mod services;
mod stats;
mod trace;

pub use config::reload;
pub use flows::MAX_FLOWS_LISTED;

use crate::state::Control;
use serde_json::{json, Map, Value};

/// One command as the socket reads it.
pub struct Spec {
    /// The words that name it ("show stats").
    pub name: &'static str,
    /// A whole line that runs it (tests, the fuzz seeds and `help` use it).
    pub example: &'static str,
    /// Its arguments, as `help` shows them ("" for none).
    pub args: &'static str,
    pub about: &'static str,
    /// Reads the words after the name; the error says what was wrong.
    pub parse: fn(&[&str]) -> Result<Command, String>,
}

/// A command, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Help,
    Stats(stats::Cmd),
    Services(services::Cmd),
    Flows(flows::Cmd),
    Neighbors(neighbors::Cmd),
    Cluster(cluster::Cmd),
    Bgp(bgp::Cmd),
    Config(config::Cmd),
    Trace(trace::Cmd),
}

const HELP: &[Spec] = &[Spec {
    name: "help",
    example: "help",
    args: "",
    about: "this list",
    parse: |a| no_args(a, Command::Help),
}];

/// Every command, group by group, in the order `help` lists them.
const TABLES: &[&[Spec]] = &[
    HELP,
    stats::COMMANDS,
    neighbors::COMMANDS,
    services::COMMANDS,
    flows::COMMANDS,
    cluster::COMMANDS,
    bgp::COMMANDS,
    config::COMMANDS,
    trace::COMMANDS,
];

fn specs() -> impl Iterator<Item = &'static Spec> {
    TABLES.iter().flat_map(|t| t.iter())
}

/// The command a line names: the spec with the longest name that starts it, then its
/// arguments read by that spec.
pub fn parse(line: &str) -> Result<Command, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    if words.is_empty() {
        return Err("empty command; try \"help\"".into());
    }
    let named = |s: &Spec| {
        let n: Vec<&str> = s.name.split(' ').collect();
        words.starts_with(&n).then_some(n.len())
    };
    let best = specs()
        .filter_map(|s| named(s).map(|n| (n, s)))
        .max_by_key(|(n, _)| *n);
    if let Some((n, spec)) = best {
        return (spec.parse)(&words[n..]);
    }
    // A group's first word alone ("backend", "node"): say what it takes.
    let usages: Vec<String> = specs()
        .filter(|s| s.name.split(' ').next() == Some(words[0]) && words[0] != "show")
        .map(usage)
        .collect();
    if usages.is_empty() {
        Err(format!("unknown command \"{}\"; try \"help\"", line.trim()))
    } else {
        Err(format!("usage: {}", usages.join(", or ")))
    }
}

/// Runs one command line.
pub fn execute(ctl: &mut Control, line: &str) -> Value {
    match parse(line) {
        Ok(cmd) => run(ctl, cmd),
        Err(e) => err(e),
    }
}

/// Runs one parsed command.
pub fn run(ctl: &mut Control, cmd: Command) -> Value {
    match cmd {
        Command::Help => help(),
        Command::Stats(c) => stats::run(ctl, c),
        Command::Services(c) => services::run(ctl, c),
        Command::Flows(c) => flows::run(ctl, c),
        Command::Neighbors(c) => neighbors::run(ctl, c),
        Command::Cluster(c) => cluster::run(ctl, c),
        Command::Bgp(c) => bgp::run(ctl, c),
        Command::Config(c) => config::run(ctl, c),
        Command::Trace(c) => trace::run(ctl, c),
    }
}

fn help() -> Value {
    let cmds: Vec<Value> = specs()
        .map(|s| json!({"command": usage(s), "description": s.about, "example": s.example}))
        .collect();
    ok(
        "help",
        Map::from_iter([("commands".into(), Value::Array(cmds))]),
    )
}

/// A line that runs each command, in `help` order.
pub fn examples() -> impl Iterator<Item = &'static str> {
    specs().map(|s| s.example)
}

/// A command as written with its arguments.
fn usage(s: &Spec) -> String {
    if s.args.is_empty() {
        s.name.to_string()
    } else {
        format!("{} {}", s.name, s.args)
    }
}

/// The command `c` when no arguments follow.
fn no_args(args: &[&str], c: Command) -> Result<Command, String> {
    match args {
        [] => Ok(c),
        [a, ..] => Err(format!("no arguments expected, not \"{a}\"")),
    }
}

fn err(msg: impl Into<String>) -> Value {
    json!({"ok": false, "error": msg.into()})
}

fn ok(command: &str, mut body: Map<String, Value>) -> Value {
    body.insert("ok".into(), Value::Bool(true));
    body.insert("command".into(), Value::String(command.into()));
    Value::Object(body)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_in_help_parses_and_bad_lines_say_why() {
        // Each spec's example parses, and is that spec's: no longer name takes it.
        for s in specs() {
            assert!(
                parse(s.example).is_ok(),
                "{}: {:?}",
                s.example,
                parse(s.example)
            );
            let named = specs()
                .filter(|o| s.example.starts_with(o.name))
                .max_by_key(|o| o.name.len())
                .map(|o| o.name);
            assert_eq!(named, Some(s.name), "{}", s.example);
        }
        for line in [
            "show backends",
            "show latency a",
            "show flows",
            "node drain",
        ] {
            assert!(parse(line).is_ok(), "{line}");
        }
        for (bad, says) in [
            ("", "empty command"),
            ("show", "unknown command"),
            ("frobnicate", "unknown command"),
            ("backend", "usage: backend drain"),
            ("node", "usage: node drain"),
            ("backend weight web a x", "whole number"),
            ("show stats now", "no arguments"),
            ("node drain 3 weeks", "usage"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }
}

#[cfg(test)]
mod docs_tests {
    //! The reference docs against the lists the code works from: every command of the
    //! command table, every worker counter and every drop reason is named in the docs.
    use super::specs;
    use tandem_dataplane::counters::{Absorbed, DropReason, WorkerCounters};

    const CONTROL: &str = include_str!("../../../docs/control.md");
    const OPERATIONS: &str = include_str!("../../../docs/operations.md");

    #[test]
    fn every_command_counter_and_drop_reason_is_in_the_docs() {
        let mut missing = Vec::new();
        for s in specs() {
            if !CONTROL.contains(&format!("`{}", s.name)) {
                missing.push(format!("command {}", s.name));
            }
        }
        let docs = format!("{CONTROL}{OPERATIONS}");
        WorkerCounters::default().each(|name, _| {
            if !docs.contains(&format!("`{name}`")) {
                missing.push(format!("counter {name}"));
            }
        });
        for r in DropReason::ALL {
            if !docs.contains(&format!("`{}`", r.name())) {
                missing.push(format!("drop reason {}", r.name()));
            }
        }
        for k in Absorbed::ALL {
            if !docs.contains(&format!("`{}`", k.name())) {
                missing.push(format!("absorbed kind {}", k.name()));
            }
        }
        assert!(missing.is_empty(), "not in docs/control.md: {missing:?}");
    }
}
