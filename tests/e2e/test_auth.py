"""Authentication: CAPABILITY, LOGIN, AUTHENTICATE PLAIN (RFC 9051 6.1-6.2,
RFC 4959 SASL-IR, RFC 5530 response codes), STARTTLS and implicit TLS,
plaintext policy and the failed-login delay."""

import base64
import imaplib
import signal
import socket
import ssl
import time
import unittest

from harness import (
    Lit, Result, Server, ServerTestCase, quote, unverified_tls_context,
)

# Extensions IMAP4rev2 folds in, which must still be named for rev1 clients (issue 2, section 3).
FOLDED_EXTENSIONS = {
    "BINARY", "UIDPLUS", "MOVE", "ESEARCH", "SPECIAL-USE", "NAMESPACE", "UNSELECT", "ENABLE", "IDLE",
    "SASL-IR", "CHILDREN", "LIST-EXTENDED", "LIST-STATUS", "STATUS=SIZE", "LITERAL-",
}


def capabilities_of(result) -> set:
    data = result.data("CAPABILITY")
    assert len(data) == 1, result.describe()
    return {str(c).upper() for c in data[0]}


def close_quietly(client: imaplib.IMAP4) -> None:
    try:
        client.shutdown()
    except OSError:
        pass


def plain_response(authcid: str, password: str, authzid: str = "") -> str:
    return base64.b64encode(f"{authzid}\0{authcid}\0{password}".encode()).decode()


class AuthTest(ServerTestCase):

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.user, cls.password = cls.server.new_user("auth")

    def test_greeting_and_capability_before_login(self):
        client = self.raw()
        self.assertTrue(client.greeting.line.startswith("* OK"), client.greeting)
        result = client.command("CAPABILITY").ok()
        caps = capabilities_of(result)
        for cap in ("IMAP4REV2", "IMAP4REV1", "AUTH=PLAIN", "SASL-IR", "STARTTLS"):
            self.assertIn(cap, caps)
        self.assertNotIn("LOGINDISABLED", caps, "plaintext auth is allowed on loopback by default")

    def test_capability_after_login(self):
        client = self.raw(self.user, self.password)
        caps = capabilities_of(client.command("CAPABILITY").ok())
        self.assertIn("IMAP4REV2", caps)
        self.assertIn("IMAP4REV1", caps)
        self.assertEqual(FOLDED_EXTENSIONS - caps, set(), "extensions not advertised by name after login")

    def test_login_ok(self):
        client = self.raw()
        client.login(self.user, self.password).ok()
        client.select("INBOX").ok()

    def test_login_bad_password_and_unknown_user_look_the_same(self):
        client = self.raw()
        wrong = client.login(self.user, "not-the-password").expect("NO")
        self.assertEqual(wrong.code_name, "AUTHENTICATIONFAILED")
        unknown = client.login("nobody-here", "whatever").expect("NO")
        self.assertEqual(unknown.code_name, "AUTHENTICATIONFAILED")
        # Same words for both, so the answer does not tell which users exist.
        self.assertEqual(wrong.tagged.raw.split(b" ", 1)[1], unknown.tagged.raw.split(b" ", 1)[1])
        # Still not authenticated, and the connection still works.
        self.assertNotEqual(client.select("INBOX").status, "OK")
        client.login(self.user, self.password).ok()
        client.select("INBOX").ok()

    def test_login_with_literal_and_special_characters(self):
        password = 'sp ace "quoted" back\\slash ünïcödé'
        user, _ = self.new_user("literal")
        self.server.cli_ok("user", "passwd", user, input=password + "\n")
        client = self.raw()
        client.command(f"LOGIN {quote(user)} ", Lit(password.encode("utf-8"))).ok()
        client.select("INBOX").ok()
        # One character different is a different password.
        other = self.raw()
        other.login(user, password.replace("ü", "u")).expect("NO")

    def test_login_as_full_address_user(self):
        self.server.add_user("erin@example.com", "erin-pass")
        client = self.raw()
        client.login("erin@example.com", "erin-pass").ok()
        client.select("INBOX").ok()

    def test_authenticate_plain_with_initial_response(self):
        client = self.raw()
        result = client.command(f"AUTHENTICATE PLAIN {plain_response(self.user, self.password)}").ok()
        self.assertEqual(result.continuations, [], "SASL-IR needs no continuation")
        client.select("INBOX").ok()

    def test_authenticate_plain_with_continuation(self):
        client = self.raw()
        tag = client.next_tag()
        client.send(f"{tag} AUTHENTICATE PLAIN\r\n".encode())
        challenge = client.read_response()
        # An empty challenge: "+" SP and nothing (RFC 9051 continue-req, RFC 4616).
        self.assertIn(challenge.raw, (b"+ \r\n", b"+\r\n"))
        client.send(plain_response(self.user, self.password).encode() + b"\r\n")
        client.finish(Result(tag=tag, command=b"AUTHENTICATE PLAIN")).ok()
        client.select("INBOX").ok()

    def test_authenticate_plain_with_imaplib(self):
        client = imaplib.IMAP4("127.0.0.1", self.server.imap_port, timeout=30)
        self.addCleanup(close_quietly, client)
        typ, _ = client.authenticate("PLAIN", lambda _: f"\0{self.user}\0{self.password}".encode())
        self.assertEqual(typ, "OK")
        typ, data = client.select("INBOX")
        self.assertEqual(typ, "OK")

    def test_authenticate_plain_with_authzid_of_self(self):
        client = self.raw()
        client.command(f"AUTHENTICATE PLAIN {plain_response(self.user, self.password, self.user)}").ok()

    def test_authenticate_failures(self):
        other, other_password = self.new_user("victim")
        client = self.raw()
        wrong = client.command(f"AUTHENTICATE PLAIN {plain_response(self.user, 'wrong')}").expect("NO")
        self.assertEqual(wrong.code_name, "AUTHENTICATIONFAILED")
        # Acting as another user with one's own password is not allowed.
        client.command(f"AUTHENTICATE PLAIN {plain_response(self.user, self.password, other)}").expect("NO")
        # RFC 9051 6.2.2: a cancelled exchange and invalid base64 get a tagged BAD.
        tag = client.next_tag()
        client.send(f"{tag} AUTHENTICATE PLAIN\r\n".encode())
        self.assertTrue(client.read_response().raw.startswith(b"+"))
        client.send(b"*\r\n")
        client.finish(Result(tag=tag, command=b"AUTHENTICATE PLAIN / *")).expect("BAD")
        client.command("AUTHENTICATE PLAIN !!!not-base64!!!").expect("BAD")
        # RFC 9051 6.2.2: an unsupported mechanism gets NO.
        client.command("AUTHENTICATE X-UNKNOWN-MECH").expect("NO")
        # None of it logged anyone in.
        self.assertNotEqual(client.select("INBOX").status, "OK")
        client.command(f"AUTHENTICATE PLAIN {plain_response(self.user, self.password)}").ok()

    def test_commands_before_login_are_refused(self):
        client = self.raw()
        for command in ("SELECT INBOX", 'LIST "" "*"', 'STATUS INBOX (MESSAGES)', "FETCH 1 FLAGS",
                        "ENABLE IMAP4rev2", 'CREATE "x"', "NAMESPACE"):
            with self.subTest(command=command):
                result = client.command(command).expect("BAD", "NO")
                self.assertEqual([r for r in result.untagged if r.name in ("LIST", "STATUS", "EXISTS", "FETCH", "NAMESPACE")], [])
        client.command("NOOP").ok()

    def test_login_twice_is_refused(self):
        client = self.raw(self.user, self.password)
        client.login(self.user, self.password).expect("BAD", "NO")
        client.command("NOOP").ok()

    def test_logout(self):
        client = self.raw(self.user, self.password)
        tag = client.next_tag()
        client.send(f"{tag} LOGOUT\r\n".encode())
        bye = client.read_response()
        self.assertTrue(bye.raw.startswith(b"* BYE"), bye)
        done = client.read_response()
        self.assertTrue(done.raw.startswith(f"{tag} OK".encode()), done)
        # Then the server closes the connection.
        client.sock.settimeout(10)
        self.assertEqual(client.sock.recv(100), b"")

    def test_id_and_enable(self):
        client = self.raw()
        result = client.command('ID ("name" "postern-e2e" "version" "1")').ok()
        self.assertEqual(len(result.named("ID")), 1)
        client.login(self.user, self.password).ok()
        result = client.command("ID NIL").ok()
        self.assertEqual(len(result.named("ID")), 1)
        result = client.command("ENABLE IMAP4rev2").ok()
        self.assertEqual(result.data("ENABLED"), [["IMAP4rev2"]])

    def test_starttls_then_login(self):
        client = imaplib.IMAP4("127.0.0.1", self.server.imap_port, timeout=30)
        self.addCleanup(close_quietly, client)
        typ, _ = client.starttls(ssl_context=unverified_tls_context())
        self.assertEqual(typ, "OK")
        self.assertIsInstance(client.sock, ssl.SSLSocket)
        typ, _ = client.login(self.user, self.password)
        self.assertEqual(typ, "OK")
        typ, _ = client.select("INBOX")
        self.assertEqual(typ, "OK")
        client.logout()

    def test_starttls_capabilities_and_state(self):
        client = self.raw()
        client.starttls().ok()
        caps = capabilities_of(client.command("CAPABILITY").ok())
        self.assertNotIn("STARTTLS", caps)
        self.assertIn("AUTH=PLAIN", caps)
        # TLS is already active.
        client.command("STARTTLS").expect("BAD", "NO")
        client.login(self.user, self.password).ok()
        # STARTTLS is a not-authenticated-state command.
        plain = self.raw(self.user, self.password)
        plain.command("STARTTLS").expect("BAD", "NO")

    def test_starttls_discards_commands_pipelined_in_the_clear(self):
        # CVE-2011-0411 class: a command sent in the clear after STARTTLS must
        # not be executed as if it had come over TLS.
        client = self.raw()
        client.send(b"S1 STARTTLS\r\nS2 LOGIN " + quote(self.user).encode() + b" " + quote(self.password).encode() + b"\r\n")
        line = client.read_response()
        self.assertTrue(line.raw.startswith(b"S1 OK"), line)
        self.assertEqual(client.buffer, b"")
        client.sock = unverified_tls_context().wrap_socket(client.sock, server_hostname="localhost")
        result = client.command("SELECT INBOX")
        self.assertEqual([r for r in result.untagged if r.kind == "S2"], [])
        self.assertNotEqual(result.status, "OK", "the LOGIN sent in the clear must not have taken effect")

    def test_implicit_tls(self):
        client = imaplib.IMAP4_SSL("127.0.0.1", self.server.imaps_port, ssl_context=unverified_tls_context(), timeout=30)
        self.addCleanup(close_quietly, client)
        self.assertNotIn("STARTTLS", client.capabilities)
        typ, _ = client.login(self.user, self.password)
        self.assertEqual(typ, "OK")
        typ, data = client.select("INBOX")
        self.assertEqual(typ, "OK")
        client.logout()


class CertificateTest(unittest.TestCase):

    def test_self_signed_certificate_is_written_to_data_dir_and_reused(self):
        with Server() as server:
            der = self._peer_certificate(server.imaps_port)
            pems = self._certificates_in(server.data_dir)
            self.assertIn(der, pems, "the certificate served is not the one written into data_dir")
            server.restart()
            self.assertEqual(self._peer_certificate(server.imaps_port), der,
                             "a new certificate was made on restart instead of reusing the one in data_dir")

    def test_sighup_keeps_sessions(self):
        # SIGHUP reloads certificates; sessions, plain and TLS, carry on.
        with Server() as server:
            user, password = server.new_user("hup")
            plain = server.raw(user, password)
            secure = server.raw(user, password, tls=True)
            try:
                plain.select("INBOX").ok()
                server.process.send_signal(signal.SIGHUP)
                # A new TLS handshake after the reload proves it was handled.
                self.assertEqual(self._peer_certificate(server.imaps_port), self._peer_certificate(server.imaps_port))
                plain.command("NOOP").ok()
                secure.command("NOOP").ok()
                self.assertIsNone(server.process.poll(), "SIGHUP stopped the server")
            finally:
                plain.close()
                secure.close()

    @staticmethod
    def _peer_certificate(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            with unverified_tls_context().wrap_socket(sock, server_hostname="localhost") as tls:
                return tls.getpeercert(binary_form=True)

    @staticmethod
    def _certificates_in(directory) -> list:
        found = []
        for path in directory.rglob("*"):
            if not path.is_file() or path.stat().st_size > 1 << 20:
                continue
            content = path.read_bytes()
            start = 0
            while True:
                begin = content.find(b"-----BEGIN CERTIFICATE-----", start)
                if begin < 0:
                    break
                end = content.find(b"-----END CERTIFICATE-----", begin)
                pem = content[begin:end + len(b"-----END CERTIFICATE-----")].decode("ascii")
                found.append(ssl.PEM_cert_to_DER_cert(pem))
                start = end + 1
        return found


class FailedLoginDelayTest(ServerTestCase):
    DELAY_MS = 400
    server_options = {"auth": {"failure_delay_ms": DELAY_MS}}

    def test_failed_login_is_delayed_and_right_password_still_works(self):
        user, password = self.new_user("slow")
        client = self.raw()
        start = time.monotonic()
        client.login(user, "wrong").expect("NO")
        elapsed_ms = (time.monotonic() - start) * 1000
        self.assertGreaterEqual(elapsed_ms, self.DELAY_MS, "failed LOGIN answered before the configured delay")

        start = time.monotonic()
        client.command(f"AUTHENTICATE PLAIN {plain_response(user, 'wrong')}").expect("NO")
        elapsed_ms = (time.monotonic() - start) * 1000
        self.assertGreaterEqual(elapsed_ms, self.DELAY_MS, "failed AUTHENTICATE answered before the configured delay")

        # Guessing slows down; the owner is never locked out.
        client.login(user, password).ok()


class GuessingSlowsDownTest(ServerTestCase):
    DELAY_MS = 50
    server_options = {"auth": {"failure_delay_ms": DELAY_MS}}

    def test_repeated_failures_slow_down_but_never_lock_out(self):
        user, password = self.new_user("guess")
        client = self.raw()
        durations_ms = []
        for attempt in range(9):
            start = time.monotonic()
            client.login(user, f"guess-{attempt}").expect("NO")
            durations_ms.append((time.monotonic() - start) * 1000)
        self.assertTrue(all(d >= self.DELAY_MS for d in durations_ms), durations_ms)
        # Guessing gets slower than the flat per-failure delay...
        self.assertGreaterEqual(durations_ms[-1], 3 * self.DELAY_MS, durations_ms)
        # ...but the owner still gets in, from another connection too.
        client.login(user, password).ok()
        self.raw(user, password).select("INBOX").ok()


def cached_logins(server) -> int:
    """postern_imap_logins_cached_total from /metrics."""
    text = server.http("GET", "/metrics").text()
    for line in text.splitlines():
        if line.startswith("postern_imap_logins_cached_total "):
            return int(line.split()[1])
    raise AssertionError("postern_imap_logins_cached_total is not in /metrics")


class CredentialCacheTest(ServerTestCase):
    """A LOGIN with the password verified moments ago is vouched for by the
    credential cache (no Argon2id run); a wrong password is never, and a
    changed password no longer lets the old one in."""
    server_options = {"http": {"listen": ["127.0.0.1:0"]}}

    def test_a_returning_login_is_cached_and_a_wrong_one_is_not(self):
        user, password = self.new_user("cache")
        before = cached_logins(self.server)
        self.raw(user, password).logout()
        self.assertEqual(cached_logins(self.server), before, "the first login runs the hash")
        self.raw(user, password).logout()
        self.assertEqual(cached_logins(self.server), before + 1, "the second login is vouched for")
        client = self.raw()
        client.login(user, "not-" + password).expect("NO")
        client.login(user.upper(), password).ok()
        self.assertEqual(cached_logins(self.server), before + 2)

    def test_a_changed_password_is_checked_again(self):
        user, password = self.new_user("cache-change")
        self.raw(user, password).logout()
        self.raw(user, password).logout()
        self.server.cli_ok("user", "passwd", user, input="a-new-password\n")
        before = cached_logins(self.server)
        self.raw().login(user, password).expect("NO")
        self.raw(user, "a-new-password").logout()
        self.assertEqual(cached_logins(self.server), before)


class CredentialCacheOffTest(ServerTestCase):
    server_options = {"auth": {"credential_cache_secs": 0}, "http": {"listen": ["127.0.0.1:0"]}}

    def test_every_login_is_checked_in_full(self):
        user, password = self.new_user("nocache")
        for _ in range(3):
            self.raw(user, password).logout()
        self.assertEqual(cached_logins(self.server), 0)


class PlaintextNeverTest(ServerTestCase):
    # Plaintext passwords are an auth setting (they apply to every protocol), so the key
    # lives in [auth]: `plaintext = "never" | "loopback" | "always"`.
    server_options = {"auth": {"plaintext": "never"}}

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.user, cls.password = cls.server.new_user("tls")

    def test_logindisabled_advertised_and_plaintext_refused(self):
        client = self.raw()
        caps = capabilities_of(client.command("CAPABILITY").ok())
        self.assertIn("LOGINDISABLED", caps)
        self.assertIn("STARTTLS", caps)
        self.assertNotIn("AUTH=PLAIN", caps)
        client.login(self.user, self.password).expect("NO")
        client.command(f"AUTHENTICATE PLAIN {plain_response(self.user, self.password)}").expect("NO", "BAD")
        self.assertNotEqual(client.select("INBOX").status, "OK", "a refused LOGIN must not log in")

    def test_login_allowed_after_starttls(self):
        client = self.raw()
        client.starttls().ok()
        caps = capabilities_of(client.command("CAPABILITY").ok())
        self.assertNotIn("LOGINDISABLED", caps)
        self.assertIn("AUTH=PLAIN", caps)
        client.login(self.user, self.password).ok()
        client.select("INBOX").ok()

    def test_login_allowed_on_implicit_tls(self):
        client = self.raw(tls=True)
        caps = capabilities_of(client.command("CAPABILITY").ok())
        self.assertNotIn("LOGINDISABLED", caps)
        client.login(self.user, self.password).ok()


if __name__ == "__main__":
    unittest.main()
