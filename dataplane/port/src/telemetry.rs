//! tandem's commands on DPDK's telemetry socket (`dpdk-telemetry.py -f PREFIX`):
//! `/tandem/info`, `/tandem/stats`, `/tandem/backends`, `/tandem/nodes`, beside DPDK's own
//! `/ethdev/stats` and the rest. DPDK answers them on its telemetry thread, so the control
//! thread publishes each command's answer (the same document as `show node`, `show
//! stats`, `show backends` and `show nodes`) once a second, and the callback reads the last
//! one published.
//!
//! DPDK 22.11's telemetry holds a dict of numbers and strings, each value at most one
//! container deep (a dict or array of plain values); an answer is flattened to that shape:
//! an object inside a value becomes keys joined by `_`, an array of objects keys named
//! by each object's `port`, `name`, `worker` or `id` (else its index), and a number that
//! is not a whole one a string.

use crate::DpdkError;
use serde_json::Value;
use std::ffi::{c_char, c_int, CStr, CString};
use std::sync::Mutex;
use tandem_ffi as ffi;

/// The commands, with their help text.
pub const COMMANDS: [(&str, &str); 4] = [
    (
        "/tandem/info",
        "This tandem node: id, pid, version, EAL file prefix, ports. No parameters.",
    ),
    (
        "/tandem/stats",
        "tandem's show stats: per port and per worker counters, drops by reason. No parameters.",
    ),
    (
        "/tandem/backends",
        "tandem's show backends: each backend's state, health, QoS and latency. No parameters.",
    ),
    (
        "/tandem/nodes",
        "tandem's show nodes: the cluster's nodes and their state. No parameters.",
    ),
];

/// The last answer published per command (JSON text; empty until the first).
static PUBLISHED: Mutex<[String; 4]> =
    Mutex::new([String::new(), String::new(), String::new(), String::new()]);

/// Registers the commands; after `Eal::init`.
pub fn register() -> Result<(), DpdkError> {
    for (cmd, help) in COMMANDS {
        let (c, h) = (
            CString::new(cmd).unwrap_or_default(),
            CString::new(help).unwrap_or_default(),
        );
        // SAFETY: the EAL is up; DPDK copies both strings, and `answer` matches its
        // telemetry_cb signature and lives for the whole process.
        let rc = unsafe { ffi::rte_telemetry_register_cmd(c.as_ptr(), Some(answer), h.as_ptr()) };
        crate::check(rc, format!("rte_telemetry_register_cmd {cmd}"))?;
    }
    Ok(())
}

/// Publishes `cmd`'s answer (one of `COMMANDS`).
pub fn publish(cmd: &str, doc: &Value) {
    if let Some(i) = COMMANDS.iter().position(|c| c.0 == cmd) {
        let text = doc.to_string();
        if let Ok(mut p) = PUBLISHED.lock() {
            p[i] = text;
        }
    }
}

/// The flat (key, value) pairs one JSON value becomes under `name` (see the module's doc).
pub fn flatten(name: &str, v: &Value, out: &mut Vec<(String, Value)>) {
    let key = |k: &str| {
        if name.is_empty() {
            k.to_string()
        } else {
            format!("{name}_{k}")
        }
    };
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                flatten(&key(&clean(k)), x, out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                let label = ["port", "name", "worker", "id"]
                    .iter()
                    .find_map(|f| {
                        x.get(f)
                            .map(|l| l.as_str().map(String::from).unwrap_or(l.to_string()))
                    })
                    .unwrap_or_else(|| i.to_string());
                flatten(&key(&clean(&label)), x, out);
            }
        }
        x => out.push((name.to_string(), x.clone())),
    }
}

/// A key DPDK takes: letters, digits, `_` and `/` only.
fn clean(k: &str) -> String {
    k.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '/' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Adds a plain value to dict `d` under `name`.
///
/// # Safety
/// `d` is a telemetry dict DPDK handed the callback, or one made by `rte_tel_data_alloc`.
unsafe fn add(d: *mut ffi::rte_tel_data, name: &str, v: &Value) {
    let Ok(n) = CString::new(name) else { return };
    match v {
        Value::Number(x) if x.as_u64().is_some() => {
            ffi::rte_tel_data_add_dict_u64(d, n.as_ptr(), x.as_u64().unwrap_or(0));
        }
        Value::Number(x) if x.as_i64().is_some_and(|i| i32::try_from(i).is_ok()) => {
            ffi::rte_tel_data_add_dict_int(d, n.as_ptr(), x.as_i64().unwrap_or(0) as c_int);
        }
        Value::Null => {}
        x => {
            let s = match x {
                Value::String(s) => s.clone(),
                x => x.to_string(),
            };
            // A string value holds at most RTE_TEL_MAX_STRING_LEN bytes with its NUL.
            let cut: String = s.chars().take(120).collect();
            if let Ok(s) = CString::new(cut) {
                ffi::rte_tel_data_add_dict_string(d, n.as_ptr(), s.as_ptr());
            }
        }
    }
}

/// DPDK's telemetry callback for every one of `COMMANDS`.
extern "C" fn answer(
    cmd: *const c_char,
    _params: *const c_char,
    d: *mut ffi::rte_tel_data,
) -> c_int {
    // SAFETY: DPDK passes the NUL-terminated command it matched.
    let cmd = unsafe { CStr::from_ptr(cmd) }.to_string_lossy();
    let Some(i) = COMMANDS.iter().position(|c| c.0 == cmd) else {
        return -1;
    };
    let text = PUBLISHED.lock().map(|p| p[i].clone()).unwrap_or_default();
    let doc: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    // SAFETY: `d` is the data DPDK handed this callback; containers made here are handed
    // over to it (keep = 0: DPDK frees them with `d`).
    unsafe {
        ffi::rte_tel_data_start_dict(d);
        let Value::Object(top) = doc else {
            add(d, "error", &Value::String("not published yet".into()));
            return 0;
        };
        for (k, v) in &top {
            let k = clean(k);
            if !matches!(v, Value::Object(_) | Value::Array(_)) {
                add(d, &k, v);
                continue;
            }
            let mut flat = Vec::new();
            flatten("", v, &mut flat);
            let c = ffi::rte_tel_data_alloc();
            if c.is_null() {
                continue;
            }
            ffi::rte_tel_data_start_dict(c);
            for (name, x) in flat.iter().take(ffi::RTE_TEL_MAX_DICT_ENTRIES as usize) {
                add(c, name, x);
            }
            let Ok(n) = CString::new(k) else { continue };
            if ffi::rte_tel_data_add_dict_container(d, n.as_ptr(), c, 0) < 0 {
                ffi::rte_tel_data_free(c);
            }
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_answers_become_one_level_of_named_keys() {
        let mut out = Vec::new();
        let v = json!([
            {"port": "front", "rx": 5, "drops": {"no_flow": 2}},
            {"worker": 1, "tx": 7},
            {"mpps": 1.5},
        ]);
        flatten("", &v, &mut out);
        let got: Vec<(String, Value)> = out;
        assert_eq!(
            got,
            vec![
                ("front_port".to_string(), json!("front")),
                ("front_rx".to_string(), json!(5)),
                ("front_drops_no_flow".to_string(), json!(2)),
                ("1_worker".to_string(), json!(1)),
                ("1_tx".to_string(), json!(7)),
                ("2_mpps".to_string(), json!(1.5)),
            ]
        );
        assert_eq!(clean("a-b.c/d"), "a_b_c/d");
    }
}
