//! The announcer's thread: it writes the routes files and asks BIRD to read them, so that a
//! BIRD that is down, slow or refusing never holds up the control loop. The control thread
//! hands it the wanted files (`want`) and reads back what BIRD last took (`status`); the
//! lock is held only to swap those values, never across a write or a socket call. A failed
//! attempt is tried again every `RETRY`.

use super::bird::{self, BirdError};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tandem_config::BgpConfig;

/// How soon a failed write or `configure` is tried again.
pub const RETRY: Duration = Duration::from_secs(1);

/// What BIRD has of the files, as the thread last found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BirdState {
    /// Nothing tried yet.
    Starting,
    /// BIRD took generation `applied`.
    Configured,
    /// A routes file could not be written (its path and the error).
    FileError(String),
    Unreachable(String),
    Refused(String),
}

impl BirdState {
    pub fn name(&self) -> &'static str {
        match self {
            BirdState::Starting => "starting",
            BirdState::Configured => "configured",
            BirdState::FileError(_) => "routes_file_error",
            BirdState::Unreachable(_) => "bird_unreachable",
            BirdState::Refused(_) => "bird_refused",
        }
    }

    pub fn detail(&self) -> &str {
        match self {
            BirdState::Starting | BirdState::Configured => "",
            BirdState::FileError(w) | BirdState::Unreachable(w) | BirdState::Refused(w) => w,
        }
    }
}

/// What the control thread reads back.
#[derive(Debug, Clone)]
pub struct Status {
    /// The newest generation BIRD took (0: none yet).
    pub applied: u64,
    pub state: BirdState,
    /// Since when `state` has held.
    pub since: Instant,
    /// When BIRD last took a generation.
    pub configured_at: Option<Instant>,
}

/// The two files' text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Files {
    pub v4: String,
    pub v6: String,
}

struct Shared {
    want: (u64, Files),
    status: Status,
    stop: bool,
}

pub struct Speaker {
    shared: Arc<(Mutex<Shared>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

/// Writes `text` to `path` whole or not at all (a temporary file renamed over it), so BIRD
/// never reads half a file.
pub fn write_atomically(path: &Path, text: &str) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("{}: {e}", path.display());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tandem-new");
    std::fs::write(&tmp, text).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

/// One attempt: both files, then `configure`.
fn apply(p: &BgpConfig, f: &Files) -> Result<(), BirdState> {
    write_atomically(&p.routes4, &f.v4).map_err(BirdState::FileError)?;
    write_atomically(&p.routes6, &f.v6).map_err(BirdState::FileError)?;
    bird::configure(&p.bird_socket)
        .map(|_| ())
        .map_err(|e| match e {
            BirdError::Unreachable(w) => BirdState::Unreachable(w),
            BirdError::Refused(w) => BirdState::Refused(w),
        })
}

impl Speaker {
    /// Writes `initial` and asks BIRD to take it, once, before returning (a node that
    /// starts again must not have BIRD announce what the last run left in the files); what
    /// did not work the thread goes on trying.
    pub fn start(paths: BgpConfig, initial: Files) -> std::io::Result<Speaker> {
        let now = Instant::now();
        let first = apply(&paths, &initial);
        let (applied, state, configured_at) = match first {
            Ok(()) => (1, BirdState::Configured, Some(now)),
            Err(s) => (0, s, None),
        };
        let shared = Arc::new((
            Mutex::new(Shared {
                want: (1, initial),
                status: Status {
                    applied,
                    state,
                    since: now,
                    configured_at,
                },
                stop: false,
            }),
            Condvar::new(),
        ));
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("tandem-bgp".into())
            .spawn(move || run(&s, &paths))?;
        Ok(Speaker {
            shared,
            thread: Some(thread),
        })
    }

    /// Hands the thread generation `gen` of the files.
    pub fn want(&self, gen: u64, files: Files) {
        let (m, cv) = &*self.shared;
        if let Ok(mut s) = m.lock() {
            s.want = (gen, files);
            cv.notify_one();
        }
    }

    pub fn status(&self) -> Status {
        let (m, _) = &*self.shared;
        match m.lock() {
            Ok(s) => s.status.clone(),
            Err(p) => p.into_inner().status.clone(),
        }
    }
}

impl Drop for Speaker {
    fn drop(&mut self) {
        let (m, cv) = &*self.shared;
        if let Ok(mut s) = m.lock() {
            s.stop = true;
            cv.notify_one();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Waits until there is a generation newer than BIRD's to try (and its retry is due), or
/// a stop: that generation, and whether it is the last try (on a stop, what is wanted is
/// tried once more: the withdrawal); None when there is nothing left to do.
fn next_try(
    shared: &(Mutex<Shared>, Condvar),
    retry_at: Option<Instant>,
) -> Option<(u64, Files, bool)> {
    let (m, cv) = shared;
    let mut s = m.lock().ok()?;
    loop {
        let newer = s.want.0 > s.status.applied;
        if s.stop {
            return newer.then(|| (s.want.0, s.want.1.clone(), true));
        }
        let wait = match retry_at {
            _ if !newer => Duration::from_secs(3600),
            Some(t) => t.saturating_duration_since(Instant::now()),
            None => Duration::ZERO,
        };
        if newer && wait.is_zero() {
            return Some((s.want.0, s.want.1.clone(), false));
        }
        s = cv.wait_timeout(s, wait).ok()?.0;
    }
}

fn run(shared: &(Mutex<Shared>, Condvar), paths: &BgpConfig) {
    let mut retry_at: Option<Instant> = None;
    while let Some((gen, files, last)) = next_try(shared, retry_at) {
        let outcome = apply(paths, &files);
        let now = Instant::now();
        let Ok(mut s) = shared.0.lock() else { return };
        let state = match outcome {
            Ok(()) => {
                s.status.applied = s.status.applied.max(gen);
                s.status.configured_at = Some(now);
                retry_at = None;
                BirdState::Configured
            }
            Err(st) => {
                retry_at = Some(now + RETRY);
                st
            }
        };
        if state != s.status.state {
            match &state {
                BirdState::Configured => tracing::info!("BIRD took the announced VIPs"),
                other => tracing::warn!(
                    state = other.name(),
                    detail = other.detail(),
                    "BIRD did not take the announced VIPs; retrying every second"
                ),
            }
            s.status.state = state;
            s.status.since = now;
        }
        if last {
            return;
        }
    }
}
