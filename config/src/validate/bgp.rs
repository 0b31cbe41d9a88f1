//! `[bgp]`: the files tandem writes for BIRD and its control socket, the health gate and
//! the grace on stop. Whether BIRD answers is not a config problem: `run` says so in
//! `show bgp` and the log, and retries.

use crate::model::{BgpConfig, DEFAULT_BIRD_SOCKET, DEFAULT_ROUTES4, DEFAULT_ROUTES6};
use crate::problem::Checker;
use crate::schema;
use std::path::PathBuf;
use std::time::Duration;

pub(super) fn bgp(c: &mut Checker, b: &schema::Bgp) -> BgpConfig {
    let mut path = |key: &str, v: &Option<String>, dflt: &str| -> PathBuf {
        let p = PathBuf::from(v.as_deref().unwrap_or(dflt));
        if !p.is_absolute() {
            c.bad(
                format!("bgp.{key}"),
                format!("\"{}\" must be an absolute path", p.display()),
            );
        } else if p.file_name().is_none() {
            c.bad(format!("bgp.{key}"), "must name a file");
        }
        p
    };
    let bird_socket = path("bird_socket", &b.bird_socket, DEFAULT_BIRD_SOCKET);
    let routes4 = path("routes4", &b.routes4, DEFAULT_ROUTES4);
    let routes6 = path("routes6", &b.routes6, DEFAULT_ROUTES6);
    if routes4 == routes6 {
        c.bad(
            "bgp.routes6",
            "must differ from bgp.routes4 (BIRD reads each in a static protocol of its family)",
        );
    }
    for (key, p) in [("routes4", &routes4), ("routes6", &routes6)] {
        if *p == bird_socket {
            c.bad(format!("bgp.{key}"), "is bgp.bird_socket's path");
        }
    }
    let min_healthy = b.min_healthy.unwrap_or(1);
    if min_healthy > 1024 {
        c.bad(
            "bgp.min_healthy",
            "must be at most 1024 (a service's most backends)",
        );
    }
    let withdraw_grace = c.duration_in(
        "bgp.withdraw_grace",
        b.withdraw_grace.as_deref(),
        Duration::from_secs(2),
        (Duration::ZERO, Duration::from_secs(600)),
    );
    BgpConfig {
        bird_socket,
        routes4,
        routes6,
        min_healthy: min_healthy.min(1024),
        withdraw_grace,
    }
}
