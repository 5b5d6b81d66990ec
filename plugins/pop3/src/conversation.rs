//! The client side of the session: reading command lines within their
//! limits, counting protocol errors, and the goodbye for every way a
//! session ends.

use mailhost_sdk::{Level, ReadError, Session, SessionInfo, TlsError};

use crate::command::{self, Command};
use crate::reply::{self, Code};

/// The longest command line read, terminator included. RFC 2449 allows
/// clients 255 octets; the slack covers AUTH with a long initial
/// response.
pub const MAX_COMMAND_LINE: u32 = 1024;

/// The longest SASL response line read, terminator included.
pub const MAX_SASL_LINE: u32 = 4096;

/// Protocol errors (unknown commands, bad syntax, wrong state, overlong
/// lines) a session may make before it is closed: a real client makes
/// few, a scanner or an attacker probing the parser many.
pub const MAX_PROTOCOL_ERRORS: u32 = 20;

/// Why a session ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The client sent QUIT and got its reply.
    Quit,
    /// The client went away.
    Closed,
    /// The host's idle timeout passed.
    Timeout,
    /// The host is shutting down.
    ShuttingDown,
    /// The session ran past the host's maximum length.
    Expired,
    /// Too many protocol errors; the reply is already queued.
    TooManyErrors,
    /// The session cannot go on (failed TLS, a message cut mid-stream,
    /// a maildrop that cannot be opened); any reply is already queued.
    Aborted,
}

impl From<ReadError> for End {
    fn from(err: ReadError) -> Self {
        match err {
            ReadError::Closed => End::Closed,
            ReadError::Timeout => End::Timeout,
            ReadError::ShuttingDown => End::ShuttingDown,
            ReadError::Expired => End::Expired,
        }
    }
}

pub struct Conversation {
    session: Session,
    errors: u32,
}

impl Conversation {
    pub fn new(session: Session) -> Self {
        Conversation { session, errors: 0 }
    }

    pub fn info(&self) -> SessionInfo {
        self.session.info()
    }

    /// Queue raw response bytes.
    pub fn queue(&mut self, data: &[u8]) {
        self.session.queue(data);
    }

    /// Send everything queued now, as during a long RETR.
    pub fn flush(&mut self) -> Result<(), End> {
        Ok(self.session.flush()?)
    }

    pub fn ok(&mut self, text: &str) {
        self.session.queue(reply::ok(text).as_bytes());
    }

    pub fn err(&mut self, code: Option<Code>, text: &str) {
        self.session.queue(reply::err(code, text).as_bytes());
    }

    /// Refuse a command the client should not have sent, and count it.
    /// The error that reaches the limit gets the closing reply instead of
    /// `text`: one reply per command, even the last.
    pub fn refuse(&mut self, text: &str) -> Result<(), End> {
        self.errors += 1;
        if self.errors < MAX_PROTOCOL_ERRORS {
            self.err(None, text);
            return Ok(());
        }

        mailhost_sdk::log(Level::Info, "too many protocol errors, closing");
        self.err(None, "too many bad commands, closing connection");
        Err(End::TooManyErrors)
    }

    /// The next command. Lines that are not commands get their `-ERR`
    /// here and count as protocol errors.
    pub fn next_command(&mut self) -> Result<Command, End> {
        loop {
            let line = self.session.read_line(MAX_COMMAND_LINE)?;
            if !line.complete {
                self.refuse("line too long")?;
                continue;
            }

            // A NUL or a stray CR inside a line has no place in any POP3
            // command, and would reach the account lookup otherwise.
            let content = line.content();
            if content.iter().any(|&b| b == 0 || b == b'\r') {
                self.refuse("control characters in command")?;
                continue;
            }

            match command::parse(&String::from_utf8_lossy(content)) {
                Ok(command) => return Ok(command),
                Err(err) => self.refuse(&err.reply())?,
            }
        }
    }

    /// One SASL response line, without its terminator.
    pub fn read_sasl_line(&mut self) -> Result<Option<String>, End> {
        let line = self.session.read_line(MAX_SASL_LINE)?;
        if !line.complete {
            return Ok(None);
        }
        Ok(Some(line.text()))
    }

    /// Send `+OK`'s go-ahead and upgrade to TLS.
    pub fn start_tls(&mut self) -> Result<(), TlsError> {
        self.session.start_tls()
    }

    /// Say goodbye in POP3's words for the ways a session ends without
    /// the client asking; nothing when the client is gone or was already
    /// told.
    pub fn goodbye(&mut self, end: End) {
        let text = match end {
            End::Timeout => reply::err(None, "idle for too long, closing"),
            End::ShuttingDown => {
                reply::err(Some(Code::SysTemp), "server shutting down")
            }
            End::Expired => {
                reply::err(Some(Code::SysTemp), "session too long, closing")
            }
            End::Quit | End::Closed | End::TooManyErrors | End::Aborted => {
                return;
            }
        };
        mailhost_sdk::log(Level::Debug, &format!("session ends: {end:?}"));
        self.session.queue(text.as_bytes());
    }
}
