//! The network in front: `show bgp`, what the node's BIRD is told to announce.

use super::{err, no_args, ok, Command, Spec};
use crate::state::Control;
use serde_json::{Map, Value};
use std::time::Instant;

#[derive(Debug, Clone, PartialEq)]
pub enum Cmd {
    Show,
}

pub(super) const COMMANDS: &[Spec] = &[Spec {
    name: "show bgp",
    example: "show bgp",
    args: "",
    about: "each VIP: announced or not, why, since when; what BIRD last did with the files",
    parse: |a| no_args(a, Command::Bgp(Cmd::Show)),
}];

pub(super) fn run(ctl: &mut Control, c: Cmd) -> Value {
    match c {
        Cmd::Show => match ctl.bgp() {
            Some(a) => match a.show(Instant::now()) {
                Value::Object(m) => ok("show bgp", m),
                _ => ok("show bgp", Map::new()),
            },
            None => err("this node announces nothing (no [bgp] in its config)"),
        },
    }
}
