//! A quinn QUIC server whose connection IDs carry its QUIC-LB server ID, so a QUIC-LB load
//! balancer routes every packet of its connections to it, whatever address the client
//! moves to. tandem's end-to-end tests run it as a backend.
//!
//! ```text
//! quic_server --listen 10.1.0.21:4433 --name s1 --server-id 0a01
//!             [--config-id 0] [--server-id-len 2] [--nonce-len 6] [--key-file PATH]
//! ```
//!
//! It prints `ready` once it listens. On each bidirectional stream the client writes `GET N`; the server answers its name and a
//! newline, then N octets where octet i is `pattern(i)` (so the client can check them).

use quic_lb::quinn::Generator;
use std::error::Error;
use std::sync::Arc;

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

const ALPN: &[u8] = b"tandem-test";

/// The octet at offset `i` of every answer.
fn pattern(i: u64) -> u8 {
    (i.wrapping_mul(7).wrapping_add(3) % 251) as u8
}

struct Args {
    listen: std::net::SocketAddr,
    name: String,
    server_id: Vec<u8>,
    config_id: u8,
    server_id_len: usize,
    nonce_len: usize,
    key_file: Option<String>,
}

fn args() -> Res<Args> {
    let mut a = Args {
        listen: "0.0.0.0:4433".parse()?,
        name: "server".into(),
        server_id: Vec::new(),
        config_id: 0,
        server_id_len: 2,
        nonce_len: 6,
        key_file: None,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let [k, v] = pair else {
            return Err(format!("{} needs a value", pair[0]).into());
        };
        match k.as_str() {
            "--listen" => a.listen = v.parse()?,
            "--name" => a.name = v.clone(),
            "--server-id" => {
                a.server_id = (0..v.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(v.get(i..i + 2).unwrap_or("zz"), 16))
                    .collect::<Result<_, _>>()?
            }
            "--config-id" => a.config_id = v.parse()?,
            "--server-id-len" => a.server_id_len = v.parse()?,
            "--nonce-len" => a.nonce_len = v.parse()?,
            "--key-file" => a.key_file = Some(v.clone()),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok(a)
}

fn server_config() -> Res<quinn::ServerConfig> {
    let cert = rcgen::generate_simple_self_signed(vec!["tandem-test".into()])?;
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der());
    // ring, not aws-lc-rs (which needs cmake to build): the test needs no post-quantum
    // key exchange.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key.into())?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
    Ok(quinn::ServerConfig::with_crypto(Arc::new(crypto)))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Res<()> {
    let a = args()?;
    let key = match &a.key_file {
        Some(p) => Some(quic_lb::parse_key(&std::fs::read(p)?)?),
        None => None,
    };
    let lb = quic_lb::Config::new(a.config_id, a.server_id_len, a.nonce_len, key)?;
    // Fails here, not in the generator, when the ID is the wrong length.
    Generator::new(lb.clone(), &a.server_id)?;
    let mut endpoint_config = quinn::EndpointConfig::default();
    let sid = a.server_id.clone();
    endpoint_config
        .cid_generator(move || Box::new(Generator::new(lb.clone(), &sid).expect("checked above")));
    let socket = std::net::UdpSocket::bind(a.listen)?;
    let runtime = Arc::new(quinn::TokioRuntime);
    let endpoint = quinn::Endpoint::new(endpoint_config, Some(server_config()?), socket, runtime)?;
    // `ready` on stdout once it listens (what tandem's tests wait for).
    println!("ready");
    eprintln!("quic_server {} listening on {}", a.name, a.listen);
    while let Some(incoming) = endpoint.accept().await {
        let name = a.name.clone();
        tokio::spawn(async move {
            if let Err(e) = serve(incoming, name).await {
                eprintln!("quic_server: connection: {e}");
            }
        });
    }
    Ok(())
}

async fn serve(incoming: quinn::Incoming, name: String) -> Res<()> {
    let conn = incoming.await?;
    loop {
        let (mut send, mut recv) = match conn.accept_bi().await {
            Ok(s) => s,
            Err(quinn::ConnectionError::ApplicationClosed(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let req = recv.read_to_end(64).await?;
        let req = String::from_utf8_lossy(&req);
        let n: u64 = req
            .trim()
            .strip_prefix("GET ")
            .ok_or("not GET N")?
            .parse()?;
        send.write_all(format!("{name}\n").as_bytes()).await?;
        let mut buf = vec![0u8; 16 * 1024];
        let mut at = 0u64;
        while at < n {
            let k = (n - at).min(buf.len() as u64) as usize;
            for (i, b) in buf[..k].iter_mut().enumerate() {
                *b = pattern(at + i as u64);
            }
            send.write_all(&buf[..k]).await?;
            at += k as u64;
        }
        send.finish()?;
    }
}
