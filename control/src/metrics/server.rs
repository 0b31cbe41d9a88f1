//! The `/metrics` endpoint: a listener thread of its own and a thread per connection, at
//! most `MAX_CONNECTIONS` at once, each with a deadline for its request head
//! (`HEAD_DEADLINE`) and a write timeout. When every slot is taken, the connection that has
//! waited longest for its request head is closed to make room (the slowest, a slowloris's
//! likeliest), so a crowd of slow clients cannot keep a scraper out: a scraper sends its
//! head at once and is never the oldest still sending. Only when every connection is past
//! its head (answers being written) is a new one answered 503. None of them ever waits on
//! the control thread: each gets the latest page the control thread left (`Page`).
//! Requests are parsed by `httparse`; anything but `GET /metrics` is answered 404 (another
//! path) or 405 (another method), and every answer closes the connection.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Connections served at once.
const MAX_CONNECTIONS: usize = 64;
/// How long a client may take to send its whole request head, and to take the answer.
pub const HEAD_DEADLINE: Duration = Duration::from_secs(2);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest request head read.
const MAX_REQUEST: usize = 8192;

/// The latest page, shared by the control thread (which renders it) and the server. A
/// scrape that finds the page older than `FRESH` asks for a new one and waits for it at most
/// `FRESH_WAIT`, then serves what there is: the control thread renders between its other
/// duties, never waiting on a client.
pub struct Page {
    text: Mutex<Arc<String>>,
    rendered: Condvar,
    /// Milliseconds since `epoch` when the page was last rendered (0: never).
    rendered_ms: AtomicU64,
    /// A scrape found the page stale.
    asked: AtomicBool,
    /// Milliseconds since `epoch` of the last scrape (0: never).
    scraped_ms: AtomicU64,
    epoch: Instant,
}

impl Default for Page {
    fn default() -> Page {
        Page {
            text: Mutex::default(),
            rendered: Condvar::new(),
            rendered_ms: AtomicU64::new(0),
            asked: AtomicBool::new(false),
            scraped_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

/// A page this old is rendered again for the next scrape.
const FRESH: u64 = 1000;
/// How long a scrape waits for a fresh page.
const FRESH_WAIT: Duration = Duration::from_millis(500);
/// While scraped this recently, the page is rendered every second without being asked.
const SCRAPED_LATELY: u64 = 60_000;

impl Page {
    fn now_ms(&self) -> u64 {
        (self.epoch.elapsed().as_millis() as u64).max(1)
    }

    pub fn set(&self, text: String) {
        let text = Arc::new(text);
        if let Ok(mut t) = self.text.lock() {
            *t = text;
        }
        self.rendered_ms.store(self.now_ms(), Ordering::SeqCst);
        self.rendered.notify_all();
    }

    pub fn get(&self) -> Arc<String> {
        self.text.lock().map(|t| Arc::clone(&t)).unwrap_or_default()
    }

    /// The page for a scrape: fresh, or as fresh as the control thread made it in time.
    fn for_scrape(&self) -> Arc<String> {
        let now = self.now_ms();
        self.scraped_ms.store(now, Ordering::Relaxed);
        let at = self.rendered_ms.load(Ordering::SeqCst);
        if at > 0 && now.saturating_sub(at) <= FRESH {
            return self.get();
        }
        self.asked.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + FRESH_WAIT;
        let Ok(mut guard) = self.text.lock() else {
            return Arc::default();
        };
        while self.rendered_ms.load(Ordering::SeqCst) == at {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.rendered.wait_timeout(guard, left) {
                Ok((g, _)) => guard = g,
                Err(_) => return Arc::default(),
            }
        }
        Arc::clone(&guard)
    }

    /// True when the control thread should render the page now: a scrape asked for it,
    /// or it was scraped lately and is a second old, or it was never rendered. Cheap: the
    /// control loop asks every turn.
    pub fn wanted(&self) -> bool {
        if self.asked.swap(false, Ordering::SeqCst) {
            return true;
        }
        let at = self.rendered_ms.load(Ordering::SeqCst);
        if at == 0 {
            return true;
        }
        let now = self.now_ms();
        let scraped = self.scraped_ms.load(Ordering::Relaxed);
        scraped > 0 && now.saturating_sub(scraped) < SCRAPED_LATELY && now - at >= FRESH
    }
}

/// The running endpoint; dropping it stops its threads.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl MetricsServer {
    pub fn start(addr: SocketAddr, page: Arc<Page>) -> std::io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let st = Arc::clone(&stop);
        let threads = vec![std::thread::Builder::new()
            .name("tandem-metrics".into())
            .spawn(move || accept_loop(&listener, &page, &st))?];
        tracing::info!(%addr, "metrics at http://{addr}/metrics");
        Ok(MetricsServer {
            addr,
            stop,
            threads,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept call; connection threads end within their timeouts.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// An open connection as the accept thread sees it.
struct Slot {
    /// A handle on the stream, to shut it down when it is evicted.
    stream: TcpStream,
    accepted: Instant,
    /// Still reading its request head (evictable).
    reading: bool,
}

/// The open connections, by number: locked by the accept thread and by each connection
/// once its head is read and once it ends.
#[derive(Clone, Default)]
struct Slots(Arc<Mutex<HashMap<u64, Slot>>>);

impl Slots {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<u64, Slot>) -> R) -> R {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }

    /// Room for one more: below the cap, or made by closing the connection that has waited
    /// longest for its request head. False when every connection is being answered.
    fn make_room(&self) -> bool {
        self.with(|m| {
            if m.len() < MAX_CONNECTIONS {
                return true;
            }
            let slowest = m
                .iter()
                .filter(|(_, s)| s.reading)
                .min_by_key(|(_, s)| s.accepted)
                .map(|(id, _)| *id);
            match slowest.and_then(|id| m.remove(&id)) {
                Some(s) => {
                    let _ = s.stream.shutdown(std::net::Shutdown::Both);
                    true
                }
                None => false,
            }
        })
    }
}

fn accept_loop(listener: &TcpListener, page: &Arc<Page>, stop: &AtomicBool) {
    let slots = Slots::default();
    for id in 0u64.. {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        match listener.accept() {
            Ok((mut conn, _)) => {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                if !slots.make_room() {
                    let _ = conn.set_write_timeout(Some(Duration::from_millis(100)));
                    let _ = respond(&mut conn, 503, "Service Unavailable", &[], b"busy\n");
                    continue;
                }
                let Ok(handle) = conn.try_clone() else {
                    continue;
                };
                slots.with(|m| {
                    m.insert(
                        id,
                        Slot {
                            stream: handle,
                            accepted: Instant::now(),
                            reading: true,
                        },
                    )
                });
                let (page, sl) = (Arc::clone(page), slots.clone());
                let spawned = std::thread::Builder::new()
                    .name("tandem-metrics-conn".into())
                    .stack_size(256 * 1024)
                    .spawn(move || {
                        serve(conn, &page, || {
                            // Its head is read: no longer evictable. False when it was
                            // evicted meanwhile.
                            sl.with(|m| m.get_mut(&id).map(|s| s.reading = false).is_some())
                        });
                        sl.with(|m| m.remove(&id));
                    });
                if spawned.is_err() {
                    slots.with(|m| m.remove(&id));
                }
            }
            // Out of descriptors, a connection reset before it was taken: go on.
            Err(e) => {
                tracing::debug!(error = %e, "metrics accept");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn respond(
    conn: &mut TcpStream,
    code: u16,
    reason: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head += &format!("{k}: {v}\r\n");
    }
    head += "\r\n";
    conn.write_all(head.as_bytes())?;
    conn.write_all(body)?;
    conn.flush()
}

/// One connection: one request (its head within `HEAD_DEADLINE`), one answer. `head_read`
/// is called once the head is in; it says false when the connection was evicted meanwhile.
fn serve(mut conn: TcpStream, page: &Page, head_read: impl FnOnce() -> bool) {
    let _ = conn.set_write_timeout(Some(WRITE_TIMEOUT));
    let deadline = Instant::now() + HEAD_DEADLINE;
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut len = 0;
    let (method, path) = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let _ = respond(&mut conn, 408, "Request Timeout", &[], b"request timeout\n");
            return;
        }
        if len == buf.len() {
            let _ = respond(&mut conn, 400, "Bad Request", &[], b"bad request\n");
            return;
        }
        let _ = conn.set_read_timeout(Some(left));
        match conn.read(&mut buf[len..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => len += n,
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(_)) => {
                break (
                    req.method.unwrap_or("").to_string(),
                    req.path.unwrap_or("").to_string(),
                )
            }
            Ok(httparse::Status::Partial) => continue,
            Err(_) => {
                let _ = respond(&mut conn, 400, "Bad Request", &[], b"bad request\n");
                return;
            }
        }
    };
    if !head_read() {
        return;
    }
    let path = path.split('?').next().unwrap_or("");
    let _ = match (method.as_str(), path) {
        ("GET", "/metrics") => {
            let text = page.for_scrape();
            respond(
                &mut conn,
                200,
                "OK",
                &[("Content-Type", super::CONTENT_TYPE)],
                text.as_bytes(),
            )
        }
        (_, "/metrics") => respond(
            &mut conn,
            405,
            "Method Not Allowed",
            &[("Allow", "GET")],
            b"only GET /metrics\n",
        ),
        _ => respond(&mut conn, 404, "Not Found", &[], b"see /metrics\n"),
    };
    let _ = conn.shutdown(std::net::Shutdown::Both);
}
