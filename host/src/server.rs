//! `mailhost run`: bind every listener, accept under the limits, run a
//! session per connection, and drain on shutdown.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tracing::Instrument;
use wasmtime::Engine;

use crate::config::{Config, ListenerConfig, TlsMode};
use crate::conn::{ConnIo, Stream, TlsOffer, shutdown_begins};
use crate::limits::{self, Counter};
use crate::plugin::{self, Linkers, Plugin};
use crate::session::{self, Facts, Outcome, SessionParams};

/// How long the host tries to hand a refused client its busy reply.
const BUSY_REPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// Where compiled plugins are cached, under the data directory.
pub const PLUGIN_CACHE_DIR: &str = "plugin-cache";

/// How often the drain reports the sessions still running.
const DRAIN_REPORT_INTERVAL: Duration = Duration::from_secs(5);

/// A listener's configuration with its loaded plugin and counters.
pub struct Listener {
    pub config: ListenerConfig,
    /// The plugin new sessions get. Swapped whole on reload; a running
    /// session keeps the `Arc` it started with.
    pub plugin: RwLock<Arc<Plugin>>,
    pub counter: Arc<Counter>,
    pub settings: Arc<Vec<(String, String)>>,
    /// The TLS acceptor; replaced when SIGHUP reloads certificates.
    pub tls: RwLock<Option<TlsOffer>>,
    pub busy_reply: Arc<str>,
    pub error_reply: Arc<str>,
    pub store: Option<crate::store_glue::StoreCtx>,
}

/// Everything the running host shares between its tasks.
pub struct Server {
    pub engine: Engine,
    pub linkers: Linkers,
    pub config: Config,
    pub global: Arc<Counter>,
    pub listeners: Vec<Arc<Listener>>,
    next_id: AtomicU64,
}

/// Load every plugin and check every file a config names, without
/// binding anything: what `mailhost check` runs, and `run` before it binds.
pub fn prepare(config: Config) -> anyhow::Result<Server> {
    let engine = plugin::engine(&config)?;
    let linkers = Linkers::new(&engine)?;
    let store = crate::store_glue::open(&config)?;
    let cache = config.data_dir.join(PLUGIN_CACHE_DIR);

    let mut listeners = Vec::new();
    for listener in &config.listeners {
        let loaded = plugin::load(
            &engine,
            &linkers,
            &listener.plugin,
            listener.role,
            Some(&cache),
        )
        .with_context(|| format!("listener `{}`", listener.name))?;
        let tls = tls_offer(&config, listener)
            .with_context(|| format!("listener `{}`", listener.name))?;
        let counter = Counter::new(
            listener
                .max_connections
                .unwrap_or(config.limits.max_connections),
            listener
                .max_connections_per_ip
                .unwrap_or(config.limits.max_connections_per_ip),
        );
        let store = store.as_ref().map(|store| store.for_listener(listener));

        listeners.push(Arc::new(Listener {
            plugin: RwLock::new(Arc::new(loaded)),
            counter,
            settings: Arc::new(listener.settings_strings()),
            tls: RwLock::new(tls),
            busy_reply: listener.busy_reply().into(),
            error_reply: listener.error_reply().into(),
            store,
            config: listener.clone(),
        }));
    }

    let global = Counter::new(
        config.limits.max_connections,
        config.limits.max_connections_per_ip,
    );
    Ok(Server {
        engine,
        linkers,
        config,
        global,
        listeners,
        next_id: AtomicU64::new(1),
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

/// Load every listener's certificates again. A listener whose files fail
/// to load keeps its old ones; sessions already encrypted are untouched.
fn reload_certificates(server: &Server) {
    for listener in &server.listeners {
        let name = &listener.config.name;
        match tls_offer(&server.config, &listener.config) {
            Ok(Some(offer)) => {
                *listener.tls.write().unwrap() = Some(offer);
                tracing::info!(listener = %name, "certificates reloaded");
            }
            Ok(None) => {}
            Err(err) => tracing::error!(
                listener = %name,
                cause = format!("{err:#}"),
                "certificate reload failed, keeping the old ones"
            ),
        }
    }
}

/// Serve until a signal, then drain and return.
pub async fn run(server: Server) -> anyhow::Result<()> {
    let server = Arc::new(server);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);

    let mut accept_tasks = Vec::new();
    for listener in &server.listeners {
        let socket = TcpListener::bind(listener.config.address)
            .await
            .with_context(|| {
                format!(
                    "listener `{}`: failed to bind `{}`",
                    listener.config.name, listener.config.address
                )
            })?;
        let address = socket.local_addr()?;
        tracing::info!(
            listener = %listener.config.name,
            address = %address,
            plugin = %listener.config.plugin.display(),
            "listening"
        );
        accept_tasks.push(tokio::spawn(accept_loop(
            server.clone(),
            listener.clone(),
            socket,
            shutdown_rx.clone(),
        )));
    }
    let (force_reload, forced) = tokio::sync::mpsc::channel(1);
    tokio::spawn(crate::reload::watch_plugins(
        server.clone(),
        forced,
        shutdown_rx.clone(),
    ));
    let pid_file = PidFile::write(&server.config.data_dir)?;
    tracing::info!(listeners = server.listeners.len(), "mailhost ready");

    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut hangup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading plugins and certificates");
                let _ = force_reload.try_send(());
                let server = server.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    reload_certificates(&server)
                })
                .await;
            }
        }
    }

    // Stop accepting first, then tell the sessions: a plugin's next read
    // reports `shutting-down` so it can say goodbye in its protocol.
    let grace = Duration::from_secs(server.config.shutdown_grace);
    tracing::info!(
        sessions = server.global.open(),
        grace_seconds = grace.as_secs(),
        "shutting down: no new sessions, draining"
    );
    shutdown_tx.send_replace(true);
    for task in accept_tasks {
        let _ = task.await;
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
    listener: Arc<Listener>,
    socket: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = socket.accept() => accepted,
            () = shutdown_begins(&mut shutdown) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                // Out of file descriptors and the like: back off briefly
                // rather than spin on a listener that keeps failing.
                tracing::warn!(listener = %listener.config.name, cause = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);

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
        let listener = listener.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(
            async move {
                serve(&server, &listener, tcp, peer, id, shutdown).await;
                drop(permit);
            }
            .instrument(span),
        );
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
    peer: std::net::SocketAddr,
    id: u64,
    shutdown: watch::Receiver<bool>,
) {
    let started = Instant::now();
    let local = tcp.local_addr().unwrap_or(listener.config.address);
    let config = &listener.config;

    // Implicit TLS is finished before any instance exists, so a client
    // that stalls or talks plaintext costs no plugin.
    let offer = listener.tls.read().unwrap().clone();
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
    let facts = Facts {
        id,
        listener: config.name.as_str().into(),
        peer,
        local,
        plaintext_auth: config.plaintext_auth,
    };
    let plugin = listener.plugin.read().unwrap().clone();
    let params = SessionParams {
        plugin,
        settings: listener.settings.clone(),
        max_memory: (server.config.limits.max_memory_mib as usize) << 20,
        cpu_slice: Duration::from_millis(config.cpu_slice_ms),
        log_rate: config.log_rate,
        error_reply: listener.error_reply.clone(),
        store: listener.store.clone(),
    };
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
