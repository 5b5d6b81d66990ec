//! File system steps with the durability rules of the store, and a
//! record of them that tests read to check their order.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Mode of files the store creates: the mail owner only.
pub const FILE_MODE: u32 = 0o600;

/// Mode of directories the store creates.
pub const DIR_MODE: u32 = 0o700;

/// One durability-relevant step, as recorded for tests.
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A file's data and metadata were synced.
    SyncFile(std::path::PathBuf),
    /// A file was renamed or linked into place.
    Place {
        from: std::path::PathBuf,
        to: std::path::PathBuf,
    },
    /// A directory was synced.
    SyncDir(std::path::PathBuf),
}

#[cfg(test)]
thread_local! {
    static STEPS: std::cell::RefCell<Option<Vec<Step>>> =
        const { std::cell::RefCell::new(None) };
}

/// Start recording the steps this thread takes.
#[cfg(test)]
pub fn record_steps() {
    STEPS.with(|s| *s.borrow_mut() = Some(Vec::new()));
}

/// Stop recording and return what was recorded.
#[cfg(test)]
pub fn take_steps() -> Vec<Step> {
    STEPS.with(|s| s.borrow_mut().take().unwrap_or_default())
}

#[cfg(test)]
fn note_step(step: Step) {
    STEPS.with(|s| {
        if let Some(v) = s.borrow_mut().as_mut() {
            v.push(step);
        }
    });
}

/// Record a step in test builds; nothing at all in others.
macro_rules! note {
    ($step:expr) => {
        #[cfg(test)]
        note_step($step);
    };
}

/// Sync a file's data and metadata to disk.
pub fn sync_file(file: &File, path: &Path) -> io::Result<()> {
    file.sync_all()?;
    note!(Step::SyncFile(path.to_path_buf()));
    let _ = path;
    Ok(())
}

/// Sync a directory, making the names created or removed in it durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()?;
    note!(Step::SyncDir(dir.to_path_buf()));
    Ok(())
}

/// Rename `from` to `to`, replacing `to`.
pub fn rename(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)?;
    note!(Step::Place {
        from: from.to_path_buf(),
        to: to.to_path_buf()
    });
    Ok(())
}

/// Hard-link `from` as `to`; fails with `AlreadyExists` rather than
/// replacing a message.
pub fn link(from: &Path, to: &Path) -> io::Result<()> {
    fs::hard_link(from, to)?;
    note!(Step::Place {
        from: from.to_path_buf(),
        to: to.to_path_buf()
    });
    Ok(())
}

/// Create a new file that must not exist yet.
pub fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .read(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
}

/// Create a directory and its parents with [`DIR_MODE`].
pub fn create_dirs(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
}

/// Replace `path` with `contents` durably: write a sibling temp file,
/// sync it, rename it over `path`, sync the directory.
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(
        ".{name}.tmp.{}.{}",
        std::process::id(),
        rand::random::<u32>()
    ));

    let result = (|| {
        let mut f = create_new(&tmp)?;
        f.write_all(contents)?;
        sync_file(&f, &tmp)?;
        rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
