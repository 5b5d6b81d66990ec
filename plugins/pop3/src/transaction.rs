//! The TRANSACTION and UPDATE states (RFC 1939 sections 5 and 6).

use mailhost_sdk::Level;
use mailhost_sdk::mailbox::{FlagOperation, Folder, StoreError};

use crate::authorization::Login;
use crate::capa::{self, Offer};
use crate::command::Command;
use crate::conversation::{Conversation, End};
use crate::maildrop::Maildrop;
use crate::reply::Code;
use crate::transfer::{DotStuffer, TopFilter};

/// Bytes asked of the store per read while streaming a message.
pub const READ_CHUNK: u32 = 64 * 1024;

/// Stuffed output held before it is written to the client during a
/// RETR or TOP: bounds the session's memory whatever the message size.
pub const STREAM_FLUSH_BYTES: usize = 256 * 1024;

const DELETED_FLAG: &str = "\\Deleted";
const SEEN_FLAG: &str = "\\Seen";

/// Serve the maildrop until the session ends. Deletions reach the store
/// only on QUIT.
pub fn transact(conv: &mut Conversation, login: Login) -> End {
    let Login { user, folder, .. } = &login;
    let messages = folder.messages();
    let mut drop = Maildrop::new(
        folder.uid_validity(),
        messages.iter().map(|message| (message.uid, message.size)),
    );

    let (count, octets) = drop.stat();
    conv.ok(&format!("{user} has {count} messages ({octets} octets)"));

    loop {
        let command = match conv.next_command() {
            Ok(command) => command,
            Err(end) => return end,
        };
        let result = match command {
            Command::Quit => return update(conv, folder, &drop),
            Command::Stat => {
                let (count, octets) = drop.stat();
                conv.ok(&format!("{count} {octets}"));
                Ok(())
            }
            Command::List(number) => {
                list(conv, &drop, number, |_, entry| entry.size.to_string());
                Ok(())
            }
            Command::Uidl(number) => {
                list(conv, &drop, number, |drop, entry| drop.uidl(entry));
                Ok(())
            }
            Command::Retr(number) => retrieve(conv, folder, &mut drop, number),
            Command::Top(number, lines) => {
                top(conv, folder, &drop, number, lines)
            }
            Command::Dele(number) => {
                match drop.delete(number) {
                    Ok(()) => conv.ok(&format!("message {number} deleted")),
                    Err(err) => conv.err(None, &err.reply()),
                }
                Ok(())
            }
            Command::Rset => {
                drop.reset();
                let (count, octets) = drop.stat();
                conv.ok(&format!("{count} messages ({octets} octets)"));
                Ok(())
            }
            Command::Noop => {
                conv.ok("");
                Ok(())
            }
            Command::Capa => {
                let offer = Offer {
                    before_login: false,
                    plaintext_auth: false,
                    stls: false,
                };
                conv.queue(capa::response(offer).as_bytes());
                Ok(())
            }
            Command::User(_)
            | Command::Pass(_)
            | Command::Auth { .. }
            | Command::Apop => conv.refuse("already logged in"),
            Command::Stls => conv.refuse("STLS only before login"),
        };
        if let Err(end) = result {
            return end;
        }
    }
}

/// LIST and UIDL: one message, or all live ones as a multi-line reply.
fn list(
    conv: &mut Conversation,
    drop: &Maildrop,
    number: Option<u64>,
    value: impl Fn(&Maildrop, &crate::maildrop::Entry) -> String,
) {
    if let Some(number) = number {
        match drop.get(number) {
            Ok(entry) => conv.ok(&format!("{number} {}", value(drop, entry))),
            Err(err) => conv.err(None, &err.reply()),
        }
        return;
    }

    let (count, octets) = drop.stat();
    let mut out = format!("+OK {count} messages ({octets} octets)\r\n");
    for (number, entry) in drop.live() {
        out.push_str(&format!("{number} {}\r\n", value(drop, entry)));
    }
    out.push_str(".\r\n");
    conv.queue(out.as_bytes());
}

fn retrieve(
    conv: &mut Conversation,
    folder: &Folder,
    drop: &mut Maildrop,
    number: u64,
) -> Result<(), End> {
    let entry = match drop.get(number) {
        Ok(entry) => entry.clone(),
        Err(err) => {
            conv.err(None, &err.reply());
            return Ok(());
        }
    };

    let status = format!("{} octets", entry.size);
    if send_message(conv, folder, entry.uid, &status, None)? {
        drop.mark_retrieved(number);
    }
    Ok(())
}

fn top(
    conv: &mut Conversation,
    folder: &Folder,
    drop: &Maildrop,
    number: u64,
    lines: u64,
) -> Result<(), End> {
    let uid = match drop.get(number) {
        Ok(entry) => entry.uid,
        Err(err) => {
            conv.err(None, &err.reply());
            return Ok(());
        }
    };

    let filter = TopFilter::new(lines);
    send_message(conv, folder, uid, "top of message follows", Some(filter))?;
    Ok(())
}

/// Stream message `uid` as a multi-line response, chunk by chunk from the
/// store. Returns whether it was sent; false when the store could not
/// give its first bytes, which gets an `-ERR`. A failure after the `+OK`
/// cannot be told to the client in POP3, so it ends the session: the
/// client sees a cut response and deletes nothing.
fn send_message(
    conv: &mut Conversation,
    folder: &Folder,
    uid: u32,
    status: &str,
    mut filter: Option<TopFilter>,
) -> Result<bool, End> {
    // Read before answering, so a message gone from the store still gets
    // a proper -ERR.
    let mut chunk = match folder.read(uid, 0, READ_CHUNK) {
        Ok(chunk) => chunk,
        Err(err) => {
            mailhost_sdk::log(
                Level::Warn,
                &format!("cannot read message uid={uid}: {err:?}"),
            );
            let (code, text) = match err {
                StoreError::NotFound => (None, "message no longer exists"),
                StoreError::TemporaryFailure => {
                    (Some(Code::SysTemp), "cannot read message, try later")
                }
                _ => (Some(Code::SysPerm), "cannot read message"),
            };
            conv.err(code, text);
            return Ok(false);
        }
    };
    conv.ok(status);

    let mut stuffer = DotStuffer::new();
    let mut out = Vec::with_capacity(STREAM_FLUSH_BYTES + READ_CHUNK as usize);
    let mut offset = 0u64;
    while !chunk.is_empty() {
        offset += chunk.len() as u64;
        let wanted = match filter.as_mut() {
            Some(filter) => filter.take(&chunk),
            None => &chunk,
        };
        stuffer.push(wanted, &mut out);
        if filter.as_ref().is_some_and(TopFilter::done) {
            break;
        }

        if out.len() >= STREAM_FLUSH_BYTES {
            conv.queue(&out);
            out.clear();
            conv.flush()?;
        }

        chunk = match folder.read(uid, offset, READ_CHUNK) {
            Ok(chunk) => chunk,
            Err(err) => {
                mailhost_sdk::log(
                    Level::Warn,
                    &format!("message uid={uid} cut at {offset}: {err:?}"),
                );
                conv.queue(&out);
                return Err(End::Aborted);
            }
        };
    }

    stuffer.finish(&mut out);
    conv.queue(&out);
    Ok(true)
}

/// QUIT in TRANSACTION: the UPDATE state. Retrieved messages become
/// `\Seen` (as IMAP will show them), marked ones are flagged `\Deleted`
/// and expunged, and only those: a `\Deleted` flag another client set is
/// left to that client.
fn update(conv: &mut Conversation, folder: &Folder, drop: &Maildrop) -> End {
    let seen = drop.retrieved_uids();
    if !seen.is_empty()
        && let Err(err) =
            folder.set_flags(&seen, FlagOperation::Add, &[SEEN_FLAG.to_owned()])
    {
        // Only a hint for other clients; the session's outcome stands.
        mailhost_sdk::log(Level::Warn, &format!("cannot mark seen: {err:?}"));
    }

    let deleted = drop.deleted_uids();
    if deleted.is_empty() {
        conv.ok("bye");
        return End::Quit;
    }

    let removed = folder
        .set_flags(&deleted, FlagOperation::Add, &[DELETED_FLAG.to_owned()])
        .and_then(|_| folder.expunge(Some(&deleted)));
    match removed {
        Ok(removed) => {
            mailhost_sdk::log(
                Level::Info,
                &format!("quit deleted={}", removed.len()),
            );
            conv.ok(&format!("bye, {} messages deleted", deleted.len()));
        }
        Err(err) => {
            mailhost_sdk::log(Level::Warn, &format!("update failed: {err:?}"));
            conv.err(Some(Code::SysTemp), "some deleted messages not removed");
        }
    }
    End::Quit
}
