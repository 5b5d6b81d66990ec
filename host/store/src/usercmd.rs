//! `mailhost user add|passwd|del|list`: edit the users file.
//!
//! Passwords are read from the terminal without echo, or from the first
//! line of stdin when stdin is not a terminal; never from arguments,
//! which other local users can see. The file is rewritten atomically (a
//! temp file, synced, renamed over it) with comments and lines we do not
//! understand kept as they were, under a `.lock` dot-lock against a
//! concurrent edit.

use std::fs;
use std::io::{self, BufRead, Write};
use std::path::Path;

use anyhow::{Context, bail};

use crate::accounts::{is_blank_or_comment, parse_user_line};
use crate::dotlock::DotLock;
use crate::fsutil;
use crate::password;
use crate::store::account_path;

/// One `mailhost user` subcommand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserCommand {
    /// Add an account with a new password.
    Add {
        /// `user@domain`.
        user: String,
    },
    /// Set a new password for an account.
    Passwd {
        /// `user@domain`.
        user: String,
    },
    /// Remove an account from the users file (its mail stays on disk).
    Del {
        /// `user@domain`.
        user: String,
    },
    /// Print every account, one a line.
    List,
}

/// Run `cmd` on `users_file`, reading a password as described in the
/// module docs and printing `list` output to stdout.
pub fn user_command(users_file: &Path, cmd: UserCommand) -> anyhow::Result<()> {
    let needs_password =
        matches!(cmd, UserCommand::Add { .. } | UserCommand::Passwd { .. });
    let password = if needs_password {
        Some(read_password()?)
    } else {
        None
    };
    let stdout = io::stdout();
    run_user_command(users_file, cmd, password.as_deref(), &mut stdout.lock())
}

/// Run `cmd` with the password already read; `out` gets `list` output.
pub fn run_user_command(
    users_file: &Path,
    cmd: UserCommand,
    password: Option<&str>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    if cmd == UserCommand::List {
        let text = read_users(users_file)?;
        for line in text.lines().filter(|l| !is_blank_or_comment(l)) {
            if let Ok((name, _)) = parse_user_line(line, &[]) {
                writeln!(out, "{name}")?;
            }
        }
        return Ok(());
    }

    let user = match &cmd {
        UserCommand::Add { user }
        | UserCommand::Passwd { user }
        | UserCommand::Del { user } => user,
        UserCommand::List => unreachable!("handled above"),
    };
    let (local, domain) = account_path(user).map_err(|_| {
        anyhow::anyhow!("`{user}` is not a valid account address")
    })?;
    let name = format!("{local}@{domain}");

    let _lock = DotLock::acquire(users_file)
        .with_context(|| format!("cannot lock `{}`", users_file.display()))?;
    let text = match fs::read_to_string(users_file) {
        Ok(t) => t,
        Err(e)
            if e.kind() == io::ErrorKind::NotFound
                && matches!(cmd, UserCommand::Add { .. }) =>
        {
            String::new()
        }
        Err(e) => {
            return Err(e).with_context(|| {
                format!("cannot read `{}`", users_file.display())
            });
        }
    };

    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let found = lines.iter().position(|l| {
        !is_blank_or_comment(l)
            && l.split(':')
                .next()
                .is_some_and(|u| u.trim().eq_ignore_ascii_case(&name))
    });

    match (&cmd, found) {
        (UserCommand::Add { .. }, Some(_)) => {
            bail!("account `{name}` exists already")
        }
        (UserCommand::Add { .. }, None) => {
            let hash = password::hash_password(password.unwrap_or(""))
                .map_err(anyhow::Error::msg)?;
            lines.push(format!("{name}:{hash}"));
        }
        (UserCommand::Passwd { .. }, Some(i)) => {
            let hash = password::hash_password(password.unwrap_or(""))
                .map_err(anyhow::Error::msg)?;
            // Keep the extra fields after the hash as they were.
            let mut fields: Vec<&str> = lines[i].split(':').collect();
            if fields.len() < 2 {
                fields.push("");
            }
            fields[1] = &hash;
            lines[i] = fields.join(":");
        }
        (UserCommand::Del { .. }, Some(i)) => {
            lines.remove(i);
        }
        (_, None) => bail!("no account `{name}` in `{}`", users_file.display()),
        (UserCommand::List, _) => unreachable!("handled above"),
    }

    let mut new_text = lines.join("\n");
    new_text.push('\n');
    fsutil::write_atomic(users_file, new_text.as_bytes())
        .with_context(|| format!("cannot write `{}`", users_file.display()))?;
    Ok(())
}

fn read_users(path: &Path) -> anyhow::Result<String> {
    fs::read_to_string(path)
        .with_context(|| format!("cannot read `{}`", path.display()))
}

/// Read a password: prompted twice without echo on a terminal, else the
/// first line of stdin (without its line end).
pub fn read_password() -> anyhow::Result<String> {
    // SAFETY: isatty only inspects the descriptor.
    let tty = unsafe { libc::isatty(libc::STDIN_FILENO) } == 1;
    if !tty {
        let mut line = String::new();
        io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read password from stdin")?;
        let pw = line.trim_end_matches(['\n', '\r']).to_owned();
        if pw.is_empty() {
            bail!("no password on stdin");
        }
        return Ok(pw);
    }

    let first = prompt_no_echo("Password: ")?;
    let second = prompt_no_echo("Repeat password: ")?;
    if first != second {
        bail!("passwords do not match");
    }
    if first.is_empty() {
        bail!("empty password");
    }
    Ok(first)
}

/// Prompt on stderr and read a line from the terminal with echo off,
/// restoring the terminal however the read ends.
fn prompt_no_echo(prompt: &str) -> anyhow::Result<String> {
    let fd = libc::STDIN_FILENO;
    // SAFETY: termios is plain data; tcgetattr fills it for a valid fd.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
        return Err(io::Error::last_os_error())
            .context("cannot read terminal settings");
    }
    let mut quiet = saved;
    quiet.c_lflag &= !libc::ECHO;
    quiet.c_lflag |= libc::ECHONL;
    // SAFETY: as above, with settings derived from the current ones.
    if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) } != 0 {
        return Err(io::Error::last_os_error()).context("cannot turn off echo");
    }

    eprint!("{prompt}");
    let _ = io::stderr().flush();
    let mut line = String::new();
    let read = io::stdin().lock().read_line(&mut line);
    // SAFETY: restores the settings read above.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    read.context("cannot read password")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::Accounts;

    fn run(
        file: &Path,
        cmd: UserCommand,
        pw: Option<&str>,
    ) -> anyhow::Result<String> {
        let mut out = Vec::new();
        run_user_command(file, cmd, pw, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn add_passwd_del_list_keep_comments_and_unknown_lines() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("users");
        fs::write(&file, "# operators: keep this\nweird line kept\n").unwrap();
        let domains = ["example.org".to_owned()];

        let add = |u: &str| UserCommand::Add { user: u.into() };
        run(&file, add("Alice@example.org"), Some("one")).unwrap();
        run(&file, add("bob@example.org"), Some("two")).unwrap();
        assert!(run(&file, add("alice@example.org"), Some("x")).is_err());
        assert_eq!(
            run(&file, UserCommand::List, None).unwrap(),
            "alice@example.org\nbob@example.org\n"
        );

        // An extra field survives a password change.
        let text = fs::read_to_string(&file).unwrap();
        let text = text.trim_end().to_owned() + ":1000:1000\n";
        fs::write(&file, text).unwrap();
        run(
            &file,
            UserCommand::Passwd {
                user: "bob@example.org".into(),
            },
            Some("three"),
        )
        .unwrap();
        let text = fs::read_to_string(&file).unwrap();
        assert!(
            text.starts_with("# operators: keep this\nweird line kept\n"),
            "{text}"
        );
        assert!(text.trim_end().ends_with(":1000:1000"), "{text}");

        run(
            &file,
            UserCommand::Del {
                user: "alice@example.org".into(),
            },
            None,
        )
        .unwrap();
        assert!(
            run(
                &file,
                UserCommand::Del {
                    user: "alice@example.org".into()
                },
                None
            )
            .is_err()
        );

        // The file loads, minus the line we never understood.
        let kept = fs::read_to_string(&file)
            .unwrap()
            .replace("weird line kept\n", "");
        fs::write(&file, kept).unwrap();
        let acc = Accounts::load(&file, None, &domains).unwrap();
        assert!(acc.verify("bob@example.org", "three").is_ok());
        assert!(acc.verify("bob@example.org", "two").is_err());
        assert!(acc.verify("alice@example.org", "one").is_err());
    }

    #[test]
    fn refuses_bad_names_and_missing_accounts() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("users");
        assert!(
            run(
                &file,
                UserCommand::Add {
                    user: "../../etc@x.org".into()
                },
                Some("p")
            )
            .is_err()
        );
        assert!(
            run(
                &file,
                UserCommand::Add {
                    user: "a:b@x.org".into()
                },
                Some("p")
            )
            .is_err()
        );
        assert!(
            run(
                &file,
                UserCommand::Passwd {
                    user: "nobody@x.org".into()
                },
                Some("p")
            )
            .is_err()
        );
        assert!(
            run(
                &file,
                UserCommand::Add {
                    user: "a@x.org".into()
                },
                Some("")
            )
            .is_err()
        );
        assert!(!dir.path().join("users.lock").exists());
    }
}
