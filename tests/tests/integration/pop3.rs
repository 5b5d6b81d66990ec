//! See main.rs for what this module covers.
//!
//! Mail reaches the INBOX as Maildir files written straight into
//! `<data>/example.org/<user>/Maildir/new/`, the way an MDA would; the
//! store picks them up when the POP3 session opens the maildrop. Messages
//! come back with CRLF line ends whatever the file held, so expectations
//! are the files with bare LFs turned into CRLF.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mailhost_tests::{Client, Host, corpus, mailhost, plugin, python};

const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.org";
const PASSWORD: &str = "secret";

/// Every message of the shared corpus.
const CORPUS: &[&str] = &[
    "001-plain-ascii.eml",
    "002-utf8-qp-subject.eml",
    "003-utf8-8bit-body.eml",
    "004-multipart-alternative.eml",
    "005-attachment-binary.eml",
    "006-attachment-rfc2231-filename.eml",
    "007-forward-message-rfc822.eml",
    "008-forward-nested-twice.eml",
    "009-multipart-related.eml",
    "010-multipart-twelve-parts.eml",
    "011-multipart-signed.eml",
    "012-encoded-words-address-list.eml",
    "013-long-folded-headers.eml",
    "014-leading-dots.eml",
    "015-empty-body.eml",
    "016-big-text-2mb.eml",
    "017-latin1-body.eml",
    "018-base64-text.eml",
    "019-dsn-report.eml",
    "020-text-calendar.eml",
    "021-bare-lf-lines.eml",
    "022-no-headers-blank.eml",
    "023-missing-boundary-end.eml",
    "024-bad-charset.eml",
    "025-nul-and-8bit-headers.eml",
    "026-duplicate-headers.eml",
    "027-smtp-smuggling-lookalike.eml",
];

/// Size of the large-message test: 20 MB.
const BIG_MESSAGE_SIZE: usize = 20 * 1024 * 1024;

/// The POP3 listener's config; `extra` goes into its `[listener]` table
/// before the settings, `settings` into `[listener.settings]`, and `tail`
/// (more top-level tables) at the end.
fn config(extra: &str, settings: &str, tail: &str) -> String {
    format!(
        r#"
data-dir = "{{dir}}/data"

[accounts]
users-file = "{{dir}}/users"
domains = ["example.org"]

[[listener]]
name = "pop3"
address = "127.0.0.1:0"
protocol = "pop3"
role = "mailbox"
plugin = "{plugin}"
{extra}

[listener.settings]
hostname = "pop.example.org"
{settings}

{tail}
"#,
        plugin = plugin("pop3").display(),
    )
}

/// A prepared directory: config written, alice and bob created.
struct Setup {
    dir: tempfile::TempDir,
    config: String,
}

/// The top-level table naming the certificate that `mailhost
/// self-signed-cert` creates.
const TLS_TABLE: &str = r#"
[tls]
certificate = "{dir}/tls.crt"
key = "{dir}/tls.key"
"#;

impl Setup {
    /// A plaintext listener with `extra` and `settings` added.
    fn new(extra: &str, settings: &str) -> Setup {
        let extra = format!("tls = \"none\"\n{extra}");
        Setup::build(&extra, settings, "")
    }

    /// A STARTTLS listener offering STLS, passwords only under TLS, with
    /// a fresh self-signed certificate for localhost.
    fn with_tls() -> Setup {
        let setup = Setup::build(
            "tls = \"starttls\"\nplaintext-auth = \"never\"",
            "stls = \"true\"",
            TLS_TABLE,
        );
        let path = setup.dir.path().join("mailhost.toml");
        let out = mailhost(
            &["self-signed-cert", "--config", path.to_str().unwrap()],
            b"",
        );
        assert!(
            out.status.success(),
            "self-signed-cert: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        setup
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("tls.crt")
    }

    fn build(extra: &str, settings: &str, tail: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let config = config(extra, settings, tail);
        let path = dir.path().join("mailhost.toml");
        let text = config.replace("{dir}", dir.path().to_str().unwrap());
        std::fs::write(&path, text).unwrap();
        std::fs::write(dir.path().join("users"), "").unwrap();

        for user in [ALICE, BOB] {
            let path = path.to_str().unwrap();
            let input = format!("{PASSWORD}\n");
            let args = ["user", "add", "--config", path, user];
            let out = mailhost(&args, input.as_bytes());
            assert!(
                out.status.success(),
                "user add {user}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Setup { dir, config }
    }

    fn deliver(&self, user: &str, messages: &[&[u8]]) {
        deliver(self.dir.path(), user, messages);
    }

    fn start(self) -> Host {
        Host::start_in(self.dir, &self.config)
    }
}

/// A host with alice holding `messages`, on the default POP3 listener.
fn host_with(messages: &[&[u8]]) -> Host {
    let setup = Setup::new("", "");
    setup.deliver(ALICE, messages);
    setup.start()
}

fn maildir(dir: &Path, user: &str) -> PathBuf {
    let (local, domain) = user.split_once('@').unwrap();
    dir.join("data").join(domain).join(local).join("Maildir")
}

/// Drop messages into the user's Maildir `new/`, as a local MDA would.
fn deliver(dir: &Path, user: &str, messages: &[&[u8]]) {
    let maildir = maildir(dir, user);
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }

    for message in messages {
        let name = unique_name();
        let tmp = maildir.join("tmp").join(&name);
        std::fs::write(&tmp, message).unwrap();
        std::fs::rename(&tmp, maildir.join("new").join(&name)).unwrap();
    }
}

fn unique_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!(
        "{}.M{}P{}Q{n}.pop3test",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id()
    )
}

/// Files in the user's `new/` and `cur/`.
fn stored_files(dir: &Path, user: &str) -> Vec<PathBuf> {
    let maildir = maildir(dir, user);
    let mut files = Vec::new();
    for sub in ["new", "cur"] {
        let Ok(entries) = std::fs::read_dir(maildir.join(sub)) else {
            continue;
        };
        files.extend(entries.map(|entry| entry.unwrap().path()));
    }
    files
}

fn read_corpus(name: &str) -> Vec<u8> {
    std::fs::read(corpus(name)).unwrap()
}

fn read_all(names: &[&str]) -> Vec<Vec<u8>> {
    names.iter().map(|name| read_corpus(name)).collect()
}

/// What a read of `message` returns: every bare LF made CRLF.
fn crlf(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 32);
    for (i, &byte) in message.iter().enumerate() {
        if byte == b'\n' && (i == 0 || message[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(byte);
    }
    out
}

/// What a client that strips byte-stuffing receives for `message`: its
/// CRLF form, with a CRLF added when the last line had none.
fn as_retrieved(message: &[u8]) -> Vec<u8> {
    let mut out = crlf(message);
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A byte-exact POP3 client for the data tests: the harness `Client`
/// reads text, and messages hold 8-bit bytes and NULs.
struct Raw {
    reader: BufReader<TcpStream>,
}

impl Raw {
    fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut raw = Raw {
            reader: BufReader::new(stream),
        };
        raw.expect("+OK");
        raw
    }

    fn login(addr: SocketAddr, user: &str) -> Raw {
        let mut raw = Raw::connect(addr);
        raw.send(&format!("USER {user}\r\n"));
        raw.expect("+OK");
        raw.send(&format!("PASS {PASSWORD}\r\n"));
        raw.expect("+OK");
        raw
    }

    fn send(&mut self, text: &str) {
        self.reader.get_mut().write_all(text.as_bytes()).unwrap();
    }

    /// One line as bytes, terminator included; empty at EOF.
    fn raw_line(&mut self) -> Vec<u8> {
        let mut line = Vec::new();
        self.reader
            .read_until(b'\n', &mut line)
            .expect("read a line");
        line
    }

    fn line(&mut self) -> String {
        let line = self.raw_line();
        String::from_utf8_lossy(&line)
            .trim_end_matches(['\r', '\n'])
            .to_owned()
    }

    fn expect(&mut self, prefix: &str) -> String {
        let line = self.line();
        assert!(
            line.starts_with(prefix),
            "expected {prefix:?}, got {line:?}"
        );
        line
    }

    /// The body of a multi-line response as sent, stuffing included,
    /// without the terminating `.` line.
    fn wire_body(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let line = self.raw_line();
            assert!(
                !line.is_empty(),
                "connection closed in a multi-line reply"
            );
            if line == b".\r\n" {
                return body;
            }
            body.extend_from_slice(&line);
        }
    }

    /// The body of a multi-line response with the stuffing removed.
    fn body(&mut self) -> Vec<u8> {
        unstuff(&self.wire_body())
    }

    /// Send `command` and read its multi-line body after a `+OK`.
    fn multiline(&mut self, command: &str) -> Vec<u8> {
        self.send(&format!("{command}\r\n"));
        self.expect("+OK");
        self.body()
    }

    fn lines(&mut self, command: &str) -> Vec<String> {
        let body = self.multiline(command);
        String::from_utf8(body)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn is_closed(&mut self) -> bool {
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest).is_ok() && rest.is_empty()
    }
}

/// Undo byte-stuffing: drop the first `.` of every line that has one.
fn unstuff(wire: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(wire.len());
    for line in wire.split_inclusive(|&b| b == b'\n') {
        out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
    }
    out
}

/// `LIST` as message number to size.
fn list(raw: &mut Raw) -> BTreeMap<u64, u64> {
    raw.lines("LIST")
        .iter()
        .map(|line| {
            let (n, size) = line.split_once(' ').unwrap();
            (n.parse().unwrap(), size.parse().unwrap())
        })
        .collect()
}

fn sorted(mut messages: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    messages.sort();
    messages
}

#[test]
fn rfc1939_example_session_transcript() {
    let first = read_corpus("001-plain-ascii.eml");
    let second = read_corpus("004-multipart-alternative.eml");
    let host = host_with(&[&first, &second]);
    let total = first.len() + second.len();

    // RFC 1939 section 10, with USER/PASS in place of APOP.
    let mut c = Client::connect(host.addr("pop3"));
    c.expect("+OK pop.example.org POP3 server ready");
    c.send_line(&format!("USER {ALICE}"));
    c.expect("+OK");
    c.send_line(&format!("PASS {PASSWORD}"));
    assert_eq!(
        c.line(),
        format!("+OK {ALICE} has 2 messages ({total} octets)")
    );
    c.send_line("STAT");
    assert_eq!(c.line(), format!("+OK 2 {total}"));

    c.send_line("LIST");
    assert_eq!(c.line(), format!("+OK 2 messages ({total} octets)"));
    let one = c.line();
    let two = c.line();
    assert_eq!(c.line(), ".");
    let sizes: Vec<usize> = [&one, &two]
        .iter()
        .zip(["1 ", "2 "])
        .map(|(line, prefix)| {
            line.strip_prefix(prefix).unwrap().parse().unwrap()
        })
        .collect();
    let mut want = vec![first.len(), second.len()];
    let mut got = sizes.clone();
    want.sort();
    got.sort();
    assert_eq!(got, want);

    for (number, size) in [(1, sizes[0]), (2, sizes[1])] {
        c.send_line(&format!("RETR {number}"));
        assert_eq!(c.line(), format!("+OK {size} octets"));
        let mut received = 0;
        loop {
            let line = c.line();
            if line == "." {
                break;
            }
            received += line.len() + 2;
        }
        assert_eq!(received, size, "message {number}");
        c.send_line(&format!("DELE {number}"));
        assert_eq!(c.line(), format!("+OK message {number} deleted"));
    }

    c.send_line("QUIT");
    c.expect("+OK");
    assert_eq!(c.line(), "", "the server closes after QUIT");
    assert!(stored_files(host.dir(), ALICE).is_empty());

    let mut raw = Raw::login(host.addr("pop3"), ALICE);
    raw.send("STAT\r\n");
    assert_eq!(raw.line(), "+OK 0 0");
}

#[test]
fn pipelined_commands_in_one_write_are_answered_in_order() {
    let message = read_corpus("014-leading-dots.eml");
    let host = host_with(&[&message]);
    let size = message.len();

    let mut raw = Raw::connect(host.addr("pop3"));
    raw.send(&format!(
        "CAPA\r\nUSER {ALICE}\r\nPASS {PASSWORD}\r\nSTAT\r\nLIST\r\nUIDL 1\r\n\
         NOOP\r\nRETR 1\r\nTOP 1 0\r\nLIST 2\r\nDELE 1\r\nSTAT\r\nRSET\r\n\
         STAT\r\nQUIT\r\n"
    ));

    raw.expect("+OK capability list follows");
    let capabilities = raw.body();
    assert!(
        String::from_utf8(capabilities)
            .unwrap()
            .contains("PIPELINING\r\n")
    );
    raw.expect("+OK");
    raw.expect("+OK");
    assert_eq!(raw.line(), format!("+OK 1 {size}"));
    raw.expect("+OK 1 messages");
    assert_eq!(raw.body(), format!("1 {size}\r\n").as_bytes());
    raw.expect("+OK 1 ");
    assert_eq!(raw.line(), "+OK");
    assert_eq!(raw.line(), format!("+OK {size} octets"));
    assert_eq!(raw.body(), message);
    raw.expect("+OK");
    let headers = raw.body();
    assert!(headers.ends_with(b"MIME-Version: 1.0\r\n\r\n"));
    assert_eq!(raw.line(), "-ERR no such message");
    raw.expect("+OK message 1 deleted");
    assert_eq!(raw.line(), "+OK 0 0");
    raw.expect("+OK 1 messages");
    assert_eq!(raw.line(), format!("+OK 1 {size}"));
    raw.expect("+OK");
    assert!(raw.is_closed());
    assert_eq!(stored_files(host.dir(), ALICE).len(), 1, "RSET undid DELE");
}

/// poplib fetches every message of the corpus; each arrives as it was
/// stored, and LIST's sizes are the CRLF sizes.
const POPLIB_DOWNLOAD: &str = r#"
import json, poplib, sys
host, port, user, password, out = sys.argv[1:6]
p = poplib.POP3(host, int(port), timeout=30)
p.user(user)
p.pass_(password)
sizes = [int(line.split()[1]) for line in p.list()[1]]
count, _ = p.stat()
for n in range(1, count + 1):
    resp, lines, octets = p.retr(n)
    with open(f"{out}/{n}", "wb") as f:
        f.write(b"\r\n".join(lines) + b"\r\n")
print(json.dumps(sizes))
p.quit()
"#;

#[test]
fn poplib_user_pass_downloads_the_corpus_byte_identical() {
    let messages = read_all(CORPUS);
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let host = host_with(&refs);
    let out = tempfile::tempdir().unwrap();
    let addr = host.addr("pop3");

    let run = python(
        POPLIB_DOWNLOAD,
        &[
            &addr.ip().to_string(),
            &addr.port().to_string(),
            ALICE,
            PASSWORD,
            out.path().to_str().unwrap(),
        ],
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    let sizes: Vec<usize> = String::from_utf8_lossy(&run.stdout)
        .trim()
        .trim_matches(['[', ']'])
        .split(", ")
        .map(|size| size.parse().unwrap())
        .collect();
    let mut want_sizes: Vec<usize> =
        messages.iter().map(|m| crlf(m).len()).collect();
    let mut got_sizes = sizes.clone();
    want_sizes.sort();
    got_sizes.sort();
    assert_eq!(got_sizes, want_sizes, "LIST sizes are CRLF sizes");

    let got: Vec<Vec<u8>> = (1..=messages.len())
        .map(|n| std::fs::read(out.path().join(n.to_string())).unwrap())
        .collect();
    let want: Vec<Vec<u8>> = messages.iter().map(|m| as_retrieved(m)).collect();
    assert_eq!(sorted(got), sorted(want));

    // poplib quit without DELE: everything stays.
    assert_eq!(stored_files(host.dir(), ALICE).len(), messages.len());
}

/// AUTH PLAIN both ways: with an initial response, and after the `+ `
/// continuation; then `*` cancelling an exchange.
const POPLIB_AUTH_PLAIN: &str = r#"
import base64, poplib, sys
host, port, user, password = sys.argv[1:5]
token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()

p = poplib.POP3(host, int(port), timeout=30)
assert "PLAIN" in p.capa()["SASL"], p.capa()
print(p._shortcmd("AUTH PLAIN " + token).decode())
print(p.stat())
p.quit()

p = poplib.POP3(host, int(port), timeout=30)
p._putcmd("AUTH PLAIN")
print(repr(p._getline()[0]))
print(p._shortcmd(token).decode())
p.quit()

p = poplib.POP3(host, int(port), timeout=30)
p._putcmd("AUTH PLAIN")
p._getline()
p._putcmd("*")
print(p._getline()[0].decode())
p.quit()
"#;

#[test]
fn poplib_auth_plain_initial_response_continuation_and_cancel() {
    let message = read_corpus("001-plain-ascii.eml");
    let host = host_with(&[&message]);
    let addr = host.addr("pop3");

    let run = python(
        POPLIB_AUTH_PLAIN,
        &[
            &addr.ip().to_string(),
            &addr.port().to_string(),
            ALICE,
            PASSWORD,
        ],
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );

    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("+OK alice@example.org has 1 messages"),
        "{lines:?}"
    );
    assert_eq!(lines[1], format!("(1, {})", message.len()));
    assert_eq!(lines[2], "b'+ '");
    assert!(lines[3].starts_with("+OK"), "{lines:?}");
    assert_eq!(lines[4], "-ERR authentication cancelled");
}

const POPLIB_CAPA_TOP_UIDL: &str = r#"
import poplib, sys
host, port, user, password = sys.argv[1:5]
p = poplib.POP3(host, int(port), timeout=30)
for name in sorted(p.capa()):
    print("capa", name)
p.user(user)
p.pass_(password)
print("top", len(p.top(1, 0)[1]), len(p.top(1, 2)[1]))
for line in p.uidl()[1]:
    print("uidl", line.decode())
p.quit()
"#;

#[test]
fn poplib_capa_top_and_uidl() {
    let message = read_corpus("001-plain-ascii.eml");
    let headers = message
        .split(|&b| b == b'\n')
        .take_while(|l| l != b"\r")
        .count();
    let host = host_with(&[&message, &message]);
    let addr = host.addr("pop3");

    let run = python(
        POPLIB_CAPA_TOP_UIDL,
        &[
            &addr.ip().to_string(),
            &addr.port().to_string(),
            ALICE,
            PASSWORD,
        ],
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );

    for want in [
        "TOP",
        "UIDL",
        "USER",
        "SASL",
        "RESP-CODES",
        "AUTH-RESP-CODE",
        "PIPELINING",
        "IMPLEMENTATION",
    ] {
        assert!(
            stdout.contains(&format!("capa {want}\n")),
            "{want}: {stdout}"
        );
    }
    assert!(
        !stdout.contains("capa STLS"),
        "no STLS without TLS: {stdout}"
    );

    // Headers plus the blank line, then two more body lines.
    assert!(
        stdout.contains(&format!("top {} {}\n", headers + 1, headers + 3)),
        "{stdout}"
    );

    let uidls: Vec<&str> = stdout
        .lines()
        .filter_map(|line| line.strip_prefix("uidl "))
        .map(|line| line.split_once(' ').unwrap().1)
        .collect();
    assert_eq!(uidls.len(), 2);
    assert_ne!(uidls[0], uidls[1], "UIDLs are unique");
    for uidl in uidls {
        // RFC 1939: 1 to 70 characters from 0x21 to 0x7E.
        let printable = uidl.bytes().all(|b| (0x21..=0x7e).contains(&b));
        assert!(!uidl.is_empty() && uidl.len() <= 70 && printable, "{uidl}");
    }
}

fn curl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "60"])
        .args(args)
        .output()
        .expect("spawn curl");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn curl_lists_retrieves_and_uidls_with_sasl_plain() {
    let message = read_corpus("014-leading-dots.eml");
    let host = host_with(&[&message]);
    let addr = host.addr("pop3");
    let credentials = format!("{ALICE}:{PASSWORD}");

    // curl picks SASL PLAIN from CAPA on its own.
    let listing = curl(&["-u", &credentials, &format!("pop3://{addr}/")]);
    assert_eq!(listing, format!("1 {}\r\n", message.len()).as_bytes());
    let fetched = curl(&["-u", &credentials, &format!("pop3://{addr}/1")]);
    assert_eq!(fetched, message, "leading dots unstuffed, bytes intact");

    let uidl =
        curl(&["-u", &credentials, "-X", "UIDL", &format!("pop3://{addr}/")]);
    assert!(String::from_utf8_lossy(&uidl).starts_with("1 "));
}

#[test]
fn fetchmail_downloads_the_whole_mailbox_byte_identical() {
    // The well-formed part of the corpus: fetchmail itself repairs the
    // deliberately broken messages (no headers, NUL in headers).
    let messages = read_all(&CORPUS[..20]);
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let host = host_with(&refs);
    let addr = host.addr("pop3");
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    std::fs::create_dir(&out).unwrap();

    // Each message goes to its own file through the MDA, untouched:
    // no Received header, no header rewriting, CRs kept.
    let rc = work.path().join("fetchmailrc");
    let mda = format!("cat > {}/$$", out.display());
    std::fs::write(
        &rc,
        format!(
            "poll 127.0.0.1 service {port} protocol pop3 auth password\n  \
             user \"{ALICE}\" password \"{PASSWORD}\"\n  \
             sslproto '' no rewrite no stripcr no keep fetchall\n  \
             mda \"{mda}\"\n",
            port = addr.port(),
        ),
    )
    .unwrap();
    let mode = std::os::unix::fs::PermissionsExt::from_mode(0o600);
    std::fs::set_permissions(&rc, mode).unwrap();

    let run = Command::new("fetchmail")
        .arg("--fetchmailrc")
        .arg(&rc)
        .args(["--nodetach", "--invisible", "--nosyslog", "--verbose"])
        .arg("--idfile")
        .arg(work.path().join("ids"))
        .arg("--pidfile")
        .arg(work.path().join("pid"))
        .env("FETCHMAILHOME", work.path())
        .env("HOME", work.path())
        .output()
        .expect("spawn fetchmail (apt-get install fetchmail)");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(run.status.success(), "fetchmail failed:\n{log}");

    let got: Vec<Vec<u8>> = std::fs::read_dir(&out)
        .unwrap()
        .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
        .collect();
    let want: Vec<Vec<u8>> = messages.iter().map(|m| as_retrieved(m)).collect();
    assert_eq!(got.len(), want.len(), "{log}");
    assert!(sorted(got) == sorted(want), "messages differ:\n{log}");

    // fetchmail deleted what it fetched, at QUIT.
    assert!(stored_files(host.dir(), ALICE).is_empty(), "{log}");
}

/// A 20 MB message with dot lines all through it.
fn big_message() -> Vec<u8> {
    let mut message = b"From: a@example.org\r\nSubject: big\r\n\r\n".to_vec();
    let mut n = 0u64;
    while message.len() < BIG_MESSAGE_SIZE {
        n += 1;
        let line = if n.is_multiple_of(97) {
            ".\r\n".to_owned()
        } else if n.is_multiple_of(13) {
            format!("..line {n} starts with dots\r\n")
        } else {
            format!("line {n} of the big message, {:0>40}\r\n", n * 7919)
        };
        message.extend_from_slice(line.as_bytes());
    }
    message
}

#[test]
fn retr_of_a_20mb_message_arrives_intact() {
    let message = big_message();
    let host = host_with(&[&message]);

    let mut raw = Raw::login(host.addr("pop3"), ALICE);
    assert_eq!(list(&mut raw), BTreeMap::from([(1, message.len() as u64)]));
    raw.send("RETR 1\r\n");
    assert_eq!(raw.line(), format!("+OK {} octets", message.len()));
    let body = raw.body();
    assert_eq!(body.len(), message.len());
    assert!(body == message, "the big message differs");

    raw.send("NOOP\r\n");
    assert_eq!(raw.line(), "+OK", "the session goes on after the transfer");
}

#[test]
fn dele_then_dropped_connection_leaves_the_message() {
    let message = read_corpus("001-plain-ascii.eml");
    let host = host_with(&[&message]);

    let mut raw = Raw::login(host.addr("pop3"), ALICE);
    raw.send("DELE 1\r\n");
    raw.expect("+OK message 1 deleted");
    raw.send("STAT\r\n");
    assert_eq!(raw.line(), "+OK 0 0");
    drop(raw);

    // The lock goes with the session; retry until the host noticed.
    let mut raw = login_when_free(host.addr("pop3"));
    raw.send("STAT\r\n");
    assert_eq!(raw.line(), format!("+OK 1 {}", message.len()));
    assert_eq!(raw.multiline("RETR 1"), message);
    assert_eq!(stored_files(host.dir(), ALICE).len(), 1);
}

/// Log in, retrying while the previous session still holds the lock.
fn login_when_free(addr: SocketAddr) -> Raw {
    for _ in 0..100 {
        let mut raw = Raw::connect(addr);
        raw.send(&format!("USER {ALICE}\r\nPASS {PASSWORD}\r\n"));
        raw.expect("+OK");
        let reply = raw.line();
        if reply.starts_with("+OK") {
            return raw;
        }
        assert!(reply.starts_with("-ERR [IN-USE]"), "{reply}");
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the maildrop stayed locked");
}

#[test]
fn second_session_gets_in_use_until_the_first_quits() {
    let message = read_corpus("001-plain-ascii.eml");
    let host = host_with(&[&message]);
    let addr = host.addr("pop3");

    let mut first = Raw::login(addr, ALICE);

    let mut second = Raw::connect(addr);
    second.send(&format!("USER {ALICE}\r\nPASS {PASSWORD}\r\n"));
    second.expect("+OK");
    second.expect("-ERR [IN-USE]");
    assert!(second.is_closed());

    // Another account is not locked by alice's session.
    let mut bob = Raw::login(addr, BOB);
    bob.send("QUIT\r\n");
    bob.expect("+OK");

    // The refused session left the first one undisturbed.
    first.send("STAT\r\n");
    assert_eq!(first.line(), format!("+OK 1 {}", message.len()));
    first.send("QUIT\r\n");
    first.expect("+OK");
    assert!(first.is_closed());

    let mut third = login_when_free(addr);
    third.send("QUIT\r\n");
    third.expect("+OK");
}

#[test]
fn uidl_is_unique_and_stable_across_reconnects_and_restarts() {
    let messages = read_all(&CORPUS[..5]);
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let host = host_with(&refs);

    let uidls = |host: &Host| {
        let mut raw = login_when_free(host.addr("pop3"));
        let mut lines = raw.lines("UIDL");
        raw.send("UIDL 2\r\n");
        let single = raw.line();
        raw.send("QUIT\r\n");
        raw.expect("+OK");
        lines.sort();
        (lines, single)
    };

    let (before, single) = uidls(&host);
    assert_eq!(before.len(), 5);
    let ids: std::collections::BTreeSet<_> = before
        .iter()
        .map(|line| line.split_once(' ').unwrap().1)
        .collect();
    assert_eq!(ids.len(), 5, "unique: {before:?}");
    assert_eq!(single, format!("+OK {}", before[1]));

    assert_eq!(uidls(&host).0, before, "stable across sessions");
    let host = host.restart();
    assert_eq!(uidls(&host).0, before, "stable across restarts");
}

#[test]
fn dele_and_quit_expunge_and_retrieved_messages_become_seen() {
    let first = read_corpus("001-plain-ascii.eml");
    let second = read_corpus("002-utf8-qp-subject.eml");
    let host = host_with(&[&first, &second]);

    let mut raw = Raw::login(host.addr("pop3"), ALICE);
    let sizes = list(&mut raw);
    let keep = if sizes[&1] == first.len() as u64 {
        &first
    } else {
        &second
    };
    raw.multiline("RETR 1");
    raw.send("DELE 2\r\nDELE 2\r\nRETR 2\r\nQUIT\r\n");
    raw.expect("+OK message 2 deleted");
    assert_eq!(raw.line(), "-ERR message 2 already deleted");
    assert_eq!(raw.line(), "-ERR message 2 already deleted");
    raw.expect("+OK");

    let files = stored_files(host.dir(), ALICE);
    assert_eq!(files.len(), 1);
    assert_eq!(&std::fs::read(&files[0]).unwrap(), keep);
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    let flags = name
        .rsplit_once(":2,")
        .map(|(_, flags)| flags)
        .unwrap_or("");
    assert!(flags.contains('S'), "RETR at QUIT marks \\Seen: {name}");
}

#[test]
fn attack_transaction_commands_before_login_are_refused() {
    let host = host_with(&[&read_corpus("001-plain-ascii.eml")]);
    let mut c = Client::connect(host.addr("pop3"));
    c.expect("+OK");

    for command in [
        "STAT", "LIST", "RETR 1", "DELE 1", "TOP 1 0", "UIDL", "NOOP", "RSET",
    ] {
        c.send_line(command);
        c.expect("-ERR");
    }
    c.send_line("PASS secret");
    assert_eq!(c.line(), "-ERR send USER first");
    c.send_line("APOP alice 0123456789abcdef0123456789abcdef");
    c.expect("-ERR");
    c.send_line("QUIT");
    c.expect("+OK");
    assert_eq!(stored_files(host.dir(), ALICE).len(), 1);
}

#[test]
fn attack_overlong_nul_and_garbage_lines_get_err_and_the_session_survives() {
    let host = host_with(&[]);
    let mut c = Client::connect(host.addr("pop3"));
    c.expect("+OK");

    c.send(format!("USER {}\r\n", "a".repeat(100_000)).as_bytes());
    assert_eq!(c.line(), "-ERR line too long");
    c.send(b"USER alice\0@example.org\r\n");
    assert_eq!(c.line(), "-ERR control characters in command");
    c.send(b"USER alice\rPASS x\r\n");
    assert_eq!(c.line(), "-ERR control characters in command");
    c.send(b"\xff\xfe\r\n");
    assert_eq!(c.line(), "-ERR unknown command");
    c.send_line("");
    assert_eq!(c.line(), "-ERR unknown command");
    c.send_line("RETR");
    assert_eq!(c.line(), "-ERR syntax: RETR msg");

    c.send_line(&format!("USER {ALICE}"));
    c.expect("+OK");
    c.send_line(&format!("PASS {PASSWORD}"));
    c.expect("+OK");
}

#[test]
fn attack_too_many_bad_commands_close_the_session() {
    let host = host_with(&[]);
    let mut c = Client::connect(host.addr("pop3"));
    c.expect("+OK");

    // One reply per command, the last one saying why the server closes.
    let mut replies = Vec::new();
    for _ in 0..30 {
        if c.stream().write_all(b"XYZZY\r\n").is_err() {
            break;
        }
        let line = c.line();
        if line.is_empty() {
            break;
        }
        replies.push(line);
    }
    assert_eq!(replies.len(), 20, "{replies:?}");
    assert!(
        replies[..19]
            .iter()
            .all(|line| line == "-ERR unknown command")
    );
    assert_eq!(
        replies[19],
        "-ERR too many bad commands, closing connection"
    );
    assert_eq!(c.line(), "");
}

#[test]
fn attack_message_numbers_out_of_range_are_refused() {
    let host = host_with(&[&read_corpus("001-plain-ascii.eml")]);
    let mut raw = Raw::login(host.addr("pop3"), ALICE);

    for command in [
        "RETR 0",
        "RETR 2",
        "RETR 18446744073709551616",
        "RETR 99999999999999999999999999",
        "DELE 0",
        "LIST 4294967297",
        "UIDL 2",
        "TOP 2 0",
    ] {
        raw.send(&format!("{command}\r\n"));
        assert_eq!(raw.line(), "-ERR no such message", "{command}");
    }
    for command in ["RETR -1", "RETR 1.0", "TOP 1 -1", "DELE 1 1"] {
        raw.send(&format!("{command}\r\n"));
        raw.expect("-ERR syntax");
    }

    raw.send("STAT\r\n");
    raw.expect("+OK 1 ");
}

#[test]
fn attack_bare_lf_dot_lines_are_stuffed_not_terminating() {
    let smuggler = read_corpus("027-smtp-smuggling-lookalike.eml");
    let crafted: &[u8] =
        b"From: a@example.org\nSubject: dots\n\n.\nQUIT\n..\n.x\n.";
    let host = host_with(&[&smuggler]);
    let mut raw = Raw::login(host.addr("pop3"), ALICE);
    const NEEDLE: &[u8] = b"first line\r\n..\r\nMAIL FROM";

    raw.send("RETR 1\r\n");
    raw.expect("+OK");
    let wire = raw.wire_body();
    assert!(
        wire.windows(NEEDLE.len()).any(|w| w == NEEDLE),
        "{}",
        String::from_utf8_lossy(&wire)
    );
    assert_eq!(unstuff(&wire), crlf(&smuggler));
    raw.send("QUIT\r\n");
    raw.expect("+OK");

    deliver(host.dir(), BOB, &[crafted]);
    let mut raw = Raw::login(host.addr("pop3"), BOB);
    raw.send("RETR 1\r\n");
    raw.expect("+OK");
    let wire = raw.wire_body();
    assert_eq!(
        wire,
        b"From: a@example.org\r\nSubject: dots\r\n\r\n..\r\nQUIT\r\n...\r\n..x\r\n..\r\n"
    );

    // TOP stuffs the same way.
    raw.send("TOP 1 1\r\n");
    raw.expect("+OK");
    assert_eq!(
        raw.wire_body(),
        b"From: a@example.org\r\nSubject: dots\r\n\r\n..\r\n"
    );
}

#[test]
fn wrong_password_gets_auth_code_and_three_failures_close() {
    let host = host_with(&[]);
    let mut c = Client::connect(host.addr("pop3"));
    c.set_timeout(Duration::from_secs(60));
    c.expect("+OK");

    for attempt in 1..=3 {
        c.send_line(&format!("USER {ALICE}"));
        c.expect("+OK");
        c.send_line("PASS wrong");
        assert_eq!(
            c.line(),
            "-ERR [AUTH] invalid user name or password",
            "{attempt}"
        );
    }
    assert_eq!(c.line(), "", "closed after the third failure");

    let mut c = Client::connect(host.addr("pop3"));
    c.set_timeout(Duration::from_secs(60));
    c.expect("+OK");
    c.send_line("USER nobody@example.org");
    c.expect("+OK");
    c.send_line(&format!("PASS {PASSWORD}"));
    let reply = c.line();
    assert_eq!(
        reply,
        "-ERR [AUTH] invalid user name or password",
        "{}",
        host.log()
    );
}

#[test]
fn attack_auth_plain_authzid_of_another_user_is_refused() {
    let host = host_with(&[&read_corpus("001-plain-ascii.eml")]);
    let mut c = Client::connect(host.addr("pop3"));
    c.expect("+OK");

    // Bob's password, asking to act as alice: refused, and the session
    // ends, since the host allows one login per session.
    let token = base64(format!("{ALICE}\0{BOB}\0{PASSWORD}").as_bytes());
    c.send_line(&format!("AUTH PLAIN {token}"));
    assert_eq!(c.line(), "-ERR [AUTH] may not act as another user");
    assert_eq!(c.line(), "", "closed after the attempt");

    // Naming oneself is fine.
    let mut c = Client::connect(host.addr("pop3"));
    c.expect("+OK");
    let token = base64(format!("{ALICE}\0{ALICE}\0{PASSWORD}").as_bytes());
    c.send_line(&format!("AUTH PLAIN {token}"));
    c.expect("+OK alice@example.org has 1 messages");

    c.send_line("AUTH PLAIN");
    assert_eq!(c.line(), "-ERR already logged in");
    c.send_line("STAT");
    c.expect("+OK 1 ");
}

#[test]
fn attack_malformed_sasl_responses_are_refused() {
    let host = host_with(&[]);
    let mut c = Client::connect(host.addr("pop3"));
    c.expect("+OK");

    c.send_line("AUTH PLAIN !!!notbase64");
    assert_eq!(c.line(), "-ERR malformed SASL PLAIN response");
    c.send_line(&format!("AUTH PLAIN {}", base64(b"no-nuls-here")));
    assert_eq!(c.line(), "-ERR malformed SASL PLAIN response");
    c.send_line("AUTH CRAM-MD5");
    assert_eq!(c.line(), "-ERR unsupported SASL mechanism");
    c.send_line("AUTH PLAIN");
    assert_eq!(c.line(), "+ ");
    c.send(format!("{}\r\n", "A".repeat(10_000)).as_bytes());
    assert_eq!(c.line(), "-ERR SASL response too long");

    // The old mechanism-list form.
    c.send_line("AUTH");
    c.expect("+OK");
    assert_eq!(c.line(), "PLAIN");
    assert_eq!(c.line(), ".");
}

#[test]
fn plaintext_logins_refused_where_the_listener_forbids_them() {
    let setup = Setup::new("plaintext-auth = \"never\"", "");
    setup.deliver(ALICE, &[&read_corpus("001-plain-ascii.eml")]);
    let host = setup.start();
    let mut raw = Raw::connect(host.addr("pop3"));

    let capabilities = String::from_utf8(raw.multiline("CAPA")).unwrap();
    assert!(!capabilities.contains("USER\r\n"), "{capabilities}");
    assert!(!capabilities.contains("SASL"), "{capabilities}");

    raw.send(&format!("USER {ALICE}\r\n"));
    raw.expect("-ERR [AUTH]");
    let token = base64(format!("\0{ALICE}\0{PASSWORD}").as_bytes());
    raw.send(&format!("AUTH PLAIN {token}\r\n"));
    raw.expect("-ERR [AUTH]");
    raw.send("STLS\r\n");
    assert_eq!(raw.line(), "-ERR STLS not available");
}

#[test]
fn idle_timeout_gets_an_err_goodbye() {
    let setup = Setup::new("idle-timeout = 1", "");
    let host = setup.start();
    let mut c = Client::connect(host.addr("pop3"));
    c.expect("+OK");

    c.set_timeout(Duration::from_secs(15));
    assert_eq!(c.line(), "-ERR idle for too long, closing");
    assert_eq!(c.line(), "");
}

#[test]
fn shutdown_gets_an_err_goodbye_and_deletes_nothing() {
    let host = host_with(&[&read_corpus("001-plain-ascii.eml")]);
    let mut raw = Raw::login(host.addr("pop3"), ALICE);
    raw.send("DELE 1\r\n");
    raw.expect("+OK");

    host.signal(libc::SIGTERM);
    assert_eq!(raw.line(), "-ERR [SYS/TEMP] server shutting down");
    let mut host = host;
    assert!(host.wait_exit(Duration::from_secs(30)).is_some());
    assert_eq!(stored_files(host.dir(), ALICE).len(), 1);
}

/// poplib upgrades with STLS, checks the certificate, and only then may
/// log in; the CAPA lists before and after show the offer change.
const POPLIB_STLS: &str = r#"
import poplib, ssl, sys
host, port, user, password, cafile = sys.argv[1:6]
context = ssl.create_default_context(cafile=cafile)
context.check_hostname = False
p = poplib.POP3(host, int(port), timeout=30)
print("before", sorted(p.capa()))
try:
    p.user(user)
except poplib.error_proto as err:
    print("refused", err.args[0].decode())
print(p.stls(context=context).decode())
print("after", sorted(p.capa()))
p.user(user)
p.pass_(password)
resp, lines, octets = p.retr(1)
print("retr", octets)
p.quit()
"#;

#[test]
fn poplib_stls_upgrades_before_login() {
    let message = read_corpus("014-leading-dots.eml");
    let setup = Setup::with_tls();
    setup.deliver(ALICE, &[&message]);
    let cert = setup.cert();
    let host = setup.start();
    let addr = host.addr("pop3");

    let run = python(
        POPLIB_STLS,
        &[
            &addr.ip().to_string(),
            &addr.port().to_string(),
            ALICE,
            PASSWORD,
            cert.to_str().unwrap(),
        ],
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );

    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].contains("'STLS'") && !lines[0].contains("'USER'"),
        "{stdout}"
    );
    assert!(lines[1].starts_with("refused -ERR [AUTH]"), "{stdout}");
    assert!(lines[2].starts_with("+OK"), "{stdout}");
    assert!(
        lines[3].contains("'USER'") && !lines[3].contains("'STLS'"),
        "{stdout}"
    );
    assert_eq!(lines[4], format!("retr {}", message.len()), "{stdout}");
}

/// Commands sent in the same packet as STLS must never run as if they
/// came under TLS: a pipelined USER is dropped, so PASS after the
/// handshake finds no user name.
const STLS_INJECTION: &str = r#"
import socket, ssl, sys
host, port, user, password = sys.argv[1:5]
raw = socket.create_connection((host, int(port)), timeout=30)
reader = raw.makefile("rb")
reader.readline()
raw.sendall(f"STLS\r\nUSER {user}\r\n".encode())
print(reader.readline().decode().strip())
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
tls = context.wrap_socket(raw, server_hostname="localhost")
reader = tls.makefile("rb")
tls.sendall(f"PASS {password}\r\n".encode())
print(reader.readline().decode().strip())
tls.sendall(b"STLS\r\n")
print(reader.readline().decode().strip())
"#;

#[test]
fn attack_stls_injected_commands_are_discarded() {
    let setup = Setup::with_tls();
    let host = setup.start();
    let addr = host.addr("pop3");

    let run = python(
        STLS_INJECTION,
        &[
            &addr.ip().to_string(),
            &addr.port().to_string(),
            ALICE,
            PASSWORD,
        ],
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "+OK begin TLS negotiation",
            "-ERR send USER first",
            "-ERR TLS already active"
        ]
    );
}

/// Standard base64 with padding, for hand-made SASL responses.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] =
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
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
