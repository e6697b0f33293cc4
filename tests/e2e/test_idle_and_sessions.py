"""IDLE (RFC 9051 6.3.13) and what concurrent sessions see of each other:
new mail as EXISTS, flag changes as FETCH, expunges as EXPUNGE, and only at
the moments RFC 9051 7.5.1 allows."""

import os
import random
import time
import unittest

from harness import Lit, Result, Server, ServerTestCase, fetch_items, flag_set, simple_message, text

# Bound on waiting for a pushed response; a correct server answers in milliseconds.
PUSH_TIMEOUT_S = 10.0


class Idle:
    """An IDLE command in progress on an `Imap` client."""

    def __init__(self, client) -> None:
        self.client = client
        self.tag = client.next_tag()
        client.send(f"{self.tag} IDLE\r\n".encode())
        first = client.read_response()
        self.seen = []
        while first.kind != "+":
            assert first.kind == "*", f"IDLE refused: {first!r}"
            self.seen.append(first)
            first = client.read_response()

    def wait_for(self, predicate, what):
        """Reads pushed responses until one satisfies `predicate`."""
        deadline = time.monotonic() + PUSH_TIMEOUT_S
        for response in self.seen:
            if predicate(response):
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
            if predicate(response):
                return response

    def done(self) -> Result:
        self.client.send(b"DONE\r\n")
        result = Result(tag=self.tag, command=b"IDLE ... DONE")
        return self.client.finish(result)


def is_exists(count):
    return lambda r: r.name == "EXISTS" and r.number == count


class IdleTest(ServerTestCase):

    def setUp(self) -> None:
        self.user, self.password = self.new_user("idle")

    def test_idle_sees_lmtp_delivery_as_exists(self):
        client = self.raw(self.user, self.password)
        client.select("INBOX").ok()
        idle = Idle(client)
        self.server.deliver_ok([self.user], simple_message(subject="pushed"))
        idle.wait_for(is_exists(1), "* 1 EXISTS")
        idle.done().ok()
        item = self.fetch_one(client, "1", "BODY.PEEK[HEADER.FIELDS (SUBJECT)]")
        self.assertEqual(item["BODY[HEADER.FIELDS (SUBJECT)]"], b"Subject: pushed\r\n\r\n")

    def test_idle_sees_several_deliveries(self):
        client = self.raw(self.user, self.password)
        client.select("INBOX").ok()
        idle = Idle(client)
        for i in range(3):
            self.server.deliver_ok([self.user], simple_message(subject=f"burst {i}"))
        idle.wait_for(is_exists(3), "* 3 EXISTS")
        idle.done().ok()
        self.assertEqual(len(client.fetch("1:*", "UID")), 3)

    def test_idle_sees_other_sessions_flags_and_expunges(self):
        for i in range(2):
            self.server.deliver_ok([self.user], simple_message(subject=f"m{i}"))
        watcher = self.raw(self.user, self.password)
        watcher.select("INBOX").ok()
        actor = self.raw(self.user, self.password)
        actor.select("INBOX").ok()
        idle = Idle(watcher)
        actor.command("STORE 2 +FLAGS.SILENT (\\Flagged)").ok()
        pushed = idle.wait_for(lambda r: r.name == "FETCH" and r.number == 2, "* 2 FETCH (FLAGS ...)")
        values = pushed.tokens[3]
        items = {str(k).upper(): v for k, v in zip(values[0::2], values[1::2])}
        self.assertEqual(flag_set(items["FLAGS"]), {"\\Flagged"})
        actor.command("STORE 1 +FLAGS.SILENT (\\Deleted)").ok()
        actor.command("EXPUNGE").ok()
        idle.wait_for(lambda r: r.name == "EXPUNGE" and r.number == 1, "* 1 EXPUNGE")
        idle.done().ok()
        data = watcher.fetch("1:*", "(FLAGS)")
        self.assertEqual(list(data), [1])
        self.assertEqual(flag_set(data[1]["FLAGS"]), {"\\Flagged"})

    def test_idle_in_authenticated_state_ends_cleanly(self):
        client = self.raw(self.user, self.password)
        idle = Idle(client)
        idle.done().ok()
        client.command("NOOP").ok()


class IdleHoldsNoIndexTest(ServerTestCase):
    """A session waiting for its client (IDLE here) gives its index
    connection back to the store's pool, so idle sessions cost a socket
    each, not three more descriptors and a page cache; and they still see
    what happens, and answer from the index afterwards."""
    SESSIONS = 16
    RESTING = 2
    server_options = {"extra_toml": f"\n[store]\nreader_connections_max = {RESTING}\n"}

    def test_idle_sessions_hold_no_index_connection(self):
        users = [self.new_user("rest") for _ in range(self.SESSIONS)]
        pid = self.server.process.pid

        def wal_descriptors():
            # Every open SQLite connection has a descriptor of its own on its
            # database's WAL. (Its database descriptor is no measure: SQLite
            # keeps a closed connection's one for reuse while another
            # connection of the process, the writer's, holds a lock.)
            return sum(os.readlink(f"/proc/{pid}/fd/{fd}").endswith("-wal")
                       for fd in os.listdir(f"/proc/{pid}/fd"))

        before = wal_descriptors()
        idles = []
        for user, password in users:
            client = self.raw(user, password)
            client.select("INBOX").ok()
            idles.append((client, Idle(client)))
        grown = wal_descriptors() - before
        # At most RESTING pooled connections (and a couple the writer may
        # have opened meanwhile); sessions that kept their own would have
        # one each.
        self.assertLessEqual(grown, self.RESTING + 2,
                             f"{grown} more index connections for {self.SESSIONS} idle sessions")
        for (user, _), (client, idle) in zip(users, idles):
            self.server.deliver_ok([user], simple_message(subject=f"for {user}"))
            idle.wait_for(is_exists(1), "* 1 EXISTS")
            idle.done().ok()
            item = self.fetch_one(client, "1", "BODY.PEEK[HEADER.FIELDS (SUBJECT)]")
            self.assertEqual(item["BODY[HEADER.FIELDS (SUBJECT)]"], f"Subject: for {user}\r\n\r\n".encode())


class SessionsTest(ServerTestCase):

    def setUp(self) -> None:
        self.user, self.password = self.new_user("sessions")
        for i in range(3):
            self.server.deliver_ok([self.user], simple_message(subject=f"s{i}"))
        self.a = self.raw(self.user, self.password)
        self.b = self.raw(self.user, self.password)
        self.a.select("INBOX").ok()
        self.b.select("INBOX").ok()
        self.uids = [int(v["UID"]) for _, v in sorted(self.a.fetch("1:*", "UID").items())]

    def test_flag_change_seen_on_noop(self):
        self.a.command("STORE 2 +FLAGS (\\Seen \\Answered)").ok()
        result = self.b.command("NOOP").ok()
        fetches = [r for r in result.named("FETCH") if r.number == 2]
        self.assertEqual(len(fetches), 1, result.describe())
        values = fetches[0].tokens[3]
        items = {str(k).upper(): v for k, v in zip(values[0::2], values[1::2])}
        self.assertEqual(flag_set(items["FLAGS"]), {"\\Seen", "\\Answered"})
        # Reported once, not again.
        self.assertEqual(self.b.command("NOOP").ok().named("FETCH"), [])

    def test_delivery_seen_on_noop(self):
        self.server.deliver_ok([self.user], simple_message(subject="new"))
        result = self.b.command("NOOP").ok()
        self.assertEqual(result.numbers("EXISTS"), [4])

    def test_expunge_seen_on_noop_but_not_during_fetch_store_search(self):
        self.a.command("STORE 1 +FLAGS.SILENT (\\Deleted)").ok()
        self.a.command("EXPUNGE").ok()
        # RFC 9051 7.5.1: no EXPUNGE while answering FETCH, STORE or SEARCH.
        for command in ("FETCH 1:3 (UID)", "STORE 3 +FLAGS.SILENT (x-mark)", "SEARCH ALL"):
            with self.subTest(command=command):
                result = self.b.command(command)
                self.assertEqual(result.named("EXPUNGE"), [], result.describe())
        result = self.b.command("NOOP").ok()
        self.assertEqual(result.numbers("EXPUNGE"), [1])
        data = self.b.fetch("1:*", "(UID FLAGS)")
        self.assertEqual([int(data[n]["UID"]) for n in sorted(data)], self.uids[1:])
        self.assertEqual(flag_set(data[2]["FLAGS"]), {"x-mark"})

    def test_uid_commands_during_pending_expunge(self):
        self.a.command("STORE 2 +FLAGS.SILENT (\\Deleted)").ok()
        self.a.command("EXPUNGE").ok()
        # UID commands may report the expunge (RFC 9051 7.5.1) and must work
        # on the survivors either way.
        result = self.b.command(f"UID FETCH {self.uids[2]} (UID)").ok()
        expunged = result.numbers("EXPUNGE")
        items = fetch_items(result)
        self.assertEqual([int(v["UID"]) for v in items.values()], [self.uids[2]])
        self.assertEqual(list(items), [2] if expunged else [3], result.describe())
        expunged += self.b.command("NOOP").ok().numbers("EXPUNGE")
        self.assertEqual(expunged, [2])

    def test_both_sessions_converge(self):
        self.a.command("STORE 1 +FLAGS.SILENT (\\Flagged)").ok()
        self.b.command("STORE 3 +FLAGS.SILENT (\\Seen)").ok()
        self.a.command("NOOP").ok()
        self.b.command("NOOP").ok()
        view_a = {n: flag_set(v["FLAGS"]) for n, v in self.a.fetch("1:*", "FLAGS").items()}
        view_b = {n: flag_set(v["FLAGS"]) for n, v in self.b.fetch("1:*", "FLAGS").items()}
        self.assertEqual(view_a, view_b)
        self.assertEqual(view_a, {1: {"\\Flagged"}, 2: set(), 3: {"\\Seen"}})


class SessionModel:
    """What one session has been told: the UID at each sequence number
    (None until the session learns it), kept up to date from EXISTS,
    EXPUNGE and FETCH responses exactly as a client must (RFC 9051 7.4)."""

    def __init__(self, test, client, name):
        self.test, self.client, self.name = test, client, name
        self.uids = []

    def apply(self, result):
        for response in result.untagged:
            if response.name == "EXPUNGE":
                n = response.number
                self.test.assertTrue(1 <= n <= len(self.uids), f"{self.name}: EXPUNGE {n} of {len(self.uids)}")
                del self.uids[n - 1]
            elif response.name == "EXISTS":
                n = response.number
                self.test.assertGreaterEqual(n, len(self.uids), f"{self.name}: EXISTS shrank without EXPUNGE")
                self.uids.extend([None] * (n - len(self.uids)))
            elif response.name == "FETCH":
                n = response.number
                self.test.assertTrue(1 <= n <= len(self.uids), f"{self.name}: FETCH for {n} of {len(self.uids)}")
                values = response.tokens[3]
                items = {str(k).upper(): v for k, v in zip(values[0::2], values[1::2])}
                if "UID" in items:
                    uid = int(items["UID"])
                    if self.uids[n - 1] is None:
                        self.uids[n - 1] = uid
                    self.test.assertEqual(self.uids[n - 1], uid, f"{self.name}: message {n} changed UID")
        return result

    def command(self, *parts):
        return self.apply(self.client.command(*parts))

    def sync(self):
        """NOOP, then check the whole view against FETCH 1:* UID."""
        self.command("NOOP").ok()
        if not self.uids:
            return
        result = self.command("FETCH 1:* (UID)").ok()
        self.test.assertNotIn(None, self.uids, f"{self.name}: FETCH 1:* did not cover every message")
        self.test.assertEqual(self.uids, sorted(set(self.uids)), f"{self.name}: UIDs not strictly ascending")


class RandomOperationsTest(ServerTestCase):

    def test_random_operations_keep_every_session_consistent(self):
        seed = int(os.environ.get("POSTERN_E2E_SEED", "20240305"))
        rng = random.Random(seed)
        user, password = self.new_user("model")
        sessions = []
        for name in ("A", "B", "C"):
            client = self.raw(user, password)
            client.select("INBOX").ok()
            sessions.append(SessionModel(self, client, name))
        truth = {}  # uid -> flags, from the answers to STORE
        counter = 0
        for step in range(60):
            actor = rng.choice(sessions)
            known = [u for u in actor.uids if u is not None]
            op = rng.choice(["deliver", "append", "flag", "flag", "expunge", "move"] if known else ["deliver", "append"])
            with self.subTest(step=step, op=op, actor=actor.name, seed=seed):
                counter += 1
                if op == "deliver":
                    self.server.deliver_ok([user], simple_message(subject=f"model {counter}"))
                elif op == "append":
                    result = actor.command("APPEND INBOX ", Lit(simple_message(subject=f"model {counter}"))).ok()
                    truth[int(result.code.split()[2])] = set()
                elif op == "flag":
                    uid = rng.choice(known)
                    sign, flag = rng.choice("+-"), rng.choice(["\\Seen", "\\Flagged", "$Work"])
                    result = actor.command(f"UID STORE {uid} {sign}FLAGS ({flag})").ok()
                    items = fetch_items(result)
                    [reported] = [v for v in items.values() if int(v["UID"]) == uid]
                    truth[uid] = flag_set(reported["FLAGS"])
                elif op == "expunge":
                    uid = rng.choice(known)
                    actor.command(f"UID STORE {uid} +FLAGS.SILENT (\\Deleted)").ok()
                    actor.command(f"UID EXPUNGE {uid}").ok()
                    truth.pop(uid, None)
                else:
                    uid = rng.choice(known)
                    actor.command(f'UID MOVE {uid} "Archive"').ok()
                    truth.pop(uid, None)
                for session in sessions:
                    session.sync()
                views = {s.name: s.uids for s in sessions}
                self.assertEqual(len({tuple(v) for v in views.values()}), 1, f"sessions disagree: {views}")
        # Flags as every session sees them agree with what STORE answered.
        for session in sessions:
            data = session.command("FETCH 1:* (UID FLAGS)").ok()
            for item in fetch_items(data).values():
                uid = int(item["UID"])
                if uid in truth:
                    self.assertEqual(flag_set(item["FLAGS"]), truth[uid], f"{session.name}: flags of UID {uid}")


class MailboxChangedUnderSessionTest(ServerTestCase):
    """A session whose selected mailbox another session deletes or renames."""

    def setUp(self) -> None:
        self.user, self.password = self.new_user("underfoot")
        self.a = self.raw(self.user, self.password)
        self.b = self.raw(self.user, self.password)

    def test_deleted_mailbox(self):
        self.a.command('CREATE "Tmp"').ok()
        self.a.append("Tmp", simple_message(subject="tmp")).ok()
        self.a.select("Tmp").ok()
        self.b.command('DELETE "Tmp"').ok()
        result = self.a.command("NOOP")
        told = [r for r in result.untagged if r.name == "BYE" or (r.code or "").upper() == "CLOSED"]
        self.assertTrue(told, f"the session was not told its mailbox is gone\n{result.describe()}")
        if not any(r.name == "BYE" for r in told):
            self.assertNotEqual(self.a.command("FETCH 1 FLAGS").status, "OK")
            self.a.command("SELECT INBOX").ok()
        self.assertNotIn(b"Tmp", b"".join(r.raw for r in self.b.command('LIST "" "*"').ok().untagged))

    def test_renamed_mailbox(self):
        self.a.command('CREATE "Work"').ok()
        self.a.append("Work", simple_message(subject="work")).ok()
        self.a.select("Work").ok()
        self.b.command('RENAME "Work" "Job"').ok()
        self.a.command("NOOP")
        stored = self.a.command("STORE 1 +FLAGS (\\Seen)")
        names = {text(r.tokens[4]) for r in self.b.command('LIST "" "*"').ok().named("LIST")}
        self.assertNotIn("Work", names, "a change through the old session brought the old name back")
        if stored.status == "OK":
            # The session kept working on the same mailbox, now called Job.
            self.assertEqual(self.b.status("Job", "MESSAGES UNSEEN"), {"MESSAGES": 1, "UNSEEN": 0})


class ShutdownTest(unittest.TestCase):

    def test_sigterm_sends_bye_to_sessions_and_exits_zero(self):
        with Server() as server:
            user, password = server.new_user("bye")
            idle_client = server.raw(user, password)
            idle_client.select("INBOX").ok()
            Idle(idle_client)
            plain_client = server.raw(user, password)
            try:
                server.sigterm()
                for client in (idle_client, plain_client):
                    response = client.read_response(timeout=PUSH_TIMEOUT_S)
                    self.assertTrue(response.raw.startswith(b"* BYE"), response)
                server.stop()
            finally:
                idle_client.close()
                plain_client.close()


if __name__ == "__main__":
    unittest.main()


class QresyncTest(ServerTestCase):
    """QRESYNC (RFC 7162): a client that knows UIDVALIDITY and a MODSEQ learns at
    SELECT exactly what vanished and what changed; expunges reach a QRESYNC
    session as VANISHED; UID FETCH (CHANGEDSINCE .. VANISHED) reports both."""

    def setUp(self) -> None:
        self.user, self.password = self.new_user("qresync")
        self.server.deliver_ok([self.user], simple_message(subject="m1"))
        for n in range(2, 7):
            self.server.deliver_ok([self.user], simple_message(subject=f"m{n}"))
        self.client = self.raw(self.user, self.password)

    def state(self) -> tuple[int, int]:
        selected = self.client.select("INBOX").ok()
        codes = {r.code.split()[0]: r.code.split()[1] for r in selected.untagged if r.code}
        return int(codes["UIDVALIDITY"]), int(codes["HIGHESTMODSEQ"])

    def test_select_reports_what_vanished_and_what_changed(self):
        uid_validity, modseq = self.state()
        other = self.raw(self.user, self.password)
        other.select("INBOX").ok()
        other.command("UID STORE 2 +FLAGS (\\Flagged)").ok()
        other.command("UID STORE 3,5 +FLAGS (\\Deleted)").ok()
        other.command("EXPUNGE").ok()
        self.client.command("UNSELECT").ok()
        refused = self.client.command(f"SELECT INBOX (QRESYNC ({uid_validity} {modseq}))")
        self.assertEqual(refused.status, "BAD", "QRESYNC parameters need ENABLE QRESYNC")
        enabled = self.client.command("ENABLE QRESYNC").ok()
        self.assertIn("QRESYNC", [str(t).upper() for t in enabled.data("ENABLED")[0]])
        result = self.client.command(f"SELECT INBOX (QRESYNC ({uid_validity} {modseq}))").ok()
        vanished = result.named("VANISHED")
        self.assertEqual(len(vanished), 1, result.describe())
        self.assertEqual(vanished[0].raw.rstrip(), b"* VANISHED (EARLIER) 3,5")
        fetched = {r.number: r.raw for r in result.named("FETCH")}
        self.assertEqual(len(fetched), 1, result.describe())
        line = next(iter(fetched.values()))
        self.assertIn(b"UID 2 ", line)
        self.assertIn(b"\\Flagged", line)
        self.assertIn(b"MODSEQ (", line)
        # Known UIDs limit the report: nothing about UID 5 when the client never had it.
        self.client.command("UNSELECT").ok()
        limited = self.client.command(f"SELECT INBOX (QRESYNC ({uid_validity} {modseq} 1:4))").ok()
        self.assertEqual([r.raw.rstrip() for r in limited.named("VANISHED")], [b"* VANISHED (EARLIER) 3"])
        # A UIDVALIDITY the client does not know: no VANISHED, no FETCH (full resync).
        self.client.command("UNSELECT").ok()
        stale = self.client.command(f"SELECT INBOX (QRESYNC ({uid_validity + 1} {modseq}))").ok()
        self.assertEqual(stale.named("VANISHED"), [])
        self.assertEqual(stale.named("FETCH"), [])

    def test_expunges_reach_a_qresync_session_as_vanished(self):
        self.client.command("ENABLE QRESYNC").ok()
        self.client.select("INBOX").ok()
        other = self.raw(self.user, self.password)
        other.select("INBOX").ok()
        other.command("UID STORE 1,4 +FLAGS (\\Deleted)").ok()
        other.command("EXPUNGE").ok()
        noop = self.client.command("NOOP").ok()
        self.assertEqual(noop.named("EXPUNGE"), [], noop.describe())
        self.assertEqual([r.raw.rstrip() for r in noop.named("VANISHED")], [b"* VANISHED 1,4"])
        # The view moved on: message 1 is now UID 2.
        self.assertEqual(int(self.client.fetch("1", "UID")[1]["UID"]), 2)

    def test_uid_fetch_changedsince_vanished(self):
        uid_validity, modseq = self.state()
        other = self.raw(self.user, self.password)
        other.select("INBOX").ok()
        other.command("UID STORE 6 +FLAGS (\\Seen)").ok()
        other.command("UID STORE 2 +FLAGS (\\Deleted)").ok()
        other.command("UID EXPUNGE 2").ok()
        refused = self.client.command(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq} VANISHED)")
        self.assertEqual(refused.status, "BAD", "VANISHED needs ENABLE QRESYNC")
        self.client.command("ENABLE QRESYNC").ok()
        result = self.client.command(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq} VANISHED)").ok()
        self.assertEqual([r.raw.rstrip() for r in result.named("VANISHED")], [b"* VANISHED (EARLIER) 2"])
        changed = [r.raw for r in result.named("FETCH")]
        self.assertTrue(any(b"UID 6 " in raw and b"\\Seen" in raw for raw in changed), result.describe())
        self.assertFalse(any(b"UID 3 " in raw for raw in changed), "unchanged messages are left out")

    def test_capability_lists_qresync(self):
        caps = {str(c).upper() for c in self.client.command("CAPABILITY").ok().data("CAPABILITY")[0]}
        self.assertIn("QRESYNC", caps)
