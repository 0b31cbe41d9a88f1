//! QUIC-LB connection IDs (draft-ietf-quic-load-balancers): a server writes its server ID
//! into every connection ID it issues, so a load balancer that shares the configuration
//! routes a packet by its destination connection ID alone, whatever address it comes from.
//!
//! A connection ID is a first octet (three config rotation bits, then five bits this crate
//! fills with the length of the rest, as the draft allows), then the server ID and a nonce:
//! in plaintext when the configuration has no key; encrypted with AES-128-ECB when it has
//! one (a single pass when server ID and nonce make exactly 16 octets, a four-pass Feistel
//! network otherwise).
//!
//! [`Config::encode`] is the server's side, [`Config::decode`] the load balancer's. Neither
//! allocates; decoding reads only the octets the configuration names, so a server may add
//! octets of its own after them. With the `quinn` feature, [`quinn::Generator`] issues such
//! IDs from a quinn endpoint.

#![forbid(unsafe_code)]

mod feistel;
#[cfg(feature = "quinn")]
pub mod quinn;

use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use aes::Aes128;
use std::fmt;

/// The longest connection ID QUIC version 1 allows.
pub const MAX_CID_LEN: usize = 20;
/// Server ID and nonce together may fill every octet but the first.
pub const MAX_PLAINTEXT_LEN: usize = MAX_CID_LEN - 1;
/// The config rotation codepoint that marks an ID no load balancer can route.
pub const UNROUTABLE_CONFIG_ID: u8 = 0b111;
/// The shortest nonce the draft allows.
pub const MIN_NONCE_LEN: usize = 4;

/// One QUIC-LB configuration: what a load balancer and the servers behind it share.
#[derive(Clone)]
pub struct Config {
    config_id: u8,
    server_id_len: usize,
    nonce_len: usize,
    cipher: Option<Aes128>,
}

/// Why a configuration or a server ID was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The config rotation codepoint is not 0–6.
    ConfigId(u8),
    /// The server ID is shorter than one octet.
    ServerIdLen(usize),
    /// The nonce is shorter than four octets.
    NonceLen(usize),
    /// Server ID and nonce are longer than 19 octets together.
    TooLong(usize),
    /// A server ID or nonce of the wrong length was given to encode.
    Length {
        what: &'static str,
        want: usize,
        got: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ConfigId(c) => write!(f, "config_id {c} is not 0 to 6 (7 marks unroutable IDs)"),
            Error::ServerIdLen(n) => write!(f, "server_id_len {n}: at least 1 octet"),
            Error::NonceLen(n) => write!(f, "nonce_len {n}: at least {MIN_NONCE_LEN} octets"),
            Error::TooLong(n) => {
                write!(
                    f,
                    "server_id_len + nonce_len = {n}: at most {MAX_PLAINTEXT_LEN} octets"
                )
            }
            Error::Length { what, want, got } => {
                write!(
                    f,
                    "{what} of {got} octets where the configuration says {want}"
                )
            }
        }
    }
}

impl std::error::Error for Error {}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key stays out of logs.
        f.debug_struct("Config")
            .field("config_id", &self.config_id)
            .field("server_id_len", &self.server_id_len)
            .field("nonce_len", &self.nonce_len)
            .field("encrypted", &self.cipher.is_some())
            .finish()
    }
}

impl Config {
    /// A configuration: its config rotation codepoint (0–6), the server ID's and the
    /// nonce's lengths in octets, and the key (`None`: server IDs in plaintext).
    pub fn new(
        config_id: u8,
        server_id_len: usize,
        nonce_len: usize,
        key: Option<[u8; 16]>,
    ) -> Result<Config, Error> {
        if config_id >= UNROUTABLE_CONFIG_ID {
            return Err(Error::ConfigId(config_id));
        }
        if server_id_len < 1 {
            return Err(Error::ServerIdLen(server_id_len));
        }
        if nonce_len < MIN_NONCE_LEN {
            return Err(Error::NonceLen(nonce_len));
        }
        if server_id_len + nonce_len > MAX_PLAINTEXT_LEN {
            return Err(Error::TooLong(server_id_len + nonce_len));
        }
        Ok(Config {
            config_id,
            server_id_len,
            nonce_len,
            cipher: key.map(|k| Aes128::new(&k.into())),
        })
    }

    pub fn config_id(&self) -> u8 {
        self.config_id
    }

    pub fn server_id_len(&self) -> usize {
        self.server_id_len
    }

    pub fn nonce_len(&self) -> usize {
        self.nonce_len
    }

    pub fn encrypted(&self) -> bool {
        self.cipher.is_some()
    }

    /// The octets this configuration's IDs carry: the first, the server ID, the nonce.
    pub fn cid_len(&self) -> usize {
        1 + self.plaintext_len()
    }

    fn plaintext_len(&self) -> usize {
        self.server_id_len + self.nonce_len
    }

    /// The connection ID for `server_id` and `nonce` (each of the configured length),
    /// written to the front of `out`; returns its length. The first octet's low five bits
    /// say the length of the rest.
    pub fn encode(
        &self,
        server_id: &[u8],
        nonce: &[u8],
        out: &mut [u8; MAX_CID_LEN],
    ) -> Result<usize, Error> {
        let (s, n) = (self.server_id_len, self.nonce_len);
        if server_id.len() != s {
            return Err(Error::Length {
                what: "a server ID",
                want: s,
                got: server_id.len(),
            });
        }
        if nonce.len() != n {
            return Err(Error::Length {
                what: "a nonce",
                want: n,
                got: nonce.len(),
            });
        }
        let len = s + n;
        out[0] = (self.config_id << 5) | (len as u8 & 0x1f);
        let mut block = [0u8; MAX_PLAINTEXT_LEN];
        block[..s].copy_from_slice(server_id);
        block[s..len].copy_from_slice(nonce);
        match &self.cipher {
            None => out[1..=len].copy_from_slice(&block[..len]),
            Some(aes) if len == 16 => {
                let mut b = aes::Block::clone_from_slice(&block[..16]);
                aes.encrypt_block(&mut b);
                out[1..=16].copy_from_slice(&b);
            }
            Some(aes) => feistel::encrypt(aes, &block[..len], &mut out[1..=len]),
        }
        Ok(1 + len)
    }

    /// The server ID in `cid`, written to the front of `out`; `None` when the ID is not
    /// this configuration's (other config rotation bits, or too short). Whether the server
    /// ID names a server is the caller's to say.
    pub fn decode<'a>(&self, cid: &[u8], out: &'a mut [u8; MAX_PLAINTEXT_LEN]) -> Option<&'a [u8]> {
        let len = self.plaintext_len();
        let first = *cid.first()?;
        if first >> 5 != self.config_id || cid.len() < 1 + len {
            return None;
        }
        let body = &cid[1..=len];
        let s = self.server_id_len;
        match &self.cipher {
            None => out[..s].copy_from_slice(&body[..s]),
            Some(aes) if len == 16 => {
                let mut b = aes::Block::clone_from_slice(body);
                aes.decrypt_block(&mut b);
                out[..s].copy_from_slice(&b[..s]);
            }
            Some(aes) => feistel::decrypt(aes, body, s, &mut out[..len]),
        }
        Some(&out[..s])
    }
}

/// A key as its file holds it: 16 octets, or 32 hex digits (a trailing newline allowed).
/// Servers and the balancer read the same file the same way.
pub fn parse_key(bytes: &[u8]) -> Result<[u8; 16], String> {
    if let Ok(k) = <[u8; 16]>::try_from(bytes) {
        return Ok(k);
    }
    let text = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    let hex = |c: u8| (c as char).to_digit(16);
    if text.len() == 32 && text.iter().all(|&c| hex(c).is_some()) {
        let mut k = [0u8; 16];
        for (i, pair) in text.chunks(2).enumerate() {
            k[i] = (hex(pair[0]).unwrap_or(0) * 16 + hex(pair[1]).unwrap_or(0)) as u8;
        }
        return Ok(k);
    }
    Err(format!(
        "holds {} octets: a key is 16 octets, or 32 hex digits",
        bytes.len()
    ))
}

#[cfg(test)]
mod tests;
