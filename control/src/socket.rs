//! The control socket: a Unix stream socket (mode 0600) taking one command per line and
//! answering one JSON document per line. Connections are served by small threads that hand
//! each line to the control loop and wait for its answer, so all state stays on the control
//! thread.

use crossbeam_channel::{bounded, Receiver, Sender};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest command line accepted.
pub const MAX_LINE: usize = 4096;

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
        std::thread::Builder::new()
            .name("tandem-ctl-accept".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    let Ok(conn) = conn else { continue };
                    let tx = requests.clone();
                    let _ = std::thread::Builder::new()
                        .name("tandem-ctl-conn".into())
                        .spawn(move || serve(conn, tx));
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

fn serve(conn: UnixStream, requests: Sender<Request>) {
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    loop {
        let mut buf = Vec::new();
        let n = match (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
        {
            Ok(n) => n,
            Err(_) => return,
        };
        if n == 0 {
            return;
        }
        let answer = if buf.len() > MAX_LINE && !buf.ends_with(b"\n") {
            // Skip the rest of the over-long line.
            let mut rest = Vec::new();
            let _ = reader.read_until(b'\n', &mut rest);
            json!({"ok": false, "error": format!("command longer than {MAX_LINE} bytes")})
        } else {
            match std::str::from_utf8(&buf) {
                Ok(line) => ask(&requests, line.trim()),
                Err(_) => json!({"ok": false, "error": "command is not UTF-8"}),
            }
        };
        let mut text = answer.to_string();
        text.push('\n');
        if out.write_all(text.as_bytes()).is_err() {
            return;
        }
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
