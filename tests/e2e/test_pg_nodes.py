"""Two `postern serve` nodes on one PostgreSQL database (issue 10, "many
nodes, one truth"): deliveries and APPENDs to one mailbox through both
nodes at once never give a UID twice and lose nothing acknowledged; a
session idling on one node hears of a delivery, a flag change and an
expunge made through the other; its LISTEN connection cut, it still does
(by the poll). Real clients: imaplib for APPEND, the harness's raw IMAP
client for IDLE, smtplib's LMTP for delivery."""

from __future__ import annotations

import imaplib
import threading
import time
import unittest

from harness import Server, simple_message
from pg_case import ClusterTestCase
from test_idle_and_sessions import Idle, is_exists

PER_CLIENT = 40


class PgNodesTest(ClusterTestCase):

    def setUp(self) -> None:
        self.db, dsn = self.new_database("nodes")
        store = f'\n[store]\nbackend = "postgres"\npostgres = "{dsn}"\n'
        self.a = Server(extra_toml=store)
        self.b = Server(extra_toml=store)
        for node in (self.a, self.b):
            self.addCleanup(node.cleanup)
        self.a.cli_ok("store", "migrate")
        self.a.add_user("alice@example.com", "correct horse")
        self.a.start()
        self.b.start()

    def psql(self, sql: str) -> str:
        return self.pg.psql(self.db, sql).strip()

    def test_both_nodes_at_once_never_give_a_uid_twice(self):
        acknowledged: list[str] = []
        errors: list[str] = []
        lock = threading.Lock()

        def appender(node: Server, name: str) -> None:
            imap = imaplib.IMAP4("127.0.0.1", node.ports["imap"])
            imap.login("alice@example.com", "correct horse")
            for i in range(PER_CLIENT):
                tag = f"{name}-{i}"
                typ, data = imap.append("INBOX", None, None, simple_message(subject=tag))
                with lock:
                    (acknowledged if typ == "OK" else errors).append(tag if typ == "OK" else repr(data))
            imap.logout()

        def deliverer(node: Server, name: str) -> None:
            for i in range(PER_CLIENT):
                tag = f"{name}-{i}"
                replies = node.deliver(["alice@example.com"], simple_message(subject=tag))
                with lock:
                    if all(code == 250 for code, _ in replies):
                        acknowledged.append(tag)
                    else:
                        errors.append(repr(replies))

        threads = [threading.Thread(target=appender, args=(self.a, "append-a")),
                   threading.Thread(target=appender, args=(self.b, "append-b")),
                   threading.Thread(target=deliverer, args=(self.a, "lmtp-a")),
                   threading.Thread(target=deliverer, args=(self.b, "lmtp-b"))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        self.assertEqual(errors, [])
        self.assertEqual(len(acknowledged), 4 * PER_CLIENT)
        total = 4 * PER_CLIENT
        uids = self.psql("SELECT uid FROM messages ORDER BY uid").split()
        self.assertEqual([int(u) for u in uids], list(range(1, total + 1)), "a UID twice, or a gap")
        # Every acknowledged message is there, as each node reads it.
        for node in (self.a, self.b):
            imap = imaplib.IMAP4("127.0.0.1", node.ports["imap"])
            imap.login("alice@example.com", "correct horse")
            typ, data = imap.select("INBOX")
            self.assertEqual(int(data[0]), total)
            typ, data = imap.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            subjects = {part[1].decode().split(":", 1)[1].strip() for part in data if isinstance(part, tuple)}
            self.assertEqual(subjects, set(acknowledged))
            imap.logout()

    def idle_on_a(self):
        client = self.a.raw("alice@example.com", "correct horse")
        client.select("INBOX").ok()
        return client, Idle(client)

    def test_idle_on_one_node_hears_the_other(self):
        client, idle = self.idle_on_a()
        started = time.monotonic()
        self.b.deliver_ok(["alice@example.com"], simple_message(subject="through b"))
        idle.wait_for(is_exists(1), "* 1 EXISTS for a delivery through node b")
        heard = time.monotonic() - started
        self.assertLess(heard, 5.0)
        imap_b = imaplib.IMAP4("127.0.0.1", self.b.ports["imap"])
        imap_b.login("alice@example.com", "correct horse")
        imap_b.select("INBOX")
        imap_b.store("1", "+FLAGS", "(\\Flagged)")
        idle.wait_for(lambda r: r.name == "FETCH" and b"\\Flagged" in r.raw, "FETCH (FLAGS (\\Flagged))")
        imap_b.store("1", "+FLAGS", "(\\Deleted)")
        imap_b.expunge()
        idle.wait_for(lambda r: r.name == "EXPUNGE" and r.number == 1, "* 1 EXPUNGE")
        idle.done().ok()
        imap_b.logout()
        client.logout()

    def test_a_lost_listen_connection_loses_no_wake_up(self):
        client, idle = self.idle_on_a()
        cut = self.psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE application_name = 'postern-listen'")
        self.assertEqual(cut, "2")
        self.b.deliver_ok(["alice@example.com"], simple_message(subject="while a was deaf"))
        idle.wait_for(is_exists(1), "* 1 EXISTS with the LISTEN connections cut")
        idle.done().ok()
        client.logout()


if __name__ == "__main__":
    unittest.main()
