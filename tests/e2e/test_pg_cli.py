"""The PostgreSQL backend through the operator's CLI and the server (issue 10,
steps 1-8 of docs/design/postgres-cluster.md): with backend = "postgres" and
a migrated database, `postern user`, `alias`, `mailbox` and `deliver` keep
accounts, mailboxes and mail in PostgreSQL (checked with psql, beside the
CLI's own answers) and write none of it into data_dir; the status page and
spam blocks are in its server-wide log; `serve` takes mail over LMTP and
serves it over IMAP from there; `store gc` removes contents no message names;
`reconstruct` finds rows damaged under the server and repairs them while it
serves.""" 

from __future__ import annotations

import time
import unittest

from harness import Server
from pg_case import ClusterTestCase


class PgCliTest(ClusterTestCase):

    def setUp(self) -> None:
        self.db, dsn = self.new_database("cli")
        self.server = Server(extra_toml=f'\n[store]\nbackend = "postgres"\npostgres = "{dsn}"\n')
        self.addCleanup(self.server.cleanup)
        self.server.cli_ok("store", "migrate")

    def psql(self, sql: str) -> str:
        return self.pg.psql(self.db, sql).strip()

    def test_accounts_mailboxes_and_mail_live_in_postgres(self):
        server = self.server
        server.add_user("alice", "correct horse")
        server.add_user("bob@example.com", "battery staple")
        self.assertEqual(server.cli_ok("user", "list").stdout.decode().split(), ["alice", "bob@example.com"])
        self.assertEqual(self.psql("SELECT name FROM users ORDER BY name"), "alice\nbob@example.com")
        mailboxes = server.cli_ok("mailbox", "list", "alice").stdout.decode()
        for name in ("INBOX", "Drafts", "Sent", "Trash", "Junk", "Archive"):
            self.assertIn(name, mailboxes)
        server.cli_ok("alias", "add", "team@example.com", "alice", "bob@example.com")
        message = b"From: carol@example.org\r\nSubject: to the team\r\n\r\nhello both\r\n"
        server.cli_ok("deliver", "team@example.com", input=message)
        rows = self.psql(
            "SELECT u.name, m.mailbox = b.id, m.uid FROM messages m JOIN users u ON u.id = m.user_id "
            "JOIN mailboxes b ON b.user_id = m.user_id AND b.name = 'INBOX' ORDER BY u.name")
        self.assertEqual(rows, "alice|t|1\nbob@example.com|t|1")
        # One content for both recipients, and it is the message.
        self.assertEqual(self.psql("SELECT COUNT(*) FROM blobs"), "1")
        self.assertEqual(self.psql("SELECT convert_from(data, 'UTF8') FROM blobs"), message.decode().strip())
        # The embedded store's files were never made.
        for name in ("journal", "blobs", "users", "server.sqlite"):
            self.assertFalse((server.data_dir / name).exists(), name)

    def test_deleting_a_user_removes_their_rows(self):
        server = self.server
        server.add_user("alice", "correct horse")
        server.add_user("bob", "battery staple")
        server.cli_ok("deliver", "bob", input=b"Subject: x\r\n\r\nx\r\n")
        server.cli_ok("user", "del", "bob")
        self.assertEqual(server.cli_ok("user", "list").stdout.decode().split(), ["alice"])
        for table in ("mailboxes", "subscriptions", "changes"):
            owners = self.psql(f"SELECT DISTINCT u.name FROM {table} t LEFT JOIN users u ON u.id = t.user_id")
            self.assertEqual(owners, "alice", table)
        for table in ("messages", "message_cache", "expunged"):
            self.assertEqual(self.psql(f"SELECT COUNT(*) FROM {table}"), "0", table)
        self.assertEqual(self.psql("SELECT COUNT(*) FROM directory_users WHERE name = 'bob'"), "0")

    def test_gc_collects_contents_no_message_names(self):
        server = self.server
        server.add_user("alice", "correct horse")
        server.add_user("bob", "battery staple")
        server.cli_ok("deliver", "alice", input=b"Subject: kept\r\n\r\nkept\r\n")
        server.cli_ok("deliver", "bob", input=b"Subject: gone\r\n\r\ngone\r\n")
        server.cli_ok("user", "del", "bob")
        # Past the grace period that protects contents a delivery just found.
        self.psql("UPDATE blobs SET stored_at = stored_at - 7200")
        server.cli_ok("store", "gc")
        self.assertEqual(self.psql("SELECT COUNT(*) FROM blobs"), "1")
        self.assertEqual(self.psql("SELECT COUNT(*) FROM messages"), "1")

    def test_reconstruct_repairs_damaged_rows_while_serving(self):
        import imaplib
        import json
        server = self.server
        server.add_user("alice", "correct horse")
        for n in range(3):
            server.cli_ok("deliver", "alice", input=f"Subject: message {n}\r\n\r\nbody {n}\r\n".encode())
        server.start()
        self.assertEqual(json.loads(server.cli_ok("reconstruct", "--check", "--json").stdout)["problems"], 0)
        # A bug overwrites a cache entry and loses a row (the incident's
        # corrupted cache files, on this backend).
        self.psql("UPDATE message_cache SET summary = '\\x7b7d' WHERE uid = 1")
        self.psql("DELETE FROM messages WHERE uid = 2")
        before = self.psql("SELECT last_seq FROM users")
        check = server.cli("reconstruct", "--check", "--json")
        self.assertEqual(check.returncode, 1, check.stderr)
        kinds = sorted({p["kind"] for p in json.loads(check.stdout)["details"]})
        self.assertEqual(kinds, ["cache_damaged", "message_missing", "usage_wrong"])
        self.assertEqual(self.psql("SELECT COUNT(*) FROM messages"), "2", "a check changes nothing")
        repair = json.loads(server.cli_ok("reconstruct", "alice", "--json").stdout)
        self.assertEqual(repair["repaired"], repair["problems"])
        self.assertEqual(self.psql("SELECT COUNT(*) FROM messages"), "3")
        self.assertEqual(self.psql("SELECT last_seq FROM users"), before, "repairs are not new changes")
        imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"])
        self.addCleanup(imap.logout)
        imap.login("alice", "correct horse")
        imap.select("INBOX")
        typ, data = imap.fetch("1:3", "(ENVELOPE)")
        self.assertEqual(typ, "OK", data)
        text = b" ".join(part if isinstance(part, bytes) else part[0] for part in data)
        for n in range(3):
            self.assertIn(f"message {n}".encode(), text)
        self.assertEqual(json.loads(server.cli_ok("reconstruct", "--json").stdout)["problems"], 0)
        # Damage met while serving: the answer is derived afresh from the
        # content (never the damaged entry), and the background repairer
        # fixes the row ([reconstruct] auto_repair, on by default).
        self.psql("UPDATE message_cache SET summary = '\\x7b7d' WHERE uid = 3")
        typ, data = imap.fetch("3", "(ENVELOPE)")
        self.assertEqual(typ, "OK", data)
        self.assertIn(b"message 2", data[0])
        deadline = time.monotonic() + 30
        while json.loads(server.cli("reconstruct", "--check", "--json").stdout)["problems"] != 0:
            self.assertLess(time.monotonic(), deadline, "the background repair did not happen")
            time.sleep(0.2)

    def test_the_status_page_and_spam_blocks_live_in_postgres(self):
        server = self.server
        server.cli_ok("status", "open", "--title", "Delivery delayed", "--impact", "minor",
                      input="Mail to example.org waits in the queue.")
        server.cli_ok("spam", "block", "ip:192.0.2.7", "--reason", "spam run")
        self.assertIn("Delivery delayed", server.cli_ok("status", "list").stdout.decode())
        self.assertIn("ip:192.0.2.7", server.cli_ok("spam", "blocks").stdout.decode())
        kinds = self.psql("SELECT record::json->>'type' FROM server_changes ORDER BY seq").split()
        self.assertEqual(kinds, ["status_opened", "spam_block_set"])
        # The node's copy is derived: without it, the state comes back from the log.
        (server.data_dir / "pg-server-cache.sqlite").unlink()
        self.assertIn("Delivery delayed", server.cli_ok("status", "list").stdout.decode())

    def test_imap_and_lmtp_are_served_from_postgres(self):
        import imaplib
        import smtplib
        server = self.server
        server.add_user("alice", "correct horse")
        server.start()
        with smtplib.LMTP("127.0.0.1", server.ports["lmtp"]) as lmtp:
            refused = lmtp.sendmail("bob@example.org", ["alice@example.com"],
                                    b"From: bob@example.org\r\nSubject: by LMTP\r\n\r\nhello\r\n")
            self.assertEqual(refused, {})
        imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"])
        self.addCleanup(imap.logout)
        imap.login("alice", "correct horse")
        typ, data = imap.append("INBOX", "(\\Flagged)", None, b"Subject: by APPEND\r\n\r\nhi\r\n")
        self.assertEqual(typ, "OK", data)
        self.assertIn(b"[APPENDUID", data[0])
        self.assertEqual(imap.select("INBOX"), ("OK", [b"2"]))
        typ, data = imap.fetch("1:*", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        text = b" ".join(part[0] + part[1] if isinstance(part, tuple) else part for part in data)
        self.assertIn(b"Subject: by LMTP", text)
        self.assertIn(b"Subject: by APPEND", text)
        self.assertIn(b"\\Flagged", text)
        imap.store("1", "+FLAGS", "(\\Deleted)")
        self.assertEqual(imap.expunge(), ("OK", [b"1"]))
        self.assertEqual(self.psql("SELECT uid FROM messages"), "2")
        self.assertEqual(self.psql("SELECT uid FROM expunged"), "1")
        # This cluster has no synchronous standby: the operator is told.
        self.assertIn("no synchronous standby", server.stderr_path.read_text())


if __name__ == "__main__":
    unittest.main()
