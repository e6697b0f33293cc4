"""LMTP (RFC 2033): recipients and their replies, address mapping (+tag,
case, full-address users, aliases, postmaster), size limit (RFC 1870), and
content that must be stored and served byte-exact whatever it looks like."""

import unittest

from harness import HOSTNAME, ServerTestCase, simple_message, split_trace
from mime_expect import BROKEN

SIZE_MAX = 8_000_000


class LmtpTest(ServerTestCase):
    server_options = {"lmtp": {"max_message_size": SIZE_MAX}, "top": {"postmaster": "pm"}}

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.passwords = {}
        for name in ("alice", "bob", "pm", "carol@example.com", "dave", "dave@example.com"):
            cls.passwords[name] = f"pw-{name}"
            cls.server.add_user(name, cls.passwords[name])

    def inbox(self, user):
        """{sequence number: BODY[]} of a user's INBOX."""
        client = self.raw(user, self.passwords[user])
        client.select("INBOX", readonly=True).ok()
        if client.status("INBOX", "MESSAGES")["MESSAGES"] == 0:
            return {}
        return {n: v["BODY[]"] for n, v in client.fetch("1:*", "BODY.PEEK[]").items()}

    def delivered(self, user, marker: bytes):
        """Delivered parts (trace removed) of the user's messages containing `marker`."""
        return [split_trace(body)[1] for body in self.inbox(user).values() if marker in body]

    def lmtp(self):
        client = self.server.lmtp_raw()
        self.addCleanup(client.close)
        return client

    # -- session -----------------------------------------------------------

    def test_greeting_and_lhlo_extensions(self):
        client = self.lmtp()
        self.assertEqual(client.greeting[0], 220)
        _, lines = client.lhlo()
        keywords = {line.split(" ")[0].upper(): line for line in lines[1:]}
        for keyword in ("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "SIZE"):
            self.assertIn(keyword, keywords)
        self.assertEqual(keywords["SIZE"], f"SIZE {SIZE_MAX}")

    def test_smtplib_lmtp_single_recipient(self):
        smtp = self.server.lmtp()
        self.addCleanup(smtp.close)
        code, _ = smtp.ehlo()  # smtplib.LMTP sends LHLO here
        self.assertEqual(code, 250)
        self.assertTrue(smtp.has_extn("pipelining"))
        data = simple_message(subject="via smtplib")
        refused = smtp.sendmail("smtplib@example.org", ["alice@example.org"], data)
        self.assertEqual(refused, {})
        self.assertEqual(self.delivered("alice", b"via smtplib"), [data])

    def test_command_order_and_errors(self):
        client = self.lmtp()
        self.assertEqual(client.cmd("MAIL FROM:<a@example.org>")[0], 503, "MAIL before LHLO")
        client.lhlo()
        self.assertEqual(client.cmd("RCPT TO:<alice@example.org>")[0], 503, "RCPT before MAIL")
        self.assertEqual(client.cmd("DATA")[0], 503, "DATA before MAIL")
        self.assertEqual(client.cmd("MAIL FROM:<a@example.org>")[0], 250)
        self.assertEqual(client.cmd("MAIL FROM:<b@example.org>")[0], 503, "nested MAIL")
        self.assertEqual(client.cmd("DATA")[0], 503, "DATA without a recipient")
        self.assertEqual(client.cmd("RSET")[0], 250)
        self.assertEqual(client.cmd("FROBNICATE")[0], 500)
        self.assertIn(client.cmd("MAIL FROM:garbage")[0], (501, 553))
        self.assertEqual(client.cmd("NOOP")[0], 250)
        self.assertEqual(client.cmd("QUIT")[0], 221)

    # -- recipients --------------------------------------------------------

    def test_pipelined_multi_recipient_with_one_unknown(self):
        client = self.lmtp()
        client.lhlo()
        data = simple_message(subject="pipelined multi")
        transaction = client.pipelined("multi@example.org", ["alice@example.org", "nobody@example.org", "bob@example.org"], data)
        self.assertEqual(transaction.mail[0], 250)
        self.assertEqual([code for code, _ in transaction.rcpt], [250, 550, 250])
        self.assertTrue(transaction.rcpt[1][1].startswith("5.1.1"), transaction.rcpt[1])
        self.assertEqual(transaction.data[0], 354)
        # One reply per accepted recipient (RFC 2033 4.2), in RCPT order.
        self.assertEqual([code for code, _ in transaction.per_recipient], [250, 250])
        self.assertEqual(self.delivered("alice", b"pipelined multi"), [data])
        self.assertEqual(self.delivered("bob", b"pipelined multi"), [data])
        # The session goes on.
        self.assertEqual(client.cmd("NOOP")[0], 250)

    def test_all_recipients_unknown_makes_data_fail_503(self):
        client = self.lmtp()
        client.lhlo()
        transaction = client.transaction("x@example.org", ["nobody@example.org", "nothere@example.com"], simple_message())
        self.assertEqual([code for code, _ in transaction.rcpt], [550, 550])
        self.assertEqual(transaction.data[0], 503)
        self.assertEqual(client.cmd("RSET")[0], 250)

    def test_one_stored_copy_serves_all_recipients(self):
        data = simple_message(subject="shared blob")
        self.server.deliver_ok(["alice@example.org", "bob@example.net"], data)
        [alice_copy] = [b for b in self.inbox("alice").values() if b"shared blob" in b]
        [bob_copy] = [b for b in self.inbox("bob").values() if b"shared blob" in b]
        # Same trace for both, naming no single recipient.
        self.assertEqual(alice_copy, bob_copy)
        trace, _ = split_trace(alice_copy)
        self.assertNotIn(b"alice", trace.lower())
        self.assertNotIn(b"bob", trace.lower())

    def test_plus_tag_and_case(self):
        for address in ("alice+news@example.org", "ALICE@EXAMPLE.NET", "Alice+Some.Tag@Foo.Example"):
            with self.subTest(address=address):
                marker = f"tag case {address}"
                data = simple_message(subject=marker)
                replies = self.server.deliver([address], data)
                self.assertEqual([code for code, _ in replies], [250], replies)
                self.assertEqual(self.delivered("alice", marker.encode()), [data])

    def test_full_address_users(self):
        cases = [
            ("carol@example.com", "carol@example.com"),
            ("CAROL@Example.COM", "carol@example.com"),
            ("carol+x@example.com", "carol@example.com"),
            # A full-address user wins over the bare one for its own address...
            ("dave@example.com", "dave@example.com"),
            # ...and the bare one takes every other domain.
            ("dave@other.example", "dave"),
        ]
        for address, user in cases:
            with self.subTest(address=address):
                marker = f"full address {address}"
                data = simple_message(subject=marker)
                replies = self.server.deliver([address], data)
                self.assertEqual([code for code, _ in replies], [250])
                self.assertEqual(self.delivered(user, marker.encode()), [data])
                other = "dave" if user == "dave@example.com" else ("dave@example.com" if user == "dave" else None)
                if other:
                    self.assertEqual(self.delivered(other, marker.encode()), [])
        # No bare "carol" exists, so another domain is unknown.
        replies = self.server.deliver(["carol@other.example"], simple_message())
        self.assertEqual([code for code, _ in replies], [550])

    def test_alias_to_two_users(self):
        self.server.cli_ok("alias", "add", "team@example.com", "alice", "bob")
        data = simple_message(subject="alias delivery")
        client = self.lmtp()
        client.lhlo()
        transaction = client.transaction("boss@example.org", ["TEAM@example.com"], data)
        # One recipient, one reply, however many users it reaches.
        self.assertEqual([code for code, _ in transaction.rcpt], [250])
        self.assertEqual([code for code, _ in transaction.per_recipient], [250])
        self.assertEqual(self.delivered("alice", b"alias delivery"), [data])
        self.assertEqual(self.delivered("bob", b"alias delivery"), [data])

    def test_postmaster_for_every_domain(self):
        for n, address in enumerate(("postmaster@example.org", "PostMaster@Other.Example", "postmaster")):
            with self.subTest(address=address):
                marker = f"postmaster case {n}"
                data = simple_message(subject=marker)
                client = self.lmtp()
                client.lhlo()
                transaction = client.transaction("someone@example.org", [address], data)
                self.assertEqual([code for code, _ in transaction.final], [250], transaction)
                self.assertEqual(self.delivered("pm", marker.encode()), [data])

    # -- size --------------------------------------------------------------

    def test_size_parameter_over_the_limit_is_552(self):
        client = self.lmtp()
        client.lhlo()
        code, text = client.cmd(f"MAIL FROM:<big@example.org> SIZE={SIZE_MAX + 1}")
        self.assertEqual(code, 552, text)
        self.assertEqual(client.cmd(f"MAIL FROM:<big@example.org> SIZE={SIZE_MAX - 1000}")[0], 250)
        self.assertEqual(client.cmd("RSET")[0], 250)

    def test_message_over_the_limit_is_552_and_not_stored(self):
        client = self.lmtp()
        client.lhlo()
        marker = b"oversized-message-marker"
        data = simple_message(subject=marker.decode(), body=("y" * 998 + "\r\n") * (SIZE_MAX // 1000 + 100))
        self.assertGreater(len(data), SIZE_MAX)
        transaction = client.transaction("big@example.org", ["alice@example.org", "bob@example.org"], data)
        self.assertEqual([code for code, _ in transaction.per_recipient], [552, 552], transaction)
        self.assertEqual(self.delivered("alice", marker), [])
        # The session is still usable.
        small = simple_message(subject="small after big")
        transaction = client.transaction("big@example.org", ["alice@example.org"], small)
        self.assertEqual([code for code, _ in transaction.final], [250])

    # -- content stored and served byte-exact --------------------------------

    def deliver_and_fetch(self, user, data, items="(BODY.PEEK[] RFC822.SIZE)"):
        marker = data[:2000]
        self.server.deliver_ok([user], data)
        client = self.raw(user, self.passwords[user])
        client.select("INBOX", readonly=True).ok()
        number = client.status("INBOX", "MESSAGES")["MESSAGES"]
        item = self.fetch_one(client, str(number), items)
        self.assertIn(marker, item["BINARY[]"] if "BINARY[]" in item else item["BODY[]"])
        return client, number, item

    def test_nul_bytes_stored_and_served(self):
        data = (b"From: nul@example.org\r\nTo: bob@example.org\r\nSubject: NUL bytes\r\n"
                b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n"
                b"before\x00after\r\n\x00\x00\x00\r\nend\x00\r\n")
        client, number, item = self.deliver_and_fetch("bob", data, "(BINARY.PEEK[] BODY.PEEK[] RFC822.SIZE)")
        trace, rest = split_trace(item["BINARY[]"])
        self.assertEqual(rest, data)
        # BODY[] cannot carry NUL: each becomes 0x80, nothing else changes.
        self.assertEqual(item["BODY[]"], trace + data.replace(b"\x00", b"\x80"))
        self.assertEqual(int(item["RFC822.SIZE"]), len(trace) + len(data))

    def test_two_megabyte_header_line(self):
        data = (b"From: long@example.org\r\nTo: bob@example.org\r\nX-Long: " + b"a" * (2 * 1024 * 1024) +
                b"\r\nSubject: after the long line\r\n\r\nBody.\r\n")
        client, number, item = self.deliver_and_fetch("bob", data)
        self.assertEqual(split_trace(item["BODY[]"])[1], data)
        item = self.fetch_one(client, str(number), "(BODY.PEEK[HEADER.FIELDS (SUBJECT)] ENVELOPE BODYSTRUCTURE)")
        self.assertEqual(item["BODY[HEADER.FIELDS (SUBJECT)]"], b"Subject: after the long line\r\n\r\n")

    def test_fifty_thousand_headers(self):
        headers = b"".join(b"X-Header-%05d: value %d\r\n" % (i, i) for i in range(50_000))
        data = (b"From: many@example.org\r\nTo: bob@example.org\r\n" + headers +
                b"Subject: after fifty thousand headers\r\n\r\nBody.\r\n")
        client, number, item = self.deliver_and_fetch("bob", data)
        self.assertEqual(split_trace(item["BODY[]"])[1], data)
        item = self.fetch_one(client, str(number), "(BODY.PEEK[HEADER.FIELDS (SUBJECT X-Header-49999)] ENVELOPE)")
        self.assertEqual(item["BODY[HEADER.FIELDS (SUBJECT X-HEADER-49999)]"],
                         b"X-Header-49999: value 49999\r\nSubject: after fifty thousand headers\r\n\r\n")
        body = self.fetch_one(client, str(number), "BODY.PEEK[TEXT]")["BODY[TEXT]"]
        self.assertEqual(body, b"Body.\r\n")

    def test_broken_mime_stored_and_served(self):
        client, number, item = self.deliver_and_fetch("bob", BROKEN)
        self.assertEqual(split_trace(item["BODY[]"])[1], BROKEN)
        for items in ("BODYSTRUCTURE", "ENVELOPE", "BODY.PEEK[1]", "BODY.PEEK[2]", "BINARY.PEEK[1]", "BODY.PEEK[TEXT]"):
            with self.subTest(items=items):
                result = client.command(f"FETCH {number} ({items})")
                # Any answer but a dropped connection or a server error; a part
                # that cannot be decoded may get NO (e.g. UNKNOWN-CTE).
                self.assertIn(result.status, ("OK", "NO"), result.describe())
                for response in result.named("FETCH"):
                    response.tokens  # parses: the answer is well-formed
        client.command("SEARCH BODY base64").ok()
        client.command("NOOP").ok()

    def test_eight_bit_and_dot_lines(self):
        data = ("From: eight@example.org\r\nTo: bob@example.org\r\nSubject: 8bit\r\n"
                "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
                "Grüße ✓\r\n.\r\n..\r\n.leading dot\r\n").encode("utf-8") + b"\xff\xfe raw bytes\r\n"
        client, number, item = self.deliver_and_fetch("bob", data)
        self.assertEqual(split_trace(item["BODY[]"])[1], data)

    def test_only_crlf_dot_crlf_ends_data(self):
        # RFC 5321 4.1.1.4: only <CRLF>.<CRLF> ends the data. Treating a bare
        # LF or CR as a line end lets a sender smuggle a second transaction
        # past an MTA that does not (the "SMTP smuggling" class of bugs).
        # Refusing such data outright (5xx) is also safe.
        for n, separator in enumerate([b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\r\n.\r"]):
            with self.subTest(separator=separator):
                smuggled = (b"MAIL FROM:<evil@example.net>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n"
                            b"Subject: smuggled %d\r\n\r\nevil\r\n" % n)
                data = b"From: carrier@example.org\r\nSubject: carrier %d\r\n\r\nhello" % n + separator + smuggled
                client = self.lmtp()
                client.lhlo()
                transaction = client.transaction("carrier@example.org", ["alice@example.org"], data)
                [(code, _)] = transaction.final
                self.assertIn(code // 100, (2, 5), transaction)
                # The next reply answers the next command: no smuggled
                # commands ran and left replies queued.
                self.assertEqual(client.cmd("XPROBE")[0], 500)
                stored = self.delivered("alice", b"smuggled %d" % n)
                if code != 250:
                    self.assertEqual(stored, [], "refused data was stored")
                    continue
                self.assertEqual(len(stored), 1, f"expected one message, got {stored}")
                self.assertTrue(stored[0].startswith(b"From: carrier@example.org\r\nSubject: carrier"), stored[0])
                self.assertTrue(stored[0].endswith(smuggled), stored[0])
                if b"\n." not in separator or separator.startswith(b"\r\n."):
                    # No bare LF before the dot: dot-stuffing is unambiguous, so byte-exact.
                    self.assertEqual(stored, [data])

    def test_trace_headers(self):
        data = simple_message(subject="trace check")
        client = self.lmtp()
        client.lhlo("relay.client.example")
        transaction = client.transaction("bounce+x@lists.example.org", ["bob@example.org"], data)
        self.assertEqual([c for c, _ in transaction.final], [250])
        [stored] = [b for b in self.inbox("bob").values() if b"trace check" in b]
        trace, rest = split_trace(stored)
        self.assertEqual(rest, data)
        self.assertTrue(trace.startswith(b"Return-Path: <bounce+x@lists.example.org>\r\nReceived: "), trace)
        self.assertIn(b"relay.client.example", trace)
        self.assertIn(b"by " + HOSTNAME.encode(), trace)
        # Null reverse path.
        transaction = client.transaction("", ["bob@example.org"], simple_message(subject="null sender"))
        self.assertEqual([c for c, _ in transaction.final], [250])
        [stored] = [b for b in self.inbox("bob").values() if b"null sender" in b]
        self.assertTrue(stored.startswith(b"Return-Path: <>\r\n"), stored[:100])


class RecipientLimitTest(ServerTestCase):
    server_options = {"lmtp": {"max_recipients": 2}}

    def test_recipients_over_the_limit_get_452_and_the_rest_is_delivered(self):
        for name in ("ann", "ben", "cat"):
            self.server.add_user(name, f"pw-{name}")
        client = self.server.lmtp_raw()
        self.addCleanup(client.close)
        client.lhlo()
        data = simple_message(subject="limited")
        transaction = client.transaction("x@example.org", ["ann@example.org", "ben@example.org", "cat@example.org"], data)
        # RFC 5321 4.5.3.1.10: "452 too many recipients"; the client retries those later.
        self.assertEqual([code for code, _ in transaction.rcpt], [250, 250, 452])
        self.assertTrue(transaction.rcpt[2][1].startswith("4.5.3"), transaction.rcpt[2])
        self.assertEqual([code for code, _ in transaction.per_recipient], [250, 250])
        for name, count in (("ann", 1), ("ben", 1), ("cat", 0)):
            with self.server.raw(name, f"pw-{name}") as imap:
                self.assertEqual(imap.status("INBOX", "MESSAGES")["MESSAGES"], count, name)


if __name__ == "__main__":
    unittest.main()
