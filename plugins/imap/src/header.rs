//! RFC 5322 header blocks: finding fields, unfolding, and the structured
//! values MIME needs (a type with parameters, RFC 2231 continuations).

/// The fields of a header block in order: (name, raw value with folding
/// kept, the whole field with its CRLF).
pub fn fields(header: &[u8]) -> Vec<(&[u8], &[u8], &[u8])> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < header.len() {
        // A field runs until a line end not followed by white space.
        let mut end = start;
        loop {
            match header[end..].iter().position(|&b| b == b'\n') {
                Some(nl) => {
                    end += nl + 1;
                    if !matches!(header.get(end), Some(b' ' | b'\t')) {
                        break;
                    }
                }
                None => {
                    end = header.len();
                    break;
                }
            }
        }
        let field = &header[start..end];
        if let Some(colon) = field.iter().position(|&b| b == b':') {
            let name = trim(&field[..colon]);
            if !name.is_empty() && !name.contains(&b' ') {
                out.push((name, &field[colon + 1..], field));
            }
        }
        start = end;
    }
    out
}

/// The first field called `name` (any case), unfolded and trimmed.
pub fn first(header: &[u8], name: &str) -> Option<Vec<u8>> {
    fields(header)
        .into_iter()
        .find(|(n, _, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, value, _)| unfold(value))
}

/// A value with its line breaks removed and its ends trimmed.
pub fn unfold(value: &[u8]) -> Vec<u8> {
    let kept: Vec<u8> = value
        .iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect();
    trim(&kept).to_vec()
}

pub fn trim(data: &[u8]) -> &[u8] {
    let start = data.iter().position(|b| !b.is_ascii_whitespace());
    let Some(start) = start else { return &[] };
    let end = data.iter().rposition(|b| !b.is_ascii_whitespace()).unwrap();
    &data[start..=end]
}

/// Remove RFC 5322 comments (nested parentheses) outside quoted strings.
pub fn strip_comments(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let mut depth = 0usize;
    let mut quoted = false;
    let mut escaped = false;
    for &b in value {
        if escaped {
            escaped = false;
            if depth == 0 {
                out.push(b);
            }
            continue;
        }
        match b {
            b'\\' => {
                escaped = true;
                if depth == 0 {
                    out.push(b);
                }
            }
            b'"' if depth == 0 => {
                quoted = !quoted;
                out.push(b);
            }
            b'(' if !quoted => depth += 1,
            b')' if !quoted && depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(b),
            _ => {}
        }
    }
    out
}

/// A structured MIME value: `type/subtype` or a disposition, with
/// parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Structured {
    pub value: Vec<u8>,
    /// Parameters in order of first appearance; RFC 2231 continuations
    /// joined, and an encoded value's name keeps its trailing `*`.
    pub params: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Structured {
    pub fn param(&self, name: &str) -> Option<&[u8]> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.as_slice())
    }
}

/// Split on `;` outside quoted strings.
fn split_params(value: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut quoted = false;
    let mut escaped = false;
    let mut start = 0;
    for (i, &b) in value.iter().enumerate() {
        if escaped {
            escaped = false;
        } else if b == b'\\' && quoted {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        } else if b == b';' && !quoted {
            out.push(&value[start..i]);
            start = i + 1;
        }
    }
    out.push(&value[start..]);
    out
}

fn unquote(value: &[u8]) -> Vec<u8> {
    let value = trim(value);
    let Some(inner) = value.strip_prefix(b"\"") else {
        return value.to_vec();
    };
    let inner = inner.strip_suffix(b"\"").unwrap_or(inner);
    let mut out = Vec::with_capacity(inner.len());
    let mut escaped = false;
    for &b in inner {
        if !escaped && b == b'\\' {
            escaped = true;
            continue;
        }
        escaped = false;
        out.push(b);
    }
    out
}

/// One parameter as written: base name, section, encoded, value.
type RawParam = (Vec<u8>, Option<u32>, bool, Vec<u8>);

/// Parse `value; a=b; c="d"` with RFC 2231 continuations.
pub fn structured(raw: &[u8]) -> Structured {
    let clean = strip_comments(&unfold(raw));
    let mut pieces = split_params(&clean).into_iter();
    let value = trim(pieces.next().unwrap_or_default()).to_vec();

    // (base name, section, encoded, value) for each parameter.
    let mut raw_params: Vec<RawParam> = Vec::new();
    for piece in pieces {
        let Some(eq) = piece.iter().position(|&b| b == b'=') else {
            continue;
        };
        let name = trim(&piece[..eq]);
        if name.is_empty() {
            continue;
        }
        let val = unquote(&piece[eq + 1..]);
        let (name, encoded) = match name.strip_suffix(b"*") {
            Some(base) => (base, true),
            None => (name, false),
        };
        let (base, section) = match name.iter().rposition(|&b| b == b'*') {
            Some(star) => {
                let digits = &name[star + 1..];
                match std::str::from_utf8(digits)
                    .ok()
                    .and_then(|d| d.parse().ok())
                {
                    Some(n) => (&name[..star], Some(n)),
                    None => (name, None),
                }
            }
            None => (name, None),
        };
        raw_params.push((base.to_vec(), section, encoded, val));
    }

    let mut params: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut done: Vec<Vec<u8>> = Vec::new();
    for (base, _, _, _) in &raw_params {
        let key = base.to_ascii_lowercase();
        if done.contains(&key) {
            continue;
        }
        done.push(key.clone());
        let mut parts: Vec<_> = raw_params
            .iter()
            .filter(|(b, _, _, _)| b.to_ascii_lowercase() == key)
            .collect();
        parts.sort_by_key(|(_, section, _, _)| section.unwrap_or(0));
        let encoded = parts[0].2;
        let mut joined = Vec::new();
        let mut seen_sections = Vec::new();
        for (_, section, _, val) in &parts {
            // A repeated section is a duplicate parameter: first wins.
            if seen_sections.contains(section) {
                continue;
            }
            seen_sections.push(*section);
            joined.extend_from_slice(val);
        }
        let mut name = base.clone();
        if encoded {
            name.push(b'*');
        }
        params.push((name, joined));
    }
    Structured { value, params }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_fields() {
        let h = b"Subject: a\r\n b\r\nTo: x\r\n\r\n";
        let f = fields(h);
        assert_eq!(f.len(), 2);
        assert_eq!(first(h, "subject").unwrap(), b"a b");
    }

    #[test]
    fn rfc2231_continuations_join() {
        let s = structured(
            b" attachment; filename*0*=utf-8''%E2%82%AC; filename*1*=%20x.txt",
        );
        assert_eq!(s.value, b"attachment");
        assert_eq!(s.param("filename*").unwrap(), b"utf-8''%E2%82%AC%20x.txt");
    }

    #[test]
    fn quoted_params_and_comments() {
        let s =
            structured(b"text/plain (c) ; charset=\"utf-8\"; format=flowed");
        assert_eq!(s.value, b"text/plain");
        assert_eq!(s.param("CHARSET").unwrap(), b"utf-8");
        assert_eq!(s.param("format").unwrap(), b"flowed");
    }
}
