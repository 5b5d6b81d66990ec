//! `mailhost`: SMTP, POP3 and IMAP listeners in one process, each session
//! served by its own sandboxed WebAssembly plugin instance.

mod bindings;
mod config;
mod conn;
mod limits;
mod plugin;
mod plugin_log;
mod reload;
mod server;
mod session;
mod store_glue;
mod tls;
mod transcript;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::Config;

#[derive(Parser)]
#[command(name = "mailhost", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the listeners of a config until SIGTERM or SIGINT.
    Run {
        /// The config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config and every plugin and file it names.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Tell the host running on a config to reload the config file it was
    /// started with, its accounts, plugins and certificates (sends SIGHUP
    /// to the pid in `<data-dir>/mailhost.pid`).
    Reload {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Create the self-signed certificate a config's `[tls]` names, for
    /// localhost, unless it exists.
    SelfSignedCert {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Manage the accounts in the users file a config names. Passwords
    /// come from a prompt, or from stdin when it is not a terminal.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Inspect plugin components.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add an account with a new password.
    Add {
        #[arg(long, short)]
        config: PathBuf,
        /// The account, `user@domain`.
        user: String,
    },
    /// Set a new password for an account.
    Passwd {
        #[arg(long, short)]
        config: PathBuf,
        user: String,
    },
    /// Remove an account; its mail stays on disk.
    Del {
        #[arg(long, short)]
        config: PathBuf,
        user: String,
    },
    /// List the accounts.
    List {
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Show a plugin's imports and exports and which roles accept it.
    Inspect {
        /// The `.wasm` component.
        file: PathBuf,
    },
    /// Run a plugin against a `C:`/`S:` transcript without opening a
    /// port, with its accounts and mail in a temporary directory.
    Test {
        /// The `.wasm` component.
        file: PathBuf,
        /// The transcript files, run one after another.
        #[arg(required = true)]
        transcripts: Vec<PathBuf>,
        /// The listener role; by default the narrowest that accepts the
        /// plugin, or the transcript's `@role`.
        #[arg(long)]
        role: Option<String>,
        /// Cache compiled plugins in this directory between runs.
        #[arg(long)]
        cache: Option<PathBuf>,
        /// Print every line exchanged.
        #[arg(long, short)]
        verbose: bool,
    },
    /// Time instantiating a plugin in fresh sessions, as the host does
    /// per connection, and print the percentiles.
    Bench {
        /// The `.wasm` component.
        file: PathBuf,
        /// How many instantiations to time.
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        /// The role to load it for.
        #[arg(long, default_value = "session")]
        role: String,
        /// Also run this many whole sessions over an in-process pipe,
        /// the client sending `--input` at once and then closing its
        /// side, and time each from instantiation to teardown. A session
        /// that traps fails the command.
        #[arg(long, default_value_t = 0)]
        sessions: usize,
        /// What the client sends in each timed session; `\r\n` and `\n`
        /// are escapes for CR LF and LF.
        #[arg(long, default_value = "hello\\r\\nworld\\r\\nQUIT\\r\\n")]
        input: String,
        /// A listener setting the plugin sees, as `KEY=VALUE`; repeat it
        /// for more.
        #[arg(long = "setting", value_name = "KEY=VALUE")]
        settings: Vec<String>,
    },
}

fn main() -> ExitCode {
    disable_huge_pages();
    let cli = Cli::parse();

    // A transcript run reports on stdout; only warnings and worse from
    // the session (traps, plugin errors) belong beside it.
    let quiet = matches!(
        cli.command,
        Command::Plugin {
            command: PluginCommand::Test { .. }
        }
    );
    init_tracing(if quiet { "warn" } else { "info" });

    match run_command(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Opt this process out of transparent huge pages. Each idle session
/// touches a few kilobytes of heap, plugin memory and stack; backed by
/// 2 MiB pages the same sessions cost several times the memory.
fn disable_huge_pages() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_THP_DISABLE takes a flag and no pointers; it
        // only changes how later page faults of this process are served.
        let result =
            unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        if result != 0 {
            // Not fatal: memory per session is higher, nothing breaks.
            eprintln!(
                "warning: could not opt out of transparent huge pages: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

fn run_command(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run { config } => {
            let config = Config::load(&config)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let server = server::prepare(config)?;
                server::run(server).await
            })
        }
        Command::Check { config: path } => {
            let config = Config::load(&path)?;
            let listeners = config.listeners.len();
            server::prepare(config)?;
            println!(
                "config `{}` is valid: {listeners} listeners",
                path.display()
            );
            Ok(())
        }
        Command::Reload { config } => {
            let config = Config::load_for_setup(&config)?;
            let pid_path = config.data_dir.join(server::PID_FILE);
            let text =
                std::fs::read_to_string(&pid_path).with_context(|| {
                    format!(
                        "no running host: failed to read `{}`",
                        pid_path.display()
                    )
                })?;
            let pid: i32 = text.trim().parse().with_context(|| {
                format!("`{}` holds no pid", pid_path.display())
            })?;
            // SAFETY: kill(2) sends a signal; no memory is involved.
            if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
                anyhow::bail!(
                    "failed to signal pid {pid} from `{}`: {}",
                    pid_path.display(),
                    std::io::Error::last_os_error()
                );
            }
            println!("asked pid {pid} to reload");
            Ok(())
        }
        Command::SelfSignedCert { config } => {
            let config = Config::load_for_setup(&config)?;
            let Some(files) = &config.tls else {
                anyhow::bail!(
                    "config `{}` has no `[tls]` section naming the files",
                    config.path.display()
                );
            };
            let files = files.default_files();
            if tls::ensure_self_signed(&files)? {
                println!("wrote `{}`", files.certificate.display());
            }
            Ok(())
        }
        Command::User { command } => {
            use mailhost_store::UserCommand as Cmd;

            let (config, command) = match command {
                UserCommand::Add { config, user } => {
                    (config, Cmd::Add { user })
                }
                UserCommand::Passwd { config, user } => {
                    (config, Cmd::Passwd { user })
                }
                UserCommand::Del { config, user } => {
                    (config, Cmd::Del { user })
                }
                UserCommand::List { config } => (config, Cmd::List),
            };
            let config = Config::load_for_setup(&config)?;
            let Some(accounts) = &config.accounts else {
                anyhow::bail!(
                    "config `{}` has no `[accounts]` section",
                    config.path.display()
                );
            };
            mailhost_store::user_command(&accounts.users_file, command)
        }
        Command::Plugin {
            command:
                PluginCommand::Bench {
                    file,
                    count,
                    role,
                    sessions,
                    input,
                    settings,
                },
        } => plugin_bench(&file, count, &role, sessions, &input, &settings),
        Command::Plugin {
            command:
                PluginCommand::Test {
                    file,
                    transcripts,
                    role,
                    cache,
                    verbose,
                },
        } => plugin_test(file, transcripts, role, cache, verbose),
        Command::Plugin {
            command: PluginCommand::Inspect { file },
        } => {
            let engine = wasmtime::Engine::default();
            print!("{}", plugin::describe(&engine, &file)?);
            Ok(())
        }
    }
}

/// Run each transcript, print a line for each, and fail if any failed.
fn plugin_test(
    plugin: PathBuf,
    transcripts: Vec<PathBuf>,
    role: Option<String>,
    cache: Option<PathBuf>,
    verbose: bool,
) -> anyhow::Result<()> {
    let role = role.as_deref().map(config::Role::parse).transpose()?;

    // Without a cache directory, one for this run alone: the plugin is
    // compiled once, not once per transcript.
    let (cache, _scratch) = match cache {
        Some(dir) => (dir, None),
        None => {
            let scratch = transcript::tempdir()?;
            (scratch.0.clone(), Some(scratch))
        }
    };

    let mut failed = 0;
    for path in &transcripts {
        let options = transcript::Options {
            plugin: plugin.clone(),
            transcript: path.clone(),
            role,
            cache: cache.clone(),
            verbose,
        };
        match transcript::run(&options) {
            Ok(summary) => println!("ok {}: {summary}", path.display()),
            Err(err) => {
                failed += 1;
                println!("FAILED {}: {err:#}", path.display());
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} transcripts failed", transcripts.len());
    }
    Ok(())
}

fn plugin_bench(
    file: &std::path::Path,
    count: usize,
    role: &str,
    sessions: usize,
    input: &str,
    settings: &[String],
) -> anyhow::Result<()> {
    use std::sync::Arc;

    let role = config::Role::parse(role)?;
    let settings = settings
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if !key.is_empty() => {
                Ok((key.to_owned(), value.to_owned()))
            }
            _ => anyhow::bail!("`--setting {pair}`: expected KEY=VALUE"),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let settings = Arc::new(settings);
    let input = input.replace("\\r", "\r").replace("\\n", "\n");
    let mut config: Config = toml::from_str("")?;
    config.limits.max_connections = 64;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let engine = plugin::engine(&config)?;
        let linkers = plugin::Linkers::new(&engine)?;
        let loaded = plugin::load(&engine, &linkers, file, role, None)?;
        let loaded = Arc::new(loaded);

        // Warm up the pool slots and the code pages first.
        session::time_instantiation(&engine, loaded.clone(), 100).await?;
        let times =
            session::time_instantiation(&engine, loaded.clone(), count.max(1))
                .await?;
        print_percentiles("instantiate", &times);

        if sessions > 0 {
            let input = input.as_bytes();
            // Warm the slots and code pages as above.
            let warm_up = 100.min(sessions);
            session::time_sessions(&engine, &loaded, &settings, input, warm_up)
                .await?;
            let cpu_before = process_cpu_time();
            let times = session::time_sessions(
                &engine, &loaded, &settings, input, sessions,
            )
            .await?;
            let cpu = process_cpu_time().saturating_sub(cpu_before);
            print_percentiles("session", &times);
            println!(
                "session cpu_per_session={:.1}us",
                cpu.as_secs_f64() * 1e6 / times.len() as f64
            );
        }
        Ok(())
    })
}

/// Print `times` (sorted) as a `label count= mean= p50= p99= max=` line.
fn print_percentiles(label: &str, times: &[std::time::Duration]) {
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    let mean = times.iter().sum::<std::time::Duration>() / times.len() as u32;
    let micros = |time: std::time::Duration| time.as_secs_f64() * 1e6;
    println!(
        "{label} count={} mean={:.1}us p50={:.1}us p99={:.1}us max={:.1}us",
        times.len(),
        micros(mean),
        micros(at(0.50)),
        micros(at(0.99)),
        micros(times[times.len() - 1]),
    );
}

/// User plus system CPU time this process has used so far.
fn process_cpu_time() -> std::time::Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage fills the struct it is given and nothing else.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let time = |tv: libc::timeval| {
        std::time::Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

fn init_tracing(default_level: &str) {
    use tracing_subscriber::EnvFilter;

    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::env::var_os("NO_COLOR").is_none())
        .init();
}
