//! One account's Maildir: folders, subscriptions, appends.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::dotlock::DotLock;
use crate::error::StoreError;
use crate::filename;
use crate::flags::ImapFlags;
use crate::folder::Folder;
use crate::fsutil;
use crate::maildir;
use crate::names::{FolderName, SPECIAL_FOLDERS};
use crate::place::{self, Placement};
use crate::store::{StoreInner, account_path};
use crate::types::{FolderInfo, FolderStatus, OpenMode};

/// The subscriptions file in the Maildir root, as Dovecot names it.
pub const SUBSCRIPTIONS_FILE: &str = "subscriptions";

/// The version 2 header Dovecot writes at the top of `subscriptions`.
const SUBSCRIPTIONS_V2: &str = "V\t2\n\n";

/// The latest INTERNALDATE accepted: 9999-12-31 23:59:59 UTC. Earlier
/// than the epoch is clamped to the epoch.
pub const MAX_INTERNAL_DATE: i64 = 253_402_300_799;

/// An account's folders. Cheap to clone; dropping it closes nothing
/// that was opened through it.
#[derive(Debug, Clone)]
pub struct Account {
    store: Arc<StoreInner>,
    name: String,
    root: PathBuf,
}

/// The directory of folder `name` below Maildir `root`.
fn folder_dir(root: &Path, name: &FolderName) -> PathBuf {
    match name.dir_name() {
        None => root.to_path_buf(),
        Some(dir) => root.join(dir),
    }
}

fn is_folder(dir: &Path) -> bool {
    dir.join("cur").is_dir()
}

/// The directory of an existing folder, by WIT name.
pub(crate) fn existing_folder_dir(
    root: &Path,
    name: &str,
) -> Result<PathBuf, StoreError> {
    let dir = folder_dir(root, &FolderName::parse(name)?);
    if !is_folder(&dir) {
        return Err(StoreError::NotFound);
    }
    Ok(dir)
}

impl Account {
    pub(crate) fn open_account(
        store: Arc<StoreInner>,
        name: &str,
    ) -> Result<Account, StoreError> {
        let (local, domain) = account_path(name)?;
        let root = store.data_dir.join(&domain).join(&local).join("Maildir");
        let account = Account {
            store,
            name: format!("{local}@{domain}"),
            root,
        };
        if !is_folder(&account.root) {
            account.initialize()?;
        }
        // TODO(#3): remove `tmp/` files older than 36 hours (left by a
        // crash mid-delivery), as the Maildir spec asks of readers.
        Ok(account)
    }

    /// Make the Maildir, the special-use folders and their
    /// subscriptions. Safe to run twice at once: every step tolerates
    /// finding its work done.
    fn initialize(&self) -> Result<(), StoreError> {
        let io_err = |e| StoreError::io("cannot create", &self.root, e);
        maildir::create_folder_dirs(&self.root, false).map_err(io_err)?;
        for special in SPECIAL_FOLDERS {
            let name = FolderName::parse(special)?;
            let dir = folder_dir(&self.root, &name);
            maildir::create_folder_dirs(&dir, true).map_err(io_err)?;
        }
        let mut names = vec!["INBOX".to_owned()];
        names.extend(SPECIAL_FOLDERS.iter().map(|s| (*s).to_owned()));
        self.update_subscriptions(|subs| {
            for n in names {
                if !subs.contains(&n) {
                    subs.push(n);
                }
            }
        })?;
        tracing::info!(account = %self.name, "created mailbox");
        Ok(())
    }

    /// The account's canonical name, `user@domain`, lower case.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The account's Maildir root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every folder, `INBOX` first, then by name.
    ///
    /// Typical errors: `temporary-failure`.
    pub fn list_folders(&self) -> Result<Vec<FolderInfo>, StoreError> {
        let entries = fs::read_dir(&self.root)
            .map_err(|e| StoreError::io("cannot list", &self.root, e))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry
                .map_err(|e| StoreError::io("cannot list", &self.root, e))?;
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let Ok(dir) = entry.file_name().into_string() else {
                continue;
            };
            match FolderName::from_dir_name(&dir) {
                Some(FolderName::Inbox) | None => {}
                Some(name) => names.push(name),
            }
        }
        names.sort_by_key(|n| n.display());

        let subscribed: HashSet<String> =
            self.subscriptions()?.into_iter().collect();
        let mut all = vec![FolderName::Inbox];
        all.extend(names);
        let infos = all
            .iter()
            .map(|name| FolderInfo {
                name: name.display(),
                special_use: name.special_use().map(str::to_owned),
                subscribed: subscribed.contains(&name.display()),
                has_children: all.iter().any(|other| other.is_below(name)),
            })
            .collect();
        Ok(infos)
    }

    /// Create a folder and any missing parent levels.
    ///
    /// Typical errors: `already-exists`, `invalid-name`.
    pub fn create_folder(&self, name: &str) -> Result<(), StoreError> {
        let name = FolderName::parse(name)?;
        if name == FolderName::Inbox {
            return Err(StoreError::AlreadyExists);
        }

        let mut parent = name.parent();
        while let Some(p) = parent {
            let dir = folder_dir(&self.root, &p);
            if !is_folder(&dir) {
                maildir::create_folder_dirs(&dir, true)
                    .map_err(|e| StoreError::io("cannot create", &dir, e))?;
            }
            parent = p.parent();
        }

        let dir = folder_dir(&self.root, &name);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(StoreError::AlreadyExists);
            }
            Err(e) => return Err(StoreError::io("cannot create", &dir, e)),
        }
        maildir::create_folder_dirs(&dir, true)
            .map_err(|e| StoreError::io("cannot create", &dir, e))
    }

    /// Delete a folder and its messages; folders below it stay.
    ///
    /// Typical errors: `not-found`, `invalid-name` (for `INBOX`).
    pub fn delete_folder(&self, name: &str) -> Result<(), StoreError> {
        let name = FolderName::parse(name)?;
        if name == FolderName::Inbox {
            return Err(StoreError::InvalidName);
        }
        let dir = folder_dir(&self.root, &name);
        if !is_folder(&dir) {
            return Err(StoreError::NotFound);
        }

        // Rename it out of sight first, so the folder vanishes at once;
        // the `..` prefix is never read back as a folder name.
        let trash = self
            .root
            .join(format!("..mailhost-deleted.{:016x}", rand::random::<u64>()));
        fs::rename(&dir, &trash)
            .map_err(|e| StoreError::io("cannot delete", &dir, e))?;
        self.store.forget_folder(&dir);
        fs::remove_dir_all(&trash)
            .map_err(|e| StoreError::io("cannot delete", &trash, e))
    }

    /// Rename a folder with the folders below it. Renaming `INBOX` moves
    /// its messages into the new folder and leaves `INBOX` empty.
    ///
    /// Typical errors: `not-found`, `already-exists`, `invalid-name`.
    pub fn rename_folder(
        &self,
        old: &str,
        new: &str,
    ) -> Result<(), StoreError> {
        let old_name = FolderName::parse(old)?;
        let new_name = FolderName::parse(new)?;
        if new_name == FolderName::Inbox || new_name.is_below(&old_name) {
            return Err(StoreError::InvalidName);
        }
        let old_dir = folder_dir(&self.root, &old_name);
        let new_dir = folder_dir(&self.root, &new_name);
        if !is_folder(&old_dir) {
            return Err(StoreError::NotFound);
        }
        if new_dir.exists() {
            return Err(StoreError::AlreadyExists);
        }

        if old_name == FolderName::Inbox {
            self.create_folder(new)?;
            let mut inbox = self.open("INBOX", OpenMode::ReadWrite)?;
            let uids: Vec<u32> =
                inbox.messages().iter().map(|m| m.uid).collect();
            inbox.move_(&uids, new)?;
            return Ok(());
        }

        // Children move along; check all targets before touching any.
        let children: Vec<FolderName> = self
            .list_folders()?
            .into_iter()
            .filter_map(|f| FolderName::parse(&f.name).ok())
            .filter(|f| f.is_below(&old_name))
            .collect();
        let mut moves = vec![(old_dir, new_dir)];
        for child in &children {
            let FolderName::Sub(levels) = child else {
                continue;
            };
            let depth = match &old_name {
                FolderName::Sub(l) => l.len(),
                FolderName::Inbox => 1,
            };
            let suffix = levels[depth..].join("/");
            let target = FolderName::parse(&format!("{new}/{suffix}"))?;
            let target_dir = folder_dir(&self.root, &target);
            if target_dir.exists() {
                return Err(StoreError::AlreadyExists);
            }
            moves.push((folder_dir(&self.root, child), target_dir));
        }

        if let Some(parent) = new_name.parent()
            && parent != FolderName::Inbox
            && !is_folder(&folder_dir(&self.root, &parent))
        {
            self.create_folder(&parent.display())?;
        }
        for (from, to) in moves {
            fs::rename(&from, &to)
                .map_err(|e| StoreError::io("cannot rename", &from, e))?;
            self.store.forget_folder(&from);
        }
        Ok(())
    }

    /// The subscribed names, as stored.
    ///
    /// Typical errors: `temporary-failure` for an unreadable file.
    pub fn subscriptions(&self) -> Result<Vec<String>, StoreError> {
        let path = self.root.join(SUBSCRIPTIONS_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(parse_subscriptions(&text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(StoreError::io("cannot read", &path, e)),
        }
    }

    /// Subscribe to or unsubscribe from `name`; the folder need not
    /// exist.
    ///
    /// Typical errors: `invalid-name`.
    pub fn set_subscribed(
        &self,
        name: &str,
        subscribed: bool,
    ) -> Result<(), StoreError> {
        let name = FolderName::parse(name)?.display();
        self.update_subscriptions(|subs| {
            subs.retain(|s| *s != name);
            if subscribed {
                subs.push(name);
            }
        })
    }

    fn update_subscriptions(
        &self,
        change: impl FnOnce(&mut Vec<String>),
    ) -> Result<(), StoreError> {
        let path = self.root.join(SUBSCRIPTIONS_FILE);
        let lock = DotLock::acquire(&path)?;
        let mut subs = self.subscriptions()?;
        let before = subs.clone();
        change(&mut subs);
        if subs == before {
            return Ok(());
        }
        lock.replace(serialize_subscriptions(&subs).as_bytes())
    }

    /// Counters of a folder. Gives UIDs to new files, as opening does,
    /// but moves nothing out of `new/`.
    ///
    /// Typical errors: `not-found`.
    pub fn status(&self, name: &str) -> Result<FolderStatus, StoreError> {
        let folder = self.open(name, OpenMode::ReadOnly)?;
        Ok(folder.status())
    }

    /// Open a folder and take a snapshot of its messages.
    ///
    /// Typical errors: `not-found`, `invalid-name`, `in-use` (exclusive
    /// mode, while another exclusive handle lives).
    pub fn open(
        &self,
        name: &str,
        mode: OpenMode,
    ) -> Result<Folder, StoreError> {
        let dir = existing_folder_dir(&self.root, name)?;
        Folder::open(self.store.clone(), self.root.clone(), dir, mode)
    }

    /// Start appending a message of at most `max_size` bytes to folder
    /// `name`, with `flags` and an INTERNALDATE (now when `None`).
    ///
    /// Typical errors: `not-found`, `invalid-argument` (a bad flag).
    pub fn begin_append(
        &self,
        name: &str,
        flags: &[String],
        internal_date: Option<i64>,
        max_size: u64,
    ) -> Result<Appender, StoreError> {
        let dir = existing_folder_dir(&self.root, name)?;
        let flags = ImapFlags::parse(flags)?;
        let date = internal_date
            .unwrap_or_else(now_secs)
            .clamp(0, MAX_INTERNAL_DATE);
        let tmp = dir.join("tmp").join(filename::unique_base(date));
        let file = fsutil::create_new(&tmp)
            .map_err(|e| StoreError::io("cannot create", &tmp, e))?;
        Ok(Appender {
            store: self.store.clone(),
            dir,
            tmp,
            file: Some(file),
            prev: 0,
            written: 0,
            max_size,
            flags,
            date,
            failed: false,
            buf: Vec::new(),
        })
    }
}

/// Seconds since the epoch, now.
pub(crate) fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Read Dovecot's subscriptions file: version 2 (a header, then levels
/// separated by tabs, tab-escaped) or version 1 (one name a line, `.`
/// between levels, the Maildir++ separator).
fn parse_subscriptions(text: &str) -> Vec<String> {
    match text.strip_prefix(SUBSCRIPTIONS_V2) {
        Some(body) => body
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                l.split('\t')
                    .map(tab_unescape)
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .collect(),
        None => text
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| l.replace('.', "/"))
            .collect(),
    }
}

fn serialize_subscriptions(subs: &[String]) -> String {
    let mut out = SUBSCRIPTIONS_V2.to_owned();
    for s in subs {
        let levels: Vec<String> = s.split('/').map(tab_escape).collect();
        out.push_str(&levels.join("\t"));
        out.push('\n');
    }
    out
}

/// Dovecot's tab escaping: `\x01` introduces `1` (itself), `t`, `r`,
/// `n`.
fn tab_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\x01' => out.push_str("\x011"),
            '\t' => out.push_str("\x01t"),
            '\r' => out.push_str("\x01r"),
            '\n' => out.push_str("\x01n"),
            c => out.push(c),
        }
    }
    out
}

fn tab_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\x01' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('1') => out.push('\x01'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// A message being appended. Dropped uncommitted, it leaves nothing.
#[derive(Debug)]
pub struct Appender {
    store: Arc<StoreInner>,
    dir: PathBuf,
    tmp: PathBuf,
    file: Option<File>,
    /// Last byte written, to recognise a CRLF split across writes.
    prev: u8,
    written: u64,
    max_size: u64,
    flags: ImapFlags,
    date: i64,
    failed: bool,
    buf: Vec<u8>,
}

impl Appender {
    /// Append bytes of the message. Bare LFs are stored as CRLF.
    ///
    /// Typical errors: `too-large` (and every later call fails the
    /// same), `temporary-failure`.
    pub fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        if self.failed {
            return Err(StoreError::TooLarge);
        }
        self.buf.clear();
        maildir::to_crlf(data, &mut self.prev, &mut self.buf);
        self.written += self.buf.len() as u64;
        if self.written > self.max_size {
            self.failed = true;
            self.discard();
            return Err(StoreError::TooLarge);
        }
        let file = self.file.as_mut().ok_or(StoreError::TooLarge)?;
        file.write_all(&self.buf)
            .map_err(|e| StoreError::io("cannot write", &self.tmp, e))
    }

    /// Make the message durable and visible; returns the folder's
    /// UIDVALIDITY and the new UID.
    ///
    /// Typical errors: `too-large`, `temporary-failure`.
    pub fn commit(mut self) -> Result<(u32, u32), StoreError> {
        if self.failed {
            return Err(StoreError::TooLarge);
        }
        let file = self.file.take().ok_or(StoreError::TooLarge)?;
        let io_err = |e| StoreError::io("cannot write", &self.tmp, e);
        file.set_modified(place::system_time(self.date))
            .map_err(io_err)?;
        fsutil::sync_file(&file, &self.tmp).map_err(io_err)?;
        drop(file);

        let keyword_names = self.flags.keywords.clone();
        let upper = self.flags.system;
        let item = Placement {
            source: self.tmp.clone(),
            date: self.date,
            vsize: self.written,
            upper,
            keyword_names,
            consume: true,
        };
        let shared = self.store.folder(&self.dir);
        let (validity, uids) =
            place::place(&self.store, &self.dir, &shared, vec![item])?;
        self.tmp = PathBuf::new();
        let uid = uids.first().copied().flatten().ok_or_else(|| {
            StoreError::Temporary("appended file vanished".to_owned())
        })?;
        Ok((validity, uid))
    }

    fn discard(&mut self) {
        self.file = None;
        if !self.tmp.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.tmp);
            self.tmp = PathBuf::new();
        }
    }
}

impl Drop for Appender {
    fn drop(&mut self) {
        self.discard();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_v2_round_trip() {
        let subs =
            vec!["INBOX".to_owned(), "a/b".to_owned(), "t\tab".to_owned()];
        let text = serialize_subscriptions(&subs);
        assert_eq!(text, "V\t2\n\nINBOX\na\tb\nt\x01tab\n");
        assert_eq!(parse_subscriptions(&text), subs);
        assert_eq!(parse_subscriptions("INBOX\nx.y\n"), ["INBOX", "x/y"]);
    }
}
