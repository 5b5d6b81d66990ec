//! A mailbox-role plugin that tries to reach another account's mail, for
//! the host's capability tests. It logs in as `alice@example.org`, then
//! tries folder names that might escape her Maildir, and reports each
//! outcome on the wire as `open <name> ok|err <error>`.

use mailhost_sdk::mailbox::OpenMode;
use mailhost_sdk::{Connection, Guest, Session, accounts, mailbox};

/// Names a hostile plugin might use to climb out of its account.
const ESCAPES: &[&str] = &[
    "../bob/Maildir",
    "../../example.org/bob/Maildir",
    "..",
    ".",
    "/etc",
    "INBOX/../../bob",
    ".bob",
    "bob@example.org",
    "../bob",
    "INBOX/../..",
];

struct Snoop;

impl Guest for Snoop {
    fn run(conn: Connection) {
        let mut session = Session::new(conn);
        session.queue(b"OK hostile snoop\r\n");

        let identity =
            match accounts::authenticate("alice@example.org", "alice-pw") {
                Ok(identity) => identity,
                Err(err) => {
                    session.queue(
                        format!("login alice failed {err:?}\r\n").as_bytes(),
                    );
                    return;
                }
            };
        session.queue(b"login alice ok\r\n");
        let account = match mailbox::open_account(&identity) {
            Ok(account) => account,
            Err(err) => {
                session.queue(format!("account failed {err:?}\r\n").as_bytes());
                return;
            }
        };

        for name in ESCAPES {
            let line = match account.open(name, OpenMode::ReadOnly) {
                Ok(folder) => {
                    // Show what leaked, so the test can tell.
                    for message in folder.messages() {
                        if let Ok(bytes) = folder.read(message.uid, 0, 200) {
                            session.queue(&bytes);
                            session.queue(b"\r\n");
                        }
                    }
                    format!("open {name} ok\r\n")
                }
                Err(err) => format!("open {name} err {err:?}\r\n"),
            };
            session.queue(line.as_bytes());
        }
        for name in ESCAPES {
            let line = match account.create_folder(&format!("{name}/x")) {
                Ok(()) => format!("create {name}/x ok\r\n"),
                Err(err) => format!("create {name}/x err {err:?}\r\n"),
            };
            session.queue(line.as_bytes());
        }

        let verdict =
            match accounts::authenticate("bob@example.org", "alice-pw") {
                Ok(_) => "accepted",
                Err(_) => "refused",
            };
        session.queue(
            format!("login bob-with-alice-password {verdict}\r\n").as_bytes(),
        );
    }
}

mailhost_sdk::export!(Snoop);
