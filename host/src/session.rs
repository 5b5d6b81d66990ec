//! One session: a fresh plugin instance in its own store, serving one
//! connection from greeting to goodbye, contained whatever it does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{
    Engine, Store, StoreLimits, StoreLimitsBuilder, UpdateDeadline,
};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::bindings::mailhost::plugin as wit;
use crate::bindings::{SessionInfo, TlsInfo};
use crate::config::{PlaintextAuth, Role};
use crate::conn::{ConnIo, ConnectionHandle};
use crate::plugin::Plugin;
use crate::plugin_log::{Callsites, OutputToLog, PluginLog};

/// Most resources (handles) a plugin may hold at once.
const MAX_HANDLES: usize = 4096;

/// Most table elements of one instance.
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Most bytes the host copies for one guest call: a little over the
/// largest write, so no single call makes the host copy without bound.
const HOSTCALL_FUEL: usize = 4 << 20;

/// What the host knows of the session, fixed at accept.
#[derive(Debug, Clone)]
pub struct Facts {
    pub id: u64,
    pub listener: Arc<str>,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub plaintext_auth: PlaintextAuth,
}

/// Why a session stopped, when the plugin did not return by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    CpuSlice,
}

/// The data of one session's store.
pub struct SessionState {
    pub table: ResourceTable,
    /// Built on the plugin's first WASI call. Most sessions make none
    /// (a Rust plugin's standard library imports WASI for printing,
    /// clocks and randomness it may never use), and building one costs
    /// as much as several host calls.
    wasi: Option<WasiCtx>,
    limits: StoreLimits,
    pub io: ConnIo,
    pub facts: Facts,
    pub settings: Arc<Vec<(String, String)>>,
    pub log: PluginLog,
    /// Epoch ticks the plugin was seen running since it last had input
    /// from the client: the CPU slice counts these, not wall time.
    ticks_computing: u32,
    cpu_slice: Duration,
    stopped: Option<Stopped>,
    /// Store capabilities; none on a session-role listener.
    pub store: Option<crate::store_glue::StoreCtx>,
}

impl SessionState {
    pub fn session_info(&self) -> SessionInfo {
        let tls: Option<TlsInfo> = self.io.tls_info();
        let plaintext_auth_allowed = tls.is_some()
            || match self.facts.plaintext_auth {
                PlaintextAuth::Always => true,
                PlaintextAuth::Never => false,
                PlaintextAuth::Loopback => self.facts.peer.ip().is_loopback(),
            };

        SessionInfo {
            id: self.facts.id,
            listener: self.facts.listener.to_string(),
            peer_address: self.facts.peer.ip().to_string(),
            peer_port: self.facts.peer.port(),
            local_address: self.facts.local.ip().to_string(),
            local_port: self.facts.local.port(),
            tls,
            plaintext_auth_allowed,
            tls_available: self.io.tls_available(),
        }
    }
}

impl WasiView for SessionState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: self.wasi.get_or_insert_with(|| deny_all_wasi(&self.log)),
            table: &mut self.table,
        }
    }
}

/// A WASI context that grants nothing: no directories, environment,
/// arguments, stdin or sockets. Stdout and stderr go to the log, under
/// the span current at the first WASI call, which is the session's.
fn deny_all_wasi(log: &PluginLog) -> WasiCtx {
    let span = tracing::Span::current();
    WasiCtxBuilder::new()
        .stdout(OutputToLog::new(
            log.clone(),
            wit::log::Level::Info,
            span.clone(),
        ))
        .stderr(OutputToLog::new(log.clone(), wit::log::Level::Warn, span))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build()
}

impl wit::settings::Host for SessionState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        let value = self.settings.iter().find(|(name, _)| *name == key);
        Ok(value.map(|(_, value)| value.clone()))
    }

    fn all(&mut self) -> wasmtime::Result<Vec<(String, String)>> {
        Ok(self.settings.as_ref().clone())
    }
}

/// A linker holding WASI (deny-all) and exactly the interfaces `role`
/// grants. A plugin importing more fails to link, on top of the
/// import check that names the culprit.
pub fn linker(
    engine: &Engine,
    role: Role,
) -> anyhow::Result<Linker<SessionState>> {
    use wasmtime::component::HasSelf;

    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;

    fn get(state: &mut SessionState) -> &mut SessionState {
        state
    }
    wit::connection::add_to_linker::<_, HasSelf<_>>(&mut linker, get)?;
    wit::log::add_to_linker::<_, HasSelf<_>>(&mut linker, get)?;
    wit::settings::add_to_linker::<_, HasSelf<_>>(&mut linker, get)?;
    match role {
        Role::Session => {}
        Role::Submission => {
            wit::accounts::add_to_linker::<_, HasSelf<_>>(&mut linker, get)?;
            wit::delivery::add_to_linker::<_, HasSelf<_>>(&mut linker, get)?;
        }
        Role::Mailbox => {
            wit::accounts::add_to_linker::<_, HasSelf<_>>(&mut linker, get)?;
            wit::mailbox::add_to_linker::<_, HasSelf<_>>(&mut linker, get)?;
        }
    }
    Ok(linker)
}

/// The parts of a listener a session needs.
pub struct SessionParams {
    pub plugin: Arc<Plugin>,
    pub settings: Arc<Vec<(String, String)>>,
    pub max_memory: usize,
    pub cpu_slice: Duration,
    pub log_rate: u32,
    /// Where the plugin's records go: `plugin::<listener>`.
    pub log_callsites: &'static Callsites,
    pub error_reply: Arc<str>,
    pub store: Option<crate::store_glue::StoreCtx>,
}

/// How a session ended, for the summary line.
#[derive(Debug)]
pub enum Outcome {
    Completed,
    Trapped(String),
}

/// Run one session to its end. Never fails: whatever the plugin does is
/// logged and contained here.
pub async fn run(
    engine: &Engine,
    params: SessionParams,
    facts: Facts,
    io: ConnIo,
) -> (Outcome, u64, u64) {
    let plugin = params.plugin.clone();
    let error_reply = params.error_reply.clone();
    let mut store = new_store(engine, params, facts, io);

    let outcome = call_plugin(&mut store, &plugin).await;
    let outcome = match outcome {
        Ok(()) => Outcome::Completed,
        Err(err) => {
            let cause = match store.data().stopped {
                Some(Stopped::CpuSlice) => "cpu slice exhausted".to_owned(),
                None => trap_summary(&err),
            };
            store.data_mut().io.write_reply(&error_reply).await;
            Outcome::Trapped(cause)
        }
    };

    let state = store.data_mut();
    state.io.close().await;
    (outcome, state.io.bytes_in, state.io.bytes_out)
}

/// A store for one session with its limits: memory cap, table and handle
/// caps, host-call copy cap, and the CPU slice through epochs.
pub fn new_store(
    engine: &Engine,
    params: SessionParams,
    facts: Facts,
    io: ConnIo,
) -> Store<SessionState> {
    let log = PluginLog::new(params.log_rate, params.log_callsites);

    let mut table = ResourceTable::new();
    table.set_max_capacity(MAX_HANDLES);
    let limits = StoreLimitsBuilder::new()
        .memory_size(params.max_memory)
        .table_elements(MAX_TABLE_ELEMENTS)
        .trap_on_grow_failure(false)
        .build();
    let state = SessionState {
        table,
        wasi: None,
        limits,
        io,
        facts,
        settings: params.settings,
        log,
        ticks_computing: 0,
        cpu_slice: params.cpu_slice,
        stopped: None,
        store: params.store,
    };

    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limits);
    store.set_hostcall_fuel(HOSTCALL_FUEL);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(cpu_slice_check);
    store
}

impl SessionState {
    /// Mark the end of a wait on the client: from here the plugin is
    /// computing again, and its CPU slice starts over.
    pub fn resume_cpu(&mut self) {
        self.ticks_computing = 0;
    }
}

/// Idle timeout and session length of a timed in-process session: only
/// a plugin that ignores the client's close ever waits this long.
const BENCH_IO_TIMEOUT: Duration = Duration::from_secs(5);

/// What a timed session of `plugin` over `stream` starts with: the
/// defaults of a session-role listener named `bench`, and `settings`.
fn bench_session(
    plugin: &Arc<Plugin>,
    settings: &Arc<Vec<(String, String)>>,
    id: u64,
    stream: crate::conn::Stream,
    shutdown: &tokio::sync::watch::Receiver<bool>,
) -> (SessionParams, Facts, ConnIo) {
    let params = SessionParams {
        plugin: plugin.clone(),
        settings: settings.clone(),
        max_memory: 64 << 20,
        cpu_slice: Duration::from_secs(1),
        log_rate: 50,
        log_callsites: crate::plugin_log::callsites_for("bench"),
        error_reply: "".into(),
        store: None,
    };
    let facts = Facts {
        id,
        listener: "bench".into(),
        peer: ([127, 0, 0, 1], 0).into(),
        local: ([127, 0, 0, 1], 0).into(),
        plaintext_auth: PlaintextAuth::Never,
    };
    let io = ConnIo::new(
        stream,
        None,
        None,
        BENCH_IO_TIMEOUT,
        BENCH_IO_TIMEOUT,
        shutdown.clone(),
    );
    (params, facts, io)
}

/// Instantiate `plugin` `count` times in fresh stores, as sessions do,
/// without running it; returns each instantiation's duration, sorted.
pub async fn time_instantiation(
    engine: &Engine,
    plugin: Arc<Plugin>,
    count: usize,
) -> anyhow::Result<Vec<Duration>> {
    let (_keep, shutdown) = tokio::sync::watch::channel(false);
    let mut times = Vec::with_capacity(count);
    let no_settings = Arc::new(Vec::new());

    for _ in 0..count {
        let (params, facts, io) = bench_session(
            &plugin,
            &no_settings,
            0,
            crate::conn::Stream::Gone,
            &shutdown,
        );

        let started = Instant::now();
        let mut store = new_store(engine, params, facts, io);
        plugin.pre.instantiate_async(&mut store).await?;
        times.push(started.elapsed());
    }

    times.sort();
    Ok(times)
}

/// Run `count` whole sessions of `plugin` one after another, each over
/// an in-process pipe whose client sends `input` at once, closes its side
/// and reads until the plugin closes; returns each session's duration,
/// sorted, or the first session that trapped.
/// No socket is involved, so this is what the sandbox costs a session.
pub async fn time_sessions(
    engine: &Engine,
    plugin: &Arc<Plugin>,
    settings: &Arc<Vec<(String, String)>>,
    input: &[u8],
    count: usize,
) -> anyhow::Result<Vec<Duration>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Bytes the pipe holds each way: more than any bench input.
    const PIPE_CAPACITY: usize = 64 << 10;

    let (_keep, shutdown) = tokio::sync::watch::channel(false);
    let mut times = Vec::with_capacity(count);
    let mut output = Vec::new();

    for id in 0..count {
        let (mut client, server_end) = tokio::io::duplex(PIPE_CAPACITY);
        let (params, facts, io) = bench_session(
            plugin,
            settings,
            id as u64,
            crate::conn::Stream::Memory(server_end),
            &shutdown,
        );

        // The client closes its side after the input, so a plugin that
        // waits for more ends at once instead of at the idle timeout.
        let started = Instant::now();
        client.write_all(input).await?;
        client.shutdown().await?;
        output.clear();
        let client_side = client.read_to_end(&mut output);
        let (outcome, read) =
            tokio::join!(run(engine, params, facts, io), client_side);
        times.push(started.elapsed());

        read?;
        if let (Outcome::Trapped(cause), _, _) = outcome {
            anyhow::bail!("session {id} trapped: {cause}");
        }
    }

    times.sort();
    Ok(times)
}

async fn call_plugin(
    store: &mut Store<SessionState>,
    plugin: &Plugin,
) -> wasmtime::Result<()> {
    let conn = store.data_mut().table.push(ConnectionHandle)?;
    let instance = plugin.pre.instantiate_async(&mut *store).await?;
    instance
        .mailhost_plugin_handler()
        .call_run(&mut *store, conn)
        .await
}

/// Called when the plugin runs wasm code past an epoch tick: the first
/// time it does after each tick, so once per tick it was seen running.
/// The CPU slice is that count times the tick. Time the thread spent on
/// other sessions, or descheduled by the kernel, adds at most one tick,
/// and so does a host call that waited (on the disk, a login delay, a
/// slow reader): only computing adds up. A plugin past its slice since
/// it last had input is stopped; one that computed more than a tick
/// yields, so other sessions on its thread run.
fn cpu_slice_check(
    mut ctx: wasmtime::StoreContextMut<'_, SessionState>,
) -> wasmtime::Result<UpdateDeadline> {
    let state = ctx.data_mut();
    state.ticks_computing = state.ticks_computing.saturating_add(1);
    let computed = crate::plugin::EPOCH_TICK * state.ticks_computing;
    if computed > state.cpu_slice {
        state.stopped = Some(Stopped::CpuSlice);
        wasmtime::bail!("cpu slice exhausted");
    }
    if state.ticks_computing == 1 {
        return Ok(UpdateDeadline::Continue(1));
    }

    // tokio's own yield, not wasmtime's default: the latter can be picked
    // straight back up from the LIFO slot and starve the other sessions.
    Ok(UpdateDeadline::YieldCustom(
        1,
        Box::pin(tokio::task::yield_now()),
    ))
}

/// A one-line cause for a trap: the trap code where there is one, else
/// the first line of the error chain.
fn trap_summary(err: &wasmtime::Error) -> String {
    if let Some(trap) = err.downcast_ref::<wasmtime::Trap>() {
        return trap.to_string();
    }
    let text = format!("{err:#}");
    text.lines().next().unwrap_or("unknown").to_owned()
}
