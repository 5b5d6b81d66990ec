//! A plugin without the standard library, for the tests of the SDK's
//! `no_std` runtime: its allocator and its panic handler. The listener
//! setting `mode` picks what it does after the greeting
//! `OK bare <mode> pages=<P>`, where `P` is the size of its linear memory
//! in wasm pages before it allocated anything.
//!
//! - `grow`: answers each line `N [R]` by allocating N KiB in pieces of
//!   many sizes up to 128 KiB, each filled with a pattern of its own,
//!   freeing half on the way and checking the rest at the end, R times
//!   (once by default), then replies `OK <N> pages=<P>`, or
//!   `ERR memory corrupted` when a piece lost its pattern. A large `N`
//!   makes the heap grow far past the room the linker leaves in the
//!   initial memory; a large `R` makes the command compute for long.
//!   `QUIT` ends the session.
//! - `oom`: allocates and touches memory without bound, so the
//!   allocator runs into the listener's memory cap.
//! - `panic`: panics.

#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use mailhost_sdk::{Connection, Guest, Session};

mailhost_sdk::no_std_runtime!();

/// Longest command line read, in bytes.
const MAX_LINE: u32 = 64;

/// Largest piece `grow` allocates, in bytes.
const LARGEST_PIECE: usize = 128 << 10;

struct Bare;

impl Guest for Bare {
    fn run(conn: Connection) {
        // Before anything is allocated: the size of the initial memory.
        let pages = memory_pages();
        let mode = mailhost_sdk::settings::get("mode").unwrap_or_default();
        let mut session = Session::new(conn);
        let greeting = format!("OK bare {mode} pages={pages}\r\n");
        // Written at once, not queued: the panicking modes never flush.
        let _ = session.write_all(greeting.as_bytes());

        match mode.as_str() {
            "grow" => grow(&mut session),
            "oom" => exhaust_memory(),
            "panic" => panic!("deliberate panic in the bare plugin"),
            _ => session.queue(b"ERR unknown mode\r\n"),
        }
    }
}

fn grow(session: &mut Session) {
    while let Ok(line) = session.read_line(MAX_LINE) {
        let text = line.text();
        if text.eq_ignore_ascii_case("QUIT") {
            session.queue(b"BYE\r\n");
            return;
        }
        let reply = match parse_grow(&text).filter(|_| line.complete) {
            Some((kib, rounds)) => {
                let bytes = kib << 10;
                if (0..rounds).all(|_| allocate_and_check(bytes)) {
                    format!("OK {kib} pages={}\r\n", memory_pages())
                } else {
                    String::from("ERR memory corrupted\r\n")
                }
            }
            None => String::from("ERR expected KIB [ROUNDS]\r\n"),
        };
        session.queue(reply.as_bytes());
    }
}

/// `KIB [ROUNDS]`: the KiB to allocate (so that the bytes fit a
/// `usize`) and how many times, once by default.
fn parse_grow(text: &str) -> Option<(usize, u32)> {
    let mut words = text.split_ascii_whitespace();
    let kib: usize = words.next()?.parse().ok()?;
    kib.checked_mul(1 << 10)?;
    let rounds = match words.next() {
        Some(word) => word.parse().ok()?,
        None => 1,
    };
    words.next().is_none().then_some((kib, rounds))
}

/// Allocate `total` bytes in pieces of growing size, each filled with a
/// pattern of its own, free every other piece as it goes, and check every
/// surviving piece at the end: whether all still hold their pattern.
fn allocate_and_check(total: usize) -> bool {
    let mut kept: Vec<(u8, Vec<u8>)> = Vec::new();
    let mut allocated = 0;
    let mut size = 1;

    for tag in (0..=u8::MAX).cycle() {
        if allocated >= total {
            break;
        }
        let len = size.min(total - allocated);
        let piece = alloc::vec![tag; len];
        allocated += len;
        if tag % 2 == 0 {
            kept.push((tag, piece));
        }
        size = match size * 2 + 1 {
            next if next > LARGEST_PIECE => 1,
            next => next,
        };
    }

    kept.iter()
        .all(|(tag, piece)| piece.iter().all(|byte| byte == tag))
}

/// The size of the linear memory in wasm pages (none off wasm).
fn memory_pages() -> usize {
    #[cfg(target_arch = "wasm32")]
    return core::arch::wasm32::memory_size(0);
    #[cfg(not(target_arch = "wasm32"))]
    return 0;
}

/// Keep every megabyte, touched, until an allocation fails.
fn exhaust_memory() {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(alloc::vec![1; 1 << 20]);
    }
}

mailhost_sdk::export!(Bare);
