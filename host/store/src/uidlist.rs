//! The `dovecot-uidlist` file: UIDVALIDITY, the next UID and the
//! UID of every message, keyed by the base of its file name.
//!
//! Version 3, as Dovecot writes it:
//!
//! ```text
//! 3 V1275660208 N25022 G3085f01b7f11094c501100008c4a11c1
//! 25006 :1276528487.M364837P9451.kurkku,S=1355,W=1394:2,
//! 25017 W2481 :1276533073.M242911P3632.kurkku:2,F
//! ```
//!
//! Header and record fields we do not use are kept as they are and
//! written back. Version 1 files (Courier's `courierimapuiddb` layout,
//! `1 <uidvalidity> <nextuid>` then `<uid> <filename>`) are read and
//! rewritten as version 3.

use std::path::Path;

use crate::error::{FileError, StoreError};
use crate::filename;

/// The name of the UID list in each folder directory.
pub const UIDLIST_FILE: &str = "dovecot-uidlist";

/// The largest UID list we read, in bytes: room for millions of
/// messages, and a bound on memory for a corrupt or hostile file.
pub const MAX_UIDLIST_BYTES: u64 = 512 * 1024 * 1024;

/// One message's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The message's UID.
    pub uid: u32,
    /// Extension fields as written (`W2481`), without the separators.
    pub ext: Vec<String>,
    /// The last known file name (its base is what identifies the file).
    pub name: String,
}

impl Record {
    /// The virtual (CRLF) size from a `W` field, when the record has one.
    pub fn vsize(&self) -> Option<u64> {
        self.ext
            .iter()
            .find_map(|f| f.strip_prefix('W').and_then(|v| v.parse().ok()))
    }
}

/// A parsed UID list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UidList {
    /// The folder's UIDVALIDITY, in 1..2^32-1.
    pub uid_validity: u32,
    /// The UID the next new message gets.
    pub next_uid: u32,
    /// The folder's 128-bit GUID in hex.
    pub guid: String,
    /// Header fields other than V, N and G, kept for the rewrite.
    pub other_header: Vec<String>,
    /// Records, ascending by UID.
    pub records: Vec<Record>,
}

impl UidList {
    /// An empty list for a new folder.
    pub fn new(uid_validity: u32) -> UidList {
        UidList {
            uid_validity,
            next_uid: 1,
            guid: format!("{:032x}", rand::random::<u128>()),
            other_header: Vec::new(),
            records: Vec::new(),
        }
    }

    /// Read the list at `path`; `Ok(None)` when there is none yet.
    pub fn load(path: &Path) -> Result<Option<UidList>, StoreError> {
        use std::io::Read;

        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(None);
            }
            Err(e) => return Err(StoreError::io("cannot read", path, e)),
        };
        let mut bytes = Vec::new();
        file.take(MAX_UIDLIST_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| StoreError::io("cannot read", path, e))?;
        if bytes.len() as u64 > MAX_UIDLIST_BYTES {
            return Err(FileError::new(path, None, "file too large").into());
        }
        let text = String::from_utf8(bytes)
            .map_err(|_| FileError::new(path, None, "not valid UTF-8"))?;
        Ok(Some(UidList::parse(&text, path)?))
    }

    /// Parse file contents; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<UidList, FileError> {
        let mut lines = text.lines();
        let header = lines
            .next()
            .ok_or_else(|| FileError::new(path, Some(1), "empty file"))?;
        let bad = |n: usize, what: &str| FileError::new(path, Some(n), what);

        let mut fields = header.split(' ').filter(|f| !f.is_empty());
        let version = fields.next().unwrap_or("");
        let mut list = UidList::new(1);
        list.guid.clear();
        let mut have_validity = false;
        match version {
            "3" => {
                for f in fields {
                    let key = f.get(..1).unwrap_or("");
                    let value = f.get(1..).unwrap_or("");
                    match key {
                        "V" => {
                            list.uid_validity = value
                                .parse()
                                .map_err(|_| bad(1, "bad UIDVALIDITY"))?;
                            have_validity = true;
                        }
                        "N" => {
                            list.next_uid = value
                                .parse()
                                .map_err(|_| bad(1, "bad next UID"))?;
                        }
                        "G" => list.guid = value.to_owned(),
                        _ => list.other_header.push(f.to_owned()),
                    }
                }
            }
            "1" => {
                let v = fields.next().and_then(|v| v.parse().ok());
                let n = fields.next().and_then(|n| n.parse().ok());
                match (v, n) {
                    (Some(v), Some(n)) => {
                        list.uid_validity = v;
                        list.next_uid = n;
                        have_validity = true;
                    }
                    _ => return Err(bad(1, "bad version 1 header")),
                }
            }
            _ => return Err(bad(1, "unknown version")),
        }
        if !have_validity || list.uid_validity == 0 {
            return Err(bad(1, "UIDVALIDITY missing or zero"));
        }
        if list.guid.is_empty() {
            list.guid = format!("{:032x}", rand::random::<u128>());
        }

        for (i, line) in lines.enumerate() {
            let n = i + 2;
            if line.is_empty() {
                continue;
            }
            let record = if version == "3" {
                // The first `:` ends the fields; it follows a space.
                let colon = line
                    .find(':')
                    .filter(|&i| i > 0 && line.as_bytes()[i - 1] == b' ')
                    .ok_or_else(|| {
                        bad(n, "expected `<uid> [fields] :<file>`")
                    })?;
                let (head, name) = (&line[..colon - 1], &line[colon + 1..]);
                match head.split_once(' ') {
                    // The common case: no extension fields.
                    None => (head.parse().ok(), Vec::new(), name),
                    Some((uid, rest)) => {
                        let ext = rest
                            .split(' ')
                            .filter(|p| !p.is_empty())
                            .map(str::to_owned)
                            .collect();
                        (uid.parse().ok(), ext, name)
                    }
                }
            } else {
                let (uid, name) = line
                    .split_once(' ')
                    .ok_or_else(|| bad(n, "expected `<uid> <file>`"))?;
                (uid.parse().ok(), Vec::new(), name)
            };
            let (uid, ext, name) = record;
            let uid: u32 =
                uid.filter(|&u| u > 0).ok_or_else(|| bad(n, "bad UID"))?;
            if list.records.last().is_some_and(|r| r.uid >= uid) {
                return Err(bad(n, "UIDs not ascending"));
            }
            if name.is_empty() || name.contains('/') {
                return Err(bad(n, "bad file name"));
            }
            list.records.push(Record {
                uid,
                ext,
                name: name.to_owned(),
            });
        }

        // The next UID is never below one already given out.
        if let Some(last) = list.records.last() {
            list.next_uid = list.next_uid.max(last.uid.saturating_add(1));
        }
        Ok(list)
    }

    /// The file contents, version 3.
    pub fn serialize(&self) -> String {
        let mut out = String::with_capacity(64 + self.records.len() * 64);
        out.push_str(&format!(
            "3 V{} N{} G{}",
            self.uid_validity, self.next_uid, self.guid
        ));
        for f in &self.other_header {
            out.push(' ');
            out.push_str(f);
        }
        out.push('\n');
        for r in &self.records {
            out.push_str(&r.uid.to_string());
            for f in &r.ext {
                out.push(' ');
                out.push_str(f);
            }
            out.push_str(" :");
            out.push_str(&r.name);
            out.push('\n');
        }
        out
    }

    /// The base name a record identifies.
    pub fn base_of(record: &Record) -> &str {
        filename::base(&record.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dovecot_file_round_trips() {
        let text = "3 V1275660208 N25022 G3085f01b7f11094c501100008c4a11c1 X9\n\
            25006 :1276528487.M364837P9451.kurkku,S=1355,W=1394:2,\n\
            25017 W2481 :1276533073.M242911P3632.kurkku:2,F\n";
        let list = UidList::parse(text, Path::new("u")).unwrap();
        assert_eq!(list.uid_validity, 1275660208);
        assert_eq!(list.next_uid, 25022);
        assert_eq!(list.records[1].vsize(), Some(2481));
        assert_eq!(
            UidList::base_of(&list.records[1]),
            "1276533073.M242911P3632.kurkku"
        );
        assert_eq!(list.serialize(), text);
    }

    #[test]
    fn next_uid_never_below_a_record() {
        let text = "3 V5 N2 Gab\n7 :x\n";
        let list = UidList::parse(text, Path::new("u")).unwrap();
        assert_eq!(list.next_uid, 8);
    }

    #[test]
    fn reads_version_1() {
        let list =
            UidList::parse("1 42 10\n3 a.b.c:2,S\n", Path::new("u")).unwrap();
        assert_eq!((list.uid_validity, list.next_uid), (42, 10));
        assert_eq!(list.records[0].uid, 3);
    }

    #[test]
    fn corrupt_lines_name_file_and_line() {
        let cases = [
            ("", "line 1"),
            ("2 V1 N1\n", "line 1"),
            ("3 N4 G1\n", "line 1"),
            ("3 V1 N4\n1 :a\nbogus\n", "line 3"),
            ("3 V1 N4\n2 :a\n1 :b\n", "line 3"),
            ("3 V1 N4\n0 :a\n", "line 2"),
        ];
        for (text, want) in cases {
            let err = UidList::parse(text, Path::new("/m/dovecot-uidlist"))
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("`/m/dovecot-uidlist` ") && err.contains(want),
                "{text:?}: {err}"
            );
        }
    }
}
