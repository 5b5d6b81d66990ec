//! IDLE (RFC 2177): wait for the client's DONE or a change in the
//! selected mailbox, with a keepalive so NAT boxes keep the connection.

use std::time::{Duration, Instant};

use mailhost_sdk::ReadError;
use mailhost_sdk::mailbox::{OpenMode, WaitEvent};

use crate::limits::{IDLE_KEEPALIVE_MS, IDLE_POLL_MS, MAX_IDLE_MS, MAX_LINE};
use crate::parse::Parser;
use crate::session::{Imap, Reply};

impl Imap {
    pub fn idle(
        &mut self,
        _tag: &str,
        p: &mut Parser,
    ) -> Result<Reply, ReadError> {
        if let Err(e) = p.end() {
            return Ok(Reply::Bad(e));
        }
        self.sync(true, true)?;
        self.session.write_all(b"+ idling\r\n")?;

        // With no mailbox selected nothing can change for the client,
        // but IDLE still owes its keepalives: INBOX, opened read-only,
        // lends its wait, which returns when the client sends DONE.
        let waiter = match (&self.selected, &self.account) {
            (None, Some(account)) => {
                account.open("INBOX", OpenMode::ReadOnly).ok()
            }
            _ => None,
        };

        let started = Instant::now();
        // The listener may ask for a shorter keepalive, never a longer one.
        let keepalive_ms =
            mailhost_sdk::setting_or("idle-keepalive-ms", IDLE_KEEPALIVE_MS)
                .clamp(1, IDLE_KEEPALIVE_MS);
        let keepalive = Duration::from_millis(u64::from(keepalive_ms));
        let mut last_sent = Instant::now();
        loop {
            if started.elapsed() > Duration::from_millis(MAX_IDLE_MS) {
                self.put_str("* BYE IDLE for too long\r\n")?;
                self.session.flush()?;
                return Err(ReadError::Closed);
            }

            let folder = match (&self.selected, &waiter) {
                (Some(sel), _) => &sel.folder,
                (None, Some(waiter)) => waiter,
                // INBOX could not be opened: wait for DONE under the
                // host's idle timeout.
                (None, None) => return self.idle_done(),
            };
            let left = keepalive.saturating_sub(last_sent.elapsed());
            let wait_ms =
                left.as_millis().clamp(1, u128::from(IDLE_POLL_MS)) as u32;
            match folder.wait(self.session.connection(), wait_ms)? {
                WaitEvent::Input => return self.idle_done(),
                WaitEvent::Changed if self.selected.is_none() => {
                    // Only to take the change in, so that the next wait
                    // does not report it again.
                    if let Some(waiter) = &waiter {
                        let _ = waiter.refresh();
                    }
                }
                WaitEvent::Timeout if self.selected.is_none() => {}
                WaitEvent::Changed | WaitEvent::Timeout => {
                    self.sync(true, true)?;
                    self.session.flush()?;
                }
            }
            if last_sent.elapsed() >= keepalive {
                self.session.write_all(b"* OK Still here\r\n")?;
                last_sent = Instant::now();
            }
        }
    }

    fn idle_done(&mut self) -> Result<Reply, ReadError> {
        let line = self.session.read_line(MAX_LINE)?;
        if line.complete && line.text().trim().eq_ignore_ascii_case("DONE") {
            Ok(Reply::Ok("IDLE terminated".into()))
        } else {
            Ok(Reply::Bad("expected DONE".into()))
        }
    }
}
