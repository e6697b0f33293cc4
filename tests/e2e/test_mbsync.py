"""Interop with a real client: mbsync (isync) syncing a local Maildir both ways.

A Maildir of 1,000 INBOX messages (some with flags, some with encoded-word or
8-bit content, some of ~100 KB) plus two more folders, and a server that already
has a few delivered messages: a first `mbsync -a` must leave both sides holding
exactly the same messages (bytes and flags). Then both sides change (flags,
deletions, expunges, new messages, on the server through IMAP and locally
through the Maildir) and a second `mbsync -a` must again leave both sides equal,
and equal to what the changes call for.

mbsync is an external program (Debian package `isync`); without it the test
fails and says how to install it."""

import base64
import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest
from pathlib import Path

from harness import ServerTestCase, flag_set, list_entries, simple_message

MBSYNC = shutil.which("mbsync")
INSTALL_HINT = "mbsync is missing: install it with `apt-get install -y isync` (Debian/Ubuntu package isync)"
MBSYNC_TIMEOUT_S = 120.0

# mbsync's Maildir flag letters and the IMAP system flags they stand for.
MAILDIR_FLAGS = {"D": "\\Draft", "F": "\\Flagged", "R": "\\Answered", "S": "\\Seen", "T": "\\Deleted"}
SYNCED_FLAGS = set(MAILDIR_FLAGS.values())

INBOX_COUNT = 1000
MESSAGE_ID_RE = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)


def mbsync_version() -> tuple[int, int]:
    out = subprocess.run([MBSYNC, "-v"], capture_output=True, timeout=30).stdout.decode()
    m = re.search(r"(\d+)\.(\d+)", out)
    assert m, f"cannot read the version from `mbsync -v`: {out!r}"
    return int(m.group(1)), int(m.group(2))


def message_id(data: bytes) -> str:
    m = MESSAGE_ID_RE.search(data.split(b"\n\n", 1)[0].split(b"\r\n\r\n", 1)[0])
    assert m, f"no Message-ID in {data[:300]!r}"
    return m.group(1).decode("ascii")


def strip_tuid(data: bytes) -> bytes:
    """mbsync may add an `X-TUID:` header to a message it copies (to find it
    again after APPEND); it is not part of the message we compare."""
    return re.sub(rb"(?m)^X-TUID: [^\r\n]*\r?\n", b"", data)


def local_message(n: int, folder: str) -> bytes:
    """A distinct message with LF line ends, as a Maildir holds it."""
    mid = f"<local-{folder.replace('/', '-')}-{n}@maildir.test.example>"
    headers = [
        f"From: Sender {n} <sender{n}@example.org>",
        "To: rcpt@example.com",
        f"Date: Tue, 05 Mar 2024 {n // 60 % 24:02d}:{n % 60:02d}:00 +0100",
        f"Message-ID: {mid}",
    ]
    body = f"Local message {n} in {folder}.\nSecond line.\n"
    if n % 97 == 3:
        # Encoded-word subject (RFC 2047) and an 8-bit UTF-8 body.
        subject = base64.b64encode(f"Grüße Nr. {n} – Zürich €".encode()).decode()
        headers.append(f"Subject: =?UTF-8?B?{subject}?=")
        headers += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit"]
        body = f"Grüße aus Zürich, Nachricht {n}. Ελληνικά, 日本語.\n"
    elif n % 250 == 7:
        # About 100 KB: base64 of pseudo-random bytes in 76-character lines.
        headers.append(f"Subject: large local {folder} {n}")
        headers += ["MIME-Version: 1.0", "Content-Type: application/octet-stream",
                    "Content-Transfer-Encoding: base64"]
        blob = base64.b64encode(os.urandom(75_000)).decode()
        body = "\n".join(blob[i:i + 76] for i in range(0, len(blob), 76)) + "\n"
    else:
        headers.append(f"Subject: local {folder} {n}")
    return ("\n".join(headers) + "\n\n" + body).encode("utf-8")


def initial_flags(n: int) -> str:
    """Maildir flag letters of message n (sorted, as Maildir wants them)."""
    if n % 10 == 0:
        return "FS"
    if n % 10 == 1:
        return "S"
    if n % 10 == 2:
        return "RS"
    if n % 31 == 5:
        return "F"
    return ""


class MaildirFolder:
    """One Maildir folder: cur/ new/ tmp/ files, read and changed directly."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.counter = 0

    def create(self) -> "MaildirFolder":
        for sub in ("cur", "new", "tmp"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)
        return self

    def add(self, data: bytes, flags: str = "", *, new: bool = False) -> Path:
        self.counter += 1
        base = f"{1709600000 + self.counter}.M{self.counter}P{os.getpid()}.test"
        target = self.path / ("new" if new else "cur") / (base if new else f"{base}:2,{flags}")
        (self.path / "tmp" / base).write_bytes(data)
        os.rename(self.path / "tmp" / base, target)
        return target

    def files(self) -> dict[str, Path]:
        """Message-ID -> file, over cur/ and new/."""
        out: dict[str, Path] = {}
        for sub in ("cur", "new"):
            for path in sorted((self.path / sub).iterdir()):
                mid = message_id(path.read_bytes())
                assert mid not in out, f"Message-ID {mid} twice in {self.path}: {out[mid]} and {path}"
                out[mid] = path
        return out

    @staticmethod
    def flags_of(path: Path) -> str:
        return path.name.split(":2,", 1)[1] if ":2," in path.name else ""

    def set_flags(self, path: Path, letters: str) -> Path:
        base = path.name.split(":2,", 1)[0]
        target = self.path / "cur" / f"{base}:2,{''.join(sorted(set(letters)))}"
        os.rename(path, target)
        return target

    def contents(self) -> dict[str, tuple[bytes, frozenset]]:
        """Message-ID -> (CRLF bytes without X-TUID, IMAP flags)."""
        out = {}
        for mid, path in self.files().items():
            # mbsync keeps LF line ends in a Maildir and sends CRLF over IMAP.
            crlf = strip_tuid(path.read_bytes()).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            flags = frozenset(MAILDIR_FLAGS[c] for c in self.flags_of(path) if c in MAILDIR_FLAGS)
            out[mid] = (crlf, flags)
        return out


class MaildirSyncChecks:
    """What the Maildir sync tests (mbsync, offlineimap) check on both sides.
    A test class mixes it in and says how its client differs:
    `strip_client_header` (the header the client adds to messages it copies),
    `local_folder` (its Maildir layout) and `local_contents`."""

    @staticmethod
    def tail(path: Path, lines: int = 80) -> str:
        text = path.read_bytes().decode("utf-8", "replace").splitlines()[-lines:]
        return f"--- {path.name} (tail) ---\n" + "\n".join(text)

    def server_fetch(self, client, mailbox: str, items: str) -> list[dict]:
        """UID FETCH 1:* ITEMS in MAILBOX (nothing when it is empty)."""
        selected = client.select(mailbox).ok()
        if selected.numbers("EXISTS") in ([], [0]):
            return []
        return list(client.fetch("1:*", items, uid=True).values())

    def server_contents(self, client, mailbox: str) -> dict[str, tuple[bytes, frozenset]]:
        """Message-ID -> (BODY[] without the client's header, synced flags) of one server mailbox."""
        out = {}
        for item in self.server_fetch(client, mailbox, "(UID FLAGS BODY.PEEK[])"):
            data = self.strip_client_header(item["BODY[]"])
            mid = message_id(data)
            self.assertNotIn(mid, out, f"Message-ID {mid} twice on the server in {mailbox}")
            out[mid] = (data, frozenset(flag_set(item["FLAGS"]) & SYNCED_FLAGS))
        return out

    def server_uids(self, client, mailbox: str) -> dict[str, int]:
        """Message-ID -> UID in MAILBOX, which stays selected."""
        return {message_id(item["BODY[]"]): int(item["UID"])
                for item in self.server_fetch(client, mailbox, "(UID BODY.PEEK[])")}

    def server_mailboxes(self, client) -> list[str]:
        entries = list_entries(client.command('LIST "" "*"').ok())
        return sorted(name for name, entry in entries.items()
                      if not {"\\noselect", "\\nonexistent"} & {f.lower() for f in entry["flags"]})

    def assert_flags(self, contents: dict[str, tuple[bytes, frozenset]], expected: dict[str, frozenset]) -> None:
        """The Message-IDs and flags are what the changes call for; names only the differences."""
        actual = {mid: flags for mid, (_, flags) in contents.items()}
        self.assertEqual(sorted(set(actual) - set(expected)), [], "messages that should not be there")
        self.assertEqual(sorted(set(expected) - set(actual)), [], "messages that are missing")
        wrong = {mid: (sorted(actual[mid]), sorted(expected[mid])) for mid in actual if actual[mid] != expected[mid]}
        self.assertEqual(wrong, {}, "flags (actual, expected)")

    def local_contents(self, mailbox: str) -> dict[str, tuple[bytes, frozenset]]:
        return self.local_folder(mailbox).contents()

    def assert_agree(self, client, mailboxes: list[str]) -> dict[str, dict[str, tuple[bytes, frozenset]]]:
        """Each mailbox: the same Message-IDs, bytes (LF->CRLF) and flags on both sides."""
        both = {}
        for mailbox in mailboxes:
            remote = self.server_contents(client, mailbox)
            local = self.local_contents(mailbox)
            with self.subTest(mailbox=mailbox, run=self.runs):
                self.assertEqual(sorted(set(remote) - set(local)), [], f"{mailbox}: only on the server")
                self.assertEqual(sorted(set(local) - set(remote)), [], f"{mailbox}: only in the Maildir")
                wrong_bytes = [mid for mid in remote if mid in local and remote[mid][0] != local[mid][0]]
                detail = ""
                if wrong_bytes:
                    mid = wrong_bytes[0]
                    detail = f"\nfirst: {mid}\nserver: {remote[mid][0][:400]!r}\nlocal:  {local[mid][0][:400]!r}"
                self.assertEqual(wrong_bytes, [], f"{mailbox}: bytes differ{detail}")
                wrong_flags = {mid: (sorted(remote[mid][1]), sorted(local[mid][1]))
                               for mid in remote if mid in local and remote[mid][1] != local[mid][1]}
                self.assertEqual(wrong_flags, {}, f"{mailbox}: flags differ (server, local)")
            both[mailbox] = remote
        return both


class MbsyncTest(MaildirSyncChecks, ServerTestCase):
    maxDiff = 4000

    def setUp(self) -> None:
        self.assertIsNotNone(MBSYNC, INSTALL_HINT)
        self.user, self.password = self.new_user("mbsync")
        self.tmp = Path(tempfile.mkdtemp(prefix="postern-mbsync-"))
        if not os.environ.get("POSTERN_E2E_KEEP"):
            self.addCleanup(shutil.rmtree, self.tmp, True)
        self.root = self.tmp / "Mail"
        self.root.mkdir()
        self.rc = self.tmp / "mbsyncrc"
        self.rc.write_text(self.mbsyncrc(), encoding="utf-8")
        self.runs = 0

    def mbsyncrc(self) -> str:
        major, minor = mbsync_version()
        tls = "TLSType None" if (major, minor) >= (1, 5) else "SSLType None"
        far_near = ("Far :postern:\nNear :local:\n" if (major, minor) >= (1, 4)
                    else "Master :postern:\nSlave :local:\n")
        return (
            "IMAPAccount postern\n"
            "Host 127.0.0.1\n"
            f"Port {self.server.imap_port}\n"
            f"User {self.user}\n"
            f"Pass {self.password}\n"
            f"{tls}\n"
            "AuthMechs LOGIN\n"
            "Timeout 60\n"
            "\n"
            "IMAPStore postern\n"
            "Account postern\n"
            "\n"
            "MaildirStore local\n"
            f"Path {self.root}/\n"
            f"Inbox {self.root}/INBOX\n"
            "SubFolders Verbatim\n"
            "\n"
            "Channel all\n"
            f"{far_near}"
            "Patterns *\n"
            "Create Both\n"
            "Expunge Both\n"
            "SyncState *\n"
            "Sync All\n"
        )

    def mbsync(self) -> float:
        """Runs `mbsync -a`; requires exit 0; returns its wall time."""
        self.runs += 1
        log = self.tmp / f"mbsync-run{self.runs}.log"
        env = {**os.environ, "HOME": str(self.tmp)}
        started = time.monotonic()
        with open(log, "wb") as out:
            try:
                completed = subprocess.run([MBSYNC, "-V", "-c", str(self.rc), "-a"], stdin=subprocess.DEVNULL,
                                           stdout=out, stderr=subprocess.STDOUT, env=env, timeout=MBSYNC_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.fail(f"mbsync run {self.runs} did not finish in {MBSYNC_TIMEOUT_S}s\n"
                          f"{self.tail(log)}\n{self.server.stderr_tail()}")
        elapsed = time.monotonic() - started
        text = log.read_bytes().decode("utf-8", "replace")
        self.assertEqual(completed.returncode, 0,
                         f"mbsync run {self.runs} exited {completed.returncode}\n{self.tail(log)}\n"
                         f"{self.server.stderr_tail()}")
        # mbsync exits 0 after some per-message failures; they must not happen either.
        # (Sending the password in the clear is what this plaintext loopback setup does.)
        problems = [line for line in text.splitlines()
                    if re.search(r"(?i)error|warning|unexpected|refus", line) and "sent in the clear" not in line]
        self.assertEqual(problems, [], f"mbsync run {self.runs} reported problems\n{self.tail(log)}")
        return elapsed

    strip_client_header = staticmethod(strip_tuid)

    def local_mailboxes(self) -> list[str]:
        """Every Maildir folder (a directory with cur/) under the root, by name."""
        return sorted(str(cur.parent.relative_to(self.root)) for cur in self.root.rglob("cur") if cur.is_dir())

    def local_folder(self, mailbox: str) -> MaildirFolder:
        return MaildirFolder(self.root / mailbox)

    def test_two_way_sync_of_1000_messages_then_changes_on_both_sides(self):
        started = time.monotonic()
        # -- local side: INBOX with 1,000 messages, Archive, and a nested new folder.
        expected: dict[str, dict[str, frozenset]] = {"INBOX": {}, "Archive": {}, "Projects/2024": {}}
        local_counts = {"INBOX": INBOX_COUNT, "Archive": 40, "Projects/2024": 6}
        for mailbox, count in local_counts.items():
            folder = self.local_folder(mailbox).create()
            for n in range(count):
                data = local_message(n, mailbox)
                new = n % 50 == 49  # a file in new/ has no flags
                flags = "" if new else initial_flags(n)
                folder.add(data, flags, new=new)
                expected[mailbox][message_id(data)] = frozenset(MAILDIR_FLAGS[c] for c in flags)
        # -- server side: a few delivered (one large, one 8-bit) and one appended with flags.
        delivered = []
        for n in range(5):
            body = "Delivered before the first sync.\r\n"
            extra = ""
            if n == 3:
                body = "".join(f"line {i:05d} " + "x" * 60 + "\r\n" for i in range(1500))
            if n == 4:
                extra = "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
                body = "Grüße vom Server, 8 bit.\r\n"
            msg = simple_message(subject=f"delivered {n}", body=body, extra_headers=extra,
                                 message_id=f"<server-delivered-{n}@test.example>")
            self.server.deliver_ok([self.user], msg)
            delivered.append(msg)
            expected["INBOX"][message_id(msg)] = frozenset()
        client = self.raw(self.user, self.password)
        appended = simple_message(subject="appended to Archive", message_id="<server-archive-1@test.example>")
        client.append("Archive", appended, flags="\\Seen \\Flagged").ok()
        expected["Archive"][message_id(appended)] = frozenset({"\\Seen", "\\Flagged"})

        # -- first sync
        first_s = self.mbsync()
        # CREATE Projects/2024 also made "Projects" (a real mailbox on this server, as
        # RFC 3501 allows); mbsync listed before creating it, so it comes in the next run.
        all_boxes = sorted(["INBOX", "Drafts", "Sent", "Trash", "Junk", "Archive", "Projects/2024"])
        self.assertEqual(sorted(set(self.server_mailboxes(client)) - {"Projects"}), all_boxes)
        self.assertEqual(self.local_mailboxes(), all_boxes)
        state = self.assert_agree(client, all_boxes)
        for mailbox, flags_by_id in expected.items():
            with self.subTest(mailbox=mailbox, after="first sync"):
                self.assert_flags(state[mailbox], flags_by_id)
        self.assertEqual(len(state["INBOX"]), INBOX_COUNT + 5)
        # What arrived by LMTP is what mbsync wrote (modulo LF line ends), trace fields included.
        for msg in delivered:
            self.assertTrue(state["INBOX"][message_id(msg)][0].endswith(msg))

        # -- changes on the server
        def sid(n: int, mailbox: str = "INBOX") -> str:
            return f"<local-{mailbox.replace('/', '-')}-{n}@maildir.test.example>"

        uid_of = self.server_uids(client, "INBOX")  # leaves INBOX selected
        flag_on_server = [sid(n) for n in (13, 14, 15, 300, 301)]
        for mid in flag_on_server:
            uid = uid_of[mid]
            client.command(f"UID STORE {uid} +FLAGS.SILENT (\\Flagged)").ok()
            expected["INBOX"][mid] |= {"\\Flagged"}
        unseen_on_server = sid(20)  # had FS
        client.command(f"UID STORE {uid_of[unseen_on_server]} -FLAGS.SILENT (\\Seen)").ok()
        expected["INBOX"][unseen_on_server] -= {"\\Seen"}
        expunge_on_server = [sid(n) for n in (16, 17, 18, 507)] + ["<server-delivered-0@test.example>"]
        uids = [uid_of[mid] for mid in expunge_on_server]
        client.command(f"UID STORE {','.join(map(str, uids))} +FLAGS.SILENT (\\Deleted)").ok()
        client.command("EXPUNGE").ok()
        for mid in expunge_on_server:
            del expected["INBOX"][mid]
        new_on_server = []
        for n in range(3):
            msg = simple_message(subject=f"appended between syncs {n}", message_id=f"<server-new-{n}@test.example>")
            client.append("INBOX", msg, flags="\\Seen" if n == 0 else None).ok()
            expected["INBOX"][message_id(msg)] = frozenset({"\\Seen"}) if n == 0 else frozenset()
            new_on_server.append(msg)
        archive_new = simple_message(subject="to archive", message_id="<server-new-archive@test.example>")
        client.append("Archive", archive_new).ok()
        expected["Archive"][message_id(archive_new)] = frozenset()

        # -- changes in the Maildir
        inbox = self.local_folder("INBOX")
        files = inbox.files()
        for n in (13, 30, 31, 33):  # 13 is also \Flagged on the server: both changes survive
            path = files[sid(n)]
            inbox.set_flags(path, inbox.flags_of(path) + "S")
            expected["INBOX"][sid(n)] |= {"\\Seen"}
        path = files[sid(34)]
        inbox.set_flags(path, inbox.flags_of(path) + "R")
        expected["INBOX"][sid(34)] |= {"\\Answered"}
        path = files[sid(40)]  # had FS
        inbox.set_flags(path, "S")
        expected["INBOX"][sid(40)] -= {"\\Flagged"}
        for n in (50, 51, 52, 99):  # 99 was in new/
            files[sid(n)].unlink()
            del expected["INBOX"][sid(n)]
        # Trashed locally (T): \Deleted on the server, then expunged on both sides.
        path = files[sid(60)]
        inbox.set_flags(path, inbox.flags_of(path) + "T")
        del expected["INBOX"][sid(60)]
        for n in range(2000, 2004):
            data = local_message(n, "INBOX")
            inbox.add(data, "S" if n == 2001 else "", new=(n % 2 == 0))
            expected["INBOX"][message_id(data)] = frozenset({"\\Seen"}) if n == 2001 else frozenset()
        projects = self.local_folder("Projects/2024")
        projects.files()[sid(2, "Projects/2024")].unlink()
        del expected["Projects/2024"][sid(2, "Projects/2024")]

        # -- second sync
        second_s = self.mbsync()
        all_boxes = self.server_mailboxes(client)
        self.assertEqual(self.local_mailboxes(), all_boxes)
        state = self.assert_agree(client, all_boxes)
        for mailbox, flags_by_id in expected.items():
            with self.subTest(mailbox=mailbox, after="second sync"):
                self.assert_flags(state[mailbox], flags_by_id)
        for msg in new_on_server:
            self.assertEqual(state["INBOX"][message_id(msg)][0], msg)
        self.assertEqual(len(state["INBOX"]), INBOX_COUNT + 5 - 5 + 3 - 4 - 1 + 4)

        # -- a third sync with nothing changed moves nothing
        before = {m: self.local_folder(m).contents() for m in expected}
        third_s = self.mbsync()
        self.assertEqual({m: self.local_folder(m).contents() for m in expected}, before)
        self.assertEqual(self.server_mailboxes(client), all_boxes)
        self.assertEqual(self.local_mailboxes(), all_boxes)
        self.assert_agree(client, all_boxes)
        total_s = time.monotonic() - started
        print(f"\nmbsync {'.'.join(map(str, mbsync_version()))}: first sync {first_s:.1f}s, "
              f"second {second_s:.1f}s, third {third_s:.1f}s, test {total_s:.1f}s", flush=True)


if __name__ == "__main__":
    unittest.main()
