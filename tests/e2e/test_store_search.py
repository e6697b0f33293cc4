"""STORE and SEARCH: flags and keywords (RFC 9051 6.4.6), search keys
(6.4.4), ESEARCH return options (RFC 4731, and the rev2 default) and
SEARCHRES (RFC 5182)."""

import unittest
from datetime import datetime

from harness import (
    Lit, ServerTestCase, esearch_items, fetch_items, flag_set, search_numbers, simple_message,
)
from mime_expect import ALTERNATIVE, ENCODED


def message(subject, body, *, sender, to, date, extra=""):
    return simple_message(subject=subject, body=body, sender=sender, to=to, date=date, extra_headers=extra)


# (message, flags, internal date); sequence numbers follow this order.
CORPUS = [
    (message("Quarterly numbers", "The revenue grew by ten percent.\r\n", sender="alice@example.com",
             to="bob@example.org", date="Mon, 01 Jan 2024 10:00:00 +0000"),
     "\\Seen \\Answered", "01-Feb-2024 12:00:00 +0000"),
    (message("Lunch plans", "Pizza or sushi?\r\n", sender="carol@example.net", to="alice@example.com",
             date="Mon, 15 Jan 2024 12:30:00 +0000", extra="Cc: dave@example.net\r\nX-Priority: 1\r\n"),
     "\\Flagged", "15-Feb-2024 12:00:00 +0000"),
    (ENCODED, "", "08-Mar-2024 12:00:00 +0000"),
    (message("Big attachment", "lorem ipsum " * 2000 + "\r\n", sender="alice@example.com", to="team@example.com",
             date="Wed, 20 Mar 2024 09:00:00 +0000", extra="Bcc: secret@example.org\r\n"),
     "\\Draft $Important", "20-Mar-2024 12:00:00 +0000"),
    (message("Re: Quarterly numbers", "Nice work on the revenue.\r\n", sender="bob@example.org",
             to="alice@example.com", date="Mon, 01 Apr 2024 08:00:00 +0000",
             extra="In-Reply-To: <q1@example.com>\r\n"),
     "\\Deleted \\Seen", "01-Apr-2024 12:00:00 +0000"),
    (ALTERNATIVE, "project-x", "10-Apr-2024 12:00:00 +0000"),
]
ALL = {1, 2, 3, 4, 5, 6}


class SearchTest(ServerTestCase):

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.user, cls.password = cls.server.new_user("search")
        client = cls.server.raw(cls.user, cls.password)
        try:
            client.command('CREATE "Search"').ok()
            for data, flags, date in CORPUS:
                client.append("Search", data, flags=flags, date=date).ok()
        finally:
            client.close()

    def setUp(self) -> None:
        self.client = self.raw(self.user, self.password)
        self.client.select("Search", readonly=True).ok()
        data = self.client.fetch("1:*", "(UID RFC822.SIZE)")
        self.uids = {n: int(v["UID"]) for n, v in data.items()}
        self.sizes = {n: int(v["RFC822.SIZE"]) for n, v in data.items()}

    def check(self, criteria, expected, *more):
        with self.subTest(criteria=criteria):
            self.assertEqual(set(self.client.search(criteria, *more)), set(expected))

    def test_flag_keys(self):
        self.check("ALL", ALL)
        self.check("SEEN", {1, 5})
        self.check("UNSEEN", {2, 3, 4, 6})
        self.check("ANSWERED", {1})
        self.check("UNANSWERED", ALL - {1})
        self.check("FLAGGED", {2})
        self.check("UNFLAGGED", ALL - {2})
        self.check("DELETED", {5})
        self.check("UNDELETED", ALL - {5})
        self.check("DRAFT", {4})
        self.check("UNDRAFT", ALL - {4})
        self.check("KEYWORD $Important", {4})
        self.check("KEYWORD project-x", {6})
        self.check("UNKEYWORD project-x", ALL - {6})
        self.check("KEYWORD never-used", set())

    def test_address_and_subject_keys(self):
        self.check("FROM alice", {1, 4})
        self.check("FROM carol", {2, 6})
        self.check("FROM ALICE@EXAMPLE.COM", {1, 4})
        self.check("TO bob", {1})
        self.check("CC dave", {2})
        self.check("BCC secret", {4})
        self.check("SUBJECT quarterly", {1, 5})
        self.check('SUBJECT "Re:"', {5})
        self.check('SUBJECT "und K"', {3})

    def test_header_keys(self):
        self.check("HEADER X-Priority 1", {2})
        self.check('HEADER X-Priority ""', {2})
        self.check("HEADER Message-ID <enc-1@example.de>", {3})
        self.check('HEADER In-Reply-To "q1@example.com"', {5})
        self.check("HEADER Received relay.example.org", {3})
        self.check('HEADER X-Not-There ""', set())

    def test_body_and_text(self):
        self.check("BODY revenue", {1, 5})
        # TEXT covers the header, BODY does not.
        self.check("BODY quarterly", set())
        self.check("TEXT quarterly", {1, 5})
        self.check("BODY sushi", {2})
        self.check("BODY PIZZA", {2})

    def test_charset_utf8_matches_decoded_encoded_words_and_bodies(self):
        cases = [
            ("SUBJECT", "München", {3}),
            ("SUBJECT", "Grüße aus München und Köln", {3}),
            ("FROM", "Jörg", {3}),
            ("TO", "André", {3}),
            ("BODY", "Frühstück", {3}),
            ("BODY", "Brötchen", {6}),
            ("TEXT", "Köln", {3}),
            ("SUBJECT", "Brötchen", set()),
        ]
        for key, value, expected in cases:
            self.check(f"CHARSET UTF-8 {key} ", expected, Lit(value.encode("utf-8")))

    def test_unknown_charset_is_no_badcharset(self):
        result = self.client.command("SEARCH CHARSET X-NO-SUCH-CHARSET SUBJECT a").expect("NO")
        self.assertEqual(result.code_name, "BADCHARSET")

    def test_internal_date_keys(self):
        self.check("BEFORE 15-Feb-2024", {1})
        self.check("ON 15-Feb-2024", {2})
        self.check("SINCE 20-Mar-2024", {4, 5, 6})
        self.check("SINCE 1-Feb-2024 BEFORE 8-Mar-2024", {1, 2})
        self.check("ON 16-Feb-2024", set())

    def test_sent_date_keys(self):
        self.check("SENTBEFORE 15-Jan-2024", {1})
        self.check("SENTON 15-Jan-2024", {2})
        self.check("SENTSINCE 1-Apr-2024", {5})
        self.check("SENTSINCE 8-Mar-2024", {3, 4, 5})
        self.check("SENTSINCE 6-Mar-2024 SENTBEFORE 8-Mar-2024", {6})

    def test_size_keys_are_strict(self):
        self.check("LARGER 10000", {4})
        self.check("SMALLER 10000", ALL - {4})
        size = self.sizes[1]
        self.check(f"1 LARGER {size}", set())
        self.check(f"1 LARGER {size - 1}", {1})
        self.check(f"1 SMALLER {size}", set())
        self.check(f"1 SMALLER {size + 1}", {1})

    def test_sequence_and_uid_sets(self):
        self.check("2:4", {2, 3, 4})
        self.check("5:*", {5, 6})
        self.check("*:5", {5, 6})
        self.check("2,4,6", {2, 4, 6})
        self.check(f"UID {self.uids[3]}", {3})
        self.check(f"UID {self.uids[2]}:{self.uids[4]}", {2, 3, 4})
        self.check(f"UID {self.uids[4]}:{self.uids[2]}", {2, 3, 4})
        uids = self.client.search("ALL", uid=True)
        self.assertEqual(uids, sorted(self.uids.values()))
        uids = self.client.search(f"UID {self.uids[5]}:*", uid=True)
        self.assertEqual(uids, [self.uids[5], self.uids[6]])
        self.assertEqual(self.client.search("UNSEEN", uid=True), [self.uids[n] for n in (2, 3, 4, 6)])

    def test_boolean_combinations(self):
        self.check("OR FLAGGED DRAFT", {2, 4})
        self.check("NOT SEEN", {2, 3, 4, 6})
        self.check("NOT NOT SEEN", {1, 5})
        self.check("(FROM alice SEEN)", {1})
        self.check("NOT (FROM alice SEEN)", ALL - {1})
        self.check("OR (FROM carol) (SUBJECT quarterly)", {1, 2, 5, 6})
        self.check("OR OR FLAGGED DRAFT DELETED", {2, 4, 5})
        self.check("FROM alice UNSEEN", {4})
        self.check("OR SEEN FLAGGED NOT DELETED", {1, 2})

    def test_empty_result_still_answers_search(self):
        result = self.client.command("SEARCH SUBJECT no-such-subject-anywhere").ok()
        # IMAP4rev1 (RFC 3501 6.4.4): the SEARCH response is always sent.
        self.assertEqual([r.raw for r in result.named("SEARCH")], [b"* SEARCH\r\n"])

    def test_bad_search_syntax(self):
        self.client.command("SEARCH FROBNICATE").expect("BAD")
        self.client.command("SEARCH BEFORE 32-Jan-2024").expect("BAD")
        self.client.command("SEARCH OR SEEN").expect("BAD")
        self.client.command("SEARCH (SEEN").expect("BAD")
        self.client.command("NOOP").ok()

    # -- ESEARCH -----------------------------------------------------------

    def esearch(self, command):
        result = self.client.command(command).ok()
        self.assertEqual(result.named("SEARCH"), [], "ESEARCH requested, plain SEARCH answered")
        responses = result.named("ESEARCH")
        self.assertEqual(len(responses), 1, result.describe())
        items = esearch_items(responses[0])
        self.assertEqual(items.get("TAG"), result.tag)
        return items

    def test_search_return_options(self):
        items = self.esearch("SEARCH RETURN (MIN MAX COUNT ALL) UNSEEN")
        self.assertEqual(items, {"TAG": items["TAG"], "MIN": 2, "MAX": 6, "COUNT": 4, "ALL": [2, 3, 4, 6]})
        items = self.esearch("UID SEARCH RETURN (MIN MAX) UNSEEN")
        self.assertEqual(items, {"TAG": items["TAG"], "UID": True, "MIN": self.uids[2], "MAX": self.uids[6]})
        items = self.esearch("SEARCH RETURN (COUNT) SUBJECT no-such-subject")
        self.assertEqual(items, {"TAG": items["TAG"], "COUNT": 0})
        items = self.esearch("SEARCH RETURN (MIN MAX ALL) SUBJECT no-such-subject")
        self.assertEqual(items, {"TAG": items["TAG"]})
        # An empty option list means ALL.
        items = self.esearch("SEARCH RETURN () FLAGGED")
        self.assertEqual(items, {"TAG": items["TAG"], "ALL": [2]})

    def test_imap4rev2_search_answers_esearch(self):
        client = self.raw(self.user, self.password)
        client.command("ENABLE IMAP4rev2").ok()
        client.select("Search", readonly=True).ok()
        result = client.command("SEARCH UNSEEN").ok()
        self.assertEqual(result.named("SEARCH"), [])
        [response] = result.named("ESEARCH")
        self.assertEqual(esearch_items(response), {"TAG": result.tag, "ALL": [2, 3, 4, 6]})
        result = client.command("SEARCH SUBJECT no-such-subject").ok()
        self.assertEqual([r.raw for r in result.named("ESEARCH")], [f'* ESEARCH (TAG "{result.tag}")\r\n'.encode()])
        result = client.command("UID SEARCH FLAGGED").ok()
        [response] = result.named("ESEARCH")
        self.assertEqual(esearch_items(response), {"TAG": result.tag, "UID": True, "ALL": [self.uids[2]]})
        self.assertEqual(search_numbers(client.command("SEARCH CHARSET UTF-8 SUBJECT \"München\"").ok()), [3])


class SearchResTest(ServerTestCase):
    """SEARCHRES: SEARCH RETURN (SAVE) and "$"."""

    def setUp(self) -> None:
        user, password = self.new_user("res")
        self.client = self.raw(user, password)
        self.client.command('CREATE "Saved"').ok()
        for data, flags, date in CORPUS:
            self.client.append("INBOX", data, flags=flags, date=date).ok()
        self.client.select("INBOX").ok()
        self.uids = {n: int(v["UID"]) for n, v in self.client.fetch("1:*", "UID").items()}

    def test_empty_before_any_save(self):
        result = self.client.command("FETCH $ (UID)").ok()
        self.assertEqual(result.named("FETCH"), [])

    def test_save_alone_sends_no_search_response(self):
        result = self.client.command("SEARCH RETURN (SAVE) OR FLAGGED DRAFT").ok()
        self.assertEqual(result.named("ESEARCH") + result.named("SEARCH"), [], result.describe())
        data = self.client.fetch("$", "UID", uid=True)
        self.assertEqual({int(v["UID"]) for v in data.values()}, {self.uids[2], self.uids[4]})
        data = self.client.fetch("$", "UID")
        self.assertEqual(set(data), {2, 4})

    def test_save_with_min_saves_only_the_minimum(self):
        result = self.client.command("SEARCH RETURN (SAVE MIN) UNSEEN").ok()
        [response] = result.named("ESEARCH")
        self.assertEqual(esearch_items(response), {"TAG": result.tag, "MIN": 2})
        self.assertEqual(set(self.client.fetch("$", "UID")), {2})

    def test_dollar_in_store_copy_and_search(self):
        self.client.command("SEARCH RETURN (SAVE ALL) FROM alice").ok()
        stored = self.client.command("STORE $ +FLAGS (saved-hit)").ok()
        self.assertEqual(set(fetch_items(stored)), {1, 4})
        self.assertEqual(set(self.client.search("KEYWORD saved-hit")), {1, 4})
        self.assertEqual(set(self.client.search("$ UNSEEN")), {4})
        copied = self.client.command('COPY $ "Saved"').ok()
        self.assertEqual(copied.code_name, "COPYUID")
        self.assertEqual(self.client.status("Saved", "MESSAGES")["MESSAGES"], 2)
        self.client.select("Saved").ok()
        # SELECT forgets the saved result.
        self.assertEqual(self.client.command("FETCH $ UID").ok().named("FETCH"), [])


class StoreTest(ServerTestCase):

    def setUp(self) -> None:
        self.user, self.password = self.new_user("store")
        for i in range(3):
            self.server.deliver_ok([self.user], simple_message(subject=f"store {i}"))
        self.client = self.raw(self.user, self.password)
        self.client.select("INBOX").ok()

    def flags(self, number, client=None):
        client = client or self.client
        return flag_set(self.fetch_one(client, str(number), "FLAGS")["FLAGS"])

    def stored_flags(self, result, number):
        items = fetch_items(result)
        self.assertIn(number, items, f"no FETCH response for {number}\n{result.describe()}")
        return flag_set(items[number]["FLAGS"])

    def test_add_remove_replace(self):
        result = self.client.command("STORE 1 +FLAGS (\\Flagged)").ok()
        self.assertEqual(self.stored_flags(result, 1), {"\\Flagged"})
        result = self.client.command("STORE 1 +FLAGS (\\Seen \\Answered)").ok()
        self.assertEqual(self.stored_flags(result, 1), {"\\Flagged", "\\Seen", "\\Answered"})
        result = self.client.command("STORE 1 -FLAGS (\\Flagged \\Answered)").ok()
        self.assertEqual(self.stored_flags(result, 1), {"\\Seen"})
        result = self.client.command("STORE 1 FLAGS (\\Draft)").ok()
        self.assertEqual(self.stored_flags(result, 1), {"\\Draft"})
        result = self.client.command("STORE 1 FLAGS ()").ok()
        self.assertEqual(self.stored_flags(result, 1), set())
        self.assertEqual(self.flags(2), set(), "other messages untouched")

    def test_silent_sends_no_fetch(self):
        result = self.client.command("STORE 1:2 +FLAGS.SILENT (\\Deleted)").ok()
        self.assertEqual(result.named("FETCH"), [], result.describe())
        self.assertEqual(self.flags(1), {"\\Deleted"})
        self.assertEqual(self.flags(2), {"\\Deleted"})
        result = self.client.command("STORE 1 -FLAGS.SILENT (\\Deleted)").ok()
        self.assertEqual(result.named("FETCH"), [])
        result = self.client.command("STORE 3 FLAGS.SILENT (\\Seen)").ok()
        self.assertEqual(result.named("FETCH"), [])
        self.assertEqual([self.flags(n) for n in (1, 2, 3)], [set(), {"\\Deleted"}, {"\\Seen"}])

    def test_keywords(self):
        result = self.client.command("STORE 2 +FLAGS ($Important work-item)").ok()
        self.assertEqual(self.stored_flags(result, 2), {"$Important", "work-item"})
        self.assertEqual(set(self.client.search("KEYWORD work-item")), {2})
        self.assertEqual(set(self.client.search("UNKEYWORD work-item")), {1, 3})
        # A new session sees the keywords, and the mailbox's FLAGS name them.
        other = self.raw(self.user, self.password)
        selected = other.select("INBOX").ok()
        [flags] = selected.data("FLAGS")
        self.assertTrue({"$Important", "work-item"} <= {str(f) for f in flags[0]}, selected.describe())
        self.assertEqual(self.flags(2, other), {"$Important", "work-item"})
        self.client.command("STORE 2 -FLAGS ($Important)").ok()
        self.assertEqual(self.flags(2, other), {"work-item"})

    def test_uid_store_reports_uid(self):
        uid = int(self.fetch_one(self.client, "3", "UID")["UID"])
        result = self.client.command(f"UID STORE {uid} +FLAGS (\\Seen)").ok()
        items = fetch_items(result)
        self.assertEqual(int(items[3]["UID"]), uid)
        self.assertEqual(flag_set(items[3]["FLAGS"]), {"\\Seen"})
        # A UID that does not exist is not an error and changes nothing.
        result = self.client.command(f"UID STORE {uid + 1000} +FLAGS (\\Seen)").ok()
        self.assertEqual(result.named("FETCH"), [])

    def test_store_in_read_only_mailbox_is_refused(self):
        client = self.raw(self.user, self.password)
        client.select("INBOX", readonly=True).ok()
        client.command("STORE 1 +FLAGS (\\Flagged)").expect("NO")
        self.assertEqual(self.flags(1), set())

    def test_flags_are_per_message_and_persist_across_sessions(self):
        self.client.command("STORE 1 +FLAGS (\\Seen)").ok()
        self.client.command("STORE 3 +FLAGS (\\Flagged)").ok()
        self.client.logout()
        other = self.raw(self.user, self.password)
        other.select("INBOX", readonly=True).ok()
        self.assertEqual([self.flags(n, other) for n in (1, 2, 3)], [{"\\Seen"}, set(), {"\\Flagged"}])


if __name__ == "__main__":
    unittest.main()


class SortTest(ServerTestCase):
    """SORT / UID SORT (RFC 5256) with SORT=DISPLAY (RFC 5957), and WITHIN (RFC 5032)."""

    MESSAGES = [
        # (From, Subject, Date, body padding)
        ('"Zed Zulu" <alice@example.com>', "Re: banana", "Mon, 04 Mar 2024 10:00:00 +0000", 10),
        ('"Amy Apple" <carol@example.com>', "apple", "Sun, 03 Mar 2024 10:00:00 +0000", 300),
        ("bob@example.com", "Fwd: Cherry", "Tue, 05 Mar 2024 10:00:00 +0000", 100),
        ('"Bea Berry" <dave@example.com>', "[list] date pie", "Sat, 02 Mar 2024 23:00:00 -0200", 50),
    ]

    def setUp(self) -> None:
        self.user, self.password = self.new_user("sort")
        for sender, subject, date, padding in self.MESSAGES:
            self.server.deliver_ok([self.user], simple_message(
                subject=subject, sender=sender, date=date, body="x" * padding + "\r\n"))
        self.client = self.raw(self.user, self.password)
        self.client.select("INBOX").ok()

    def sort(self, command: str) -> list[int]:
        result = self.client.command(command).ok()
        data = result.data("SORT")
        self.assertEqual(len(data), 1, result.describe())
        return [int(n) for n in data[0]]

    def test_capabilities(self):
        caps = {str(c).upper() for c in self.client.command("CAPABILITY").ok().data("CAPABILITY")[0]}
        self.assertTrue({"SORT", "SORT=DISPLAY", "ESORT", "WITHIN"} <= caps, caps)

    def test_each_key(self):
        # Base subjects: banana, apple, cherry, date pie ("Re:", "Fwd:", "[list]" removed).
        self.assertEqual(self.sort("SORT (SUBJECT) UTF-8 ALL"), [2, 1, 3, 4])
        # Dates in UTC: 4 is 2 Mar 23:00 -0200 = 3 Mar 01:00 UTC, before 2's 3 Mar 10:00.
        self.assertEqual(self.sort("SORT (DATE) UTF-8 ALL"), [4, 2, 1, 3])
        self.assertEqual(self.sort("SORT (REVERSE DATE) UTF-8 ALL"), [3, 1, 2, 4])
        # FROM sorts by the mailbox (local part): alice, bob, carol, dave.
        self.assertEqual(self.sort("SORT (FROM) UTF-8 ALL"), [1, 3, 2, 4])
        # DISPLAYFROM by display name, else the address: Amy, Bea, bob@, Zed.
        self.assertEqual(self.sort("SORT (DISPLAYFROM) UTF-8 ALL"), [2, 4, 3, 1])
        self.assertEqual(self.sort("SORT (SIZE) UTF-8 ALL"), [1, 4, 3, 2])
        # ARRIVAL: the four deliveries share a second or span two, as the
        # machine is busy (ties keep sequence order, REVERSE or not); an
        # APPEND with an old internal date comes first.
        self.client.command('APPEND INBOX "01-Jan-2020 00:00:00 +0000" ',
                            Lit(simple_message(subject="old", sender="old@example.com"))).ok()
        self.client.command("NOOP").ok()
        arrived = {}
        for n, item in self.client.fetch("1:*", "INTERNALDATE").items():
            stamp = item["INTERNALDATE"]
            stamp = stamp.decode() if isinstance(stamp, bytes) else str(stamp)
            arrived[int(n)] = datetime.strptime(stamp.strip('"'), "%d-%b-%Y %H:%M:%S %z").timestamp()
        self.assertEqual(self.sort("SORT (ARRIVAL) UTF-8 ALL"), sorted(arrived, key=lambda n: (arrived[n], n)))
        self.assertEqual(self.sort("SORT (ARRIVAL) UTF-8 ALL")[0], 5)
        self.assertEqual(self.sort("SORT (REVERSE ARRIVAL) UTF-8 ALL"),
                         sorted(arrived, key=lambda n: (-arrived[n], n)))
        self.assertEqual(self.sort("SORT (REVERSE ARRIVAL) UTF-8 ALL")[-1], 5)

    def test_search_keys_uids_and_ties(self):
        self.client.command("STORE 2,3 +FLAGS (\\Flagged)").ok()
        self.assertEqual(self.sort("SORT (SUBJECT) UTF-8 FLAGGED"), [2, 3])
        uids = {int(v["UID"]): n for n, v in self.client.fetch("1:*", "UID").items()}
        got = self.sort("UID SORT (REVERSE SUBJECT) US-ASCII NOT FLAGGED")
        self.assertEqual([uids[u] for u in got], [4, 1])
        # Equal keys keep sequence order.
        self.assertEqual(self.sort("SORT (TO) UTF-8 ALL"), [1, 2, 3, 4])

    def test_esort(self):
        result = self.client.command("SORT RETURN (MIN MAX COUNT ALL) (SUBJECT) UTF-8 ALL").ok()
        line = [r.raw.rstrip() for r in result.named("ESEARCH")]
        # Subject order is 2, 1, 3, 4: MIN/MAX are the first and last of it.
        self.assertEqual(line, [f'* ESEARCH (TAG "{result.tag}") MIN 2 MAX 4 ALL 2,1,3:4 COUNT 4'.encode()])
        self.assertEqual(result.named("SORT"), [])

    def test_bad_sorts(self):
        for command in ["SORT () UTF-8 ALL", "SORT (COLOUR) UTF-8 ALL", "SORT (DATE) UTF-8",
                        "SORT (REVERSE) UTF-8 ALL"]:
            with self.subTest(command=command):
                self.assertEqual(self.client.command(command).status, "BAD")
        refused = self.client.command("SORT (DATE) ISO-8859-1 ALL")
        self.assertEqual((refused.status, refused.code_name), ("NO", "BADCHARSET"))
        self.client.command("NOOP").ok()

    def test_within(self):
        everything = self.client.command("SEARCH YOUNGER 3600").ok().data("SEARCH")[0]
        self.assertEqual([int(n) for n in everything], [1, 2, 3, 4])
        self.assertEqual(self.client.command("SEARCH OLDER 3600").ok().data("SEARCH")[0], [])


class ThreadTest(ServerTestCase):
    """THREAD (RFC 5256): REFERENCES from Message-ID/References/In-Reply-To and
    subjects, ORDEREDSUBJECT by base subject."""

    def setUp(self) -> None:
        self.user, self.password = self.new_user("thread")
        messages = [
            ("<root@x>", "", "Plan", "Mon, 04 Mar 2024 10:00:00 +0000"),
            ("<r1@x>", "In-Reply-To: <root@x>\r\n", "Re: Plan", "Mon, 04 Mar 2024 11:00:00 +0000"),
            ("<other@x>", "", "Lunch", "Mon, 04 Mar 2024 09:00:00 +0000"),
            ("<r2@x>", "References: <root@x> <r1@x>\r\n", "Re: Plan", "Mon, 04 Mar 2024 12:00:00 +0000"),
            ("<r3@x>", "References: <root@x>\r\n", "Re: Plan", "Mon, 04 Mar 2024 13:00:00 +0000"),
            ("<orphan@x>", "References: <never-arrived@x>\r\n", "Re: Lunch", "Mon, 04 Mar 2024 14:00:00 +0000"),
        ]
        for message_id, headers, subject, date in messages:
            self.server.deliver_ok([self.user], simple_message(
                subject=subject, message_id=message_id, extra_headers=headers, date=date))
        self.client = self.raw(self.user, self.password)
        self.client.select("INBOX").ok()

    def thread(self, command: str) -> bytes:
        result = self.client.command(command).ok()
        lines = [r.raw.rstrip() for r in result.named("THREAD")]
        self.assertEqual(len(lines), 1, result.describe())
        return lines[0]

    def test_capabilities(self):
        caps = {str(c).upper() for c in self.client.command("CAPABILITY").ok().data("CAPABILITY")[0]}
        self.assertTrue({"THREAD=REFERENCES", "THREAD=ORDEREDSUBJECT"} <= caps, caps)

    def test_references(self):
        # Lunch (3) first by date, with the orphan reply (6) gathered under it by
        # subject; then Plan (1): replies 2 (with 4 under it) and 5.
        self.assertEqual(self.thread("THREAD REFERENCES UTF-8 ALL"), b"* THREAD (3 6)(1 (2 4)(5))")

    def test_ordered_subject_and_uids_and_search(self):
        self.assertEqual(self.thread("THREAD ORDEREDSUBJECT UTF-8 ALL"), b"* THREAD (3 6)(1 (2)(4)(5))")
        self.client.command("STORE 4 +FLAGS (\\Seen)").ok()
        uids = {n: int(v["UID"]) for n, v in self.client.fetch("1:*", "UID").items()}
        expected = f"* THREAD ({uids[3]} {uids[6]})({uids[1]} ({uids[2]})({uids[5]}))".encode()
        self.assertEqual(self.thread("UID THREAD ORDEREDSUBJECT UTF-8 UNSEEN"), expected)

    def test_bad_threads(self):
        self.assertEqual(self.client.command("THREAD KNITTING UTF-8 ALL").status, "BAD")
        refused = self.client.command("THREAD REFERENCES KOI8-R ALL")
        self.assertEqual((refused.status, refused.code_name), ("NO", "BADCHARSET"))
        empty = self.client.command("THREAD REFERENCES UTF-8 SUBJECT nothing-matches").ok()
        self.assertEqual([r.raw.rstrip() for r in empty.named("THREAD")], [b"* THREAD"])
