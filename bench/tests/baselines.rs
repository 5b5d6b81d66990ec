//! The benchmark's own parts over real loopback sockets: the baselines
//! must speak the echo protocol correctly, or the figures compare
//! nothing, and the load generator must count what fails.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Longest a test waits for one reply.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

fn bench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mailhost-bench"))
}

/// A baseline server, killed when dropped.
struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `mailhost-bench ARGS` and learn the address it announces.
fn start(args: &[&str]) -> Server {
    let mut child = bench()
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn mailhost-bench");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening address=")
        .unwrap_or_else(|| panic!("no address announced: `{line}`"))
        .to_owned();
    Server { child, addr }
}

/// The `key=value` fields of the first output line starting `prefix`.
fn fields(output: &str, prefix: &str) -> Vec<(String, String)> {
    let line = output
        .lines()
        .find(|line| line.starts_with(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{output}"));
    line.split_whitespace()
        .filter_map(|field| field.split_once('='))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

fn field(fields: &[(String, String)], key: &str) -> u64 {
    fields
        .iter()
        .find(|(name, _)| name == key)
        .unwrap_or_else(|| panic!("no `{key}` in {fields:?}"))
        .1
        .parse()
        .unwrap()
}

/// Run `load` for about a second and return its output.
fn load(addr: &str, extra: &[&str]) -> String {
    let output = bench()
        .args([
            "load",
            "--addr",
            addr,
            "-c",
            "4",
            "-d",
            "1",
            "--timeout-ms",
            "3000",
        ])
        .args(extra)
        .output()
        .expect("run load");
    assert!(output.status.success(), "load failed: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// Load `addr` and insist on sessions done and no error.
fn assert_clean_load(addr: &str, extra: &[&str]) {
    let output = load(addr, extra);
    let result = fields(&output, "load ");
    assert!(field(&result, "completed") > 0, "{output}");
    assert_eq!(field(&result, "errors"), 0, "{output}");
}

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir()
            .join(format!("mailhost-bench-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Write a self-signed certificate for localhost; returns (cert, key).
fn self_signed(dir: &Path, name: &str) -> (String, String) {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let generated = rcgen::generate_simple_self_signed(names).unwrap();
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.key_pair.serialize_pem()).unwrap();
    (
        cert.to_str().unwrap().to_owned(),
        key.to_str().unwrap().to_owned(),
    )
}

fn connect(addr: &str) -> TcpStream {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    tcp
}

fn read_line(reader: &mut BufReader<TcpStream>) -> String {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    line
}

#[test]
fn native_echo_serves_sessions_under_load() {
    let server = start(&["native-echo"]);
    assert_clean_load(&server.addr, &[]);
}

#[test]
fn fork_echo_serves_sessions_under_load() {
    let server = start(&["fork-echo"]);
    assert_clean_load(&server.addr, &[]);
}

#[test]
fn native_echo_serves_sessions_over_tls_with_the_trusted_cert() {
    let dir = TempDir::new("tls");
    let (cert, key) = self_signed(&dir.0, "server");
    let server = start(&["native-echo", "--certificate", &cert, "--key", &key]);
    assert_clean_load(&server.addr, &["--tls", &cert]);
}

#[test]
fn tls_client_refuses_a_server_with_an_untrusted_cert() {
    let dir = TempDir::new("untrusted");
    let (cert, key) = self_signed(&dir.0, "server");
    let (other, _) = self_signed(&dir.0, "other");
    let server = start(&["native-echo", "--certificate", &cert, "--key", &key]);

    let output = load(&server.addr, &["--tls", &other]);
    let result = fields(&output, "load ");
    assert_eq!(field(&result, "completed"), 0, "{output}");
    assert!(field(&result, "errors") > 0, "{output}");
}

#[test]
fn load_counts_connect_errors_when_nothing_listens() {
    // A port that was free a moment ago and has no listener now.
    let port =
        String::from_utf8(bench().arg("free-port").output().unwrap().stdout)
            .unwrap();
    let addr = format!("127.0.0.1:{}", port.trim());

    let output = load(&addr, &[]);
    let result = fields(&output, "load ");
    assert_eq!(field(&result, "completed"), 0, "{output}");
    assert!(field(&result, "errors") > 0, "{output}");
    assert!(output.contains("error=connect"), "{output}");
}

#[test]
fn fork_echo_refuses_connections_over_the_child_cap() {
    let server = start(&["fork-echo", "--max-children", "1"]);

    // The first client holds the only child.
    let first = connect(&server.addr);
    let mut first = BufReader::new(first);
    assert_eq!(read_line(&mut first), "OK echo ready\r\n");

    let mut second = BufReader::new(connect(&server.addr));
    assert_eq!(read_line(&mut second), "BUSY too many connections\r\n");
}

#[test]
fn fork_echo_answers_an_overlong_line_and_keeps_the_session() {
    let server = start(&["fork-echo"]);
    let mut tcp = connect(&server.addr);
    let mut reader = BufReader::new(tcp.try_clone().unwrap());
    assert_eq!(read_line(&mut reader), "OK echo ready\r\n");

    let mut flood = vec![b'x'; 100_000];
    flood.extend_from_slice(b"\r\nping\r\nQUIT\r\n");
    tcp.write_all(&flood).unwrap();
    assert_eq!(read_line(&mut reader), "ERR line too long\r\n");
    assert_eq!(read_line(&mut reader), "ECHO ping\r\n");
    assert_eq!(read_line(&mut reader), "BYE\r\n");
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "data after BYE: {rest:?}");
}

#[test]
fn native_echo_answers_an_overlong_line_and_keeps_the_session() {
    let server = start(&["native-echo"]);
    let mut tcp = connect(&server.addr);
    let mut reader = BufReader::new(tcp.try_clone().unwrap());
    assert_eq!(read_line(&mut reader), "OK echo ready\r\n");

    let mut flood = vec![b'x'; 100_000];
    flood.extend_from_slice(b"\r\nping\r\nQUIT\r\n");
    tcp.write_all(&flood).unwrap();
    assert_eq!(read_line(&mut reader), "ERR line too long\r\n");
    assert_eq!(read_line(&mut reader), "ECHO ping\r\n");
    assert_eq!(read_line(&mut reader), "BYE\r\n");
}

/// Zombie children of `parent`, from the state and parent fields of
/// every `/proc/PID/stat`.
fn zombies_of(parent: u32) -> usize {
    let mut count = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat"))
        else {
            continue;
        };
        // The command name may hold spaces; the fields after its `)` do
        // not: state, then the parent pid.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let ppid = fields.next().and_then(|ppid| ppid.parse::<u32>().ok());
        if state == Some("Z") && ppid == Some(parent) {
            count += 1;
        }
    }
    count
}

#[test]
fn fork_echo_reaps_its_children() {
    let server = start(&["fork-echo"]);
    assert_clean_load(&server.addr, &[]);

    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(zombies_of(server.child.id()), 0);
}

#[test]
fn idle_hold_opens_and_holds_every_connection() {
    let server = start(&["native-echo"]);
    let output = bench()
        .args([
            "idle-hold",
            "--addr",
            &server.addr,
            "-n",
            "200",
            "--hold",
            "1",
        ])
        .args(["--sources", "3"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();

    let opened = fields(&stdout, "idle-hold opened=");
    assert_eq!(field(&opened, "opened"), 200, "{stdout}");
    assert_eq!(field(&opened, "failed"), 0, "{stdout}");
    let released = fields(&stdout, "idle-hold released=");
    assert_eq!(field(&released, "closed_by_server"), 0, "{stdout}");
}

#[test]
fn median_and_ratio_print_what_run_sh_reads() {
    let median = bench().args(["median", "3", "1", "2"]).output().unwrap();
    assert_eq!(String::from_utf8(median.stdout).unwrap(), "2\n");

    let ratio = bench().args(["ratio", "1", "0"]).output().unwrap();
    assert_eq!(String::from_utf8(ratio.stdout).unwrap(), "n/a\n");
}
