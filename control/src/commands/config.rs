//! Changing the configuration of a live node: `backend add`, `backend remove`, `reload`
//! (SIGHUP does the same) and `show config`. `backend add` writes the new backend into the
//! running configuration's TOML and reads the whole of it back, so it is checked by the very
//! rules `check-config` applies; all three then go through `Control::apply`.

use super::{err, ok, Command, Spec};
use crate::state::Control;
use serde_json::{json, Map, Value};
use std::time::Instant;
use tandem_config::{Config, Problem};

#[derive(Debug, Clone, PartialEq)]
pub enum Cmd {
    ShowConfig,
    Reload,
    Add(NewBackend),
    Remove { service: String, backend: String },
}

/// `backend add`'s arguments, as written (checked with the rest of the config).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NewBackend {
    pub service: String,
    pub name: String,
    pub address: String,
    pub port: Option<u16>,
    pub weight: Option<u32>,
    pub max_flows: Option<u32>,
    /// A quic service's backend: its server ID, as hex.
    pub server_id: Option<String>,
    /// (port name, MAC as written).
    pub paths: Vec<(String, Option<String>)>,
}

pub(super) const COMMANDS: &[Spec] = &[
    Spec {
        name: "show config",
        example: "show config",
        args: "",
        about: "the running configuration, with every run-time change, as TOML that \
                check-config accepts (in \"toml\")",
        parse: |a| super::no_args(a, Command::Config(Cmd::ShowConfig)),
    },
    Spec {
        name: "reload",
        example: "reload",
        args: "",
        about: "read the config file again and apply the difference (as SIGHUP does): what \
                changed, or every problem and nothing changed",
        parse: |a| super::no_args(a, Command::Config(Cmd::Reload)),
    },
    Spec {
        name: "backend add",
        example: "backend add web c 10.1.0.13:8080 weight 2 path back",
        args: "SERVICE NAME ADDRESS[:PORT] [weight W] [max_flows N] [path PORT[/MAC]]...",
        about: "add a backend to a running service (no path: every port that reaches it, on its \
                subnet or by its gateway)",
        parse: parse_add,
    },
    Spec {
        name: "backend remove",
        example: "backend remove web c",
        args: "SERVICE BACKEND",
        about: "the backend drains (no new flows, its flows go on) and is gone once they end",
        parse: |a| match a {
            [s, b] => Ok(Command::Config(Cmd::Remove {
                service: s.to_string(),
                backend: b.to_string(),
            })),
            _ => Err("usage: backend remove SERVICE BACKEND".into()),
        },
    },
];

/// "10.1.0.13:8080", "10.1.0.13", "[fd01::13]:8080", "fd01::13".
fn address_port(s: &str) -> Result<(String, Option<u16>), String> {
    if let Ok(a) = s.parse::<std::net::SocketAddr>() {
        return Ok((a.ip().to_string(), Some(a.port())));
    }
    if s.parse::<std::net::IpAddr>().is_ok() {
        return Ok((s.to_string(), None));
    }
    Err(format!(
        "\"{s}\" is not ADDRESS or ADDRESS:PORT (\"10.1.0.13:8080\", \"[fd01::13]:8080\")"
    ))
}

fn number<T: std::str::FromStr>(what: &str, v: Option<&&str>) -> Result<T, String> {
    let Some(v) = v else {
        return Err(format!("{what} needs a value"));
    };
    v.parse()
        .map_err(|_| format!("{what} must be a whole number, not \"{v}\""))
}

fn parse_add(a: &[&str]) -> Result<Command, String> {
    let usage = "usage: backend add SERVICE NAME ADDRESS[:PORT] [weight W] [max_flows N] \
                 [server_id HEX] [path PORT[/MAC]]...";
    let [service, name, addr, rest @ ..] = a else {
        return Err(usage.into());
    };
    let (address, port) = address_port(addr)?;
    let mut b = NewBackend {
        service: service.to_string(),
        name: name.to_string(),
        address,
        port,
        ..NewBackend::default()
    };
    let mut i = 0;
    while i < rest.len() {
        let v = rest.get(i + 1);
        match rest[i] {
            "weight" => b.weight = Some(number("weight", v)?),
            "max_flows" => b.max_flows = Some(number("max_flows", v)?),
            "server_id" => {
                let Some(id) = v else {
                    return Err("server_id needs the backend's QUIC-LB server ID (hex)".into());
                };
                b.server_id = Some(id.to_string());
            }
            "path" => {
                let Some(p) = v else {
                    return Err("path needs PORT or PORT/MAC".into());
                };
                b.paths.push(match p.split_once('/') {
                    Some((port, mac)) => (port.to_string(), Some(mac.to_string())),
                    None => (p.to_string(), None),
                });
            }
            w => {
                return Err(format!(
                    "\"{w}\" is not weight, max_flows, server_id or path; {usage}"
                ))
            }
        }
        i += 2;
    }
    Ok(Command::Config(Cmd::Add(b)))
}

pub(super) fn run(ctl: &mut Control, c: Cmd) -> Value {
    let now = Instant::now();
    match c {
        Cmd::ShowConfig => ok(
            "show config",
            Map::from_iter([("toml".into(), json!(ctl.running_config().to_toml()))]),
        ),
        Cmd::Reload => reload(ctl, now),
        Cmd::Add(b) => add(ctl, b, now),
        Cmd::Remove { service, backend } => remove(ctl, &service, &backend, now),
    }
}

fn problems_doc(what: &str, problems: &[Problem]) -> Value {
    let list: Vec<Value> = problems
        .iter()
        .map(|p| json!({"key": p.key, "why": p.why}))
        .collect();
    let first = problems
        .first()
        .map_or(String::new(), |p| format!(": {}: {}", p.key, p.why));
    json!({
        "ok": false,
        "error": format!("{what}: {} problem(s), nothing changed{first}", problems.len()),
        "problems": list,
    })
}

fn changed_doc(command: &str, changes: Vec<String>) -> Value {
    ok(
        command,
        Map::from_iter([("changes".into(), json!(changes))]),
    )
}

/// Reads the config file again and applies it (the `reload` command and SIGHUP).
pub fn reload(ctl: &mut Control, now: Instant) -> Value {
    let Some(path) = ctl.config_path().map(|p| p.to_path_buf()) else {
        return err("this node was not started from a file: nothing to reload");
    };
    let new = match Config::from_path(&path) {
        Ok(c) => c,
        Err(p) => return problems_doc("reload", &p),
    };
    match ctl.apply(new, now) {
        Ok(changes) => {
            tracing::info!(file = %path.display(), changes = changes.len(), "reloaded");
            for c in &changes {
                tracing::info!("reload: {c}");
            }
            changed_doc("reload", changes)
        }
        Err(p) => {
            for x in &p {
                tracing::warn!(key = %x.key, "reload refused: {}", x.why);
            }
            problems_doc("reload", &p)
        }
    }
}

fn add(ctl: &mut Control, b: NewBackend, now: Instant) -> Value {
    let running = ctl.running_config();
    let Some(si) = running.services.iter().position(|s| s.name == b.service) else {
        return err(format!("no service named \"{}\"", b.service));
    };
    let svc = &running.services[si];
    if svc.backends.iter().any(|x| x.name == b.name) {
        return err(format!(
            "service \"{}\" already has a backend named \"{}\"",
            b.service, b.name
        ));
    }
    // The new backend into the running config's TOML, then the whole read back and checked.
    let mut doc: toml::Table = match running.to_toml().parse() {
        Ok(t) => t,
        Err(e) => return err(format!("the running configuration does not read back: {e}")),
    };
    let t = match backend_table(&running, &b) {
        Ok(t) => t,
        Err(e) => return err(e),
    };
    let pushed = doc
        .get_mut("service")
        .and_then(|s| s.as_array_mut())
        .and_then(|a| a.get_mut(si))
        .and_then(|s| s.as_table_mut())
        .and_then(|s| s.get_mut("backend"))
        .and_then(|b| b.as_array_mut())
        .map(|a| a.push(toml::Value::Table(t)))
        .is_some();
    if !pushed {
        return err("the running configuration has no list of backends to add to");
    }
    let text = toml::to_string(&doc).unwrap_or_default();
    let new = match Config::from_toml(&text) {
        Ok(c) => c,
        Err(p) => return problems_doc("backend add", &p),
    };
    match ctl.apply(new, now) {
        Ok(changes) => changed_doc("backend add", changes),
        Err(p) => problems_doc("backend add", &p),
    }
}

/// The `[[service.backend]]` table `backend add` gives: without a path, one over every port
/// that reaches the address (on its subnet, or by its gateway).
fn backend_table(running: &Config, b: &NewBackend) -> Result<toml::Table, String> {
    let mut t = toml::Table::new();
    t.insert("name".into(), b.name.clone().into());
    t.insert("address".into(), b.address.clone().into());
    if let Some(p) = b.port {
        t.insert("port".into(), i64::from(p).into());
    }
    if let Some(w) = b.weight {
        t.insert("weight".into(), i64::from(w).into());
    }
    if let Some(m) = b.max_flows {
        t.insert("max_flows".into(), i64::from(m).into());
    }
    if let Some(id) = &b.server_id {
        t.insert("server_id".into(), id.clone().into());
    }
    let paths = if b.paths.is_empty() {
        let Ok(addr) = b.address.parse::<std::net::IpAddr>() else {
            return Err(format!("\"{}\" is not an address", b.address));
        };
        let every: Vec<(String, Option<String>)> = running
            .ports
            .iter()
            .filter(|p| p.reaches(addr))
            .map(|p| (p.name.clone(), None))
            .collect();
        if every.is_empty() {
            return Err(format!(
                "no port reaches {addr} (none has it on its subnet or a gateway of its \
                 family): give path PORT/MAC"
            ));
        }
        every
    } else {
        b.paths.clone()
    };
    let paths: Vec<toml::Value> = paths
        .iter()
        .map(|(port, mac)| {
            let mut p = toml::Table::new();
            p.insert("port".into(), port.clone().into());
            if let Some(m) = mac {
                p.insert("mac".into(), m.clone().into());
            }
            toml::Value::Table(p)
        })
        .collect();
    t.insert("paths".into(), toml::Value::Array(paths));
    Ok(t)
}

fn remove(ctl: &mut Control, service: &str, backend: &str, now: Instant) -> Value {
    let mut new = ctl.running_config();
    let Some(s) = new.services.iter_mut().find(|s| s.name == service) else {
        return err(format!("no service named \"{service}\""));
    };
    let before = s.backends.len();
    s.backends.retain(|b| b.name != backend);
    if s.backends.len() == before {
        return err(format!(
            "service \"{service}\" has no backend named \"{backend}\""
        ));
    }
    match ctl.apply(new, now) {
        Ok(changes) => changed_doc("backend remove", changes),
        Err(p) => problems_doc("backend remove", &p),
    }
}
