"""APPEND, COPY, MOVE, EXPUNGE, UID EXPUNGE, CLOSE and UNSELECT
(RFC 9051 6.3.12, 6.4.1-6.4.9; RFC 4315 UIDPLUS; RFC 6851 MOVE)."""

import imaplib
import time
import unittest
from datetime import datetime, timezone

from harness import Lit, ServerTestCase, flag_set, simple_message, text


def parse_date(value) -> datetime:
    return datetime.strptime(text(value).strip(), "%d-%b-%Y %H:%M:%S %z")


def apply_expunges(numbers, responses):
    """Applies "* n EXPUNGE" responses in order to a list indexed by sequence number."""
    remaining = list(numbers)
    for n in responses:
        assert 1 <= n <= len(remaining), f"EXPUNGE {n} out of range for {len(remaining)} messages"
        del remaining[n - 1]
    return remaining


def copyuid(code):
    """(uidvalidity, source uids, destination uids) from "COPYUID v src dst"."""
    name, validity, source, destination = code.split()
    assert name.upper() == "COPYUID", code

    def expand(s):
        # Order matters: the n-th source UID became the n-th destination UID.
        out = []
        for part in s.split(","):
            if ":" in part:
                a, b = (int(x) for x in part.split(":"))
                out.extend(range(a, b + 1) if a <= b else range(b, a + 1))
            else:
                out.append(int(part))
        return out

    return int(validity), expand(source), expand(destination)


class AppendTest(ServerTestCase):

    def setUp(self) -> None:
        self.user, self.password = self.new_user("append")
        self.client = self.raw(self.user, self.password)

    def test_multiappend_appends_all_in_one_command(self):
        caps = {str(c).upper() for c in self.client.command("CAPABILITY").ok().data("CAPABILITY")[0]}
        self.assertIn("MULTIAPPEND", caps)
        first, second, third = (simple_message(subject=f"multi {n}") for n in range(3))
        result = self.client.command(
            "APPEND Archive (\\Seen) ", Lit(first), " ", Lit(second),
            ' (\\Flagged) "14-Jul-2021 02:44:25 -0700" ', Lit(third)).ok()
        self.assertEqual(result.code_name, "APPENDUID", result.describe())
        uids = result.code.split()[2]
        self.assertEqual(self.client.status("Archive", "MESSAGES")["MESSAGES"], 3)
        self.client.select("Archive").ok()
        items = self.client.fetch(uids, "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])", uid=True)
        subjects = sorted(text(v["BODY[HEADER.FIELDS (SUBJECT)]"]).strip() for v in items.values())
        self.assertEqual(subjects, ["Subject: multi 0", "Subject: multi 1", "Subject: multi 2"])
        # A MULTIAPPEND to a missing mailbox appends nothing.
        refused = self.client.command("APPEND Nowhere ", Lit(first), " ", Lit(second))
        self.assertEqual((refused.status, refused.code_name), ("NO", "TRYCREATE"))

    def test_append_with_flags_and_date_returns_appenduid(self):
        message = simple_message(subject="appended", body="Appended body.\r\n")
        result = self.client.append("Archive", message, flags="\\Seen \\Flagged $Label", date="14-Jul-2021 02:44:25 -0700").ok()
        self.assertEqual(result.code_name, "APPENDUID", result.describe())
        _, validity, uid = result.code.split()
        status = self.client.status("Archive", "UIDVALIDITY MESSAGES")
        self.assertEqual(int(validity), status["UIDVALIDITY"])
        self.assertEqual(status["MESSAGES"], 1)
        self.client.select("Archive").ok()
        item = self.fetch_one(self.client, uid, "(FLAGS INTERNALDATE BODY.PEEK[] RFC822.SIZE)", uid=True)
        self.assertEqual(flag_set(item["FLAGS"]), {"\\Seen", "\\Flagged", "$Label"})
        self.assertEqual(parse_date(item["INTERNALDATE"]), parse_date("14-Jul-2021 02:44:25 -0700"))
        # APPEND stores exactly the literal: no trace headers.
        self.assertEqual(item["BODY[]"], message)
        self.assertEqual(int(item["RFC822.SIZE"]), len(message))

    def test_append_without_date_uses_now(self):
        before = datetime.now(timezone.utc)
        self.client.append("INBOX", simple_message(subject="now")).ok()
        self.client.select("INBOX").ok()
        item = self.fetch_one(self.client, "1", "(INTERNALDATE FLAGS)")
        self.assertLess(abs((parse_date(item["INTERNALDATE"]) - before).total_seconds()), 300)
        self.assertEqual(flag_set(item["FLAGS"]), set())

    def test_append_with_literal_plus(self):
        message = simple_message(subject="literal plus")
        result = self.client.append("INBOX", message, plus=True).ok()
        self.assertEqual(result.continuations, [], "LITERAL+ needs no continuation request")
        self.assertEqual(result.code_name, "APPENDUID")

    def test_append_to_missing_mailbox_is_trycreate(self):
        result = self.client.append("Does/Not/Exist", simple_message(subject="nowhere")).expect("NO")
        self.assertEqual(result.code_name, "TRYCREATE")
        # The mailbox was not created on the way.
        listing = self.client.command('LIST "" "Does*"').ok()
        self.assertEqual(listing.named("LIST"), [])

    def test_append_to_selected_mailbox_announces_exists(self):
        self.client.select("INBOX").ok()
        result = self.client.append("INBOX", simple_message(subject="to selected")).ok()
        exists = result.numbers("EXISTS") + self.client.command("NOOP").ok().numbers("EXISTS")
        self.assertEqual(exists, [1])
        _, _, uid = result.code.split()
        self.assertEqual(int(self.fetch_one(self.client, "1", "UID")["UID"]), int(uid))

    def test_appenduids_increase(self):
        uids = []
        for i in range(3):
            result = self.client.append("INBOX", simple_message(subject=f"n{i}")).ok()
            uids.append(int(result.code.split()[2]))
        self.assertEqual(uids, sorted(set(uids)))


class ImaplibFlowTest(ServerTestCase):
    """A whole session through imaplib, as a stdlib client sees it."""

    def test_imaplib_session(self):
        user, password = self.new_user("imaplib")
        client = self.server.imap(user, password)
        try:
            typ, data = client.list()
            self.assertEqual(typ, "OK")
            self.assertTrue(any(b'"/" INBOX' in line or b'"/" "INBOX"' in line for line in data), data)
            self.assertEqual(client.create("Work")[0], "OK")
            message = simple_message(subject="imaplib append", body="From imaplib.\r\n")
            when = datetime(2022, 5, 17, 8, 30, 0, tzinfo=timezone.utc)
            typ, data = client.append("Work", "(\\Flagged)", imaplib.Time2Internaldate(when), message)
            self.assertEqual(typ, "OK", data)
            typ, data = client.select("Work")
            self.assertEqual((typ, data), ("OK", [b"1"]))
            typ, data = client.search(None, "FLAGGED")
            self.assertEqual((typ, data), ("OK", [b"1"]))
            typ, data = client.fetch("1", "(RFC822)")
            self.assertEqual(typ, "OK")
            self.assertEqual(data[0][1], message)
            typ, data = client.fetch("1", "(INTERNALDATE)")
            self.assertEqual(typ, "OK")
            self.assertEqual(imaplib.Internaldate2tuple(data[0]), time.localtime(when.timestamp()))
            typ, data = client.store("1", "+FLAGS", "(\\Seen)")
            self.assertEqual(typ, "OK")
            typ, data = client.copy("1", "INBOX")
            self.assertEqual(typ, "OK")
            typ, data = client.store("1", "+FLAGS.SILENT", "(\\Deleted)")
            self.assertEqual(typ, "OK")
            typ, data = client.expunge()
            self.assertEqual((typ, data), ("OK", [b"1"]))
            self.assertEqual(client.close()[0], "OK")
            typ, data = client.status("INBOX", "(MESSAGES UNSEEN)")
            self.assertEqual(typ, "OK")
            self.assertIn(b"MESSAGES 1", data[0])
            self.assertIn(b"UNSEEN 0", data[0])
        finally:
            self.assertEqual(client.logout()[0], "BYE")


class CopyMoveExpungeTest(ServerTestCase):

    def setUp(self) -> None:
        self.user, self.password = self.new_user("copy")
        self.client = self.raw(self.user, self.password)
        self.messages = [simple_message(subject=f"message {i}", body=f"Body {i}.\r\n") for i in range(1, 6)]
        for i, message in enumerate(self.messages, start=1):
            flags = "\\Flagged" if i in (1, 3) else ""
            self.client.append("INBOX", message, flags=flags, date=f"0{i}-Jan-2023 10:00:00 +0000").ok()
        self.client.select("INBOX").ok()
        self.uids = [int(self.fetch_one(self.client, str(n), "UID")["UID"]) for n in range(1, 6)]

    def test_copy_returns_copyuid_and_preserves_flags_and_dates(self):
        result = self.client.command('COPY 1:2 "Archive"').ok()
        validity, source, destination = copyuid(result.code)
        self.assertEqual(validity, self.client.status("Archive", "UIDVALIDITY")["UIDVALIDITY"])
        self.assertEqual(source, self.uids[:2])
        self.assertEqual(len(destination), 2)
        # Source untouched.
        self.assertEqual(self.client.command("NOOP").ok().numbers("EXPUNGE"), [])
        archive = self.raw(self.user, self.password)
        archive.select("Archive", readonly=True).ok()
        for src_uid, dst_uid, n in zip(source, destination, (1, 2)):
            item = self.fetch_one(archive, str(dst_uid), "(BODY.PEEK[] FLAGS INTERNALDATE)", uid=True)
            self.assertEqual(item["BODY[]"], self.messages[n - 1])
            self.assertEqual(flag_set(item["FLAGS"]), {"\\Flagged"} if n == 1 else set())
            self.assertEqual(parse_date(item["INTERNALDATE"]), parse_date(f"0{n}-Jan-2023 10:00:00 +0000"))

    def test_uid_copy(self):
        result = self.client.command(f'UID COPY {self.uids[4]},{self.uids[2]} "Trash"').ok()
        _, source, destination = copyuid(result.code)
        self.assertEqual(sorted(source), sorted([self.uids[4], self.uids[2]]))
        self.assertEqual(self.client.status("Trash", "MESSAGES")["MESSAGES"], 2)

    def test_copy_to_missing_mailbox_is_trycreate(self):
        result = self.client.command('COPY 1 "Missing"').expect("NO")
        self.assertEqual(result.code_name, "TRYCREATE")

    def test_move(self):
        result = self.client.command('MOVE 2:3 "Archive"').ok()
        # RFC 6851 4.3: COPYUID in an untagged OK, before the EXPUNGE responses.
        copyuid_index = [i for i, r in enumerate(result.untagged) if r.name == "OK" and r.code and r.code.upper().startswith("COPYUID")]
        self.assertEqual(len(copyuid_index), 1, result.describe())
        expunge_index = [i for i, r in enumerate(result.untagged) if r.name == "EXPUNGE"]
        self.assertEqual(len(expunge_index), 2, result.describe())
        self.assertLess(copyuid_index[0], expunge_index[0])
        _, source, destination = copyuid(result.untagged[copyuid_index[0]].code)
        self.assertEqual(source, self.uids[1:3])
        remaining = apply_expunges(self.uids, result.numbers("EXPUNGE"))
        self.assertEqual(remaining, [self.uids[0], self.uids[3], self.uids[4]])
        data = self.client.fetch("1:*", "UID")
        self.assertEqual([int(data[n]["UID"]) for n in sorted(data)], remaining)
        archive = self.raw(self.user, self.password)
        archive.select("Archive", readonly=True).ok()
        item = self.fetch_one(archive, str(destination[1]), "(BODY.PEEK[] FLAGS)", uid=True)
        self.assertEqual(item["BODY[]"], self.messages[2])
        self.assertEqual(flag_set(item["FLAGS"]), {"\\Flagged"})

    def test_uid_move(self):
        result = self.client.command(f'UID MOVE {self.uids[4]} "Junk"').ok()
        self.assertEqual(result.numbers("EXPUNGE"), [5])
        self.assertEqual(self.client.status("Junk", "MESSAGES")["MESSAGES"], 1)

    def test_move_to_missing_mailbox_is_trycreate_and_keeps_messages(self):
        result = self.client.command('MOVE 1 "Missing"').expect("NO")
        self.assertEqual(result.code_name, "TRYCREATE")
        self.assertEqual(result.numbers("EXPUNGE"), [])
        self.assertEqual(len(self.client.fetch("1:*", "UID")), 5)

    def test_expunge(self):
        self.client.command("STORE 2,4 +FLAGS.SILENT (\\Deleted)").ok()
        result = self.client.command("EXPUNGE").ok()
        self.assertEqual(len(result.numbers("EXPUNGE")), 2)
        remaining = apply_expunges(self.uids, result.numbers("EXPUNGE"))
        self.assertEqual(remaining, [self.uids[0], self.uids[2], self.uids[4]])
        # Nothing left to expunge.
        self.assertEqual(self.client.command("EXPUNGE").ok().numbers("EXPUNGE"), [])
        # Expunged UIDs are gone for good.
        result = self.client.command(f"UID FETCH {self.uids[1]} FLAGS").ok()
        self.assertEqual(result.named("FETCH"), [])

    def test_uid_expunge_only_expunges_the_given_uids(self):
        self.client.command("STORE 1:3 +FLAGS.SILENT (\\Deleted)").ok()
        result = self.client.command(f"UID EXPUNGE {self.uids[1]}").ok()
        self.assertEqual(result.numbers("EXPUNGE"), [2])
        data = self.client.fetch("1:*", "(UID FLAGS)")
        self.assertEqual([int(data[n]["UID"]) for n in sorted(data)], [self.uids[0]] + self.uids[2:])
        self.assertEqual(flag_set(data[1]["FLAGS"]), {"\\Flagged", "\\Deleted"})
        # A message without \Deleted is never expunged, even when named.
        result = self.client.command(f"UID EXPUNGE {self.uids[3]}:{self.uids[4]}").ok()
        self.assertEqual(result.numbers("EXPUNGE"), [])

    def test_close_expunges_silently(self):
        self.client.command("STORE 1 +FLAGS.SILENT (\\Deleted)").ok()
        result = self.client.command("CLOSE").ok()
        self.assertEqual(result.named("EXPUNGE"), [], "CLOSE sends no EXPUNGE responses")
        self.assertEqual(self.client.status("INBOX", "MESSAGES")["MESSAGES"], 4)
        # Back in the authenticated state.
        self.assertNotEqual(self.client.command("FETCH 1 FLAGS").status, "OK")

    def test_close_of_examined_mailbox_does_not_expunge(self):
        self.client.command("STORE 1 +FLAGS.SILENT (\\Deleted)").ok()
        self.client.select("INBOX", readonly=True).ok()
        self.client.command("CLOSE").ok()
        self.assertEqual(self.client.status("INBOX", "MESSAGES")["MESSAGES"], 5)

    def test_unselect_does_not_expunge(self):
        self.client.command("STORE 1 +FLAGS.SILENT (\\Deleted)").ok()
        result = self.client.command("UNSELECT").ok()
        self.assertEqual(result.named("EXPUNGE"), [])
        self.assertEqual(self.client.status("INBOX", "MESSAGES")["MESSAGES"], 5)
        self.assertNotEqual(self.client.command("FETCH 1 FLAGS").status, "OK")

    def test_expunge_in_read_only_mailbox_is_refused(self):
        self.client.command("STORE 1 +FLAGS.SILENT (\\Deleted)").ok()
        reader = self.raw(self.user, self.password)
        reader.select("INBOX", readonly=True).ok()
        reader.command("EXPUNGE").expect("NO")
        self.assertEqual(self.client.status("INBOX", "MESSAGES")["MESSAGES"], 5)

    def test_inbox_is_case_insensitive(self):
        for name in ("inbox", "InBoX"):
            with self.subTest(name=name):
                self.assertEqual(self.client.status(name, "MESSAGES")["MESSAGES"], 5)
                self.client.select(name, readonly=True).ok()
        self.client.select("INBOX").ok()
        result = self.client.command('COPY 1 "Inbox"').ok()
        self.assertEqual(result.code_name, "COPYUID")
        self.assertEqual(self.client.status("INBOX", "MESSAGES")["MESSAGES"], 6)

    def test_move_is_seen_by_another_session(self):
        other = self.raw(self.user, self.password)
        other.select("INBOX").ok()
        self.client.command('MOVE 1 "Archive"').ok()
        result = other.command("NOOP").ok()
        self.assertEqual(result.numbers("EXPUNGE"), [1])
        data = other.fetch("1:*", "UID")
        self.assertEqual([int(data[n]["UID"]) for n in sorted(data)], self.uids[1:])

    def test_copy_keeps_uids_increasing_in_destination(self):
        first = copyuid(self.client.command('COPY 1 "Archive"').ok().code)[2]
        second = copyuid(self.client.command('COPY 2:3 "Archive"').ok().code)[2]
        self.assertLess(max(first), min(second))


if __name__ == "__main__":
    unittest.main()
