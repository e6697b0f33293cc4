"""PROXY protocol (v1 and v2) behind a load balancer (issue 10, item 5).

The "balancer" here is the test itself connecting from 127.0.0.9, the one
address `[proxy] from` trusts: it opens each connection with a PROXY header
naming a client in 203.0.113.0/24, as HAProxy would. The checks are that the
server then sees that client everywhere it would see the socket's address
(connection caps, spam blocks, trace headers), that anyone else is served
as usual (a header from them is just bytes), and that a trusted peer that
sends no header, a bad one, or one too slowly is closed without a greeting.
"""

from __future__ import annotations

import socket
import ssl
import struct
import time
import unittest

from harness import Server, simple_message, unique_marker, unverified_tls_context

BALANCER = "127.0.0.9"
HEADER_TIMEOUT_MS = 500
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(client: str, port: int = 50000) -> bytes:
    return f"PROXY TCP4 {client} 127.0.0.1 {port} 143\r\n".encode()


def v2(client: str | None, port: int = 50000) -> bytes:
    if client is None:  # LOCAL: the balancer's own connection (a health check)
        return V2_SIGNATURE + bytes([0x20, 0x00]) + struct.pack("!H", 0)
    body = socket.inet_aton(client) + socket.inet_aton("127.0.0.1") + struct.pack("!HH", port, 143)
    return V2_SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


def connect(port: int, header: bytes | None, source: str = BALANCER) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=15, source_address=(source, 0))
    if header:
        sock.sendall(header)
    return sock


def read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            return data
        data += chunk
    return data


def closed_without_a_word(sock: socket.socket) -> bool:
    sock.settimeout(10)
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True


def smtp_reply(sock: socket.socket) -> tuple[int, str]:
    lines = []
    while True:
        line = read_line(sock).decode()
        lines.append(line)
        if len(line) < 4 or line[3] != "-":
            break
    return int(lines[-1][:3]), "".join(lines)


def smtp_command(sock: socket.socket, line: str) -> tuple[int, str]:
    sock.sendall(line.encode() + b"\r\n")
    return smtp_reply(sock)


class ProxyProtocolTest(unittest.TestCase):
    server: Server

    @classmethod
    def setUpClass(cls) -> None:
        cls.server = Server(
            imap={"max_connections_per_ip": 2},
            extra_toml=(
                '\n[smtp]\nlisten = "127.0.0.1:0"\ngreeting_delay_ms = 0\ncheck_auth = false\n'
                "max_connections_per_ip = 0\nmax_connections_per_net = 0\n"
                '[domains]\nlocal = ["example.com"]\n'
                f'[proxy]\nfrom = ["{BALANCER}"]\nheader_timeout_ms = {HEADER_TIMEOUT_MS}\n'
            ),
        )
        cls.server.start()
        cls.user, cls.password = cls.server.new_user("px")

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.stop()
        cls.server.cleanup()

    def stored(self, marker: str) -> bytes:
        with self.server.raw(self.user, self.password) as client:
            client.select("INBOX").ok()
            found = client.search(f'SUBJECT "{marker}"')
            self.assertEqual(len(found), 1, marker)
            items = client.fetch(str(found[0]), "(BODY.PEEK[HEADER])")
            return next(iter(items.values()))["BODY[HEADER]"]

    def lmtp_deliver(self, header: bytes, marker: str) -> None:
        with connect(self.server.lmtp_port, header) as sock:
            self.assertTrue(read_line(sock).startswith(b"220"))
            code, _ = smtp_command(sock, "LHLO balancer.test")
            self.assertEqual(code, 250)
            self.assertEqual(smtp_command(sock, "MAIL FROM:<a@example.org>")[0], 250)
            self.assertEqual(smtp_command(sock, f"RCPT TO:<{self.user}@example.com>")[0], 250)
            self.assertEqual(smtp_command(sock, "DATA")[0], 354)
            sock.sendall(simple_message(subject=marker) + b".\r\n")
            self.assertEqual(smtp_reply(sock)[0], 250)

    def test_lmtp_trace_header_names_the_client_v1_and_v2(self) -> None:
        for header, client in ((v1("203.0.113.7"), "203.0.113.7"), (v2("203.0.113.8"), "203.0.113.8")):
            marker = unique_marker("lmtp")
            self.lmtp_deliver(header, marker)
            received = self.stored(marker)
            self.assertIn(f"({client})".encode(), received)
            self.assertNotIn(BALANCER.encode(), received)

    def test_connection_caps_count_the_client_not_the_balancer(self) -> None:
        # [imap] max_connections_per_ip = 2: two from one client, a third
        # from the same client is turned away, one from another client is not.
        port = self.server.imap_port
        held = [connect(port, v2("203.0.113.20")) for _ in range(2)]
        try:
            for sock in held:
                self.assertTrue(read_line(sock).startswith(b"* OK"))
            with connect(port, v2("203.0.113.20")) as third:
                line = read_line(third)
                self.assertTrue(line.startswith(b"* BYE"), line)
                self.assertIn(b"max_connections_per_ip", line)
            with connect(port, v1("203.0.113.21")) as other:
                self.assertTrue(read_line(other).startswith(b"* OK"))
        finally:
            for sock in held:
                sock.close()

    def test_spam_blocks_see_the_client(self) -> None:
        self.server.cli_ok("spam", "block", "ip:203.0.113.66", "--reason", "proxy test")
        port = self.server.smtp_port
        with connect(port, v1("203.0.113.66")) as sock:
            self.assertEqual(smtp_reply(sock)[0], 220)
            smtp_command(sock, "EHLO client.test")
            code, text = smtp_command(sock, "MAIL FROM:<a@example.org>")
            self.assertEqual(code, 550, text)
        marker = unique_marker("smtp")
        with connect(port, v2("203.0.113.67")) as sock:
            self.assertEqual(smtp_reply(sock)[0], 220)
            smtp_command(sock, "EHLO client.test")
            self.assertEqual(smtp_command(sock, "MAIL FROM:<a@example.org>")[0], 250)
            self.assertEqual(smtp_command(sock, f"RCPT TO:<{self.user}@example.com>")[0], 250)
            self.assertEqual(smtp_command(sock, "DATA")[0], 354)
            sock.sendall(simple_message(subject=marker) + b".\r\n")
            self.assertEqual(smtp_reply(sock)[0], 250)
        self.assertIn(b"(203.0.113.67)", self.stored(marker))

    def test_imaps_handshake_follows_a_v2_header(self) -> None:
        sock = connect(self.server.imaps_port, v2("203.0.113.30"))
        with unverified_tls_context().wrap_socket(sock, server_hostname="localhost") as tls:
            self.assertTrue(read_line(tls).startswith(b"* OK"))

    def test_a_local_header_speaks_for_the_balancer(self) -> None:
        with connect(self.server.imap_port, v2(None)) as sock:
            self.assertTrue(read_line(sock).startswith(b"* OK"))

    def test_others_are_served_as_usual_and_their_header_is_just_bytes(self) -> None:
        with connect(self.server.imap_port, None, source="127.0.0.1") as sock:
            self.assertTrue(read_line(sock).startswith(b"* OK"))
            sock.sendall(v1("203.0.113.99"))
            self.assertIn(b"BAD", read_line(sock))

    def test_a_trusted_peer_without_a_good_header_is_closed_without_a_greeting(self) -> None:
        cases = {
            "no header": b"A1 CAPABILITY\r\n",
            "garbage": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"x" * 100,
            "v1 without its end": b"PROXY TCP4 " + b"1" * 200,
            "v1 malformed": b"PROXY TCP4 203.0.113.7 nonsense\r\n",
            "v2 with a bad family": V2_SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", 3) + b"abc",
            "v2 too long": V2_SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", 60000),
        }
        for name, data in cases.items():
            with self.subTest(name), connect(self.server.imap_port, data) as sock:
                self.assertTrue(closed_without_a_word(sock), name)
        # Half a header, then silence: closed after header_timeout_ms.
        started = time.monotonic()
        with connect(self.server.imap_port, b"PROXY TCP4 203.0.") as sock:
            self.assertTrue(closed_without_a_word(sock))
        self.assertGreaterEqual(time.monotonic() - started, HEADER_TIMEOUT_MS / 1000 * 0.8)
        # The server is unharmed.
        with connect(self.server.imap_port, v1("203.0.113.40")) as sock:
            self.assertTrue(read_line(sock).startswith(b"* OK"))

    def test_bad_config_is_refused_with_the_key_named(self) -> None:
        for extra, needle in (
            ('\n[proxy]\nfrom = ["10.0.0.0/33"]\n', "[proxy] from"),
            ('\n[proxy]\nfrom = ["10.0.0.0/8"]\nlisteners = ["pop3"]\n', "[proxy] listeners"),
            ('\n[proxy]\nheader_timeout_ms = 0\n', "header_timeout_ms"),
        ):
            server = Server(extra_toml=extra)
            self.addCleanup(server.cleanup)
            result = server.cli("config", "check")
            self.assertNotEqual(result.returncode, 0, extra)
            self.assertIn(needle, result.stderr.decode(), extra)


if __name__ == "__main__":
    unittest.main()
