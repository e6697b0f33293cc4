"""Mailbox commands: SELECT/EXAMINE, CREATE, DELETE, RENAME, SUBSCRIBE, LIST
(RFC 9051 6.3, RFC 5258 LIST-EXTENDED, RFC 6154 SPECIAL-USE, RFC 5819
LIST-STATUS), NAMESPACE, STATUS, and non-ASCII names."""

import unittest

from harness import (
    Lit, ServerTestCase, list_entries, mutf7_encode, quote, simple_message, status_items, text,
)

DEFAULT_MAILBOXES = {"INBOX", "Drafts", "Sent", "Trash", "Junk", "Archive"}
SPECIAL_USE = {"Drafts": "\\Drafts", "Sent": "\\Sent", "Trash": "\\Trash", "Junk": "\\Junk", "Archive": "\\Archive"}


def lower_flags(entry) -> set:
    return {f.lower() for f in entry["flags"]}


class MailboxTest(ServerTestCase):

    def session(self, prefix="mbox"):
        user, password = self.new_user(prefix)
        return user, password, self.raw(user, password)

    def names(self, client, reference="", pattern="*"):
        return set(list_entries(client.command(f"LIST {quote(reference)} {quote(pattern)}").ok()))

    # -- LIST --------------------------------------------------------------

    def test_new_user_has_the_default_mailboxes(self):
        _, _, client = self.session()
        entries = list_entries(client.command('LIST "" "*"').ok())
        self.assertEqual(set(entries), DEFAULT_MAILBOXES)
        for name, entry in entries.items():
            self.assertEqual(entry["delimiter"], "/", name)

    def test_list_special_use_selection(self):
        _, _, client = self.session()
        entries = list_entries(client.command('LIST (SPECIAL-USE) "" "*"').ok())
        self.assertEqual(set(entries), set(SPECIAL_USE))
        for name, attribute in SPECIAL_USE.items():
            self.assertIn(attribute.lower(), lower_flags(entries[name]), name)

    def test_list_return_special_use(self):
        _, _, client = self.session()
        entries = list_entries(client.command('LIST "" "*" RETURN (SPECIAL-USE)').ok())
        self.assertEqual(set(entries), DEFAULT_MAILBOXES)
        for name, attribute in SPECIAL_USE.items():
            self.assertIn(attribute.lower(), lower_flags(entries[name]), name)
        uses = {a.lower() for a in SPECIAL_USE.values()}
        self.assertEqual(lower_flags(entries["INBOX"]) & uses, set())

    def test_list_empty_pattern_gives_delimiter(self):
        _, _, client = self.session()
        result = client.command('LIST "" ""').ok()
        self.assertEqual([r.raw for r in result.named("LIST")], [b'* LIST (\\Noselect) "/" ""\r\n'])

    def test_list_wildcards(self):
        _, _, client = self.session()
        for name in ("a/b/c", "a/x", "top"):
            client.command(f"CREATE {quote(name)}").ok()
        self.assertEqual(self.names(client, "", "a/%"), {"a/b", "a/x"})
        self.assertEqual(self.names(client, "", "a/*"), {"a/b", "a/b/c", "a/x"})
        self.assertEqual(self.names(client, "", "*c"), {"a/b/c"})
        self.assertEqual(self.names(client, "", "%"), DEFAULT_MAILBOXES | {"a", "top"})
        self.assertEqual(self.names(client, "a/", "%"), {"a/b", "a/x"})
        self.assertEqual(self.names(client, "", "nothing-like-this*"), set())
        children = list_entries(client.command('LIST "" "a*" RETURN (CHILDREN)').ok())
        self.assertIn("\\haschildren", lower_flags(children["a"]))
        self.assertIn("\\haschildren", lower_flags(children["a/b"]))
        self.assertIn("\\hasnochildren", lower_flags(children["a/b/c"]))
        self.assertIn("\\hasnochildren", lower_flags(children["a/x"]))

    def test_list_return_status_and_special_use(self):
        user, password, client = self.session()
        for i in range(3):
            self.server.deliver_ok([user], simple_message(subject=f"status {i}"))
        client.select("INBOX").ok()
        client.command("STORE 1 +FLAGS (\\Seen)").ok()
        client.command("UNSELECT").ok()
        result = client.command('LIST "" "*" RETURN (SPECIAL-USE STATUS (MESSAGES UNSEEN))').ok()
        entries = list_entries(result)
        self.assertEqual(set(entries), DEFAULT_MAILBOXES)
        for name, attribute in SPECIAL_USE.items():
            self.assertIn(attribute.lower(), lower_flags(entries[name]), name)
        statuses = {}
        order = []
        for response in result.untagged:
            tokens = response.tokens
            if response.name == "LIST":
                order.append(("LIST", text(tokens[4])))
            elif response.name == "STATUS":
                statuses[text(tokens[2])] = status_items(tokens[3])
                order.append(("STATUS", text(tokens[2])))
        self.assertEqual(set(statuses), DEFAULT_MAILBOXES)
        self.assertEqual(statuses["INBOX"], {"MESSAGES": 3, "UNSEEN": 2})
        for name in SPECIAL_USE:
            self.assertEqual(statuses[name], {"MESSAGES": 0, "UNSEEN": 0})
        for name in DEFAULT_MAILBOXES:
            # RFC 5819: a mailbox's STATUS follows its LIST.
            self.assertLess(order.index(("LIST", name)), order.index(("STATUS", name)), order)

    def test_namespace(self):
        _, _, client = self.session()
        result = client.command("NAMESPACE").ok()
        # Personal, other users' and shared mailboxes (ACL, test_acl.py).
        self.assertEqual([r.raw for r in result.named("NAMESPACE")],
                         [b'* NAMESPACE (("" "/")) (("Other Users/" "/")) (("Shared/" "/"))\r\n'])

    # -- CREATE / DELETE ---------------------------------------------------

    def test_create_makes_superiors_and_refuses_duplicates(self):
        _, _, client = self.session()
        client.command('CREATE "Projects/2024"').ok()
        self.assertTrue({"Projects", "Projects/2024"} <= self.names(client))
        self.assertEqual(self.names(client, "", "Projects/%"), {"Projects/2024"})
        self.assertNotIn("Projects/2024", self.names(client, "", "%"))
        again = client.command('CREATE "Projects/2024"').expect("NO")
        self.assertEqual(again.code_name, "ALREADYEXISTS")
        client.command("CREATE INBOX").expect("NO")
        client.command("CREATE inbox").expect("NO")
        # A trailing delimiter declares intent to create inferiors; the name has no delimiter.
        client.command('CREATE "Folder/"').ok()
        self.assertIn("Folder", self.names(client))
        self.assertNotIn("Folder/", self.names(client))
        client.select("Projects/2024").ok()

    def test_create_special_use(self):
        _, _, client = self.session()
        client.command('CREATE "Old mail" (USE (\\Archive))').ok()
        entries = list_entries(client.command('LIST "" "Old mail" RETURN (SPECIAL-USE)').ok())
        self.assertIn("\\archive", lower_flags(entries["Old mail"]))

    def test_delete(self):
        _, _, client = self.session()
        client.command('CREATE "Gone"').ok()
        client.command('DELETE "Gone"').ok()
        self.assertNotIn("Gone", self.names(client))
        missing = client.command('DELETE "Gone"').expect("NO")
        self.assertEqual(missing.code_name, "NONEXISTENT")
        client.select("Gone").expect("NO")
        client.command("DELETE INBOX").expect("NO")
        self.assertIn("INBOX", self.names(client))

    def test_delete_with_messages_and_reuse_of_the_name(self):
        user, password, client = self.session()
        client.command('CREATE "Temp"').ok()
        client.append("Temp", simple_message(subject="temp")).ok()
        before = client.status("Temp", "UIDVALIDITY")["UIDVALIDITY"]
        client.command('DELETE "Temp"').ok()
        client.command('CREATE "Temp"').ok()
        after = client.status("Temp", "MESSAGES UIDVALIDITY")
        self.assertEqual(after["MESSAGES"], 0)
        # RFC 9051 2.3.1.1: a new mailbox of the same name gets a new UIDVALIDITY.
        self.assertNotEqual(after["UIDVALIDITY"], before)

    def test_delete_parent_keeps_children(self):
        _, _, client = self.session()
        client.command('CREATE "Parent/Child"').ok()
        client.command('DELETE "Parent"').expect("OK", "NO")
        # RFC 9051 6.3.5: deleting a name never removes its inferiors.
        self.assertIn("Parent/Child", self.names(client))
        client.select("Parent/Child").ok()

    # -- RENAME ------------------------------------------------------------

    def test_rename_moves_hierarchy_and_messages(self):
        _, _, client = self.session()
        client.command('CREATE "Old/Sub"').ok()
        client.append("Old", simple_message(subject="in old")).ok()
        client.append("Old/Sub", simple_message(subject="in sub")).ok()
        client.command('RENAME "Old" "New"').ok()
        names = self.names(client)
        self.assertTrue({"New", "New/Sub"} <= names, names)
        self.assertFalse({"Old", "Old/Sub"} & names, names)
        self.assertEqual(client.status("New", "MESSAGES")["MESSAGES"], 1)
        self.assertEqual(client.status("New/Sub", "MESSAGES")["MESSAGES"], 1)
        client.command('RENAME "New" "Deep/Er/New"').ok()
        self.assertTrue({"Deep", "Deep/Er", "Deep/Er/New", "Deep/Er/New/Sub"} <= self.names(client))

    def test_rename_errors(self):
        _, _, client = self.session()
        client.command('CREATE "One"').ok()
        client.command('CREATE "Two"').ok()
        client.command('RENAME "One" "Two"').expect("NO")
        client.command('RENAME "Missing" "Three"').expect("NO")
        self.assertNotIn("Three", self.names(client))
        self.assertTrue({"One", "Two"} <= self.names(client))

    def test_rename_inbox_moves_its_messages_and_leaves_it_empty(self):
        user, password, client = self.session("inboxren")
        for i in range(2):
            self.server.deliver_ok([user], simple_message(subject=f"inbox {i}"))
        client.command('CREATE "INBOX/Child"').ok()
        client.command('RENAME INBOX "Saved"').ok()
        names = self.names(client)
        self.assertIn("INBOX", names)
        self.assertIn("Saved", names)
        # Inferiors of INBOX are not moved (RFC 9051 6.3.6).
        self.assertIn("INBOX/Child", names)
        self.assertEqual(client.status("Saved", "MESSAGES")["MESSAGES"], 2)
        self.assertEqual(client.status("INBOX", "MESSAGES")["MESSAGES"], 0)
        self.server.deliver_ok([user], simple_message(subject="after rename"))
        self.assertEqual(client.status("INBOX", "MESSAGES")["MESSAGES"], 1)

    # -- SUBSCRIBE ---------------------------------------------------------

    def test_subscribe_lsub_and_list_subscribed(self):
        _, _, client = self.session()
        client.command('CREATE "Lists/Rust"').ok()
        client.command('SUBSCRIBE "Lists/Rust"').ok()
        lsub = list_entries(client.command('LSUB "" "*"').ok())
        self.assertIn("Lists/Rust", lsub)
        subscribed = list_entries(client.command('LIST (SUBSCRIBED) "" "*"').ok())
        self.assertIn("Lists/Rust", subscribed)
        self.assertIn("\\subscribed", lower_flags(subscribed["Lists/Rust"]))
        client.command('UNSUBSCRIBE "Lists/Rust"').ok()
        self.assertNotIn("Lists/Rust", list_entries(client.command('LSUB "" "*"').ok()))
        self.assertNotIn("Lists/Rust", list_entries(client.command('LIST (SUBSCRIBED) "" "*"').ok()))

    def test_list_subscribed_recursivematch_reports_childinfo(self):
        # RFC 5258 3.5: a name the pattern matches, with a subscribed
        # descendant the pattern does not match, comes with CHILDINFO.
        _, _, client = self.session()
        client.command('CREATE "Work/Projects/Rust"').ok()
        client.command('CREATE "Old/2025"').ok()
        client.command('SUBSCRIBE "Work/Projects/Rust"').ok()
        client.command('CREATE "Gone/Child"').ok()
        client.command('SUBSCRIBE "Gone/Child"').ok()
        client.command('DELETE "Gone/Child"').ok()
        client.command('DELETE "Gone"').ok()
        result = client.command('LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"').ok()
        entries = list_entries(result)
        self.assertEqual(text(entries["Work"]["extra"][0][0]), "CHILDINFO")
        self.assertEqual([text(v) for v in entries["Work"]["extra"][0][1]], ["SUBSCRIBED"])
        self.assertNotIn("\\subscribed", lower_flags(entries["Work"]))
        # A parent that is no mailbox is still reported, as \NonExistent.
        self.assertIn("\\nonexistent", lower_flags(entries["Gone"]))
        self.assertEqual(text(entries["Gone"]["extra"][0][0]), "CHILDINFO")
        # Nothing subscribed below Old: not listed.
        self.assertNotIn("Old", entries)
        # Without RECURSIVEMATCH the parents are not listed.
        plain = list_entries(client.command('LIST (SUBSCRIBED) "" "%"').ok())
        self.assertNotIn("Work", plain)
        # A subscribed child the pattern matches needs no CHILDINFO on its parent.
        deep = list_entries(client.command('LIST (SUBSCRIBED RECURSIVEMATCH) "" "*"').ok())
        self.assertIn("Work/Projects/Rust", deep)
        self.assertEqual(deep.get("Work", {"extra": []})["extra"], [])

    def test_subscription_survives_delete(self):
        _, _, client = self.session()
        client.command('CREATE "Ephemeral"').ok()
        client.command('SUBSCRIBE "Ephemeral"').ok()
        client.command('DELETE "Ephemeral"').ok()
        # RFC 9051 6.3.7: the server MUST NOT remove a name from the subscriptions on its own.
        self.assertIn("Ephemeral", list_entries(client.command('LSUB "" "*"').ok()))
        entries = list_entries(client.command('LIST (SUBSCRIBED) "" "*"').ok())
        self.assertIn("Ephemeral", entries)
        self.assertIn("\\nonexistent", lower_flags(entries["Ephemeral"]))

    # -- SELECT / EXAMINE / STATUS ------------------------------------------

    def test_select_and_examine_responses(self):
        user, password, client = self.session()
        for i in range(2):
            self.server.deliver_ok([user], simple_message(subject=f"sel {i}"))
        result = client.select("INBOX").ok()
        self.assertEqual(result.code, "READ-WRITE")
        self.assertEqual(result.numbers("EXISTS"), [2])
        # IMAP4rev1 (RFC 3501 6.3.1) requires RECENT; nothing was enabled here.
        self.assertEqual(len(result.numbers("RECENT")), 1)
        self.assertEqual(len(result.named("FLAGS")), 1)
        codes = [r.code.split(" ", 1)[0].upper() for r in result.named("OK") if r.code]
        for code in ("UIDVALIDITY", "UIDNEXT", "PERMANENTFLAGS"):
            self.assertIn(code, codes)
        permanent = next(r.code for r in result.named("OK") if r.code and r.code.upper().startswith("PERMANENTFLAGS"))
        self.assertIn("\\*", permanent)
        examined = client.select("INBOX", readonly=True).ok()
        self.assertEqual(examined.code, "READ-ONLY")
        client.select("Nowhere").expect("NO")
        # A failed SELECT leaves no mailbox selected.
        self.assertNotEqual(client.command("FETCH 1 FLAGS").status, "OK")

    def test_select_in_imap4rev2_mode(self):
        user, password, client = self.session()
        self.server.deliver_ok([user], simple_message(subject="rev2"))
        client.command("ENABLE IMAP4rev2").ok()
        first = client.select("INBOX").ok()
        self.assertEqual(first.named("RECENT"), [], "IMAP4rev2 has no RECENT response")
        second = client.select("Drafts").ok()
        # RFC 9051 7.1: the implicitly closed mailbox is announced with [CLOSED], before the new one's data.
        closed = [i for i, r in enumerate(second.untagged) if r.code and r.code.upper() == "CLOSED"]
        self.assertEqual(len(closed), 1, second.describe())
        exists = [i for i, r in enumerate(second.untagged) if r.name == "EXISTS"]
        self.assertLess(closed[0], exists[0])

    def test_percent_still_reaches_children_of_a_deleted_parent(self):
        # RFC 3501 6.3.4 example (and 6.3.8): after DELETE foo, which had
        # foo.bar, LIST "" * shows foo.bar only and LIST "" % shows foo as
        # \Noselect, so a client walking the tree level by level finds foo.bar.
        _, _, client = self.session()
        client.command('CREATE "foo/bar"').ok()
        client.command('DELETE "foo"').ok()
        self.assertNotIn("foo", self.names(client, "", "*"))
        self.assertIn("foo/bar", self.names(client, "", "*"))
        entries = list_entries(client.command('LIST "" "%"').ok())
        self.assertIn("foo", entries, "the hierarchy level above foo/bar is missing from LIST %")
        self.assertTrue({"\\noselect", "\\nonexistent"} & lower_flags(entries["foo"]), entries["foo"])
        self.assertEqual(self.names(client, "foo/", "%"), {"foo/bar"})

    def test_select_noselect_is_refused(self):
        _, _, client = self.session()
        client.command('CREATE "Shell/Inner"').ok()
        client.command('DELETE "Shell"').expect("OK", "NO")
        entries = list_entries(client.command('LIST "" "Shell"').ok())
        if "Shell" in entries and "\\noselect" in lower_flags(entries["Shell"]):
            client.select("Shell").expect("NO")

    def test_status(self):
        user, password, client = self.session()
        for i in range(2):
            self.server.deliver_ok([user], simple_message(subject=f"status {i}", body="x" * (100 * (i + 1)) + "\r\n"))
        selected = client.select("INBOX", readonly=True).ok()
        uidvalidity = next(int(r.code.split()[1]) for r in selected.named("OK") if r.code and r.code.upper().startswith("UIDVALIDITY"))
        data = client.fetch("1:*", "(UID RFC822.SIZE)")
        sizes = [int(v["RFC822.SIZE"]) for v in data.values()]
        uids = [int(v["UID"]) for v in data.values()]
        client.command("UNSELECT").ok()
        status = client.status("INBOX", "MESSAGES UIDNEXT UIDVALIDITY UNSEEN SIZE HIGHESTMODSEQ")
        self.assertEqual(set(status), {"MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "SIZE", "HIGHESTMODSEQ"})
        self.assertEqual(status["MESSAGES"], 2)
        self.assertEqual(status["UNSEEN"], 2)
        self.assertEqual(status["SIZE"], sum(sizes))
        self.assertEqual(status["UIDVALIDITY"], uidvalidity)
        self.assertGreater(status["UIDNEXT"], max(uids))
        self.assertGreater(status["HIGHESTMODSEQ"], 0)

        other = self.raw(user, password)
        other.select("INBOX").ok()
        other.command("STORE 1 +FLAGS (\\Seen)").ok()
        later = client.status("INBOX", "UNSEEN HIGHESTMODSEQ UIDNEXT")
        self.assertEqual(later["UNSEEN"], 1)
        self.assertGreater(later["HIGHESTMODSEQ"], status["HIGHESTMODSEQ"])

        self.server.deliver_ok([user], simple_message(subject="next"))
        client.select("INBOX", readonly=True).ok()
        data = client.fetch("3", "UID")
        self.assertGreaterEqual(int(data[3]["UID"]), status["UIDNEXT"])
        client.command('STATUS "No such box" (MESSAGES)').expect("NO")

    # -- names -------------------------------------------------------------

    def test_non_ascii_names_in_modified_utf7(self):
        user, password, client = self.session()
        name = "Entwürfe/日本語 & Co"
        encoded = mutf7_encode(name)
        self.assertEqual(encoded, "Entw&APw-rfe/&ZeVnLIqe- &- Co")
        client.command(f"CREATE {quote(encoded)}").ok()
        names = self.names(client)
        self.assertIn(encoded, names)
        self.assertIn("Entw&APw-rfe", names)
        client.select(encoded).ok()
        client.append(encoded, simple_message(subject="utf7")).ok()
        self.assertEqual(client.status(encoded, "MESSAGES")["MESSAGES"], 1)
        # Broken modified UTF-7 is not a name.
        self.assertNotEqual(client.command('CREATE "Bad&Jjo!"').status, "OK")

        # An IMAP4rev2 session sees and uses the same mailbox by its UTF-8 name.
        rev2 = self.raw(user, password)
        rev2.command("ENABLE IMAP4rev2").ok()
        utf8_names = set(list_entries(rev2.command('LIST "" "*"').ok()))
        self.assertIn(name, utf8_names)
        self.assertNotIn(encoded, utf8_names)
        rev2.command("SELECT ", Lit(name.encode("utf-8"))).ok()
        rev2.command('CREATE "Grüße"').ok()
        self.assertIn(mutf7_encode("Grüße"), self.names(client))

        listing = self.server.cli_ok("mailbox", "list", user).stdout.decode("utf-8", "replace")
        self.assertTrue(name in listing or encoded in listing, listing)

    def test_names_with_quotes_spaces_and_backslashes(self):
        _, _, client = self.session()
        name = 'My "Quoted" Box \\ here'
        client.command(f"CREATE {quote(name)}").ok()
        self.assertIn(name, self.names(client))
        client.select(name).ok()
        client.command("CREATE ", Lit(b"Via literal")).ok()
        self.assertIn("Via literal", self.names(client))


if __name__ == "__main__":
    unittest.main()
