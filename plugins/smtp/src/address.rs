//! Envelope addresses: the reverse-path of MAIL and the forward-path of
//! RCPT, parsed per RFC 5321 4.1.2, with UTF-8 per RFC 6531 when the
//! transaction asked for SMTPUTF8.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Longest local part, in octets (RFC 5321 4.5.3.1.1).
const MAX_LOCAL_PART: usize = 64;

/// Longest domain, in octets (RFC 5321 4.5.3.1.2).
const MAX_DOMAIN: usize = 255;

/// Longest path with its angle brackets, in octets (RFC 5321 4.5.3.1.3).
const MAX_PATH: usize = 256;

/// A mailbox in the form the host's delivery calls take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// The local part, unquoted when quoting was not needed, so that
    /// `"alice"@example.org` and `alice@example.org` are one mailbox.
    pub local: String,
    /// The domain or address literal as sent.
    pub domain: String,
}

impl Mailbox {
    /// `local@domain`.
    pub fn address(&self) -> String {
        format!("{}@{}", self.local, self.domain)
    }

    /// The address lower-cased, for comparing with the account's
    /// addresses.
    pub fn folded(&self) -> String {
        self.address().to_lowercase()
    }

    /// Whether any part needs SMTPUTF8.
    pub fn is_ascii(&self) -> bool {
        self.local.is_ascii() && self.domain.is_ascii()
    }
}

/// A MAIL FROM argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReversePath {
    /// `<>`: bounces and other notifications.
    Null,
    Mailbox(Mailbox),
}

/// A RCPT TO argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardPath {
    /// `<Postmaster>` without a domain, which every server must accept
    /// (RFC 5321 4.5.1).
    Postmaster,
    Mailbox(Mailbox),
}

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Not RFC 5321 path syntax.
    Syntax,
    /// Longer than a limit of RFC 5321 4.5.3.1.
    TooLong,
}

/// Parse a reverse-path at the start of `input`; returns it and the rest
/// of the input (the ESMTP parameters). Non-ASCII text is accepted only
/// when `utf8` is set; the caller checks that against SMTPUTF8.
pub fn parse_reverse_path(
    input: &str,
) -> Result<(ReversePath, &str), PathError> {
    if let Some(rest) = input.strip_prefix("<>") {
        return Ok((ReversePath::Null, rest));
    }

    let (mailbox, rest) = parse_path(input)?;
    Ok((ReversePath::Mailbox(mailbox), rest))
}

/// Parse a forward-path at the start of `input`, like
/// [`parse_reverse_path`].
pub fn parse_forward_path(
    input: &str,
) -> Result<(ForwardPath, &str), PathError> {
    let postmaster = "<postmaster>";
    if input.len() >= postmaster.len()
        && input.is_char_boundary(postmaster.len())
        && input[..postmaster.len()].eq_ignore_ascii_case(postmaster)
    {
        return Ok((ForwardPath::Postmaster, &input[postmaster.len()..]));
    }

    let (mailbox, rest) = parse_path(input)?;
    Ok((ForwardPath::Mailbox(mailbox), rest))
}

/// `"<" [ A-d-l ":" ] Mailbox ">"`.
fn parse_path(input: &str) -> Result<(Mailbox, &str), PathError> {
    let mut cursor = Cursor {
        text: input,
        pos: 0,
    };
    cursor.expect('<')?;

    // A source route is obsolete and ignored (RFC 5321 3.3, C).
    if cursor.peek() == Some('@') {
        loop {
            cursor.expect('@')?;
            parse_domain(&mut cursor)?;
            if !cursor.eat(',') {
                break;
            }
        }
        cursor.expect(':')?;
    }

    let start = cursor.pos;
    let local = parse_local_part(&mut cursor)?;
    cursor.expect('@')?;
    let domain = parse_domain(&mut cursor)?;
    let end = cursor.pos;
    cursor.expect('>')?;

    if local.len() > MAX_LOCAL_PART
        || domain.len() > MAX_DOMAIN
        || end - start + 2 > MAX_PATH
    {
        return Err(PathError::TooLong);
    }
    Ok((Mailbox { local, domain }, &input[cursor.pos..]))
}

/// `Dot-string / Quoted-string`, returned in canonical form.
fn parse_local_part(cursor: &mut Cursor) -> Result<String, PathError> {
    if cursor.peek() != Some('"') {
        let start = cursor.pos;
        parse_dot_string(cursor)?;
        return Ok(cursor.text[start..cursor.pos].to_owned());
    }

    cursor.expect('"')?;
    let mut content = String::new();
    loop {
        match cursor.next().ok_or(PathError::Syntax)? {
            '"' => break,
            '\\' => match cursor.next() {
                Some(c @ ' '..='~') => content.push(c),
                _ => return Err(PathError::Syntax),
            },
            c if is_qtext(c) => content.push(c),
            _ => return Err(PathError::Syntax),
        }
    }

    // Quotes that change nothing are dropped, so the host sees one
    // spelling of each mailbox.
    let mut probe = Cursor {
        text: &content,
        pos: 0,
    };
    if !content.is_empty()
        && parse_dot_string(&mut probe).is_ok()
        && probe.pos == content.len()
    {
        return Ok(content);
    }
    let mut quoted = String::with_capacity(content.len() + 2);
    quoted.push('"');
    for c in content.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    Ok(quoted)
}

/// `Atom *("." Atom)`.
fn parse_dot_string(cursor: &mut Cursor) -> Result<(), PathError> {
    loop {
        let start = cursor.pos;
        while cursor.peek().is_some_and(is_atext) {
            cursor.next();
        }
        if cursor.pos == start {
            return Err(PathError::Syntax);
        }
        if !cursor.eat('.') {
            return Ok(());
        }
    }
}

/// `Domain / address-literal`, returned as sent.
fn parse_domain(cursor: &mut Cursor) -> Result<String, PathError> {
    let start = cursor.pos;
    if cursor.eat('[') {
        while cursor.peek().is_some_and(|c| c != ']' && c != '>') {
            cursor.next();
        }
        let literal = &cursor.text[start + 1..cursor.pos];
        cursor.expect(']')?;
        if !is_address_literal(literal) {
            return Err(PathError::Syntax);
        }
        return Ok(cursor.text[start..cursor.pos].to_owned());
    }

    loop {
        let label_start = cursor.pos;
        while cursor.peek().is_some_and(|c| {
            c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii()
        }) {
            cursor.next();
        }
        let label = &cursor.text[label_start..cursor.pos];
        if label.is_empty() || label.starts_with('-') || label.ends_with('-') {
            return Err(PathError::Syntax);
        }
        if !cursor.eat('.') {
            return Ok(cursor.text[start..cursor.pos].to_owned());
        }
    }
}

/// The inside of `[...]`: IPv4, `IPv6:...`, or a general literal
/// `tag:content` (RFC 5321 4.1.3).
pub fn is_address_literal(literal: &str) -> bool {
    if literal.parse::<Ipv4Addr>().is_ok() {
        return true;
    }
    if let Some(v6) = strip_prefix_ignore_case(literal, "IPv6:") {
        return v6.parse::<Ipv6Addr>().is_ok();
    }

    let Some((tag, content)) = literal.split_once(':') else {
        return false;
    };
    let tag_ok = !tag.is_empty()
        && !tag.ends_with('-')
        && tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    let content_ok = !content.is_empty()
        && content.chars().all(|c| matches!(c, '!'..='Z' | '^'..='~'));
    tag_ok && content_ok
}

fn strip_prefix_ignore_case<'a>(
    text: &'a str,
    prefix: &str,
) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// RFC 5322 atext, widened by RFC 6531 to any non-ASCII character.
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || "!#$%&'*+-/=?^_`{|}~".contains(c)
        || !c.is_ascii()
}

/// RFC 5321 qtextSMTP, widened by RFC 6531.
fn is_qtext(c: char) -> bool {
    matches!(c, ' ' | '!' | '#'..='[' | ']'..='~') || !c.is_ascii()
}

/// A position in the text being parsed.
struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn eat(&mut self, wanted: char) -> bool {
        if self.peek() == Some(wanted) {
            self.pos += wanted.len_utf8();
            return true;
        }
        false
    }

    fn expect(&mut self, wanted: char) -> Result<(), PathError> {
        if self.eat(wanted) {
            Ok(())
        } else {
            Err(PathError::Syntax)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mailbox(input: &str) -> Result<(String, String), PathError> {
        match parse_forward_path(input)? {
            (ForwardPath::Mailbox(mailbox), rest) => {
                Ok((mailbox.address(), rest.to_owned()))
            }
            (ForwardPath::Postmaster, rest) => {
                Ok(("postmaster".into(), rest.to_owned()))
            }
        }
    }

    #[test]
    fn simple_and_parameters() {
        assert_eq!(
            mailbox("<alice@example.org> SIZE=10"),
            Ok(("alice@example.org".into(), " SIZE=10".into()))
        );
        assert_eq!(
            mailbox("<Postmaster>"),
            Ok(("postmaster".into(), "".into()))
        );
    }

    #[test]
    fn null_sender() {
        assert_eq!(parse_reverse_path("<>"), Ok((ReversePath::Null, "")));
        assert!(parse_forward_path("<>").is_err());
    }

    #[test]
    fn quoted_local_parts() {
        assert_eq!(
            mailbox("<\"alice\"@example.org>").unwrap().0,
            "alice@example.org"
        );
        assert_eq!(
            mailbox("<\"john doe\"@example.org>").unwrap().0,
            "\"john doe\"@example.org"
        );
        assert_eq!(
            mailbox(r#"<"a\"b\\c"@example.org>"#).unwrap().0,
            r#""a\"b\\c"@example.org"#
        );
        assert!(mailbox("<\"open@example.org>").is_err());
    }

    #[test]
    fn source_route_is_ignored() {
        assert_eq!(
            mailbox("<@a.example,@b.example:bob@example.org>")
                .unwrap()
                .0,
            "bob@example.org"
        );
        assert!(mailbox("<@a.example bob@example.org>").is_err());
    }

    #[test]
    fn utf8_addresses_parse() {
        let (address, _) = mailbox("<jösé@bücher.example>").unwrap();
        assert_eq!(address, "jösé@bücher.example");
    }

    #[test]
    fn address_literals() {
        assert!(mailbox("<a@[127.0.0.1]>").is_ok());
        assert!(mailbox("<a@[IPv6:::1]>").is_ok());
        assert!(mailbox("<a@[300.0.0.1]>").is_err());
        assert!(mailbox("<a@[IPv6:zz]>").is_err());
    }

    #[test]
    fn malformed_paths() {
        for bad in [
            "alice@example.org",
            "<alice@example.org",
            "<alice>",
            "<.alice@example.org>",
            "<al..ice@example.org>",
            "<alice@-example.org>",
            "<alice@example..org>",
            "<alice@example.org.>",
            "<alice@@example.org>",
            "<ali ce@example.org>",
            "<alice@exa mple.org>",
            "<>",
        ] {
            assert_eq!(mailbox(bad), Err(PathError::Syntax), "{bad}");
        }
    }

    #[test]
    fn limits() {
        let long_local = format!("<{}@example.org>", "a".repeat(65));
        assert_eq!(mailbox(&long_local), Err(PathError::TooLong));
        let label = "a".repeat(60);
        let long_domain =
            format!("<a@{label}.{label}.{label}.{label}.{label}>");
        assert_eq!(mailbox(&long_domain), Err(PathError::TooLong));
        let ok_local = format!("<{}@example.org>", "a".repeat(64));
        assert!(mailbox(&ok_local).is_ok());
    }
}
