//! `mailhost plugin test PLUGIN TRANSCRIPT`: run one session of a plugin
//! against a `C:`/`S:` transcript, through an in-process pipe instead of a
//! socket, with accounts and mail in a temporary directory.
//!
//! The session runs exactly as on a listener: the same engine, pool,
//! limits, CPU slice, idle timeout and store glue; only the socket is
//! replaced. The format is described in `docs/plugins.md`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::config::{Config, Role};
use crate::conn::{ConnIo, Stream};
use crate::limits::Counter;
use crate::plugin::{self, Linkers};
use crate::server::{self, Listener};
use crate::session::{self, Outcome};

/// How long an `S:` line waits for the plugin's reply, unless the
/// transcript says otherwise with `@timeout`.
const DEFAULT_REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the plugin may take to return once the transcript is done
/// and the client side of the pipe is closed.
const SESSION_END_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes the pipe holds in each direction before a writer waits, like a
/// socket buffer.
const PIPE_CAPACITY: usize = 256 * 1024;

/// The longest reply line the runner reads; longer is a failure.
const MAX_REPLY_LINE: u64 = 1 << 20;

/// How many exchanged lines a failure report shows.
const REPORT_CONTEXT_LINES: usize = 20;

/// Most files one `@include` chain may pull in, so a loop is an error.
const MAX_INCLUDES: usize = 16;

/// The client's address as the plugin sees it: loopback, so
/// `plaintext-auth = "loopback"` allows passwords as on a local socket.
const PEER: ([u8; 4], u16) = ([127, 0, 0, 1], 49152);

/// What `mailhost plugin test` was asked to do.
pub struct Options {
    pub plugin: PathBuf,
    pub transcript: PathBuf,
    /// The listener role; `None` picks the narrowest role that accepts
    /// the plugin.
    pub role: Option<Role>,
    /// Where compiled plugins are cached, between transcripts and runs.
    pub cache: PathBuf,
    /// Print every line exchanged as it happens.
    pub verbose: bool,
}

/// One thing the client does or expects, with its transcript line.
#[derive(Debug)]
struct Step {
    at: String,
    action: Action,
}

#[derive(Debug, PartialEq)]
enum Action {
    /// Bytes to send; consecutive sends go out in one write.
    Send(Vec<u8>),
    /// Read a line that must start with the prefix (with `exact`, be
    /// exactly it). With `skip`, lines that do not match are passed over
    /// until one does.
    Expect {
        prefix: String,
        exact: bool,
        skip: bool,
    },
    /// The plugin must close the connection.
    ExpectClose,
}

/// A parsed transcript.
#[derive(Debug, Default)]
struct Transcript {
    role: Option<Role>,
    listener: Vec<String>,
    settings: Vec<String>,
    users: Vec<(String, String)>,
    aliases: Vec<String>,
    /// `(account, file, folder)` appended before the session starts.
    messages: Vec<(String, PathBuf, String)>,
    /// `(account, folder, count)` checked after the session.
    expect_messages: Vec<(String, String, u32)>,
    expect_trap: bool,
    reply_timeout: Option<Duration>,
    steps: Vec<Step>,
}

impl Transcript {
    fn load(path: &Path) -> anyhow::Result<Transcript> {
        let mut transcript = Transcript::default();
        transcript.read_file(path, 0)?;
        Ok(transcript)
    }

    fn read_file(&mut self, path: &Path, depth: usize) -> anyhow::Result<()> {
        if depth > MAX_INCLUDES {
            bail!("`{}`: includes nest too deep", path.display());
        }
        let text = std::fs::read_to_string(path).with_context(|| {
            format!("failed to read transcript `{}`", path.display())
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let name = path.file_name().unwrap_or_default().to_string_lossy();

        for (index, line) in text.lines().enumerate() {
            let at = format!("{name}:{}", index + 1);
            self.read_line(line, &at, dir, depth)
                .with_context(|| format!("{}:{}", path.display(), index + 1))?;
        }
        Ok(())
    }

    fn read_line(
        &mut self,
        line: &str,
        at: &str,
        dir: &Path,
        depth: usize,
    ) -> anyhow::Result<()> {
        let step = |action| Step {
            at: at.to_owned(),
            action,
        };

        if line.is_empty() || line.starts_with('#') {
            return Ok(());
        }
        if let Some(command) = line.strip_prefix("C:") {
            let mut bytes = command.strip_prefix(' ').unwrap_or("").as_bytes();
            bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
            let mut send = bytes.to_vec();
            send.extend_from_slice(b"\r\n");
            self.steps.push(step(Action::Send(send)));
        } else if let Some(raw) = line.strip_prefix("R: ") {
            self.steps.push(step(Action::Send(unescape(raw)?)));
        } else if line == "S: <closed>" {
            self.steps.push(step(Action::ExpectClose));
        } else if let Some(prefix) = line.strip_prefix("S:") {
            let prefix = prefix.strip_prefix(' ').unwrap_or(prefix);
            self.steps.push(step(Action::Expect {
                prefix: prefix.to_owned(),
                exact: false,
                skip: false,
            }));
        } else if let Some(whole) = line.strip_prefix("S=") {
            let whole = whole.strip_prefix(' ').unwrap_or(whole);
            self.steps.push(step(Action::Expect {
                prefix: whole.to_owned(),
                exact: true,
                skip: false,
            }));
        } else if let Some(prefix) = line.strip_prefix("S+ ") {
            self.steps.push(step(Action::Expect {
                prefix: prefix.to_owned(),
                exact: false,
                skip: true,
            }));
        } else if let Some(directive) = line.strip_prefix('@') {
            self.read_directive(directive, dir, depth)?;
        } else {
            bail!(
                "unknown line {line:?}: lines start with C:, R:, S:, S=, S+, \
                 @ or #"
            );
        }
        Ok(())
    }

    fn read_directive(
        &mut self,
        directive: &str,
        dir: &Path,
        depth: usize,
    ) -> anyhow::Result<()> {
        let (keyword, rest) =
            directive.split_once(' ').unwrap_or((directive, ""));
        let words: Vec<&str> = rest.split_whitespace().collect();

        match (keyword, words.as_slice()) {
            ("listener", _) => set_key(&mut self.listener, rest),
            ("setting", _) => set_key(&mut self.settings, rest),
            ("role", [role]) => self.role = Some(Role::parse(role)?),
            ("user", [name, password]) => {
                self.users.push((name.to_string(), password.to_string()));
            }
            ("alias", [address, _, ..]) => {
                let targets = words[1..].join(" ");
                self.aliases.push(format!("{address} {targets}"));
            }
            ("message", [account, file]) => self.messages.push((
                account.to_string(),
                dir.join(file),
                "INBOX".into(),
            )),
            ("message", [account, file, folder]) => self.messages.push((
                account.to_string(),
                dir.join(file),
                folder.to_string(),
            )),
            ("expect", ["messages", account, count]) => {
                self.expect_messages.push((
                    account.to_string(),
                    "INBOX".into(),
                    parse_count(count)?,
                ));
            }
            ("expect", ["messages", account, folder, count]) => {
                self.expect_messages.push((
                    account.to_string(),
                    folder.to_string(),
                    parse_count(count)?,
                ));
            }
            ("expect", ["trap"]) => self.expect_trap = true,
            ("timeout", [seconds]) => {
                let seconds: f64 = seconds.parse().with_context(|| {
                    format!("@timeout `{seconds}` is not a number of seconds")
                })?;
                if !(0.0..=3600.0).contains(&seconds) {
                    bail!("@timeout {seconds} is outside 0 to 3600 seconds");
                }
                self.reply_timeout = Some(Duration::from_secs_f64(seconds));
            }
            ("include", [file]) => {
                self.read_file(&dir.join(file), depth + 1)?
            }
            _ => bail!(
                "unknown or malformed directive `@{directive}` (see the \
                 transcript format in docs/plugins.md)"
            ),
        }
        Ok(())
    }
}

/// Add a `key = value` TOML line, replacing an earlier line for the same
/// key: a transcript may override what an included file set.
fn set_key(lines: &mut Vec<String>, line: &str) {
    let key =
        |line: &str| line.split('=').next().unwrap_or("").trim().to_owned();
    let new_key = key(line);
    lines.retain(|old| key(old) != new_key);
    lines.push(line.to_owned());
}

fn parse_count(text: &str) -> anyhow::Result<u32> {
    text.parse()
        .with_context(|| format!("`{text}` is not a message count"))
}

/// Undo the escapes of an `R:` line: `\r`, `\n`, `\t`, `\\`, `\xNN`.
fn unescape(text: &str) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut bytes = text.bytes();
    while let Some(byte) = bytes.next() {
        if byte != b'\\' {
            out.push(byte);
            continue;
        }
        match bytes.next() {
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                let hex = [bytes.next(), bytes.next()];
                let digits: Option<String> =
                    hex.iter().map(|b| b.map(char::from)).collect();
                let value = digits
                    .and_then(|d| u8::from_str_radix(&d, 16).ok())
                    .with_context(|| format!("bad \\x escape in {text:?}"))?;
                out.push(value);
            }
            other => bail!(
                "bad escape `\\{}` in {text:?}",
                other.map(char::from).unwrap_or(' ')
            ),
        }
    }
    Ok(out)
}

/// Run the transcript. `Ok` means every expectation held; a failure is an
/// error carrying the report (the line, what came, the exchange so far).
pub fn run(options: &Options) -> anyhow::Result<String> {
    let transcript = Transcript::load(&options.transcript)?;
    let work = tempdir()?;
    let result = run_in(options, &transcript, &work.0);
    drop(work);
    result
}

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A new, empty directory under the system's temporary directory.
pub fn tempdir() -> anyhow::Result<TempDir> {
    use rand::Rng;

    let suffix: u64 = rand::thread_rng().r#gen();
    let path = std::env::temp_dir().join(format!(
        "mailhost-transcript-{}-{suffix:016x}",
        std::process::id()
    ));
    std::fs::create_dir(&path)
        .with_context(|| format!("failed to create `{}`", path.display()))?;
    Ok(TempDir(path))
}

fn run_in(
    options: &Options,
    transcript: &Transcript,
    work: &Path,
) -> anyhow::Result<String> {
    let plugin_path = std::path::absolute(&options.plugin)?;
    let base = base_config(work, transcript)?;
    let mut config: Config = toml::from_str(&base)?;

    // The role decides what the listener may be; pick it before writing
    // the config that names it.
    let engine = plugin::engine(&config)?;
    let linkers = Linkers::new(&engine)?;
    let cache = &options.cache;
    let role = match options.role.or(transcript.role) {
        Some(role) => role,
        None => plugin::narrowest_role(&engine, &plugin_path, Some(cache))?,
    };

    let config_path = work.join("mailhost.toml");
    let text =
        format!("{base}{}", listener_config(transcript, role, &plugin_path));
    std::fs::write(&config_path, &text)?;
    config = Config::load(&config_path).with_context(|| {
        format!(
            "the listener the @listener and @setting lines of `{}` make",
            options.transcript.display()
        )
    })?;

    // The listener is built as the host builds one, plugin loaded and
    // checked against the role, store capabilities attached.
    let store = crate::store_glue::open(&config)?;
    let listener = server::build_listener(
        &engine,
        &linkers,
        &config,
        &config.listeners[0],
        store.as_ref(),
        Counter::new(1, 1),
        cache,
    )?;
    put_messages(&config, transcript)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(drive(
        &engine,
        &listener,
        transcript,
        options.verbose,
    ))?;

    check_mailboxes(&config, transcript)?;
    Ok(report)
}

/// Everything of the config but the listener: the temporary data
/// directory, a small pool and the transcript's accounts.
fn base_config(work: &Path, transcript: &Transcript) -> anyhow::Result<String> {
    let data = work.join("data");
    let mut text = format!(
        "data-dir = {}\n\n[limits]\nmax-connections = 4\n",
        toml_string(&data)
    );
    if transcript.users.is_empty() {
        return Ok(text);
    }

    let mut users = String::new();
    let mut domains = std::collections::BTreeSet::new();
    for (name, password) in &transcript.users {
        let hash = mailhost_store::password::hash_password(password)
            .map_err(|err| anyhow::anyhow!("@user {name}: {err}"))?;
        writeln!(users, "{name}:{hash}")?;
        if let Some((_, domain)) = name.rsplit_once('@') {
            domains.insert(domain.to_ascii_lowercase());
        }
    }
    let users_file = work.join("users");
    std::fs::write(&users_file, users)?;

    let mut aliases = String::new();
    for line in &transcript.aliases {
        let (address, targets) = line.split_once(' ').unwrap_or((line, ""));
        writeln!(aliases, "{address}: {targets}")?;
    }
    let aliases_file = work.join("aliases");
    std::fs::write(&aliases_file, aliases)?;

    let domains: Vec<String> =
        domains.iter().map(|d| format!("\"{d}\"")).collect();
    write!(
        text,
        "\n[accounts]\nusers-file = {}\naliases-file = {}\n\
         domains = [{}]\n",
        toml_string(&users_file),
        toml_string(&aliases_file),
        domains.join(", ")
    )?;
    Ok(text)
}

fn listener_config(
    transcript: &Transcript,
    role: Role,
    plugin: &Path,
) -> String {
    let mut text = format!(
        "\n[[listener]]\nname = \"transcript\"\naddress = \"127.0.0.1:0\"\n\
         role = \"{}\"\nplugin = {}\n",
        role.name(),
        toml_string(plugin)
    );
    for line in &transcript.listener {
        text.push_str(line);
        text.push('\n');
    }
    text.push_str("[listener.settings]\n");
    for line in &transcript.settings {
        text.push_str(line);
        text.push('\n');
    }
    text
}

fn toml_string(path: &Path) -> String {
    toml::Value::String(path.to_string_lossy().into_owned()).to_string()
}

/// Append the `@message` files to their accounts' folders.
fn put_messages(
    config: &Config,
    transcript: &Transcript,
) -> anyhow::Result<()> {
    if transcript.messages.is_empty() {
        return Ok(());
    }
    let store = mailhost_store::Store::open(&config.data_dir)?;
    for (account, file, folder) in &transcript.messages {
        let bytes = std::fs::read(file).with_context(|| {
            format!("@message: failed to read `{}`", file.display())
        })?;
        let context = || format!("@message {account} `{}`", file.display());
        let mailbox = store.account(account).with_context(context)?;
        let mut append = mailbox
            .begin_append(folder, &[], None, u64::MAX)
            .with_context(context)?;
        append.write(&bytes).with_context(context)?;
        append.commit().with_context(context)?;
    }
    Ok(())
}

/// Check the `@expect messages` counts after the session.
fn check_mailboxes(
    config: &Config,
    transcript: &Transcript,
) -> anyhow::Result<()> {
    if transcript.expect_messages.is_empty() {
        return Ok(());
    }
    let store = mailhost_store::Store::open(&config.data_dir)?;
    for (account, folder, expected) in &transcript.expect_messages {
        let status = store
            .account(account)
            .and_then(|mailbox| mailbox.status(folder))
            .with_context(|| format!("@expect messages {account} {folder}"))?;
        if status.messages != *expected {
            bail!(
                "@expect messages {account} {folder} {expected}: the \
                 folder holds {}",
                status.messages
            );
        }
    }
    Ok(())
}

/// What was said, for the report.
struct Exchange {
    lines: Vec<String>,
    verbose: bool,
}

impl Exchange {
    fn record(&mut self, who: &str, bytes: &[u8]) {
        for line in bytes.split_inclusive(|&b| b == b'\n') {
            let shown = format!("{who} {}", show(line));
            if self.verbose {
                println!("{shown}");
            }
            self.lines.push(shown);
        }
    }

    fn tail(&self) -> String {
        let from = self.lines.len().saturating_sub(REPORT_CONTEXT_LINES);
        let mut out = String::new();
        for line in &self.lines[from..] {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
        out
    }
}

/// A line without its LF or CRLF.
fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A line for people: without its CRLF, other control bytes escaped.
fn show(line: &[u8]) -> String {
    trim_line_end(line).escape_ascii().to_string()
}

/// Run the session on one end of a pipe and the transcript on the other.
async fn drive(
    engine: &wasmtime::Engine,
    listener: &Listener,
    transcript: &Transcript,
    verbose: bool,
) -> anyhow::Result<String> {
    let (client, server_end) = tokio::io::duplex(PIPE_CAPACITY);
    let (_shutdown_tx, shutdown) = tokio::sync::watch::channel(false);

    let io = ConnIo::new(
        Stream::Memory(server_end),
        None,
        None,
        listener.config.idle_timeout(),
        Duration::from_secs(listener.config.max_session),
        shutdown,
    );
    let facts = listener.facts(1, PEER.into(), listener.config.address);
    let params = listener.session_params();
    let engine = engine.clone();
    let span = tracing::info_span!("session", id = 1, listener = "transcript");
    let session = tokio::spawn(tracing::Instrument::instrument(
        async move { session::run(&engine, params, facts, io).await },
        span,
    ));

    let mut exchange = Exchange {
        lines: Vec::new(),
        verbose,
    };
    let timeout = transcript.reply_timeout.unwrap_or(DEFAULT_REPLY_TIMEOUT);
    let (reader, mut writer) = tokio::io::split(client);
    let mut reader = BufReader::new(reader);
    let played = play(
        &transcript.steps,
        &mut reader,
        &mut writer,
        timeout,
        &mut exchange,
    )
    .await;

    // Close the client side so a plugin still reading sees the peer go.
    drop(writer);
    drop(reader);
    let ended = tokio::time::timeout(SESSION_END_TIMEOUT, session).await;
    let outcome = match ended {
        Ok(Ok((outcome, _, _))) => outcome,
        Ok(Err(err)) => bail!("the session task failed: {err}"),
        Err(_) => bail!(
            "the plugin did not return within {}s of the client \
             closing\n{}",
            SESSION_END_TIMEOUT.as_secs(),
            exchange.tail()
        ),
    };

    if let Err(failure) = played {
        let trap = match &outcome {
            Outcome::Trapped(cause) => {
                format!("the session trapped: {cause}\n")
            }
            Outcome::Completed => String::new(),
        };
        bail!("{failure}\n{trap}exchange so far:\n{}", exchange.tail());
    }
    match (&outcome, transcript.expect_trap) {
        (Outcome::Trapped(cause), false) => bail!(
            "the session trapped ({cause}) and the transcript has no \
             `@expect trap`\n{}",
            exchange.tail()
        ),
        (Outcome::Completed, true) => {
            bail!("`@expect trap`, but the plugin returned normally")
        }
        _ => {}
    }

    let checks = transcript
        .steps
        .iter()
        .filter(|step| !matches!(step.action, Action::Send(_)))
        .count();
    Ok(format!(
        "{} lines exchanged, {checks} expectations met",
        exchange.lines.len()
    ))
}

/// The client side of the transcript. A failure says which line and why.
async fn play<R, W>(
    steps: &[Step],
    reader: &mut BufReader<R>,
    writer: &mut W,
    timeout: Duration,
    exchange: &mut Exchange,
) -> Result<(), String>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut pending = Vec::new();
    for step in steps {
        let at = &step.at;
        let (prefix, exact, skip) = match &step.action {
            Action::Send(bytes) => {
                pending.extend_from_slice(bytes);
                continue;
            }
            Action::Expect {
                prefix,
                exact,
                skip,
            } => (Some(prefix.as_str()), *exact, *skip),
            Action::ExpectClose => (None, false, false),
        };
        send(writer, &mut pending, exchange).await.map_err(|err| {
            format!("{at}: the plugin stopped reading before this line ({err})")
        })?;

        loop {
            let line = read_reply(reader, timeout).await.map_err(|err| {
                format!("{at}: expected {}, {err}", expected(prefix))
            })?;
            let Some(prefix) = prefix else {
                if line.is_empty() {
                    break;
                }
                exchange.record("S:", &line);
                return Err(format!(
                    "{at}: expected the connection to close, got {:?}",
                    show(&line)
                ));
            };
            if line.is_empty() {
                return Err(format!(
                    "{at}: expected {prefix:?}, the connection closed"
                ));
            }
            exchange.record("S:", &line);
            let matched = match exact {
                true => trim_line_end(&line) == prefix.as_bytes(),
                false => line.starts_with(prefix.as_bytes()),
            };
            if matched {
                break;
            }
            if !skip {
                return Err(format!(
                    "{at}: expected {prefix:?}, got {:?}",
                    show(&line)
                ));
            }
        }
    }

    send(writer, &mut pending, exchange)
        .await
        .map_err(|err| format!("the last lines were not read ({err})"))
}

fn expected(prefix: Option<&str>) -> String {
    match prefix {
        Some(prefix) => format!("{prefix:?}"),
        None => "the connection to close".into(),
    }
}

async fn send<W: tokio::io::AsyncWrite + Unpin>(
    writer: &mut W,
    pending: &mut Vec<u8>,
    exchange: &mut Exchange,
) -> std::io::Result<()> {
    if pending.is_empty() {
        return Ok(());
    }
    exchange.record("C:", pending);
    writer.write_all(pending).await?;
    writer.flush().await?;
    pending.clear();
    Ok(())
}

/// One reply line with its line end; empty at end of stream.
async fn read_reply<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let mut line = Vec::new();
    let mut limited = reader.take(MAX_REPLY_LINE);
    let read = limited.read_until(b'\n', &mut line);
    match tokio::time::timeout(timeout, read).await {
        Err(_) => Err(format!("nothing came within {timeout:?}")),
        Ok(Err(err)) => Err(format!("the read failed: {err}")),
        Ok(Ok(_)) if line.len() as u64 >= MAX_REPLY_LINE => {
            Err(format!("got a line over {MAX_REPLY_LINE} bytes"))
        }
        Ok(Ok(_)) => Ok(line),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<Transcript> {
        let mut transcript = Transcript::default();
        for (index, line) in text.lines().enumerate() {
            let at = format!("t:{}", index + 1);
            transcript.read_line(line, &at, Path::new("."), 0)?;
        }
        Ok(transcript)
    }

    #[test]
    fn lines_become_steps() {
        let transcript = parse(
            "# comment\n\nS: 220\nC: HELO x\nR: a\\r\\n\\x00\nS+ 250 \
             OK\nS= .\nS: <closed>\n",
        )
        .unwrap();
        let actions: Vec<&Action> =
            transcript.steps.iter().map(|step| &step.action).collect();
        assert_eq!(
            actions,
            [
                &Action::Expect {
                    prefix: "220".into(),
                    exact: false,
                    skip: false
                },
                &Action::Send(b"HELO x\r\n".to_vec()),
                &Action::Send(b"a\r\n\x00".to_vec()),
                &Action::Expect {
                    prefix: "250 OK".into(),
                    exact: false,
                    skip: true
                },
                &Action::Expect {
                    prefix: ".".into(),
                    exact: true,
                    skip: false
                },
                &Action::ExpectClose,
            ]
        );
        assert_eq!(transcript.steps[1].at, "t:4");
    }

    #[test]
    fn directives_fill_the_setup() {
        let transcript = parse(
            "@role mailbox\n\
             @user a@example.org pw\n\
             @alias s@example.org a@example.org\n\
             @setting greeting = \"hi\"\n\
             @listener idle-timeout = 2\n\
             @listener idle-timeout = 3\n\
             @message a@example.org m.eml Sent\n\
             @expect messages a@example.org 3\n\
             @expect trap\n\
             @timeout 0.5\n",
        )
        .unwrap();
        assert_eq!(transcript.role, Some(Role::Mailbox));
        assert_eq!(transcript.users[0].0, "a@example.org");
        assert_eq!(transcript.aliases, ["s@example.org a@example.org"]);
        assert_eq!(transcript.settings, ["greeting = \"hi\""]);
        assert_eq!(transcript.listener, ["idle-timeout = 3"]);
        assert_eq!(transcript.messages[0].2, "Sent");
        assert_eq!(
            transcript.expect_messages,
            [("a@example.org".into(), "INBOX".into(), 3)]
        );
        assert!(transcript.expect_trap);
        assert_eq!(transcript.reply_timeout, Some(Duration::from_millis(500)));
    }

    #[test]
    fn malformed_lines_are_errors() {
        for bad in [
            "X: what",
            "@user onlyname",
            "@expect messages a@example.org many",
            "@frobnicate",
            "R: \\q",
            "R: \\x4",
            "@timeout forever",
            "@role admin",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
