//! A cursor over one complete command (literals already inline as
//! `{N}\r\n<bytes>`), with the RFC 3501 section 9 token rules.

use crate::limits::MAX_NESTING;

/// Why a command did not parse; becomes the text of a tagged BAD.
pub type ParseError = String;

pub type Parsed<T> = Result<T, ParseError>;

pub struct Parser<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// Characters that end an atom (RFC 3501 `atom-specials`, without `]`,
/// which `astring` allows).
fn is_atom_special(byte: u8) -> bool {
    matches!(byte, b'(' | b')' | b'{' | b' ' | b'%' | b'*' | b'"' | b'\\')
        || !(0x20..0x7f).contains(&byte)
}

fn is_astring_char(byte: u8) -> bool {
    !is_atom_special(byte)
}

fn is_atom_char(byte: u8) -> bool {
    !is_atom_special(byte) && byte != b']'
}

fn is_list_char(byte: u8) -> bool {
    is_astring_char(byte) || byte == b'%' || byte == b'*'
}

impl<'a> Parser<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Parser { buf, pos: 0 }
    }

    pub fn eof(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    /// What is left, for error messages and for the tail of a command.
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos.min(self.buf.len())..]
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    /// Consume `byte` if it comes next.
    pub fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    pub fn expect(&mut self, byte: u8) -> Parsed<()> {
        if self.eat(byte) {
            Ok(())
        } else {
            Err(format!("expected {:?}", byte as char))
        }
    }

    /// Exactly one space.
    pub fn sp(&mut self) -> Parsed<()> {
        if self.eat(b' ') {
            Ok(())
        } else {
            Err("expected a space".into())
        }
    }

    /// The command must end here.
    pub fn end(&self) -> Parsed<()> {
        if self.eof() {
            Ok(())
        } else {
            Err("unexpected text at the end of the command".into())
        }
    }

    /// Consume `word` (ASCII, any case) when it comes next and is not
    /// followed by more atom characters.
    pub fn keyword(&mut self, word: &str) -> bool {
        let end = self.pos + word.len();
        if end > self.buf.len()
            || !self.buf[self.pos..end].eq_ignore_ascii_case(word.as_bytes())
        {
            return false;
        }
        if self
            .buf
            .get(end)
            .is_some_and(|&b| is_atom_char(b) && b != b'.' && b != b'[')
        {
            return false;
        }
        self.pos = end;
        true
    }

    fn take_while(&mut self, pred: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.pos;
        while self.peek().is_some_and(&pred) {
            self.pos += 1;
        }
        &self.buf[start..self.pos]
    }

    /// An atom, returned upper-cased (command names, keys).
    pub fn atom_upper(&mut self) -> Parsed<String> {
        Ok(self.atom()?.to_ascii_uppercase())
    }

    pub fn atom(&mut self) -> Parsed<String> {
        let word = self.take_while(is_atom_char);
        if word.is_empty() {
            return Err("expected an atom".into());
        }
        Ok(String::from_utf8_lossy(word).into_owned())
    }

    /// A tag: astring characters except `+`.
    pub fn tag(&mut self) -> Parsed<String> {
        let tag = self.take_while(|b| is_astring_char(b) && b != b'+');
        if tag.is_empty() {
            return Err("expected a tag".into());
        }
        Ok(String::from_utf8_lossy(tag).into_owned())
    }

    pub fn number(&mut self) -> Parsed<u32> {
        let digits = self.take_while(|b| b.is_ascii_digit());
        std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| "expected a number".into())
    }

    pub fn number64(&mut self) -> Parsed<u64> {
        let digits = self.take_while(|b| b.is_ascii_digit());
        std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| "expected a number".into())
    }

    /// A quoted string, escapes resolved.
    pub fn quoted(&mut self) -> Parsed<Vec<u8>> {
        self.expect(b'"')?;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None | Some(b'\r') | Some(b'\n') | Some(0) => {
                    return Err("unterminated quoted string".into());
                }
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c @ (b'"' | b'\\')) => {
                            out.push(c);
                            self.pos += 1;
                        }
                        _ => return Err("bad escape in quoted string".into()),
                    }
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// A literal `{N}` or `{N+}` followed by CRLF and N bytes, as the
    /// command reader left it.
    pub fn literal(&mut self) -> Parsed<Vec<u8>> {
        self.expect(b'{')?;
        let len = self.number64()?;
        self.eat(b'+');
        self.expect(b'}')?;
        if !self.rest().starts_with(b"\r\n") {
            return Err("literal without CRLF".into());
        }
        self.pos += 2;
        let len = usize::try_from(len).map_err(|_| "literal too large")?;
        if self.rest().len() < len {
            return Err("literal shorter than announced".into());
        }
        let data = self.buf[self.pos..self.pos + len].to_vec();
        self.pos += len;
        Ok(data)
    }

    pub fn string(&mut self) -> Parsed<Vec<u8>> {
        match self.peek() {
            Some(b'"') => self.quoted(),
            Some(b'{') => self.literal(),
            _ => Err("expected a string".into()),
        }
    }

    pub fn astring(&mut self) -> Parsed<Vec<u8>> {
        match self.peek() {
            Some(b'"') | Some(b'{') => self.string(),
            _ => {
                let word = self.take_while(is_astring_char);
                if word.is_empty() {
                    return Err("expected an atom or a string".into());
                }
                Ok(word.to_vec())
            }
        }
    }

    /// An astring that must be UTF-8 text.
    pub fn astring_text(&mut self) -> Parsed<String> {
        String::from_utf8(self.astring()?)
            .map_err(|_| "expected UTF-8 text".into())
    }

    /// A LIST pattern: list-chars (with `%` and `*`) or a string.
    pub fn list_mailbox(&mut self) -> Parsed<Vec<u8>> {
        match self.peek() {
            Some(b'"') | Some(b'{') => self.string(),
            _ => {
                let word = self.take_while(is_list_char);
                if word.is_empty() {
                    return Err("expected a mailbox pattern".into());
                }
                Ok(word.to_vec())
            }
        }
    }

    /// A flag: `\Word`, `\*` or a keyword atom.
    pub fn flag(&mut self) -> Parsed<String> {
        if self.eat(b'\\') {
            if self.eat(b'*') {
                return Ok("\\*".into());
            }
            return Ok(format!("\\{}", self.atom()?));
        }
        self.atom()
    }

    /// A parenthesised, space-separated flag list; `()` is allowed.
    pub fn flag_list(&mut self) -> Parsed<Vec<String>> {
        self.expect(b'(')?;
        let mut flags = Vec::new();
        if self.eat(b')') {
            return Ok(flags);
        }
        loop {
            flags.push(self.flag()?);
            if self.eat(b')') {
                return Ok(flags);
            }
            self.sp()?;
        }
    }

    /// A sequence set in its wire form (digits, `*`, `:` and `,`), or
    /// `$` (RFC 5182).
    pub fn sequence_set(&mut self) -> Parsed<&'a [u8]> {
        let set = self.take_while(|b| {
            b.is_ascii_digit() || matches!(b, b'*' | b':' | b',' | b'$')
        });
        if set.is_empty() {
            return Err("expected a sequence set".into());
        }
        Ok(set)
    }

    /// Section text inside `[...]` of BODY, returned raw up to the `]`,
    /// strings resolved into a normal form by the caller's parser.
    pub fn until_byte(&mut self, end: u8) -> &'a [u8] {
        self.take_while(|b| b != end)
    }

    /// Guard for recursive grammars.
    pub fn check_depth(depth: usize) -> Parsed<()> {
        if depth > MAX_NESTING {
            Err("nested too deeply".into())
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_literals() {
        let mut p = Parser::new(b"\"a\\\"b\" {3}\r\nxyz atom]x");
        assert_eq!(p.string().unwrap(), b"a\"b");
        p.sp().unwrap();
        assert_eq!(p.astring().unwrap(), b"xyz");
        p.sp().unwrap();
        assert_eq!(p.astring().unwrap(), b"atom]x");
        assert!(p.eof());
    }

    #[test]
    fn short_literal_is_refused() {
        let mut p = Parser::new(b"{10}\r\nabc");
        assert!(p.literal().is_err());
    }

    #[test]
    fn keyword_needs_word_end() {
        let mut p = Parser::new(b"UIDNEXT");
        assert!(!p.keyword("UID"));
        assert!(p.keyword("uidnext"));
    }
}
