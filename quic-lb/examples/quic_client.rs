//! A quinn QUIC client that downloads from `quic_server` and changes its own address in the
//! middle: tandem's end-to-end tests run it to show a connection kept across a NAT
//! rebinding (a new port) and a move to another address.
//!
//! ```text
//! quic_client --connect 192.0.2.30:443 --bind 10.0.0.100:0 --bytes 4000000
//!             [--rate BYTES_PER_S] [--rebind-at OCTETS=ADDR:PORT]... [--timeout-s 30]
//! ```
//!
//! It reads at most `--rate` octets a second (a small receive window keeps the server paced
//! by it), rebinds to a new socket at each `--rebind-at` (quinn's `Endpoint::rebind`), checks
//! every octet, and prints one JSON line: `{"server", "bytes", "ok", "rebinds", "ms"}` (and
//! `"error"` when it failed). It exits 0 only when every octet arrived intact.

use std::error::Error;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

const ALPN: &[u8] = b"tandem-test";

/// The octet at offset `i` of every answer (as the server writes it).
fn pattern(i: u64) -> u8 {
    (i.wrapping_mul(7).wrapping_add(3) % 251) as u8
}

struct Args {
    connect: SocketAddr,
    bind: SocketAddr,
    bytes: u64,
    rate: u64,
    rebinds: Vec<(u64, SocketAddr)>,
    timeout: Duration,
}

fn args() -> Res<Args> {
    let mut a = Args {
        connect: "127.0.0.1:4433".parse()?,
        bind: "0.0.0.0:0".parse()?,
        bytes: 1_000_000,
        rate: u64::MAX,
        rebinds: Vec::new(),
        timeout: Duration::from_secs(30),
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let [k, v] = pair else {
            return Err(format!("{} needs a value", pair[0]).into());
        };
        match k.as_str() {
            "--connect" => a.connect = v.parse()?,
            "--bind" => a.bind = v.parse()?,
            "--bytes" => a.bytes = v.parse()?,
            "--rate" => a.rate = v.parse()?,
            "--timeout-s" => a.timeout = Duration::from_secs(v.parse()?),
            "--rebind-at" => {
                let (at, addr) = v.split_once('=').ok_or("--rebind-at OCTETS=ADDR:PORT")?;
                a.rebinds.push((at.parse()?, addr.parse()?));
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    a.rebinds.sort_by_key(|r| r.0);
    Ok(a)
}

/// Accepts any server certificate: the test's servers sign their own.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn client_config() -> Res<quinn::ClientConfig> {
    // ring, not aws-lc-rs (which needs cmake to build): the test needs no post-quantum
    // key exchange.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let mut c = quinn::ClientConfig::new(Arc::new(crypto));
    // Small windows: the server sends only as fast as this client reads.
    let mut t = quinn::TransportConfig::default();
    t.stream_receive_window(64_000u32.into());
    t.receive_window(128_000u32.into());
    t.max_idle_timeout(Some(Duration::from_secs(10).try_into()?));
    c.transport_config(Arc::new(t));
    Ok(c)
}

/// An error with the step it came at and every cause under it ("reading the answer:
/// connection lost: timed out"), so a failed run says why: quinn's read error alone says
/// only "connection lost", whether the connection timed out or was reset.
fn at<E: Error + 'static>(step: &'static str) -> impl FnOnce(E) -> String {
    move |e| {
        let mut s = format!("{step}: {e}");
        let mut cause = e.source();
        while let Some(c) = cause {
            s.push_str(&format!(": {c}"));
            cause = c.source();
        }
        s
    }
}

/// What a download came to.
#[derive(Default)]
struct Outcome {
    server: String,
    bytes: u64,
    rebinds: usize,
}

async fn download(a: &Args, endpoint: &quinn::Endpoint, out: &mut Outcome) -> Res<()> {
    let conn = endpoint
        .connect(a.connect, "tandem-test")?
        .await
        .map_err(at("handshake"))?;
    let (mut send, mut recv) = conn.open_bi().await.map_err(at("opening a stream"))?;
    send.write_all(format!("GET {}\n", a.bytes).as_bytes())
        .await
        .map_err(at("sending the request"))?;
    send.finish()?;
    // The server's name, up to its newline.
    let mut name = Vec::new();
    let mut one = [0u8; 1];
    while name.len() < 64 {
        recv.read_exact(&mut one)
            .await
            .map_err(at("reading the server's name"))?;
        if one[0] == b'\n' {
            break;
        }
        name.push(one[0]);
    }
    out.server = String::from_utf8_lossy(&name).into_owned();
    let start = Instant::now();
    let mut buf = vec![0u8; 16 * 1024];
    let mut next = a.rebinds.iter().peekable();
    while out.bytes < a.bytes {
        let Some(n) = recv
            .read(&mut buf)
            .await
            .map_err(at("reading the answer"))?
        else {
            return Err(format!("stream ended at {} of {}", out.bytes, a.bytes).into());
        };
        for (i, &b) in buf[..n].iter().enumerate() {
            if b != pattern(out.bytes + i as u64) {
                return Err(format!("octet {} is wrong", out.bytes + i as u64).into());
            }
        }
        out.bytes += n as u64;
        while let Some((_, to)) = next.next_if(|r| r.0 <= out.bytes) {
            endpoint.rebind(std::net::UdpSocket::bind(to)?)?;
            out.rebinds += 1;
        }
        // Paced: no faster than `rate` octets a second from the start.
        let due = Duration::from_secs_f64(out.bytes as f64 / a.rate as f64);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
    conn.close(0u32.into(), b"done");
    endpoint.wait_idle().await;
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let started = Instant::now();
    let mut out = Outcome::default();
    let result = async {
        let a = args()?;
        let mut endpoint = quinn::Endpoint::client(a.bind)?;
        endpoint.set_default_client_config(client_config()?);
        tokio::time::timeout(a.timeout, download(&a, &endpoint, &mut out))
            .await
            .map_err(|_| "timed out")?
    }
    .await;
    let error = match &result {
        Ok(()) => String::new(),
        Err(e) => format!(",\"error\":{:?}", e.to_string()),
    };
    println!(
        "{{\"server\":{:?},\"bytes\":{},\"ok\":{},\"rebinds\":{},\"ms\":{}{error}}}",
        out.server,
        out.bytes,
        result.is_ok(),
        out.rebinds,
        started.elapsed().as_millis()
    );
    std::process::exit(if result.is_ok() { 0 } else { 1 });
}
