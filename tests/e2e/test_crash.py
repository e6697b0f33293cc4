"""Crash safety (issue 3, item 6): SIGKILL at many random moments during
concurrent LMTP deliveries, APPENDs, flag changes, MOVEs and expunges, a
restart on the same data dir after each, and after every restart:

* every delivery and APPEND that got its success reply is there, byte for
  byte, where the acknowledged MOVEs put it, with the flags the acknowledged
  STOREs gave it, unless an acknowledged EXPUNGE or MOVE took it away;
* what was in flight at the kill either happened or did not, whole: a message
  in flight is found once or not at all, a MOVE in flight leaves it in exactly
  one of source and target, a STORE in flight leaves the old flags or the new;
* nothing acknowledged as gone comes back, nothing appears that no client sent,
  and no message is torn or found twice;
* a UID never shows other content (nor another INTERNALDATE or EMAILID) than
  it once did in a mailbox with the same UIDVALIDITY, UIDVALIDITY never changes, and UIDNEXT, HIGHESTMODSEQ and each
  message's MODSEQ never go back (nor below what a reply acknowledged);
* the server starts every time, without a panic;
* and (a test of its own, with fewer rounds) `reconstruct --check --json` finds
  no problem on the store just killed, on the running server and on the stopped
  one, and changes nothing.

test_durability.py kills once, in the middle of deliveries and APPENDs. This
file kills ROUNDS times on one data dir with every kind of change in flight
(the workload and its model of what was acknowledged: crash_workload.py), so
each recovery also runs over what the previous ones left behind. Small journal
segments and packs and `postern store gc` running throughout put segment
rollovers, pack rotation and garbage collection under the kills as well; some
restarts are killed too, mostly in the middle of recovery, and some kills also
lose a derived file (server.sqlite or a user's index) that the restart must
rebuild.

The kill moment is the experiment, not synchronisation: once every worker is
connected, the main thread waits (bounded) for a random number of
acknowledgements, then a random short delay, then SIGKILLs while every worker
is in the middle of its next command. The schedule (when to kill, what else to
lose) comes from the seed; what the workers managed by then depends on timing.

POSTERN_E2E_SEED picks the seed (printed at the start); POSTERN_E2E_CRASH_ROUNDS
the number of rounds of the main test.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import unittest
from dataclasses import dataclass
from typing import Callable

import harness
from crash_workload import (
    ALIAS, ALIAS_USERS, MAILBOXES, MARKER_RE, GcWorker, ImapWorker, LmtpWorker, MailboxState, Model, Msg, flags_of,
)
from harness import STOP_TIMEOUT_S, Imap, Server, fetch_items, search_numbers, split_trace, text

SEED = int(os.environ.get("POSTERN_E2E_SEED", "20251128"))
ROUNDS = int(os.environ.get("POSTERN_E2E_CRASH_ROUNDS", "50"))
# The reconstruct test makes its own, shorter history of crashes to check.
RECONSTRUCT_ROUNDS = 6
USERS = 3
# IMAP workers per user, by user index: two share the first user's mailboxes.
IMAP_WORKER_USERS = (0, 0, 1, 2)
LMTP_WORKERS = 2

# When to kill: after 1..KILL_AFTER_ACKS_MAX acknowledgements in the round,
# then up to KILL_DELAY_S_MAX more.
KILL_AFTER_ACKS_MAX = 60
KILL_DELAY_S_MAX = 0.05
# Bounds on waiting for the workload and for worker threads to notice the kill.
ROUND_ACK_WAIT_S = 60.0
JOIN_TIMEOUT_S = 30.0
# How often the kill also loses a derived file (server.sqlite or one user's
# index), which the restart must rebuild.
LOSE_DERIVED_PROBABILITY = 0.1
# How often the restart is itself killed, up to KILL_STARTING_S_MAX after it
# began: a start takes some 20-40 ms (more when it rebuilds an index), so this
# mostly lands in the middle of recovery.
KILL_STARTING_PROBABILITY = 0.2
KILL_STARTING_S_MAX = 0.04
# Messages one user keeps between rounds; the verifier expunges the surplus, so
# each verification fetches a bounded amount.
MESSAGES_PER_USER_MAX = 40

STORE_TOML = """
[store]
journal_segment_bytes = 65536
pack_bytes = 262144
gc_interval_secs = 1
gc_bytes_per_run = 1048576
"""


@dataclass
class Expect:
    """Where one (user, marker) may be found after a restart."""

    places: set          # {(mailbox, uid)}; uid None: any UID new in that mailbox
    required: bool
    flags: set | None    # allowed flag sets; None: any
    modseq_min: int
    why: str
    # Keys found all together or not at all (a MULTIAPPEND in flight).
    group: list | None = None


@dataclass
class Found:
    """One message as a client sees it after a restart."""

    user: str
    marker: str
    mailbox: str
    uid: int
    flags: frozenset
    modseq: int
    stored: bytes

    @property
    def key(self) -> tuple[str, str]:
        return (self.user, self.marker)


class CrashRun:
    """One server, its users and the model; `round()` is one kill and check."""

    def __init__(self, test: unittest.TestCase, seed: int) -> None:
        self.test = test
        self.seed = seed
        # The kill schedule (workers' seeds, when to kill, what else to lose)
        # comes from its own generator, so it does not depend on what the
        # workers managed before each kill.
        self.schedule = random.Random(seed)
        self.rng = random.Random(seed + 1)
        self.model = Model(seed)
        self.server = Server(top={"log_level": "info"}, extra_toml=STORE_TOML)
        self.passwords: dict[str, str] = {}
        self.users: list[str] = []
        self.owners: dict[str, list] = {}    # user -> one owned set per IMAP worker of that user
        self.panics_checked_offset = 0
        # (user, mailbox) -> UIDNEXT when the round began: a message put there
        # during the round has a UID at or above it.
        self.uidnext_at_round_start: dict[tuple[str, str], int] = {}
        # Called with no server running, right after each kill and before
        # anything else touches the data dir.
        self.after_kill: Callable[[], None] | None = None
        # (user, mailbox, uidvalidity, uid) -> (INTERNALDATE, EMAILID) when first seen.
        self.identities: dict[tuple[str, str, int, int], tuple[str, str]] = {}

    def start(self) -> None:
        self.server.start()
        for _ in range(USERS):
            user, password = self.server.new_user("crash")
            self.users.append(user)
            self.passwords[user] = password
        self.server.cli_ok("alias", "add", ALIAS, *[self.users[i] for i in ALIAS_USERS])
        for user in self.users:
            with self.server.raw(user, self.passwords[user]) as client:
                client.command('CREATE "Work"').ok()
        self.verify("setup")

    def close(self) -> None:
        self.server.cleanup()

    def where(self) -> str:
        return f"seed {self.seed} (POSTERN_E2E_SEED={self.seed} to repeat), round {self.model.round}"

    def round(self, number: int) -> None:
        model = self.model
        with model.cond:
            model.round = number
            model.acks = 0
            model.ready = 0
            model.killed = False
        workers: list = []
        for index, user_index in enumerate(IMAP_WORKER_USERS):
            user = self.users[user_index]
            owned = self.owners[user][IMAP_WORKER_USERS[:index].count(user_index)]
            workers.append(ImapWorker(model, self.server.imap_port, user, self.passwords[user], index, owned,
                                      self.schedule.randrange(1 << 32)))
        for index in range(LMTP_WORKERS):
            workers.append(LmtpWorker(model, self.server.lmtp_port, self.users, index,
                                      self.schedule.randrange(1 << 32)))
        workers.append(GcWorker(model, self.server))
        kill_after_acks = self.schedule.randint(1, KILL_AFTER_ACKS_MAX)
        kill_delay_s = self.schedule.uniform(0, KILL_DELAY_S_MAX)
        lose_derived = self.schedule.random() < LOSE_DERIVED_PROBABILITY
        kill_starting_s = self.schedule.uniform(0, KILL_STARTING_S_MAX) \
            if self.schedule.random() < KILL_STARTING_PROBABILITY else None
        for worker in workers:
            worker.start()
        with model.cond:
            # Counted from the moment every worker is connected, so the kill
            # finds each of them in the middle of its changes.
            reached = model.cond.wait_for(lambda: model.ready == len(workers) or bool(model.errors),
                                          timeout=ROUND_ACK_WAIT_S)
            kill_after_acks += model.acks
            reached = reached and model.cond.wait_for(
                lambda: model.acks >= kill_after_acks or bool(model.errors), timeout=ROUND_ACK_WAIT_S)
        # The experiment, not synchronisation: the workers go on meanwhile.
        time.sleep(kill_delay_s)
        with model.cond:
            model.killed = True
        self.server.kill()
        for worker in workers:
            worker.stop.set()
            if worker.doing:
                model.note_in_flight(worker.doing)
        for worker in workers:
            worker.join(timeout=JOIN_TIMEOUT_S)
            self.test.assertFalse(worker.is_alive(), f"{self.where()}: a worker did not stop after the kill")
        self.test.assertEqual(model.errors, [], f"{self.where()}: the workload failed before the kill")
        self.test.assertTrue(reached, f"{self.where()}: only {model.acks} of {kill_after_acks} acknowledgements "
                                      f"within {ROUND_ACK_WAIT_S}s")
        if self.after_kill is not None:
            self.after_kill()
        if lose_derived:
            self.lose_derived_file()
        if kill_starting_s is not None:
            self.kill_while_starting(kill_starting_s)
        try:
            self.server.start()
        finally:
            self.check_no_panic()
        self.verify("restart", [w for w in workers if isinstance(w, ImapWorker)])

    def lose_derived_file(self) -> None:
        """Deletes server.sqlite or one user's index (with its WAL): derived
        data that the restart must rebuild from the journal and the packs."""
        data = self.server.data_dir
        candidates = [data / "server.sqlite"] + [data / "users" / user / "index.sqlite" for user in self.users]
        victim = self.schedule.choice(candidates)
        for path in (victim, victim.with_name(victim.name + "-wal"), victim.with_name(victim.name + "-shm")):
            path.unlink(missing_ok=True)
        name = str(victim.relative_to(data))
        self.model.lost_derived[name] = self.model.lost_derived.get(name, 0) + 1

    def kill_while_starting(self, delay_s: float) -> None:
        """Starts `serve` and SIGKILLs it after `delay_s`, ready or not."""
        with open(self.server.stderr_path, "ab") as stderr:
            process = subprocess.Popen([harness.POSTERN_BIN, "--config", str(self.server.config_path), "serve"],
                                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
        time.sleep(delay_s)  # the experiment: when to kill
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_S)
        self.model.killed_starting += 1

    def check_no_panic(self) -> None:
        log = self.server.stderr_text()
        new, self.panics_checked_offset = log[self.panics_checked_offset:], len(log)
        self.test.assertNotIn("panicked", new, f"{self.where()}: the server panicked\n{self.server.stderr_tail()}")

    # -- verification ------------------------------------------------------

    def verify(self, when: str, workers: list = ()) -> None:
        """Reads every mailbox of every user and checks it against the model,
        then makes the model what was found and hands the messages out again."""
        problems: list[str] = []
        found_all: dict[str, list] = {}
        for user in self.users:
            with self.server.raw(user, self.passwords[user]) as client:
                client.command("ENABLE CONDSTORE").ok()
                found_all[user] = self.read_user(client, user, problems)
        expected = self.expectations(workers)
        for user in self.users:
            self.match(user, found_all[user], expected, problems)
        found_keys = {found.key for entries in found_all.values() for found in entries}
        for group in {tuple(e.group) for e in expected.values() if e.group}:
            present = [key[1] for key in group if key in found_keys]
            if present and len(present) != len(group):
                problems.append(f"{group[0][0]}: of one MULTIAPPEND in flight only {present} of "
                                f"{[key[1] for key in group]} were found")
        for key, expect in sorted(expected.items()):
            if expect.required and key not in found_keys:
                problems.append(f"{key[0]}: {key[1]} missing after the restart ({expect.why})")
        if problems:
            self.test.fail(f"{self.where()}, after {when}: {len(problems)} problem(s)\n" + "\n".join(problems[:40])
                           + f"\n{self.server.stderr_tail(20)}")
        self.rebuild(found_all, workers)

    def read_user(self, client: Imap, user: str, problems: list) -> list:
        """Every message of `user`, after checking each mailbox's UIDVALIDITY,
        UIDNEXT and HIGHESTMODSEQ against the last check and the replies."""
        model = self.model
        found = []
        for mailbox in MAILBOXES:
            status = client.status(mailbox, "MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ")
            state = MailboxState(status["UIDVALIDITY"], status["UIDNEXT"], status["HIGHESTMODSEQ"])
            before = model.mailbox_state.get((user, mailbox))
            where = f"{user} {mailbox}"
            if before is not None:
                if state.uidvalidity != before.uidvalidity:
                    problems.append(f"{where}: UIDVALIDITY {before.uidvalidity} became {state.uidvalidity}")
                if state.uidnext < before.uidnext:
                    problems.append(f"{where}: UIDNEXT went back from {before.uidnext} to {state.uidnext}")
                if state.highestmodseq < before.highestmodseq:
                    problems.append(f"{where}: HIGHESTMODSEQ went back from {before.highestmodseq} "
                                    f"to {state.highestmodseq}")
            if state.uidnext <= model.acked_uid_max.get((user, mailbox), 0):
                problems.append(f"{where}: UIDNEXT {state.uidnext} is not above acknowledged UID "
                                f"{model.acked_uid_max[(user, mailbox)]}")
            if state.highestmodseq < model.acked_modseq_max.get((user, mailbox), 0):
                problems.append(f"{where}: HIGHESTMODSEQ {state.highestmodseq} below acknowledged MODSEQ "
                                f"{model.acked_modseq_max[(user, mailbox)]}")
            client.select(mailbox, readonly=True).ok()
            data = self.fetch_all(client, where, status["MESSAGES"], problems)
            if len(data) != status["MESSAGES"]:
                problems.append(f"{where}: STATUS says {status['MESSAGES']} messages, FETCH returned {len(data)}")
            for item in data.values():
                uid, stored = int(item["UID"]), item["BODY[]"]
                modseq = int(text(item["MODSEQ"][0]))
                marker_match = MARKER_RE.search(stored)
                marker = marker_match.group(1).decode() if marker_match else f"<no marker in UID {uid}>"
                if uid >= state.uidnext:
                    problems.append(f"{where}: UID {uid} is not below UIDNEXT {state.uidnext}")
                if modseq > state.highestmodseq:
                    problems.append(f"{where}: UID {uid} MODSEQ {modseq} above HIGHESTMODSEQ {state.highestmodseq}")
                seen = model.history.get((user, mailbox, state.uidvalidity), {})
                if uid not in seen and before is not None and uid < before.uidnext:
                    problems.append(f"{where}: UID {uid} ({marker}) appeared below the UIDNEXT {before.uidnext} "
                                    f"of the last check")
                complaint = model.note_uid(user, mailbox, state.uidvalidity, uid, stored, marker)
                if complaint:
                    problems.append(complaint)
                # The rest of what identifies a message stays too, also through a rebuild.
                identity = (text(item["INTERNALDATE"]), text(item["EMAILID"][0]))
                first = self.identities.setdefault((user, mailbox, state.uidvalidity, uid), identity)
                if identity != first:
                    problems.append(f"{where}: UID {uid} ({marker}) had INTERNALDATE and EMAILID {first}, "
                                    f"now {identity}")
                problems.extend(self.content_problems(where, uid, marker, stored))
                found.append(Found(user, marker, mailbox, uid, flags_of(item["FLAGS"]), modseq, stored))
            client.command("UNSELECT").ok()
            model.mailbox_state[(user, mailbox)] = state
        return found

    def fetch_all(self, client: Imap, where: str, count: int, problems: list) -> dict:
        """Every message of the selected mailbox; one that cannot be read is a
        problem of its own (and then missing), the others are still checked."""
        items = "(UID FLAGS MODSEQ INTERNALDATE EMAILID BODY.PEEK[])"
        if not count:
            return {}
        result = client.command(f"UID FETCH 1:* {items}")
        if result.status == "OK":
            return fetch_items(result)
        problems.append(f"{where}: UID FETCH 1:* answered {result.tagged.line}")
        data = {}
        for uid in search_numbers(client.command("UID SEARCH ALL").ok()):
            one = client.command(f"UID FETCH {uid} {items}")
            if one.status == "OK":
                data.update(fetch_items(one))
            else:
                problems.append(f"{where}: UID {uid} cannot be read: {one.tagged.line}")
        return data

    def content_problems(self, where: str, uid: int, marker: str, stored: bytes) -> list:
        sent = self.model.sent.get(marker)
        if sent is None:
            return [f"{where}: UID {uid} holds a message no client sent: {stored[:200]!r}"]
        kind, data = sent
        if kind == "append" and stored == data:
            return []
        if kind == "lmtp":
            try:
                if split_trace(stored)[1] == data:
                    return []
            except AssertionError:
                pass
        return [f"{where}: UID {uid} ({marker}, {kind}) is not byte-exact: {len(stored)} bytes stored, "
                f"{len(data)} sent; first difference at byte {first_difference(stored, data)}"]

    def expectations(self, workers) -> dict:
        """(user, marker) -> Expect, from the acknowledged replies and the
        commands that were in flight at the kill."""
        model = self.model
        expected: dict[tuple[str, str], Expect] = {}
        for key, msg in model.msgs.items():
            expected[key] = Expect({(msg.mailbox, msg.uid)}, True, {msg.flags}, msg.modseq, "acknowledged")
        for key, msg in model.doomed.items():
            expected[key] = Expect({(msg.mailbox, msg.uid)}, False, None, 0, "expunge in flight")
        for key in model.maybe_delivered:
            acked = key in model.delivered
            expected[key] = Expect({("INBOX", None)}, acked, {frozenset()}, 0,
                                   "LMTP 250" if acked else "LMTP in flight")
        for worker in workers:
            pending = worker.pending
            if pending is None:
                continue
            if pending.kind == "append":
                why = "APPEND in flight" if len(pending.keys) == 1 else f"MULTIAPPEND of {pending.keys} in flight"
                for key, flags in zip(pending.keys, pending.flags):
                    expected[key] = Expect({(pending.mailbox, None)}, False, {flags}, 0, why, group=pending.keys)
            elif pending.kind == "store":
                expected[pending.keys[0]].flags.add(pending.flags[0])
                expected[pending.keys[0]].why = "STORE in flight"
            elif pending.kind == "move":
                for key in pending.keys:
                    # In the target it has a MODSEQ of that mailbox.
                    expected[key].places.add((pending.mailbox, None))
                    expected[key].modseq_min = 0
                    expected[key].why = "MOVE in flight"
        return expected

    def match(self, user: str, found: list, expected: dict, problems: list) -> None:
        by_key: dict[tuple[str, str], list[Found]] = {}
        for entry in found:
            by_key.setdefault(entry.key, []).append(entry)
        for key, entries in sorted(by_key.items()):
            places = [f"{entry.mailbox} UID {entry.uid}" for entry in entries]
            expect = expected.get(key)
            if expect is None:
                gone = self.model.gone.get(key)
                problems.append(f"{user}: {key[1]} found at {places}, though " +
                                (gone or "no reply or command put it there"))
                continue
            if len(entries) > 1:
                problems.append(f"{user}: {key[1]} found {len(entries)} times: {places} ({expect.why})")
            for entry in entries:
                where = f"{user}: {entry.marker} at {entry.mailbox} UID {entry.uid}"
                new_uid = entry.uid >= self.uidnext_at_round_start.get((user, entry.mailbox), 1)
                if (entry.mailbox, entry.uid) not in expect.places and not (
                        (entry.mailbox, None) in expect.places and new_uid):
                    problems.append(f"{where}, expected at {sorted(expect.places, key=str)} "
                                    f"(None: a UID new this round) ({expect.why})")
                if expect.flags is not None and entry.flags not in expect.flags:
                    problems.append(f"{where} has flags {sorted(entry.flags)}, expected one of "
                                    f"{[sorted(f) for f in expect.flags]} ({expect.why})")
                if entry.modseq < expect.modseq_min:
                    problems.append(f"{where} has MODSEQ {entry.modseq}, below the {expect.modseq_min} it had "
                                    f"or a reply acknowledged ({expect.why})")

    def rebuild(self, found_all: dict, workers) -> None:
        """The model becomes what was found; doomed leftovers and the surplus
        above MESSAGES_PER_USER_MAX are expunged (acknowledged) before the next
        round; the rest is handed out to the IMAP workers of each user."""
        model = self.model
        present = {}
        for entries in found_all.values():
            for f in entries:
                present[f.key] = Msg(f.user, f.marker, f.mailbox, f.uid, f.stored, f.flags, f.modseq)
        # What was in flight and did not happen must not happen later either.
        for key in model.doomed:
            if key not in present:
                model.gone[key] = (f"its expunge was in flight at the kill of round {model.round} "
                                   f"and it was gone after")
        for key in model.maybe_delivered:
            if key not in present:
                model.gone[key] = (f"its LMTP delivery was in flight at the kill of round {model.round} "
                                   f"and it was absent after")
        for worker in workers:
            if worker.pending is not None and worker.pending.kind == "append":
                for key in worker.pending.keys:
                    if key not in present:
                        model.gone[key] = (f"its APPEND was in flight at the kill of round {model.round} "
                                           f"and it was absent after")
        model.msgs, model.doomed = present, {}
        model.delivered, model.maybe_delivered = set(), set()
        for user in self.users:
            keys = sorted(k for k in model.msgs if k[0] == user)
            doomed = [k for k in keys if "\\deleted" in model.msgs[k].flags]
            rest = [k for k in keys if k not in doomed]
            surplus = self.rng.sample(rest, max(0, len(rest) - MESSAGES_PER_USER_MAX))
            self.expunge(user, doomed + surplus)
            keys = [k for k in rest if k not in surplus]
            self.rng.shuffle(keys)
            count = IMAP_WORKER_USERS.count(self.users.index(user))
            self.owners[user] = [set(keys[i::count]) for i in range(count)]
        self.uidnext_at_round_start = {k: s.uidnext for k, s in model.mailbox_state.items()}

    def expunge(self, user: str, keys: list) -> None:
        if not keys:
            return
        with self.server.raw(user, self.passwords[user]) as client:
            for mailbox in MAILBOXES:
                uids = [self.model.msgs[k].uid for k in keys if self.model.msgs[k].mailbox == mailbox]
                if not uids:
                    continue
                uid_set = ",".join(map(str, uids))
                client.select(mailbox).ok()
                client.command(f"UID STORE {uid_set} +FLAGS.SILENT (\\Deleted)").ok()
                client.command(f"UID EXPUNGE {uid_set}").ok()
        for key in keys:
            msg = self.model.msgs.pop(key)
            self.model.gone[key] = (f"the verifier's UID EXPUNGE of UID {msg.uid} in {msg.mailbox} after round "
                                    f"{self.model.round} was acknowledged")

    def summary(self) -> str:
        model = self.model
        return (f"seed {self.seed}: {model.round} kills; acknowledged {sum(model.acked_by_kind.values())} "
                f"{dict(sorted(model.acked_by_kind.items()))}; under way at the kills "
                f"{dict(sorted(model.in_flight_by_kind.items()))}; derived files deleted "
                f"{dict(sorted(model.lost_derived.items()))}; {model.killed_starting} restarts killed too; "
                f"{len(model.msgs)} messages at the end")


def first_difference(a: bytes, b: bytes) -> int:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


class CrashTest(unittest.TestCase):

    def run_crashes(self, run: CrashRun, rounds: int) -> None:
        print(f"\ncrash test seed {run.seed} (POSTERN_E2E_SEED={run.seed} to repeat), {rounds} rounds",
              file=sys.stderr)
        self.addCleanup(run.close)
        run.start()
        for number in range(1, rounds + 1):
            run.round(number)
        print(run.summary(), file=sys.stderr)

    def test_sigkill_during_concurrent_changes_loses_nothing_acknowledged(self):
        run = CrashRun(self, SEED)
        self.run_crashes(run, ROUNDS)
        run.server.stop()

    def test_reconstruct_check_after_crashes(self):
        run = CrashRun(self, SEED + 1)
        # Right after each kill too: what recovery cuts off was never acknowledged,
        # so it is no problem (issue 3: "reports nothing but repairs of
        # unacknowledged work").
        run.after_kill = lambda: self.check_reconstruct(
            run.server, f"on the store just killed in round {run.model.round}")
        self.run_crashes(run, RECONSTRUCT_ROUNDS)
        self.check_reconstruct(run.server, "while the server runs")
        # --check changes nothing: every message is where it was, as it was.
        run.verify("reconstruct --check on the running server")
        run.server.stop()
        self.check_reconstruct(run.server, "on the stopped server")
        run.server.start()
        run.verify("reconstruct --check on the stopped server")
        run.server.stop()

    def check_reconstruct(self, server: Server, when: str) -> None:
        result = server.cli("reconstruct", "--check", "--json")
        out, err = result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace")
        context = f"reconstruct --check --json {when}: exit {result.returncode}\nstdout: {out}\nstderr: {err}"
        try:
            report = json.loads(out)
        except ValueError:
            self.fail(f"not one JSON object: {context}")
        self.assertIsInstance(report, dict, context)
        self.assertIsInstance(report.get("problems"), int, context)
        self.assertIsInstance(report.get("repaired"), int, context)
        self.assertEqual(report["problems"], 0, context)
        self.assertEqual(result.returncode, 0, context)


if __name__ == "__main__":
    unittest.main()
