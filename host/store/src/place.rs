//! Putting finished message files into a folder with UIDs at once: the
//! common end of APPEND, COPY and MOVE.
//!
//! Under the target's folder lock each file is hard-linked into `cur/`
//! with its flags in the name, `cur/` is synced, and the new records are
//! written to the UID list, so the caller learns the UIDs (UIDPLUS) and
//! no scan can number the files first.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use crate::error::StoreError;
use crate::filename;
use crate::flags::{KEYWORDS_FILE, Keywords, MaildirFlags, letter_bit};
use crate::fsutil;
use crate::maildir::Locked;
use crate::store::{FolderShared, StoreInner};
use crate::uidlist::Record;

/// One file to place.
#[derive(Debug)]
pub(crate) struct Placement {
    /// The finished file: a message of another folder, or a synced
    /// temporary file.
    pub source: PathBuf,
    /// INTERNALDATE; the file's mtime already equals it.
    pub date: i64,
    /// Size with CRLF line ends.
    pub vsize: u64,
    /// Upper case flag letters, as a mask.
    pub upper: u32,
    /// Keywords by name; letters are the target's.
    pub keyword_names: Vec<String>,
    /// Remove `source` once placed (a temporary file).
    pub consume: bool,
}

/// Place `items` into the folder at `dir`. Returns the folder's
/// UIDVALIDITY and each item's UID, `None` for a source that vanished
/// (a message expunged meanwhile).
pub(crate) fn place(
    store: &StoreInner,
    dir: &Path,
    shared: &FolderShared,
    items: Vec<Placement>,
) -> Result<(u32, Vec<Option<u32>>), StoreError> {
    let mut locked = Locked::take(dir, shared)?;

    // Letters for every keyword, in the target's index.
    let mut keywords = Keywords::load(dir)?;
    let mut index_changed = false;
    let mut letter_sets = Vec::with_capacity(items.len());
    for item in &items {
        let mut flags = MaildirFlags {
            upper: item.upper,
            keywords: 0,
        };
        for name in &item.keyword_names {
            let (l, added) = keywords.letter_or_add(name)?;
            index_changed |= added;
            flags.keywords |= letter_bit(l);
        }
        letter_sets.push(flags.letters());
    }
    if index_changed {
        let path = dir.join(KEYWORDS_FILE);
        fsutil::write_atomic(&path, keywords.serialize().as_bytes())
            .map_err(|e| StoreError::io("cannot write", &path, e))?;
    }

    let mut placed = Vec::with_capacity(items.len());
    for (item, letters) in items.iter().zip(&letter_sets) {
        let size = match fs::metadata(&item.source) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound && !item.consume => {
                placed.push(None);
                continue;
            }
            Err(e) => {
                return Err(StoreError::io("cannot stat", &item.source, e));
            }
        };
        let base = filename::with_sizes(
            &filename::unique_base(item.date),
            size,
            item.vsize,
        );
        let name = filename::cur_name(&base, letters);
        let dest = dir.join("cur").join(&name);

        match fsutil::link(&item.source, &dest) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound && !item.consume => {
                placed.push(None);
                continue;
            }
            // Another file system, or a link count limit: copy instead.
            Err(_) => copy_durably(&item.source, dir, &dest, item.date)?,
        }
        if item.consume {
            let _ = fs::remove_file(&item.source);
        }
        placed.push(Some(name));
    }

    let cur = dir.join("cur");
    store
        .dir_sync(&cur)
        .sync(&cur)
        .map_err(|e| StoreError::io("cannot sync", &cur, e))?;

    let mut list = locked.load(store)?;
    let mut uids = Vec::with_capacity(placed.len());
    for name in placed {
        let Some(name) = name else {
            uids.push(None);
            continue;
        };
        let uid = list.next_uid;
        list.next_uid = list.next_uid.checked_add(1).ok_or_else(|| {
            StoreError::Temporary(format!(
                "`{}`: UIDs exhausted",
                dir.display()
            ))
        })?;
        list.records.push(Record {
            uid,
            ext: Vec::new(),
            name,
        });
        uids.push(Some(uid));
    }
    locked.write(&list)?;
    drop(locked);

    shared.changed();
    Ok((list.uid_validity, uids))
}

/// Copy `source` to `dest` through the folder's `tmp/`, synced, with
/// mtime `date`.
fn copy_durably(
    source: &Path,
    dir: &Path,
    dest: &Path,
    date: i64,
) -> Result<(), StoreError> {
    let tmp = dir.join("tmp").join(filename::unique_base(date));
    let result = (|| {
        fs::copy(source, &tmp)?;
        let file = fs::OpenOptions::new().write(true).open(&tmp)?;
        file.set_modified(system_time(date))?;
        fsutil::sync_file(&file, &tmp)?;
        fsutil::link(&tmp, dest)?;
        fs::remove_file(&tmp)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| StoreError::io("cannot copy", source, e))
}

/// A time from seconds since the epoch (never before it).
pub(crate) fn system_time(date: i64) -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_secs(date.max(0) as u64)
}
