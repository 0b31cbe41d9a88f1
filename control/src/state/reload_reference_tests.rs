//! The reload column of the configuration reference (`tandem_config::reference::KEYS`)
//! against what a running node does: every key is changed, one at a time, in a node
//! running the config with every section, and the node's answer must be the column's.

use super::tests::{node_from, reset_worker_ends};
use std::time::Instant;
use tandem_config::reference::{Reload, KEYS};
use tandem_config::testkit::{base_written, ends, set, without_indices};
use tandem_config::Config;
use toml::{Table, Value};

fn s(x: &str) -> Value {
    Value::String(x.into())
}

/// The change tried for keys whose range is said in words; `None` for none.
fn changed_by_hand(path: &str, t: &mut Table) -> Option<()> {
    let v = match path {
        // Which [[cluster.node]] is this one follows [node].id: change both.
        "node.id" => {
            set(t, "cluster.node.id", Value::Integer(3));
            Value::Integer(3)
        }
        "cluster.node.id" => {
            set(t, "node.id", Value::Integer(3));
            Value::Integer(3)
        }
        "eal.args" => Value::Array(vec![s("--no-huge")]),
        "port.name" => s("edge"),
        "port.devargs" => s("net_null7"),
        "port.ipv4" => s("10.0.0.1/16"),
        "port.ipv6" => s("fd00::1/48"),
        "port.gateway" => s("10.0.0.253"),
        "port.gateway6" => s("fd00::fe"),
        "port.mac" => s("02:00:00:00:00:09"),
        "port.kernel" => s("tdm0"),
        "workers.cores" => Value::Array(vec![Value::Integer(2)]),
        "control.socket" => s("/run/tandem/other.sock"),
        "metrics.listen" => s("127.0.0.1:9101"),
        "bgp.bird_socket" => s("/run/bird/other.ctl"),
        "bgp.routes4" => s("/run/tandem/other4.conf"),
        "bgp.routes6" => s("/run/tandem/other6.conf"),
        "qos.window" => s("20s"),
        "cluster.secret_file" => s("/etc/tandem/other.key"),
        "cluster.dead_after" => s("1s"),
        // This node's entry: its address must stay one of its ports'.
        "cluster.node.address" => s("10.1.0.1"),
        "cluster.node.mac" => s("02:00:00:00:00:0a"),
        "cluster.node.sync" => s("127.0.0.1:7009"),
        // A new service may not take the VIP and port the old one serves while it drains.
        "service.name" => {
            set(t, "service.vip", s("192.0.2.11"));
            s("www")
        }
        "service.vip" => s("192.0.2.11"),
        "service.admission.min_limit" => Value::Integer(2),
        "service.standby.healthy_below" => Value::Integer(1),
        "service.standby.hook" => s("/usr/local/bin/standby-hook"),
        "service.backend.name" => s("c"),
        "service.backend.address" => s("10.1.0.13"),
        "service.quic.server_id_len" => {
            set(t, "service.backend.server_id", s("0a0102"));
            Value::Integer(3)
        }
        "service.quic.nonce_len" => Value::Integer(8),
        "service.quic.key_file" => s("/etc/tandem/quic-lb.key"),
        "service.backend.server_id" => s("0a02"),
        // Reached by the front port's gateway.
        "service.backend.paths.port" => s("front"),
        "service.backend.paths.mac" => s("02:00:00:00:01:11"),
        _ => return None,
    };
    set(t, path, v);
    Some(())
}

/// The base config with `path` changed to another valid value.
fn changed(path: &str, range: &tandem_config::reference::Range) -> Option<Config> {
    let base = base_written();
    let mut t = base.clone();
    if changed_by_hand(path, &mut t).is_none() {
        let (inside, _) = ends(range)?;
        // The first value of the range the base does not already have.
        let v = inside.into_iter().find(|v| {
            let mut t2 = base.clone();
            set(&mut t2, path, v.clone());
            t2 != base
        })?;
        set(&mut t, path, v);
    }
    let cfg = Config::from_toml(&toml::to_string(&t).unwrap());
    Some(cfg.unwrap_or_else(|p| panic!("{path}: the changed config is refused: {p:?}")))
}

#[test]
fn a_reload_does_with_each_key_what_the_reference_says() {
    let base = toml::to_string(&base_written()).unwrap();
    let mut tried = 0;
    for k in KEYS {
        // `standby = true` is another way to write `state = "standby"`.
        if k.path == "service.backend.standby" {
            continue;
        }
        let new = changed(k.path, &k.range)
            .unwrap_or_else(|| panic!("{}: no change to try; add one by hand", k.path));
        reset_worker_ends();
        let (mut ctl, _cores) = node_from(&base, 1);
        let got = ctl.apply(new, Instant::now());
        let named = |why: &str| match &got {
            Err(p) => p.iter().any(|p| {
                let key = without_indices(&p.key);
                (k.path.starts_with(&key) || key.starts_with(k.section())) && p.why.contains(why)
            }),
            Ok(_) => false,
        };
        let ok = match k.reload {
            Reload::Live => got.is_ok(),
            Reload::Restart => named("takes a restart"),
            Reload::Fixed => named("stay as they are"),
            Reload::Name => got.as_ref().is_ok_and(|c| {
                c.iter().any(|c| c.ends_with("removed (draining)"))
                    && c.iter().any(|c| c.contains(" added"))
            }),
        };
        assert!(
            ok,
            "{}: the reference says {:?}, reload gave {got:?}",
            k.path, k.reload
        );
        tried += 1;
    }
    assert_eq!(tried, KEYS.len() - 1);
}
