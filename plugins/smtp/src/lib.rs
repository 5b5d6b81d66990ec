//! SMTP reception, message submission and LMTP as a mailhost plugin.
//!
//! One instance serves one connection. The listener's `mode` setting
//! picks the service:
//!
//! - `reception` (port 25): mail for local domains from anyone, without
//!   AUTH. Other domains are refused with `554 5.7.1`: never a relay.
//! - `submission` (ports 587 and 465): AUTH PLAIN or LOGIN before MAIL,
//!   and the sender must be the account or one of its aliases. Other
//!   domains are refused with `550 5.7.1` until an outbound path exists.
//! - `lmtp` (RFC 2033): LHLO, and one reply per recipient after the data,
//!   so an MTA can hand mail over as it would to Dovecot.
//!
//! Settings (strings): `mode` (default `reception`); `hostname` (the name
//! in the greeting and `Received:`, default the local address literal);
//! `starttls` (`true` to offer STARTTLS, default `false`); `max-recipients`
//! (per message, default 100, at most 1000); `max-errors` (refused commands
//! before `421 4.7.0` and a hang-up, default 10); `postmaster` (the address
//! `RCPT TO:<Postmaster>` delivers to; unset, it is refused).
//!
//! AUTH: PLAIN and LOGIN, the host checking the password. An
//! authorisation identity other than the login name is refused, since the
//! host allows one login per session and aliases are known only after it.
//!
//! Extensions: PIPELINING, SIZE (the listener's `max-message-size`),
//! 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES, CHUNKING, STARTTLS where
//! offered, AUTH on submission where the host allows a password.
//!
//! # Line ends in message data
//!
//! Only CRLF "." CRLF ends DATA; a dot after a bare LF or a bare CR is
//! message text, so no client can smuggle a second message past a server
//! that reads line ends differently (CVE-2023-51764/5/6). A message that
//! holds a bare CR or a bare LF anywhere, through DATA or BDAT, is read to
//! its end and then refused whole with `554 5.6.0`: RFC 5321 2.3.8 forbids
//! them, every mainstream client sends CRLF, and refusing keeps the stored
//! message byte for byte what the client sent, with nothing rewritten.
//!
//! # Limits
//!
//! Command lines: 512 bytes with CRLF (RFC 5321), AUTH lines and SASL
//! responses 12288 (RFC 4954); longer lines get `500 5.5.2`. Recipients:
//! `max-recipients`, then `452 4.5.3`. Message size: `552 5.3.4`, at MAIL
//! `SIZE=` and while receiving. Errors: `max-errors`, then `421 4.7.0`.
//! Idle timeout and host shutdown: `421 4.4.2` and `421 4.3.2`.
//!
//! Message data streams to the host in chunks of at most 64 KiB; no
//! message is ever held whole in memory.

mod address;
mod auth;
mod command;
mod config;
mod data;
mod params;
mod received;
mod server;
mod transfer;

use mailhost_sdk::{Connection, Guest, Level, Session};

use crate::config::Config;
use crate::server::Server;

struct Smtp;

impl Guest for Smtp {
    fn run(conn: Connection) {
        let mut session = Session::new(conn);
        let local_address = session.info().local_address;

        let config = match Config::from_settings(
            mailhost_sdk::settings::get,
            &local_address,
        ) {
            Ok(config) => config,
            Err(err) => {
                // Refuse to serve rather than guess what the operator
                // meant: a wrong mode could turn reception into a relay.
                mailhost_sdk::log(Level::Error, &err.0);
                session.queue(
                    b"421 4.3.5 Service not configured, closing connection\r\n",
                );
                return;
            }
        };

        Server::new(session, config).serve();
    }
}

mailhost_sdk::export!(Smtp);
