//! `tandem ctl`: send one command to a node's control socket and print the answer, as JSON
//! or as human tables.

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Sends `line` and returns the node's JSON answer.
pub fn request(socket: &Path, line: &str) -> anyhow::Result<Value> {
    let mut s = UnixStream::connect(socket).map_err(|e| {
        anyhow::anyhow!(
            "cannot connect to {}: {e} (is the node running?)",
            socket.display()
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(15)))?;
    s.write_all(line.as_bytes())?;
    s.write_all(b"\n")?;
    let mut r = BufReader::new(s);
    let mut answer = String::new();
    r.read_line(&mut answer)?;
    Ok(serde_json::from_str(&answer)?)
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => {
                if f == 0.0 {
                    "0".into()
                } else if f.abs() < 10.0 {
                    format!("{f:.3}")
                } else {
                    format!("{f:.1}")
                }
            }
            _ => n.to_string(),
        },
        Value::Object(m) => {
            if m.is_empty() {
                "-".into()
            } else {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", cell(v)))
                    .collect::<Vec<_>>()
                    .join(",")
            }
        }
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        Value::Bool(b) => b.to_string(),
    }
}

/// Renders an array of objects as an aligned table.
pub fn table(rows: &[Value]) -> String {
    let Some(Value::Object(first)) = rows.first() else {
        return String::new();
    };
    let cols: Vec<&String> = first.keys().collect();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            cols.iter()
                .map(|c| cell(r.get(c.as_str()).unwrap_or(&Value::Null)))
                .collect()
        })
        .collect();
    let widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].len())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let line = |vals: Vec<&str>| -> String {
        vals.iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    out += &line(
        cols.iter()
            .map(|c| c.to_uppercase())
            .collect::<Vec<_>>()
            .iter()
            .map(|s| s.as_str())
            .collect(),
    );
    out.push('\n');
    for r in &cells {
        out += &line(r.iter().map(|s| s.as_str()).collect());
        out.push('\n');
    }
    out
}

/// Renders an answer for people: scalars as `key: value`, lists of records as tables.
pub fn render(v: &Value) -> String {
    let Some(m) = v.as_object() else {
        return v.to_string();
    };
    if m.get("ok") == Some(&Value::Bool(false)) {
        let mut out = format!("error: {}\n", cell(m.get("error").unwrap_or(&Value::Null)));
        // A refused change lists every problem, key and why.
        for p in m
            .get("problems")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            out += &format!("  {}: {}\n", cell(&p["key"]), cell(&p["why"]));
        }
        return out;
    }
    // The running configuration as the file it can be saved as.
    if let (Some("show config"), Some(Value::String(t))) =
        (m.get("command").and_then(Value::as_str), m.get("toml"))
    {
        return t.clone();
    }
    if m.get("command").and_then(Value::as_str) == Some("show trace") {
        return render_trace(m);
    }
    let mut scalars = String::new();
    let mut tables = String::new();
    for (k, val) in m {
        if k == "ok" || k == "command" {
            continue;
        }
        match val {
            // What a change did, a line each.
            Value::Array(a) if !a.is_empty() && a.iter().all(Value::is_string) => {
                tables += &format!("{k}:\n");
                for x in a {
                    tables += &format!("  {}\n", cell(x));
                }
            }
            Value::Array(a) if a.iter().all(Value::is_object) => {
                if a.is_empty() {
                    tables += &format!("{k}: none\n");
                } else {
                    tables += &format!("{k}:\n{}\n", table(a));
                }
            }
            other => scalars += &format!("{k}: {}\n", cell(other)),
        }
    }
    if scalars.is_empty() && tables.is_empty() {
        return "ok\n".into();
    }
    if !scalars.is_empty() && !tables.is_empty() {
        scalars.push('\n');
    }
    scalars + &tables
}

/// `show trace` for people: a block per traced frame per node, a line per stage.
fn render_trace(m: &serde_json::Map<String, Value>) -> String {
    let mut out = match m.get("running") {
        Some(Value::Object(r)) => format!(
            "tracing: {} (count {}, {} left on this node; added on node {})\n",
            cell(&r["filter"]),
            cell(&r["count"]),
            cell(&r["left_here"]),
            cell(&r["added_on_node"])
        ),
        _ => "tracing: off\n".to_string(),
    };
    for k in ["missed", "lost_from_peers"] {
        if m.get(k).and_then(Value::as_u64).unwrap_or(0) > 0 {
            out += &format!("{k}: {}\n", cell(&m[k]));
        }
    }
    let packets = m.get("packets").and_then(Value::as_array);
    let first = packets
        .and_then(|p| p.first())
        .and_then(|p| p["at_us"].as_u64())
        .unwrap_or(0);
    for p in packets.into_iter().flatten() {
        let at = p["at_us"].as_u64().unwrap_or(0).saturating_sub(first);
        out += &format!(
            "\n+{:.3} ms  node {}  worker {}  port {}\n",
            at as f64 / 1000.0,
            cell(&p["node"]),
            cell(&p["worker"]),
            cell(&p["port"])
        );
        for s in p["stages"].as_array().into_iter().flatten() {
            out += &format!("  {:<10} {}\n", cell(&s["stage"]), cell(&s["detail"]));
        }
        out += &format!("  {:<10} {}\n", "verdict", cell(&p["verdict"]));
    }
    if packets.is_none_or(|p| p.is_empty()) {
        out += "no traced frames\n";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::render;
    use serde_json::json;

    #[test]
    fn changes_problems_and_the_config_read_as_an_operator_wants() {
        let refused = json!({"ok": false, "error": "reload: 2 problem(s), nothing changed",
            "problems": [{"key": "workers.cores", "why": "takes a restart"},
                         {"key": "port[1]", "why": "takes a restart"}]});
        assert_eq!(
            render(&refused),
            "error: reload: 2 problem(s), nothing changed\n  workers.cores: takes a restart\n  \
             port[1]: takes a restart\n"
        );
        let done = json!({"ok": true, "command": "reload", "changes": ["a", "b"]});
        assert_eq!(render(&done), "changes:\n  a\n  b\n");
        let none = json!({"ok": true, "command": "reload", "changes": []});
        assert_eq!(render(&none), "changes: none\n");
        let cfg = json!({"ok": true, "command": "show config", "toml": "[node]\nid = 1\n"});
        assert_eq!(render(&cfg), "[node]\nid = 1\n");
    }
}
