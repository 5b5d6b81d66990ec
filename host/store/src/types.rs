//! Plain records of the mailbox API, one to one with WIT `mailbox`.

/// A folder as listed (WIT `folder-info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderInfo {
    /// Full name, levels separated by `/`.
    pub name: String,
    /// RFC 6154 attribute without the backslash, if any.
    pub special_use: Option<String>,
    /// Whether the account subscribed to it.
    pub subscribed: bool,
    /// Whether any folder lies below it.
    pub has_children: bool,
}

/// Counters of a folder (WIT `folder-status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FolderStatus {
    /// Number of messages.
    pub messages: u32,
    /// Messages in `new/`, not yet seen by any read-write session.
    pub recent: u32,
    /// Messages without `\Seen`.
    pub unseen: u32,
    /// The UID the next message will get.
    pub uid_next: u32,
    /// UIDVALIDITY, in 1..2^32-1.
    pub uid_validity: u32,
    /// Sum of message sizes in bytes, CRLF line ends.
    pub size: u64,
}

/// One message of a folder snapshot (WIT `message-info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageInfo {
    /// Unique within the folder for its UIDVALIDITY; never reused.
    pub uid: u32,
    /// System flags with backslash and keywords, sorted.
    pub flags: Vec<String>,
    /// Size in bytes with CRLF line ends, exactly what reads return.
    pub size: u64,
    /// Arrival time (the file's mtime), seconds since the epoch.
    pub internal_date: i64,
    /// Whether this session is the first to see the message.
    pub recent: bool,
}

/// What changed since the last snapshot (WIT `changes`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// UIDs no longer in the folder, ascending.
    pub expunged: Vec<u32>,
    /// New messages, ascending by UID.
    pub added: Vec<MessageInfo>,
    /// Messages whose flags changed, with their new flags.
    pub flags_changed: Vec<MessageInfo>,
    /// UIDNEXT now.
    pub uid_next: u32,
}

/// How `set_flags` combines flags (WIT `flag-operation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagOperation {
    /// Add the given flags.
    Add,
    /// Remove the given flags.
    Remove,
    /// Replace all flags with the given ones.
    Replace,
}

/// How to open a folder (WIT `open-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Read, change flags, expunge, append. New messages move from
    /// `new/` to `cur/` and are recent for this session.
    ReadWrite,
    /// Reads only; nothing is moved, marked or recent.
    ReadOnly,
    /// Read-write, and no other exclusive opener of the folder in this
    /// process at the same time (the POP3 maildrop lock).
    Exclusive,
}
