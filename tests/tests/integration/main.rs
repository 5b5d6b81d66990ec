//! One integration test binary. Every test starts the real `mailhost`
//! binary on loopback port 0 with its own data directory and drives it
//! with real clients over real sockets.
//!
//! Modules:
//! - `chain`: SMTP in, POP3 and IMAP out, through all three plugins.
//! - `host`: limits, containment of hostile plugins, timeouts, shutdown,
//!   config and plugin validation errors.
//! - `tls`: implicit TLS and STARTTLS, injection, stalled handshakes.
//! - `store`: Maildir delivery, crash safety, Dovecot interop, accounts.
//! - `smtp`: reception, submission and LMTP with smtplib, swaks, lettre.
//! - `pop3`: poplib, curl, fetchmail against the POP3 plugin.
//! - `imap`: imaplib, mbsync, curl against the IMAP plugin.
//! - `reload`: plugin hot swap under load, refused files, the cache.
//! - `transcripts`: every plugin's transcripts through `mailhost plugin test`.

mod chain;
mod host;
mod imap;
mod pop3;
mod reload;
mod smtp;
mod store;
mod tls;
mod transcripts;
