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
        Command::User { command } => {
            use mailhost_store::UserCommand as Cmd;

            let (config, command) = match command {
                UserCommand::Add { config, user } => (config, Cmd::Add { user }),
                UserCommand::Passwd { config, user } => (config, Cmd::Passwd { user }),
                UserCommand::Del { config, user } => (config, Cmd::Del { user }),
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
