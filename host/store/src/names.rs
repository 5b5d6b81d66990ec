//! Folder names: the WIT spelling (`Sent`, `a/b`, UTF-8) and the
//! Maildir++ directory that holds the folder (`.Sent`, `.a.b`, modified
//! UTF-7), as Dovecot lays them out with `/` as the visible separator.
//!
//! Maildir++ uses `.` as its hierarchy separator on disk, so a `.` inside
//! a level cannot be stored faithfully; like Dovecot without an escape
//! character configured, such names are refused with `invalid-name`.

use crate::error::StoreError;
use crate::mutf7;

/// The longest folder name we accept, in bytes of its UTF-8 WIT form.
pub const MAX_FOLDER_NAME_LEN: usize = 200;

/// The longest on-disk directory name: the usual file name limit.
pub const MAX_DIR_NAME_LEN: usize = 255;

/// The deepest hierarchy we accept, in levels.
pub const MAX_FOLDER_DEPTH: usize = 16;

/// Folders created with every new account, with their RFC 6154 use.
pub const SPECIAL_FOLDERS: [&str; 5] =
    ["Sent", "Drafts", "Trash", "Junk", "Archive"];

/// A validated folder name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FolderName {
    /// The inbox: the Maildir root itself.
    Inbox,
    /// Any other folder, as its levels (the first never `INBOX` in any
    /// other case than upper).
    Sub(Vec<String>),
}

impl FolderName {
    /// Parse and validate a WIT folder name.
    ///
    /// Refused with `invalid-name`: an empty name or level, a level
    /// starting with `.` or holding `.` (the on-disk separator), control
    /// characters, the IMAP wildcards `*` and `%`, more than
    /// [`MAX_FOLDER_DEPTH`] levels, or a name longer than
    /// [`MAX_FOLDER_NAME_LEN`] bytes.
    pub fn parse(name: &str) -> Result<FolderName, StoreError> {
        if name.is_empty() || name.len() > MAX_FOLDER_NAME_LEN {
            return Err(StoreError::InvalidName);
        }

        let mut levels: Vec<String> =
            name.split('/').map(str::to_owned).collect();
        if levels.len() > MAX_FOLDER_DEPTH {
            return Err(StoreError::InvalidName);
        }
        for level in &levels {
            let bad_char = level
                .chars()
                .any(|c| c.is_control() || matches!(c, '.' | '*' | '%'));
            if level.is_empty() || bad_char {
                return Err(StoreError::InvalidName);
            }
        }

        // INBOX is case-insensitive, as a name and as a parent.
        if levels[0].eq_ignore_ascii_case("INBOX") {
            levels[0] = "INBOX".to_owned();
        }
        if levels.len() == 1 && levels[0] == "INBOX" {
            return Ok(FolderName::Inbox);
        }

        let parsed = FolderName::Sub(levels);
        if parsed
            .dir_name()
            .is_some_and(|d| d.len() > MAX_DIR_NAME_LEN)
        {
            return Err(StoreError::InvalidName);
        }
        Ok(parsed)
    }

    /// The Maildir++ directory name below the Maildir root (`.a.b`), or
    /// `None` for the inbox, which is the root.
    pub fn dir_name(&self) -> Option<String> {
        match self {
            FolderName::Inbox => None,
            FolderName::Sub(levels) => {
                let mut dir = String::new();
                for level in levels {
                    dir.push('.');
                    dir.push_str(&mutf7::encode(level));
                }
                Some(dir)
            }
        }
    }

    /// Read a directory name found in the Maildir root back into a
    /// folder name. `None` for anything that is not a folder we would
    /// have written: no leading `.`, an empty level (`..` entries and
    /// Dovecot's `..DOVECOT-TRASHED`), or broken modified UTF-7.
    pub fn from_dir_name(dir: &str) -> Option<FolderName> {
        let rest = dir.strip_prefix('.')?;
        let mut levels = Vec::new();
        for part in rest.split('.') {
            if part.is_empty() {
                return None;
            }
            levels.push(mutf7::decode(part)?);
        }
        FolderName::parse(&levels.join("/")).ok()
    }

    /// The WIT spelling: levels joined by `/`.
    pub fn display(&self) -> String {
        match self {
            FolderName::Inbox => "INBOX".to_owned(),
            FolderName::Sub(levels) => levels.join("/"),
        }
    }

    /// The parent folder, `None` for a top level folder.
    pub fn parent(&self) -> Option<FolderName> {
        match self {
            FolderName::Sub(levels) if levels.len() > 1 => {
                let parent = levels[..levels.len() - 1].to_vec();
                if parent.len() == 1 && parent[0] == "INBOX" {
                    Some(FolderName::Inbox)
                } else {
                    Some(FolderName::Sub(parent))
                }
            }
            _ => None,
        }
    }

    /// RFC 6154 attribute of the folder, without the backslash.
    pub fn special_use(&self) -> Option<&'static str> {
        match self {
            FolderName::Sub(levels) if levels.len() == 1 => {
                SPECIAL_FOLDERS.iter().find(|s| **s == levels[0]).copied()
            }
            _ => None,
        }
    }

    /// Whether `self` lies below `other`.
    pub fn is_below(&self, other: &FolderName) -> bool {
        let mine = match self {
            FolderName::Sub(l) => l,
            FolderName::Inbox => return false,
        };
        match other {
            FolderName::Inbox => mine.len() > 1 && mine[0] == "INBOX",
            FolderName::Sub(theirs) => {
                mine.len() > theirs.len() && mine[..theirs.len()] == theirs[..]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_hierarchy_and_utf8_like_dovecot() {
        let cases = [
            ("Sent", ".Sent"),
            ("a/b", ".a.b"),
            ("Entwürfe/2024", ".Entw&APw-rfe.2024"),
            ("inbox/sub", ".INBOX.sub"),
            ("R&D", ".R&-D"),
        ];
        for (wit, dir) in cases {
            let name = FolderName::parse(wit).unwrap();
            assert_eq!(name.dir_name().as_deref(), Some(dir));
            assert_eq!(FolderName::from_dir_name(dir), Some(name));
        }
        assert_eq!(FolderName::parse("iNbOx").unwrap(), FolderName::Inbox);
    }

    #[test]
    fn refuses_hostile_names() {
        let long = "x".repeat(MAX_FOLDER_NAME_LEN + 1);
        let deep = vec!["d"; MAX_FOLDER_DEPTH + 1].join("/");
        let bad = [
            "", "/", "a/", "/a", "a//b", ".hidden", "a.b", "..", "../etc",
            "a\nb", "a\0b", "*", "a%", &long, &deep,
        ];
        for name in bad {
            assert!(
                matches!(FolderName::parse(name), Err(StoreError::InvalidName)),
                "{name:?} should be refused"
            );
        }
    }

    #[test]
    fn ignores_foreign_directories() {
        for dir in ["cur", "..DOVECOT-TRASHED", ".", "..", ".a..b", ".&x"] {
            assert_eq!(FolderName::from_dir_name(dir), None, "{dir}");
        }
    }

    #[test]
    fn knows_parents_and_children() {
        let child = FolderName::parse("a/b/c").unwrap();
        let parent = FolderName::parse("a/b").unwrap();
        assert_eq!(child.parent(), Some(parent.clone()));
        assert!(child.is_below(&parent));
        assert!(!parent.is_below(&child));
        let inbox_child = FolderName::parse("INBOX/x").unwrap();
        assert_eq!(inbox_child.parent(), Some(FolderName::Inbox));
        assert!(inbox_child.is_below(&FolderName::Inbox));
    }
}
