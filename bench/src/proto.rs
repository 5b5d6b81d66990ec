//! The echo protocol of `plugins/echo`, both sides, over any async
//! stream: the server greets `OK echo ready`, answers each line `X` with
//! `ECHO X`, and answers `QUIT` with `BYE` before it closes.
//!
//! The baseline servers speak it natively and the load generator speaks
//! it to all of them, so every server is measured on the same bytes.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The greeting every echo server sends first.
pub const GREETING: &[u8] = b"OK echo ready";

/// What a server says to `QUIT` before it closes.
pub const BYE: &[u8] = b"BYE";

/// Longest command line a server accepts, terminator excluded, as the
/// echo plugin's default `max-line`.
pub const MAX_LINE: usize = 4096;

/// Longest reply line the client accepts; a longer one is a protocol
/// error, not something to buffer without end.
pub const MAX_REPLY: usize = 1024;

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 4096;

/// The two lines each benchmark session sends before `QUIT`.
pub const SESSION_LINES: [&str; 2] = ["hello", "world"];

/// One line read by [`LineConn::read_line`].
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A line without its LF or CRLF.
    Complete(Vec<u8>),
    /// A line longer than the limit; it was read up to its LF and dropped.
    TooLong,
}

/// A stream with an input buffer that yields lines and an output buffer
/// that is flushed only when the next read would have to wait, so a
/// pipelined batch of commands gets its replies in one write.
pub struct LineConn<S> {
    stream: S,
    input: Vec<u8>,
    output: Vec<u8>,
    /// Set while the rest of an overlong line is being skipped.
    discarding: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> LineConn<S> {
    pub fn new(stream: S) -> Self {
        LineConn {
            stream,
            input: Vec::with_capacity(READ_CHUNK),
            output: Vec::new(),
            discarding: false,
        }
    }

    /// The stream underneath.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// Queue `data` for the peer; it is sent by [`Self::flush`] or before
    /// a read that has to wait.
    pub fn queue(&mut self, data: &[u8]) {
        self.output.extend_from_slice(data);
    }

    /// Send all queued output.
    pub async fn flush(&mut self) -> io::Result<()> {
        if self.output.is_empty() {
            return Ok(());
        }
        self.stream.write_all(&self.output).await?;
        self.output.clear();
        Ok(())
    }

    /// The next line of at most `max` bytes (terminator excluded), or
    /// `None` when the peer closed. A partial line before the close is
    /// dropped: no echo client sends one.
    pub async fn read_line(&mut self, max: usize) -> io::Result<Option<Line>> {
        let mut scanned = 0;
        loop {
            if let Some(at) =
                self.input[scanned..].iter().position(|&b| b == b'\n')
            {
                let end = scanned + at;
                let line = take_line(&mut self.input, end);
                if std::mem::take(&mut self.discarding) || line.len() > max {
                    return Ok(Some(Line::TooLong));
                }
                return Ok(Some(Line::Complete(line)));
            }

            // No LF yet: an overlong line is dropped as it arrives, so the
            // buffer never holds more than the limit plus one chunk.
            if self.input.len() > max {
                self.input.clear();
                self.discarding = true;
            }
            scanned = self.input.len();

            self.flush().await?;
            let filled = self.input.len();
            self.input.resize(filled + READ_CHUNK, 0);
            let count = match self.stream.read(&mut self.input[filled..]).await
            {
                Ok(count) => count,
                Err(err) => {
                    self.input.truncate(filled);
                    return Err(err);
                }
            };
            self.input.truncate(filled + count);
            if count == 0 {
                return Ok(None);
            }
        }
    }

    /// Flush and shut down the write side.
    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.flush().await?;
        self.stream.shutdown().await
    }
}

/// Remove the line ending at the LF at `lf` from the front of `input` and
/// return it without its terminator.
fn take_line(input: &mut Vec<u8>, lf: usize) -> Vec<u8> {
    let mut line: Vec<u8> = input.drain(..=lf).collect();
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    line
}

/// Why a client session failed, coarse enough to count by kind.
#[derive(Debug)]
pub enum SessionError {
    Connect(io::Error),
    Io(io::Error),
    /// The server closed before the session was done.
    Closed(&'static str),
    /// The server said something the protocol does not allow here.
    Protocol(String),
    Timeout,
}

impl SessionError {
    /// A short name for counting errors of one kind together.
    pub fn kind(&self) -> &'static str {
        match self {
            SessionError::Connect(_) => "connect",
            SessionError::Io(_) => "io",
            SessionError::Closed(_) => "closed",
            SessionError::Protocol(_) => "protocol",
            SessionError::Timeout => "timeout",
        }
    }
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionError::Connect(err) => write!(f, "connect failed: {err}"),
            SessionError::Io(err) => write!(f, "i/o error: {err}"),
            SessionError::Closed(when) => write!(f, "server closed {when}"),
            SessionError::Protocol(text) => {
                write!(f, "unexpected reply `{text}`")
            }
            SessionError::Timeout => write!(f, "timed out"),
        }
    }
}

impl std::error::Error for SessionError {}

impl From<io::Error> for SessionError {
    fn from(err: io::Error) -> Self {
        SessionError::Io(err)
    }
}

/// Read one reply and check it is exactly `expected`.
async fn expect<S>(
    conn: &mut LineConn<S>,
    expected: &[u8],
    when: &'static str,
) -> Result<(), SessionError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match conn.read_line(MAX_REPLY).await? {
        Some(Line::Complete(line)) if line == expected => Ok(()),
        Some(Line::Complete(line)) => Err(SessionError::Protocol(
            String::from_utf8_lossy(&line).into_owned(),
        )),
        Some(Line::TooLong) => {
            Err(SessionError::Protocol("<overlong line>".into()))
        }
        None => Err(SessionError::Closed(when)),
    }
}

/// Wait for the greeting: the first step of every client session, and
/// all that an idle connection does.
pub async fn read_greeting<S>(
    conn: &mut LineConn<S>,
) -> Result<(), SessionError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    expect(conn, GREETING, "before the greeting").await
}

/// One whole benchmark session on a connected stream: greeting, the two
/// [`SESSION_LINES`] sent together, their two echoes, `QUIT`, `BYE`, and
/// the server's close.
pub async fn client_session<S>(stream: S) -> Result<(), SessionError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut conn = LineConn::new(stream);
    read_greeting(&mut conn).await?;

    for line in SESSION_LINES {
        conn.queue(line.as_bytes());
        conn.queue(b"\r\n");
    }
    conn.flush().await?;
    for line in SESSION_LINES {
        let echo = format!("ECHO {line}");
        expect(&mut conn, echo.as_bytes(), "before an echo").await?;
    }

    conn.queue(b"QUIT\r\n");
    conn.flush().await?;
    expect(&mut conn, BYE, "before BYE").await?;

    // Waiting for the server's close makes the server end the TCP
    // connection first, so TIME_WAIT piles up on its side and not on the
    // client's ephemeral ports. A TLS server may close without
    // close_notify after BYE; the session was complete by then.
    match conn.read_line(MAX_REPLY).await {
        Ok(None) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => Ok(()),
        Err(err) => Err(SessionError::Io(err)),
        Ok(Some(_)) => Err(SessionError::Protocol("data after BYE".into())),
    }
}

/// What a server does with one command line.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// Send these bytes and read the next line.
    Continue(Vec<u8>),
    /// Send these bytes and close.
    Close(Vec<u8>),
}

/// The server's answer to one line, as the echo plugin gives it.
pub fn answer(line: &Line) -> Reply {
    let line = match line {
        Line::TooLong => {
            return Reply::Continue(b"ERR line too long\r\n".to_vec());
        }
        Line::Complete(line) => line,
    };
    if line.eq_ignore_ascii_case(b"QUIT") {
        return Reply::Close(b"BYE\r\n".to_vec());
    }

    let mut reply = Vec::with_capacity(line.len() + 7);
    reply.extend_from_slice(b"ECHO ");
    reply.extend_from_slice(line);
    reply.extend_from_slice(b"\r\n");
    Reply::Continue(reply)
}

/// The server side of one session over an async stream; returns when the
/// client quits or closes, or on an I/O error. Every read is bounded by
/// `idle`, as the host bounds a plugin's reads.
pub async fn serve_session<S>(
    stream: S,
    idle: std::time::Duration,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut conn = LineConn::new(stream);
    conn.queue(GREETING);
    conn.queue(b"\r\n");

    loop {
        let line =
            match tokio::time::timeout(idle, conn.read_line(MAX_LINE)).await {
                Ok(Ok(Some(line))) => line,
                Ok(Ok(None)) => return Ok(()),
                Ok(Err(err)) => return Err(err),
                Err(_) => {
                    conn.queue(b"BYE idle timeout\r\n");
                    return conn.shutdown().await;
                }
            };
        match answer(&line) {
            Reply::Continue(reply) => conn.queue(&reply),
            Reply::Close(reply) => {
                conn.queue(&reply);
                return conn.shutdown().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `input` to a `LineConn` over an in-memory pipe and collect
    /// what `read_line` yields until the close.
    async fn lines_of(input: &[u8], max: usize) -> Vec<Line> {
        let (mut near, far) = tokio::io::duplex(64 * 1024);
        near.write_all(input).await.unwrap();
        drop(near);

        let mut conn = LineConn::new(far);
        let mut lines = Vec::new();
        while let Some(line) = conn.read_line(max).await.unwrap() {
            lines.push(line);
        }
        lines
    }

    fn complete(text: &str) -> Line {
        Line::Complete(text.as_bytes().to_vec())
    }

    #[tokio::test]
    async fn lines_split_on_crlf_and_bare_lf() {
        let lines = lines_of(b"one\r\ntwo\nthree\r\n", 100).await;
        assert_eq!(
            lines,
            [complete("one"), complete("two"), complete("three")]
        );
    }

    #[tokio::test]
    async fn overlong_line_is_dropped_and_the_next_one_kept() {
        let mut input = vec![b'x'; 10_000];
        input.extend_from_slice(b"\r\nnext\r\n");
        let lines = lines_of(&input, 100).await;
        assert_eq!(lines, [Line::TooLong, complete("next")]);
    }

    #[tokio::test]
    async fn line_of_exactly_the_limit_is_kept() {
        let lines = lines_of(b"abcd\r\nabcde\r\n", 4).await;
        assert_eq!(lines, [complete("abcd"), Line::TooLong]);
    }

    #[tokio::test]
    async fn partial_line_before_close_is_dropped() {
        let lines = lines_of(b"whole\r\npart", 100).await;
        assert_eq!(lines, [complete("whole")]);
    }

    #[test]
    fn quit_is_case_insensitive_and_closes() {
        let reply = answer(&complete("qUiT"));
        assert_eq!(reply, Reply::Close(b"BYE\r\n".to_vec()));
    }

    #[test]
    fn other_lines_are_echoed() {
        let reply = answer(&complete("hello"));
        assert_eq!(reply, Reply::Continue(b"ECHO hello\r\n".to_vec()));
    }

    #[tokio::test]
    async fn client_and_server_complete_a_session() {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let idle = std::time::Duration::from_secs(5);
        let server = tokio::spawn(serve_session(server, idle));

        client_session(client).await.unwrap();
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn client_rejects_a_wrong_greeting() {
        let (client, mut server) = tokio::io::duplex(1024);
        server
            .write_all(b"BUSY too many connections\r\n")
            .await
            .unwrap();
        drop(server);

        let err = client_session(client).await.unwrap_err();
        assert_eq!(err.kind(), "protocol", "{err}");
    }

    #[tokio::test]
    async fn client_rejects_a_close_before_bye() {
        let (client, mut server) = tokio::io::duplex(1024);
        server
            .write_all(b"OK echo ready\r\nECHO hello\r\nECHO world\r\n")
            .await
            .unwrap();
        // Close only the server's write side, so the client's writes
        // still land and the close is what it sees.
        server.shutdown().await.unwrap();

        let err = client_session(client).await.unwrap_err();
        drop(server);
        assert_eq!(err.kind(), "closed", "{err}");
    }
}
