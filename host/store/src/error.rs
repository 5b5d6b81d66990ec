//! Error types. Each enum mirrors one WIT error enum case for case, so
//! the host maps them one to one; the `Temporary` cases carry a text for
//! the log that the plugin never sees.

use std::io;
use std::path::Path;

/// Why a mailbox operation failed (WIT `mailbox.store-error`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such folder or message (expunged meanwhile, for messages).
    #[error("no such folder or message")]
    NotFound,
    /// A folder of that name exists already.
    #[error("folder exists already")]
    AlreadyExists,
    /// The folder name breaks the naming rules (see [`crate::names`]).
    #[error("invalid folder name")]
    InvalidName,
    /// The folder is open exclusively by another session.
    #[error("folder is in use")]
    InUse,
    /// An append outgrew its size limit.
    #[error("message too large")]
    TooLarge,
    /// The folder was opened read-only.
    #[error("folder is read-only")]
    ReadOnly,
    /// Bad input, such as a commit called twice or an unusable flag.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Disk or store trouble; the text names the file and the cause.
    #[error("{0}")]
    Temporary(String),
}

impl StoreError {
    /// A temporary failure from an I/O error on `path`, doing `what`.
    pub(crate) fn io(what: &str, path: &Path, err: io::Error) -> Self {
        StoreError::Temporary(format!("{what} `{}`: {err}", path.display()))
    }
}

/// Why a delivery step failed (WIT `delivery.delivery-error`).
#[derive(Debug, Clone, thiserror::Error)]
pub enum DeliveryError {
    /// The recipient is not (or no longer) a local account or alias.
    #[error("unknown user")]
    UnknownUser,
    /// The message outgrew the size limit; nothing is delivered.
    #[error("message too large")]
    TooLarge,
    /// Bad input: no recipients, too many, or a second commit.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Disk or store trouble; the client should retry later.
    #[error("{0}")]
    Temporary(String),
}

impl DeliveryError {
    pub(crate) fn io(what: &str, path: &Path, err: io::Error) -> Self {
        DeliveryError::Temporary(format!("{what} `{}`: {err}", path.display()))
    }
}

impl From<StoreError> for DeliveryError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::TooLarge => DeliveryError::TooLarge,
            StoreError::InvalidArgument(why) => {
                DeliveryError::InvalidArgument(why)
            }
            StoreError::NotFound | StoreError::InvalidName => {
                DeliveryError::UnknownUser
            }
            other => DeliveryError::Temporary(other.to_string()),
        }
    }
}

/// Why a login failed (the store's part of WIT `accounts.auth-error`;
/// `plaintext-refused` and `not-allowed` are the host's decisions).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Unknown user or wrong password; never told apart.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// The stored hash could not be checked (a corrupt entry).
    #[error("{0}")]
    Temporary(String),
}

/// A problem in an accounts file, naming the file and, where there is
/// one, the line. The text never holds a password hash.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {message}", file_display(.file), line_display(.line))]
pub struct FileError {
    /// The file at fault.
    pub file: std::path::PathBuf,
    /// The 1-based line number, when one line is at fault.
    pub line: Option<usize>,
    /// What is wrong, lower case.
    pub message: String,
}

fn file_display(file: &Path) -> String {
    format!("`{}`", file.display())
}

fn line_display(line: &Option<usize>) -> String {
    match line {
        Some(n) => format!(" line {n}"),
        None => String::new(),
    }
}

impl FileError {
    pub(crate) fn new(
        file: &Path,
        line: Option<usize>,
        message: impl Into<String>,
    ) -> Self {
        FileError {
            file: file.to_path_buf(),
            line,
            message: message.into(),
        }
    }
}

impl From<FileError> for StoreError {
    fn from(err: FileError) -> Self {
        StoreError::Temporary(err.to_string())
    }
}
