"""The admin CLI: users, aliases, mailboxes, local delivery and the default
config; through the admin socket while the server runs (effects are
immediate) and directly on the store when it does not."""

import resource
import stat
import subprocess
import tomllib
import unittest

from harness import POSTERN_BIN, Server, ServerTestCase, simple_message, split_trace

EX_NOUSER = 67


def words(completed: subprocess.CompletedProcess) -> list[list[str]]:
    """stdout as lines of whitespace-separated words."""
    return [line.split() for line in completed.stdout.decode("utf-8", "replace").splitlines()]


def listed(completed: subprocess.CompletedProcess, name: str) -> bool:
    return any(name in line for line in words(completed))


class CliWhileRunningTest(ServerTestCase):

    def login_status(self, user, password):
        client = self.raw()
        return client.login(user, password).status

    def test_user_add_list_passwd_del(self):
        self.server.add_user("frank", "first-password")
        # Immediate: no waiting between the CLI and the login.
        self.assertEqual(self.login_status("frank", "first-password"), "OK")
        self.assertTrue(listed(self.server.cli_ok("user", "list"), "frank"))

        self.server.cli_ok("user", "passwd", "frank", input="second-password\n")
        self.assertEqual(self.login_status("frank", "first-password"), "NO")
        self.assertEqual(self.login_status("frank", "second-password"), "OK")

        self.server.deliver_ok(["frank"], simple_message(subject="for frank"))
        self.server.cli_ok("user", "del", "frank")
        self.assertEqual(self.login_status("frank", "second-password"), "NO")
        self.assertFalse(listed(self.server.cli_ok("user", "list"), "frank"))
        replies = self.server.deliver(["frank@example.org"], simple_message(subject="after del"))
        self.assertEqual([code for code, _ in replies], [550])

        # A new user of the same name starts empty: nothing of the old one comes back.
        self.server.add_user("frank", "third-password")
        client = self.raw("frank", "third-password")
        self.assertEqual(client.status("INBOX", "MESSAGES")["MESSAGES"], 0)

    def test_password_from_stdin_keeps_inner_and_outer_spaces(self):
        self.server.add_user("spacey", "  two words  ")
        self.assertEqual(self.login_status("spacey", "  two words  "), "OK")
        self.assertEqual(self.login_status("spacey", "two words"), "NO")

    def test_full_address_user(self):
        self.server.add_user("gina@example.com", "gina-password")
        self.assertTrue(listed(self.server.cli_ok("user", "list"), "gina@example.com"))
        self.assertEqual(self.login_status("gina@example.com", "gina-password"), "OK")

    def test_alias_add_list_del(self):
        self.server.add_user("hank", "hank-password")
        self.server.add_user("ines", "ines-password")
        self.server.cli_ok("alias", "add", "sales@example.com", "hank", "ines")
        aliases = self.server.cli_ok("alias", "list")
        line = next((l for l in words(aliases) if "sales@example.com" in l), None)
        self.assertIsNotNone(line, aliases.stdout)
        self.assertIn("hank", " ".join(line))
        self.assertIn("ines", " ".join(line))
        data = simple_message(subject="to sales")
        self.server.deliver_ok(["sales@example.com"], data)
        for user in ("hank", "ines"):
            client = self.raw(user, f"{user}-password")
            client.select("INBOX", readonly=True).ok()
            self.assertEqual(split_trace(client.fetch("1", "BODY.PEEK[]")[1]["BODY[]"])[1], data)
        self.server.cli_ok("alias", "del", "sales@example.com")
        self.assertFalse(listed(self.server.cli_ok("alias", "list"), "sales@example.com"))
        replies = self.server.deliver(["sales@example.com"], simple_message())
        self.assertEqual([code for code, _ in replies], [550])

    def test_alias_keeps_working_after_a_member_is_deleted(self):
        self.server.add_user("rita", "rita-password")
        self.server.add_user("sam", "sam-password")
        self.server.cli_ok("alias", "add", "desk@example.com", "rita", "sam")
        deleted = self.server.cli("user", "del", "sam")
        if deleted.returncode != 0:
            # Refusing to delete a user an alias still names is fine, if it says so.
            self.assertIn("desk@example.com", deleted.stderr.decode("utf-8", "replace"))
            return
        # Otherwise the alias still reaches its remaining member; the mail for
        # rita must not bounce because sam is gone.
        data = simple_message(subject="to the desk")
        client = self.server.lmtp_raw()
        self.addCleanup(client.close)
        client.lhlo()
        transaction = client.transaction("customer@example.org", ["desk@example.com"], data)
        self.assertEqual([code for code, _ in transaction.final], [250], transaction)
        rita = self.raw("rita", "rita-password")
        rita.select("INBOX", readonly=True).ok()
        self.assertEqual(split_trace(rita.fetch("1", "BODY.PEEK[]")[1]["BODY[]"])[1], data)

    def test_alias_to_unknown_user_is_refused(self):
        completed = self.server.cli("alias", "add", "nobody-here@example.com", "ghost-user")
        self.assertNotEqual(completed.returncode, 0)
        self.assertIn("ghost-user", completed.stderr.decode("utf-8", "replace"))

    def test_mailbox_list(self):
        self.server.add_user("jane", "jane-password")
        names = {word for line in words(self.server.cli_ok("mailbox", "list", "jane")) for word in line}
        self.assertTrue({"INBOX", "Drafts", "Sent", "Trash", "Junk", "Archive"} <= names, names)
        client = self.raw("jane", "jane-password")
        client.command('CREATE "Projects/2024"').ok()
        names = {word for line in words(self.server.cli_ok("mailbox", "list", "jane")) for word in line}
        self.assertIn("Projects/2024", names)

    def test_deliver_exit_codes_and_exact_bytes(self):
        self.server.add_user("kate", "kate-password")
        watcher = self.raw("kate", "kate-password")
        watcher.select("INBOX").ok()
        data = simple_message(subject="local delivery", body="Delivered by the LDA.\r\n")
        completed = self.server.cli("deliver", "kate", input=data)
        self.assertEqual(completed.returncode, 0, completed.stderr)
        self.assertEqual(watcher.command("NOOP").ok().numbers("EXISTS"), [1])
        stored = watcher.fetch("1", "BODY.PEEK[]")[1]["BODY[]"]
        self.assertTrue(stored.endswith(data), stored[:300])
        completed = self.server.cli("deliver", "no-such-user", input=data)
        self.assertEqual(completed.returncode, EX_NOUSER, completed.stderr)

    def test_admin_socket_is_owner_only(self):
        sockets = [p for p in self.server.data_dir.rglob("*") if stat.S_ISSOCK(p.lstat().st_mode)]
        self.assertTrue(sockets, "no admin socket in the data dir")
        for path in sockets:
            self.assertEqual(path.lstat().st_mode & 0o077, 0, f"{path} is reachable by others")


class CliWithoutServerTest(unittest.TestCase):

    def test_offline_commands_act_on_the_store(self):
        server = Server()
        try:
            server.add_user("lena", "lena-password")
            server.cli_ok("alias", "add", "lena-alias@example.com", "lena")
            data = simple_message(subject="delivered offline")
            self.assertEqual(server.cli("deliver", "lena", input=data).returncode, 0)
            self.assertEqual(server.cli("deliver", "ghost", input=data).returncode, EX_NOUSER)
            offline_users = server.cli_ok("user", "list").stdout
            server.start()
            self.assertEqual(server.cli_ok("user", "list").stdout, offline_users)
            client = server.raw("lena", "lena-password")
            client.select("INBOX", readonly=True).ok()
            self.assertTrue(client.fetch("1", "BODY.PEEK[]")[1]["BODY[]"].endswith(data))
            client.close()
            server.deliver_ok(["lena-alias@example.com"], simple_message(subject="via offline alias"))
            server.stop()
        finally:
            server.cleanup()

    def test_stale_socket_after_sigkill(self):
        server = Server()
        try:
            server.start()
            server.kill()
            # The socket file of the dead server is still there; the CLI must
            # notice nobody answers and use the store.
            server.add_user("mona", "mona-password")
            server.start()
            server.raw("mona", "mona-password").close()
            server.stop()
        finally:
            server.cleanup()

    def test_serve_creates_the_data_dir(self):
        server = Server()
        try:
            server.data_dir.rmdir()
            server.start()
            self.assertTrue(server.data_dir.is_dir())
            self.assertEqual(server.data_dir.stat().st_mode & 0o077, 0, "data dir readable by others")
            server.add_user("nina", "nina-password")
            server.raw("nina", "nina-password").close()
            server.stop()
        finally:
            server.cleanup()


class ConfigDefaultTest(unittest.TestCase):

    def test_config_default_is_toml_with_every_key_commented(self):
        completed = subprocess.run([POSTERN_BIN, "config", "default"], capture_output=True, timeout=30,
                                   stdin=subprocess.DEVNULL)
        self.assertEqual(completed.returncode, 0, completed.stderr)
        text = completed.stdout.decode("utf-8")
        config = tomllib.loads(text)
        self.assertIn("data_dir", config)
        self.assertTrue(config["imap"]["listen"].endswith(":1143") if isinstance(config["imap"]["listen"], str)
                        else any(a.endswith(":1143") for a in config["imap"]["listen"]))
        self.assertIn("listen", config["imaps"])
        self.assertIn("listen", config["lmtp"])
        self.assertEqual(config["imap"]["max_literal"], 64 * 1024 * 1024)
        self.assertEqual(config["auth"]["failure_delay_ms"], 500)
        # Every key has a comment: on the lines before it, at its end, in a
        # comment of its section that names it, or as the next key of a group
        # that a comment of several lines describes (no blank line between).
        uncommented = []
        section, section_comments, block, group = "", [], [], 0
        for line in text.splitlines():
            stripped = line.strip()
            if not stripped:
                block, group = [], 0
            elif stripped.startswith("["):
                section, section_comments, block, group = stripped.strip("[]"), [], [], 0
            elif stripped.startswith("#"):
                section_comments.append(stripped)
                block.append(stripped)
            elif "=" in stripped:
                key = stripped.split("=", 1)[0].strip()
                own = bool(block) or "#" in stripped.split("=", 1)[1]
                named = any(key in comment for comment in section_comments)
                if not (own or named or group >= 2):
                    uncommented.append(f"{section}.{key}" if section else key)
                group = len(block) if block else group
                block = []
        self.assertEqual(uncommented, [], "keys printed without a comment")

    def test_config_default_with_config_flag(self):
        server = Server()
        try:
            completed = server.cli("config", "default")
            self.assertEqual(completed.returncode, 0, completed.stderr)
            tomllib.loads(completed.stdout.decode("utf-8"))
        finally:
            server.cleanup()


if __name__ == "__main__":
    unittest.main()


def soft_open_files(pid: int) -> int:
    with open(f"/proc/{pid}/limits", encoding="ascii") as limits:
        for line in limits:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    raise AssertionError("no 'Max open files' in /proc/PID/limits")


class OpenFileLimitTest(unittest.TestCase):
    """`serve` raises the soft open-file limit toward what open_indexes_max and
    the connection caps need: a soft limit of 1,024 would cut the server off at
    a few hundred active users."""

    def test_a_low_soft_limit_is_raised_as_far_as_needed(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY and hard <= 512:
            self.skipTest(f"hard open-file limit {hard} leaves nothing to raise")
        # Needed by these bounds: 256 + 3 * (100 + 10) indexes (the writer's
        # and the readers' resting ones) + 4 * 50 IMAP + 20 LMTP = 806.
        server = Server(
            imap={"max_connections": 50},
            imaps=None,
            lmtp={"max_connections": 20},
            extra_toml="\n[store]\nopen_indexes_max = 100\nreader_connections_max = 10\n",
        )
        resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard))
        try:
            server.start()  # the child inherits 512
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        try:
            self.assertEqual(soft_open_files(server.pid), 806)
            server.raw().command("NOOP").ok()
        finally:
            server.stop()
            server.cleanup()

    def test_the_log_says_when_the_hard_limit_is_too_low(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard >= 1_000_000:
            self.skipTest("hard open-file limit too high to fall short")
        # The defaults need 256 + 3 * 2,048 + 4 * 10,000 + 1,000 = 47,400 with
        # IMAP and LMTP: more than a hard limit below a million may give.
        needed = 47_400
        server = Server(imaps=None)
        server.start()
        try:
            self.assertEqual(soft_open_files(server.pid), min(hard, needed))
            if hard < needed:
                self.assertIn("open_files_short", server.stderr_text())
                self.assertIn("open_indexes_max", server.stderr_text())
        finally:
            server.stop()
            server.cleanup()
