"""Interop with imapclient (PyPI), an independent client library: CONDSTORE
and QRESYNC flows, SORT, THREAD, QUOTA, METADATA (through its imaplib
connection: imapclient has no METADATA helpers), IDLE seeing a delivery, and
COMPRESS=DEFLATE not needed by it. Installed by .ci/run (pip)."""

import imaplib
import unittest

from harness import ServerTestCase, simple_message

try:
    from imapclient import IMAPClient
except ImportError as error:  # pragma: no cover - CI installs it
    raise AssertionError("imapclient is missing: pip install imapclient") from error


class ImapClientTest(ServerTestCase):
    def setUp(self) -> None:
        self.user, self.password = self.new_user("imapclient")
        for n, (sender, subject) in enumerate([
            ("carol@example.com", "Budget"),
            ("alice@example.com", "Re: Budget"),
            ("bob@example.com", "Lunch"),
        ]):
            self.server.deliver_ok([self.user], simple_message(
                subject=subject, sender=sender,
                date=f"Mon, 04 Mar 2024 1{n}:00:00 +0000",
                message_id=f"<m{n}@example.com>",
                extra_headers="In-Reply-To: <m0@example.com>\r\n" if n == 1 else ""))
        self.client = IMAPClient("127.0.0.1", port=self.server.imap_port, ssl=False, timeout=10)
        self.client.login(self.user, self.password)
        self.addCleanup(self.client.logout)

    def test_capabilities_cover_the_extensions(self):
        caps = {c.decode() for c in self.client.capabilities()}
        for cap in ["CONDSTORE", "QRESYNC", "SORT", "SORT=DISPLAY", "THREAD=REFERENCES",
                    "THREAD=ORDEREDSUBJECT", "QUOTA", "IDLE", "ESEARCH", "MOVE", "UIDPLUS",
                    "SPECIAL-USE", "ENABLE", "COMPRESS=DEFLATE", "MULTIAPPEND"]:
            self.assertIn(cap, caps)

    def test_condstore_and_qresync(self):
        self.assertEqual(self.client.enable("QRESYNC"), [b"QRESYNC"])
        info = self.client.select_folder("INBOX")
        modseq = info[b"HIGHESTMODSEQ"]
        uidvalidity = info[b"UIDVALIDITY"]
        uids = self.client.search("ALL")
        self.client.add_flags(uids[:1], [b"\\Flagged"])
        changed = self.client.fetch(uids, ["FLAGS"], modifiers=[f"CHANGEDSINCE {modseq}"])
        self.assertEqual(list(changed), uids[:1])
        self.assertIn(b"\\Flagged", changed[uids[0]][b"FLAGS"])
        self.assertGreater(changed[uids[0]][b"MODSEQ"][0], modseq)
        # Another session expunges; a QRESYNC SELECT names what vanished.
        other = IMAPClient("127.0.0.1", port=self.server.imap_port, ssl=False, timeout=10)
        other.login(self.user, self.password)
        other.select_folder("INBOX")
        other.delete_messages(uids[-1:])
        other.expunge()
        other.logout()
        self.client.unselect_folder()
        typ, data = self.client._imap._simple_command(
            "SELECT", "INBOX", f"(QRESYNC ({uidvalidity} {modseq}))")
        self.assertEqual(typ, "OK")
        vanished = self.client._imap.untagged_responses.get("VANISHED", [])
        self.assertIn(f"(EARLIER) {uids[-1]}".encode(), vanished)

    def test_sort_and_thread(self):
        self.client.select_folder("INBOX", readonly=True)
        uids = self.client.search("ALL")
        self.assertEqual(self.client.sort(["FROM"]), [uids[1], uids[2], uids[0]])
        self.assertEqual(self.client.sort(["REVERSE", "DATE"]), list(reversed(uids)))
        threads = self.client.thread("REFERENCES")
        self.assertEqual(threads, ((uids[0], uids[1]), (uids[2],)))
        self.assertEqual(self.client.thread("ORDEREDSUBJECT"), ((uids[0], uids[1]), (uids[2],)))

    def test_quota(self):
        self.server.cli_ok("user", "quota", self.user, "--messages", "100", "--storage", "1M")
        roots, quotas = self.client.get_quota_root("INBOX")
        self.assertEqual(roots.quota_roots, [""])
        resources = {q.resource: (q.usage, q.limit) for q in quotas}
        self.assertEqual(resources["MESSAGE"], (3, 100))
        self.assertEqual(resources["STORAGE"][1], 1024)

    def test_metadata(self):
        for name in ("GETMETADATA", "SETMETADATA"):
            imaplib.Commands.setdefault(name, ("AUTH", "SELECTED"))
        imap = self.client._imap
        self.assertIn(b"METADATA", self.client.capabilities())
        self.assertIn(b"METADATA-SERVER", self.client.capabilities())
        typ, _ = imap._simple_command(
            "SETMETADATA", "INBOX", '(/private/comment "via imapclient" /shared/x NIL)')
        self.assertEqual(typ, "OK")
        typ, data = imap._simple_command("GETMETADATA", "(DEPTH 1)", "INBOX", "/private")
        self.assertEqual(typ, "OK")
        typ, data = imap._untagged_response(typ, data, "METADATA")
        self.assertEqual(data, [b'INBOX (/private NIL /private/comment "via imapclient")'])
        typ, data = imap._simple_command("GETMETADATA", "(MAXSIZE 3)", "INBOX", "/private/comment")
        self.assertEqual(typ, "OK")
        self.assertIn(b"[METADATA LONGENTRIES 14]", data[0])

    def test_idle_sees_a_delivery(self):
        self.client.select_folder("INBOX")
        self.client.idle()
        self.server.deliver_ok([self.user], simple_message(subject="while idling"))
        responses = self.client.idle_check(timeout=10)
        self.client.idle_done()
        self.assertIn((4, b"EXISTS"), responses)


if __name__ == "__main__":
    unittest.main()
