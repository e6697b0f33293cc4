"""Live results and notifications: CONTEXT=SEARCH / CONTEXT=SORT (RFC 5267)
update contexts, whose ADDTO / REMOVEFROM follow what a second connection
delivers (LMTP), appends, flags and expunges; and NOTIFY (RFC 5465), whose
STATUS and LIST responses tell a client about mailboxes it has not selected.

Every wait is on a protocol response with a bound (IDLE pushes, tagged
completions); nothing sleeps."""

import re
import time
import unittest

from harness import Result, ServerTestCase, simple_message

# Bound on waiting for a pushed response; a correct server answers in milliseconds.
PUSH_TIMEOUT_S = 10.0


class Idle:
    """An IDLE command in progress on an `Imap` client, collecting what it pushes."""

    def __init__(self, client) -> None:
        self.client = client
        self.tag = client.next_tag()
        client.send(f"{self.tag} IDLE\r\n".encode())
        self.seen = []
        while True:
            response = client.read_response(timeout=PUSH_TIMEOUT_S)
            if response.kind == "+":
                break
            assert response.kind == "*", f"IDLE refused: {response!r}"
            self.seen.append(response)

    def wait_for(self, pattern: str, what: str):
        """Reads pushed responses until one's line matches `pattern` (a regex)."""
        deadline = time.monotonic() + PUSH_TIMEOUT_S
        for response in self.seen:
            if re.search(pattern, response.line):
                return response
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {what} within {PUSH_TIMEOUT_S}s while idling; got {self.seen!r}")
            try:
                response = self.client.read_response(timeout=remaining)
            except TimeoutError:
                raise AssertionError(f"no {what} within {PUSH_TIMEOUT_S}s while idling; got {self.seen!r}")
            self.seen.append(response)
            if re.search(pattern, response.line):
                return response

    def index(self, pattern: str) -> int:
        for i, response in enumerate(self.seen):
            if re.search(pattern, response.line):
                return i
        raise AssertionError(f"no response matching {pattern!r} in {self.seen!r}")

    def done(self):
        self.client.send(b"DONE\r\n")
        result = Result(tag=self.tag, command=b"IDLE ... DONE")
        return self.client.finish(result).ok()


def lines(result, prefix: str) -> list[str]:
    return [r.line for r in result.untagged if r.line.startswith(prefix)]


class ContextTest(ServerTestCase):
    server_options = {"imap": {"context_updates_max": 3}}

    def setUp(self) -> None:
        self.user, self.password = self.new_user("ctx")
        self.watcher = self.raw(self.user, self.password)
        self.other = self.raw(self.user, self.password)

    def test_capabilities(self) -> None:
        caps = self.watcher.command("CAPABILITY").ok().untagged[0].line.split()
        for cap in ("ESORT", "CONTEXT=SEARCH", "CONTEXT=SORT", "PARTIAL"):
            self.assertIn(cap, caps)

    def test_search_update_follows_delivery_flags_and_expunge(self) -> None:
        self.server.deliver_ok(self.user, simple_message("first"))
        self.watcher.select("INBOX").ok()
        self.other.select("INBOX").ok()
        result = self.watcher.command("UID SEARCH RETURN (UPDATE) UNSEEN", tag="B01").ok()
        self.assertEqual(lines(result, "* ESEARCH"), ['* ESEARCH (TAG "B01") UID ALL 1'])

        idle = Idle(self.watcher)
        # A delivery over LMTP: EXISTS, then ADDTO.
        self.server.deliver_ok(self.user, simple_message("second"))
        idle.wait_for(r'^\* ESEARCH \(TAG "B01"\) UID ADDTO \(0 2\)$', "ADDTO for the delivery")
        self.assertLess(idle.index(r"^\* 2 EXISTS$"), idle.index(r"ADDTO \(0 2\)"))
        # A flag change by the other connection makes message 1 leave.
        self.other.command("UID STORE 1 +FLAGS (\\Seen)").ok()
        idle.wait_for(r'^\* ESEARCH \(TAG "B01"\) UID REMOVEFROM \(0 1\)$', "REMOVEFROM for \\Seen")
        # An APPEND that does not match brings EXISTS and no ADDTO; one that does, ADDTO.
        self.other.append("INBOX", simple_message("seen"), flags="\\Seen").ok()
        idle.wait_for(r"^\* 3 EXISTS$", "EXISTS for the APPEND")
        self.other.append("INBOX", simple_message("unseen")).ok()
        idle.wait_for(r'^\* ESEARCH \(TAG "B01"\) UID ADDTO \(0 4\)$', "ADDTO for the APPEND")
        self.assertFalse([r for r in idle.seen if "ADDTO (0 3)" in r.line], idle.seen)
        # An expunge of a member: REMOVEFROM before the EXPUNGE.
        self.other.command("UID STORE 2 +FLAGS.SILENT (\\Deleted)").ok()
        self.other.command("UID EXPUNGE 2").ok()
        idle.wait_for(r"^\* 2 EXPUNGE$", "EXPUNGE")
        self.assertLess(idle.index(r"REMOVEFROM \(0 2\)"), idle.index(r"^\* 2 EXPUNGE$"))
        idle.done()
        # The context holds what a new search finds.
        result = self.watcher.command("UID SEARCH RETURN (ALL) UNSEEN").ok()
        self.assertTrue(lines(result, "* ESEARCH")[0].endswith("UID ALL 4"), result.describe())
        self.watcher.command('CANCELUPDATE "B01"').ok()
        self.other.command("UID STORE 4 +FLAGS (\\Seen)").ok()
        result = self.watcher.command("NOOP").ok()
        self.assertEqual(lines(result, "* ESEARCH"), [], result.describe())

    def test_sort_update_places_new_messages(self) -> None:
        for subject in ("bravo", "delta"):
            self.server.deliver_ok(self.user, simple_message(subject))
        self.watcher.select("INBOX").ok()
        result = self.watcher.command("UID SORT RETURN (UPDATE) (SUBJECT) UTF-8 ALL", tag="C01").ok()
        self.assertEqual(lines(result, "* ESEARCH"), ['* ESEARCH (TAG "C01") UID ALL 1:2'])
        idle = Idle(self.watcher)
        self.server.deliver_ok(self.user, simple_message("charlie"))
        idle.wait_for(r'^\* ESEARCH \(TAG "C01"\) UID ADDTO \(2 3\)$', "ADDTO at position 2")
        self.server.deliver_ok(self.user, simple_message("alpha"))
        idle.wait_for(r'^\* ESEARCH \(TAG "C01"\) UID ADDTO \(1 4\)$', "ADDTO at position 1")
        idle.done()
        result = self.watcher.command("UID SORT RETURN (PARTIAL 1:2) (SUBJECT) UTF-8 ALL").ok()
        self.assertTrue(lines(result, "* ESEARCH")[0].endswith("UID PARTIAL (1:2 4,1)"), result.describe())

    def test_partial_and_refusals_keep_the_connection(self) -> None:
        for n in range(5):
            self.server.deliver_ok(self.user, simple_message(f"m{n}"))
        self.watcher.select("INBOX").ok()
        result = self.watcher.command("SEARCH RETURN (PARTIAL -1:-2 COUNT) ALL").ok()
        self.assertEqual(lines(result, "* ESEARCH")[0].split(")", 1)[1].strip(), "PARTIAL (-1:-2 4:5) COUNT 5")
        # RFC 9394: PARTIAL as a FETCH modifier.
        fetched = self.watcher.fetch("1:*", "(FLAGS) (PARTIAL -1:-2)", uid=True)
        self.assertEqual(sorted(fetched), [4, 5], fetched)
        result = self.watcher.command("SEARCH RETURN (PARTIAL 7:9) ALL").ok()
        self.assertIn("PARTIAL (7:9 NIL)", lines(result, "* ESEARCH")[0])
        # Bad syntax: BAD, and the session goes on.
        for bad in ("SEARCH RETURN (PARTIAL 0:2) ALL", "SEARCH RETURN (PARTIAL 1:-2) ALL",
                    "SEARCH RETURN (UPDATES) ALL", "CANCELUPDATE", 'CANCELUPDATE "nope"'):
            self.watcher.command(bad).expect("BAD")
        # More live contexts than allowed: the result, and NO [NOUPDATE].
        for tag in ("U1", "U2", "U3"):
            self.watcher.command("SEARCH RETURN (UPDATE) ALL", tag=tag).ok()
        result = self.watcher.command("SEARCH RETURN (UPDATE) ALL", tag="U4").ok()
        self.assertIn('* ESEARCH (TAG "U4") ALL 1:5', [r.line for r in result.untagged])
        refusals = [r for r in result.untagged if r.line.startswith('* NO [NOUPDATE "U4"]')]
        self.assertEqual(len(refusals), 1, result.describe())
        self.watcher.command('CANCELUPDATE "U1" "U2"').ok()
        result = self.watcher.command("SEARCH RETURN (UPDATE) ALL", tag="U5").ok()
        self.assertFalse([r for r in result.untagged if "NOUPDATE" in r.line], result.describe())
        self.watcher.command("NOOP").ok()


def read_until(client, pattern: str, what: str) -> list:
    """Reads responses the server sends unasked (no command running) until
    one's line matches `pattern`; every response read."""
    deadline = time.monotonic() + PUSH_TIMEOUT_S
    seen = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no {what} within {PUSH_TIMEOUT_S}s; got {seen!r}")
        try:
            response = client.read_response(timeout=remaining)
        except TimeoutError:
            raise AssertionError(f"no {what} within {PUSH_TIMEOUT_S}s; got {seen!r}")
        seen.append(response)
        if re.search(pattern, response.line):
            return seen


class NotifyTest(ServerTestCase):

    def setUp(self) -> None:
        self.user, self.password = self.new_user("ntf")
        self.watcher = self.raw(self.user, self.password)
        self.other = self.raw(self.user, self.password)

    def test_capability(self) -> None:
        self.assertIn("NOTIFY", self.watcher.command("CAPABILITY").ok().untagged[0].line.split())

    def test_status_and_list_while_idle(self) -> None:
        self.other.command("CREATE Work").ok()
        result = self.watcher.command(
            "NOTIFY SET STATUS (PERSONAL (MessageNew MessageExpunge MailboxName SubscriptionChange))").ok()
        statuses = [r.line for r in result.named("STATUS")]
        self.assertIn("* STATUS Work (MESSAGES 0 UIDNEXT 1", " ".join(statuses))
        idle = Idle(self.watcher)
        # A delivery over LMTP to INBOX, which the watcher has not selected.
        self.server.deliver_ok(self.user, simple_message("new mail"))
        idle.wait_for(r"^\* STATUS INBOX \(MESSAGES 1 UIDNEXT 2 ", "STATUS for the delivery")
        # Mailboxes created, renamed, subscribed and deleted by the other connection.
        self.other.command("CREATE Projects").ok()
        idle.wait_for(r'^\* LIST \(\) "/" Projects$', "LIST for CREATE")
        self.other.command("RENAME Projects Plans").ok()
        idle.wait_for(r'^\* LIST \(\) "/" Plans \("OLDNAME" \(Projects\)\)$', "LIST for RENAME")
        self.other.command("SUBSCRIBE Plans").ok()
        idle.wait_for(r'^\* LIST \(\\Subscribed\) "/" Plans$', "LIST for SUBSCRIBE")
        self.other.append("Work", simple_message("filed")).ok()
        idle.wait_for(r"^\* STATUS Work \(MESSAGES 1 UIDNEXT 2 ", "STATUS for the APPEND")
        self.other.command("DELETE Plans").ok()
        idle.wait_for(r'^\* LIST \(\\NonExistent\) "/" Plans$', "LIST for DELETE")
        # An expunge elsewhere.
        self.other.select("Work").ok()
        self.other.command("STORE 1 +FLAGS.SILENT (\\Deleted)").ok()
        self.other.command("EXPUNGE").ok()
        idle.wait_for(r"^\* STATUS Work \(MESSAGES 0 UIDNEXT 2 ", "STATUS for the EXPUNGE")
        idle.done()

    def test_status_arrives_between_commands(self) -> None:
        self.watcher.command("NOTIFY SET (INBOXES (MessageNew MessageExpunge))").ok()
        self.server.deliver_ok(self.user, simple_message("unasked"))
        read_until(self.watcher, r"^\* STATUS INBOX \(MESSAGES 1 ", "STATUS without a command")
        # NOTIFY NONE: no more.
        self.watcher.command("NOTIFY NONE").ok()
        self.server.deliver_ok(self.user, simple_message("quiet"))
        result = self.watcher.command("NOOP").ok()
        self.assertEqual(result.named("STATUS"), [], result.describe())

    def test_selected_new_messages_come_with_fetch(self) -> None:
        self.watcher.select("INBOX").ok()
        self.watcher.command(
            "NOTIFY SET (SELECTED (MessageNew (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)]) MessageExpunge FlagChange))"
        ).ok()
        self.server.deliver_ok(self.user, simple_message("pushed subject"))
        seen = read_until(self.watcher, r"^\* 1 FETCH ", "FETCH of the new message")
        self.assertTrue(any(r.line == "* 1 EXISTS" for r in seen), seen)
        self.assertIn(b"Subject: pushed subject", seen[-1].raw)
        self.other.select("INBOX").ok()
        self.other.command("STORE 1 +FLAGS (\\Flagged)").ok()
        seen = read_until(self.watcher, r"^\* 1 FETCH .*\\Flagged", "FETCH FLAGS of the flag change")
        self.other.command("STORE 1 +FLAGS.SILENT (\\Deleted)").ok()
        self.other.command("EXPUNGE").ok()
        read_until(self.watcher, r"^\* 1 EXPUNGE$", "EXPUNGE")

    def test_bad_events_and_syntax_keep_the_connection(self) -> None:
        result = self.watcher.command("NOTIFY SET (PERSONAL (MailboxName AnnotationChange))").expect("NO")
        self.assertEqual(result.code_name, "BADEVENT", result.describe())
        self.assertIn("MessageNew", result.code)
        self.assertEqual(self.watcher.command("NOTIFY SET (PERSONAL (NoSuchEvent))").expect("NO").code_name,
                         "BADEVENT")
        for bad in ("NOTIFY SET (PERSONAL (MessageNew))", "NOTIFY SET (PERSONAL (FlagChange))",
                    "NOTIFY SET (NOWHERE (MessageNew MessageExpunge))", "NOTIFY SET", "NOTIFY",
                    "NOTIFY SET (SELECTED (MessageNew (RFC822) MessageExpunge))"):
            self.watcher.command(bad).expect("BAD")
        self.watcher.command("NOOP").ok()


class NotifyOverflowTest(ServerTestCase):
    server_options = {"imap": {"notify_responses_max": 2}}

    def test_overflow_turns_notify_off(self) -> None:
        user, password = self.new_user("ovf")
        watcher = self.raw(user, password)
        other = self.raw(user, password)
        for name in ("p", "p/a", "p/b"):
            other.command(f"CREATE {name}").ok()
        watcher.command("NOTIFY SET (PERSONAL (MailboxName))").ok()
        # One RENAME moves three mailboxes: three LIST responses at once.
        other.command("RENAME p q").ok()
        seen = read_until(watcher, r"^\* OK \[NOTIFICATIONOVERFLOW\]", "NOTIFICATIONOVERFLOW")
        self.assertFalse([r for r in seen if r.name == "LIST"], seen)
        other.command("CREATE later").ok()
        result = watcher.command("NOOP").ok()
        self.assertEqual(result.named("LIST"), [], result.describe())


if __name__ == "__main__":
    unittest.main()
