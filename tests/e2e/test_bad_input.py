"""Bad input (issue 2, "Bad input"): malformed and unknown commands get a
tagged BAD and the connection goes on; command lines and literals are
bounded before they are read; NUL bytes in APPEND literals are stored and
served; the CLI and the config loader reject bad input with a clear message."""

import socket
import subprocess
import time
import unittest
from pathlib import Path

from harness import (
    POSTERN_BIN, ConnectionClosed, Lit, Result, Server, ServerTestCase, rss_kb, simple_message,
)

RSS_GROWTH_MAX_KB = 50 * 1024


def no_panic(test, completed: subprocess.CompletedProcess) -> str:
    stderr = completed.stderr.decode("utf-8", "replace")
    test.assertNotIn("panicked", stderr)
    test.assertNotIn("RUST_BACKTRACE", stderr)
    return stderr


class MalformedCommandTest(ServerTestCase):

    def setUp(self) -> None:
        self.user, self.password = self.new_user("bad")
        for i in range(2):
            self.server.deliver_ok([self.user], simple_message(subject=f"bad {i}"))
        self.client = self.raw(self.user, self.password)
        self.client.select("INBOX").ok()

    def assert_alive(self, client=None):
        try:
            (client or self.client).command("NOOP").ok()
        except (ConnectionClosed, OSError) as e:
            self.fail(f"the connection was closed: {e!r}")

    def test_malformed_commands_get_tagged_bad(self):
        commands = [
            "FETCH", "FETCH 1", "FETCH 1 (FLAGS", "FETCH 1 FLAGS)", "FETCH x FLAGS", "FETCH 1:x FLAGS",
            "FETCH 0 FLAGS", "FETCH 1 NOSUCHITEM", "FETCH 1 BODY[HEADER.FIELDS]", "FETCH 1 BODY[1.]",
            "FETCH 1 BODY[]<1.>", "FETCH 1 BODY[]<-1.5>", "STORE 1 +FLAGS.NOPE (\\Seen)", "STORE 1 FLAGS",
            "STORE 1 +FLAGS", "SELECT", "LIST", 'LIST ""', "STATUS INBOX", "STATUS INBOX (NOSUCHITEM)",
            "SEARCH NOSUCHKEY", "SEARCH", "UID FROB 1", "UID", "COPY 1", "MOVE", "APPEND", "CREATE", "RENAME a",
            'SELECT "unterminated', "NOOP extra-argument", "CAPABILITY now", "EXPUNGE 1", "UID EXPUNGE",
            "ENABLE", "CHECK please", "UID FETCH 4294967296 FLAGS", "FETCH 1:2:3 FLAGS", "FETCH 1,,2 FLAGS",
            'LIST "" "*" RETURN (NOSUCHOPTION)', "STORE 1 +FLAGS (\\Seen", "SEARCH CHARSET", "UID SEARCH UID x",
        ]
        for command in commands:
            with self.subTest(command=command):
                result = self.client.command(command)
                self.assertEqual(result.status, "BAD", result.describe())
        self.assert_alive()

    def test_unknown_commands_get_tagged_bad(self):
        for command in ("FROBNICATE", "XYZZY 1 2 3", "XGETQUOTAROOT INBOX", "SELECTX INBOX", "LOGINX a b"):
            with self.subTest(command=command):
                self.client.command(command).expect("BAD")
        self.assert_alive()

    def test_out_of_range_sequence_numbers(self):
        # RFC 9051 9 (seq-number): a message number above EXISTS is answered BAD.
        self.client.command("FETCH 3 FLAGS").expect("BAD")
        self.client.command("FETCH 1:3 FLAGS").expect("BAD")
        self.client.command("STORE 9 +FLAGS (\\Seen)").expect("BAD")
        # UIDs that do not exist are not an error.
        self.client.command("UID FETCH 1:4294967295 FLAGS").ok()
        # "*" in an empty mailbox is also out of range.
        self.client.select("Drafts").ok()
        self.client.command("FETCH * FLAGS").expect("BAD")
        self.client.command("STORE 1:* +FLAGS (\\Seen)").expect("BAD")
        self.client.command("COPY * INBOX").expect("BAD")
        self.client.command("UID FETCH 1:* FLAGS").ok()
        self.assert_alive()

    def test_lines_without_a_valid_tag(self):
        for line, expected in ((b"\r\n", b"* BAD"), (b"   \r\n", b"* BAD"), (b"+tag NOOP\r\n", b"* BAD"),
                               (b"lonelytag\r\n", b"lonelytag BAD"), (b'"quoted" NOOP\r\n', b"* BAD")):
            with self.subTest(line=line):
                self.client.send(line)
                response = self.client.read_response()
                self.assertTrue(response.raw.startswith(expected), response)
                self.assert_alive()

    def test_binary_garbage(self):
        self.client.send(b"g1 \xff\xfe\x00\x01\x02 garbage\r\n")
        response = self.client.read_response()
        self.assertRegex(response.raw, rb"^(g1|\*) BAD")
        self.assert_alive()
        self.client.command(b'SELECT "\xff\xfe"').expect("BAD", "NO")
        self.client.command("SELECT INBOX").ok()

    def test_deep_nesting_and_long_lists(self):
        for command in ("SEARCH " + "(" * 5000 + "ALL" + ")" * 5000, "SEARCH " + "NOT " * 5000 + "ALL",
                        "SEARCH " + "OR ALL " * 3000 + "ALL", "FETCH 1 BODY.PEEK[" + ".".join(["1"] * 500) + "]",
                        "FETCH " + ",".join(["1"] * 10000) + " FLAGS", "FETCH 1 (" + " ".join(["FLAGS"] * 5000) + ")",
                        'LIST "" (' + " ".join(['"x"'] * 3000) + ")"):
            with self.subTest(command=command[:40]):
                result = self.client.command(command)
                self.assertIn(result.status, ("OK", "NO", "BAD"), result.describe())
                self.assert_alive()

    def test_command_in_the_wrong_state(self):
        client = self.raw(self.user, self.password)
        for command in ("FETCH 1 FLAGS", "STORE 1 +FLAGS (\\Seen)", "EXPUNGE", "CLOSE", "UNSELECT", "SEARCH ALL", "COPY 1 INBOX"):
            with self.subTest(command=command):
                self.assertIn(client.command(command).status, ("BAD", "NO"))
        self.assert_alive(client)

    def test_overlong_command_line_is_bad_and_connection_survives(self):
        # Command lines are bounded (64 KiB by default); the rest of an
        # over-long line is skipped, not executed, and the session goes on.
        tag = "long1"
        self.client.send(f"{tag} NOOP ".encode() + b"x" * 300_000 + b"\r\n")
        result = self.client.finish(Result(tag=tag, command=b"NOOP xxx... (300 kB)"))
        self.assertEqual(result.status, "BAD", result.describe())
        self.assertEqual([r for r in result.untagged if r.name == "BYE"], [], "over-long line closed the session")
        self.assert_alive()

    def test_overlong_line_bytes_are_not_executed(self):
        # The tail of an over-long line must not be read as a command.
        tag = "long2"
        self.client.send(f"{tag} NOOP ".encode() + b"y" * 100_000 + b" inj1 CREATE Injected\r\n")
        try:
            self.client.finish(Result(tag=tag, command=b"NOOP yyy... inj1 CREATE Injected"))
        except ConnectionClosed:
            pass
        check = self.raw(self.user, self.password)
        listing = check.command('LIST "" "Injected"').ok()
        self.assertEqual(listing.named("LIST"), [])

    def test_huge_literal_announcement_is_refused_without_memory_growth(self):
        before = rss_kb(self.server.pid)
        for i in range(5):
            tag = f"huge{i}"
            self.client.send(f"{tag} APPEND INBOX {{2000000000}}\r\n".encode())
            response = self.client.read_response()
            self.assertNotEqual(response.kind, "+", "a 2 GB literal must be refused before it is read")
            self.assertEqual(response.kind, tag, response)
            self.assertRegex(response.raw, rb"^\S+ (NO|BAD)")
            self.assert_alive()
        after = rss_kb(self.server.pid)
        self.assertLess(after - before, RSS_GROWTH_MAX_KB, f"RSS grew from {before} to {after} KiB")

    def test_accepted_literals_are_not_preallocated(self):
        # Literals under the limit (64 MiB by default) that never arrive cost
        # only what arrived: ten sessions announcing 60 MB each. The sessions
        # are opened first, so the baseline includes what a session costs.
        clients = [self.raw(self.user, self.password) for _ in range(10)]
        for client in clients:
            client.command("NOOP").ok()
        before = rss_kb(self.server.pid)
        for client in clients:
            client.send(b"pre1 APPEND INBOX {60000000}\r\n")
            self.assertEqual(client.read_response().kind, "+")
            client.send(b"x" * 1000)
        self.assert_alive()
        after = rss_kb(self.server.pid)
        self.assertLess(after - before, RSS_GROWTH_MAX_KB, f"RSS grew from {before} to {after} KiB")

    def test_non_synchronizing_literal_over_the_limit_is_not_executed(self):
        client = self.raw(self.user, self.password)
        payload = b"inj2 CREATE InjectedToo\r\n" * 10
        client.send(b"nsl1 APPEND INBOX {100000000+}\r\n" + payload)
        response = client.read_response(timeout=10)
        self.assertRegex(response.raw, rb"^(nsl1 (NO|BAD)|\* BYE)", response)
        try:
            while True:
                response = client.read_response(timeout=2)
                self.assertFalse(response.raw.startswith(b"inj2 OK"), "bytes of a refused literal were executed")
        except (ConnectionClosed, TimeoutError, OSError):
            pass
        check = self.raw(self.user, self.password)
        self.assertEqual(check.command('LIST "" "InjectedToo"').ok().named("LIST"), [])

    def test_nul_bytes_in_append_literal(self):
        data = (b"From: nul@example.org\r\nSubject: NUL in APPEND\r\n\r\n"
                b"one\x00two\r\n\x00\r\nthree\x00\r\n")
        for literal in (Lit(data), Lit(data, binary=True)):
            with self.subTest(literal8=literal.binary):
                result = self.client.command("APPEND INBOX ", literal).ok()
                uid = result.code.split()[2]
                item = self.fetch_one(self.client, uid, "(BINARY.PEEK[] BODY.PEEK[] RFC822.SIZE)", uid=True)
                self.assertEqual(item["BINARY[]"], data)
                self.assertEqual(item["BODY[]"], data.replace(b"\x00", b"\x80"))
                self.assertEqual(int(item["RFC822.SIZE"]), len(data))
                fetched = self.client.command(f"UID FETCH {uid} BINARY.PEEK[]").ok()
                self.assertIn(b"BINARY[] ~{%d}\r\n" % len(data), fetched.named("FETCH")[0].raw)


class LiteralLimitTest(ServerTestCase):
    LIMIT = 1024 * 1024
    server_options = {"imap": {"max_literal": LIMIT}}

    def setUp(self) -> None:
        self.user, self.password = self.new_user("limit")
        self.client = self.raw(self.user, self.password)

    def test_appendlimit_advertised(self):
        caps = {str(c).upper() for c in self.client.command("CAPABILITY").ok().data("CAPABILITY")[0]}
        self.assertIn(f"APPENDLIMIT={self.LIMIT}", caps)

    def test_literal_over_max_literal_is_refused_before_reading(self):
        self.client.send(f"big1 APPEND INBOX {{{self.LIMIT + 1}}}\r\n".encode())
        response = self.client.read_response()
        self.assertEqual(response.kind, "big1", "no continuation for a literal over max_literal")
        self.assertRegex(response.raw, rb"^big1 (NO|BAD)")
        self.client.command("NOOP").ok()

    def test_literal_at_max_literal_is_accepted(self):
        head = b"From: limit@example.org\r\nSubject: exactly at the limit\r\n\r\n"
        data = head + b"z" * (self.LIMIT - len(head) - 2) + b"\r\n"
        self.assertEqual(len(data), self.LIMIT)
        result = self.client.command("APPEND INBOX ", Lit(data)).ok()
        uid = result.code.split()[2]
        self.client.select("INBOX", readonly=True).ok()
        item = self.fetch_one(self.client, uid, "BODY.PEEK[]", uid=True)
        self.assertEqual(item["BODY[]"], data)


class CliBadInputTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls) -> None:
        # No server: the CLI acts on the store directly.
        cls.server = Server()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.cleanup()

    def test_user_add_with_invalid_names(self):
        for name in ["", "bad name", "../evil", "a/b", "x\ny", "..", "tab\tname", "n" * 300, "semi;colon", "nul\x7f"]:
            with self.subTest(name=name):
                completed = self.server.cli("user", "add", name, input="password\n")
                self.assertNotEqual(completed.returncode, 0)
                stderr = no_panic(self, completed)
                self.assertTrue(stderr.strip(), "no message on stderr")
                if name and name.isprintable() and len(name) < 100:
                    self.assertIn(name, stderr, "the message should name the rejected user name")
        listed = self.server.cli_ok("user", "list").stdout.decode()
        self.assertNotIn("evil", listed)

    def test_user_add_twice_and_unknown_user_commands(self):
        self.server.add_user("dup", "password")
        completed = self.server.cli("user", "add", "dup", input="password\n")
        self.assertNotEqual(completed.returncode, 0)
        self.assertRegex(no_panic(self, completed).lower(), r"exist")
        for args in (("user", "del", "ghost"), ("user", "passwd", "ghost"), ("mailbox", "list", "ghost")):
            with self.subTest(args=args):
                completed = self.server.cli(*args, input="password\n")
                self.assertNotEqual(completed.returncode, 0)
                self.assertIn("ghost", no_panic(self, completed))

    def test_user_add_with_empty_password_is_refused(self):
        completed = self.server.cli("user", "add", "nopass", input="")
        self.assertNotEqual(completed.returncode, 0)
        no_panic(self, completed)
        completed = self.server.cli("user", "add", "nopass2", input="\n")
        self.assertNotEqual(completed.returncode, 0)

    def write_config(self, text: str) -> Path:
        path = self.server.tmp / f"bad-{time.monotonic_ns()}.toml"
        path.write_text(text, encoding="utf-8")
        return path

    def assert_config_error(self, text: str, line: int, key: str):
        path = self.write_config(text)
        for args in (("serve",), ("user", "list")):
            with self.subTest(args=args, key=key):
                completed = subprocess.run([POSTERN_BIN, "--config", str(path), *args], capture_output=True,
                                           timeout=30, stdin=subprocess.DEVNULL)
                self.assertNotEqual(completed.returncode, 0)
                stderr = no_panic(self, completed)
                self.assertIn(str(path), stderr, "the message names the file")
                self.assertRegex(stderr, rf"(line {line}\b|:{line}(:|\b))", "the message names the line")
                self.assertIn(key, stderr, "the message names the key")

    def test_config_unknown_key(self):
        data_dir = self.server.data_dir
        text = f'data_dir = "{data_dir}"\n\n[imap]\nlisten = "127.0.0.1:0"\nmax_literall = 5\n'
        self.assert_config_error(text, 5, "max_literall")

    def test_config_unknown_top_level_key_and_section(self):
        data_dir = self.server.data_dir
        self.assert_config_error(f'data_dir = "{data_dir}"\ndata_dri = "/tmp"\n', 2, "data_dri")
        self.assert_config_error(f'data_dir = "{data_dir}"\n\n[imapz]\nlisten = "127.0.0.1:0"\n', 3, "imapz")

    def test_config_wrong_value_type(self):
        data_dir = self.server.data_dir
        self.assert_config_error(f'data_dir = "{data_dir}"\n[auth]\nfailure_delay_ms = "soon"\n', 3, "failure_delay_ms")
        self.assert_config_error(f'data_dir = "{data_dir}"\n[lmtp]\nlisten = "127.0.0.1:0"\nmax_message_size = -5\n',
                                 4, "max_message_size")
        self.assert_config_error(f'data_dir = "{data_dir}"\n[imap]\nlisten = "not an address"\n', 3, "listen")

    def test_config_syntax_error_names_file_and_line(self):
        path = self.write_config(f'data_dir = "{self.server.data_dir}"\n[imap]\nlisten = "127.0.0.1:0\n')
        completed = subprocess.run([POSTERN_BIN, "--config", str(path), "serve"], capture_output=True, timeout=30,
                                   stdin=subprocess.DEVNULL)
        self.assertNotEqual(completed.returncode, 0)
        stderr = no_panic(self, completed)
        self.assertIn(str(path), stderr)
        self.assertRegex(stderr, r"(line 3\b|:3(:|\b))")

    def test_missing_config_file(self):
        path = self.server.tmp / "does-not-exist.toml"
        completed = subprocess.run([POSTERN_BIN, "--config", str(path), "serve"], capture_output=True, timeout=30,
                                   stdin=subprocess.DEVNULL)
        self.assertNotEqual(completed.returncode, 0)
        self.assertIn(str(path), no_panic(self, completed))

    def test_bind_failure_is_fatal_and_names_the_key(self):
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            address = "127.0.0.1:%d" % taken.getsockname()[1]
            path = self.write_config(f'data_dir = "{self.server.data_dir}"\n[lmtp]\nlisten = "127.0.0.1:0"\n'
                                     f'[imap]\nlisten = "{address}"\n')
            completed = subprocess.run([POSTERN_BIN, "--config", str(path), "serve"], capture_output=True, timeout=30,
                                       stdin=subprocess.DEVNULL)
        self.assertNotEqual(completed.returncode, 0)
        stderr = no_panic(self, completed)
        self.assertIn(address, stderr)
        self.assertRegex(stderr, r"imap\.listen|\[imap\]")
        self.assertNotIn(b"postern: ready", completed.stdout)


if __name__ == "__main__":
    unittest.main()


class LoginDeadlineTest(ServerTestCase):
    """`[imap] login_timeout_secs` is a deadline for logging in, not an idle timer:
    a client that keeps talking without logging in is still shown out."""

    DEADLINE_S = 2
    server_options = {"imap": {"login_timeout_secs": DEADLINE_S}}

    def test_talking_without_login_does_not_extend_the_deadline(self):
        client = self.raw()
        started = time.monotonic()
        # Commands answered one after another, each well inside the deadline: an
        # idle timer would never fire. The server must end the session anyway.
        closed_by = None
        while time.monotonic() - started < 5 * self.DEADLINE_S:
            try:
                client.send(b"n NOOP\r\n")
                response = client.read_response()
            except (OSError, EOFError, ConnectionError) as error:
                closed_by = error
                break
            if response.kind == "*" and response.raw.startswith(b"* BYE"):
                self.assertIn(b"login timeout", response.raw)
                closed_by = response
                break
            self.assertEqual(response.kind, "n", response.raw)
            time.sleep(self.DEADLINE_S / 8)  # pacing the client, not synchronising
        self.assertIsNotNone(closed_by, "the session outlived the login deadline by far")
        self.assertGreaterEqual(time.monotonic() - started, self.DEADLINE_S * 0.9)

    def test_a_logged_in_session_is_not_bound_by_it(self):
        user, password = self.new_user("deadline")
        client = self.raw(user, password)
        started = time.monotonic()
        while time.monotonic() - started < 2 * self.DEADLINE_S:
            client.command("NOOP").ok()
            time.sleep(self.DEADLINE_S / 8)
        client.command("NOOP").ok()

    def test_unauthenticate_starts_a_new_deadline(self):
        user, password = self.new_user("deadline")
        client = self.raw(user, password)
        time.sleep(self.DEADLINE_S * 1.5)  # longer than one deadline, logged in
        client.command("UNAUTHENTICATE").ok()
        # A fresh deadline: the session is usable at once after UNAUTHENTICATE...
        client.command("NOOP").ok()
        # ...and still ends if nobody logs in.
        response = client.read_response(timeout=5 * self.DEADLINE_S)
        self.assertTrue(response.raw.startswith(b"* BYE"), response.raw)
        self.assertIn(b"login timeout", response.raw)


class CompressTest(ServerTestCase):
    """COMPRESS=DEFLATE (RFC 4978) with an independent DEFLATE (Python's zlib):
    commands and responses, a large FETCH, a second COMPRESS, and a corrupt stream."""

    def setUp(self) -> None:
        self.user, self.password = self.new_user("compress")
        # Over 256 KiB, so the FETCH is written in several flushes.
        self.body = ("The same line, again and again. " * 40 + "\r\n") * 400
        self.server.deliver_ok([self.user], simple_message(subject="big", body=self.body))

    def compressed_session(self):
        import socket
        import zlib
        sock = socket.create_connection(("127.0.0.1", self.server.imap_port), timeout=10)
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"* OK")
        sock.sendall(f"a LOGIN {self.user} {self.password}\r\n".encode())
        while not reader.readline().startswith(b"a OK"):
            pass
        sock.sendall(b"b COMPRESS DEFLATE\r\n")
        self.assertTrue(reader.readline().startswith(b"b OK"))
        deflate = zlib.compressobj(wbits=-15)
        inflate = zlib.decompressobj(wbits=-15)
        buffered = bytearray()

        def send(line: bytes) -> None:
            sock.sendall(deflate.compress(line) + deflate.flush(zlib.Z_SYNC_FLUSH))

        def until(tag: bytes) -> bytes:
            while True:
                end = buffered.find(b"\r\n" + tag + b" ")
                start = 0 if buffered.startswith(tag + b" ") else (end + 2 if end >= 0 else -1)
                if start >= 0:
                    stop = buffered.find(b"\r\n", start)
                    if stop >= 0:
                        data = bytes(buffered[:stop + 2])
                        del buffered[:stop + 2]
                        return data
                chunk = sock.recv(65536)
                if not chunk:
                    raise AssertionError(f"connection closed; got {bytes(buffered)!r}")
                buffered.extend(inflate.decompress(chunk))

        return sock, send, until

    def test_commands_and_a_large_fetch_go_through_deflate(self):
        sock, send, until = self.compressed_session()
        try:
            send(b"c NOOP\r\n")
            self.assertIn(b"c OK", until(b"c"))
            send(b"d SELECT INBOX\r\n")
            self.assertIn(b"d OK", until(b"d"))
            send(b"e FETCH 1 BODY.PEEK[TEXT]\r\n")
            got = until(b"e")
            self.assertIn(self.body.encode(), got)
            send(b"f COMPRESS DEFLATE\r\n")
            self.assertIn(b"[COMPRESSIONACTIVE]", until(b"f"))
            send(b"g STARTTLS\r\n")
            self.assertIn(b"g BAD", until(b"g"))
        finally:
            sock.close()

    def test_idle_under_compress(self):
        sock, send, until = self.compressed_session()
        try:
            send(b"c SELECT INBOX\r\n")
            until(b"c")
            send(b"d IDLE\r\n")
            self.server.deliver_ok([self.user], simple_message(subject="while idling"))
            send(b"DONE\r\n")
            got = until(b"d")
            self.assertIn(b"* 2 EXISTS", got)
            self.assertIn(b"d OK", got)
            send(b"e NOOP\r\n")
            self.assertIn(b"e OK", until(b"e"))
        finally:
            sock.close()

    def test_a_corrupt_stream_ends_that_session_only(self):
        sock, send, until = self.compressed_session()
        try:
            sock.sendall(b"\xff" * 64)
            sock.settimeout(10)
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        finally:
            sock.close()
        # Others carry on.
        self.raw(self.user, self.password).command("NOOP").ok()

    def test_compress_needs_login_and_deflate(self):
        client = self.raw()
        self.assertEqual(client.command("COMPRESS DEFLATE").status, "BAD")
        client.login(self.user, self.password).ok()
        self.assertEqual(client.command("COMPRESS GZIP").status, "BAD")
        caps = {str(c).upper() for c in client.command("CAPABILITY").ok().data("CAPABILITY")[0]}
        self.assertIn("COMPRESS=DEFLATE", caps)
