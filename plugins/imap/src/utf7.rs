//! Modified UTF-7 mailbox names (RFC 3501 section 5.1.3).
//!
//! The store takes UTF-8 names; IMAP4rev1 clients send and expect the
//! modified UTF-7 form. Decoding is strict: a name is accepted only when
//! encoding the result gives back exactly the bytes the client sent, so
//! every name round-trips and no two wire names reach one folder.

const ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

fn is_direct(c: char) -> bool {
    (' '..='~').contains(&c) && c != '&'
}

/// Encode a UTF-8 name for the wire.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending: Vec<u16> = Vec::new();

    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if pending.is_empty() {
            return;
        }
        out.push('&');
        let bytes: Vec<u8> =
            pending.iter().flat_map(|unit| unit.to_be_bytes()).collect();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n =
                u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
            let sextets = chunk.len() + 1;
            for i in 0..sextets {
                let index = (n >> (18 - 6 * i)) & 63;
                out.push(ALPHABET[index as usize] as char);
            }
        }
        out.push('-');
        pending.clear();
    };

    for c in name.chars() {
        if is_direct(c) {
            flush(&mut pending, &mut out);
            out.push(c);
        } else if c == '&' {
            flush(&mut pending, &mut out);
            out.push_str("&-");
        } else {
            let mut units = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut units));
        }
    }
    flush(&mut pending, &mut out);
    out
}

/// Decode a wire name; `None` when it is not canonical modified UTF-7.
pub fn decode(wire: &str) -> Option<String> {
    let mut out = String::with_capacity(wire.len());
    let mut rest = wire;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let dash = after.find('-')?;
        let run = &after[..dash];
        if run.is_empty() {
            out.push('&');
        } else {
            out.push_str(&decode_run(run)?);
        }
        rest = &after[dash + 1..];
    }
    out.push_str(rest);

    (encode(&out) == wire).then_some(out)
}

fn decode_run(run: &str) -> Option<String> {
    let mut bytes = Vec::new();
    let mut acc: u32 = 0;
    let mut bits = 0;
    for byte in run.bytes() {
        let value = ALPHABET.iter().position(|&c| c == byte)? as u32;
        acc = acc << 6 | value;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            bytes.push((acc >> bits) as u8);
        }
    }
    if bytes.len() % 2 != 0 {
        return None;
    }
    let units: Vec<u16> = bytes
        .chunks(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
        .collect();
    String::from_utf16(&units).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3501_example() {
        let name = "~peter/mail/\u{65e5}\u{672c}\u{8a9e}/\u{53f0}\u{5317}";
        assert_eq!(encode(name), "~peter/mail/&ZeVnLIqe-/&U,BTFw-");
        assert_eq!(decode("~peter/mail/&ZeVnLIqe-/&U,BTFw-").unwrap(), name);
    }

    #[test]
    fn ampersand_and_quotes_round_trip() {
        for name in ["R&D", "a\"b", "Entw\u{fc}rfe", "\u{1f600}x", "&"] {
            assert_eq!(decode(&encode(name)).as_deref(), Some(name));
        }
        assert_eq!(encode("R&D"), "R&-D");
    }

    #[test]
    fn non_canonical_forms_are_refused() {
        // "a" spelt in base64, and an unterminated shift.
        assert_eq!(decode("&AGE-"), None);
        assert_eq!(decode("&ZeVn"), None);
    }
}
