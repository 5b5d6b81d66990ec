//! The POP3 server plugin (RFC 1939), for listeners of role `mailbox`.
//!
//! One instance serves one connection. It serves the INBOX of the
//! account that logs in, opened exclusively: that open is the maildrop
//! lock, so a second session for the same account gets `-ERR [IN-USE]`.
//!
//! Extensions: CAPA with RESP-CODES, AUTH-RESP-CODE, PIPELINING, TOP,
//! UIDL, USER and IMPLEMENTATION (RFC 2449), SASL PLAIN with initial
//! response (RFC 5034), and STLS (RFC 2595).
//!
//! Behaviour worth knowing:
//! - Sizes (STAT, LIST, the RETR status line) count the message with
//!   CRLF line ends, exactly the bytes RETR sends before byte-stuffing.
//! - Every line that RETR or TOP sends is dot-stuffed, including lines
//!   after a bare LF; messages are streamed from the store in chunks.
//! - UIDL values use Dovecot's default format (UID, then UIDVALIDITY, as
//!   eight upper-case hex digits each): unique, stable across sessions
//!   and restarts, and kept when a mailbox moves over from Dovecot.
//! - DELE only marks. At QUIT the marked messages are flagged `\Deleted`
//!   and expunged, and retrieved ones flagged `\Seen`; a session that
//!   ends any other way (dropped, timed out, shut down) changes nothing.
//! - USER/PASS and AUTH work only where the host allows plaintext
//!   passwords on the session (TLS, or the listener's policy).
//!
//! Settings (the listener's `settings` table):
//! - `hostname`: the name in the greeting; default `mailhost`.
//! - `stls`: `true` to offer STLS; default `false`. Set it only on a
//!   listener with a certificate (`tls = "starttls"`).
//!
//! TODO(#6): take the STLS offer from the host's session facts once the
//! WIT reports whether the listener can start TLS, and drop `stls`.

mod authorization;
mod capa;
mod command;
mod conversation;
mod maildrop;
mod reply;
mod transaction;
mod transfer;

use mailhost_sdk::{Connection, Guest, Session};

use conversation::Conversation;

/// The listener settings this plugin reads.
pub struct Config {
    /// Shown in the greeting.
    pub hostname: String,
    /// Offer STLS.
    pub stls: bool,
}

/// Greeting name when the listener sets no `hostname`.
const DEFAULT_HOSTNAME: &str = "mailhost";

impl Config {
    fn from_settings() -> Self {
        Config {
            hostname: mailhost_sdk::settings::get("hostname")
                .unwrap_or_else(|| DEFAULT_HOSTNAME.to_owned()),
            stls: mailhost_sdk::setting_or("stls", false),
        }
    }
}

struct Pop3;

impl Guest for Pop3 {
    fn run(conn: Connection) {
        let config = Config::from_settings();
        let mut conv = Conversation::new(Session::new(conn));
        conv.ok(&format!("{} POP3 server ready", config.hostname));

        // AUTHORIZATION, then TRANSACTION and UPDATE; the folder, and with
        // it the maildrop lock, goes when this function returns.
        let end = match authorization::authorize(&mut conv, &config) {
            Ok(login) => transaction::transact(&mut conv, login),
            Err(end) => end,
        };
        conv.goodbye(end);
    }
}

mailhost_sdk::export!(Pop3);
