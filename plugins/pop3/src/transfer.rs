//! Turning message bytes into a POP3 multi-line response (RFC 1939
//! section 3): byte-stuffing, the terminating `.` line, and the cut that
//! TOP makes after the headers and a number of body lines.
//!
//! Both work on chunks as they come from the store, so a message is never
//! held in memory whole.

/// Dot-stuffs a message chunk by chunk.
///
/// Every line that starts with `.` gets a second `.` in front. A line
/// starts after every LF, bare or not: a client that splits on LF alone
/// must not see a lone `.` end the message early (the POP3 side of SMTP
/// smuggling).
#[derive(Debug)]
pub struct DotStuffer {
    at_line_start: bool,
    /// Whether anything was sent, and whether the last byte was an LF.
    ended_with_lf: bool,
}

impl DotStuffer {
    pub fn new() -> Self {
        DotStuffer {
            at_line_start: true,
            ended_with_lf: true,
        }
    }

    /// Append `data`, stuffed, to `out`.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let mut rest = data;
        while !rest.is_empty() {
            if self.at_line_start && rest[0] == b'.' {
                out.push(b'.');
            }

            // Copy up to and including the next LF in one go.
            let end = match rest.iter().position(|&b| b == b'\n') {
                Some(lf) => lf + 1,
                None => rest.len(),
            };
            out.extend_from_slice(&rest[..end]);
            self.at_line_start = rest[end - 1] == b'\n';
            rest = &rest[end..];
        }

        if let Some(&last) = data.last() {
            self.ended_with_lf = last == b'\n';
        }
    }

    /// Append the end of the response: a CRLF when the message's last
    /// line had none (else the terminator would join it), then `.` CRLF.
    pub fn finish(self, out: &mut Vec<u8>) {
        if !self.ended_with_lf {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

/// Where a TOP response stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TopState {
    /// In the headers; `blank` while the current line has nothing but
    /// its terminator so far.
    Header {
        blank: bool,
    },
    /// In the body with this many lines still to send.
    Body {
        remaining: u64,
    },
    Done,
}

/// Cuts a message after its header, the blank line, and `lines` lines of
/// the body (RFC 1939 TOP). A message without a blank line is all header
/// and goes out whole.
#[derive(Debug)]
pub struct TopFilter {
    lines: u64,
    state: TopState,
}

impl TopFilter {
    pub fn new(lines: u64) -> Self {
        TopFilter {
            lines,
            state: TopState::Header { blank: true },
        }
    }

    /// Whether everything TOP wants was taken.
    pub fn done(&self) -> bool {
        self.state == TopState::Done
    }

    /// The prefix of `data` that belongs to the response.
    pub fn take<'a>(&mut self, data: &'a [u8]) -> &'a [u8] {
        for (i, &byte) in data.iter().enumerate() {
            self.state = match self.state {
                TopState::Done => return &data[..i],
                TopState::Header { blank } if byte != b'\n' => {
                    // A CR before the LF leaves the line blank.
                    TopState::Header {
                        blank: blank && byte == b'\r',
                    }
                }
                TopState::Header { blank: true } => self.body(self.lines),
                TopState::Header { blank: false } => {
                    TopState::Header { blank: true }
                }
                TopState::Body { remaining } if byte == b'\n' => {
                    self.body(remaining - 1)
                }
                body @ TopState::Body { .. } => body,
            };
        }
        data
    }

    fn body(&self, remaining: u64) -> TopState {
        if remaining == 0 {
            TopState::Done
        } else {
            TopState::Body { remaining }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stuff_chunks(chunks: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut stuffer = DotStuffer::new();
        for chunk in chunks {
            stuffer.push(chunk, &mut out);
        }
        stuffer.finish(&mut out);
        out
    }

    fn top(message: &[u8], lines: u64, chunk: usize) -> Vec<u8> {
        let mut filter = TopFilter::new(lines);
        let mut out = Vec::new();
        for piece in message.chunks(chunk) {
            if filter.done() {
                break;
            }
            out.extend_from_slice(filter.take(piece));
        }
        out
    }

    #[test]
    fn leading_dots_are_doubled() {
        assert_eq!(
            stuff_chunks(&[b".\r\n..\r\n.x\r\nnormal.\r\n"]),
            b"..\r\n...\r\n..x\r\nnormal.\r\n.\r\n"
        );
    }

    #[test]
    fn first_line_of_the_message_counts() {
        assert_eq!(stuff_chunks(&[b".hidden\r\n"]), b"..hidden\r\n.\r\n");
    }

    #[test]
    fn attack_dot_after_a_bare_lf_is_stuffed() {
        assert_eq!(
            stuff_chunks(&[b"a\n.\nMAIL FROM:<x>\r\n"]),
            b"a\n..\nMAIL FROM:<x>\r\n.\r\n"
        );
    }

    #[test]
    fn dot_at_a_chunk_boundary_is_stuffed() {
        assert_eq!(
            stuff_chunks(&[b"one\r\n", b".two\r\n"]),
            b"one\r\n..two\r\n.\r\n"
        );
        assert_eq!(
            stuff_chunks(&[b"one\r", b"\n", b".", b"two\r\n"]),
            b"one\r\n..two\r\n.\r\n"
        );
        // A dot in mid-line stays single even when a chunk starts there.
        assert_eq!(stuff_chunks(&[b"one", b".two\r\n"]), b"one.two\r\n.\r\n");
    }

    #[test]
    fn unterminated_last_line_gets_a_crlf_before_the_dot() {
        assert_eq!(stuff_chunks(&[b"a\r\nlast"]), b"a\r\nlast\r\n.\r\n");
    }

    #[test]
    fn empty_message_is_just_the_terminator() {
        assert_eq!(stuff_chunks(&[]), b".\r\n");
    }

    const MESSAGE: &[u8] =
        b"From: a\r\nSubject: b\r\n\r\none\r\ntwo\r\nthree\r\n";

    #[test]
    fn top_zero_sends_the_headers_and_blank_line() {
        for chunk in [1, 2, 5, MESSAGE.len()] {
            assert_eq!(
                top(MESSAGE, 0, chunk),
                b"From: a\r\nSubject: b\r\n\r\n",
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn top_counts_body_lines() {
        for chunk in [1, 3, MESSAGE.len()] {
            assert_eq!(
                top(MESSAGE, 2, chunk),
                b"From: a\r\nSubject: b\r\n\r\none\r\ntwo\r\n",
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn top_past_the_end_sends_everything() {
        assert_eq!(top(MESSAGE, u64::MAX, 4), MESSAGE);
    }

    #[test]
    fn top_of_a_message_without_blank_line_is_whole() {
        let message = b"X: 1\r\nY: 2\r\n";
        assert_eq!(top(message, 0, 3), message);
    }

    #[test]
    fn top_of_a_message_that_starts_blank() {
        let message = b"\r\nbody\r\nmore\r\n";
        assert_eq!(top(message, 0, 7), b"\r\n");
        assert_eq!(top(message, 1, 7), b"\r\nbody\r\n");
    }

    #[test]
    fn top_then_stuff_keeps_dots_safe() {
        let message = b"A: b\r\n\r\n.\r\n..\r\nrest\r\n";
        let mut out = Vec::new();
        let mut stuffer = DotStuffer::new();
        stuffer.push(top(message, 2, 5).as_slice(), &mut out);
        stuffer.finish(&mut out);
        assert_eq!(out, b"A: b\r\n\r\n..\r\n...\r\n.\r\n");
    }
}
