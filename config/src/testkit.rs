//! Helpers for tests that hold `reference::KEYS` to the code, here and in
//! `tandem-control` (whose reload test checks the reload column): a config with every
//! section, and setting a key by its dotted path.

use crate::reference::Range;
use crate::units::{format_duration, parse_duration};
use crate::Config;
use std::time::Duration;
use toml::{Table, Value};

/// Every section, only the keys each needs (shared with `tandem-control`'s reload test).
pub const BASE: &str = include_str!("testdata/every-section.toml");
/// Which element of an array of tables a path goes through: the first that holds the
/// rest of the path (so `service.quic.config_id` finds the quic service), or else the most
/// of it (`service.quic.key_file`, left out, finds it too), or else the first.
fn element(a: &[Value], rest: &str) -> usize {
    let mut rest = rest;
    loop {
        let holds = |x: &Value| x.as_table().is_some_and(|t| at(t, rest).is_some());
        if let Some(i) = a.iter().position(holds) {
            return i;
        }
        match rest.rsplit_once('.') {
            Some((shorter, _)) => rest = shorter,
            None => return 0,
        }
    }
}

/// The value at a dotted path (through arrays of tables as `element` picks).
pub fn at<'a>(t: &'a Table, path: &str) -> Option<&'a Value> {
    let (seg, rest) = path.split_once('.').unwrap_or((path, ""));
    let x = match t.get(seg)? {
        Value::Array(a) if a.first().is_some_and(Value::is_table) && !rest.is_empty() => {
            &a[element(a, rest)]
        }
        Value::Array(a) if a.first().is_some_and(Value::is_table) => &a[0],
        x => x,
    };
    match (rest, x) {
        ("", x) => Some(x),
        (rest, Value::Table(inner)) => at(inner, rest),
        _ => None,
    }
}

/// Sets the value at a dotted path (through arrays of tables as `element` picks; missing
/// sections are made).
pub fn set(t: &mut Table, path: &str, value: Value) {
    let Some((seg, rest)) = path.split_once('.') else {
        t.insert(path.to_string(), value);
        return;
    };
    let x = t
        .entry(seg.to_string())
        .or_insert_with(|| Value::Table(Table::new()));
    let x = match x {
        Value::Array(a) => {
            let i = element(a, rest);
            &mut a[i]
        }
        x => x,
    };
    set(x.as_table_mut().expect("a section is a table"), rest, value);
}

/// The written form of the base config: every key of every section it has.
pub fn base_written() -> Table {
    let cfg = Config::from_toml(BASE).expect("the base config is valid");
    cfg.to_toml().parse().unwrap()
}

/// `service[0].backend[1].weight` -> `service.backend.weight`.
pub fn without_indices(key: &str) -> String {
    let mut out = String::new();
    let mut skip = false;
    for c in key.chars() {
        match c {
            '[' => skip = true,
            ']' => skip = false,
            c if !skip => out.push(c),
            _ => {}
        }
    }
    out
}

/// Values inside the range and just outside it, for the ranges that say numbers.
pub fn ends(r: &Range) -> Option<(Vec<Value>, Vec<Value>)> {
    let dur = |d: Duration| Value::String(format_duration(d));
    let us = Duration::from_micros(1);
    Some(match *r {
        Range::Int(a, b) | Range::Pow2(a, b) => (
            vec![Value::Integer(a), Value::Integer(b)],
            vec![Value::Integer(a - 1), Value::Integer(b + 1)],
        ),
        Range::Float(a, b) => (
            vec![Value::Float(a), Value::Float(b)],
            vec![Value::Float(a - 0.0001), Value::Float(b + 0.0001)],
        ),
        Range::Dur(a, b) => {
            let (a, b) = (parse_duration(a).unwrap(), parse_duration(b).unwrap());
            let mut outside = vec![dur(b + us)];
            if a > Duration::ZERO {
                outside.push(dur(a - us));
            }
            (vec![dur(a), dur(b)], outside)
        }
        Range::OneOf(words) => (
            words.iter().map(|w| word(w)).collect(),
            vec![Value::String("no-such-word".into())],
        ),
        Range::Words(_) => return None,
    })
}

/// A word of a `OneOf` range as TOML: `true`, or a string.
pub fn word(w: &str) -> Value {
    match w {
        "true" => Value::Boolean(true),
        "false" => Value::Boolean(false),
        w => Value::String(w.into()),
    }
}
