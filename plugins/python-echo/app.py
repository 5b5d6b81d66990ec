"""A line protocol in Python, built into a component by componentize-py
against the same WIT as the Rust plugins (world `session`).

Protocol: the plugin greets with `+OK <greeting> (python)`, then answers
one line at a time:

- `ECHO <text>`: `+OK <text>`
- `REVERSE <text>`: `+OK <text reversed>`
- `INFO`: `+OK listener=<name> peer=<address> tls=<yes|no>`
- `SETTINGS`: one `* <key>=<value>` line per setting, then `+OK`
- `QUIT`: `+OK bye`, and the session ends

Anything else is `-ERR unknown command`; a line over `max-line` bytes
is `-ERR line too long`. On an idle timeout, shutdown or expiry the
plugin says why and returns.

Settings: `greeting` (default `python echo ready`), `max-line` (bytes,
default 1024).
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import connection, log, settings

# Longest command line read by default, in bytes, terminator included.
DEFAULT_MAX_LINE = 1024

# What the plugin says before returning when the host ends a wait.
GOODBYES = {
    connection.IoError.TIMEOUT: b"-ERR idle timeout, closing\r\n",
    connection.IoError.SHUTTING_DOWN: b"-ERR server shutting down\r\n",
    connection.IoError.SESSION_EXPIRED: b"-ERR session too long\r\n",
}


def setting_int(key: str, default: int) -> int:
    """A numeric setting, or the default when unset or not a number."""
    value = settings.get(key)
    if value is None or not value.isdigit():
        return default
    return int(value)


class Handler(exports.Handler):
    def run(self, conn: connection.Connection) -> None:
        greeting = settings.get("greeting") or "python echo ready"
        max_line = setting_int("max-line", DEFAULT_MAX_LINE)
        try:
            conn.write(f"+OK {greeting} (python)\r\n".encode())
            serve(conn, max_line)
        except Err as err:
            # A read or write the host ended: closed, timed out, shutting
            # down. Say why where the connection can still take it.
            goodbye = GOODBYES.get(err.value)
            if goodbye is not None:
                try:
                    conn.write(goodbye)
                except Err:
                    pass


def serve(conn: connection.Connection, max_line: int) -> None:
    while True:
        raw = conn.read_line(max_line)
        if not raw.endswith(b"\n"):
            # Cut at the limit: skip the rest of the line, then refuse it.
            while not raw.endswith(b"\n"):
                raw = conn.read_line(max_line)
            conn.write(b"-ERR line too long\r\n")
            continue

        text = raw.rstrip(b"\r\n").decode("utf-8", errors="replace")
        verb, _, argument = text.partition(" ")
        reply = answer(conn, verb.upper(), argument)
        if reply is None:
            conn.write(b"+OK bye\r\n")
            return
        conn.write(reply)


def answer(conn: connection.Connection, verb: str, argument: str):
    """The reply to one command, or None for QUIT."""
    if verb == "QUIT":
        return None
    if verb == "ECHO":
        return f"+OK {argument}\r\n".encode()
    if verb == "REVERSE":
        return f"+OK {argument[::-1]}\r\n".encode()
    if verb == "INFO":
        info = conn.info()
        tls = "yes" if info.tls is not None else "no"
        return (
            f"+OK listener={info.listener} peer={info.peer_address} "
            f"tls={tls}\r\n"
        ).encode()
    if verb == "SETTINGS":
        lines = [f"* {key}={value}\r\n" for key, value in settings.all()]
        return ("".join(sorted(lines)) + "+OK\r\n").encode()
    log.write(log.Level.DEBUG, f"unknown command {verb!r}")
    return b"-ERR unknown command\r\n"
