//! A small line protocol, the starting point of a new plugin: replace the
//! commands with your protocol's and keep the shape.
//!
//! Protocol: the plugin greets with `+OK <greeting>`, then answers one
//! line at a time. `ECHO <text>` answers `+OK <text>`, `HELP` lists the
//! commands, `QUIT` says `+OK bye` and ends the session; anything else is
//! `-ERR unknown command`. A line over `max-line` bytes is refused whole.
//!
//! Settings (the listener's `[listener.settings]` table): `greeting`
//! (default `template ready`) and `max-line` (bytes, default 1024).
//!
//! Build: `cargo build --release --target wasm32-wasip2 -p
//! mailhost-template`. Test: `just test-plugin template`, which runs every
//! transcript in `transcripts/` with `mailhost plugin test`.

use mailhost_sdk::{Connection, Guest, Level, ReadError, Session};

/// Longest command line read by default, in bytes, terminator included.
const DEFAULT_MAX_LINE: u32 = 1024;

struct Template;

impl Guest for Template {
    fn run(conn: Connection) {
        let greeting = mailhost_sdk::settings::get("greeting")
            .unwrap_or_else(|| "template ready".to_owned());
        let max_line = mailhost_sdk::setting_or("max-line", DEFAULT_MAX_LINE);
        let mut session = Session::new(conn);
        session.queue(format!("+OK {greeting}\r\n").as_bytes());

        loop {
            // Replies are queued and go out when the plugin next waits for
            // input, so pipelined commands cost one write.
            let line = match session.read_line(max_line) {
                Ok(line) => line,
                Err(err) => return goodbye(&mut session, err),
            };
            if !line.complete {
                session.queue(b"-ERR line too long\r\n");
                continue;
            }

            let text = line.text();
            let (verb, argument) = text.split_once(' ').unwrap_or((&text, ""));
            match verb.to_ascii_uppercase().as_str() {
                "ECHO" => {
                    session.queue(format!("+OK {argument}\r\n").as_bytes())
                }
                "HELP" => session.queue(b"+OK ECHO HELP QUIT\r\n"),
                "QUIT" => {
                    session.queue(b"+OK bye\r\n");
                    return;
                }
                _ => {
                    mailhost_sdk::log(
                        Level::Debug,
                        &format!("unknown command {verb:?}"),
                    );
                    session.queue(b"-ERR unknown command\r\n");
                }
            }
        }
    }
}

/// The host ends waits for a reason: say why in the protocol, then return
/// (returning ends the session; the host closes the connection).
fn goodbye(session: &mut Session, err: ReadError) {
    let reason = match err {
        ReadError::Closed => return,
        ReadError::Timeout => "idle timeout",
        ReadError::ShuttingDown => "server shutting down",
        ReadError::Expired => "session too long",
    };
    session.queue(format!("-ERR {reason}, closing\r\n").as_bytes());
}

mailhost_sdk::export!(Template);
