//! `mailhost-bench fork-echo`: baseline (b), the design mailhost
//! replaces. One process accepts; each connection gets a forked child
//! that serves the session with blocking I/O and exits; the parent reaps
//! children on SIGCHLD and refuses connections over a child cap.
//!
//! The process must stay single-threaded: `fork` copies only the calling
//! thread, so nothing here may start a runtime or a helper thread.

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::proto::{self, Line, Reply};

/// A read waits this long for the client before the child gives up.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// What a client over the child cap reads before the close.
const BUSY_REPLY: &[u8] = b"BUSY too many connections\r\n";

/// Children alive now: raised by the parent before each fork, lowered by
/// the SIGCHLD handler for each child reaped. Atomics are safe to touch
/// from a signal handler; a lock would not be.
static CHILDREN: AtomicUsize = AtomicUsize::new(0);

#[derive(clap::Args)]
pub struct ForkArgs {
    /// Address to listen on; port 0 picks one, printed on stdout.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,

    /// Most children at once; more connections get a busy reply.
    #[arg(long, default_value_t = 1024)]
    pub max_children: usize,
}

pub fn run(args: ForkArgs) -> anyhow::Result<()> {
    if args.max_children == 0 {
        bail!("`--max-children` must be at least 1");
    }
    let listener = TcpListener::bind(args.listen)
        .with_context(|| format!("failed to bind `{}`", args.listen))?;
    install_reaper()?;
    crate::announce(listener.local_addr()?);

    loop {
        let (tcp, _peer) = match listener.accept() {
            Ok(pair) => pair,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => {
                eprintln!("fork-echo: accept failed: {err}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };

        if CHILDREN.load(Ordering::SeqCst) >= args.max_children {
            let mut tcp = tcp;
            let _ = tcp.write_all(BUSY_REPLY);
            continue;
        }

        CHILDREN.fetch_add(1, Ordering::SeqCst);
        // SAFETY: the process is single-threaded (see the module doc), so
        // the child gets a consistent copy of everything it touches.
        match unsafe { libc::fork() } {
            -1 => {
                CHILDREN.fetch_sub(1, Ordering::SeqCst);
                eprintln!(
                    "fork-echo: fork failed: {}",
                    io::Error::last_os_error()
                );
            }
            0 => {
                // The child owns the connection; the listener is the
                // parent's.
                drop(listener);
                let status = match child(tcp) {
                    Ok(()) => 0,
                    Err(_) => 1,
                };
                // SAFETY: `_exit` skips the parent's atexit handlers and
                // stdio buffers, which are not the child's to run.
                unsafe { libc::_exit(status) }
            }
            _ => drop(tcp),
        }
    }
}

/// Reap every exited child without blocking; runs as the SIGCHLD handler.
extern "C" fn reap(_signal: libc::c_int) {
    // SAFETY: only async-signal-safe calls here: errno access and
    // `waitpid`; errno is restored so the interrupted code never sees
    // the handler's value.
    unsafe {
        let errno = *libc::__errno_location();
        while libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) > 0 {
            CHILDREN.fetch_sub(1, Ordering::SeqCst);
        }
        *libc::__errno_location() = errno;
    }
}

fn install_reaper() -> anyhow::Result<()> {
    // SAFETY: a zeroed sigaction is a valid empty one; the handler only
    // makes async-signal-safe calls.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = reap as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART | libc::SA_NOCLDSTOP;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(libc::SIGCHLD, &action, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error())
                .context("failed to install the SIGCHLD handler");
        }
    }
    Ok(())
}

/// The session in the child, with blocking reads bounded by the idle
/// timeout.
fn child(tcp: TcpStream) -> io::Result<()> {
    tcp.set_read_timeout(Some(IDLE_TIMEOUT))?;
    tcp.set_nodelay(true)?;

    let mut reader = BufReader::new(tcp.try_clone()?);
    let mut writer = BufWriter::new(tcp);
    writer.write_all(proto::GREETING)?;
    writer.write_all(b"\r\n")?;

    loop {
        // Flush only when the next read would wait, so pipelined lines
        // get their replies in one write, as the plugin SDK does.
        if reader.buffer().is_empty() {
            writer.flush()?;
        }
        let Some(line) = read_line(&mut reader, proto::MAX_LINE)? else {
            return Ok(());
        };
        match proto::answer(&line) {
            Reply::Continue(reply) => writer.write_all(&reply)?,
            Reply::Close(reply) => {
                writer.write_all(&reply)?;
                writer.flush()?;
                return writer.get_ref().shutdown(std::net::Shutdown::Write);
            }
        }
    }
}

/// The next line of at most `max` bytes without its terminator, or
/// `None` at the close; an overlong line is read to its LF and dropped.
fn read_line<R: BufRead>(
    reader: &mut R,
    max: usize,
) -> io::Result<Option<Line>> {
    let mut line = Vec::new();
    let limit = max as u64 + 2;
    reader.by_ref().take(limit).read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Ok(None);
    }

    if line.last() != Some(&b'\n') {
        if (line.len() as u64) < limit {
            // Closed mid-line.
            return Ok(None);
        }
        skip_line(reader)?;
        return Ok(Some(Line::TooLong));
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    if line.len() > max {
        return Ok(Some(Line::TooLong));
    }
    Ok(Some(Line::Complete(line)))
}

/// Consume input up to and including the next LF, without keeping it.
fn skip_line<R: BufRead>(reader: &mut R) -> io::Result<()> {
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        if let Some(at) = buf.iter().position(|&b| b == b'\n') {
            reader.consume(at + 1);
            return Ok(());
        }
        let len = buf.len();
        reader.consume(len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<Line> {
        let mut reader = BufReader::new(input);
        let mut lines = Vec::new();
        while let Some(line) = read_line(&mut reader, max).unwrap() {
            lines.push(line);
        }
        lines
    }

    #[test]
    fn lines_split_and_overlong_ones_are_dropped() {
        let mut input = b"one\r\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 500));
        input.extend_from_slice(b"\r\ntwo\n");
        let got = lines(&input, 100);
        assert_eq!(
            got,
            [
                Line::Complete(b"one".to_vec()),
                Line::TooLong,
                Line::Complete(b"two".to_vec())
            ]
        );
    }

    #[test]
    fn line_of_exactly_the_limit_is_kept() {
        let got = lines(b"abcd\r\nabcde\r\n", 4);
        assert_eq!(got, [Line::Complete(b"abcd".to_vec()), Line::TooLong]);
    }
}
