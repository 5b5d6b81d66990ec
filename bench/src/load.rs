//! `mailhost-bench load`: C concurrent clients, each running whole echo
//! sessions back to back for D seconds, counting completed sessions and
//! errors. Bounded in time, in sessions and per step.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

use crate::proto::{self, SessionError};
use crate::stats;

/// Most concurrent clients; more than the fd limit would only measure
/// connect errors.
const MAX_CONCURRENCY: usize = 4096;

/// Longest run, in seconds.
const MAX_DURATION: f64 = 600.0;

/// Latency samples kept per client, so a long run stays bounded in
/// memory; later sessions are counted but not sampled.
const SAMPLES_PER_CLIENT: usize = 200_000;

/// Pause after a failed connect, so a server that refuses is not spun on.
const CONNECT_BACKOFF: Duration = Duration::from_millis(10);

/// Error messages printed per kind, to show what failed without flooding.
const EXAMPLES_PER_KIND: usize = 1;

#[derive(clap::Args)]
pub struct LoadArgs {
    /// The echo server to load, such as `127.0.0.1:2500`.
    #[arg(long)]
    pub addr: SocketAddr,

    /// Concurrent clients.
    #[arg(long, short = 'c', default_value_t = 16)]
    pub concurrency: usize,

    /// Seconds to start new sessions for; sessions under way then finish.
    #[arg(long, short = 'd', default_value_t = 3.0)]
    pub duration: f64,

    /// Stop after this many sessions even before the time is up.
    #[arg(long, default_value_t = 10_000_000)]
    pub max_sessions: u64,

    /// Longest one session may take, in milliseconds, before it counts as
    /// a timeout.
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,

    /// Speak implicit TLS, trusting only this PEM certificate.
    #[arg(long, value_name = "CERT")]
    pub tls: Option<PathBuf>,

    /// Name to verify the certificate against.
    #[arg(long, default_value = "localhost")]
    pub server_name: String,

    /// Offer TLS session resumption (default: a full handshake per
    /// session).
    #[arg(long)]
    pub resume: bool,

    /// Client runtime threads; 0 for one per core.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,

    /// Label printed with the result, to tell rounds apart.
    #[arg(long, default_value = "load")]
    pub label: String,
}

/// Counters shared by the clients.
#[derive(Default)]
struct Tally {
    /// Sessions begun, checked against `max_sessions`.
    started: AtomicU64,
    completed: AtomicU64,
}

/// What one client saw.
#[derive(Default)]
struct ClientReport {
    latencies_us: Vec<u32>,
    errors: BTreeMap<&'static str, (u64, Vec<String>)>,
}

pub fn run(args: LoadArgs) -> anyhow::Result<()> {
    if args.concurrency == 0 || args.concurrency > MAX_CONCURRENCY {
        bail!(
            "`--concurrency` must be in 1..={MAX_CONCURRENCY}, not `{}`",
            args.concurrency
        );
    }
    if !(args.duration > 0.0 && args.duration <= MAX_DURATION) {
        bail!(
            "`--duration` must be above 0 and at most {MAX_DURATION} \
             seconds, not `{}`",
            args.duration
        );
    }
    let tls = match &args.tls {
        Some(cert) => {
            let name = ServerName::try_from(args.server_name.clone())
                .with_context(|| {
                    format!("invalid `--server-name` `{}`", args.server_name)
                })?;
            Some((crate::tls::connector(cert, args.resume)?, name))
        }
        None => None,
    };

    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if args.threads > 0 {
        runtime.worker_threads(args.threads);
    }
    let runtime = runtime.enable_all().build()?;
    runtime.block_on(drive(args, tls))
}

async fn drive(
    args: LoadArgs,
    tls: Option<(TlsConnector, ServerName<'static>)>,
) -> anyhow::Result<()> {
    let tally = Arc::new(Tally::default());
    let tls = Arc::new(tls);
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.duration);
    let timeout = Duration::from_millis(args.timeout_ms);

    let clients: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let tally = tally.clone();
            let tls = tls.clone();
            let addr = args.addr;
            let max = args.max_sessions;
            tokio::spawn(async move {
                client(addr, &tls, &tally, deadline, max, timeout).await
            })
        })
        .collect();

    let mut report = ClientReport::default();
    for client in clients {
        let one = client.await.context("a client task panicked")?;
        report.latencies_us.extend(one.latencies_us);
        for (kind, (count, examples)) in one.errors {
            let entry = report.errors.entry(kind).or_default();
            entry.0 += count;
            for example in examples {
                if entry.1.len() < EXAMPLES_PER_KIND {
                    entry.1.push(example);
                }
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();

    print_result(&args, &tally, &mut report, elapsed);
    Ok(())
}

/// One client: sessions back to back until the deadline or the session
/// budget runs out.
async fn client(
    addr: SocketAddr,
    tls: &Option<(TlsConnector, ServerName<'static>)>,
    tally: &Tally,
    deadline: Instant,
    max_sessions: u64,
    timeout: Duration,
) -> ClientReport {
    let mut report = ClientReport::default();
    while Instant::now() < deadline
        && tally.started.fetch_add(1, Ordering::Relaxed) < max_sessions
    {
        let begun = Instant::now();
        let outcome =
            match tokio::time::timeout(timeout, session(addr, tls)).await {
                Ok(outcome) => outcome,
                Err(_) => Err(SessionError::Timeout),
            };

        match outcome {
            Ok(()) => {
                tally.completed.fetch_add(1, Ordering::Relaxed);
                if report.latencies_us.len() < SAMPLES_PER_CLIENT {
                    let micros =
                        begun.elapsed().as_micros().min(u32::MAX as u128);
                    report.latencies_us.push(micros as u32);
                }
            }
            Err(err) => {
                let entry = report.errors.entry(err.kind()).or_default();
                entry.0 += 1;
                if entry.1.len() < EXAMPLES_PER_KIND {
                    entry.1.push(err.to_string());
                }
                if matches!(err, SessionError::Connect(_)) {
                    tokio::time::sleep(CONNECT_BACKOFF).await;
                }
            }
        }
    }
    report
}

/// Connect, do the TLS handshake if asked, and run one session.
async fn session(
    addr: SocketAddr,
    tls: &Option<(TlsConnector, ServerName<'static>)>,
) -> Result<(), SessionError> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(SessionError::Connect)?;
    tcp.set_nodelay(true)?;

    match tls {
        None => proto::client_session(tcp).await,
        Some((connector, name)) => {
            let stream = connector.connect(name.clone(), tcp).await?;
            proto::client_session(stream).await
        }
    }
}

fn print_result(
    args: &LoadArgs,
    tally: &Tally,
    report: &mut ClientReport,
    elapsed: f64,
) {
    let completed = tally.completed.load(Ordering::Relaxed);
    let errors: u64 = report.errors.values().map(|(count, _)| count).sum();
    report.latencies_us.sort_unstable();
    let p50 = stats::percentile(&report.latencies_us, 50.0).unwrap_or(0);
    let p99 = stats::percentile(&report.latencies_us, 99.0).unwrap_or(0);

    println!(
        "load label={} completed={completed} errors={errors} \
         seconds={elapsed:.2} \
         rate={:.0} p50_us={p50} p99_us={p99}",
        args.label,
        completed as f64 / elapsed,
    );
    for (kind, (count, examples)) in &report.errors {
        let example = examples.first().map(String::as_str).unwrap_or("");
        println!(
            "load label={} error={kind} count={count} example=\"{example}\"",
            args.label
        );
    }
}
