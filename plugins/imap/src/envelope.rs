//! ENVELOPE and BODYSTRUCTURE rendering (RFC 3501 section 7.4.2).

use crate::header::{self, strip_comments, trim};
use crate::mime::Part;
use crate::wire::{push_nstring, push_string};

/// One address of an address list, or a group marker.
#[derive(Debug, PartialEq, Eq)]
pub struct Address {
    pub name: Option<Vec<u8>>,
    pub route: Option<Vec<u8>>,
    /// Local part, or the group name of a group start.
    pub mailbox: Option<Vec<u8>>,
    /// None marks group syntax.
    pub host: Option<Vec<u8>>,
}

/// Split at `sep` outside quotes, comments and angle brackets.
fn split_top(value: &[u8], seps: &[u8]) -> Vec<(Vec<u8>, Option<u8>)> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    let (mut quoted, mut escaped, mut angle, mut comment) =
        (false, false, false, 0usize);
    for &b in value {
        if escaped {
            escaped = false;
            current.push(b);
            continue;
        }
        match b {
            b'\\' if quoted || comment > 0 => escaped = true,
            b'"' if comment == 0 => quoted = !quoted,
            b'(' if !quoted => comment += 1,
            b')' if !quoted && comment > 0 => comment -= 1,
            b'<' if !quoted && comment == 0 => angle = true,
            b'>' if !quoted && comment == 0 => angle = false,
            _ => {}
        }
        if !quoted && comment == 0 && !angle && seps.contains(&b) && !escaped {
            out.push((std::mem::take(&mut current), Some(b)));
            continue;
        }
        current.push(b);
    }
    out.push((current, None));
    out
}

fn unquote_phrase(phrase: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut quoted = false;
    let mut escaped = false;
    for &b in trim(phrase) {
        if escaped {
            out.push(b);
            escaped = false;
        } else if b == b'\\' && quoted {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        } else {
            out.push(b);
        }
    }
    trim(&out).to_vec()
}

/// The first comment of a value, for `addr (Name)` forms.
fn first_comment(value: &[u8]) -> Option<Vec<u8>> {
    let open = value.iter().position(|&b| b == b'(')?;
    let close = value.iter().rposition(|&b| b == b')')?;
    (close > open).then(|| trim(&value[open + 1..close]).to_vec())
}

/// (route, local part, domain) of an addr-spec.
type AddrSpec = (Option<Vec<u8>>, Option<Vec<u8>>, Option<Vec<u8>>);

fn addr_spec(spec: &[u8]) -> AddrSpec {
    let spec = strip_comments(spec);
    let mut spec = trim(&spec).to_vec();
    spec.retain(|b| !b.is_ascii_whitespace());
    // An obsolete source route: `@a,@b:user@host`.
    let mut route = None;
    if spec.starts_with(b"@")
        && let Some(colon) = spec.iter().position(|&b| b == b':')
    {
        route = Some(spec[..colon].to_vec());
        spec = spec[colon + 1..].to_vec();
    }
    match spec.iter().rposition(|&b| b == b'@') {
        Some(at) => (
            route,
            Some(unquote_phrase(&spec[..at])),
            Some(spec[at + 1..].to_vec()),
        ),
        None => (route, Some(unquote_phrase(&spec)), Some(Vec::new())),
    }
}

fn mailbox(text: &[u8]) -> Option<Address> {
    if trim(text).is_empty() {
        return None;
    }
    let open = find_angle(text);
    let (name, spec) = match open {
        Some((open, close)) => {
            let phrase = unquote_phrase(&strip_comments(&text[..open]));
            let name = (!phrase.is_empty()).then_some(phrase);
            (name, text[open + 1..close].to_vec())
        }
        None => (first_comment(text).filter(|c| !c.is_empty()), text.to_vec()),
    };
    let (route, mailbox, host) = addr_spec(&spec);
    if mailbox.as_deref() == Some(b"") && host.as_deref() == Some(b"") {
        return None;
    }
    Some(Address {
        name,
        route,
        mailbox,
        host,
    })
}

/// `<`...`>` outside quotes and comments.
fn find_angle(text: &[u8]) -> Option<(usize, usize)> {
    let mut quoted = false;
    let mut escaped = false;
    let mut comment = 0usize;
    let mut open = None;
    for (i, &b) in text.iter().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' => escaped = true,
            b'"' if comment == 0 => quoted = !quoted,
            b'(' if !quoted => comment += 1,
            b')' if !quoted && comment > 0 => comment -= 1,
            b'<' if !quoted && comment == 0 && open.is_none() => open = Some(i),
            b'>' if !quoted && comment == 0 => {
                if let Some(o) = open {
                    return Some((o, i));
                }
            }
            _ => {}
        }
    }
    None
}

/// Parse an address list with groups.
pub fn addresses(value: &[u8]) -> Vec<Address> {
    let mut out = Vec::new();
    let mut in_group = false;
    for (piece, sep) in split_top(value, b",:;") {
        match sep {
            Some(b':') if !in_group => {
                let name = unquote_phrase(&strip_comments(&piece));
                out.push(Address {
                    name: None,
                    route: None,
                    mailbox: Some(name),
                    host: None,
                });
                in_group = true;
            }
            Some(b';') if in_group => {
                out.extend(mailbox(&piece));
                out.push(Address {
                    name: None,
                    route: None,
                    mailbox: None,
                    host: None,
                });
                in_group = false;
            }
            _ => out.extend(mailbox(&piece)),
        }
    }
    if in_group {
        out.push(Address {
            name: None,
            route: None,
            mailbox: None,
            host: None,
        });
    }
    out
}

fn push_address_list(out: &mut Vec<u8>, value: Option<&[u8]>) {
    let list = value.map(addresses).unwrap_or_default();
    if list.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for address in &list {
        out.push(b'(');
        push_nstring(out, address.name.as_deref());
        out.push(b' ');
        push_nstring(out, address.route.as_deref());
        out.push(b' ');
        push_nstring(out, address.mailbox.as_deref());
        out.push(b' ');
        push_nstring(out, address.host.as_deref());
        out.push(b')');
    }
    out.push(b')');
}

/// The ENVELOPE of a header block.
pub fn envelope(header_block: &[u8]) -> Vec<u8> {
    let get = |name: &str| {
        header::first(header_block, name).filter(|v| !v.is_empty())
    };
    let from = get("From");
    let sender = get("Sender").or_else(|| from.clone());
    let reply_to = get("Reply-To").or_else(|| from.clone());

    let mut out = b"(".to_vec();
    push_nstring(&mut out, get("Date").as_deref());
    out.push(b' ');
    push_nstring(&mut out, get("Subject").as_deref());
    for list in [
        &from,
        &sender,
        &reply_to,
        &get("To"),
        &get("Cc"),
        &get("Bcc"),
    ] {
        out.push(b' ');
        push_address_list(&mut out, list.as_deref());
    }
    out.push(b' ');
    push_nstring(&mut out, get("In-Reply-To").as_deref());
    out.push(b' ');
    push_nstring(&mut out, get("Message-ID").as_deref());
    out.push(b')');
    out
}

fn push_params(out: &mut Vec<u8>, params: &[(Vec<u8>, Vec<u8>)]) {
    if params.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for (i, (name, value)) in params.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        push_string(out, name);
        out.push(b' ');
        push_string(out, value);
    }
    out.push(b')');
}

fn push_disposition(out: &mut Vec<u8>, part: &Part) {
    match header::first(&part.header, "Content-Disposition") {
        Some(raw) if !raw.is_empty() => {
            let disposition = header::structured(&raw);
            out.push(b'(');
            push_string(out, &disposition.value);
            out.push(b' ');
            push_params(out, &disposition.params);
            out.push(b')');
        }
        _ => out.extend_from_slice(b"NIL"),
    }
}

fn push_language(out: &mut Vec<u8>, part: &Part) {
    let Some(raw) = header::first(&part.header, "Content-Language") else {
        out.extend_from_slice(b"NIL");
        return;
    };
    let clean = strip_comments(&raw);
    let tags: Vec<&[u8]> = clean
        .split(|&b| b == b',')
        .map(trim)
        .filter(|t| !t.is_empty())
        .collect();
    match tags.as_slice() {
        [] => out.extend_from_slice(b"NIL"),
        [one] => push_string(out, one),
        many => {
            out.push(b'(');
            for (i, tag) in many.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                push_string(out, tag);
            }
            out.push(b')');
        }
    }
}

fn field(part: &Part, name: &str) -> Option<Vec<u8>> {
    header::first(&part.header, name).filter(|v| !v.is_empty())
}

/// BODYSTRUCTURE (`extended`) or BODY of a part.
pub fn body_structure(out: &mut Vec<u8>, part: &Part, extended: bool) {
    out.push(b'(');
    if part.is_multipart() {
        if part.children.is_empty() {
            // IMAP needs at least one part; show an empty text part.
            out.extend_from_slice(
                b"(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0)",
            );
        }
        for child in &part.children {
            body_structure(out, child, extended);
        }
        out.push(b' ');
        push_string(out, part.sub_type().as_bytes());
        if extended {
            out.push(b' ');
            push_params(out, &part.content_type.params);
            out.push(b' ');
            push_disposition(out, part);
            out.push(b' ');
            push_language(out, part);
            out.push(b' ');
            push_nstring(out, field(part, "Content-Location").as_deref());
        }
        out.push(b')');
        return;
    }

    let main = part.main_type();
    push_string(out, main.as_bytes());
    out.push(b' ');
    push_string(out, part.sub_type().as_bytes());
    out.push(b' ');
    push_params(out, &part.content_type.params);
    out.push(b' ');
    push_nstring(out, field(part, "Content-ID").as_deref());
    out.push(b' ');
    push_nstring(out, field(part, "Content-Description").as_deref());
    out.push(b' ');
    let encoding = field(part, "Content-Transfer-Encoding")
        .map(|e| strip_comments(&e))
        .map(|e| trim(&e).to_ascii_lowercase())
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| b"7bit".to_vec());
    push_string(out, &encoding);
    out.extend_from_slice(format!(" {}", part.body_size()).as_bytes());

    if let Some(message) = &part.message {
        out.push(b' ');
        out.extend_from_slice(&envelope(&message.header));
        out.push(b' ');
        body_structure(out, message, extended);
        out.extend_from_slice(format!(" {}", part.lines).as_bytes());
    } else if main == "text" {
        out.extend_from_slice(format!(" {}", part.lines).as_bytes());
    }

    if extended {
        out.push(b' ');
        push_nstring(out, field(part, "Content-MD5").as_deref());
        out.push(b' ');
        push_disposition(out, part);
        out.push(b' ');
        push_language(out, part);
        out.push(b' ');
        push_nstring(out, field(part, "Content-Location").as_deref());
    }
    out.push(b')');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(data: Vec<u8>) -> String {
        String::from_utf8(data).unwrap()
    }

    #[test]
    fn address_forms() {
        let list = addresses(
            b"\"Doe, J.\" <j@x.org>, bare@y.net, z@w.org (Zed), Team: a@b.c;",
        );
        assert_eq!(list.len(), 6);
        assert_eq!(list[0].name.as_deref(), Some(&b"Doe, J."[..]));
        assert_eq!(list[0].host.as_deref(), Some(&b"x.org"[..]));
        assert_eq!(list[1].mailbox.as_deref(), Some(&b"bare"[..]));
        assert_eq!(list[2].name.as_deref(), Some(&b"Zed"[..]));
        assert_eq!(list[3].host, None);
        assert_eq!(
            list[5],
            Address {
                name: None,
                route: None,
                mailbox: None,
                host: None
            }
        );
    }

    #[test]
    fn envelope_defaults_sender_to_from() {
        let env = envelope(b"From: A <a@x.org>\r\nSubject: hi\r\n\r\n");
        assert_eq!(
            text(env),
            "(NIL \"hi\" ((\"A\" NIL \"a\" \"x.org\")) ((\"A\" NIL \"a\" \"x.org\")) \
             ((\"A\" NIL \"a\" \"x.org\")) NIL NIL NIL NIL NIL)"
        );
    }
}
