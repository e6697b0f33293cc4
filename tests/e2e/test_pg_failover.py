"""Failover of the database (issue 10): a PostgreSQL primary with a
synchronous streaming standby, two `postern serve` nodes delivering to it
over LMTP without pause; the primary is SIGKILLed and the standby promoted
(`pg_ctl promote`). The nodes find the new primary on their own (a
two-host connection string with target_session_attrs=read-write); what was
in flight gets a temporary refusal (4xx), never a permanent one and never
a hang; every delivery acknowledged before, during and after is in the
promoted database, and IMAP serves it. A synchronous standby that dies
makes PostgreSQL wait for ever at commit: the node answers a temporary
failure after `postgres_commit_timeout_ms` instead."""

from __future__ import annotations

import imaplib
import sys
import threading
import time
import unittest
from pathlib import Path

from harness import Server, simple_message

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "pg"))
from cluster import Cluster  # noqa: E402

# Acknowledged deliveries wanted before the crash, and after the promotion.
BEFORE, AFTER = 30, 30
DEADLINE_S = 120


class PgFailoverTest(unittest.TestCase):

    def setUp(self) -> None:
        self.primary = Cluster({"synchronous_standby_names": "standby1"}).start()
        self.addCleanup(self.primary.stop)
        self.standby = self.primary.standby("standby1")
        self.addCleanup(self.standby.stop)
        self.primary.create_database("mail")
        dsn = (f"postgres://postgres@127.0.0.1:{self.primary.port},127.0.0.1:{self.standby.port}/mail"
               "?target_session_attrs=read-write")
        store = (f'\n[store]\nbackend = "postgres"\npostgres = "{dsn}"\npostgres_connect_timeout_ms = 2000\n'
                 "postgres_commit_timeout_ms = 1500\n")
        self.nodes = [Server(extra_toml=store), Server(extra_toml=store)]
        for node in self.nodes:
            self.addCleanup(node.cleanup)
        self.nodes[0].cli_ok("store", "migrate")
        self.nodes[0].add_user("alice@example.com", "correct horse")
        for node in self.nodes:
            node.start()

    def test_a_promoted_standby_has_every_acknowledged_delivery(self):
        lock = threading.Lock()
        acknowledged: list[str] = []
        refusals: list[tuple[int, str]] = []
        stop = threading.Event()

        def deliver(node: Server, name: str) -> None:
            n = 0
            while not stop.is_set():
                n += 1
                subject = f"{name}-{n}"
                try:
                    replies = node.deliver(["alice@example.com"], simple_message(subject=subject))
                except OSError as e:
                    with lock:
                        refusals.append((0, f"{subject}: {e}"))
                    continue
                with lock:
                    for code, text in replies:
                        (acknowledged.append(subject) if code == 250 else refusals.append((code, text)))

        threads = [threading.Thread(target=deliver, args=(node, f"node{i}"), daemon=True)
                   for i, node in enumerate(self.nodes)]
        for thread in threads:
            thread.start()

        def wait_for(count: int, what: str) -> None:
            deadline = time.monotonic() + DEADLINE_S
            while True:
                with lock:
                    if len(acknowledged) >= count:
                        return
                if time.monotonic() > deadline:
                    raise AssertionError(f"{what}: only {len(acknowledged)} acknowledged; refusals {refusals[-5:]}")
                time.sleep(0.05)

        wait_for(BEFORE, "before the crash")
        self.primary.kill()
        self.standby.promote()
        with lock:
            at_promotion = len(acknowledged)
        wait_for(at_promotion + AFTER, "after the promotion")
        stop.set()
        for thread in threads:
            thread.join(timeout=60)

        # Refusals were temporary: the sender keeps the message and retries.
        permanent = [r for r in refusals if r[0] >= 500]
        self.assertEqual(permanent, [])
        print(f"\n{len(acknowledged)} acknowledged, {len(refusals)} refused for a while: "
              f"{sorted({code for code, _ in refusals})}", file=sys.stderr)
        subjects = set(self.standby.psql(
            "mail", "SELECT convert_from(c.summary, 'UTF8')::json->>'subject' FROM messages m "
                    "JOIN message_cache c USING (user_id, mailbox, uid)").split())
        lost = [s for s in acknowledged if s not in subjects]
        self.assertEqual(lost, [], f"acknowledged, then lost in the failover ({len(acknowledged)} acknowledged)")
        # With a synchronous standby, no warning that mail lives on one disk.
        for node in self.nodes:
            self.assertNotIn("no synchronous standby", node.stderr_path.read_text())
        # Both nodes serve the promoted database over IMAP.
        for node in self.nodes:
            imap = imaplib.IMAP4("127.0.0.1", node.ports["imap"])
            imap.login("alice@example.com", "correct horse")
            typ, data = imap.select("INBOX")
            self.assertEqual(typ, "OK")
            self.assertGreaterEqual(int(data[0]), len(acknowledged))
            imap.logout()

    def test_a_lost_synchronous_standby_is_a_temporary_failure_not_a_hang(self):
        node = self.nodes[0]
        node.deliver_ok(["alice@example.com"], simple_message(subject="before"))
        # The standby dies: every commit now waits for it, in PostgreSQL for ever.
        self.standby.kill()
        started = time.monotonic()
        replies = node.deliver(["alice@example.com"], simple_message(subject="no standby"))
        waited = time.monotonic() - started
        self.assertEqual(len(replies), 1)
        self.assertTrue(400 <= replies[0][0] < 500, replies)
        self.assertLess(waited, 30, "the delivery hung instead of failing")
        imap = imaplib.IMAP4("127.0.0.1", node.ports["imap"])
        imap.login("alice@example.com", "correct horse")
        typ, data = imap.append("INBOX", None, None, simple_message(subject="append, no standby"))
        self.assertEqual(typ, "NO")
        self.assertIn(b"[UNAVAILABLE]", data[0])
        # Reading goes on: the primary still answers.
        typ, data = imap.select("INBOX")
        self.assertEqual(typ, "OK")
        imap.logout()
        self.assertIn("did not confirm the commit", node.stderr_path.read_text())


if __name__ == "__main__":
    unittest.main()
