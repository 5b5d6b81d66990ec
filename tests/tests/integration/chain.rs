//! The whole chain on real input: a message sent in by a real SMTP client
//! (swaks) and read back, byte for byte, by real POP3 and IMAP clients
//! (Python's poplib and imaplib, curl), through all three plugins on one
//! host.

use std::process::Command;

use mailhost_tests::{Host, mailhost, plugin, python};

const USER: &str = "alice@example.org";
const PASSWORD: &str = "chain-secret";

fn chain_host() -> Host {
    let dir = tempfile::tempdir().unwrap();
    let mut config = format!(
        r#"
data-dir = "{dir}/data"
[accounts]
users-file = "{dir}/users"
domains = ["example.org"]
"#,
        dir = dir.path().display()
    );
    for (name, protocol, role, settings) in [
        (
            "smtp",
            "smtp",
            "submission",
            "mode = \"reception\"\nhostname = \"mx.example.org\"",
        ),
        ("pop3", "pop3", "mailbox", ""),
        ("imap", "imap", "mailbox", ""),
    ] {
        config.push_str(&format!(
            r#"
[[listener]]
name = "{name}"
address = "127.0.0.1:0"
protocol = "{protocol}"
role = "{role}"
plugin = "{plugin}"
[listener.settings]
{settings}
"#,
            plugin = plugin(name).display()
        ));
    }
    let config_path = dir.path().join("mailhost.toml");
    std::fs::write(&config_path, &config).unwrap();
    let added = mailhost(
        &[
            "user",
            "add",
            "--config",
            config_path.to_str().unwrap(),
            USER,
        ],
        format!("{PASSWORD}\n").as_bytes(),
    );
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    Host::start_in(dir, &config)
}

const PY_READ_BACK: &str = r#"
import imaplib, poplib, sys
host, pop_port, imap_port, user, password = sys.argv[1:6]
p = poplib.POP3(host, int(pop_port))
p.user(user); p.pass_(password)
count, _ = p.stat()
assert count == 1, count
pop_lines = p.retr(1)[1]
p.quit()
m = imaplib.IMAP4(host, int(imap_port))
m.login(user, password)
typ, data = m.select("INBOX")
assert data == [b"1"], data
typ, data = m.uid("FETCH", "1", "(BODY.PEEK[])")
imap_body = data[0][1]
m.logout()
assert b"\r\n".join(pop_lines) + b"\r\n" == imap_body, "POP3 and IMAP differ"
sys.stdout.buffer.write(imap_body)
"#;

#[test]
fn swaks_in_then_poplib_imaplib_and_curl_read_the_same_bytes() {
    let host = chain_host();
    let smtp = host.addr("smtp");

    let sent = Command::new("swaks")
        .args(["--server", &smtp.to_string(), "--to", USER])
        .args([
            "--from",
            "bob@example.net",
            "--header",
            "Subject: the chain",
        ])
        .args(["--body", "First line.\n.leading dot\nLast line."])
        .output()
        .expect("run swaks");
    let transcript = String::from_utf8_lossy(&sent.stdout);
    assert!(sent.status.success(), "{transcript}");
    assert!(transcript.contains("<-  250 2.0.0"), "{transcript}");

    let pop3 = host.addr("pop3").port().to_string();
    let imap = host.addr("imap").port().to_string();
    let output =
        python(PY_READ_BACK, &["127.0.0.1", &pop3, &imap, USER, PASSWORD]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let body = output.stdout;
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.starts_with("Return-Path: <bob@example.net>\r\n"),
        "{text}"
    );
    assert!(text.contains("Subject: the chain\r\n"), "{text}");
    assert!(
        text.contains("\r\n.leading dot\r\n"),
        "dot-unstuffed wrongly: {text}"
    );

    // The file on disk holds exactly what the clients read.
    let new = host.dir().join("data/example.org/alice/Maildir");
    let on_disk: Vec<Vec<u8>> = ["new", "cur"]
        .iter()
        .flat_map(|sub| std::fs::read_dir(new.join(sub)).unwrap())
        .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
        .collect();
    assert_eq!(on_disk, vec![body.clone()]);

    let url = format!("pop3://127.0.0.1:{pop3}/1");
    let curl = Command::new("curl")
        .args(["-s", &url, "--user", &format!("{USER}:{PASSWORD}")])
        .output()
        .expect("run curl");
    assert!(curl.status.success());
    assert_eq!(curl.stdout, body, "curl pop3 differs");
}
