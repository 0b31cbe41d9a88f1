//! The `/metrics` endpoint: a listener thread of its own and a thread per connection, at
//! most `MAX_CONNECTIONS` at once (past that a connection is answered 503 at once), each
//! with read and write timeouts: a slow or stuck client holds only its own thread, for a
//! few seconds, while other scrapes are answered beside it; and none of them ever waits on
//! the control thread: each gets the latest page the control thread left (`Page`). Requests are parsed by `httparse`; anything but `GET /metrics` is answered
//! 404 (another path) or 405 (another method), and every answer closes the connection.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Connections served at once.
const MAX_CONNECTIONS: usize = 64;
/// How long a client may take to send its request, and to take the answer.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
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

fn accept_loop(listener: &TcpListener, page: &Arc<Page>, stop: &AtomicBool) {
    let active = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((mut conn, _)) => {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                    active.fetch_sub(1, Ordering::SeqCst);
                    let _ = conn.set_write_timeout(Some(Duration::from_millis(100)));
                    let _ = respond(&mut conn, 503, "Service Unavailable", &[], b"busy\n");
                    continue;
                }
                let (page, n) = (Arc::clone(page), Arc::clone(&active));
                let spawned = std::thread::Builder::new()
                    .name("tandem-metrics-conn".into())
                    .stack_size(256 * 1024)
                    .spawn(move || {
                        serve(conn, &page);
                        n.fetch_sub(1, Ordering::SeqCst);
                    });
                if spawned.is_err() {
                    active.fetch_sub(1, Ordering::SeqCst);
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

/// One connection: one request, one answer.
fn serve(mut conn: TcpStream, page: &Page) {
    let _ = conn.set_read_timeout(Some(READ_TIMEOUT));
    let _ = conn.set_write_timeout(Some(WRITE_TIMEOUT));
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut len = 0;
    let (method, path) = loop {
        if Instant::now() > deadline || len == buf.len() {
            let _ = respond(&mut conn, 400, "Bad Request", &[], b"bad request\n");
            return;
        }
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
