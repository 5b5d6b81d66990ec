//! TLS in the host, through the echo plugin's `STARTTLS` command and
//! implicit-TLS listeners, with Python's ssl module and `openssl s_client`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mailhost_tests::{Client, Host, echo_listener, mailhost, plugin, python};

/// A host with the echo plugin on a STARTTLS listener (`starttls`) and an
/// implicit-TLS one (`implicit`), using a self-signed certificate made by
/// `mailhost self-signed-cert`. `extra` goes into both listeners; `tls`
/// into the `[tls]` table (such as `[[tls.sni]]` entries).
fn tls_host(extra: &str, tls: &str) -> Host {
    let dir = tempfile::tempdir().unwrap();
    let mut config = format!(
        r#"
[tls]
certificate = "{dir}/tls/localhost.crt"
key = "{dir}/tls/localhost.key"
{tls}
"#,
        dir = dir.path().display()
    );
    for (name, mode) in [("starttls", "starttls"), ("implicit", "implicit")] {
        let keys = format!("tls = \"{mode}\"\nhandshake-timeout = 1\n{extra}");
        config.push_str(&echo_listener(name, &keys));
    }
    std::fs::write(dir.path().join("mailhost.toml"), &config).unwrap();

    let config_path = dir.path().join("mailhost.toml");
    let made = mailhost(
        &[
            "self-signed-cert",
            "--config",
            config_path.to_str().unwrap(),
        ],
        b"",
    );
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    Host::start_in(dir, &config)
}

/// Python: implicit TLS (`mode` "implicit") or STARTTLS ("starttls") to
/// the echo plugin; sends INFO and prints the reply, then the SHA-256 of
/// the server certificate.
const PY_ECHO_TLS: &str = r#"
import hashlib, socket, ssl, sys
host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
raw = socket.create_connection((host, port), timeout=10)
if mode == "starttls":
    f = raw.makefile("rb")
    assert f.readline() == b"OK echo ready\r\n"
    raw.sendall(b"STARTTLS\r\n")
    assert f.readline() == b"OK begin TLS\r\n"
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    f = s.makefile("rb")
else:
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    f = s.makefile("rb")
    assert f.readline() == b"OK echo ready\r\n"
s.sendall(b"INFO\r\n")
print(f.readline().decode().strip())
print(hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest())
s.sendall(b"QUIT\r\n")
assert f.readline() == b"BYE\r\n"
"#;

fn run_python_echo(host: &Host, listener: &str) -> (String, String) {
    let addr = host.addr(listener);
    let port = addr.port().to_string();
    let mode = listener;
    let output = python(PY_ECHO_TLS, &["127.0.0.1", &port, mode]);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "python {mode}: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut lines = stdout.lines();
    (
        lines.next().unwrap().to_owned(),
        lines.next().unwrap().to_owned(),
    )
}

/// SHA-256 of the DER of the first certificate in a PEM file.
fn cert_fingerprint(pem: &Path) -> String {
    let output = Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(pem)
        .output()
        .expect("run openssl x509");
    assert!(output.status.success());
    let digest = Command::new("python3")
        .args([
            "-c",
            "import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(&output.stdout)?;
            child.wait_with_output()
        })
        .unwrap();
    String::from_utf8_lossy(&digest.stdout).trim().to_owned()
}

/// `openssl s_client` against `port` with extra flags; returns stdout
/// and whether it completed a handshake.
fn s_client(port: u16, flags: &[&str], input: &[u8]) -> (String, bool) {
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-ign_eof",
        ])
        .args(flags)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl s_client");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let handshake =
        stdout.contains("Cipher is") && !stdout.contains("Cipher is (NONE)");
    (stdout, handshake)
}

fn generate_cert(
    dir: &Path,
    name: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", &format!("/CN={name}")])
        .args(["-addext", &format!("subjectAltName=DNS:{name}")])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    (cert, key)
}

#[test]
fn implicit_tls_with_python_ssl_and_openssl_s_client() {
    let host = tls_host("", "");
    let served = cert_fingerprint(&host.dir().join("tls/localhost.crt"));

    let (info, fingerprint) = run_python_echo(&host, "implicit");
    assert!(info.starts_with("OK listener=implicit"), "{info}");
    assert!(info.contains("tls=TLSv1.3"), "{info}");
    assert!(info.contains("sni=localhost"), "{info}");
    assert_eq!(fingerprint, served);

    let port = host.addr("implicit").port();
    // With -quiet s_client prints no session summary; the echoed lines,
    // which only a completed handshake can carry, are the proof.
    let (out, _) = s_client(port, &["-quiet"], b"hello over tls\r\nQUIT\r\n");
    assert!(out.contains("OK echo ready"), "{out}");
    assert!(out.contains("ECHO hello over tls"), "{out}");
    assert!(out.contains("BYE"), "{out}");
}

#[test]
fn tls_1_2_and_1_3_only() {
    let host = tls_host("", "");
    let port = host.addr("implicit").port();

    let (out, ok) = s_client(port, &["-tls1_2"], b"QUIT\r\n");
    assert!(ok, "TLS 1.2 refused: {out}");
    assert!(out.contains("TLSv1.2"), "{out}");
    let (out, ok) = s_client(port, &["-tls1_3"], b"QUIT\r\n");
    assert!(ok, "TLS 1.3 refused: {out}");
    let (out, ok) =
        s_client(port, &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"], b"");
    assert!(!ok, "TLS 1.1 accepted: {out}");
}

#[test]
fn starttls_upgrades_in_place_and_reports_the_tls_facts() {
    let host = tls_host("plaintext-auth = \"never\"", "");

    // Before the upgrade the session is plaintext and may not take
    // passwords; after it, it is TLS and may.
    let mut client = Client::connect(host.addr("starttls"));
    client.expect("OK echo ready");
    client.send_line("INFO");
    let info = client.line();
    assert!(info.contains("tls=none"), "{info}");
    assert!(info.contains("plaintext-auth=no"), "{info}");

    let (info, _) = run_python_echo(&host, "starttls");
    assert!(info.contains("tls=TLSv1.3"), "{info}");
    assert!(info.contains("cipher=TLS13_"), "{info}");
    assert!(info.contains("plaintext-auth=yes"), "{info}");
}

/// Python: STARTTLS and NOOP in one write; the NOOP must never be
/// answered, in plaintext or after the handshake.
const PY_INJECTION: &str = r#"
import socket, ssl, sys, time
raw = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
greeting = b""
while not greeting.endswith(b"\r\n"):
    greeting += raw.recv(1)
assert greeting == b"OK echo ready\r\n", greeting
raw.sendall(b"STARTTLS\r\nNOOP\r\n")
time.sleep(0.3)
plain = raw.recv(4096)
assert plain == b"OK begin TLS\r\n", plain
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = ctx.wrap_socket(raw, server_hostname="localhost")
s.sendall(b"INFO\r\n")
f = s.makefile("rb")
first = f.readline()
print(first.decode().strip())
s.sendall(b"STARTTLS\r\n")
print(f.readline().decode().strip())
print(f.readline().decode().strip())
"#;

#[test]
fn starttls_injection_pipelined_noop_is_never_answered() {
    let host = tls_host("", "");
    let port = host.addr("starttls").port().to_string();

    let output = python(PY_INJECTION, &[&port]);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("OK listener=starttls"), "{stdout}");
    assert!(
        !stdout.contains("NOOP"),
        "injected command answered: {stdout}"
    );

    // A second STARTTLS inside TLS is refused.
    assert_eq!(lines[1], "OK begin TLS");
    assert_eq!(lines[2], "ERR TLS not available");
}

#[test]
fn plaintext_and_stalled_handshakes_on_implicit_tls_are_dropped() {
    let host = tls_host("", "");
    let addr = host.addr("implicit");

    // A client talking plaintext to the TLS port.
    let mut plaintext = TcpStream::connect(addr).unwrap();
    plaintext
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    plaintext.write_all(b"HELO example.org\r\n").unwrap();

    // A client that starts a handshake record and stalls.
    let started = Instant::now();
    let mut stalled = TcpStream::connect(addr).unwrap();
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();

    // Meanwhile a proper session is served.
    let (info, _) = run_python_echo(&host, "implicit");
    assert!(info.starts_with("OK listener=implicit"), "{info}");

    for (what, stream) in
        [("plaintext", &mut plaintext), ("stalled", &mut stalled)]
    {
        let mut buf = [0u8; 1024];
        let mut got = Vec::new();
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(err) => panic!("{what}: not dropped: {err}"),
            }
        }
        assert!(
            !String::from_utf8_lossy(&got).contains("echo ready"),
            "{what}: a plugin greeted a client that never finished TLS"
        );
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "dropped early: {waited:?}"
    );
    assert!(waited < Duration::from_secs(8), "dropped late: {waited:?}");
    assert!(
        host.wait_for_log("TLS handshake timed out", Duration::from_secs(5)),
        "{}",
        host.log()
    );
}

#[test]
fn sni_chooses_among_certificates() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = generate_cert(certs.path(), "mail.example.org");
    let top = format!(
        "[[tls.sni]]\nnames = [\"mail.example.org\"]\ncertificate = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    );
    let host = tls_host("", &top);
    let port = host.addr("implicit").port();

    let (out, ok) =
        s_client(port, &["-servername", "mail.example.org"], b"QUIT\r\n");
    assert!(ok, "{out}");
    assert!(
        out.contains("CN=mail.example.org")
            || out.contains("CN = mail.example.org"),
        "{out}"
    );

    let (out, ok) =
        s_client(port, &["-servername", "other.example.org"], b"QUIT\r\n");
    assert!(ok, "{out}");
    assert!(!out.contains("mail.example.org"), "{out}");
}

#[test]
fn sighup_reloads_certificates_without_dropping_sessions() {
    let host = tls_host("", "");
    let before = cert_fingerprint(&host.dir().join("tls/localhost.crt"));

    // A session that stays open across the reload.
    let mut open = Client::connect(host.addr("starttls"));
    open.expect("OK echo ready");

    let (cert, key) = generate_cert(host.dir(), "reloaded");
    std::fs::rename(&cert, host.dir().join("tls/localhost.crt")).unwrap();
    std::fs::rename(&key, host.dir().join("tls/localhost.key")).unwrap();
    let after = cert_fingerprint(&host.dir().join("tls/localhost.crt"));
    assert_ne!(before, after);

    host.signal(libc::SIGHUP);
    assert!(
        host.wait_for_log("certificates reloaded", Duration::from_secs(10))
    );

    let (_, fingerprint) = run_python_echo(&host, "implicit");
    assert_eq!(
        fingerprint, after,
        "new sessions must get the new certificate"
    );
    open.send_line("still here");
    assert_eq!(open.line(), "ECHO still here");
}

#[test]
fn check_names_a_missing_or_mismatched_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_a, _) = generate_cert(dir.path(), "a.example.org");
    let (_, key_b) = generate_cert(dir.path(), "b.example.org");
    let listener = |cert: &Path, key: &Path| {
        format!(
            r#"
[[listener]]
name = "tls"
address = "127.0.0.1:0"
role = "session"
plugin = "{}"
tls = "implicit"
certificate = "{}"
key = "{}"
"#,
            plugin("echo").display(),
            cert.display(),
            key.display()
        )
    };

    let missing = dir.path().join("missing.crt");
    for (config, needle) in [
        (listener(&missing, &key_b), missing.display().to_string()),
        (listener(&cert_a, &key_b), "does not match key".to_owned()),
    ] {
        let path = dir.path().join("mailhost.toml");
        std::fs::write(&path, config).unwrap();
        let output =
            mailhost(&["check", "--config", path.to_str().unwrap()], b"");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success());
        assert!(stderr.contains(&needle), "{needle:?} not in {stderr}");
    }
}
