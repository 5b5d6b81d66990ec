//! Message data as it arrives after DATA or in BDAT chunks.
//!
//! The decoder looks at every byte once, whatever the chunking, so a CRLF
//! split across two reads is still a CRLF. It does three jobs:
//!
//! - finds the end of DATA: only CRLF "." CRLF, or "." CRLF as the very
//!   first line, ends it (RFC 5321 4.1.1.4). A dot after a bare LF or a
//!   bare CR is message text, which closes the SMTP smuggling hole
//!   (CVE-2023-51764/5/6);
//! - removes the dot that stuffs a line starting with "." (RFC 5321
//!   4.5.2);
//! - notes any bare CR or bare LF, because the plugin refuses such a
//!   message whole once its end is reached.

/// Where the decoder stands within the current line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of the data or just after a CRLF.
    LineStart,
    /// A line that began with "."; the dot is held back.
    Dot,
    /// ".\r" at the start of a line: the end, if LF follows.
    DotCr,
    /// Inside a line.
    Middle,
    /// Just after a CR whose LF has not been seen yet.
    Cr,
    /// The end marker was seen; nothing more belongs to the message.
    Done,
}

/// Incremental decoder of one message's data.
#[derive(Debug)]
pub struct Decoder {
    state: State,
    /// DATA (dot-stuffed, ends at CRLF.CRLF) rather than BDAT (raw).
    dot_stuffed: bool,
    bare_line_end: bool,
}

impl Decoder {
    /// A decoder for the text after `354` (dot-stuffed).
    pub fn for_data() -> Decoder {
        Decoder {
            state: State::LineStart,
            dot_stuffed: true,
            bare_line_end: false,
        }
    }

    /// A decoder for BDAT chunks: no stuffing, no end marker; the caller
    /// counts the bytes.
    pub fn for_bdat() -> Decoder {
        Decoder {
            state: State::LineStart,
            dot_stuffed: false,
            bare_line_end: false,
        }
    }

    /// Whether the end-of-data marker was seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Whether a CR without LF or an LF without CR appeared so far. For
    /// BDAT, call [`Decoder::finish`] first so a trailing CR counts.
    pub fn saw_bare_line_end(&self) -> bool {
        self.bare_line_end
    }

    /// Declare the message complete (BDAT LAST): a CR still waiting for
    /// its LF is a bare CR.
    pub fn finish(&mut self) {
        if self.state == State::Cr {
            self.bare_line_end = true;
        }
        self.state = State::Done;
    }

    /// Decode `input`, appending message bytes to `out`. Returns how many
    /// bytes of `input` were consumed: all of them, unless the end marker
    /// came first, in which case the bytes after it are not message text.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> usize {
        for (index, &byte) in input.iter().enumerate() {
            self.state = match self.state {
                State::Done => return index,
                State::LineStart if byte == b'.' && self.dot_stuffed => {
                    State::Dot
                }
                State::LineStart | State::Middle | State::Dot => {
                    // In state Dot the held-back dot is the stuffing and is
                    // dropped: the byte after it is ordinary text.
                    if self.state == State::Dot && byte == b'\r' {
                        State::DotCr
                    } else {
                        self.text_byte(byte, out)
                    }
                }
                State::DotCr if byte == b'\n' => State::Done,
                State::DotCr | State::Cr => {
                    if byte == b'\n' {
                        out.extend_from_slice(b"\r\n");
                        State::LineStart
                    } else {
                        // The CR before this byte stood alone.
                        self.bare_line_end = true;
                        out.push(b'\r');
                        self.text_byte(byte, out)
                    }
                }
            };
        }
        input.len()
    }

    /// One byte inside a line; a CR waits to see what follows it.
    fn text_byte(&mut self, byte: u8, out: &mut Vec<u8>) -> State {
        match byte {
            b'\r' => State::Cr,
            b'\n' => {
                // A bare LF never starts a new line here, so a dot after
                // it cannot end the data.
                self.bare_line_end = true;
                out.push(b'\n');
                State::Middle
            }
            _ => {
                out.push(byte);
                State::Middle
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decode `input` fed one byte at a time and whole; both must agree.
    fn decode(input: &[u8]) -> (Vec<u8>, bool, bool, usize) {
        let mut whole = Decoder::for_data();
        let mut out = Vec::new();
        let used = whole.feed(input, &mut out);

        let mut bytewise = Decoder::for_data();
        let mut out2 = Vec::new();
        let mut used2 = 0;
        for byte in input {
            if bytewise.is_done() {
                break;
            }
            used2 += bytewise.feed(std::slice::from_ref(byte), &mut out2);
        }
        assert_eq!(out, out2, "chunking changed the output");
        assert_eq!(used, used2, "chunking changed the end");
        (out, whole.is_done(), whole.saw_bare_line_end(), used)
    }

    #[test]
    fn plain_message_ends_at_crlf_dot_crlf() {
        let (out, done, bare, used) =
            decode(b"a\r\nb\r\n.\r\nMAIL FROM:<x>\r\n");
        assert_eq!(out, b"a\r\nb\r\n");
        assert!(done);
        assert!(!bare);
        assert_eq!(used, 9);
    }

    #[test]
    fn empty_message() {
        let (out, done, _, used) = decode(b".\r\n");
        assert!(out.is_empty());
        assert!(done);
        assert_eq!(used, 3);
    }

    #[test]
    fn dots_are_unstuffed() {
        let (out, done, bare, _) = decode(b"..\r\n...x\r\n.y\r\nz.\r\n.\r\n");
        assert_eq!(out, b".\r\n..x\r\ny\r\nz.\r\n");
        assert!(done);
        assert!(!bare);
    }

    #[test]
    fn smuggling_bare_lf_dot_bare_lf_does_not_end() {
        let (out, done, bare, _) = decode(b"a\n.\nMAIL FROM:<e>\r\n");
        assert!(!done);
        assert!(bare);
        assert_eq!(out, b"a\n.\nMAIL FROM:<e>\r\n");
    }

    #[test]
    fn smuggling_bare_lf_dot_crlf_does_not_end() {
        let (_, done, bare, _) = decode(b"a\n.\r\nMAIL FROM:<e>\r\n");
        assert!(!done);
        assert!(bare);
    }

    #[test]
    fn smuggling_dot_cr_cr_lf_does_not_end() {
        let (_, done, bare, _) = decode(b"a\r\n.\r\r\nMAIL FROM:<e>\r\n");
        assert!(!done);
        assert!(bare);
    }

    #[test]
    fn smuggling_bare_cr_dot_bare_cr_does_not_end() {
        let (_, done, bare, _) = decode(b"a\r.\rMAIL FROM:<e>\r\n");
        assert!(!done);
        assert!(bare);
    }

    #[test]
    fn smuggling_first_line_bare_lf_dot_does_not_end() {
        let (_, done, bare, _) = decode(b".\nMAIL FROM:<e>\r\n");
        assert!(!done);
        assert!(bare);
    }

    #[test]
    fn crlf_split_across_chunks_is_one_line_end() {
        let mut decoder = Decoder::for_data();
        let mut out = Vec::new();
        for chunk in [&b"a\r"[..], b"\n.", b"\r", b"\n"] {
            decoder.feed(chunk, &mut out);
        }
        assert!(decoder.is_done());
        assert!(!decoder.saw_bare_line_end());
        assert_eq!(out, b"a\r\n");
    }

    #[test]
    fn bdat_keeps_dots_and_flags_trailing_cr() {
        let mut decoder = Decoder::for_bdat();
        let mut out = Vec::new();
        decoder.feed(b".\r\n..\r\n", &mut out);
        assert!(!decoder.is_done());
        assert_eq!(out, b".\r\n..\r\n");
        decoder.feed(b"x\r", &mut out);
        decoder.finish();
        assert!(decoder.saw_bare_line_end());
    }

    #[test]
    fn bdat_clean_message() {
        let mut decoder = Decoder::for_bdat();
        let mut out = Vec::new();
        decoder.feed(b"a\r", &mut out);
        decoder.feed(b"\nb\r\n", &mut out);
        decoder.finish();
        assert!(!decoder.saw_bare_line_end());
        assert_eq!(out, b"a\r\nb\r\n");
    }
}
