//! Whole config files through `Config::from_toml`: every problem with its key, in one run.

use super::*;
use crate::model::*;
use std::time::Duration;

const GOOD: &str = r#"
[node]
id = 1
[eal]
args = ["--no-huge"]
[[port]]
name = "front"
devargs = "net_null0"
ipv4 = "10.0.0.1/24"
gateway = "10.0.0.254"
[[port]]
name = "back"
devargs = "net_null1"
ipv4 = "10.1.0.1/24"
[[service]]
name = "web"
vip = "192.0.2.10"
port = 80
protocol = "tcp"
mode = "nat"
[[service.backend]]
name = "a"
address = "10.1.0.11"
port = 8080
weight = 2
paths = [{ port = "back", mac = "02:00:00:00:01:11" }]
"#;

#[test]
fn good_config_parses_with_defaults() {
    let c = Config::from_toml(GOOD).unwrap();
    assert_eq!(c.workers.burst, 32);
    assert_eq!(c.services[0].backends[0].paths[0].port, 1);
    assert_eq!(c.flows.udp_timeout, Duration::from_secs(300));
}

fn problems(text: &str) -> Vec<Problem> {
    Config::from_toml(text).unwrap_err()
}

#[test]
fn every_problem_is_listed_with_its_key() {
    let bad = GOOD
        .replace(
            "gateway = \"10.0.0.254\"",
            "gateway = \"10.0.0.254\"\ncolour = \"red\"",
        )
        .replace("vip = \"192.0.2.10\"", "vip = \"192.0.2.300\"")
        .replace("{ port = \"back\", mac", "{ port = \"nowhere\", mac");
    let p = problems(&bad);
    let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
    assert!(keys.contains(&"port[0].colour"), "{p:?}");
    assert!(keys.contains(&"service[0].vip"), "{p:?}");
    assert!(
        keys.contains(&"service[0].backend[0].paths[0].port"),
        "{p:?}"
    );
}

#[test]
fn duplicate_vip_and_pathless_backend() {
    let mut text = GOOD.to_string();
    text.push_str(
        r#"
[[service]]
name = "web2"
vip = "192.0.2.10"
port = 80
protocol = "tcp"
mode = "dsr"
[[service.backend]]
name = "b"
address = "10.1.0.12"
"#,
    );
    let p = problems(&text);
    assert!(
        p.iter()
            .any(|p| p.key == "service[1].vip" && p.why.contains("duplicate VIP")),
        "{p:?}"
    );
    assert!(
        p.iter().any(|p| p.key == "service[1].backend[0].paths"),
        "{p:?}"
    );
}

#[test]
fn qos_sections_as_written_and_their_problems() {
    let text = GOOD.to_string()
        + r#"
[health]
probe = "tcp"
interval = "500ms"
timeout = "1s"
down_after = 3
up_after = 2
[qos]
window = "10s"
"#;
    let text = text.replace(
        "mode = \"nat\"\n",
        "mode = \"nat\"\nqueue = { max_len = 1024, max_wait = \"2s\" }\n\
         standby = { p99_above = \"50ms\", for = \"5s\", recover_for = \"30s\", hook = \"/usr/local/bin/provision\" }\n",
    ) + r#"
[[service.backend]]
name = "spare"
address = "10.1.0.19"
max_flows = 4
standby = true
paths = [{ port = "back" }]
"#;
    let c = Config::from_toml(&text).unwrap();
    assert_eq!(c.health.probe, crate::ProbeMethod::Tcp);
    assert_eq!(c.health.down_after, 3);
    assert_eq!(c.qos.window, Duration::from_secs(10));
    assert_eq!(c.qos.slots(), 20);
    let s = &c.services[0];
    assert_eq!(s.queue.max_len, 1024);
    assert_eq!(s.queue.max_wait, Duration::from_secs(2));
    let sb = s.standby.as_ref().unwrap();
    assert_eq!(sb.p99_above, Some(Duration::from_millis(50)));
    assert_eq!(sb.recover_for, Duration::from_secs(30));
    assert_eq!(s.backends[1].state, BackendState::Standby);
    assert_eq!(s.backends[1].max_flows, 4);
    assert!(s.admission());
    // No [health]: no probes.
    assert_eq!(
        Config::from_toml(GOOD).unwrap().health.probe,
        crate::ProbeMethod::None
    );
    let bad = text
        .replace("probe = \"tcp\"", "probe = \"udp\"")
        .replace(
            "window = \"10s\"",
            "window = \"10s\"\nselection = \"random\"\nquantile = 2.0",
        )
        .replace("max_len = 1024", "max_len = 0")
        .replace("max_flows = 4", "max_flows = 0")
        .replace("for = \"5s\"", "for = \"soon\"");
    let p = problems(&bad);
    for key in [
        "health.probe",
        "qos.selection",
        "qos.quantile",
        "service[0].queue.max_len",
        "service[0].standby.for",
        "service[0].backend[1].max_flows",
    ] {
        assert!(p.iter().any(|x| x.key == key), "{key}: {p:?}");
    }
    // A standby section with no standby backend says so.
    let lonely = text.replace("standby = true\n", "");
    assert!(problems(&lonely)
        .iter()
        .any(|x| x.key == "service[0].standby" && x.why.contains("no backend")));
}

#[test]
fn type_errors_are_each_reported_with_the_rest_of_the_file() {
    let bad = GOOD
        .replace("id = 1", "id = \"one\"")
        .replace("port = 80\n", "port = \"http\"\n")
        .replace("weight = 2", "weight = -2\nflavour = 1")
        .replace("vip = \"192.0.2.10\"", "vip = \"192.0.2.300\"");
    let p = problems(&bad);
    for key in [
        "node.id",
        "service[0].port",
        "service[0].backend[0].weight",
        "service[0].backend[0].flavour",
        "service[0].vip",
    ] {
        assert!(p.iter().any(|x| x.key == key), "{key} missing from {p:?}");
    }
    assert!(p.iter().all(|x| x.key != "(file)"), "{p:?}");
    // An element of the wrong type in an array keeps the indexes of the others.
    let bad = GOOD.replace(
        "paths = [{ port = \"back\", mac = \"02:00:00:00:01:11\" }]",
        "paths = [7, { port = \"nowhere\" }]",
    );
    let p = problems(&bad);
    assert!(
        p.iter().any(|x| x.key == "service[0].backend[0].paths[0]"),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|x| x.key == "service[0].backend[0].paths[1].port"),
        "{p:?}"
    );
}

#[test]
fn missing_keys_are_named() {
    let bad = GOOD
        .replace("id = 1\n", "")
        .replace("address = \"10.1.0.11\"\n", "")
        .replace("devargs = \"net_null1\"\n", "");
    let p = problems(&bad);
    for key in [
        "node.id",
        "service[0].backend[0].address",
        "port[1].devargs",
    ] {
        assert!(p.iter().any(|x| x.key == key), "{key} missing from {p:?}");
    }
}

#[test]
fn huge_and_tiny_values_are_refused_with_their_range() {
    for (from, to, key) in [
        (
            "[[port]]\nname = \"front\"",
            "[flows]\ntcp_established_timeout = \"99999999h\"\n[[port]]\nname = \"front\"",
            "flows.tcp_established_timeout",
        ),
        (
            "[[port]]\nname = \"front\"",
            "[flows]\nudp_timeout = \"25d\"\n[[port]]\nname = \"front\"",
            "flows.udp_timeout",
        ),
        (
            "[[port]]\nname = \"front\"",
            "[health]\ninterval = \"99999999999999999h\"\n[[port]]\nname = \"front\"",
            "health.interval",
        ),
        (
            "[[port]]\nname = \"front\"",
            "[workers]\nidle_sleep = \"2h\"\n[[port]]\nname = \"front\"",
            "workers.idle_sleep",
        ),
        (
            "[[port]]\nname = \"front\"",
            "[qos]\nperiod = \"18446744073709551615s\"\n[[port]]\nname = \"front\"",
            "qos.period",
        ),
        (
            "devargs = \"net_null0\"",
            "devargs = \"net_null0\"\nmtu = 576",
            "port[0].mtu",
        ),
        (
            "devargs = \"net_null1\"",
            "devargs = \"net_null1\"\nmtu = 9000",
            "port[1].mtu",
        ),
    ] {
        let p = problems(&GOOD.replacen(from, to, 1));
        assert!(p.iter().any(|x| x.key == key), "{key}: {p:?}");
    }
    let p = problems(&GOOD.replacen(
        "[[port]]\nname = \"front\"",
        "[flows]\nudp_timeout = \"30d\"\n[[port]]\nname = \"front\"",
        1,
    ));
    let why = &p.iter().find(|x| x.key == "flows.udp_timeout").unwrap().why;
    assert!(why.contains("from 100ms to 24d"), "{why}");
}

#[test]
fn an_empty_key_is_named_as_toml_writes_it() {
    // Found by the config_loader fuzzer: a problem named no key.
    let p = problems(&format!("'' = ''\n{GOOD}"));
    assert!(
        p.iter().any(|x| x.key == "''" && x.why == "unknown key"),
        "{p:?}"
    );
    let p = problems(&GOOD.replacen("[node]", "[node]\n'' = 1", 1));
    assert!(p.iter().any(|x| x.key == "node.''"), "{p:?}");
}

#[test]
fn unknown_keys_of_optional_sections_are_named_plainly() {
    // Was `node.?.colour`: serde_ignored's mark for an optional section leaked into keys.
    let p =
        problems(&format!("{GOOD}[health]\nfoo = 1\n").replacen("[node]", "[node]\ncolour = 1", 1));
    for key in ["node.colour", "health.foo"] {
        assert!(
            p.iter().any(|x| x.key == key && x.why == "unknown key"),
            "{key}: {p:?}"
        );
    }
}

#[test]
fn mtu_and_mss_clamp_default_and_parse() {
    let c = Config::from_toml(GOOD).unwrap();
    assert_eq!(c.ports[0].mtu, DEFAULT_MTU);
    assert!(c.services[0].clamp_mss, "on unless turned off");
    let t = GOOD
        .replacen(
            "devargs = \"net_null1\"",
            "devargs = \"net_null1\"\nmtu = 1600",
            1,
        )
        .replacen("mode = \"nat\"", "mode = \"nat\"\nclamp_mss = false", 1);
    let c = Config::from_toml(&t).unwrap();
    assert_eq!(c.ports[1].mtu, 1600);
    assert!(!c.services[0].clamp_mss);
    let p = problems(&GOOD.replacen("mode = \"nat\"", "mode = \"nat\"\nclamp_mss = 3", 1));
    assert!(p.iter().any(|x| x.key.contains("clamp_mss")), "{p:?}");
}

#[test]
fn nonsense_addresses_are_refused() {
    for (from, to, key) in [
        (
            "address = \"10.1.0.11\"",
            "address = \"0.0.0.0\"",
            "service[0].backend[0].address",
        ),
        (
            "address = \"10.1.0.11\"",
            "address = \"127.0.0.1\"",
            "service[0].backend[0].address",
        ),
        (
            "address = \"10.1.0.11\"",
            "address = \"192.0.2.10\"",
            "service[0].backend[0].address",
        ),
        (
            "address = \"10.1.0.11\"",
            "address = \"10.1.0.1\"",
            "service[0].backend[0].address",
        ),
        (
            "ipv4 = \"10.1.0.1/24\"",
            "ipv4 = \"10.1.0.1/0\"",
            "port[1].ipv4",
        ),
        (
            "mac = \"02:00:00:00:01:11\"",
            "mac = \"00:00:00:00:00:00\"",
            "service[0].backend[0].paths[0].mac",
        ),
        (
            "mac = \"02:00:00:00:01:11\"",
            "mac = \"ff:ff:ff:ff:ff:ff\"",
            "service[0].backend[0].paths[0].mac",
        ),
        (
            "vip = \"192.0.2.10\"",
            "vip = \"127.0.0.5\"",
            "service[0].vip",
        ),
    ] {
        let p = problems(&GOOD.replace(from, to));
        assert!(p.iter().any(|x| x.key == key), "{to}: {p:?}");
    }
}

#[test]
fn syntax_errors_are_reported() {
    let p = problems("[node\nid = 1");
    assert_eq!(p.len(), 1);
}

use proptest::prelude::*;

/// Values a careless operator or a fuzzer puts where a config value goes.
fn wild_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("\"18446744073709551615s\"".to_string()),
        Just("\"99999999999999999h\"".to_string()),
        Just("\"0us\"".to_string()),
        Just("\"1us\"".to_string()),
        Just("18446744073709551615".to_string()),
        Just("-1".to_string()),
        Just("0".to_string()),
        Just("4294967296".to_string()),
        Just("\"\"".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("1e308".to_string()),
        Just("nan".to_string()),
        Just("\"0.0.0.0\"".to_string()),
        Just("\"::/0\"".to_string()),
        Just("\"00:00:00:00:00:00\"".to_string()),
        (0u64..u64::MAX).prop_map(|n| n.to_string()),
        (
            0u64..100_000,
            prop_oneof![Just("us"), Just("ms"), Just("s"), Just("m"), Just("h")]
        )
            .prop_map(|(n, u)| format!("\"{n}{u}\"")),
        "[ -~]{0,12}".prop_map(|s| format!("{s:?}")),
    ]
}

fn example(name: &str) -> String {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/");
    std::fs::read_to_string(format!("{dir}{name}")).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any value in place of any value of an example config, or a line dropped: the
    /// checker answers (Ok or keyed problems), never panics.
    #[test]
    fn mutated_example_configs_never_panic(
        which in 0usize..5,
        line in 0usize..200,
        value in wild_value(),
        drop_line in any::<bool>(),
    ) {
        let names = ["design-brief.toml", "cluster-node1.toml", "dsr-gue-ipv6.toml",
            "pcap-replay.toml", "qos.toml"];
        let text = example(names[which]);
        let lines: Vec<&str> = text.lines().collect();
        let i = line % lines.len().max(1);
        let mut out = Vec::new();
        for (j, l) in lines.iter().enumerate() {
            if j != i {
                out.push(l.to_string());
            } else if !drop_line {
                match l.split_once('=') {
                    Some((k, _)) if !l.trim_start().starts_with('#') => {
                        out.push(format!("{k}= {value}"))
                    }
                    _ => out.push(l.to_string()),
                }
            }
        }
        let text = out.join("\n");
        if let Err(p) = Config::from_toml(&text) {
            prop_assert!(!p.is_empty());
            for x in p {
                prop_assert!(!x.key.is_empty() && !x.why.is_empty());
            }
        }
    }
}

/// The second hostile campaign: names outside the documented set, a backend at a peer's
/// data-plane address, and one off the port's subnet on a port with no gateway.
#[test]
fn names_peers_and_unreachable_backends_are_refused() {
    for (name, says) in [
        ("we\u{1b}[31mb", "U+001B"),
        ("web\u{202e}", "U+202E"),
        ("a/b", "'/'"),
        ("a\"b", "'\"'"),
        ("", "empty"),
        (".web", "start with"),
    ] {
        let bad = GOOD.replace(
            "name = \"web\"",
            &format!("name = {}", toml::Value::String(name.into())),
        );
        let p = problems(&bad);
        assert!(
            p.iter()
                .any(|p| p.key == "service[0].name" && p.why.contains(says)),
            "{name:?}: {p:?}"
        );
    }
    let ok = GOOD.replace("name = \"web\"", "name = \"web-1.v2_a\"");
    Config::from_toml(&ok).unwrap();
    let bad = GOOD.replace(
        "paths = [{ port = \"back\", mac = \"02:00:00:00:01:11\" }]",
        "paths = [{ port = \"back\" }]",
    );
    Config::from_toml(&bad).unwrap();
    let off = bad.replace("address = \"10.1.0.11\"", "address = \"10.9.0.11\"");
    let p = problems(&off);
    assert!(
        p.iter().any(|p| p.key == "service[0].backend[0].paths[0].port"
            && p.why.contains("no gateway")),
        "{p:?}"
    );
    let peer = format!(
        "{}
[cluster]
secret_file = \"/dev/null\"
[[cluster.node]]
id = 1
address = \"10.0.0.1\"
sync = \"127.0.0.1:7001\"
[[cluster.node]]
id = 2
address = \"10.1.0.11\"
sync = \"127.0.0.1:7002\"
",
        GOOD
    );
    let p = problems(&peer);
    assert!(
        p.iter()
            .any(|p| p.key == "service[0].backend[0].address" && p.why.contains("cluster node 2")),
        "{p:?}"
    );
}

/// What the rest of tandem asks of each mode comes from the mode list
/// (`for_each_mode!`): the three modes answer as they behave, and the properties agree with
/// each other for every mode listed.
#[test]
fn modes_answer_for_themselves() {
    let props = |m: Mode| {
        (
            m.translates(),
            m.encapsulates(),
            m.default_port(),
            m.keeps_vip_port(),
            m.tcp_probe(),
        )
    };
    assert_eq!(props(Mode::Nat), (true, false, None, false, true));
    assert_eq!(props(Mode::Dsr), (false, false, None, true, true));
    assert_eq!(props(Mode::Gue), (false, true, Some(6080), false, false));
    for m in Mode::ALL {
        assert_eq!(Mode::parse(m.name()), Some(*m));
        // A mode reached at the VIP's port has no port of its own to default to.
        assert!(!m.keeps_vip_port() || m.default_port().is_none(), "{m:?}");
        // A packet is either rewritten, wrapped, or sent as it came: never both of the first.
        assert!(!(m.translates() && m.encapsulates()), "{m:?}");
    }
    assert_eq!(DEFAULT_GUE_PORT, 6080);
}

#[test]
fn admission_limits_as_written_and_their_problems() {
    let text = format!(
        "{GOOD}[service.admission]\nlimit = \"adaptive\"\nmin_limit = 2\nmax_limit = 50\n\
         tolerance = 0.2\nmin_interval = \"10s\"\n"
    );
    let c = Config::from_toml(&text).unwrap();
    let a = &c.services[0].admission;
    assert!(a.adaptive() && c.services[0].admission());
    assert_eq!((a.min_limit, a.max_limit, a.tolerance), (2, 50, 0.2));
    assert_eq!((a.quantile, a.min_interval), (0.5, Duration::from_secs(10)));
    // Static by default: no backend limit, no admission.
    let c = Config::from_toml(GOOD).unwrap();
    assert_eq!(c.services[0].admission.limit, LimitMode::Static);
    assert!(!c.services[0].admission());
    let bad = format!(
        "{GOOD}[service.admission]\nlimit = \"learned\"\nmin_limit = 60\nmax_limit = 50\n\
         tolerance = 3.0\nquantile = 1.0\nmin_interval = \"2h\"\n"
    );
    let keys: Vec<String> = problems(&bad).iter().map(|p| p.key.clone()).collect();
    for k in [
        "service[0].admission.limit",
        "service[0].admission.min_limit",
        "service[0].admission.tolerance",
        "service[0].admission.quantile",
        "service[0].admission.min_interval",
    ] {
        assert!(keys.iter().any(|x| x == k), "{k} not in {keys:?}");
    }
    let p = problems(&format!("{GOOD}[service.admission]\nmax_limit = 0\n"));
    assert!(
        p.iter().any(|p| p.key == "service[0].admission.max_limit"),
        "{p:?}"
    );
}

/// GOOD with a quic service after it: `quic` and the two backends' lines given.
fn with_quic(quic: &str, a: &str, b: &str) -> String {
    format!(
        "{GOOD}[[service]]\nname = \"h3\"\nvip = \"192.0.2.30\"\nport = 443\nprotocol = \"quic\"\n\
         mode = \"nat\"\n{quic}\n[[service.backend]]\nname = \"h3-a\"\naddress = \"10.1.0.21\"\n{a}\n\
         paths = [{{ port = \"back\" }}]\n[[service.backend]]\nname = \"h3-b\"\n\
         address = \"10.1.0.22\"\n{b}\npaths = [{{ port = \"back\" }}]\n"
    )
}

fn problem_keys(text: &str) -> Vec<(String, String)> {
    match Config::from_toml(text) {
        Ok(_) => Vec::new(),
        Err(p) => p.into_iter().map(|p| (p.key, p.why)).collect(),
    }
}

#[test]
fn a_quic_service_reads_its_ids_and_settings() {
    let text = with_quic(
        "quic = { config_id = 3, server_id_len = 3, nonce_len = 8 }",
        "server_id = \"0a0b0c\"",
        "server_id = \"0A0B0D\"",
    );
    let c = Config::from_toml(&text).unwrap();
    let s = &c.services[1];
    assert_eq!(s.protocol, Protocol::Quic);
    assert_eq!(s.protocol.number(), 17);
    let q = s.quic.as_ref().unwrap();
    assert_eq!((q.config_id, q.server_id_len, q.nonce_len), (3, 3, 8));
    assert_eq!(s.backends[1].server_id, vec![0x0a, 0x0b, 0x0d]);
    assert!(c.services[0].quic.is_none());
    // Written back, read again: the same.
    let again = Config::from_toml(&c.to_toml()).unwrap();
    assert_eq!(again.services[1].quic, s.quic);
    assert_eq!(
        again.services[1].backends[0].server_id,
        s.backends[0].server_id
    );
}

#[test]
fn quic_ids_and_settings_are_checked_by_key() {
    let cases: [(&str, &str, &str, &str); 7] = [
        (
            "",
            "",
            "server_id = \"0a02\"",
            "service[1].backend[0].server_id",
        ),
        (
            "",
            "server_id = \"0a\"",
            "server_id = \"0a02\"",
            "service[1].backend[0].server_id",
        ),
        (
            "",
            "server_id = \"zz01\"",
            "server_id = \"0a02\"",
            "service[1].backend[0].server_id",
        ),
        (
            "",
            "server_id = \"0a02\"",
            "server_id = \"0A02\"",
            "service[1].backend[1].server_id",
        ),
        (
            "quic = { config_id = 7 }",
            "server_id = \"0a01\"",
            "server_id = \"0a02\"",
            "service[1].quic.config_id",
        ),
        (
            "quic = { server_id_len = 15, nonce_len = 5 }",
            "",
            "",
            "service[1].quic.nonce_len",
        ),
        (
            "quic = { key_file = \"key\" }",
            "server_id = \"0a01\"",
            "server_id = \"0a02\"",
            "service[1].quic.key_file",
        ),
    ];
    for (quic, a, b, key) in cases {
        let p = problem_keys(&with_quic(quic, a, b));
        assert!(p.iter().any(|(k, _)| k == key), "{quic} {a} {b}: {p:?}");
    }
    // A quic section or a server ID on a tcp service.
    let text = GOOD
        .replace("mode = \"nat\"", "mode = \"nat\"\nquic = {}")
        .replace("weight = 2", "weight = 2\nserver_id = \"0a01\"");
    let keys: Vec<String> = problem_keys(&text).into_iter().map(|(k, _)| k).collect();
    assert!(keys.contains(&"service[0].quic".to_string()), "{keys:?}");
    assert!(
        keys.contains(&"service[0].backend[0].server_id".to_string()),
        "{keys:?}"
    );
    // A quic and a udp service cannot share a VIP and port.
    let text = with_quic("", "server_id = \"0a01\"", "server_id = \"0a02\"")
        + "[[service]]\nname = \"dns\"\nvip = \"192.0.2.30\"\nport = 443\nprotocol = \"udp\"\n\
           mode = \"nat\"\n[[service.backend]]\nname = \"d\"\naddress = \"10.1.0.31\"\n\
           paths = [{ port = \"back\" }]\n";
    let keys: Vec<String> = problem_keys(&text).into_iter().map(|(k, _)| k).collect();
    assert!(keys.contains(&"service[2].vip".to_string()), "{keys:?}");
}

#[test]
fn a_quic_key_file_is_read_owner_only_as_16_octets_or_hex() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("tandem-quic-key-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, data: &[u8], mode: u32| {
        let p = dir.join(name);
        std::fs::write(&p, data).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    };
    let raw = write("raw", &[7u8; 16], 0o600);
    let hex = write("hex", b"8f95f09245765f80256934e50c66207f\n", 0o400);
    let open = write("open", &[7u8; 16], 0o644);
    let short = write("short", &[7u8; 15], 0o600);
    assert_eq!(read_quic_key(&raw).unwrap(), [7u8; 16]);
    assert_eq!(read_quic_key(&hex).unwrap()[..2], [0x8f, 0x95]);
    assert!(read_quic_key(&open).unwrap_err().contains("chmod 600"));
    assert!(read_quic_key(&short).unwrap_err().contains("15 octets"));
    assert!(read_quic_key(&dir.join("none")).is_err());
    // Through Config::from_path: the key read, or the key_file named.
    for (key, ok) in [(&raw, true), (&open, false)] {
        let text = with_quic(
            &format!("quic = {{ key_file = \"{}\" }}", key.display()),
            "server_id = \"0a01\"",
            "server_id = \"0a02\"",
        );
        let path = write("node.toml", text.as_bytes(), 0o600);
        match Config::from_path(&path) {
            Ok(c) => assert!(ok && c.services[1].quic.as_ref().unwrap().key == Some([7u8; 16])),
            Err(p) => assert!(!ok && p[0].key == "service[1].quic.key_file", "{p:?}"),
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
