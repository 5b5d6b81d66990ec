//! SEARCH keys (RFC 3501 section 6.4.4): parsing into a tree and
//! evaluating it against one message at a time.

use crate::datetime::{parse_header_date, parse_search_date};
use crate::header;
use crate::limits::MAX_SEARCH_STRING;
use crate::parse::{Parsed, Parser};
use crate::seqset::SeqSet;

#[derive(Debug, Clone)]
pub enum Key {
    All,
    /// A flag (system or keyword) that must be set (`true`) or unset.
    Flag(String, bool),
    New,
    Old,
    Recent,
    Larger(u64),
    Smaller(u64),
    Before(i64),
    On(i64),
    Since(i64),
    SentBefore(i64),
    SentOn(i64),
    SentSince(i64),
    /// Header field name (empty for none) and the text it must contain.
    Header(String, Vec<u8>),
    Body(Vec<u8>),
    Text(Vec<u8>),
    Seq(SeqSet),
    Uid(SeqSet),
    Not(Box<Key>),
    Or(Box<Key>, Box<Key>),
    And(Vec<Key>),
}

/// What a search needs to know about one message. Cheap facts come
/// first; the header and the text are fetched only when a key asks.
pub trait Candidate {
    fn seq(&self) -> u32;
    fn uid(&self) -> u32;
    fn has_flag(&self, flag: &str) -> bool;
    fn recent(&self) -> bool;
    fn size(&self) -> u64;
    /// INTERNALDATE as days since the epoch (UTC).
    fn internal_day(&self) -> i64;
    /// The top-level header block.
    fn header(&mut self) -> &[u8];
    /// Whether the body (`whole` false) or the whole message contains
    /// `needle`, ignoring ASCII case.
    fn contains(&mut self, needle: &[u8], whole: bool) -> bool;
    /// The largest sequence number and UID, for `*`.
    fn max_seq(&self) -> u32;
    fn max_uid(&self) -> u32;
    /// Whether the message is in the saved result `$` (RFC 5182).
    fn in_saved(&self) -> bool {
        false
    }
}

fn search_string(p: &mut Parser) -> Parsed<Vec<u8>> {
    let text = p.astring()?;
    if text.len() > MAX_SEARCH_STRING {
        return Err("search string too long".into());
    }
    Ok(text)
}

fn date(p: &mut Parser) -> Parsed<i64> {
    let text = match p.peek() {
        Some(b'"') => p.quoted()?,
        _ => p.atom()?.into_bytes(),
    };
    let text = String::from_utf8_lossy(&text).into_owned();
    parse_search_date(&text).ok_or_else(|| format!("bad date `{text}`"))
}

/// Parse the keys of a SEARCH (after any CHARSET), ANDed together.
pub fn parse_keys(p: &mut Parser) -> Parsed<Key> {
    let mut keys = vec![parse_key(p, 0)?];
    while p.eat(b' ') {
        keys.push(parse_key(p, 0)?);
    }
    p.end()?;
    Ok(if keys.len() == 1 {
        keys.pop().unwrap()
    } else {
        Key::And(keys)
    })
}

fn parse_key(p: &mut Parser, depth: usize) -> Parsed<Key> {
    Parser::check_depth(depth)?;
    if p.eat(b'(') {
        let mut keys = vec![parse_key(p, depth + 1)?];
        while p.eat(b' ') {
            keys.push(parse_key(p, depth + 1)?);
        }
        p.expect(b')')?;
        return Ok(Key::And(keys));
    }
    if matches!(p.peek(), Some(b'0'..=b'9' | b'*' | b'$')) {
        let set = p.sequence_set()?;
        return SeqSet::parse(set)
            .map(Key::Seq)
            .ok_or_else(|| "bad sequence set".into());
    }

    let word = p.atom_upper()?;
    let flag = |name: &str, set: bool| Ok(Key::Flag(name.to_owned(), set));
    match word.as_str() {
        "ALL" => Ok(Key::All),
        "ANSWERED" => flag("\\Answered", true),
        "DELETED" => flag("\\Deleted", true),
        "DRAFT" => flag("\\Draft", true),
        "FLAGGED" => flag("\\Flagged", true),
        "SEEN" => flag("\\Seen", true),
        "UNANSWERED" => flag("\\Answered", false),
        "UNDELETED" => flag("\\Deleted", false),
        "UNDRAFT" => flag("\\Draft", false),
        "UNFLAGGED" => flag("\\Flagged", false),
        "UNSEEN" => flag("\\Seen", false),
        "NEW" => Ok(Key::New),
        "OLD" => Ok(Key::Old),
        "RECENT" => Ok(Key::Recent),
        "KEYWORD" | "UNKEYWORD" => {
            p.sp()?;
            let keyword = p.atom()?;
            Ok(Key::Flag(keyword, word == "KEYWORD"))
        }
        "LARGER" | "SMALLER" => {
            p.sp()?;
            let n = p.number64()?;
            Ok(if word == "LARGER" {
                Key::Larger(n)
            } else {
                Key::Smaller(n)
            })
        }
        "BEFORE" | "ON" | "SINCE" | "SENTBEFORE" | "SENTON" | "SENTSINCE" => {
            p.sp()?;
            let day = date(p)?;
            Ok(match word.as_str() {
                "BEFORE" => Key::Before(day),
                "ON" => Key::On(day),
                "SINCE" => Key::Since(day),
                "SENTBEFORE" => Key::SentBefore(day),
                "SENTON" => Key::SentOn(day),
                _ => Key::SentSince(day),
            })
        }
        "BCC" | "CC" | "FROM" | "SUBJECT" | "TO" => {
            p.sp()?;
            let name = match word.as_str() {
                "SUBJECT" => "Subject".to_owned(),
                other => other.to_owned(),
            };
            Ok(Key::Header(name, search_string(p)?))
        }
        "HEADER" => {
            p.sp()?;
            let name = String::from_utf8_lossy(&p.astring()?).into_owned();
            p.sp()?;
            Ok(Key::Header(name, search_string(p)?))
        }
        "BODY" => {
            p.sp()?;
            Ok(Key::Body(search_string(p)?))
        }
        "TEXT" => {
            p.sp()?;
            Ok(Key::Text(search_string(p)?))
        }
        "UID" => {
            p.sp()?;
            let set = p.sequence_set()?;
            SeqSet::parse(set)
                .map(Key::Uid)
                .ok_or_else(|| "bad UID set".into())
        }
        "NOT" => {
            p.sp()?;
            Ok(Key::Not(Box::new(parse_key(p, depth + 1)?)))
        }
        "OR" => {
            p.sp()?;
            let a = parse_key(p, depth + 1)?;
            p.sp()?;
            let b = parse_key(p, depth + 1)?;
            Ok(Key::Or(Box::new(a), Box::new(b)))
        }
        other => Err(format!("unknown search key `{other}`")),
    }
}

/// Refuse message sequence numbers past the end anywhere in `key`
/// (see [`SeqSet::check_sequence`]); UID sets are never refused.
pub fn check_sequences(key: &Key, max: u32) -> Result<(), String> {
    match key {
        Key::Seq(set) if set.is_saved() => Ok(()),
        Key::Seq(set) => set.check_sequence(max),
        Key::Not(inner) => check_sequences(inner, max),
        Key::Or(a, b) => {
            check_sequences(a, max)?;
            check_sequences(b, max)
        }
        Key::And(keys) => keys.iter().try_for_each(|k| check_sequences(k, max)),
        _ => Ok(()),
    }
}

/// ASCII case-insensitive substring test.
pub fn contains_ci(haystack: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() {
        return true;
    }
    haystack
        .windows(needle.len())
        .any(|window| window.eq_ignore_ascii_case(needle))
}

/// Whether a header field matches: an empty needle matches any message
/// that has the field; otherwise the decoded value must contain it.
fn header_matches(header_block: &[u8], name: &str, needle: &[u8]) -> bool {
    header::fields(header_block)
        .into_iter()
        .filter(|(n, _, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        .any(|(_, value, _)| {
            let value = crate::header::unfold(value);
            needle.is_empty()
                || contains_ci(&value, needle)
                || contains_ci(&decode_words(&value), needle)
        })
}

/// Evaluate `key` for one message.
pub fn matches(key: &Key, m: &mut dyn Candidate) -> bool {
    match key {
        Key::All => true,
        Key::Flag(flag, set) => m.has_flag(flag) == *set,
        Key::New => m.recent() && !m.has_flag("\\Seen"),
        Key::Old => !m.recent(),
        Key::Recent => m.recent(),
        Key::Larger(n) => m.size() > *n,
        Key::Smaller(n) => m.size() < *n,
        Key::Before(day) => m.internal_day() < *day,
        Key::On(day) => m.internal_day() == *day,
        Key::Since(day) => m.internal_day() >= *day,
        Key::SentBefore(day) | Key::SentOn(day) | Key::SentSince(day) => {
            let sent = header::first(m.header(), "Date")
                .and_then(|d| parse_header_date(&String::from_utf8_lossy(&d)));
            let Some(sent) = sent else { return false };
            match key {
                Key::SentBefore(_) => sent < *day,
                Key::SentOn(_) => sent == *day,
                _ => sent >= *day,
            }
        }
        Key::Header(name, needle) => header_matches(m.header(), name, needle),
        Key::Body(needle) => m.contains(needle, false),
        Key::Text(needle) => m.contains(needle, true),
        Key::Seq(set) | Key::Uid(set) if set.is_saved() => m.in_saved(),
        Key::Seq(set) => set.contains(m.seq(), m.max_seq()),
        Key::Uid(set) => set.contains(m.uid(), m.max_uid()),
        Key::Not(inner) => !matches(inner, m),
        Key::Or(a, b) => matches(a, m) || matches(b, m),
        Key::And(keys) => keys.iter().all(|k| matches(k, m)),
    }
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Decode RFC 2047 encoded words in UTF-8, US-ASCII and ISO-8859-1;
/// words in other charsets stay as they are.
pub fn decode_words(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let mut rest = value;
    let mut last_was_word = false;
    while !rest.is_empty() {
        let word = if rest.starts_with(b"=?") {
            decode_word(rest)
        } else {
            None
        };
        if let Some((decoded, used)) = word {
            // White space between adjacent encoded words is dropped.
            if last_was_word {
                while out.last().is_some_and(|b: &u8| b.is_ascii_whitespace()) {
                    out.pop();
                }
            }
            out.extend_from_slice(&decoded);
            rest = &rest[used..];
            last_was_word = true;
            continue;
        }
        if !rest[0].is_ascii_whitespace() {
            last_was_word = false;
        }
        out.push(rest[0]);
        rest = &rest[1..];
    }
    out
}

fn decode_word(text: &[u8]) -> Option<(Vec<u8>, usize)> {
    let body = &text[2..];
    let q1 = body.iter().position(|&b| b == b'?')?;
    let charset = String::from_utf8_lossy(&body[..q1]).to_ascii_lowercase();
    let charset = charset.split('*').next().unwrap_or_default().to_owned();
    let enc = *body.get(q1 + 1)?;
    if body.get(q1 + 2) != Some(&b'?') {
        return None;
    }
    let data_start = q1 + 3;
    let data_len = body[data_start..].windows(2).position(|w| w == b"?=")?;
    let data = &body[data_start..data_start + data_len];
    let raw = match enc.to_ascii_uppercase() {
        b'B' => mailhost_sdk::base64::decode(&String::from_utf8_lossy(data))?,
        b'Q' => {
            let mut out = Vec::new();
            let mut i = 0;
            while i < data.len() {
                match data[i] {
                    b'_' => out.push(b' '),
                    b'=' if i + 2 < data.len() => {
                        out.push(hex(data[i + 1])? << 4 | hex(data[i + 2])?);
                        i += 2;
                    }
                    b => out.push(b),
                }
                i += 1;
            }
            out
        }
        _ => return None,
    };
    let decoded = match charset.as_str() {
        "utf-8" | "us-ascii" => raw,
        "iso-8859-1" | "latin1" => raw
            .iter()
            .map(|&b| b as char)
            .collect::<String>()
            .into_bytes(),
        _ => return None,
    };
    Some((decoded, 2 + data_start + data_len + 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        header: Vec<u8>,
    }

    impl Candidate for Fake {
        fn seq(&self) -> u32 {
            2
        }
        fn uid(&self) -> u32 {
            20
        }
        fn has_flag(&self, flag: &str) -> bool {
            flag == "\\Seen"
        }
        fn recent(&self) -> bool {
            false
        }
        fn size(&self) -> u64 {
            100
        }
        fn internal_day(&self) -> i64 {
            parse_search_date("14-Mar-2026").unwrap()
        }
        fn header(&mut self) -> &[u8] {
            &self.header
        }
        fn contains(&mut self, needle: &[u8], _whole: bool) -> bool {
            needle == b"body"
        }
        fn max_seq(&self) -> u32 {
            3
        }
        fn max_uid(&self) -> u32 {
            30
        }
    }

    fn eval(query: &str) -> bool {
        let mut p = Parser::new(query.as_bytes());
        let key = parse_keys(&mut p).unwrap();
        let mut m = Fake {
            header: b"Subject: =?utf-8?q?caf=C3=A9_au_lait?=\r\n\
                      Date: Sat, 14 Mar 2026 13:08:53 +0100\r\nX-Y: z\r\n\r\n"
                .to_vec(),
        };
        matches(&key, &mut m)
    }

    #[test]
    fn nested_not_or() {
        assert!(!eval("OR (UNSEEN LARGER 10) NOT (SMALLER 200)"));
        assert!(eval("NOT OR UNSEEN DELETED"));
        assert!(eval("SEEN UID 1:* 2:3 SINCE 1-Mar-2026 BEFORE 15-Mar-2026"));
        assert!(!eval("UID 21:25"));
    }

    #[test]
    fn header_and_dates() {
        assert!(eval("SUBJECT \"caf\u{e9}\""));
        assert!(eval("HEADER X-Y \"\""));
        assert!(!eval("HEADER X-Z \"\""));
        assert!(eval("SENTON 14-Mar-2026 BODY body"));
    }

    #[test]
    fn too_deep_is_refused() {
        let query = "NOT ".repeat(100) + "ALL";
        let mut p = Parser::new(query.as_bytes());
        assert!(parse_keys(&mut p).is_err());
    }
}
