//! Modified UTF-7 (RFC 3501 section 5.1.3), the spelling Dovecot uses
//! for non-ASCII folder names on disk.
//!
//! Printable ASCII stands for itself, except `&`, written `&-`. Any other
//! run of characters becomes its UTF-16 code units in big-endian order,
//! encoded in base64 with `,` in place of `/` and no padding, between
//! `&` and `-`.

const ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

fn is_direct(c: char) -> bool {
    (' '..='~').contains(&c)
}

/// Encode `name` into modified UTF-7.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending: Vec<u16> = Vec::new();

    for c in name.chars() {
        if is_direct(c) {
            flush(&mut pending, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut pending, &mut out);
    out
}

/// Write the pending UTF-16 units as one `&...-` run.
fn flush(units: &mut Vec<u16>, out: &mut String) {
    if units.is_empty() {
        return;
    }

    let bytes: Vec<u8> = units.iter().flat_map(|u| u.to_be_bytes()).collect();
    out.push('&');
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n =
            (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            let idx = (n >> (18 - 6 * i)) & 0x3f;
            out.push(ALPHABET[idx as usize] as char);
        }
    }
    out.push('-');
    units.clear();
}

/// Decode a modified UTF-7 name, or `None` when it is not valid: a
/// character outside printable ASCII, an unterminated or empty shift, a
/// shift that encodes plain ASCII, stray bits, or broken UTF-16.
pub fn decode(encoded: &str) -> Option<String> {
    let bytes = encoded.as_bytes();
    let mut out = String::with_capacity(encoded.len());
    let mut i = 0;

    while i < bytes.len() {
        let b = bytes[i];
        if !(0x20..=0x7e).contains(&b) {
            return None;
        }
        if b != b'&' {
            out.push(b as char);
            i += 1;
            continue;
        }

        // A shift: find its end, then decode the base64 in between.
        let end = i + 1 + bytes[i + 1..].iter().position(|&c| c == b'-')?;
        let run = &bytes[i + 1..end];
        if run.is_empty() {
            out.push('&');
        } else {
            out.push_str(&decode_run(run)?);
        }
        i = end + 1;
    }
    Some(out)
}

fn decode_run(run: &[u8]) -> Option<String> {
    let mut bits: u32 = 0;
    let mut nbits = 0;
    let mut bytes = Vec::with_capacity(run.len());

    for &c in run {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        bits = (bits << 6) | v;
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            bytes.push((bits >> nbits) as u8);
            bits &= (1 << nbits) - 1;
        }
    }

    // Leftover bits must be zero padding, and the bytes whole units.
    if bits != 0 || bytes.len() % 2 != 0 {
        return None;
    }
    let units: Vec<u16> = bytes
        .chunks(2)
        .map(|p| u16::from_be_bytes([p[0], p[1]]))
        .collect();
    let text = String::from_utf16(&units).ok()?;

    // A run that holds printable ASCII is not the canonical spelling.
    if text.chars().any(is_direct) {
        return None;
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3501_examples_round_trip() {
        let cases = [
            ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
            ("Entwürfe", "Entw&APw-rfe"),
            ("A&B", "A&-B"),
            ("plain", "plain"),
            ("😀", "&2D3eAA-"),
        ];
        for (plain, enc) in cases {
            assert_eq!(encode(plain), enc, "encode {plain}");
            assert_eq!(decode(enc).as_deref(), Some(plain), "decode {enc}");
        }
    }

    #[test]
    fn rejects_malformed_input() {
        for bad in ["&", "&AGE-", "&U,B-", "caf\u{e9}", "&!!-", "&2D0-"] {
            assert_eq!(decode(bad), None, "{bad:?} should be refused");
        }
    }
}
