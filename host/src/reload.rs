//! Reloading a running host without dropping a session.
//!
//! Hot swap: each listener's plugin file is watched; a changed file is
//! compiled in the background, checked against the listener's role and
//! swapped in for new sessions. A file that does not load leaves the old
//! plugin serving.
//!
//! Config reload (SIGHUP, `mailhost reload`): the config file is read and
//! checked as `mailhost check` does, every plugin and certificate loaded,
//! every new socket bound, and only then is the whole of it applied. A
//! config that fails anywhere is refused whole and the old one keeps
//! running. Sessions already running keep the listener, plugin, limits
//! and certificates they started with.
//!
//! Both run in one task, so a hot swap never races a config reload.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::conn::shutdown_begins;
use crate::limits::Counter;
use crate::plugin;
use crate::server::{self, Endpoint, Listener, OpenStore, PoolSize, Server};
use crate::store_glue::StoreRoot;

/// How often plugin files are looked at. A change is acted on once the
/// file looked the same on two polls in a row, so a copy still being
/// written is not compiled half-done.
pub const PLUGIN_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// What identifies one version of a file without reading it: replacing
/// by rename changes the inode, copying over it the size or mtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    inode: u64,
    len: u64,
    modified: SystemTime,
}

/// The version of the file at `path` now; none if it cannot be read.
pub fn stamp(path: &Path) -> Option<FileStamp> {
    let metadata = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        inode: metadata.ino(),
        len: metadata.len(),
        modified: metadata.modified().ok()?,
    })
}

/// One watched plugin file.
struct Watched {
    path: PathBuf,
    /// The version now serving.
    loaded: Option<FileStamp>,
    /// A new version seen on the last poll, waiting to look the same on
    /// the next one.
    settling: Option<FileStamp>,
}

/// The plugin files of the listeners in force, by listener name.
struct PluginFiles(HashMap<String, Watched>);

impl PluginFiles {
    /// Watch what the endpoints serve now, from the versions they loaded.
    fn of(server: &Server) -> PluginFiles {
        let mut files = HashMap::new();
        for endpoint in server.endpoints() {
            let listener = endpoint.current();
            files.insert(
                listener.config.name.clone(),
                Watched {
                    path: listener.config.plugin.clone(),
                    loaded: listener.plugin_stamp,
                    settling: None,
                },
            );
        }
        PluginFiles(files)
    }
}

/// Watch the plugin files until shutdown. A message on `force` (SIGHUP,
/// `mailhost reload`) reloads the config, and with it every plugin and
/// certificate, changed or not.
pub async fn watch(
    server: Arc<Server>,
    mut force: mpsc::Receiver<()>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut files = PluginFiles::of(&server);

    loop {
        let forced = tokio::select! {
            () = tokio::time::sleep(PLUGIN_POLL_INTERVAL) => false,
            message = force.recv() => message.is_some(),
            () = shutdown_begins(&mut shutdown) => return,
        };

        if forced {
            let path = server.config().path.clone();
            match reload_config(&server).await {
                Ok(()) => files = PluginFiles::of(&server),
                Err(err) => tracing::error!(
                    config = %path.display(),
                    cause = format!("{err:#}"),
                    "config reload refused, the old config keeps running"
                ),
            }
            continue;
        }

        for endpoint in server.endpoints() {
            let listener = endpoint.current();
            let path = &listener.config.plugin;
            let watched = files
                .0
                .entry(listener.config.name.clone())
                .or_insert_with(|| Watched {
                    path: path.clone(),
                    loaded: listener.plugin_stamp,
                    settling: None,
                });
            if watched.path != *path {
                *watched = Watched {
                    path: path.clone(),
                    loaded: listener.plugin_stamp,
                    settling: None,
                };
            }

            let now = stamp(path);
            if now == watched.loaded {
                watched.settling = None;
                continue;
            }
            if watched.settling != now {
                watched.settling = now;
                continue;
            }
            watched.loaded = now;
            watched.settling = None;
            reload_plugin(&server, &listener).await;
        }
    }
}

/// Compile and validate a listener's plugin file again and swap it in.
async fn reload_plugin(server: &Arc<Server>, listener: &Arc<Listener>) {
    let path = listener.config.plugin.clone();
    let role = listener.config.role;
    let compiling = {
        let server = server.clone();
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            let cache = server::plugin_cache(&server.config());
            plugin::load(
                &server.engine,
                &server.linkers,
                &path,
                role,
                Some(&cache),
            )
        })
    };

    match compiling.await {
        Ok(Ok(fresh)) => {
            *listener.plugin.write().unwrap() = Arc::new(fresh);
            tracing::info!(
                listener = %listener.config.name,
                plugin = %path.display(),
                "plugin swapped in for new sessions"
            );
        }
        Ok(Err(err)) => tracing::error!(
            listener = %listener.config.name,
            plugin = %path.display(),
            cause = format!("{err:#}"),
            "plugin reload refused, the old plugin keeps serving"
        ),
        Err(err) => tracing::error!(
            listener = %listener.config.name,
            cause = %err,
            "plugin reload task failed"
        ),
    }
}

/// A config that passed every check, loaded but not yet in force.
struct Candidate {
    config: Arc<Config>,
    /// The store in force after the reload, when this config opened it
    /// for the first time or changed its accounts.
    opened: Option<OpenStore>,
    /// Where the running store takes its new accounts from.
    accounts_from: Option<Arc<StoreRoot>>,
    /// In the config's order.
    listeners: Vec<Arc<Listener>>,
}

/// Read the config file again and apply it, or refuse it whole.
async fn reload_config(server: &Arc<Server>) -> anyhow::Result<()> {
    let started = Instant::now();
    let old = server.config();
    let path = old.path.clone();
    let endpoints = server.endpoints();

    // Parsing, compiling and reading certificates block: off the runtime.
    let candidate = {
        let server = server.clone();
        let old = old.clone();
        let counters: HashMap<String, Arc<Counter>> = endpoints
            .iter()
            .map(|endpoint| {
                let listener = endpoint.current();
                (listener.config.name.clone(), listener.counter.clone())
            })
            .collect();
        tokio::task::spawn_blocking(move || {
            load_candidate(&server, &old, &counters)
        })
        .await
        .context("the config reload task failed")??
    };
    let new = candidate.config.clone();
    let plan = Plan::between(&old, &new);

    // Every new socket is bound before anything changes; a failed bind
    // drops the ones already bound with `sockets`. A listener keeps its
    // socket unless it is new or its `address` changed.
    let by_name: HashMap<String, &Arc<Endpoint>> = endpoints
        .iter()
        .map(|endpoint| (endpoint.current().config.name.clone(), endpoint))
        .collect();
    let mut sockets = HashMap::new();
    for listener in &new.listeners {
        let kept = by_name
            .get(&listener.name)
            .filter(|e| e.current().config.address == listener.address);
        if kept.is_none() {
            let socket = server::bind(listener)
                .with_context(|| format!("config `{}`", path.display()))?;
            sockets.insert(listener.name.clone(), socket);
        }
    }

    // From here on nothing fails: apply the limits, then swap in the
    // listeners, then start accepting on the new sockets.
    for listener in &candidate.listeners {
        let (max_total, max_per_ip) =
            server::listener_maxima(&new, &listener.config);
        listener.counter.set_maxima(max_total, max_per_ip);
    }
    let mut in_force = Vec::new();
    let mut to_close = Vec::new();
    for listener in &candidate.listeners {
        let name = &listener.config.name;
        let before = by_name.get(name).map(|e| (*e).clone());
        if let Some(socket) = sockets.remove(name) {
            to_close.extend(before);
            in_force.push(server.serve_on(listener.clone(), socket));
        } else if let Some(endpoint) = before {
            *endpoint.listener.write().unwrap() = listener.clone();
            in_force.push(endpoint);
        }
    }
    for name in &plan.removed {
        to_close.extend(by_name.get(name).map(|e| (*e).clone()));
    }
    if let (Some(opened), Some(fresh)) =
        (&candidate.opened, &candidate.accounts_from)
    {
        opened.root.adopt_accounts(fresh);
    }
    server.commit(new.clone(), candidate.opened, in_force);

    // Closed only after the commit, so a removed listener's socket stops
    // accepting before the summary says so.
    for endpoint in to_close {
        endpoint.close().await;
    }
    for listener in &candidate.listeners {
        let name = &listener.config.name;
        tracing::info!(
            listener = %name,
            plugin = %listener.config.plugin.display(),
            "plugin swapped in for new sessions"
        );
        if listener.tls.is_some() {
            tracing::info!(listener = %name, "certificates reloaded");
        }
    }
    for name in &plan.removed {
        tracing::info!(
            listener = %name,
            "listener removed: no new sessions, running ones finish"
        );
    }
    tracing::info!(
        config = %path.display(),
        listeners_added = ?plan.added,
        listeners_removed = ?plan.removed,
        listeners_changed = ?plan.changed,
        listeners_rebound = ?plan.rebound,
        limits_changed = old.limits != new.limits,
        duration_ms = started.elapsed().as_millis() as u64,
        "config reloaded"
    );
    Ok(())
}

/// Everything `mailhost check` checks, with the running engine, and the
/// listeners built from it. Blocking.
fn load_candidate(
    server: &Server,
    old: &Config,
    counters: &HashMap<String, Arc<Counter>>,
) -> anyhow::Result<Candidate> {
    let path = &old.path;
    let new = Config::load(path)?;
    let context = || format!("config `{}`", path.display());
    needs_no_restart(old, &new, server.pool).with_context(context)?;

    // The accounts are loaded as `check` loads them, so a broken users
    // file refuses the reload. The store opened first stays: its folder
    // state is shared by every session, so it only takes the new
    // accounts (users, aliases, domains) from the freshly loaded one.
    let running = server.store();
    let fresh = crate::store_glue::open(&new).with_context(context)?;
    let mut accounts_from = None;
    let (store, opened) = match (new.accounts.clone(), running, fresh) {
        (None, _, _) => (None, None),
        (Some(_), Some(running), Some(fresh)) => {
            accounts_from = Some(Arc::new(fresh));
            let opened = OpenStore {
                root: running.root.clone(),
            };
            (Some(running.root), Some(opened))
        }
        (Some(_), Some(running), None) => (Some(running.root), None),
        (Some(_), None, Some(fresh)) => {
            let root = Arc::new(fresh);
            let opened = OpenStore { root: root.clone() };
            (Some(root), Some(opened))
        }
        (Some(_), None, None) => (None, None),
    };

    let mut listeners = Vec::new();
    for listener in &new.listeners {
        let counter = match counters.get(&listener.name) {
            Some(counter) => counter.clone(),
            None => {
                let (total, per_ip) = server::listener_maxima(&new, listener);
                Counter::new(total, per_ip)
            }
        };
        let built = server::build_listener(
            &server.engine,
            &server.linkers,
            &new,
            listener,
            store.as_deref(),
            counter,
            &server::plugin_cache(&new),
        )
        .with_context(context)?;
        listeners.push(Arc::new(built));
    }

    Ok(Candidate {
        config: Arc::new(new),
        opened,
        accounts_from,
        listeners,
    })
}

/// Refuse the changes a running host cannot make, naming the key.
fn needs_no_restart(
    old: &Config,
    new: &Config,
    pool: PoolSize,
) -> anyhow::Result<()> {
    if new.data_dir != old.data_dir {
        bail!(
            "`data-dir` changed from `{}` to `{}`: the store and the plugin \
             cache stay where they are until a restart",
            old.data_dir.display(),
            new.data_dir.display()
        );
    }
    if new.limits.max_connections > pool.max_connections {
        bail!(
            "`limits.max-connections` `{}` is more than the instance pool \
             sized at start holds (`{}`): a restart is needed to grow it",
            new.limits.max_connections,
            pool.max_connections
        );
    }
    if new.limits.max_memory_mib > pool.max_memory_mib {
        bail!(
            "`limits.max-memory-mib` `{}` is more than the instance pool \
             sized at start allows (`{}`): a restart is needed to grow it",
            new.limits.max_memory_mib,
            pool.max_memory_mib
        );
    }
    Ok(())
}

/// How the listeners of two configs differ, by name.
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan {
    added: Vec<String>,
    removed: Vec<String>,
    /// Any key of the listener differs.
    changed: Vec<String>,
    /// Changed `address`: a new socket replaces the old one.
    rebound: Vec<String>,
}

impl Plan {
    fn between(old: &Config, new: &Config) -> Plan {
        let mut plan = Plan::default();
        for listener in &new.listeners {
            let before = old.listeners.iter().find(|l| l.name == listener.name);
            match before {
                None => plan.added.push(listener.name.clone()),
                Some(before) if before != listener => {
                    plan.changed.push(listener.name.clone());
                    if before.address != listener.address {
                        plan.rebound.push(listener.name.clone());
                    }
                }
                Some(_) => {}
            }
        }
        for listener in &old.listeners {
            if !new.listeners.iter().any(|l| l.name == listener.name) {
                plan.removed.push(listener.name.clone());
            }
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        toml::from_str(text).unwrap()
    }

    const POOL: PoolSize = PoolSize {
        max_connections: 100,
        max_memory_mib: 64,
    };

    const TWO_LISTENERS: &str = r#"
[limits]
max-connections = 100

[[listener]]
name = "a"
address = "127.0.0.1:2025"
role = "session"
plugin = "a.wasm"

[[listener]]
name = "b"
address = "127.0.0.1:2110"
role = "session"
plugin = "b.wasm"
"#;

    #[test]
    fn plan_names_added_removed_changed_and_rebound_listeners() {
        let old = config(TWO_LISTENERS);
        let new = config(
            r#"
[[listener]]
name = "b"
address = "127.0.0.1:2111"
role = "session"
plugin = "b.wasm"

[[listener]]
name = "c"
address = "127.0.0.1:2143"
role = "session"
plugin = "c.wasm"
"#,
        );

        assert_eq!(
            Plan::between(&old, &new),
            Plan {
                added: vec!["c".into()],
                removed: vec!["a".into()],
                changed: vec!["b".into()],
                rebound: vec!["b".into()],
            }
        );
    }

    #[test]
    fn plan_keeps_the_socket_of_a_listener_changed_elsewhere() {
        let old = config(TWO_LISTENERS);
        let new = config(&TWO_LISTENERS.replace(
            "plugin = \"b.wasm\"",
            "plugin = \"b.wasm\"\nmax-connections = 3",
        ));

        let plan = Plan::between(&old, &new);
        assert_eq!(plan.changed, vec!["b".to_owned()]);
        assert!(plan.rebound.is_empty() && plan.added.is_empty());
        assert_eq!(Plan::between(&old, &old), Plan::default());
    }

    /// `TWO_LISTENERS` with more keys in its `[limits]`.
    fn with_limits(keys: &str) -> String {
        TWO_LISTENERS.replace("[limits]\n", &format!("[limits]\n{keys}\n"))
    }

    #[test]
    fn growing_the_pool_or_moving_the_data_dir_needs_a_restart() {
        let old = config(TWO_LISTENERS);
        let refused = |text: String, key: &str| {
            let err = needs_no_restart(&old, &config(&text), POOL)
                .expect_err(key)
                .to_string();
            assert!(err.contains(key), "{key} not in {err}");
            assert!(err.contains("restart"), "{err}");
        };

        refused(
            TWO_LISTENERS
                .replace("max-connections = 100", "max-connections = 101"),
            "`limits.max-connections` `101`",
        );
        refused(
            with_limits("max-memory-mib = 65"),
            "`limits.max-memory-mib`",
        );
        refused(
            format!("data-dir = \"elsewhere\"\n{TWO_LISTENERS}"),
            "`data-dir`",
        );
    }

    #[test]
    fn lowering_the_limits_applies_without_a_restart() {
        let old = config(TWO_LISTENERS);
        let lower = config(
            &with_limits("max-connections-per-ip = 2\nmax-memory-mib = 16")
                .replace("max-connections = 100", "max-connections = 10"),
        );
        needs_no_restart(&old, &lower, POOL).unwrap();

        // Back up to what the pool was sized for is fine too.
        needs_no_restart(&lower, &old, POOL).unwrap();
    }
}
