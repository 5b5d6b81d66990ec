//! Message flags: IMAP spelling (`\Seen`, `$Junk`) and their Maildir form
//! (`:2,` then letters), with keywords as `a`..`z` named by the folder's
//! `dovecot-keywords` file.

use std::path::Path;

use crate::error::{FileError, StoreError};

/// How many keywords a Maildir file name can carry: the letters a..z.
pub const MAX_KEYWORDS: usize = 26;

/// The longest keyword we accept, in bytes.
pub const MAX_KEYWORD_LEN: usize = 100;

/// The name of the keyword index file in each folder directory.
pub const KEYWORDS_FILE: &str = "dovecot-keywords";

/// IMAP system flags and their Maildir letters.
const SYSTEM: [(char, &str); 5] = [
    ('D', "\\Draft"),
    ('F', "\\Flagged"),
    ('R', "\\Answered"),
    ('S', "\\Seen"),
    ('T', "\\Deleted"),
];

/// The flags of one message as its file name states them: one bit per
/// letter, so a 100,000-message folder costs no allocation for flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaildirFlags {
    /// Upper case letters, bit 0 for `A`: system flags, and any we do
    /// not map (such as `P` for passed), kept so a rename never drops
    /// them.
    pub upper: u32,
    /// Keyword letters, bit 0 for `a`.
    pub keywords: u32,
}

/// The bit of an ASCII letter within its case.
pub fn letter_bit(c: char) -> u32 {
    if c.is_ascii_uppercase() {
        1 << (c as u32 - 'A' as u32)
    } else if c.is_ascii_lowercase() {
        1 << (c as u32 - 'a' as u32)
    } else {
        0
    }
}

/// The letters of a mask, from `first` (`A` or `a`), in ASCII order.
pub fn mask_letters(mask: u32, first: u8) -> impl Iterator<Item = char> {
    (0..26u8)
        .filter(move |i| mask & (1 << i) != 0)
        .map(move |i| (first + i) as char)
}

impl MaildirFlags {
    /// Parse the info part of a file name: what follows `:2,` up to an
    /// optional `,` that starts Dovecot's non-standard fields.
    pub fn parse(info: &str) -> MaildirFlags {
        let letters = info.split(',').next().unwrap_or("");
        let mut flags = MaildirFlags::default();
        for c in letters.chars() {
            if c.is_ascii_uppercase() {
                flags.upper |= letter_bit(c);
            } else if c.is_ascii_lowercase() {
                flags.keywords |= letter_bit(c);
            }
        }
        flags
    }

    /// The letters in ASCII order, as the Maildir spec asks.
    pub fn letters(&self) -> String {
        mask_letters(self.upper, b'A')
            .chain(mask_letters(self.keywords, b'a'))
            .collect()
    }

    /// Whether the message carries `\Seen`.
    pub fn seen(&self) -> bool {
        self.upper & letter_bit('S') != 0
    }

    /// Whether the message carries `\Deleted`.
    pub fn deleted(&self) -> bool {
        self.upper & letter_bit('T') != 0
    }

    /// The IMAP flags, sorted.
    pub fn to_imap(&self, keywords: &Keywords) -> Vec<String> {
        if self.upper == 0 && self.keywords == 0 {
            return Vec::new();
        }
        let mut out: Vec<String> = Vec::new();
        for (letter, name) in SYSTEM {
            if self.upper & letter_bit(letter) != 0 {
                out.push(name.to_owned());
            }
        }
        for k in mask_letters(self.keywords, b'a') {
            if let Some(name) = keywords.name(k) {
                out.push(name.to_owned());
            }
        }
        out.sort();
        out
    }
}

/// The mask of every IMAP system flag letter (D F R S T).
pub fn system_mask() -> u32 {
    SYSTEM.iter().fold(0, |m, (l, _)| m | letter_bit(*l))
}

/// Flags as a client names them, checked and split.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImapFlags {
    /// System flag letters, as a mask (see [`letter_bit`]).
    pub system: u32,
    /// Keywords as given.
    pub keywords: Vec<String>,
}

impl ImapFlags {
    /// Check client flags. `\Recent` is dropped (the server sets it);
    /// an unknown `\` flag or a keyword that is not an IMAP atom fails
    /// with `invalid-argument`.
    pub fn parse(flags: &[String]) -> Result<ImapFlags, StoreError> {
        let mut out = ImapFlags::default();
        for flag in flags {
            if flag.starts_with('\\') {
                if flag.eq_ignore_ascii_case("\\Recent") {
                    continue;
                }
                let letter = SYSTEM
                    .iter()
                    .find(|(_, n)| n.eq_ignore_ascii_case(flag))
                    .map(|(l, _)| *l)
                    .ok_or_else(|| {
                        StoreError::InvalidArgument(format!(
                            "unknown system flag `{flag}`"
                        ))
                    })?;
                out.system |= letter_bit(letter);
            } else {
                check_keyword(flag)?;
                let dup =
                    out.keywords.iter().any(|k| k.eq_ignore_ascii_case(flag));
                if !dup {
                    out.keywords.push(flag.clone());
                }
            }
        }
        Ok(out)
    }
}

/// A keyword must be an IMAP atom (RFC 3501 `atom`), of bounded length.
fn check_keyword(k: &str) -> Result<(), StoreError> {
    let atom_char = |c: char| {
        c.is_ascii_graphic()
            && !matches!(c, '(' | ')' | '{' | '%' | '*')
            && !matches!(c, '"' | '\\' | ']')
    };
    if k.is_empty() || k.len() > MAX_KEYWORD_LEN || !k.chars().all(atom_char) {
        return Err(StoreError::InvalidArgument(format!(
            "`{}` is not a valid keyword",
            k.escape_debug()
        )));
    }
    Ok(())
}

/// The keyword index of one folder: letter `a` + n names keyword n.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keywords {
    names: Vec<Option<String>>,
}

impl Keywords {
    /// Read `dovecot-keywords` from `dir`; a missing file is empty.
    /// A line that is not `<index> <name>` with an index below 26 fails,
    /// naming the file and line.
    pub fn load(dir: &Path) -> Result<Keywords, StoreError> {
        let path = dir.join(KEYWORDS_FILE);
        let text = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Keywords::default());
            }
            Err(e) => return Err(StoreError::io("cannot read", &path, e)),
        };
        let text = String::from_utf8(text)
            .map_err(|_| FileError::new(&path, None, "not valid UTF-8"))?;

        let mut kw = Keywords::default();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let bad = || {
                FileError::new(
                    &path,
                    Some(n + 1),
                    "expected `<index> <keyword>`",
                )
            };
            let (idx, name) = line.split_once(' ').ok_or_else(bad)?;
            let idx: usize = idx.parse().map_err(|_| bad())?;
            if idx >= MAX_KEYWORDS || name.is_empty() {
                return Err(bad().into());
            }
            if kw.names.len() <= idx {
                kw.names.resize(idx + 1, None);
            }
            kw.names[idx] = Some(name.to_owned());
        }
        Ok(kw)
    }

    /// The file's contents.
    pub fn serialize(&self) -> String {
        let mut out = String::new();
        for (i, name) in self.names.iter().enumerate() {
            if let Some(name) = name {
                out.push_str(&format!("{i} {name}\n"));
            }
        }
        out
    }

    /// The keyword a letter stands for.
    pub fn name(&self, letter: char) -> Option<&str> {
        let idx = (letter as usize).checked_sub('a' as usize)?;
        self.names.get(idx)?.as_deref()
    }

    /// The letter of a keyword (case-insensitive, as IMAP compares them).
    pub fn letter(&self, keyword: &str) -> Option<char> {
        self.names
            .iter()
            .position(|n| {
                n.as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(keyword))
            })
            .map(|i| (b'a' + i as u8) as char)
    }

    /// The letter of a keyword, giving it the first free letter if it has
    /// none. Returns whether the index changed, or `invalid-argument`
    /// when all 26 letters are taken.
    pub fn letter_or_add(
        &mut self,
        keyword: &str,
    ) -> Result<(char, bool), StoreError> {
        if let Some(l) = self.letter(keyword) {
            return Ok((l, false));
        }
        let free = match self.names.iter().position(Option::is_none) {
            Some(i) => i,
            None if self.names.len() < MAX_KEYWORDS => {
                self.names.push(None);
                self.names.len() - 1
            }
            // TODO(#3): Dovecot keeps further keywords in its index
            // files; we have no index, so the 27th keyword is refused.
            None => {
                return Err(StoreError::InvalidArgument(format!(
                    "folder already has {MAX_KEYWORDS} keywords"
                )));
            }
        };
        self.names[free] = Some(keyword.to_owned());
        Ok(((b'a' + free as u8) as char, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_in_ascii_order_and_unknown_kept() {
        let f = MaildirFlags::parse("TSRPFDba,extra");
        assert_eq!(f.letters(), "DFPRSTab");
        let mut kw = Keywords::default();
        kw.letter_or_add("$Junk").unwrap();
        kw.letter_or_add("$NonJunk").unwrap();
        assert_eq!(
            f.to_imap(&kw),
            [
                "$Junk",
                "$NonJunk",
                "\\Answered",
                "\\Deleted",
                "\\Draft",
                "\\Flagged",
                "\\Seen"
            ]
        );
    }

    #[test]
    fn client_flags_checked() {
        let ok = ImapFlags::parse(&[
            "\\seen".into(),
            "\\Recent".into(),
            "$Label1".into(),
            "$label1".into(),
        ])
        .unwrap();
        assert_eq!(ok.system, letter_bit('S'));
        assert_eq!(ok.keywords, ["$Label1"]);
        for bad in ["\\Bogus", "a b", "x(", "", "q\"", "brace{"] {
            assert!(ImapFlags::parse(&[bad.into()]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keyword_letters_fill_and_stop_at_26() {
        let mut kw = Keywords::default();
        for i in 0..MAX_KEYWORDS {
            let (l, added) = kw.letter_or_add(&format!("k{i}")).unwrap();
            assert!(added);
            assert_eq!(l, (b'a' + i as u8) as char);
        }
        assert_eq!(kw.letter_or_add("K3").unwrap(), ('d', false));
        assert!(kw.letter_or_add("one-too-many").is_err());
    }

    #[test]
    fn bad_keywords_file_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(KEYWORDS_FILE), "0 $Junk\nnonsense\n")
            .unwrap();
        let err = Keywords::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("dovecot-keywords` line 2"), "{err}");
    }
}
