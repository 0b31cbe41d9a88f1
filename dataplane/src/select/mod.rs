//! Selection: which backend a new flow goes to (`maglev`) and over which paths (`path`).

pub mod maglev;
pub mod path;
