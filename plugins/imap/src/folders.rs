//! Mailbox commands: SELECT, EXAMINE, CLOSE, UNSELECT, CREATE, DELETE,
//! RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST, LSUB and STATUS.

use mailhost_sdk::ReadError;
use mailhost_sdk::mailbox::{Changes, FolderInfo, OpenMode, StoreError};

use crate::limits::MAX_LIST_PATTERN;
use crate::parse::{Parsed, Parser};
use crate::session::{Imap, Msg, Reply, SYSTEM_FLAGS, Selected};
use crate::wire::push_astring;

/// The tagged NO for a store error.
pub fn store_no(err: StoreError) -> Reply {
    let text = match err {
        StoreError::NotFound => "[NONEXISTENT] No such mailbox",
        StoreError::AlreadyExists => "[ALREADYEXISTS] Mailbox exists already",
        StoreError::InvalidName => "[CANNOT] Invalid mailbox name",
        StoreError::InUse => "[INUSE] Mailbox in use",
        StoreError::TooLarge => "[TOOBIG] Message too large",
        StoreError::ReadOnly => "[READ-ONLY] Mailbox is read-only",
        StoreError::TemporaryFailure => "[UNAVAILABLE] Try again later",
        StoreError::InvalidArgument => "[CANNOT] Invalid request",
    };
    Reply::No(text.into())
}

/// Match a LIST pattern (`*` any, `%` any but the separator) against a
/// wire name. Dynamic programming over (pattern, name) positions, so a
/// pattern full of wildcards costs pattern × name steps, never more.
pub fn pattern_match(pattern: &[u8], name: &[u8]) -> bool {
    // reach[j]: the pattern prefix seen so far can consume name[..j].
    let mut reach = vec![false; name.len() + 1];
    reach[0] = true;
    for &c in pattern {
        let mut next = vec![false; name.len() + 1];
        match c {
            b'*' | b'%' => {
                for j in 0..=name.len() {
                    next[j] = reach[j]
                        || (j > 0
                            && next[j - 1]
                            && (c == b'*' || name[j - 1] != b'/'));
                }
            }
            _ => {
                for j in 1..=name.len() {
                    next[j] = reach[j - 1] && name[j - 1] == c;
                }
            }
        }
        reach = next;
    }
    reach[name.len()]
}

/// Apply `changes` to a snapshot the client has not been told about:
/// expunged messages simply vanish, new ones are appended.
fn absorb(msgs: &mut Vec<Msg>, changes: &Changes) {
    if !changes.expunged.is_empty() {
        msgs.retain(|m| changes.expunged.binary_search(&m.uid).is_err());
    }
    for info in &changes.flags_changed {
        if let Ok(i) = msgs.binary_search_by_key(&info.uid, |m| m.uid) {
            msgs[i].flags = info.flags.clone();
        }
    }
    for info in &changes.added {
        if msgs.last().is_none_or(|m| m.uid < info.uid) {
            msgs.push(Msg::from(info));
        }
    }
}

/// The attributes of a LIST response; `\Subscribed` only when the
/// client asked for it (LIST-EXTENDED).
fn list_attributes(folder: &FolderInfo, subscribed: bool) -> Vec<String> {
    let mut attrs = vec![if folder.has_children {
        "\\HasChildren".to_owned()
    } else {
        "\\HasNoChildren".to_owned()
    }];
    if let Some(special) = &folder.special_use {
        attrs.push(format!("\\{special}"));
    }
    if subscribed && folder.subscribed {
        attrs.push("\\Subscribed".to_owned());
    }
    attrs
}

/// Canonical INBOX spelling of a pattern or name prefix.
fn inbox_fold(text: &[u8]) -> Vec<u8> {
    if text.len() >= 5
        && text[..5].eq_ignore_ascii_case(b"INBOX")
        && (text.len() == 5 || text[5] == b'/')
    {
        let mut out = b"INBOX".to_vec();
        out.extend_from_slice(&text[5..]);
        return out;
    }
    text.to_vec()
}

impl Imap {
    pub fn select(
        &mut self,
        p: &mut Parser,
        read_only: bool,
    ) -> Result<Reply, ReadError> {
        let name = match (|| {
            p.sp()?;
            let name = self.mailbox_arg(p)?;
            // Parameters such as (CONDSTORE) are not supported.
            p.end()?;
            Ok::<_, String>(name)
        })() {
            Ok(name) => name,
            Err(e) => return Ok(Reply::Bad(e)),
        };

        // A failed SELECT still leaves no mailbox selected (RFC 3501).
        if self.selected.take().is_some() && self.rev2 {
            self.put_str("* OK [CLOSED] Previous mailbox closed\r\n")?;
        }
        let account = self.account.as_ref().unwrap();
        let mode = if read_only {
            OpenMode::ReadOnly
        } else {
            OpenMode::ReadWrite
        };
        let folder = match account.open(&name, mode) {
            Ok(folder) => folder,
            Err(err) => return Ok(store_no(err)),
        };
        let mut msgs: Vec<Msg> =
            folder.messages().into_iter().map(Msg::from).collect();
        let uid_validity = folder.uid_validity();

        // The snapshot may already be behind: take in what changed since
        // it was made (the client has seen none of it yet, so nothing is
        // owed), and learn UIDNEXT, which only a refresh reports.
        let uid_next = match folder.refresh() {
            Ok(changes) => {
                absorb(&mut msgs, &changes);
                changes.uid_next
            }
            Err(_) => msgs.last().map_or(1, |m| m.uid + 1),
        };

        let mut keywords: Vec<String> = Vec::new();
        for m in &msgs {
            for flag in &m.flags {
                if !flag.starts_with('\\') && !keywords.contains(flag) {
                    keywords.push(flag.clone());
                }
            }
        }
        keywords.sort();
        let mut flags: Vec<&str> = SYSTEM_FLAGS.to_vec();
        flags.extend(keywords.iter().map(String::as_str));
        let exists = msgs.len();
        let recent = msgs.iter().filter(|m| m.recent).count();
        let unseen = msgs
            .iter()
            .position(|m| !m.flags.iter().any(|f| f == "\\Seen"));

        let mut out = format!("* FLAGS ({})\r\n", flags.join(" "));
        out.push_str(&format!("* {exists} EXISTS\r\n"));
        if !self.rev2 {
            // IMAP4rev2 has no RECENT response (RFC 9051 appendix E).
            out.push_str(&format!("* {recent} RECENT\r\n"));
        }
        match unseen {
            // IMAP4rev2 dropped the UNSEEN code (RFC 9051 appendix E).
            Some(i) if !self.rev2 => out
                .push_str(&format!("* OK [UNSEEN {}] First unseen\r\n", i + 1)),
            _ => {}
        }
        out.push_str(&format!(
            "* OK [UIDVALIDITY {uid_validity}] UIDs valid\r\n"
        ));
        out.push_str(&format!(
            "* OK [UIDNEXT {uid_next}] Predicted next UID\r\n"
        ));
        if read_only {
            out.push_str("* OK [PERMANENTFLAGS ()] Read-only mailbox\r\n");
        } else {
            out.push_str(&format!(
                "* OK [PERMANENTFLAGS ({} \\*)] Flags permitted\r\n",
                flags.join(" ")
            ));
        }
        if self.rev2 {
            // RFC 9051 6.3.2: SELECT also answers with the LIST response
            // of the mailbox, in its canonical spelling.
            out.push_str(&self.select_list_line(&name));
        }
        self.put_str(&out)?;

        self.selected = Some(Selected {
            folder,
            name,
            read_only,
            msgs,
            uid_next,
            structures: Vec::new(),
            fresh: true,
            refreshed_at: std::time::Instant::now(),
            saved: Vec::new(),
        });
        let (code, verb) = if read_only {
            ("READ-ONLY", "EXAMINE")
        } else {
            ("READ-WRITE", "SELECT")
        };
        Ok(Reply::Ok(format!("[{code}] {verb} completed")))
    }

    /// Messages flagged `\Deleted` in folder `name`.
    fn count_deleted(&self, name: &str) -> Result<u64, StoreError> {
        let is_deleted =
            |flags: &[String]| flags.iter().any(|f| f == "\\Deleted");
        if let Some(sel) = self.selected.as_ref().filter(|s| s.name == name) {
            let live = sel.msgs.iter().filter(|m| !m.gone);
            return Ok(live.filter(|m| is_deleted(&m.flags)).count() as u64);
        }
        let account = self.account.as_ref().unwrap();
        let folder = account.open(name, OpenMode::ReadOnly)?;
        let messages = folder.messages();
        Ok(messages.iter().filter(|m| is_deleted(&m.flags)).count() as u64)
    }

    /// The `* LIST` line SELECT sends under IMAP4rev2.
    fn select_list_line(&self, name: &str) -> String {
        let account = self.account.as_ref().unwrap();
        let info = account
            .list_folders()
            .ok()
            .and_then(|all| all.into_iter().find(|f| f.name == name));
        let attrs = match &info {
            Some(info) => list_attributes(info, false),
            None => Vec::new(),
        };
        let mut line =
            format!("* LIST ({}) \"/\" ", attrs.join(" ")).into_bytes();
        push_astring(&mut line, self.wire_name(name).as_bytes());
        line.extend_from_slice(b"\r\n");
        String::from_utf8_lossy(&line).into_owned()
    }

    /// CLOSE (expunging silently when `expunge`) and UNSELECT.
    pub fn close(
        &mut self,
        p: &mut Parser,
        expunge: bool,
    ) -> Result<Reply, ReadError> {
        if let Err(e) = p.end() {
            return Ok(Reply::Bad(e));
        }
        let sel = self.selected.take().unwrap();
        if expunge && !sel.read_only {
            let _ = sel.folder.expunge(None);
        }
        Ok(Reply::Ok(
            if expunge {
                "CLOSE completed"
            } else {
                "UNSELECT completed"
            }
            .into(),
        ))
    }

    fn one_name(&self, p: &mut Parser) -> Result<String, String> {
        p.sp()?;
        let name = self.mailbox_arg(p)?;
        p.end()?;
        Ok(name)
    }

    pub fn create(&mut self, p: &mut Parser) -> Result<Reply, ReadError> {
        let name = match self.one_name(p) {
            Ok(name) => name,
            Err(e) => return Ok(Reply::Bad(e)),
        };
        if name == "INBOX" {
            return Ok(Reply::No("[ALREADYEXISTS] INBOX always exists".into()));
        }
        match self.account.as_ref().unwrap().create_folder(&name) {
            Ok(()) => Ok(Reply::Ok("CREATE completed".into())),
            Err(err) => Ok(store_no(err)),
        }
    }

    pub fn delete(&mut self, p: &mut Parser) -> Result<Reply, ReadError> {
        let name = match self.one_name(p) {
            Ok(name) => name,
            Err(e) => return Ok(Reply::Bad(e)),
        };
        if name == "INBOX" {
            return Ok(Reply::No("[CANNOT] INBOX cannot be deleted".into()));
        }
        if self.selected.as_ref().is_some_and(|s| s.name == name) {
            self.selected = None;
        }
        match self.account.as_ref().unwrap().delete_folder(&name) {
            Ok(()) => Ok(Reply::Ok("DELETE completed".into())),
            Err(err) => Ok(store_no(err)),
        }
    }

    pub fn rename(&mut self, p: &mut Parser) -> Result<Reply, ReadError> {
        let names = (|| {
            p.sp()?;
            let old = self.mailbox_arg(p)?;
            p.sp()?;
            let new = self.mailbox_arg(p)?;
            p.end()?;
            Ok::<_, String>((old, new))
        })();
        let (old, new) = match names {
            Ok(names) => names,
            Err(e) => return Ok(Reply::Bad(e)),
        };
        match self.account.as_ref().unwrap().rename_folder(&old, &new) {
            Ok(()) => Ok(Reply::Ok("RENAME completed".into())),
            Err(err) => Ok(store_no(err)),
        }
    }

    pub fn subscribe(
        &mut self,
        p: &mut Parser,
        on: bool,
    ) -> Result<Reply, ReadError> {
        let name = match self.one_name(p) {
            Ok(name) => name,
            Err(e) => return Ok(Reply::Bad(e)),
        };
        match self.account.as_ref().unwrap().set_subscribed(&name, on) {
            Ok(()) => Ok(Reply::Ok("Subscription changed".into())),
            Err(err) => Ok(store_no(err)),
        }
    }

    /// LIST and LSUB, with the LIST-EXTENDED selection `(SUBSCRIBED)` and
    /// `(SPECIAL-USE)` and a RETURN list read leniently.
    pub fn list(
        &mut self,
        p: &mut Parser,
        lsub: bool,
    ) -> Result<Reply, ReadError> {
        let args = (|| {
            p.sp()?;
            let mut only_subscribed = lsub;
            let mut only_special = false;
            if !lsub && p.eat(b'(') {
                while !p.eat(b')') {
                    p.eat(b' ');
                    match p.atom_upper()?.as_str() {
                        "SUBSCRIBED" => only_subscribed = true,
                        "SPECIAL-USE" => only_special = true,
                        _ => {}
                    }
                }
                p.sp()?;
            }
            let reference = p.astring()?;
            p.sp()?;
            let mut patterns = Vec::new();
            if !lsub && p.eat(b'(') {
                while !p.eat(b')') {
                    p.eat(b' ');
                    patterns.push(p.list_mailbox()?);
                }
            } else {
                patterns.push(p.list_mailbox()?);
            }
            let mut return_subscribed = false;
            // RETURN (STATUS (...)): RFC 5819, part of IMAP4rev2.
            let mut return_status = None;
            if p.eat(b' ') {
                if !p.keyword("RETURN") {
                    return Err("expected RETURN".to_owned());
                }
                p.sp()?;
                p.expect(b'(')?;
                while !p.eat(b')') {
                    p.eat(b' ');
                    match p.atom_upper()?.as_str() {
                        "SUBSCRIBED" => return_subscribed = true,
                        "STATUS" => {
                            p.sp()?;
                            return_status = Some(status_items(p)?);
                        }
                        _ => {}
                    }
                }
            }
            p.end()?;
            Ok::<_, String>((
                reference,
                patterns,
                only_subscribed,
                only_special,
                return_subscribed,
                return_status,
            ))
        })();
        let (
            reference,
            patterns,
            only_subscribed,
            only_special,
            return_subscribed,
            return_status,
        ) = match args {
            Ok(args) => args,
            Err(e) => return Ok(Reply::Bad(e)),
        };
        let verb = if lsub { "LSUB" } else { "LIST" };
        let too_long =
            |p: &Vec<u8>| reference.len() + p.len() > MAX_LIST_PATTERN;
        if patterns.iter().any(too_long) {
            return Ok(Reply::Bad("pattern too long".into()));
        }

        if patterns.len() == 1 && patterns[0].is_empty() {
            self.put_str(&format!("* {verb} (\\Noselect) \"/\" \"\"\r\n"))?;
            return Ok(Reply::Ok(format!("{verb} completed")));
        }

        let folders = match self.account.as_ref().unwrap().list_folders() {
            Ok(folders) => folders,
            Err(err) => return Ok(store_no(err)),
        };
        let patterns: Vec<Vec<u8>> = patterns
            .iter()
            .map(|pat| {
                let mut full = reference.clone();
                if pat.starts_with(b"/") && full.ends_with(b"/") {
                    full.pop();
                }
                full.extend_from_slice(pat);
                inbox_fold(&full)
            })
            .collect();

        let mut out = Vec::new();
        for folder in &folders {
            if (only_subscribed && !folder.subscribed)
                || (only_special && folder.special_use.is_none())
            {
                continue;
            }
            let wire = self.wire_name(&folder.name);
            let wire_folded = inbox_fold(wire.as_bytes());
            if !patterns.iter().any(|pat| pattern_match(pat, &wire_folded)) {
                continue;
            }
            let subscribed = (return_subscribed || only_subscribed) && !lsub;
            let attrs = list_attributes(folder, subscribed);
            out.extend_from_slice(
                format!("* {verb} ({}) \"/\" ", attrs.join(" ")).as_bytes(),
            );
            push_astring(&mut out, wire.as_bytes());
            out.extend_from_slice(b"\r\n");
            // A folder whose counters cannot be read gets its LIST line
            // only (RFC 5819).
            if let Some(items) = &return_status
                && let Ok(line) = self.status_line(&folder.name, items)
            {
                out.extend_from_slice(&line);
            }
        }
        self.put(&out)?;
        Ok(Reply::Ok(format!("{verb} completed")))
    }

    pub fn status(&mut self, p: &mut Parser) -> Result<Reply, ReadError> {
        let args = (|| {
            p.sp()?;
            let name = self.mailbox_arg(p)?;
            p.sp()?;
            let items = status_items(p)?;
            p.end()?;
            Ok::<_, String>((name, items))
        })();
        let (name, items) = match args {
            Ok(args) => args,
            Err(e) => return Ok(Reply::Bad(e)),
        };
        match self.status_line(&name, &items) {
            Ok(line) => self.put(&line)?,
            Err(err) => return Ok(store_no(err)),
        }
        Ok(Reply::Ok("STATUS completed".into()))
    }

    /// The `* STATUS` response for folder `name`.
    fn status_line(
        &self,
        name: &str,
        items: &[String],
    ) -> Result<Vec<u8>, StoreError> {
        let status = self.account.as_ref().unwrap().status(name)?;
        // RFC 9051 STATUS DELETED: the store keeps no such counter, so
        // count the flags of a snapshot, only when asked.
        let deleted = if items.iter().any(|i| i == "DELETED") {
            self.count_deleted(name)?
        } else {
            0
        };
        let values: Vec<String> = items
            .iter()
            .map(|item| {
                let value = match item.as_str() {
                    "DELETED" => deleted,
                    "MESSAGES" => u64::from(status.messages),
                    "RECENT" => u64::from(status.recent),
                    "UIDNEXT" => u64::from(status.uid_next),
                    "UIDVALIDITY" => u64::from(status.uid_validity),
                    "UNSEEN" => u64::from(status.unseen),
                    _ => status.size,
                };
                format!("{item} {value}")
            })
            .collect();
        let mut out = b"* STATUS ".to_vec();
        push_astring(&mut out, self.wire_name(name).as_bytes());
        out.extend_from_slice(
            format!(" ({})\r\n", values.join(" ")).as_bytes(),
        );
        Ok(out)
    }
}

/// A parenthesised list of STATUS items, upper-cased.
fn status_items(p: &mut Parser) -> Parsed<Vec<String>> {
    p.expect(b'(')?;
    let mut items = Vec::new();
    while !p.eat(b')') {
        p.eat(b' ');
        let item = p.atom_upper()?;
        match item.as_str() {
            "MESSAGES" | "RECENT" | "UIDNEXT" | "UIDVALIDITY" | "UNSEEN"
            | "SIZE" | "DELETED" => items.push(item),
            other => return Err(format!("unknown STATUS item `{other}`")),
        }
    }
    Ok(items)
}
