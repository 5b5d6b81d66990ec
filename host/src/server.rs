//! `mailhost run`: bind every listener, accept under the limits, run a
//! session per connection, and drain on shutdown.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;
use wasmtime::Engine;

use crate::config::{Config, ListenerConfig, TlsMode};
use crate::conn::{ConnIo, Stream, TlsOffer, shutdown_begins};
use crate::limits::{self, Counter};
use crate::plugin::{self, Linkers, Plugin};
use crate::reload::FileStamp;
use crate::session::{self, Facts, Outcome, SessionParams};
use crate::store_glue::StoreRoot;

/// How long the host tries to hand a refused client its busy reply.
const BUSY_REPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// Where compiled plugins are cached, under the data directory.
pub const PLUGIN_CACHE_DIR: &str = "plugin-cache";

/// Where `config`'s compiled plugins are cached.
pub fn plugin_cache(config: &Config) -> std::path::PathBuf {
    config.data_dir.join(PLUGIN_CACHE_DIR)
}

/// How often the drain reports the sessions still running.
const DRAIN_REPORT_INTERVAL: Duration = Duration::from_secs(5);

/// A listener's configuration with its loaded plugin and counters: what
/// a new session on it starts with. A config reload builds a new one and
/// swaps it in whole; a running session keeps the `Arc` it started with,
/// and so the values it started with.
pub struct Listener {
    pub config: ListenerConfig,
    /// The listener's name, shared with every session's facts.
    pub name: Arc<str>,
    /// The plugin new sessions get. Swapped whole on hot swap; a running
    /// session keeps the `Arc` it started with.
    pub plugin: RwLock<Arc<Plugin>>,
    /// The version of the plugin file that was loaded, for the watch.
    pub plugin_stamp: Option<FileStamp>,
    /// Shared by every version of a listener of this name, so a reload
    /// keeps the count of the sessions already open.
    pub counter: Arc<Counter>,
    pub settings: Arc<Vec<(String, String)>>,
    /// The certificates new sessions get; a reload loads them again.
    pub tls: Option<TlsOffer>,
    pub busy_reply: Arc<str>,
    pub error_reply: Arc<str>,
    /// Where its plugins' records go.
    pub log_callsites: &'static crate::plugin_log::Callsites,
    pub store: Option<crate::store_glue::StoreCtx>,
    /// Largest linear memory of one instance, in bytes.
    pub max_memory: usize,
}

impl Listener {
    /// What a new session on this listener runs with: the plugin of the
    /// moment, the settings and limits.
    pub fn session_params(&self) -> SessionParams {
        SessionParams {
            plugin: self.plugin.read().unwrap().clone(),
            settings: self.settings.clone(),
            max_memory: self.max_memory,
            cpu_slice: Duration::from_millis(self.config.cpu_slice_ms),
            log_rate: self.config.log_rate,
            log_callsites: self.log_callsites,
            error_reply: self.error_reply.clone(),
            store: self.store.clone(),
        }
    }

    /// The facts of session `id` from `peer`, accepted on `local`.
    pub fn facts(
        &self,
        id: u64,
        peer: std::net::SocketAddr,
        local: std::net::SocketAddr,
    ) -> Facts {
        Facts {
            id,
            listener: self.name.clone(),
            peer,
            local,
            plaintext_auth: self.config.plaintext_auth,
        }
    }
}

/// One bound socket and its accept loop.
pub struct Endpoint {
    /// What the next accepted session gets; a reload swaps it.
    pub listener: RwLock<Arc<Listener>>,
    /// Sending `true` stops the accept loop, which closes the socket.
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Endpoint {
    /// The listener new sessions on this socket get now.
    pub fn current(&self) -> Arc<Listener> {
        self.listener.read().unwrap().clone()
    }

    /// Stop accepting and wait until the socket is closed. Sessions
    /// already accepted run on.
    pub async fn close(&self) {
        self.stop.send_replace(true);
        let task = self.task.lock().unwrap().take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// The store the host opened.
#[derive(Clone)]
pub struct OpenStore {
    pub root: Arc<StoreRoot>,
}

/// What the instance pool was sized for at start. A reload may lower
/// these, never raise them past it: the pool cannot grow while it runs.
#[derive(Debug, Clone, Copy)]
pub struct PoolSize {
    pub max_connections: u32,
    pub max_memory_mib: u32,
}

/// Everything the running host shares between its tasks.
pub struct Server {
    pub engine: Engine,
    pub linkers: Linkers,
    pub pool: PoolSize,
    pub global: Arc<Counter>,
    /// The config in force; replaced whole by a reload that passed.
    config: RwLock<Arc<Config>>,
    /// The mail store. Opened once: two stores on one data directory
    /// would each keep their own folder state.
    store: RwLock<Option<OpenStore>>,
    /// Prepared by [`prepare`], bound by [`run`].
    prepared: Mutex<Vec<Arc<Listener>>>,
    /// The bound sockets, in config order. Changed only by [`run`] and
    /// the reload task, one at a time.
    endpoints: Mutex<Vec<Arc<Endpoint>>>,
    /// Stopped by shutdown; every accept loop watches it.
    shutdown: watch::Receiver<bool>,
    shutdown_tx: watch::Sender<bool>,
    next_id: AtomicU64,
}

impl Server {
    /// The config in force.
    pub fn config(&self) -> Arc<Config> {
        self.config.read().unwrap().clone()
    }

    /// The store opened so far, if any.
    pub fn store(&self) -> Option<OpenStore> {
        self.store.read().unwrap().clone()
    }

    /// The bound sockets now.
    pub fn endpoints(&self) -> Vec<Arc<Endpoint>> {
        self.endpoints.lock().unwrap().clone()
    }

    /// Make `config` the one in force, with its endpoints and a store
    /// it opened. Only the reload task calls this, after everything was
    /// built and bound.
    pub fn commit(
        &self,
        config: Arc<Config>,
        opened: Option<OpenStore>,
        endpoints: Vec<Arc<Endpoint>>,
    ) {
        let limits = &config.limits;
        self.global
            .set_maxima(limits.max_connections, limits.max_connections_per_ip);
        if let Some(opened) = opened {
            *self.store.write().unwrap() = Some(opened);
        }
        *self.endpoints.lock().unwrap() = endpoints;
        *self.config.write().unwrap() = config;
    }

    /// Start accepting on `socket` for `listener`.
    pub fn serve_on(
        self: &Arc<Server>,
        listener: Arc<Listener>,
        socket: TcpListener,
    ) -> Arc<Endpoint> {
        let local = socket.local_addr().unwrap_or(listener.config.address);
        // Bound to one address, every connection arrives on it: no need to
        // ask the kernel for each one.
        let fixed_local = (!local.ip().is_unspecified()).then_some(local);
        let (stop, stopped) = watch::channel(false);
        let endpoint = Arc::new(Endpoint {
            listener: RwLock::new(listener.clone()),
            stop,
            task: Mutex::new(None),
        });
        tracing::info!(
            listener = %listener.config.name,
            address = %local,
            plugin = %listener.config.plugin.display(),
            "listening"
        );

        let task = tokio::spawn(accept_loop(
            self.clone(),
            endpoint.clone(),
            socket,
            fixed_local,
            stopped,
            self.shutdown.clone(),
        ));
        *endpoint.task.lock().unwrap() = Some(task);
        endpoint
    }
}

/// Pending connections the kernel queues for a listener before accept.
const LISTEN_BACKLOG: u32 = 1024;

/// Bind a listener's address, naming the listener and address on error.
///
/// `TCP_NODELAY` is set on the listening socket: Linux hands it down to
/// every accepted connection, which saves a system call per session.
/// Replies are written whole, so Nagle's delay would only add latency.
pub fn bind(listener: &ListenerConfig) -> anyhow::Result<TcpListener> {
    let context = || {
        format!(
            "listener `{}`: failed to bind `address` `{}`",
            listener.name, listener.address
        )
    };
    let socket = match listener.address {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .with_context(context)?;

    // As std's `TcpListener::bind` does: a restart may bind the port
    // again while connections of the last run sit in TIME_WAIT.
    socket.set_reuseaddr(true).with_context(context)?;
    socket.set_nodelay(true).with_context(context)?;
    socket.bind(listener.address).with_context(context)?;
    socket.listen(LISTEN_BACKLOG).with_context(context)
}

/// Whether accepted sockets inherit `TCP_NODELAY` from the listener.
const NODELAY_INHERITED: bool = cfg!(target_os = "linux");

/// Load every plugin and check every file a config names, without
/// binding anything: what `mailhost check` runs, and `run` before it binds.
pub fn prepare(config: Config) -> anyhow::Result<Server> {
    let engine = plugin::engine(&config)?;
    let linkers = Linkers::new(&engine)?;
    let store = crate::store_glue::open(&config)?.map(Arc::new);
    let opened = match (&config.accounts, &store) {
        (Some(_), Some(root)) => Some(OpenStore { root: root.clone() }),
        _ => None,
    };

    let mut listeners = Vec::new();
    for listener in &config.listeners {
        let (max_total, max_per_ip) = listener_maxima(&config, listener);
        let counter = Counter::new(max_total, max_per_ip);
        listeners.push(Arc::new(build_listener(
            &engine,
            &linkers,
            &config,
            listener,
            store.as_deref(),
            counter,
            &plugin_cache(&config),
        )?));
    }

    let global = Counter::new(
        config.limits.max_connections,
        config.limits.max_connections_per_ip,
    );
    let pool = PoolSize {
        max_connections: config.limits.max_connections,
        max_memory_mib: config.limits.max_memory_mib,
    };
    let (shutdown_tx, shutdown) = watch::channel(false);
    Ok(Server {
        engine,
        linkers,
        pool,
        global,
        config: RwLock::new(Arc::new(config)),
        store: RwLock::new(opened),
        prepared: Mutex::new(listeners),
        endpoints: Mutex::new(Vec::new()),
        shutdown,
        shutdown_tx,
        next_id: AtomicU64::new(1),
    })
}

/// A listener's session maxima: its own, or the global ones.
pub fn listener_maxima(
    config: &Config,
    listener: &ListenerConfig,
) -> (u32, u32) {
    (
        listener
            .max_connections
            .unwrap_or(config.limits.max_connections),
        listener
            .max_connections_per_ip
            .unwrap_or(config.limits.max_connections_per_ip),
    )
}

/// Load a listener's plugin and certificates as `config` names them.
/// Blocking: it compiles, or reads the compile cache.
pub fn build_listener(
    engine: &Engine,
    linkers: &Linkers,
    config: &Config,
    listener: &ListenerConfig,
    store: Option<&StoreRoot>,
    counter: Arc<Counter>,
    cache: &std::path::Path,
) -> anyhow::Result<Listener> {
    let context = || format!("listener `{}`", listener.name);

    // The stamp is taken before the read, so a file replaced while it
    // loads is seen as changed by the watch and loaded again.
    let plugin_stamp = crate::reload::stamp(&listener.plugin);
    let loaded = plugin::load(
        engine,
        linkers,
        &listener.plugin,
        listener.role,
        Some(cache),
    )
    .with_context(context)?;
    let tls = tls_offer(config, listener).with_context(context)?;

    Ok(Listener {
        name: listener.name.as_str().into(),
        plugin: RwLock::new(Arc::new(loaded)),
        plugin_stamp,
        counter,
        settings: Arc::new(listener.settings_strings()),
        tls,
        busy_reply: listener.busy_reply().into(),
        error_reply: listener.error_reply().into(),
        log_callsites: crate::plugin_log::callsites_for(&listener.name),
        store: store.map(|store| store.for_listener(listener)),
        max_memory: (config.limits.max_memory_mib as usize) << 20,
        config: listener.clone(),
    })
}

/// The TLS a listener offers, loaded from the files its config names.
fn tls_offer(
    config: &Config,
    listener: &ListenerConfig,
) -> anyhow::Result<Option<TlsOffer>> {
    let Some(files) = config.tls_files(listener) else {
        return Ok(None);
    };
    let sni = config
        .tls
        .as_ref()
        .map(|tls| tls.sni.as_slice())
        .unwrap_or(&[]);

    Ok(Some(TlsOffer {
        acceptor: crate::tls::acceptor(&files, sni)?,
        handshake_timeout: Duration::from_secs(listener.handshake_timeout),
    }))
}

/// Serve until a signal, then drain and return.
pub async fn run(server: Server) -> anyhow::Result<()> {
    let server = Arc::new(server);

    // Signal handlers come first: a SIGHUP sent the moment the host says
    // it is ready must reload it, not end it.
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut hangup = signal(SignalKind::hangup())?;

    // Bind everything before accepting anywhere, so a port in use fails
    // the start before any client was served.
    let prepared = std::mem::take(&mut *server.prepared.lock().unwrap());
    let mut sockets = Vec::new();
    for listener in &prepared {
        sockets.push(bind(&listener.config)?);
    }
    let mut endpoints = Vec::new();
    for (listener, socket) in prepared.into_iter().zip(sockets) {
        endpoints.push(server.serve_on(listener, socket));
    }
    let listeners = endpoints.len();
    *server.endpoints.lock().unwrap() = endpoints;

    let (force_reload, forced) = tokio::sync::mpsc::channel(1);
    tokio::spawn(crate::reload::watch(
        server.clone(),
        forced,
        server.shutdown.clone(),
    ));
    let pid_file = PidFile::write(&server.config().data_dir)?;
    tracing::info!(listeners, "mailhost ready");

    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = hangup.recv() => {
                tracing::info!(
                    "SIGHUP: reloading plugins, certificates and the config"
                );
                // A reload already queued covers this signal too.
                let _ = force_reload.try_send(());
            }
        }
    }

    // Stop accepting first, then tell the sessions: a plugin's next read
    // reports `shutting-down` so it can say goodbye in its protocol.
    let grace = Duration::from_secs(server.config().shutdown_grace);
    tracing::info!(
        sessions = server.global.open(),
        grace_seconds = grace.as_secs(),
        "shutting down: no new sessions, draining"
    );
    server.shutdown_tx.send_replace(true);
    for endpoint in server.endpoints() {
        endpoint.close().await;
    }

    let drained = async {
        let mut last_report = Instant::now();
        while server.global.open() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if last_report.elapsed() >= DRAIN_REPORT_INTERVAL {
                tracing::info!(sessions = server.global.open(), "draining");
                last_report = Instant::now();
            }
        }
    };
    tokio::select! {
        () = drained => tracing::info!("all sessions finished"),
        () = tokio::time::sleep(grace) => tracing::warn!(
            sessions = server.global.open(),
            "grace period over, dropping the remaining sessions"
        ),
        _ = terminate.recv() => tracing::warn!(
            sessions = server.global.open(),
            "second signal, dropping the remaining sessions"
        ),
        _ = interrupt.recv() => tracing::warn!(
            sessions = server.global.open(),
            "second signal, dropping the remaining sessions"
        ),
    }
    drop(pid_file);
    tracing::info!("mailhost stopped");
    Ok(())
}

/// The file naming the running host's pid, for `mailhost reload`.
pub const PID_FILE: &str = "mailhost.pid";

/// `<data-dir>/mailhost.pid` while the host runs; removed on exit.
struct PidFile(std::path::PathBuf);

impl PidFile {
    fn write(data_dir: &std::path::Path) -> anyhow::Result<PidFile> {
        std::fs::create_dir_all(data_dir).with_context(|| {
            format!("failed to create data-dir `{}`", data_dir.display())
        })?;
        let path = data_dir.join(PID_FILE);
        std::fs::write(&path, format!("{}\n", std::process::id()))
            .with_context(|| format!("failed to write `{}`", path.display()))?;
        Ok(PidFile(path))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn accept_loop(
    server: Arc<Server>,
    endpoint: Arc<Endpoint>,
    socket: TcpListener,
    fixed_local: Option<std::net::SocketAddr>,
    mut stop: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = socket.accept() => accepted,
            () = shutdown_begins(&mut stop) => break,
            () = shutdown_begins(&mut shutdown) => break,
        };
        // Taken per connection: a reload swaps it between two accepts.
        let listener = endpoint.current();
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                // Out of file descriptors and the like: back off briefly
                // rather than spin on a listener that keeps failing.
                tracing::warn!(
                    listener = %listener.config.name,
                    cause = %err,
                    "accept failed"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if !NODELAY_INHERITED {
            let _ = tcp.set_nodelay(true);
        }

        let permit =
            match limits::admit(&server.global, &listener.counter, peer.ip()) {
                Ok(permit) => permit,
                Err(hit) => {
                    tracing::info!(
                        listener = %listener.config.name,
                        peer = %peer,
                        limit = hit.name(),
                        "connection refused: over limit"
                    );
                    tokio::spawn(refuse(tcp, listener.busy_reply.clone()));
                    continue;
                }
            };

        let id = server.next_id.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!(
            "session",
            id,
            listener = %listener.config.name,
            peer = %peer,
        );
        let server = server.clone();
        let shutdown = shutdown.clone();
        let session = async move {
            let local = match fixed_local {
                Some(local) => local,
                None => tcp.local_addr().unwrap_or(listener.config.address),
            };
            let addresses = (peer, local);
            serve(&server, &listener, tcp, addresses, id, shutdown).await;
            drop(permit);
        };
        // Boxed: the session's future is kilobytes, and the task would
        // otherwise copy it whole as it is spawned and as it ends.
        tokio::spawn(Box::pin(session.instrument(span)));
    }
}

/// Write the busy reply to a refused client and close, bounded in time.
async fn refuse(tcp: TcpStream, reply: Arc<str>) {
    use tokio::io::AsyncWriteExt;

    let mut tcp = tcp;
    let write = async {
        tcp.write_all(reply.as_bytes()).await?;
        tcp.shutdown().await
    };
    let _ = tokio::time::timeout(BUSY_REPLY_TIMEOUT, write).await;
}

async fn serve(
    server: &Server,
    listener: &Listener,
    tcp: TcpStream,
    (peer, local): (std::net::SocketAddr, std::net::SocketAddr),
    id: u64,
    shutdown: watch::Receiver<bool>,
) {
    let started = Instant::now();
    let config = &listener.config;

    // Implicit TLS is finished before any instance exists, so a client
    // that stalls or talks plaintext costs no plugin.
    let offer = listener.tls.clone();
    let (stream, tls_info, starttls) = match (&offer, config.tls) {
        (Some(offer), TlsMode::Implicit) => {
            let handshake = offer.acceptor.accept(tcp);
            match tokio::time::timeout(offer.handshake_timeout, handshake).await
            {
                Ok(Ok(tls)) => {
                    let facts = crate::tls::session_facts(tls.get_ref().1);
                    (Stream::Tls(Box::new(tls)), Some(facts), None)
                }
                Ok(Err(err)) => {
                    tracing::info!(cause = %err, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::info!("TLS handshake timed out");
                    return;
                }
            }
        }
        (Some(offer), TlsMode::Starttls) => {
            (Stream::Plain(tcp), None, Some(offer.clone()))
        }
        _ => (Stream::Plain(tcp), None, None),
    };

    let io = ConnIo::new(
        stream,
        tls_info,
        starttls,
        config.idle_timeout(),
        Duration::from_secs(config.max_session),
        shutdown,
    );
    let facts = listener.facts(id, peer, local);
    let params = listener.session_params();
    tracing::debug!(plugin = %params.plugin.path.display(), "session started");

    let (outcome, bytes_in, bytes_out) =
        session::run(&server.engine, params, facts, io).await;
    let duration_ms = started.elapsed().as_millis() as u64;
    match outcome {
        Outcome::Completed => tracing::info!(
            duration_ms,
            bytes_in,
            bytes_out,
            outcome = "completed",
            "session ended"
        ),
        Outcome::Trapped(cause) => tracing::warn!(
            duration_ms,
            bytes_in,
            bytes_out,
            outcome = "trapped",
            cause = %cause,
            "session ended"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listener on loopback with an unused port.
    fn loopback_listener() -> ListenerConfig {
        let config: Config = toml::from_str(
            r#"
[[listener]]
name = "probe"
address = "127.0.0.1:0"
role = "session"
plugin = "probe.wasm"
"#,
        )
        .unwrap();
        config.listeners[0].clone()
    }

    /// The accept loop leaves `TCP_NODELAY` alone on Linux, so this is
    /// what every session's socket gets there.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn accepted_connections_have_nodelay_without_a_call_each() {
        let socket = bind(&loopback_listener()).unwrap();
        let address = socket.local_addr().unwrap();
        let _client = TcpStream::connect(address).await.unwrap();
        let (accepted, _) = socket.accept().await.unwrap();

        assert!(accepted.nodelay().unwrap());
    }

    #[tokio::test]
    async fn a_port_in_use_names_the_listener_and_address() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut listener = loopback_listener();
        listener.address = taken.local_addr().unwrap();

        let err = bind(&listener).unwrap_err();
        let message = format!("{err:#}");
        assert!(message.contains("listener `probe`"), "{message}");
        assert!(message.contains(&listener.address.to_string()), "{message}");
    }
}
