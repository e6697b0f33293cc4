"""QUOTA (RFC 9208) and its enforcement: a user's quota (`postern user quota`)
or the `[quota]` default is checked on LMTP delivery (452 4.2.2, or 552 5.2.2
with `[lmtp] over_quota = "permanent"`), APPEND and COPY (NO [OVERQUOTA]);
GETQUOTA/GETQUOTAROOT report it; SETQUOTA is the administrator's."""

import unittest

from harness import Lit, Server, ServerTestCase, simple_message

EX_DATAERR = 65


def out(completed) -> str:
    return completed.stdout.decode("utf-8", "replace") + completed.stderr.decode("utf-8", "replace")


class QuotaTest(ServerTestCase):
    server_options = {"extra_toml": "\n[quota]\nmessages = 3\n"}

    def setUp(self) -> None:
        self.user, self.password = self.new_user("quota")
        self.client = self.raw(self.user, self.password)

    def test_capabilities_and_quotaroot(self):
        caps = {str(c).upper() for c in self.client.command("CAPABILITY").ok().data("CAPABILITY")[0]}
        self.assertTrue({"QUOTA", "QUOTA=RES-STORAGE", "QUOTA=RES-MESSAGE"} <= caps, caps)
        self.server.deliver_ok([self.user], simple_message(subject="one"))
        result = self.client.command("GETQUOTAROOT INBOX").ok()
        self.assertEqual([r.raw.rstrip() for r in result.named("QUOTAROOT")], [b'* QUOTAROOT INBOX ""'])
        self.assertEqual([r.raw.rstrip() for r in result.named("QUOTA")], [b'* QUOTA "" (MESSAGE 1 3)'])
        self.assertEqual(self.client.command('GETQUOTA ""').ok().named("QUOTA")[0].raw.rstrip(),
                         b'* QUOTA "" (MESSAGE 1 3)')
        missing = self.client.command("GETQUOTAROOT Nowhere")
        self.assertEqual((missing.status, missing.code_name), ("NO", "NONEXISTENT"))
        refused = self.client.command('SETQUOTA "" (MESSAGE 1000000)')
        self.assertEqual((refused.status, refused.code_name), ("NO", "NOPERM"))

    def test_delivery_append_and_copy_stop_at_the_quota(self):
        for n in range(3):
            self.server.deliver_ok([self.user], simple_message(subject=f"m{n}"))
        replies = self.server.deliver([self.user], simple_message(subject="too many"))
        self.assertEqual(replies[0][0], 452, replies)
        self.assertIn("4.2.2", replies[0][1])
        appended = self.client.command("APPEND INBOX ", Lit(simple_message(subject="appended")))
        self.assertEqual((appended.status, appended.code_name), ("NO", "OVERQUOTA"), appended.describe())
        self.client.select("INBOX").ok()
        copied = self.client.command("COPY 1 Archive")
        self.assertEqual((copied.status, copied.code_name), ("NO", "OVERQUOTA"))
        # MOVE adds nothing in the end, and expunging makes room.
        self.client.command("MOVE 1 Archive").ok()
        self.client.command("STORE 1 +FLAGS (\\Deleted)").ok()
        self.client.command("EXPUNGE").ok()
        self.server.deliver_ok([self.user], simple_message(subject="fits again"))

    def test_cli_sets_shows_and_resets_a_users_quota(self):
        shown = self.server.cli_ok("user", "quota", self.user)
        self.assertIn("messages 0 of 3", shown.stdout.decode())
        self.server.cli_ok("user", "quota", self.user, "--messages", "1000", "--storage", "1K")
        shown = self.server.cli_ok("user", "quota", self.user).stdout.decode()
        self.assertIn("storage 0 of 1024 bytes", shown)
        self.assertIn("messages 0 of 1000", shown)
        # 1 KiB of storage: a 2 KiB message does not fit.
        replies = self.server.deliver([self.user], simple_message(subject="big", body="x" * 2048 + "\r\n"))
        self.assertEqual(replies[0][0], 452, replies)
        self.server.cli_ok("user", "quota", self.user, "--storage", "none", "--messages", "none")
        self.assertIn("messages 0 of 3", self.server.cli_ok("user", "quota", self.user).stdout.decode())
        self.assertIn("storage 0 of no limit", self.server.cli_ok("user", "quota", self.user).stdout.decode())

    def test_cli_bad_values_are_refused(self):
        for args in [("--storage", "lots"), ("--messages", "many"), ("--storage", "99999999T")]:
            with self.subTest(args=args):
                completed = self.server.cli("user", "quota", self.user, *args)
                self.assertEqual(completed.returncode, EX_DATAERR, out(completed))
                self.assertNotIn("panicked", out(completed))
        completed = self.server.cli("user", "quota", "nobody-here")
        self.assertNotEqual(completed.returncode, 0)


class PermanentOverQuotaTest(unittest.TestCase):
    def test_552_when_configured(self):
        server = Server(lmtp={"over_quota": "permanent"}, extra_toml="\n[quota]\nmessages = 1\n")
        self.addCleanup(server.cleanup)
        server.start()
        self.addCleanup(server.stop)
        server.add_user("full", "full-password")
        server.deliver_ok(["full"], simple_message(subject="first"))
        replies = server.deliver(["full"], simple_message(subject="second"))
        self.assertEqual(replies[0][0], 552, replies)
        self.assertIn("5.2.2", replies[0][1])

    def test_a_bad_quota_key_names_itself(self):
        server = Server(extra_toml='\n[quota]\nstorage = "plenty"\n')
        self.addCleanup(server.cleanup)
        completed = server.cli("config", "check")
        self.assertNotEqual(completed.returncode, 0)
        self.assertIn("quota.storage", out(completed))


if __name__ == "__main__":
    unittest.main()
