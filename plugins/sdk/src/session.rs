//! A buffered conversation on top of the host's connection.

use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use crate::bindings::mailhost::plugin::connection::{
    Connection, IoError, SessionInfo, TlsError,
};

/// Why a read gave no line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    /// The client closed the connection.
    Closed,
    /// The idle timeout passed; say goodbye and return.
    Timeout,
    /// The host is shutting down; say goodbye and return.
    ShuttingDown,
    /// The session ran past its maximum length; say goodbye and return.
    Expired,
}

impl From<IoError> for ReadError {
    fn from(err: IoError) -> Self {
        match err {
            IoError::Timeout => ReadError::Timeout,
            IoError::ShuttingDown => ReadError::ShuttingDown,
            IoError::SessionExpired => ReadError::Expired,
            IoError::Closed | IoError::InvalidArgument => ReadError::Closed,
        }
    }
}

/// One line as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The bytes, terminator included when `complete`.
    pub raw: Vec<u8>,
    /// False when the line ran past the limit; the rest was discarded
    /// by [`Session::read_line`].
    pub complete: bool,
}

impl Line {
    /// The line without its terminator (`\r\n` or a bare `\n`).
    pub fn content(&self) -> &[u8] {
        let mut end = self.raw.len();
        if end > 0 && self.raw[end - 1] == b'\n' {
            end -= 1;
            if end > 0 && self.raw[end - 1] == b'\r' {
                end -= 1;
            }
        }
        &self.raw[..end]
    }

    /// Whether the line ended in CRLF, as mail protocols require.
    pub fn ends_with_crlf(&self) -> bool {
        self.raw.ends_with(b"\r\n")
    }

    /// The content as text, invalid UTF-8 replaced.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(self.content()).into_owned()
    }
}

/// The most output buffered before a write goes out regardless.
const OUTPUT_FLUSH_THRESHOLD: usize = 64 * 1024;

/// A connection with an output buffer.
///
/// Replies queue in the buffer and go out in one write when the plugin is
/// about to wait for input and no pipelined input is waiting, so a client
/// that pipelines fifty commands gets its replies in a few packets. A line
/// read hands the queued replies to the host in the same call
/// (`send-and-read-line`), and the host decides whether to hold them.
pub struct Session {
    conn: Connection,
    output: Vec<u8>,
    /// Whether the host may be holding replies handed over with a line
    /// read, so that `flush` must ask it to send them.
    host_may_hold: bool,
}

impl Session {
    pub fn new(conn: Connection) -> Self {
        Session {
            conn,
            output: Vec::new(),
            host_may_hold: false,
        }
    }

    /// The underlying connection, for calls such as `folder.wait`.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Facts about the session.
    pub fn info(&self) -> SessionInfo {
        self.conn.info()
    }

    /// Queue `data` for the client.
    pub fn queue(&mut self, data: &[u8]) {
        self.output.extend_from_slice(data);
    }

    /// Queue `data` and flush everything now.
    pub fn write_all(&mut self, data: &[u8]) -> Result<(), ReadError> {
        self.queue(data);
        self.flush()
    }

    /// Send all queued output, and any the host holds, now.
    pub fn flush(&mut self) -> Result<(), ReadError> {
        if self.output.is_empty() && !self.host_may_hold {
            return Ok(());
        }

        // An empty write sends what the host holds.
        self.host_may_hold = false;
        if self.output.is_empty() {
            return Ok(self.conn.write(&[])?);
        }
        self.write_queued()
    }

    fn write_queued(&mut self) -> Result<(), ReadError> {
        let output = core::mem::take(&mut self.output);
        if fits_one_write(output.len()) {
            return Ok(self.conn.write(&output)?);
        }
        for chunk in output.chunks(max_write() as usize) {
            self.conn.write(chunk)?;
        }
        Ok(())
    }

    /// Read a line, handing the queued output to the host in the same
    /// call; it goes out before the host waits for the client.
    fn send_and_read_line(
        &mut self,
        max_len: u32,
    ) -> Result<Vec<u8>, ReadError> {
        if !fits_one_write(self.output.len()) {
            self.write_queued()?;
        }
        if self.output.is_empty() {
            return Ok(self.conn.read_line(max_len)?);
        }

        self.host_may_hold = true;
        let line = self.conn.send_and_read_line(&self.output, max_len);
        self.output.clear();
        Ok(line?)
    }

    /// Flush unless pipelined input is already waiting or the buffer is
    /// still small; called before every read.
    fn flush_before_read(&mut self) -> Result<(), ReadError> {
        if self.output.is_empty() {
            return Ok(());
        }
        if self.output.len() >= OUTPUT_FLUSH_THRESHOLD
            || self.conn.buffered() == 0
        {
            self.flush()?;
        }
        Ok(())
    }

    /// Read a line of at most `max_len` bytes, terminator included. A
    /// longer line comes back with `complete: false` and its first
    /// `max_len` bytes; the rest, up to its LF, is read and discarded so
    /// the next read starts on a fresh line. A `max_len` of 0 makes every
    /// line overlong. A limit above the host's `max-read` is read in
    /// parts; a client that closes mid-line gets its partial line back.
    pub fn read_line(&mut self, max_len: u32) -> Result<Line, ReadError> {
        let part_limit = read_part_limit(max_len);
        let mut asked = max_len.min(part_limit);
        let mut raw = self.send_and_read_line(asked)?;
        let mut last_part = raw.len();

        loop {
            if raw.last() == Some(&b'\n') {
                return Ok(Line {
                    raw,
                    complete: true,
                });
            }
            if raw.len() >= max_len as usize {
                break;
            }
            if last_part < asked as usize {
                // The peer closed mid-line: hand over what came.
                return Ok(Line {
                    raw,
                    complete: true,
                });
            }

            // The host cut the line at its `max-read`; the rest follows.
            asked = (max_len - raw.len() as u32).min(part_limit);
            let part = self.conn.read_line(asked)?;
            last_part = part.len();
            raw.extend_from_slice(&part);
        }

        loop {
            let rest =
                self.conn.read_line(max_len.max(4096).min(part_limit))?;
            if rest.last() == Some(&b'\n') {
                break;
            }
        }
        Ok(Line {
            raw,
            complete: false,
        })
    }

    /// Read a line without discarding an overlong rest: returns at most
    /// `max_len` bytes, and a line cut there continues on the next call.
    /// For message data, where long lines are kept, not refused.
    pub fn read_line_part(
        &mut self,
        max_len: u32,
    ) -> Result<Vec<u8>, ReadError> {
        self.send_and_read_line(max_len)
    }

    /// Read exactly `len` bytes (an IMAP literal, say), handing them to
    /// `sink` in chunks as they arrive.
    pub fn read_exact_with(
        &mut self,
        mut len: u64,
        mut sink: impl FnMut(&[u8]),
    ) -> Result<(), ReadError> {
        self.flush_before_read()?;

        let max = crate::bindings::mailhost::plugin::connection::max_read();
        while len > 0 {
            let want = len.min(u64::from(max)) as u32;
            let chunk = self.conn.read(want)?;
            len -= chunk.len() as u64;
            sink(&chunk);
        }
        Ok(())
    }

    /// Read exactly `len` bytes into memory. Mind the size: check it
    /// against a limit before calling.
    pub fn read_exact(&mut self, len: u64) -> Result<Vec<u8>, ReadError> {
        let mut out = Vec::with_capacity(len.min(1 << 20) as usize);
        self.read_exact_with(len, |chunk| out.extend_from_slice(chunk))?;
        Ok(out)
    }

    /// Flush queued output, then upgrade to TLS. Any input the client
    /// pipelined after its STARTTLS command is discarded by the host.
    pub fn start_tls(&mut self) -> Result<(), TlsError> {
        if self.flush().is_err() {
            return Err(TlsError::HandshakeFailed);
        }
        self.conn.start_tls()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // A goodbye queued just before returning must still reach the
        // client. What the host holds it sends when the connection
        // closes.
        if !self.output.is_empty() {
            let _ = self.write_queued();
        }
    }
}

/// Whether `len` bytes go to the host in one call. `max-write` is
/// documented as 1 MiB, so below the flush threshold the host need not be
/// asked.
fn fits_one_write(len: usize) -> bool {
    len < OUTPUT_FLUSH_THRESHOLD || len <= max_write() as usize
}

/// `max-read` as documented: 1 MiB.
const DOCUMENTED_MAX_READ: u32 = 1 << 20;

/// The most one `read-line` returns when `max_len` is asked for: a limit
/// within the documented `max-read` is not clamped, so the host need not
/// be asked.
fn read_part_limit(max_len: u32) -> u32 {
    if max_len <= DOCUMENTED_MAX_READ {
        return DOCUMENTED_MAX_READ;
    }
    crate::bindings::mailhost::plugin::connection::max_read()
}

/// The host's write limit. It is fixed for the life of the host, and an
/// instance lives for one session, so one call per session suffices.
fn max_write() -> u32 {
    // Zero until asked: the host never answers zero (see `max-write`).
    static MAX_WRITE: AtomicU32 = AtomicU32::new(0);
    let mut limit = MAX_WRITE.load(Ordering::Relaxed);
    if limit == 0 {
        limit = crate::bindings::mailhost::plugin::connection::max_write();
        MAX_WRITE.store(limit, Ordering::Relaxed);
    }
    limit
}
