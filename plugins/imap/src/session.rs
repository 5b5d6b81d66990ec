//! The session: state, the command loop, dispatch, and the selected
//! mailbox's mirror of the store snapshot with its untagged updates.

use std::time::{Duration, Instant};

use mailhost_sdk::mailbox::{Account, Folder, MessageInfo, WaitEvent};
use mailhost_sdk::{Connection, Level, ReadError, Session};

use crate::limits::{MAX_BAD_COMMANDS, MAX_SNAPSHOT_AGE_MS, OUTPUT_HIGH_WATER};
use crate::mime::Part;
use crate::parse::{Parsed, Parser};
use crate::seqset::SeqSet;
use crate::utf7;
use crate::wire::{self, Incoming};

/// How a command ended: the tagged status and its text (response code
/// included).
pub enum Reply {
    Ok(String),
    No(String),
    Bad(String),
}

impl From<String> for Reply {
    fn from(text: String) -> Reply {
        Reply::Bad(text)
    }
}

/// One message of the selected mailbox as the client knows it.
pub struct Msg {
    pub uid: u32,
    pub flags: Vec<String>,
    pub size: u64,
    pub date: i64,
    pub recent: bool,
    /// Expunged in the store; the EXPUNGE response is still owed (it may
    /// not be sent during FETCH, STORE or SEARCH, RFC 3501 7.4.1).
    pub gone: bool,
}

impl From<&MessageInfo> for Msg {
    fn from(info: &MessageInfo) -> Msg {
        Msg::from(info.clone())
    }
}

impl From<MessageInfo> for Msg {
    fn from(info: MessageInfo) -> Msg {
        Msg {
            uid: info.uid,
            flags: info.flags,
            size: info.size,
            date: info.internal_date,
            recent: info.recent,
            gone: false,
        }
    }
}

pub struct Selected {
    pub folder: Folder,
    pub name: String,
    pub read_only: bool,
    pub msgs: Vec<Msg>,
    pub uid_next: u32,
    /// Recently parsed MIME trees, by UID, newest last.
    pub structures: Vec<(u32, std::rc::Rc<Part>)>,
    /// SELECT refreshed the snapshot a moment ago: the update pass after
    /// it need not even ask the host whether anything changed.
    pub fresh: bool,
    /// When the snapshot was last refreshed (see [`Imap::sync`]).
    pub refreshed_at: Instant,
    /// UIDs kept by the last `SEARCH RETURN (SAVE)`, ascending: what `$`
    /// stands for (RFC 5182). Empty after a SELECT or a failed SAVE.
    pub saved: Vec<u32>,
}

impl Selected {
    pub fn index_of(&self, uid: u32) -> Option<usize> {
        self.msgs.binary_search_by_key(&uid, |m| m.uid).ok()
    }

    /// Refuse a sequence set naming messages past the end; a UID set
    /// may name any UIDs, and those that do not exist pick nothing.
    pub fn check(&self, set: &SeqSet, uid: bool) -> Result<(), String> {
        if uid {
            return Ok(());
        }
        set.check_sequence(self.msgs.len() as u32)
    }

    /// Indexes picked by a sequence or UID set, ascending.
    pub fn resolve(&self, set: &SeqSet, uid: bool) -> Vec<usize> {
        if set.is_saved() {
            // `$` holds UIDs, whichever form the command takes.
            return (0..self.msgs.len())
                .filter(|&i| {
                    self.saved.binary_search(&self.msgs[i].uid).is_ok()
                })
                .collect();
        }
        if uid {
            let keys: Vec<u32> = self.msgs.iter().map(|m| m.uid).collect();
            let max = keys.last().copied().unwrap_or(0);
            set.select(&keys, max)
        } else {
            let n = self.msgs.len() as u32;
            let keys: Vec<u32> = (1..=n).collect();
            set.select(&keys, n)
        }
    }
}

#[derive(PartialEq, Eq, Clone, Copy)]
pub enum State {
    NotAuthenticated,
    Authenticated,
    Selected,
}

pub struct Imap {
    pub session: Session,
    pub account: Option<Account>,
    pub selected: Option<Selected>,
    /// IMAP4rev2 was enabled: UTF-8 mailbox names, ESEARCH replies.
    pub rev2: bool,
    pub auth_failures: u32,
    /// STARTTLS said OK: upgrade once that reply is out.
    pub tls_pending: bool,
    /// The listener setting `literal-minus`: advertise LITERAL- instead
    /// of LITERAL+ and refuse non-synchronising literals over 4096 bytes
    /// (RFC 7888 section 5). A server offers one or the other.
    pub literal_minus: bool,
    bad_in_row: u32,
    queued: usize,
}

/// Flags the store keeps for every message.
pub const SYSTEM_FLAGS: [&str; 5] =
    ["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"];

/// Whether the session should go on after a command.
pub enum Flow {
    Continue,
    Stop,
}

impl Imap {
    pub fn new(conn: Connection) -> Imap {
        Imap {
            session: Session::new(conn),
            account: None,
            selected: None,
            rev2: false,
            auth_failures: 0,
            tls_pending: false,
            literal_minus: mailhost_sdk::settings::get("literal-minus")
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
            bad_in_row: 0,
            queued: 0,
        }
    }

    pub fn state(&self) -> State {
        if self.selected.is_some() {
            State::Selected
        } else if self.account.is_some() {
            State::Authenticated
        } else {
            State::NotAuthenticated
        }
    }

    /// Queue output, flushing in pieces so a large response never piles
    /// up in memory.
    pub fn put(&mut self, data: &[u8]) -> Result<(), ReadError> {
        self.session.queue(data);
        self.queued += data.len();
        if self.queued >= OUTPUT_HIGH_WATER {
            self.queued = 0;
            self.session.flush()?;
        }
        Ok(())
    }

    pub fn put_str(&mut self, text: &str) -> Result<(), ReadError> {
        self.put(text.as_bytes())
    }

    pub fn log(&self, level: Level, message: &str) {
        mailhost_sdk::log(level, message);
    }

    /// The mailbox name for the wire: modified UTF-7, or UTF-8 under
    /// IMAP4rev2.
    pub fn wire_name(&self, name: &str) -> String {
        if self.rev2 {
            name.to_owned()
        } else {
            utf7::encode(name)
        }
    }

    /// A mailbox argument as a store name. `INBOX` in any case is the
    /// inbox.
    pub fn mailbox_arg(&self, p: &mut Parser) -> Parsed<String> {
        let raw = p.astring()?;
        let text =
            String::from_utf8(raw).map_err(|_| "mailbox name is not UTF-8")?;
        let name = if self.rev2 {
            text
        } else {
            utf7::decode(&text).ok_or("mailbox name is not modified UTF-7")?
        };
        let name = name.trim_end_matches('/').to_owned();
        if name.eq_ignore_ascii_case("INBOX") {
            return Ok("INBOX".to_owned());
        }
        match name.split_once('/') {
            Some((first, rest)) if first.eq_ignore_ascii_case("INBOX") => {
                Ok(format!("INBOX/{rest}"))
            }
            _ => Ok(name),
        }
    }

    pub fn run(mut self) {
        let greeting = mailhost_sdk::settings::get("hostname")
            .unwrap_or_else(|| "mailhost".to_owned());
        let caps = self.capabilities();
        let hello =
            format!("* OK [CAPABILITY {caps}] {greeting} IMAP ready\r\n");
        self.session.queue(hello.as_bytes());

        loop {
            let read =
                wire::read_command(&mut self.session, self.literal_minus);
            let incoming = match read {
                Ok(incoming) => incoming,
                Err(err) => {
                    self.goodbye(err);
                    return;
                }
            };
            let flow = match self.handle(incoming) {
                Ok(flow) => flow,
                Err(err) => {
                    self.goodbye(err);
                    return;
                }
            };
            if let Flow::Stop = flow {
                return;
            }
        }
    }

    /// The goodbye for a read that ended the session.
    pub fn goodbye(&mut self, err: ReadError) {
        let text = match err {
            ReadError::Closed => return,
            ReadError::Timeout => "* BYE Autologout; idle for too long\r\n",
            ReadError::ShuttingDown => {
                "* BYE [UNAVAILABLE] Server shutting down\r\n"
            }
            ReadError::Expired => "* BYE Session too long\r\n",
        };
        let _ = self.session.write_all(text.as_bytes());
    }

    fn handle(&mut self, incoming: Incoming) -> Result<Flow, ReadError> {
        let buf = match incoming {
            Incoming::Command(buf) => buf,
            Incoming::Append { head, size, sync } => {
                let tag = wire::tag_of(&head);
                let reply = self.append(&head, size, sync)?;
                return self.finish(&tag, reply, true, false);
            }
            Incoming::TooLong { tag } => {
                self.put_str(&format!("{tag} BAD Command line too long\r\n"))?;
                self.put_str("* BYE Command line too long\r\n")?;
                return Ok(Flow::Stop);
            }
            Incoming::LiteralTooLarge { tag, skipped } => {
                self.put_str(&format!(
                    "{tag} BAD [TOOBIG] Literal too large\r\n"
                ))?;
                if skipped {
                    return self.count_bad();
                }
                // Its bytes are already on the way: they must never run
                // as commands.
                self.put_str("* BYE Literal too large\r\n")?;
                return Ok(Flow::Stop);
            }
        };

        let mut p = Parser::new(&buf);
        let tag = match p.tag() {
            Ok(tag)
                if tag.len() <= crate::limits::MAX_TAG && p.sp().is_ok() =>
            {
                tag
            }
            _ => {
                if buf.is_empty() {
                    return Ok(Flow::Continue);
                }
                self.put_str("* BAD Missing or malformed tag\r\n")?;
                return self.count_bad();
            }
        };
        let command = match p.atom_upper() {
            Ok(command) => command,
            Err(_) => {
                self.put_str(&format!("{tag} BAD Missing command\r\n"))?;
                return self.count_bad();
            }
        };

        if command == "LOGOUT" {
            self.put_str("* BYE Logging out\r\n")?;
            self.put_str(&format!("{tag} OK LOGOUT completed\r\n"))?;
            return Ok(Flow::Stop);
        }
        let (reply, allow_expunge) = self.dispatch(&tag, &command, &mut p)?;
        // NOOP and CHECK are how clients poll (RFC 3501 6.1.2, 6.4.1):
        // they always rescan the folder.
        let rescan = matches!(command.as_str(), "NOOP" | "CHECK");
        let flow = self.finish(&tag, reply, allow_expunge, rescan)?;
        if self.tls_pending {
            self.tls_pending = false;
            self.session.flush()?;
            self.start_tls_now()?;
        }
        Ok(flow)
    }

    /// Send pending updates and the tagged reply.
    fn finish(
        &mut self,
        tag: &str,
        reply: Reply,
        allow_expunge: bool,
        rescan: bool,
    ) -> Result<Flow, ReadError> {
        self.sync(allow_expunge, rescan)?;
        let (status, text, bad) = match reply {
            Reply::Ok(text) => ("OK", text, false),
            Reply::No(text) => ("NO", text, false),
            Reply::Bad(text) => ("BAD", text, true),
        };
        let text = text.replace(['\r', '\n'], " ");
        self.put_str(&format!("{tag} {status} {text}\r\n"))?;
        if bad {
            return self.count_bad();
        }
        self.bad_in_row = 0;
        Ok(Flow::Continue)
    }

    fn count_bad(&mut self) -> Result<Flow, ReadError> {
        self.bad_in_row += 1;
        if self.bad_in_row >= MAX_BAD_COMMANDS {
            self.put_str("* BYE Too many bad commands\r\n")?;
            return Ok(Flow::Stop);
        }
        Ok(Flow::Continue)
    }

    /// Run one command; returns its reply and whether EXPUNGE responses
    /// may follow it.
    fn dispatch(
        &mut self,
        tag: &str,
        command: &str,
        p: &mut Parser,
    ) -> Result<(Reply, bool), ReadError> {
        let state = self.state();
        let authed = state != State::NotAuthenticated;
        let selected = state == State::Selected;
        let need = |ok: bool, what: &str| -> Option<Reply> {
            (!ok).then(|| Reply::Bad(format!("{command} needs {what}")))
        };

        let uid = command == "UID";
        let command = if uid {
            if p.sp().is_err() {
                return Ok((Reply::Bad("UID needs a command".into()), true));
            }
            match p.atom_upper() {
                Ok(sub) => sub,
                Err(e) => return Ok((Reply::Bad(e), true)),
            }
        } else {
            command.to_owned()
        };
        let uid_ok = matches!(
            command.as_str(),
            "FETCH" | "STORE" | "COPY" | "MOVE" | "SEARCH" | "EXPUNGE"
        );
        if uid && !uid_ok {
            return Ok((
                Reply::Bad(format!("UID {command} is not a command")),
                true,
            ));
        }
        // RFC 3501 7.4.1: no EXPUNGE during FETCH, STORE or SEARCH.
        let allow_expunge = uid
            || !matches!(
                command.as_str(),
                "FETCH" | "STORE" | "SEARCH" | "COPY"
            );

        let reply = match command.as_str() {
            "CAPABILITY" => self.capability(p)?,
            "NOOP" => no_args(p, Reply::Ok("NOOP completed".into())),
            "ID" => self.id(p)?,
            "STARTTLS" => match need(!authed, "the not authenticated state") {
                Some(r) => r,
                None => self.starttls(p)?,
            },
            "LOGIN" => match need(!authed, "the not authenticated state") {
                Some(r) => r,
                None => self.login(p)?,
            },
            "AUTHENTICATE" => {
                match need(!authed, "the not authenticated state") {
                    Some(r) => r,
                    None => self.authenticate(p)?,
                }
            }
            "ENABLE" => match need(
                state == State::Authenticated,
                "the authenticated state",
            ) {
                Some(r) => r,
                None => self.enable(p)?,
            },
            "SELECT" | "EXAMINE" | "CREATE" | "DELETE" | "RENAME"
            | "SUBSCRIBE" | "UNSUBSCRIBE" | "LIST" | "LSUB" | "STATUS"
            | "NAMESPACE" | "IDLE"
                if !authed =>
            {
                Reply::Bad(format!("{command} needs a login first"))
            }
            "SELECT" => self.select(p, false)?,
            "EXAMINE" => self.select(p, true)?,
            "CREATE" => self.create(p)?,
            "DELETE" => self.delete(p)?,
            "RENAME" => self.rename(p)?,
            "SUBSCRIBE" => self.subscribe(p, true)?,
            "UNSUBSCRIBE" => self.subscribe(p, false)?,
            "LIST" => self.list(p, false)?,
            "LSUB" => self.list(p, true)?,
            "STATUS" => self.status(p)?,
            "NAMESPACE" => no_args(p, Reply::Ok("NAMESPACE completed".into())),
            "IDLE" => self.idle(tag, p)?,
            "CHECK" | "CLOSE" | "UNSELECT" | "EXPUNGE" | "FETCH" | "STORE"
            | "COPY" | "MOVE" | "SEARCH"
                if !selected =>
            {
                Reply::Bad(format!("{command} needs a selected mailbox"))
            }
            "CHECK" => no_args(p, Reply::Ok("CHECK completed".into())),
            "CLOSE" => self.close(p, true)?,
            "UNSELECT" => self.close(p, false)?,
            "EXPUNGE" => self.expunge(p, uid)?,
            "FETCH" => self.fetch(p, uid)?,
            "STORE" => self.store(p, uid)?,
            "COPY" => self.copy(p, uid, false)?,
            "MOVE" => self.copy(p, uid, true)?,
            "SEARCH" => self.search(tag, p, uid)?,
            "APPEND" => Reply::Bad("APPEND needs a message literal".into()),
            other => Reply::Bad(format!("unknown command `{other}`")),
        };
        if command == "NAMESPACE" && matches!(reply, Reply::Ok(_)) {
            self.put_str("* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n")?;
        }
        Ok((reply, allow_expunge))
    }

    /// Take in what changed in the store and tell the client.
    ///
    /// The refresh rescans the whole folder (over 100 ms at 100,000
    /// messages), so it is skipped when the host reports no change since
    /// the last one and the snapshot is younger than
    /// [`MAX_SNAPSHOT_AGE_MS`]; `rescan` forces it. Changes made through
    /// the host (deliveries, appends, other sessions) are reported at
    /// once; files an outside program drops into the Maildir show up
    /// within that age.
    pub fn sync(
        &mut self,
        allow_expunge: bool,
        rescan: bool,
    ) -> Result<(), ReadError> {
        let Some(sel) = self.selected.as_mut() else {
            return Ok(());
        };
        let young = sel.refreshed_at.elapsed()
            < Duration::from_millis(MAX_SNAPSHOT_AGE_MS);
        // SELECT refreshed a moment ago; otherwise ask the host, without
        // waiting, whether anything changed. Pending input says nothing
        // about changes, so it refreshes too.
        let unchanged = !rescan
            && young
            && (std::mem::take(&mut sel.fresh)
                || matches!(
                    sel.folder.wait(self.session.connection(), 0),
                    Ok(WaitEvent::Timeout)
                ));
        if unchanged {
            if allow_expunge {
                self.flush_expunges()?;
            }
            return Ok(());
        }
        sel.fresh = false;

        let changes = match sel.folder.refresh() {
            Ok(changes) => {
                sel.refreshed_at = Instant::now();
                changes
            }
            Err(err) => {
                mailhost_sdk::log(
                    Level::Warn,
                    &format!("refresh failed: {err:?}"),
                );
                return Ok(());
            }
        };
        sel.uid_next = changes.uid_next;

        let mut out = Vec::new();
        for uid in &changes.expunged {
            if let Some(i) = sel.index_of(*uid) {
                sel.msgs[i].gone = true;
            }
        }
        for info in &changes.flags_changed {
            if let Some(i) = sel.index_of(info.uid)
                && !sel.msgs[i].gone
                && sel.msgs[i].flags != info.flags
            {
                sel.msgs[i].flags = info.flags.clone();
                let flags = flag_list(&sel.msgs[i], self.rev2);
                out.extend_from_slice(
                    format!(
                        "* {} FETCH (UID {} FLAGS {flags})\r\n",
                        i + 1,
                        info.uid
                    )
                    .as_bytes(),
                );
            }
        }
        let before = sel.msgs.len();
        for info in &changes.added {
            if sel.msgs.last().is_none_or(|m| m.uid < info.uid) {
                sel.msgs.push(Msg::from(info));
            }
        }
        let added = sel.msgs.len() > before;
        self.put(&out)?;
        if allow_expunge {
            self.flush_expunges()?;
        }
        if added {
            let sel = self.selected.as_ref().unwrap();
            let exists = sel.msgs.len();
            let recent = sel.msgs.iter().filter(|m| m.recent).count();
            let mut text = format!("* {exists} EXISTS\r\n");
            if !self.rev2 {
                text.push_str(&format!("* {recent} RECENT\r\n"));
            }
            self.put_str(&text)?;
        }
        Ok(())
    }

    /// Send the EXPUNGE responses owed and drop those messages.
    pub fn flush_expunges(&mut self) -> Result<(), ReadError> {
        let Some(sel) = self.selected.as_mut() else {
            return Ok(());
        };
        let mut out = String::new();
        let mut removed = 0;
        for (i, m) in sel.msgs.iter().enumerate() {
            if m.gone {
                out.push_str(&format!("* {} EXPUNGE\r\n", i + 1 - removed));
                removed += 1;
            }
        }
        if removed > 0 {
            sel.msgs.retain(|m| !m.gone);
            let live: Vec<u32> = sel.msgs.iter().map(|m| m.uid).collect();
            sel.structures
                .retain(|(uid, _)| live.binary_search(uid).is_ok());
        }
        self.put_str(&out)
    }

    /// Mark UIDs expunged by this session's own EXPUNGE/MOVE.
    pub fn mark_gone(&mut self, uids: &[u32]) {
        if let Some(sel) = self.selected.as_mut() {
            for uid in uids {
                if let Some(i) = sel.index_of(*uid) {
                    sel.msgs[i].gone = true;
                }
            }
        }
    }
}

/// A command that takes no arguments.
pub fn no_args(p: &mut Parser, reply: Reply) -> Reply {
    match p.end() {
        Ok(()) => reply,
        Err(e) => Reply::Bad(e),
    }
}

/// `(\Seen \Recent ...)` for a message. IMAP4rev2 dropped `\Recent`
/// (RFC 9051 appendix E), so `rev2` leaves it out.
pub fn flag_list(m: &Msg, rev2: bool) -> String {
    let mut out = Vec::new();
    push_flags(&mut out, m, rev2);
    String::from_utf8_lossy(&out).into_owned()
}

/// Append [`flag_list`] to `out` without allocating: FETCH 1:* writes
/// it once per message, so it sits on the hot path.
pub fn push_flags(out: &mut Vec<u8>, m: &Msg, rev2: bool) {
    out.push(b'(');
    for (i, flag) in m.flags.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(flag.as_bytes());
    }
    if m.recent && !rev2 {
        if !m.flags.is_empty() {
            out.push(b' ');
        }
        out.extend_from_slice(b"\\Recent");
    }
    out.push(b')');
}

/// Append the decimal digits of `n` to `out`, without the formatting
/// machinery (FETCH 1:* writes several numbers per message).
pub fn push_number(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}
