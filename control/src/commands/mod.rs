//! Control socket commands: one line parsed into a typed `Command`, run against the control
//! state, one JSON document answered. A bad command gets `{"ok": false, "error": ...}`,
//! never a dropped connection.
//!
//! Each group of commands is one file: its `Cmd` enum, its table of `Spec`s (name,
//! arguments, description, parser) and what each does. `help` is generated from the same
//! tables that dispatch, so a command cannot exist without its help or the other way round.
//! Adding a command is a line in its group's table, its variant and its arm there.

mod cluster;
mod flows;
mod services;
mod stats;

pub use flows::MAX_FLOWS_LISTED;

use crate::state::Control;
use serde_json::{json, Map, Value};

/// One command as the socket reads it.
pub struct Spec {
    /// The words that name it ("show stats").
    pub name: &'static str,
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
    Cluster(cluster::Cmd),
}

const HELP: &[Spec] = &[Spec {
    name: "help",
    args: "",
    about: "this list",
    parse: |a| no_args(a, Command::Help),
}];

/// Every command, group by group, in the order `help` lists them.
const TABLES: &[&[Spec]] = &[
    HELP,
    stats::COMMANDS,
    services::COMMANDS,
    flows::COMMANDS,
    cluster::COMMANDS,
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
        Command::Cluster(c) => cluster::run(ctl, c),
    }
}

fn help() -> Value {
    let cmds: Vec<Value> = specs()
        .map(|s| json!({"command": usage(s), "description": s.about}))
        .collect();
    ok(
        "help",
        Map::from_iter([("commands".into(), Value::Array(cmds))]),
    )
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
        // Each spec's name with example arguments parses to a command.
        let examples = [
            "help",
            "show stats",
            "show neighbors",
            "show services",
            "show backends",
            "show backends web",
            "show latency web/a",
            "show latency a 1",
            "backend drain web a",
            "backend enable web a",
            "backend weight web a 3",
            "show flows",
            "show flows --limit 5 --after 1.2",
            "show flow tcp 1.2.3.4:5 6.7.8.9:80",
            "show nodes",
            "node drain",
            "node drain 10s",
            "node enable",
        ];
        for e in examples {
            assert!(parse(e).is_ok(), "{e}: {:?}", parse(e));
        }
        // Every spec is reachable by its own name (with arguments where it needs them).
        for s in specs() {
            assert!(
                examples.iter().any(|e| e.starts_with(s.name)),
                "{} has no example",
                s.name
            );
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
