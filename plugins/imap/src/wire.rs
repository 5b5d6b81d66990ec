//! Reading whole commands off the connection (lines joined across
//! literals) and writing IMAP strings back.

use mailhost_sdk::{ReadError, Session};

use crate::limits::{
    LITERAL_MINUS_MAX, MAX_COMMAND, MAX_DISCARD, MAX_LINE, MAX_LITERAL,
};
use crate::parse::Parser;

/// One unit of client input.
pub enum Incoming {
    /// A complete command: literals inline as `{N}\r\n<bytes>`, the final
    /// CRLF removed.
    Command(Vec<u8>),
    /// An APPEND whose message literal follows: `head` ends with the
    /// literal marker; the caller streams `size` bytes and then reads the
    /// rest of the line.
    Append {
        head: Vec<u8>,
        size: u64,
        sync: bool,
    },
    /// A line longer than [`MAX_LINE`], or a whole command larger than
    /// [`MAX_COMMAND`]. What follows cannot be framed safely.
    TooLong { tag: String },
    /// A literal above [`MAX_LITERAL`], or a non-synchronising one over
    /// [`LITERAL_MINUS_MAX`] under LITERAL-. A synchronising one was
    /// refused before the client sent it. A non-synchronising one was
    /// already on its way: `skipped` says its bytes (and the rest of the
    /// command) were read and dropped, so the session goes on; when it
    /// is false they were too many to skip and the session must end, so
    /// that they never run as commands.
    LiteralTooLarge { tag: String, skipped: bool },
}

/// A literal marker at the end of `line`: its size, whether it is
/// synchronising, and where the `{` starts.
pub fn literal_marker(line: &[u8]) -> Option<(u64, bool, usize)> {
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let mut digits = &inner[open + 1..];
    let sync = match digits.strip_suffix(b"+") {
        Some(rest) => {
            digits = rest;
            false
        }
        None => true,
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // A literal follows a space, a parenthesis or `~` (literal8).
    if open > 0 && !matches!(line[open - 1], b' ' | b'(' | b'~') {
        return None;
    }
    // An absurd size saturates and is refused as too large.
    let size = std::str::from_utf8(digits)
        .ok()?
        .parse()
        .unwrap_or(u64::MAX);
    Some((size, sync, open))
}

/// The tag of a (possibly partial) command, for error replies.
pub fn tag_of(buf: &[u8]) -> String {
    let mut parser = Parser::new(buf);
    match parser.tag() {
        Ok(tag) if tag.len() <= crate::limits::MAX_TAG => tag,
        _ => "*".to_owned(),
    }
}

/// Whether a literal announced at the end of `head` is the message of an
/// APPEND: the command is APPEND and its mailbox argument is complete.
fn is_append_message(head: &[u8]) -> bool {
    let mut p = Parser::new(head);
    p.tag().is_ok()
        && p.sp().is_ok()
        && p.keyword("APPEND")
        && p.sp().is_ok()
        && p.astring().is_ok()
        && p.sp().is_ok()
}

/// Strip a line's terminator; `None` when it has none.
fn strip_eol(line: &[u8]) -> Option<&[u8]> {
    let line = line.strip_suffix(b"\n")?;
    Some(line.strip_suffix(b"\r").unwrap_or(line))
}

/// Read and drop the rest of a refused command: `size` literal bytes
/// already on their way, then the lines after them. A further
/// non-synchronising literal is dropped the same way; a synchronising
/// one ends the command, since its client waits for a continuation
/// that never comes. False when a literal is too large to skip.
pub fn discard_command(
    session: &mut Session,
    mut size: u64,
) -> Result<bool, ReadError> {
    let mut total = 0u64;
    loop {
        total += size;
        if total > MAX_DISCARD {
            return Ok(false);
        }
        session.read_exact_with(size, |_| {})?;

        let line = session.read_line(MAX_LINE)?;
        if !line.complete {
            return Ok(false);
        }
        match literal_marker(line.content()) {
            Some((next, false, _)) => size = next,
            _ => return Ok(true),
        }
    }
}

/// Read one command, sending `+` continuations for synchronising
/// literals. Under `literal_minus` (RFC 7888 LITERAL-) a
/// non-synchronising literal may hold at most [`LITERAL_MINUS_MAX`]
/// bytes.
pub fn read_command(
    session: &mut Session,
    literal_minus: bool,
) -> Result<Incoming, ReadError> {
    let mut buf = Vec::new();
    loop {
        let line = session.read_line_part(MAX_LINE)?;
        let Some(content) = strip_eol(&line) else {
            if line.len() < MAX_LINE as usize {
                // The peer closed mid-line.
                return Err(ReadError::Closed);
            }
            buf.extend_from_slice(&line);
            return Ok(Incoming::TooLong { tag: tag_of(&buf) });
        };
        buf.extend_from_slice(content);
        if buf.len() > MAX_COMMAND {
            return Ok(Incoming::TooLong { tag: tag_of(&buf) });
        }

        let Some((size, sync, open)) = literal_marker(&buf) else {
            return Ok(Incoming::Command(buf));
        };
        if is_append_message(&buf[..open]) {
            return Ok(Incoming::Append {
                head: buf,
                size,
                sync,
            });
        }
        let too_large = size > MAX_LITERAL
            || buf.len() as u64 + size > MAX_COMMAND as u64
            || (literal_minus && !sync && size > LITERAL_MINUS_MAX);
        if too_large {
            let tag = tag_of(&buf);
            let skipped = sync || discard_command(session, size)?;
            return Ok(Incoming::LiteralTooLarge { tag, skipped });
        }

        if sync {
            session.write_all(b"+ Ready for literal data\r\n")?;
        }
        buf.extend_from_slice(b"\r\n");
        let data = session.read_exact(size)?;
        buf.extend_from_slice(&data);
    }
}

/// Whether `data` can go out as a quoted string.
fn quotable(data: &[u8]) -> bool {
    data.len() < 1024 && data.iter().all(|&b| (0x20..0x7f).contains(&b))
}

/// Append `data` as an IMAP string: quoted when it can be, a literal
/// otherwise. NUL bytes, which IMAP strings cannot carry, are dropped.
pub fn push_string(out: &mut Vec<u8>, data: &[u8]) {
    if quotable(data) {
        out.push(b'"');
        for &b in data {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
        return;
    }

    let clean: Vec<u8> = data.iter().copied().filter(|&b| b != 0).collect();
    out.extend_from_slice(format!("{{{}}}\r\n", clean.len()).as_bytes());
    out.extend_from_slice(&clean);
}

/// Append an nstring: `NIL` for none.
pub fn push_nstring(out: &mut Vec<u8>, data: Option<&[u8]>) {
    match data {
        Some(data) => push_string(out, data),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// Append an astring: a bare atom when that is unambiguous.
pub fn push_astring(out: &mut Vec<u8>, data: &[u8]) {
    let atom = !data.is_empty()
        && !data.eq_ignore_ascii_case(b"NIL")
        && data.iter().all(|&b| {
            (0x21..0x7f).contains(&b)
                && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\')
        });
    if atom {
        out.extend_from_slice(data);
    } else {
        push_string(out, data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_markers() {
        assert_eq!(literal_marker(b"A LOGIN {5}"), Some((5, true, 8)));
        assert_eq!(literal_marker(b"A LOGIN {5+}"), Some((5, false, 8)));
        assert_eq!(literal_marker(b"A LOGIN x{5}"), None);
        assert_eq!(literal_marker(b"A LOGIN {}"), None);
        let huge = literal_marker(b"A X {99999999999999999999999}").unwrap();
        assert_eq!(huge.0, u64::MAX);
    }

    #[test]
    fn append_message_detection() {
        assert!(is_append_message(b"a APPEND INBOX "));
        assert!(is_append_message(b"a APPEND {5}\r\nINBOX (\\Seen) "));
        assert!(!is_append_message(b"a APPEND "));
        assert!(!is_append_message(b"a LOGIN joe "));
    }

    #[test]
    fn strings_quote_or_literal() {
        let mut out = Vec::new();
        push_string(&mut out, b"a\"b");
        assert_eq!(out, b"\"a\\\"b\"");
        out.clear();
        push_string(&mut out, "\u{e9}".as_bytes());
        assert_eq!(out, b"{2}\r\n\xc3\xa9");
        out.clear();
        push_astring(&mut out, b"INBOX");
        assert_eq!(out, b"INBOX");
    }
}
