//! SMTP AUTH (RFC 4954) with the PLAIN (RFC 4616) and LOGIN mechanisms.
//! The host checks the password and slows down guessing; this side only
//! runs the exchange.

use mailhost_sdk::Level;
use mailhost_sdk::accounts::{self, AuthError};
use mailhost_sdk::sasl::{self, Credentials, SaslError};

use crate::config::Mode;
use crate::server::{Flow, MAX_AUTH_LINE, Server, log};

impl Server {
    /// `AUTH <mechanism> [initial-response]`.
    pub fn auth(&mut self, mechanism: &str, initial: Option<String>) -> Flow {
        if self.config.mode != Mode::Submission {
            return self
                .refuse(503, "5.5.1 AUTH not available on this service");
        }
        if !self.hello.as_ref().is_some_and(|hello| hello.extended) {
            return self.refuse(503, "5.5.1 Send EHLO first");
        }
        if self.identity.is_some() {
            return self.refuse(503, "5.5.1 Already authenticated");
        }
        if self.envelope.is_some() {
            return self
                .refuse(503, "5.5.1 AUTH not allowed during a transaction");
        }
        self.info = self.session.info();
        if !self.auth_offered() {
            return self.refuse(
                538,
                "5.7.11 Encryption required for requested authentication mechanism",
            );
        }

        // Under SASL-IR "=" is an empty initial response: the same as
        // none for both mechanisms, which then prompt.
        let initial = initial.filter(|response| response != "=");
        let credentials = match mechanism {
            "PLAIN" => self.plain(initial),
            "LOGIN" => self.login(initial),
            _ => {
                return self.refuse(
                    504,
                    "5.5.4 Unrecognized authentication mechanism",
                );
            }
        };
        match credentials {
            Ok(credentials) => self.check(credentials),
            Err(flow) => flow,
        }
    }

    fn plain(&mut self, initial: Option<String>) -> Result<Credentials, Flow> {
        let response = match initial {
            Some(response) => response,
            None => self.challenge("")?,
        };
        sasl::decode_plain(&response).map_err(|err| self.sasl_failed(err))
    }

    fn login(&mut self, initial: Option<String>) -> Result<Credentials, Flow> {
        let username = match initial {
            Some(response) => response,
            None => self.challenge(sasl::LOGIN_USERNAME_CHALLENGE)?,
        };
        let username = sasl::decode_login_step(&username)
            .map_err(|err| self.sasl_failed(err))?;

        let password = self.challenge(sasl::LOGIN_PASSWORD_CHALLENGE)?;
        let password = sasl::decode_login_step(&password)
            .map_err(|err| self.sasl_failed(err))?;
        Ok(Credentials {
            authzid: String::new(),
            authcid: username,
            password,
        })
    }

    /// Send `334 challenge` and read the client's response line.
    fn challenge(&mut self, challenge: &str) -> Result<String, Flow> {
        self.reply(334, challenge);

        let line = match self.session.read_line(MAX_AUTH_LINE as u32) {
            Ok(line) => line,
            Err(err) => {
                self.goodbye(err);
                return Err(Flow::Close);
            }
        };
        if !line.complete {
            return Err(
                self.refuse(500, "5.5.6 Authentication exchange line too long")
            );
        }
        Ok(line.text())
    }

    fn sasl_failed(&mut self, err: SaslError) -> Flow {
        match err {
            SaslError::Cancelled => {
                self.refuse(501, "5.0.0 Authentication cancelled")
            }
            SaslError::Malformed => {
                self.refuse(501, "5.5.2 Cannot decode response")
            }
        }
    }

    /// Ask the host about the password. An authorisation identity other
    /// than the user's own is refused first: the host lets a session log
    /// in once, so a check after a successful login would burn it.
    fn check(&mut self, credentials: Credentials) -> Flow {
        let authzid = &credentials.authzid;
        if !authzid.is_empty()
            && !authzid.eq_ignore_ascii_case(&credentials.authcid)
        {
            // TODO(#5): let an account act as one of its aliases here
            // once the host can tell before the login.
            return self
                .refuse(535, "5.7.8 Not authorized to act as that identity");
        }

        let identity = match accounts::authenticate(
            &credentials.authcid,
            &credentials.password,
        ) {
            Ok(identity) => identity,
            Err(err) => return self.auth_failed(err),
        };

        log(
            Level::Info,
            &format!("authenticated as {}", identity.name()),
        );
        self.identity = Some(identity);
        self.reply(235, "2.7.0 Authentication successful");
        Flow::Continue
    }

    fn auth_failed(&mut self, err: AuthError) -> Flow {
        match err {
            AuthError::InvalidCredentials => {
                self.refuse(535, "5.7.8 Authentication credentials invalid")
            }
            AuthError::PlaintextRefused => self.refuse(
                538,
                "5.7.11 Encryption required for requested authentication mechanism",
            ),
            AuthError::TemporaryFailure => {
                self.reply(454, "4.7.0 Temporary authentication failure");
                Flow::Continue
            }
            AuthError::NotAllowed => {
                self.reply(
                    421,
                    "4.7.0 Too many authentication attempts, closing connection",
                );
                Flow::Close
            }
        }
    }
}
