//! From TOML text to a [`Config`] or the full list of its problems: the file is parsed to a
//! tree, read into the schema with every value of the wrong type reported under its key
//! (and taken out, so the rest is still read), unknown keys listed, then validated.

use crate::problem::Problem;
use crate::schema;
use crate::validate::validate;
use crate::Config;
use std::collections::HashSet;

impl Config {
    /// Parses and validates TOML text; on failure, every problem found.
    pub fn from_toml(text: &str) -> Result<Config, Vec<Problem>> {
        let mut problems = Vec::new();
        let table: toml::Table = match text.parse() {
            Ok(t) => t,
            Err(e) => {
                // A syntax error: nothing after it can be read. toml's message says where.
                problems.push(Problem {
                    key: "(file)".into(),
                    why: e.to_string().trim().replace('\n', " "),
                });
                return Err(problems);
            }
        };
        let (file, unknown) = read_schema(toml::Value::Table(table), &mut problems);
        let typed: HashSet<String> = problems.iter().map(|p| p.key.clone()).collect();
        for key in unknown {
            problems.push(Problem {
                key,
                why: "unknown key".into(),
            });
        }
        let Some(file) = file else {
            return Err(problems);
        };
        // A value of the wrong type was taken out and validation then sees it missing:
        // the type error already says what is wrong with that key.
        let mut checked = Vec::new();
        let cfg = validate(file, &mut checked);
        problems.extend(checked.into_iter().filter(|p| !typed.contains(&p.key)));
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(problems)
        }
    }

    pub fn from_path(path: &std::path::Path) -> Result<Config, Vec<Problem>> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![Problem {
                key: path.display().to_string(),
                why: format!("cannot read: {e}"),
            }]
        })?;
        let mut cfg = Config::from_toml(&text)?;
        let problems = cfg.read_quic_keys();
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(problems)
        }
    }

    /// Reads each quic service's `key_file` into its config (a config from text names the
    /// file; the node needs the key). Each file that cannot be used is a problem.
    pub fn read_quic_keys(&mut self) -> Vec<Problem> {
        let mut problems = Vec::new();
        for (i, s) in self.services.iter_mut().enumerate() {
            let Some(q) = s.quic.as_mut() else { continue };
            let Some(path) = q.key_file.clone() else {
                continue;
            };
            match crate::model::read_quic_key(&path) {
                Ok(k) => q.key = Some(k),
                Err(why) => problems.push(Problem {
                    key: format!("service[{i}].quic.key_file"),
                    why,
                }),
            }
        }
        problems
    }
}

/// A secret file's contents, refused when anyone but its owner may read it.
pub fn read_owner_only(path: &std::path::Path) -> Result<Vec<u8>, String> {
    use std::os::unix::fs::PermissionsExt;
    let at = |e: std::io::Error| format!("{}: {e}", path.display());
    let mode = std::fs::metadata(path).map_err(at)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "{}: mode {:o} lets others read it; chmod 600 it",
            path.display(),
            mode & 0o777
        ));
    }
    std::fs::read(path).map_err(at)
}

/// Most type errors reported from one file before reading stops.
const MAX_TYPE_ERRORS: usize = 100;

/// Reads the parsed file into the schema, reporting every value of the wrong type with its
/// key: each one found is taken out of the tree and the tree read again (serde stops at the
/// first error), so the rest of the file is still read and validated. Returns the schema (None
/// when a bad value could not be taken out) and the unknown keys.
fn read_schema(
    mut value: toml::Value,
    problems: &mut Vec<Problem>,
) -> (Option<schema::File>, Vec<String>) {
    let mut reported = HashSet::new();
    let mut file = None;
    for _ in 0..MAX_TYPE_ERRORS * 2 {
        match serde_path_to_error::deserialize::<_, schema::File>(value.clone()) {
            Ok(f) => {
                file = Some(f);
                break;
            }
            Err(e) => {
                let key = key_of(e.path());
                if reported.insert(key.clone()) {
                    let why = e.inner().to_string().trim().replace('\n', " ");
                    // toml appends its own (index-less) path: the key already says where.
                    let why = why.split(" in `").next().unwrap_or(&why).to_string();
                    problems.push(Problem { key, why });
                }
                if reported.len() > MAX_TYPE_ERRORS || !take_out(&mut value, e.path()) {
                    break;
                }
            }
        }
    }
    let mut unknown = Vec::new();
    let _: Result<schema::File, _> =
        serde_ignored::deserialize(value, |path| unknown.push(dotted_key(&path)));
    (file, unknown)
}

/// serde_ignored's path as validation writes keys: `service[0].backend[1].colour` (an
/// optional section's `Some` and newtype wrappers are not keys, and are left out).
fn dotted_key(path: &serde_ignored::Path) -> String {
    use serde_ignored::Path;
    let mut key = match path {
        Path::Root => return String::new(),
        Path::Seq { parent, .. }
        | Path::Map { parent, .. }
        | Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => dotted_key(parent),
    };
    match path {
        Path::Seq { index, .. } => key.push_str(&format!("[{index}]")),
        Path::Map { key: k, .. } => {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(segment(k));
        }
        _ => {}
    }
    key
}

/// A key's name as TOML writes it: an empty key is `''` (so a problem always names one).
fn segment(k: &str) -> &str {
    if k.is_empty() {
        "''"
    } else {
        k
    }
}

/// A serde path as validation writes keys: `service[0].backend[1].port`.
fn key_of(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut key = String::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => key.push_str(&format!("[{index}]")),
            Segment::Map { key: k } | Segment::Enum { variant: k } => {
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(segment(k));
            }
            Segment::Unknown => {}
        }
    }
    if key.is_empty() {
        key.push_str("(file)");
    }
    key
}

/// Takes the value at `path` out of the tree: a table's key is removed (the schema then uses
/// its default, and validation says what is missing); an array's element is first replaced
/// by an empty table (so later elements keep their indexes), and removed if that is wrong
/// too. False when there is nothing there to take out.
fn take_out(value: &mut toml::Value, path: &serde_path_to_error::Path) -> bool {
    use serde_path_to_error::Segment;
    let segs: Vec<&Segment> = path.iter().collect();
    let Some((last, parents)) = segs.split_last() else {
        return false;
    };
    let mut v = value;
    for seg in parents {
        v = match (seg, v) {
            (Segment::Seq { index }, toml::Value::Array(a)) => match a.get_mut(*index) {
                Some(x) => x,
                None => return false,
            },
            (Segment::Map { key }, toml::Value::Table(t)) => match t.get_mut(key.as_str()) {
                Some(x) => x,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, v) {
        (Segment::Map { key }, toml::Value::Table(t)) => t.remove(key.as_str()).is_some(),
        (Segment::Seq { index }, toml::Value::Array(a)) if *index < a.len() => {
            let empty = matches!(&a[*index], toml::Value::Table(t) if t.is_empty());
            if empty {
                a.remove(*index);
            } else {
                a[*index] = toml::Value::Table(toml::Table::new());
            }
            true
        }
        _ => false,
    }
}
