//! Misbehaving plugins for the host's containment tests. The listener
//! setting `mode` picks the misbehaviour; each one greets first so a test
//! knows the session started.
//!
//! - `spin`: computes forever without blocking.
//! - `alloc`: allocates without bound.
//! - `stack`: recurses until the stack overflows.
//! - `panic`: panics.
//! - `flood`: writes without end, ignoring errors.
//! - `noread`: never reads, polling the host in a busy loop.
//! - `chatty`: logs and prints 10,000 records, then returns.
//! - `hold`: waits for one line, then returns without a reply, leaving
//!   the client to see only the close.
//! - `reread`: keeps calling every read and `start-tls` after the client
//!   has gone, ignoring the errors that come back at once.
//! - `dodge`: computes without end, calling the reads with a zero limit
//!   and an empty write between rounds, which all return at once.

use mailhost_sdk::{Connection, Guest, Session};

struct Hostile;

impl Guest for Hostile {
    fn run(conn: Connection) {
        let mode = mailhost_sdk::settings::get("mode").unwrap_or_default();
        let mut session = Session::new(conn);
        let _ = session.write_all(format!("OK hostile {mode}\r\n").as_bytes());

        match mode.as_str() {
            "spin" => spin(),
            "alloc" => alloc(),
            "stack" => {
                std::hint::black_box(recurse(1));
            }
            "panic" => panic!("deliberate panic in the hostile plugin"),
            "flood" => flood(&session),
            "chatty" => {
                for n in 0..10_000 {
                    mailhost_sdk::log(
                        mailhost_sdk::Level::Info,
                        &format!("record {n}"),
                    );
                    println!("stdout line {n}");
                }
            }
            "noread" => loop {
                std::hint::black_box(session.connection().buffered());
            },
            "reread" => {
                let conn = session.connection();
                loop {
                    let _ = std::hint::black_box(conn.read_line(100));
                    let _ = std::hint::black_box(conn.read(100));
                    let reply = conn.send_and_read_line(b"again\r\n", 100);
                    let _ = std::hint::black_box(reply);
                    let _ = std::hint::black_box(conn.start_tls());
                }
            }
            "dodge" => {
                let conn = session.connection();
                loop {
                    spin_for(1 << 20);
                    let _ = std::hint::black_box(conn.read_line(0));
                    let _ = std::hint::black_box(conn.read(0));
                    let reply = conn.send_and_read_line(b"", 0);
                    let _ = std::hint::black_box(reply);
                    let _ = std::hint::black_box(conn.write(b""));
                }
            }
            _ => {
                let _ = session.read_line(100);
            }
        }
    }
}

fn spin() {
    loop {
        spin_for(u64::MAX);
    }
}

/// Compute for `rounds` rounds of a cheap recurrence.
fn spin_for(rounds: u64) {
    let mut x: u64 = 1;
    for _ in 0..rounds {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005) + 1);
    }
}

fn alloc() {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = vec![0u8; 1 << 20];
        block[0] = 1;
        hoard.push(std::hint::black_box(block));
    }
}

fn recurse(depth: u64) -> u64 {
    // The guard never fires; it keeps the recursion well-formed.
    if depth == u64::MAX {
        return 0;
    }
    let frame = std::hint::black_box([depth; 64]);
    recurse(depth + 1) + frame[(depth % 64) as usize]
}

fn flood(session: &Session) {
    let chunk = vec![b'x'; 64 * 1024];
    loop {
        let _ = session.connection().write(&chunk);
    }
}

mailhost_sdk::export!(Hostile);
