//! A quic service's `[service.quic]` and its backends' `server_id`s: lengths the draft
//! allows, a codepoint that is not the unroutable one, and one server ID per backend, each
//! of the configured length and none twice (a server ID must name one server).

use crate::model::*;
use crate::problem::Checker;
use crate::schema;
use crate::units::parse_hex;
use std::collections::HashMap;
use std::path::PathBuf;

/// The service's QUIC-LB configuration (None unless `protocol = "quic"`), with each
/// backend's server ID written into `backends`.
pub(super) fn quic(
    c: &mut Checker,
    k: &str,
    s: &schema::Service,
    protocol: Protocol,
    backends: &mut [BackendConfig],
) -> Option<QuicConfig> {
    if protocol != Protocol::Quic {
        if s.quic.is_some() {
            c.bad(
                format!("{k}.quic"),
                "only a service of protocol = \"quic\" routes by connection ID",
            );
        }
        for (bi, b) in s.backend.iter().enumerate() {
            if b.server_id.is_some() {
                c.bad(
                    format!("{k}.backend[{bi}].server_id"),
                    "only a quic service's backends have one",
                );
            }
        }
        return None;
    }
    let q = settings(c, k, s.quic.as_ref());
    server_ids(c, k, s, &q, backends);
    Some(q)
}

fn settings(c: &mut Checker, k: &str, f: Option<&schema::QuicFile>) -> QuicConfig {
    let d = QuicConfig::default();
    let Some(f) = f else { return d };
    let config_id = f.config_id.unwrap_or(d.config_id);
    if config_id > 6 {
        c.bad(
            format!("{k}.quic.config_id"),
            "must be from 0 to 6 (7 marks IDs no balancer can route)",
        );
    }
    let server_id_len = f.server_id_len.unwrap_or(d.server_id_len);
    if !(1..=15).contains(&server_id_len) {
        c.bad(
            format!("{k}.quic.server_id_len"),
            "must be from 1 to 15 octets",
        );
    }
    let nonce_len = f.nonce_len.unwrap_or(d.nonce_len);
    if !(4..=18).contains(&nonce_len) {
        c.bad(format!("{k}.quic.nonce_len"), "must be from 4 to 18 octets");
    } else if u16::from(server_id_len) + u16::from(nonce_len) > u16::from(MAX_QUIC_PLAINTEXT) {
        c.bad(
            format!("{k}.quic.nonce_len"),
            format!(
                "with server_id_len, at most {MAX_QUIC_PLAINTEXT} octets (QUIC v1 IDs are at most 20)"
            ),
        );
    }
    let key_file = f.key_file.as_ref().map(PathBuf::from);
    if key_file.as_ref().is_some_and(|p| !p.is_absolute()) {
        c.bad(format!("{k}.quic.key_file"), "must be an absolute path");
    }
    QuicConfig {
        config_id,
        server_id_len,
        nonce_len,
        key_file,
        key: None,
    }
}

fn server_ids(
    c: &mut Checker,
    k: &str,
    s: &schema::Service,
    q: &QuicConfig,
    backends: &mut [BackendConfig],
) {
    let mut seen: HashMap<Vec<u8>, &str> = HashMap::new();
    for (bi, (b, out)) in s.backend.iter().zip(backends.iter_mut()).enumerate() {
        let key = format!("{k}.backend[{bi}].server_id");
        let Some(text) = &b.server_id else {
            c.bad(key, "a quic service's backend needs its server_id (hex)");
            continue;
        };
        let id = match parse_hex(text) {
            Ok(id) => id,
            Err(e) => {
                c.bad(key, e);
                continue;
            }
        };
        if id.len() != usize::from(q.server_id_len) {
            c.bad(
                key,
                format!(
                    "is {} octets; quic.server_id_len is {}",
                    id.len(),
                    q.server_id_len
                ),
            );
            continue;
        }
        if let Some(other) = seen.insert(id.clone(), &b.name) {
            c.bad(key, format!("is backend \"{other}\"'s too"));
        }
        out.server_id = id;
    }
}
