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

/// The IMAP listener's config: `top` goes before the listener, `extra`
/// into its `[listener]` table, `settings` into its settings.
fn config(top: &str, extra: &str, settings: &str) -> String {
    format!(
        r#"
data-dir = "{{dir}}/data"
{top}

[accounts]
users-file = "{{dir}}/users"
domains = ["example.org"]

[[listener]]
name = "imap"
address = "127.0.0.1:0"
protocol = "imap"
role = "mailbox"
plugin = "{plugin}"
{extra}

[listener.settings]
hostname = "imap.example.org"
{settings}
"#,
        plugin = plugin("imap").display(),
    )
}

/// Start a host with alice created; `extra` goes into the listener.
fn start(extra: &str) -> Host {
    start_with("", &format!("tls = \"none\"\n{extra}"), "")
}

fn start_with(top: &str, extra: &str, settings: &str) -> Host {
    let dir = tempfile::tempdir().unwrap();
    let config = config(top, extra, settings);
    let path = dir.path().join("mailhost.toml");
    let text = config.replace("{dir}", dir.path().to_str().unwrap());
    std::fs::write(&path, text).unwrap();
    std::fs::write(dir.path().join("users"), "").unwrap();
    let path = path.to_str().unwrap();
    if top.contains("[tls]") {
        let out = mailhost(&["self-signed-cert", "--config", path], b"");
        assert!(
            out.status.success(),
            "cert: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let input = format!("{PASSWORD}\n");
    let out =
        mailhost(&["user", "add", "--config", path, ALICE], input.as_bytes());
    assert!(
        out.status.success(),
        "user add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let host = Host::start_in(dir, &config);

    // The first login makes the account's Maildir with its special-use
    // folders; deliveries written straight to disk come after it. Where
    // plaintext logins are refused this login fails, and that is fine.
    if !top.contains("[tls]") {
        let mut c = Wire::connect(host.addr("imap"));
        c.cmd(&format!("li LOGIN {ALICE} {PASSWORD}"));
        c.cmd("lo LOGOUT");
    }
    host
}

/// Alice's Maildir under the host's data directory.
fn maildir(host: &Host) -> PathBuf {
    host.dir().join("data/example.org/alice/Maildir")
}

/// Deliver `message` into alice's INBOX the way an MDA does: write to
/// `tmp/`, rename into `new/`.
fn deliver(host: &Host, message: &[u8]) {
    static COUNTER: std::sync::atomic::AtomicU32 =
        std::sync::atomic::AtomicU32::new(0);
    let dir = maildir(host);
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let name =
        format!("{}.M{n}P{}.imaptest", 1_700_000_000 + n, std::process::id());
    std::fs::write(dir.join("tmp").join(&name), message).unwrap();
    std::fs::rename(dir.join("tmp").join(&name), dir.join("new").join(&name))
        .unwrap();
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
        let mut wire = Wire {
            reader: BufReader::new(stream),
        };
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

    /// One response line as bytes, with any literal it announces
    /// appended raw and the final CRLF removed.
    fn raw_line(&mut self) -> Vec<u8> {
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
        if out.ends_with(b"\r\n") {
            out.truncate(out.len() - 2);
        }
        out
    }

    /// One response line as text (invalid UTF-8 replaced).
    fn line(&mut self) -> String {
        String::from_utf8_lossy(&self.raw_line()).into_owned()
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
        self.reader.read_to_end(&mut rest).is_ok() && rest.is_empty()
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
typ, data = M.list('""', "Work*")
assert any(b"\\HasChildren" in l and l.endswith(b"Work") for l in data), data
assert M.create("Work")[0] == "NO"
assert M.rename("Work/Projects", "Work/Done")[0] == "OK"
assert M.subscribe("Work/Done")[0] == "OK"
typ, data = M.lsub('""', "*")
assert any(l.endswith(b"Work/Done") for l in data), data
assert M.unsubscribe("Work/Done")[0] == "OK"
typ, data = M.lsub('""', "Work/*")
assert data == [None], data
assert M.delete("Work/Done")[0] == "OK"
assert M.delete("Nope")[0] == "NO"
typ, data = M.list('""', "%")
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
assert b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 23 2' in data[0], data
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

# IDLE and DONE (imaplib has no helper for it in this Python).
tag = M._new_tag()
M.send(tag + b" IDLE\r\n")
assert M.readline().startswith(b"+ "), "no IDLE continuation"
M.send(b"DONE\r\n")
typ, data = M._command_complete("IDLE", tag)
assert typ == "OK", data

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

/// APPEND `data` to `mailbox` with a synchronising literal; a literal8
/// (RFC 3516) when it holds NUL bytes, which a plain literal may not.
fn append(wire: &mut Wire, mailbox: &str, data: &[u8]) -> Vec<String> {
    let binary = if data.contains(&0) { "~" } else { "" };
    let len = data.len();
    wire.send(format!("ap APPEND {mailbox} {binary}{{{len}}}\r\n").as_bytes());
    let cont = wire.line();
    assert!(cont.starts_with('+'), "no continuation: {cont:?}");
    wire.send(data);
    wire.send(b"\r\n");
    ok(&wire.until("ap")).to_vec()
}

/// The sample session of RFC 3501 section 8, on three messages instead
/// of eighteen and with our account's name.
#[test]
fn rfc3501_sample_session_transcript() {
    let host = start("");
    for n in 1..=3 {
        deliver(&host, &message(&format!("m{n}"), "body"));
    }
    let mut c = Wire::connect(host.addr("imap"));

    let r = c.cmd(&format!("a001 login {ALICE} {PASSWORD}"));
    assert!(r.last().unwrap().starts_with("a001 OK"), "{r:?}");

    let r = ok(&c.cmd("a002 select inbox")).to_vec();
    assert!(r.contains(&"* 3 EXISTS".to_owned()), "{r:?}");
    assert!(r.contains(
        &"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)".to_owned()
    ));
    assert!(r.contains(&"* 3 RECENT".to_owned()), "{r:?}");
    assert!(has(&r, "* OK [UNSEEN 1]") && has(&r, "* OK [UIDVALIDITY "));
    assert!(r.last().unwrap().starts_with("a002 OK [READ-WRITE]"));

    let r = ok(&c.cmd("a003 fetch 2 full")).to_vec();
    assert_eq!(r.len(), 2, "{r:?}");
    let f = &r[0];
    assert!(
        f.starts_with("* 2 FETCH (FLAGS (\\Recent) INTERNALDATE \""),
        "{f}"
    );
    assert!(f.contains("RFC822.SIZE "), "{f}");
    assert!(
        f.contains(
            "ENVELOPE (\"Sat, 14 Mar 2026 13:08:53 +0100\" \"m2\" \
             ((\"Bob\" NIL \"bob\" \"example.net\")) \
             ((\"Bob\" NIL \"bob\" \"example.net\")) \
             ((\"Bob\" NIL \"bob\" \"example.net\")) \
             ((NIL NIL \"alice\" \"example.org\")) NIL NIL NIL \
             \"<m2@example.net>\")"
        ),
        "{f}"
    );
    assert!(
        f.ends_with("BODY (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 6 1))"),
        "{f}"
    );

    let r = ok(&c.cmd("a004 fetch 2 body[header]")).to_vec();
    let header = String::from_utf8(message("m2", "body")).unwrap();
    let header = &header[..header.find("\r\n\r\n").unwrap() + 4];
    let expected = format!(
        "* 2 FETCH (BODY[HEADER] {{{}}}\r\n{header} FLAGS (\\Seen \\Recent))",
        header.len()
    );
    assert_eq!(r[0], expected);

    let r = ok(&c.cmd("a005 store 2 +flags \\deleted")).to_vec();
    assert_eq!(r[0], "* 2 FETCH (FLAGS (\\Deleted \\Seen \\Recent))");

    let r = c.cmd("a006 logout");
    assert_eq!(r[0], "* BYE Logging out");
    assert!(r[1].starts_with("a006 OK"));
    assert!(c.closed());
}

#[test]
fn pipelined_commands_and_literals() {
    let host = start("");
    let mut c = Wire::connect(host.addr("imap"));

    // A synchronising literal gets its continuation; LITERAL+ needs none.
    c.send(format!("p1 LOGIN {{{}}}\r\n", ALICE.len()).as_bytes());
    assert!(c.line().starts_with("+ "));
    c.send(
        format!("{ALICE} {{{}+}}\r\n{PASSWORD}\r\n", PASSWORD.len()).as_bytes(),
    );
    assert!(c.until("p1").last().unwrap().starts_with("p1 OK"));

    // Ten commands in one write come back in order.
    let mut batch = String::new();
    for n in 0..10 {
        batch.push_str(&format!("q{n} NOOP\r\n"));
    }
    batch.push_str("q10 SELECT INBOX\r\n");
    c.send(batch.as_bytes());
    for n in 0..10 {
        assert_eq!(c.line(), format!("q{n} OK NOOP completed"));
    }
    assert!(c.until("q10").last().unwrap().starts_with("q10 OK"));
}

#[test]
fn attack_huge_nonsync_literal_never_runs_as_commands() {
    let host = start("");
    let mut c = Wire::connect(host.addr("imap"));
    c.send(b"a1 LOGIN alice {999999999+}\r\nb1 CAPABILITY\r\nb2 LOGOUT\r\n");
    assert_eq!(c.line(), "a1 BAD [TOOBIG] Literal too large");
    assert!(c.line().starts_with("* BYE"));
    // Nothing of the literal's bytes ran: no reply to b1 or b2.
    assert!(c.closed());
}

#[test]
fn attack_huge_sync_literal_gets_bad_and_no_continuation() {
    let host = start("");
    let mut c = Wire::connect(host.addr("imap"));
    c.send(b"a1 LOGIN alice {99999999999999999999999}\r\n");
    assert_eq!(c.line(), "a1 BAD [TOOBIG] Literal too large");
    let r = c.cmd("a2 NOOP");
    assert_eq!(r, vec!["a2 OK NOOP completed".to_owned()]);
}

#[test]
fn attack_overlong_command_line_ends_session() {
    let host = start("");
    let mut c = Wire::connect(host.addr("imap"));
    let mut line = b"a1 NOOP ".to_vec();
    line.resize(400 * 1024, b'x');
    line.extend_from_slice(b"\r\na2 LOGOUT\r\n");
    c.send(&line);
    assert!(c.line().starts_with("a1 BAD"));
    assert!(c.line().starts_with("* BYE"));
}

#[test]
fn attack_commands_before_login_are_refused() {
    let host = start("");
    let mut c = Wire::connect(host.addr("imap"));
    for cmd in ["a1 SELECT INBOX", "a2 LIST \"\" *", "a3 FETCH 1 BODY[]"] {
        let r = c.cmd(cmd);
        assert!(r.last().unwrap().contains(" BAD "), "{r:?}");
    }
    let r = c.cmd("a4 APPEND INBOX {5}");
    assert!(r.last().unwrap().starts_with("a4 BAD"), "{r:?}");
    let r = c.cmd("a5 NOOP");
    assert_eq!(r, vec!["a5 OK NOOP completed".to_owned()]);
}

#[test]
fn logindisabled_where_plaintext_is_refused() {
    let host = start("plaintext-auth = \"never\"");
    let mut c = Wire::connect(host.addr("imap"));
    let r = ok(&c.cmd("c1 CAPABILITY")).to_vec();
    assert!(
        r[0].contains("LOGINDISABLED") && !r[0].contains("AUTH=PLAIN"),
        "{r:?}"
    );
    let r = c.cmd(&format!("c2 LOGIN {ALICE} {PASSWORD}"));
    assert!(
        r.last().unwrap().starts_with("c2 NO [PRIVACYREQUIRED]"),
        "{r:?}"
    );
}

#[test]
fn autologout_says_bye() {
    let host = start("idle-timeout = 2");
    let mut c = Wire::login(host.addr("imap"));
    let started = Instant::now();
    let line = c.line();
    assert!(line.starts_with("* BYE"), "{line:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(c.closed());
}

/// IDLE must also notice mail an outside program drops into the Maildir
/// (the host is not told of those) within its poll interval.
const IDLE_POLL_LIMIT: Duration = Duration::from_secs(4);

#[test]
fn idle_wakes_within_a_second_of_delivery() {
    let host = start("");
    let mut c = Wire::login(host.addr("imap"));
    ok(&c.cmd("s1 SELECT INBOX"));
    c.send(b"i1 IDLE\r\n");
    assert!(c.line().starts_with("+ "));

    // Give the session time to park in its wait, then deliver through
    // the host from a second session.
    std::thread::sleep(Duration::from_millis(300));
    let mut other = Wire::login(host.addr("imap"));
    let sent = Instant::now();
    append(&mut other, "INBOX", &message("wake", "up"));
    let line = c.line();
    let waited = sent.elapsed();
    assert_eq!(line, "* 1 EXISTS");
    assert!(waited <= IDLE_WAKE_LIMIT, "IDLE woke after {waited:?}");
    assert!(c.line().ends_with(" RECENT"));

    // A file dropped straight into new/ is seen by the IDLE poll.
    let sent = Instant::now();
    deliver(&host, &message("dropped", "in"));
    assert_eq!(c.line(), "* 2 EXISTS");
    let waited = sent.elapsed();
    assert!(
        waited <= IDLE_POLL_LIMIT,
        "IDLE saw the file after {waited:?}"
    );
    assert!(c.line().ends_with(" RECENT"));

    c.send(b"DONE\r\n");
    assert_eq!(c.line(), "i1 OK IDLE terminated");
    let r = ok(&c.cmd("f1 FETCH 1:2 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])"))
        .to_vec();
    assert!(
        r[0].contains("Subject: wake") && r[1].contains("Subject: dropped"),
        "{r:?}"
    );
}

/// Deliver `count` messages (`m1`, `m2`, ...) and open two sessions
/// that both selected INBOX (tags `a1` and `b1`).
fn two_sessions_on_inbox(host: &Host, count: usize) -> (Wire, Wire) {
    for n in 1..=count {
        deliver(host, &message(&format!("m{n}"), "body"));
    }
    let mut a = Wire::login(host.addr("imap"));
    let mut b = Wire::login(host.addr("imap"));
    ok(&a.cmd("a1 SELECT INBOX"));
    ok(&b.cmd("b1 SELECT INBOX"));
    (a, b)
}

#[test]
fn two_sessions_see_each_others_flags_and_expunges() {
    let host = start("");
    let (mut a, mut b) = two_sessions_on_inbox(&host, 3);

    ok(&a.cmd("a2 STORE 2 +FLAGS.SILENT (\\Flagged)"));
    let r = ok(&b.cmd("b2 NOOP")).to_vec();
    assert!(has(&r, "* 2 FETCH (UID ") && has(&r, "\\Flagged"), "{r:?}");

    ok(&b.cmd("b3 STORE 1 +FLAGS.SILENT (\\Deleted)"));
    let r = ok(&b.cmd("b4 EXPUNGE")).to_vec();
    assert_eq!(r[0], "* 1 EXPUNGE");

    // A FETCH may not carry the EXPUNGE (RFC 3501 7.4.1); NOOP does.
    let r = ok(&a.cmd("a3 FETCH 1:* (FLAGS)")).to_vec();
    assert!(!has(&r, "EXPUNGE"), "{r:?}");
    assert_eq!(r.len(), 4, "{r:?}");
    let r = ok(&a.cmd("a4 NOOP")).to_vec();
    assert_eq!(r[0], "* 1 EXPUNGE");
    let r = ok(&a.cmd("a5 FETCH 1:* (FLAGS)")).to_vec();
    assert_eq!(r.len(), 3, "{r:?}");
    assert!(r[0].contains("\\Flagged"), "{r:?}");

    // A new delivery shows at the next command of both.
    deliver(&host, &message("m4", "body"));
    let r = ok(&a.cmd("a6 NOOP")).to_vec();
    assert_eq!(r[0], "* 3 EXISTS");
    let r = ok(&b.cmd("b5 CHECK")).to_vec();
    assert_eq!(r[0], "* 3 EXISTS");
}

#[test]
fn fetch_with_a_64k_uid_set() {
    let host = start("");
    for n in 1..=5 {
        deliver(&host, &message(&format!("m{n}"), "body"));
    }
    let mut c = Wire::login(host.addr("imap"));
    ok(&c.cmd("s1 SELECT INBOX"));
    // Odd numbers up to far beyond the mailbox, then the real range.
    let mut set = String::new();
    let mut n = 100_001u32;
    while set.len() < 64 * 1024 {
        set.push_str(&format!("{n},"));
        n += 2;
    }
    set.push_str("1:5");
    let r = ok(&c.cmd(&format!("f1 UID FETCH {set} (FLAGS)"))).to_vec();
    assert_eq!(r.len(), 6, "{:?}", r.last());
    let r = ok(&c.cmd(&format!("f2 UID SEARCH UID {set}"))).to_vec();
    assert_eq!(r[0], "* SEARCH 1 2 3 4 5");
    // Sequence ranges in either order and `*`.
    let r = ok(&c.cmd("f3 SEARCH 4:2,*")).to_vec();
    assert_eq!(r[0], "* SEARCH 2 3 4 5");
    // Two keys are ANDed: 4:2 and * share nothing.
    let r = ok(&c.cmd("f4 SEARCH 4:2 *")).to_vec();
    assert_eq!(r[0], "* SEARCH");
}

#[test]
fn awkward_mailbox_names_round_trip() {
    let host = start("");
    let mut c = Wire::login(host.addr("imap"));
    // (wire form, name as the store holds it)
    let names = [
        ("\"R&-D\"", "R&-D", "R&D"),
        ("\"say \\\"hi\\\"\"", "\"say \\\"hi\\\"\"", "say \"hi\""),
        ("Entw&APw-rfe", "Entw&APw-rfe", "Entwürfe"),
        ("&ZeVnLIqe-/&U,BTFw-", "&ZeVnLIqe-/&U,BTFw-", "日本語/台北"),
    ];
    for (n, (arg, listed, utf8)) in names.iter().enumerate() {
        ok(&c.cmd(&format!("c{n} CREATE {arg}")));
        let r = ok(&c.cmd(&format!("l{n} LIST \"\" {arg}"))).to_vec();
        assert_eq!(r.len(), 2, "{r:?}");
        assert!(
            r[0].ends_with(&format!("\"/\" {listed}")),
            "{r:?} for {utf8}"
        );
        let r = ok(&c.cmd(&format!("s{n} SELECT {arg}"))).to_vec();
        assert!(r.contains(&"* 0 EXISTS".to_owned()), "{r:?}");
        append(&mut c, arg, &message("x", "y"));
        let r = ok(&c.cmd(&format!("t{n} STATUS {arg} (MESSAGES)"))).to_vec();
        assert!(r[0].ends_with("(MESSAGES 1)"), "{r:?}");
    }
    // Non-canonical modified UTF-7 ("a" spelt in base64) is refused.
    let r = c.cmd("bad CREATE &AGE-");
    assert!(r.last().unwrap().starts_with("bad BAD"), "{r:?}");
}

#[test]
fn big_message_is_streamed_whole() {
    let host = start("");
    let data = std::fs::read(corpus("016-big-text-2mb.eml")).unwrap();
    deliver(&host, &data);
    let mut c = Wire::login(host.addr("imap"));
    ok(&c.cmd("s1 SELECT INBOX"));
    let r = ok(&c.cmd("f1 FETCH 1 (RFC822.SIZE BODY.PEEK[])")).to_vec();
    let expected_header = format!(
        "* 1 FETCH (RFC822.SIZE {} BODY[] {{{}}}\r\n",
        data.len(),
        data.len()
    );
    assert!(r[0].starts_with(&expected_header), "{}", &r[0][..80]);
    assert_eq!(
        &r[0].as_bytes()
            [expected_header.len()..expected_header.len() + data.len()],
        &data[..]
    );
    let r = ok(&c.cmd("f2 FETCH 1 (BODY.PEEK[]<1000000.10>)")).to_vec();
    let tail = &data[1_000_000..1_000_010];
    assert!(
        r[0].as_bytes().ends_with(&[tail, b")"].concat()),
        "{:?}",
        r[0]
    );
}

/// Messages in a Maildir folder (`new/` and `cur/`).
fn count_maildir(dir: &Path) -> usize {
    ["new", "cur"]
        .iter()
        .filter_map(|sub| std::fs::read_dir(dir.join(sub)).ok())
        .map(|entries| entries.count())
        .sum()
}

/// The server's message count of a mailbox, by STATUS.
fn server_count(host: &Host, mailbox: &str) -> usize {
    let mut c = Wire::login(host.addr("imap"));
    let r = ok(&c.cmd(&format!("st STATUS {mailbox} (MESSAGES)"))).to_vec();
    let n = r[0]
        .rsplit("MESSAGES ")
        .next()
        .unwrap()
        .trim_end_matches(')');
    n.parse().unwrap()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

#[test]
fn curl_lists_fetches_searches_and_appends() {
    let host = start("");
    deliver(&host, &message("curly", "fetched by curl"));
    let port = host.addr("imap").port();
    let base = format!("imap://127.0.0.1:{port}");
    let user = format!("{ALICE}:{PASSWORD}");

    let list = run(Command::new("curl").args([
        "-sS",
        "-u",
        &user,
        &format!("{base}/"),
    ]));
    assert!(list.contains("INBOX") && list.contains("Sent"), "{list}");

    let body = run(Command::new("curl").args([
        "-sS",
        "-u",
        &user,
        &format!("{base}/INBOX;UID=1"),
    ]));
    assert!(
        body.contains("Subject: curly") && body.contains("fetched by curl"),
        "{body}"
    );

    let search = run(Command::new("curl").args([
        "-sS",
        "-u",
        &user,
        &format!("{base}/INBOX?SUBJECT%20curly"),
    ]));
    assert!(search.contains("SEARCH 1"), "{search}");

    let file = host.dir().join("upload.eml");
    std::fs::write(&file, message("uploaded", "by curl")).unwrap();
    run(Command::new("curl").args([
        "-sS",
        "-u",
        &user,
        "-T",
        file.to_str().unwrap(),
        &format!("{base}/Drafts"),
    ]));
    assert_eq!(server_count(&host, "Drafts"), 1);
}

#[test]
fn mbsync_syncs_both_ways_and_back_again() {
    let host = start("");
    for n in 1..=3 {
        deliver(&host, &message(&format!("server{n}"), "from the server"));
    }
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("local");
    std::fs::create_dir_all(&local).unwrap();
    let rc = work.path().join("mbsyncrc");
    std::fs::write(
        &rc,
        format!(
            "IMAPAccount test\nHost 127.0.0.1\nPort {port}\nUser {ALICE}\n\
             Pass {PASSWORD}\nSSLType None\nAuthMechs LOGIN\n\n\
             IMAPStore remote\nAccount test\n\n\
             MaildirStore local\nPath {dir}/\nInbox {dir}/INBOX\nSubFolders Verbatim\n\n\
             Channel sync\nFar :remote:\nNear :local:\nPatterns *\n\
             Create Both\nExpunge Both\nSyncState *\n",
            port = host.addr("imap").port(),
            dir = local.display(),
        ),
    )
    .unwrap();
    let mbsync = || {
        run(Command::new("mbsync").arg("-c").arg(&rc).arg("-a"));
    };

    // Down: the server's three messages and its folders arrive.
    mbsync();
    assert_eq!(count_maildir(&local.join("INBOX")), 3);
    assert!(local.join("Sent").is_dir() && local.join("Trash").is_dir());

    // Up: a message written locally reaches the server.
    let new = local.join("INBOX/new/1700000000.local.test");
    std::fs::write(&new, message("local1", "from the laptop")).unwrap();
    mbsync();
    assert_eq!(server_count(&host, "INBOX"), 4);

    // Back again: a server-side expunge reaches the local side; a new
    // server folder with mail appears there.
    let mut c = Wire::login(host.addr("imap"));
    ok(&c.cmd("s1 SELECT INBOX"));
    ok(&c.cmd("s2 STORE 1 +FLAGS.SILENT (\\Deleted)"));
    ok(&c.cmd("s3 EXPUNGE"));
    ok(&c.cmd("s4 CREATE Lists"));
    append(&mut c, "Lists", &message("list1", "x"));
    drop(c);
    mbsync();
    assert_eq!(count_maildir(&local.join("INBOX")), 3);
    assert_eq!(count_maildir(&local.join("Lists")), 1);

    // A second run with no changes moves nothing: nothing lost, nothing
    // doubled.
    mbsync();
    assert_eq!(count_maildir(&local.join("INBOX")), 3);
    assert_eq!(server_count(&host, "INBOX"), 3);
    assert_eq!(server_count(&host, "Lists"), 1);
}

#[test]
fn offlineimap_syncs_a_mailbox() {
    let host = start("");
    for n in 1..=2 {
        deliver(&host, &message(&format!("offline{n}"), "for offlineimap"));
    }
    let work = tempfile::tempdir().unwrap();
    let conf = work.path().join("offlineimaprc");
    std::fs::write(
        &conf,
        format!(
            "[general]\naccounts = test\nmetadata = {dir}/meta\n\n\
             [Account test]\nlocalrepository = local\nremoterepository = remote\n\n\
             [Repository local]\ntype = Maildir\nlocalfolders = {dir}/mail\n\n\
             [Repository remote]\ntype = IMAP\nremotehost = 127.0.0.1\n\
             remoteport = {port}\nremoteuser = {ALICE}\nremotepass = {PASSWORD}\n\
             ssl = no\nstarttls = no\n",
            dir = work.path().display(),
            port = host.addr("imap").port(),
        ),
    )
    .unwrap();
    let sync = || {
        run(Command::new("offlineimap")
            .arg("-c")
            .arg(&conf)
            .args(["-o", "-u", "basic"]));
    };
    sync();
    let inbox = work.path().join("mail/INBOX");
    assert_eq!(count_maildir(&inbox), 2);

    std::fs::write(
        inbox.join("new/1700000001.offline.test"),
        message("offline-up", "from offlineimap"),
    )
    .unwrap();
    sync();
    sync();
    assert_eq!(server_count(&host, "INBOX"), 3);
    assert_eq!(count_maildir(&inbox), 3);
}

/// The hand-checked BODYSTRUCTURE and ENVELOPE of every corpus message,
/// as (file name, BODYSTRUCTURE, ENVELOPE).
fn corpus_fixture() -> Vec<(String, String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/imap/tests/corpus-structure.txt");
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> =
        text.lines().filter(|l| !l.starts_with('#')).collect();
    lines
        .chunks(3)
        .map(|c| (c[0].to_owned(), c[1].to_owned(), c[2].to_owned()))
        .collect()
}

#[test]
fn bodystructure_and_envelope_of_every_corpus_message() {
    let host = start("");
    let fixture = corpus_fixture();
    assert_eq!(fixture.len(), 27);
    let mut c = Wire::login(host.addr("imap"));
    for (name, _, _) in &fixture {
        let data = std::fs::read(corpus(name)).unwrap();
        append(&mut c, "INBOX", &data);
    }
    ok(&c.cmd("s1 EXAMINE INBOX"));
    for (n, (name, structure, envelope)) in fixture.iter().enumerate() {
        let n = n + 1;
        let r = ok(&c.cmd(&format!("f{n} FETCH {n} (BODYSTRUCTURE ENVELOPE)")))
            .to_vec();
        let got = r[0].replace('\r', "\\r").replace('\n', "\\n");
        let want = format!(
            "* {n} FETCH (BODYSTRUCTURE {structure} ENVELOPE {envelope})"
        );
        assert_eq!(got, want, "{name}");
    }
    // BODY[section] of a nested message, and its MIME header.
    let seven =
        fixture.iter().position(|f| f.0.starts_with("007")).unwrap() + 1;
    let r = ok(&c.cmd(&format!(
        "g1 FETCH {seven} (BODY.PEEK[2.1] BODY.PEEK[2.HEADER.FIELDS (SUBJECT)] BODY.PEEK[2.MIME])"
    )))
    .to_vec();
    assert!(
        r[0].contains("BODY[2.1] {29}\r\nI am the forwarded message.\r\n"),
        "{}",
        r[0]
    );
    assert!(r[0].contains("Subject: the original\r\n\r\n"), "{}", r[0]);
    assert!(r[0].contains("BODY[2.MIME] {"), "{}", r[0]);
    assert!(
        r[0].contains("Content-Type: message/rfc822\r\n"),
        "{}",
        r[0]
    );
}

/// STARTTLS with imaplib, and the classic injection: a command sent in
/// the same packet as STARTTLS must be dropped, never run after the
/// handshake (CVE-2011-0411 and its IMAP cousins).
const STARTTLS_SCRIPT: &str = r#"
import imaplib, socket, ssl, sys
port = int(sys.argv[1])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE

M = imaplib.IMAP4("127.0.0.1", port)
assert "STARTTLS" in M.capabilities, M.capabilities
M.starttls(ssl_context=ctx)
assert "STARTTLS" not in M.capabilities, M.capabilities
M.login("alice@example.org", "secret")
assert M.select("INBOX")[0] == "OK"
M.logout()

s = socket.create_connection(("127.0.0.1", port))
f = s.makefile("rb")
f.readline()
s.sendall(b"a STARTTLS\r\nb LOGIN alice@example.org secret\r\n")
line = f.readline()
assert line.startswith(b"a OK"), line
t = ctx.wrap_socket(s)
t.sendall(b"c NOOP\r\n")
tf = t.makefile("rb")
line = tf.readline()
assert line.startswith(b"c OK"), line
t.sendall(b"d SELECT INBOX\r\n")
line = tf.readline()
assert line.startswith(b"d BAD"), line
print("ALL OK")
"#;

#[test]
fn starttls_upgrades_and_attack_injected_command_is_dropped() {
    let host = start_with(
        "[tls]\ncertificate = \"{dir}/tls.crt\"\nkey = \"{dir}/tls.key\"",
        "tls = \"starttls\"\nplaintext-auth = \"never\"",
        "starttls = \"true\"",
    );
    let port = host.addr("imap").port().to_string();
    let out = python(STARTTLS_SCRIPT, &[&port]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("ALL OK"),
        "{stdout}\n{}\nhost log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        host.log()
    );
}

#[test]
fn shutdown_says_bye_to_idle_and_busy_sessions() {
    let mut host = start("");
    let mut idle = Wire::login(host.addr("imap"));
    ok(&idle.cmd("s1 SELECT INBOX"));
    idle.send(b"i1 IDLE\r\n");
    assert!(idle.line().starts_with("+ "));
    let mut plain = Wire::login(host.addr("imap"));

    host.signal(libc::SIGTERM);
    let line = idle.line();
    assert!(line.starts_with("* BYE"), "{line:?}");
    let line = plain.line();
    assert!(line.starts_with("* BYE"), "{line:?}");
    assert!(host.wait_exit(Duration::from_secs(20)).is_some());
}

#[test]
fn binary_fetch_undoes_transfer_encodings() {
    let host = start("");
    let mut c = Wire::login(host.addr("imap"));
    for name in [
        "005-attachment-binary.eml",
        "016-big-text-2mb.eml",
        "018-base64-text.eml",
    ] {
        append(&mut c, "INBOX", &std::fs::read(corpus(name)).unwrap());
    }
    ok(&c.cmd("s1 EXAMINE INBOX"));

    // A binary attachment with NUL bytes comes back as a literal8.
    c.send(b"b1 FETCH 1 (BINARY.SIZE[2] BINARY.PEEK[2])\r\n");
    let line = c.raw_line();
    assert!(c.line().starts_with("b1 OK"));
    let head = b"* 1 FETCH (BINARY.SIZE[2] 10240 BINARY[2] ~{10240}\r\n";
    assert!(
        line.starts_with(head),
        "{:?}",
        String::from_utf8_lossy(&line)
    );
    let data = &line[head.len()..];
    assert_eq!(&data[..16], &(0u8..16).collect::<Vec<u8>>()[..]);
    assert_eq!(data.len(), 10240 + 1, "the data and the closing paren");

    // Quoted-printable, 2 MB of it.
    let r = ok(&c.cmd("b2 FETCH 2 (BINARY.SIZE[1])")).to_vec();
    assert_eq!(r[0], "* 2 FETCH (BINARY.SIZE[1] 2255000)");

    // Base64 text with a partial range.
    let r =
        ok(&c.cmd("b3 FETCH 3 (BINARY.PEEK[1]<0.26> BINARY.SIZE[1])")).to_vec();
    assert_eq!(
        r[0],
        "* 3 FETCH (BINARY[1]<0> {26}\r\nbase64 encoded text body\r\n BINARY.SIZE[1] 104)"
    );
}

/// IDLE on `c` with keepalives every 500 ms: two come, then DONE ends it.
fn assert_idle_keepalives(c: &mut Wire) {
    c.send(b"i1 IDLE\r\n");
    assert!(c.line().starts_with("+ "));
    let started = Instant::now();
    assert_eq!(c.line(), "* OK Still here");
    assert_eq!(c.line(), "* OK Still here");
    assert!(started.elapsed() < Duration::from_secs(5));
    c.send(b"DONE\r\n");
    assert_eq!(c.line(), "i1 OK IDLE terminated");
}

#[test]
fn idle_sends_keepalives() {
    let host = start_with("", "tls = \"none\"", "idle-keepalive-ms = 500");
    let mut c = Wire::login(host.addr("imap"));
    ok(&c.cmd("s1 SELECT INBOX"));
    assert_idle_keepalives(&mut c);
}

#[test]
fn sasl_ir_enable_id_status_and_special_use_transcript() {
    let host = start("");
    let mut c = Wire::connect(host.addr("imap"));

    // AUTHENTICATE PLAIN: a cancelled exchange, a wrong authzid, then
    // SASL-IR (the response on the command line).
    c.send(b"a1 AUTHENTICATE PLAIN\r\n");
    assert_eq!(c.line(), "+ ");
    c.send(b"*\r\n");
    assert_eq!(c.line(), "a1 BAD Authentication cancelled");
    let other = base64(b"bob@example.org\0alice@example.org\0secret");
    let r = c.cmd(&format!("a2 AUTHENTICATE PLAIN {other}"));
    assert!(r[0].starts_with("a2 NO [AUTHORIZATIONFAILED]"), "{r:?}");
    let mine = base64(b"\0alice@example.org\0secret");
    let r = c.cmd(&format!("a3 AUTHENTICATE PLAIN {mine}"));
    assert!(
        r[0].starts_with("a3 OK [CAPABILITY IMAP4rev1 IMAP4rev2"),
        "{r:?}"
    );

    let r = ok(&c.cmd("b1 ID (\"name\" \"test\" \"version\" NIL)")).to_vec();
    assert!(r[0].starts_with("* ID (\"name\" \"mailhost\""), "{r:?}");

    let r = ok(&c.cmd("b2 LIST (SPECIAL-USE) \"\" *")).to_vec();
    assert_eq!(r.len(), 6, "five special-use folders: {r:?}");
    assert!(!has(&r, "INBOX"));

    append(&mut c, "INBOX", &message("s", "twelve bytes"));
    let r =
        ok(&c.cmd("b3 STATUS INBOX (MESSAGES SIZE UIDNEXT UNSEEN)")).to_vec();
    let size = message("s", "twelve bytes").len();
    assert_eq!(
        r[0],
        format!("* STATUS INBOX (MESSAGES 1 SIZE {size} UIDNEXT 2 UNSEEN 1)")
    );
    let r = c.cmd("b4 STATUS INBOX (BOGUS)");
    assert!(r[0].starts_with("b4 BAD"), "{r:?}");

    // Under IMAP4rev2, names go out in UTF-8 and SEARCH answers ESEARCH.
    ok(&c.cmd("b5 CREATE Entw&APw-rfe"));
    let r = ok(&c.cmd("b6 ENABLE IMAP4rev2")).to_vec();
    assert_eq!(r[0], "* ENABLED IMAP4rev2");
    let r = ok(&c.cmd("b7 LIST \"\" Entw*")).to_vec();
    assert!(r[0].ends_with("\"/\" {9}\r\nEntwürfe"), "{r:?}");
    let r = ok(&c.cmd("b8 SELECT INBOX")).to_vec();
    assert!(!has(&r, " RECENT"), "IMAP4rev2 has no RECENT: {r:?}");
    let r = ok(&c.cmd("b10 FETCH 1 FLAGS")).to_vec();
    assert_eq!(r[0], "* 1 FETCH (FLAGS ())");
    let r = ok(&c.cmd("b9 UID SEARCH RETURN (MIN MAX COUNT) ALL")).to_vec();
    assert_eq!(r[0], "* ESEARCH (TAG \"b9\") UID MIN 1 MAX 1 COUNT 1");

    // CLOSE expunges silently; UNSELECT does not expunge.
    ok(&c.cmd("c1 STORE 1 +FLAGS.SILENT (\\Deleted)"));
    let r = ok(&c.cmd("c2 UNSELECT")).to_vec();
    assert_eq!(r.len(), 1);
    ok(&c.cmd("c3 SELECT INBOX"));
    let r = ok(&c.cmd("c4 CLOSE")).to_vec();
    assert_eq!(r.len(), 1, "no EXPUNGE after CLOSE: {r:?}");
    let r = ok(&c.cmd("c5 STATUS INBOX (MESSAGES)")).to_vec();
    assert!(r[0].ends_with("(MESSAGES 0)"), "{r:?}");
    let r = c.cmd("c6 FETCH 1 FLAGS");
    assert!(r[0].starts_with("c6 BAD"), "{r:?}");
}

#[test]
fn attack_bad_command_flood_is_cut_off() {
    let host = start("");
    let mut c = Wire::connect(host.addr("imap"));
    let mut flood = String::new();
    for n in 0..50 {
        flood.push_str(&format!("x{n} BOGUS\r\n"));
    }
    c.send(flood.as_bytes());
    let mut bads = 0;
    loop {
        let line = c.line();
        if line.starts_with("* BYE") {
            break;
        }
        assert!(line.contains(" BAD "), "{line:?}");
        bads += 1;
    }
    assert!(bads < 50, "the session went on after {bads} bad commands");
}

/// Base64 for SASL, written out so the test does not lean on the code
/// under test.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8] =
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn search_body_sees_through_transfer_encodings() {
    let host = start("");
    let mut c = Wire::login(host.addr("imap"));
    for name in [
        "016-big-text-2mb.eml",
        "018-base64-text.eml",
        "001-plain-ascii.eml",
    ] {
        append(&mut c, "INBOX", &std::fs::read(corpus(name)).unwrap());
    }
    ok(&c.cmd("s1 EXAMINE INBOX"));
    // Only in the decoded base64 of 018.
    let r = ok(&c.cmd("f1 SEARCH BODY \"ENCODED TEXT body\"")).to_vec();
    assert_eq!(r[0], "* SEARCH 2");
    // 016 spells a trailing space `=20`: only the decoded text has a
    // space right before a line end. The needle goes as a literal.
    let needle = b"dog. \r\nThe";
    c.send(format!("f2 SEARCH BODY {{{}}}\r\n", needle.len()).as_bytes());
    assert!(c.line().starts_with('+'));
    c.send(needle);
    c.send(b"\r\n");
    let r = ok(&c.until("f2")).to_vec();
    assert_eq!(r[0], "* SEARCH 1");
    let r =
        ok(&c.cmd("f3 SEARCH TEXT \"corpus-000@\" NOT BODY \"corpus-000\""))
            .to_vec();
    assert_eq!(r[0], "* SEARCH 3");
}

/// The capability line of a fresh session.
fn capabilities(c: &mut Wire) -> String {
    let r = ok(&c.cmd("cap CAPABILITY")).to_vec();
    r[0].clone()
}

#[test]
fn literal_plus_by_default_literal_minus_on_request() {
    let host = start("");
    let mut c = Wire::connect(host.addr("imap"));
    let caps = capabilities(&mut c);
    assert!(caps.contains(" LITERAL+") && !caps.contains("LITERAL-"));
    // Under LITERAL+ a non-synchronising literal over 4096 bytes is fine.
    let id = "v".repeat(5000);
    c.send(format!("a1 ID (\"x\" {{5000+}}\r\n{id})\r\n").as_bytes());
    ok(&c.until("a1"));

    // RFC 7888: a server offers LITERAL+ or LITERAL-, not both.
    let host = start_with("", "tls = \"none\"", "literal-minus = \"true\"");
    let mut c = Wire::connect(host.addr("imap"));
    let caps = capabilities(&mut c);
    assert!(caps.contains(" LITERAL-") && !caps.contains("LITERAL+"));
    let id = "v".repeat(4096);
    c.send(format!("a2 ID (\"x\" {{4096+}}\r\n{id})\r\n").as_bytes());
    ok(&c.until("a2"));
    // Larger ones still work as synchronising literals.
    c.send(b"a3 ID (\"x\" {5000}\r\n");
    assert!(c.line().starts_with("+ "));
    c.send(format!("{})\r\n", "v".repeat(5000)).as_bytes());
    ok(&c.until("a3"));
}

#[test]
fn attack_literal_minus_nonsync_over_4096_gets_toobig_and_never_runs() {
    let host = start_with("", "tls = \"none\"", "literal-minus = \"true\"");
    let mut c = Wire::login(host.addr("imap"));

    // 4097 bytes of literal made of command lines, then a second
    // non-synchronising literal on the same command: none of it may run.
    let mut literal = b"x1 CREATE Injected\r\n".repeat(204);
    literal.extend_from_slice(b"abcdefghijklmnopq");
    assert_eq!(literal.len(), 4097);
    c.send(b"a1 ID (\"x\" {4097+}\r\n");
    c.send(&literal);
    c.send(b" \"y\" {20+}\r\nx2 CREATE Injected\r\n)\r\n");
    assert_eq!(c.line(), "a1 BAD [TOOBIG] Literal too large");
    let r = ok(&c.cmd("a2 LIST \"\" Injected")).to_vec();
    assert_eq!(r.len(), 1, "a command in the literal ran: {r:?}");

    // The same for the message of an APPEND.
    let mut message = b"x3 CREATE Injected\r\n".repeat(250);
    message.truncate(4100);
    c.send(b"a3 APPEND INBOX {4100+}\r\n");
    c.send(&message);
    c.send(b"\r\n");
    let r = c.until("a3");
    assert!(r[0].starts_with("a3 BAD [TOOBIG]"), "{r:?}");
    let r = ok(&c.cmd("a4 STATUS INBOX (MESSAGES)")).to_vec();
    assert_eq!(r[0], "* STATUS INBOX (MESSAGES 0)");
    let r = ok(&c.cmd("a5 LIST \"\" Injected")).to_vec();
    assert_eq!(r.len(), 1, "a command in the message ran: {r:?}");
}

#[test]
fn sequence_numbers_past_the_end_get_bad_uid_sets_are_empty() {
    let host = start("");
    let mut c = Wire::login(host.addr("imap"));
    // A bare `*` in an empty mailbox names no message (RFC 9051 9).
    ok(&c.cmd("e1 SELECT INBOX"));
    let r = c.cmd("e2 FETCH * FLAGS");
    assert!(r[0].starts_with("e2 BAD"), "{r:?}");
    let r = ok(&c.cmd("e3 FETCH 1:* FLAGS")).to_vec();
    assert_eq!(r.len(), 1, "{r:?}");
    for n in 1..=3 {
        append(&mut c, "INBOX", &message(&format!("m{n}"), "body"));
    }
    ok(&c.cmd("s1 SELECT INBOX"));

    // A message number past the count is BAD in every command.
    for (tag, command) in [
        ("b1", "FETCH 4 FLAGS"),
        ("b2", "FETCH 2:5 FLAGS"),
        ("b3", "FETCH 1,7 FLAGS"),
        ("b4", "STORE 9 +FLAGS (\\Seen)"),
        ("b5", "COPY 4 Trash"),
        ("b6", "MOVE 4:2 Trash"),
        ("b7", "SEARCH 5"),
        ("b8", "SEARCH OR SEEN NOT 1:10"),
        ("b9", "UID SEARCH 4"),
    ] {
        let r = c.cmd(&format!("{tag} {command}"));
        assert!(
            r.last().unwrap().starts_with(&format!("{tag} BAD")),
            "{command}: {r:?}"
        );
        assert_eq!(r.len(), 1, "{command} still did something: {r:?}");
    }
    let r = ok(&c.cmd("b10 STATUS Trash (MESSAGES)")).to_vec();
    assert_eq!(r[0], "* STATUS Trash (MESSAGES 0)");

    // Ranges to `*` end at the last message, in either order.
    let r = ok(&c.cmd("r1 FETCH 2:* UID")).to_vec();
    assert_eq!(r.len(), 3, "{r:?}");
    let r = ok(&c.cmd("r2 FETCH 9:* UID")).to_vec();
    assert_eq!(r[0], "* 3 FETCH (UID 3)");
    let r = ok(&c.cmd("r3 FETCH *:* UID")).to_vec();
    assert_eq!(r[0], "* 3 FETCH (UID 3)");
    let r = ok(&c.cmd("r4 SEARCH 2:*")).to_vec();
    assert_eq!(r[0], "* SEARCH 2 3");

    // UID sets past the end are simply empty.
    for (tag, command) in [
        ("u1", "UID FETCH 4:100 FLAGS"),
        ("u2", "UID FETCH 4294967295 FLAGS"),
        ("u3", "UID STORE 99 +FLAGS (\\Seen)"),
        ("u4", "UID COPY 99 Trash"),
        ("u5", "UID MOVE 99 Trash"),
        ("u6", "UID EXPUNGE 99"),
    ] {
        let r = ok(&c.cmd(&format!("{tag} {command}"))).to_vec();
        assert_eq!(r.len(), 1, "{command}: {r:?}");
    }
    let r = ok(&c.cmd("u7 UID SEARCH UID 4:4294967295")).to_vec();
    assert_eq!(r[0], "* SEARCH");
    let r = ok(&c.cmd("u8 UID FETCH 3:4294967295 UID")).to_vec();
    assert_eq!(r[0], "* 3 FETCH (UID 3)");
    // 2^32 and 0 are no UIDs at all.
    for (tag, set) in [("u9", "4294967296"), ("u10", "0"), ("u11", "1:0")] {
        let r = c.cmd(&format!("{tag} UID FETCH {set} UID"));
        assert!(r[0].starts_with(&format!("{tag} BAD")), "{r:?}");
    }
}

#[test]
fn search_charset_utf8_and_us_ascii_work_others_get_badcharset() {
    let host = start("");
    let mut c = Wire::login(host.addr("imap"));
    let cafe = "From: a@example.net\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n\
                \r\nd\u{e9}j\u{e0} vu\r\n";
    append(&mut c, "INBOX", cafe.as_bytes());
    append(&mut c, "INBOX", &message("plain", "nothing"));
    ok(&c.cmd("s1 SELECT INBOX"));

    let r = ok(&c.cmd("c1 SEARCH CHARSET UTF-8 ALL")).to_vec();
    assert_eq!(r[0], "* SEARCH 1 2");
    let r = ok(&c.cmd("c2 SEARCH CHARSET us-ascii SUBJECT plain")).to_vec();
    assert_eq!(r[0], "* SEARCH 2");
    // A UTF-8 needle, sent as a literal, matches the decoded subject
    // and the 8-bit body.
    for (tag, key, needle) in [
        ("c3", "SUBJECT", "caf\u{e9}"),
        ("c4", "BODY", "d\u{e9}j\u{e0}"),
    ] {
        let len = needle.len();
        c.send(
            format!("{tag} SEARCH CHARSET UTF-8 {key} {{{len}}}\r\n")
                .as_bytes(),
        );
        assert!(c.line().starts_with("+ "));
        c.send(format!("{needle}\r\n").as_bytes());
        let r = ok(&c.until(tag)).to_vec();
        assert_eq!(r[0], "* SEARCH 1", "{key}");
    }
    for (tag, charset) in [("c5", "KOI8-R"), ("c6", "\"ISO-8859-1\"")] {
        let r = c.cmd(&format!("{tag} SEARCH CHARSET {charset} ALL"));
        assert_eq!(
            r,
            vec![format!(
                "{tag} NO [BADCHARSET (UTF-8 US-ASCII)] Unknown charset"
            )]
        );
    }
    ok(&c.cmd("c7 NOOP"));
}

#[test]
fn idle_without_a_selected_mailbox_sends_keepalives() {
    let host = start_with("", "tls = \"none\"", "idle-keepalive-ms = 500");
    let mut c = Wire::login(host.addr("imap"));
    assert_idle_keepalives(&mut c);
}

#[test]
fn idle_outlives_the_autologout_which_applies_outside_it() {
    let host = start_with(
        "",
        "tls = \"none\"\nidle-timeout = 2",
        "idle-keepalive-ms = 500",
    );
    let mut c = Wire::login(host.addr("imap"));
    ok(&c.cmd("s1 SELECT INBOX"));
    c.send(b"i1 IDLE\r\n");
    assert!(c.line().starts_with("+ "));
    // Twice the idle timeout in IDLE, and the session is still there.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        assert_eq!(c.line(), "* OK Still here");
    }
    c.send(b"DONE\r\n");
    assert_eq!(c.line(), "i1 OK IDLE terminated");

    // Outside IDLE the autologout applies again.
    let line = c.line();
    assert!(line.starts_with("* BYE"), "{line:?}");
}

#[test]
fn enable_imap4rev2_changes_response_forms() {
    let host = start("");
    deliver(&host, &message("new", "body"));
    let mut c = Wire::login(host.addr("imap"));
    append(&mut c, "INBOX", &message("old", "body"));

    // IMAP4rev1 forms first.
    let r = ok(&c.cmd("a1 SELECT INBOX")).to_vec();
    assert!(has(&r, " RECENT") && has(&r, "[UNSEEN 1]"), "{r:?}");
    assert!(!has(&r, "* LIST"), "{r:?}");
    let r = ok(&c.cmd("a2 FETCH 1:* FLAGS")).to_vec();
    assert!(has(&r, "\\Recent"), "{r:?}");
    let r = ok(&c.cmd("a3 SEARCH ALL")).to_vec();
    assert_eq!(r[0], "* SEARCH 1 2");
    let r = c.cmd("a4 ENABLE IMAP4rev2");
    assert!(
        r[0].starts_with("a4 BAD"),
        "ENABLE in selected state: {r:?}"
    );
    ok(&c.cmd("a5 UNSELECT"));

    let r = ok(&c.cmd("b1 ENABLE IMAP4rev2")).to_vec();
    assert_eq!(r[0], "* ENABLED IMAP4rev2");
    // Enabled once, it is not reported again.
    let r = ok(&c.cmd("b2 ENABLE IMAP4rev2")).to_vec();
    assert_eq!(r[0], "* ENABLED");

    // RFC 9051: no RECENT, no UNSEEN code, a LIST response instead.
    let r = ok(&c.cmd("b3 SELECT inbox")).to_vec();
    assert!(!has(&r, "RECENT") && !has(&r, "UNSEEN"), "{r:?}");
    assert!(has(&r, "* 2 EXISTS") && has(&r, "[UIDNEXT 3]"), "{r:?}");
    assert!(has(&r, "* LIST (\\HasNoChildren) \"/\" INBOX"), "{r:?}");
    let r = ok(&c.cmd("b4 FETCH 1:* FLAGS")).to_vec();
    assert_eq!(r[..2], ["* 1 FETCH (FLAGS ())", "* 2 FETCH (FLAGS ())"]);
    // ESEARCH replaces SEARCH; ALL is left out when nothing matched.
    let r = ok(&c.cmd("b5 SEARCH ALL")).to_vec();
    assert_eq!(r[0], "* ESEARCH (TAG \"b5\") ALL 1:2");
    let r = ok(&c.cmd("b6 UID SEARCH DELETED")).to_vec();
    assert_eq!(r[0], "* ESEARCH (TAG \"b6\") UID");
    // STATUS DELETED (RFC 9051 6.3.11) of the selected mailbox and of
    // another one.
    ok(&c.cmd("b7 STORE 2 +FLAGS.SILENT (\\Deleted)"));
    let r = ok(&c.cmd("b8 STATUS INBOX (MESSAGES DELETED)")).to_vec();
    assert_eq!(r[0], "* STATUS INBOX (MESSAGES 2 DELETED 1)");
    ok(&c.cmd("b9 COPY 2 Trash"));
    let r = ok(&c.cmd("b10 STATUS Trash (DELETED)")).to_vec();
    assert_eq!(r[0], "* STATUS Trash (DELETED 1)");
    // A second SELECT closes the first with the CLOSED code.
    let r = ok(&c.cmd("b11 EXAMINE Trash")).to_vec();
    assert_eq!(r[0], "* OK [CLOSED] Previous mailbox closed");
    assert!(
        has(&r, "* LIST (\\HasNoChildren \\Trash) \"/\" Trash"),
        "{r:?}"
    );
}

#[test]
fn attack_append_with_nul_gets_bad_binary_and_bare_lf_are_taken() {
    let host = start("");
    let mut c = Wire::login(host.addr("imap"));

    // NUL is not allowed in a literal (RFC 3501 CHAR8): nothing stored.
    let nul = b"Subject: nul\r\n\r\na\0b\r\n";
    c.send(format!("a1 APPEND INBOX {{{}+}}\r\n", nul.len()).as_bytes());
    c.send(nul);
    c.send(b"\r\n");
    let r = c.until("a1");
    assert!(r[0].starts_with("a1 BAD"), "{r:?}");
    let r = ok(&c.cmd("a2 STATUS INBOX (MESSAGES)")).to_vec();
    assert_eq!(r[0], "* STATUS INBOX (MESSAGES 0)");

    // As a literal8 (RFC 3516 BINARY) it is taken whole.
    c.send(format!("a3 APPEND INBOX ~{{{}+}}\r\n", nul.len()).as_bytes());
    c.send(nul);
    c.send(b"\r\n");
    let r = ok(&c.until("a3")).to_vec();
    assert!(r[0].contains("[APPENDUID "), "{r:?}");

    // Bare LF line ends are stored with CRLF, and the size says so.
    let lf = b"Subject: lf\n\nline one\nline two\n";
    c.send(format!("a4 APPEND INBOX {{{}+}}\r\n", lf.len()).as_bytes());
    c.send(lf);
    c.send(b"\r\n");
    ok(&c.until("a4"));
    ok(&c.cmd("s1 SELECT INBOX"));
    c.send(b"f1 FETCH 2 (RFC822.SIZE BODY.PEEK[])\r\n");
    let reply = c.raw_line();
    let crlf = b"Subject: lf\r\n\r\nline one\r\nline two\r\n";
    let mut want = format!(
        "* 2 FETCH (RFC822.SIZE {} BODY[] {{{}}}\r\n",
        crlf.len(),
        crlf.len()
    )
    .into_bytes();
    want.extend_from_slice(crlf);
    want.push(b')');
    assert_eq!(
        String::from_utf8_lossy(&reply),
        String::from_utf8_lossy(&want)
    );
    ok(&c.until("f1"));
}

#[test]
fn attack_deep_nesting_in_search_gets_bad_and_session_goes_on() {
    let host = start("");
    let mut c = Wire::login(host.addr("imap"));
    ok(&c.cmd("s1 SELECT INBOX"));
    let parens = format!("{}ALL{}", "(".repeat(100), ")".repeat(100));
    let ors = format!("{}ALL{}", "OR ALL ".repeat(100), "");
    let nots = format!("{}ALL", "NOT ".repeat(1000));
    let wide = format!("{}ALL{}", "OR ".repeat(20_000), " ALL".repeat(20_000));
    for (tag, keys) in [("d1", parens), ("d2", ors), ("d3", nots), ("d4", wide)]
    {
        let r = c.cmd(&format!("{tag} SEARCH {keys}"));
        assert_eq!(r, vec![format!("{tag} BAD nested too deeply")]);
    }
    // Within the limit, nesting works.
    let fine = format!("{}ALL{}", "(".repeat(10), ")".repeat(10));
    ok(&c.cmd(&format!("d5 SEARCH NOT NOT {fine}")));
}

#[test]
fn attack_invalid_modified_utf7_names_get_bad() {
    let host = start("");
    let mut c = Wire::login(host.addr("imap"));
    for (tag, name) in [
        ("m1", "&AGE"),               // never shifted back
        ("m2", "&Jjo!"),              // not base64
        ("m3", "&AGEAQQ-"),           // ASCII hidden in base64
        ("m4", "&U,BTFw-&ZeVnLIqe-"), // two shifts in a row
        ("m5", "&2D0-"),              // a lone surrogate
        ("m6", "caf\u{e9}"),          // raw 8-bit outside IMAP4rev2
    ] {
        let r = c.cmd(&format!("{tag} CREATE \"{name}\""));
        assert!(r[0].starts_with(&format!("{tag} BAD")), "{name}: {r:?}");
    }
    let r = ok(&c.cmd("l1 LIST \"\" *")).to_vec();
    assert_eq!(r.len(), 7, "only INBOX and the special-use folders: {r:?}");
}

/// Folder size for the CPU-slice test: the bench's large folder.
const BIG_FOLDER: usize = 100_000;

/// SELECT, FETCH 1:* and SEARCH ALL of a 100,000-message folder under the
/// default one-second CPU slice. The store's host calls are long here
/// (numbering, rescans); only the plugin's own computing may count.
#[test]
fn select_fetch_search_of_100000_messages_fit_the_default_cpu_slice() {
    // The listener keeps the default CPU slice of one second.
    let host = start("");
    let cur = maildir(&host).join("cur");
    std::fs::create_dir_all(&cur).unwrap();
    let body = message("big", "tiny body");
    for n in 0..BIG_FOLDER {
        let seen = if n % 2 == 0 { "S" } else { "" };
        let name = format!("1700000000.M{n}P1.big,S={}:2,{seen}", body.len());
        std::fs::write(cur.join(name), &body).unwrap();
    }

    let mut c = Wire::login(host.addr("imap"));
    for round in 0..2 {
        let r = ok(&c.cmd(&format!("s{round} SELECT INBOX"))).to_vec();
        assert!(has(&r, &format!("* {BIG_FOLDER} EXISTS")), "{r:?}");
        let r = c.cmd(&format!("f{round} FETCH 1:* (UID FLAGS RFC822.SIZE)"));
        assert_eq!(r.len(), BIG_FOLDER + 1, "{:?}", &r[r.len() - 2..]);
        assert!(r.last().unwrap().starts_with(&format!("f{round} OK")));
        let r = ok(&c.cmd(&format!("q{round} SEARCH ALL"))).to_vec();
        assert!(r[0].ends_with(&format!(" {BIG_FOLDER}")));
        let r = ok(&c.cmd(&format!("u{round} UID SEARCH SEEN"))).to_vec();
        assert_eq!(r[0].split(' ').count(), 2 + BIG_FOLDER / 2);
    }
    assert!(!host.log().contains("trapped"), "{}", host.log());
}

#[test]
fn updates_reach_other_sessions_at_their_next_command() {
    let host = start("");
    let (mut a, mut b) = two_sessions_on_inbox(&host, 2);

    // A change made through the host shows at once, after any command.
    ok(&b.cmd("b2 STORE 1 +FLAGS.SILENT (\\Flagged)"));
    let r = ok(&a.cmd("a2 FETCH 2 UID")).to_vec();
    assert!(has(&r, "* 1 FETCH (UID 1 FLAGS (\\Flagged"), "{r:?}");
    append(&mut b, "INBOX", &message("m3", "body"));
    let r = ok(&a.cmd("a3 SEARCH ALL")).to_vec();
    assert_eq!(r[..2], ["* SEARCH 1 2", "* 3 EXISTS"]);

    // A file an outside program drops in: NOOP sees it at once, other
    // commands once the snapshot is two seconds old.
    deliver(&host, &message("m4", "body"));
    let r = ok(&a.cmd("a4 NOOP")).to_vec();
    assert_eq!(r[0], "* 4 EXISTS");
    deliver(&host, &message("m5", "body"));
    std::thread::sleep(Duration::from_millis(2100));
    let r = ok(&a.cmd("a5 FETCH 1 UID")).to_vec();
    assert!(has(&r, "* 5 EXISTS"), "{r:?}");
}

#[test]
fn searchres_saves_a_result_for_dollar() {
    let host = start("");
    let mut c = Wire::login(host.addr("imap"));
    assert!(capabilities(&mut c).contains(" ESEARCH SEARCHRES"));
    for n in 1..=4 {
        append(&mut c, "INBOX", &message(&format!("m{n}"), "body"));
    }
    ok(&c.cmd("s1 SELECT INBOX"));

    // Nothing saved yet: `$` is empty, not an error.
    let r = ok(&c.cmd("a1 FETCH $ UID")).to_vec();
    assert_eq!(r.len(), 1, "{r:?}");
    // SAVE alone sends no ESEARCH (RFC 5182).
    let r = ok(&c.cmd("a2 SEARCH RETURN (SAVE) 2:3")).to_vec();
    assert_eq!(r.len(), 1, "{r:?}");
    let r = ok(&c.cmd("a3 UID FETCH $ UID")).to_vec();
    assert_eq!(r[..2], ["* 2 FETCH (UID 2)", "* 3 FETCH (UID 3)"]);
    let r = ok(&c.cmd("a4 SEARCH $ NOT 3")).to_vec();
    assert_eq!(r[0], "* SEARCH 2");
    ok(&c.cmd("a5 STORE $ +FLAGS.SILENT (\\Deleted)"));
    let r = ok(&c.cmd("a6 SEARCH DELETED")).to_vec();
    assert_eq!(r[0], "* SEARCH 2 3");

    // With other options the ESEARCH comes too; `$` follows UIDs, so
    // it still names the same messages after an EXPUNGE.
    let r = ok(&c.cmd("a7 UID SEARCH RETURN (SAVE COUNT) 4")).to_vec();
    assert_eq!(r[0], "* ESEARCH (TAG \"a7\") UID COUNT 1");
    ok(&c.cmd("a8 EXPUNGE"));
    let r = ok(&c.cmd("a9 FETCH $ UID")).to_vec();
    assert_eq!(r[0], "* 2 FETCH (UID 4)");

    // A failed SAVE empties the result.
    let r = c.cmd("b1 SEARCH RETURN (SAVE) 99");
    assert!(r[0].starts_with("b1 BAD"), "{r:?}");
    let r = ok(&c.cmd("b2 FETCH $ UID")).to_vec();
    assert_eq!(r.len(), 1, "{r:?}");
}

#[test]
fn search_keys_flags_addresses_dates_and_recency() {
    let host = start("");
    let mut c = Wire::login(host.addr("imap"));
    let m1 = "From: Bob <bob@example.net>\r\nTo: alice@example.org\r\n\
              Cc: Carol <carol@example.net>\r\nSubject: one\r\n\
              Date: Wed, 1 Jan 2020 10:00:00 +0000\r\n\r\nfirst\r\n";
    let m2 = "From: Bob <bob@example.net>\r\nTo: alice@example.org\r\n\
              Bcc: dave@example.net\r\nSubject: two\r\n\
              Date: Sat, 14 Mar 2026 13:08:53 +0100\r\n\r\nsecond\r\n";
    for (tag, flags, date, data) in [
        ("p1", "(\\Answered $Work)", "01-Jan-2020 10:00:00 +0000", m1),
        (
            "p2",
            "(\\Flagged \\Draft)",
            "14-Mar-2026 12:00:00 +0000",
            m2,
        ),
    ] {
        let len = data.len();
        c.send(
            format!("{tag} APPEND INBOX {flags} \"{date}\" {{{len}+}}\r\n")
                .as_bytes(),
        );
        c.send(format!("{data}\r\n").as_bytes());
        ok(&c.until(tag));
    }
    // Delivered into new/: recent for the first session that selects.
    deliver(&host, &message("three", "third"));
    ok(&c.cmd("s1 SELECT INBOX"));

    let search = |c: &mut Wire, keys: &str| -> String {
        let r = ok(&c.cmd(&format!("q SEARCH {keys}"))).to_vec();
        r[0].clone()
    };
    for (keys, want) in [
        ("ANSWERED", "* SEARCH 1"),
        ("UNANSWERED", "* SEARCH 2 3"),
        ("FLAGGED DRAFT", "* SEARCH 2"),
        ("UNFLAGGED UNDRAFT", "* SEARCH 1 3"),
        ("KEYWORD $Work", "* SEARCH 1"),
        ("UNKEYWORD $Work", "* SEARCH 2 3"),
        ("CC carol", "* SEARCH 1"),
        ("BCC dave@example", "* SEARCH 2"),
        ("CC dave", "* SEARCH"),
        ("BEFORE 1-Feb-2020", "* SEARCH 1"),
        ("SINCE 1-Mar-2026 BEFORE 15-Mar-2026", "* SEARCH 2"),
        ("ON 14-Mar-2026", "* SEARCH 2"),
        ("SENTBEFORE 1-Mar-2026", "* SEARCH 1"),
        ("SENTSINCE 1-Mar-2026", "* SEARCH 2 3"),
        ("SENTON 1-Jan-2020", "* SEARCH 1"),
        ("RECENT", "* SEARCH 3"),
        ("NEW", "* SEARCH 3"),
        ("OLD", "* SEARCH 1 2"),
        ("UNDELETED", "* SEARCH 1 2 3"),
    ] {
        assert_eq!(search(&mut c, keys), want, "SEARCH {keys}");
    }
    ok(&c.cmd("f1 STORE 3 +FLAGS.SILENT (\\Seen \\Deleted)"));
    assert_eq!(search(&mut c, "NEW"), "* SEARCH");
    assert_eq!(search(&mut c, "UNDELETED"), "* SEARCH 1 2");
    assert_eq!(search(&mut c, "OR DELETED ANSWERED"), "* SEARCH 1 3");

    // A second session was not the first to see any of them.
    let mut d = Wire::login(host.addr("imap"));
    ok(&d.cmd("s2 EXAMINE INBOX"));
    assert_eq!(search(&mut d, "RECENT"), "* SEARCH");
    assert_eq!(search(&mut d, "OLD"), "* SEARCH 1 2 3");
}

#[test]
fn list_return_status_gives_each_folders_counters() {
    let host = start("");
    let mut c = Wire::login(host.addr("imap"));
    append(&mut c, "INBOX", &message("one", "body"));
    append(&mut c, "Trash", &message("two", "body"));
    ok(&c.cmd("e1 ENABLE IMAP4rev2"));

    // RFC 5819 (folded into RFC 9051): a STATUS after each LIST line.
    let r = ok(&c.cmd(
        "l1 LIST \"\" (INBOX Trash) RETURN (STATUS (MESSAGES UNSEEN DELETED))",
    ))
    .to_vec();
    assert_eq!(
        r[..4],
        [
            "* LIST (\\HasNoChildren) \"/\" INBOX",
            "* STATUS INBOX (MESSAGES 1 UNSEEN 1 DELETED 0)",
            "* LIST (\\HasNoChildren \\Trash) \"/\" Trash",
            "* STATUS Trash (MESSAGES 1 UNSEEN 1 DELETED 0)",
        ]
    );
    let r = c.cmd("l2 LIST \"\" * RETURN (STATUS (BOGUS))");
    assert!(r[0].starts_with("l2 BAD"), "{r:?}");
}
