//! `mailhost-bench idle-hold`: open N connections to a listener, read
//! each greeting, and hold them all idle while something else measures
//! the server, as an IMAP server holds its IDLE clients.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Mutex, Semaphore};

use crate::proto::{self, LineConn};

/// Most connections one run may hold.
const MAX_COUNT: usize = 60_000;

/// Most source addresses: 127.0.0.1 to 127.0.0.254.
const MAX_SOURCES: usize = 254;

/// Longest hold, in seconds.
const MAX_HOLD: u64 = 3600;

/// Connections opened at once while filling up, so the listener's accept
/// queue (1024 in the host) never overflows into SYN retries.
const DEFAULT_PARALLEL: usize = 128;

#[derive(clap::Args)]
pub struct IdleArgs {
    /// The echo listener, such as `127.0.0.1:2500`.
    #[arg(long)]
    pub addr: SocketAddr,

    /// Connections to open and hold.
    #[arg(long, short = 'n', default_value_t = 10_000)]
    pub count: usize,

    /// Spread the client side over 127.0.0.1 to 127.0.0.K, for when one
    /// address runs short of ephemeral ports.
    #[arg(long, default_value_t = 1)]
    pub sources: usize,

    /// Connections being opened at once.
    #[arg(long, default_value_t = DEFAULT_PARALLEL)]
    pub parallel: usize,

    /// Seconds to hold the connections once open, unless killed first.
    #[arg(long, default_value_t = 120)]
    pub hold: u64,

    /// Longest one connect plus greeting may take, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u64,
}

pub fn run(args: IdleArgs) -> anyhow::Result<()> {
    if args.count == 0 || args.count > MAX_COUNT {
        bail!("`--count` must be in 1..={MAX_COUNT}, not `{}`", args.count);
    }
    if args.sources == 0 || args.sources > MAX_SOURCES {
        bail!(
            "`--sources` must be in 1..={MAX_SOURCES}, not `{}`",
            args.sources
        );
    }
    if args.parallel == 0 {
        bail!("`--parallel` must be at least 1");
    }
    if args.hold > MAX_HOLD {
        bail!(
            "`--hold` must be at most {MAX_HOLD} seconds, not `{}`",
            args.hold
        );
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(hold(args))
}

async fn hold(args: IdleArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(args.parallel));
    let held = Arc::new(Mutex::new(Vec::with_capacity(args.count)));
    let timeout = Duration::from_millis(args.timeout_ms);

    let mut tasks = Vec::with_capacity(args.count);
    for index in 0..args.count {
        let permit = gate.clone().acquire_owned().await?;
        let held = held.clone();
        let source = source_address(index, args.sources);
        let addr = args.addr;
        tasks.push(tokio::spawn(async move {
            let opened =
                tokio::time::timeout(timeout, open(addr, source)).await;
            drop(permit);
            match opened {
                Ok(Ok(conn)) => {
                    held.lock().await.push(conn);
                    None
                }
                Ok(Err(err)) => Some(format!("{err:#}")),
                Err(_) => Some("timed out".to_owned()),
            }
        }));
    }

    let mut failed = 0;
    let mut example = None;
    for task in tasks {
        if let Some(err) = task.await.context("a connect task panicked")? {
            failed += 1;
            example.get_or_insert(err);
        }
    }
    let opened = held.lock().await.len();
    println!(
        "idle-hold opened={opened} failed={failed} seconds={:.2}",
        started.elapsed().as_secs_f64()
    );
    if let Some(example) = example {
        println!("idle-hold error example=\"{example}\"");
    }

    // The line run.sh waits for before it reads the server's memory.
    println!("idle-hold holding={opened}");
    tokio::time::sleep(Duration::from_secs(args.hold)).await;

    // A held connection the server closed in the meantime (an idle
    // timeout, a crash) would make the figure meaningless; count them.
    let mut closed = 0;
    for conn in held.lock().await.iter() {
        if peer_closed(conn.get_ref()) {
            closed += 1;
        }
    }
    println!("idle-hold released={opened} closed_by_server={closed}");
    Ok(())
}

/// The client address of connection `index`: 127.0.0.1 for one source,
/// else round-robin over 127.0.0.1 to 127.0.0.`sources`.
fn source_address(index: usize, sources: usize) -> Option<IpAddr> {
    if sources <= 1 {
        return None;
    }
    let last = (index % sources + 1) as u8;
    Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
}

/// Connect (from `source` if given) and read the greeting.
async fn open(
    addr: SocketAddr,
    source: Option<IpAddr>,
) -> anyhow::Result<LineConn<TcpStream>> {
    let tcp = match source {
        None => TcpStream::connect(addr).await?,
        Some(source) => {
            let socket = TcpSocket::new_v4()?;
            bind_without_port(&socket)?;
            socket.bind(SocketAddr::new(source, 0))?;
            socket.connect(addr).await?
        }
    };

    let mut conn = LineConn::new(tcp);
    proto::read_greeting(&mut conn).await?;
    Ok(conn)
}

/// Let the kernel pick the source port at connect time rather than at
/// bind time, so ports are shared across destinations and not used up by
/// the bind alone.
fn bind_without_port(socket: &TcpSocket) -> std::io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a valid socket descriptor and an int option of the right
    // size.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Whether the server closed a held connection: a non-blocking peek sees
/// the end of stream.
fn peer_closed(tcp: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    // SAFETY: a valid descriptor and a one-byte buffer.
    let result = unsafe {
        libc::recv(
            tcp.as_raw_fd(),
            byte.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    result == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_source_means_the_default_address() {
        assert_eq!(source_address(7, 1), None);
    }

    #[test]
    fn sources_rotate_from_127_0_0_1() {
        let addrs: Vec<_> = (0..4).map(|i| source_address(i, 3)).collect();
        let ip = |last| Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)));
        assert_eq!(addrs, [ip(1), ip(2), ip(3), ip(1)]);
    }
}
