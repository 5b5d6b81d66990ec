//! The TOML configuration: what `mailhost run` serves and `mailhost
//! check` validates.
//!
//! Keys are kebab-case; unknown keys are refused so a typo never silently
//! falls back to a default. Relative paths are taken relative to the
//! directory of the config file, not the working directory, so a config
//! means the same thing wherever the host is started from.
//!
//! SIGHUP (or `mailhost reload`) reads the file again and applies it when
//! it passes every check `mailhost check` makes; otherwise the whole of it
//! is refused and the running config stays. New sessions get the new
//! values, running sessions keep the ones they started with. A reload
//! changes every key except the few marked "restart" below, which it
//! refuses naming the key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// Where mail lives: `<data-dir>/<domain>/<user>/Maildir`. Also holds
    /// the generated certificate and the compiled-plugin cache. Default:
    /// `data`, next to the config file. Restart: a reload that changes it
    /// is refused.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,

    /// How long a shutdown waits for running sessions before it drops
    /// them, in seconds. Default: 30.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace: u64,

    /// Host-wide limits.
    #[serde(default)]
    pub limits: GlobalLimits,

    /// The accounts and domains served. Optional for a host that only runs
    /// plugins needing no accounts. A reload reads the users and aliases
    /// files again and takes any change here; sessions logged in stay.
    #[serde(default)]
    pub accounts: Option<AccountsConfig>,

    /// The default certificate for listeners that name none, and the
    /// certificates chosen by SNI name.
    #[serde(default)]
    pub tls: Option<TlsConfig>,

    /// The listeners, at least one. A reload matches them by `name`: it
    /// binds the new ones, closes the removed ones (their running sessions
    /// finish), and rebinds one whose `address` changed.
    #[serde(default, rename = "listener")]
    pub listeners: Vec<ListenerConfig>,

    /// Path of the file this was read from; not a key.
    #[serde(skip)]
    pub path: PathBuf,
}

/// Limits over all listeners.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GlobalLimits {
    /// Most sessions open at once, over all listeners. Also sizes the
    /// instance pool: the pool reserves memory for this many sessions.
    /// Default: 1024. A reload may lower it, or raise it back up to the
    /// value the host started with; more needs a restart, since the pool
    /// cannot grow. Sessions already open stay counted.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,

    /// Most sessions open at once from one client IP address, over all
    /// listeners. A household behind one NAT with a few phones and mail
    /// programs opens dozens. Default: 64.
    #[serde(default = "default_max_connections_per_ip")]
    pub max_connections_per_ip: u32,

    /// Largest linear memory of one plugin instance, in MiB. Default: 64.
    /// Sizes the pool's slots like `max-connections`: a reload may lower
    /// it, but not raise it past the value the host started with.
    #[serde(default = "default_max_memory_mib")]
    pub max_memory_mib: u32,
}

impl Default for GlobalLimits {
    fn default() -> Self {
        GlobalLimits {
            max_connections: default_max_connections(),
            max_connections_per_ip: default_max_connections_per_ip(),
            max_memory_mib: default_max_memory_mib(),
        }
    }
}

/// Where accounts come from.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AccountsConfig {
    /// The passwd-style users file: `user@domain:{SCHEME}hash` lines.
    /// Default: `users`, next to the config file.
    #[serde(default = "default_users_file")]
    pub users_file: PathBuf,

    /// Alias lines `alias@domain: target@domain[, target]`. Optional.
    #[serde(default)]
    pub aliases_file: Option<PathBuf>,

    /// The domains delivered locally; the first is the default domain for
    /// logins without `@`. At least one.
    pub domains: Vec<String>,
}

/// A certificate chain and its private key, both PEM files.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TlsFiles {
    pub certificate: PathBuf,
    pub key: PathBuf,
}

/// The top-level `[tls]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TlsConfig {
    /// The default certificate chain (PEM), for clients that send no
    /// server name or one no `[[tls.sni]]` entry names.
    pub certificate: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// More certificates, each served to clients asking for one of its
    /// names by SNI.
    #[serde(default)]
    pub sni: Vec<SniCertificate>,
}

impl TlsConfig {
    pub fn default_files(&self) -> TlsFiles {
        TlsFiles {
            certificate: self.certificate.clone(),
            key: self.key.clone(),
        }
    }
}

/// One `[[tls.sni]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SniCertificate {
    /// Server names this certificate answers, such as `mail.example.org`.
    pub names: Vec<String>,
    pub certificate: PathBuf,
    pub key: PathBuf,
}

/// The protocol a listener speaks, which picks the defaults for its busy
/// and error replies and its idle timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    Smtp,
    Lmtp,
    Pop3,
    Imap,
    Other,
}

/// What a listener's plugin may reach; see the worlds in `wit/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Connection, log and settings only.
    Session,
    /// Adds account checks and local delivery (SMTP, LMTP).
    Submission,
    /// Adds account checks and mailbox access (POP3, IMAP).
    Mailbox,
}

impl Role {
    /// The role named `text` as a config spells it (`session`,
    /// `submission`, `mailbox`).
    pub fn parse(text: &str) -> anyhow::Result<Role> {
        toml::Value::String(text.to_owned())
            .try_into()
            .map_err(|_| anyhow::anyhow!("unknown role `{text}`"))
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Session => "session",
            Role::Submission => "submission",
            Role::Mailbox => "mailbox",
        }
    }
}

/// How a listener does TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Plaintext only; `start-tls` answers `unavailable`.
    #[default]
    None,
    /// Plaintext first; the plugin may upgrade with `start-tls`.
    Starttls,
    /// TLS from the first byte (SMTPS, POP3S, IMAPS).
    Implicit,
}

/// When a plugin may accept plaintext passwords on an unencrypted session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlaintextAuth {
    Always,
    Never,
    /// Only from loopback peers, where nobody can sniff the wire.
    #[default]
    Loopback,
}

/// One `[[listener]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ListenerConfig {
    /// Unique name, used in logs and in the plugin's session facts.
    pub name: String,

    /// Address and port to bind, such as `127.0.0.1:2025`. Port 0 picks a
    /// free port, logged at startup.
    pub address: SocketAddr,

    /// Protocol spoken, for defaults. Default: `other`.
    #[serde(default = "default_protocol")]
    pub protocol: Protocol,

    /// What the plugin may reach.
    pub role: Role,

    /// The plugin component (`.wasm`).
    pub plugin: PathBuf,

    /// TLS mode. Default: `none`.
    #[serde(default)]
    pub tls: TlsMode,

    /// This listener's certificate; defaults to the top-level `[tls]`.
    #[serde(default)]
    pub certificate: Option<PathBuf>,

    /// This listener's private key; defaults to the top-level `[tls]`.
    #[serde(default)]
    pub key: Option<PathBuf>,

    /// Plaintext password policy. Default: `loopback`.
    #[serde(default)]
    pub plaintext_auth: PlaintextAuth,

    /// Seconds a read may wait for the client before it reports
    /// `timeout`. Default: SMTP and LMTP 300, POP3 600, IMAP 1800, other
    /// 300.
    #[serde(default)]
    pub idle_timeout: Option<u64>,

    /// Longest a session may last, in seconds. Default: 86400.
    #[serde(default = "default_max_session")]
    pub max_session: u64,

    /// Longest a plugin may compute without input from the client, in
    /// milliseconds of its own running (counted in 10 ms epoch ticks,
    /// not wall time), before it is stopped. Default: 1000.
    #[serde(default = "default_cpu_slice_ms")]
    pub cpu_slice_ms: u64,

    /// Seconds allowed for a TLS handshake. Default: 10.
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout: u64,

    /// Most sessions open at once on this listener. Default: the global
    /// limit.
    #[serde(default)]
    pub max_connections: Option<u32>,

    /// Most sessions open at once from one client IP on this listener.
    /// Default: the global per-IP limit.
    #[serde(default)]
    pub max_connections_per_ip: Option<u32>,

    /// Largest message delivered or appended, in bytes. Default: 25 MiB.
    #[serde(default = "default_max_message_size")]
    pub max_message_size: u64,

    /// What the host writes, before closing, to a client over a limit.
    /// Default depends on `protocol` (SMTP `421 4.7.0 …`, POP3
    /// `-ERR [SYS/TEMP] …`, IMAP `* BYE [UNAVAILABLE] …`). CRLF is added.
    #[serde(default)]
    pub busy_reply: Option<String>,

    /// What the host writes when the plugin traps. Default depends on
    /// `protocol`. CRLF is added.
    #[serde(default)]
    pub error_reply: Option<String>,

    /// Plugin log records kept per second; the rest are counted and
    /// dropped. Default: 50.
    #[serde(default = "default_log_rate")]
    pub log_rate: u32,

    /// Free table handed to the plugin. Values must be strings, numbers
    /// or booleans.
    #[serde(default)]
    pub settings: BTreeMap<String, toml::Value>,
}

impl ListenerConfig {
    pub fn idle_timeout(&self) -> Duration {
        let default = match self.protocol {
            Protocol::Smtp | Protocol::Lmtp | Protocol::Other => 300,
            Protocol::Pop3 => 600,
            Protocol::Imap => 1800,
        };
        Duration::from_secs(self.idle_timeout.unwrap_or(default))
    }

    pub fn busy_reply(&self) -> String {
        let text = self.busy_reply.clone().unwrap_or_else(|| {
            let text = match self.protocol {
                Protocol::Smtp | Protocol::Lmtp => {
                    "421 4.7.0 Too many connections, try again later"
                }
                Protocol::Pop3 => {
                    "-ERR [SYS/TEMP] Too many connections, try again later"
                }
                Protocol::Imap => {
                    "* BYE [UNAVAILABLE] Too many connections, try again later"
                }
                Protocol::Other => "BUSY too many connections",
            };
            text.to_owned()
        });
        format!("{text}\r\n")
    }

    pub fn error_reply(&self) -> String {
        let text = self.error_reply.clone().unwrap_or_else(|| {
            let text = match self.protocol {
                Protocol::Smtp | Protocol::Lmtp => {
                    "421 4.3.0 Internal server error, closing connection"
                }
                Protocol::Pop3 => "-ERR [SYS/TEMP] Internal server error",
                Protocol::Imap => "* BYE [UNAVAILABLE] Internal server error",
                Protocol::Other => "ERR internal error",
            };
            text.to_owned()
        });
        format!("{text}\r\n")
    }

    /// The settings table as the strings the plugin sees.
    pub fn settings_strings(&self) -> Vec<(String, String)> {
        self.settings
            .iter()
            .map(|(key, value)| {
                let text = match value {
                    toml::Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                (key.clone(), text)
            })
            .collect()
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}
fn default_users_file() -> PathBuf {
    PathBuf::from("users")
}
fn default_shutdown_grace() -> u64 {
    30
}
fn default_max_connections() -> u32 {
    1024
}
fn default_max_connections_per_ip() -> u32 {
    64
}
fn default_max_memory_mib() -> u32 {
    64
}
fn default_protocol() -> Protocol {
    Protocol::Other
}
fn default_max_session() -> u64 {
    86400
}
fn default_cpu_slice_ms() -> u64 {
    1000
}
fn default_handshake_timeout() -> u64 {
    10
}
fn default_max_message_size() -> u64 {
    25 * 1024 * 1024
}
fn default_log_rate() -> u32 {
    50
}

/// The most listeners one host runs; more is almost surely a mistake.
const MAX_LISTENERS: usize = 64;

/// Largest instance memory an operator may configure, in MiB.
const MAX_MEMORY_MIB_LIMIT: u32 = 4096;

impl Config {
    /// Read, parse and check a config file. Errors name the file and the
    /// offending key and value.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let config = Config::load_for_setup(path)?;
        config
            .validate()
            .with_context(|| format!("invalid config `{}`", path.display()))?;
        Ok(config)
    }

    /// Read and parse a config without checking the files it names, for
    /// the setup commands that create those files.
    pub fn load_for_setup(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!("failed to read config `{}`", path.display())
        })?;
        let mut config: Config = toml::from_str(&text).map_err(|err| {
            anyhow::anyhow!("invalid config `{}`: {err}", path.display())
        })?;
        config.path = path.to_path_buf();
        config.resolve_paths();
        Ok(config)
    }

    /// Make every relative path relative to the config file's directory.
    fn resolve_paths(&mut self) {
        let base = match self.path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => {
                parent.to_path_buf()
            }
            _ => PathBuf::from("."),
        };
        let resolve = |path: &mut PathBuf| {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        };

        resolve(&mut self.data_dir);
        if let Some(accounts) = &mut self.accounts {
            resolve(&mut accounts.users_file);
            if let Some(aliases) = &mut accounts.aliases_file {
                resolve(aliases);
            }
        }
        if let Some(tls) = &mut self.tls {
            resolve(&mut tls.certificate);
            resolve(&mut tls.key);
            for entry in &mut tls.sni {
                resolve(&mut entry.certificate);
                resolve(&mut entry.key);
            }
        }
        for listener in &mut self.listeners {
            resolve(&mut listener.plugin);
            if let Some(path) = &mut listener.certificate {
                resolve(path);
            }
            if let Some(path) = &mut listener.key {
                resolve(path);
            }
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.listeners.is_empty() {
            bail!("no `[[listener]]` entries: nothing to serve");
        }
        if self.listeners.len() > MAX_LISTENERS {
            bail!(
                "{} listeners configured; at most {MAX_LISTENERS} are allowed",
                self.listeners.len()
            );
        }

        let limits = &self.limits;
        if limits.max_connections == 0 {
            bail!("`limits.max-connections` must be at least 1, not `0`");
        }
        if limits.max_connections_per_ip == 0 {
            bail!(
                "`limits.max-connections-per-ip` must be at least 1, not `0`"
            );
        }
        if limits.max_memory_mib == 0
            || limits.max_memory_mib > MAX_MEMORY_MIB_LIMIT
        {
            bail!(
                "`limits.max-memory-mib` must be in 1..={MAX_MEMORY_MIB_LIMIT}, \
                 not `{}`",
                limits.max_memory_mib
            );
        }

        if let Some(accounts) = &self.accounts {
            if accounts.domains.is_empty() {
                bail!("`accounts.domains` is empty: name at least one domain");
            }
            for domain in &accounts.domains {
                if domain.is_empty() || domain.contains(['@', '/', ' ']) {
                    bail!(
                        "`accounts.domains` holds an invalid domain `{domain}`"
                    );
                }
            }
        }

        let mut names = std::collections::HashSet::new();
        let mut addresses = std::collections::HashSet::new();
        for listener in &self.listeners {
            let name = &listener.name;
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
            {
                bail!(
                    "`listener.name` `{name}` must be non-empty ASCII letters, \
                     digits, `-` or `_`"
                );
            }
            if !names.insert(name.clone()) {
                bail!("`listener.name` `{name}` is used twice");
            }
            if listener.address.port() != 0
                && !addresses.insert(listener.address)
            {
                bail!(
                    "listener `{name}`: `address` `{}` is used twice",
                    listener.address
                );
            }
            validate_listener(listener, self)
                .with_context(|| format!("listener `{name}`"))?;
        }
        Ok(())
    }

    /// The certificate and key files a listener uses, if it does TLS.
    pub fn tls_files(&self, listener: &ListenerConfig) -> Option<TlsFiles> {
        if listener.tls == TlsMode::None {
            return None;
        }
        match (&listener.certificate, &listener.key, &self.tls) {
            (Some(certificate), Some(key), _) => Some(TlsFiles {
                certificate: certificate.clone(),
                key: key.clone(),
            }),
            (_, _, Some(default)) => Some(default.default_files()),
            _ => None,
        }
    }
}

fn validate_listener(
    listener: &ListenerConfig,
    config: &Config,
) -> anyhow::Result<()> {
    if !listener.plugin.is_file() {
        bail!(
            "`plugin` `{}` does not exist or is not a file",
            listener.plugin.display()
        );
    }
    if listener.idle_timeout == Some(0) {
        bail!("`idle-timeout` must be at least 1 second, not `0`");
    }
    if listener.max_session == 0 {
        bail!("`max-session` must be at least 1 second, not `0`");
    }
    if listener.cpu_slice_ms < 10 {
        bail!(
            "`cpu-slice-ms` must be at least 10, not `{}`",
            listener.cpu_slice_ms
        );
    }
    if listener.handshake_timeout == 0 {
        bail!("`handshake-timeout` must be at least 1 second, not `0`");
    }
    if listener.max_connections == Some(0) {
        bail!("`max-connections` must be at least 1, not `0`");
    }
    if listener.max_connections_per_ip == Some(0) {
        bail!("`max-connections-per-ip` must be at least 1, not `0`");
    }
    if listener.max_message_size == 0 {
        bail!("`max-message-size` must be at least 1 byte, not `0`");
    }
    for (key, value) in &listener.settings {
        if matches!(
            value,
            toml::Value::Array(_)
                | toml::Value::Table(_)
                | toml::Value::Datetime(_)
        ) {
            bail!(
                "`settings.{key}` must be a string, number or boolean, not `{value}`"
            );
        }
    }
    if listener.certificate.is_some() != listener.key.is_some() {
        bail!("`certificate` and `key` must be given together");
    }
    if listener.tls != TlsMode::None && config.tls_files(listener).is_none() {
        bail!(
            "`tls` is `{:?}` but there is no certificate: set `certificate` \
             and `key` here or in `[tls]`",
            listener.tls
        );
    }
    if listener.role != Role::Session && config.accounts.is_none() {
        bail!(
            "`role` `{}` needs an `[accounts]` section",
            listener.role.name()
        );
    }
    Ok(())
}
