"""Test harness for Postern's end-to-end tests.

Everything here drives the real binary over real sockets:

* `Server` starts `postern serve` on ephemeral loopback ports with its own
  temporary data dir and config, and runs the admin CLI against the same
  config.
* `Imap` is a small IMAP client that keeps the server's exact bytes (imaplib
  hides most of them), parses responses into Python values, and speaks
  literals, LITERAL+, literal8 and IDLE. Tests that only need a working
  session use imaplib through `Server.imap()`.
* `Lmtp` is a small LMTP client that, unlike smtplib, reads one DATA reply per
  accepted recipient (RFC 2033) and can pipeline.
* `Server.http()` sends one HTTP request to the `[http]` listener (status
  page, admin API, metrics) and returns status, headers and body whatever
  the status code.

Synchronisation between client actions goes through the protocol (IDLE
responses, NOOP, tagged completions), never through sleeping; the only polling
is the bounded wait for a process to start or stop.

Only the Python standard library is used.
"""

from __future__ import annotations

import sys

if sys.version_info < (3, 11):
    raise SystemExit("the Postern end-to-end tests need Python 3.11 or later (tomllib)")

import atexit
import base64
import imaplib
import json
import os
import queue
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

HERE = Path(__file__).resolve().parent
DATA_DIR = HERE.parent / "data"

POSTERN_BIN = os.environ.get("POSTERN_BIN", "/work/target/debug/postern")

# Bounds on waiting, so a hung server fails a test instead of hanging it.
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
SOCKET_TIMEOUT_S = 30.0
CLI_TIMEOUT_S = 60.0

HOSTNAME = "mx.test.example"
# Domain given to bare user names when they are used as LMTP recipients.
RCPT_DOMAIN = "deliver.test.example"

# Servers still running; killed at interpreter exit so a failing test never
# leaves a stray process behind.
_LIVE_SERVERS: "set[Server]" = set()


@atexit.register
def _kill_leftovers() -> None:
    for server in list(_LIVE_SERVERS):
        try:
            server.kill()
        except Exception:
            pass


def data_file(name: str) -> bytes:
    """The exact bytes of tests/data/NAME."""
    return (DATA_DIR / name).read_bytes()


def wait_until(predicate: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.02) -> Any:
    """Polls `predicate` until it returns a true value or `timeout_s` passes.

    Only for waiting on processes (start, exit, a file appearing); never use it
    to order client actions, which the protocol orders.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)


def rss_kb(pid: int) -> int:
    """Resident set size of process `pid`, in KiB, from /proc."""
    with open(f"/proc/{pid}/status", "r", encoding="ascii", errors="replace") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def unverified_tls_context() -> ssl.SSLContext:
    """A client context that accepts the server's self-signed certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


# --------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        # A JSON string is a valid TOML basic string for what we write.
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def render_config(top: dict, sections: dict) -> str:
    """A TOML document: top-level keys first, then one table per section.

    A section whose value is None is left out (its listener does not run).
    """
    lines = [f"{key} = {_toml_value(value)}" for key, value in top.items()]
    for name, keys in sections.items():
        if keys is None:
            continue
        lines.append("")
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in keys.items())
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------


class ServerError(AssertionError):
    """The server did not start, stop or answer as it must."""


_PG_DATABASES = iter(range(1, 1 << 30))


def _new_pg_database() -> str:
    """A new database on the cluster at POSTERN_E2E_PG; its DSN."""
    base = os.environ["POSTERN_E2E_PG"]
    name = f"e2e_{os.getpid()}_{next(_PG_DATABASES)}"
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "pg"))
    from cluster import bin_dir  # noqa: E402
    subprocess.run([os.path.join(bin_dir(), "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", base,
                    "-c", f'CREATE DATABASE "{name}"'], check=True, capture_output=True, timeout=60)
    return base.rsplit("/", 1)[0] + "/" + name


def embedded_only(why: str):
    """Skips a test (or a test class) on the PostgreSQL backend, saying why:
    it reads or damages the embedded store's files."""
    return unittest.skipIf(os.environ.get("POSTERN_E2E_BACKEND") == "postgres",
                           f"embedded store only: {why}")


class Server:
    """One `postern serve` process with its own data dir and config.

    Use as a context manager, or call `start()` and `stop()`. Sections default
    to all three listeners on port 0 with no per-address connection cap and a
    failed-login delay of 0 ms; pass
    `imap=None` (etc.) to leave a listener out, or a dict to add keys. The
    HTTP listener (status page, admin API, metrics) runs only when a test
    asks for it with `http={}` (or a dict of `[http]` keys).
    """

    def __init__(
        self,
        *,
        imap: dict | None = {},
        imaps: dict | None = {},
        lmtp: dict | None = {},
        http: dict | None = None,
        auth: dict | None = None,
        top: dict | None = None,
        extra_toml: str = "",
        open_files_max: int | None = None,
        backend: str | None = None,
    ) -> None:
        # The server's open-file limit (soft and hard), for tests of running
        # out of descriptors; None: inherited.
        self.open_files_max = open_files_max
        self.tmp = Path(tempfile.mkdtemp(prefix="postern-e2e-"))
        self.data_dir = self.tmp / "data"
        self.data_dir.mkdir(mode=0o700)
        self.config_path = self.tmp / "postern.toml"
        self.stderr_path = self.tmp / "stderr.log"
        top_keys = {"data_dir": str(self.data_dir), "hostname": HOSTNAME}
        top_keys.update(top or {})
        sections: dict[str, dict | None] = {}
        # Every test client connects from 127.0.0.1, so the per-address caps
        # (100 IMAP, 200 LMTP by default) are off unless a test sets them;
        # test_overload.py tests them.
        for name, keys, defaults in (
            ("imap", imap, {"listen": "127.0.0.1:0", "max_connections_per_ip": 0}),
            ("imaps", imaps, {"listen": "127.0.0.1:0"}),
            ("lmtp", lmtp, {"listen": "127.0.0.1:0", "max_connections_per_ip": 0}),
            ("http", http, {"listen": "127.0.0.1:0"}),
        ):
            sections[name] = None if keys is None else {**defaults, **keys}
        auth_keys = {"failure_delay_ms": 0}
        auth_keys.update(auth or {})
        sections["auth"] = auth_keys
        # With POSTERN_E2E_BACKEND=postgres (and POSTERN_E2E_PG, the DSN of a
        # running cluster), mail lives in a database of this server's own,
        # unless the test sets up its store itself.
        self.backend = "embedded"
        # A test that configures the store or replication itself tests the
        # embedded store, and keeps it.
        # backend="embedded" asks for the embedded store whatever the run.
        if (os.environ.get("POSTERN_E2E_BACKEND") == "postgres" and backend != "embedded"
                and "[store]" not in extra_toml and "[replication]" not in extra_toml):
            self.backend = "postgres"
            dsn = _new_pg_database()
            sections["store"] = {"backend": "postgres", "postgres": dsn}
            # The schema, made with a config of its own: the test's may be
            # bad on purpose.
            schema_config = self.tmp / "schema.toml"
            schema_config.write_text(render_config({"data_dir": str(self.tmp / "schema")},
                                                   {"store": {"backend": "postgres", "postgres": dsn}}),
                                     encoding="utf-8")
            migrate = subprocess.run([POSTERN_BIN, "--config", str(schema_config), "store", "migrate"],
                                     capture_output=True, timeout=CLI_TIMEOUT_S)
            if migrate.returncode != 0:
                raise ServerError(f"store migrate failed: {migrate.stderr.decode(errors='replace')}")
        self.config_text = render_config(top_keys, sections) + extra_toml
        self.config_path.write_text(self.config_text, encoding="utf-8")
        self.process: subprocess.Popen | None = None
        self._terminated = False
        self.ports: dict[str, int] = {}
        # Every "listening" line, in order: (service, host, port); `ports`
        # keeps the last port of each service.
        self.listening: list[tuple[str, str, int]] = []
        self._stdout_lines: "queue.Queue[str | None]" = queue.Queue()
        self._user_counter = 0
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if self.process is not None and self.process.poll() is None:
                if exc_type is None:
                    self.stop()
                else:
                    self.kill()
        finally:
            self.cleanup()

    def cleanup(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()
        if not os.environ.get("POSTERN_E2E_KEEP"):
            shutil.rmtree(self.tmp, ignore_errors=True)

    def start(self) -> "Server":
        """Starts `serve` and waits for `postern: ready` on stdout."""
        assert self.process is None or self.process.poll() is not None, "already running"
        self.ports = {}
        self.listening = []
        self._terminated = False
        self._stdout_lines = queue.Queue()
        stderr = open(self.stderr_path, "ab")
        try:
            limit = self.open_files_max

            def limit_open_files() -> None:
                if limit is not None:
                    import resource
                    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

            self.process = subprocess.Popen(
                [POSTERN_BIN, "--config", str(self.config_path), "serve"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                preexec_fn=limit_open_files if limit is not None else None,
            )
        finally:
            stderr.close()
        _LIVE_SERVERS.add(self)
        process = self.process
        lines = self._stdout_lines

        def pump() -> None:
            # Keeps reading after `ready` so the server never blocks on a
            # full stdout pipe.
            assert process.stdout is not None
            try:
                for raw in process.stdout:
                    lines.put(raw.decode("utf-8", "replace").rstrip("\r\n"))
            except (OSError, ValueError):
                pass
            finally:
                lines.put(None)
                process.stdout.close()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT_S
        seen: list[str] = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise ServerError(f"server not ready after {START_TIMEOUT_S}s; stdout={seen!r}\n{self.stderr_tail()}")
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                code = process.wait(timeout=STOP_TIMEOUT_S)
                raise ServerError(f"server exited with {code} before ready; stdout={seen!r}\n{self.stderr_tail()}")
            seen.append(line)
            m = re.fullmatch(r"postern: listening (imap|imaps|lmtp|smtp|http|replication) (\S+):(\d+)", line)
            if m:
                self.ports[m.group(1)] = int(m.group(3))
                self.listening.append((m.group(1), m.group(2), int(m.group(3))))
            elif line == "postern: ready" or line.startswith("postern: ready "):
                return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def imap_port(self) -> int:
        return self.ports["imap"]

    @property
    def imaps_port(self) -> int:
        return self.ports["imaps"]

    @property
    def lmtp_port(self) -> int:
        return self.ports["lmtp"]

    @property
    def smtp_port(self) -> int:
        if "smtp" not in self.ports:
            raise ServerError("no SMTP listener: give the server an [smtp] section (extra_toml) to get one")
        return self.ports["smtp"]

    @property
    def http_port(self) -> int:
        if "http" not in self.ports:
            raise ServerError("no HTTP listener: start the server with http={} to get one")
        return self.ports["http"]

    def http_url(self, path: str) -> str:
        """The URL of PATH (with its query) on the HTTP listener."""
        assert path.startswith("/"), path
        return f"http://127.0.0.1:{self.http_port}{path}"

    def sigterm(self) -> None:
        """Sends SIGTERM once, without waiting (see `stop`)."""
        assert self.process is not None
        if self.process.poll() is None and not self._terminated:
            self._terminated = True
            self.process.send_signal(signal.SIGTERM)

    def stop(self) -> int:
        """SIGTERM (unless already sent), wait, and require exit status 0."""
        assert self.process is not None
        self.sigterm()
        try:
            code = self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            raise ServerError(f"server did not exit within {STOP_TIMEOUT_S}s of SIGTERM\n{self.stderr_tail()}")
        _LIVE_SERVERS.discard(self)
        if code != 0:
            raise ServerError(f"server exited with {code} after SIGTERM, expected 0\n{self.stderr_tail()}")
        return code

    def kill(self) -> None:
        """SIGKILL: no chance to flush or clean up anything."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT_S)
        _LIVE_SERVERS.discard(self)

    def restart(self) -> "Server":
        """Stops (SIGTERM, exit 0 required) and starts again on the same data dir."""
        if self.process is not None and self.process.poll() is None:
            self.stop()
        return self.start()

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def stderr_tail(self, lines: int = 60) -> str:
        text = self.stderr_text().splitlines()[-lines:]
        return "--- server stderr (tail) ---\n" + "\n".join(text)

    # -- CLI ---------------------------------------------------------------

    def cli(self, *args: str, input: bytes | str | None = None, config: Path | None = None) -> subprocess.CompletedProcess:
        """Runs `postern --config FILE ARGS...`; stdin is `input` (or empty, never a terminal)."""
        if isinstance(input, str):
            input = input.encode("utf-8")
        return subprocess.run(
            [POSTERN_BIN, "--config", str(config or self.config_path), *args],
            input=input if input is not None else b"",
            capture_output=True,
            timeout=CLI_TIMEOUT_S,
        )

    def cli_ok(self, *args: str, input: bytes | str | None = None) -> subprocess.CompletedProcess:
        result = self.cli(*args, input=input)
        if result.returncode != 0:
            raise AssertionError(
                f"postern {' '.join(args)} exited {result.returncode}\n"
                f"stdout: {result.stdout.decode(errors='replace')}\n"
                f"stderr: {result.stderr.decode(errors='replace')}"
            )
        return result

    def add_user(self, name: str, password: str) -> None:
        self.cli_ok("user", "add", name, input=password + "\n")

    def new_user(self, prefix: str = "user") -> tuple[str, str]:
        """Adds a user with a unique name; returns (name, password)."""
        with self._lock:
            self._user_counter += 1
            n = self._user_counter
        name = f"{prefix}{n}"
        password = f"pw-{name}-S3cret!"
        self.add_user(name, password)
        return name, password

    # -- clients -----------------------------------------------------------

    def imap(self, user: str, password: str) -> imaplib.IMAP4:
        """A logged-in imaplib session on the plain IMAP port."""
        client = imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=SOCKET_TIMEOUT_S)
        client.login(user, password)
        return client

    def raw(self, user: str | None = None, password: str | None = None, *, tls: bool = False) -> "Imap":
        """An `Imap` client, logged in when `user` is given."""
        port = self.imaps_port if tls else self.imap_port
        client = Imap(port, tls=tls)
        if user is not None:
            assert password is not None
            client.login(user, password).ok()
        return client

    def lmtp(self) -> smtplib.LMTP:
        """A connected smtplib.LMTP (not yet greeted with LHLO)."""
        return smtplib.LMTP("127.0.0.1", self.lmtp_port, timeout=SOCKET_TIMEOUT_S)

    def lmtp_raw(self) -> "Lmtp":
        return Lmtp(self.lmtp_port)

    def deliver(self, rcpts: str | Iterable[str], data: bytes, sender: str = "sender@example.org") -> list[tuple[int, str]]:
        """Delivers over LMTP; returns the RCPT replies for refused recipients
        and the DATA replies for accepted ones, in recipient order.

        A bare user name gets a domain (an SMTP path needs one); LMTP maps
        user@any-domain to the user."""
        if isinstance(rcpts, str):
            rcpts = [rcpts]
        addresses = [r if "@" in r else f"{r}@{RCPT_DOMAIN}" for r in rcpts]
        with self.lmtp_raw() as client:
            client.lhlo()
            return client.transaction(sender, addresses, data).final

    def deliver_ok(self, rcpts: str | Iterable[str], data: bytes, sender: str = "sender@example.org") -> None:
        replies = self.deliver(rcpts, data, sender)
        bad = [r for r in replies if r[0] != 250]
        if bad:
            raise AssertionError(f"delivery refused: {replies}")

    def http(self, method: str, path: str, *, body: Any = None, token: str | None = None,
             headers: dict[str, str] | None = None) -> "HttpResponse":
        """One HTTP request to the `[http]` listener; see `http_request`."""
        return http_request(method, self.http_url(path), body=body, token=token, headers=headers)


# --------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------


@dataclass
class HttpResponse:
    """One HTTP response, whatever its status code."""

    status: int
    # Header names in lower case; a repeated header keeps its last value.
    headers: dict[str, str]
    body: bytes

    @property
    def media_type(self) -> str:
        """The Content-Type without parameters, in lower case ("" if none)."""
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError as error:
            raise AssertionError(f"not JSON ({error}): {self.body[:500]!r}") from None

    def __repr__(self) -> str:
        return f"HttpResponse({self.status}, {self.headers.get('content-type')!r}, {self.body[:300]!r})"


# No proxy from the environment: the tests talk to loopback only.
_HTTP_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_request(method: str, url: str, *, body: Any = None, token: str | None = None,
                 headers: dict[str, str] | None = None) -> HttpResponse:
    """Sends one request and returns the response, 4xx and 5xx included.

    `body`: bytes are sent as they are, anything else as JSON (with
    Content-Type application/json). `token` goes in `Authorization: Bearer`.
    Redirects are followed; the socket timeout bounds every wait.
    """
    data: bytes | None
    all_headers = {"Accept": "*/*"}
    if body is None:
        data = None
    elif isinstance(body, bytes):
        data = body
    else:
        data = json.dumps(body).encode("utf-8")
        all_headers["Content-Type"] = "application/json"
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    all_headers.update(headers or {})
    request = urllib.request.Request(url, data=data, headers=all_headers, method=method)
    try:
        with _HTTP_OPENER.open(request, timeout=SOCKET_TIMEOUT_S) as response:
            return HttpResponse(response.status, {k.lower(): v for k, v in response.headers.items()},
                                response.read())
    except urllib.error.HTTPError as error:
        with error:
            return HttpResponse(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())


# --------------------------------------------------------------------------
# IMAP response parsing
# --------------------------------------------------------------------------


class ParseError(ValueError):
    pass


def tokenize(data: bytes) -> list:
    """Parses IMAP response data into Python values.

    atom -> str (brackets kept whole: "BODY[HEADER.FIELDS (SUBJECT)]<0>"),
    quoted string / literal / literal8 -> bytes, NIL -> None,
    parenthesised list -> list.
    """
    pos = 0
    n = len(data)

    def parse_list(pos: int, closing: int | None) -> tuple[list, int]:
        items: list = []
        while True:
            while pos < n and data[pos] == 0x20:
                pos += 1
            if pos >= n or data[pos:pos + 2] == b"\r\n":
                if closing is not None:
                    raise ParseError(f"unterminated list in {data[:200]!r}")
                return items, pos
            c = data[pos]
            if c == 0x29:  # ')'
                if closing is None:
                    raise ParseError(f"unbalanced ')' in {data[:200]!r}")
                return items, pos + 1
            if c == 0x28:  # '('
                sub, pos = parse_list(pos + 1, 0x29)
                items.append(sub)
            elif c == 0x22:  # '"'
                pos += 1
                out = bytearray()
                while True:
                    if pos >= n:
                        raise ParseError("unterminated quoted string")
                    b = data[pos]
                    if b == 0x5C:
                        out.append(data[pos + 1])
                        pos += 2
                    elif b == 0x22:
                        pos += 1
                        break
                    else:
                        out.append(b)
                        pos += 1
                items.append(bytes(out))
            elif c == 0x7B or (c == 0x7E and data[pos + 1:pos + 2] == b"{"):  # '{' or '~{'
                m = re.compile(rb"~?\{(\d+)\}\r\n").match(data, pos)
                if not m:
                    raise ParseError(f"bad literal at {data[pos:pos + 20]!r}")
                size = int(m.group(1))
                start = m.end()
                items.append(bytes(data[start:start + size]))
                pos = start + size
            else:
                start = pos
                depth = 0
                while pos < n:
                    b = data[pos]
                    if b == 0x5B:
                        depth += 1
                    elif b == 0x5D:
                        depth -= 1
                    elif depth == 0 and b in (0x20, 0x28, 0x29, 0x0D):
                        break
                    pos += 1
                atom = data[start:pos].decode("utf-8", "surrogateescape")
                items.append(None if atom.upper() == "NIL" else atom)

    items, _ = parse_list(pos, None)
    return items


def text(value: Any) -> str:
    """A parsed atom or string as text (UTF-8)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    if value is None:
        raise AssertionError("expected a string, got NIL")
    return str(value)


def parse_sequence_set(value: str) -> list[int]:
    """Expands "1:3,7,9:8" into [1, 2, 3, 7, 8, 9] (sorted, unique)."""
    out: set[int] = set()
    for part in value.split(","):
        if ":" in part:
            a, b = (int(x) for x in part.split(":"))
            lo, hi = min(a, b), max(a, b)
            out.update(range(lo, hi + 1))
        else:
            out.add(int(part))
    return sorted(out)


def quote(value: str | bytes) -> str:
    """An IMAP quoted string (for ASCII and, with rev2/UTF8=ACCEPT, UTF-8)."""
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def mutf7_encode(name: str) -> str:
    """Modified UTF-7 mailbox name encoding (RFC 3501 5.1.3)."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            b64 = base64.b64encode("".join(pending).encode("utf-16-be")).decode("ascii")
            out.append("&" + b64.rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


@dataclass
class Response:
    """One server response: its bytes (literals inline) and parsed form."""

    raw: bytes

    @property
    def kind(self) -> str:
        """'*' for untagged, '+' for a continuation, else the tag."""
        return self.raw.split(b" ", 1)[0].rstrip(b"\r\n").decode("ascii", "replace")

    @property
    def line(self) -> str:
        return self.raw.decode("utf-8", "replace").rstrip("\r\n")

    @property
    def tokens(self) -> list:
        return tokenize(self.raw)

    @property
    def name(self) -> str:
        """Response name: "OK", "LIST", "FETCH", "EXISTS", ... (upper case)."""
        parts = self.raw.rstrip(b"\r\n").split(b" ", 3)
        if len(parts) >= 3 and parts[1].isdigit():
            return parts[2].decode("ascii", "replace").upper()
        if len(parts) >= 2:
            return parts[1].decode("ascii", "replace").upper()
        return ""

    @property
    def number(self) -> int | None:
        """The number in "* 5 EXISTS" / "* 5 FETCH ..."."""
        parts = self.raw.split(b" ", 2)
        if len(parts) >= 2 and parts[1].isdigit():
            return int(parts[1])
        return None

    @property
    def code(self) -> str | None:
        """For a status response (OK/NO/BAD/BYE/PREAUTH), the response code text inside [...]."""
        m = re.match(rb"\S+ (?:OK|NO|BAD|BYE|PREAUTH) \[([^\]]*(?:\[[^\]]*\][^\]]*)*)\]", self.raw, re.I)
        return m.group(1).decode("utf-8", "replace") if m else None

    def __repr__(self) -> str:
        shown = self.raw if len(self.raw) <= 300 else self.raw[:300] + b"..."
        return f"Response({shown!r})"


class ImapCommandError(AssertionError):
    pass


@dataclass
class Result:
    """What one command got back: untagged responses and the tagged completion."""

    tag: str
    command: bytes
    untagged: list[Response] = field(default_factory=list)
    tagged: Response | None = None
    continuations: list[Response] = field(default_factory=list)

    @property
    def status(self) -> str:
        assert self.tagged is not None
        parts = self.tagged.raw.split(b" ", 2)
        return parts[1].decode("ascii", "replace").upper() if len(parts) > 1 else ""

    @property
    def code(self) -> str | None:
        assert self.tagged is not None
        return self.tagged.code

    @property
    def code_name(self) -> str | None:
        code = self.code
        return code.split(" ", 1)[0].upper() if code else None

    def describe(self) -> str:
        shown = self.command if len(self.command) <= 300 else self.command[:300] + b"..."
        lines = [f"C: {shown!r}"]
        lines += [f"S: {r.raw[:300]!r}" for r in self.untagged]
        lines.append(f"S: {self.tagged.raw[:300] if self.tagged else None!r}")
        return "\n".join(lines)

    def ok(self) -> "Result":
        if self.status != "OK":
            raise ImapCommandError(f"expected tagged OK\n{self.describe()}")
        return self

    def expect(self, *statuses: str) -> "Result":
        if self.status not in statuses:
            raise ImapCommandError(f"expected tagged {'/'.join(statuses)}\n{self.describe()}")
        return self

    def named(self, name: str) -> list[Response]:
        return [r for r in self.untagged if r.name == name.upper()]

    def data(self, name: str) -> list[list]:
        """Tokens after "* NAME" for each untagged response of that name."""
        out = []
        for r in self.named(name):
            tokens = r.tokens
            if r.number is not None:
                out.append(tokens[3:])
            else:
                out.append(tokens[2:])
        return out

    def numbers(self, name: str) -> list[int]:
        """The numbers of "* N NAME" responses (EXISTS, EXPUNGE, FETCH)."""
        return [r.number for r in self.named(name) if r.number is not None]


@dataclass
class Lit:
    """A literal argument: {n} (synchronizing), {n+} (LITERAL+) or ~{n} (literal8)."""

    data: bytes
    plus: bool = False
    binary: bool = False

    def announce(self) -> bytes:
        prefix = b"~" if self.binary else b""
        return prefix + b"{%d%s}\r\n" % (len(self.data), b"+" if self.plus else b"")


class ConnectionClosed(AssertionError):
    pass


class Imap:
    """A minimal IMAP client that shows exactly what the server sends."""

    def __init__(self, port: int, *, tls: bool = False, host: str = "127.0.0.1", timeout: float = SOCKET_TIMEOUT_S) -> None:
        sock = socket.create_connection((host, port), timeout=timeout)
        # A literal and its closing CRLF go out in two writes; without this the
        # second waits for the first's ACK (Nagle), about 40 ms per APPEND.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls:
            sock = unverified_tls_context().wrap_socket(sock, server_hostname="localhost")
        self.sock = sock
        self.buffer = b""
        self.counter = 0
        self.closed = False
        # Until IMAP4rev2 or UTF8=ACCEPT is enabled, everything outside
        # literals must be 7-bit (RFC 3501 CHAR, TEXT-CHAR); checked on every
        # response read.
        self.utf8_enabled = False
        self.greeting = self.read_response()

    # -- plumbing ----------------------------------------------------------

    def __enter__(self) -> "Imap":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            self.closed = True
            raise ConnectionClosed(f"server closed the connection; unread: {self.buffer[:300]!r}")
        self.buffer += chunk

    def read_line(self) -> bytes:
        while True:
            idx = self.buffer.find(b"\r\n")
            if idx >= 0:
                line, self.buffer = self.buffer[:idx + 2], self.buffer[idx + 2:]
                return line
            self._fill()

    def read_exact(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_response(self, timeout: float | None = None) -> Response:
        """One whole response, literals included."""
        old = self.sock.gettimeout()
        if timeout is not None:
            self.sock.settimeout(timeout)
        try:
            parts = []
            while True:
                line = self.read_line()
                parts.append(line)
                if not self.utf8_enabled and any(b >= 0x80 for b in line):
                    raise AssertionError(
                        f"8-bit bytes outside a literal sent to an IMAP4rev1 client: {line[:300]!r}")
                m = re.search(rb"~?\{(\d+)\}\r\n$", line)
                if not m or line.startswith(b"+ "):
                    break
                parts.append(self.read_exact(int(m.group(1))))
            return Response(b"".join(parts))
        finally:
            if timeout is not None:
                self.sock.settimeout(old)

    def next_tag(self) -> str:
        self.counter += 1
        return f"T{self.counter:04d}"

    # -- commands ----------------------------------------------------------

    def command(self, *parts: str | bytes | Lit, tag: str | None = None) -> Result:
        """Sends TAG + parts + CRLF; a `Lit` part is announced, and (when
        synchronizing) sent only after the server's continuation request.
        Returns every response up to the tagged completion.
        """
        tag = tag or self.next_tag()
        result = Result(tag=tag, command=b"")
        pending = tag.encode() + b" "
        sent = b""
        for part in parts:
            if isinstance(part, Lit):
                pending += part.announce()
                self.send(pending)
                sent += pending
                pending = b""
                if not part.plus:
                    while True:
                        r = self.read_response()
                        if r.kind == "+":
                            result.continuations.append(r)
                            break
                        if r.kind == tag:
                            result.tagged = r
                            result.command = sent
                            return result
                        result.untagged.append(r)
                self.send(part.data)
                sent += part.data
            else:
                pending += part.encode("utf-8") if isinstance(part, str) else part
        pending += b"\r\n"
        self.send(pending)
        sent += pending
        result.command = sent
        return self.finish(result)

    def _note_enabled(self, result: Result) -> None:
        for response in result.named("ENABLED"):
            enabled = {str(t).upper() for t in response.tokens[2:]}
            if enabled & {"IMAP4REV2", "UTF8=ACCEPT"}:
                self.utf8_enabled = True

    def finish(self, result: Result) -> Result:
        """Reads responses up to `result.tag`'s completion."""
        while True:
            r = self.read_response()
            if r.kind == result.tag:
                result.tagged = r
                self._note_enabled(result)
                return result
            if r.kind == "+":
                result.continuations.append(r)
                continue
            result.untagged.append(r)

    def login(self, user: str, password: str) -> Result:
        return self.command(f"LOGIN {quote(user)} {quote(password)}")

    def starttls(self) -> Result:
        """STARTTLS; on OK the socket continues under TLS (certificate not verified)."""
        result = self.command("STARTTLS")
        if result.status == "OK":
            if self.buffer:
                raise AssertionError(f"server sent bytes after STARTTLS OK in the clear: {self.buffer[:200]!r}")
            self.sock = unverified_tls_context().wrap_socket(self.sock, server_hostname="localhost")
        return result

    def select(self, mailbox: str = "INBOX", *, readonly: bool = False) -> Result:
        return self.command(f"{'EXAMINE' if readonly else 'SELECT'} {quote(mailbox)}")

    def fetch(self, sequence: str, items: str, *, uid: bool = False) -> dict[int, dict[str, Any]]:
        """FETCH (or UID FETCH); returns {message number: {ITEM NAME: value}}.

        Item names are upper-cased; several FETCH responses for one message
        are merged.
        """
        result = self.command(f"{'UID ' if uid else ''}FETCH {sequence} {items}").ok()
        return fetch_items(result)

    def search(self, criteria: str | bytes | Lit, *more: str | bytes | Lit, uid: bool = False) -> list[int]:
        """SEARCH (or UID SEARCH); returns the numbers from "* SEARCH" or ESEARCH ALL."""
        result = self.command(f"{'UID ' if uid else ''}SEARCH ", criteria, *more).ok()
        return search_numbers(result)

    def status(self, mailbox: str, items: str) -> dict[str, int]:
        result = self.command(f"STATUS {quote(mailbox)} ({items})").ok()
        data = result.data("STATUS")
        assert len(data) == 1, result.describe()
        return status_items(data[0][1])

    def append(self, mailbox: str, message: bytes, flags: str | None = None, date: str | None = None, *, plus: bool = False) -> Result:
        parts = f"APPEND {quote(mailbox)}"
        if flags is not None:
            parts += f" ({flags})"
        if date is not None:
            parts += f' "{date}"'
        return self.command(parts + " ", Lit(message, plus=plus))

    def logout(self) -> Result:
        result = self.command("LOGOUT")
        self.close()
        return result


def fetch_items(result: Result) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for response in result.named("FETCH"):
        tokens = response.tokens
        number = int(tokens[1])
        values = tokens[3]
        if not isinstance(values, list) or len(values) % 2:
            raise ParseError(f"bad FETCH response {response!r}")
        items = out.setdefault(number, {})
        for key, value in zip(values[0::2], values[1::2]):
            items[text(key).upper()] = value
    return out


def search_numbers(result: Result) -> list[int]:
    numbers: list[int] = []
    searches = result.named("SEARCH")
    esearches = result.named("ESEARCH")
    if searches and esearches:
        raise AssertionError(f"both SEARCH and ESEARCH in one answer\n{result.describe()}")
    for response in searches:
        numbers.extend(int(t) for t in response.tokens[2:])
    for response in esearches:
        numbers.extend(esearch_items(response).get("ALL", []))
    return sorted(numbers)


def esearch_items(response: Response) -> dict[str, Any]:
    """{"TAG": tag, "UID": True, "MIN": n, "MAX": n, "COUNT": n, "ALL": [numbers]}."""
    tokens = response.tokens[2:]
    out: dict[str, Any] = {}
    if tokens and isinstance(tokens[0], list):
        correlator = tokens.pop(0)
        assert len(correlator) == 2 and text(correlator[0]).upper() == "TAG", response
        out["TAG"] = text(correlator[1])
    if tokens and isinstance(tokens[0], str) and tokens[0].upper() == "UID":
        out["UID"] = True
        tokens.pop(0)
    if len(tokens) % 2:
        raise ParseError(f"odd ESEARCH data in {response!r}")
    for key, value in zip(tokens[0::2], tokens[1::2]):
        key = text(key).upper()
        if key == "ALL":
            out[key] = parse_sequence_set(text(value))
        elif key in ("MIN", "MAX", "COUNT"):
            out[key] = int(text(value))
        else:
            out[key] = value
    return out


def status_items(values: list) -> dict[str, int]:
    if len(values) % 2:
        raise ParseError(f"odd STATUS data {values!r}")
    return {text(k).upper(): int(text(v)) for k, v in zip(values[0::2], values[1::2])}


def list_entries(result: Result) -> dict[str, dict]:
    """{mailbox name: {"flags": set of attributes (as sent), "delimiter": str|None, "extra": list}}
    from the LIST (or LSUB) responses of `result`."""
    out: dict[str, dict] = {}
    for response in result.untagged:
        if response.name not in ("LIST", "LSUB"):
            continue
        tokens = response.tokens[2:]
        attributes, delimiter, name = tokens[0], tokens[1], tokens[2]
        out[text(name)] = {
            "flags": {text(a) for a in attributes},
            "delimiter": None if delimiter is None else text(delimiter),
            "extra": tokens[3:],
        }
    return out


def flag_set(value: list) -> set[str]:
    """A FLAGS list as a set, without \\Recent (rev1 only, and session-specific)."""
    return {text(f) for f in value if text(f).lower() != "\\recent"}


# --------------------------------------------------------------------------
# Delivered message shape
# --------------------------------------------------------------------------

TRACE_RE = re.compile(
    rb"\AReturn-Path: <(?P<sender>[^>\r\n]*)>\r\n"
    rb"Received: [^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*"
)


def split_trace(stored: bytes) -> tuple[bytes, bytes]:
    """Splits a delivered message into (trace headers, delivered bytes).

    Requires exactly a Return-Path and one Received field (with continuation
    lines) before the delivered bytes.
    """
    m = TRACE_RE.match(stored)
    if not m:
        raise AssertionError(f"no Return-Path/Received trace at the start of {stored[:300]!r}")
    return stored[:m.end()], stored[m.end():]


def unique_marker(prefix: str = "m") -> str:
    return f"{prefix}-{os.getpid()}-{time.monotonic_ns()}-{threading.get_ident()}"


def simple_message(subject: str = "Hello", body: str = "Hello there.\r\n", *, sender: str = "sender@example.org",
                   to: str = "rcpt@example.com", extra_headers: str = "", date: str = "Mon, 04 Mar 2024 10:00:00 +0000",
                   message_id: str | None = None) -> bytes:
    """A small RFC 5322 message with CRLF line ends."""
    message_id = message_id or f"<{unique_marker('id')}@test.example>"
    head = (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {date}\r\n"
        f"Message-ID: {message_id}\r\n{extra_headers}"
    )
    return (head + "\r\n" + body).encode("utf-8")


# --------------------------------------------------------------------------
# LMTP
# --------------------------------------------------------------------------


@dataclass
class Transaction:
    """Replies of one LMTP mail transaction."""

    mail: tuple[int, str]
    rcpt: list[tuple[int, str]]
    data: tuple[int, str] | None
    # One DATA reply per accepted recipient, in RCPT order.
    per_recipient: list[tuple[int, str]]

    @property
    def final(self) -> list[tuple[int, str]]:
        """Per recipient: the RCPT reply if refused, else its DATA reply."""
        out = []
        replies = iter(self.per_recipient)
        for reply in self.rcpt:
            if reply[0] // 100 == 2:
                out.append(next(replies, (0, "no DATA reply")))
            else:
                out.append(reply)
        return out


def dot_stuff(data: bytes) -> bytes:
    if not data.endswith(b"\r\n"):
        raise ValueError("LMTP test messages must end with CRLF so the delivered bytes are exact")
    return re.sub(rb"(\A|\r\n)\.", rb"\1..", data)


class Lmtp:
    """A minimal LMTP client (RFC 2033) that reads one DATA reply per recipient."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = SOCKET_TIMEOUT_S,
                 source: str | None = None) -> None:
        # `source`: the local address to connect from (any of 127.0.0.0/8).
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.file = self.sock.makefile("rb")
        self.greeting = self.reply()

    def __enter__(self) -> "Lmtp":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.file.close()
            self.sock.close()
        except OSError:
            pass

    def reply(self) -> tuple[int, str]:
        """One (possibly multi-line) reply; the text lines joined with newlines."""
        lines = []
        while True:
            line = self.file.readline(1 << 20)
            if not line:
                raise ConnectionClosed(f"LMTP server closed the connection after {lines!r}")
            line = line.decode("utf-8", "replace").rstrip("\r\n")
            if len(line) < 3 or not line[:3].isdigit():
                raise AssertionError(f"malformed LMTP reply line {line!r}")
            lines.append(line[4:])
            if len(line) == 3 or line[3] == " ":
                return int(line[:3]), "\n".join(lines)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def cmd(self, line: str) -> tuple[int, str]:
        self.send(line.encode("utf-8") + b"\r\n")
        return self.reply()

    def lhlo(self, name: str = "client.test.example") -> tuple[int, list[str]]:
        code, text = self.cmd(f"LHLO {name}")
        assert code == 250, (code, text)
        return code, text.split("\n")

    def transaction(self, sender: str, rcpts: list[str], data: bytes, *, mail_params: str = "") -> Transaction:
        """One mail transaction, one command at a time."""
        mail = self.cmd(f"MAIL FROM:<{sender}>{(' ' + mail_params) if mail_params else ''}")
        if mail[0] != 250:
            return Transaction(mail, [], None, [])
        rcpt = [self.cmd(f"RCPT TO:<{r}>") for r in rcpts]
        accepted = sum(1 for code, _ in rcpt if code // 100 == 2)
        data_reply = self.cmd("DATA")
        if data_reply[0] != 354:
            return Transaction(mail, rcpt, data_reply, [])
        self.send(dot_stuff(data) + b".\r\n")
        per = [self.reply() for _ in range(accepted)]
        return Transaction(mail, rcpt, data_reply, per)

    def pipelined(self, sender: str, rcpts: list[str], data: bytes) -> Transaction:
        """MAIL, every RCPT and DATA in one write (RFC 2920), then the replies."""
        commands = f"MAIL FROM:<{sender}>\r\n" + "".join(f"RCPT TO:<{r}>\r\n" for r in rcpts) + "DATA\r\n"
        self.send(commands.encode("utf-8"))
        mail = self.reply()
        rcpt = [self.reply() for _ in rcpts]
        data_reply = self.reply()
        if data_reply[0] != 354:
            return Transaction(mail, rcpt, data_reply, [])
        accepted = sum(1 for code, _ in rcpt if code // 100 == 2)
        self.send(dot_stuff(data) + b".\r\n")
        per = [self.reply() for _ in range(accepted)]
        return Transaction(mail, rcpt, data_reply, per)


# --------------------------------------------------------------------------
# unittest helpers
# --------------------------------------------------------------------------


class ServerTestCase(unittest.TestCase):
    """One server for the whole class (started in setUpClass, stopped with
    SIGTERM and exit status 0 required in tearDownClass). Override
    `server_options` to configure it."""

    server_options: dict = {}
    server: Server

    @classmethod
    def setUpClass(cls) -> None:
        cls.server = Server(**cls.server_options)
        try:
            cls.server.start()
        except BaseException:
            cls.server.cleanup()
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        try:
            if cls.server.process is not None and cls.server.process.poll() is None:
                cls.server.stop()
        finally:
            cls.server.cleanup()

    def new_user(self, prefix: str = "user") -> tuple[str, str]:
        return self.server.new_user(prefix)

    def raw(self, user: str | None = None, password: str | None = None, **kwargs) -> Imap:
        client = self.server.raw(user, password, **kwargs)
        self.addCleanup(client.close)
        return client

    def fetch_one(self, client: Imap, sequence: str, items: str, *, uid: bool = False) -> dict[str, Any]:
        data = client.fetch(sequence, items, uid=uid)
        self.assertEqual(len(data), 1, f"expected one FETCH response for {sequence}, got {data}")
        return next(iter(data.values()))
