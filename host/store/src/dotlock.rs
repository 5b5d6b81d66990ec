//! Dovecot-compatible dot-locks.
//!
//! A lock on `F` is the file `F.lock`, created with `O_EXCL`. Like
//! Dovecot's, the lock file doubles as the temporary file of the new
//! contents: [`DotLock::replace`] writes it, syncs it and renames it over
//! `F`, which releases the lock in the same step. A lock whose file is
//! older than [`STALE_AFTER`] is taken to belong to a crashed process and
//! broken.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, SystemTime};

use crate::error::StoreError;
use crate::fsutil;

/// A lock file older than this is stale; Dovecot uses two minutes for
/// `dovecot-uidlist.lock`.
pub const STALE_AFTER: Duration = Duration::from_secs(120);

/// How long to wait for a lock held by someone else before giving up
/// with a temporary failure.
pub const WAIT_LIMIT: Duration = Duration::from_secs(30);

/// The first pause between attempts; pauses double up to
/// [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(1);

/// The longest pause between attempts.
const MAX_BACKOFF: Duration = Duration::from_millis(50);

/// A held lock. Dropping it without `replace` removes the lock file.
#[derive(Debug)]
pub struct DotLock {
    target: PathBuf,
    lock: PathBuf,
    file: Option<File>,
}

impl DotLock {
    /// Take the lock on `target`, waiting up to [`WAIT_LIMIT`].
    pub fn acquire(target: &Path) -> Result<DotLock, StoreError> {
        let lock = lock_path(target);
        let started = SystemTime::now();
        let mut backoff = FIRST_BACKOFF;

        loop {
            match fsutil::create_new(&lock) {
                Ok(file) => {
                    return Ok(DotLock {
                        target: target.to_path_buf(),
                        lock,
                        file: Some(file),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(StoreError::io("cannot create lock", &lock, e));
                }
            }

            if break_if_stale(&lock) {
                continue;
            }
            let waited = started.elapsed().unwrap_or_default();
            if waited >= WAIT_LIMIT {
                return Err(StoreError::Temporary(format!(
                    "timed out after {}s waiting for lock `{}`",
                    waited.as_secs(),
                    lock.display()
                )));
            }
            thread::sleep(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Write `contents` as the new target file, durably, and release.
    pub fn replace(mut self, contents: &[u8]) -> Result<(), StoreError> {
        let mut file = self.file.take().expect("lock file present");
        let io_err = |e| StoreError::io("cannot write", &self.lock, e);
        file.write_all(contents).map_err(io_err)?;
        fsutil::sync_file(&file, &self.lock).map_err(io_err)?;
        fsutil::rename(&self.lock, &self.target).map_err(io_err)?;

        // The rename released the lock; nothing is left to remove.
        self.lock = PathBuf::new();
        let dir = self.target.parent().unwrap_or(Path::new("."));
        fsutil::sync_dir(dir).map_err(|e| StoreError::io("cannot sync", dir, e))
    }
}

impl Drop for DotLock {
    fn drop(&mut self) {
        if !self.lock.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.lock);
        }
    }
}

/// The lock file of `target`.
pub fn lock_path(target: &Path) -> PathBuf {
    let mut name = target.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    target.with_file_name(name)
}

/// Remove `lock` when its mtime is older than [`STALE_AFTER`]. Returns
/// whether the caller should retry at once.
fn break_if_stale(lock: &Path) -> bool {
    let Ok(meta) = fs::metadata(lock) else {
        // Gone meanwhile: retry.
        return true;
    };
    let age = meta
        .modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .unwrap_or_default();
    if age < STALE_AFTER {
        return false;
    }

    // Move it aside first, so two breakers cannot both remove a fresh
    // lock that a third process created in between.
    let aside = lock.with_extension(format!("stale.{}", rand::random::<u32>()));
    if fs::rename(lock, &aside).is_ok() {
        tracing::warn!(lock = %lock.display(), age_s = age.as_secs(),
            "broke a stale lock");
        let _ = fs::remove_file(&aside);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_locker_waits_and_stale_lock_is_broken() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("dovecot-uidlist");

        let held = DotLock::acquire(&target).unwrap();
        assert!(lock_path(&target).exists());
        let waiter = {
            let target = target.clone();
            thread::spawn(move || {
                DotLock::acquire(&target).unwrap().replace(b"two").unwrap()
            })
        };
        thread::sleep(Duration::from_millis(30));
        held.replace(b"one").unwrap();
        waiter.join().unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"two");
        assert!(!lock_path(&target).exists());

        // A lock left by a crashed process, three minutes old.
        let old = fsutil::create_new(&lock_path(&target)).unwrap();
        old.set_modified(SystemTime::now() - Duration::from_secs(180))
            .unwrap();
        drop(old);
        DotLock::acquire(&target)
            .unwrap()
            .replace(b"three")
            .unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"three");
    }
}
