#!/usr/bin/env python3
"""Protocol benchmarks for SMTP, POP3 and IMAP (issues 5, 6 and 7).

Starts the real host with the three protocol plugins in a temporary
directory, drives it with Python clients over loopback and prints every
round and a summary of medians. What each figure means:
docs/protocol-benchmarks.md.

    python3 bench/protocols.py [--bin HOST] [--plugins DIR] [--quick]
                               [--only-imap]

Standard library only. The timed POP3 and IMAP commands go over a small
raw-socket client instead of poplib/imaplib: those parse every line in
Python, which on 100,000 FETCH lines would time the client, not the
server. poplib and imaplib still check each filled mailbox once, so a
figure from a wrong mailbox cannot be printed.
"""

import argparse
import os
import re
import resource
import shutil
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import imaplib
import poplib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Host binaries in the order they are preferred: the release build, then
# the debug build (whose dependencies are optimised).
HOST_CANDIDATES = (
    os.path.join(REPO, "target/release/mailhost"),
    os.path.join(REPO, "target/debug/mailhost"),
)
PLUGIN_DIR = os.path.join(REPO, "target/wasm32-wasip2/release")

PASSWORD = "bench-password"
DOMAIN = "example.org"
# SMTP target, POP3 maildrop, IMAP folders and the IDLE account. Each
# figure gets its own account so one fill never skews another figure.
SMTP_USER = "sink@" + DOMAIN
POP3_USER = "alice@" + DOMAIN
IMAP_USERS = ("bob@" + DOMAIN, "carol@" + DOMAIN)
IDLE_USER = "dave@" + DOMAIN

# Rounds behind every median.
ROUNDS = 5
# Seconds allowed for the host to compile the plugins and say ready.
STARTUP_WAIT = 120
# Seconds a socket read may wait before the run is declared broken.
IO_TIMEOUT = 120
# Bytes asked of the socket per read.
READ_CHUNK = 1 << 16

# SMTP (issue 5): message size, concurrent sessions, transactions per
# connection and seconds per round.
SMTP_MESSAGE_SIZE = 10 * 1024
SMTP_CLIENTS = 16
SMTP_PER_CONNECTION = 10
SMTP_SECONDS = 3
# Seconds of unmeasured SMTP and raw writes before the rounds.
WARMUP_SECONDS = 1

# POP3 (issue 6): maildrop size, message size, repeats of STAT and LIST
# inside one session, and messages retrieved per round.
POP3_MESSAGES = 10_000
POP3_MESSAGE_SIZE = 10 * 1024
POP3_REPEATS = 5
POP3_RETR_PER_ROUND = 2_000

# IMAP (issue 7): the folder sizes, their message size, and the IDLE
# connections held (their account holds a few messages only).
IMAP_FOLDERS = (10_000, 100_000)
IMAP_MESSAGE_SIZE = 2 * 1024
IDLE_CONNECTIONS = 1_000
IDLE_MESSAGES = 10
# Threads opening IDLE connections: each LOGIN hashes a password, so two
# cores stay busy with a few openers.
IDLE_OPENERS = 4
# glibc keeps freed blocks above its adaptive mmap threshold in its
# arenas. Each LOGIN's password hash takes a 19 MiB buffer, so without a
# fixed threshold the arenas' leftovers swamp the sessions' memory; with
# it those buffers go back to the kernel when freed.
IDLE_HOST_ENV = {"MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}
# Sessions logged in and closed before the "before" reading.
IDLE_WARMUP = 16
# Seconds the held connections settle before the host's RSS is read.
IDLE_SETTLE = 2
# Seconds to wait for the host to drop closed IDLE sessions.
IDLE_DRAIN_WAIT = 30

# Smaller sizes for a smoke test of the script itself.
QUICK = {
    "SMTP_SECONDS": 1,
    "POP3_MESSAGES": 500,
    "POP3_RETR_PER_ROUND": 200,
    "IMAP_FOLDERS": (1_000, 5_000),
    "IDLE_CONNECTIONS": 50,
}

# Descriptors beyond the IDLE connections, for the host and this script.
FD_SLACK = 1024

LISTENING = re.compile(r"listening.*?listener=\"?([\w.-]+)\"?.*?"
                       r"address=\"?([0-9.:\[\]]+)\"?")


def log(text):
    print(text, flush=True)


def fail(text):
    print(f"protocols: {text}", file=sys.stderr, flush=True)
    sys.exit(1)


def median(values):
    return statistics.median(values)


def fmt(value, digits=1):
    return f"{value:.{digits}f}"


# --- the host ------------------------------------------------------------


class Host:
    """The mailhost process serving SMTP, POP3 and IMAP in `work`."""

    def __init__(self, binary, plugins, work, max_connections):
        self.binary = binary
        self.work = work
        self.config = os.path.join(work, "mailhost.toml")
        self.data = os.path.join(work, "data")
        self.proc = None
        self.addrs = {}

        listeners = ""
        for name, protocol, settings in (
            ("smtp", "smtp",
             'mode = "reception"\nhostname = "mx.example.org"'),
            ("pop3", "pop3", 'hostname = "pop.example.org"'),
            ("imap", "imap", 'hostname = "imap.example.org"'),
        ):
            plugin = os.path.join(plugins, f"mailhost_{name}.wasm")
            if not os.path.isfile(plugin):
                fail(f"no plugin `{plugin}`; build it or pass --plugins")
            role = "submission" if name == "smtp" else "mailbox"
            listeners += f"""
[[listener]]
name = "{name}"
address = "127.0.0.1:0"
protocol = "{protocol}"
role = "{role}"
plugin = "{plugin}"
tls = "none"
plaintext-auth = "loopback"

[listener.settings]
{settings}
"""
        with open(self.config, "w") as out:
            out.write(f"""data-dir = "{self.data}"
shutdown-grace = 1

[limits]
max-connections = {max_connections}
max-connections-per-ip = {max_connections}

[accounts]
users-file = "{work}/users"
domains = ["{DOMAIN}"]
{listeners}""")
        open(os.path.join(work, "users"), "w").close()

    def add_user(self, user):
        done = subprocess.run(
            [self.binary, "user", "add", "--config", self.config, user],
            input=(PASSWORD + "\n").encode(), capture_output=True)
        if done.returncode != 0:
            fail(f"`mailhost user add {user}` failed: "
                 f"{done.stderr.decode(errors='replace')}")

    def maildir(self, user):
        local, domain = user.split("@")
        return os.path.join(self.data, domain, local, "Maildir")

    def start(self, extra_env=None):
        """Run the host and learn its listeners' addresses. A restart
        reuses the data directory and writes a fresh log."""
        self.starts = getattr(self, "starts", 0) + 1
        self.log_path = os.path.join(self.work, f"host-{self.starts}.log")
        env = dict(os.environ, RUST_LOG="warn,mailhost::server=info",
                   NO_COLOR="1")
        env.update(extra_env or {})
        with open(self.log_path, "wb") as log_file:
            self.proc = subprocess.Popen(
                [self.binary, "run", "--config", self.config],
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                env=env, cwd=self.work)

        self.addrs = {}
        deadline = time.monotonic() + STARTUP_WAIT
        while time.monotonic() < deadline:
            with open(self.log_path, errors="replace") as text:
                log_text = text.read()
            if "mailhost ready" in log_text:
                for line in log_text.splitlines():
                    found = LISTENING.search(line)
                    if found:
                        host, port = found.group(2).rsplit(":", 1)
                        self.addrs[found.group(1)] = (host, int(port))
                break
            if self.proc.poll() is not None:
                fail(f"the host exited before it was ready:\n{log_text}")
            time.sleep(0.05)
        else:
            fail("the host was not ready within "
                 f"{STARTUP_WAIT}s:\n{self.tail()}")
        for name in ("smtp", "pop3", "imap"):
            if name not in self.addrs:
                fail(f"no `listening` line for `{name}`:\n{self.tail()}")

    def tail(self, lines=20):
        with open(self.log_path, errors="replace") as text:
            return "\n".join(text.read().splitlines()[-lines:])

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        fail("no VmRSS in the host's /proc status")

    def open_fds(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def stop(self):
        # Only the process this script started, by its handle.
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --- a small line client --------------------------------------------------


class Wire:
    """A socket with a read buffer, for timing POP3 and IMAP replies."""

    def __init__(self, addr):
        self.sock = socket.create_connection(addr, timeout=IO_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, line):
        self.sock.sendall(line.encode() + b"\r\n")

    def _fill(self):
        chunk = self.sock.recv(READ_CHUNK)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buf += chunk

    def line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def until(self, pattern):
        """Everything up to and including the first match of `pattern`
        (a compiled bytes regex)."""
        start = 0
        while True:
            found = pattern.search(self.buf, start)
            if found:
                data, self.buf = self.buf[:found.end()], self.buf[found.end():]
                return data
            # A match may straddle two reads: look back a little.
            start = max(0, len(self.buf) - 64)
            self._fill()

    def close(self):
        self.sock.close()


POP3_END = re.compile(rb"(?:^|\r\n)\.\r\n")


def pop3_command(wire, command, multiline=False):
    """Send one POP3 command; the status line and, for a multi-line
    reply, the rest up to its terminating dot."""
    wire.send(command)
    status = wire.line()
    if not status.startswith(b"+OK"):
        raise RuntimeError(f"POP3 {command.split()[0]}: {status!r}")
    if not multiline:
        return status, b""
    return status, wire.until(POP3_END)


def pop3_login(addr, user):
    """A logged-in POP3 session and the seconds USER+PASS took. A
    maildrop still held by the session just closed is retried."""
    for _ in range(50):
        wire = Wire(addr)
        wire.line()
        started = time.perf_counter()
        pop3_command(wire, f"USER {user}")
        wire.send(f"PASS {PASSWORD}")
        status = wire.line()
        took = time.perf_counter() - started
        if status.startswith(b"+OK"):
            return wire, took
        wire.close()
        if b"IN-USE" not in status:
            raise RuntimeError(f"POP3 PASS: {status!r}")
        time.sleep(0.05)
    raise RuntimeError("POP3 maildrop stayed in use")


def pop3_quit(wire):
    pop3_command(wire, "QUIT")
    wire.close()


def imap_command(wire, tag, command):
    """Send one tagged IMAP command; its whole reply, tagged line last."""
    wire.send(f"{tag} {command}")
    pattern = re.compile(rb"(?:^|\r\n)" + tag.encode()
                         + rb" (OK|NO|BAD)[^\r\n]*\r\n")
    reply = wire.until(pattern)
    if pattern.search(reply).group(1) != b"OK":
        raise RuntimeError(f"IMAP {command.split()[0]}: "
                           f"{reply[-200:]!r}")
    return reply


def imap_login(addr, user):
    wire = Wire(addr)
    greeting = wire.line()
    if not greeting.startswith(b"* OK"):
        raise RuntimeError(f"IMAP greeting: {greeting!r}")
    imap_command(wire, "a", f"LOGIN {user} {PASSWORD}")
    return wire


# --- filling Maildirs -----------------------------------------------------


def message(size, number, subject):
    """A CRLF message of `size` bytes, 76-column body lines."""
    head = (f"From: bench@example.net\r\nTo: {POP3_USER}\r\n"
            f"Subject: {subject} {number}\r\n"
            f"Message-ID: <{subject}-{number}@example.net>\r\n"
            f"Date: Thu, 03 Dec 2026 12:00:00 +0000\r\n\r\n").encode()
    line = b"x" * 74 + b"\r\n"
    body = line * ((size - len(head)) // len(line) + 1)
    return head + body[:size - len(head) - 2] + b"\r\n"


def fill(maildir, count, size, tag):
    """Write `count` messages into `new/` as a local MDA would: each in
    `tmp/`, then renamed (no fsync: this is set-up, not a figure).
    Names follow the common `<time>.M<usec>P<pid>Q<n>.<host>` pattern
    with Dovecot's `,S=` and `,W=` sizes."""
    tmp = os.path.join(maildir, "tmp")
    new = os.path.join(maildir, "new")
    if not os.path.isdir(new):
        fail(f"no Maildir at `{maildir}`: the store did not create it")
    stamp = int(time.time())
    pid = os.getpid()
    for number in range(count):
        data = message(size, number, tag)
        name = (f"{stamp}.M{number}P{pid}Q{number}.bench,"
                f"S={len(data)},W={len(data)}")
        path = os.path.join(tmp, name)
        with open(path, "wb") as out:
            out.write(data)
        os.rename(path, os.path.join(new, name))


def timed_fill(maildir, count, size, tag):
    started = time.perf_counter()
    fill(maildir, count, size, tag)
    took = time.perf_counter() - started
    log(f"  filled {count} messages of {size} B in {fmt(took)}s")


# --- SMTP (issue 5) -----------------------------------------------------


def smtp_round(addr, seconds, payload):
    """Messages accepted by 16 concurrent sessions in `seconds`, and the
    rate. Each session sends SMTP_PER_CONNECTION transactions, then
    reconnects."""
    deadline = time.monotonic() + seconds
    counts = [0] * SMTP_CLIENTS
    errors = []

    def client(index):
        try:
            while time.monotonic() < deadline:
                with smtplib.SMTP(addr[0], addr[1],
                                  timeout=IO_TIMEOUT) as smtp:
                    smtp.ehlo("bench.example.net")
                    for _ in range(SMTP_PER_CONNECTION):
                        if time.monotonic() >= deadline:
                            break
                        refused = smtp.sendmail(
                            "bench@example.net", [SMTP_USER], payload)
                        if refused:
                            raise RuntimeError(f"refused: {refused}")
                        counts[index] += 1
        except Exception as err:  # reported once the round ends
            errors.append(err)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,))
               for i in range(SMTP_CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    took = time.perf_counter() - started
    if errors:
        fail(f"SMTP client failed: {errors[0]!r}")
    return sum(counts), sum(counts) / took


def raw_round(directory, seconds, payload, first):
    """Durable 10 KB Maildir-style writes by one writer in `seconds`:
    write, fsync, rename into new/, fsync of new/."""
    tmp = os.path.join(directory, "tmp")
    new = os.path.join(directory, "new")
    dir_fd = os.open(new, os.O_RDONLY | os.O_DIRECTORY)
    count = 0
    started = time.perf_counter()
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            name = f"raw.{first + count}"
            path = os.path.join(tmp, name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, payload)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(path, os.path.join(new, name))
            os.fsync(dir_fd)
            count += 1
    finally:
        os.close(dir_fd)
    took = time.perf_counter() - started
    return count, count / took


def count_messages(maildir):
    return sum(len(os.listdir(os.path.join(maildir, sub)))
               for sub in ("new", "cur"))


def bench_smtp(host, cfg, results):
    log(f"bench: SMTP reception, {SMTP_CLIENTS} sessions, "
        f"{SMTP_MESSAGE_SIZE} B messages, {SMTP_PER_CONNECTION} per "
        f"connection, {ROUNDS} alternating rounds of "
        f"{cfg['SMTP_SECONDS']}s beside a raw durable-write loop")
    payload = message(SMTP_MESSAGE_SIZE, 0, "smtp")
    addr = host.addrs["smtp"]
    raw_dir = os.path.join(host.work, "raw")
    for sub in ("tmp", "new"):
        os.makedirs(os.path.join(raw_dir, sub))

    sent, _ = smtp_round(addr, WARMUP_SECONDS, payload)
    written, _ = raw_round(raw_dir, WARMUP_SECONDS, payload, 0)
    smtp_rates, raw_rates = [], []
    for round_no in range(1, ROUNDS + 1):
        count, rate = smtp_round(addr, cfg["SMTP_SECONDS"], payload)
        sent += count
        smtp_rates.append(rate)
        count, raw = raw_round(raw_dir, cfg["SMTP_SECONDS"], payload,
                               written)
        written += count
        raw_rates.append(raw)
        log(f"  round {round_no}: smtp={fmt(rate)} msg/s "
            f"raw={fmt(raw)} files/s ratio={fmt(rate / raw, 2)}")

    # Every accepted message must be a file in the Maildir: a 250 for a
    # message that is not there would make the rate a lie.
    stored = count_messages(host.maildir(SMTP_USER))
    if stored != sent:
        fail(f"SMTP accepted {sent} messages but {stored} are stored")
    log(f"  verified: {stored} accepted messages are files in the Maildir")
    smtp_m, raw_m = median(smtp_rates), median(raw_rates)
    results["smtp"] = (smtp_m, raw_m, smtp_m / raw_m)


# --- POP3 (issue 6) -----------------------------------------------------


def bench_pop3(host, cfg, results):
    count = cfg["POP3_MESSAGES"]
    addr = host.addrs["pop3"]
    log(f"bench: POP3, {count}-message maildrop of "
        f"{POP3_MESSAGE_SIZE} B messages, {ROUNDS} rounds")

    # The first login creates the Maildir; then an MDA fills it.
    wire, _ = pop3_login(addr, POP3_USER)
    pop3_quit(wire)
    timed_fill(host.maildir(POP3_USER), count, POP3_MESSAGE_SIZE, "pop3")

    # The first session after the fill moves new/ to cur/ and numbers
    # every message: one measurement, it happens once.
    wire, first_login = pop3_login(addr, POP3_USER)
    pop3_quit(wire)
    log(f"  first login after the fill (opens {count} new messages): "
        f"{fmt(first_login * 1000)} ms")

    # Cross-check with poplib that the maildrop holds what was written.
    pop = poplib.POP3(*addr, timeout=IO_TIMEOUT)
    pop.user(POP3_USER)
    pop.pass_(PASSWORD)
    messages, size = pop.stat()
    pop.quit()
    if messages != count:
        fail(f"POP3 STAT says {messages} messages, {count} were written")
    log(f"  verified with poplib: STAT {messages} {size}")

    figures = {key: [] for key in
               ("login", "stat_first", "stat", "list_first", "list",
                "retr")}
    for round_no in range(1, ROUNDS + 1):
        for verb, multiline in (("STAT", False), ("LIST", True)):
            wire, login = pop3_login(addr, POP3_USER)
            figures["login"].append(login * 1000)
            times = []
            for _ in range(1 + POP3_REPEATS):
                started = time.perf_counter()
                _, body = pop3_command(wire, verb, multiline)
                times.append((time.perf_counter() - started) * 1000)
            lines = body.count(b"\r\n") - 1
            if multiline and lines != count:
                fail(f"LIST gave {lines} lines, not {count}")
            pop3_quit(wire)
            key = verb.lower()
            figures[key + "_first"].append(times[0])
            figures[key].append(median(times[1:]))

        # RETR a different run of messages each round, one at a time.
        wire, _ = pop3_login(addr, POP3_USER)
        per_round = min(cfg["POP3_RETR_PER_ROUND"], count)
        first = (round_no - 1) * per_round % count
        octets = 0
        started = time.perf_counter()
        for index in range(per_round):
            number = (first + index) % count + 1
            _, body = pop3_command(wire, f"RETR {number}", True)
            octets += len(body)
        took = time.perf_counter() - started
        pop3_quit(wire)
        figures["retr"].append(octets / took / 1e6)

        log(f"  round {round_no}: login={fmt(figures['login'][-1], 2)}ms "
            f"stat_first={fmt(figures['stat_first'][-1], 2)}ms "
            f"stat={fmt(figures['stat'][-1], 2)}ms "
            f"list_first={fmt(figures['list_first'][-1], 2)}ms "
            f"list={fmt(figures['list'][-1], 2)}ms "
            f"retr={fmt(figures['retr'][-1], 1)}MB/s "
            f"({per_round} messages, {octets} B)")

    results["pop3"] = {key: median(values) for key, values in
                       figures.items()}
    results["pop3"]["first_open"] = first_login * 1000
    results["pop3"]["count"] = count


# --- IMAP (issue 7) ------------------------------------------------------


EXISTS = re.compile(rb"\* (\d+) EXISTS")


def imap_open(addr, user, count):
    """One session: SELECT and FETCH times in ms, with the reply checked
    against the folder's size."""
    wire = imap_login(addr, user)
    started = time.perf_counter()
    reply = imap_command(wire, "s", "SELECT INBOX")
    select = time.perf_counter() - started
    exists = EXISTS.search(reply)
    if not exists or int(exists.group(1)) != count:
        fail(f"SELECT of {user} did not say {count} EXISTS: {reply[:300]!r}")

    started = time.perf_counter()
    reply = imap_command(wire, "f", "FETCH 1:* (UID FLAGS RFC822.SIZE)")
    fetch = time.perf_counter() - started
    lines = reply.count(b" FETCH (")
    if lines != count:
        fail(f"FETCH 1:* gave {lines} lines, not {count}")
    imap_command(wire, "z", "LOGOUT")
    wire.close()
    return select * 1000, fetch * 1000


def bench_imap(host, cfg, results):
    addr = host.addrs["imap"]
    results["imap"] = []
    for user, count in zip(IMAP_USERS, cfg["IMAP_FOLDERS"]):
        log(f"bench: IMAP, {count}-message INBOX of {IMAP_MESSAGE_SIZE} B "
            f"messages, {ROUNDS} warm rounds")
        wire = imap_login(addr, user)
        imap_command(wire, "z", "LOGOUT")
        wire.close()
        timed_fill(host.maildir(user), count, IMAP_MESSAGE_SIZE, "imap")

        first_select, first_fetch = imap_open(addr, user, count)
        log(f"  first open: select={fmt(first_select)}ms "
            f"fetch={fmt(first_fetch)}ms")

        # imaplib agrees on the count (a second client's view).
        client = imaplib.IMAP4(*addr, timeout=IO_TIMEOUT)
        client.login(user, PASSWORD)
        status, data = client.select("INBOX", readonly=True)
        client.logout()
        if status != "OK" or int(data[0]) != count:
            fail(f"imaplib SELECT says {data!r}, {count} were written")
        log(f"  verified with imaplib: {int(data[0])} EXISTS")

        selects, fetches = [], []
        for round_no in range(1, ROUNDS + 1):
            select, fetch = imap_open(addr, user, count)
            selects.append(select)
            fetches.append(fetch)
            log(f"  round {round_no}: select={fmt(select, 2)}ms "
                f"fetch={fmt(fetch)}ms")
        results["imap"].append((count, first_select, first_fetch,
                                median(selects), median(fetches)))


def open_idle(addr, count):
    """`count` IMAP sessions, each logged in, INBOX selected and in IDLE."""
    wires, errors = [], []
    lock = threading.Lock()
    todo = iter(range(count))

    def opener():
        while True:
            with lock:
                if next(todo, None) is None or errors:
                    return
            try:
                wire = imap_login(addr, IDLE_USER)
                imap_command(wire, "s", "SELECT INBOX")
                wire.send("i IDLE")
                answer = wire.line()
                if not answer.startswith(b"+"):
                    raise RuntimeError(f"IDLE: {answer!r}")
                with lock:
                    wires.append(wire)
            except Exception as err:
                with lock:
                    errors.append(err)

    threads = [threading.Thread(target=opener) for _ in range(IDLE_OPENERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        for wire in wires:
            wire.close()
        fail(f"opening IDLE connections failed: {errors[0]!r}")
    return wires


def close_idle(host, wires, base_fds):
    """Close held sessions and wait until the host has dropped them."""
    for wire in wires:
        wire.close()
    deadline = time.monotonic() + IDLE_DRAIN_WAIT
    while host.open_fds() > base_fds and time.monotonic() < deadline:
        time.sleep(0.1)


def bench_idle(host, cfg, results):
    """Each round on a freshly started host: a host that served sessions
    before keeps their pool slots' pages resident, so a second batch on
    the same host would reuse them and look almost free."""
    count = cfg["IDLE_CONNECTIONS"]
    log(f"bench: IMAP IDLE memory, {count} connections held, "
        f"{ROUNDS} rounds on a fresh host each, RSS from /proc/PID/status")
    wire = imap_login(host.addrs["imap"], IDLE_USER)
    imap_command(wire, "z", "LOGOUT")
    wire.close()
    fill(host.maildir(IDLE_USER), IDLE_MESSAGES, IMAP_MESSAGE_SIZE, "idle")

    per_connection = []
    for round_no in range(1, ROUNDS + 1):
        host.stop()
        host.start(IDLE_HOST_ENV)
        addr = host.addrs["imap"]
        base_fds = host.open_fds()

        # Unmeasured logins first: each password check allocates a large
        # hashing buffer whose arena the allocator keeps, and that must
        # land in the "before" figure, not in the connections'.
        close_idle(host, open_idle(addr, IDLE_WARMUP), base_fds)
        time.sleep(IDLE_SETTLE)
        before = host.rss_kib()

        started = time.perf_counter()
        wires = open_idle(addr, count)
        opened = time.perf_counter() - started
        time.sleep(IDLE_SETTLE)
        held = host.rss_kib()
        close_idle(host, wires, base_fds)
        after = host.rss_kib()

        kib = (held - before) / count
        per_connection.append(kib)
        log(f"  round {round_no}: rss_before={before}KiB "
            f"rss_with={held}KiB rss_after_close={after}KiB "
            f"connections={count} per_connection={fmt(kib)}KiB "
            f"(opened in {fmt(opened)}s)")
    results["idle"] = (count, median(per_connection))


def print_summary(results, seconds):
    log("")
    log(f"bench: summary (medians of {ROUNDS} rounds; first opens are "
        f"one measurement), {fmt(seconds)}s in all")
    row = "  {:<52} {:>12}"
    if "smtp" in results:
        smtp_m, raw_m, ratio = results["smtp"]
        log(row.format("SMTP msg/s, 10 KB, 16 sessions", fmt(smtp_m)))
        log(row.format("raw durable writes/s, 10 KB, 1 writer", fmt(raw_m)))
        log(row.format("SMTP / raw", fmt(ratio, 2)))
    if "pop3" in results:
        pop = results["pop3"]
        n = pop["count"]
        log(row.format(f"POP3 first login after fill, {n} msgs (ms)",
                       fmt(pop["first_open"])))
        log(row.format(f"POP3 USER+PASS, {n} msgs (ms)",
                       fmt(pop["login"], 2)))
        log(row.format("POP3 STAT, first after login (ms)",
                       fmt(pop["stat_first"], 2)))
        log(row.format("POP3 STAT, repeated (ms)", fmt(pop["stat"], 2)))
        log(row.format("POP3 LIST, first after login (ms)",
                       fmt(pop["list_first"], 2)))
        log(row.format("POP3 LIST, repeated (ms)", fmt(pop["list"], 2)))
        log(row.format("POP3 RETR MB/s, 10 KB messages", fmt(pop["retr"])))
    for count, f_sel, f_fetch, sel, fetch in results["imap"]:
        log(row.format(f"IMAP SELECT {count}, first open (ms)", fmt(f_sel)))
        log(row.format(f"IMAP FETCH 1:* {count}, first open (ms)",
                       fmt(f_fetch)))
        log(row.format(f"IMAP SELECT {count}, warm (ms)", fmt(sel, 2)))
        log(row.format(f"IMAP FETCH 1:* {count}, warm (ms)", fmt(fetch)))
    count, kib = results["idle"]
    log(row.format(f"KiB per IDLE connection ({count} held)", fmt(kib)))


# --- the run ---------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bin", help="the mailhost binary")
    parser.add_argument("--plugins", default=PLUGIN_DIR,
                        help="directory of mailhost_{smtp,pop3,imap}.wasm")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, for a smoke test of the script")
    parser.add_argument("--only-imap", action="store_true",
                        help="skip SMTP and POP3: IMAP folders and IDLE")
    args = parser.parse_args()

    cfg = {
        "SMTP_SECONDS": SMTP_SECONDS,
        "POP3_MESSAGES": POP3_MESSAGES,
        "POP3_RETR_PER_ROUND": POP3_RETR_PER_ROUND,
        "IMAP_FOLDERS": IMAP_FOLDERS,
        "IDLE_CONNECTIONS": IDLE_CONNECTIONS,
    }
    if args.quick:
        cfg.update(QUICK)

    binary = args.bin or next(
        (path for path in HOST_CANDIDATES if os.access(path, os.X_OK)),
        None)
    if not binary or not os.access(binary, os.X_OK):
        fail("no host binary; pass --bin")
    binary = os.path.abspath(binary)
    plugins = os.path.abspath(args.plugins)

    # The host inherits this limit: it keeps one descriptor per held
    # IDLE connection, and so does this script.
    need = cfg["IDLE_CONNECTIONS"] + FD_SLACK
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        fail(f"the hard descriptor limit is {hard}; {need} are needed")
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))

    mem_gib = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    log(f"bench: machine: {os.cpu_count()} cores, {fmt(mem_gib)} GiB, "
        f"{' '.join(os.uname()[i] for i in (0, 2))}; client and host "
        f"share the cores")
    log(f"bench: host `{binary}`, plugins `{plugins}`"
        + (" (quick)" if args.quick else ""))

    work = tempfile.mkdtemp(prefix="mailhost-protobench.")
    host = Host(binary, plugins, work, need)
    started = time.monotonic()
    try:
        for user in (SMTP_USER, POP3_USER, IDLE_USER) + IMAP_USERS:
            host.add_user(user)
        host.start()
        results = {}
        if not args.only_imap:
            bench_smtp(host, cfg, results)
            bench_pop3(host, cfg, results)
        bench_imap(host, cfg, results)
        bench_idle(host, cfg, results)
        host.stop()
        print_summary(results, time.monotonic() - started)
    except BaseException:
        if host.proc:
            print(f"protocols: the host's log ends:\n{host.tail()}",
                  file=sys.stderr)
        raise
    finally:
        host.stop()
        # Deleting 100,000+ files takes a while on a disk that discards.
        log(f"bench: removing `{work}`")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
