//! One Maildir folder on disk: scanning `new/` and `cur/`, matching the
//! files against `dovecot-uidlist`, and handing out UIDs.
//!
//! Every scan, rename and UID list update happens under the folder lock:
//! the in-process mutex of [`FolderShared`], then the `dovecot-uidlist`
//! dot-lock that Dovecot also takes. `readdir` may skip entries renamed
//! while it runs, so a scan must never overlap a flag change; deliveries
//! only add names to `new/` and need no lock.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, MutexGuard};
use std::time::UNIX_EPOCH;

use crate::dotlock::DotLock;
use crate::error::StoreError;
use crate::filename;
use crate::flags::{Keywords, MaildirFlags};
use crate::store::{FolderShared, ForeignMeta, StoreInner};
use crate::uidlist::{Record, UIDLIST_FILE, UidList};

/// The marker file Dovecot puts in every Maildir++ subfolder.
pub const SUBFOLDER_MARKER: &str = "maildirfolder";

/// Size of the buffer for counting bare LFs of foreign files.
const SCAN_BUFFER: usize = 64 * 1024;

/// A word-at-a-time multiplicative hash (the FxHash construction):
/// much cheaper than SipHash for the 100,000 file names of a big folder.
/// The names are ours, not a client's, so hash flooding is no concern.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct NameHasher(u64);

const HASH_SEED: u64 = 0x517c_c1b7_2722_0a95;

impl NameHasher {
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(HASH_SEED);
    }
}

impl std::hash::Hasher for NameHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.mix(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(last));
        }
    }

    fn write_u8(&mut self, b: u8) {
        self.mix(u64::from(b));
    }
}

/// A hash map keyed by file names.
pub(crate) type NameMap<V> =
    HashMap<String, V, std::hash::BuildHasherDefault<NameHasher>>;

/// A message file as a scan found it.
#[derive(Debug, Clone)]
pub(crate) struct FileRef {
    pub uid: u32,
    /// The file name, in `new/` or `cur/`.
    pub name: String,
    pub in_new: bool,
    pub flags: MaildirFlags,
    /// Size with CRLF line ends.
    pub vsize: u64,
    /// INTERNALDATE, seconds since the epoch.
    pub date: i64,
}

impl FileRef {
    /// The file's path below folder directory `dir`.
    pub fn path(&self, dir: &Path) -> PathBuf {
        dir.join(if self.in_new { "new" } else { "cur" })
            .join(&self.name)
    }

    /// The base of the file name.
    pub fn base(&self) -> &str {
        filename::base(&self.name)
    }
}

/// What a scan found.
#[derive(Debug)]
pub(crate) struct Scan {
    pub uid_validity: u32,
    pub next_uid: u32,
    /// Every message, ascending by UID.
    pub files: Vec<FileRef>,
    /// UIDs this scan moved from `new/` to `cur/`: recent for the caller.
    pub moved: HashSet<u32>,
    pub keywords: Keywords,
}

/// How old every stamped mtime must be before a scan is cached: file
/// system timestamps are coarse (a kernel tick), so a change right after
/// a scan could leave the same mtime; two seconds is well past a tick.
pub const STABLE_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

/// Identity and change time of one file or directory.
type Stamp = (u64, u64, u64, i64, i64);

/// The stamps of `new/`, `cur/`, the UID list and the keyword file:
/// when none of them changed, neither did the folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stamps([Stamp; 4]);

impl Stamps {
    fn take(dir: &Path) -> Stamps {
        use std::os::unix::fs::MetadataExt;
        let one = |p: PathBuf| {
            fs::metadata(p).map_or((0, 0, 0, 0, 0), |m| {
                (m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec())
            })
        };
        Stamps([
            one(dir.join("new")),
            one(dir.join("cur")),
            one(dir.join(UIDLIST_FILE)),
            one(dir.join(crate::flags::KEYWORDS_FILE)),
        ])
    }

    /// Whether every mtime is old enough to trust (see [`STABLE_AFTER`]).
    fn stable(&self) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        self.0
            .iter()
            .all(|s| s.3 + (STABLE_AFTER.as_secs() as i64) < now)
    }
}

/// The last scan of a folder that changed nothing, kept in the folder's
/// shared state so reopening an unchanged folder reads no directory.
/// Costs one copy of the folder's file list in memory.
#[derive(Debug)]
pub(crate) struct CachedScan {
    stamps: Stamps,
    uid_validity: u32,
    next_uid: u32,
    files: Vec<FileRef>,
    keywords: Keywords,
    has_new: bool,
}

/// The folder lock, held.
pub(crate) struct Locked<'a> {
    pub dir: &'a Path,
    _guard: MutexGuard<'a, ()>,
    dotlock: Option<DotLock>,
}

impl<'a> Locked<'a> {
    /// Take the folder lock of `dir`.
    pub fn take(
        dir: &'a Path,
        shared: &'a FolderShared,
    ) -> Result<Locked<'a>, StoreError> {
        let guard = shared.lock.lock().unwrap_or_else(|e| e.into_inner());
        let dotlock = DotLock::acquire(&dir.join(UIDLIST_FILE))?;
        Ok(Locked {
            dir,
            _guard: guard,
            dotlock: Some(dotlock),
        })
    }

    /// The UID list, or a new empty one for a folder that has none.
    pub fn load(&self, store: &StoreInner) -> Result<UidList, StoreError> {
        match UidList::load(&self.dir.join(UIDLIST_FILE))? {
            Some(list) => Ok(list),
            None => Ok(UidList::new(store.new_uid_validity())),
        }
    }

    /// Write `list` durably; this releases the dot-lock (the mutex stays
    /// held until `self` is dropped).
    pub fn write(&mut self, list: &UidList) -> Result<(), StoreError> {
        let lock = self.dotlock.take().expect("uidlist written once");
        lock.replace(list.serialize().as_bytes())
    }
}

/// Read the names in `dir` (`new/` or `cur/`). Names that are not UTF-8
/// are skipped with a warning: we never wrote them.
fn list_names(dir: &Path) -> Result<Vec<String>, StoreError> {
    let entries =
        fs::read_dir(dir).map_err(|e| StoreError::io("cannot list", dir, e))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io("cannot list", dir, e))?;
        match entry.file_name().into_string() {
            Ok(n) if filename::is_message_name(&n) => names.push(n),
            Ok(_) => {}
            Err(raw) => {
                tracing::warn!(dir = %dir.display(), name = ?raw,
                    "skipping a message file whose name is not UTF-8");
            }
        }
    }
    Ok(names)
}

/// Where each base name is now: `(file name, in new/)`. Reads `new/`
/// first: a file moving to `cur/` meanwhile is then seen in `cur/`.
pub(crate) fn current_names(
    dir: &Path,
) -> Result<NameMap<(String, bool)>, StoreError> {
    current_names_sized(dir, 0)
}

/// [`current_names`], with room for `expected` names up front.
fn current_names_sized(
    dir: &Path,
    expected: usize,
) -> Result<NameMap<(String, bool)>, StoreError> {
    let mut map =
        NameMap::with_capacity_and_hasher(expected, Default::default());
    for name in list_names(&dir.join("new"))? {
        map.insert(filename::base(&name).to_owned(), (name, true));
    }
    for name in list_names(&dir.join("cur"))? {
        // The same base in both (a crash between link and unlink):
        // `cur/` wins, it carries the flags.
        map.insert(filename::base(&name).to_owned(), (name, false));
    }
    Ok(map)
}

/// Scan the folder in `dir`, give UIDs to new files and, when
/// `move_new`, move `new/` files to `cur/` (they become recent for the
/// caller). The UID list is rewritten only when records came or went.
pub(crate) fn scan(
    store: &StoreInner,
    dir: &Path,
    shared: &FolderShared,
    move_new: bool,
) -> Result<Scan, StoreError> {
    // An unchanged folder: four stats instead of two directory reads.
    let cached = shared
        .scan_cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    if let Some(c) = cached
        && !(move_new && c.has_new)
        && c.stamps == Stamps::take(dir)
    {
        return Ok(Scan {
            uid_validity: c.uid_validity,
            next_uid: c.next_uid,
            files: c.files.clone(),
            moved: HashSet::new(),
            keywords: c.keywords.clone(),
        });
    }

    let mut locked = Locked::take(dir, shared)?;
    // Stamped before anything is read: a change after this point shows
    // as a different stamp next time.
    let before_read = Stamps::take(dir);
    let mut list = locked.load(store)?;
    let mut present = current_names_sized(dir, list.records.len() + 64)?;

    // Match the records against the files, in UID order.
    let before = list.records.len();
    let mut found: Vec<(Record, Option<(String, bool)>)> =
        std::mem::take(&mut list.records)
            .into_iter()
            .map(|rec| {
                let entry = present.remove(UidList::base_of(&rec));
                (rec, entry)
            })
            .collect();

    // `readdir` may skip a file that another program (one that ignores
    // our lock) renames meanwhile. Taking such a file for expunged would
    // give it a new UID when it shows up again, so before dropping any
    // record, list the folder once more and look again.
    if found.iter().any(|(_, entry)| entry.is_none()) {
        let mut again = current_names(dir)?;
        for (rec, entry) in found.iter_mut().filter(|(_, e)| e.is_none()) {
            *entry = again.remove(UidList::base_of(rec));
        }
        // Unnumbered files may have been renamed between the listings
        // too; files that arrived since wait for the next scan.
        for (base, entry) in again {
            if let Some(slot) = present.get_mut(&base) {
                *slot = entry;
            }
        }
    }
    let mut files: Vec<(Record, String, bool)> = found
        .into_iter()
        .filter_map(|(rec, entry)| {
            entry.map(|(name, in_new)| (rec, name, in_new))
        })
        .collect();
    let mut changed = files.len() != before;

    // The rest are new: UIDs in name order, which is arrival order for
    // names that start with the time.
    let mut fresh: Vec<(String, (String, bool))> =
        present.into_iter().collect();
    fresh.sort();
    for (_, (name, in_new)) in fresh {
        let uid = list.next_uid;
        if uid == u32::MAX {
            // TODO(#3): renumber with a new UIDVALIDITY instead.
            return Err(StoreError::Temporary(format!(
                "`{}`: UIDs exhausted",
                dir.display()
            )));
        }
        list.next_uid += 1;
        let rec = Record {
            uid,
            ext: Vec::new(),
            name: name.clone(),
        };
        files.push((rec, name, in_new));
        changed = true;
    }

    // Move new arrivals to cur/ for a read-write opener.
    let mut moved = HashSet::new();
    if move_new {
        for (rec, name, in_new) in files.iter_mut().filter(|f| f.2) {
            let cur = filename::cur_name(name, "");
            let from = dir.join("new").join(&*name);
            let to = dir.join("cur").join(&cur);
            match fs::rename(&from, &to) {
                Ok(()) => {
                    moved.insert(rec.uid);
                    *name = cur;
                    *in_new = false;
                }
                // Someone else moved or expunged it; the next scan sees
                // where it went.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io("cannot move", &from, e)),
            }
        }
    }

    let keywords = Keywords::load(dir)?;
    let mut refs = Vec::with_capacity(files.len());
    let mut records = Vec::with_capacity(files.len());
    for (mut rec, name, in_new) in files {
        let meta = message_meta(dir, shared, &rec, &name, in_new);
        if changed {
            // The rewrite records the latest names, as Dovecot does,
            // and the CRLF size where the name does not state it.
            let base = filename::base(&name);
            if filename::size_field(base, 'W').is_none()
                && rec.vsize().is_none()
            {
                rec.ext.push(format!("W{}", meta.vsize));
            }
            rec.name = name.clone();
        }
        let flags = MaildirFlags::parse(filename::info(&name));
        refs.push(FileRef {
            uid: rec.uid,
            name,
            in_new,
            flags,
            vsize: meta.vsize,
            date: meta.date,
        });
        records.push(rec);
    }

    let touched = changed || !moved.is_empty();
    // TODO(#3): append new records instead of rewriting the whole list,
    // as Dovecot does; a 100,000-message list is ~8 MB per rewrite.
    if changed {
        list.records = records;
        locked.write(&list)?;
    }

    // Cache what we read only if we changed nothing on disk, so the
    // stamps taken before reading describe exactly this state.
    let cache = (!touched && before_read.stable()).then(|| {
        Arc::new(CachedScan {
            stamps: before_read,
            uid_validity: list.uid_validity,
            next_uid: list.next_uid,
            files: refs.clone(),
            keywords: keywords.clone(),
            has_new: refs.iter().any(|f| f.in_new),
        })
    });
    *shared.scan_cache.lock().unwrap_or_else(|e| e.into_inner()) = cache;

    Ok(Scan {
        uid_validity: list.uid_validity,
        next_uid: list.next_uid,
        files: refs,
        moved,
        keywords,
    })
}

/// Date and CRLF size of a message, without touching the file when the
/// name or the UID list states them.
fn message_meta(
    dir: &Path,
    shared: &FolderShared,
    rec: &Record,
    name: &str,
    in_new: bool,
) -> ForeignMeta {
    let base = filename::base(name);
    let date = filename::tagged_date(base);
    let vsize = filename::size_field(base, 'W').or_else(|| rec.vsize());
    if let (Some(date), Some(vsize)) = (date, vsize) {
        return ForeignMeta { date, vsize };
    }

    let mut cache = shared.foreign.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(meta) = cache.get(base) {
        return *meta;
    }
    let path = dir.join(if in_new { "new" } else { "cur" }).join(name);
    let date = date.unwrap_or_else(|| mtime(&path));
    let vsize = vsize.unwrap_or_else(|| crlf_size(&path).unwrap_or(0));
    let meta = ForeignMeta { date, vsize };
    cache.insert(base.to_owned(), meta);
    meta
}

/// A file's mtime in seconds, 0 when it cannot be read.
fn mtime(path: &Path) -> i64 {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64)
}

/// The size of a file once every bare LF becomes CRLF.
pub(crate) fn crlf_size(path: &Path) -> std::io::Result<u64> {
    let mut file = fs::File::open(path)?;
    let mut buf = vec![0u8; SCAN_BUFFER];
    let mut size = 0u64;
    let mut prev = 0u8;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(size);
        }
        for &b in &buf[..n] {
            if b == b'\n' && prev != b'\r' {
                size += 1;
            }
            size += 1;
            prev = b;
        }
    }
}

/// Turn bare LFs into CRLF, carrying the last byte across calls in
/// `prev` so a CRLF split between two writes is recognised.
pub(crate) fn to_crlf(data: &[u8], prev: &mut u8, out: &mut Vec<u8>) {
    out.reserve(data.len() + data.len() / 32);
    for &b in data {
        if b == b'\n' && *prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        *prev = b;
    }
}

/// Make the `cur/`, `new/` and `tmp/` of a folder at `dir`.
pub(crate) fn create_folder_dirs(
    dir: &Path,
    subfolder: bool,
) -> std::io::Result<()> {
    for sub in ["cur", "new", "tmp"] {
        crate::fsutil::create_dirs(&dir.join(sub))?;
    }
    if subfolder {
        let marker = dir.join(SUBFOLDER_MARKER);
        match crate::fsutil::create_new(&marker) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_conversion_across_chunks() {
        let mut out = Vec::new();
        let mut prev = 0;
        to_crlf(b"a\r", &mut prev, &mut out);
        to_crlf(b"\nb\nc", &mut prev, &mut out);
        to_crlf(b"\n", &mut prev, &mut out);
        assert_eq!(out, b"a\r\nb\r\nc\r\n");
    }

    #[test]
    fn crlf_size_counts_bare_lf() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m");
        fs::write(&p, b"a\nb\r\n\n").unwrap();
        assert_eq!(crlf_size(&p).unwrap(), 8);
    }
}
