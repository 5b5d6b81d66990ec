//! Test harness: start the real `mailhost` binary with a config of the
//! test's own, learn the ports it bound, and talk to it over loopback.
//!
//! The binary comes from `MAILHOST_BIN` or the workspace's
//! `target/debug/mailhost`; plugins from `MAILHOST_PLUGIN_DIR` or
//! `target/wasm32-wasip2/release`. `just test` builds both first.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a host may take from spawn to "ready" before a test fails.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Default read timeout of a [`Client`].
const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Path of the `mailhost` binary under test.
pub fn bin() -> PathBuf {
    match std::env::var_os("MAILHOST_BIN") {
        Some(path) => PathBuf::from(path),
        None => workspace_root().join("target/debug/mailhost"),
    }
}

/// A `[[listener]]` table for the echo plugin on a free loopback port,
/// with `extra` keys (TOML lines) after the standard ones.
pub fn echo_listener(name: &str, extra: &str) -> String {
    format!(
        r#"
[[listener]]
name = "{name}"
address = "127.0.0.1:0"
role = "session"
plugin = "{plugin}"
{extra}
"#,
        plugin = plugin("echo").display()
    )
}

/// Path of a built plugin: `plugin("echo")` is `mailhost_echo.wasm`.
pub fn plugin(name: &str) -> PathBuf {
    let dir = match std::env::var_os("MAILHOST_PLUGIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => workspace_root().join("target/wasm32-wasip2/release"),
    };
    dir.join(format!("mailhost_{name}.wasm"))
}

/// Path of a message in the shared test corpus, such as
/// `corpus("001-plain-ascii.eml")`.
pub fn corpus(name: &str) -> PathBuf {
    let dir = match std::env::var_os("MAILHOST_CORPUS") {
        Some(dir) => PathBuf::from(dir),
        None => workspace_root().join("../shared/corpus"),
    };
    dir.join(name)
}

/// Run `mailhost ARGS` to completion with `stdin` as its input.
pub fn mailhost(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mailhost");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().expect("wait for mailhost")
}

/// Run a Python 3 script with arguments; the script is passed on `-c`.
pub fn python(script: &str, args: &[&str]) -> Output {
    Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("spawn python3")
}

/// A running host. Killed when dropped.
pub struct Host {
    child: Option<Child>,
    dir: tempfile::TempDir,
    addrs: HashMap<String, SocketAddr>,
    log: Arc<Mutex<String>>,
}

impl Host {
    /// Write `config` as `mailhost.toml` in a new temporary directory
    /// and start `mailhost run` on it. `{dir}` in the config stands for
    /// that directory. Panics with the host's log if it does not become
    /// ready.
    pub fn start(config: &str) -> Host {
        Host::start_in(tempfile::tempdir().unwrap(), config)
    }

    /// Like [`Host::start`] in a directory the test prepared (accounts,
    /// certificates, a Maildir to reuse).
    pub fn start_in(dir: tempfile::TempDir, config: &str) -> Host {
        match Host::try_start_in(dir, config) {
            Ok(host) => host,
            Err(log) => panic!("mailhost did not start:\n{log}"),
        }
    }

    /// Start, returning the log when the host exits before it is ready.
    pub fn try_start_in(
        dir: tempfile::TempDir,
        config: &str,
    ) -> Result<Host, String> {
        let config = config.replace("{dir}", dir.path().to_str().unwrap());
        let config_path = dir.path().join("mailhost.toml");
        std::fs::write(&config_path, config).unwrap();

        let mut child = Command::new(bin())
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .env("RUST_LOG", "info,mailhost=debug")
            .env("NO_COLOR", "1")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mailhost run");

        let log = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }

        let mut host = Host {
            child: Some(child),
            dir,
            addrs: HashMap::new(),
            log,
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let text = host.log();
            if text.contains("mailhost ready") {
                host.addrs = parse_listening(&text);
                return Ok(host);
            }
            let exited = host.child.as_mut().unwrap().try_wait().unwrap();
            if exited.is_some() || Instant::now() > deadline {
                std::thread::sleep(Duration::from_millis(100));
                return Err(host.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Where listener `name` accepts connections.
    pub fn addr(&self, name: &str) -> SocketAddr {
        match self.addrs.get(name) {
            Some(addr) => *addr,
            None => panic!("no listener {name:?}; log:\n{}", self.log()),
        }
    }

    /// The host's data and config directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything the host logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Wait until the log contains `needle`; false after `timeout`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The host's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Send a signal (`libc::SIGTERM`, `libc::SIGHUP`, ...) to the host.
    pub fn signal(&self, signal: i32) {
        let pid = self.pid() as i32;
        // SAFETY: kill(2) on the pid of a child this harness owns.
        unsafe { libc::kill(pid, signal) };
    }

    /// Wait for the host to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut()?.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Kill the host at once (SIGKILL) and reap it, keeping the data
    /// directory for a restart with [`Host::restart`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kill the host and start it again on the same directory and config.
    pub fn restart(mut self) -> Host {
        self.kill();
        let dir =
            std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        let config =
            std::fs::read_to_string(dir.path().join("mailhost.toml")).unwrap();
        Host::start_in(dir, &config)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Pick `listener=NAME address=ADDR` pairs out of "listening" log lines.
fn parse_listening(log: &str) -> HashMap<String, SocketAddr> {
    let mut addrs = HashMap::new();
    for line in log.lines().filter(|line| line.contains("listening")) {
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|word| word.strip_prefix(key))
                .map(|value| value.trim_matches('"').to_owned())
        };
        if let (Some(name), Some(addr)) =
            (field("listener="), field("address="))
            && let Ok(addr) = addr.parse()
        {
            addrs.insert(name, addr);
        }
    }
    addrs
}

/// A line-oriented client for transcript tests.
pub struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        Client {
            reader: BufReader::new(stream),
        }
    }

    /// The next line without its CRLF; empty once the server closed.
    pub fn line(&mut self) -> String {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(_) => line.trim_end_matches(['\r', '\n']).to_owned(),
            Err(err) => panic!("reading a line: {err}"),
        }
    }

    /// The next line, or the I/O error (such as a read timeout).
    pub fn try_line(&mut self) -> std::io::Result<String> {
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }

    /// Send raw bytes in one write.
    pub fn send(&mut self, data: &[u8]) {
        self.reader.get_mut().write_all(data).expect("send");
    }

    /// Send `line` followed by CRLF.
    pub fn send_line(&mut self, line: &str) {
        self.send(format!("{line}\r\n").as_bytes());
    }

    /// Read a line and assert it starts with `prefix`; returns it.
    pub fn expect(&mut self, prefix: &str) -> String {
        let line = self.line();
        assert!(
            line.starts_with(prefix),
            "expected {prefix:?}, got {line:?}"
        );
        line
    }

    /// Set the read timeout for the following reads.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.reader
            .get_ref()
            .set_read_timeout(Some(timeout))
            .unwrap();
    }

    /// Read until the server closes; returns everything read.
    pub fn read_to_end(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = self.reader.read_to_end(&mut out);
        out
    }

    /// The socket, for tests that need it raw.
    pub fn stream(&mut self) -> &mut TcpStream {
        self.reader.get_mut()
    }
}
