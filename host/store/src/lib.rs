//! The mail store of mailhost: Maildir folders compatible with Dovecot,
//! durable delivery, accounts and the failed-login throttle.
//!
//! The API mirrors the WIT interfaces `accounts`, `delivery` and
//! `mailbox` (`wit/store.wit`) one to one, so the host's glue is thin.
//! Every call blocks (the host runs them on `spawn_blocking`); [`Store`]
//! and [`Accounts`] are `Send + Sync` and meant to be shared by `Arc`.
//!
//! # On disk
//!
//! ```text
//! <data>/<domain>/<user>/Maildir/          INBOX
//!     cur/ new/ tmp/                       messages
//!     dovecot-uidlist                      UIDVALIDITY, next UID, UIDs
//!     dovecot-keywords                     keyword letters a..z
//!     subscriptions                        Dovecot version 2 format
//!     .Sent/ .Drafts/ .a.b/ .Entw&APw-rfe/ folders (Maildir++)
//! ```
//!
//! - Messages are stored with CRLF line ends: what SMTP received, with
//!   any bare LF turned into CRLF. So `,S=` (file size) and `,W=` (CRLF
//!   size) are equal and reads are plain file reads. Files with bare LFs
//!   written by other software are converted on read.
//! - INTERNALDATE is the file's mtime, as in Dovecot. Our file names
//!   also carry it (see [`filename`]) so a folder opens without a `stat`
//!   per message; for other names it is read once per process.
//! - UIDs live in `dovecot-uidlist`, changed only under its
//!   `dovecot-uidlist.lock` dot-lock and replaced by rename, so a
//!   mailbox keeps its UIDs when moved between Dovecot and mailhost.
//!
//! # Example
//!
//! ```
//! use mailhost_store::{OpenMode, Store};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path()).unwrap();
//! let alice = store.account("alice@example.org").unwrap();
//!
//! let mut delivery = store
//!     .begin_delivery_to(
//!         "bob@example.net",
//!         vec![("alice@example.org".into(), Ok(vec!["alice@example.org".into()]))],
//!         1 << 20,
//!     )
//!     .unwrap();
//! delivery.write(b"Subject: hi\r\n\r\nHello\r\n").unwrap();
//! let results = delivery.commit().unwrap();
//! assert!(results[0].1.is_ok());
//!
//! let mut inbox = alice.open("INBOX", OpenMode::ReadWrite).unwrap();
//! let uid = inbox.messages()[0].uid;
//! let text = inbox.read(uid, 0, 4096).unwrap();
//! assert!(text.starts_with(b"Return-Path: <bob@example.net>\r\n"));
//! ```

#![warn(missing_docs)]

mod account;
pub mod accounts;
mod delivery;
mod dotlock;
mod error;
pub mod filename;
pub mod flags;
mod folder;
mod fsutil;
mod maildir;
pub mod mutf7;
pub mod names;
pub mod password;
mod place;
mod store;
pub mod throttle;
mod types;
pub mod uidlist;
mod usercmd;

pub use account::{Account, Appender, MAX_INTERNAL_DATE};
pub use accounts::{Accounts, Identity, RecipientStatus};
pub use delivery::{
    Delivery, MAX_RECIPIENTS, MAX_RETURN_PATH_LEN, RecipientResults,
};
pub use dotlock::{STALE_AFTER, WAIT_LIMIT};
pub use error::{AuthError, DeliveryError, FileError, StoreError};
pub use folder::{Folder, MAX_READ_LEN};
pub use maildir::STABLE_AFTER;
pub use store::{Store, account_path};
pub use throttle::LoginThrottle;
pub use types::{
    Changes, FlagOperation, FolderInfo, FolderStatus, MessageInfo, OpenMode,
};
pub use usercmd::{UserCommand, read_password, run_user_command, user_command};

#[cfg(test)]
mod tests;
