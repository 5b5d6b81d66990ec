//! Maildir file names.
//!
//! A name is `<base>` in `new/` and `<base>:2,<flags>` in `cur/`. The base
//! names this store writes look like
//! `1733260800.mh42P1234R5f3a9c.mx.example.org,S=10240,W=10240`:
//!
//! - the first field is the message's INTERNALDATE in seconds, which is
//!   also the file's mtime. The `mh` tag at the start of the second field
//!   promises that, so opening a folder needs no `stat` of files we wrote;
//!   for any other name the mtime is read, as Dovecot does.
//! - `mh<seq>P<pid>R<random>` makes the name unique: a per-process
//!   counter, the process id and random bits against a reused pid.
//! - `,S=` is the file size and `,W=` the size with CRLF line ends; this
//!   store writes CRLF files, so both are equal.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use rand::Rng;

/// The tag that marks base names whose first field is the mtime.
const DATE_TAG: &str = "mh";

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// This host's name, made safe for a file name (Maildir asks for `/`
/// and `:` to be escaped; we keep only a conservative set).
fn hostname() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        let mut buf = [0u8; 256];
        // SAFETY: the buffer is valid for its length; gethostname writes
        // at most that many bytes.
        let rc =
            unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        let raw = if rc == 0 {
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            String::from_utf8_lossy(&buf[..end]).into_owned()
        } else {
            String::new()
        };
        let safe: String = raw
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if safe.is_empty() {
            "localhost".to_owned()
        } else {
            safe
        }
    })
}

/// A fresh unique base name, without size fields, for a message whose
/// INTERNALDATE (and mtime) is `date`.
pub fn unique_base(date: i64) -> String {
    let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let salt: u32 = rand::thread_rng().r#gen::<u32>() & 0xff_ffff;
    format!(
        "{date}.{DATE_TAG}{seq}P{}R{salt:06x}.{}",
        std::process::id(),
        hostname()
    )
}

/// A complete base name with its size fields.
pub fn with_sizes(base: &str, size: u64, vsize: u64) -> String {
    format!("{base},S={size},W={vsize}")
}

/// The base of a file name: everything before the `:` of the info.
pub fn base(name: &str) -> &str {
    name.split_once(':').map_or(name, |(b, _)| b)
}

/// The flag letters part of a `cur/` name (after `:2,`), or "" when the
/// name has no standard info.
pub fn info(name: &str) -> &str {
    name.split_once(":2,").map_or("", |(_, i)| i)
}

/// A numeric `,<key>=<n>` field of a base name (`S` or `W`).
pub fn size_field(base: &str, key: char) -> Option<u64> {
    base.split(',').skip(1).find_map(|part| {
        let value = part.strip_prefix(key)?.strip_prefix('=')?;
        value.parse().ok()
    })
}

/// The INTERNALDATE a name of ours carries, `None` for foreign names.
pub fn tagged_date(base: &str) -> Option<i64> {
    let mut fields = base.splitn(3, '.');
    let date = fields.next()?;
    let unique = fields.next()?;
    if !unique.starts_with(DATE_TAG) {
        return None;
    }
    date.parse().ok()
}

/// The `cur/` name of a base with the given flag letters.
pub fn cur_name(base: &str, letters: &str) -> String {
    format!("{base}:2,{letters}")
}

/// Whether a directory entry looks like a message file: not hidden, and
/// no `/` or NUL (which the OS rules out anyway).
pub fn is_message_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_names_carry_date_and_sizes() {
        let b = with_sizes(&unique_base(1_700_000_000), 120, 124);
        assert_eq!(tagged_date(&b), Some(1_700_000_000));
        assert_eq!(size_field(&b, 'S'), Some(120));
        assert_eq!(size_field(&b, 'W'), Some(124));
        let cur = cur_name(&b, "FS");
        assert_eq!(base(&cur), b);
        assert_eq!(info(&cur), "FS");
        assert_ne!(unique_base(1), unique_base(1));
    }

    #[test]
    fn foreign_names_parse() {
        let n = "1276528487.M364837P9451.kurkku,S=1355,W=1394:2,RS";
        assert_eq!(tagged_date(base(n)), None);
        assert_eq!(size_field(base(n), 'W'), Some(1394));
        assert_eq!(info(n), "RS");
        assert_eq!(info("1035478339.27041_118.foo.org"), "");
        assert_eq!(size_field("1.2.host", 'S'), None);
    }
}
