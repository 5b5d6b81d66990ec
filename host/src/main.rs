//! `mailhost`: SMTP, POP3 and IMAP listeners in one process, each session
//! served by its own sandboxed WebAssembly plugin instance.

mod bindings;
mod config;
mod conn;
mod limits;
mod plugin;
mod plugin_log;
mod server;
mod session;
mod store_glue;
mod tls;

use std::path::PathBuf;
use std::process::ExitCode;

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
    /// Create the self-signed certificate a config's `[tls]` names, for
    /// localhost, unless it exists.
    SelfSignedCert {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Inspect plugin components.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Show a plugin's imports and exports and which roles accept it.
    Inspect {
        /// The `.wasm` component.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    init_tracing();
    let cli = Cli::parse();

    match run_command(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
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
        Command::SelfSignedCert { config } => {
            let config = Config::load_for_setup(&config)?;
            let Some(files) = &config.tls else {
                anyhow::bail!(
                    "config `{}` has no `[tls]` section naming the files",
                    config.path.display()
                );
            };
            if tls::ensure_self_signed(files)? {
                println!("wrote `{}`", files.certificate.display());
            }
            Ok(())
        }
        Command::Plugin {
            command: PluginCommand::Inspect { file },
        } => {
            let engine = wasmtime::Engine::default();
            print!("{}", plugin::describe(&engine, &file)?);
            Ok(())
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::env::var_os("NO_COLOR").is_none())
        .init();
}
