"""A database host that freezes (issue 10, "how calmly it behaves on a bad
day"): PostgreSQL's processes are stopped with SIGSTOP, so their kernel
still accepts and acknowledges every packet and no TCP timeout ever fires.
Without a bound of its own a node would hold every session and delivery
for ever. With `[store] postgres_query_timeout_ms`, a delivery is refused
with a temporary 4xx, an IMAP command with NO [UNAVAILABLE] and a login
with UNAVAILABLE (never "wrong password"), each within seconds; the node
logs `postgres_no_answer`; once the database runs again (SIGCONT) the same
node and the same IMAP session work again, and everything acknowledged is
there."""

from __future__ import annotations

import imaplib
import os
import signal
import subprocess
import time

from harness import Server, simple_message
from pg_case import ClusterTestCase

# The bound under test, and how long an answer may take at most with it
# (the bound, a commit's own, and the test's own latency).
QUERY_TIMEOUT_MS = 2000
ANSWER_WITHIN_S = 12.0


def quietly_close(client: imaplib.IMAP4) -> None:
    try:
        client.shutdown()
    except OSError:
        pass  # closed already (LOGOUT)


class PgFrozenTest(ClusterTestCase):

    def setUp(self) -> None:
        _, dsn = self.new_database("frozen")
        store = (f'\n[store]\nbackend = "postgres"\npostgres = "{dsn}"\n'
                 f"postgres_query_timeout_ms = {QUERY_TIMEOUT_MS}\npostgres_commit_timeout_ms = {QUERY_TIMEOUT_MS}\n"
                 "postgres_connect_timeout_ms = 1000\n")
        self.server = Server(extra_toml=store)
        self.addCleanup(self.server.cleanup)
        self.server.cli_ok("store", "migrate")
        self.server.add_user("alice@example.com", "correct horse")
        self.server.start()
        self.frozen: list[int] = []
        self.addCleanup(self.thaw)

    def postgres_pids(self) -> list[int]:
        with open(os.path.join(self.pg.data, "postmaster.pid"), encoding="ascii") as f:
            postmaster = int(f.readline())
        children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True).stdout.split()
        return [postmaster] + [int(p) for p in children]

    def freeze(self) -> None:
        self.frozen = self.postgres_pids()
        for pid in self.frozen:
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self.frozen:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        self.frozen = []

    def timed(self, action):
        started = time.monotonic()
        result = action()
        elapsed = time.monotonic() - started
        self.assertLess(elapsed, ANSWER_WITHIN_S, f"answered after {elapsed:.1f}s: {result!r}")
        return result

    def test_a_frozen_database_costs_temporary_failures_not_hangs(self):
        user = "alice@example.com"
        self.server.deliver_ok([user], simple_message(subject="before"))
        session = imaplib.IMAP4("127.0.0.1", self.server.ports["imap"], timeout=60)
        self.addCleanup(quietly_close, session)
        session.login(user, "correct horse")
        session.select("INBOX")

        self.freeze()
        replies = self.timed(lambda: self.server.deliver([user], simple_message(subject="while frozen")))
        self.assertEqual(replies[0][0] // 100, 4, replies)
        typ, data = self.timed(lambda: session.fetch("1", "(BODY.PEEK[])"))
        self.assertEqual(typ, "NO", data)
        self.assertIn(b"UNAVAILABLE", data[0])
        fresh = imaplib.IMAP4("127.0.0.1", self.server.ports["imap"], timeout=60)
        self.addCleanup(quietly_close, fresh)
        with self.assertRaises(imaplib.IMAP4.error) as refused:
            self.timed(lambda: fresh.login(user, "correct horse"))
        self.assertIn("UNAVAILABLE", str(refused.exception))
        self.assertIn("postgres_no_answer", self.server.stderr_path.read_text())

        self.thaw()
        # The same node, without a restart; the first attempts may still
        # meet a connection that was waiting.
        deadline = time.monotonic() + 30
        while self.server.deliver([user], simple_message(subject="after"))[0][0] != 250:
            self.assertLess(time.monotonic(), deadline, "deliveries did not come back")
            time.sleep(0.2)
        typ, data = session.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        self.assertEqual(typ, "OK", data)
        subjects = [part[1] for part in data if isinstance(part, tuple)]
        self.assertIn(b"Subject: before\r\n\r\n", subjects)
        self.assertIn(b"Subject: after\r\n\r\n", subjects)
        self.assertNotIn(b"Subject: while frozen\r\n\r\n", subjects)
        fresh.login(user, "correct horse")
        fresh.logout()
