//! Interoperability with Dovecot on the same Maildir, both ways.
//!
//! Starts Debian's Dovecot by hand on 127.0.0.1 with a config written
//! into a temporary directory (passwd-file auth over mailhost's own
//! users file, `mail_location = maildir:`), and talks to it with Python's
//! imaplib. Skipped, with a message, only when the dovecot binary is
//! missing (`apt-get install -y dovecot-imapd`).

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mailhost_store::{FlagOperation, OpenMode, Store, password};

const DOVECOT: &str = "/usr/sbin/dovecot";
const USER: &str = "alice@example.org";
const PASSWORD: &str = "interop-secret";

/// Dovecot refuses to serve mail as root, so the Maildir is handed to
/// `nobody` while Dovecot works on it. The test itself runs as root (or
/// as this very user) and can read everything either way.
const MAIL_UID: u32 = 65534;
const MAIL_GID: u32 = 65534;

/// How long Dovecot may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The IMAP client side: prints one line per fact, for the test to read.
const CLIENT: &str = r#"
import imaplib, re, sys
host, port, user, pw, mode = sys.argv[1:6]
M = imaplib.IMAP4(host, int(port))
M.login(user, pw)

def dump(box):
    M.select('"%s"' % box, readonly=True)
    print("validity", box, M.response("UIDVALIDITY")[1][0].decode())
    typ, data = M.uid("FETCH", "1:*", "(FLAGS RFC822.SIZE)")
    for item in data:
        if item is None:
            continue
        line = item[0] if isinstance(item, tuple) else item
        line = line.decode()
        uid = re.search(r"UID (\d+)", line)
        if not uid:
            continue
        flags = re.search(r"FLAGS \(([^)]*)\)", line).group(1).split()
        flags = sorted(f for f in flags if f != "\\Recent")
        size = re.search(r"RFC822.SIZE (\d+)", line).group(1)
        print("msg", box, uid.group(1), size, " ".join(flags))

if mode == "dump":
    for d in M.list()[1]:
        print("list", d.decode())
    for d in M.lsub()[1]:
        print("lsub", d.decode())
    for box in sys.argv[6:]:
        dump(box)
elif mode == "write":
    M.select("INBOX")
    typ, data = M.append("INBOX", r"(\Flagged $Custom)", None,
                         b"Subject: from dovecot\r\n\r\nhello\r\n")
    print("append", data[0].decode())
    M.uid("STORE", "1", "+FLAGS", r"(\Seen $Junk)")
    M.uid("STORE", "2", "+FLAGS", r"(\Deleted)")
    M.expunge()
    M.create("Dovecot/Sub")
    M.append("Dovecot/Sub", r"(\Answered)", None, b"Subject: sub\r\n\r\nx\r\n")
M.logout()
"#;

/// A Dovecot master we started; stopped (and its children with it) on
/// drop.
struct Dovecot {
    child: Child,
    log: PathBuf,
    port: u16,
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        // SIGTERM lets the master stop its own children.
        // SAFETY: signalling our own child process by its pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Give `path` and everything below it to the mail user.
fn chown_tree(path: &Path) {
    std::os::unix::fs::chown(path, Some(MAIL_UID), Some(MAIL_GID)).unwrap();
    if path.is_dir() {
        for entry in fs::read_dir(path).unwrap() {
            chown_tree(&entry.unwrap().path());
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_dovecot(dir: &Path, data: &Path, users: &Path) -> Dovecot {
    let port = free_port();
    let log = dir.join("dovecot.log");
    let conf = dir.join("dovecot.conf");
    for sub in ["run", "state", "home"] {
        fs::create_dir_all(dir.join(sub)).unwrap();
    }
    chown_tree(&dir.join("home"));
    let d = dir.display();
    fs::write(
        &conf,
        format!(
            "protocols = imap\n\
             listen = 127.0.0.1\n\
             base_dir = {d}/run\n\
             state_dir = {d}/state\n\
             log_path = {log}\n\
             ssl = no\n\
             disable_plaintext_auth = no\n\
             auth_mechanisms = plain\n\
             first_valid_uid = 0\n\
             mail_location = maildir:{data}/%d/%n/Maildir\n\
             namespace inbox {{\n  inbox = yes\n  separator = /\n}}\n\
             passdb {{\n  driver = passwd-file\n  args = {users}\n}}\n\
             userdb {{\n  driver = static\n  \
             args = uid={MAIL_UID} gid={MAIL_GID} home={d}/home/%d/%n\n}}\n\
             service imap-login {{\n  inet_listener imap {{\n    \
             address = 127.0.0.1\n    port = {port}\n  }}\n  \
             inet_listener imaps {{\n    port = 0\n  }}\n}}\n",
            log = log.display(),
            data = data.display(),
            users = users.display(),
        ),
    )
    .unwrap();

    let child = Command::new(DOVECOT)
        .arg("-F")
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start dovecot");
    let dovecot = Dovecot { child, log, port };

    let deadline = Instant::now() + START_TIMEOUT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "dovecot did not listen:\n{}",
            dovecot.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    dovecot
}

impl Dovecot {
    fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    fn client(&self, mode: &str, boxes: &[&str]) -> Vec<String> {
        let out = Command::new("python3")
            .arg("-c")
            .arg(CLIENT)
            .arg("127.0.0.1")
            .arg(self.port.to_string())
            .arg(USER)
            .arg(PASSWORD)
            .arg(mode)
            .args(boxes)
            .output()
            .expect("run python3");
        assert!(
            out.status.success(),
            "imaplib client failed: {}\ndovecot log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log_text()
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// `(folder, uid) -> (size, flags)` from the client's `msg` lines.
type Seen = BTreeMap<(String, u32), (u64, Vec<String>)>;

fn messages_from(lines: &[String]) -> Seen {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("msg "))
        .map(|l| {
            let mut parts = l.splitn(4, ' ');
            let folder = parts.next().unwrap().to_owned();
            let uid = parts.next().unwrap().parse().unwrap();
            let size = parts.next().unwrap().parse().unwrap();
            let mut flags: Vec<String> = parts
                .next()
                .unwrap_or("")
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            flags.sort();
            ((folder, uid), (size, flags))
        })
        .collect()
}

fn validity_from(lines: &[String], folder: &str) -> u32 {
    let prefix = format!("validity {folder} ");
    lines
        .iter()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no UIDVALIDITY for {folder} in {lines:?}"))
        .parse()
        .unwrap()
}

/// What mailhost-store sees, in the same shape.
fn messages_in_store(
    store: &Store,
    folders: &[&str],
) -> (Seen, BTreeMap<String, u32>) {
    let acct = store.account(USER).unwrap();
    let mut seen = Seen::new();
    let mut validity = BTreeMap::new();
    for &name in folders {
        let f = acct.open(name, OpenMode::ReadOnly).unwrap();
        validity.insert(name.to_owned(), f.uid_validity());
        for m in f.messages() {
            seen.insert((name.to_owned(), m.uid), (m.size, m.flags.clone()));
        }
    }
    (seen, validity)
}

#[test]
fn dovecot_reads_our_maildir_and_we_read_dovecots() {
    if !Path::new(DOVECOT).exists() {
        eprintln!(
            "SKIPPED dovecot interop: {DOVECOT} not found; install it with \
             `apt-get install -y dovecot-imapd`"
        );
        return;
    }

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Dovecot's unprivileged login processes must reach the base dir.
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    let data = dir.join("data");
    let users = dir.join("users");
    let hash = password::hash_password(PASSWORD).unwrap();
    fs::write(&users, format!("# mailhost users file\n{USER}:{hash}\n"))
        .unwrap();

    // mailhost writes: three deliveries, flags, a keyword, an append, a
    // non-ASCII folder.
    let store = Store::open(&data).unwrap();
    let acct = store.account(USER).unwrap();
    for i in 1..=3 {
        let mut d = store
            .begin_delivery_to(
                "bob@example.net",
                vec![(USER.into(), Ok(vec![USER.into()]))],
                1 << 20,
            )
            .unwrap();
        d.write(format!("Subject: message {i}\r\n\r\nbody {i}\r\n").as_bytes())
            .unwrap();
        assert!(d.commit().unwrap()[0].1.is_ok());
    }
    let mut inbox = acct.open("INBOX", OpenMode::ReadWrite).unwrap();
    inbox
        .set_flags(&[1], FlagOperation::Add, &["\\Seen".into()])
        .unwrap();
    inbox
        .set_flags(
            &[2],
            FlagOperation::Add,
            &["\\Flagged".into(), "$Junk".into()],
        )
        .unwrap();
    drop(inbox);
    let mut ap = acct
        .begin_append("Sent", &["\\Seen".into()], None, 1 << 20)
        .unwrap();
    ap.write(b"Subject: sent\r\n\r\nsent body\r\n").unwrap();
    ap.commit().unwrap();
    acct.create_folder("Entwürfe").unwrap();

    let (ours, our_validity) = messages_in_store(&store, &["INBOX", "Sent"]);
    assert_eq!(ours.len(), 4, "three delivered, one appended");
    chown_tree(&data);
    let dovecot = start_dovecot(dir, &data, &users);
    chown_tree(&dir.join("home"));

    // Dovecot sees our UIDs, UIDVALIDITY, flags, sizes and folders.
    let lines = dovecot.client("dump", &["INBOX", "Sent"]);
    assert_eq!(messages_from(&lines), ours, "dovecot view of our maildir");
    for (folder, v) in &our_validity {
        assert_eq!(
            validity_from(&lines, folder),
            *v,
            "UIDVALIDITY of {folder}"
        );
    }
    let listed = |name: &str| {
        lines
            .iter()
            .any(|l| l.starts_with("list ") && l.ends_with(name))
    };
    assert!(
        listed("\"Entw&APw-rfe\"") || listed(" Entw&APw-rfe"),
        "{lines:?}"
    );
    let lsub = |name: &str| {
        lines
            .iter()
            .any(|l| l.starts_with("lsub ") && l.ends_with(name))
    };
    assert!(
        lsub("Sent") && lsub("INBOX"),
        "subscriptions read: {lines:?}"
    );

    // Dovecot writes: an append, flag changes, an expunge, a folder.
    let lines = dovecot.client("write", &[]);
    let appended: u32 = lines
        .iter()
        .find_map(|l| l.strip_prefix("append [APPENDUID "))
        .and_then(|l| l.split_whitespace().nth(1))
        .map(|uid| uid.trim_end_matches(']'))
        .expect("APPENDUID in reply")
        .parse()
        .unwrap();
    assert_eq!(appended, 4, "next UID after ours");
    let after = dovecot.client("dump", &["INBOX", "Dovecot/Sub"]);
    drop(dovecot);

    // mailhost reads it back with the same UIDs and flags, from a fresh
    // process-like store so nothing is cached.
    let store = Store::open(&data).unwrap();
    let (ours, our_validity) =
        messages_in_store(&store, &["INBOX", "Dovecot/Sub"]);
    assert_eq!(ours.len(), 4, "three in INBOX, one in Dovecot/Sub");
    assert_eq!(ours, messages_from(&after), "our view of dovecot's changes");
    assert_eq!(our_validity["INBOX"], validity_from(&after, "INBOX"));

    let acct = store.account(USER).unwrap();
    let mut inbox = acct.open("INBOX", OpenMode::ReadWrite).unwrap();
    let uids: Vec<u32> = inbox.messages().iter().map(|m| m.uid).collect();
    assert_eq!(uids, [1, 3, 4]);
    assert_eq!(inbox.messages()[0].flags, ["$Junk", "\\Seen"]);
    assert_eq!(inbox.messages()[2].flags, ["$Custom", "\\Flagged"]);
    let text = inbox.read(4, 0, 1000).unwrap();
    assert_eq!(text, b"Subject: from dovecot\r\n\r\nhello\r\n");
    assert!(
        acct.list_folders()
            .unwrap()
            .iter()
            .any(|f| f.name == "Dovecot/Sub")
    );
}
