"""`postern store export` and `store import` (issue 10, item 6: from one
machine to another without clients resyncing): a running server exports
its whole store to a file; a new server imports it; every user, password,
mailbox, UIDVALIDITY, UID, flag, MODSEQ, annotation, ACL, alias and spam block
comes out the same, and new mail continues the UIDs. A damaged, cut-short
or foreign file is refused before anything is applied. `store copy --from
OLD_CONFIG` does the same without the file, and run again brings what the
old store took since.
"""

from __future__ import annotations

import json
import unittest
from pathlib import Path

from harness import Server, fetch_items, simple_message, text, unique_marker


def mailbox_state(server: Server, user: str, password: str) -> dict:
    """Every mailbox: UIDVALIDITY, UIDNEXT, and each message's UID, flags, MODSEQ, size."""
    out = {}
    with server.raw(user, password) as client:
        client.command("ENABLE CONDSTORE").ok()
        names = [
            text(r.tokens[-1])
            for r in client.command('LIST "" "*"').ok().named("LIST")
        ]
        for name in sorted(names):
            if name.startswith(("Other Users", "Shared")):
                continue
            status = client.status(name, "UIDVALIDITY UIDNEXT MESSAGES HIGHESTMODSEQ")
            messages = {}
            if status["MESSAGES"]:
                client.select(name, readonly=True).ok()
                items = fetch_items(client.command("UID FETCH 1:* (UID FLAGS MODSEQ RFC822.SIZE)").ok())
                messages = {
                    int(i["UID"]): (sorted(text(f) for f in i["FLAGS"]), repr(i["MODSEQ"]), int(i["RFC822.SIZE"]))
                    for i in items.values()
                }
            out[name] = (status, messages)
    return out


class ExportImportTest(unittest.TestCase):
    """The source is an embedded store; the target is the run's backend: on
    PostgreSQL, this is how one machine's mail moves to a cluster."""

    def setUp(self) -> None:
        self.source = Server(backend="embedded")
        self.addCleanup(self.source.cleanup)
        self.source.start()
        self.files = Path(self.source.tmp) / "exports"
        self.files.mkdir()

    def fill(self) -> dict[str, str]:
        s = self.source
        users = dict([s.new_user("ex"), s.new_user("ex")])
        names = list(users)
        shared = simple_message(subject="to both", body=f"{unique_marker()}\r\n")
        s.deliver_ok(names, shared)
        for i in range(30):
            s.deliver_ok(names[0], simple_message(subject=f"message {i}"))
        with s.raw(names[0], users[names[0]]) as c:
            c.command("CREATE Projects").ok()
            c.select("INBOX").ok()
            c.command("STORE 1:10 +FLAGS (\\Seen $Important)").ok()
            c.command("UID MOVE 11:15 Projects").ok()
            c.command("STORE 16:18 +FLAGS (\\Deleted)").ok()
            c.command("EXPUNGE").ok()
            c.command('SETMETADATA INBOX (/private/comment "exported")').ok()
            c.command(f"SETACL Projects {names[1]} lr").ok()
        s.cli_ok("user", "quota", names[1], "--storage", "5M")
        s.cli_ok("alias", "add", "team@example.com", *names)
        s.cli_ok("spam", "block", "ip:192.0.2.9", "--reason", "export test")
        return users

    def test_a_new_server_gets_everything_and_clients_need_not_resync(self) -> None:
        users = self.fill()
        before = {u: mailbox_state(self.source, u, p) for u, p in users.items()}
        first = list(users)[0]
        self.assertGreater(len(before[first]["INBOX"][1]), 10)
        self.assertEqual(len(before[first]["Projects"][1]), 5)
        path = self.files / "store.export"
        summary = json.loads(self.source.cli_ok("store", "export", str(path), "--json").stdout)
        self.assertGreater(summary["records"], 40)
        # The message delivered to both users is in the file once.
        self.assertEqual(summary["contents"], 31)
        self.assertEqual(summary["lost"], 0)

        target = Server()
        self.addCleanup(target.cleanup)
        imported = json.loads(target.cli_ok("store", "import", str(path), "--json").stdout)
        self.assertEqual(imported, summary)
        target.start()
        after = {u: mailbox_state(target, u, p) for u, p in users.items()}
        self.assertEqual(after, before)
        names = list(users)
        with target.raw(names[0], users[names[0]]) as c:
            meta = c.command("GETMETADATA INBOX /private/comment").ok()
            self.assertIn(b"exported", b"".join(r.raw for r in meta.untagged))
            acl = c.command("GETACL Projects").ok()
            self.assertIn(names[1].encode(), b"".join(r.raw for r in acl.untagged))
        self.assertIn("192.0.2.9", target.cli_ok("spam", "blocks").stdout.decode())
        self.assertIn("team@example.com", target.cli_ok("alias", "list").stdout.decode())
        self.assertIn("5", target.cli_ok("user", "quota", names[1]).stdout.decode())
        # New mail continues where the UIDs were.
        uidnext = before[names[0]]["INBOX"][0]["UIDNEXT"]
        target.deliver_ok(names[0], simple_message(subject="after the move"))
        with target.raw(names[0], users[names[0]]) as c:
            c.select("INBOX").ok()
            self.assertIn(uidnext, c.search("ALL", uid=True))
        # An import into a store that is not empty is refused.
        again = target.cli("store", "import", str(path))
        self.assertNotEqual(again.returncode, 0)
        self.assertIn("not empty", again.stderr.decode())

    def test_store_copy_without_a_file_and_again_for_what_came_since(self) -> None:
        users = self.fill()
        names = list(users)
        target = Server()
        self.addCleanup(target.cleanup)
        # The old server must be stopped: the copy takes its store's lock.
        busy = target.cli("store", "copy", "--from", str(self.source.config_path))
        self.assertEqual(busy.returncode, 75, busy.stderr)
        self.assertIn("stop the server", busy.stderr.decode())
        self.source.stop()
        first = json.loads(target.cli_ok("store", "copy", "--from", str(self.source.config_path),
                                         "--json").stdout)
        self.assertGreater(first["records"], 40)
        self.assertEqual(first["contents"], 31)
        # The old server takes more mail; a second copy brings only that.
        self.source.start()
        before_more = {u: mailbox_state(self.source, u, p) for u, p in users.items()}
        self.assertTrue(before_more)
        self.source.deliver_ok(names[0], simple_message(subject="after the first copy"))
        before = {u: mailbox_state(self.source, u, p) for u, p in users.items()}
        self.source.stop()
        second = json.loads(target.cli_ok("store", "copy", "--from", str(self.source.config_path),
                                          "--json").stdout)
        self.assertEqual(second["contents"], 1)
        self.assertLess(second["records"], 10)
        nothing = json.loads(target.cli_ok("store", "copy", "--from", str(self.source.config_path),
                                           "--json").stdout)
        self.assertEqual(nothing["records"], 0)
        target.start()
        after = {u: mailbox_state(target, u, p) for u, p in users.items()}
        self.assertEqual(after, before)
        # Another store's copy is refused: this one holds the first's.
        other = Server(backend="embedded")
        self.addCleanup(other.cleanup)
        other.new_user("other")
        refused = target.cli("store", "copy", "--from", str(other.config_path))
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("holds a copy of store", refused.stderr.decode())

    def test_a_damaged_short_or_foreign_file_is_refused_and_nothing_is_applied(self) -> None:
        self.fill()
        path = self.files / "store.export"
        self.source.cli_ok("store", "export", str(path))
        refused = self.source.cli("store", "export", str(path))
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("cannot create", refused.stderr.decode())
        data = path.read_bytes()
        # One bit flipped: in a content, a frame header or a length alike
        # (where depends on the sizes), the file is refused as damaged.
        damaged = bytearray(data)
        damaged[len(data) // 2] ^= 0x01
        cases = {
            "damaged": (bytes(damaged), "is damaged"),
            "cut short": (data[: len(data) * 2 // 3], "is damaged"),
            "foreign": (b"From: not an export\r\n\r\nhello\r\n", "not a Postern export"),
            "empty": (b"", "not a Postern export"),
        }
        for name, (content, needle) in cases.items():
            with self.subTest(name):
                bad = self.files / f"{name}.export"
                bad.write_bytes(content)
                target = Server()
                self.addCleanup(target.cleanup)
                result = target.cli("store", "import", str(bad))
                self.assertNotEqual(result.returncode, 0, name)
                self.assertIn(needle, result.stderr.decode())
                self.assertEqual(target.cli_ok("user", "list").stdout.strip(), b"", name)


if __name__ == "__main__":
    unittest.main()
