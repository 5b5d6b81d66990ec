//! `mailhost-bench native-echo`: the echo protocol served natively on
//! tokio, one task per connection and no sandbox: baseline (a), what the
//! host would cost with nothing between the socket and the protocol.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::proto;

/// A read waits this long for the client, as the host's default for
/// protocol `other`.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Longest a TLS handshake may take, as the host's default.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accept queue length, like the host's tokio listener.
const BACKLOG: u32 = 1024;

/// What a client over the connection cap reads before the close.
const BUSY_REPLY: &[u8] = b"BUSY too many connections\r\n";

/// Longest the busy reply may take to write.
const BUSY_REPLY_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(clap::Args)]
pub struct NativeArgs {
    /// Address to listen on; port 0 picks one, printed on stdout.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,

    /// Most connections served at once; more get a busy reply.
    #[arg(long, default_value_t = 16_384)]
    pub max_connections: usize,

    /// Serve implicit TLS with this PEM certificate (needs `--key`).
    #[arg(long, requires = "key")]
    pub certificate: Option<PathBuf>,

    /// The PEM private key of `--certificate`.
    #[arg(long, requires = "certificate")]
    pub key: Option<PathBuf>,

    /// Runtime threads; 0 for one per core.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

pub fn run(args: NativeArgs) -> anyhow::Result<()> {
    if args.max_connections == 0 {
        bail!("`--max-connections` must be at least 1");
    }
    let tls = match (&args.certificate, &args.key) {
        (Some(cert), Some(key)) => Some(crate::tls::acceptor(cert, key)?),
        _ => None,
    };

    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if args.threads > 0 {
        runtime.worker_threads(args.threads);
    }
    let runtime = runtime.enable_all().build()?;
    runtime.block_on(serve(args, tls))
}

async fn serve(
    args: NativeArgs,
    tls: Option<TlsAcceptor>,
) -> anyhow::Result<()> {
    let socket = match args.listen {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket
        .bind(args.listen)
        .with_context(|| format!("failed to bind `{}`", args.listen))?;
    let listener: TcpListener = socket.listen(BACKLOG)?;
    crate::announce(listener.local_addr()?);

    let permits = Arc::new(Semaphore::new(args.max_connections));
    let tls = tls.map(Arc::new);

    // SIGINT or SIGTERM ends the server through a normal exit, as the
    // host's does, so what runs at exit (a profile writer) still runs.
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = interrupt.recv() => return Ok(()),
            _ = terminate.recv() => return Ok(()),
        };
        let (tcp, _peer) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                // Out of descriptors: back off instead of spinning.
                eprintln!("native-echo: accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);

        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tokio::spawn(refuse(tcp));
            continue;
        };
        let tls = tls.clone();
        tokio::spawn(async move {
            let _ = connection(tcp, tls.as_deref()).await;
            drop(permit);
        });
    }
}

async fn connection(
    tcp: TcpStream,
    tls: Option<&TlsAcceptor>,
) -> anyhow::Result<()> {
    match tls {
        None => proto::serve_session(tcp, IDLE_TIMEOUT).await?,
        Some(acceptor) => {
            let stream =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
                    .await
                    .context("TLS handshake timed out")??;
            proto::serve_session(stream, IDLE_TIMEOUT).await?
        }
    }
    Ok(())
}

async fn refuse(mut tcp: TcpStream) {
    let write = async {
        tcp.write_all(BUSY_REPLY).await?;
        tcp.shutdown().await
    };
    let _ = tokio::time::timeout(BUSY_REPLY_TIMEOUT, write).await;
}
