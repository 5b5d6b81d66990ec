//! Accounts: the users file, the aliases file and the local domains.
//!
//! The users file is in Dovecot's passwd-file style, one account a line:
//!
//! ```text
//! # comments and blank lines are kept by `mailhost user`
//! alice@example.org:{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$...
//! bob@example.org:{SHA512-CRYPT}$6$...::::::extra fields ignored
//! ```
//!
//! The aliases file maps addresses to accounts or other aliases:
//!
//! ```text
//! postmaster@example.org: alice@example.org
//! team@example.org: alice@example.org, bob@example.org
//! ```
//!
//! Loading never changes a file. Every problem is an error naming the
//! file and line, and never shows a hash.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::Read;
use std::path::Path;

use crate::error::{AuthError, FileError};
use crate::password::{self, StoredHash};
use crate::store::account_path;

/// The largest users or aliases file read, in bytes.
pub const MAX_ACCOUNTS_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// How many aliases may chain (`a` to `b` to `c` ...) before the chain
/// is refused as too deep (or a loop).
pub const MAX_ALIAS_DEPTH: usize = 8;

/// The longest login name considered, in bytes.
pub const MAX_USERNAME_LEN: usize = 320;

/// What the store knows of a recipient address (WIT
/// `delivery.recipient-status`, with the accounts it reaches).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientStatus {
    /// Deliverable, to these accounts (`user@domain`, lower case).
    Local(Vec<String>),
    /// A local domain with no such user or alias.
    UnknownUser,
    /// Not one of our domains.
    NotLocal,
}

/// An account whose password was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `user@domain`, lower case.
    pub name: String,
    /// Addresses it may send as: its own first, then aliases reaching
    /// it, sorted.
    pub addresses: Vec<String>,
}

/// The loaded accounts. Immutable: reload to see file changes.
#[derive(Debug, Clone, Default)]
pub struct Accounts {
    users: HashMap<String, StoredHash>,
    /// Alias to the accounts it finally reaches.
    aliases: HashMap<String, Vec<String>>,
    domains: Vec<String>,
}

/// Read a whole accounts file, bounded, as UTF-8.
fn read_text(path: &Path) -> Result<String, FileError> {
    let file = fs::File::open(path)
        .map_err(|e| FileError::new(path, None, format!("cannot read: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_ACCOUNTS_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| FileError::new(path, None, format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_ACCOUNTS_FILE_BYTES {
        return Err(FileError::new(path, None, "file too large"));
    }
    String::from_utf8(bytes).map_err(|e| {
        let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        FileError::new(path, Some(line), "not valid UTF-8")
    })
}

/// Whether a line carries no entry.
pub(crate) fn is_blank_or_comment(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

/// Parse one users file line into `(account, hash)`.
pub(crate) fn parse_user_line(
    line: &str,
    domains: &[String],
) -> Result<(String, StoredHash), String> {
    let line = line.trim_end_matches('\r');
    let mut fields = line.split(':');
    let user = fields.next().unwrap_or("").trim();
    let pass = fields.next().ok_or("expected `user@domain:{SCHEME}hash`")?;
    let (local, domain) = account_path(user).map_err(|_| {
        format!("`{}` is not a valid account address", user.escape_debug())
    })?;
    if !domains.is_empty() && !domains.contains(&domain) {
        return Err(format!("domain `{domain}` is not a local domain"));
    }
    let hash = StoredHash::parse(pass.trim())?;
    Ok((format!("{local}@{domain}"), hash))
}

impl Accounts {
    /// Load the users file, the optional aliases file and the local
    /// domains (lower-cased; the first is the default for bare logins).
    ///
    /// Errors: an unreadable file; a line that is not `address:{SCHEME}
    /// hash`; an unknown scheme; an account outside `domains`; a second
    /// line for one account; an alias whose targets are not local
    /// accounts, that loops, or that shadows an account.
    pub fn load(
        users_file: &Path,
        aliases_file: Option<&Path>,
        domains: &[String],
    ) -> Result<Accounts, FileError> {
        let domains: Vec<String> =
            domains.iter().map(|d| d.to_ascii_lowercase()).collect();
        let mut users = HashMap::new();
        let text = read_text(users_file)?;
        for (n, line) in text.lines().enumerate() {
            if is_blank_or_comment(line) {
                continue;
            }
            let (name, hash) = parse_user_line(line, &domains)
                .map_err(|m| FileError::new(users_file, Some(n + 1), m))?;
            if users.insert(name.clone(), hash).is_some() {
                return Err(FileError::new(
                    users_file,
                    Some(n + 1),
                    format!("account `{name}` appears twice"),
                ));
            }
        }

        let mut accounts = Accounts {
            users,
            aliases: HashMap::new(),
            domains,
        };
        if let Some(path) = aliases_file {
            accounts.aliases = accounts.load_aliases(path)?;
        }
        Ok(accounts)
    }

    fn load_aliases(
        &self,
        path: &Path,
    ) -> Result<HashMap<String, Vec<String>>, FileError> {
        let text = read_text(path)?;
        let mut raw: HashMap<String, (usize, Vec<String>)> = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            if is_blank_or_comment(line) {
                continue;
            }
            let err = |m: String| FileError::new(path, Some(n + 1), m);
            let (alias, targets) = line.split_once(':').ok_or_else(|| {
                err("expected `alias@domain: target@domain`".into())
            })?;
            let alias = self.local_address(alias.trim()).map_err(err)?;
            if self.users.contains_key(&alias) {
                return Err(err(format!("alias `{alias}` is also an account")));
            }
            let mut list = Vec::new();
            for t in targets.split(',').map(str::trim).filter(|t| !t.is_empty())
            {
                list.push(self.local_address(t).map_err(err)?);
            }
            if list.is_empty() {
                return Err(err(format!("alias `{alias}` has no target")));
            }
            if raw.insert(alias.clone(), (n + 1, list)).is_some() {
                return Err(err(format!("alias `{alias}` appears twice")));
            }
        }

        // Resolve every alias to accounts now, so lookups are one step
        // and a broken chain is reported at load, with its line.
        let mut resolved = HashMap::new();
        for (alias, (line, _)) in &raw {
            let mut found = BTreeSet::new();
            self.resolve(alias, &raw, 0, &mut found)
                .map_err(|m| FileError::new(path, Some(*line), m))?;
            resolved.insert(alias.clone(), found.into_iter().collect());
        }
        Ok(resolved)
    }

    fn resolve(
        &self,
        addr: &str,
        raw: &HashMap<String, (usize, Vec<String>)>,
        depth: usize,
        found: &mut BTreeSet<String>,
    ) -> Result<(), String> {
        if depth > MAX_ALIAS_DEPTH {
            return Err(format!(
                "alias chain through `{addr}` loops or is deeper than {MAX_ALIAS_DEPTH}"
            ));
        }
        if self.users.contains_key(addr) {
            found.insert(addr.to_owned());
            return Ok(());
        }
        match raw.get(addr) {
            Some((_, targets)) => {
                for t in targets {
                    self.resolve(t, raw, depth + 1, found)?;
                }
                Ok(())
            }
            None => Err(format!(
                "alias target `{addr}` is not a local account or alias"
            )),
        }
    }

    /// Check and lower-case an address in one of our domains.
    fn local_address(&self, addr: &str) -> Result<String, String> {
        let (local, domain) = account_path(addr).map_err(|_| {
            format!("`{}` is not a valid address", addr.escape_debug())
        })?;
        if !self.domains.contains(&domain) {
            return Err(format!("domain `{domain}` is not a local domain"));
        }
        Ok(format!("{local}@{domain}"))
    }

    /// The local domains, lower case.
    pub fn domains(&self) -> &[String] {
        &self.domains
    }

    /// How many accounts there are.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there is no account at all.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Check a login. `username` is `user@domain`, or a bare `user` for
    /// the first local domain. Unknown users cost as much time as wrong
    /// passwords, and both give `InvalidCredentials`.
    ///
    /// Blocking: an argon2 check takes tens of milliseconds.
    pub fn verify(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Identity, AuthError> {
        let name = self.canonical_login(username);
        match name
            .as_ref()
            .and_then(|n| self.users.get(n).map(|h| (n, h)))
        {
            Some((name, hash)) if hash.verify(password) => {
                Ok(self.identity(name).expect("account exists"))
            }
            Some(_) => Err(AuthError::InvalidCredentials),
            None => {
                password::dummy_verify(password);
                Err(AuthError::InvalidCredentials)
            }
        }
    }

    fn canonical_login(&self, username: &str) -> Option<String> {
        if username.is_empty() || username.len() > MAX_USERNAME_LEN {
            return None;
        }
        let full = if username.contains('@') {
            username.to_owned()
        } else {
            format!("{username}@{}", self.domains.first()?)
        };
        let (local, domain) = account_path(&full).ok()?;
        Some(format!("{local}@{domain}"))
    }

    /// The identity of an existing account, with its alias addresses.
    pub fn identity(&self, account: &str) -> Option<Identity> {
        let name = account.to_ascii_lowercase();
        if !self.users.contains_key(&name) {
            return None;
        }
        let mut aliases: Vec<String> = self
            .aliases
            .iter()
            .filter(|(_, targets)| targets.contains(&name))
            .map(|(a, _)| a.clone())
            .collect();
        aliases.sort();
        let mut addresses = vec![name.clone()];
        addresses.extend(aliases);
        Some(Identity { name, addresses })
    }

    /// Classify an address (`local@domain`, no angle brackets). Domains
    /// compare without case; local parts are matched lower case.
    pub fn check_recipient(&self, address: &str) -> RecipientStatus {
        let Some((_, domain)) = address.rsplit_once('@') else {
            return RecipientStatus::NotLocal;
        };
        if !self.domains.contains(&domain.to_ascii_lowercase()) {
            return RecipientStatus::NotLocal;
        }
        let Ok((local, domain)) = account_path(address) else {
            return RecipientStatus::UnknownUser;
        };
        let addr = format!("{local}@{domain}");
        if self.users.contains_key(&addr) {
            return RecipientStatus::Local(vec![addr]);
        }
        match self.aliases.get(&addr) {
            Some(targets) => RecipientStatus::Local(targets.clone()),
            None => RecipientStatus::UnknownUser,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domains() -> Vec<String> {
        vec!["example.org".into(), "example.net".into()]
    }

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        fs::write(&p, text).unwrap();
        p
    }

    fn user_line(name: &str, pw: &str) -> String {
        format!("{name}:{}\n", password::hash_password(pw).unwrap())
    }

    #[test]
    fn verify_and_recipients() {
        let dir = tempfile::tempdir().unwrap();
        let users = write(
            dir.path(),
            "users",
            &format!(
                "# accounts\n\n{}{}",
                user_line("Alice@Example.org", "pw-a").trim_end().to_owned()
                    + ":1000:1000::/home/alice::extra\n",
                user_line("bob@example.org", "pw-b")
            ),
        );
        let aliases = write(
            dir.path(),
            "aliases",
            "postmaster@example.org: alice@example.org\n\
             team@example.org: postmaster@example.org, bob@example.org\n",
        );
        let acc = Accounts::load(&users, Some(&aliases), &domains()).unwrap();

        let id = acc.verify("ALICE@example.org", "pw-a").unwrap();
        assert_eq!(id.name, "alice@example.org");
        assert_eq!(
            id.addresses,
            [
                "alice@example.org",
                "postmaster@example.org",
                "team@example.org"
            ]
        );
        assert!(
            acc.verify("alice", "pw-a").is_ok(),
            "bare user, first domain"
        );
        assert!(acc.verify("alice@example.org", "pw-b").is_err());
        assert!(acc.verify("nobody@example.org", "pw-a").is_err());
        assert!(acc.verify("", "").is_err());

        assert_eq!(
            acc.check_recipient("team@EXAMPLE.org"),
            RecipientStatus::Local(vec![
                "alice@example.org".into(),
                "bob@example.org".into()
            ])
        );
        assert_eq!(
            acc.check_recipient("carol@example.org"),
            RecipientStatus::UnknownUser
        );
        assert_eq!(
            acc.check_recipient("alice@example.com"),
            RecipientStatus::NotLocal
        );
        assert_eq!(
            acc.check_recipient("../x@example.org"),
            RecipientStatus::UnknownUser
        );
    }

    #[test]
    fn bad_users_lines_name_file_and_line_never_the_hash() {
        let dir = tempfile::tempdir().unwrap();
        let good = user_line("alice@example.org", "x");
        let cases = [
            (format!("{good}nocolon\n"), "line 2", "expected"),
            (
                format!("{good}bob@example.org:{{PLAIN}}hunter2\n"),
                "line 2",
                "unknown password scheme",
            ),
            (format!("# c\n{good}{good}"), "line 3", "appears twice"),
            (
                "carol@example.com:{BLF-CRYPT}$2y$05$abc\n".into(),
                "line 1",
                "not a local domain",
            ),
            (
                "../etc@example.org:{ARGON2ID}x\n".into(),
                "line 1",
                "not a valid account",
            ),
            (
                "dave@example.org:{SHA512-CRYPT}$6$short\n".into(),
                "line 1",
                "malformed",
            ),
        ];
        for (text, line, what) in cases {
            let users = write(dir.path(), "users", &text);
            let err = Accounts::load(&users, None, &domains())
                .unwrap_err()
                .to_string();
            let file = format!("`{}` {line}: ", users.display());
            assert!(
                err.starts_with(&file) && err.contains(what),
                "{text:?}: {err}"
            );
            assert!(
                !err.contains("hunter2") && !err.contains("$argon2id$"),
                "{err}"
            );
        }
    }

    #[test]
    fn bad_aliases_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let users =
            write(dir.path(), "users", &user_line("alice@example.org", "x"));
        let cases = [
            (
                "a@example.org: nobody@example.org\n",
                "line 1",
                "not a local account",
            ),
            (
                "# x\na@example.org: b@example.org\nb@example.org: a@example.org\n",
                "line",
                "loops",
            ),
            (
                "alice@example.org: alice@example.org\n",
                "line 1",
                "also an account",
            ),
            ("a@example.org alice@example.org\n", "line 1", "expected"),
            (
                "a@example.org: alice@elsewhere.com\n",
                "line 1",
                "not a local domain",
            ),
            ("a@example.org:\n", "line 1", "no target"),
        ];
        for (text, line, what) in cases {
            let aliases = write(dir.path(), "aliases", text);
            let err = Accounts::load(&users, Some(&aliases), &domains())
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!("`{}` {line}", aliases.display()))
                    && err.contains(what),
                "{text:?}: {err}"
            );
        }
    }

    #[test]
    fn unreadable_users_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing-users");
        let err = Accounts::load(&missing, None, &domains())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("`{}`: cannot read", missing.display())),
            "{err}"
        );
        // A directory where the file should be: unreadable even as root.
        let err = Accounts::load(dir.path(), None, &domains())
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot read"), "{err}");
        let bad = write(dir.path(), "latin1", "ok\n\u{0}");
        fs::write(&bad, b"# fine\n\xff\n").unwrap();
        let err = Accounts::load(&bad, None, &domains())
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2: not valid UTF-8"), "{err}");
    }
}
