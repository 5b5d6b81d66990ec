//! CAPABILITY, ID, ENABLE, STARTTLS, LOGIN and AUTHENTICATE.

use mailhost_sdk::accounts::{self, AuthError};
use mailhost_sdk::sasl::{self, SaslError};
use mailhost_sdk::{Level, ReadError, TlsError, mailbox};

use crate::limits::{MAX_AUTH_FAILURES, MAX_SASL_LINE};
use crate::parse::Parser;
use crate::session::{Imap, Reply, State};

/// Extensions offered in every state.
const BASE_CAPABILITIES: &str = "IMAP4rev1 IMAP4rev2 SASL-IR ID ENABLE \
    IDLE NAMESPACE UNSELECT CHILDREN SPECIAL-USE UIDPLUS MOVE BINARY \
    ESEARCH SEARCHRES";

impl Imap {
    fn starttls_offered(&self) -> bool {
        let wanted = mailhost_sdk::settings::get("starttls")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        wanted && self.session.info().tls.is_none()
    }

    pub fn capabilities(&self) -> String {
        let mut caps = BASE_CAPABILITIES.to_owned();
        caps.push_str(if self.literal_minus {
            " LITERAL-"
        } else {
            " LITERAL+"
        });
        if self.state() == State::NotAuthenticated {
            if self.starttls_offered() {
                caps.push_str(" STARTTLS");
            }
            if self.session.info().plaintext_auth_allowed {
                caps.push_str(" AUTH=PLAIN");
            } else {
                caps.push_str(" LOGINDISABLED");
            }
        }
        caps
    }

    pub fn capability(&mut self, p: &mut Parser) -> Result<Reply, ReadError> {
        if let Err(e) = p.end() {
            return Ok(Reply::Bad(e));
        }
        let caps = self.capabilities();
        self.put_str(&format!("* CAPABILITY {caps}\r\n"))?;
        Ok(Reply::Ok("CAPABILITY completed".into()))
    }

    /// RFC 2971: the client's fields are read and ignored.
    pub fn id(&mut self, p: &mut Parser) -> Result<Reply, ReadError> {
        let parsed = (|| -> Result<(), String> {
            p.sp()?;
            if p.keyword("NIL") {
                return p.end();
            }
            p.expect(b'(')?;
            while !p.eat(b')') {
                p.eat(b' ');
                p.string()?;
                p.sp()?;
                if !p.keyword("NIL") {
                    p.string()?;
                }
            }
            p.end()
        })();
        if let Err(e) = parsed {
            return Ok(Reply::Bad(e));
        }
        self.put_str(
            "* ID (\"name\" \"mailhost\" \"vendor\" \"mailhost\")\r\n",
        )?;
        Ok(Reply::Ok("ID completed".into()))
    }

    pub fn enable(&mut self, p: &mut Parser) -> Result<Reply, ReadError> {
        let mut enabled = Vec::new();
        if p.eof() {
            return Ok(Reply::Bad("ENABLE needs a capability".into()));
        }
        while p.eat(b' ') {
            let cap = match p.atom_upper() {
                Ok(cap) => cap,
                Err(e) => return Ok(Reply::Bad(e)),
            };
            if cap == "IMAP4REV2" && !self.rev2 {
                self.rev2 = true;
                enabled.push("IMAP4rev2");
            }
        }
        if let Err(e) = p.end() {
            return Ok(Reply::Bad(e));
        }
        self.put_str(
            &format!("* ENABLED {}\r\n", enabled.join(" "))
                .replace(" \r", "\r"),
        )?;
        Ok(Reply::Ok("ENABLE completed".into()))
    }

    pub fn starttls(&mut self, p: &mut Parser) -> Result<Reply, ReadError> {
        if let Err(e) = p.end() {
            return Ok(Reply::Bad(e));
        }
        if !self.starttls_offered() {
            return Ok(Reply::Bad("STARTTLS is not offered here".into()));
        }
        self.tls_pending = true;
        Ok(Reply::Ok("Begin TLS negotiation now".into()))
    }

    /// Called after the tagged OK of STARTTLS went out.
    pub fn start_tls_now(&mut self) -> Result<(), ReadError> {
        match self.session.start_tls() {
            Ok(()) => Ok(()),
            Err(TlsError::HandshakeFailed) => Err(ReadError::Closed),
            Err(err) => {
                self.log(Level::Warn, &format!("start-tls failed: {err:?}"));
                Err(ReadError::Closed)
            }
        }
    }

    pub fn login(&mut self, p: &mut Parser) -> Result<Reply, ReadError> {
        let args = (|| -> Result<(String, String), String> {
            p.sp()?;
            let user = p.astring_text()?;
            p.sp()?;
            let pass = p.astring_text()?;
            p.end()?;
            Ok((user, pass))
        })();
        let (user, pass) = match args {
            Ok(args) => args,
            Err(e) => return Ok(Reply::Bad(e)),
        };
        if !self.session.info().plaintext_auth_allowed {
            return Ok(Reply::No(
                "[PRIVACYREQUIRED] Plaintext login is disabled here".into(),
            ));
        }
        self.check_password(&user, &pass)
    }

    pub fn authenticate(&mut self, p: &mut Parser) -> Result<Reply, ReadError> {
        let args = (|| -> Result<(String, Option<String>), String> {
            p.sp()?;
            let mech = p.atom_upper()?;
            let initial = if p.eat(b' ') {
                Some(String::from_utf8_lossy(p.rest()).into_owned())
            } else {
                None
            };
            Ok((mech, initial))
        })();
        let (mech, initial) = match args {
            Ok(args) => args,
            Err(e) => return Ok(Reply::Bad(e)),
        };
        if mech != "PLAIN" {
            return Ok(Reply::No(format!(
                "[CANNOT] Mechanism {mech} is not supported"
            )));
        }
        if !self.session.info().plaintext_auth_allowed {
            return Ok(Reply::No(
                "[PRIVACYREQUIRED] Plaintext authentication is disabled here"
                    .into(),
            ));
        }

        // SASL-IR: `=` stands for an empty initial response.
        let response = match initial.filter(|r| r.trim() != "=") {
            Some(response) => response,
            None => {
                self.session.write_all(b"+ \r\n")?;
                let line = self.session.read_line(MAX_SASL_LINE)?;
                if !line.complete {
                    return Ok(Reply::Bad("SASL response too long".into()));
                }
                line.text()
            }
        };
        let creds = match sasl::decode_plain(&response) {
            Ok(creds) => creds,
            Err(SaslError::Cancelled) => {
                return Ok(Reply::Bad("Authentication cancelled".into()));
            }
            Err(SaslError::Malformed) => {
                return Ok(Reply::Bad("Malformed PLAIN response".into()));
            }
        };
        if !creds.authzid.is_empty()
            && !creds.authzid.eq_ignore_ascii_case(&creds.authcid)
        {
            return Ok(Reply::No(
                "[AUTHORIZATIONFAILED] Acting as another user is not allowed"
                    .into(),
            ));
        }
        self.check_password(&creds.authcid, &creds.password)
    }

    fn check_password(
        &mut self,
        user: &str,
        pass: &str,
    ) -> Result<Reply, ReadError> {
        let identity = match accounts::authenticate(user, pass) {
            Ok(identity) => identity,
            Err(err) => {
                self.auth_failures += 1;
                let reply = match err {
                    AuthError::InvalidCredentials => {
                        "[AUTHENTICATIONFAILED] Invalid credentials"
                    }
                    AuthError::PlaintextRefused => {
                        "[PRIVACYREQUIRED] Plaintext login is disabled here"
                    }
                    AuthError::TemporaryFailure => {
                        "[UNAVAILABLE] Account store unavailable, try later"
                    }
                    AuthError::NotAllowed => "[CONTACTADMIN] Login not allowed",
                };
                if self.auth_failures >= MAX_AUTH_FAILURES {
                    self.put_str("* BYE Too many failed logins\r\n")?;
                    self.session.flush()?;
                    return Err(ReadError::Closed);
                }
                return Ok(Reply::No(reply.into()));
            }
        };
        let account = match mailbox::open_account(&identity) {
            Ok(account) => account,
            Err(err) => {
                self.log(Level::Warn, &format!("open-account failed: {err:?}"));
                return Ok(Reply::No(
                    "[UNAVAILABLE] Mailbox unavailable".into(),
                ));
            }
        };
        self.account = Some(account);
        self.log(Level::Info, &format!("login {}", identity.name()));
        let caps = self.capabilities();
        Ok(Reply::Ok(format!("[CAPABILITY {caps}] Logged in")))
    }
}
