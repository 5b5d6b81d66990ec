//! `mailhost-bench`: the load generator, the baseline servers and the
//! helpers behind `just bench` (see `bench/run.sh` and
//! `docs/benchmarks.md`).

mod fork;
mod idle;
mod load;
mod native;
mod proto;
mod stats;
mod tls;

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

/// Pause between readiness probes.
const PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// Longest one readiness probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Parser)]
#[command(name = "mailhost-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run echo sessions from concurrent clients and print sessions/s.
    Load(load::LoadArgs),
    /// Serve the echo protocol natively on tokio (baseline a).
    NativeEcho(native::NativeArgs),
    /// Serve the echo protocol with a forked child per connection
    /// (baseline b).
    ForkEcho(fork::ForkArgs),
    /// Open connections, read their greetings and hold them idle.
    IdleHold(idle::IdleArgs),
    /// Wait until a listener completes a whole echo session.
    Probe {
        #[arg(long)]
        addr: SocketAddr,
        /// Speak implicit TLS, trusting only this PEM certificate.
        #[arg(long, value_name = "CERT")]
        tls: Option<PathBuf>,
        /// Seconds to keep trying.
        #[arg(long, default_value_t = 60)]
        wait: u64,
    },
    /// Print a loopback TCP port that was free a moment ago.
    FreePort,
    /// Print the median of the numbers given.
    Median {
        /// Digits after the decimal point.
        #[arg(long, default_value_t = 0)]
        decimals: usize,
        values: Vec<f64>,
    },
    /// Print `a / b` with two decimals, or `n/a` when `b` is zero.
    Ratio { a: f64, b: f64 },
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("mailhost-bench: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Load(args) => load::run(args),
        Command::NativeEcho(args) => native::run(args),
        Command::ForkEcho(args) => fork::run(args),
        Command::IdleHold(args) => idle::run(args),
        Command::Probe { addr, tls, wait } => {
            probe(addr, tls, Duration::from_secs(wait))
        }
        Command::FreePort => {
            let socket = TcpListener::bind("127.0.0.1:0")?;
            println!("{}", socket.local_addr()?.port());
            Ok(())
        }
        Command::Median { decimals, values } => {
            let median = stats::median(&values).context("no values given")?;
            println!("{median:.decimals$}");
            Ok(())
        }
        Command::Ratio { a, b } => {
            match stats::ratio(a, b) {
                Some(ratio) => println!("{ratio:.2}"),
                None => println!("n/a"),
            }
            Ok(())
        }
    }
}

/// Print the bound address on stdout, where run.sh reads it, at once.
pub fn announce(addr: SocketAddr) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "listening address={addr}");
    let _ = stdout.flush();
}

/// Retry one whole session until it succeeds or `wait` runs out.
fn probe(
    addr: SocketAddr,
    tls: Option<PathBuf>,
    wait: Duration,
) -> anyhow::Result<()> {
    let connector = match &tls {
        Some(cert) => Some(tls::connector(cert, false)?),
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    let deadline = Instant::now() + wait;
    let mut last_error = String::new();
    while Instant::now() < deadline {
        let attempt = runtime.block_on(async {
            let session = async {
                let tcp = tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(proto::SessionError::Connect)?;
                match &connector {
                    None => proto::client_session(tcp).await,
                    Some(connector) => {
                        let name =
                            "localhost".try_into().expect("a valid name");
                        let stream = connector.connect(name, tcp).await?;
                        proto::client_session(stream).await
                    }
                }
            };
            tokio::time::timeout(PROBE_TIMEOUT, session).await
        });
        match attempt {
            Ok(Ok(())) => {
                println!("ready address={addr}");
                return Ok(());
            }
            Ok(Err(err)) => last_error = err.to_string(),
            Err(_) => last_error = "timed out".to_owned(),
        }
        std::thread::sleep(PROBE_INTERVAL);
    }
    bail!("`{addr}` did not complete a session within {wait:?}: {last_error}")
}
