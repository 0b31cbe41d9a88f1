//! Path MTU discovery through tandem, end to end in namespaces (scripts/pmtu-topology): a
//! router between the node and the client has a 1280-byte MTU on its client leg, and real
//! backends send large responses over kernel TCP with DF set. The router's "fragmentation
//! needed" goes to the VIP the responses came from; tandem steers it to the flow's backend
//! (nat: rewritten to the backend's address; dsr: to its MAC; gue: encapsulated, for a
//! userspace decapsulator), the backend lowers its path MTU, and the download completes.
//! With the router's ICMP dropped the same download hangs (what happens when the error is
//! lost, as it was before tandem steered it). And 4 KB UDP datagrams from a kernel client,
//! in fragments, arrive whole at one backend of a nat VIP. tandem's ports are net_tap here:
//! net_af_packet's kernel side reassembles fragments before tandem could see them.

mod common;

use common::*;
use std::process::Stdio;
use std::time::Instant;

const SIZE: usize = 1_000_000;

fn config(s: &Scratch, sx: &str, prefix: &str) -> String {
    let mut udp = String::new();
    for i in 1..=3 {
        udp += &format!(
            "[[service.backend]]\nname = \"u{i}\"\naddress = \"10.1.0.1{i}\"\nport = 5353\npaths = [{{ port = \"back\" }}]\n"
        );
    }
    format!(
        r#"{header}[[port]]
name = "front"
devargs = "net_tap0,iface=tpf-{sx}"
ipv4 = "10.0.0.1/24"
gateway = "10.0.0.254"
[[port]]
name = "back"
devargs = "net_tap1,iface=tpb-{sx}"
ipv4 = "10.1.0.1/24"
[mempool]
mbufs = 16383
[workers]
cores = [1]
idle_sleep = "20us"
[flows]
capacity = 16384
[control]
socket = "{sock}"
[[service]]
name = "web"
vip = "192.0.2.10"
port = 80
protocol = "tcp"
mode = "nat"
[[service.backend]]
name = "b1"
address = "10.1.0.11"
port = 80
paths = [{{ port = "back" }}]
[[service]]
name = "webdsr"
vip = "192.0.2.20"
port = 80
protocol = "tcp"
mode = "dsr"
[[service.backend]]
name = "b2"
address = "10.1.0.12"
paths = [{{ port = "back" }}]
[[service]]
name = "webgue"
vip = "192.0.2.30"
port = 80
protocol = "tcp"
mode = "gue"
[[service.backend]]
name = "b3"
address = "10.1.0.13"
port = 6080
paths = [{{ port = "back" }}]
[[service]]
name = "big"
vip = "192.0.2.40"
port = 53
protocol = "udp"
mode = "nat"
{udp}"#,
        header = node_header(1, 512, prefix),
        sock = s.path("ctl.sock").display(),
    )
}

/// Downloads SIZE bytes from `vip` in the client namespace within `secs`; the bytes that
/// arrived and whether curl finished.
fn download(t: &Testbed, s: &Scratch, vip: &str, secs: u32) -> (usize, bool) {
    let file = s.path(&format!("dl-{vip}"));
    let _ = std::fs::remove_file(&file);
    let st = in_ns(
        &t.ns("pc"),
        &format!(
            "exec curl -s -m {secs} -o {} 'http://{vip}/blob?size={SIZE}'",
            file.display()
        ),
    )
    .stdin(Stdio::null())
    .status()
    .unwrap();
    let data = std::fs::read(&file).unwrap_or_default();
    if st.success() {
        let bad = data
            .iter()
            .enumerate()
            .position(|(i, b)| usize::from(*b) != i % 251);
        assert_eq!(bad, None, "download from {vip} corrupted at byte {bad:?}");
    }
    (data.len(), st.success())
}

fn counter(node: &Node, name: &str) -> u64 {
    let st = node.ctl("show stats").unwrap();
    st["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w[name].as_u64().unwrap_or(0))
        .sum()
}

#[test]
fn path_mtu_discovery_works_through_nat_dsr_and_gue() {
    let s = Scratch::new("pmtu");
    let sx = unique("p");
    let t = Testbed::up("scripts/pmtu-topology", &sx, "");
    let mut procs = Procs(Vec::new());
    for i in 1..=3 {
        let log = std::fs::File::create(s.path(&format!("b{i}.log"))).unwrap();
        procs.0.push(
            in_ns(
                &t.ns(&format!("pb{i}")),
                &format!(
                    "exec python3 {} --name b{i} --port 80 --udp 5353",
                    script("tests/e2e/backend.py").display()
                ),
            )
            .stdout(log)
            .spawn()
            .unwrap(),
        );
    }
    procs.0.push(
        in_ns(
            &t.ns("pb3"),
            &format!(
                "exec python3 {} --listen 10.1.0.13:6080 --tun gue0",
                script("tests/e2e/gue_decap.py").display()
            ),
        )
        .stdout(Stdio::null())
        .spawn()
        .unwrap(),
    );
    let cfg = s.path("tandem.toml");
    std::fs::write(&cfg, config(&s, &sx, &unique("tpmtu"))).unwrap();
    let node = Node::start(&cfg, &s.path("ctl.sock"), Some(&t.ns("pl")));
    t.run("attach", "");
    for vip in ["192.0.2.10", "192.0.2.20", "192.0.2.30"] {
        wait_for_answer(&t.ns("pc"), &format!("http://{vip}/id"), &node);
    }

    // The ICMP lost: the download hangs at its first full-size segment.
    t.run("block", "");
    let (got, done) = download(&t, &s, "192.0.2.10", 5);
    println!("nat, router's ICMP dropped: {got} of {SIZE} bytes in 5 s");
    assert!(
        !done && got < SIZE / 2,
        "{got} bytes arrived with the ICMP dropped"
    );
    assert_eq!(counter(&node, "icmp_frag_needed"), 0);
    t.run("unblock", "");

    // Steered: every mode completes.
    for vip in ["192.0.2.10", "192.0.2.20", "192.0.2.30"] {
        let before = counter(&node, "icmp_frag_needed");
        let started = Instant::now();
        let (got, done) = download(&t, &s, vip, 60);
        println!(
            "{vip}: {got} bytes in {:.1} s, {} frag-needed steered",
            started.elapsed().as_secs_f64(),
            counter(&node, "icmp_frag_needed") - before
        );
        assert!(
            done && got == SIZE,
            "{vip}: {got} of {SIZE} bytes\n{}",
            node.logs()
        );
        assert!(
            counter(&node, "icmp_frag_needed") > before,
            "{vip}: no error steered"
        );
    }

    // 4 KB UDP datagrams from the kernel, fragmented on the way: each whole at one backend
    // (the echo carries all 4000 bytes back, fragmented again by the backend).
    let out = in_ns(
        &t.ns("pc"),
        "python3 -c '
import socket, collections
seen = collections.Counter()
for i in range(30):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(3)
    data = bytes((i + j) % 256 for j in range(4000))
    u.sendto(data, (\"192.0.2.40\", 53))
    reply, _ = u.recvfrom(65535)
    name, echoed = reply.split(b\" \", 1)
    assert echoed == data, (i, len(echoed))
    seen[name.decode()] += 1
print(dict(seen))
'",
    )
    .output()
    .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    println!("4 KB datagrams by backend: {said}");
    assert!(
        out.status.success(),
        "{}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        node.ctl("show stats").unwrap(),
        node.logs()
    );
    assert!(counter(&node, "fragments_first") >= 30);
    assert!(counter(&node, "fragments_later") >= 60);
    assert!(
        said.matches("'b").count() >= 2,
        "spread over backends: {said}"
    );
    drop(procs);
}
