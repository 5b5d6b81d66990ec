//! The store through the host: crash safety of acknowledged deliveries,
//! capability scoping of the store interfaces, and account file errors.
//! The store crate's own tests (host/store) cover the Maildir format and
//! Dovecot interop.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use mailhost_tests::{Client, Host, mailhost, plugin};

/// Messages the crash test delivers.
const CRASH_MESSAGES: usize = 2000;

/// Body lines of each crash-test message: about 10 KB.
const BODY_LINES: usize = 130;

/// A port that was free a moment ago, for a listener that must keep its
/// address across restarts.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The data directory and accounts of a test host in `dir`.
fn accounts_section(dir: &Path) -> String {
    format!(
        r#"
data-dir = "{dir}/data"
[accounts]
users-file = "{dir}/users"
domains = ["example.org"]
"#,
        dir = dir.display()
    )
}

fn smtp_config(dir: &Path, port: u16) -> String {
    format!(
        r#"{accounts}
[[listener]]
name = "smtp"
address = "127.0.0.1:{port}"
protocol = "smtp"
role = "submission"
plugin = "{plugin}"
[listener.settings]
mode = "reception"
hostname = "mx.example.org"
"#,
        accounts = accounts_section(dir),
        plugin = plugin("smtp").display()
    )
}

fn add_user(config: &Path, user: &str, password: &str) {
    let added = mailhost(
        &["user", "add", "--config", config.to_str().unwrap(), user],
        format!("{password}\n").as_bytes(),
    );
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
}

/// The payload of crash-test message `seq`, as sent (CRLF, no dot lines).
fn crash_payload(seq: usize) -> Vec<u8> {
    let mut text = format!(
        "From: load@example.net\r\nTo: alice@example.org\r\n\
         Subject: crash test {seq}\r\nX-Seq: {seq}\r\n\r\n"
    );
    for line in 0..BODY_LINES {
        text.push_str(&format!(
            "{seq:06} line {line:03} {}\r\n",
            "x".repeat(60)
        ));
    }
    text.push_str(&format!("END-OF-MESSAGE {seq}\r\n"));
    text.into_bytes()
}

/// One SMTP connection delivering messages until an error.
struct Sender {
    reader: BufReader<TcpStream>,
}

impl Sender {
    fn connect(addr: SocketAddr) -> std::io::Result<Sender> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut sender = Sender {
            reader: BufReader::new(stream),
        };
        sender.reply("220")?;
        sender.command("EHLO load.example.net\r\n", "250")?;
        Ok(sender)
    }

    /// Read a (possibly multi-line) reply; fail unless it has `code`.
    fn reply(&mut self, code: &str) -> std::io::Result<()> {
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if line.len() < 4 || !line.starts_with(code) {
                return Err(std::io::Error::other(format!(
                    "unexpected {line:?}"
                )));
            }
            if line.as_bytes()[3] == b' ' {
                return Ok(());
            }
        }
    }

    fn command(&mut self, line: &str, code: &str) -> std::io::Result<()> {
        self.reader.get_mut().write_all(line.as_bytes())?;
        self.reply(code)
    }

    /// Deliver one message; Ok only once the server said 250 to the data.
    fn deliver(&mut self, payload: &[u8]) -> std::io::Result<()> {
        self.command("MAIL FROM:<load@example.net>\r\n", "250")?;
        self.command("RCPT TO:<alice@example.org>\r\n", "250")?;
        self.command("DATA\r\n", "354")?;
        let stream = self.reader.get_mut();
        stream.write_all(payload)?;
        stream.write_all(b".\r\n")?;
        self.reply("250")
    }
}

/// Every message file in the INBOX, new/ and cur/.
fn inbox_files(data: &Path) -> Vec<Vec<u8>> {
    let maildir = data.join("example.org/alice/Maildir");
    let mut files = Vec::new();
    for sub in ["new", "cur"] {
        let Ok(entries) = std::fs::read_dir(maildir.join(sub)) else {
            continue;
        };
        for entry in entries {
            files.push(std::fs::read(entry.unwrap().path()).unwrap());
        }
    }
    files
}

/// The sequence number of a stored message, checking the whole message:
/// the stored file is our trace headers followed by exactly the payload.
fn verify_stored(stored: &[u8]) -> Result<usize, String> {
    let text = String::from_utf8_lossy(stored);
    let at = text
        .find("From: load@example.net\r\n")
        .ok_or("no payload")?;
    let seq: usize = text
        .lines()
        .find_map(|line| line.strip_prefix("X-Seq: "))
        .ok_or("no X-Seq")?
        .trim()
        .parse()
        .map_err(|_| "bad X-Seq")?;
    if stored[at..] != crash_payload(seq)[..] {
        return Err(format!("message {seq} is partial or altered"));
    }
    Ok(seq)
}

#[test]
fn sigkill_during_2000_deliveries_loses_no_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = smtp_config(dir.path(), port);
    let config_path = dir.path().join("mailhost.toml");
    std::fs::write(&config_path, &config).unwrap();
    add_user(&config_path, "alice@example.org", "unused");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let data = dir.path().join("data");

    // The killer: start the host, let it serve a random while, SIGKILL it,
    // and look for partial messages in new/ and cur/ while it is down.
    let done = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(Mutex::new(0usize));
    let partials = Arc::new(Mutex::new(Vec::<String>::new()));
    let killer = {
        let (done, kills, partials) =
            (done.clone(), kills.clone(), partials.clone());
        let data = data.clone();
        thread::spawn(move || {
            let mut host = Host::start_in(dir, &config);
            let mut round: u64 = 0;
            while !done.load(Ordering::SeqCst) {
                round += 1;
                thread::sleep(Duration::from_millis(150 + (round * 97) % 400));
                host.kill();
                *kills.lock().unwrap() += 1;
                for file in inbox_files(&data) {
                    if let Err(why) = verify_stored(&file) {
                        partials.lock().unwrap().push(why);
                    }
                }
                host = host.restart();
            }
            host
        })
    };

    // The client: deliver every message, reconnecting after each crash;
    // a message counts as acknowledged only after its 250.
    let mut acknowledged = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut sender: Option<Sender> = None;
    let mut seq = 0;
    while seq < CRASH_MESSAGES {
        assert!(Instant::now() < deadline, "deliveries took too long");
        let mut current = match sender.take() {
            Some(sender) => sender,
            None => match Sender::connect(addr) {
                Ok(sender) => sender,
                Err(_) => {
                    thread::sleep(Duration::from_millis(20));
                    continue;
                }
            },
        };
        match current.deliver(&crash_payload(seq)) {
            Ok(()) => {
                acknowledged.insert(seq);
                seq += 1;
                sender = Some(current);
            }
            // The host died mid-transaction: retry this message.
            Err(_) => sender = None,
        }
    }
    done.store(true, Ordering::SeqCst);

    // Keep the host (and with it the directory) until the checks are done.
    let _host = killer.join().unwrap();

    let kills = *kills.lock().unwrap();
    assert!(kills >= 3, "the host was killed only {kills} times");
    let partials = partials.lock().unwrap();
    assert!(
        partials.is_empty(),
        "partial messages were visible: {partials:?}"
    );

    let mut stored = BTreeSet::new();
    for file in inbox_files(&data) {
        stored.insert(verify_stored(&file).unwrap());
    }
    let lost: Vec<_> = acknowledged.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    assert_eq!(acknowledged.len(), CRASH_MESSAGES);
}

#[test]
fn bad_account_line_names_the_file_and_line_and_rewrites_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = smtp_config(dir.path(), 0);
    let config_path = dir.path().join("mailhost.toml");
    std::fs::write(&config_path, &config).unwrap();
    add_user(&config_path, "alice@example.org", "pw");

    let users = dir.path().join("users");
    let mut text = std::fs::read_to_string(&users).unwrap();
    text.push_str("bob@example.org:{NOPE}abc\n");
    std::fs::write(&users, &text).unwrap();

    let output =
        mailhost(&["check", "--config", config_path.to_str().unwrap()], b"");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains(&users.display().to_string()), "{stderr}");
    assert!(stderr.contains("line 2"), "{stderr}");
    assert!(!stderr.contains("argon2id"), "hash leaked: {stderr}");
    assert_eq!(std::fs::read_to_string(&users).unwrap(), text);
}

/// A mailbox-role listener `snoop` running the snoop plugin.
fn snoop_host() -> Host {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"{accounts}
[[listener]]
name = "snoop"
address = "127.0.0.1:0"
role = "mailbox"
plugin = "{plugin}"
"#,
        accounts = accounts_section(dir.path()),
        plugin = plugin("snoop").display()
    );
    let config_path = dir.path().join("mailhost.toml");
    std::fs::write(&config_path, &config).unwrap();
    add_user(&config_path, "alice@example.org", "alice-pw");
    add_user(&config_path, "bob@example.org", "bob-pw");

    // Bob has mail that Alice's session must never reach.
    let bob_new = dir.path().join("data/example.org/bob/Maildir/new");
    std::fs::create_dir_all(&bob_new).unwrap();
    std::fs::write(
        bob_new.join("1.secret.host"),
        b"Subject: bob only\r\n\r\nx\r\n",
    )
    .unwrap();
    Host::start_in(dir, &config)
}

#[test]
fn plugin_logged_in_as_one_account_cannot_reach_another() {
    let host = snoop_host();

    // The plugin logs in as alice and then tries every name it can think
    // of for bob's mailbox; it reports each outcome on the wire.
    let mut client = Client::connect(host.addr("snoop"));
    client.expect("OK hostile snoop");
    let report = String::from_utf8_lossy(&client.read_to_end()).into_owned();
    assert!(report.contains("login alice ok"), "{report}");
    let attempts: Vec<&str> =
        report.lines().filter(|l| l.starts_with("open ")).collect();
    assert!(attempts.len() >= 4, "{report}");
    for attempt in attempts {
        assert!(
            !attempt.ends_with(" ok"),
            "reached another account: {attempt}"
        );
    }
    assert!(!report.contains("bob only"), "{report}");
    assert!(
        report.contains("login bob-with-alice-password refused"),
        "{report}"
    );
}

#[test]
fn submission_plugin_cannot_reach_mailboxes() {
    // The mailbox interface is not linked for the submission role: a
    // plugin importing it is refused at load with the import named.
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"
[accounts]
users-file = "{dir}/users"
domains = ["example.org"]
[[listener]]
name = "reader"
address = "127.0.0.1:0"
role = "submission"
plugin = "{plugin}"
"#,
        dir = dir.path().display(),
        plugin = plugin("pop3").display()
    );
    std::fs::write(dir.path().join("users"), "").unwrap();
    let path = dir.path().join("mailhost.toml");
    std::fs::write(&path, config).unwrap();

    let output = mailhost(&["check", "--config", path.to_str().unwrap()], b"");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(
            "imports `mailhost:plugin/mailbox@0.1.0`, which role `submission`"
        ),
        "{stderr}"
    );
}
