//! The AUTHORIZATION state (RFC 1939 section 4): USER/PASS, SASL PLAIN
//! (RFC 5034), STLS (RFC 2595), and taking the maildrop lock.

use mailhost_sdk::accounts::{self, AuthError, Identity};
use mailhost_sdk::mailbox::{self, Account, Folder, OpenMode, StoreError};
use mailhost_sdk::sasl::{self, SaslError};
use mailhost_sdk::{Level, TlsError};

use crate::Config;
use crate::capa::{self, Offer};
use crate::command::Command;
use crate::conversation::{Conversation, End};
use crate::reply::Code;

/// Wrong passwords a session may try before it is closed. The host slows
/// every failure and caps attempts too; closing early also frees the
/// connection slot an attacker holds.
pub const MAX_LOGIN_FAILURES: u32 = 3;

/// The folder POP3 serves: RFC 1939 knows one maildrop per account.
const MAILDROP: &str = "INBOX";

/// A logged-in session's hold on its maildrop. The exclusive open is the
/// maildrop lock; it is released when the folder is dropped.
pub struct Login {
    pub user: String,
    pub folder: Folder,
    // Kept for the session's length so the handles behind the folder stay
    // valid whatever the host does on drop.
    _account: Account,
    _identity: Identity,
}

/// A login to check: from PASS after USER, or from SASL PLAIN.
struct Attempt {
    username: String,
    password: String,
    /// The SASL authorization identity; empty for none.
    authzid: String,
}

/// What came of one attempt.
enum Outcome {
    LoggedIn(Login),
    /// Wrong name or password; counts towards the limit.
    Failed,
    /// Refused for another reason, already answered.
    Refused,
}

/// Run the AUTHORIZATION state until a login holds the maildrop lock.
/// Returns `End` when the session ends first, QUIT included.
pub fn authorize(
    conv: &mut Conversation,
    config: &Config,
) -> Result<Login, End> {
    let mut user: Option<String> = None;
    let mut failures = 0;

    loop {
        let attempt = match conv.next_command()? {
            Command::Capa => {
                let offer = offer(conv, config);
                conv.queue(capa::response(offer).as_bytes());
                continue;
            }
            Command::User(name) => {
                if refuse_plaintext(conv) {
                    continue;
                }
                user = Some(name);
                conv.ok("send PASS");
                continue;
            }
            Command::Pass(password) => match user.take() {
                Some(username) => Attempt {
                    username,
                    password,
                    authzid: String::new(),
                },
                None => {
                    conv.refuse("send USER first")?;
                    continue;
                }
            },
            Command::Auth { mechanism, initial } => {
                user = None;
                match sasl_exchange(conv, mechanism, initial)? {
                    Some(attempt) => attempt,
                    None => continue,
                }
            }
            Command::Stls => {
                user = None;
                stls(conv, config)?;
                continue;
            }
            Command::Quit => {
                conv.ok("bye");
                return Err(End::Quit);
            }
            Command::Apop => {
                conv.refuse("APOP not supported")?;
                continue;
            }
            _ => {
                conv.refuse("log in first")?;
                continue;
            }
        };

        match login(conv, attempt)? {
            Outcome::LoggedIn(login) => return Ok(login),
            Outcome::Refused => {}
            Outcome::Failed => {
                failures += 1;
                if failures >= MAX_LOGIN_FAILURES {
                    mailhost_sdk::log(
                        Level::Info,
                        "too many failed logins, closing",
                    );
                    return Err(End::Aborted);
                }
            }
        }
    }
}

/// What CAPA may offer now.
fn offer(conv: &Conversation, config: &Config) -> Offer {
    let info = conv.info();
    Offer {
        before_login: true,
        plaintext_auth: info.plaintext_auth_allowed,
        stls: config.stls && info.tls.is_none(),
    }
}

/// Answer and return true when the host allows no plaintext password on
/// this session now.
fn refuse_plaintext(conv: &mut Conversation) -> bool {
    if conv.info().plaintext_auth_allowed {
        return false;
    }
    conv.err(
        Some(Code::Auth),
        "plaintext login refused on this connection; use STLS first",
    );
    true
}

/// Run one AUTH command's exchange. `None` when it was answered without
/// credentials to check (a mechanism list, a cancel, a bad response).
fn sasl_exchange(
    conv: &mut Conversation,
    mechanism: Option<String>,
    initial: Option<String>,
) -> Result<Option<Attempt>, End> {
    // `AUTH` alone lists the mechanisms, as clients from before RFC 5034
    // expect.
    let Some(mechanism) = mechanism else {
        conv.ok("SASL mechanisms follow");
        if conv.info().plaintext_auth_allowed {
            conv.queue(b"PLAIN\r\n");
        }
        conv.queue(b".\r\n");
        return Ok(None);
    };
    if mechanism != "PLAIN" {
        conv.refuse("unsupported SASL mechanism")?;
        return Ok(None);
    }
    if refuse_plaintext(conv) {
        return Ok(None);
    }

    // PLAIN is client-first: an empty initial response (`=`) carries no
    // credentials, so ask for them as if none was sent.
    let response = match initial {
        Some(initial) if initial != "=" => initial,
        _ => {
            conv.queue(b"+ \r\n");
            match conv.read_sasl_line()? {
                Some(response) => response,
                None => {
                    conv.refuse("SASL response too long")?;
                    return Ok(None);
                }
            }
        }
    };

    match sasl::decode_plain(&response) {
        Ok(credentials) => Ok(Some(Attempt {
            username: credentials.authcid,
            password: credentials.password,
            authzid: credentials.authzid,
        })),
        Err(SaslError::Cancelled) => {
            conv.err(None, "authentication cancelled");
            Ok(None)
        }
        Err(SaslError::Malformed) => {
            conv.refuse("malformed SASL PLAIN response")?;
            Ok(None)
        }
    }
}

/// Check the credentials and take the maildrop.
fn login(conv: &mut Conversation, attempt: Attempt) -> Result<Outcome, End> {
    let identity =
        match accounts::authenticate(&attempt.username, &attempt.password) {
            Ok(identity) => identity,
            Err(AuthError::InvalidCredentials) => {
                conv.err(Some(Code::Auth), "invalid user name or password");
                return Ok(Outcome::Failed);
            }
            Err(AuthError::PlaintextRefused) => {
                refuse_plaintext(conv);
                return Ok(Outcome::Refused);
            }
            Err(AuthError::TemporaryFailure) => {
                conv.err(
                    Some(Code::SysTemp),
                    "accounts unavailable, try later",
                );
                return Ok(Outcome::Refused);
            }
            Err(AuthError::NotAllowed) => {
                conv.err(Some(Code::Auth), "too many login attempts");
                return Err(End::Aborted);
            }
        };

    // No proxy logins: a SASL authorization identity must name the same
    // account, or one user's password would open another's mail. The
    // host counts the session as logged in by now and allows no second
    // try, so the attempt ends it.
    let name = identity.name();
    if !acts_as_self(&attempt, &name) {
        mailhost_sdk::log(
            Level::Warn,
            &format!("refused authzid `{}` for user={name}", attempt.authzid),
        );
        conv.err(Some(Code::Auth), "may not act as another user");
        return Err(End::Aborted);
    }

    open_maildrop(conv, identity).map(Outcome::LoggedIn)
}

/// Whether the attempt's authorization identity, if any, names the
/// account `name` that its credentials proved.
fn acts_as_self(attempt: &Attempt, name: &str) -> bool {
    let authzid = attempt.authzid.to_lowercase();
    authzid.is_empty()
        || authzid == name
        || authzid == attempt.username.to_lowercase()
}

/// Open the account's INBOX exclusively: RFC 1939 allows one session per
/// maildrop. A maildrop that cannot be opened ends the session, since the
/// host lets a session log in only once.
fn open_maildrop(
    conv: &mut Conversation,
    identity: Identity,
) -> Result<Login, End> {
    let user = identity.name();
    let opened = mailbox::open_account(&identity).and_then(|account| {
        let folder = account.open(MAILDROP, OpenMode::Exclusive)?;
        Ok((account, folder))
    });

    match opened {
        Ok((account, folder)) => {
            mailhost_sdk::log(Level::Info, &format!("login user={user}"));
            Ok(Login {
                user,
                folder,
                _account: account,
                _identity: identity,
            })
        }
        Err(StoreError::InUse) => {
            mailhost_sdk::log(
                Level::Info,
                &format!("maildrop in use user={user}"),
            );
            conv.err(Some(Code::InUse), "maildrop in use by another session");
            Err(End::Aborted)
        }
        Err(err) => {
            mailhost_sdk::log(
                Level::Warn,
                &format!("cannot open maildrop user={user}: {err:?}"),
            );
            let code = match err {
                StoreError::TemporaryFailure => Code::SysTemp,
                _ => Code::SysPerm,
            };
            conv.err(Some(code), "cannot open maildrop");
            Err(End::Aborted)
        }
    }
}

/// STLS (RFC 2595 section 4): only before login, only once.
fn stls(conv: &mut Conversation, config: &Config) -> Result<(), End> {
    if conv.info().tls.is_some() {
        return conv.refuse("TLS already active");
    }
    if !config.stls {
        return conv.refuse("STLS not available");
    }

    conv.ok("begin TLS negotiation");
    match conv.start_tls() {
        Ok(()) => Ok(()),
        Err(TlsError::HandshakeFailed) => {
            mailhost_sdk::log(Level::Info, "STLS handshake failed");
            Err(End::Aborted)
        }
        Err(err) => {
            // The client already heard "+OK" and is speaking TLS: there
            // is no way back to a plaintext dialogue.
            mailhost_sdk::log(
                Level::Warn,
                &format!("STLS offered but the host cannot start TLS: {err:?}"),
            );
            Err(End::Aborted)
        }
    }
}
