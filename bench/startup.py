#!/usr/bin/env python3
"""Time from `mailhost run` to serving, with the SMTP, POP3 and IMAP
plugins on one listener each, loopback only.

Two moments are timed from just before the process is spawned:

- ports: every listener's port has accepted a TCP connection (polled
  every millisecond, each port until it accepts);
- ready: the `mailhost ready` log line was read from stderr. The host logs
  it after every socket is bound and before it handles signals.

Cold runs empty `<data-dir>/plugin-cache` first, so every plugin is
compiled; warm runs reuse what the previous run cached. Each figure is the
median of `--runs` runs, with the fastest and slowest beside it.
"""

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

PROTOCOLS = [
    # name, protocol, role, plugin file, settings
    ("smtp", "smtp", "submission", "mailhost_smtp.wasm",
     'mode = "reception"\nhostname = "localhost"\n'),
    ("pop3", "pop3", "mailbox", "mailhost_pop3.wasm", ""),
    ("imap", "imap", "mailbox", "mailhost_imap.wasm", ""),
]

# Longest one start may take before the run is abandoned, in seconds.
START_TIMEOUT = 60.0

# Longest a stopped host may take to exit, in seconds.
STOP_TIMEOUT = 10.0

# Pause between two connection attempts on a port, in seconds.
POLL_INTERVAL = 0.001


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_config(workdir, plugins, ports):
    users = os.path.join(workdir, "users")
    with open(users, "w") as out:
        out.write("# no accounts: the benchmark only times the start\n")

    parts = [
        'data-dir = "data"\n',
        "[limits]\nmax-connections = 1024\n",
        '[accounts]\nusers-file = "users"\ndomains = ["example.org"]\n',
    ]
    for (name, protocol, role, wasm, settings), port in zip(PROTOCOLS, ports):
        parts.append(
            f'[[listener]]\nname = "{name}"\n'
            f'address = "127.0.0.1:{port}"\n'
            f'protocol = "{protocol}"\nrole = "{role}"\n'
            f'plugin = "{os.path.join(plugins, wasm)}"\n'
            f"[listener.settings]\n{settings}"
        )
    path = os.path.join(workdir, "mailhost.toml")
    with open(path, "w") as out:
        out.write("\n".join(parts))
    return path


def accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def one_start(binary, config, ports):
    """Start the host, time ports and ready, stop it. Seconds."""
    ready = {}
    env = dict(os.environ, RUST_LOG="info", NO_COLOR="1")

    started = time.perf_counter()
    child = subprocess.Popen(
        [binary, "run", "--config", config],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )

    def read_log():
        for line in child.stderr:
            if b"mailhost ready" in line and "at" not in ready:
                ready["at"] = time.perf_counter()

    reader = threading.Thread(target=read_log, daemon=True)
    reader.start()

    try:
        waiting = list(ports)
        while waiting:
            if time.perf_counter() - started > START_TIMEOUT:
                raise RuntimeError(f"ports {waiting} never accepted")
            if child.poll() is not None:
                raise RuntimeError(f"host exited with {child.returncode}")
            if accepts(waiting[0]):
                waiting.pop(0)
            else:
                time.sleep(POLL_INTERVAL)
        all_ports = time.perf_counter()

        while "at" not in ready:
            if time.perf_counter() - started > START_TIMEOUT:
                raise RuntimeError("no `mailhost ready` line")
            time.sleep(POLL_INTERVAL)
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        reader.join(timeout=STOP_TIMEOUT)

    return all_ports - started, ready["at"] - started


def summary(label, times):
    ms = [t * 1000 for t in times]
    return (
        f"{label:<12} median {statistics.median(ms):7.1f} ms"
        f"  min {min(ms):7.1f}  max {max(ms):7.1f}  (n={len(ms)})"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", default="target/release/mailhost")
    parser.add_argument("--plugins", default="target/wasm32-wasip2/release")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    binary = os.path.abspath(args.bin)
    plugins = os.path.abspath(args.plugins)
    with tempfile.TemporaryDirectory(prefix="mailhost-startup-") as workdir:
        ports = [free_port() for _ in PROTOCOLS]
        config = write_config(workdir, plugins, ports)
        cache = os.path.join(workdir, "data", "plugin-cache")

        results = {}
        for kind in ("cold", "warm"):
            if kind == "warm":
                # Fill the cache once; the warm runs then all read it.
                one_start(binary, config, ports)
            port_times, ready_times = [], []
            for _ in range(args.runs):
                if kind == "cold":
                    shutil.rmtree(cache, ignore_errors=True)
                at_ports, at_ready = one_start(binary, config, ports)
                port_times.append(at_ports)
                ready_times.append(at_ready)
            results[kind] = (port_times, ready_times)

    print(f"start to serving, 3 listeners (smtp, pop3, imap), {binary}")
    for kind, (port_times, ready_times) in results.items():
        print(summary(f"{kind} ports", port_times))
        print(summary(f"{kind} ready", ready_times))
    return 0


if __name__ == "__main__":
    sys.exit(main())
