//! See main.rs for what this module covers.
//!
//! Every test starts the real host with the IMAP plugin on loopback and
//! drives it with a real client: Python's imaplib, curl, mbsync,
//! offlineimap3, or raw transcripts over a socket. Mail goes in through
//! IMAP APPEND or as Maildir files written straight into
//! `<data>/example.org/alice/Maildir/new/`, the way an MDA delivers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mailhost_tests::{Host, corpus, mailhost, plugin, python};

const ALICE: &str = "alice@example.org";
const PASSWORD: &str = "secret";

/// How long a test waits for one server reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

/// IDLE must report a delivery within this long.
const IDLE_WAKE_LIMIT: Duration = Duration::from_secs(1);

/// The IMAP listener's config; `extra` goes into its `[listener]` table.
fn config(extra: &str) -> String {
    format!(
        r#"
data-dir = "{{dir}}/data"

[accounts]
users-file = "{{dir}}/users"
domains = ["example.org"]

[[listener]]
name = "imap"
address = "127.0.0.1:0"
protocol = "imap"
role = "mailbox"
plugin = "{plugin}"
tls = "none"
{extra}

[listener.settings]
hostname = "imap.example.org"
"#,
        plugin = plugin("imap").display(),
    )
}

/// Start a host with alice created.
fn start(extra: &str) -> Host {
    let dir = tempfile::tempdir().unwrap();
    let config = config(extra);
    let path = dir.path().join("mailhost.toml");
    let text = config.replace("{dir}", dir.path().to_str().unwrap());
    std::fs::write(&path, text).unwrap();
    std::fs::write(dir.path().join("users"), "").unwrap();
    let input = format!("{PASSWORD}\n");
    let out = mailhost(
        &["user", "add", "--config", path.to_str().unwrap(), ALICE],
        input.as_bytes(),
    );
    assert!(out.status.success(), "user add: {}", String::from_utf8_lossy(&out.stderr));
    Host::start_in(dir, &config)
}

/// Alice's Maildir under the host's data directory.
fn maildir(host: &Host) -> PathBuf {
    host.dir().join("data/example.org/alice/Maildir")
}

/// Deliver `message` into alice's INBOX the way an MDA does: write to
/// `tmp/`, rename into `new/`.
fn deliver(host: &Host, message: &[u8]) {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let dir = maildir(host);
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let name = format!("{}.M{n}P{}.imaptest", 1_700_000_000 + n, std::process::id());
    std::fs::write(dir.join("tmp").join(&name), message).unwrap();
    std::fs::rename(dir.join("tmp").join(&name), dir.join("new").join(&name)).unwrap();
}

fn message(subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Bob <bob@example.net>\r\nTo: alice@example.org\r\n\
         Subject: {subject}\r\nDate: Sat, 14 Mar 2026 13:08:53 +0100\r\n\
         Message-ID: <{subject}@example.net>\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

/// A raw IMAP connection for transcripts: reads responses with their
/// literals.
struct Wire {
    reader: BufReader<TcpStream>,
}

impl Wire {
    fn connect(addr: SocketAddr) -> Wire {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
        let mut wire = Wire { reader: BufReader::new(stream) };
        let greeting = wire.line();
        assert!(greeting.starts_with("* OK"), "greeting {greeting:?}");
        wire
    }

    fn login(addr: SocketAddr) -> Wire {
        let mut wire = Wire::connect(addr);
        let reply = wire.cmd(&format!("l1 LOGIN {ALICE} {PASSWORD}"));
        assert!(reply.last().unwrap().starts_with("l1 OK"), "{reply:?}");
        wire
    }

    fn send(&mut self, data: &[u8]) {
        self.reader.get_mut().write_all(data).unwrap();
    }

    /// One response line, with any literal it announces appended raw.
    fn line(&mut self) -> String {
        let mut out = Vec::new();
        loop {
            let mut line = Vec::new();
            let n = self.reader.read_until(b'\n', &mut line).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.extend_from_slice(&line);
            let text = String::from_utf8_lossy(&line).into_owned();
            let trimmed = text.trim_end();
            let literal = trimmed
                .strip_suffix('}')
                .and_then(|t| t.rsplit_once('{'))
                .and_then(|(_, n)| n.parse::<usize>().ok());
            match literal {
                Some(len) => {
                    let mut data = vec![0; len];
                    self.reader.read_exact(&mut data).unwrap();
                    out.extend_from_slice(&data);
                }
                None => break,
            }
        }
        let text = String::from_utf8_lossy(&out).into_owned();
        text.strip_suffix("\r\n").unwrap_or(&text).to_owned()
    }

    /// Send a command (tag first) and collect lines up to its tagged
    /// reply, which is the last element.
    fn cmd(&mut self, command: &str) -> Vec<String> {
        let tag = command.split(' ').next().unwrap().to_owned();
        self.send(format!("{command}\r\n").as_bytes());
        self.until(&tag)
    }

    fn until(&mut self, tag: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line();
            assert!(!line.is_empty() || !lines.is_empty() || true);
            let done = line.starts_with(&format!("{tag} "));
            let closed = line.is_empty();
            lines.push(line);
            if done || closed {
                return lines;
            }
        }
    }

    fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        matches!(self.reader.read_to_end(&mut rest), Ok(_)) && rest.is_empty()
    }
}

fn ok(lines: &[String]) -> &[String] {
    let last = lines.last().unwrap();
    let tag = last.split(' ').next().unwrap();
    assert!(last.starts_with(&format!("{tag} OK")), "not OK: {lines:#?}");
    lines
}

fn has(lines: &[String], needle: &str) -> bool {
    lines.iter().any(|l| l.contains(needle))
}

/// Python's imaplib through every command the plugin offers. The script
/// asserts each answer and prints `ALL OK` at the end.
const IMAPLIB_SCRIPT: &str = r#"
import imaplib, sys, base64, re
port = int(sys.argv[1])
M = imaplib.IMAP4("127.0.0.1", port)
caps = M.capabilities
for c in ("IMAP4REV1", "IMAP4REV2", "IDLE", "UIDPLUS", "MOVE", "LITERAL+",
          "NAMESPACE", "ID", "ENABLE", "UNSELECT", "CHILDREN", "SPECIAL-USE",
          "SASL-IR", "AUTH=PLAIN"):
    assert c in caps, (c, caps)

# A wrong password first: NO with AUTHENTICATIONFAILED, session goes on.
try:
    M.login("alice@example.org", "wrong")
    raise SystemExit("bad password accepted")
except imaplib.IMAP4.error as e:
    assert "AUTHENTICATIONFAILED" in str(e), e

# AUTHENTICATE PLAIN (imaplib sends the response after a continuation).
typ, _ = M.authenticate("PLAIN",
    lambda _: b"\0alice@example.org\0secret")
assert typ == "OK"
assert M._simple_command("NOOP")[0] == "OK"
typ, data = M.xatom("ID", '("name" "imaplib")')
assert typ == "OK"
assert M.untagged_responses.pop("ID")[0].startswith(b'("name" "mailhost"')
typ, data = M.namespace()
assert data == [b'(("" "/")) NIL NIL'], data
typ, data = M.capability()
assert b"AUTH=PLAIN" not in data[0], data

# LIST shows INBOX and the special-use folders the store made.
typ, data = M.list()
assert typ == "OK", data
text = b"\n".join(data).decode()
for name, attr in (("Sent", "\\Sent"), ("Drafts", "\\Drafts"),
                   ("Trash", "\\Trash"), ("Junk", "\\Junk"),
                   ("Archive", "\\Archive")):
    line = [l for l in text.splitlines() if l.endswith(" " + name)]
    assert line and attr in line[0], (name, text)
assert "INBOX" in text

# CREATE, hierarchy, CHILDREN, RENAME, DELETE, SUBSCRIBE, LSUB.
assert M.create("Work/Projects")[0] == "OK"
typ, data = M.list("", "Work*")
assert any(b"\\HasChildren" in l and l.endswith(b"Work") for l in data), data
assert M.create("Work")[0] == "NO"
assert M.rename("Work/Projects", "Work/Done")[0] == "OK"
assert M.subscribe("Work/Done")[0] == "OK"
typ, data = M.lsub("", "*")
assert any(l.endswith(b"Work/Done") for l in data), data
assert M.unsubscribe("Work/Done")[0] == "OK"
typ, data = M.lsub("", "Work/*")
assert data == [None], data
assert M.delete("Work/Done")[0] == "OK"
assert M.delete("Nope")[0] == "NO"
typ, data = M.list("", "%")
assert not any(l.endswith(b"Work/Done") for l in data)

# APPEND with flags and a date; APPENDUID from UIDPLUS.
msg = (b"From: Bob <bob@example.net>\r\nTo: alice@example.org\r\n"
       b"Subject: first\r\nDate: Sat, 14 Mar 2026 13:08:53 +0100\r\n"
       b"Message-ID: <first@example.net>\r\n\r\nHello there\r\nline two\r\n")
typ, data = M.append("INBOX", r"(\Flagged)", '"14-Mar-2026 13:08:53 +0100"', msg)
assert typ == "OK" and b"APPENDUID" in data[0], data
msg2 = msg.replace(b"first", b"second").replace(b"Hello", b"Goodbye")
assert M.append("INBOX", None, None, msg2)[0] == "OK"
assert M.append("NoSuchBox", None, None, msg)[1][0].startswith(b"[TRYCREATE]")

# STATUS without selecting.
typ, data = M.status("INBOX", "(MESSAGES UNSEEN UIDNEXT UIDVALIDITY RECENT)")
assert b"MESSAGES 2" in data[0] and b"UNSEEN 2" in data[0], data

# EXAMINE is read-only: a FETCH of BODY[] does not set \Seen.
typ, data = M.select("INBOX", readonly=True)
assert data == [b"2"], data
typ, data = M.fetch("1", "(BODY[])")
assert data[0][1] == msg, data
typ, data = M.fetch("1", "(FLAGS)")
assert b"\\Seen" not in data[0], data
assert M.store("1", "+FLAGS", r"\Deleted")[0] == "NO"
assert M.unselect()[0] == "OK"

# SELECT and the FETCH items.
typ, data = M.select("INBOX")
assert data == [b"2"], data
typ, data = M.fetch("1:*", "(UID FLAGS INTERNALDATE RFC822.SIZE)")
assert len(data) == 2, data
assert b'INTERNALDATE "14-Mar-2026 12:08:53 +0000"' in data[0], data
assert b"RFC822.SIZE %d" % len(msg) in data[0], data
assert b"\\Flagged" in data[0]
typ, data = M.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
assert data[0][1] == b"Subject: first\r\n\r\n", data
typ, data = M.fetch("1", "(BODY.PEEK[TEXT]<6.5>)")
assert data[0][0].endswith(b"BODY[TEXT]<6> {5}") and data[0][1] == b"there", data
typ, data = M.fetch("1", "(BODY.PEEK[HEADER.FIELDS.NOT (SUBJECT DATE FROM TO)])")
assert data[0][1] == b"Message-ID: <first@example.net>\r\n\r\n", data
typ, data = M.fetch("1", "(FLAGS)")
assert b"\\Seen" not in data[0], data
typ, data = M.fetch("1", "(ENVELOPE BODYSTRUCTURE)")
assert b'"first"' in data[0] and b'("Bob" NIL "bob" "example.net")' in data[0], data
assert b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 21 2' in data[0], data
typ, data = M.fetch("1", "(BODY[1])")
assert data[0][1] == b"Hello there\r\nline two\r\n", data
typ, data = M.fetch("1", "(FLAGS)")
assert b"\\Seen" in data[0], data
typ, data = M.fetch("2", "(RFC822.HEADER RFC822.TEXT)")
assert data[0][1].startswith(b"From: Bob"), data

# UID commands.
typ, data = M.uid("FETCH", "1:*", "(FLAGS)")
uids = [int(re.search(rb"UID (\d+)", d).group(1)) for d in data]
assert len(uids) == 2 and uids[0] < uids[1], data
typ, data = M.uid("SEARCH", None, "ALL")
assert [int(x) for x in data[0].split()] == uids, data

# STORE with +FLAGS, -FLAGS, .SILENT and keywords.
typ, data = M.store("2", "+FLAGS", r"(\Answered $Label1)")
assert b"\\Answered" in data[0] and b"$Label1" in data[0], data
typ, data = M.store("2", "-FLAGS.SILENT", r"(\Answered)")
assert data == [None], data
typ, data = M.store("2", "FLAGS", r"(\Draft)")
assert b"\\Draft" in data[0] and b"$Label1" not in data[0], data
try:
    M.store("2", "+FLAGS", r"(\Bogus)")
    raise SystemExit("unknown system flag accepted")
except imaplib.IMAP4.error as e:
    assert "BAD" in str(e) or "unknown" in str(e), e

# SEARCH with RFC 3501 keys.
def search(*keys):
    typ, data = M.search(None, *keys)
    assert typ == "OK", (keys, data)
    return [int(x) for x in data[0].split()]
assert search("ALL") == [1, 2]
assert search("SEEN") == [1]
assert search("UNSEEN") == [2]
assert search("FLAGGED") == [1]
assert search("DRAFT") == [2]
assert search("SUBJECT", "second") == [2]
assert search("FROM", "bob@example.net") == [1, 2]
assert search("TO", "alice") == [1, 2]
assert search("BODY", "goodbye") == [2]
assert search("TEXT", "first@example") == [1]
assert search("HEADER", "Message-ID", "second@") == [2]
assert search("NOT", "SEEN") == [2]
assert search("OR", "SEEN", "DRAFT") == [1, 2]
assert search("OR", "(SEEN FLAGGED)", "NOT", "ALL") == [1]
assert search("LARGER", "10", "SMALLER", "100000") == [1, 2]
assert search("SENTON", "14-Mar-2026") == [1, 2]
assert search("SENTBEFORE", "14-Mar-2026") == []
assert search("SINCE", "1-Jan-2000") == [1, 2]
assert search("ON", "14-Mar-2026") == [1]
assert search("2:*") == [2]
assert search("UID", str(uids[1])) == [2]
assert search("CHARSET", "UTF-8", "SUBJECT", "first") == [1]
assert M.search("KOI8-R", "ALL")[0] == "NO"
assert search("KEYWORD", "$Label1") == []
assert search("DELETED") == []

# COPY and MOVE with COPYUID; CHECK.
assert M.create("Archive/2026")[0] == "OK"
typ, data = M.copy("1:2", "Archive/2026")
assert typ == "OK" and b"COPYUID" in data[0], data
assert M.copy("1", "Missing")[1][0].startswith(b"[TRYCREATE]")
assert M.check()[0] == "OK"
typ, data = M.uid("MOVE", str(uids[1]), "Trash")
assert typ == "OK", data
assert M.untagged_responses.get("EXPUNGE") == [b"2"], M.untagged_responses
M.untagged_responses.clear()
typ, data = M.status("Trash", "(MESSAGES)")
assert b"MESSAGES 1" in data[0], data

# EXPUNGE, UID EXPUNGE and CLOSE.
typ, data = M.select("Archive/2026")
assert data == [b"2"], data
M.store("1:2", "+FLAGS.SILENT", r"\Deleted")
typ, data = M.uid("EXPUNGE", "1")
assert typ == "OK", data
typ, data = M.select("Archive/2026")
assert data == [b"1"], data
assert M.expunge()[0] == "OK"
typ, data = M.select("Archive/2026")
assert data == [b"0"], data
assert M.close()[0] == "OK"

# ENABLE IMAP4rev2 switches SEARCH to ESEARCH.
typ, data = M.enable("IMAP4rev2")
assert typ == "OK", data
M.select("INBOX")
typ, data = M._simple_command("SEARCH", "ALL")
assert typ == "OK"
es = M.untagged_responses.get("ESEARCH")
assert es and b"ALL 1" in es[0], (es, M.untagged_responses)

assert M.logout()[0] == "BYE"
print("ALL OK")
"#;

#[test]
fn imaplib_exercises_every_command() {
    let host = start("");
    let port = host.addr("imap").port().to_string();
    let out = python(IMAPLIB_SCRIPT, &[&port]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("ALL OK"),
        "imaplib failed:\n{stdout}\n{}\nhost log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        host.log()
    );
}
