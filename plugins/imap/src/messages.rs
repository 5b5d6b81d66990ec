//! STORE, COPY, MOVE, EXPUNGE and SEARCH on the selected mailbox.

use mailhost_sdk::ReadError;
use mailhost_sdk::mailbox::{FlagOperation, Folder, StoreError};

use crate::datetime::days_from_civil;
use crate::decode::{Decoder, Encoding};
use crate::fetch::StoreSource;
use crate::folders::store_no;
use crate::header;
use crate::limits::{MAX_FLAGS, MAX_PART_HEADER, READ_CHUNK};
use crate::mime;
use crate::parse::Parser;
use crate::search::{self, Candidate};
use crate::seqset::{SeqSet, render};
use crate::session::{Imap, Msg, Reply, SYSTEM_FLAGS, flag_list};

/// Check flags for STORE and APPEND: known system flags and keyword
/// atoms; `\Recent` cannot be set and is dropped.
pub fn clean_flags(flags: Vec<String>) -> Result<Vec<String>, String> {
    if flags.len() > MAX_FLAGS {
        return Err("too many flags".into());
    }
    let mut out = Vec::new();
    for flag in flags {
        if flag.eq_ignore_ascii_case("\\Recent") {
            continue;
        }
        if let Some(system) =
            SYSTEM_FLAGS.iter().find(|f| f.eq_ignore_ascii_case(&flag))
        {
            out.push((*system).to_owned());
        } else if flag.starts_with('\\') {
            return Err(format!("unknown system flag `{flag}`"));
        } else {
            out.push(flag);
        }
    }
    Ok(out)
}

impl Imap {
    fn uids_of(&self, set: &SeqSet, uid: bool) -> Vec<u32> {
        let sel = self.selected.as_ref().unwrap();
        sel.resolve(set, uid)
            .into_iter()
            .filter(|&i| !sel.msgs[i].gone)
            .map(|i| sel.msgs[i].uid)
            .collect()
    }

    pub fn store(
        &mut self,
        p: &mut Parser,
        uid: bool,
    ) -> Result<Reply, ReadError> {
        let args = (|| {
            let set = SeqSet::argument(p)?;
            let op = if p.eat(b'+') {
                FlagOperation::Add
            } else if p.eat(b'-') {
                FlagOperation::Remove
            } else {
                FlagOperation::Replace
            };
            let word = p.atom_upper()?;
            let silent = match word.as_str() {
                "FLAGS" => false,
                "FLAGS.SILENT" => true,
                other => return Err(format!("bad STORE item `{other}`")),
            };
            p.sp()?;
            let flags = if p.peek() == Some(b'(') {
                p.flag_list()?
            } else {
                let mut flags = vec![p.flag()?];
                while p.eat(b' ') {
                    flags.push(p.flag()?);
                }
                flags
            };
            p.end()?;
            Ok::<_, String>((set, op, silent, clean_flags(flags)?))
        })();
        let (set, op, silent, flags) = match args {
            Ok(args) => args,
            Err(e) => return Ok(Reply::Bad(e)),
        };
        if let Err(e) = self.selected.as_ref().unwrap().check(&set, uid) {
            return Ok(Reply::Bad(e));
        }
        if self.selected.as_ref().unwrap().read_only {
            return Ok(Reply::No("[READ-ONLY] Mailbox is read-only".into()));
        }

        let uids = self.uids_of(&set, uid);
        let sel = self.selected.as_mut().unwrap();
        let infos = match sel.folder.set_flags(&uids, op, &flags) {
            Ok(infos) => infos,
            Err(err) => return Ok(store_no(err)),
        };
        let mut out = String::new();
        for info in infos {
            let Some(i) = sel.index_of(info.uid) else {
                continue;
            };
            sel.msgs[i].flags = info.flags;
            if !silent {
                let flags = flag_list(&sel.msgs[i], self.rev2);
                if uid {
                    out.push_str(&format!(
                        "* {} FETCH (UID {} FLAGS {flags})\r\n",
                        i + 1,
                        info.uid
                    ));
                } else {
                    out.push_str(&format!(
                        "* {} FETCH (FLAGS {flags})\r\n",
                        i + 1
                    ));
                }
            }
        }
        self.put_str(&out)?;
        Ok(Reply::Ok("STORE completed".into()))
    }

    pub fn copy(
        &mut self,
        p: &mut Parser,
        uid: bool,
        moving: bool,
    ) -> Result<Reply, ReadError> {
        let args = (|| {
            let set = SeqSet::argument(p)?;
            let target = self.mailbox_arg(p)?;
            p.end()?;
            Ok::<_, String>((set, target))
        })();
        let (set, target) = match args {
            Ok(args) => args,
            Err(e) => return Ok(Reply::Bad(e)),
        };
        if let Err(e) = self.selected.as_ref().unwrap().check(&set, uid) {
            return Ok(Reply::Bad(e));
        }
        let verb = if moving { "MOVE" } else { "COPY" };
        if moving && self.selected.as_ref().unwrap().read_only {
            return Ok(Reply::No("[READ-ONLY] Mailbox is read-only".into()));
        }
        let uids = self.uids_of(&set, uid);
        if uids.is_empty() {
            return Ok(Reply::Ok(format!("{verb} completed (nothing to do)")));
        }
        let sel = self.selected.as_ref().unwrap();
        let result = if moving {
            sel.folder.move_(&uids, &target)
        } else {
            sel.folder.copy(&uids, &target)
        };
        let (validity, pairs) = match result {
            Ok(done) => done,
            Err(StoreError::NotFound) => {
                return Ok(Reply::No("[TRYCREATE] No such mailbox".into()));
            }
            Err(err) => return Ok(store_no(err)),
        };
        let sources: Vec<u32> = pairs.iter().map(|(s, _)| *s).collect();
        let targets: Vec<u32> = pairs.iter().map(|(_, t)| *t).collect();
        let code = if pairs.is_empty() {
            String::new()
        } else {
            format!(
                "[COPYUID {validity} {} {}] ",
                render(&sources),
                render(&targets)
            )
        };
        if moving {
            // RFC 6851: the COPYUID goes in an untagged OK before the
            // EXPUNGE responses.
            self.put_str(&format!("* OK {code}Moved\r\n"))?;
            self.mark_gone(&sources);
            self.flush_expunges()?;
            return Ok(Reply::Ok("MOVE completed".into()));
        }
        Ok(Reply::Ok(format!("{code}COPY completed")))
    }

    pub fn expunge(
        &mut self,
        p: &mut Parser,
        uid: bool,
    ) -> Result<Reply, ReadError> {
        let set = if uid {
            let set = (|| {
                p.sp()?;
                SeqSet::parse(p.sequence_set()?)
                    .ok_or_else(|| "bad UID set".to_owned())
            })();
            match set {
                Ok(set) => Some(set),
                Err(e) => return Ok(Reply::Bad(e)),
            }
        } else {
            None
        };
        if let Err(e) = p.end() {
            return Ok(Reply::Bad(e));
        }
        let uids = set.map(|set| self.uids_of(&set, true));
        let sel = self.selected.as_ref().unwrap();
        if sel.read_only {
            return Ok(Reply::No("[READ-ONLY] Mailbox is read-only".into()));
        }
        let removed = match sel.folder.expunge(uids.as_deref()) {
            Ok(removed) => removed,
            Err(err) => return Ok(store_no(err)),
        };
        self.mark_gone(&removed);
        self.flush_expunges()?;
        Ok(Reply::Ok("EXPUNGE completed".into()))
    }

    pub fn search(
        &mut self,
        tag: &str,
        p: &mut Parser,
        uid: bool,
    ) -> Result<Reply, ReadError> {
        // RFC 5182: a SEARCH that asked to SAVE and failed leaves `$`
        // empty.
        let mut wants_save = false;
        let args = (|| {
            p.sp()?;
            let mut returns: Option<Vec<String>> = None;
            if p.keyword("RETURN") {
                p.sp()?;
                p.expect(b'(')?;
                let mut opts = Vec::new();
                while !p.eat(b')') {
                    p.eat(b' ');
                    let opt = p.atom_upper()?;
                    if !matches!(
                        opt.as_str(),
                        "MIN" | "MAX" | "ALL" | "COUNT" | "SAVE"
                    ) {
                        return Err(format!("unknown RETURN option `{opt}`"));
                    }
                    wants_save |= opt == "SAVE";
                    opts.push(opt);
                }
                p.sp()?;
                returns = Some(opts);
            }
            if p.keyword("CHARSET") {
                p.sp()?;
                let charset = p.astring()?;
                let known = [&b"UTF-8"[..], b"US-ASCII"];
                if !known.iter().any(|k| k.eq_ignore_ascii_case(&charset)) {
                    return Ok(Err(()));
                }
                p.sp()?;
            }
            Ok(Ok((returns, search::parse_keys(p)?)))
        })();
        let parsed = match args {
            Ok(Ok(args)) => Ok(args),
            Ok(Err(())) => Err(Reply::No(
                "[BADCHARSET (UTF-8 US-ASCII)] Unknown charset".into(),
            )),
            Err(e) => Err(Reply::Bad(e)),
        };
        let max_seq = self.selected.as_ref().unwrap().msgs.len() as u32;
        let checked = parsed.and_then(|(returns, key)| {
            match search::check_sequences(&key, max_seq) {
                Ok(()) => Ok((returns, key)),
                Err(e) => Err(Reply::Bad(e)),
            }
        });
        let (returns, key) = match checked {
            Ok(args) => args,
            Err(reply) => {
                if wants_save {
                    self.selected.as_mut().unwrap().saved.clear();
                }
                return Ok(reply);
            }
        };

        let sel = self.selected.as_ref().unwrap();
        let max_uid = sel.msgs.last().map_or(0, |m| m.uid);
        let mut hits = Vec::new();
        let mut hit_uids = Vec::new();
        for (i, m) in sel.msgs.iter().enumerate() {
            let mut view = View {
                folder: &sel.folder,
                msg: m,
                seq: i as u32 + 1,
                max_seq,
                max_uid,
                saved: &sel.saved,
                header: None,
            };
            if search::matches(&key, &mut view) {
                hits.push(if uid { m.uid } else { i as u32 + 1 });
                hit_uids.push(m.uid);
            }
        }
        if wants_save {
            self.selected.as_mut().unwrap().saved = hit_uids;
            // SAVE alone asks for no ESEARCH response (RFC 5182).
            if returns.as_ref().is_some_and(|r| r.len() == 1) {
                return Ok(Reply::Ok("SEARCH completed, result saved".into()));
            }
        }

        if returns.is_none() && !self.rev2 {
            let list: Vec<String> = hits.iter().map(u32::to_string).collect();
            let mut line = String::from("* SEARCH");
            for n in list {
                line.push(' ');
                line.push_str(&n);
            }
            line.push_str("\r\n");
            self.put_str(&line)?;
        } else {
            let mut opts = returns.unwrap_or_default();
            if opts.is_empty() {
                opts.push("ALL".to_owned());
            }
            let mut line = format!("* ESEARCH (TAG \"{tag}\")");
            if uid {
                line.push_str(" UID");
            }
            for opt in &opts {
                match opt.as_str() {
                    "MIN" if !hits.is_empty() => {
                        line.push_str(&format!(" MIN {}", hits[0]))
                    }
                    "MAX" if !hits.is_empty() => {
                        line.push_str(&format!(" MAX {}", hits[hits.len() - 1]))
                    }
                    "COUNT" => line.push_str(&format!(" COUNT {}", hits.len())),
                    "ALL" if !hits.is_empty() => {
                        line.push_str(&format!(" ALL {}", render(&hits)))
                    }
                    _ => {}
                }
            }
            line.push_str("\r\n");
            self.put_str(&line)?;
        }
        Ok(Reply::Ok("SEARCH completed".into()))
    }
}

/// Read a message's header block (up to and including the blank line),
/// at most [`MAX_PART_HEADER`] bytes.
pub fn read_header(folder: &Folder, uid: u32) -> Vec<u8> {
    let mut header = Vec::new();
    while header.len() < MAX_PART_HEADER {
        let Ok(chunk) = folder.read(uid, header.len() as u64, READ_CHUNK)
        else {
            break;
        };
        if chunk.is_empty() {
            break;
        }
        let from = header.len().saturating_sub(3);
        header.extend_from_slice(&chunk);
        if let Some(end) = find(&header[from..], b"\r\n\r\n") {
            header.truncate(from + end + 4);
            return header;
        }
        if header.starts_with(b"\r\n") {
            header.truncate(2);
            return header;
        }
    }
    header.truncate(MAX_PART_HEADER);
    header
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl View<'_> {
    /// Whether the decoded bytes of `range` contain `needle`, ignoring
    /// ASCII case. The tail of each piece is kept so a match across a
    /// chunk border is found.
    fn range_contains(
        &self,
        (from, to): (u64, u64),
        encoding: Encoding,
        needle: &[u8],
    ) -> bool {
        let keep = needle.len().saturating_sub(1);
        let mut decoder = Decoder::new(encoding);
        let mut carry: Vec<u8> = Vec::new();
        let mut offset = from;
        let mut last = false;
        while !last {
            let want =
                (to.saturating_sub(offset)).min(u64::from(READ_CHUNK)) as u32;
            let chunk = if want > 0 {
                self.folder
                    .read(self.msg.uid, offset, want)
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            if chunk.is_empty() {
                decoder.finish(&mut carry);
                last = true;
            } else {
                offset += chunk.len() as u64;
                decoder.feed(&chunk, &mut carry);
            }
            if search::contains_ci(&carry, needle) {
                return true;
            }
            let cut = carry.len().saturating_sub(keep);
            carry.drain(..cut);
        }
        false
    }
}

struct View<'a> {
    folder: &'a Folder,
    msg: &'a Msg,
    seq: u32,
    max_seq: u32,
    max_uid: u32,
    saved: &'a [u32],
    header: Option<Vec<u8>>,
}

impl Candidate for View<'_> {
    fn seq(&self) -> u32 {
        self.seq
    }

    fn uid(&self) -> u32 {
        self.msg.uid
    }

    fn has_flag(&self, flag: &str) -> bool {
        if flag.eq_ignore_ascii_case("\\Recent") {
            return self.msg.recent;
        }
        self.msg.flags.iter().any(|f| f.eq_ignore_ascii_case(flag))
    }

    fn recent(&self) -> bool {
        self.msg.recent
    }

    fn size(&self) -> u64 {
        self.msg.size
    }

    fn internal_day(&self) -> i64 {
        let _ = days_from_civil;
        self.msg.date.div_euclid(86_400)
    }

    fn header(&mut self) -> &[u8] {
        if self.header.is_none() {
            self.header = Some(read_header(self.folder, self.msg.uid));
        }
        self.header.as_deref().unwrap()
    }

    fn contains(&mut self, needle: &[u8], whole: bool) -> bool {
        if whole && search::contains_ci(self.header(), needle) {
            return true;
        }
        let mut source = StoreSource {
            folder: self.folder,
            uid: self.msg.uid,
            size: self.msg.size,
        };
        let Some(root) = mime::scan(&mut source, false) else {
            return false;
        };

        // Every leaf's content with its transfer encoding undone; the
        // headers of attached messages count as text too.
        let mut parts = vec![&root];
        while let Some(part) = parts.pop() {
            if part.is_multipart() {
                parts.extend(part.children.iter());
                continue;
            }
            if let Some(inner) = &part.message {
                if search::contains_ci(&inner.header, needle) {
                    return true;
                }
                parts.push(inner);
                continue;
            }
            let cte = header::first(&part.header, "Content-Transfer-Encoding");
            let encoding = Encoding::from_header(cte.as_deref())
                .unwrap_or(Encoding::Identity);
            let range = (part.body_start, part.end);
            if self.range_contains(range, encoding, needle) {
                return true;
            }
        }
        // TODO(#7): text in charsets other than UTF-8 and US-ASCII is
        // matched as raw bytes, not converted first.
        false
    }

    fn max_seq(&self) -> u32 {
        self.max_seq
    }

    fn max_uid(&self) -> u32 {
        self.max_uid
    }

    fn in_saved(&self) -> bool {
        self.saved.binary_search(&self.msg.uid).is_ok()
    }
}
