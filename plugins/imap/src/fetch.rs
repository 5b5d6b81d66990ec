//! FETCH: parsing the attribute list and streaming the answers. Message
//! bytes are read from the store in chunks and written out as literals
//! of known length; a big BODY[] never sits in memory whole.

use std::rc::Rc;

use mailhost_sdk::ReadError;
use mailhost_sdk::mailbox::{FlagOperation, Folder};

use crate::datetime::format_internal;
use crate::decode::{Decoder, Encoding};
use crate::envelope::{body_structure, envelope};
use crate::header;
use crate::limits::{READ_CHUNK, STRUCTURE_CACHE};
use crate::mime::{self, Part, Source};
use crate::parse::{Parsed, Parser};
use crate::seqset::SeqSet;
use crate::session::{Imap, Reply, push_flags, push_number};

/// Which bytes of a part a section names.
#[derive(Clone, Debug)]
enum Text {
    Full,
    Header,
    Fields(Vec<String>, bool),
    Body,
    Mime,
}

#[derive(Clone, Debug)]
struct Section {
    peek: bool,
    /// BINARY: the content with its transfer encoding undone.
    binary: bool,
    path: Vec<u32>,
    text: Text,
    partial: Option<(u64, u64)>,
    /// The item name as the response spells it, without `<origin>`.
    label: String,
}

#[derive(Clone, Debug)]
enum Item {
    Flags,
    Uid,
    InternalDate,
    Size,
    Envelope,
    Body,
    BodyStructure,
    Section(Section),
    /// BINARY.SIZE of a part, with its label.
    BinarySize(Vec<u32>, String),
}

fn section_spec(p: &mut Parser, peek: bool, name: &str) -> Parsed<Section> {
    p.expect(b'[')?;
    let mut path = Vec::new();
    while matches!(p.peek(), Some(b'1'..=b'9')) {
        path.push(p.number()?);
        if !p.eat(b'.') {
            break;
        }
    }
    let text = if p.peek() == Some(b']') {
        Text::Full
    } else {
        let word = p.atom_upper().unwrap_or_default();
        match word.as_str() {
            "HEADER" => Text::Header,
            "TEXT" => Text::Body,
            "MIME" if !path.is_empty() => Text::Mime,
            "HEADER.FIELDS" | "HEADER.FIELDS.NOT" => {
                p.sp()?;
                p.expect(b'(')?;
                let mut fields = Vec::new();
                loop {
                    let field = p.astring()?;
                    fields.push(String::from_utf8_lossy(&field).into_owned());
                    if p.eat(b')') {
                        break;
                    }
                    p.sp()?;
                }
                Text::Fields(fields, word.ends_with(".NOT"))
            }
            other => return Err(format!("bad section `{other}`")),
        }
    };
    p.expect(b']')?;

    let partial = if p.eat(b'<') {
        let origin = p.number64()?;
        p.expect(b'.')?;
        let count = p.number64()?;
        p.expect(b'>')?;
        if count == 0 {
            return Err("partial length must not be zero".into());
        }
        Some((origin, count))
    } else {
        None
    };

    let mut label = format!("{name}[");
    let numbers: Vec<String> = path.iter().map(u32::to_string).collect();
    label.push_str(&numbers.join("."));
    let text_name = match &text {
        Text::Full => String::new(),
        Text::Header => "HEADER".into(),
        Text::Body => "TEXT".into(),
        Text::Mime => "MIME".into(),
        Text::Fields(fields, not) => {
            let mut quoted = Vec::new();
            for f in fields {
                let mut out = Vec::new();
                crate::wire::push_astring(&mut out, f.as_bytes());
                quoted.push(String::from_utf8_lossy(&out).into_owned());
            }
            let suffix = if *not { ".NOT" } else { "" };
            format!("HEADER.FIELDS{suffix} ({})", quoted.join(" "))
        }
    };
    if !path.is_empty() && !text_name.is_empty() {
        label.push('.');
    }
    label.push_str(&text_name);
    label.push(']');
    Ok(Section {
        peek,
        binary: false,
        path,
        text,
        partial,
        label,
    })
}

/// `[1.2]<0.100>` of BINARY (RFC 3516): a part number, no text.
fn binary_spec(p: &mut Parser, peek: bool) -> Parsed<Section> {
    let mut section = section_spec(p, peek, "BINARY")?;
    if !matches!(section.text, Text::Full) {
        return Err("BINARY takes a part number only".into());
    }
    section.binary = true;
    Ok(section)
}

fn item(p: &mut Parser) -> Parsed<Vec<Item>> {
    let whole = |peek, text, label: &str| {
        Item::Section(Section {
            peek,
            binary: false,
            path: Vec::new(),
            text,
            partial: None,
            label: label.to_owned(),
        })
    };
    if p.keyword("BINARY.PEEK") {
        return Ok(vec![Item::Section(binary_spec(p, true)?)]);
    }
    if p.keyword("BINARY.SIZE") {
        let section = binary_spec(p, true)?;
        if section.partial.is_some() {
            return Err("BINARY.SIZE takes no partial range".into());
        }
        let label = section.label.replacen("BINARY", "BINARY.SIZE", 1);
        return Ok(vec![Item::BinarySize(section.path, label)]);
    }
    if p.keyword("BINARY") {
        return Ok(vec![Item::Section(binary_spec(p, false)?)]);
    }
    if p.keyword("BODY.PEEK") {
        return Ok(vec![Item::Section(section_spec(p, true, "BODY")?)]);
    }
    if p.keyword("BODYSTRUCTURE") {
        return Ok(vec![Item::BodyStructure]);
    }
    if p.keyword("BODY") {
        if p.peek() == Some(b'[') {
            return Ok(vec![Item::Section(section_spec(p, false, "BODY")?)]);
        }
        return Ok(vec![Item::Body]);
    }
    let word = p.atom_upper()?;
    Ok(match word.as_str() {
        "ALL" => {
            vec![Item::Flags, Item::InternalDate, Item::Size, Item::Envelope]
        }
        "FAST" => vec![Item::Flags, Item::InternalDate, Item::Size],
        "FULL" => vec![
            Item::Flags,
            Item::InternalDate,
            Item::Size,
            Item::Envelope,
            Item::Body,
        ],
        "FLAGS" => vec![Item::Flags],
        "UID" => vec![Item::Uid],
        "INTERNALDATE" => vec![Item::InternalDate],
        "RFC822.SIZE" => vec![Item::Size],
        "ENVELOPE" => vec![Item::Envelope],
        "RFC822" => vec![whole(false, Text::Full, "RFC822")],
        "RFC822.HEADER" => vec![whole(true, Text::Header, "RFC822.HEADER")],
        "RFC822.TEXT" => vec![whole(false, Text::Body, "RFC822.TEXT")],
        other => return Err(format!("unknown FETCH item `{other}`")),
    })
}

fn items(p: &mut Parser) -> Parsed<Vec<Item>> {
    let mut out = Vec::new();
    if p.eat(b'(') {
        loop {
            out.extend(item(p)?);
            if p.eat(b')') {
                break;
            }
            p.sp()?;
        }
    } else {
        out = item(p)?;
    }
    // TODO(#7): CHANGEDSINCE and other FETCH modifiers (CONDSTORE) are
    // not supported.
    p.end()?;
    Ok(out)
}

/// A message in the store as a [`Source`].
pub struct StoreSource<'a> {
    pub folder: &'a Folder,
    pub uid: u32,
    pub size: u64,
}

impl Source for StoreSource<'_> {
    fn size(&self) -> u64 {
        self.size
    }

    fn read(&mut self, offset: u64, len: u32) -> Option<Vec<u8>> {
        self.folder.read(self.uid, offset, len).ok()
    }
}

/// Where the bytes of a section come from.
enum Data {
    Range(u64, u64),
    /// A body range to decode first (BINARY).
    Decoded(u64, u64, Encoding),
    /// BINARY of a part whose transfer encoding we cannot undo.
    UnknownCte,
    Bytes(Vec<u8>),
    Nil,
}

fn filter_fields(block: &[u8], names: &[String], not: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, _, whole) in header::fields(block) {
        let listed = names
            .iter()
            .any(|n| n.as_bytes().eq_ignore_ascii_case(name));
        if listed != not {
            out.extend_from_slice(whole);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// What BINARY[path] names: the whole message, a container's raw body,
/// or a leaf's decoded body.
fn binary_data(root: &Part, path: &[u32]) -> Data {
    if path.is_empty() {
        return Data::Range(0, root.end);
    }
    let Some(part) = root.find(path) else {
        return Data::Nil;
    };
    if part.is_multipart() || part.is_message() {
        return Data::Range(part.body_start, part.end);
    }
    let cte = header::first(&part.header, "Content-Transfer-Encoding");
    match Encoding::from_header(cte.as_deref()) {
        Some(Encoding::Identity) => Data::Range(part.body_start, part.end),
        Some(encoding) => Data::Decoded(part.body_start, part.end, encoding),
        None => Data::UnknownCte,
    }
}

fn section_data(root: &Part, section: &Section) -> Data {
    if section.binary {
        return binary_data(root, &section.path);
    }
    let Some(part) = root.find(&section.path) else {
        return Data::Nil;
    };
    // HEADER and TEXT below the top name an encapsulated message.
    let message = if section.path.is_empty() {
        Some(root)
    } else {
        part.message.as_deref()
    };
    match &section.text {
        Text::Full if section.path.is_empty() => Data::Range(0, root.end),
        Text::Full => Data::Range(part.body_start, part.end),
        Text::Mime => Data::Range(part.header_start, part.body_start),
        Text::Header => match message {
            Some(m) => Data::Range(m.header_start, m.body_start),
            None => Data::Nil,
        },
        Text::Body => match message {
            Some(m) => Data::Range(m.body_start, m.end),
            None => Data::Nil,
        },
        Text::Fields(names, not) => match message {
            Some(m) => Data::Bytes(filter_fields(&m.header, names, *not)),
            None => Data::Nil,
        },
    }
}

fn clip(len: u64, partial: Option<(u64, u64)>) -> (u64, u64) {
    match partial {
        Some((origin, count)) => {
            let start = origin.min(len);
            (start, count.min(len - start))
        }
        None => (0, len),
    }
}

impl Imap {
    /// The MIME tree of a message, from the cache or one scan.
    fn structure(
        &mut self,
        index: usize,
        header_only: bool,
    ) -> Option<Rc<Part>> {
        let sel = self.selected.as_mut()?;
        let uid = sel.msgs[index].uid;
        if let Some(pos) = sel.structures.iter().position(|(u, _)| *u == uid) {
            let entry = sel.structures.remove(pos);
            let part = entry.1.clone();
            sel.structures.push(entry);
            return Some(part);
        }
        let mut source = StoreSource {
            folder: &sel.folder,
            uid,
            size: sel.msgs[index].size,
        };
        let part = Rc::new(mime::scan(&mut source, header_only)?);
        if !header_only {
            if sel.structures.len() >= STRUCTURE_CACHE {
                sel.structures.remove(0);
            }
            sel.structures.push((uid, part.clone()));
        }
        Some(part)
    }

    /// Stream `len` bytes of message `uid` from `start` as a literal.
    fn stream(
        &mut self,
        uid: u32,
        start: u64,
        len: u64,
    ) -> Result<(), ReadError> {
        self.put_str(&format!("{{{len}}}\r\n"))?;
        let mut done = 0u64;
        while done < len {
            let want = (len - done).min(u64::from(READ_CHUNK)) as u32;
            let sel = self.selected.as_ref().unwrap();
            let chunk =
                sel.folder.read(uid, start + done, want).unwrap_or_default();
            if chunk.is_empty() {
                // The message vanished or shrank: keep the literal's
                // promised length.
                let pad = vec![b' '; (len - done) as usize];
                self.put(&pad)?;
                break;
            }
            let chunk = &chunk[..chunk.len().min((len - done) as usize)];
            done += chunk.len() as u64;
            self.put(chunk)?;
        }
        Ok(())
    }

    /// Decode `from..to` of message `uid` chunk by chunk, handing each
    /// piece of output to `sink`.
    fn decode_range(
        &self,
        uid: u32,
        (from, to): (u64, u64),
        encoding: Encoding,
        mut sink: impl FnMut(&[u8]) -> Result<(), ReadError>,
    ) -> Result<(), ReadError> {
        let sel = self.selected.as_ref().unwrap();
        let mut decoder = Decoder::new(encoding);
        let mut offset = from;
        let mut out = Vec::new();
        while offset < to {
            let want = (to - offset).min(u64::from(READ_CHUNK)) as u32;
            let chunk = sel.folder.read(uid, offset, want).unwrap_or_default();
            if chunk.is_empty() {
                break;
            }
            offset += chunk.len() as u64;
            out.clear();
            decoder.feed(&chunk, &mut out);
            sink(&out)?;
        }
        out.clear();
        decoder.finish(&mut out);
        sink(&out)
    }

    /// Stream the decoded bytes of a range as a literal (a literal8 when
    /// they hold a NUL), clipped to `partial`. The first pass only
    /// counts, so the length is known before the bytes go out.
    fn stream_decoded(
        &mut self,
        uid: u32,
        range: (u64, u64),
        encoding: Encoding,
        partial: Option<(u64, u64)>,
    ) -> Result<(), ReadError> {
        let (mut size, mut nul) = (0u64, false);
        self.decode_range(uid, range, encoding, |piece| {
            size += piece.len() as u64;
            nul |= piece.contains(&0);
            Ok(())
        })?;
        let (start, len) = clip(size, partial);
        let marker = if nul { "~" } else { "" };
        self.put_str(&format!("{marker}{{{len}}}\r\n"))?;

        let mut seen = 0u64;
        let mut sent = 0u64;
        let mut decoder = Decoder::new(encoding);
        let mut offset = range.0;
        let mut out = Vec::new();
        let mut last = false;
        while sent < len && !last {
            out.clear();
            let want = (range.1 - offset).min(u64::from(READ_CHUNK)) as u32;
            let sel = self.selected.as_ref().unwrap();
            let chunk = if offset < range.1 {
                sel.folder.read(uid, offset, want).unwrap_or_default()
            } else {
                Vec::new()
            };
            if chunk.is_empty() {
                decoder.finish(&mut out);
                last = true;
            } else {
                offset += chunk.len() as u64;
                decoder.feed(&chunk, &mut out);
            }
            // Skip up to `start`, then send up to `len`.
            let skip =
                start.saturating_sub(seen).min(out.len() as u64) as usize;
            seen += out.len() as u64;
            let piece = &out[skip..];
            let take = (len - sent).min(piece.len() as u64) as usize;
            sent += take as u64;
            let piece = piece[..take].to_vec();
            self.put(&piece)?;
        }
        if sent < len {
            self.put(&vec![b' '; (len - sent) as usize])?;
        }
        Ok(())
    }

    /// The decoded size of BINARY.SIZE[path]: `Ok(None)` for no such
    /// part, `Err` for a transfer encoding we cannot undo.
    fn binary_size(
        &self,
        uid: u32,
        root: &Part,
        path: &[u32],
    ) -> Result<Result<Option<u64>, ()>, ReadError> {
        match binary_data(root, path) {
            Data::Range(from, to) => Ok(Ok(Some(to.saturating_sub(from)))),
            Data::Decoded(from, to, encoding) => {
                let mut size = 0u64;
                self.decode_range(uid, (from, to), encoding, |piece| {
                    size += piece.len() as u64;
                    Ok(())
                })?;
                Ok(Ok(Some(size)))
            }
            Data::UnknownCte => Ok(Err(())),
            Data::Nil | Data::Bytes(_) => Ok(Ok(None)),
        }
    }

    pub fn fetch(
        &mut self,
        p: &mut Parser,
        uid: bool,
    ) -> Result<Reply, ReadError> {
        let args = (|| {
            let set = SeqSet::argument(p)?;
            Ok::<_, String>((set, items(p)?))
        })();
        let (set, mut wanted) = match args {
            Ok(args) => args,
            Err(e) => return Ok(Reply::Bad(e)),
        };
        if let Err(e) = self.selected.as_ref().unwrap().check(&set, uid) {
            return Ok(Reply::Bad(e));
        }
        if uid && !wanted.iter().any(|i| matches!(i, Item::Uid)) {
            wanted.insert(0, Item::Uid);
        }

        let sel = self.selected.as_ref().unwrap();
        let indexes = sel.resolve(&set, uid);
        let sets_seen = !sel.read_only
            && wanted
                .iter()
                .any(|i| matches!(i, Item::Section(s) if !s.peek));
        if sets_seen {
            let unseen: Vec<u32> = indexes
                .iter()
                .map(|&i| &sel.msgs[i])
                .filter(|m| !m.gone && !m.flags.iter().any(|f| f == "\\Seen"))
                .map(|m| m.uid)
                .collect();
            if !unseen.is_empty() {
                let sel = self.selected.as_mut().unwrap();
                if let Ok(infos) = sel.folder.set_flags(
                    &unseen,
                    FlagOperation::Add,
                    &["\\Seen".to_owned()],
                ) {
                    for info in infos {
                        if let Some(i) = sel.index_of(info.uid) {
                            sel.msgs[i].flags = info.flags;
                        }
                    }
                }
            }
        }
        let flags_sent = wanted.iter().any(|i| matches!(i, Item::Flags));

        let mut unknown_cte = false;
        for index in indexes {
            unknown_cte |=
                self.fetch_one(index, &wanted, sets_seen && !flags_sent)?;
        }
        if unknown_cte {
            return Ok(Reply::No(
                "[UNKNOWN-CTE] A part's transfer encoding cannot be decoded"
                    .into(),
            ));
        }
        Ok(Reply::Ok("FETCH completed".into()))
    }

    fn fetch_one(
        &mut self,
        index: usize,
        wanted: &[Item],
        add_flags: bool,
    ) -> Result<bool, ReadError> {
        let mut unknown_cte = false;
        let needs_tree = wanted.iter().any(|i| match i {
            Item::Body | Item::BodyStructure | Item::BinarySize(..) => true,
            Item::Section(s) => {
                !s.path.is_empty() || !matches!(s.text, Text::Full)
            }
            _ => false,
        });
        let needs_header = wanted.iter().any(|i| matches!(i, Item::Envelope));
        let tree = if needs_tree {
            self.structure(index, false)
        } else if needs_header {
            self.structure(index, true)
        } else {
            None
        };

        let sel = self.selected.as_ref().unwrap();
        let m = &sel.msgs[index];
        let (uid, size) = (m.uid, m.size);
        // Built by hand, not with `format!`: FETCH 1:* of a big mailbox
        // runs this once per message inside one CPU slice.
        let mut head = Vec::with_capacity(96);
        head.extend_from_slice(b"* ");
        push_number(&mut head, index as u64 + 1);
        head.extend_from_slice(b" FETCH (");
        let mut first = true;
        let extra_flags = [Item::Flags];
        let extra: &[Item] = if add_flags { &extra_flags } else { &[] };
        let items = wanted.iter().chain(extra);
        for item in items {
            if !first {
                head.push(b' ');
            }
            first = false;
            let sel = self.selected.as_ref().unwrap();
            let m = &sel.msgs[index];
            match item {
                Item::Flags => {
                    head.extend_from_slice(b"FLAGS ");
                    push_flags(&mut head, m, self.rev2);
                }
                Item::Uid => {
                    head.extend_from_slice(b"UID ");
                    push_number(&mut head, u64::from(uid));
                }
                Item::InternalDate => head.extend_from_slice(
                    format!("INTERNALDATE \"{}\"", format_internal(m.date))
                        .as_bytes(),
                ),
                Item::Size => {
                    head.extend_from_slice(b"RFC822.SIZE ");
                    push_number(&mut head, size);
                }
                Item::Envelope => {
                    head.extend_from_slice(b"ENVELOPE ");
                    match &tree {
                        Some(t) => head.extend_from_slice(&envelope(&t.header)),
                        None => head.extend_from_slice(&envelope(b"")),
                    }
                }
                Item::Body | Item::BodyStructure => {
                    let extended = matches!(item, Item::BodyStructure);
                    head.extend_from_slice(if extended {
                        b"BODYSTRUCTURE "
                    } else {
                        b"BODY "
                    });
                    match &tree {
                        Some(t) => body_structure(&mut head, t, extended),
                        None => head.extend_from_slice(
                            b"(\"text\" \"plain\" NIL NIL NIL \"7bit\" 0 0)",
                        ),
                    }
                }
                Item::Section(section) => {
                    let data = match &tree {
                        Some(t) => section_data(t, section),
                        None if section.path.is_empty()
                            && matches!(section.text, Text::Full) =>
                        {
                            Data::Range(0, size)
                        }
                        None => Data::Nil,
                    };
                    head.extend_from_slice(section.label.as_bytes());
                    if let Some((origin, _)) = section.partial {
                        head.extend_from_slice(
                            format!("<{origin}>").as_bytes(),
                        );
                    }
                    head.push(b' ');
                    match data {
                        Data::Nil => head.extend_from_slice(b"NIL"),
                        Data::Bytes(bytes) => {
                            let (start, len) =
                                clip(bytes.len() as u64, section.partial);
                            let slice =
                                &bytes[start as usize..(start + len) as usize];
                            head.extend_from_slice(
                                format!("{{{len}}}\r\n").as_bytes(),
                            );
                            head.extend_from_slice(slice);
                        }
                        Data::Range(from, to) => {
                            let (start, len) =
                                clip(to.saturating_sub(from), section.partial);
                            self.put(&head)?;
                            head.clear();
                            self.stream(uid, from + start, len)?;
                        }
                        Data::Decoded(from, to, encoding) => {
                            self.put(&head)?;
                            head.clear();
                            self.stream_decoded(
                                uid,
                                (from, to),
                                encoding,
                                section.partial,
                            )?;
                        }
                        Data::UnknownCte => {
                            unknown_cte = true;
                            head.extend_from_slice(b"NIL");
                        }
                    }
                }
                Item::BinarySize(path, label) => {
                    let size = match &tree {
                        Some(t) => self.binary_size(uid, t, path)?,
                        None => Ok(None),
                    };
                    let text = match size {
                        Ok(Some(size)) => format!("{label} {size}"),
                        Ok(None) => format!("{label} NIL"),
                        Err(()) => {
                            unknown_cte = true;
                            format!("{label} NIL")
                        }
                    };
                    head.extend_from_slice(text.as_bytes());
                }
            }
        }
        head.extend_from_slice(b")\r\n");
        self.put(&head)?;
        Ok(unknown_cte)
    }
}

#[cfg(test)]
mod tests {}
