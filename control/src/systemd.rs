//! The service manager's notify protocol (`Type=notify` units): READY=1 once the node
//! serves (ports up, workers running and, in a cluster, the flow snapshot complete),
//! RELOADING=1 and READY=1 around a reload, STOPPING=1 on shutdown, a watchdog ping from
//! the control loop at half the `WatchdogSec` the unit sets. Without `$NOTIFY_SOCKET`
//! (not started by systemd) every call does nothing. `sd-notify` speaks the protocol.

use sd_notify::NotifyState;
use std::time::{Duration, Instant};

pub struct Notifier {
    enabled: bool,
    /// Half the watchdog timeout, when the unit sets one.
    ping_every: Option<Duration>,
    last_ping: Instant,
    ready: bool,
}

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(error = %e, "could not notify the service manager");
    }
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET` and `$WATCHDOG_USEC` (for this process) as systemd sets them.
    pub fn from_env() -> Notifier {
        let mut usec = 0;
        let watchdog = sd_notify::watchdog_enabled(false, &mut usec);
        Notifier {
            enabled: std::env::var_os("NOTIFY_SOCKET").is_some(),
            ping_every: (watchdog && usec > 0).then(|| Duration::from_micros(usec / 2)),
            last_ping: Instant::now(),
            ready: false,
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// The watchdog's ping interval, when there is a watchdog.
    pub fn watchdog(&self) -> Option<Duration> {
        self.ping_every
    }

    /// Once: the node serves.
    pub fn ready(&mut self, status: &str) {
        if self.ready {
            return;
        }
        self.ready = true;
        if self.enabled {
            send(&[NotifyState::Ready, NotifyState::Status(status)]);
        }
    }

    pub fn status(&self, status: &str) {
        if self.enabled {
            send(&[NotifyState::Status(status)]);
        }
    }

    /// A reload starts (SIGHUP); `reloaded` says it is over.
    pub fn reloading(&self) {
        if self.enabled {
            let mut states = vec![NotifyState::Reloading];
            if let Ok(t) = NotifyState::monotonic_usec_now() {
                states.push(t);
            }
            send(&states);
        }
    }

    pub fn reloaded(&self, status: &str) {
        if self.enabled {
            send(&[NotifyState::Ready, NotifyState::Status(status)]);
        }
    }

    pub fn stopping(&self) {
        if self.enabled {
            send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
        }
    }

    /// Called every control loop turn: pings the watchdog when due. A control loop that
    /// stalls stops the pings, and systemd restarts the node.
    pub fn tick(&mut self, now: Instant) {
        let Some(every) = self.ping_every else {
            return;
        };
        if now.duration_since(self.last_ping) >= every {
            self.last_ping = now;
            send(&[NotifyState::Watchdog]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    fn received(sock: &UnixDatagram) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = [0u8; 1024];
        while let Ok(n) = sock.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        out
    }

    /// The only test that sets these variables (they are the process's).
    #[test]
    fn ready_once_then_watchdog_pings_at_half_its_timeout() {
        let path = std::env::temp_dir().join(format!("tandem-notify-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_nonblocking(true).unwrap();
        std::env::set_var("NOTIFY_SOCKET", &path);
        std::env::set_var("WATCHDOG_USEC", "200000");
        std::env::set_var("WATCHDOG_PID", std::process::id().to_string());
        let mut n = Notifier::from_env();
        assert_eq!(n.watchdog(), Some(Duration::from_millis(100)));
        n.ready("serving");
        n.ready("serving");
        assert_eq!(received(&sock), ["READY=1\nSTATUS=serving\n"]);
        let t0 = Instant::now();
        n.tick(t0);
        assert!(received(&sock).is_empty(), "not due yet");
        n.tick(t0 + Duration::from_millis(150));
        assert_eq!(received(&sock), ["WATCHDOG=1\n"]);
        n.reloading();
        n.reloaded("serving (reloaded)");
        n.stopping();
        let got = received(&sock);
        assert!(
            got[0].starts_with("RELOADING=1\nMONOTONIC_USEC="),
            "{got:?}"
        );
        assert_eq!(got[1], "READY=1\nSTATUS=serving (reloaded)\n");
        assert_eq!(got[2], "STOPPING=1\nSTATUS=stopping\n");
        std::env::remove_var("NOTIFY_SOCKET");
        std::env::remove_var("WATCHDOG_USEC");
        std::env::remove_var("WATCHDOG_PID");
        let _ = std::fs::remove_file(&path);
    }
}
