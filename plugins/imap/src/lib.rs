//! IMAP4rev1 (RFC 3501) and IMAP4rev2 (RFC 9051) server component for the
//! `mailbox` role.
//!
//! One instance serves one connection. Commands are read whole (lines
//! joined across literals, every size capped, see [`limits`]) and run
//! against the host's mailbox store; replies are queued and flushed when
//! the client is about to be waited on, so pipelined commands get their
//! answers in few packets.
//!
//! Settings: `hostname` (greeting), `starttls` (`true` to offer
//! STARTTLS), `max-append-size` (bytes, default 64 MiB),
//! `idle-keepalive-ms` (IDLE keepalive interval, at most and by default
//! 120000).

pub mod datetime;
pub mod decode;
pub mod envelope;
pub mod header;
pub mod limits;
pub mod mime;
pub mod parse;
pub mod search;
pub mod seqset;
pub mod utf7;
pub mod wire;

#[cfg(target_arch = "wasm32")]
mod append;
#[cfg(target_arch = "wasm32")]
mod auth;
#[cfg(target_arch = "wasm32")]
mod fetch;
#[cfg(target_arch = "wasm32")]
mod folders;
#[cfg(target_arch = "wasm32")]
mod idle;
#[cfg(target_arch = "wasm32")]
mod messages;
#[cfg(target_arch = "wasm32")]
mod session;

#[cfg(target_arch = "wasm32")]
struct Imap;

#[cfg(target_arch = "wasm32")]
impl mailhost_sdk::Guest for Imap {
    fn run(conn: mailhost_sdk::Connection) {
        session::Imap::new(conn).run();
    }
}

#[cfg(target_arch = "wasm32")]
mailhost_sdk::export!(Imap);
