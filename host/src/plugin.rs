//! Plugins: the engine they run on, loading and validating a component
//! against the world its listener's role grants, and the pre-linked
//! `InstancePre` every session instantiates from.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::bindings::AllRolesPre;
use crate::config::{Config, Role};
use crate::session::SessionState;

/// How often the engine's epoch advances: the unit of the CPU slice. A
/// plugin that computes is checked once per tick, and from its second
/// tick without input it yields to other sessions at each.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Core instances one component may use. A Rust `wasm32-wasip2` plugin
/// uses a handful (its module plus adapter shims); a Python plugin built
/// by componentize-py about forty (the interpreter's libraries each are
/// one). Slots are counters, not reserved memory, so this is cheap.
const CORE_INSTANCES_PER_COMPONENT: u32 = 64;

/// Linear memories one component may use.
const MEMORIES_PER_COMPONENT: u32 = 2;

/// Tables one component may use.
const TABLES_PER_COMPONENT: u32 = 8;

/// Bytes of a linear memory, table and async stack that a finished
/// session's slot keeps mapped and resets with `memset` (only its dirty
/// pages, where the kernel offers `PAGEMAP_SCAN`) instead of `madvise`:
/// the next session skips three system calls and the page faults of
/// touching the same pages again. Dirtier slots fall back to `madvise`.
const MEMORY_KEEP_RESIDENT: usize = 1 << 20;
const TABLE_KEEP_RESIDENT: usize = 64 << 10;
const STACK_KEEP_RESIDENT: usize = 128 << 10;

/// Instances kept in the pool beyond the connection limit, so sessions
/// still draining after a limit is lowered do not starve new ones.
const POOL_SLACK: u32 = 16;

/// The WASI interfaces Rust's standard library imports. They are linked
/// to a context that grants nothing (no directories, environment,
/// arguments, stdin or sockets); stdout and stderr go to the log.
const WASI_ALLOWED: &[&str] = &[
    "wasi:io/",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:filesystem/",
];

/// Our interfaces each role grants, without the package version.
fn granted(role: Role) -> &'static [&'static str] {
    match role {
        Role::Session => &["connection", "log", "settings"],
        Role::Submission => {
            &["connection", "log", "settings", "accounts", "delivery"]
        }
        Role::Mailbox => {
            &["connection", "log", "settings", "accounts", "mailbox"]
        }
    }
}

/// Build the engine: component model, async host calls, epoch
/// interruption, and a pooling allocator sized for `config`.
pub fn engine(config: &Config) -> anyhow::Result<Engine> {
    let mut wasm = wasmtime::Config::new();
    wasm.wasm_component_model(true);
    wasm.epoch_interruption(true);

    let max_memory = u64::from(config.limits.max_memory_mib) << 20;
    let instances = config.limits.max_connections.saturating_add(POOL_SLACK);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(instances)
        .total_core_instances(
            instances.saturating_mul(CORE_INSTANCES_PER_COMPONENT),
        )
        .total_memories(instances.saturating_mul(MEMORIES_PER_COMPONENT))
        .total_tables(instances.saturating_mul(TABLES_PER_COMPONENT))
        .total_stacks(instances)
        .max_memories_per_component(MEMORIES_PER_COMPONENT)
        .max_tables_per_component(TABLES_PER_COMPONENT)
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
        .max_memory_size(max_memory as usize)
        .pagemap_scan(wasmtime::Enabled::Auto)
        .linear_memory_keep_resident(MEMORY_KEEP_RESIDENT)
        .table_keep_resident(TABLE_KEEP_RESIDENT)
        .async_stack_keep_resident(STACK_KEEP_RESIDENT);
    wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));

    // Reserve only the configured maximum per memory instead of the 4 GiB
    // default, so thousands of slots fit in the address space.
    wasm.memory_reservation(max_memory);
    wasm.memory_reservation_for_growth(0);
    wasm.memory_guard_size(64 << 10);

    let engine = Engine::new(&wasm)
        .map_err(anyhow::Error::from)
        .context("failed to create the wasm engine")?;
    start_epoch_ticker(&engine);
    Ok(engine)
}

fn start_epoch_ticker(engine: &Engine) {
    let engine = engine.weak();
    std::thread::Builder::new()
        .name("epoch-ticker".into())
        .spawn(move || {
            while let Some(engine) = engine.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawn the epoch ticker thread");
}

/// Linkers holding exactly what each role grants.
pub struct Linkers {
    session: Linker<SessionState>,
    submission: Linker<SessionState>,
    mailbox: Linker<SessionState>,
}

impl Linkers {
    pub fn new(engine: &Engine) -> anyhow::Result<Linkers> {
        Ok(Linkers {
            session: crate::session::linker(engine, Role::Session)?,
            submission: crate::session::linker(engine, Role::Submission)?,
            mailbox: crate::session::linker(engine, Role::Mailbox)?,
        })
    }

    fn for_role(&self, role: Role) -> &Linker<SessionState> {
        match role {
            Role::Session => &self.session,
            Role::Submission => &self.submission,
            Role::Mailbox => &self.mailbox,
        }
    }
}

/// A loaded, validated plugin ready to instantiate.
pub struct Plugin {
    pub path: PathBuf,
    pub pre: AllRolesPre<SessionState>,
}

/// Read, compile and validate the component at `path` for `role`. With a
/// `cache` directory, compiled code is reused from there when the plugin's
/// bytes and the engine are the same as when it was cached.
pub fn load(
    engine: &Engine,
    linkers: &Linkers,
    path: &Path,
    role: Role,
    cache: Option<&Path>,
) -> anyhow::Result<Plugin> {
    let component = compile(engine, path, cache)?;

    check_imports(engine, &component, role)
        .with_context(|| format!("plugin `{}` refused", path.display()))?;

    let pre = linkers
        .for_role(role)
        .instantiate_pre(&component)
        .map_err(anyhow::Error::from)
        .with_context(|| {
            format!("plugin `{}` cannot be linked", path.display())
        })?;
    let pre = AllRolesPre::new(pre)
        .map_err(anyhow::Error::from)
        .with_context(|| {
            format!(
                "plugin `{}` does not export `mailhost:plugin/handler`",
                path.display()
            )
        })?;

    Ok(Plugin {
        path: path.to_path_buf(),
        pre,
    })
}

/// Read and compile the component at `path`, through the cache if given.
fn compile(
    engine: &Engine,
    path: &Path,
    cache: Option<&Path>,
) -> anyhow::Result<Component> {
    let bytes = std::fs::read(path).with_context(|| {
        format!("failed to read plugin `{}`", path.display())
    })?;
    let component = match cache {
        Some(dir) => compile_cached(engine, &bytes, dir),
        None => Component::new(engine, &bytes).map_err(anyhow::Error::from),
    }
    .with_context(|| {
        format!("plugin `{}` is not a valid component", path.display())
    })?;
    Ok(component)
}

/// The narrowest role whose grants cover the plugin's imports: `session`,
/// then `submission`, then `mailbox`. An error says why none does.
pub fn narrowest_role(
    engine: &Engine,
    path: &Path,
    cache: Option<&Path>,
) -> anyhow::Result<Role> {
    let component = compile(engine, path, cache)?;

    let mut refusals = Vec::new();
    for role in [Role::Session, Role::Submission, Role::Mailbox] {
        match check_imports(engine, &component, role) {
            Ok(()) => return Ok(role),
            Err(err) => refusals.push(format!("{}: {err}", role.name())),
        }
    }
    bail!(
        "no role accepts plugin `{}`:\n  {}",
        path.display(),
        refusals.join("\n  ")
    )
}

/// Compile `bytes`, or load the code compiled for them earlier from
/// `dir`. The cache key is the SHA-256 of the bytes and the engine's
/// compatibility hash (wasmtime version and settings), so a changed plugin
/// or host never picks up stale code.
fn compile_cached(
    engine: &Engine,
    bytes: &[u8],
    dir: &Path,
) -> anyhow::Result<Component> {
    use sha2::{Digest, Sha256};
    use std::hash::{Hash, Hasher};

    let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
    engine
        .precompile_compatibility_hash()
        .hash(&mut engine_hash);
    let digest = Sha256::digest(bytes);
    let key: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let file = dir.join(format!("{key}-{:016x}.cwasm", engine_hash.finish()));

    if file.exists() {
        // SAFETY: files in the cache directory are written only by this
        // function, from wasmtime's own `serialize`; the directory lives in
        // the host's data directory, which only the host may write.
        match unsafe { Component::deserialize_file(engine, &file) } {
            Ok(component) => {
                tracing::debug!(
                    file = %file.display(),
                    "compiled plugin taken from the cache"
                );
                return Ok(component);
            }
            Err(err) => tracing::warn!(
                file = %file.display(),
                cause = %err,
                "unusable cache entry, compiling again"
            ),
        }
    }

    let component = Component::new(engine, bytes)?;
    if let Err(err) = write_cache_entry(&component, dir, &file) {
        tracing::warn!(
            dir = %dir.display(),
            cause = format!("{err:#}"),
            "plugin cache not written"
        );
    }
    Ok(component)
}

/// Write a cache entry to a fresh file and rename it into place: a mapped
/// entry that another process is using must never change under it.
fn write_cache_entry(
    component: &Component,
    dir: &Path,
    file: &Path,
) -> anyhow::Result<()> {
    let code = component.serialize()?;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("failed to create `{}`", dir.display()))?;
    let temp = dir.join(format!(
        ".{}.{}.tmp",
        file.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&temp, code)
        .with_context(|| format!("failed to write `{}`", temp.display()))?;
    std::fs::rename(&temp, file).with_context(|| {
        format!("failed to rename into `{}`", file.display())
    })?;
    Ok(())
}

/// Refuse any import the role does not grant, naming it.
fn check_imports(
    engine: &Engine,
    component: &Component,
    role: Role,
) -> anyhow::Result<()> {
    for (name, _) in component.component_type().imports(engine) {
        if !import_allowed(name, role) {
            bail!(
                "it imports `{name}`, which role `{}` does not grant \
                 (granted: {} and the WASI basics Rust's std needs)",
                role.name(),
                granted(role).join(", ")
            );
        }
    }
    Ok(())
}

fn import_allowed(name: &str, role: Role) -> bool {
    if let Some(rest) = name.strip_prefix("mailhost:plugin/") {
        let interface = rest.split('@').next().unwrap_or(rest);
        return granted(role).contains(&interface);
    }
    WASI_ALLOWED.iter().any(|prefix| name.starts_with(prefix))
}

/// The imports and exports of a component, for `mailhost plugin inspect`.
pub fn describe(engine: &Engine, path: &Path) -> anyhow::Result<String> {
    use std::fmt::Write;

    let component = Component::from_file(engine, path)
        .map_err(anyhow::Error::from)
        .with_context(|| {
            format!("plugin `{}` is not a valid component", path.display())
        })?;
    let ty = component.component_type();
    let mut out = String::new();

    writeln!(out, "plugin: {}", path.display())?;
    writeln!(out, "imports:")?;
    for (name, _) in ty.imports(engine) {
        writeln!(out, "  {name}")?;
    }
    writeln!(out, "exports:")?;
    for (name, _) in ty.exports(engine) {
        writeln!(out, "  {name}")?;
    }
    writeln!(out, "roles:")?;
    for role in [Role::Session, Role::Submission, Role::Mailbox] {
        let verdict = match check_imports(engine, &component, role) {
            Ok(()) => "accepted".to_owned(),
            Err(err) => format!("refused: {err}"),
        };
        writeln!(out, "  {}: {verdict}", role.name())?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_grant_only_their_interfaces() {
        let delivery = "mailhost:plugin/delivery@0.1.0";
        assert!(import_allowed(delivery, Role::Submission));
        assert!(!import_allowed(delivery, Role::Mailbox));
        assert!(!import_allowed(
            "mailhost:plugin/mailbox@0.1.0",
            Role::Session
        ));
        assert!(import_allowed("wasi:io/streams@0.2.4", Role::Session));
        assert!(!import_allowed("wasi:sockets/tcp@0.2.4", Role::Mailbox));
        assert!(!import_allowed(
            "wasi:http/outgoing-handler@0.2.4",
            Role::Mailbox
        ));
        assert!(!import_allowed(
            "mailhost:plugin/connectionx@0.1.0",
            Role::Session
        ));
    }
}
