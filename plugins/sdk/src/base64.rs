//! Standard base64 (RFC 4648 section 4) for SASL exchanges.

use alloc::string::String;
use alloc::vec::Vec;

const ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Encode `data` with padding.
///
/// ```
/// assert_eq!(mailhost_sdk::base64::encode(b"Username:"), "VXNlcm5hbWU6");
/// ```
pub fn encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);

    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        let sextets = [n >> 18, n >> 12, n >> 6, n];
        for (i, sextet) in sextets.iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[(*sextet & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decode padded or unpadded base64, ignoring surrounding whitespace.
/// Returns `None` for any character outside the alphabet or a length that
/// cannot be base64.
///
/// ```
/// let plain = mailhost_sdk::base64::decode("AGFsaWNlAHNlY3JldA==");
/// assert_eq!(plain.as_deref(), Some(&b"\0alice\0secret"[..]));
/// assert_eq!(mailhost_sdk::base64::decode("a*b="), None);
/// ```
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim().trim_end_matches('=');
    if text.len() % 4 == 1 {
        return None;
    }

    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for byte in text.bytes() {
        let value = ALPHABET.iter().position(|&c| c == byte)? as u32;
        acc = acc << 6 | value;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}
