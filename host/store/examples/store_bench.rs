//! Store benchmarks, one line per figure:
//!
//! - durable deliveries per second of 10 KB messages: a raw loop (write,
//!   fsync, rename, fsync of the directory, one writer) against the store
//!   with 16 concurrent deliverers, into one mailbox and into sixteen;
//! - opening a 100,000-message folder: the first open (which numbers
//!   every message) and a warm one.
//!
//! Run: `cargo run --release -p mailhost-store --example store_bench --
//! [--deliveries N] [--messages N] [--dir PATH]`. The directory defaults
//! to a temporary one on the disk under test (`$TMPDIR`).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use mailhost_store::{OpenMode, STABLE_AFTER, Store, filename};

/// Size of each benchmark message.
const MESSAGE_SIZE: usize = 10 * 1024;

/// Concurrent deliverers for the store figure.
const DELIVERERS: usize = 16;

struct Args {
    deliveries: usize,
    messages: usize,
    dir: Option<PathBuf>,
}

fn parse_args() -> Args {
    let mut args = Args {
        deliveries: 2000,
        messages: 100_000,
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value =
            || it.next().unwrap_or_else(|| panic!("`{a}` needs a value"));
        match a.as_str() {
            "--deliveries" => {
                args.deliveries = value().parse().expect("a count")
            }
            "--messages" => args.messages = value().parse().expect("a count"),
            "--dir" => args.dir = Some(PathBuf::from(value())),
            other => panic!("unknown argument `{other}`"),
        }
    }
    args
}

fn message() -> Vec<u8> {
    let mut m = b"Subject: bench\r\nFrom: a@example.net\r\n\r\n".to_vec();
    while m.len() < MESSAGE_SIZE {
        m.extend_from_slice(b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\r\n");
    }
    m.truncate(MESSAGE_SIZE - 2);
    m.extend_from_slice(b"\r\n");
    m
}

/// The baseline: one writer doing the durable steps per file.
fn raw_loop(dir: &Path, count: usize, body: &[u8]) -> f64 {
    let tmp = dir.join("raw/tmp");
    let new = dir.join("raw/new");
    fs::create_dir_all(&tmp).unwrap();
    fs::create_dir_all(&new).unwrap();

    let start = Instant::now();
    for i in 0..count {
        let t = tmp.join(format!("m{i}"));
        let mut f = fs::File::create(&t).unwrap();
        f.write_all(body).unwrap();
        f.sync_all().unwrap();
        fs::rename(&t, new.join(format!("m{i}"))).unwrap();
        fs::File::open(&new).unwrap().sync_all().unwrap();
    }
    count as f64 / start.elapsed().as_secs_f64()
}

/// The store with concurrent deliverers into `mailboxes` accounts.
fn store_deliveries(
    store: &Store,
    count: usize,
    mailboxes: usize,
    body: &[u8],
) -> f64 {
    let accounts: Vec<String> = (0..mailboxes)
        .map(|i| format!("bench{i}@example.org"))
        .collect();
    for a in &accounts {
        store.account(a).unwrap();
    }
    let next = Arc::new(AtomicUsize::new(0));
    let body = Arc::new(body.to_vec());
    let accounts = Arc::new(accounts);

    let start = Instant::now();
    let workers: Vec<_> = (0..DELIVERERS)
        .map(|_| {
            let (store, next, body, accounts) =
                (store.clone(), next.clone(), body.clone(), accounts.clone());
            thread::spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    let to = accounts[i % accounts.len()].clone();
                    let mut d = store
                        .begin_delivery_to(
                            "a@example.net",
                            vec![(to.clone(), Ok(vec![to]))],
                            1 << 20,
                        )
                        .unwrap();
                    d.write(&body).unwrap();
                    let results = d.commit().unwrap();
                    assert!(results[0].1.is_ok());
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    count as f64 / start.elapsed().as_secs_f64()
}

/// Fill an account's INBOX `cur/` with `count` small files named the
/// way the store names them (not synced: only opening is measured).
fn fill_folder(store: &Store, count: usize) -> mailhost_store::Account {
    let acct = store.account("big@example.org").unwrap();
    let cur = acct.root().join("cur");
    let body = b"Subject: x\r\n\r\nx\r\n";
    // A folder left by an earlier run with `--dir` is reused.
    let have = fs::read_dir(&cur).unwrap().count();
    for _ in have..count {
        let base =
            filename::with_sizes(&filename::unique_base(1_700_000_000), 17, 17);
        fs::write(cur.join(filename::cur_name(&base, "S")), body).unwrap();
    }
    acct
}

/// CPU time of this thread: on a shared machine the wall clock also
/// counts other processes' turns.
fn thread_cpu() -> Duration {
    // SAFETY: getrusage fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    let tv = |t: libc::timeval| {
        Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Open INBOX; wall time, CPU time, message count.
fn time_open(acct: &mailhost_store::Account) -> (Duration, Duration, usize) {
    let cpu = thread_cpu();
    let start = Instant::now();
    let f = acct.open("INBOX", OpenMode::ReadWrite).unwrap();
    (start.elapsed(), thread_cpu() - cpu, f.messages().len())
}

fn main() {
    let args = parse_args();
    let tmp;
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir().unwrap();
            tmp.path().to_path_buf()
        }
    };
    let body = message();
    let store = Store::open(dir.join("data")).unwrap();

    if args.deliveries == 0 {
        return open_figures(&store, args.messages);
    }
    let raw = raw_loop(&dir, args.deliveries, &body);
    println!(
        "raw loop, 1 writer, write+fsync+rename+fsync dir, 10 KB: {raw:.0} msg/s"
    );
    let one = store_deliveries(&store, args.deliveries, 1, &body);
    println!(
        "store delivery, {DELIVERERS} deliverers, 1 mailbox, 10 KB: {one:.0} msg/s ({:.2}x raw)",
        one / raw
    );
    let many = store_deliveries(&store, args.deliveries, DELIVERERS, &body);
    println!(
        "store delivery, {DELIVERERS} deliverers, {DELIVERERS} mailboxes, \
         10 KB: {many:.0} msg/s ({:.2}x raw)",
        many / raw
    );

    open_figures(&store, args.messages);
}

fn open_figures(store: &Store, messages: usize) {
    let acct = fill_folder(store, messages);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (first, first_cpu, n) = time_open(&acct);
    assert_eq!(n, messages);
    println!(
        "open {n}-message folder, first (numbers new files): {:.0} ms ({:.0} ms CPU)",
        ms(first),
        ms(first_cpu)
    );

    // A scan is cached only once the folder's mtimes are older than
    // STABLE_AFTER; until then every open reads the directory and the
    // uidlist, which is the next figure.
    thread::sleep(STABLE_AFTER + Duration::from_millis(200));
    let (scan, scan_cpu, _) = time_open(&acct);
    println!(
        "open {n}-message folder, warm page cache, reads dir + uidlist: {:.0} ms ({:.0} ms CPU)",
        ms(scan),
        ms(scan_cpu)
    );
    let runs: Vec<_> = (0..3).map(|_| time_open(&acct)).collect();
    let (wall, cpu, _) = runs.iter().min_by_key(|r| r.0).unwrap();
    println!(
        "open {n}-message folder, unchanged since last scan (cached): {:.0} ms ({:.0} ms CPU)",
        ms(*wall),
        ms(*cpu)
    );
}
