"""CATENATE (RFC 4469) against the real binary: TEXT and URL parts stored as
their exact concatenation, URLs with ;SECTION= (a part, HEADER, TEXT), a wrong
UIDVALIDITY, another user's mail (BADURL, nothing leaks), TOOBIG over
`[imap] max_literal`, and MULTIAPPEND with CATENATE, all or nothing."""

from __future__ import annotations

import unittest

from harness import HOSTNAME, Lit, ServerTestCase

MULTIPART = (
    b"From: sender@example.org\r\nTo: someone@example.org\r\nSubject: catenate source\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"sep\"\r\n\r\n"
    b"preamble\r\n--sep\r\nContent-Type: text/plain\r\n\r\nthe first part\r\n"
    b"--sep\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"AAECAwQ=\r\n--sep--\r\n"
)


def body(client, uid: int, section: str = "") -> bytes:
    data = client.fetch(str(uid), f"BODY.PEEK[{section}]", uid=True)
    (items,) = data.values()
    value = items[f"BODY[{section}]"]
    return value if isinstance(value, bytes) else str(value).encode()


class CatenateTest(ServerTestCase):
    def setUp(self) -> None:
        self.user, self.password = self.new_user("cat")
        self.client = self.raw(self.user, self.password)
        self.client.append("INBOX", MULTIPART).ok()
        self.client.command("CREATE Composed").ok()
        self.validity = self.client.status("INBOX", "UIDVALIDITY")["UIDVALIDITY"]

    def test_capability(self):
        caps = self.client.command("CAPABILITY").ok().data("CAPABILITY")[0]
        names = {c.decode() if isinstance(c, bytes) else c for c in caps}
        self.assertIn("CATENATE", names)

    def test_text_and_urls_exact_bytes(self):
        c = self.client
        v = self.validity
        c.select("INBOX")
        header, text, part1 = body(c, 1, "HEADER"), body(c, 1, "TEXT"), body(c, 1, "1")
        self.assertEqual(part1, b"the first part")
        result = c.command(
            "APPEND Composed (\\Draft) CATENATE (TEXT ", Lit(b"X-Note: forwarded\r\n", plus=True),
            f' URL "/INBOX;UIDVALIDITY={v}/;UID=1")',
        ).ok()
        drafts = c.status("Composed", "UIDVALIDITY")["UIDVALIDITY"]
        self.assertEqual(result.code, f"APPENDUID {drafts} 1")
        c.command(
            f'APPEND Composed CATENATE (URL "/INBOX;UIDVALIDITY={v}/;UID=1/;SECTION=HEADER" TEXT ',
            Lit(b"--cut--\r\n"),
            f' URL "imap://{self.user}@{HOSTNAME}/INBOX;UIDVALIDITY={v}/;UID=1/;SECTION=TEXT"'
            ' URL ";UID=1/;SECTION=1")',
        ).ok()
        c.select("Composed")
        self.assertEqual(body(c, 1), b"X-Note: forwarded\r\n" + MULTIPART)
        self.assertEqual(body(c, 2), header + b"--cut--\r\n" + text + part1)
        flags = c.fetch("1", "FLAGS", uid=True)
        self.assertIn("\\Draft", str(flags))

    def test_wrong_uidvalidity_and_missing_things(self):
        c = self.client
        v = self.validity
        for url in (f"/INBOX;UIDVALIDITY={v + 1}/;UID=1", f"/INBOX;UIDVALIDITY={v}/;UID=7",
                    f"/INBOX;UIDVALIDITY={v}/;UID=1/;SECTION=9", "/Nothing/;UID=1"):
            result = c.command(f'APPEND Composed CATENATE (URL "{url}")').expect("NO")
            self.assertEqual(result.code, f"BADURL {url}")
        self.assertEqual(c.status("Composed", "MESSAGES")["MESSAGES"], 0)

    def test_another_users_mail_never_leaks(self):
        other, password = self.new_user("victim")
        victim = self.raw(other, password)
        victim.append("INBOX", b"Subject: private\r\n\r\nvictim's secret text\r\n").ok()
        victim.command("CREATE Private").ok()
        victim.append("Private", b"Subject: more\r\n\r\nanother secret\r\n").ok()
        theirs = victim.status("INBOX", "UIDVALIDITY")["UIDVALIDITY"]
        c = self.client
        for url in (f"imap://{other}@{HOSTNAME}/INBOX;UIDVALIDITY={theirs}/;UID=1",
                    f"imap://{other}@{HOSTNAME}/Private/;UID=1",
                    "/Private/;UID=1",
                    f"/Other%20Users/{other}/INBOX/;UID=1",
                    f"imap://{self.user}@elsewhere.example/INBOX/;UID=1"):
            result = c.command(f'APPEND Composed CATENATE (URL "{url}")').expect("NO")
            self.assertEqual(result.code_name, "BADURL", result.describe())
            self.assertNotIn(b"secret", result.tagged.raw)
        self.assertEqual(c.status("Composed", "MESSAGES")["MESSAGES"], 0)
        self.assertEqual(victim.status("INBOX", "MESSAGES")["MESSAGES"], 1)

    def test_multiappend_with_catenate(self):
        c = self.client
        result = c.command(
            'APPEND Composed CATENATE (URL "/INBOX/;UID=1/;SECTION=HEADER" TEXT ',
            Lit(b"new text\r\n", plus=True),
            ") (\\Seen) ", Lit(b"Subject: plain\r\n\r\nplain\r\n", plus=True),
            " CATENATE (TEXT ", Lit(b"Subject: bits\r\n\r\n", plus=True),
            ' URL "/INBOX/;UID=1/;SECTION=1")',
        ).ok()
        self.assertTrue(result.code.endswith(" 1:3"), result.describe())
        c.select("Composed")
        self.assertTrue(body(c, 1).endswith(b"\r\n\r\nnew text\r\n"))
        self.assertEqual(body(c, 2), b"Subject: plain\r\n\r\nplain\r\n")
        self.assertEqual(body(c, 3), b"Subject: bits\r\n\r\nthe first part")
        # One bad URL refuses every message of the command.
        c.command(
            "APPEND Composed CATENATE (TEXT ", Lit(b"Subject: a\r\n\r\na\r\n", plus=True),
            ') CATENATE (URL "/INBOX/;UID=99")',
        ).expect("NO")
        self.assertEqual(c.status("Composed", "MESSAGES")["MESSAGES"], 3)


class CatenateLimitTest(ServerTestCase):
    server_options = {"imap": {"max_literal": 4096}}

    def test_toobig(self):
        user, password = self.new_user("big")
        c = self.raw(user, password)
        c.append("INBOX", b"Subject: big\r\n\r\n" + b"y" * 3000 + b"\r\n").ok()
        result = c.command('APPEND INBOX CATENATE (URL "/INBOX/;UID=1" URL "/INBOX/;UID=1")')
        result.expect("NO")
        self.assertEqual(result.code_name, "TOOBIG", result.describe())
        result = c.command('APPEND INBOX CATENATE (URL "/INBOX/;UID=1") CATENATE (URL "/INBOX/;UID=1")')
        self.assertEqual(result.code_name, "TOOBIG", result.describe())
        self.assertEqual(c.status("INBOX", "MESSAGES")["MESSAGES"], 1)
        # Within the bound it works, and a NUL needs literal8.
        c.command('APPEND INBOX CATENATE (TEXT ', Lit(b"X-A: 1\r\n", plus=True),
                  ' URL "/INBOX/;UID=1")').ok()
        c.command("APPEND INBOX CATENATE (TEXT ", Lit(b"Subject: \0\r\n\r\n", plus=True), ")").expect("BAD")
        self.assertEqual(c.status("INBOX", "MESSAGES")["MESSAGES"], 2)


if __name__ == "__main__":
    unittest.main()
