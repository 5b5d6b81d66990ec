//! An open folder: a snapshot of its messages that changes only on
//! `refresh`, so sequence numbers stay put between a session's commands.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::Notify;

use crate::error::StoreError;
use crate::filename;
use crate::flags::{
    ImapFlags, KEYWORDS_FILE, Keywords, MaildirFlags, letter_bit, mask_letters,
    system_mask,
};
use crate::fsutil;
use crate::maildir::{self, FileRef, Locked, NameMap, Scan};
use crate::place::{self, Placement};
use crate::store::{FolderShared, StoreInner};
use crate::types::{
    Changes, FlagOperation, FolderStatus, MessageInfo, OpenMode,
};

/// The most bytes one `read` returns, whatever `max_len` asks.
pub const MAX_READ_LEN: u32 = 16 * 1024 * 1024;

/// An open folder. Dropping it releases an exclusive open.
#[derive(Debug)]
pub struct Folder {
    store: Arc<StoreInner>,
    shared: Arc<FolderShared>,
    /// The account's Maildir root, to find copy and move targets.
    root: PathBuf,
    dir: PathBuf,
    mode: OpenMode,
    holds_exclusive: bool,
    uid_validity: u32,
    next_uid: u32,
    files: Vec<FileRef>,
    infos: Vec<MessageInfo>,
    index: HashMap<u32, usize>,
    /// Messages this session moved out of `new/`.
    recent: HashSet<u32>,
    keywords: Keywords,
    /// The last message read from a file with bare LFs, converted.
    converted: Option<(u32, Arc<Vec<u8>>)>,
}

impl Folder {
    pub(crate) fn open(
        store: Arc<StoreInner>,
        root: PathBuf,
        dir: PathBuf,
        mode: OpenMode,
    ) -> Result<Folder, StoreError> {
        let shared = store.folder(&dir);
        let holds_exclusive = mode == OpenMode::Exclusive;
        if holds_exclusive
            && shared
                .exclusive
                .compare_exchange(
                    false,
                    true,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                )
                .is_err()
        {
            return Err(StoreError::InUse);
        }

        // From here on, Drop releases the exclusive flag on any error.
        let mut folder = Folder {
            store,
            shared,
            root,
            dir,
            mode,
            holds_exclusive,
            uid_validity: 0,
            next_uid: 1,
            files: Vec::new(),
            infos: Vec::new(),
            index: HashMap::new(),
            recent: HashSet::new(),
            keywords: Keywords::default(),
            converted: None,
        };
        let scan = folder.scan()?;
        folder.install(scan);
        Ok(folder)
    }

    fn scan(&self) -> Result<Scan, StoreError> {
        let move_new = self.mode != OpenMode::ReadOnly;
        maildir::scan(&self.store, &self.dir, &self.shared, move_new)
    }

    /// Make `scan` the snapshot.
    fn install(&mut self, scan: Scan) {
        self.uid_validity = scan.uid_validity;
        self.next_uid = scan.next_uid;
        self.keywords = scan.keywords;
        self.recent.extend(scan.moved);
        self.files = scan.files;
        self.rebuild();
    }

    fn rebuild(&mut self) {
        self.infos = self.files.iter().map(|f| self.info_of(f)).collect();
        self.index = self
            .files
            .iter()
            .enumerate()
            .map(|(i, f)| (f.uid, i))
            .collect();
    }

    fn info_of(&self, f: &FileRef) -> MessageInfo {
        MessageInfo {
            uid: f.uid,
            flags: f.flags.to_imap(&self.keywords),
            size: f.vsize,
            internal_date: f.date,
            recent: self.recent.contains(&f.uid),
        }
    }

    /// UIDVALIDITY, in 1..2^32-1.
    pub fn uid_validity(&self) -> u32 {
        self.uid_validity
    }

    /// UIDNEXT as of the snapshot.
    pub fn uid_next(&self) -> u32 {
        self.next_uid
    }

    /// The snapshot, ascending by UID; index + 1 is the sequence number.
    pub fn messages(&self) -> &[MessageInfo] {
        &self.infos
    }

    /// Woken on every change to this folder by any session or delivery
    /// of this process (IMAP IDLE). Shared by every open of the folder.
    ///
    /// Wake-ups are not stored: create the `notified()` future and
    /// `enable()` it before `refresh`, or compare [`Folder::generation`]
    /// before and after, so a change in between is not missed.
    pub fn change_notifier(&self) -> Arc<Notify> {
        self.shared.notify.clone()
    }

    /// A counter that grows with every change notification.
    pub fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::SeqCst)
    }

    /// Take in what others changed since the snapshot and return it.
    ///
    /// Typical errors: `temporary-failure`.
    pub fn refresh(&mut self) -> Result<Changes, StoreError> {
        let scan = self.scan()?;
        let old: HashMap<u32, Vec<String>> = self
            .infos
            .iter()
            .map(|i| (i.uid, i.flags.clone()))
            .collect();
        self.install(scan);

        let mut changes = Changes {
            uid_next: self.next_uid,
            ..Default::default()
        };
        let now: HashSet<u32> = self.infos.iter().map(|i| i.uid).collect();
        changes.expunged =
            old.keys().filter(|u| !now.contains(u)).copied().collect();
        changes.expunged.sort_unstable();
        for info in &self.infos {
            match old.get(&info.uid) {
                None => changes.added.push(info.clone()),
                Some(flags) if *flags != info.flags => {
                    changes.flags_changed.push(info.clone());
                }
                Some(_) => {}
            }
        }
        Ok(changes)
    }

    /// Read up to `max_len` bytes (at most [`MAX_READ_LEN`]) of message
    /// `uid` from `offset`. Lines end in CRLF whatever the file holds;
    /// an offset at or past the end returns nothing.
    ///
    /// Typical errors: `not-found`.
    pub fn read(
        &mut self,
        uid: u32,
        offset: u64,
        max_len: u32,
    ) -> Result<Vec<u8>, StoreError> {
        let pos = *self.index.get(&uid).ok_or(StoreError::NotFound)?;
        let max_len = u64::from(max_len.min(MAX_READ_LEN));
        let vsize = self.files[pos].vsize;
        if offset >= vsize || max_len == 0 {
            return Ok(Vec::new());
        }

        if let Some((cached, bytes)) = &self.converted
            && *cached == uid
        {
            return Ok(slice(bytes, offset, max_len));
        }

        let (file, path) = self.open_current(pos)?;
        let len = file
            .metadata()
            .map_err(|e| StoreError::io("cannot stat", &path, e))?
            .len();
        if len == vsize {
            // The file is CRLF already: read in place.
            let want = max_len.min(vsize - offset) as usize;
            let mut buf = vec![0u8; want];
            let mut got = 0;
            while got < want {
                let n = file
                    .read_at(&mut buf[got..], offset + got as u64)
                    .map_err(|e| StoreError::io("cannot read", &path, e))?;
                if n == 0 {
                    break;
                }
                got += n;
            }
            buf.truncate(got);
            return Ok(buf);
        }

        // Bare LFs (a file Dovecot or another MDA wrote): convert the
        // whole message once and serve this and the next reads from it.
        let raw = fs::read(&path)
            .map_err(|e| StoreError::io("cannot read", &path, e))?;
        let mut out = Vec::with_capacity(vsize as usize);
        maildir::to_crlf(&raw, &mut 0, &mut out);
        let bytes = Arc::new(out);
        let result = slice(&bytes, offset, max_len);
        self.converted = Some((uid, bytes));
        Ok(result)
    }

    /// Open the file of the message at `pos`, following a rename by
    /// another session (a flag change) through a rescan.
    fn open_current(
        &mut self,
        pos: usize,
    ) -> Result<(fs::File, PathBuf), StoreError> {
        let path = self.files[pos].path(&self.dir);
        match fs::File::open(&path) {
            Ok(f) => return Ok((f, path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io("cannot open", &path, e)),
        }

        if !self.relocate(pos, None)? {
            return Err(StoreError::NotFound);
        }
        let path = self.files[pos].path(&self.dir);
        match fs::File::open(&path) {
            Ok(f) => Ok((f, path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(StoreError::NotFound)
            }
            Err(e) => Err(StoreError::io("cannot open", &path, e)),
        }
    }

    /// Find where the file of the message at `pos` went. `names` is a
    /// scan made under the folder lock, if the caller holds it. Returns
    /// false when the file is gone.
    fn relocate(
        &mut self,
        pos: usize,
        names: Option<&NameMap<(String, bool)>>,
    ) -> Result<bool, StoreError> {
        let owned;
        let names = match names {
            Some(n) => n,
            None => {
                let _locked = Locked::take(&self.dir, &self.shared)?;
                owned = maildir::current_names(&self.dir)?;
                &owned
            }
        };
        let f = &mut self.files[pos];
        match names.get(filename::base(&f.name)) {
            Some((name, in_new)) => {
                f.name = name.clone();
                f.in_new = *in_new;
                f.flags = MaildirFlags::parse(filename::info(name));
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn writable(&self) -> Result<(), StoreError> {
        if self.mode == OpenMode::ReadOnly {
            return Err(StoreError::ReadOnly);
        }
        Ok(())
    }

    /// Change the flags of `uids` (unknown UIDs are skipped) and return
    /// their new state. The snapshot takes the change in at once.
    ///
    /// Typical errors: `read-only`, `invalid-argument` for a flag that is
    /// not a system flag or keyword atom, or a 27th keyword.
    pub fn set_flags(
        &mut self,
        uids: &[u32],
        op: FlagOperation,
        flags: &[String],
    ) -> Result<Vec<MessageInfo>, StoreError> {
        self.writable()?;
        let wanted = ImapFlags::parse(flags)?;
        let shared = self.shared.clone();
        let dir = self.dir.clone();
        let locked = Locked::take(&dir, &shared)?;

        // Keyword letters, adding new keywords to the index first so no
        // file name ever holds a letter the index does not name.
        let mut keywords = Keywords::load(&dir)?;
        let mut letters = 0u32;
        let mut index_changed = false;
        for k in &wanted.keywords {
            if op == FlagOperation::Remove {
                letters |= keywords.letter(k).map_or(0, letter_bit);
            } else {
                let (letter, added) = keywords.letter_or_add(k)?;
                index_changed |= added;
                letters |= letter_bit(letter);
            }
        }
        if index_changed {
            let path = dir.join(KEYWORDS_FILE);
            fsutil::write_atomic(&path, keywords.serialize().as_bytes())
                .map_err(|e| StoreError::io("cannot write", &path, e))?;
        }
        self.keywords = keywords;

        let mut names = None;
        let mut out = Vec::new();
        let mut changed = false;
        let mut seen = HashSet::new();
        for &uid in uids {
            let Some(&pos) = self.index.get(&uid) else {
                continue;
            };
            if !seen.insert(uid) {
                continue;
            }
            match self.rename_flags(pos, op, &wanted, letters, &mut names)? {
                Some(did) => changed |= did,
                None => continue,
            }
            self.infos[pos] = self.info_of(&self.files[pos]);
            out.push(self.infos[pos].clone());
        }
        drop(locked);

        // Keyword names may have changed for untouched messages too.
        if index_changed {
            self.rebuild();
        }
        if changed {
            shared.changed();
        }
        Ok(out)
    }

    /// Rename one file to carry its new flags. Returns whether the name
    /// changed, or `None` when the message is gone. Holds the lock.
    fn rename_flags(
        &mut self,
        pos: usize,
        op: FlagOperation,
        wanted: &ImapFlags,
        letters: u32,
        names: &mut Option<NameMap<(String, bool)>>,
    ) -> Result<Option<bool>, StoreError> {
        // Two tries: the snapshot's name, then where a rescan finds it.
        for _ in 0..2 {
            let f = &self.files[pos];
            let next = apply(f.flags, op, wanted.system, letters);
            if next == f.flags && !f.in_new {
                return Ok(Some(false));
            }
            let new_name = filename::cur_name(f.base(), &next.letters());
            let from = f.path(&self.dir);
            let to = self.dir.join("cur").join(&new_name);
            match fs::rename(&from, &to) {
                Ok(()) => {
                    let f = &mut self.files[pos];
                    f.name = new_name;
                    f.in_new = false;
                    f.flags = next;
                    return Ok(Some(true));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if names.is_none() {
                        *names = Some(maildir::current_names(&self.dir)?);
                    }
                    if !self.relocate(pos, names.as_ref())? {
                        return Ok(None);
                    }
                }
                Err(e) => {
                    return Err(StoreError::io("cannot rename", &from, e));
                }
            }
        }
        Ok(None)
    }

    /// Remove messages flagged `\Deleted`: all, or those among `uids`.
    /// Returns the UIDs removed, ascending; they leave the snapshot.
    ///
    /// Typical errors: `read-only`.
    pub fn expunge(
        &mut self,
        uids: Option<&[u32]>,
    ) -> Result<Vec<u32>, StoreError> {
        self.writable()?;
        let only: Option<HashSet<u32>> =
            uids.map(|u| u.iter().copied().collect());
        let candidates: Vec<usize> = (0..self.files.len())
            .filter(|&i| {
                only.as_ref().is_none_or(|o| o.contains(&self.files[i].uid))
            })
            .collect();
        self.remove_files(&candidates, true)
    }

    /// Unlink the files at `positions` (only those flagged `\Deleted` on
    /// disk when `deleted_only`), drop them from the UID list and the
    /// snapshot, and return their UIDs ascending.
    fn remove_files(
        &mut self,
        positions: &[usize],
        deleted_only: bool,
    ) -> Result<Vec<u32>, StoreError> {
        let shared = self.shared.clone();
        let dir = self.dir.clone();
        let mut locked = Locked::take(&dir, &shared)?;
        let mut removed = Vec::new();

        // Check each file where it is now: another session may have
        // changed its flags since our snapshot. The lock makes this scan
        // exact. The snapshot itself only changes in `refresh`.
        let names = maildir::current_names(&dir)?;
        for &pos in positions {
            let f = &self.files[pos];
            let Some((name, in_new)) = names.get(f.base()) else {
                continue;
            };
            let flags = MaildirFlags::parse(filename::info(name));
            if deleted_only && !flags.deleted() {
                continue;
            }
            let sub = if *in_new { "new" } else { "cur" };
            let path = dir.join(sub).join(name);
            match fs::remove_file(&path) {
                Ok(()) => removed.push(f.uid),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(StoreError::io("cannot remove", &path, e));
                }
            }
        }

        if !removed.is_empty() {
            let gone: HashSet<u32> = removed.iter().copied().collect();
            let mut list = locked.load(&self.store)?;
            list.records.retain(|r| !gone.contains(&r.uid));
            locked.write(&list)?;
        }
        drop(locked);

        removed.sort_unstable();
        if !removed.is_empty() {
            let gone: HashSet<u32> = removed.iter().copied().collect();
            self.files.retain(|f| !gone.contains(&f.uid));
            self.rebuild();
            self.shared.changed();
        }
        Ok(removed)
    }

    /// Copy messages into folder `target` of the same account. Returns
    /// the target's UIDVALIDITY and (source UID, new UID) pairs.
    ///
    /// Typical errors: `not-found` (target), `invalid-name`.
    pub fn copy(
        &mut self,
        uids: &[u32],
        target: &str,
    ) -> Result<(u32, Vec<(u32, u32)>), StoreError> {
        let target_dir =
            crate::account::existing_folder_dir(&self.root, target)?;
        let mut positions: Vec<usize> = uids
            .iter()
            .filter_map(|u| self.index.get(u).copied())
            .collect();
        positions.sort_unstable();
        positions.dedup();

        let mut items = Vec::with_capacity(positions.len());
        let mut sources = Vec::with_capacity(positions.len());
        for pos in positions {
            // A message expunged meanwhile is skipped, as for unknown UIDs.
            let path = match self.open_current(pos) {
                Ok((_, path)) => path,
                Err(StoreError::NotFound) => continue,
                Err(e) => return Err(e),
            };
            let f = &self.files[pos];
            let keyword_names = mask_letters(f.flags.keywords, b'a')
                .filter_map(|l| self.keywords.name(l).map(str::to_owned))
                .collect();
            items.push(Placement {
                source: path,
                date: f.date,
                vsize: f.vsize,
                upper: f.flags.upper,
                keyword_names,
                consume: false,
            });
            sources.push(f.uid);
        }

        let target_shared = self.store.folder(&target_dir);
        let (validity, new_uids) =
            place::place(&self.store, &target_dir, &target_shared, items)?;
        let pairs = sources
            .into_iter()
            .zip(new_uids)
            .filter_map(|(src, new)| new.map(|n| (src, n)))
            .collect();
        Ok((validity, pairs))
    }

    /// Like [`Folder::copy`], then remove the sources from this folder
    /// (and from the snapshot).
    ///
    /// Typical errors: `not-found` (target), `read-only`.
    pub fn move_(
        &mut self,
        uids: &[u32],
        target: &str,
    ) -> Result<(u32, Vec<(u32, u32)>), StoreError> {
        self.writable()?;
        let (validity, pairs) = self.copy(uids, target)?;
        let positions: Vec<usize> = pairs
            .iter()
            .filter_map(|(src, _)| self.index.get(src).copied())
            .collect();
        self.remove_files(&positions, false)?;
        Ok((validity, pairs))
    }

    /// Counters of the snapshot.
    pub fn status(&self) -> FolderStatus {
        FolderStatus {
            messages: self.files.len() as u32,
            recent: self.files.iter().filter(|f| f.in_new).count() as u32,
            unseen: self.files.iter().filter(|f| !f.flags.seen()).count()
                as u32,
            uid_next: self.next_uid,
            uid_validity: self.uid_validity,
            size: self.files.iter().map(|f| f.vsize).sum(),
        }
    }

    /// The folder's directory on disk.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        if self.holds_exclusive {
            self.shared.exclusive.store(false, Ordering::SeqCst);
        }
    }
}

/// The flags after `op`. `replace` resets only the IMAP system
/// letters: others (such as `P`) are not IMAP flags and survive.
fn apply(
    current: MaildirFlags,
    op: FlagOperation,
    system: u32,
    keywords: u32,
) -> MaildirFlags {
    let mut next = current;
    match op {
        FlagOperation::Add => {
            next.upper |= system;
            next.keywords |= keywords;
        }
        FlagOperation::Remove => {
            next.upper &= !system;
            next.keywords &= !keywords;
        }
        FlagOperation::Replace => {
            next.upper = (next.upper & !system_mask()) | system;
            next.keywords = keywords;
        }
    }
    next
}

fn slice(bytes: &[u8], offset: u64, max_len: u64) -> Vec<u8> {
    let start = (offset as usize).min(bytes.len());
    let end = start.saturating_add(max_len as usize).min(bytes.len());
    bytes[start..end].to_vec()
}
