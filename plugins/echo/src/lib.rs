//! A line-echo plugin: the smallest useful session, used by the host's
//! tests and benchmarks and as a starting point for plugin authors.
//!
//! Protocol: the plugin greets with `OK <greeting>`, then answers each
//! line. `QUIT` says `BYE` and ends the session, `STARTTLS` upgrades the
//! connection, `INFO` reports the session facts, and any other line comes
//! back as `ECHO <line>`.
//!
//! Settings: `greeting` (default `echo ready`; `{build}` in it becomes
//! the build tag), `max-line` (bytes, default 4096).
//!
//! `VERSION` answers `OK <build tag>`. The tag is a fixed-width constant so
//! the hot-swap tests can make distinguishable copies of one build by
//! patching its bytes.
//!
//! It leaves out the standard library (see the SDK's crate docs), so the
//! component imports only the three interfaces it calls.

#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::borrow::ToOwned;
use alloc::format;

use mailhost_sdk::{Connection, Guest, Level, ReadError, Session};

mailhost_sdk::no_std_runtime!();

struct Echo;

/// This build's tag; see the crate docs.
const BUILD: &str = "build-0000000000";

impl Guest for Echo {
    fn run(conn: Connection) {
        let greeting = mailhost_sdk::settings::get("greeting")
            .unwrap_or_else(|| "echo ready".to_owned())
            .replace("{build}", BUILD);
        let max_line: u32 = mailhost_sdk::setting_or("max-line", 4096);
        let mut session = Session::new(conn);
        session.queue(format!("OK {greeting}\r\n").as_bytes());

        loop {
            let line = match session.read_line(max_line) {
                Ok(line) => line,
                Err(err) => {
                    say_goodbye(&mut session, err);
                    return;
                }
            };
            if !line.complete {
                session.queue(b"ERR line too long\r\n");
                continue;
            }

            let text = line.text();
            match text.to_ascii_uppercase().as_str() {
                "QUIT" => {
                    session.queue(b"BYE\r\n");
                    return;
                }
                "STARTTLS" => start_tls(&mut session),
                "VERSION" => {
                    session.queue(format!("OK {BUILD}\r\n").as_bytes())
                }
                "INFO" => {
                    let info = session.info();
                    let tls = match info.tls {
                        Some(tls) => format!(
                            "{} cipher={} sni={}",
                            tls.version,
                            tls.cipher,
                            tls.server_name.as_deref().unwrap_or("-")
                        ),
                        None => "none".to_owned(),
                    };
                    let plaintext = match info.plaintext_auth_allowed {
                        true => "yes",
                        false => "no",
                    };
                    // `[2001:db8::1]:25`, as addresses with ports go.
                    let peer = match info.peer_address.contains(':') {
                        true => format!("[{}]", info.peer_address),
                        false => info.peer_address,
                    };
                    let reply = format!(
                        "OK listener={} peer={}:{} plaintext-auth={} tls={}\r\n",
                        info.listener, peer, info.peer_port, plaintext, tls
                    );
                    session.queue(reply.as_bytes());
                }
                _ => {
                    session.queue(b"ECHO ");
                    session.queue(line.content());
                    session.queue(b"\r\n");
                }
            }
        }
    }
}

fn start_tls(session: &mut Session) {
    session.queue(b"OK begin TLS\r\n");
    if let Err(err) = session.start_tls() {
        mailhost_sdk::log(Level::Info, &format!("start-tls failed: {err:?}"));
        session.queue(b"ERR TLS not available\r\n");
    }
}

fn say_goodbye(session: &mut Session, err: ReadError) {
    let reason = match err {
        ReadError::Closed => return,
        ReadError::Timeout => "idle timeout",
        ReadError::ShuttingDown => "shutting down",
        ReadError::Expired => "session too long",
    };
    session.queue(format!("BYE {reason}\r\n").as_bytes());
}

mailhost_sdk::export!(Echo);
