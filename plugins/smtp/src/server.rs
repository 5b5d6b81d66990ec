//! One SMTP or LMTP session: the command loop, greetings, the envelope
//! and the replies. Message data lives in `transfer.rs`, AUTH in
//! `auth.rs`.

use mailhost_sdk::accounts::Identity;
use mailhost_sdk::delivery::{self, RecipientStatus};
use mailhost_sdk::{Level, Line, ReadError, Session, SessionInfo};

use crate::address::{self, ForwardPath, Mailbox, PathError, ReversePath};
use crate::command::{self, Command, CommandError};
use crate::config::{Config, Mode};
use crate::params::{self, ParamError};
use crate::transfer::Chunks;

/// Longest command line, CRLF included (RFC 5321 4.5.3.1.4).
pub const MAX_COMMAND_LINE: usize = 512;

/// Longest AUTH command or SASL response line, CRLF included: the
/// 12288 octets RFC 4954 4 asks servers to accept.
pub const MAX_AUTH_LINE: usize = 12_288;

/// Whether the session goes on after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Close,
}

/// What the client said in its greeting.
pub struct Hello {
    pub name: String,
    /// EHLO or LHLO: extensions may be used.
    pub extended: bool,
}

/// The transaction opened by MAIL.
pub struct Envelope {
    /// The sender for `delivery.begin`: empty for `<>`.
    pub return_path: String,
    pub smtputf8: bool,
    /// Distinct recipients, in the order given, as `begin` takes them.
    pub recipients: Vec<String>,
    /// One entry per RCPT answered with 250, duplicates included: LMTP
    /// owes each of them a reply after the data (RFC 2033 4.2).
    pub accepted: Vec<String>,
    /// A BDAT transfer under way.
    pub chunks: Option<Chunks>,
}

pub struct Server {
    pub session: Session,
    pub config: Config,
    /// The host's size limit, advertised and enforced (RFC 1870).
    pub max_size: u64,
    pub info: SessionInfo,
    pub hello: Option<Hello>,
    pub identity: Option<Identity>,
    pub envelope: Option<Envelope>,
    /// Commands refused so far; at `max-errors` the session ends.
    errors: u32,
    /// Messages taken in this session, for log lines.
    pub messages: u32,
}

impl Server {
    pub fn new(session: Session, config: Config) -> Server {
        let info = session.info();
        Server {
            session,
            config,
            max_size: delivery::max_message_size(),
            info,
            hello: None,
            identity: None,
            envelope: None,
            errors: 0,
            messages: 0,
        }
    }

    pub fn lmtp(&self) -> bool {
        self.config.mode == Mode::Lmtp
    }

    /// Greet, then answer commands until QUIT, a limit or the client's
    /// departure.
    pub fn serve(&mut self) {
        let service = if self.lmtp() { "LMTP" } else { "ESMTP" };
        let greeting =
            format!("{} {service} mailhost ready", self.config.hostname);
        self.reply(220, &greeting);

        loop {
            let line = match self.session.read_line(MAX_AUTH_LINE as u32) {
                Ok(line) => line,
                Err(err) => {
                    self.goodbye(err);
                    return;
                }
            };
            if self.handle_line(&line) == Flow::Close {
                return;
            }
        }
    }

    /// Queue one reply line: `code text`.
    pub fn reply(&mut self, code: u16, text: &str) {
        self.session.queue(format!("{code} {text}\r\n").as_bytes());
    }

    /// Reply to a command the client should not have sent, and hang up
    /// once it has done so `max-errors` times: a client that keeps
    /// getting it wrong is probing, not sending mail.
    pub fn refuse(&mut self, code: u16, text: &str) -> Flow {
        log(Level::Debug, &format!("refused: {code} {text}"));
        self.reply(code, text);

        self.errors += 1;
        if self.errors >= self.config.max_errors {
            log(Level::Info, "too many errors; closing the session");
            let text = format!(
                "4.7.0 {} Too many errors, closing connection",
                self.config.hostname
            );
            self.reply(421, &text);
            return Flow::Close;
        }
        Flow::Continue
    }

    /// The protocol's goodbye when a read gives up.
    pub fn goodbye(&mut self, err: ReadError) {
        let (status, why) = match err {
            ReadError::Closed => return,
            ReadError::Timeout => ("4.4.2", "Idle timeout"),
            ReadError::ShuttingDown => ("4.3.2", "Service shutting down"),
            ReadError::Expired => ("4.4.2", "Session time limit reached"),
        };
        let text = format!(
            "{status} {} {why}, closing connection",
            self.config.hostname
        );
        self.reply(421, &text);
    }

    /// Check the framing of a command line, then run it.
    fn handle_line(&mut self, line: &Line) -> Flow {
        if !line.complete {
            return self.refuse(500, "5.5.2 Line too long");
        }
        if !line.ends_with_crlf() {
            return self.refuse(500, "5.5.2 Lines must end with CRLF");
        }

        let content = line.content();
        let is_auth =
            content.len() >= 5 && content[..5].eq_ignore_ascii_case(b"AUTH ");
        if content.len() + 2 > MAX_COMMAND_LINE && !is_auth {
            return self.refuse(500, "5.5.2 Line too long");
        }
        if content.iter().any(|byte| byte.is_ascii_control()) {
            return self.refuse(500, "5.5.2 Control characters in command");
        }
        let Ok(text) = std::str::from_utf8(content) else {
            return self.refuse(500, "5.5.2 Command is not UTF-8");
        };

        match command::parse(text) {
            Ok(command) => self.dispatch(command),
            Err(CommandError::Unknown) => {
                self.refuse(500, "5.5.1 Command unrecognized")
            }
            Err(CommandError::Syntax(syntax)) => {
                self.refuse(501, &format!("5.5.4 Syntax: {syntax}"))
            }
        }
    }

    fn dispatch(&mut self, command: Command) -> Flow {
        match command {
            Command::Helo(name) => self.hello(name, false, false),
            Command::Ehlo(name) => self.hello(name, true, false),
            Command::Lhlo(name) => self.hello(name, true, true),
            Command::Mail(args) => self.mail(&args),
            Command::Rcpt(args) => self.rcpt(&args),
            Command::Data => self.data(),
            Command::Bdat { size, last } => self.bdat(size, last),
            Command::Rset => {
                self.envelope = None;
                self.reply(250, "2.0.0 OK");
                Flow::Continue
            }
            Command::Noop => {
                self.reply(250, "2.0.0 OK");
                Flow::Continue
            }
            Command::Quit => {
                let text = format!(
                    "2.0.0 {} closing connection",
                    self.config.hostname
                );
                self.reply(221, &text);
                Flow::Close
            }
            Command::Help => {
                let greeting = if self.lmtp() { "LHLO" } else { "EHLO HELO" };
                let text = format!(
                    "2.0.0 Commands: {greeting} MAIL RCPT DATA BDAT RSET NOOP \
                     QUIT HELP VRFY STARTTLS AUTH"
                );
                self.reply(214, &text);
                Flow::Continue
            }
            // Revealing which users exist helps only spammers (RFC 5321
            // 3.5.3 allows 252).
            Command::Vrfy => {
                self.reply(
                    252,
                    "2.5.0 Cannot VRFY user; send mail to find out",
                );
                Flow::Continue
            }
            Command::Expn => self.refuse(502, "5.5.1 EXPN not available"),
            Command::StartTls => self.start_tls(),
            Command::Auth { mechanism, initial } => {
                self.auth(&mechanism, initial)
            }
        }
    }

    /// HELO, EHLO (RFC 5321 4.1.1.1) and LHLO (RFC 2033 4.1). Each also
    /// resets the transaction.
    fn hello(&mut self, name: String, extended: bool, lhlo: bool) -> Flow {
        if lhlo != self.lmtp() {
            if lhlo {
                return self.refuse(500, "5.5.1 Command unrecognized");
            }
            return self.refuse(500, "5.5.1 This is LMTP: use LHLO");
        }

        self.envelope = None;
        self.hello = Some(Hello { name, extended });
        if !extended {
            let text = self.config.hostname.clone();
            self.reply(250, &text);
            return Flow::Continue;
        }

        self.info = self.session.info();
        let mut keywords = vec![
            self.config.hostname.clone(),
            "PIPELINING".to_owned(),
            format!("SIZE {}", self.max_size),
            "8BITMIME".to_owned(),
            "SMTPUTF8".to_owned(),
            "ENHANCEDSTATUSCODES".to_owned(),
            "CHUNKING".to_owned(),
        ];
        if self.starttls_offered() {
            keywords.push("STARTTLS".to_owned());
        }
        if self.auth_offered() && self.identity.is_none() {
            keywords.push("AUTH PLAIN LOGIN".to_owned());
        }

        let last = keywords.len() - 1;
        for (index, keyword) in keywords.iter().enumerate() {
            let separator = if index == last { ' ' } else { '-' };
            self.session
                .queue(format!("250{separator}{keyword}\r\n").as_bytes());
        }
        Flow::Continue
    }

    /// Whether this session may upgrade now.
    // TODO(#5): ask the host through a session fact instead of the
    // `starttls` setting, which can disagree with the listener's TLS.
    fn starttls_offered(&self) -> bool {
        self.config.starttls && self.info.tls.is_none()
    }

    /// Whether AUTH may be offered: on submission only, and where the
    /// host allows a password on this session.
    pub fn auth_offered(&self) -> bool {
        self.config.mode == Mode::Submission && self.info.plaintext_auth_allowed
    }

    /// STARTTLS (RFC 3207). The host drops whatever the client sent after
    /// the command; this side forgets everything learnt before it.
    fn start_tls(&mut self) -> Flow {
        self.info = self.session.info();
        if self.info.tls.is_some() {
            return self.refuse(503, "5.5.1 TLS already active");
        }
        if !self.starttls_offered() {
            return self.refuse(454, "4.7.0 TLS not available");
        }

        self.reply(220, "2.0.0 Ready to start TLS");
        if let Err(err) = self.session.start_tls() {
            // The client is already in its handshake: no reply can reach
            // it in plaintext.
            log(Level::Warn, &format!("STARTTLS failed: {err:?}"));
            return Flow::Close;
        }

        self.info = self.session.info();
        self.hello = None;
        self.identity = None;
        self.envelope = None;
        Flow::Continue
    }

    /// MAIL (RFC 5321 4.1.1.2).
    fn mail(&mut self, args: &str) -> Flow {
        let Some(hello) = &self.hello else {
            let greeting = if self.lmtp() { "LHLO" } else { "EHLO/HELO" };
            return self.refuse(503, &format!("5.5.1 Send {greeting} first"));
        };
        let extended = hello.extended;
        if self.envelope.is_some() {
            return self.refuse(503, "5.5.1 Nested MAIL command");
        }
        if self.config.mode == Mode::Submission && self.identity.is_none() {
            return self.refuse(530, "5.7.0 Authentication required");
        }

        let (sender, rest) = match address::parse_reverse_path(args) {
            Ok(parsed) => parsed,
            Err(PathError::Syntax) => {
                return self.refuse(501, "5.1.7 Bad sender address syntax");
            }
            Err(PathError::TooLong) => {
                return self.refuse(501, "5.1.7 Sender address too long");
            }
        };
        if !extended && !rest.trim().is_empty() {
            return self.refuse(555, "5.5.4 Parameters need EHLO");
        }
        let params = match params::parse_mail(rest, self.auth_offered()) {
            Ok(params) => params,
            Err(err) => return self.refuse_param(err),
        };
        if let ReversePath::Mailbox(mailbox) = &sender
            && !mailbox.is_ascii()
            && !params.smtputf8
        {
            return self.refuse(553, "5.6.7 Non-ASCII address needs SMTPUTF8");
        }
        if params.size.is_some_and(|size| size > self.max_size) {
            return self.refuse(
                552,
                "5.3.4 Message size exceeds fixed maximum message size",
            );
        }

        if let Some(identity) = &self.identity {
            let owned = match &sender {
                ReversePath::Null => false,
                ReversePath::Mailbox(mailbox) => {
                    identity.addresses().contains(&mailbox.folded())
                }
            };
            if !owned {
                let text = format!(
                    "5.7.1 Sender address not owned by {}",
                    identity.name()
                );
                return self.refuse(553, &text);
            }
        }

        let return_path = match &sender {
            ReversePath::Null => String::new(),
            ReversePath::Mailbox(mailbox) => mailbox.address(),
        };
        self.envelope = Some(Envelope {
            return_path,
            smtputf8: params.smtputf8,
            recipients: Vec::new(),
            accepted: Vec::new(),
            chunks: None,
        });
        self.reply(250, "2.1.0 Sender OK");
        Flow::Continue
    }

    /// RCPT (RFC 5321 4.1.1.3), checked with the host at once so a
    /// refused recipient never reaches the data.
    fn rcpt(&mut self, args: &str) -> Flow {
        let Some(envelope) = &self.envelope else {
            return self.refuse(503, "5.5.1 Need MAIL before RCPT");
        };
        let smtputf8 = envelope.smtputf8;
        if envelope.chunks.is_some() {
            return self.refuse(503, "5.5.1 RCPT during BDAT");
        }

        let (path, rest) = match address::parse_forward_path(args) {
            Ok(parsed) => parsed,
            Err(PathError::Syntax) => {
                return self.refuse(501, "5.1.3 Bad recipient address syntax");
            }
            Err(PathError::TooLong) => {
                return self.refuse(501, "5.1.3 Recipient address too long");
            }
        };
        if let Err(err) = params::parse_rcpt(rest) {
            return self.refuse_param(err);
        }
        let address = match path {
            ForwardPath::Mailbox(mailbox)
                if !mailbox.is_ascii() && !smtputf8 =>
            {
                return self
                    .refuse(553, "5.6.7 Non-ASCII address needs SMTPUTF8");
            }
            ForwardPath::Mailbox(mailbox) => mailbox,
            ForwardPath::Postmaster => match self.postmaster() {
                Some(mailbox) => mailbox,
                None => {
                    return self
                        .refuse(550, "5.1.1 No postmaster mailbox here");
                }
            },
        };

        self.add_recipient(&address)
    }

    /// The configured `postmaster` as a mailbox.
    // TODO(#5): default to postmaster@ the first local domain once the
    // host tells plugins its domains; RFC 5321 4.5.1 requires one.
    fn postmaster(&self) -> Option<Mailbox> {
        let configured = self.config.postmaster.as_deref()?;
        match address::parse_forward_path(&format!("<{configured}>")) {
            Ok((ForwardPath::Mailbox(mailbox), "")) => Some(mailbox),
            _ => {
                log(Level::Warn, "setting `postmaster` is not an address");
                None
            }
        }
    }

    fn add_recipient(&mut self, mailbox: &Mailbox) -> Flow {
        let address = mailbox.address();
        let folded = mailbox.folded();
        let max_recipients = self.config.max_recipients;
        let envelope = self.envelope.as_mut().expect("checked by rcpt");

        // A repeated recipient gets its 250 but one copy of the message.
        let known = envelope
            .recipients
            .iter()
            .find(|known| known.to_lowercase() == folded);
        if let Some(known) = known.cloned() {
            envelope.accepted.push(known);
            self.reply(250, "2.1.5 Recipient OK");
            return Flow::Continue;
        }
        if envelope.recipients.len() >= max_recipients {
            // A 4xx: the client sends the rest in another transaction
            // (RFC 5321 4.5.3.1.10).
            self.reply(452, "4.5.3 Too many recipients");
            return Flow::Continue;
        }

        match delivery::check_recipient(&address) {
            RecipientStatus::Local => {
                let envelope = self.envelope.as_mut().expect("checked by rcpt");
                envelope.recipients.push(address.clone());
                envelope.accepted.push(address);
                self.reply(250, "2.1.5 Recipient OK");
                Flow::Continue
            }
            RecipientStatus::UnknownUser => {
                self.refuse(550, &format!("5.1.1 <{address}>: User unknown"))
            }
            RecipientStatus::NotLocal
                if self.config.mode == Mode::Submission =>
            {
                // TODO(#5): relay for authenticated senders once an
                // outbound path exists.
                self.refuse(
                    550,
                    &format!("5.7.1 <{address}>: Relaying not available"),
                )
            }
            RecipientStatus::NotLocal => self.refuse(
                554,
                &format!("5.7.1 <{address}>: Relay access denied"),
            ),
        }
    }

    fn refuse_param(&mut self, err: ParamError) -> Flow {
        match err {
            ParamError::Unsupported(keyword) => self
                .refuse(555, &format!("5.5.4 Unsupported parameter {keyword}")),
            ParamError::Invalid(why) => {
                self.refuse(501, &format!("5.5.4 {why}"))
            }
        }
    }
}

/// Log through the host, which adds the connection's fields.
pub fn log(level: Level, message: &str) {
    mailhost_sdk::log(level, message);
}
