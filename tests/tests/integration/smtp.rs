//! The SMTP plugin on the real host: reception, submission and LMTP,
//! driven by Python's smtplib, swaks and lettre (its `C:`/`S:` transcripts
//! in `plugins/smtp/transcripts/` run from `transcripts.rs`). Delivered
//! messages are read back from the Maildir and compared with the corpus
//! byte for byte, after the `Return-Path:` and `Received:` headers put in
//! front.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mailhost_tests::{Client, Host, corpus, mailhost, plugin, python};

/// Every test account's password.
const PASSWORD: &str = "secret";

/// The accounts each host starts with, all at example.org.
const USERS: [&str; 3] = ["alice", "bob", "carol"];

/// Room for the 2 MB corpus message in the default listener.
const DEFAULT_MAX_MESSAGE_SIZE: u64 = 1024 * 1024 * 8;

/// The listener as most tests want it; `{listener}` and `{settings}`
/// take a test's extra lines.
const CONFIG: &str = r#"
data-dir = "{dir}/data"

[accounts]
users-file = "{dir}/users"
domains = ["example.org"]
aliases-file = "{dir}/aliases"

[[listener]]
name = "smtp"
address = "127.0.0.1:0"
role = "submission"
plugin = "{plugin}"
{listener}
[listener.settings]
hostname = "mx.example.org"
{settings}
{tls}
"#;

/// The certificate section for STARTTLS hosts; `mailhost
/// self-signed-cert` makes the files.
const TLS_FILES: &str = r#"
[tls]
certificate = "{dir}/cert.pem"
key = "{dir}/key.pem"
"#;

/// Extra configuration for one host.
#[derive(Default)]
struct Setup {
    /// TOML lines for the listener table.
    listener: Vec<String>,
    /// TOML lines for `[listener.settings]`.
    settings: Vec<String>,
    /// STARTTLS with a self-signed certificate, passwords only on TLS.
    starttls: bool,
}

impl Setup {
    fn mode(mode: &str) -> Setup {
        let mut setup = Setup::default();
        setup.settings.push(format!("mode = \"{mode}\""));
        if mode == "lmtp" {
            setup.listener.push("protocol = \"lmtp\"".into());
        }
        setup
    }

    fn starttls(mode: &str) -> Setup {
        let mut setup = Setup::mode(mode);
        setup.starttls = true;
        setup.listener.push("tls = \"starttls\"".into());
        setup.listener.push("plaintext-auth = \"never\"".into());
        setup.settings.push("starttls = \"true\"".into());
        setup
    }

    /// Write the config and accounts into a new directory and start the
    /// host there.
    fn start(mut self) -> Host {
        let has = |lines: &[String], key: &str| {
            lines
                .iter()
                .any(|line| line.split('=').next().unwrap().trim() == key)
        };
        for (key, default) in [
            ("protocol", "\"smtp\"".to_owned()),
            ("idle-timeout", "30".to_owned()),
            ("max-message-size", DEFAULT_MAX_MESSAGE_SIZE.to_string()),
            ("tls", "\"none\"".to_owned()),
            ("plaintext-auth", "\"loopback\"".to_owned()),
        ] {
            if !has(&self.listener, key) {
                self.listener.push(format!("{key} = {default}"));
            }
        }

        let dir = tempfile::tempdir().unwrap();
        let config = CONFIG
            .replace("{plugin}", plugin("smtp").to_str().unwrap())
            .replace("{listener}", &self.listener.join("\n"))
            .replace("{settings}", &self.settings.join("\n"))
            .replace("{tls}", if self.starttls { TLS_FILES } else { "" });
        let config_path = dir.path().join("mailhost.toml");
        let concrete = config.replace("{dir}", dir.path().to_str().unwrap());
        std::fs::write(&config_path, concrete).unwrap();
        std::fs::write(
            dir.path().join("aliases"),
            "sales@example.org: alice@example.org\n",
        )
        .unwrap();

        for user in USERS {
            let address = format!("{user}@example.org");
            let output = mailhost(
                &[
                    "user",
                    "add",
                    "--config",
                    config_path.to_str().unwrap(),
                    &address,
                ],
                format!("{PASSWORD}\n").as_bytes(),
            );
            assert!(
                output.status.success(),
                "user add {address}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        if self.starttls {
            let output = mailhost(
                &[
                    "self-signed-cert",
                    "--config",
                    config_path.to_str().unwrap(),
                ],
                b"",
            );
            assert!(
                output.status.success(),
                "self-signed-cert: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Host::start_in(dir, &config)
    }
}

/// The messages in `user@example.org`'s inbox, oldest name first.
fn inbox(host: &Host, user: &str) -> Vec<Vec<u8>> {
    let maildir = host
        .dir()
        .join("data/example.org")
        .join(user)
        .join("Maildir");
    let mut files: Vec<PathBuf> = ["new", "cur"]
        .iter()
        .filter_map(|sub| std::fs::read_dir(maildir.join(sub)).ok())
        .flatten()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|path| std::fs::read(path).unwrap())
        .collect()
}

/// The end of the header field that starts `data`: past its line end and
/// every continuation line.
fn field_end(data: &[u8]) -> usize {
    let mut end = 0;
    loop {
        match data[end..].iter().position(|&b| b == b'\n') {
            Some(lf) => end += lf + 1,
            None => return data.len(),
        }
        if !matches!(data.get(end), Some(b' ' | b'\t')) {
            return end;
        }
    }
}

/// Split a stored message into its `Received:` header and the message
/// as the client sent it, checking the host's `Return-Path:` first.
fn split_trace(stored: &[u8]) -> (String, Vec<u8>) {
    assert!(
        stored.starts_with(b"Return-Path: <"),
        "no Return-Path first: {:?}",
        String::from_utf8_lossy(&stored[..stored.len().min(200)])
    );
    let rest = &stored[field_end(stored)..];
    assert!(
        rest.starts_with(b"Received: from "),
        "no Received second: {:?}",
        String::from_utf8_lossy(&rest[..rest.len().min(200)])
    );
    let end = field_end(rest);
    (
        String::from_utf8_lossy(&rest[..end]).into_owned(),
        rest[end..].to_vec(),
    )
}

/// What a client that sends `file` puts on the wire: the file, with a
/// final CRLF added if it lacks one.
fn sent_form(file: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(file).unwrap();
    if !bytes.ends_with(b"\r\n") {
        bytes.extend_from_slice(b"\r\n");
    }
    bytes
}

/// Assert that `stored` holds exactly `original` behind the trace
/// headers; returns the `Received:` header.
fn assert_intact(stored: &[u8], original: &[u8], what: &str) -> String {
    let (received, body) = split_trace(stored);
    if body != original {
        let at = body
            .iter()
            .zip(original)
            .take_while(|(a, b)| a == b)
            .count();
        let window = |data: &[u8]| {
            let end = data.len().min(at + 60);
            String::from_utf8_lossy(&data[at.saturating_sub(20)..end])
                .into_owned()
        };
        panic!(
            "{what}: stored message differs at byte {at} ({} stored, {} \
             sent)\nstored: {:?}\nsent:   {:?}",
            body.len(),
            original.len(),
            window(&body),
            window(original)
        );
    }
    received
}

/// The corpus messages the client tests send: every CRLF file of the
/// corpus (021 onwards are odd on purpose and tested on their own).
fn crlf_corpus() -> Vec<PathBuf> {
    (1..=20)
        .map(|n| {
            let prefix = format!("{n:03}-");
            let dir = corpus("");
            let name = std::fs::read_dir(&dir)
                .unwrap()
                .map(|entry| entry.unwrap().file_name().into_string().unwrap())
                .find(|name| name.starts_with(&prefix))
                .unwrap_or_else(|| panic!("no corpus file {prefix}*"));
            dir.join(name)
        })
        .collect()
}

/// A Python smtplib client: `send.py HOST PORT AUTH SENDER RCPT FILE...`
/// where AUTH is `none`, `PLAIN` or `LOGIN`. Prints each reply code.
const SMTPLIB_SEND: &str = r#"
import smtplib, sys
host, port, auth, sender, rcpt = sys.argv[1:6]
with smtplib.SMTP(host, int(port), local_hostname="client.example") as s:
    s.ehlo()
    if auth != "none":
        s.user, s.password = sender, "secret"
        # Force the mechanism; LOGIN without initial response exercises
        # both base64 prompts.
        obj = s.auth_plain if auth == "PLAIN" else s.auth_login
        code, _ = s.auth(auth, obj, initial_response_ok=(auth == "PLAIN"))
        print("auth", code)
    for path in sys.argv[6:]:
        data = open(path, "rb").read()
        refused = s.sendmail(sender, [rcpt], data, mail_options=["BODY=8BITMIME"])
        print("sent", path, refused)
"#;

fn run_smtplib(
    host: &Host,
    auth: &str,
    sender: &str,
    rcpt: &str,
    files: &[PathBuf],
) {
    let addr = host.addr("smtp");
    let mut args = vec![
        addr.ip().to_string(),
        addr.port().to_string(),
        auth.to_owned(),
        sender.to_owned(),
        rcpt.to_owned(),
    ];
    args.extend(files.iter().map(|file| file.to_str().unwrap().to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = python(SMTPLIB_SEND, &args);
    assert!(
        output.status.success(),
        "smtplib failed:\n{}\n{}\nhost log:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        host.log()
    );
}

#[test]
fn smtplib_reception_delivers_corpus_intact() {
    let host = Setup::mode("reception").start();
    let files = crlf_corpus();

    run_smtplib(
        &host,
        "none",
        "sender@example.net",
        "bob@example.org",
        &files,
    );

    let stored = inbox(&host, "bob");
    assert_eq!(stored.len(), files.len());
    for file in &files {
        let original = sent_form(file);
        let found = stored
            .iter()
            .any(|message| split_trace(message).1 == original);
        assert!(found, "{} not stored intact", file.display());
    }
    let (received, _) = split_trace(&stored[0]);
    assert!(received.contains("by mx.example.org (mailhost) with ESMTP id"));
    assert!(received.contains("for <bob@example.org>;"));
}

#[test]
fn smtplib_submission_auth_plain() {
    let host = Setup::mode("submission").start();
    let file = corpus("004-multipart-alternative.eml");

    run_smtplib(
        &host,
        "PLAIN",
        "alice@example.org",
        "bob@example.org",
        std::slice::from_ref(&file),
    );

    let stored = inbox(&host, "bob");
    assert_eq!(stored.len(), 1);
    let received = assert_intact(&stored[0], &sent_form(&file), "PLAIN");
    assert!(received.contains("with ESMTPA"), "{received}");
    assert!(
        received.contains("(authenticated as alice@example.org)"),
        "{received}"
    );
    assert!(stored[0].starts_with(b"Return-Path: <alice@example.org>"));
}

#[test]
fn smtplib_submission_auth_login() {
    let host = Setup::mode("submission").start();
    let file = corpus("005-attachment-binary.eml");

    run_smtplib(
        &host,
        "LOGIN",
        "alice@example.org",
        "carol@example.org",
        std::slice::from_ref(&file),
    );

    let stored = inbox(&host, "carol");
    assert_eq!(stored.len(), 1);
    let received = assert_intact(&stored[0], &sent_form(&file), "LOGIN");
    assert!(
        received.contains("(authenticated as alice@example.org)"),
        "{received}"
    );
}

#[test]
fn smtplib_submission_refuses_unauthenticated_and_foreign_sender() {
    let host = Setup::mode("submission").start();
    let script = r#"
import smtplib, sys
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]))
s.ehlo("client.example")
try:
    s.sendmail("alice@example.org", ["bob@example.org"], b"Subject: x\r\n\r\n")
    sys.exit("sent without AUTH")
except smtplib.SMTPSenderRefused as e:
    assert e.smtp_code == 530, e
s.login("alice@example.org", "secret")
try:
    s.sendmail("carol@example.org", ["bob@example.org"], b"Subject: x\r\n\r\n")
    sys.exit("sent as someone else")
except smtplib.SMTPSenderRefused as e:
    assert e.smtp_code == 553, e
s.quit()
"#;
    let addr = host.addr("smtp");
    let output =
        python(script, &[&addr.ip().to_string(), &addr.port().to_string()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(inbox(&host, "bob").is_empty());
}

#[test]
fn smtplib_bare_lf_message_refused_whole() {
    let host = Setup::mode("reception").start();
    // smtplib sends bytes as they are: 021's bare LFs reach the server.
    let script = r#"
import smtplib, sys
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]))
try:
    s.sendmail("a@example.net", ["bob@example.org"], open(sys.argv[3], "rb").read())
    sys.exit("bare LF message accepted")
except smtplib.SMTPDataError as e:
    assert e.smtp_code == 554, e
s.noop()
s.quit()
"#;
    let addr = host.addr("smtp");
    let file = corpus("021-bare-lf-lines.eml");
    let output = python(
        script,
        &[
            &addr.ip().to_string(),
            &addr.port().to_string(),
            file.to_str().unwrap(),
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(inbox(&host, "bob").is_empty());
}

#[test]
fn smtplib_starttls_then_auth_plain() {
    let host = Setup::starttls("submission").start();
    let script = r#"
import smtplib, ssl, sys
host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = smtplib.SMTP(host, port, local_hostname="client.example")
s.ehlo()
assert s.has_extn("starttls"), s.esmtp_features
# plaintext-auth = never: no password before TLS.
assert not s.has_extn("auth"), s.esmtp_features
code, _ = s.docmd("AUTH", "PLAIN AGFsaWNlQGV4YW1wbGUub3JnAHNlY3JldA==")
assert code == 538, code
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s.starttls(context=ctx)
s.ehlo()
assert not s.has_extn("starttls"), s.esmtp_features
assert s.has_extn("auth"), s.esmtp_features
code, _ = s.docmd("STARTTLS")
assert code == 503, code
s.login("alice@example.org", "secret")
s.sendmail("alice@example.org", ["bob@example.org"], open(path, "rb").read())
s.quit()
"#;
    let addr = host.addr("smtp");
    let file = corpus("001-plain-ascii.eml");
    let output = python(
        script,
        &[
            &addr.ip().to_string(),
            &addr.port().to_string(),
            file.to_str().unwrap(),
        ],
    );
    assert!(
        output.status.success(),
        "{}\nhost log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        host.log()
    );

    let stored = inbox(&host, "bob");
    assert_eq!(stored.len(), 1);
    let received = assert_intact(&stored[0], &sent_form(&file), "STARTTLS");
    assert!(received.contains("with ESMTPSA"), "{received}");
    assert!(received.contains("(using TLSv1."), "{received}");
}

/// Commands pipelined behind STARTTLS in plaintext must never run inside
/// the encrypted session (CVE-2011-0411).
#[test]
fn starttls_command_injection_discarded() {
    let host = Setup::starttls("reception").start();
    let script = r#"
import socket, ssl, sys
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
f = sock.makefile("rb")
assert f.readline().startswith(b"220 ")
sock.sendall(b"EHLO client.example\r\n")
while not f.readline().startswith(b"250 "):
    pass
sock.sendall(b"STARTTLS\r\nMAIL FROM:<evil@example.net>\r\n")
line = f.readline()
assert line.startswith(b"220 "), line
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
tls = ctx.wrap_socket(sock, server_hostname="localhost")
tf = tls.makefile("rb")
tls.sendall(b"EHLO client.example\r\n")
line = tf.readline()
# Had the injected MAIL run, its reply would come first.
assert line.startswith(b"250-mx.example.org"), line
while not line.startswith(b"250 "):
    line = tf.readline()
tls.sendall(b"RCPT TO:<bob@example.org>\r\n")
line = tf.readline()
assert line.startswith(b"503 "), line
tls.sendall(b"QUIT\r\n")
assert tf.readline().startswith(b"221 ")
"#;
    let addr = host.addr("smtp");
    let output =
        python(script, &[&addr.ip().to_string(), &addr.port().to_string()]);
    assert!(
        output.status.success(),
        "{}\nhost log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        host.log()
    );
}

/// What swaks 20201014 and lettre put on the wire for a file: both send
/// CRLF "." CRLF after the data even when the data ends in CRLF, so the
/// message gains an empty last line. (swaks would also cut a file that
/// ends in a "." line there, taking it for its own end marker.)
fn crlf_appended_form(file: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(file).unwrap();
    bytes.extend_from_slice(b"\r\n");
    bytes
}

/// Run swaks against the host's listener with `args`; returns its
/// transcript.
fn swaks(host: &Host, args: &[&str]) -> String {
    let addr = host.addr("smtp");
    let output = std::process::Command::new("swaks")
        .args([
            "--server",
            &addr.ip().to_string(),
            "--port",
            &addr.port().to_string(),
        ])
        .args(["--helo", "client.example", "--timeout", "20"])
        .args(args)
        .output()
        .expect("swaks (apt-get install swaks)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "swaks failed:\n{text}\nhost log:\n{}",
        host.log()
    );
    text
}

#[test]
fn swaks_pipelining_delivers_intact() {
    let host = Setup::mode("reception").start();
    let file = corpus("009-multipart-related.eml");
    let data = format!("@{}", file.display());

    let transcript = swaks(
        &host,
        &[
            "--pipeline",
            "--from",
            "a@example.net",
            "--to",
            "bob@example.org,carol@example.org",
            "--data",
            &data,
        ],
    );

    assert!(transcript.contains("PIPELINING"), "{transcript}");
    for user in ["bob", "carol"] {
        let stored = inbox(&host, user);
        assert_eq!(stored.len(), 1, "{user}");
        assert_intact(
            &stored[0],
            &crlf_appended_form(&file),
            "swaks pipelining",
        );
    }
}

#[test]
fn swaks_auth_plain_and_login() {
    let host = Setup::mode("submission").start();
    let file = corpus("002-utf8-qp-subject.eml");
    let data = format!("@{}", file.display());

    for mechanism in ["PLAIN", "LOGIN"] {
        let transcript = swaks(
            &host,
            &[
                "--auth",
                mechanism,
                "--auth-user",
                "alice@example.org",
                "--auth-password",
                PASSWORD,
                "--from",
                "sales@example.org",
                "--to",
                "bob@example.org",
                "--data",
                &data,
            ],
        );
        assert!(transcript.contains("235 2.7.0"), "{transcript}");
    }

    let stored = inbox(&host, "bob");
    assert_eq!(stored.len(), 2);
    for message in &stored {
        let received =
            assert_intact(message, &crlf_appended_form(&file), "swaks auth");
        assert!(received.contains("authenticated as alice@example.org"));
    }
}

#[test]
fn swaks_lmtp_delivers_per_recipient() {
    let host = Setup::mode("lmtp").start();
    let file = corpus("001-plain-ascii.eml");
    let data = format!("@{}", file.display());

    let transcript = swaks(
        &host,
        &[
            "--protocol",
            "LMTP",
            "--from",
            "a@example.net",
            "--to",
            "bob@example.org,carol@example.org",
            "--data",
            &data,
        ],
    );

    assert!(
        transcript.contains("<bob@example.org> Delivered"),
        "{transcript}"
    );
    assert!(
        transcript.contains("<carol@example.org> Delivered"),
        "{transcript}"
    );
    for user in ["bob", "carol"] {
        let stored = inbox(&host, user);
        assert_eq!(stored.len(), 1, "{user}");
        let received =
            assert_intact(&stored[0], &crlf_appended_form(&file), "swaks lmtp");
        assert!(received.contains("with LMTP"), "{received}");
    }
}

#[test]
fn lettre_submission_delivers_intact() {
    use lettre::address::Envelope;
    use lettre::transport::smtp::authentication::{Credentials, Mechanism};
    use lettre::{SmtpTransport, Transport};

    let host = Setup::mode("submission").start();
    let addr = host.addr("smtp");
    let transport = SmtpTransport::builder_dangerous(addr.ip().to_string())
        .port(addr.port())
        .credentials(Credentials::new(
            "alice@example.org".into(),
            PASSWORD.into(),
        ))
        .authentication(vec![Mechanism::Login])
        .build();
    let envelope = Envelope::new(
        Some("alice@example.org".parse().unwrap()),
        vec![
            "bob@example.org".parse().unwrap(),
            "carol@example.org".parse().unwrap(),
        ],
    )
    .unwrap();

    let files = [
        corpus("003-utf8-8bit-body.eml"),
        corpus("016-big-text-2mb.eml"),
    ];
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        transport.send_raw(&envelope, &bytes).expect("lettre send");
    }

    for user in ["bob", "carol"] {
        let stored = inbox(&host, user);
        assert_eq!(stored.len(), files.len(), "{user}");
        for file in &files {
            let original = crlf_appended_form(file);
            let found = stored
                .iter()
                .any(|message| split_trace(message).1 == original);
            assert!(found, "{} not stored intact for {user}", file.display());
        }
        // Two recipients: neither is named in the trace header.
        let (received, _) = split_trace(&stored[0]);
        assert!(!received.contains(" for <"), "{received}");
    }
}

/// BDAT with the binary-attachment message in uneven chunks, from a raw
/// client (none of the client tools above speaks CHUNKING).
#[test]
fn bdat_chunks_deliver_intact() {
    let host = Setup::mode("reception").start();
    let file = corpus("005-attachment-binary.eml");
    let message = std::fs::read(&file).unwrap();
    let mut client = Client::connect(host.addr("smtp"));
    client.expect("220 ");
    client.send_line("EHLO client.example");
    while client.line().starts_with("250-") {}

    client.send_line("MAIL FROM:<a@example.net> BODY=8BITMIME");
    client.expect("250 2.1.0");
    client.send_line("RCPT TO:<bob@example.org>");
    client.expect("250 2.1.5");

    // Chunk edges land inside CRLF pairs on purpose.
    let mut rest = &message[..];
    let mut sizes = [1usize, 4095, 7777].iter().cycle();
    while !rest.is_empty() {
        let size = (*sizes.next().unwrap()).min(rest.len());
        let last = size == rest.len();
        let suffix = if last { " LAST" } else { "" };
        client.send(format!("BDAT {size}{suffix}\r\n").as_bytes());
        client.send(&rest[..size]);
        client.expect("250 2.0.0");
        rest = &rest[size..];
    }
    client.send_line("QUIT");
    client.expect("221");

    let stored = inbox(&host, "bob");
    assert_eq!(stored.len(), 1);
    assert_intact(&stored[0], &message, "BDAT");
}

#[test]
fn command_line_too_long_is_refused_and_session_resyncs() {
    let host = Setup::mode("reception").start();
    let mut client = Client::connect(host.addr("smtp"));
    client.expect("220 ");

    // Just over RFC 5321's 512 bytes with CRLF.
    client.send_line(&format!("NOOP {}", "x".repeat(506)));
    client.expect("500 5.5.2 Line too long");
    client.send_line(&format!("NOOP {}", "x".repeat(505)));
    client.expect("250 2.0.0");

    // Past even the AUTH limit: the rest of the line is skipped, and the
    // command pipelined behind it still runs.
    client.send(format!("NOOP {}\r\nNOOP\r\n", "y".repeat(20_000)).as_bytes());
    client.expect("500 5.5.2 Line too long");
    client.expect("250 2.0.0");

    // AUTH lines may be longer than 512 (RFC 4954 4), but reception
    // refuses AUTH itself.
    client.send_line(&format!("AUTH PLAIN {}", "A".repeat(1000)));
    client.expect("503 5.5.1");
    client.send_line("QUIT");
    client.expect("221");
}

#[test]
fn auth_response_too_long_is_refused() {
    let host = Setup::mode("submission").start();
    let mut client = Client::connect(host.addr("smtp"));
    client.expect("220 ");
    client.send_line("EHLO client.example");
    while client.line().starts_with("250-") {}

    // RFC 4954 4 asks for 12288 octets; past that the exchange fails
    // without reaching the host's password check.
    client.send_line("AUTH PLAIN");
    client.expect("334");
    client.send_line(&"A".repeat(13_000));
    client.expect("500 5.5.6");
    client.send_line("NOOP");
    client.expect("250 2.0.0");

    // A long but legal initial response is still decoded.
    client.send_line(&format!("AUTH PLAIN {}", "QUFB".repeat(1000)));
    client.expect("501 5.5.2");
    client.send_line("QUIT");
    client.expect("221");
}

#[test]
fn shutdown_says_421() {
    let mut host = Setup::mode("reception").start();
    let mut client = Client::connect(host.addr("smtp"));
    client.expect("220 ");
    client.send_line("EHLO client.example");
    while client.line().starts_with("250-") {}

    host.signal(libc::SIGTERM);

    client.expect("421 4.3.2");
    assert!(client.line().is_empty(), "connection not closed");
    host.wait_exit(Duration::from_secs(20));
}

#[test]
fn bad_mode_setting_refuses_service() {
    let host = Setup::mode("open-relay").start();
    let mut client = Client::connect(host.addr("smtp"));
    client.expect("421 4.3.5");
    assert!(client.line().is_empty(), "connection not closed");
}
