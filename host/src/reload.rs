//! Hot swap: each listener's plugin file is watched; a changed file is
//! compiled in the background, checked against the listener's role and
//! swapped in for new sessions. Sessions already running keep the code
//! they started with. A file that does not load leaves the old plugin
//! serving.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch};

use crate::conn::shutdown_begins;
use crate::plugin;
use crate::server::{Listener, PLUGIN_CACHE_DIR, Server};

/// How often plugin files are looked at. A change is acted on once the
/// file looked the same on two polls in a row, so a copy still being
/// written is not compiled half-done.
pub const PLUGIN_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// What identifies one version of a file without reading it: replacing
/// by rename changes the inode, copying over it the size or mtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    inode: u64,
    len: u64,
    modified: SystemTime,
}

fn stamp(path: &Path) -> Option<FileStamp> {
    let metadata = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        inode: metadata.ino(),
        len: metadata.len(),
        modified: metadata.modified().ok()?,
    })
}

/// Watch the plugin files until shutdown. A message on `force` (SIGHUP,
/// `mailhost reload`) reloads every plugin at once, changed or not.
pub async fn watch_plugins(
    server: Arc<Server>,
    mut force: mpsc::Receiver<()>,
    mut shutdown: watch::Receiver<bool>,
) {
    let listeners = &server.listeners;
    let mut loaded: Vec<_> =
        listeners.iter().map(|l| stamp(&l.config.plugin)).collect();
    let mut settling: Vec<Option<FileStamp>> = vec![None; listeners.len()];

    loop {
        let forced = tokio::select! {
            () = tokio::time::sleep(PLUGIN_POLL_INTERVAL) => false,
            message = force.recv() => message.is_some(),
            () = shutdown_begins(&mut shutdown) => return,
        };

        for (index, listener) in listeners.iter().enumerate() {
            let now = stamp(&listener.config.plugin);
            if !forced {
                if now == loaded[index] {
                    settling[index] = None;
                    continue;
                }
                if settling[index] != now {
                    settling[index] = now;
                    continue;
                }
            }

            loaded[index] = now;
            settling[index] = None;
            reload_plugin(&server, listener).await;
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
            let cache = server.config.data_dir.join(PLUGIN_CACHE_DIR);
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
