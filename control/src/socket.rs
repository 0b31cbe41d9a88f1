//! The control socket: a Unix stream socket (mode 0600) taking one command per line and
//! answering one JSON document per line. Connections are served by small threads that hand
//! each line to the control loop and wait for its answer, so all state stays on the control
//! thread. What a client can cost is bounded: at most MAX_CONNECTIONS at once (when full, the
//! connection idle longest, if idle for EVICT_IDLE, is closed to make room; otherwise the new
//! one gets an error document), MAX_LINE bytes held per line (the rest of a longer one is
//! read and thrown away), and IDLE_TIMEOUT of silence before a connection is closed. So a
//! crowd of idle clients can neither exhaust threads nor lock an operator out.

use crossbeam_channel::{bounded, Receiver, Sender};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest command line accepted.
pub const MAX_LINE: usize = 4096;
/// Most clients connected at once; each has a thread.
pub const MAX_CONNECTIONS: usize = 64;
/// A connection that sends nothing for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A client that does not read its answer for this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// When every connection is taken, one idle at least this long makes room for a new one.
pub const EVICT_IDLE: Duration = Duration::from_secs(1);

/// An open connection as the accept thread sees it.
struct Slot {
    /// A handle on the stream, to shut it down when it is evicted.
    stream: UnixStream,
    /// When it last sent a line or got an answer.
    last: Instant,
    /// A command of it is with the control thread.
    busy: bool,
}

/// The open connections, by number. Locked only by the accept thread and connection
/// threads, a few times per command: never by the control thread.
#[derive(Clone, Default)]
struct Slots(Arc<Mutex<HashMap<u64, Slot>>>);

impl Slots {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<u64, Slot>) -> R) -> R {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }

    /// Room for one more: true when below the cap, or when the connection idle longest
    /// (idle at least EVICT_IDLE) was shut down to make it.
    fn make_room(&self, now: Instant) -> bool {
        self.with(|m| {
            if m.len() < MAX_CONNECTIONS {
                return true;
            }
            let oldest = m
                .iter()
                .filter(|(_, s)| !s.busy && now.duration_since(s.last) >= EVICT_IDLE)
                .min_by_key(|(_, s)| s.last)
                .map(|(id, _)| *id);
            match oldest.and_then(|id| m.remove(&id)) {
                Some(s) => {
                    let _ = s.stream.shutdown(std::net::Shutdown::Both);
                    true
                }
                None => false,
            }
        })
    }

    fn mark(&self, id: u64, busy: bool) {
        self.with(|m| {
            if let Some(s) = m.get_mut(&id) {
                s.busy = busy;
                s.last = Instant::now();
            }
        });
    }
}

/// One command from a client and where to send its answer.
pub struct Request {
    pub line: String,
    pub reply: Sender<Value>,
}

pub struct SocketServer {
    pub path: PathBuf,
}

impl SocketServer {
    /// Binds the socket (refusing if another live node holds it) and starts accepting.
    pub fn start(path: &Path, requests: Sender<Request>) -> anyhow::Result<SocketServer> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)?;
            }
        }
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                anyhow::bail!(
                    "control socket {} is in use by a running node",
                    path.display()
                );
            }
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)
            .map_err(|e| anyhow::anyhow!("cannot bind control socket {}: {e}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        let slots = Slots::default();
        std::thread::Builder::new()
            .name("tandem-ctl-accept".into())
            .spawn(move || {
                for (id, conn) in (0u64..).zip(listener.incoming()) {
                    let Ok(mut conn) = conn else { continue };
                    if !slots.make_room(Instant::now()) {
                        let _ = conn.set_write_timeout(Some(Duration::from_millis(100)));
                        let answer = json!({"ok": false, "error": format!(
                            "too many control connections (at most {MAX_CONNECTIONS}, all busy); try again")});
                        let _ = conn.write_all(format!("{answer}\n").as_bytes());
                        continue;
                    }
                    let Ok(handle) = conn.try_clone() else { continue };
                    slots.with(|m| {
                        m.insert(
                            id,
                            Slot {
                                stream: handle,
                                last: Instant::now(),
                                busy: false,
                            },
                        )
                    });
                    let tx = requests.clone();
                    let mine = slots.clone();
                    let spawned = std::thread::Builder::new()
                        .name("tandem-ctl-conn".into())
                        .spawn(move || {
                            serve(conn, tx, &mine, id);
                            mine.with(|m| m.remove(&id));
                        });
                    if spawned.is_err() {
                        slots.with(|m| m.remove(&id));
                        tracing::warn!("cannot start a thread for a control connection");
                    }
                }
            })?;
        Ok(SocketServer {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for SocketServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What one read of a line found.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// A line (without its newline) in the buffer.
    Text,
    /// A line longer than MAX_LINE: read to its end and thrown away.
    TooLong,
    /// The client closed the connection.
    End,
}

/// Reads one line into `buf`, holding at most MAX_LINE bytes of it: past that, the rest of
/// the line is consumed a buffer at a time and dropped, so a client sending a gigabyte
/// without a newline costs reading time, not memory.
fn read_line(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> std::io::Result<Line> {
    buf.clear();
    let mut too_long = false;
    loop {
        let avail = reader.fill_buf()?;
        if avail.is_empty() {
            return Ok(if too_long || buf.is_empty() {
                Line::End
            } else {
                Line::Text
            });
        }
        let (take, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (avail.len(), false),
        };
        if !too_long && buf.len() + take <= MAX_LINE {
            buf.extend_from_slice(&avail[..take]);
        } else {
            too_long = true;
            buf.clear();
        }
        reader.consume(take + usize::from(done));
        if done {
            return Ok(if too_long { Line::TooLong } else { Line::Text });
        }
    }
}

fn serve(conn: UnixStream, requests: Sender<Request>, slots: &Slots, id: u64) {
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let _ = conn.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = out.set_write_timeout(Some(WRITE_TIMEOUT));
    let mut reader = BufReader::new(conn);
    let mut buf = Vec::with_capacity(256);
    loop {
        let line = read_line(&mut reader, &mut buf);
        slots.mark(id, true);
        let answer = match line {
            Err(_) | Ok(Line::End) => return,
            Ok(Line::TooLong) => {
                json!({"ok": false, "error": format!("command longer than {MAX_LINE} bytes")})
            }
            Ok(Line::Text) => match std::str::from_utf8(&buf) {
                Ok(line) => ask(&requests, line.trim()),
                Err(_) => json!({"ok": false, "error": "command is not UTF-8"}),
            },
        };
        let mut text = answer.to_string();
        text.push('\n');
        if out.write_all(text.as_bytes()).is_err() {
            return;
        }
        slots.mark(id, false);
    }
}

fn ask(requests: &Sender<Request>, line: &str) -> Value {
    let (tx, rx): (Sender<Value>, Receiver<Value>) = bounded(1);
    if requests
        .send(Request {
            line: line.to_string(),
            reply: tx,
        })
        .is_err()
    {
        return json!({"ok": false, "error": "node is shutting down"});
    }
    rx.recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| json!({"ok": false, "error": "no answer from the control thread"}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8]) -> Vec<(Line, String)> {
        let mut r = BufReader::with_capacity(64, input);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        loop {
            let l = read_line(&mut r, &mut buf).unwrap();
            if l == Line::End {
                return out;
            }
            assert!(
                buf.capacity() <= 2 * MAX_LINE + 64,
                "held {}",
                buf.capacity()
            );
            out.push((l, String::from_utf8_lossy(&buf).into_owned()));
        }
    }

    #[test]
    fn an_over_long_line_is_refused_and_the_next_one_read() {
        let mut input = b"show stats\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 10 * MAX_LINE));
        input.extend_from_slice(b"\nhelp\nlast");
        let got = lines(&input);
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(got[0], (Line::Text, "show stats".into()));
        assert_eq!(got[1].0, Line::TooLong);
        assert_eq!(got[2], (Line::Text, "help".into()));
        assert_eq!(got[3], (Line::Text, "last".into()));
        // Exactly MAX_LINE is fine; one more is not.
        let ok = [vec![b'a'; MAX_LINE], b"\n".to_vec()].concat();
        assert_eq!(lines(&ok)[0].0, Line::Text);
        let long = [vec![b'a'; MAX_LINE + 1], b"\n".to_vec()].concat();
        assert_eq!(lines(&long)[0].0, Line::TooLong);
        // A long line with no newline at all ends the connection, holding nothing.
        assert!(lines(&vec![b'z'; 20 * MAX_LINE]).is_empty());
    }
}
