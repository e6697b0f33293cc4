"""Throwaway PostgreSQL clusters for the tests: initdb'd into a temporary
directory, listening on a free loopback port (and a Unix socket in that
directory), stopped and removed when the test is done, and, should the test
process die, by a watchdog that outlives it.

Debian's packages (`.ci/run` installs `postgresql` without creating its
default cluster); the binaries are found under /usr/lib/postgresql/*/bin,
highest version first. PostgreSQL refuses to run as root: as root, every
command runs as the `postgres` system user (`runuser`), on a directory
chowned to it.

    from cluster import Cluster
    with Cluster() as pg:
        dsn = pg.create_database("t1")        # postgres://postgres@127.0.0.1:PORT/t1
        pg.psql("t1", "SELECT 1")             # stdout of psql -At

Standard library only. `python3 cluster.py` starts one and prints its DSN,
for trying things by hand (Ctrl-C stops it); `python3 cluster.py
--until-stdin-closes` does the same for another program, and stops when that
program closes the pipe to its stdin (or dies); with --durable after it,
with fsync on (for benchmarks).
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

START_TIMEOUT_S = 60
COMMAND_TIMEOUT_S = 60


def bin_dir() -> str:
    """The directory of the newest installed PostgreSQL's programs."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if not found:
        raise RuntimeError("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb); "
                           ".ci/run installs it: apt-get install -y postgresql")
    return os.path.dirname(found[-1])


def available() -> bool:
    try:
        bin_dir()
        return True
    except RuntimeError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(argv: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


class Cluster:
    def __init__(self, settings: dict[str, str] | None = None) -> None:
        self.bin = bin_dir()
        self.dir = tempfile.mkdtemp(prefix="postern-pg-")
        os.chmod(self.dir, 0o755)
        self.data = os.path.join(self.dir, "data")
        self.port = 0
        self.settings = {"fsync": "off", "full_page_writes": "off", "max_connections": "200",
                         "shared_buffers": "32MB", **(settings or {})}
        self._watchdog: subprocess.Popen | None = None

    # -- life ---------------------------------------------------------------

    def start(self) -> "Cluster":
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run([os.path.join(self.bin, "initdb"), "-D", self.data, "--auth=trust", "-U", "postgres",
                   "--no-sync", "-E", "UTF8", "--locale=C"])
        self._launch()
        return self

    def _launch(self) -> None:
        """Starts the server on a free port, and its watchdog."""
        last_error = ""
        for _ in range(5):
            # A free port can be taken by someone else before we bind it: try another.
            self.port = free_port()
            options = " ".join([f"-p {self.port}", f"-k {self.dir}", "-c listen_addresses=127.0.0.1",
                                *(f"-c {k}={v}" for k, v in self.settings.items())])
            result = subprocess.run(
                _as_postgres([os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-l",
                              os.path.join(self.dir, "log"), "-o", options, "-w", "-t", str(START_TIMEOUT_S),
                              "start"]),
                capture_output=True, timeout=START_TIMEOUT_S + 10)
            if result.returncode == 0:
                break
            last_error = result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
            last_error += self.log_tail()
        else:
            raise RuntimeError(f"PostgreSQL did not start:\n{last_error}")
        self._watchdog = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--watch", str(os.getpid()), self.bin, self.data, self.dir],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)

    def standby(self, name: str) -> "Cluster":
        """A streaming standby of this cluster, started, named `name` (its
        application_name: what synchronous_standby_names lists). The primary
        must run with wal_level=replica (the default) and trust replication
        from 127.0.0.1 (initdb's default pg_hba.conf does)."""
        # A promoted standby must not wait for a standby of its own.
        standby = Cluster({k: v for k, v in self.settings.items() if k != "synchronous_standby_names"})
        if os.geteuid() == 0:
            shutil.chown(standby.dir, "postgres", "postgres")
        standby._run([os.path.join(self.bin, "pg_basebackup"), "-h", "127.0.0.1", "-p", str(self.port),
                      "-U", "postgres", "-D", standby.data, "-R", "-X", "stream", "--no-sync",
                      "-d", f"application_name={name}"])
        standby._launch()
        return standby

    def kill(self) -> None:
        """SIGKILLs the postmaster (a crash, not a shutdown); its children
        exit when they notice."""
        with open(os.path.join(self.data, "postmaster.pid"), encoding="ascii") as f:
            pid = int(f.readline())
        os.kill(pid, signal.SIGKILL)

    def promote(self) -> None:
        """Makes a standby the primary, and waits until it takes writes."""
        self._run([os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-w", "-t", str(START_TIMEOUT_S),
                   "promote"])

    def stop(self) -> None:
        if os.path.exists(os.path.join(self.data, "postmaster.pid")):
            subprocess.run(_as_postgres([os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-m", "immediate",
                                         "-w", "stop"]), capture_output=True, timeout=COMMAND_TIMEOUT_S)
        if self._watchdog is not None:
            self._watchdog.kill()
            self._watchdog.wait()
            self._watchdog = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "Cluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- use ----------------------------------------------------------------

    def dsn(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def psql(self, database: str, sql: str, *, check: bool = True) -> str:
        """Runs SQL with psql -At (unaligned, tuples only); returns stdout."""
        result = subprocess.run(
            [os.path.join(self.bin, "psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1",
             "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database, "-c", sql],
            capture_output=True, timeout=COMMAND_TIMEOUT_S)
        if check and result.returncode != 0:
            raise RuntimeError(f"psql {sql!r} failed: {result.stderr.decode(errors='replace')}")
        return result.stdout.decode()

    def create_database(self, name: str) -> str:
        self.psql("postgres", f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def log_tail(self, lines: int = 20) -> str:
        try:
            with open(os.path.join(self.dir, "log"), encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def _run(self, argv: list[str]) -> None:
        result = subprocess.run(_as_postgres(argv), capture_output=True, timeout=COMMAND_TIMEOUT_S)
        if result.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {result.stderr.decode(errors='replace')}")


def _watch(parent: int, bin: str, data: str, directory: str) -> None:
    """Stops the cluster and removes it once `parent` is gone."""
    while True:
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            break
        time.sleep(1)
    subprocess.run(_as_postgres([os.path.join(bin, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop"]),
                   capture_output=True, timeout=COMMAND_TIMEOUT_S)
    shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--watch":
        _watch(int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5])
    elif sys.argv[1:2] == ["--until-stdin-closes"] and sys.argv[2:] in ([], ["--durable"]):
        # For test programs in other languages (the store's Rust tests): the
        # DSN on the first line of stdout, and the cluster lives until the
        # program closes our stdin, which its exit always does. --durable
        # (for benchmarks): fsync and full-page writes on, as in production.
        durable = {"fsync": "on", "full_page_writes": "on", "shared_buffers": "256MB",
                   "max_wal_size": "2GB"} if sys.argv[2:] else {}
        with Cluster(durable) as cluster:
            print(cluster.dsn(), flush=True)
            sys.stdin.read()
    else:
        with Cluster() as cluster:
            print(cluster.dsn(), flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
