//! The MIME tree of one message, found by one streaming pass over its
//! bytes: offsets of every part's header and body, line counts, and the
//! parsed header fields BODYSTRUCTURE needs. Bodies are never held in
//! memory; only part headers are kept, each capped.

use crate::header::{self, Structured};
use crate::limits::{
    MAX_BOUNDARY_LINE, MAX_MIME_DEPTH, MAX_MIME_PARTS, MAX_PART_HEADER,
    READ_CHUNK,
};

/// Random access to a message's bytes (CRLF line ends).
pub trait Source {
    /// Total size in bytes.
    fn size(&self) -> u64;
    /// Up to `len` bytes from `offset`; `None` on a store error.
    fn read(&mut self, offset: u64, len: u32) -> Option<Vec<u8>>;
}

impl Source for &[u8] {
    fn size(&self) -> u64 {
        self.len() as u64
    }

    fn read(&mut self, offset: u64, len: u32) -> Option<Vec<u8>> {
        let start = (offset as usize).min(self.len());
        let end = start.saturating_add(len as usize).min(self.len());
        Some(self[start..end].to_vec())
    }
}

/// One part of the tree.
#[derive(Debug, Clone, Default)]
pub struct Part {
    pub header_start: u64,
    pub body_start: u64,
    pub end: u64,
    /// Lines of the body, as BODYSTRUCTURE reports for text/* and
    /// message/rfc822.
    pub lines: u64,
    /// The raw header block, at most [`MAX_PART_HEADER`] bytes.
    pub header: Vec<u8>,
    /// Content-Type, with the RFC 2045 default filled in.
    pub content_type: Structured,
    /// Children of a multipart.
    pub children: Vec<Part>,
    /// The message inside a message/rfc822 part.
    pub message: Option<Box<Part>>,
    multipart: bool,
}

impl Part {
    pub fn main_type(&self) -> String {
        let value = &self.content_type.value;
        let main = value.split(|&b| b == b'/').next().unwrap_or_default();
        String::from_utf8_lossy(main).to_ascii_lowercase()
    }

    pub fn sub_type(&self) -> String {
        let value = &self.content_type.value;
        let sub = value.split(|&b| b == b'/').nth(1).unwrap_or_default();
        String::from_utf8_lossy(sub).to_ascii_lowercase()
    }

    pub fn is_multipart(&self) -> bool {
        self.multipart
    }

    /// Whether this is an encapsulated message (message/rfc822 or
    /// message/global) whose content was parsed.
    pub fn is_message(&self) -> bool {
        self.message.is_some()
    }

    pub fn body_size(&self) -> u64 {
        self.end.saturating_sub(self.body_start)
    }

    /// The part a section number picks below this one seen as a message:
    /// a multipart's n-th child, or the body itself as part 1.
    fn as_message_child(&self, n: u32) -> Option<&Part> {
        if self.multipart {
            self.children.get(n.checked_sub(1)? as usize)
        } else if n == 1 {
            Some(self)
        } else {
            None
        }
    }

    /// Resolve a section path (`[1, 2]` for `1.2`) from this message.
    pub fn find(&self, path: &[u32]) -> Option<&Part> {
        let mut current = self;
        for (i, &n) in path.iter().enumerate() {
            current = if i == 0 {
                current.as_message_child(n)?
            } else if let Some(message) = &current.message {
                message.as_message_child(n)?
            } else if current.multipart {
                current.children.get(n.checked_sub(1)? as usize)?
            } else {
                return None;
            };
        }
        Some(current)
    }
}

/// What a frame on the scanner's stack is doing.
#[derive(Debug, PartialEq, Eq)]
enum State {
    Header,
    Body,
    /// Multipart: before the first boundary, or after the closing one.
    Outside,
}

struct Frame {
    part: Part,
    state: State,
    boundary: Option<Vec<u8>>,
    /// Index of the first line of the body.
    first_body_line: u64,
    /// Children of a multipart/digest default to message/rfc822.
    digest_parent: bool,
}

impl Frame {
    fn new(start: u64, digest_parent: bool) -> Frame {
        Frame {
            part: Part {
                header_start: start,
                ..Part::default()
            },
            state: State::Header,
            boundary: None,
            first_body_line: 0,
            digest_parent,
        }
    }
}

/// A line as the scanner saw it.
#[derive(Clone, Copy, Default)]
struct LineInfo {
    index: u64,
    start: u64,
    /// Length without the terminator.
    content_len: u64,
}

struct Scanner {
    stack: Vec<Frame>,
    parts: usize,
    header_only: bool,
    done: bool,
    prev: Option<LineInfo>,
    root: Option<Part>,
}

/// Scan the whole message. `header_only` stops after the top header.
pub fn scan(source: &mut dyn Source, header_only: bool) -> Option<Part> {
    let size = source.size();
    let mut scanner = Scanner {
        stack: vec![Frame::new(0, false)],
        parts: 1,
        header_only,
        done: false,
        prev: None,
        root: None,
    };

    // The current line: its start, its kept prefix and its full length.
    let mut line = Vec::new();
    let mut line_start = 0u64;
    let mut line_len = 0u64;
    let mut index = 0u64;
    let mut offset = 0u64;
    while offset < size && !scanner.done {
        let chunk = source.read(offset, READ_CHUNK)?;
        if chunk.is_empty() {
            break;
        }
        let mut rest = &chunk[..];
        while !rest.is_empty() && !scanner.done {
            let (piece, complete) = match rest.iter().position(|&b| b == b'\n')
            {
                Some(nl) => (&rest[..=nl], true),
                None => (rest, false),
            };
            rest = &rest[piece.len()..];
            let room = MAX_PART_HEADER.saturating_sub(line.len());
            line.extend_from_slice(&piece[..piece.len().min(room)]);
            line_len += piece.len() as u64;
            if complete {
                scanner.line(index, line_start, line_len, &line);
                index += 1;
                line_start += line_len;
                line.clear();
                line_len = 0;
            }
        }
        offset += chunk.len() as u64;
    }
    if line_len > 0 && !scanner.done {
        scanner.line(index, line_start, line_len, &line);
    }

    scanner.finish(size.min(offset.max(line_start + line_len)));
    scanner.root
}

fn content_of(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

impl Scanner {
    fn line(&mut self, index: u64, start: u64, len: u64, kept: &[u8]) {
        let content = content_of(kept);
        let has_eol = kept.ends_with(b"\n");
        let content_len = len - (kept.len() - content.len()) as u64;
        let info = LineInfo {
            index,
            start,
            content_len,
        };

        let boundary = if content.starts_with(b"--")
            && content.len() <= MAX_BOUNDARY_LINE
        {
            self.match_boundary(content)
        } else {
            None
        };
        if let Some((depth, closing)) = boundary {
            self.close_above(depth, start);
            self.after_boundary(depth, closing, start + len, index + 1);
            self.prev = Some(info);
            return;
        }

        let top = self.stack.last_mut().unwrap();
        if top.state == State::Header {
            if content.is_empty() && has_eol {
                self.end_header(start + len, index + 1);
            } else if top.part.header.len() < MAX_PART_HEADER {
                let room = MAX_PART_HEADER - top.part.header.len();
                top.part
                    .header
                    .extend_from_slice(&kept[..kept.len().min(room)]);
            }
        }
        self.prev = Some(info);
    }

    /// Which open multipart a `--boundary` line belongs to, innermost
    /// first, and whether it is the closing delimiter.
    fn match_boundary(&self, content: &[u8]) -> Option<(usize, bool)> {
        let text = &content[2..];
        for (depth, frame) in self.stack.iter().enumerate().rev() {
            let Some(boundary) = &frame.boundary else {
                continue;
            };
            let Some(after) = text.strip_prefix(boundary.as_slice()) else {
                continue;
            };
            let (closing, tail) = match after.strip_prefix(b"--") {
                Some(tail) => (true, tail),
                None => (false, after),
            };
            if tail.iter().all(|&b| b == b' ' || b == b'\t') {
                return Some((depth, closing));
            }
        }
        None
    }

    /// Where a part ends when the line at `next_start` ends it: before
    /// the CRLF that belongs to the boundary.
    fn end_of(&self, frame: &Frame, next_start: u64) -> (u64, u64) {
        let body_start = frame.part.body_start;
        if frame.state == State::Header {
            return (next_start, 0);
        }
        match self.prev {
            Some(prev)
                if prev.start >= body_start
                    && prev.index >= frame.first_body_line =>
            {
                let lines = prev.index - frame.first_body_line
                    + u64::from(prev.content_len > 0);
                (prev.start + prev.content_len, lines)
            }
            _ => (body_start, 0),
        }
    }

    fn close_frame(&mut self, mut frame: Frame, end: u64, lines: u64) {
        if frame.state == State::Header {
            frame.part.body_start = end;
            self.decide_type(&mut frame);
        }
        frame.part.end = end.max(frame.part.body_start);
        frame.part.lines = lines;
        let part = frame.part;
        match self.stack.last_mut() {
            Some(parent) if parent.part.multipart => {
                parent.part.children.push(part)
            }
            Some(parent) => parent.part.message = Some(Box::new(part)),
            None => self.root = Some(part),
        }
    }

    /// Close every frame above `depth`, ending at the boundary line
    /// starting at `start`.
    fn close_above(&mut self, depth: usize, start: u64) {
        while self.stack.len() > depth + 1 {
            let frame = self.stack.pop().unwrap();
            let (end, lines) = self.end_of(&frame, start);
            // A message/rfc822 part ends where its content ends.
            self.close_frame(frame, end, lines);
        }
    }

    fn after_boundary(
        &mut self,
        depth: usize,
        closing: bool,
        next: u64,
        next_line: u64,
    ) {
        let digest = self.stack[depth].part.sub_type() == "digest";
        let frame = &mut self.stack[depth];
        if closing || self.parts >= MAX_MIME_PARTS {
            // After the closing delimiter, or over the part cap, later
            // boundary lines are plain body text.
            frame.state = State::Outside;
            frame.boundary = None;
            return;
        }
        let mut child = Frame::new(next, digest);
        child.first_body_line = next_line;
        self.parts += 1;
        self.stack.push(child);
    }

    fn decide_type(&self, frame: &mut Frame) {
        let raw = header::first(&frame.part.header, "Content-Type");
        let mut ct = raw.map(|v| header::structured(&v)).unwrap_or_default();
        let valid = ct.value.contains(&b'/') && !ct.value.ends_with(b"/");
        if !valid {
            ct = if frame.digest_parent {
                header::structured(b"message/rfc822")
            } else {
                header::structured(b"text/plain; charset=us-ascii")
            };
        }
        frame.part.content_type = ct;
    }

    fn end_header(&mut self, body_start: u64, first_body_line: u64) {
        let depth = self.stack.len();
        let mut frame = self.stack.pop().unwrap();
        frame.part.body_start = body_start;
        frame.first_body_line = first_body_line;
        frame.state = State::Body;
        self.decide_type(&mut frame);

        if self.header_only && depth == 1 {
            self.stack.push(frame);
            self.done = true;
            return;
        }

        let main = frame.part.main_type();
        let sub = frame.part.sub_type();
        let deep_enough = depth < MAX_MIME_DEPTH && self.parts < MAX_MIME_PARTS;
        let boundary = frame
            .part
            .content_type
            .param("boundary")
            .map(<[u8]>::to_vec);
        let mut nested = None;
        if main == "multipart" && deep_enough {
            if let Some(b) = boundary.filter(|b| !b.is_empty()) {
                frame.part.multipart = true;
                frame.boundary = Some(b);
                frame.state = State::Outside;
            }
        } else if main == "message"
            && (sub == "rfc822" || sub == "global")
            && deep_enough
        {
            let mut inner = Frame::new(body_start, false);
            inner.first_body_line = first_body_line;
            nested = Some(inner);
        }
        self.stack.push(frame);
        if let Some(inner) = nested {
            self.parts += 1;
            self.stack.push(inner);
        }
    }

    fn finish(&mut self, size: u64) {
        while let Some(frame) = self.stack.pop() {
            let (end, lines) = match (self.header_only, &frame.state) {
                (true, _) | (_, State::Header) => (size, 0),
                _ => self.end_at_eof(&frame, size),
            };
            let mut frame = frame;
            if frame.state == State::Header {
                frame.part.body_start = size;
                self.decide_type(&mut frame);
                frame.state = State::Body;
            }
            self.close_frame(frame, end, lines);
        }
    }

    fn end_at_eof(&self, frame: &Frame, size: u64) -> (u64, u64) {
        match self.prev {
            Some(prev)
                if prev.index >= frame.first_body_line
                    && prev.start >= frame.part.body_start =>
            {
                (size, prev.index - frame.first_body_line + 1)
            }
            _ => (size, 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(text: &str) -> Part {
        let mut src: &[u8] = text.as_bytes();
        scan(&mut src, false).unwrap()
    }

    #[test]
    fn plain_message() {
        let p = tree("Subject: x\r\n\r\nhello\r\nworld\r\n");
        assert_eq!(p.body_start, 14);
        assert_eq!(p.end, 28);
        assert_eq!(p.lines, 2);
        assert_eq!(p.main_type(), "text");
    }

    #[test]
    fn multipart_offsets() {
        let msg = "Content-Type: multipart/mixed; boundary=b\r\n\r\n\
                   pre\r\n--b\r\nContent-Type: text/plain\r\n\r\none\r\ntwo\r\n\
                   --b\r\n\r\nsecond\r\n--b--\r\nepilogue\r\n";
        let p = tree(msg);
        assert!(p.is_multipart());
        assert_eq!(p.children.len(), 2);
        let one = &p.children[0];
        let body = &msg[one.body_start as usize..one.end as usize];
        assert_eq!(body, "one\r\ntwo");
        assert_eq!(one.lines, 2);
        let two = &p.children[1];
        assert_eq!(&msg[two.body_start as usize..two.end as usize], "second");
        assert_eq!(p.find(&[2]).unwrap().body_start, two.body_start);
    }

    #[test]
    fn nested_message() {
        let msg = "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
                   Content-Type: message/rfc822\r\n\r\nSubject: in\r\n\r\n\
                   inner body\r\n--b--\r\n";
        let p = tree(msg);
        let part = p.find(&[1]).unwrap();
        let inner = part.message.as_ref().unwrap();
        assert_eq!(header::first(&inner.header, "subject").unwrap(), b"in");
        let text = &msg[inner.body_start as usize..inner.end as usize];
        assert_eq!(text, "inner body");
        assert_eq!(p.find(&[1, 1]).unwrap().body_start, inner.body_start);
    }

    #[test]
    fn unterminated_multipart_ends_at_eof() {
        let msg =
            "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n";
        let p = tree(msg);
        assert_eq!(p.children.len(), 1);
        assert_eq!(p.children[0].end as usize, msg.len());
    }

    #[test]
    fn no_blank_line_means_all_header() {
        let p = tree("Subject: only\r\n");
        assert_eq!(p.body_start, 15);
        assert_eq!(p.end, 15);
    }
}
