//! `tandem top` in a real terminal: tmux runs it at 80x24 against a node replaying UDP
//! flows from a pcap; the test reads the screen (capture-pane) and presses keys
//! (send-keys): the backends view with its service, the ports view with traffic, the nodes
//! view, sorting, and q to quit.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

/// A tmux server of its own (`-L`), killed with everything in it when dropped.
struct Tmux {
    server: String,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.server)
            .args(args)
            .output()
            .expect("tmux (scripts/setup installs it)")
    }

    fn screen(&self) -> String {
        let out = self.cmd(&["capture-pane", "-p", "-t", "top"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &str) {
        assert!(self.cmd(&["send-keys", "-t", "top", keys]).status.success());
    }

    /// Waits until the screen holds every one of `want`.
    fn wait_screen(&self, want: &[&str]) -> String {
        let mut last = String::new();
        wait_for(Duration::from_secs(15), Duration::from_millis(200), || {
            last = self.screen();
            match want.iter().find(|w| !last.contains(*w)) {
                None => Ok(()),
                Some(w) => Err(format!("no {w:?} on the screen:\n{last}")),
            }
        });
        last
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

#[test]
fn top_shows_a_live_node_in_80x24_and_answers_its_keys() {
    let s = Scratch::new("top");
    let prefix = unique("ttop");
    let pcap = s.path("flows.pcap");
    write_pcap(&pcap, &dns_queries(&["198.51.100.7"], 16));
    let sock = s.path("ctl.sock");
    let cfg = s.path("tandem.toml");
    let sections = "[workers]\ncores = [1]\nidle_sleep = \"100us\"";
    let body = dns_node(&pcap, ",infinite_rx=1", sections, &sock);
    std::fs::write(&cfg, node_header(1, 256, &prefix) + &body).unwrap();
    let mut node = Node::start(&cfg, &sock, None);
    node.wait_stats("traffic", Duration::from_secs(20), |st| {
        st["workers"][0]["tx"].as_u64().unwrap_or(0) > 0
    });

    let tmux = Tmux {
        server: unique("ttop"),
    };
    let line = format!("{} top --socket {}", tandem_bin().display(), sock.display());
    let made = tmux.cmd(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "80",
        "-y",
        "24",
        &line,
    ]);
    assert!(made.status.success(), "{made:?}");

    let screen = tmux.wait_screen(&[
        "tandem top - node 1",
        "services",
        "dns",
        "192.0.2.10:53",
        "dns/a",
        "p99ms",
        "limit",
        "1 backends  2 ports  3 nodes  s sort (name)  q quit",
    ]);
    println!("{screen}");
    assert!(screen.lines().count() <= 24 && screen.lines().all(|l| l.chars().count() <= 80));
    // Active flows: the pcap's 16.
    let row = screen.lines().find(|l| l.contains("dns/a")).unwrap();
    assert!(row.split_whitespace().any(|w| w == "16"), "{row}");

    tmux.keys("s");
    tmux.wait_screen(&["backends by new flows/s", "s sort (new flows/s)"]);

    tmux.keys("2");
    let screen = tmux.wait_screen(&["ports", "rx Mpps", "front", "back", "drops"]);
    println!("{screen}");
    let front = screen
        .lines()
        .find(|l| l.trim_start().starts_with("front"))
        .unwrap();
    let rx: u64 = front.split_whitespace().nth(4).unwrap().parse().unwrap();
    assert!(rx > 0, "{front}");

    tmux.keys("3");
    tmux.wait_screen(&["not part of a cluster"]);

    tmux.keys("q");
    wait_for(
        Duration::from_secs(10),
        Duration::from_millis(100),
        || match tmux.cmd(&["has-session", "-t", "top"]).status.success() {
            false => Ok(()),
            true => Err(format!("q did not end tandem top:\n{}", tmux.screen())),
        },
    );
    node.stop();
}
