"""The concurrent workload of the crash test (test_crash.py): IMAP, LMTP and
`store gc` workers, and the model of what their replies acknowledged.

Every client action records what it got back. A delivery or APPEND that got
its success reply is acknowledged with its exact bytes, user, mailbox and UID;
a STORE with the flags it reported; a MOVE with the UID from COPYUID; an
expunge as gone. The one command of each worker that was sent without its
reply yet is `pending`: after a kill it may or may not have happened (a
MULTIAPPEND wholly or not at all).

Each IMAP worker owns the messages it acts on (handed out by the verifier
between rounds), so one worker's flags and moves are never raced by another's
and its model stays exact. \\Deleted is set only on the way to an expunge, so a
plain EXPUNGE of one worker can only take messages that another worker was
about to expunge anyway: those are "doomed", allowed to be present or gone
until their own expunge is acknowledged.

Only the Python standard library is used.
"""

from __future__ import annotations

import hashlib
import random
import re
import socket
import threading
from dataclasses import dataclass

from harness import (
    ConnectionClosed, Imap, Lit, Lmtp, Server, dot_stuff, fetch_items, flag_set, parse_sequence_set, quote,
    search_numbers, simple_message, text,
)

MAILBOXES = ("INBOX", "Archive", "Work")
FLAGS = ("\\Seen", "\\Flagged", "\\Answered", "\\Draft", "$Work", "$Crash")
MESSAGE_SIZES_BYTES = (300, 1500, 8000, 60000)
# Now and then one larger than the server parses inline (256 KiB) and than a
# pack of the test's config (STORE_TOML in test_crash.py).
LARGE_MESSAGE_BYTES = 300_000
LARGE_MESSAGE_PROBABILITY = 0.02
ALIAS = "crew@crash.example"
ALIAS_USERS = (0, 1)

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
class MailboxState:
    """What STATUS said of a mailbox at the last check."""

    uidvalidity: int
    uidnext: int
    highestmodseq: int


@dataclass
class Pending:
    """The one command a worker sent without its reply yet: after a kill it
    may or may not have happened."""

    kind: str                   # "append", "store" or "move"
    keys: list                  # the (user, marker) it is about, in command order
    mailbox: str | None = None  # APPEND: where to; MOVE: the target
    flags: list | None = None   # APPEND: each message's flags; STORE: the flags after it


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
        # (user, mailbox) -> STATUS at the last check, and the highest UID and
        # MODSEQ a reply acknowledged there: the floors of UIDNEXT and HIGHESTMODSEQ.
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
        self.killed_starting = 0
        # Set just before the kill: what fails after it is the kill's doing.
        self.killed = False
        # What went wrong while the server was up: fails the round.
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


def uids_in_order(uid_set: str) -> list:
    """The UIDs of a COPYUID set in the order written (the two sets of
    COPYUID correspond element by element)."""
    out = []
    for part in uid_set.split(","):
        first, _, last = part.partition(":")
        a, b = int(first), int(last or first)
        out.extend(range(a, b + 1) if a <= b else range(a, b - 1, -1))
    return out


def make_message(marker: str, rng: random.Random) -> bytes:
    """A message whose every line names it, so a torn or mixed one shows."""
    size = LARGE_MESSAGE_BYTES if rng.random() < LARGE_MESSAGE_PROBABILITY else rng.choice(MESSAGE_SIZES_BYTES)
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
        # The one command sent without its reply yet (an expunge is in
        # Model.doomed instead).
        self.pending: Pending | None = None
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
            self.move(self.rng.sample(here, min(len(here), self.rng.choice([1, 1, 2, 3]))), op.startswith("uid"))
        else:
            self.expunge(self.rng.choice(here), op.startswith("uid"))
        self.doing = None

    def sequence_numbers(self, uids: list) -> list:
        """The message numbers of `uids` in this session. No EXPUNGE is reported
        between a SEARCH and the next non-UID command, so they stay valid."""
        numbers = search_numbers(self.client.command(f"SEARCH UID {','.join(map(str, uids))}").ok())
        if len(numbers) != len(uids):
            raise AssertionError(f"SEARCH UID {uids} in {self.selected} found {numbers}")
        return numbers

    def append(self) -> None:
        """APPEND of one message, or MULTIAPPEND (RFC 3502) of two or three,
        which is all or nothing, also when the kill comes in the middle."""
        mailbox = self.rng.choice(MAILBOXES)
        count = 1 if self.rng.random() < 0.7 else self.rng.randint(2, 3)
        keys, parts, flag_sets, sent = [], [], [], []
        for _ in range(count):
            marker = self.model.new_marker(f"a{self.index}")
            data = make_message(marker, self.rng)
            flags = self.rng.sample(FLAGS, self.rng.randint(0, 2))
            keys.append((self.user, marker))
            flag_sets.append(frozenset(f.lower() for f in flags))
            sent.append(data)
            parts += [f" ({' '.join(flags)}) ", Lit(data, plus=self.rng.random() < 0.5)]
        with self.model.cond:
            for (_, marker), data in zip(keys, sent):
                self.model.sent[marker] = ("append", data)
            self.pending = Pending("append", keys, mailbox, flag_sets)
        result = self.client.command(f"APPEND {quote(mailbox)}", *parts).ok()
        code = (result.code or "").split()
        if len(code) != 3 or code[0].upper() != "APPENDUID":
            raise AssertionError(f"APPEND OK without APPENDUID\n{result.describe()}")
        uidvalidity, uids = int(code[1]), parse_sequence_set(code[2])
        if len(uids) != count:
            raise AssertionError(f"APPENDUID names {len(uids)} UIDs for {count} messages\n{result.describe()}")
        with self.model.cond:
            self.check_uidvalidity(mailbox, uidvalidity, result)
            # RFC 4315: the UIDs are in the order of the messages.
            for key, uid, data, flags in zip(keys, uids, sent, flag_sets):
                complaint = self.model.note_uid(self.user, mailbox, uidvalidity, uid, data, key[1])
                if complaint:
                    raise AssertionError(f"APPENDUID: {complaint}")
                self.model.msgs[key] = Msg(self.user, key[1], mailbox, uid, data, flags)
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
        number = None if by_uid else self.sequence_numbers([msg.uid])[0]
        with self.model.cond:
            self.pending = Pending("store", [key], flags=[after])
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

    def move(self, keys: list, by_uid: bool) -> None:
        """MOVE (RFC 6851) of one to three messages; each of them must end up in
        exactly one of the two mailboxes, whatever the kill interrupts."""
        msgs = sorted((self.model.msgs[k] for k in keys), key=lambda m: m.uid)
        target = self.rng.choice([m for m in MAILBOXES if m != self.selected])
        uids = [m.uid for m in msgs]
        numbers = None if by_uid else self.sequence_numbers(uids)
        with self.model.cond:
            self.pending = Pending("move", [(m.user, m.marker) for m in msgs], target)
        if by_uid:
            result = self.client.command(f"UID MOVE {','.join(map(str, uids))} {quote(target)}").ok()
        else:
            result = self.client.command(f"MOVE {','.join(map(str, numbers))} {quote(target)}").ok()
        codes = [r.code for r in result.untagged if r.name == "OK" and (r.code or "").upper().startswith("COPYUID ")]
        if result.code and result.code.upper().startswith("COPYUID "):
            codes.append(result.code)
        if len(codes) != 1:
            raise AssertionError(f"MOVE acknowledged without one COPYUID\n{result.describe()}")
        _, uidvalidity, source, destination = codes[0].split()
        pairs = dict(zip(uids_in_order(source), uids_in_order(destination)))
        if sorted(pairs) != uids:
            raise AssertionError(f"MOVE of UIDs {uids} answered COPYUID for {source}\n{result.describe()}")
        with self.model.cond:
            self.check_uidvalidity(target, int(uidvalidity), result)
            for msg in msgs:
                uid = pairs[msg.uid]
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

