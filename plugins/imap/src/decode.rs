//! Content-Transfer-Encoding decoders for BINARY (RFC 3516), fed in
//! chunks so a big attachment is never held whole.

use crate::header::{strip_comments, trim};

/// How a part's body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// 7bit, 8bit, binary, or none given: the bytes are the content.
    Identity,
    Base64,
    QuotedPrintable,
}

impl Encoding {
    /// The encoding a Content-Transfer-Encoding value names; `None` for
    /// one we cannot decode (`UNKNOWN-CTE`).
    pub fn from_header(value: Option<&[u8]>) -> Option<Encoding> {
        let Some(value) = value else {
            return Some(Encoding::Identity);
        };
        let clean = strip_comments(value);
        let name = trim(&clean).to_ascii_lowercase();
        match name.as_slice() {
            b"" | b"7bit" | b"8bit" | b"binary" => Some(Encoding::Identity),
            b"base64" => Some(Encoding::Base64),
            b"quoted-printable" => Some(Encoding::QuotedPrintable),
            _ => None,
        }
    }
}

fn base64_value(byte: u8) -> Option<u32> {
    let value = match byte {
        b'A'..=b'Z' => byte - b'A',
        b'a'..=b'z' => byte - b'a' + 26,
        b'0'..=b'9' => byte - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    };
    Some(u32::from(value))
}

fn hex(byte: u8) -> Option<u8> {
    (byte as char).to_digit(16).map(|d| d as u8)
}

/// A decoder that keeps the few bytes of state a chunk border can cut.
pub struct Decoder {
    encoding: Encoding,
    acc: u32,
    bits: u32,
    /// Quoted-printable: an `=` sequence cut at the end of a chunk.
    pending: Vec<u8>,
}

impl Decoder {
    pub fn new(encoding: Encoding) -> Decoder {
        Decoder {
            encoding,
            acc: 0,
            bits: 0,
            pending: Vec::new(),
        }
    }

    /// Decode `input`, appending to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        match self.encoding {
            Encoding::Identity => out.extend_from_slice(input),
            Encoding::Base64 => {
                // Characters outside the alphabet (line ends, padding)
                // are skipped, as RFC 2045 6.8 asks.
                for &byte in input {
                    let Some(value) = base64_value(byte) else {
                        continue;
                    };
                    self.acc = (self.acc << 6 | value) & 0xff_ffff;
                    self.bits += 6;
                    if self.bits >= 8 {
                        self.bits -= 8;
                        out.push((self.acc >> self.bits) as u8);
                    }
                }
            }
            Encoding::QuotedPrintable => {
                let mut data = std::mem::take(&mut self.pending);
                data.extend_from_slice(input);
                let mut i = 0;
                while i < data.len() {
                    if data[i] != b'=' {
                        out.push(data[i]);
                        i += 1;
                        continue;
                    }
                    if data.len() - i < 3 {
                        self.pending = data[i..].to_vec();
                        return;
                    }
                    match (data[i + 1], data[i + 2]) {
                        (b'\r', b'\n') => i += 3,
                        (b'\n', _) => i += 2,
                        (a, b) => match (hex(a), hex(b)) {
                            (Some(h), Some(l)) => {
                                out.push(h << 4 | l);
                                i += 3;
                            }
                            _ => {
                                out.push(b'=');
                                i += 1;
                            }
                        },
                    }
                }
            }
        }
    }

    /// Flush what a final cut sequence left.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let pending = std::mem::take(&mut self.pending);
        // A lone `=` at the very end is a soft break; else keep it.
        if pending.len() > 1 || pending.first() != Some(&b'=') {
            out.extend_from_slice(&pending);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(
        encoding: Encoding,
        data: &[u8],
        piece: usize,
    ) -> Vec<u8> {
        let mut decoder = Decoder::new(encoding);
        let mut out = Vec::new();
        for chunk in data.chunks(piece) {
            decoder.feed(chunk, &mut out);
        }
        decoder.finish(&mut out);
        out
    }

    #[test]
    fn base64_across_chunks() {
        let data = b"aGVsbG8g\r\nd29ybGQ=\r\n";
        for piece in 1..8 {
            assert_eq!(
                decode_in_pieces(Encoding::Base64, data, piece),
                b"hello world"
            );
        }
    }

    #[test]
    fn quoted_printable_across_chunks() {
        let data = b"caf=C3=A9 soft=\r\nbreak =3D x=\r\n";
        for piece in 1..8 {
            let out = decode_in_pieces(Encoding::QuotedPrintable, data, piece);
            assert_eq!(out, "café softbreak = x".as_bytes());
        }
    }

    #[test]
    fn unknown_encoding_is_reported() {
        assert_eq!(Encoding::from_header(Some(b"x-uuencode")), None);
        assert_eq!(
            Encoding::from_header(Some(b" Base64 ")),
            Some(Encoding::Base64)
        );
    }
}
