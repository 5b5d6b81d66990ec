//! Durable local delivery.
//!
//! A message is streamed into one file in the first recipient's `tmp/`,
//! with a `Return-Path:` header in front and every bare LF stored as
//! CRLF, so the file holds exactly what a read returns (`,S=` and `,W=`
//! are equal). On commit the file is synced, hard-linked into each
//! recipient's `new/` (copied where a link is impossible), each `new/` is
//! synced, and only then is a recipient's result `Ok`. Until the link the
//! message is invisible to every reader: `tmp/` is never scanned.
//!
//! Directory syncs of concurrent deliveries into the same `new/` are
//! shared (group commit), which is what lets many deliverers beat one.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;

use crate::account::{Account, now_secs};
use crate::accounts::{Accounts, RecipientStatus};
use crate::error::DeliveryError;
use crate::filename;
use crate::fsutil;
use crate::maildir;
use crate::place::system_time;
use crate::store::{Store, StoreInner};

/// The most recipients one delivery takes.
pub const MAX_RECIPIENTS: usize = 1000;

/// The longest return path accepted, in bytes (RFC 5321 allows 256).
pub const MAX_RETURN_PATH_LEN: usize = 512;

/// The outcome for each recipient of a committed delivery, in the order
/// given: the address as passed, and `Ok` once durable for it.
pub type RecipientResults = Vec<(String, Result<(), DeliveryError>)>;

/// One message being received.
#[derive(Debug)]
pub struct Delivery {
    store: Arc<StoreInner>,
    /// Each recipient as given, with the index of its accounts or why
    /// it cannot be delivered to.
    recipients: Vec<(String, Result<Vec<usize>, DeliveryError>)>,
    accounts: Vec<Account>,
    tmp: PathBuf,
    file: Option<File>,
    prev: u8,
    /// Message bytes so far (without the Return-Path header).
    size: u64,
    /// File bytes so far.
    file_size: u64,
    max_size: u64,
    failed: Option<DeliveryError>,
    committed: bool,
    buf: Vec<u8>,
}

impl Store {
    /// Start a delivery from `return_path` (empty for `<>`) to
    /// `recipients` (addresses, 1 to [`MAX_RECIPIENTS`]), resolved
    /// through `accounts` (aliases expand; an account reached twice gets
    /// one copy). Messages over `max_size` bytes are refused.
    ///
    /// Typical errors: `invalid-argument` (no or too many recipients, a
    /// return path with CR, LF, NUL or angle brackets: header injection).
    pub fn begin_delivery(
        &self,
        accounts: &Accounts,
        return_path: &str,
        recipients: Vec<String>,
        max_size: u64,
    ) -> Result<Delivery, DeliveryError> {
        let targets = recipients
            .into_iter()
            .map(|r| {
                let found = match accounts.check_recipient(&r) {
                    RecipientStatus::Local(list) => Ok(list),
                    _ => Err(DeliveryError::UnknownUser),
                };
                (r, found)
            })
            .collect();
        self.begin_delivery_to(return_path, targets, max_size)
    }

    /// Like [`Store::begin_delivery`], with each recipient already
    /// resolved to its account names (or to the reason it cannot be).
    pub fn begin_delivery_to(
        &self,
        return_path: &str,
        targets: Vec<(String, Result<Vec<String>, DeliveryError>)>,
        max_size: u64,
    ) -> Result<Delivery, DeliveryError> {
        if targets.is_empty() || targets.len() > MAX_RECIPIENTS {
            return Err(DeliveryError::InvalidArgument(format!(
                "{} recipients; 1 to {MAX_RECIPIENTS} allowed",
                targets.len()
            )));
        }
        let bad_char = return_path
            .bytes()
            .any(|b| b.is_ascii_control() || b == b'<' || b == b'>');
        if bad_char || return_path.len() > MAX_RETURN_PATH_LEN {
            return Err(DeliveryError::InvalidArgument(
                "return path holds forbidden characters or is too long"
                    .to_owned(),
            ));
        }

        // Open each account once; a recipient fails alone if its
        // account cannot be opened.
        let mut accounts: Vec<Account> = Vec::new();
        let mut by_name: HashMap<String, usize> = HashMap::new();
        let mut recipients = Vec::with_capacity(targets.len());
        for (rcpt, found) in targets {
            let resolved = found.and_then(|names| {
                let mut idx = Vec::new();
                for name in names {
                    let i = match by_name.get(&name.to_ascii_lowercase()) {
                        Some(&i) => i,
                        None => {
                            let acct = self.account(&name)?;
                            accounts.push(acct);
                            by_name.insert(
                                name.to_ascii_lowercase(),
                                accounts.len() - 1,
                            );
                            accounts.len() - 1
                        }
                    };
                    idx.push(i);
                }
                Ok(idx)
            });
            recipients.push((rcpt, resolved));
        }

        let mut delivery = Delivery {
            store: self.inner.clone(),
            recipients,
            tmp: PathBuf::new(),
            file: None,
            prev: 0,
            size: 0,
            file_size: 0,
            max_size,
            failed: None,
            committed: false,
            buf: Vec::new(),
            accounts,
        };
        if let Some(first) = delivery.accounts.first() {
            let date = now_secs();
            let tmp =
                first.root().join("tmp").join(filename::unique_base(date));
            let file = fsutil::create_new(&tmp)
                .map_err(|e| DeliveryError::io("cannot create", &tmp, e))?;
            delivery.tmp = tmp;
            delivery.file = Some(file);
            let header = format!("Return-Path: <{return_path}>\r\n");
            delivery.write_file(header.as_bytes().to_vec())?;
        }
        Ok(delivery)
    }
}

impl Delivery {
    fn write_file(&mut self, bytes: Vec<u8>) -> Result<(), DeliveryError> {
        if let Some(file) = self.file.as_mut() {
            file.write_all(&bytes)
                .map_err(|e| DeliveryError::io("cannot write", &self.tmp, e))?;
            self.file_size += bytes.len() as u64;
        }
        Ok(())
    }

    /// Append message bytes (dot-unstuffed). Bare LFs become CRLF.
    ///
    /// Typical errors: `too-large` (then every later call fails the
    /// same way and nothing is delivered), `temporary-failure`.
    pub fn write(&mut self, data: &[u8]) -> Result<(), DeliveryError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        if self.committed {
            return Err(DeliveryError::InvalidArgument(
                "already committed".into(),
            ));
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        maildir::to_crlf(data, &mut self.prev, &mut buf);
        self.size += buf.len() as u64;
        if self.size > self.max_size {
            self.fail(DeliveryError::TooLarge);
            return Err(DeliveryError::TooLarge);
        }
        let result = self.write_file(buf.clone());
        self.buf = buf;
        if let Err(e) = &result {
            self.fail(e.clone());
        }
        result
    }

    fn fail(&mut self, err: DeliveryError) {
        self.failed = Some(err);
        self.discard();
    }

    fn discard(&mut self) {
        self.file = None;
        if !self.tmp.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.tmp);
            self.tmp = PathBuf::new();
        }
    }

    /// Bytes of the message so far, as counted against the size limit.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Deliver to every recipient and return one result each, in the
    /// order given. A result is `Ok` only once the message is synced to
    /// disk and its name in `new/` is synced too.
    ///
    /// Typical errors (for the whole transaction): `too-large`,
    /// `invalid-argument` for a second commit.
    pub fn commit(&mut self) -> Result<RecipientResults, DeliveryError> {
        if self.committed {
            return Err(DeliveryError::InvalidArgument(
                "already committed".into(),
            ));
        }
        self.committed = true;
        if let Some(err) = self.failed.clone() {
            return Err(err);
        }
        let per_account = match self.file.take() {
            Some(file) => self.place_all(file),
            None => Vec::new(),
        };
        self.discard();

        let results = self
            .recipients
            .iter()
            .map(|(rcpt, target)| {
                let outcome = match target {
                    Err(e) => Err(e.clone()),
                    Ok(idx) => idx
                        .iter()
                        .map(|&i| per_account[i].clone())
                        .find(Result::is_err)
                        .unwrap_or(Ok(())),
                };
                (rcpt.clone(), outcome)
            })
            .collect();
        Ok(results)
    }

    /// Sync the file, link it into every account's `new/`, sync those
    /// directories; one result per account.
    fn place_all(&mut self, file: File) -> Vec<Result<(), DeliveryError>> {
        let date = now_secs();
        let synced = file
            .set_modified(system_time(date))
            .and_then(|()| fsutil::sync_file(&file, &self.tmp))
            .map_err(|e| DeliveryError::io("cannot sync", &self.tmp, e));
        drop(file);
        if let Err(e) = synced {
            return vec![Err(e); self.accounts.len()];
        }

        let base = filename::with_sizes(
            &filename::unique_base(date),
            self.file_size,
            self.file_size,
        );
        let mut results = Vec::with_capacity(self.accounts.len());
        for acct in &self.accounts {
            let new_dir = acct.root().join("new");
            let dest = new_dir.join(&base);
            let placed = match fsutil::link(&self.tmp, &dest) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
                // Another file system: a synced copy instead.
                Err(_) => copy_into(&self.tmp, acct, &dest, date),
            };
            let synced = placed
                .and_then(|()| self.store.dir_sync(&new_dir).sync(&new_dir));
            results.push(
                synced.map_err(|e| {
                    DeliveryError::io("cannot deliver to", &dest, e)
                }),
            );
        }

        // Readers of each INBOX learn of the message now.
        for (acct, result) in self.accounts.iter().zip(&results) {
            if result.is_ok()
                && let Some(shared) = self.store.folder_if_known(acct.root())
            {
                shared.changed();
            }
        }
        results
    }
}

fn copy_into(
    source: &std::path::Path,
    acct: &Account,
    dest: &std::path::Path,
    date: i64,
) -> io::Result<()> {
    let tmp = acct.root().join("tmp").join(filename::unique_base(date));
    let result = (|| {
        fs::copy(source, &tmp)?;
        let f = fs::OpenOptions::new().write(true).open(&tmp)?;
        f.set_modified(system_time(date))?;
        fsutil::sync_file(&f, &tmp)?;
        fsutil::link(&tmp, dest)?;
        fs::remove_file(&tmp)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

impl Drop for Delivery {
    fn drop(&mut self) {
        self.discard();
    }
}
