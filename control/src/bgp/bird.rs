//! BIRD 2's control socket, the one request tandem makes of it: `configure` (read the
//! configuration, the include files tandem writes among it, again). The protocol is lines:
//! a four-digit code, then `-` when more lines of the same reply follow or a space on the
//! last one (a line that starts with a space continues the one before). Codes 0xxx are
//! success, 8xxx run-time errors, 9xxx parse errors (BIRD's `doc/reply_codes`).
//!
//! Every step has a deadline: a BIRD that is down, slow or stuck costs the announcer's
//! thread at most `TIMEOUT` per attempt, never the control loop.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Longest a connection, a greeting or a reply may take.
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// Why BIRD did not take the new files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BirdError {
    /// No BIRD at the socket (missing, refused, or it did not answer in time).
    Unreachable(String),
    /// BIRD answered, and refused (its words: a syntax error in bird.conf, say).
    Refused(String),
}

impl std::fmt::Display for BirdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BirdError::Unreachable(w) => write!(f, "BIRD unreachable: {w}"),
            BirdError::Refused(w) => write!(f, "BIRD refused the configuration: {w}"),
        }
    }
}

/// One reply: its code and its lines' text, once its last line came.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub text: Vec<String>,
}

/// Reads one reply from `lines`, to its last line (a code and a space, or a bare code).
pub fn read_reply(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
) -> Result<Reply, String> {
    let mut r = Reply::default();
    for line in lines {
        let line = line.map_err(|e| e.to_string())?;
        if let Some(rest) = line.strip_prefix(' ') {
            r.text.push(rest.to_string());
            continue;
        }
        let not_bird = || format!("not BIRD's protocol: {line:?}");
        r.code = line
            .get(..4)
            .and_then(|c| c.parse().ok())
            .ok_or_else(not_bird)?;
        let last = match line.as_bytes().get(4) {
            None | Some(b' ') => true,
            Some(b'-') => false,
            Some(_) => return Err(not_bird()),
        };
        r.text.push(line.get(5..).unwrap_or("").to_string());
        if last {
            return Ok(r);
        }
    }
    Err("BIRD closed the connection mid-reply".into())
}

/// What a reply to `configure` means: the last line's words when BIRD took it.
pub fn configure_outcome(r: &Reply) -> Result<String, BirdError> {
    let words = r.text.join("; ");
    match r.code {
        // Reconfigured; in progress; queued; nothing to do.
        3 | 4 | 5 | 19 | 20 => Ok(words),
        // "Reconfiguration ignored, shutting down".
        6 => Err(BirdError::Unreachable(words)),
        _ => Err(BirdError::Refused(format!("{:04} {words}", r.code))),
    }
}

/// Asks the BIRD at `socket` to read its configuration again.
pub fn configure(socket: &Path) -> Result<String, BirdError> {
    let unreachable =
        |e: std::io::Error| BirdError::Unreachable(format!("{}: {e}", socket.display()));
    let s = UnixStream::connect(socket).map_err(unreachable)?;
    s.set_read_timeout(Some(TIMEOUT)).map_err(unreachable)?;
    s.set_write_timeout(Some(TIMEOUT)).map_err(unreachable)?;
    let mut lines = BufReader::new(s.try_clone().map_err(unreachable)?).lines();
    let hello = read_reply(&mut lines).map_err(BirdError::Unreachable)?;
    if hello.code != 1 {
        return Err(BirdError::Unreachable(format!(
            "{} greeted with {:04} {}",
            socket.display(),
            hello.code,
            hello.text.join(" ")
        )));
    }
    (&s).write_all(b"configure\n").map_err(unreachable)?;
    // "0002-Reading configuration from ..." comes first, a line of the same reply.
    let r = read_reply(&mut lines).map_err(BirdError::Unreachable)?;
    configure_outcome(&r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(text: &str) -> Result<Reply, String> {
        let mut lines = text.lines().map(|l| Ok(l.to_string()));
        read_reply(&mut lines)
    }

    #[test]
    fn replies_are_read_to_their_last_line() {
        let r = reply("0001 BIRD 2.0.12 ready.\n").unwrap();
        assert_eq!((r.code, r.text[0].as_str()), (1, "BIRD 2.0.12 ready."));
        let r = reply(
            "1000-BIRD 2.0.12\n1011-Router ID is 10.0.0.1\n Hostname is n1\n1011 Last reboot\n",
        )
        .unwrap();
        assert_eq!(r.code, 1011);
        assert_eq!(r.text.len(), 4);
        assert!(reply("0002-Reading\n").is_err(), "cut short");
        assert!(reply("HTTP/1.1 400\n").is_err(), "not BIRD");
        assert_eq!(reply("0000\n").unwrap().code, 0);
    }

    #[test]
    fn configure_answers_are_taken_or_refused_with_birds_words() {
        let ok = reply("0003 Reconfigured\n").unwrap();
        assert_eq!(configure_outcome(&ok), Ok("Reconfigured".into()));
        let bad = reply("8002 /etc/bird/bird.conf:3:1 syntax error, unexpected CF_SYM_UNDEFINED\n")
            .unwrap();
        match configure_outcome(&bad) {
            Err(BirdError::Refused(w)) => assert!(w.contains("bird.conf:3:1"), "{w}"),
            other => panic!("{other:?}"),
        }
        let down = reply("0006 Reconfiguration ignored, shutting down\n").unwrap();
        assert!(matches!(
            configure_outcome(&down),
            Err(BirdError::Unreachable(_))
        ));
    }

    #[test]
    fn a_missing_socket_is_unreachable_at_once() {
        let e = configure(Path::new("/nonexistent/bird.ctl")).unwrap_err();
        assert!(matches!(e, BirdError::Unreachable(_)), "{e}");
        assert!(e.to_string().contains("/nonexistent/bird.ctl"));
    }
}
