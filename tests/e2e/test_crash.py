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
* a UID never shows other content than it once did in a mailbox with the same
  UIDVALIDITY, UIDVALIDITY never changes, and UIDNEXT, HIGHESTMODSEQ and each
  message's MODSEQ never go back (nor below what a reply acknowledged);
* the server starts every time, without a panic.

test_durability.py kills once, in the middle of deliveries and APPENDs. This
file kills ROUNDS times on one data dir with every kind of change in flight,
so each recovery also runs over what the previous ones left behind; small
journal segments and packs and a garbage collection every second put segment
rollovers, pack rotation and collection under the kills as well.

How the test knows what must be there: every client action records what it got
back. Each worker owns the messages it acts on (handed out after each
verification), so one worker's flags and moves are never raced by another's,
and it has at most one command in flight when the kill comes. \\Deleted is set
only on the way to an expunge, so a plain EXPUNGE of one worker can only take
messages that another worker was about to expunge anyway: those are "doomed",
allowed to be present or gone until their own expunge is acknowledged.

The kill moment is the experiment, not synchronisation: the main thread waits
(bounded) for a random number of acknowledgements, then a random short delay,
then SIGKILLs while every worker is in the middle of its next command.

POSTERN_E2E_SEED picks the seed (printed at the start); POSTERN_E2E_CRASH_ROUNDS
the number of rounds of the main test.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import socket
import sys
import threading
import time
import unittest
from dataclasses import dataclass, field

from harness import (
    ConnectionClosed, Imap, Lit, Lmtp, Server, dot_stuff, fetch_items, flag_set, quote, search_numbers,
    simple_message, split_trace, text,
)

SEED = int(os.environ.get("POSTERN_E2E_SEED", "20251128"))
ROUNDS = int(os.environ.get("POSTERN_E2E_CRASH_ROUNDS", "50"))
# The reconstruct test makes its own, shorter history of crashes to check.
RECONSTRUCT_ROUNDS = 6

MAILBOXES = ("INBOX", "Archive", "Work")
FLAGS = ("\\Seen", "\\Flagged", "\\Answered", "\\Draft", "$Work", "$Crash")
MESSAGE_SIZES_BYTES = (300, 1500, 8000, 60000)
USERS = 3
# IMAP workers per user, by user index: two share the first user's mailboxes.
IMAP_WORKER_USERS = (0, 0, 1, 2)
LMTP_WORKERS = 2
ALIAS = "crew@crash.example"
ALIAS_USERS = (0, 1)

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

MARKER_RE = re.compile(rb"(?m)^X-Crash-Id: ([^\r\n]+)\r\n")


def flags_of(value) -> frozenset:
    """A FLAGS list as a frozenset of lower-case names, without \\Recent."""
    return frozenset(f.lower() for f in flag_set(value))


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Msg:
    """A message the test knows to be (or, while doomed, maybe be) in a mailbox."""

    user: str
    marker: str
    mailbox: str
    uid: int
    stored: bytes        # exactly what BODY[] returns
    flags: frozenset     # lower case, no \recent
    modseq: int = 0      # the least MODSEQ it may have now (0: not known)


@dataclass
class Expect:
    """Where one (user, marker) may be found after a restart."""

    places: set          # {(mailbox, uid)}; uid None: any UID new in that mailbox
    required: bool
    flags: set | None    # allowed flag sets; None: any
    modseq_min: int
    why: str


@dataclass
class MailboxState:
    uidvalidity: int
    uidnext: int
    highestmodseq: int


class Model:
    """What the clients were told, shared by the workers under one lock."""

    def __init__(self, seed: int) -> None:
        self.cond = threading.Condition()
        self.seed = seed
        self.round = 0
        self.counter = 0
        # marker -> ("lmtp" | "append", the bytes sent); every message ever sent.
        self.sent: dict[str, tuple[str, bytes]] = {}
        # (user, marker) -> Msg: present as far as acknowledged replies go.
        self.msgs: dict[tuple[str, str], Msg] = {}
        # \Deleted sent, expunge not yet acknowledged: present or gone.
        self.doomed: dict[tuple[str, str], Msg] = {}
        # (user, marker) -> what took it away, acknowledged.
        self.gone: dict[tuple[str, str], str] = {}
        # LMTP this round: acknowledged (250 for a recipient of that user), and sent.
        self.delivered: set[tuple[str, str]] = set()
        self.maybe_delivered: set[tuple[str, str]] = set()
        # (user, mailbox, uidvalidity) -> {uid: (digest, marker)}, ever seen or acknowledged.
        self.history: dict[tuple[str, str, int], dict[int, tuple[str, str]]] = {}
        self.mailbox_state: dict[tuple[str, str], MailboxState] = {}
        self.acked_uid_max: dict[tuple[str, str], int] = {}
        self.acked_modseq_max: dict[tuple[str, str], int] = {}
        self.acks = 0            # this round
        self.ready = 0           # workers connected and working, this round
        # Acknowledged changes and commands in flight at the kills, by kind, for the summary.
        self.acked_by_kind: dict[str, int] = {}
        self.in_flight_by_kind: dict[str, int] = {}
        # Derived files deleted between a kill and its restart, by name.
        self.lost_derived: dict[str, int] = {}
        self.killed = False
        self.errors: list[str] = []

    def new_marker(self, who: str) -> str:
        with self.cond:
            self.counter += 1
            return f"s{self.seed}-r{self.round}-{who}-{self.counter}"

    def ack(self, kind: str) -> None:
        """Counts one acknowledgement (caller holds the lock)."""
        self.acks += 1
        self.acked_by_kind[kind] = self.acked_by_kind.get(kind, 0) + 1
        self.cond.notify_all()

    def worker_ready(self) -> None:
        with self.cond:
            self.ready += 1
            self.cond.notify_all()

    def note_in_flight(self, kind: str) -> None:
        self.in_flight_by_kind[kind] = self.in_flight_by_kind.get(kind, 0) + 1

    def fail(self, what: str) -> None:
        with self.cond:
            if not self.killed:
                self.errors.append(f"round {self.round}: {what}")
            self.cond.notify_all()

    def note_uid(self, user: str, mailbox: str, uidvalidity: int, uid: int, stored: bytes, marker: str) -> str | None:
        """Records that `uid` holds `stored`; returns a complaint if it once held other bytes."""
        seen = self.history.setdefault((user, mailbox, uidvalidity), {})
        now = (digest(stored), marker)
        before = seen.setdefault(uid, now)
        if before != now:
            return (f"{user} {mailbox} UIDVALIDITY {uidvalidity} UID {uid} reused: it held {before[1]} "
                    f"and now holds {marker} ({'other bytes' if before[1] == marker else 'another message'})")
        return None


def make_message(marker: str, rng: random.Random) -> bytes:
    """A message whose every line names it, so a torn or mixed one shows."""
    size = rng.choice(MESSAGE_SIZES_BYTES)
    line = f"{marker} " + "x" * 60 + "\r\n"
    lines = [line] * (size // len(line) + 1)
    if rng.random() < 0.3:
        lines.insert(len(lines) // 2, ".a line that LMTP must dot-stuff\r\n")
    return simple_message(subject=marker, body="".join(lines), extra_headers=f"X-Crash-Id: {marker}\r\n",
                          message_id=f"<{marker}@crash.test>")


class ImapWorker(threading.Thread):
    """One IMAP connection of one user doing random changes to the messages it owns."""

    def __init__(self, model: Model, port: int, user: str, password: str, index: int, owned: set, seed: int) -> None:
        super().__init__(daemon=True)
        self.model = model
        self.port = port
        self.user = user
        self.password = password
        self.index = index
        self.owned = owned       # keys of self.model.msgs this worker may change
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.client: Imap | None = None
        self.selected: str | None = None
        # The one command sent without its reply yet, as the verifier reads it:
        # ("append", key, mailbox, flags) | ("store", key, flags_after) | ("move", key, target).
        self.pending: tuple | None = None
        # The operation under way ("uid move", ...), for the summary.
        self.doing: str | None = None

    def run(self) -> None:
        try:
            self.client = Imap(self.port)
            # APPEND sends its literal and the closing CRLF in two writes;
            # with Nagle's algorithm each would wait for a delayed ACK (40 ms).
            self.client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.client.login(self.user, self.password).ok()
            self.client.command("ENABLE CONDSTORE").ok()
            self.select(self.rng.choice(MAILBOXES))
            self.model.worker_ready()
            while not self.stop.is_set():
                self.step()
        except TimeoutError:
            self.model.fail(f"imap worker {self.index} ({self.user}): no answer within the socket timeout")
        except (ConnectionClosed, OSError):
            pass  # the server was killed
        except Exception as e:
            self.model.fail(f"imap worker {self.index} ({self.user}): {e!r}")
        finally:
            if self.client is not None:
                self.client.close()

    def select(self, mailbox: str) -> None:
        self.client.select(mailbox).ok()
        self.selected = mailbox

    def here(self) -> list:
        with self.model.cond:
            return sorted(k for k in self.owned if self.model.msgs[k].mailbox == self.selected)

    def step(self) -> None:
        here = self.here()
        ops = ["append", "select"]
        if here:
            ops += ["store", "store", "uid store", "uid store", "move", "uid move", "expunge", "uid expunge"]
        op = self.doing = self.rng.choice(ops)
        if op == "append":
            self.append()
        elif op == "select":
            self.select(self.rng.choice(MAILBOXES))
        elif op.endswith("store"):
            self.store(self.rng.choice(here), op.startswith("uid"))
        elif op.endswith("move"):
            self.move(self.rng.choice(here), op.startswith("uid"))
        else:
            self.expunge(self.rng.choice(here), op.startswith("uid"))
        self.doing = None

    def sequence_number(self, uid: int) -> int:
        """The message number of `uid` in this session. No EXPUNGE is reported
        between a SEARCH and the next non-UID command, so it stays valid."""
        numbers = search_numbers(self.client.command(f"SEARCH UID {uid}").ok())
        if len(numbers) != 1:
            raise AssertionError(f"SEARCH UID {uid} in {self.selected} found {numbers}")
        return numbers[0]

    def append(self) -> None:
        mailbox = self.rng.choice(MAILBOXES)
        marker = self.model.new_marker(f"a{self.index}")
        data = make_message(marker, self.rng)
        flags = self.rng.sample(FLAGS, self.rng.randint(0, 2))
        key = (self.user, marker)
        with self.model.cond:
            self.model.sent[marker] = ("append", data)
            self.pending = ("append", key, mailbox, frozenset(f.lower() for f in flags))
        result = self.client.command(f"APPEND {quote(mailbox)} ({' '.join(flags)}) ",
                                     Lit(data, plus=self.rng.random() < 0.5)).ok()
        code = (result.code or "").split()
        if len(code) != 3 or code[0].upper() != "APPENDUID":
            raise AssertionError(f"APPEND OK without APPENDUID\n{result.describe()}")
        uidvalidity, uid = int(code[1]), int(code[2])
        with self.model.cond:
            self.check_uidvalidity(mailbox, uidvalidity, result)
            complaint = self.model.note_uid(self.user, mailbox, uidvalidity, uid, data, marker)
            if complaint:
                raise AssertionError(f"APPENDUID: {complaint}")
            self.model.msgs[key] = Msg(self.user, marker, mailbox, uid, data, self.pending[3])
            self.owned.add(key)
            self.note_acked_uid(mailbox, uid)
            self.pending = None
            self.model.ack(self.doing)

    def store(self, key: tuple, by_uid: bool) -> None:
        msg = self.model.msgs[key]
        mode = self.rng.choice(["+", "-", ""])
        flags = self.rng.sample(FLAGS, self.rng.randint(1, 2))
        lowered = frozenset(f.lower() for f in flags)
        after = msg.flags | lowered if mode == "+" else msg.flags - lowered if mode == "-" else lowered
        silent = ".SILENT" if self.rng.random() < 0.25 else ""
        change = f"{mode}FLAGS{silent} ({' '.join(flags)})"
        number = None if by_uid else self.sequence_number(msg.uid)
        with self.model.cond:
            self.pending = ("store", key, after)
        if by_uid:
            result = self.client.command(f"UID STORE {msg.uid} {change}").ok()
            reported = [v for v in fetch_items(result).values() if "UID" in v and int(v["UID"]) == msg.uid]
        else:
            result = self.client.command(f"STORE {number} {change}").ok()
            reported = [v for n, v in fetch_items(result).items() if n == number]
        modseq = msg.modseq
        if not silent:
            if len(reported) != 1 or "FLAGS" not in reported[0]:
                raise AssertionError(f"STORE did not report the flags of UID {msg.uid}\n{result.describe()}")
            if flags_of(reported[0]["FLAGS"]) != after:
                raise AssertionError(f"STORE reported {sorted(flags_of(reported[0]['FLAGS']))}, "
                                     f"expected {sorted(after)}\n{result.describe()}")
            if "MODSEQ" in reported[0]:
                modseq = int(text(reported[0]["MODSEQ"][0]))
        with self.model.cond:
            msg.flags = after
            msg.modseq = max(msg.modseq, modseq)
            mailbox_key = (self.user, msg.mailbox)
            self.model.acked_modseq_max[mailbox_key] = max(self.model.acked_modseq_max.get(mailbox_key, 0), msg.modseq)
            self.pending = None
            self.model.ack(self.doing)

    def move(self, key: tuple, by_uid: bool) -> None:
        msg = self.model.msgs[key]
        target = self.rng.choice([m for m in MAILBOXES if m != self.selected])
        number = None if by_uid else self.sequence_number(msg.uid)
        with self.model.cond:
            self.pending = ("move", key, target)
        if by_uid:
            result = self.client.command(f"UID MOVE {msg.uid} {quote(target)}").ok()
        else:
            result = self.client.command(f"MOVE {number} {quote(target)}").ok()
        codes = [r.code for r in result.untagged if r.name == "OK" and (r.code or "").upper().startswith("COPYUID ")]
        if result.code and result.code.upper().startswith("COPYUID "):
            codes.append(result.code)
        if len(codes) != 1:
            raise AssertionError(f"MOVE acknowledged without one COPYUID\n{result.describe()}")
        _, uidvalidity, source, destination = codes[0].split()
        if int(source) != msg.uid:
            raise AssertionError(f"MOVE of UID {msg.uid} answered COPYUID for {source}\n{result.describe()}")
        uid = int(destination)
        with self.model.cond:
            self.check_uidvalidity(target, int(uidvalidity), result)
            complaint = self.model.note_uid(self.user, target, int(uidvalidity), uid, msg.stored, msg.marker)
            if complaint:
                raise AssertionError(f"COPYUID: {complaint}")
            msg.mailbox, msg.uid, msg.modseq = target, uid, 0
            self.note_acked_uid(target, uid)
            self.pending = None
            self.model.ack(self.doing)

    def expunge(self, key: tuple, by_uid: bool) -> None:
        with self.model.cond:
            msg = self.model.msgs.pop(key)
            self.owned.discard(key)
            # From here on another session's EXPUNGE may take it too.
            self.model.doomed[key] = msg
        self.client.command(f"UID STORE {msg.uid} +FLAGS.SILENT (\\Deleted)").ok()
        command = f"UID EXPUNGE {msg.uid}" if by_uid else "EXPUNGE"
        self.client.command(command).ok()
        with self.model.cond:
            del self.model.doomed[key]
            self.model.gone[key] = (f"{command} of UID {msg.uid} in {msg.mailbox} was acknowledged "
                                    f"(round {self.model.round})")
            self.model.ack(self.doing)

    def check_uidvalidity(self, mailbox: str, uidvalidity: int, result) -> None:
        known = self.model.mailbox_state[(self.user, mailbox)].uidvalidity
        if uidvalidity != known:
            raise AssertionError(f"{mailbox}: UIDVALIDITY {uidvalidity} in a reply, {known} at the last check\n"
                                 f"{result.describe()}")

    def note_acked_uid(self, mailbox: str, uid: int) -> None:
        key = (self.user, mailbox)
        self.model.acked_uid_max[key] = max(self.model.acked_uid_max.get(key, 0), uid)


class LmtpWorker(threading.Thread):
    """One LMTP connection delivering to one to three recipients at a time:
    plain addresses, +tags and an alias, so one user is often named twice."""

    def __init__(self, model: Model, port: int, users: list, index: int, seed: int) -> None:
        super().__init__(daemon=True)
        self.model = model
        self.port = port
        self.index = index
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.doing: str | None = None
        self.recipients = [(f"{u}@crash.example", [u]) for u in users]
        self.recipients += [(f"{u}+tag{index}@crash.example", [u]) for u in users]
        self.recipients.append((ALIAS, [users[i] for i in ALIAS_USERS]))

    def run(self) -> None:
        client = None
        try:
            client = Lmtp(self.port)
            client.lhlo()
            self.model.worker_ready()
            while not self.stop.is_set():
                self.deliver(client)
        except TimeoutError:
            self.model.fail(f"lmtp worker {self.index}: no answer within the socket timeout")
        except (ConnectionClosed, OSError):
            pass  # the server was killed
        except Exception as e:
            self.model.fail(f"lmtp worker {self.index}: {e!r}")
        finally:
            if client is not None:
                client.close()

    def deliver(self, client: Lmtp) -> None:
        self.doing = "lmtp"
        marker = self.model.new_marker(f"l{self.index}")
        data = make_message(marker, self.rng)
        recipients = self.rng.sample(self.recipients, self.rng.randint(1, 3))
        with self.model.cond:
            self.model.sent[marker] = ("lmtp", data)
        commands = [f"MAIL FROM:<lmtp{self.index}@sender.example>"] + [f"RCPT TO:<{a}>" for a, _ in recipients]
        if self.rng.random() < 0.5:
            client.send("".join(c + "\r\n" for c in commands + ["DATA"]).encode())
            replies = [client.reply() for _ in commands + ["DATA"]]
        else:
            replies = [client.cmd(c) for c in commands + ["DATA"]]
        if [code for code, _ in replies] != [250] * len(commands) + [354]:
            raise AssertionError(f"LMTP refused {commands}: {replies}")
        with self.model.cond:
            self.model.maybe_delivered.update((u, marker) for _, users in recipients for u in users)
        client.send(dot_stuff(data) + b".\r\n")
        for address, users in recipients:
            code, reply = client.reply()
            if code != 250:
                raise AssertionError(f"LMTP DATA for {address}: {code} {reply}")
            with self.model.cond:
                self.model.delivered.update((u, marker) for u in users)
                self.model.ack(self.doing)


class GcWorker(threading.Thread):
    """Runs `postern store gc` over and over, so collection (pack rewrites and
    deletions) is under way at some kills too. A run that starts after the
    kill finds no server and works on the store itself, as an operator's
    would; the restart waits for it."""

    def __init__(self, model: Model, server: Server) -> None:
        super().__init__(daemon=True)
        self.model = model
        self.server = server
        self.stop = threading.Event()
        self.doing: str | None = None

    def run(self) -> None:
        self.model.worker_ready()
        try:
            while not self.stop.is_set():
                self.doing = "store gc"
                result = self.server.cli("store", "gc")
                self.doing = None
                if result.returncode != 0:
                    self.model.fail(f"store gc exited {result.returncode}: {result.stderr.decode(errors='replace')}")
                    return
        except Exception as e:
            self.model.fail(f"store gc: {e!r}")


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
        if lose_derived:
            self.lose_derived_file()
        try:
            self.server.start()
        finally:
            self.check_no_panic()
        self.verify("restart", [w for w in workers if isinstance(w, ImapWorker)])

    def lose_derived_file(self) -> None:
        """Deletes server.sqlite or one user's index (with its WAL): derived
        data that the restart must rebuild from the journal and the packs."""
        data = self.server.data_dir
        victim = self.schedule.choice([data / "server.sqlite"] + [data / "users" / u / "index.sqlite" for u in self.users])
        for path in (victim, victim.with_name(victim.name + "-wal"), victim.with_name(victim.name + "-shm")):
            path.unlink(missing_ok=True)
        name = str(victim.relative_to(data))
        self.model.lost_derived[name] = self.model.lost_derived.get(name, 0) + 1

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
        found_keys = {(user, marker) for entries in found_all.values() for user, marker, *_ in entries}
        for key, expect in sorted(expected.items()):
            if expect.required and key not in found_keys:
                problems.append(f"{key[0]}: {key[1]} missing after the restart ({expect.why})")
        if problems:
            self.test.fail(f"{self.where()}, after {when}: {len(problems)} problem(s)\n" + "\n".join(problems[:40])
                           + f"\n{self.server.stderr_tail(20)}")
        self.rebuild(found_all, workers)

    def read_user(self, client: Imap, user: str, problems: list) -> list:
        """(user, marker, mailbox, uid, flags, modseq, stored) of every message,
        after checking each mailbox's UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ."""
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
            data = client.fetch("1:*", "(UID FLAGS MODSEQ BODY.PEEK[])", uid=True) if status["MESSAGES"] else {}
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
                problems.extend(self.content_problems(where, uid, marker, stored))
                found.append((user, marker, mailbox, uid, flags_of(item["FLAGS"]), modseq, stored))
            client.command("UNSELECT").ok()
            model.mailbox_state[(user, mailbox)] = state
        return found

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
            if worker.pending is None:
                continue
            kind, key = worker.pending[:2]
            if kind == "append":
                expected[key] = Expect({(worker.pending[2], None)}, False, {worker.pending[3]}, 0, "APPEND in flight")
            elif kind == "store":
                expected[key].flags.add(worker.pending[2])
                expected[key].modseq_min = 0
                expected[key].why = "STORE in flight"
            elif kind == "move":
                expected[key].places.add((worker.pending[2], None))
                expected[key].modseq_min = 0
                expected[key].why = "MOVE in flight"
        return expected

    def match(self, user: str, found: list, expected: dict, problems: list) -> None:
        by_key: dict[tuple[str, str], list] = {}
        for entry in found:
            by_key.setdefault((entry[0], entry[1]), []).append(entry)
        for key, entries in sorted(by_key.items()):
            places = [f"{mailbox} UID {uid}" for _, _, mailbox, uid, *_ in entries]
            expect = expected.get(key)
            if expect is None:
                gone = self.model.gone.get(key)
                problems.append(f"{user}: {key[1]} found at {places}, though " +
                                (gone or "no reply or command put it there"))
                continue
            if len(entries) > 1:
                problems.append(f"{user}: {key[1]} found {len(entries)} times: {places} ({expect.why})")
            for _, marker, mailbox, uid, flags, modseq, _ in entries:
                allowed = (mailbox, uid) in expect.places or (
                    (mailbox, None) in expect.places and uid >= self.uidnext_before_round(user, mailbox))
                if not allowed:
                    problems.append(f"{user}: {marker} found at {mailbox} UID {uid}, expected at "
                                    f"{sorted(expect.places, key=str)} ({expect.why})")
                if expect.flags is not None and flags not in expect.flags:
                    problems.append(f"{user}: {marker} at {mailbox} UID {uid} has flags {sorted(flags)}, expected "
                                    f"one of {[sorted(f) for f in expect.flags]} ({expect.why})")
                if modseq < expect.modseq_min:
                    problems.append(f"{user}: {marker} at {mailbox} UID {uid} has MODSEQ {modseq}, below the "
                                    f"acknowledged {expect.modseq_min}")

    def uidnext_before_round(self, user: str, mailbox: str) -> int:
        return self.uidnext_at_round_start.get((user, mailbox), 1)

    def rebuild(self, found_all: dict, workers) -> None:
        """The model becomes what was found; doomed leftovers and the surplus
        above MESSAGES_PER_USER_MAX are expunged (acknowledged) before the next
        round; the rest is handed out to the IMAP workers of each user."""
        model = self.model
        present = {}
        for user, entries in found_all.items():
            for _, marker, mailbox, uid, flags, modseq, stored in entries:
                present[(user, marker)] = Msg(user, marker, mailbox, uid, stored, flags, modseq)
        # What was in flight and did not happen must not happen later either.
        for key in model.doomed:
            if key not in present:
                model.gone[key] = f"its expunge was in flight at the kill of round {model.round} and it was gone after"
        for key in model.maybe_delivered:
            if key not in present:
                model.gone[key] = f"its LMTP delivery was in flight at the kill of round {model.round} and it was absent after"
        for worker in workers:
            if worker.pending is not None and worker.pending[0] == "append" and worker.pending[1] not in present:
                model.gone[worker.pending[1]] = (f"its APPEND was in flight at the kill of round {model.round} "
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
            workers = IMAP_WORKER_USERS.count(self.users.index(user))
            self.owners[user] = [set(keys[i::workers]) for i in range(workers)]
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
                f"{dict(sorted(model.lost_derived.items()))}; {len(model.msgs)} messages at the end")


def first_difference(a: bytes, b: bytes) -> int:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


class CrashTest(unittest.TestCase):

    def run_crashes(self, rounds: int, seed: int) -> CrashRun:
        print(f"\ncrash test seed {seed} (POSTERN_E2E_SEED={seed} to repeat), {rounds} rounds", file=sys.stderr)
        run = CrashRun(self, seed)
        self.addCleanup(run.close)
        run.start()
        for number in range(1, rounds + 1):
            run.round(number)
        print(run.summary(), file=sys.stderr)
        return run

    def test_sigkill_during_concurrent_changes_loses_nothing_acknowledged(self):
        run = self.run_crashes(ROUNDS, SEED)
        run.server.stop()

    def test_reconstruct_check_after_crashes(self):
        run = self.run_crashes(RECONSTRUCT_ROUNDS, SEED + 1)
        self.check_reconstruct(run.server, "while the server runs")
        run.server.stop()
        self.check_reconstruct(run.server, "on the stopped server")

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
