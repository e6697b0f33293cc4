"""FETCH: the data files under tests/data are delivered over LMTP and read
back item by item (RFC 9051 6.4.5 and 7.5.2, RFC 3516 BINARY, RFC 8474)."""

import re
import unittest
from datetime import datetime, timezone

from harness import ServerTestCase, fetch_items, flag_set, simple_message, split_trace, text
from mime_expect import (
    ALTERNATIVE, ATTACHMENT, ATTACHMENT_PDF, ENCODED, FORWARDED, PLAIN,
    alternative_expectations, assert_body_structure, attachment_expectations, encoded_expectations,
    forwarded_expectations,
    multipart_parts, normalize_envelope, plain_expectations, select_fields, split_header,
)

INTERNALDATE_RE = re.compile(r"^(?:[ 0-3]\d)-(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)-\d{4} \d\d:\d\d:\d\d [+-]\d{4}$")
OBJECTID_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
SENDER = "list-bounces@example.org"


def parse_internaldate(value: str) -> datetime:
    return datetime.strptime(value.strip(), "%d-%b-%Y %H:%M:%S %z")


class FetchTest(ServerTestCase):
    """One user holds the four data files, delivered in this order."""

    FILES = [("plain", PLAIN), ("alternative", ALTERNATIVE), ("attachment", ATTACHMENT), ("encoded", ENCODED),
             ("forwarded", FORWARDED)]

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.user, cls.password = cls.server.new_user("reader")
        cls.delivered_at = datetime.now(timezone.utc)
        for _, message in cls.FILES:
            cls.server.deliver_ok([cls.user], message, sender=SENDER)

    def setUp(self) -> None:
        # Read-only, so FETCH BODY[] in one test cannot change another's flags.
        self.client = self.raw(self.user, self.password)
        selected = self.client.select("INBOX", readonly=True).ok()
        self.assertEqual(selected.numbers("EXISTS"), [len(self.FILES)])

    def number_of(self, name: str) -> int:
        return [n for n, _ in self.FILES].index(name) + 1

    def test_body_is_trace_headers_then_exact_delivered_bytes(self):
        data = self.client.fetch("1:*", "(BODY.PEEK[] RFC822.SIZE)")
        self.assertEqual(sorted(data), list(range(1, len(self.FILES) + 1)))
        for number, (name, message) in enumerate(self.FILES, start=1):
            with self.subTest(message=name):
                stored = data[number]["BODY[]"]
                trace, rest = split_trace(stored)
                self.assertEqual(rest, message)
                self.assertTrue(trace.startswith(f"Return-Path: <{SENDER}>\r\n".encode()), trace)
                self.assertEqual(int(data[number]["RFC822.SIZE"]), len(stored))

    def test_envelope(self):
        cases = [("plain", plain_expectations), ("alternative", alternative_expectations),
                 ("attachment", attachment_expectations), ("encoded", encoded_expectations),
                 ("forwarded", forwarded_expectations)]
        for name, expectations in cases:
            with self.subTest(message=name):
                envelope, _ = expectations()
                item = self.fetch_one(self.client, str(self.number_of(name)), "ENVELOPE")
                self.assertEqual(normalize_envelope(item["ENVELOPE"]), envelope)

    def test_bodystructure(self):
        cases = [("plain", plain_expectations), ("alternative", alternative_expectations),
                 ("attachment", attachment_expectations), ("encoded", encoded_expectations),
                 ("forwarded", forwarded_expectations)]
        for name, expectations in cases:
            with self.subTest(message=name):
                _, structure = expectations()
                item = self.fetch_one(self.client, str(self.number_of(name)), "BODYSTRUCTURE")
                assert_body_structure(self, item["BODYSTRUCTURE"], structure)

    def test_body_without_extension_data(self):
        # BODY (the non-extensible form) has no extension data at all.
        item = self.fetch_one(self.client, str(self.number_of("plain")), "BODY")
        _, structure = plain_expectations()
        body = item["BODY"]
        self.assertEqual(len(body), 8, f"BODY of a text part has exactly 8 fields: {body}")
        assert_body_structure(self, body, structure[:8])

    def test_header_fields_subset(self):
        item = self.fetch_one(self.client, str(self.number_of("plain")), "BODY.PEEK[HEADER.FIELDS (SUBJECT)]")
        self.assertEqual(item["BODY[HEADER.FIELDS (SUBJECT)]"], b"Subject: Lunch on Friday?\r\n\r\n")

    def test_header_fields_keep_folding_and_order_and_ignore_case(self):
        number = self.number_of("encoded")
        stored = self.fetch_one(self.client, str(number), "BODY.PEEK[]")["BODY[]"]
        header, _ = split_header(stored)
        item = self.fetch_one(self.client, str(number), "BODY.PEEK[HEADER.FIELDS (subject Received to)]")
        [(key, value)] = item.items()
        self.assertEqual(key.upper(), "BODY[HEADER.FIELDS (SUBJECT RECEIVED TO)]")
        # Our trace Received comes first, then the two from the message, raw.
        self.assertEqual(value, select_fields(header, ["subject", "received", "to"]))
        self.assertEqual(value.count(b"Received:"), 3)
        self.assertIn(b"=?UTF-8?B?w7xiZXI=?= [192.0.2.7])\r\n\tby mx.example.net", value)

    def test_header_fields_not(self):
        number = self.number_of("plain")
        stored = self.fetch_one(self.client, str(number), "BODY.PEEK[]")["BODY[]"]
        header, _ = split_header(stored)
        item = self.fetch_one(self.client, str(number), "BODY.PEEK[HEADER.FIELDS.NOT (Received Return-Path Cc)]")
        [(key, value)] = item.items()
        self.assertEqual(value, select_fields(header, ["received", "return-path", "cc"], exclude=True))
        self.assertTrue(value.startswith(b"From: Alice Example"), value)

    def test_header_and_text_sections(self):
        number = self.number_of("plain")
        item = self.fetch_one(self.client, str(number), "(BODY.PEEK[] BODY.PEEK[HEADER] BODY.PEEK[TEXT])")
        header, body = split_header(item["BODY[]"])
        self.assertEqual(item["BODY[HEADER]"], header)
        self.assertEqual(item["BODY[TEXT]"], body)
        _, delivered_body = split_header(PLAIN)
        self.assertEqual(body, delivered_body)

    def test_rfc822_items(self):
        number = self.number_of("plain")
        item = self.fetch_one(self.client, str(number), "(BODY.PEEK[] RFC822.HEADER RFC822.TEXT)")
        header, body = split_header(item["BODY[]"])
        self.assertEqual(item["RFC822.HEADER"], header)
        self.assertEqual(item["RFC822.TEXT"], body)
        whole = self.fetch_one(self.client, str(number), "RFC822")
        self.assertEqual(whole["RFC822"], item["BODY[]"])

    def test_partial_fetch_of_a_part(self):
        number = self.number_of("alternative")
        parts = multipart_parts(ALTERNATIVE, b"alt-boundary-42")
        item = self.fetch_one(self.client, str(number), "BODY.PEEK[1]<0.10>")
        # The origin octet is part of the answer's item name.
        self.assertEqual(item, {"BODY[1]<0>": parts[0][1][:10]})
        item = self.fetch_one(self.client, str(number), "BODY.PEEK[2]<6.14>")
        self.assertEqual(item, {"BODY[2]<6>": parts[1][1][6:20]})

    def test_partial_fetch_edges(self):
        number = self.number_of("plain")
        whole = self.fetch_one(self.client, str(number), "BODY.PEEK[]")["BODY[]"]
        item = self.fetch_one(self.client, str(number), "BODY.PEEK[]<0.20>")
        self.assertEqual(item, {"BODY[]<0>": whole[:20]})
        # A length past the end returns what there is.
        item = self.fetch_one(self.client, str(number), f"BODY.PEEK[]<{len(whole) - 5}.100000>")
        self.assertEqual(item, {f"BODY[]<{len(whole) - 5}>": whole[-5:]})
        # An origin past the end returns the empty string.
        item = self.fetch_one(self.client, str(number), f"BODY.PEEK[]<{len(whole) + 10}.10>")
        self.assertEqual(item, {f"BODY[]<{len(whole) + 10}>": b""})

    def test_mime_header_of_a_part(self):
        number = self.number_of("attachment")
        parts = multipart_parts(ATTACHMENT, b"mixed-7f3a")
        item = self.fetch_one(self.client, str(number), "(BODY.PEEK[2.MIME] BODY.PEEK[2])")
        self.assertEqual(item["BODY[2.MIME]"], parts[1][0])
        self.assertEqual(item["BODY[2]"], parts[1][1])

    def test_sections_of_an_encapsulated_message(self):
        number = self.number_of("forwarded")
        parts = multipart_parts(FORWARDED, b"fwd-boundary")
        inner_header, inner_body = split_header(PLAIN)
        item = self.fetch_one(self.client, str(number),
                              "(BODY.PEEK[2] BODY.PEEK[2.MIME] BODY.PEEK[2.HEADER] BODY.PEEK[2.TEXT] BODY.PEEK[2.1] "
                              "BODY.PEEK[2.HEADER.FIELDS (SUBJECT)] BODY.PEEK[1])")
        self.assertEqual(item["BODY[2]"], PLAIN)
        self.assertEqual(item["BODY[2.MIME]"], parts[1][0])
        self.assertEqual(item["BODY[2.HEADER]"], inner_header)
        self.assertEqual(item["BODY[2.TEXT]"], inner_body)
        # The body of a non-multipart encapsulated message is its part 1 (RFC 9051 6.4.5).
        self.assertEqual(item["BODY[2.1]"], inner_body)
        self.assertEqual(item["BODY[2.HEADER.FIELDS (SUBJECT)]"], b"Subject: Lunch on Friday?\r\n\r\n")
        self.assertEqual(item["BODY[1]"], parts[0][1])

    def test_binary_decodes_content_transfer_encoding(self):
        number = self.number_of("alternative")
        expected_text = "Grüße aus Berlin! This month: Brötchen and a very long line that is soft-wrapped.\r\n".encode()
        item = self.fetch_one(self.client, str(number), "(BINARY.PEEK[1] BINARY.SIZE[1])")
        self.assertEqual(item["BINARY[1]"], expected_text)
        self.assertEqual(int(item["BINARY.SIZE[1]"]), len(expected_text))

    def test_binary_attachment_with_nul_bytes_uses_literal8(self):
        number = self.number_of("attachment")
        result = self.client.command(f"FETCH {number} (BINARY.PEEK[2] BINARY.SIZE[2])").ok()
        [response] = result.named("FETCH")
        # Content with NUL can only travel as literal8 (RFC 3516 4.2).
        self.assertIn(b"BINARY[2] ~{%d}\r\n" % len(ATTACHMENT_PDF), response.raw)
        item = self.fetch_one(self.client, str(number), "(BINARY.PEEK[2] BINARY.SIZE[2])")
        self.assertEqual(item["BINARY[2]"], ATTACHMENT_PDF)
        self.assertEqual(int(item["BINARY.SIZE[2]"]), len(ATTACHMENT_PDF))

    def test_binary_of_base64_single_part(self):
        number = self.number_of("encoded")
        item = self.fetch_one(self.client, str(number), "BINARY.PEEK[1]")
        self.assertEqual(item["BINARY[1]"], "Schöne Grüße zum Frühstück.\r\nBis bald!\r\n".encode())

    def test_binary_partial(self):
        number = self.number_of("attachment")
        item = self.fetch_one(self.client, str(number), "BINARY.PEEK[2]<9.16>")
        self.assertEqual(item, {"BINARY[2]<9>": ATTACHMENT_PDF[9:25]})

    def test_binary_whole_7bit_message_is_body(self):
        number = self.number_of("plain")
        item = self.fetch_one(self.client, str(number), "(BINARY.PEEK[] BODY.PEEK[])")
        self.assertEqual(item["BINARY[]"], item["BODY[]"])

    def test_internaldate_of_delivery(self):
        data = self.client.fetch("1:*", "INTERNALDATE")
        for number, item in data.items():
            value = text(item["INTERNALDATE"])
            self.assertRegex(value, INTERNALDATE_RE)
            delta = abs((parse_internaldate(value) - self.delivered_at).total_seconds())
            self.assertLess(delta, 300, f"INTERNALDATE {value} is not the delivery time")

    def test_uid_fetch(self):
        data = self.client.fetch("1:*", "UID")
        uids = [int(data[n]["UID"]) for n in sorted(data)]
        self.assertEqual(uids, sorted(uids))
        self.assertEqual(len(set(uids)), len(uids))
        # UID FETCH answers carry UID even when not asked for.
        by_uid = self.client.fetch(str(uids[2]), "FLAGS", uid=True)
        self.assertEqual(list(by_uid), [3])
        self.assertEqual(int(by_uid[3]["UID"]), uids[2])
        # A UID range past the end still covers the last message ("*" is the largest UID).
        past = self.client.fetch(f"{uids[-1] + 100}:*", "FLAGS", uid=True)
        self.assertEqual({int(v["UID"]) for v in past.values()}, {uids[-1]})
        # UIDs that do not exist are not an error.
        result = self.client.command(f"UID FETCH {uids[-1] + 100} FLAGS").ok()
        self.assertEqual(result.named("FETCH"), [])

    def test_emailid_and_threadid(self):
        data = self.client.fetch("1:*", "(EMAILID THREADID)")
        email_ids = set()
        for number, item in data.items():
            email_id = item["EMAILID"]
            self.assertIsInstance(email_id, list)
            self.assertEqual(len(email_id), 1)
            self.assertRegex(text(email_id[0]), OBJECTID_RE)
            email_ids.add(text(email_id[0]))
            thread_id = item["THREADID"]
            self.assertIsInstance(thread_id, list, "THREADID should be assigned at delivery")
            self.assertRegex(text(thread_id[0]), OBJECTID_RE)
        self.assertEqual(len(email_ids), len(data), "each distinct message has its own EMAILID")

    def test_preview(self):
        # RFC 8970: advertised, so it works; decoded text of the first text part.
        # This session is IMAP4rev1 without UTF8=ACCEPT, so non-ASCII text must
        # come as a literal (the client checks every response for that).
        item = self.fetch_one(self.client, str(self.number_of("alternative")), "PREVIEW")
        self.assertTrue(text(item["PREVIEW"]).startswith("Grüße aus Berlin! This month: Brötchen"), item)
        item = self.fetch_one(self.client, str(self.number_of("plain")), "PREVIEW")
        self.assertTrue(text(item["PREVIEW"]).startswith("Hi Bob,"), item)
        self.assertLessEqual(len(text(item["PREVIEW"])), 256)

    def test_fetch_macros(self):
        fast = self.fetch_one(self.client, "1", "FAST")
        self.assertEqual(set(fast), {"FLAGS", "INTERNALDATE", "RFC822.SIZE"})
        all_ = self.fetch_one(self.client, "1", "ALL")
        self.assertEqual(set(all_), {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"})
        full = self.fetch_one(self.client, "1", "FULL")
        self.assertEqual(set(full), {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"})

    def test_examine_does_not_set_seen(self):
        self.client.fetch("1", "BODY[]")
        flags = self.fetch_one(self.client, "1", "FLAGS")["FLAGS"]
        self.assertNotIn("\\Seen", flag_set(flags))


class SeenFlagTest(ServerTestCase):
    """\\Seen is set by BODY[], BINARY[] and RFC822.TEXT, never by their .PEEK forms."""

    def test_seen_set_by_body_not_by_peek(self):
        user, password = self.new_user("seen")
        for i in range(6):
            self.server.deliver_ok([user], simple_message(subject=f"seen {i}"))
        client = self.raw(user, password)
        client.select("INBOX").ok()

        def flags(n):
            return flag_set(self.fetch_one(client, str(n), "FLAGS")["FLAGS"])

        peeks = ["BODY.PEEK[]", "BODY.PEEK[TEXT]", "BINARY.PEEK[1]", "RFC822.HEADER", "BODY.PEEK[HEADER.FIELDS (SUBJECT)]",
                 "RFC822.SIZE ENVELOPE BODYSTRUCTURE"]
        for item in peeks:
            client.fetch("1", f"({item})")
        self.assertEqual(flags(1), set(), "peeking must not set \\Seen")

        for number, item in [(2, "BODY[]"), (3, "BODY[TEXT]"), (4, "BINARY[1]"), (5, "RFC822.TEXT"), (6, "RFC822")]:
            with self.subTest(item=item):
                result = client.command(f"FETCH {number} {item}").ok()
                self.assertEqual(flags(number), {"\\Seen"})
                # RFC 9051 6.4.5: the flag change is reported (FLAGS in this or another FETCH response).
                reported = fetch_items(result).get(number, {}).get("FLAGS")
                self.assertIsNotNone(reported, f"no FLAGS reported after implicit \\Seen\n{result.describe()}")
                self.assertEqual(flag_set(reported), {"\\Seen"})


if __name__ == "__main__":
    unittest.main()
