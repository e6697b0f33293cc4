"""Users spread over two PostgreSQL databases ([[store.shards]], issue 10):
`store migrate` does both, new users go to the shard with the fewest
accounts, and `postern user move NAME --to SHARD` moves a user while LMTP
deliveries to them go on through two `serve` nodes: nothing acknowledged is
lost, UIDVALIDITY and UIDs are kept, a session idling on the other node is
told to reconnect (`BYE [UNAVAILABLE]`), and the rows left on the old
shard are deleted after the grace. Real clients: smtplib's LMTP (through
the harness), imaplib, the harness's raw IMAP client for IDLE, the CLI."""

from __future__ import annotations

import imaplib
import json
import re
import subprocess
import threading
import time

from harness import POSTERN_BIN, Server, simple_message
from pg_case import ClusterTestCase
from test_idle_and_sessions import Idle

PASSWORD = "correct horse"
# How long deliveries may keep going after the move, at most.
AFTER_MOVE_S = 2.0


class PgShardsTest(ClusterTestCase):

    def setUp(self) -> None:
        self.a_db, a_dsn = self.new_database("sharda")
        self.b_db, b_dsn = self.new_database("shardb")
        self.databases_by_shard = {"a": self.a_db, "b": self.b_db}
        store = ('\n[store]\nbackend = "postgres"\nmove_grace_secs = 10\n'
                 f'[[store.shards]]\nname = "a"\npostgres = "{a_dsn}"\n'
                 f'[[store.shards]]\nname = "b"\npostgres = "{b_dsn}"\n')
        self.node = Server(extra_toml=store)
        self.other = Server(extra_toml=store)
        for node in (self.node, self.other):
            self.addCleanup(node.cleanup)

    def psql(self, shard: str, sql: str) -> str:
        return self.pg.psql(self.databases_by_shard[shard], sql).strip()

    def shard_of(self, user: str) -> str:
        return self.psql("a", f"SELECT shard FROM directory_users WHERE name = '{user}'")

    def migrate_and_start(self, users: list[str]) -> None:
        self.node.cli_ok("store", "migrate")
        for user in users:
            self.node.add_user(user, PASSWORD)
        self.node.start()
        self.other.start()

    def test_migrate_does_every_shard_and_users_spread(self):
        dry = self.node.cli_ok("store", "migrate", "--dry-run", "--json")
        shards = json.loads(dry.stdout)["shards"]
        self.assertEqual(sorted(shards), ["a", "b"])
        self.assertEqual([m["version"] for m in shards["b"]["applied"]], [1, 2])
        self.node.cli_ok("store", "migrate")
        again = json.loads(self.node.cli_ok("store", "migrate", "--json").stdout)
        self.assertEqual(again["shards"]["a"]["applied"], [])
        self.assertEqual(again["shards"]["b"]["to"], 2)

        users = [f"user{n}@example.com" for n in range(4)]
        for user in users:
            self.node.add_user(user, PASSWORD)
        self.assertEqual(sorted(self.shard_of(u) for u in users), ["a", "a", "b", "b"])
        for shard in ("a", "b"):
            self.assertEqual(self.psql(shard, "SELECT count(*) FROM users"), "2")
        self.node.start()
        self.other.start()
        listed = self.node.cli_ok("user", "list").stdout.decode().split()
        self.assertEqual(listed, users)
        # Mail reaches each user on their shard, through either node.
        for n, user in enumerate(users):
            self.node.deliver_ok([user], simple_message(subject=f"to {user}"))
            imap = imaplib.IMAP4("127.0.0.1", self.other.ports["imap"])
            imap.login(user, PASSWORD)
            imap.select("INBOX")
            typ, data = imap.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            self.assertEqual(typ, "OK")
            self.assertIn(f"to {user}".encode(), data[0][1])
            imap.logout()

    def test_a_user_moves_while_mail_keeps_arriving(self):
        self.migrate_and_start(["alice@example.com", "bob@example.com"])
        user = "alice@example.com"
        source = self.shard_of(user)
        target = "b" if source == "a" else "a"
        for n in range(30):
            self.node.deliver_ok([user], simple_message(subject=f"before {n}"))
        imap = imaplib.IMAP4("127.0.0.1", self.other.ports["imap"])
        imap.login(user, PASSWORD)
        imap.select("INBOX")
        uidvalidity = imap.response("UIDVALIDITY")[1][0]
        imap.logout()
        # A session idling on the other node while the user moves.
        idler = self.other.raw(user, PASSWORD)
        idler.select("INBOX").ok()
        idle = Idle(idler)

        acknowledged: list[str] = []
        refused: list[str] = []
        moved = threading.Event()

        def deliver() -> None:
            n = 0
            stop_at = None
            while stop_at is None or time.monotonic() < stop_at:
                if stop_at is None and moved.is_set():
                    stop_at = time.monotonic() + AFTER_MOVE_S
                subject = f"during {n}"
                replies = self.node.deliver([user], simple_message(subject=subject))
                (acknowledged if replies[0][0] == 250 else refused).append(subject)
                if replies[0][0] != 250:
                    self.assertEqual(replies[0][0] // 100, 4, replies)
                n += 1

        thread = threading.Thread(target=deliver)
        thread.start()
        try:
            # Through the running node's admin socket; progress as JSON lines.
            move = subprocess.run([POSTERN_BIN, "--config", str(self.node.config_path),
                                   "user", "move", user, "--to", target, "--json"],
                                  capture_output=True, timeout=120)
        finally:
            moved.set()
            thread.join(timeout=120)
        self.assertEqual(move.returncode, 0, move.stderr)
        report = json.loads(move.stdout)
        self.assertEqual((report["from"], report["to"]), (source, target))
        self.assertGreater(report["bytes_copied"], 0)
        phases = [json.loads(line)["phase"] for line in move.stderr.decode().splitlines()
                  if line.startswith("{")]
        self.assertEqual(phases[0], "copy", phases)
        self.assertIn("switch", phases)
        self.assertIn("clean-up", phases)

        self.assertEqual(self.shard_of(user), target)
        # The idling session was told to reconnect.
        idle.wait_for(lambda r: r.kind == "*" and r.name == "BYE", "* BYE")
        self.assertIn(b"UNAVAILABLE", b" ".join(r.raw for r in idle.seen if r.name == "BYE"))
        self.assertGreater(len(acknowledged), 0)
        # A new session, on either node, reads everything acknowledged, with
        # the same UIDVALIDITY and UIDs 1..N: nothing to resync.
        expected = [f"before {n}" for n in range(30)] + acknowledged
        for node in (self.node, self.other):
            imap = imaplib.IMAP4("127.0.0.1", node.ports["imap"])
            imap.login(user, PASSWORD)
            imap.select("INBOX")
            self.assertEqual(imap.response("UIDVALIDITY")[1][0], uidvalidity)
            typ, data = imap.uid("FETCH", "1:*", "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            self.assertEqual(typ, "OK")
            got = {}
            for item in data:
                if isinstance(item, tuple):
                    uid = int(re.search(rb"UID (\d+)", item[0]).group(1))
                    got[uid] = item[1].decode().split(":", 1)[1].strip()
            self.assertEqual(sorted(got), list(range(1, len(got) + 1)), "a UID twice, or a gap")
            self.assertEqual(sorted(got.values()), sorted(expected), f"refused: {refused}")
            imap.logout()
        # The old shard keeps nothing of the user; the other user is untouched.
        self.assertEqual(self.psql(source, f"SELECT count(*) FROM users WHERE name = '{user}'"), "0")
        self.assertEqual(self.psql(source, "SELECT count(*) FROM messages m JOIN users u ON u.id = m.user_id "
                                           f"WHERE u.name = '{user}'"), "0")
        bob = imaplib.IMAP4("127.0.0.1", self.node.ports["imap"])
        bob.login("bob@example.com", PASSWORD)
        bob.logout()

    def move_killed_at(self, phase: str) -> None:
        """Runs `user move` in the CLI's own process (no server: it acts on
        the store itself), SIGKILLs it when it reports `phase`, then runs it
        again, which must finish the move."""
        self.node.cli_ok("store", "migrate")
        user = "carol@example.com"
        self.node.add_user(user, PASSWORD)
        for n in range(20):
            self.node.cli_ok("deliver", user, input=simple_message(subject=f"kept {n}"))
        source = self.shard_of(user)
        target = "b" if source == "a" else "a"
        seen = []
        with subprocess.Popen([POSTERN_BIN, "--config", str(self.node.config_path),
                               "user", "move", user, "--to", target],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as move:
            try:
                for line in move.stderr:
                    if line.startswith(b"{"):
                        seen.append(json.loads(line)["phase"])
                        if seen[-1] == phase:
                            move.kill()
                            break
            finally:
                move.kill()
                move.wait(timeout=60)
        self.assertIn(phase, seen)
        again = self.node.cli("user", "move", user, "--to", target, "--json")
        self.assertEqual(again.returncode, 0, again.stderr)
        self.assertEqual(self.shard_of(user), target)
        self.assertEqual(self.psql(source, f"SELECT count(*) FROM users WHERE name = '{user}'"), "0")
        self.node.start()
        imap = imaplib.IMAP4("127.0.0.1", self.node.ports["imap"])
        imap.login(user, PASSWORD)
        imap.select("INBOX")
        typ, data = imap.uid("SEARCH", "ALL")
        self.assertEqual(typ, "OK")
        self.assertEqual([int(u) for u in data[0].split()], list(range(1, 21)))
        imap.logout()

    def test_a_move_killed_at_its_switch_is_finished_by_running_it_again(self):
        # Killed as it reports the switch: just before or just after the
        # switch's commit; running it again copies again, or finishes it.
        self.move_killed_at("switch")

    def test_a_move_killed_after_its_switch_is_finished_by_running_it_again(self):
        # Killed once the old shard stopped taking the user's changes, in
        # the milliseconds before the directory moves (or just after: the
        # kill races the process, and either way the second run must finish).
        self.move_killed_at("switched")

    def test_a_move_killed_in_its_grace_is_finished_by_running_it_again(self):
        # Killed after the directory moved, before the old rows went.
        self.move_killed_at("grace")

    def test_imap_copy_and_move_between_users_of_two_shards(self):
        self.migrate_and_start(["alice@example.com", "bob@example.com"])
        alice, bob = "alice@example.com", "bob@example.com"
        self.assertNotEqual(self.shard_of(alice), self.shard_of(bob))
        for n in range(3):
            self.node.deliver_ok([alice], simple_message(subject=f"shared {n}"))
        self.node.cli_ok("acl", "set", alice, "INBOX", bob, "lrte")
        imap = imaplib.IMAP4("127.0.0.1", self.other.ports["imap"])
        imap.login(bob, PASSWORD)
        shared = f'"Other Users/{alice}/INBOX"'
        typ, data = imap.select(shared)
        self.assertEqual(typ, "OK", data)
        typ, data = imap.uid("COPY", "1", "INBOX")
        self.assertEqual(typ, "OK", data)
        copyuid = imap.response("COPYUID")[1][0]
        self.assertEqual(copyuid.split()[1:], [b"1", b"1"], copyuid)
        typ, data = imap.uid("MOVE", "2", "INBOX")
        self.assertEqual(typ, "OK", data)
        imap.select("INBOX")
        typ, data = imap.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        subjects = sorted(part[1].decode().split(":", 1)[1].strip() for part in data if isinstance(part, tuple))
        self.assertEqual(subjects, ["shared 0", "shared 1"])
        imap.logout()
        alice_imap = imaplib.IMAP4("127.0.0.1", self.node.ports["imap"])
        alice_imap.login(alice, PASSWORD)
        self.assertEqual(alice_imap.select("INBOX"), ("OK", [b"2"]), "the moved message left alice's INBOX")
        alice_imap.logout()

    def test_bad_moves_and_shard_settings_are_refused_in_words(self):
        self.migrate_and_start(["alice@example.com"])
        source = self.shard_of("alice@example.com")
        unknown = self.node.cli("user", "move", "alice@example.com", "--to", "nowhere")
        self.assertNotEqual(unknown.returncode, 0)
        self.assertIn(b"no shard named", unknown.stdout + unknown.stderr)
        here = self.node.cli("user", "move", "alice@example.com", "--to", source)
        self.assertNotEqual(here.returncode, 0)
        self.assertIn(b"already", here.stdout + here.stderr)
        nobody = self.node.cli("user", "move", "nobody", "--to", "a")
        self.assertNotEqual(nobody.returncode, 0)
        self.assertIn(b"no such user", nobody.stdout + nobody.stderr)
        not_moving = self.node.cli("user", "move", "alice@example.com", "--abort")
        self.assertNotEqual(not_moving.returncode, 0)
        self.assertIn(b"not being moved", not_moving.stdout + not_moving.stderr)
        no_target = self.node.cli("user", "move", "alice@example.com")
        self.assertNotEqual(no_target.returncode, 0)

        def check(extra: str) -> bytes:
            path = self.node.tmp / "bad.toml"
            path.write_text(f'data_dir = "{self.node.tmp / "bad-data"}"\n[store]\nbackend = "postgres"\n' + extra)
            result = self.node.cli("config", "check", config=path)
            self.assertNotEqual(result.returncode, 0, extra)
            return result.stdout + result.stderr

        dsn = "postgres://x@127.0.0.1:1/db"
        self.assertIn(b"exclusive", check(f'postgres = "{dsn}"\n[[store.shards]]\nname = "a"\npostgres = "{dsn}"\n'))
        self.assertIn(b"listed twice", check(f'[[store.shards]]\nname = "a"\npostgres = "{dsn}"\n'
                                             f'[[store.shards]]\nname = "a"\npostgres = "{dsn}"\n'))
        self.assertIn(b"a-z", check(f'[[store.shards]]\nname = "A b"\npostgres = "{dsn}"\n'))
        self.assertIn(b"move_grace_secs", check(f'move_grace_secs = 1\n[[store.shards]]\nname = "a"\npostgres = "{dsn}"\n'))
        # The password of a DSN is never repeated.
        bad = check('[[store.shards]]\nname = "a"\npostgres = "postgres://x:s3cret@h:notaport/db"\n')
        self.assertNotIn(b"s3cret", bad)
