//! The configuration reference (`docs/configuration.md`) against the code: every key that
//! `Config::to_toml` writes for the example configs (which write every key of each section
//! they have, defaults included) is named in its section's row of the reference table.

use crate::Config;
use toml::{Table, Value};

const REFERENCE: &str = include_str!("../../docs/configuration.md");
const EXAMPLES: [&str; 5] = [
    include_str!("../examples/cluster-node1.toml"),
    include_str!("../examples/design-brief.toml"),
    include_str!("../examples/dsr-gue-ipv6.toml"),
    include_str!("../examples/pcap-replay.toml"),
    include_str!("../examples/qos.toml"),
];

/// Every (section, key) of `t`, sections named by their dotted path (`service.backend`).
fn keys(section: &str, t: &Table, out: &mut Vec<(String, String)>) {
    for (k, v) in t {
        let path = if section.is_empty() {
            k.clone()
        } else {
            format!("{section}.{k}")
        };
        match v {
            Value::Table(inner) => keys(&path, inner, out),
            Value::Array(a) if a.iter().all(Value::is_table) && !a.is_empty() => {
                for x in a {
                    keys(&path, x.as_table().unwrap(), out);
                }
            }
            _ => out.push((section.to_string(), k.clone())),
        }
    }
}

/// The row of the reference table for `section` (`[node]` or `[[port]]`).
fn row(section: &str) -> Option<&'static str> {
    let one = format!("| `[{section}]` |");
    let many = format!("| `[[{section}]]` |");
    REFERENCE
        .lines()
        .find(|l| l.starts_with(&one) || l.starts_with(&many))
}

#[test]
fn every_key_the_config_writes_is_in_the_reference() {
    let mut all = Vec::new();
    for text in EXAMPLES {
        let cfg = Config::from_toml(text).expect("the examples are valid");
        let t: Table = cfg.to_toml().parse().unwrap();
        keys("", &t, &mut all);
    }
    all.sort();
    all.dedup();
    assert!(
        all.len() > 80,
        "only {} keys: the walk found too few",
        all.len()
    );
    let missing: Vec<String> = all
        .iter()
        .filter(|(section, key)| row(section).is_none_or(|r| !r.contains(&format!("`{key}`"))))
        .map(|(section, key)| format!("{section}.{key}"))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/configuration.md does not name these keys in their section's row: {missing:?}"
    );
}
