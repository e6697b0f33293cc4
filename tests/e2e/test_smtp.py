"""Inbound SMTP (RFC 5321, issue 5 items 1 and 2): EHLO extensions, delivery
to local users byte-exact and durable before 250, relaying and unknown users
refused at RCPT, SIZE, STARTTLS into a real TLS session, and the hygiene rules
against SMTP smuggling, STARTTLS command injection, early talkers and garbage.

Clients: Python's smtplib, swaks (an independent SMTP client, Debian's
package), and raw sockets (harness.Lmtp speaks any SMTP-shaped protocol line
by line) where exact bytes matter."""

import shutil
import smtplib
import socket
import ssl
import subprocess
import unittest

from harness import Lmtp, ServerTestCase, simple_message, split_trace, unique_marker, unverified_tls_context

SIZE_MAX = 100_000
ERRORS_MAX = 5
GREETING_DELAY_MS = 200

SMTP_TOML = f"""
[smtp]
listen = "127.0.0.1:0"
max_connections_per_ip = 0
max_message_size = {SIZE_MAX}
max_errors = {ERRORS_MAX}
greeting_delay_ms = {GREETING_DELAY_MS}
# This file tests the protocol and byte-exact delivery; sender checks and the
# spam score (which add header fields) are test_smtp_auth.py's and
# test_spam.py's. With them off no DNS is needed.
check_auth = false

[spam]
enabled = false

[domains]
local = ["example.org", "Example.NET"]
"""


class Smtp(Lmtp):
    """Raw SMTP: harness.Lmtp's line-level client, with EHLO and STARTTLS."""

    def ehlo(self, name: str = "client.test.example") -> list[str]:
        code, text = self.cmd(f"EHLO {name}")
        assert code == 250, (code, text)
        return text.split("\n")

    def start_tls(self) -> None:
        """Wraps the socket in TLS (after a 220 to STARTTLS)."""
        self.file.close()
        self.sock = unverified_tls_context().wrap_socket(self.sock, server_hostname="localhost")
        self.file = self.sock.makefile("rb")

    def closed(self) -> bool:
        """True once the server has closed the connection (EOF or reset)."""
        try:
            return self.file.readline(1 << 16) == b""
        except (ConnectionResetError, ssl.SSLError):
            return True


class SmtpTest(ServerTestCase):
    server_options = {"imaps": None, "lmtp": None, "extra_toml": SMTP_TOML}

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.passwords = {}
        for name in ("alice", "bob"):
            cls.passwords[name] = f"pw-{name}"
            cls.server.add_user(name, cls.passwords[name])

    @property
    def port(self) -> int:
        return self.server.ports["smtp"]

    def smtp(self) -> Smtp:
        client = Smtp(self.port)
        self.addCleanup(client.close)
        self.assertEqual(client.greeting[0], 220, client.greeting)
        return client

    def smtplib(self) -> smtplib.SMTP:
        client = smtplib.SMTP("127.0.0.1", self.port, timeout=10)
        self.addCleanup(client.close)
        return client

    def messages(self, user: str, marker: bytes) -> list[bytes]:
        """BODY[] of the user's INBOX messages that contain `marker`."""
        client = self.raw(user, self.passwords[user])
        client.select("INBOX", readonly=True).ok()
        if client.status("INBOX", "MESSAGES")["MESSAGES"] == 0:
            return []
        found = client.fetch("1:*", "BODY.PEEK[]").values()
        return [v["BODY[]"] for v in found if marker in v["BODY[]"]]

    # -- session -----------------------------------------------------------

    def test_greeting_and_ehlo_keywords(self):
        client = self.smtplib()
        code, _ = client.ehlo("client.test.example")
        self.assertEqual(code, 250)
        for keyword in ("pipelining", "8bitmime", "smtputf8", "enhancedstatuscodes", "starttls", "chunking"):
            self.assertTrue(client.has_extn(keyword), keyword)
        self.assertEqual(client.esmtp_features["size"], str(SIZE_MAX))
        raw = self.smtp()
        self.assertIn("ESMTP", raw.greeting[1])
        self.assertEqual(raw.cmd("LHLO x")[0], 500, "LHLO is LMTP's")
        self.assertEqual(raw.cmd("HELO client.test.example")[0], 250)

    # -- delivery ----------------------------------------------------------

    def test_delivery_is_byte_exact_and_readable_right_after_250(self):
        marker = unique_marker("smtp")
        data = simple_message(subject=marker, body="Line one.\r\n.leading dot\r\n\x80 8-bit\r\n")
        client = self.smtplib()
        refused = client.sendmail("sender@example.com", ["alice@example.org", "bob@EXAMPLE.net"], data,
                                  mail_options=["BODY=8BITMIME"])
        self.assertEqual(refused, {})
        # 250 came after the commit: the message is readable at once.
        for user in ("alice", "bob"):
            stored = self.messages(user, marker.encode())
            self.assertEqual(len(stored), 1, user)
            trace, body = split_trace(stored[0])
            self.assertEqual(body, data)
            self.assertTrue(trace.startswith(b"Return-Path: <sender@example.com>\r\n"), trace)
            self.assertIn(b"with ESMTP id", trace)

    def test_one_reply_after_data_with_pipelining(self):
        marker = unique_marker("pipe")
        client = self.smtp()
        client.ehlo()
        client.send(b"MAIL FROM:<s@example.com>\r\nRCPT TO:<alice@example.org>\r\n"
                    b"RCPT TO:<bob@example.org>\r\nDATA\r\n")
        self.assertEqual([client.reply()[0] for _ in range(4)], [250, 250, 250, 354])
        client.send(f"Subject: {marker}\r\n\r\nhi\r\n.\r\nNOOP\r\n".encode())
        code, text = client.reply()
        self.assertEqual(code, 250, text)
        self.assertIn("2.0.0", text)
        self.assertEqual(client.reply()[0], 250, "NOOP: one reply for the message, not one per recipient")

    def test_relaying_denied(self):
        client = self.smtp()
        client.ehlo()
        self.assertEqual(client.cmd("MAIL FROM:<s@example.com>")[0], 250)
        for address in ("alice@example.com", "alice@example.org.evil.test", "alice@sub.example.org"):
            code, text = client.cmd(f"RCPT TO:<{address}>")
            self.assertEqual(code, 550, address)
            self.assertTrue(text.startswith("5.7.1"), text)

    def test_unknown_user_at_rcpt(self):
        client = self.smtp()
        client.ehlo()
        client.cmd("MAIL FROM:<s@example.com>")
        code, text = client.cmd("RCPT TO:<nobody-here@example.org>")
        self.assertEqual(code, 550)
        self.assertTrue(text.startswith("5.1.1"), text)
        self.assertEqual(client.cmd("RCPT TO:<alice@example.org>")[0], 250)

    def test_size_declared_and_actual(self):
        client = self.smtp()
        client.ehlo()
        code, text = client.cmd(f"MAIL FROM:<s@example.com> SIZE={SIZE_MAX + 1}")
        self.assertEqual(code, 552)
        self.assertTrue(text.startswith("5.3.4"), text)
        marker = unique_marker("big")
        self.assertEqual(client.cmd("MAIL FROM:<s@example.com>")[0], 250)
        self.assertEqual(client.cmd("RCPT TO:<alice@example.org>")[0], 250)
        self.assertEqual(client.cmd("DATA")[0], 354)
        client.send(f"Subject: {marker}\r\n\r\n".encode() + b"x" * 998 + b"\r\n" + (b"y" * 998 + b"\r\n") * 100
                    + b".\r\n")
        self.assertEqual(client.reply()[0], 552)
        self.assertEqual(client.cmd("NOOP")[0], 250)
        self.assertEqual(self.messages("alice", marker.encode()), [])

    def test_bdat_chunks(self):
        """CHUNKING (RFC 3030): chunks framed by size, stored as sent (no
        dot-unstuffing), one reply per chunk, pipelined."""
        marker = unique_marker("bdat")
        head = f"Subject: {marker}\r\n\r\n".encode()
        chunks = [head + b"first\r\n.", b"still the message\r\n.\r\n", b"end\r\n"]
        client = self.smtp()
        client.ehlo()
        client.send(b"MAIL FROM:<s@example.com>\r\nRCPT TO:<bob@example.org>\r\n"
                    + b"".join(f"BDAT {len(c)}{' LAST' if i == len(chunks) - 1 else ''}\r\n".encode() + c
                               for i, c in enumerate(chunks)))
        replies = [client.reply() for _ in range(2 + len(chunks))]
        self.assertEqual([code for code, _ in replies], [250] * (2 + len(chunks)), replies)
        self.assertEqual(replies[2][1], f"2.0.0 {len(chunks[0])} octets received")
        stored = self.messages("bob", marker.encode())
        self.assertEqual(len(stored), 1)
        self.assertEqual(split_trace(stored[0])[1], b"".join(chunks))
        client.send(b"BDAT 6 LAST\r\nNOOP\r\n")
        self.assertEqual(client.reply()[0], 503, "BDAT without MAIL")
        self.assertEqual(client.cmd("NOOP")[0], 250, "the refused chunk's bytes were skipped")

    def test_swaks_plain_pipelined_and_starttls(self):
        swaks = shutil.which("swaks")
        self.assertIsNotNone(swaks, "swaks is needed (apt-get install -y swaks; .ci/run does it)")
        for options, word in (([], b"with ESMTP id"), (["--pipeline"], b"with ESMTP id"),
                              (["--tls"], b"with ESMTPS id")):
            marker = unique_marker("swaks")
            result = subprocess.run(
                [swaks, "--server", "127.0.0.1", "--port", str(self.port), "--from", "s@example.com",
                 "--to", "alice@example.org", "--header", f"Subject: {marker}", "--body", "via swaks",
                 "--timeout", "10", *options],
                capture_output=True, timeout=30)
            self.assertEqual(result.returncode, 0, result.stdout.decode() + result.stderr.decode())
            stored = self.messages("alice", marker.encode())
            self.assertEqual(len(stored), 1, options)
            trace, body = split_trace(stored[0])
            self.assertIn(word, trace, options)
            self.assertIn(b"via swaks", body)

    # -- STARTTLS ----------------------------------------------------------

    def test_starttls_with_smtplib(self):
        marker = unique_marker("tls")
        client = self.smtplib()
        client.ehlo()
        code, _ = client.starttls(context=unverified_tls_context())
        self.assertEqual(code, 220)
        client.ehlo()
        self.assertFalse(client.has_extn("starttls"), "no second STARTTLS")
        data = simple_message(subject=marker)
        self.assertEqual(client.sendmail("s@example.com", ["alice@example.org"], data), {})
        stored = self.messages("alice", marker.encode())
        self.assertEqual(len(stored), 1)
        trace, body = split_trace(stored[0])
        self.assertEqual(body, data)
        self.assertIn(b"with ESMTPS id", trace)

    def test_commands_pipelined_after_starttls_are_discarded(self):
        """CVE-2011-0411: what follows STARTTLS in the same packet was sent in
        the clear and must not run inside the TLS session."""
        client = self.smtp()
        client.ehlo()
        client.send(b"STARTTLS\r\nMAIL FROM:<injected@example.com>\r\n")
        self.assertEqual(client.reply()[0], 220)
        client.start_tls()
        # Had the MAIL run, this EHLO would get its reply (250 ... sender ok).
        self.assertIn("PIPELINING", client.ehlo())
        code, _ = client.cmd("RCPT TO:<alice@example.org>")
        self.assertEqual(code, 503, "the injected MAIL must not have started a transaction")

    # -- smuggling ---------------------------------------------------------

    def check_smuggling(self, separator: bytes) -> None:
        carrier_marker = unique_marker("carrier")
        smuggled_marker = unique_marker("smuggled")
        client = self.smtp()
        client.ehlo()
        client.send(b"MAIL FROM:<s@example.com>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
        self.assertEqual([client.reply()[0] for _ in range(3)], [250, 250, 354])
        client.send(f"Subject: {carrier_marker}\r\n\r\nhello".encode() + separator
                    + b"MAIL FROM:<evil@example.com>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n"
                    + f"Subject: {smuggled_marker}\r\n\r\nevil\r\n.\r\nQUIT\r\n".encode())
        code, text = client.reply()
        self.assertEqual(code, 550, text)
        self.assertTrue(text.startswith("5.6.0"), text)
        self.assertEqual(client.reply()[0], 221)
        for user in ("alice", "bob"):
            self.assertEqual(self.messages(user, smuggled_marker.encode()), [], user)
            self.assertEqual(self.messages(user, carrier_marker.encode()), [], user)

    def test_smuggling_lf_dot_lf(self):
        self.check_smuggling(b"\n.\n")

    def test_smuggling_cr_dot_cr(self):
        self.check_smuggling(b"\r.\r")

    def test_smuggling_lf_dot_crlf(self):
        self.check_smuggling(b"\n.\r\n")

    def test_smuggling_crlf_dot_lf(self):
        self.check_smuggling(b"\r\n.\n")

    def test_bare_lf_command_refused(self):
        client = self.smtp()
        client.ehlo()
        client.send(b"NOOP\n")
        self.assertEqual(client.reply()[0], 500)
        self.assertEqual(client.cmd("NOOP")[0], 250)

    # -- early talkers and errors -----------------------------------------

    def test_early_talker_is_refused(self):
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        self.addCleanup(sock.close)
        sock.sendall(b"EHLO impatient.example\r\n")
        received = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            received += chunk
        self.assertTrue(received.startswith(b"554 5.5.0 "), received)
        self.assertNotIn(b"220", received)

    def test_garbage_commands_end_at_the_error_bound(self):
        client = self.smtp()
        client.ehlo()
        for _ in range(ERRORS_MAX - 1):
            self.assertEqual(client.cmd("XYZZY")[0], 500)
        self.assertEqual(client.cmd("NOOP")[0], 250, "good commands do not reset the count, nor count")
        self.assertEqual(client.cmd("XYZZY")[0], 500)
        code, text = client.reply()
        self.assertEqual(code, 421, text)
        self.assertTrue(client.closed())


if __name__ == "__main__":
    unittest.main()
