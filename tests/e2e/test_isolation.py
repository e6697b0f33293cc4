"""User isolation: bob cannot list, select, examine, read, append to, copy
into, rename or delete alice's mailboxes, whatever name he spells them with.
Every answer bob gets is checked for alice's data; her mailboxes are checked
unchanged at the end."""

import os
import unittest

from harness import Lit, ServerTestCase, list_entries, quote, simple_message, text

TOKEN = b"ALICE-SECRET-TOKEN-7d1f"

SPELLINGS = [
    "alice/INBOX", "alice/Secret", "Alice/INBOX", "ALICE/Secret", "alice", "ALICE",
    "../alice/INBOX", "../alice/Secret", "../../alice/Secret", "./../alice/Secret", "..", "../alice", "../..",
    "INBOX/../../alice/Secret", "Secret/../../alice/Secret", "INBOX/../alice/Secret",
    "/users/alice/INBOX", "/users/alice/Secret", "users/alice/Secret", "/alice/Secret", "/alice/INBOX",
    "//alice/Secret", "alice//Secret",
    "~alice/INBOX", "~alice/Secret", "~alice", "~/../alice/Secret",
    "#alice/Secret", "#users/alice/Secret", "#shared/alice/Secret", "#user/alice/INBOX",
    "Other Users/alice/Secret", "Other Users/alice/INBOX", "Shared Folders/alice/Secret",
    "user/alice/Secret", "user.alice.Secret", "user/alice", "alice@example.com/Secret",
    "%2e%2e/alice/Secret", "alice\\Secret", "..\\alice\\Secret", "..%2falice%2fSecret",
    "Secret", "secret", "SECRET",
]

LIST_PATTERNS = [
    ("", "*"), ("", "%"), ("", "%/%"), ("", "%/%/%"), ("", "*Secret*"), ("", "alice*"), ("", "../*"),
    ("", "/*"), ("", "~alice/*"), ("", "#*"), ("../", "*"), ("/", "*"), ("~alice/", "*"), ("alice/", "*"),
    ("../alice/", "*"), ("/users/alice/", "*"), ("Other Users/", "*"), ("#shared/", "*"), ("", "Other Users/*"),
]


class IsolationTest(ServerTestCase):

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.server.add_user("alice", "alice-password")
        cls.server.add_user("bob", "bob-password")
        cls.server.add_user("mallory", "mallory-password")
        body = b"Top secret: " + TOKEN + b"\r\n"
        cls.server.deliver_ok(["alice"], simple_message(subject=TOKEN.decode(), body=body.decode()))
        cls.server.deliver_ok(["bob"], simple_message(subject="bob's own", body="Nothing to see.\r\n"))
        alice = cls.server.raw("alice", "alice-password")
        try:
            alice.command('CREATE "Secret/Deeper"').ok()
            alice.append("Secret", simple_message(subject="secret", body=body.decode())).ok()
            alice.command('SUBSCRIBE "Secret"').ok()
            cls.alice_before = cls.alice_state(alice)
        finally:
            alice.close()

    @staticmethod
    def alice_state(client):
        names = set(list_entries(client.command('LIST "" "*"').ok()))
        counts = {name: client.status(name, "MESSAGES UIDNEXT")
                  for name in names}
        return names, counts

    def setUp(self) -> None:
        self.bob = self.raw("bob", "bob-password")
        self.bob_names = set(list_entries(self.bob.command('LIST "" "*"').ok()))
        self.assertNotIn("Secret", self.bob_names)

    def tearDown(self) -> None:
        alice = self.raw("alice", "alice-password")
        self.assertEqual(self.alice_state(alice), self.alice_before, "alice's mailboxes changed")

    def assert_no_leak(self, result):
        everything = b"".join(r.raw for r in result.untagged) + (result.tagged.raw if result.tagged else b"")
        self.assertNotIn(TOKEN, everything, result.describe())

    def spellings(self):
        # Add the real on-disk paths of alice's data, absolute and relative, in
        # case a name is ever joined onto a path.
        names = list(SPELLINGS)
        data_dir = str(self.server.data_dir)
        for root, dirs, files in os.walk(data_dir):
            for entry in dirs + files:
                path = os.path.join(root, entry)
                if "alice" in entry.lower():
                    names.append(path)
                    names.append(os.path.relpath(path, data_dir))
                    names.append("../" + os.path.relpath(path, data_dir))
        return names

    def test_select_examine_status_refused(self):
        for name in self.spellings():
            with self.subTest(name=name):
                for verb in ("SELECT", "EXAMINE"):
                    result = self.bob.command(f"{verb} {quote(name)}")
                    self.assert_no_leak(result)
                    if name in self.bob_names or name.upper() == "INBOX":
                        continue
                    self.assertNotEqual(result.status, "OK", result.describe())
                    self.assertEqual(result.numbers("EXISTS"), [], result.describe())
                result = self.bob.command(f"STATUS {quote(name)} (MESSAGES UNSEEN)")
                self.assert_no_leak(result)
                if name in self.bob_names or name.upper() == "INBOX":
                    continue
                self.assertNotEqual(result.status, "OK", result.describe())
                self.assertEqual(result.named("STATUS"), [])

    def test_list_shows_only_bobs_names(self):
        for reference, pattern in LIST_PATTERNS + [("", name) for name in self.spellings()]:
            with self.subTest(reference=reference, pattern=pattern):
                for command in (f"LIST {quote(reference)} {quote(pattern)}",
                                f"LIST {quote(reference)} {quote(pattern)} RETURN (STATUS (MESSAGES) SUBSCRIBED)",
                                f"LSUB {quote(reference)} {quote(pattern)}"):
                    result = self.bob.command(command)
                    self.assert_no_leak(result)
                    listed = set(list_entries(result))
                    self.assertLessEqual(listed - {""}, self.bob_names, result.describe())
                    for status in result.data("STATUS"):
                        self.assertIn(text(status[0]), self.bob_names, result.describe())

    def test_fetch_after_select_shows_only_bobs_mail(self):
        self.bob.select("INBOX").ok()
        result = self.bob.command("FETCH 1:* (BODY.PEEK[] ENVELOPE)").ok()
        self.assert_no_leak(result)
        self.assertEqual(len(result.named("FETCH")), 1)
        result = self.bob.command("UID FETCH 1:4294967295 (BODY.PEEK[])").ok()
        self.assert_no_leak(result)
        result = self.bob.command("SEARCH TEXT " + TOKEN.decode()).ok()
        self.assertEqual(result.data("SEARCH"), [[]])

    def test_append_copy_move_into_alice_refused(self):
        self.bob.select("INBOX").ok()
        for name in self.spellings():
            if name in self.bob_names or name.upper() == "INBOX":
                continue
            with self.subTest(name=name):
                for command in (f"COPY 1 {quote(name)}", f"MOVE 1 {quote(name)}"):
                    result = self.bob.command(command)
                    self.assertNotEqual(result.status, "OK", result.describe())
                result = self.bob.command(f"APPEND {quote(name)} ", Lit(simple_message(subject="from bob")))
                self.assertNotEqual(result.status, "OK", result.describe())
        self.assertEqual(len(self.bob.fetch("1:*", "UID")), 1, "bob's own message must still be there")

    def test_rename_delete_subscribe_do_not_touch_alice(self):
        for name in self.spellings():
            if name in self.bob_names or name.upper() == "INBOX":
                continue
            with self.subTest(name=name):
                self.assertNotEqual(self.bob.command(f"DELETE {quote(name)}").status, "OK")
                self.assertNotEqual(self.bob.command(f"RENAME {quote(name)} {quote('Stolen')}").status, "OK")
        self.assertNotIn("Stolen", set(list_entries(self.bob.command('LIST "" "*"').ok())))

    def test_bob_creating_lookalike_names_gets_his_own_mailboxes(self):
        # Creating these in one's own hierarchy may be allowed or refused; if
        # allowed they must be one's own, empty, and alice's must be untouched.
        # (mallory, so the superiors this creates do not confuse bob's tests.)
        self.bob = self.raw("mallory", "mallory-password")
        for name in ["alice/INBOX", "../alice/Secret", "~alice/Secret", "Other Users/alice/Secret", "/users/alice/Secret"]:
            with self.subTest(name=name):
                created = self.bob.command(f"CREATE {quote(name)}")
                if created.status != "OK":
                    continue
                selected = self.bob.select(name).ok()
                self.assert_no_leak(selected)
                self.assertEqual(selected.numbers("EXISTS"), [0])
                self.bob.append(name, simple_message(subject="bob lookalike")).ok()
                self.assertEqual(self.bob.status(name, "MESSAGES")["MESSAGES"], 1)
                self.bob.command("UNSELECT").ok()
                self.bob.command(f"DELETE {quote(name)}").ok()

    def test_login_name_spellings_do_not_reach_alice(self):
        client = self.raw()
        self.assertEqual(client.login("alice", "bob-password").status, "NO")
        # Path-like names are not user names, whichever password comes with them.
        for name in ["../alice", "alice/", "./alice", "bob/../alice", "../bob/../alice", "*", "%", "alice/INBOX"]:
            with self.subTest(name=name):
                self.assertEqual(client.login(name, "alice-password").status, "NO")
                self.assertEqual(client.login(name, "bob-password").status, "NO")
        client.login("bob", "bob-password").ok()
        client.select("INBOX").ok()
        self.assert_no_leak(client.command("FETCH 1:* BODY.PEEK[]").ok())

    def test_cli_mailbox_list_is_per_user(self):
        listing = self.server.cli_ok("mailbox", "list", "bob").stdout
        self.assertNotIn(b"Secret", listing)
        listing = self.server.cli_ok("mailbox", "list", "alice").stdout
        self.assertIn(b"Secret", listing)


if __name__ == "__main__":
    unittest.main()
