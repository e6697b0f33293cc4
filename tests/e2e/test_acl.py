"""ACL (RFC 4314) and the "Other Users" and "Shared" namespaces (RFC 2342)
against the real binary: granting and revoking, what each right allows,
"anyone" and negative rights, mailboxes created under another owner's,
the operator's shared mailboxes and `postern acl`, a restart and
`postern reconstruct`, imapclient's ACL helpers, and isolation: without
`l` every command answers exactly as for a mailbox that does not exist,
with only `l` no content is served, and a revoke ends access at once,
also for a session that has the mailbox selected (the writer checks the
rights in the transaction that changes the mailbox)."""

from __future__ import annotations

import unittest

from harness import Lit, ServerTestCase, list_entries, quote, simple_message, text, embedded_only

try:
    from imapclient import IMAPClient
except ImportError as error:  # pragma: no cover - the CI installs it
    raise AssertionError("imapclient is missing: pip install imapclient") from error

TOKEN = "ACL-SECRET-TOKEN-51c2"


def without_tag(result) -> bytes:
    """The tagged completion without its tag, to compare two answers."""
    return result.tagged.raw.split(b" ", 1)[1]


class AclTest(ServerTestCase):
    server_options = {"imap": {"acl_max_entries": 4}}

    def setUp(self) -> None:
        # Fresh users per test, so tests do not see each other's grants.
        self.alice_name, self.alice_password = self.new_user("alice")
        self.bob_name, self.bob_password = self.new_user("bob")
        self.alice = self.raw(self.alice_name, self.alice_password)
        self.bob = self.raw(self.bob_name, self.bob_password)
        self.alice.command('CREATE "Projects"').ok()
        self.alice.append("Projects", simple_message(subject=TOKEN, body=f"Body {TOKEN}\r\n")).ok()
        self.shared = f"Other Users/{self.alice_name}/Projects"

    def assert_no_leak(self, result) -> None:
        everything = b"".join(r.raw for r in result.untagged) + result.tagged.raw
        self.assertNotIn(TOKEN.encode(), everything, result.describe())
        # Other tests' owners may share with "anyone"; this alice shares nothing with bob.
        self.assertNotIn(self.alice_name.encode(), b"".join(r.raw for r in result.untagged),
                         result.describe())

    def grant(self, rights: str, who: str | None = None, mailbox: str = "Projects") -> None:
        self.alice.command(f"SETACL {quote(mailbox)} {who or self.bob_name} {quote(rights)}").ok()

    def names(self, client, pattern: str = "*") -> set[str]:
        return set(list_entries(client.command(f'LIST "" {quote(pattern)}').ok()))

    # -- protocol surface --------------------------------------------------

    def test_capabilities_and_namespace(self):
        caps = {text(c) for c in self.bob.command("CAPABILITY").ok().data("CAPABILITY")[0]}
        self.assertIn("ACL", caps)
        self.assertIn("RIGHTS=texk", caps)
        result = self.bob.command("NAMESPACE").ok()
        self.assertEqual(result.named("NAMESPACE")[0].line,
                         '* NAMESPACE (("" "/")) (("Other Users/" "/")) (("Shared/" "/"))')

    def test_owner_has_every_right_and_sees_the_acl(self):
        result = self.alice.command('MYRIGHTS "Projects"').ok()
        self.assertEqual(result.named("MYRIGHTS")[0].line, '* MYRIGHTS Projects lrswipkxteacd')
        self.grant("lrs")
        self.grant("lr", who="anyone")
        acl = self.alice.command('GETACL "Projects"').ok().named("ACL")[0].line
        self.assertEqual(acl, f'* ACL Projects {self.alice_name} lrswipkxteacd anyone lr {self.bob_name} lrs')
        rights = self.alice.command(f'LISTRIGHTS "Projects" {self.bob_name}').ok().named("LISTRIGHTS")[0].line
        self.assertEqual(rights, f'* LISTRIGHTS Projects {self.bob_name} "" l r s w i p k x t e a c d')
        rights = self.alice.command(f'LISTRIGHTS "Projects" {self.alice_name}').ok().named("LISTRIGHTS")[0].line
        self.assertEqual(rights, f'* LISTRIGHTS Projects {self.alice_name} lrswipkxtea')
        # SETACL's + and - forms, and c/d for RFC 2086 clients.
        self.grant("+wc")
        self.grant("-s")
        acl = self.alice.command('GETACL "Projects"').ok().named("ACL")[0].line
        self.assertTrue(acl.endswith(f"{self.bob_name} lrwkxc"), acl)
        self.alice.command(f'DELETEACL "Projects" {self.bob_name}').ok()
        acl = self.alice.command('GETACL "Projects"').ok().named("ACL")[0].line
        self.assertNotIn(self.bob_name, acl)

    # -- grant, read, revoke ---------------------------------------------

    def test_grant_list_read_and_revoke(self):
        self.assertNotIn(self.shared, self.names(self.bob))
        self.grant("lr")
        self.assertIn(self.shared, self.names(self.bob))
        top = list_entries(self.bob.command('LIST "" "%"').ok())
        self.assertIn("Other Users", top)
        self.assertIn("\\Noselect", top["Other Users"]["flags"])
        self.assertIn(f"Other Users/{self.alice_name}",
                      set(list_entries(self.bob.command('LIST "Other Users/" "%"').ok())))
        result = self.bob.command(f"MYRIGHTS {quote(self.shared)}").ok()
        self.assertEqual(text(result.data("MYRIGHTS")[0][1]), "lr")
        status = self.bob.status(self.shared, "MESSAGES UNSEEN")
        self.assertEqual(status["MESSAGES"], 1)
        # No s, w or t: SELECT is read-only; a body fetch does not set \Seen.
        result = self.bob.command(f"SELECT {quote(self.shared)}").ok()
        self.assertEqual(result.code, "READ-ONLY")
        self.assertEqual(result.numbers("EXISTS"), [1])
        body = self.fetch_one(self.bob, "1", "BODY[TEXT]")
        self.assertIn(TOKEN.encode(), body["BODY[TEXT]"])
        self.assertEqual(self.bob.search(f"BODY {TOKEN}"), [1])
        self.assertEqual(self.alice.status("Projects", "UNSEEN")["UNSEEN"], 1)
        # Subscribing by the namespace name.
        self.bob.command(f"SUBSCRIBE {quote(self.shared)}").ok()
        self.assertIn(self.shared, set(list_entries(self.bob.command('LSUB "" "*"').ok())))
        # Revoked: the selection ends at the next command, and the name is gone.
        self.alice.command(f'DELETEACL "Projects" {self.bob_name}').ok()
        result = self.bob.command("NOOP").ok()
        self.assertEqual([r.code for r in result.untagged if r.name == "OK"], ["CLOSED"])
        self.assertEqual(self.bob.command("FETCH 1 BODY[]").status, "BAD")
        self.assertNotIn(self.shared, self.names(self.bob))
        self.assertEqual(self.bob.command(f"SELECT {quote(self.shared)}").code, "NONEXISTENT")

    def test_only_lookup_gives_no_content(self):
        self.grant("l")
        self.assertIn(self.shared, self.names(self.bob))
        for command in (f"SELECT {quote(self.shared)}", f"EXAMINE {quote(self.shared)}",
                        f"STATUS {quote(self.shared)} (MESSAGES)", f"GETACL {quote(self.shared)}",
                        f"LISTRIGHTS {quote(self.shared)} anyone",
                        f"SETACL {quote(self.shared)} {self.bob_name} lr"):
            with self.subTest(command=command):
                result = self.bob.command(command)
                self.assertEqual(result.status, "NO", result.describe())
                self.assertEqual(result.code, "NOPERM", result.describe())
                self.assertEqual(result.numbers("EXISTS"), [], result.describe())
                self.assertEqual(result.named("STATUS"), [], result.describe())
                self.assertNotIn(TOKEN.encode(), b"".join(r.raw for r in result.untagged))
        result = self.bob.command('LIST "" "*" RETURN (STATUS (MESSAGES))').ok()
        self.assertIn(self.shared, list_entries(result))
        self.assertNotIn(self.shared, {text(s[0]) for s in result.data("STATUS")})
        self.bob.select("INBOX").ok()
        for command in (f"APPEND {quote(self.shared)}", ):
            result = self.bob.command(command + " ", Lit(simple_message(subject="from bob")))
            self.assertEqual(result.code, "NOPERM", result.describe())
        self.assertEqual(self.alice.status("Projects", "MESSAGES")["MESSAGES"], 1)

    # -- isolation -------------------------------------------------------

    def test_without_rights_every_answer_is_that_of_a_missing_mailbox(self):
        """alice's Projects (no rights for bob), a name alice does not have,
        a user that does not exist and a namespace level: the same answers."""
        # Rights for someone else must not matter either.
        self.grant("lrswipkxtea", who="anyone")
        self.grant("lrswipkxtea", who=f"-{self.bob_name}")
        names = [self.shared, f"Other Users/{self.alice_name}/Nope",
                 "Other Users/nosuchuser/Projects", f"Other Users/{self.alice_name}", "Shared/Projects"]
        bob_message = simple_message(subject="from bob", body="bob\r\n")
        self.bob.append("INBOX", bob_message).ok()
        commands = [
            "SELECT {}", "EXAMINE {}", "STATUS {} (MESSAGES UIDNEXT)", "GETACL {}", "MYRIGHTS {}",
            "LISTRIGHTS {} anyone", "SETACL {} anyone lr", "DELETEACL {} anyone", "DELETE {}",
            "RENAME {} {}", "SUBSCRIBE {}", "GETQUOTAROOT {}",
        ]
        for template in commands:
            answers = {}
            for name in names:
                result = self.bob.command(template.format(quote(name), quote(name + "/x")))
                self.assert_no_leak(result)
                answers[name] = (result.status, without_tag(result),
                                 [r.raw for r in result.untagged if r.name not in ("OK",)])
            with self.subTest(command=template):
                self.assertEqual(len(set(map(repr, answers.values()))), 1, answers)
                self.assertEqual(answers[self.shared][0], "NO", answers)
        # Writes that name the mailbox as a target, from a selected mailbox of bob's.
        self.bob.select("INBOX").ok()
        for template in ("COPY 1 {}", "MOVE 1 {}", "UID COPY 1:* {}"):
            answers = {}
            for name in names:
                result = self.bob.command(template.format(quote(name)))
                self.assert_no_leak(result)
                answers[name] = (result.status, without_tag(result))
            with self.subTest(command=template):
                self.assertEqual(len(set(answers.values())), 1, answers)
                self.assertEqual(answers[self.shared][0], "NO", answers)
        answers = set()
        for name in names:
            result = self.bob.command(f"APPEND {quote(name)} ", Lit(bob_message))
            answers.add((result.status, without_tag(result)))
        self.assertEqual(len(answers), 1, answers)
        answers = set()
        for name in names:
            result = self.bob.command(f"CREATE {quote(name + '/Sub')}")
            answers.add((result.status, without_tag(result)))
        self.assertEqual(len(answers), 1, answers)
        # LIST never names it, whatever the pattern; bob's search finds nothing of hers.
        for pattern in ("*", "%", "Other Users/*", "Other Users/%", "%/%/%", "*Projects*"):
            result = self.bob.command(f'LIST "" {quote(pattern)} RETURN (STATUS (MESSAGES))').ok()
            self.assert_no_leak(result)
            # (Other tests' users may share with "anyone"; none of alice's shows.)
            self.assertFalse(any(self.alice_name in n for n in list_entries(result)), result.describe())
        self.assertEqual(self.bob.search(f"BODY {TOKEN}"), [])
        # Nothing of alice's changed.
        self.assertEqual(self.alice.status("Projects", "MESSAGES")["MESSAGES"], 1)
        self.assertIn("Projects", self.names(self.alice))

    def test_revoke_is_checked_by_the_writer_while_selected(self):
        """bob's session saw `w` at SELECT; alice revokes it; bob's STORE and
        APPEND after that are refused by the writer, not by a stale view."""
        self.grant("lrswite")
        self.bob.select(self.shared).ok()
        self.bob.command("STORE 1 +FLAGS (\\Flagged)").ok()
        self.grant("lrs")
        result = self.bob.command("STORE 1 +FLAGS (\\Answered)")
        self.assertEqual((result.status, result.code), ("NO", "NOPERM"), result.describe())
        result = self.bob.command("EXPUNGE")
        self.assertEqual((result.status, result.code), ("NO", "NOPERM"), result.describe())
        result = self.bob.command(f"APPEND {quote(self.shared)} ", Lit(simple_message(subject="late")))
        self.assertEqual((result.status, result.code), ("NO", "NOPERM"), result.describe())
        self.alice.select("Projects").ok()
        self.assertEqual(set(self.fetch_one(self.alice, "1", "FLAGS")["FLAGS"]), {"\\Flagged"})
        # Revoked entirely while bob idles on it: the selection ends.
        self.alice.command(f'DELETEACL "Projects" {self.bob_name}').ok()
        result = self.bob.command("NOOP").ok()
        self.assertIn("CLOSED", [r.code for r in result.untagged])

    def test_no_command_runs_on_revoked_rights(self):
        """Revoked between two commands: whatever bob sends next (SORT and
        THREAD too, which read without reporting changes first) serves
        nothing and ends the selection."""
        for command in ("SORT (SUBJECT) UTF-8 ALL", "THREAD REFERENCES UTF-8 ALL", "FETCH 1 BODY.PEEK[]",
                        "UID SEARCH TEXT " + TOKEN, "COPY 1 INBOX", "STORE 1 +FLAGS (\\Seen)"):
            with self.subTest(command=command):
                self.grant("lrswi")
                self.bob.select(self.shared).ok()
                self.alice.command(f'DELETEACL "Projects" {self.bob_name}').ok()
                result = self.bob.command(command)
                self.assertEqual(result.status, "BAD", result.describe())
                self.assertIn("CLOSED", [r.code for r in result.untagged], result.describe())
                self.assertNotIn(TOKEN.encode(), b"".join(r.raw for r in result.untagged))
                self.assertEqual(result.named("SORT") + result.named("THREAD") + result.named("FETCH"), [])
        self.assertEqual(self.bob.status("INBOX", "MESSAGES")["MESSAGES"], 0)

    def test_copies_into_another_owners_mailbox_keep_only_permitted_flags(self):
        self.bob.append("INBOX", simple_message(subject="flagged"), flags="\\Seen \\Flagged $Work").ok()
        self.grant("li")
        self.bob.select("INBOX").ok()
        self.bob.command(f"COPY 1 {quote(self.shared)}").ok()
        self.grant("lis")
        self.bob.command(f"COPY 1 {quote(self.shared)}").ok()
        self.alice.select("Projects").ok()
        flags = self.alice.fetch("2:3", "FLAGS")
        self.assertEqual([set(flags[n]["FLAGS"]) for n in (2, 3)], [set(), {"\\Seen"}])

    def test_idle_on_a_shared_mailbox_sees_the_owners_changes(self):
        self.grant("lr")
        self.bob.select(self.shared).ok()
        tag = self.bob.next_tag()
        self.bob.send(f"{tag} IDLE\r\n".encode())
        self.assertTrue(self.bob.read_response().raw.startswith(b"+"))
        self.server.deliver_ok([self.alice_name], simple_message(subject="to inbox"))
        self.alice.append("Projects", simple_message(subject="new")).ok()
        seen = []
        while True:
            response = self.bob.read_response(timeout=10)
            seen.append(response.raw)
            if response.name == "EXISTS":
                break
        self.assertEqual(response.number, 2, seen)
        self.bob.send(b"DONE\r\n")
        while not self.bob.read_response(timeout=10).raw.startswith(tag.encode()):
            pass

    # -- what the rights allow --------------------------------------------

    def test_flag_rights_store_append_copy_move_expunge(self):
        self.grant("lrs")
        self.bob.select(self.shared).ok()
        result = self.bob.command("STORE 1 +FLAGS (\\Flagged)")
        self.assertEqual(result.code, "NOPERM", result.describe())
        # With s but not w, \Seen is stored and the keyword silently dropped.
        self.bob.command("STORE 1 +FLAGS ($Later \\Seen)").ok()
        self.assertEqual(set(self.fetch_one(self.bob, "1", "FLAGS")["FLAGS"]), {"\\Seen"})
        self.grant("lrswitei")
        self.bob.select(self.shared).ok()
        self.bob.command("STORE 1 +FLAGS (\\Flagged $Later)").ok()
        self.bob.append(self.shared, simple_message(subject="by bob"), flags="\\Draft").ok()
        # COPY out of alice's mailbox into bob's own, and MOVE back.
        result = self.bob.command('COPY 1 "INBOX"').ok()
        self.assertTrue(result.code.startswith("COPYUID"), result.describe())
        self.assertEqual(self.bob.status("INBOX", "MESSAGES")["MESSAGES"], 1)
        self.bob.select("INBOX").ok()
        self.bob.command(f"MOVE 1 {quote(self.shared)}").ok()
        self.assertEqual(self.bob.status("INBOX", "MESSAGES")["MESSAGES"], 0)
        self.assertEqual(self.alice.status("Projects", "MESSAGES")["MESSAGES"], 3)
        # MOVE out of it needs t and e: with them, alice's copy goes.
        self.bob.select(self.shared).ok()
        self.bob.command('MOVE 3 "INBOX"').ok()
        self.assertEqual(self.alice.status("Projects", "MESSAGES")["MESSAGES"], 2)
        self.bob.command("STORE 2 +FLAGS (\\Deleted)").ok()
        self.bob.command("EXPUNGE").ok()
        self.assertEqual(self.alice.status("Projects", "MESSAGES")["MESSAGES"], 1)
        # Without i, COPY into it is refused with NOPERM (bob sees it).
        self.grant("lr")
        self.bob.select("INBOX").ok()
        result = self.bob.command(f"COPY 1 {quote(self.shared)}")
        self.assertEqual(result.code, "NOPERM", result.describe())

    def test_create_and_delete_below_another_owners_mailbox(self):
        self.grant("lrk")
        sub = self.shared + "/Sub"
        self.bob.command(f"CREATE {quote(sub)}").ok()
        # It starts with its parent's ACL, so bob sees what he made.
        self.assertIn(sub, self.names(self.bob))
        self.assertIn("Projects/Sub", self.names(self.alice))
        result = self.bob.command(f"DELETE {quote(sub)}")
        self.assertEqual(result.code, "NOPERM", result.describe())
        self.grant("lrkx", mailbox="Projects/Sub")
        self.bob.command(f"DELETE {quote(sub)}").ok()
        self.assertNotIn("Projects/Sub", self.names(self.alice))
        # Nobody creates at the top of another owner's hierarchy.
        result = self.bob.command(f'CREATE "Other Users/{self.alice_name}/Top"')
        self.assertEqual(result.status, "NO", result.describe())
        self.assertNotIn("Top", self.names(self.alice))

    def test_children_without_rights_do_not_show(self):
        self.alice.command('CREATE "Projects/Hidden"').ok()
        self.grant("lr")
        entries = list_entries(self.bob.command('LIST "" "*"').ok())
        self.assertIn("\\HasNoChildren", entries[self.shared]["flags"])
        self.assertNotIn(self.shared + "/Hidden", entries)
        # IMAP4rev2 SELECT repeats the LIST attributes: the same.
        self.bob.command("ENABLE IMAP4rev2").ok()
        result = self.bob.command(f"SELECT {quote(self.shared)}").ok()
        self.assertIn("\\HasNoChildren", list_entries(result)[self.shared]["flags"])

    def test_anyone_and_negative_rights(self):
        carol, carol_password = self.new_user("carol")
        carol_client = self.raw(carol, carol_password)
        self.grant("lr", who="anyone")
        self.assertIn(self.shared, self.names(carol_client))
        self.assertIn(self.shared, self.names(self.bob))
        self.grant("r", who=f"-{carol}")
        result = carol_client.command(f"MYRIGHTS {quote(self.shared)}").ok()
        self.assertEqual(text(result.data("MYRIGHTS")[0][1]), "l")
        self.assertEqual(carol_client.command(f"SELECT {quote(self.shared)}").code, "NOPERM")
        self.bob.select(self.shared).ok()

    def test_bad_input(self):
        c = self.alice
        for rights in ("lrz", "l r", "lr!"):
            result = c.command(f"SETACL Projects {self.bob_name} {quote(rights)}")
            self.assertEqual(result.status, "BAD", result.describe())
        result = c.command("SETACL Projects nosuchuser lr")
        self.assertEqual((result.status, result.code), ("NO", "CANNOT"), result.describe())
        for identifier in ('"bad name"', '"#shared"', '""'):
            self.assertEqual(c.command(f"SETACL Projects {identifier} lr").status, "BAD")
        result = c.command(f"SETACL Nope {self.bob_name} lr")
        self.assertEqual(result.code, "NONEXISTENT", result.describe())
        result = c.command(f"SETACL Projects {self.alice_name} l")
        self.assertEqual(result.status, "NO", result.describe())
        self.assertEqual(c.command("GETACL Nope").code, "NONEXISTENT")
        self.assertEqual(c.command("SETACL Projects").status, "BAD")
        # The bound on entries (acl_max_entries = 4): changing one at the
        # bound is still allowed, a fifth is refused.
        others = [self.new_user("many")[0] for _ in range(3)]
        for identifier in [self.bob_name, *others]:
            c.command(f"SETACL Projects {identifier} lr").ok()
        result = c.command("SETACL Projects anyone l")
        self.assertEqual((result.status, result.code), ("NO", "LIMIT"), result.describe())
        c.command(f"SETACL Projects {self.bob_name} lrs").ok()
        c.command(f"DELETEACL Projects {others[0]}").ok()
        c.command("SETACL Projects anyone l").ok()
        # SETACL with an empty rights string removes the entry.
        c.command(f'SETACL Projects {self.bob_name} ""').ok()
        acl = c.command("GETACL Projects").ok().named("ACL")[0].line
        self.assertNotIn(self.bob_name, acl)

    # -- the operator's side ---------------------------------------------

    @embedded_only("reconstruct is not built on PostgreSQL yet")
    def test_shared_namespace_and_cli(self):
        name = f"Support-{self.bob_name}"
        self.server.cli_ok("mailbox", "create-shared", name)
        shared = f"Shared/{name}"
        self.assertNotIn(shared, self.names(self.bob))
        out = self.server.cli_ok("acl", "set", "#shared", name, self.bob_name, "lrswipte").stdout.decode()
        self.assertIn(f"{self.bob_name}\tlrswipte", out)
        self.assertIn(shared, self.names(self.bob))
        self.assertNotIn(shared, self.names(self.alice))
        self.bob.append(shared, simple_message(subject="ticket")).ok()
        self.assertEqual(self.bob.status(shared, "MESSAGES")["MESSAGES"], 1)
        # GETACL does not name the reserved owner; bob has no a.
        self.assertEqual(self.bob.command(f"GETACL {quote(shared)}").code, "NOPERM")
        self.server.cli_ok("acl", "set", "#shared", name, self.bob_name, "+a")
        acl = self.bob.command(f"GETACL {quote(shared)}").ok().named("ACL")[0].line
        self.assertNotIn("#shared", acl)
        self.assertTrue(acl.endswith(f"{self.bob_name} lrswiptead"), acl)
        listing = self.server.cli_ok("acl", "get", "#shared", name).stdout.decode()
        self.assertIn(f"{self.bob_name}\tlrswiptea", listing)
        # The CLI on a user's mailbox, negative rights through it, and errors.
        self.server.cli_ok("acl", "set", self.alice_name, "Projects", f"-{self.bob_name}", "w")
        self.assertIn(f"-{self.bob_name}\tw",
                      self.server.cli_ok("acl", "get", self.alice_name, "Projects").stdout.decode())
        self.server.cli_ok("acl", "delete", self.alice_name, "Projects", f"-{self.bob_name}")
        self.assertNotEqual(self.server.cli("acl", "set", self.alice_name, "Nope", "anyone", "l").returncode, 0)
        self.assertNotEqual(self.server.cli("acl", "set", self.alice_name, "Projects", "anyone", "lz").returncode, 0)
        self.assertNotEqual(self.server.cli("acl", "set", self.alice_name, "Projects", "nosuch", "l").returncode, 0)
        # Nobody logs in as the reserved owner.
        login = self.raw().command('LOGIN "#shared" "!"')
        self.assertEqual(login.status, "NO")
        # The reserved owner's index is checked like any user's.
        check = self.server.cli("reconstruct", "#shared", "--check")
        self.assertEqual(check.returncode, 0, check.stdout.decode() + check.stderr.decode())
        self.server.cli_ok("mailbox", "delete-shared", name)
        self.assertNotIn(shared, self.names(self.bob))

    @embedded_only("reconstruct is not built on PostgreSQL yet")
    def test_acl_survives_restart_and_reconstruct(self):
        self.grant("lrs")
        self.grant("l", who="anyone")
        self.server.restart()
        bob = self.raw(self.bob_name, self.bob_password)
        self.assertIn(self.shared, self.names(bob))
        result = bob.command(f"MYRIGHTS {quote(self.shared)}").ok()
        self.assertEqual(text(result.data("MYRIGHTS")[0][1]), "lrs")
        check = self.server.cli("reconstruct", self.alice_name, "--check", "--json")
        self.assertEqual(check.returncode, 0, check.stdout.decode() + check.stderr.decode())
        # A renamed mailbox keeps its ACL; a deleted one's grants go with it.
        alice = self.raw(self.alice_name, self.alice_password)
        alice.command('RENAME "Projects" "Renamed"').ok()
        renamed = f"Other Users/{self.alice_name}/Renamed"
        self.assertIn(renamed, self.names(bob))
        alice.command('DELETE "Renamed"').ok()
        alice.command('CREATE "Renamed"').ok()
        self.assertNotIn(renamed, self.names(bob))

    def test_imapclient(self):
        self.grant("lr")
        client = IMAPClient("127.0.0.1", port=self.server.imap_port, ssl=False, timeout=10)
        try:
            client.login(self.alice_name, self.alice_password)
            self.assertIn(b"ACL", client.capabilities())
            client.setacl("Projects", self.bob_name, "lrs")
            acl = dict(client.getacl("Projects"))
            self.assertEqual(acl[self.bob_name.encode()], b"lrs")
            self.assertEqual(acl[self.alice_name.encode()], b"lrswipkxteacd")
            namespace = client.namespace()
            self.assertEqual(namespace.other[0][0], "Other Users/")
            self.assertEqual(namespace.shared[0][0], "Shared/")
        finally:
            client.logout()
        client = IMAPClient("127.0.0.1", port=self.server.imap_port, ssl=False, timeout=10)
        try:
            client.login(self.bob_name, self.bob_password)
            folders = [name for _, _, name in client.list_folders()]
            self.assertIn(self.shared, folders)
            client.select_folder(self.shared)
            messages = client.search(["SUBJECT", TOKEN])
            self.assertEqual(len(messages), 1)
            self.assertIn(TOKEN.encode(), client.fetch(messages, ["BODY.PEEK[]"])[messages[0]][b"BODY[]"])
        finally:
            client.logout()


if __name__ == "__main__":
    unittest.main()
