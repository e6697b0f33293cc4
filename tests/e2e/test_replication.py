"""Replication (issue 6): two real servers on loopback, a primary and its
replica, driven with imaplib/raw IMAP and LMTP, and compared with `postern
replication check` (per-mailbox digests over UIDs, flags, MODSEQs and content
hashes, contents verified).

- every kind of change made on the primary reaches the replica, and the two
  agree by digest; the replica serves it read-only and answers deliveries 451;
- a replica killed mid-stream catches up where it stopped;
- with `sync = "before-ack"`, every delivery acknowledged before the primary
  is SIGKILLed is on the promoted replica; the old primary, restarted with
  `role = "primary"`, learns of the new epoch, takes no writes, and after
  `replication rejoin` (which sets its unreplicated mail aside) follows the
  new primary;
- damage to the replica's copy of a mailbox (index rows and a content) is
  found by `check` and repaired by `check --repair` from the good side;
- a reconstruct that changes nothing ships nothing;
- bad input: a wrong secret, garbage on the replication port, bad config.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import threading
import unittest
from pathlib import Path

from harness import Server, ServerError, fetch_items, simple_message, unique_marker, wait_until

SECRET = "a-shared-secret-for-tests"
CATCH_UP_S = 60


def free_port() -> int:
    # A port for a server that must keep it across restarts (the peer's config
    # names it). Bound, read and released: the server binds it right after.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def replication_toml(role: str, listen: int | None, replica: int | None, **extra) -> str:
    lines = ["", "[replication]", f'role = "{role}"', f'secret = "{extra.pop("secret", SECRET)}"']
    if listen is not None:
        lines.append(f'listen = "127.0.0.1:{listen}"')
    if replica is not None:
        lines.append(f'replica = "127.0.0.1:{replica}"')
    for key, value in extra.items():
        lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def status(server: Server) -> dict:
    result = server.cli_ok("replication", "status", "--json")
    return json.loads(result.stdout)


def check(server: Server, *args: str) -> tuple[int, dict]:
    result = server.cli("replication", "check", "--json", *args)
    assert result.returncode in (0, 1), result.stderr.decode(errors="replace")
    return result.returncode, json.loads(result.stdout)


def caught_up(primary: Server) -> bool:
    s = status(primary)
    return s["connected"] and s["lag_records"] == 0


class Pair:
    """A primary and its replica; each names the other, so they can swap roles."""

    def __init__(self, test: unittest.TestCase, **options) -> None:
        # Ports are chosen before the servers bind them, so another test running
        # in parallel may take one meanwhile: then both start again on new ones.
        for attempt in range(5):
            self.primary_port = free_port()
            self.replica_port = free_port()
            self.replica = Server(
                http={}, extra_toml=replication_toml("replica", self.replica_port, self.primary_port, **options)
            )
            test.addCleanup(self.replica.cleanup)
            self.primary = Server(
                http={}, extra_toml=replication_toml("primary", self.primary_port, self.replica_port, **options)
            )
            test.addCleanup(self.primary.cleanup)
            try:
                self.replica.start()
                self.primary.start()
                break
            except ServerError as e:
                if "Address already in use" not in str(e) or attempt == 4:
                    raise
                self.replica.cleanup()
                self.primary.cleanup()
        # The primary takes writes once the replica answered, before its link shows as up.
        wait_until(lambda: status(self.primary)["connected"], CATCH_UP_S, "the primary's link")

    def sync(self) -> None:
        wait_until(lambda: caught_up(self.primary), CATCH_UP_S, "the replica to catch up")

    def assert_same(self, test: unittest.TestCase) -> dict:
        self.sync()
        code, report = check(self.primary)
        test.assertEqual(report["differences"], 0, report)
        test.assertEqual(code, 0)
        return report


def mailbox_state(server: Server, user: str, password: str, mailbox: str) -> dict:
    with server.raw(user, password) as client:
        client.command("ENABLE CONDSTORE").ok()
        selected = client.select(mailbox, readonly=True).ok()
        items = fetch_items(client.command("UID FETCH 1:* (UID FLAGS MODSEQ RFC822.SIZE)")) if selected.named("EXISTS") and selected.numbers("EXISTS")[0] else {}
        return {
            item["UID"]: (sorted(str(f) for f in item["FLAGS"]), item["MODSEQ"], item["RFC822.SIZE"])
            for item in items.values()
        }


class ReplicationTest(unittest.TestCase):
    def test_every_change_reaches_the_replica_which_serves_it_read_only(self) -> None:
        pair = Pair(self)
        p, r = pair.primary, pair.replica
        alice, pw = p.new_user("alice")
        bob, bob_pw = p.new_user("bob")
        for i in range(20):
            p.deliver_ok([alice, bob], simple_message(subject=f"message {i}", body=f"body {i} {unique_marker()}\r\n"))
        with p.raw(alice, pw) as c:
            c.append("INBOX", simple_message(subject="appended"), flags="\\Seen").ok()
        pair.sync()
        blobs_before = status(p)["shipped_blobs"]
        self.assertGreaterEqual(blobs_before, 21)
        with p.raw(alice, pw) as c:
            c.command("CREATE Projects").ok()
            c.command("CREATE Old").ok()
            c.select("INBOX").ok()
            c.command("STORE 1:5 +FLAGS (\\Flagged)").ok()
            c.command("UID MOVE 6:8 Projects").ok()
            c.command("STORE 9 +FLAGS (\\Deleted)").ok()
            c.command("EXPUNGE").ok()
            c.command("RENAME Projects Work").ok()
            c.command("DELETE Old").ok()
            c.command("SUBSCRIBE Work").ok()
            c.command(f"SETACL Work {bob} lr").ok()
            c.command("SETMETADATA INBOX (/private/comment \"replicated\")").ok()
        p.cli_ok("user", "quota", bob, "--storage", "10M")
        p.cli_ok("alias", "add", "team@example.com", alice, bob)
        p.cli_ok("user", "passwd", bob, input="new-bob-password\n")
        p.cli_ok("spam", "block", "ip:192.0.2.7", "--reason", "test")
        report = pair.assert_same(self)
        self.assertEqual(report["users"], 2)
        # The same check run from the replica's side (the requests go the other way).
        code, from_replica = check(r)
        self.assertEqual((code, from_replica["differences"], from_replica["here"]), (0, 0, "replica"))

        # The replica serves the same mail, to the same passwords.
        for mailbox in ("INBOX", "Work", "Trash"):
            self.assertEqual(
                mailbox_state(r, alice, pw, mailbox), mailbox_state(p, alice, pw, mailbox), mailbox
            )
        self.assertEqual(mailbox_state(r, bob, "new-bob-password", "INBOX"), mailbox_state(p, bob, "new-bob-password", "INBOX"))
        self.assertIn("192.0.2.7", r.cli_ok("spam", "blocks").stdout.decode())
        with r.raw(alice, pw) as c:
            acl = c.command("GETACL Work").ok()
            self.assertIn(f"{bob} lr".encode(), b"".join(x.raw for x in acl.untagged))
        with r.raw(bob, "new-bob-password") as c:
            self.assertEqual(c.select(f"Other Users/{alice}/Work").status, "OK")
        self.assertIn("team@example.com", r.cli_ok("alias", "list").stdout.decode())

        # Read-only: writes get a clear NO, deliveries a temporary failure.
        with r.raw(alice, pw) as c:
            refused = c.append("INBOX", simple_message(subject="to the replica"))
            self.assertEqual(refused.status, "NO", refused.describe())
            self.assertEqual(refused.code_name, "UNAVAILABLE")
            self.assertIn("replica", refused.describe())
            c.select("INBOX").ok()
            self.assertEqual(c.command("STORE 1 +FLAGS (\\Seen)").status, "NO")
        replies = r.deliver(alice, simple_message(subject="lmtp to the replica"))
        self.assertEqual(replies[0][0], 451, replies)
        added = r.cli("user", "add", "carol", input="carol-password-1\n")
        self.assertNotEqual(added.returncode, 0)
        self.assertIn("replica", added.stderr.decode())

        rs = status(r)
        self.assertEqual(rs["role"], "replica")
        self.assertEqual(rs["lag_records"], 0)
        ps = status(p)
        for key in ("role", "lag_records", "lag_seconds", "shipped_records", "shipped_bytes"):
            self.assertIn(key, ps)
        self.assertEqual(ps["role"], "primary")
        self.assertGreater(ps["shipped_records"], 40)
        # A content the replica holds is never sent again: moves ship none.
        self.assertEqual(ps["shipped_blobs"], blobs_before, ps)
        self.assertGreater(ps["lag_ms"]["samples"], 0, ps)
        self.assertLessEqual(ps["lag_ms"]["p50"], ps["lag_ms"]["max"])
        metrics = p.http("GET", "/metrics").text()
        self.assertIn("postern_replication_primary 1", metrics)
        self.assertIn("postern_replication_lag_records 0", metrics)
        self.assertIn(f"postern_replication_shipped_records_total {ps['shipped_records']}", metrics)
        self.assertIn("postern_replication_primary 0", r.http("GET", "/metrics").text())

    def test_a_replica_killed_mid_stream_catches_up(self) -> None:
        pair = Pair(self)
        p, r = pair.primary, pair.replica
        user, pw = p.new_user("kc")
        stop = threading.Event()
        delivered: list[str] = []
        errors: list[str] = []

        def deliver() -> None:
            n = 0
            while not stop.is_set() and n < 2000:
                marker = unique_marker("kc")
                replies = p.deliver(user, simple_message(subject=marker))
                if replies[0][0] == 250:
                    delivered.append(marker)
                else:
                    errors.append(str(replies))
                n += 1

        thread = threading.Thread(target=deliver)
        thread.start()
        wait_until(lambda: len(delivered) >= 50, 60, "deliveries")
        r.kill()
        count_at_kill = len(delivered)
        wait_until(lambda: len(delivered) >= count_at_kill + 100, 60, "deliveries while the replica is down")
        r.start()
        wait_until(lambda: len(delivered) >= count_at_kill + 200, 60, "deliveries after the restart")
        stop.set()
        thread.join()
        self.assertEqual(errors, [])
        pair.assert_same(self)
        self.assertEqual(len(mailbox_state(r, user, pw, "INBOX")), len(delivered))

    def test_failover_keeps_every_acknowledged_delivery_and_fences_the_old_primary(self) -> None:
        pair = Pair(self, sync="before-ack")
        p, r = pair.primary, pair.replica
        user, pw = p.new_user("fo")
        acked: list[str] = []
        stop = threading.Event()

        def deliver() -> None:
            while not stop.is_set():
                marker = unique_marker("fo")
                try:
                    replies = p.deliver(user, simple_message(subject=marker))
                except (OSError, AssertionError):
                    return  # the primary was killed mid-transaction
                if replies and replies[0][0] == 250:
                    acked.append(marker)

        thread = threading.Thread(target=deliver)
        thread.start()
        wait_until(lambda: len(acked) >= 100, 60, "acknowledged deliveries")
        os.kill(p.pid, signal.SIGKILL)
        p.process.wait(timeout=10)
        stop.set()
        thread.join()
        before_promotion = list(acked)

        promoted = r.cli("replication", "promote", "--json")
        if promoted.returncode != 0:
            # The primary may have committed (never acknowledged) records it had
            # not shipped: the replica knows it is behind and says so.
            self.assertIn("behind", promoted.stderr.decode())
            promoted = r.cli_ok("replication", "promote", "--force", "--json")
        self.assertTrue(json.loads(promoted.stdout)["promoted"])
        self.assertEqual(status(r)["role"], "primary")
        with r.raw(user, pw) as c:
            c.select("INBOX").ok()
            subjects = c.command("FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])").ok()
            text = b"".join(response.raw for response in subjects.named("FETCH"))
        missing = [m for m in before_promotion if m.encode() not in text]
        self.assertEqual(missing, [], f"{len(missing)} acknowledged deliveries missing after failover")
        # With before-ack, the new primary acknowledges nothing until a replica
        # holds it too: its replica is the old primary, which is down. The
        # delivery is refused with a temporary failure (the sender retries);
        # what was written is kept and shipped once a replica is back.
        replies = r.deliver(user, simple_message(subject="after failover"))
        self.assertEqual(replies[0][0], 451, replies)
        self.assertIn("replica did not confirm", replies[0][1])
        # The operator lets it take writes while the old primary is dealt with.
        r.cli_ok("replication", "sync", "async")
        self.assertEqual(status(r)["sync"], "async")
        r.deliver_ok(user, simple_message(subject="while alone"))
        bad = r.cli("replication", "sync", "sometimes")
        self.assertNotEqual(bad.returncode, 0)
        self.assertIn("not a sync mode", bad.stderr.decode())

        # The old primary comes back with role = "primary" in its config: it
        # hears of epoch 1 from the new primary and takes no writes.
        p.start()
        wait_until(lambda: status(p).get("stepped_down") is not None, CATCH_UP_S, "the old primary to step down")
        with p.raw(user, pw) as c:
            refused = c.append("INBOX", simple_message(subject="split brain"))
            self.assertEqual(refused.status, "NO")
        self.assertEqual(p.deliver(user, simple_message(subject="split brain"))[0][0], 451)

        # Rejoin: what the new primary lacks is set aside, then it follows.
        p.stop()
        rejoin = json.loads(p.cli_ok("replication", "rejoin", "--json").stdout)
        set_aside = Path(rejoin["set_aside"])
        self.assertTrue((set_aside / "report.json").exists())
        self.assertTrue((set_aside / "store" / "journal").exists())
        for message in rejoin["messages"]:
            self.assertTrue((set_aside / message["file"]).exists(), message)
        p.start()
        wait_until(lambda: caught_up(r), CATCH_UP_S, "the old primary to catch up as replica")
        code, report = check(r)
        self.assertEqual(report["differences"], 0, report)
        self.assertEqual(status(p)["role"], "replica")
        # Back to before-ack (kept across a restart), with a replica again.
        r.cli_ok("replication", "sync", "before-ack")
        r.stop()
        r.start()
        wait_until(lambda: status(r)["connected"], CATCH_UP_S, "the link after the restart")
        self.assertEqual(status(r)["sync"], "before-ack")
        r.deliver_ok(user, simple_message(subject="with a replica again"))

    def test_an_old_primary_sets_aside_what_the_new_one_never_received(self) -> None:
        pair = Pair(self)
        p, r = pair.primary, pair.replica
        user, pw = p.new_user("sa")
        for i in range(5):
            p.deliver_ok(user, simple_message(subject=f"replicated {i}"))
        pair.sync()
        # The replica goes away; the primary (async) acknowledges five more,
        # then dies with them.
        r.kill()
        unreplicated = [f"unreplicated-{i}-{unique_marker()}" for i in range(5)]
        for subject in unreplicated:
            p.deliver_ok(user, simple_message(subject=subject))
        p.kill()
        r.start()
        r.cli_ok("replication", "promote", "--force")
        r.deliver_ok(user, simple_message(subject="written on the new primary"))

        # The old primary restarts as configured (primary), steps down at once,
        # and refuses writes; rejoin sets its five messages aside.
        p.start()
        wait_until(lambda: status(p).get("stepped_down") is not None, CATCH_UP_S, "the step-down")
        held = status(p)["stepped_down"]["held_upto"]
        self.assertIsNotNone(held)
        self.assertEqual(p.deliver(user, simple_message(subject="refused"))[0][0], 451)
        p.stop()
        rejoin = json.loads(p.cli_ok("replication", "rejoin", "--json").stdout)
        self.assertEqual(rejoin["held_upto"], held)
        self.assertEqual(rejoin["records"].get("message_added"), 5, rejoin)
        set_aside = Path(rejoin["set_aside"])
        kept = sorted((set_aside / m["file"]).read_bytes() for m in rejoin["messages"])
        self.assertEqual(len(kept), 5)
        for subject in unreplicated:
            self.assertTrue(any(subject.encode() in k for k in kept), subject)
        p.start()
        wait_until(lambda: caught_up(r), CATCH_UP_S, "the old primary to follow the new one")
        self.assertEqual(check(r)[1]["differences"], 0)
        # It now holds the new primary's mail, not its own set-aside five.
        with p.raw(user, pw) as c:
            c.select("INBOX").ok()
            text = b"".join(x.raw for x in c.command("FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])").ok().named("FETCH"))
        self.assertIn(b"written on the new primary", text)
        self.assertFalse(any(s.encode() in text for s in unreplicated))

    def test_batches_are_bounded_by_their_contents_too(self) -> None:
        # 64 KiB per batch; ten messages of 100 KB delivered while the replica
        # is down are one backlog, shipped in ten batches (one message always
        # goes, however big), not in one batch of a megabyte.
        pair = Pair(self, batch_bytes_max=65536)
        p, r = pair.primary, pair.replica
        user, pw = p.new_user("bb")
        pair.sync()
        r.stop()
        line = "y" * 998 + "\r\n"
        for i in range(10):
            p.deliver_ok(user, simple_message(subject=f"large {i}", body=line * 100))
        batches_before = status(p)["shipped_batches"]
        r.start()
        pair.assert_same(self)
        self.assertEqual(len(mailbox_state(r, user, pw, "INBOX")), 10)
        self.assertGreaterEqual(status(p)["shipped_batches"] - batches_before, 10)

    def test_a_replica_knows_it_is_behind_even_after_a_restart(self) -> None:
        # 1 MB/s: five 1 MB messages take the shipper about five seconds, while
        # the replica has already heard how far the primary is.
        pair = Pair(self, max_mb_per_s=1)
        p, r = pair.primary, pair.replica
        user, _ = p.new_user("bh")
        pair.sync()
        big = "x" * 1000 + "\r\n"
        for i in range(5):
            p.deliver_ok(user, simple_message(subject=f"big {i}", body=big * 1000))
        wait_until(lambda: status(r)["lag_records"] > 0, CATCH_UP_S, "the replica to hear it is behind")
        heard = r.data_dir / "replication" / "primary-heard.json"

        def noted() -> bool:
            try:
                return json.loads(heard.read_text())["durable"] > status(r)["position"]["upto"]
            except (OSError, ValueError, KeyError):
                return False

        wait_until(noted, CATCH_UP_S, "the replica to note how far the primary is")
        p.kill()
        r.kill()
        r.start()
        self.assertGreater(status(r)["lag_records"], 0)
        refused = r.cli("replication", "promote")
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("behind", refused.stderr.decode())
        self.assertEqual(status(r)["role"], "replica")
        forced = r.cli_ok("replication", "promote", "--force").stdout.decode()
        self.assertIn("never received", forced)
        self.assertEqual(status(r)["role"], "primary")

    def test_check_finds_and_repairs_damage_on_the_replica(self) -> None:
        pair = Pair(self)
        p, r = pair.primary, pair.replica
        user, pw = p.new_user("dm")
        for i in range(10):
            p.deliver_ok(user, simple_message(subject=f"damage {i}", body=f"unique body {i} {unique_marker()}\r\n"))
        with p.raw(user, pw) as c:
            c.select("INBOX").ok()
            c.command("STORE 1:3 +FLAGS (\\Seen)").ok()
        pair.assert_same(self)
        good = mailbox_state(p, user, pw, "INBOX")

        # Damage the replica's copy: flags changed and a row deleted behind
        # its back, and one content's bytes overwritten in its pack.
        r.stop()
        index = r.data_dir / "users" / user / "index.sqlite"
        conn = sqlite3.connect(index)
        conn.execute("UPDATE messages SET flags = '\\Deleted' WHERE uid = 2")
        conn.execute("DELETE FROM messages WHERE uid = 4")
        conn.commit()
        conn.close()
        packs = sorted((r.data_dir / "blobs").glob("pack-*"))
        data = bytearray(packs[0].read_bytes())
        marker = b"unique body 6 "
        at = data.find(marker)
        self.assertGreater(at, 0)
        data[at : at + len(marker)] = b"XXXXXXXXXXXXXX"
        packs[0].write_bytes(bytes(data))
        r.start()
        # The restarted replica's own view: the primary's may still show the old link.
        wait_until(lambda: status(r)["connected"], CATCH_UP_S, "the new link")

        code, report = check(p)
        self.assertEqual(code, 1)
        kinds = {d["kind"] for d in report["details"]}
        self.assertTrue({"flags", "message_missing", "content_lost"} <= kinds, report)
        self.assertGreater(report["differences"], 0)

        code, repaired = check(p, "--repair")
        self.assertEqual(repaired["remaining"], 0, repaired)
        self.assertEqual(code, 0)
        self.assertEqual(mailbox_state(r, user, pw, "INBOX"), good)
        self.assertEqual(mailbox_state(p, user, pw, "INBOX"), good)
        # The content comes back byte for byte.
        with r.raw(user, pw) as c:
            c.select("INBOX").ok()
            body = c.command("UID FETCH 7 (BODY.PEEK[TEXT])")
            self.assertEqual(body.status, "OK", body.describe())
        self.assertEqual(check(p)[1]["differences"], 0)

    def test_a_reconstruct_that_changes_nothing_ships_nothing(self) -> None:
        pair = Pair(self)
        p = pair.primary
        user, _ = p.new_user("nr")
        for i in range(10):
            p.deliver_ok(user, simple_message(subject=f"noop {i}"))
        pair.sync()
        before = status(p)
        run = json.loads(p.cli_ok("reconstruct", "--json").stdout)
        self.assertEqual(run["repaired"], 0, run)
        pair.sync()
        after = status(p)
        self.assertEqual(after["durable_lsn"], before["durable_lsn"])
        self.assertEqual(after["shipped_records"], before["shipped_records"])
        self.assertEqual(after["shipped_bytes"], before["shipped_bytes"])


class ReplicationBadInputTest(unittest.TestCase):
    def test_a_wrong_secret_is_refused_and_nothing_is_shipped(self) -> None:
        replica_port = free_port()
        replica = Server(extra_toml=replication_toml("replica", replica_port, None))
        self.addCleanup(replica.cleanup)
        replica.start()
        primary = Server(
            extra_toml=replication_toml("primary", None, replica_port, secret="not-the-shared-secret", startup_wait_ms=200)
        )
        self.addCleanup(primary.cleanup)
        primary.start()
        wait_until(lambda: status(primary)["last_error"], CATCH_UP_S, "the refusal")
        self.assertIn("authentication failed", status(primary)["last_error"])
        self.assertFalse(status(primary)["connected"])
        # The primary opens for writes after startup_wait_ms anyway.
        wait_until(lambda: primary.cli("user", "add", "eve", input="eve-password-1\n").returncode == 0, CATCH_UP_S, "writes")
        self.assertEqual(status(replica)["received_records"], 0)
        self.assertNotIn("eve", replica.cli_ok("user", "list").stdout.decode())

    def test_garbage_on_the_replication_port_is_dropped(self) -> None:
        replica_port = free_port()
        replica = Server(extra_toml=replication_toml("replica", replica_port, None))
        self.addCleanup(replica.cleanup)
        replica.start()
        for junk in (b"\x16\x03\x01\x00\x05hello", b"GET / HTTP/1.0\r\n\r\n", os.urandom(4096)):
            with socket.create_connection(("127.0.0.1", replica_port), timeout=10) as s:
                s.sendall(junk)
                s.shutdown(socket.SHUT_WR)
                while s.recv(4096):
                    pass
        self.assertEqual(status(replica)["role"], "replica")

    def test_bad_config_is_refused_with_the_key_named(self) -> None:
        for extra, needle in (
            (replication_toml("primary", None, 1, secret="short"), "secret"),
            (replication_toml("replica", None, None), "listen"),
            ('\n[replication]\nsecret = "a-shared-secret-for-tests"\nlisten = "nowhere"\n', "listen"),
            ('\n[replication]\nsecret = "a-shared-secret-for-tests"\nsync = "sometimes"\n', "sync"),
        ):
            server = Server(extra_toml=extra)
            self.addCleanup(server.cleanup)
            result = server.cli("config", "check")
            self.assertNotEqual(result.returncode, 0, extra)
            self.assertIn(needle, result.stderr.decode(), extra)

    def test_commands_need_replication_and_a_primary_cannot_be_promoted(self) -> None:
        with Server() as plain:
            result = plain.cli("replication", "status")
            self.assertNotEqual(result.returncode, 0)
            self.assertIn("[replication]", result.stderr.decode())
        pair = Pair(self)
        result = pair.primary.cli("replication", "promote")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("already the primary", result.stderr.decode())


if __name__ == "__main__":
    unittest.main()
