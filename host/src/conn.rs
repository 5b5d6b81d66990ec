//! The client socket as a plugin sees it: line and byte reads with host
//! framing and timeouts, writes, and the in-place TLS upgrade.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use wasmtime::component::Resource;

use crate::bindings::mailhost::plugin::connection as wit;
use crate::bindings::{IoError, SessionInfo, TlsError, TlsInfo};
use crate::session::SessionState;

/// Largest line or chunk a single read hands to a plugin, in bytes.
pub const MAX_READ: u32 = 1 << 20;

/// Largest buffer a single write accepts from a plugin, in bytes.
pub const MAX_WRITE: u32 = 1 << 20;

/// How much a read asks of the socket at a time, in bytes.
const READ_CHUNK: usize = 16 * 1024;

/// How long closing may wait on a client that does not read: for held
/// replies, and again for the TLS close and the shutdown.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Most output `send-and-read-line` holds back while the client pipelines
/// before it goes out anyway, in bytes.
const HELD_LIMIT: usize = 64 * 1024;

/// The token a plugin holds for its connection. There is exactly one per
/// session; the socket itself lives in [`ConnIo`] in the session state so
/// the host can still write an error reply after a trap.
pub struct ConnectionHandle;

/// The transport under a session.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// An in-process pipe instead of a socket: `mailhost plugin test`
    /// drives a session from a transcript without opening a port.
    Memory(tokio::io::DuplexStream),
    /// The socket was given up: a failed handshake or write.
    Gone,
}

/// TLS as a listener offers it.
#[derive(Clone)]
pub struct TlsOffer {
    pub acceptor: TlsAcceptor,
    pub handshake_timeout: Duration,
}

/// The socket, its input buffer and the limits on waiting for it.
pub struct ConnIo {
    stream: Stream,
    /// Received bytes not yet handed to the plugin start at `buf[start]`.
    buf: Vec<u8>,
    start: usize,
    eof: bool,
    /// Replies `send-and-read-line` accepted but held back because the
    /// client had pipelined more commands; sent before the next wait.
    held: Vec<u8>,
    idle_timeout: Duration,
    session_deadline: tokio::time::Instant,
    shutdown: watch::Receiver<bool>,
    /// Where `start-tls` may upgrade; none for plaintext-only listeners
    /// and once the session is encrypted.
    starttls: Option<TlsOffer>,
    tls: Option<TlsInfo>,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl ConnIo {
    pub fn new(
        stream: Stream,
        tls: Option<TlsInfo>,
        starttls: Option<TlsOffer>,
        idle_timeout: Duration,
        max_session: Duration,
        shutdown: watch::Receiver<bool>,
    ) -> ConnIo {
        ConnIo {
            stream,
            buf: Vec::new(),
            start: 0,
            eof: false,
            held: Vec::new(),
            idle_timeout,
            session_deadline: tokio::time::Instant::now() + max_session,
            shutdown,
            starttls,
            tls,
            bytes_in: 0,
            bytes_out: 0,
        }
    }

    /// Whether `start-tls` would upgrade the session now.
    pub fn tls_available(&self) -> bool {
        self.tls.is_none() && self.starttls.is_some()
    }

    pub fn tls_info(&self) -> Option<TlsInfo> {
        self.tls.clone()
    }

    fn buffered(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    fn consume(&mut self, len: usize) -> Vec<u8> {
        let out = self.buf[self.start..self.start + len].to_vec();
        self.start += len;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        out
    }

    /// Wait for more input from the client, or report why none will come.
    /// Held replies go out first: the client may be waiting for them.
    async fn fill(&mut self) -> Result<(), IoError> {
        self.send_held().await?;
        if self.eof {
            return Err(IoError::Closed);
        }
        if *self.shutdown.borrow() {
            return Err(IoError::ShuttingDown);
        }
        let now = tokio::time::Instant::now();
        if now >= self.session_deadline {
            return Err(IoError::SessionExpired);
        }

        // Drop consumed bytes before growing the buffer, so a long session
        // keeps a buffer the size of its longest pending input.
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        release_if_empty(&mut self.buf);

        // One timer for whichever comes first, the idle timeout or the end
        // of the session: a read that waits costs one timer, not two.
        let idle_deadline = now + self.idle_timeout;
        let (deadline, on_expiry) = if idle_deadline < self.session_deadline {
            (idle_deadline, IoError::Timeout)
        } else {
            (self.session_deadline, IoError::SessionExpired)
        };
        let expired = tokio::time::sleep_until(deadline);
        let (stream, buf) = (&mut self.stream, &mut self.buf);
        let read = async move {
            match stream {
                Stream::Plain(tcp) => read_when_ready(tcp, buf).await,
                Stream::Tls(tls) => {
                    // Decrypted input still inside rustls would not show
                    // as socket readiness: wait on the socket only when
                    // rustls holds none and wants more of it.
                    let (tcp, session) = tls.get_ref();
                    if session.wants_read() {
                        tcp.readable().await?;
                    }
                    buf.reserve(READ_CHUNK);
                    tls.read_buf(buf).await
                }
                Stream::Memory(pipe) => {
                    buf.reserve(READ_CHUNK);
                    pipe.read_buf(buf).await
                }
                Stream::Gone => Ok(0),
            }
        };
        let outcome = tokio::select! {
            read = read => read,
            () = expired => return Err(on_expiry),
            () = shutdown_begins(&mut self.shutdown) => {
                return Err(IoError::ShuttingDown)
            }
        };

        match outcome {
            Ok(0) | Err(_) => {
                self.eof = true;
                Err(IoError::Closed)
            }
            Ok(read) => {
                self.bytes_in += read as u64;
                Ok(())
            }
        }
    }

    /// Whether received input is waiting to be read.
    pub fn has_input(&self) -> bool {
        !self.buffered().is_empty()
    }

    /// Wait until input is waiting to be read, without consuming it.
    pub async fn wait_for_input(&mut self) -> Result<(), IoError> {
        if self.has_input() {
            return Ok(());
        }
        self.fill().await
    }

    /// Bytes up to and including the first LF, or `max_len` bytes.
    pub async fn read_line(
        &mut self,
        max_len: u32,
    ) -> Result<Vec<u8>, IoError> {
        let max_len = max_len.min(MAX_READ) as usize;
        if max_len == 0 {
            return Ok(Vec::new());
        }
        if *self.shutdown.borrow() {
            return Err(IoError::ShuttingDown);
        }

        let mut searched = 0;
        loop {
            let pending = self.buffered();
            let window = &pending[..pending.len().min(max_len)];
            if let Some(at) =
                window[searched..].iter().position(|&b| b == b'\n')
            {
                return Ok(self.consume(searched + at + 1));
            }
            if window.len() == max_len {
                return Ok(self.consume(max_len));
            }
            searched = window.len();

            match self.fill().await {
                Ok(()) => {}
                // A peer that closes mid-line: hand over the partial line
                // first; the next read reports the close.
                Err(IoError::Closed) if !self.buffered().is_empty() => {
                    let len = self.buffered().len();
                    return Ok(self.consume(len));
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Between 1 and `max_len` bytes.
    pub async fn read(&mut self, max_len: u32) -> Result<Vec<u8>, IoError> {
        let max_len = max_len.min(MAX_READ) as usize;
        if max_len == 0 {
            return Ok(Vec::new());
        }
        if *self.shutdown.borrow() {
            return Err(IoError::ShuttingDown);
        }

        if self.buffered().is_empty() {
            self.fill().await?;
        }
        let len = self.buffered().len().min(max_len);
        Ok(self.consume(len))
    }

    /// Send held replies, then `data`, and flush, waiting at most the idle
    /// timeout for a client that does not read.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), IoError> {
        if data.len() > MAX_WRITE as usize {
            return Err(IoError::InvalidArgument);
        }
        if self.held.is_empty() {
            return self.send(data).await;
        }

        // One send for both, in order.
        self.held.extend_from_slice(data);
        self.send_held().await
    }

    /// Hold `reply` back if a whole line of pipelined input is already
    /// buffered, else send it with whatever is held; then read a line.
    pub async fn send_and_read_line(
        &mut self,
        reply: &[u8],
        max_len: u32,
    ) -> Result<Vec<u8>, IoError> {
        if reply.len() > MAX_WRITE as usize {
            return Err(IoError::InvalidArgument);
        }

        // `fill` sends what is held before it waits, so a reply is held
        // only while the next command is already here.
        self.held.extend_from_slice(reply);
        if self.held.len() >= HELD_LIMIT {
            self.send_held().await?;
        }
        self.read_line(max_len).await
    }

    /// Send the held replies, if any, and let their buffer go.
    pub async fn send_held(&mut self) -> Result<(), IoError> {
        if self.held.is_empty() {
            return Ok(());
        }
        let held = std::mem::take(&mut self.held);
        self.send(&held).await
    }

    async fn send(&mut self, data: &[u8]) -> Result<(), IoError> {
        if data.is_empty() {
            return Ok(());
        }

        let stream = &mut self.stream;
        let write = async move {
            match stream {
                Stream::Plain(tcp) => tcp.write_all(data).await,
                Stream::Tls(tls) => {
                    tls.write_all(data).await?;
                    tls.flush().await
                }
                Stream::Memory(pipe) => pipe.write_all(data).await,
                Stream::Gone => Err(std::io::ErrorKind::NotConnected.into()),
            }
        };
        let outcome = tokio::time::timeout(self.idle_timeout, write).await;

        match outcome {
            Ok(Ok(())) => {
                self.bytes_out += data.len() as u64;
                Ok(())
            }
            // A client that stopped reading, or a broken socket: give the
            // socket up so a plugin that ignores the error and keeps
            // writing fails fast instead of waiting again.
            Ok(Err(_)) => {
                self.stream = Stream::Gone;
                self.eof = true;
                Err(IoError::Closed)
            }
            Err(_) => {
                self.stream = Stream::Gone;
                self.eof = true;
                Err(IoError::Timeout)
            }
        }
    }

    /// Best-effort write of a host reply (busy, error), bounded in time.
    pub async fn write_reply(&mut self, reply: &str) {
        let write = self.write(reply.as_bytes());
        let _ = tokio::time::timeout(Duration::from_secs(5), write).await;
        self.close().await;
    }

    /// Send what is held, flush and shut the socket down.
    pub async fn close(&mut self) {
        let held = self.send_held();
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, held).await;

        let stream = std::mem::replace(&mut self.stream, Stream::Gone);
        let shutdown = async move {
            match stream {
                Stream::Plain(mut tcp) => {
                    let _ = tcp.shutdown().await;
                }
                Stream::Tls(mut tls) => {
                    let _ = tls.shutdown().await;
                }
                Stream::Memory(mut pipe) => {
                    let _ = pipe.shutdown().await;
                }
                Stream::Gone => {}
            }
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, shutdown).await;
    }

    /// Upgrade to TLS, discarding any input buffered after the command.
    pub async fn start_tls(&mut self) -> Result<(), TlsError> {
        if self.tls.is_some() {
            return Err(TlsError::AlreadyActive);
        }
        let Some(offer) = self.starttls.take() else {
            return Err(TlsError::Unavailable);
        };

        // Held replies belong to the plaintext conversation, the "go
        // ahead" among them.
        if self.send_held().await.is_err() {
            return Err(TlsError::HandshakeFailed);
        }

        // Whatever the client sent after STARTTLS and before the handshake
        // was sent in plaintext and may be an injected command
        // (CVE-2011-0411): it must never be read as if it were encrypted.
        self.buf.clear();
        self.start = 0;

        let Stream::Plain(tcp) =
            std::mem::replace(&mut self.stream, Stream::Gone)
        else {
            return Err(TlsError::HandshakeFailed);
        };
        let handshake = offer.acceptor.accept(tcp);
        match tokio::time::timeout(offer.handshake_timeout, handshake).await {
            Ok(Ok(tls)) => {
                self.tls = Some(crate::tls::session_facts(tls.get_ref().1));
                self.stream = Stream::Tls(Box::new(tls));
                Ok(())
            }
            Ok(Err(_)) | Err(_) => {
                self.eof = true;
                Err(TlsError::HandshakeFailed)
            }
        }
    }
}

/// Let go of an input buffer that holds nothing: reads wait for readiness
/// before they take a chunk, so thousands of sessions waiting on their
/// clients do not each pin one.
fn release_if_empty(buf: &mut Vec<u8>) {
    if buf.is_empty() {
        *buf = Vec::new();
    }
}

/// Wait until `tcp` has input (or its end), then read it into `buf`,
/// growing `buf` only once there is something to put in it.
async fn read_when_ready(
    tcp: &TcpStream,
    buf: &mut Vec<u8>,
) -> std::io::Result<usize> {
    loop {
        tcp.readable().await?;
        buf.reserve(READ_CHUNK);
        match tcp.try_read_buf(buf) {
            // The readiness was stale (left from the previous read): let
            // the chunk go again and wait for the next edge.
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                release_if_empty(buf)
            }
            outcome => return outcome,
        }
    }
}

/// Resolve once a shutdown has begun; never if the host drops the sender.
pub async fn shutdown_begins(shutdown: &mut watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        if shutdown.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl wit::Host for SessionState {
    fn max_read(&mut self) -> wasmtime::Result<u32> {
        Ok(MAX_READ)
    }

    fn max_write(&mut self) -> wasmtime::Result<u32> {
        Ok(MAX_WRITE)
    }
}

impl SessionState {
    /// A read that brought bytes from the client starts a new CPU slice.
    /// One that failed, or asked for nothing, did not: either may return
    /// at once (closed, shutting down, a zero limit), and a plugin that
    /// calls again and again must not restart its slice forever.
    fn resume_after_input(&mut self, read: &Result<Vec<u8>, IoError>) {
        if read.as_ref().is_ok_and(|bytes| !bytes.is_empty()) {
            self.resume_cpu();
        }
    }
}

impl wit::HostConnection for SessionState {
    async fn read_line(
        &mut self,
        _conn: Resource<ConnectionHandle>,
        max_len: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, IoError>> {
        let line = self.io.read_line(max_len).await;
        self.resume_after_input(&line);
        Ok(line)
    }

    async fn read(
        &mut self,
        _conn: Resource<ConnectionHandle>,
        max_len: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, IoError>> {
        let chunk = self.io.read(max_len).await;
        self.resume_after_input(&chunk);
        Ok(chunk)
    }

    async fn send_and_read_line(
        &mut self,
        _conn: Resource<ConnectionHandle>,
        data: Vec<u8>,
        max_len: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, IoError>> {
        let line = self.io.send_and_read_line(&data, max_len).await;
        self.resume_after_input(&line);
        Ok(line)
    }

    fn buffered(
        &mut self,
        _conn: Resource<ConnectionHandle>,
    ) -> wasmtime::Result<u32> {
        Ok(self.io.buffered().len().min(u32::MAX as usize) as u32)
    }

    async fn write(
        &mut self,
        _conn: Resource<ConnectionHandle>,
        data: Vec<u8>,
    ) -> wasmtime::Result<Result<(), IoError>> {
        let sent_before = self.io.bytes_out;
        let outcome = self.io.write(&data).await;

        // Output the client took is progress, and a plugin streaming a
        // long reply must not be stopped for it. A write that failed, or
        // sent nothing (an empty one with nothing held), is not: both
        // return at once, and a plugin could spin on them forever.
        if outcome.is_ok() && self.io.bytes_out > sent_before {
            self.resume_cpu();
        }
        Ok(outcome)
    }

    async fn start_tls(
        &mut self,
        _conn: Resource<ConnectionHandle>,
    ) -> wasmtime::Result<Result<(), TlsError>> {
        let outcome = self.io.start_tls().await;

        // A handshake is input from the client; a refusal comes at once.
        if outcome.is_ok() {
            self.resume_cpu();
        }
        Ok(outcome)
    }

    fn info(
        &mut self,
        _conn: Resource<ConnectionHandle>,
    ) -> wasmtime::Result<SessionInfo> {
        Ok(self.session_info())
    }

    async fn drop(
        &mut self,
        conn: Resource<ConnectionHandle>,
    ) -> wasmtime::Result<()> {
        self.table.delete(conn)?;
        self.io.close().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Idle timeout of the tests' sessions: short, so a wait ends soon.
    const TEST_IDLE: Duration = Duration::from_millis(100);

    /// A `ConnIo` over `stream` that no shutdown ever reaches.
    fn conn_io(stream: Stream) -> ConnIo {
        conn_io_idle(stream, TEST_IDLE)
    }

    /// The same with an idle timeout of `idle`.
    fn conn_io_idle(stream: Stream, idle: Duration) -> ConnIo {
        // The sender is dropped here: `changed` then errs, which
        // `shutdown_begins` treats as "never".
        let (_tx, shutdown) = watch::channel(false);
        ConnIo::new(stream, None, None, idle, Duration::from_secs(60), shutdown)
    }

    /// A connected loopback pair: the client's end and the server's.
    async fn tcp_pair() -> (TcpStream, TcpStream) {
        let listener =
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    /// The client's end and a plain `ConnIo` over the server's.
    async fn pair() -> (TcpStream, ConnIo) {
        let (client, server) = tcp_pair().await;
        (client, conn_io(Stream::Plain(server)))
    }

    #[tokio::test]
    async fn a_waiting_read_holds_no_input_buffer() {
        let (mut client, mut io) = pair().await;

        // A line grows the buffer to a read chunk...
        client.write_all(b"hello\r\n").await.unwrap();
        assert_eq!(io.read_line(100).await.unwrap(), b"hello\r\n");
        assert!(io.buf.capacity() >= READ_CHUNK);

        // ...which is let go while the session waits for the next one.
        assert_eq!(io.read_line(100).await, Err(IoError::Timeout));
        assert_eq!(io.buf.capacity(), 0);

        // Input after the wait is read as before.
        client.write_all(b"again\r\n").await.unwrap();
        assert_eq!(io.read_line(100).await.unwrap(), b"again\r\n");
    }

    #[tokio::test]
    async fn a_waiting_tls_read_holds_no_input_buffer() {
        use tokio_rustls::rustls;

        // A self-signed certificate in a directory of this test's own.
        let dir = std::env::temp_dir()
            .join(format!("mailhost-conn-tls-{}", std::process::id()));
        let files = crate::config::TlsFiles {
            certificate: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        crate::tls::ensure_self_signed(&files).unwrap();
        let acceptor = crate::tls::acceptor(&files, &[]).unwrap();

        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(&files.certificate).unwrap();
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            roots.add(cert.unwrap()).unwrap();
        }
        std::fs::remove_dir_all(&dir).unwrap();
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let client_config =
            rustls::ClientConfig::builder_with_provider(provider.into())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(
            client_config,
        ));

        // Handshake both ends of a loopback pair.
        let (client, server) = tcp_pair().await;
        let name =
            rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let (client, server) = tokio::join!(
            connector.connect(name, client),
            acceptor.accept(server)
        );
        let mut client = client.unwrap();
        let mut io = conn_io(Stream::Tls(Box::new(server.unwrap())));

        // A line of several records and read chunks, then a short one,
        // sent at once: reads that wait before taking a chunk still find
        // all of it.
        let long = [b"x".repeat(3 * READ_CHUNK), b"\r\n".to_vec()].concat();
        client.write_all(&long).await.unwrap();
        client.write_all(b"two\r\n").await.unwrap();
        client.flush().await.unwrap();
        assert_eq!(io.read_line(MAX_READ).await.unwrap(), long);
        assert_eq!(io.read_line(100).await.unwrap(), b"two\r\n");

        // Waiting for the next line holds no chunk.
        assert_eq!(io.read_line(100).await, Err(IoError::Timeout));
        assert_eq!(io.buf.capacity(), 0);

        client.write_all(b"three\r\n").await.unwrap();
        client.flush().await.unwrap();
        assert_eq!(io.read_line(100).await.unwrap(), b"three\r\n");
    }

    #[tokio::test]
    async fn pending_input_survives_the_release() {
        let (mut client, mut io) = pair().await;

        // Half a line is kept across a wait that times out.
        client.write_all(b"par").await.unwrap();
        assert_eq!(io.read_line(100).await, Err(IoError::Timeout));
        assert_eq!(io.buffered(), b"par");

        client.write_all(b"tial\r\n").await.unwrap();
        assert_eq!(io.read_line(100).await.unwrap(), b"partial\r\n");
    }

    /// Longest a test's client waits for bytes it expects: far beyond
    /// any scheduling delay, so only output that never comes fails.
    const EXPECT_WAIT: Duration = Duration::from_secs(5);

    /// The client's end and a `ConnIo` that waits `EXPECT_WAIT` twice
    /// over before its idle timeout, for tests where both sides wait.
    async fn patient_pair() -> (TcpStream, ConnIo) {
        let (client, server) = tcp_pair().await;
        (client, conn_io_idle(Stream::Plain(server), EXPECT_WAIT * 2))
    }

    /// Read exactly `expected.len()` bytes and compare them.
    async fn expect_bytes(client: &mut TcpStream, expected: &[u8]) {
        let mut got = vec![0u8; expected.len()];
        let read = client.read_exact(&mut got);
        match tokio::time::timeout(EXPECT_WAIT, read).await {
            Ok(Ok(_)) => assert_eq!(got, expected),
            Ok(Err(err)) => panic!("reading {expected:?}: {err}"),
            Err(_) => panic!("{expected:?} did not arrive"),
        }
    }

    /// Whatever arrives within `wait`: for checking that nothing does.
    async fn received(client: &mut TcpStream, wait: Duration) -> Vec<u8> {
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Ok(read)) =
            tokio::time::timeout_at(deadline, client.read(&mut chunk)).await
        {
            if read == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..read]);
        }
        got
    }

    /// `send-and-read-line` of `reply` while the client waits for
    /// `expected`, which must arrive before it sends `next`: the host
    /// must not hold output while it waits for the client.
    async fn turn(
        io: &mut ConnIo,
        client: &mut TcpStream,
        reply: &[u8],
        expected: &[u8],
        next: &[u8],
    ) -> Result<Vec<u8>, IoError> {
        let (line, ()) =
            tokio::join!(io.send_and_read_line(reply, 100), async {
                expect_bytes(client, expected).await;
                client.write_all(next).await.unwrap();
            });
        line
    }

    #[tokio::test]
    async fn a_reply_goes_out_before_the_wait_for_the_next_line() {
        let (mut client, mut io) = patient_pair().await;

        let reply = b"OK ready\r\n";
        let line = turn(&mut io, &mut client, reply, reply, b"NEXT\r\n").await;
        assert_eq!(line.unwrap(), b"NEXT\r\n");
        assert!(io.held.is_empty());
    }

    #[tokio::test]
    async fn replies_to_pipelined_lines_are_held_then_sent_together() {
        let (mut client, mut io) = patient_pair().await;
        client.write_all(b"A\r\nB\r\nC\r\n").await.unwrap();
        assert_eq!(io.read_line(100).await.unwrap(), b"A\r\n");

        // B and C are already here: the replies to A and B wait.
        assert_eq!(
            io.send_and_read_line(b"a\r\n", 100).await.unwrap(),
            b"B\r\n"
        );
        assert_eq!(
            io.send_and_read_line(b"b\r\n", 100).await.unwrap(),
            b"C\r\n"
        );
        let short = Duration::from_millis(20);
        assert_eq!(received(&mut client, short).await, b"");

        // Nothing more is buffered: all three go out before the wait.
        let all = b"a\r\nb\r\nc\r\n";
        let line = turn(&mut io, &mut client, b"c\r\n", all, b"D\r\n").await;
        assert_eq!(line.unwrap(), b"D\r\n");
    }

    #[tokio::test]
    async fn held_replies_go_out_with_a_write_and_at_close_in_order() {
        let (mut client, mut io) = patient_pair().await;
        client.write_all(b"A\r\nB\r\nC\r\n").await.unwrap();
        assert_eq!(io.read_line(100).await.unwrap(), b"A\r\n");
        io.send_and_read_line(b"1 ", 100).await.unwrap();

        io.write(b"2 ").await.unwrap();
        assert!(io.held.is_empty());
        io.send_and_read_line(b"3 ", 100).await.unwrap();
        io.close().await;

        expect_bytes(&mut client, b"1 2 3 ").await;
        assert_eq!(io.bytes_out, 6);
    }

    #[tokio::test]
    async fn held_output_goes_out_past_its_limit() {
        let (mut client, mut io) = patient_pair().await;
        client.write_all(b"A\r\nB\r\n").await.unwrap();
        assert_eq!(io.read_line(100).await.unwrap(), b"A\r\n");

        // B is pipelined, but the reply is too large to hold.
        let large = vec![b'x'; HELD_LIMIT];
        let (line, ()) = tokio::join!(
            io.send_and_read_line(&large, 100),
            expect_bytes(&mut client, &large)
        );
        assert_eq!(line.unwrap(), b"B\r\n");
    }

    #[tokio::test]
    async fn an_oversized_reply_is_refused_and_nothing_is_read() {
        let (mut client, mut io) = pair().await;
        client.write_all(b"A\r\n").await.unwrap();

        let oversized = vec![b'x'; MAX_WRITE as usize + 1];
        let refused = io.send_and_read_line(&oversized, 100).await;
        assert_eq!(refused, Err(IoError::InvalidArgument));
        assert!(io.held.is_empty());
        assert_eq!(io.read_line(100).await.unwrap(), b"A\r\n");
    }
}
