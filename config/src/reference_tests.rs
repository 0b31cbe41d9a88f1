//! The reference (`reference::KEYS`) held to the code and to the docs: its keys are the
//! schema's, each default is what a left-out key becomes, each range is where validation
//! starts and stops refusing, and `docs/configuration.md` carries its tables as written.
//! `TANDEM_BLESS=1 cargo test -p tandem-config reference` rewrites the docs' tables.

use crate::reference::{sections, table, Absent, KEYS};
use crate::testkit::{at, base_written, ends, set, without_indices, BASE};
use crate::{schema, Config, Problem};
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use std::cell::RefCell;
use toml::{Table, Value};

const DOCS: &str = "../docs/configuration.md";

/// A deserializer that answers every request with a made-up value and notes the dotted
/// path of each leaf the schema asks for: the schema's keys, read from serde itself.
struct Walk<'a> {
    path: String,
    seen: &'a RefCell<Vec<String>>,
}

impl Walk<'_> {
    fn leaf(&self) {
        self.seen.borrow_mut().push(self.path.clone());
    }
}

macro_rules! leaf {
    ($($m:ident => $v:ident($x:expr)),* $(,)?) => {$(
        fn $m<V: Visitor<'de>>(self, v: V) -> Result<V::Value, de::value::Error> {
            self.leaf();
            v.$v($x)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for Walk<'_> {
    type Error = de::value::Error;
    leaf! {
        deserialize_any => visit_u64(1),
        deserialize_bool => visit_bool(true),
        deserialize_u8 => visit_u64(1), deserialize_u16 => visit_u64(1),
        deserialize_u32 => visit_u64(1), deserialize_u64 => visit_u64(1),
        deserialize_i8 => visit_i64(1), deserialize_i16 => visit_i64(1),
        deserialize_i32 => visit_i64(1), deserialize_i64 => visit_i64(1),
        deserialize_f32 => visit_f64(0.5), deserialize_f64 => visit_f64(0.5),
        deserialize_str => visit_str("x"), deserialize_string => visit_str("x"),
    }
    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
        v.visit_some(self)
    }
    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
        v.visit_seq(One(Some(self)))
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Self::Error> {
        v.visit_map(Fields {
            walk: self,
            fields,
            at: 0,
        })
    }
    serde::forward_to_deserialize_any! {
        i128 u128 char bytes byte_buf unit unit_struct newtype_struct tuple tuple_struct
        map enum identifier ignored_any
    }
}

/// A sequence of one element, walked like any other value.
struct One<'a>(Option<Walk<'a>>);

impl<'de> SeqAccess<'de> for One<'_> {
    type Error = de::value::Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        self.0.take().map(|w| seed.deserialize(w)).transpose()
    }
}

/// A struct's fields, each given with a walker one level down.
struct Fields<'a> {
    walk: Walk<'a>,
    fields: &'static [&'static str],
    at: usize,
}

impl<'de> MapAccess<'de> for Fields<'_> {
    type Error = de::value::Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        match self.fields.get(self.at) {
            Some(f) => seed.deserialize((*f).into_deserializer()).map(Some),
            None => Ok(None),
        }
    }
    fn next_value_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<T::Value, Self::Error> {
        let f = self.fields[self.at];
        self.at += 1;
        let path = match self.walk.path.as_str() {
            "" => f.to_string(),
            p => format!("{p}.{f}"),
        };
        seed.deserialize(Walk {
            path,
            seen: self.walk.seen,
        })
    }
}

#[test]
fn the_reference_has_every_key_of_the_schema_and_no_other() {
    let seen = RefCell::new(Vec::new());
    let walk = Walk {
        path: String::new(),
        seen: &seen,
    };
    let _: schema::File = serde::Deserialize::deserialize(walk).expect("the schema walks");
    let mut schema_keys = seen.into_inner();
    schema_keys.sort();
    schema_keys.dedup();
    let mut listed: Vec<String> = KEYS.iter().map(|k| k.path.to_string()).collect();
    listed.sort();
    let before = listed.len();
    listed.dedup();
    assert_eq!(before, listed.len(), "a key is listed twice");
    assert!(
        schema_keys.len() > 80,
        "the walk found only {schema_keys:?}"
    );
    assert_eq!(
        schema_keys, listed,
        "reference::KEYS and the schema's keys differ"
    );
}

/// The docs with each `<!-- keys: SECTION -->` block replaced by the reference's table.
fn docs_as_the_reference_writes_them(docs: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = docs;
    let mut done = Vec::new();
    while let Some(at) = rest.find("<!-- keys: ") {
        let (head, tail) = rest.split_at(at);
        out += head;
        let close = tail.find(" -->").ok_or("an unclosed keys marker")?;
        let section = &tail["<!-- keys: ".len()..close];
        let end = tail
            .find("<!-- end keys -->")
            .ok_or(format!("no end marker after {section}"))?;
        out += &format!("<!-- keys: {section} -->\n{}", table(section));
        rest = &tail[end..];
        done.push(section.to_string());
    }
    out += rest;
    for s in sections() {
        if !done.iter().any(|d| d == s) {
            return Err(format!("docs/configuration.md has no keys block for [{s}]"));
        }
    }
    Ok(out)
}

#[test]
fn the_docs_carry_the_reference_tables() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(DOCS);
    let docs = std::fs::read_to_string(&path).unwrap();
    let want = docs_as_the_reference_writes_them(&docs).unwrap();
    if want != docs && std::env::var_os("TANDEM_BLESS").is_some() {
        std::fs::write(&path, &want).unwrap();
        return;
    }
    assert!(
        want == docs,
        "docs/configuration.md's key tables differ from config/src/reference.rs: \
         run `TANDEM_BLESS=1 cargo test -p tandem-config reference` to rewrite them"
    );
}

#[test]
fn defaults_are_what_a_left_out_key_becomes() {
    let input: Table = BASE.parse().unwrap();
    let written = base_written();
    for k in KEYS {
        match k.default {
            Absent::Is(want) => {
                let got = at(&written, k.path)
                    .unwrap_or_else(|| panic!("{}: not written for the base config", k.path));
                let want: Value = format!("x = {want}").parse::<Table>().unwrap()["x"].clone();
                assert_eq!(
                    got, &want,
                    "{}: the reference says its default is {want}",
                    k.path
                );
            }
            Absent::Unset(_) if at(&input, k.path).is_none() => {
                // Left out, it is not there: written back, it is still left out.
                assert!(
                    at(&written, k.path).is_none(),
                    "{}: written although unset",
                    k.path
                )
            }
            _ => {}
        }
    }
}

/// The problems `path` gets when set to `value` in the base config.
fn problems_of(path: &str, value: Value) -> Vec<Problem> {
    let mut t = base_written();
    set(&mut t, path, value);
    let text = toml::to_string(&t).unwrap();
    match Config::from_toml(&text) {
        Ok(_) => Vec::new(),
        Err(p) => p
            .into_iter()
            .filter(|p| without_indices(&p.key) == path)
            .collect(),
    }
}

#[test]
fn ranges_are_where_validation_starts_refusing() {
    let mut probed = 0;
    for k in KEYS {
        let Some((inside, outside)) = ends(&k.range) else {
            continue;
        };
        for v in inside {
            let p = problems_of(k.path, v.clone());
            assert!(
                p.is_empty(),
                "{} = {v}: refused, but in its range: {p:?}",
                k.path
            );
        }
        for v in outside {
            let p = problems_of(k.path, v.clone());
            assert!(
                !p.is_empty(),
                "{} = {v}: taken, but out of its range",
                k.path
            );
        }
        probed += 1;
    }
    assert!(probed >= 55, "only {probed} ranges probed");
}

#[test]
fn word_ranges_name_every_mode_and_selection_the_code_has() {
    let words = |path: &str| match KEYS.iter().find(|k| k.path == path).unwrap().range {
        crate::reference::Range::OneOf(w) => w.to_vec(),
        r => panic!("{path}: {r:?}"),
    };
    let modes: Vec<&str> = crate::Mode::ALL.iter().map(|m| m.name()).collect();
    assert_eq!(words("service.mode"), modes);
    let selections: Vec<&str> = crate::Selection::ALL.iter().map(|s| s.name()).collect();
    assert_eq!(words("qos.selection"), selections);
}
