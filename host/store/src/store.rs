//! The store: a data directory of Maildirs, and the in-process state
//! shared by every session that opens the same folder.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;

use crate::account::Account;
use crate::error::StoreError;
use crate::fsutil;
use crate::maildir::CachedScan;

/// What the store remembers of a message file it did not write: those
/// names carry no date, and maybe no size, so they cost a `stat` (and a
/// read for the size) once per process.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ForeignMeta {
    pub date: i64,
    pub vsize: u64,
}

/// In-process state of one folder directory, shared by every open of it
/// and by deliveries into it.
#[derive(Debug)]
pub(crate) struct FolderShared {
    /// Woken on every change: delivery, append, flags, expunge, copy or
    /// move into the folder.
    pub notify: Arc<Notify>,
    /// Counts changes, so a waiter that registered late can tell it
    /// missed a wake-up.
    pub generation: AtomicU64,
    /// Set while an exclusive (POP3) handle lives.
    pub exclusive: AtomicBool,
    /// Serialises our own threads before they contend for the dot-lock,
    /// which only arbitrates between processes.
    pub lock: Mutex<()>,
    /// Dates and sizes of foreign files, by base name.
    pub foreign: Mutex<HashMap<String, ForeignMeta>>,
    /// The last scan that changed nothing (see [`CachedScan`]).
    pub scan_cache: Mutex<Option<Arc<CachedScan>>>,
}

impl FolderShared {
    fn new() -> FolderShared {
        FolderShared {
            notify: Arc::new(Notify::new()),
            generation: AtomicU64::new(0),
            exclusive: AtomicBool::new(false),
            lock: Mutex::new(()),
            foreign: Mutex::new(HashMap::new()),
            scan_cache: Mutex::new(None),
        }
    }

    /// Tell every waiter the folder changed.
    pub fn changed(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.notify.notify_waiters();
    }
}

/// Group commit of directory syncs: concurrent deliverers into one
/// directory share a single `fsync` instead of one each.
///
/// A caller asks for a sync after its rename is done. Whoever finds no
/// sync running starts one covering every request made so far; the
/// others wait until a sync that started after their request finishes.
#[derive(Debug, Default)]
pub(crate) struct DirSync {
    state: Mutex<DirSyncState>,
    done: Condvar,
}

#[derive(Debug, Default)]
struct DirSyncState {
    /// Requests made, numbered from 1.
    requested: u64,
    /// Every request up to this one is durable.
    synced: u64,
    /// Requests up to this one saw their sync fail.
    failed: u64,
    running: bool,
}

impl DirSync {
    /// Return once `dir` has been synced after this call started.
    pub fn sync(&self, dir: &Path) -> std::io::Result<()> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.requested += 1;
        let mine = st.requested;

        loop {
            if st.synced >= mine {
                return Ok(());
            }
            if st.failed >= mine {
                return Err(std::io::Error::other("directory sync failed"));
            }
            if st.running {
                st = self.done.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            }

            // Sync on behalf of everyone who asked so far.
            st.running = true;
            let upto = st.requested;
            drop(st);
            let result = fsutil::sync_dir(dir);
            st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            st.running = false;
            let ok = result.is_ok();
            if ok {
                st.synced = st.synced.max(upto);
            } else {
                st.failed = st.failed.max(upto);
            }
            self.done.notify_all();
            // Our own request is covered by this sync: report its error,
            // or loop once more to see `synced` and return.
            result?;
        }
    }
}

#[derive(Debug)]
pub(crate) struct StoreInner {
    pub data_dir: PathBuf,
    folders: Mutex<HashMap<PathBuf, Arc<FolderShared>>>,
    dir_syncs: Mutex<HashMap<PathBuf, Arc<DirSync>>>,
    last_validity: Mutex<u32>,
}

impl StoreInner {
    /// The shared state of the folder in `dir`, made on first use. The
    /// entries live as long as the store: a few hundred bytes per folder
    /// touched, and the foreign-file cache for migrated folders.
    pub fn folder(&self, dir: &Path) -> Arc<FolderShared> {
        let mut map = self.folders.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(dir.to_path_buf())
            .or_insert_with(|| Arc::new(FolderShared::new()))
            .clone()
    }

    /// The shared state of `dir` if some session or delivery made it.
    pub fn folder_if_known(&self, dir: &Path) -> Option<Arc<FolderShared>> {
        let map = self.folders.lock().unwrap_or_else(|e| e.into_inner());
        map.get(dir).cloned()
    }

    /// Forget a folder that was deleted or renamed away.
    pub fn forget_folder(&self, dir: &Path) {
        let mut map = self.folders.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(dir);
    }

    /// The group-commit helper of a directory.
    pub fn dir_sync(&self, dir: &Path) -> Arc<DirSync> {
        let mut map = self.dir_syncs.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(dir.to_path_buf()).or_default().clone()
    }

    /// A UIDVALIDITY for a new folder: the current time, and never one
    /// this process gave out before, so a folder deleted and made again
    /// within a second still gets a new one. Always in 1..2^32-1.
    pub fn new_uid_validity(&self) -> u32 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1);
        let now = u32::try_from(now).unwrap_or(u32::MAX).max(1);
        let mut last =
            self.last_validity.lock().unwrap_or_else(|e| e.into_inner());
        let next = if now > *last {
            now
        } else {
            last.wrapping_add(1).max(1)
        };
        *last = next;
        next
    }
}

/// The mail store under one data directory, laid out as
/// `<data>/<domain>/<user>/Maildir`. Cheap to clone; every clone shares
/// the same in-process folder state.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) inner: Arc<StoreInner>,
}

impl Store {
    /// Open (and create, if missing) the data directory.
    ///
    /// Typical errors: `temporary-failure` when the directory cannot be
    /// made or is not a directory.
    pub fn open(data_dir: impl AsRef<Path>) -> Result<Store, StoreError> {
        let data_dir = data_dir.as_ref().to_path_buf();
        fsutil::create_dirs(&data_dir)
            .map_err(|e| StoreError::io("cannot create", &data_dir, e))?;
        Ok(Store {
            inner: Arc::new(StoreInner {
                data_dir,
                folders: Mutex::new(HashMap::new()),
                dir_syncs: Mutex::new(HashMap::new()),
                last_validity: Mutex::new(0),
            }),
        })
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// The mailboxes of account `name` (`user@domain`, any case). The
    /// first call for an account creates its Maildir with the folders
    /// `Sent`, `Drafts`, `Trash`, `Junk` and `Archive`, subscribed.
    ///
    /// Typical errors: `invalid-name` for a name that is not a plain
    /// address (see [`account_path`]), `temporary-failure`.
    pub fn account(&self, name: &str) -> Result<Account, StoreError> {
        Account::open_account(self.inner.clone(), name)
    }
}

/// The longest local part of an account name, in bytes.
pub const MAX_LOCAL_PART_LEN: usize = 64;

/// The longest domain of an account name, in bytes.
pub const MAX_DOMAIN_LEN: usize = 253;

/// Split and check an account name, lower-cased: `(local, domain)`.
///
/// The name becomes two directory names, so it is held to a strict set:
/// the local part of ASCII letters, digits and `._+-`, not starting with
/// `.` and without `..`; a domain of dot-separated labels of letters,
/// digits and `-`. Anything else (`../x`, `/`, NUL, spaces) is refused.
pub fn account_path(name: &str) -> Result<(String, String), StoreError> {
    let name = name.to_ascii_lowercase();
    let (local, domain) =
        name.rsplit_once('@').ok_or(StoreError::InvalidName)?;

    let local_ok = !local.is_empty()
        && local.len() <= MAX_LOCAL_PART_LEN
        && !local.starts_with('.')
        && !local.contains("..")
        && local.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-')
        });
    let domain_ok = !domain.is_empty()
        && domain.len() <= MAX_DOMAIN_LEN
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !local_ok || !domain_ok {
        return Err(StoreError::InvalidName);
    }
    Ok((local.to_owned(), domain.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_names_cannot_escape_the_data_dir() {
        assert_eq!(
            account_path("Alice@Example.ORG").unwrap(),
            ("alice".into(), "example.org".into())
        );
        for bad in [
            "../x@example.org",
            "a/b@example.org",
            "alice@../..",
            "alice",
            "@example.org",
            "alice@",
            ".a@example.org",
            "a..b@example.org",
            "a b@example.org",
            "a\0@example.org",
            "alice@exa_mple.org",
            "alice@example..org",
        ] {
            assert!(account_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn uid_validity_grows_even_within_a_second() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = store.inner.new_uid_validity();
        let b = store.inner.new_uid_validity();
        assert!(a >= 1 && b > a);
    }

    #[test]
    fn group_commit_covers_concurrent_requests() {
        let dir = tempfile::tempdir().unwrap();
        let sync = Arc::new(DirSync::default());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let sync = sync.clone();
                let path = dir.path().to_path_buf();
                std::thread::spawn(move || sync.sync(&path))
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
        let st = sync.state.lock().unwrap();
        assert_eq!(st.synced, 8);
        assert!(!st.running);
    }
}
