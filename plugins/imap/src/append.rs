//! APPEND: the message literal is streamed into the store's appender in
//! chunks as it arrives, never held whole.

use mailhost_sdk::ReadError;
use mailhost_sdk::mailbox::StoreError;

use crate::datetime::parse_date_time;
use crate::folders::store_no;
use crate::limits::{LITERAL_MINUS_MAX, MAX_LINE};
use crate::messages::clean_flags;
use crate::parse::Parser;
use crate::session::{Imap, Reply, State};
use crate::wire::{discard_command, literal_marker, tag_of};

/// Default cap on an appended message, in bytes, when the listener sets
/// no `max-append-size`. The host enforces its `max-message-size` too.
const DEFAULT_MAX_APPEND: u64 = 64 * 1024 * 1024;

struct AppendArgs {
    mailbox: String,
    flags: Vec<String>,
    date: Option<i64>,
    /// The message comes as a literal8 (`~{n}`, RFC 3516), which may
    /// hold NUL bytes.
    binary: bool,
}

impl Imap {
    fn append_args(&self, head: &[u8]) -> Result<AppendArgs, String> {
        let mut p = Parser::new(head);
        p.tag()?;
        p.sp()?;
        if !p.keyword("APPEND") {
            return Err("expected APPEND".into());
        }
        p.sp()?;
        let mailbox = self.mailbox_arg(&mut p)?;
        p.sp()?;
        let mut flags = Vec::new();
        if p.peek() == Some(b'(') {
            flags = clean_flags(p.flag_list()?)?;
            p.sp()?;
        }
        let mut date = None;
        if p.peek() == Some(b'"') {
            let text = String::from_utf8_lossy(&p.quoted()?).into_owned();
            date = Some(parse_date_time(&text).ok_or("bad date-time")?);
            p.sp()?;
        }
        let binary = p.eat(b'~');
        p.end()?;
        Ok(AppendArgs {
            mailbox,
            flags,
            date,
            binary,
        })
    }

    /// Answer an APPEND whose literal will not be stored. A synchronising
    /// literal was never invited, so nothing follows; a non-synchronising
    /// one is read and dropped, or ends the session when it is large.
    fn refuse_literal(
        &mut self,
        tag: &str,
        size: u64,
        sync: bool,
        reply: Reply,
    ) -> Result<Reply, ReadError> {
        if sync || discard_command(&mut self.session, size)? {
            return Ok(reply);
        }
        let (status, text) = match reply {
            Reply::Ok(t) => ("OK", t),
            Reply::No(t) => ("NO", t),
            Reply::Bad(t) => ("BAD", t),
        };
        self.put_str(&format!("{tag} {status} {text}\r\n"))?;
        self.put_str("* BYE Literal too large to skip\r\n")?;
        self.session.flush()?;
        Err(ReadError::Closed)
    }

    pub fn append(
        &mut self,
        head: &[u8],
        size: u64,
        sync: bool,
    ) -> Result<Reply, ReadError> {
        let tag = tag_of(head);
        let open = literal_marker(head).map_or(head.len(), |(_, _, open)| open);
        if self.state() == State::NotAuthenticated {
            let reply = Reply::Bad("APPEND needs a login first".into());
            return self.refuse_literal(&tag, size, sync, reply);
        }
        let args = match self.append_args(&head[..open]) {
            Ok(args) => args,
            Err(e) => {
                return self.refuse_literal(&tag, size, sync, Reply::Bad(e));
            }
        };
        if self.literal_minus && !sync && size > LITERAL_MINUS_MAX {
            let reply = Reply::Bad(
                "[TOOBIG] Non-synchronising literals hold at most 4096 bytes"
                    .into(),
            );
            return self.refuse_literal(&tag, size, sync, reply);
        }
        let limit =
            mailhost_sdk::setting_or("max-append-size", DEFAULT_MAX_APPEND);
        if size > limit {
            let reply = Reply::No("[TOOBIG] Message too large".into());
            return self.refuse_literal(&tag, size, sync, reply);
        }

        let account = self.account.as_ref().unwrap();
        let begun = account.begin_append(&args.mailbox, &args.flags, args.date);
        let appender = match begun {
            Ok(appender) => appender,
            Err(StoreError::NotFound) => {
                let reply = Reply::No("[TRYCREATE] No such mailbox".into());
                return self.refuse_literal(&tag, size, sync, reply);
            }
            Err(err) => {
                let reply = store_no(err);
                return self.refuse_literal(&tag, size, sync, reply);
            }
        };

        if sync {
            self.session.write_all(b"+ Ready for literal data\r\n")?;
        }
        let mut failure = None;
        let mut nul = false;
        self.session.read_exact_with(size, |chunk| {
            nul |= !args.binary && chunk.contains(&0);
            if failure.is_none()
                && !nul
                && let Err(err) = appender.write(chunk)
            {
                failure = Some(err);
            }
        })?;

        // The rest of the line must be empty: MULTIAPPEND is not offered.
        let rest = self.session.read_line(MAX_LINE)?;
        let rest = rest.content().to_vec();
        if !rest.is_empty() {
            if let Some((more, false, _)) = literal_marker(&rest)
                && !discard_command(&mut self.session, more)?
            {
                self.put_str(&format!(
                    "{tag} BAD MULTIAPPEND is not supported\r\n"
                ))?;
                self.put_str("* BYE Literal after APPEND\r\n")?;
                self.session.flush()?;
                return Err(ReadError::Closed);
            }
            return Ok(Reply::Bad(
                "unexpected text after the message (no MULTIAPPEND)".into(),
            ));
        }
        if nul {
            // RFC 3501 literals are CHAR8: no NUL. The appender is
            // dropped uncommitted, which leaves nothing behind.
            return Ok(Reply::Bad(
                "message holds NUL bytes: send it as a literal8 (~{n})".into(),
            ));
        }
        if let Some(err) = failure {
            return Ok(store_no(err));
        }
        match appender.commit() {
            Ok((validity, uid)) => Ok(Reply::Ok(format!(
                "[APPENDUID {validity} {uid}] APPEND completed"
            ))),
            Err(err) => Ok(store_no(err)),
        }
    }
}
