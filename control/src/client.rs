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
        return format!("error: {}\n", cell(m.get("error").unwrap_or(&Value::Null)));
    }
    let mut scalars = String::new();
    let mut tables = String::new();
    for (k, val) in m {
        if k == "ok" || k == "command" {
            continue;
        }
        match val {
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
