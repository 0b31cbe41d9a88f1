//! The draft's four-pass Feistel network for server ID and nonce lengths that do not make
//! one AES block: the plaintext is split into two halves, and each pass XORs one half with
//! AES-ECB of the other, expanded to a block with the length and the pass number. An odd
//! length splits its middle octet between the halves by nibble: the left half keeps the
//! high four bits, the right the low four, and each pass clears the other four again.

use aes::cipher::BlockEncrypt;
use aes::Aes128;

/// The longest half: 19 octets, rounded up, halved.
const MAX_HALF: usize = 10;

type Half = [u8; MAX_HALF];

/// Both halves of a plaintext or ciphertext of `len` octets.
struct Halves {
    left: Half,
    right: Half,
    half: usize,
    odd: bool,
}

impl Halves {
    fn split(bytes: &[u8]) -> Halves {
        let len = bytes.len();
        let half = len.div_ceil(2);
        let mut h = Halves {
            left: [0; MAX_HALF],
            right: [0; MAX_HALF],
            half,
            odd: len % 2 == 1,
        };
        h.left[..half].copy_from_slice(&bytes[..half]);
        h.right[..half].copy_from_slice(&bytes[len - half..]);
        h.clear_left();
        h.clear_right();
        h
    }

    /// An odd length's left half owns only the high nibble of its last octet.
    fn clear_left(&mut self) {
        if self.odd {
            self.left[self.half - 1] &= 0xf0;
        }
    }

    /// An odd length's right half owns only the low nibble of its first octet.
    fn clear_right(&mut self) {
        if self.odd {
            self.right[0] &= 0x0f;
        }
    }

    /// The halves put back together into `out` (the middle octet of an odd length joined
    /// from both nibbles).
    fn join(&self, out: &mut [u8]) {
        let h = self.half;
        out[..h].copy_from_slice(&self.left[..h]);
        if self.odd {
            out[h - 1] |= self.right[0];
            out[h..].copy_from_slice(&self.right[1..h]);
        } else {
            out[h..].copy_from_slice(&self.right[..h]);
        }
    }
}

/// AES-ECB of `input`'s half, expanded with the plaintext length and the pass, XORed into
/// `into`'s first `half` octets.
fn round(aes: &Aes128, len: usize, pass: u8, input: &Half, half: usize, into: &mut Half) {
    let mut block = aes::Block::default();
    block[..half].copy_from_slice(&input[..half]);
    block[14] = len as u8;
    block[15] = pass;
    aes.encrypt_block(&mut block);
    for (x, k) in into[..half].iter_mut().zip(block.iter()) {
        *x ^= k;
    }
}

/// Encrypts `plain` (5–19 octets, not 16) into `out`, of the same length.
pub fn encrypt(aes: &Aes128, plain: &[u8], out: &mut [u8]) {
    let len = plain.len();
    let mut h = Halves::split(plain);
    let half = h.half;
    round(aes, len, 1, &h.left, half, &mut h.right);
    h.clear_right();
    round(aes, len, 2, &h.right, half, &mut h.left);
    h.clear_left();
    round(aes, len, 3, &h.left, half, &mut h.right);
    h.clear_right();
    round(aes, len, 4, &h.right, half, &mut h.left);
    h.clear_left();
    h.join(out);
}

/// Decrypts `cipher` into `out` (of the same length). Only the first `server_id_len`
/// octets of `out` are sure to be the plaintext's: when the server ID lies wholly in the
/// left half, the fourth pass (which recovers the nonce) is skipped, as the draft allows.
pub fn decrypt(aes: &Aes128, cipher: &[u8], server_id_len: usize, out: &mut [u8]) {
    let len = cipher.len();
    let mut h = Halves::split(cipher);
    let half = h.half;
    round(aes, len, 4, &h.right, half, &mut h.left);
    h.clear_left();
    round(aes, len, 3, &h.left, half, &mut h.right);
    h.clear_right();
    round(aes, len, 2, &h.right, half, &mut h.left);
    h.clear_left();
    if 2 * server_id_len > len {
        round(aes, len, 1, &h.left, half, &mut h.right);
        h.clear_right();
    }
    h.join(out);
}
