"""Integrity: damage the derived files, the journal and the blobs of a real
store, and check that no wrong answer is ever served and that `postern
reconstruct` finds and repairs what can be repaired (issue 3, acceptance).

The damage is done the way disks and bugs do it: bytes changed in SQLite rows
behind the server's back, cache entries swapped, an index file deleted, a
blob's bytes overwritten in its pack, a journal frame's payload flipped.
"""

from __future__ import annotations

import json
import sqlite3
import struct
import unittest
import zlib
from pathlib import Path

from harness import Server, data_file, fetch_items, wait_until

MESSAGES = ["plain.eml", "alternative.eml", "attachment.eml", "encoded.eml", "forwarded.eml"]


def index_path(server: Server, user: str) -> Path:
    return server.data_dir / "users" / user / "index.sqlite"


def db(server: Server, user: str) -> sqlite3.Connection:
    conn = sqlite3.connect(index_path(server, user), timeout=30)
    conn.execute("PRAGMA busy_timeout = 30000")
    return conn


class ReconstructTest(unittest.TestCase):
    def setUp(self) -> None:
        # Small journal segments: several segments, so damage can sit in one the
        # writer no longer appends to.
        # The server's own repairs would race the runs these tests make and
        # check; one test turns them on to see them work.
        auto = "true" if self._testMethodName == "test_server_repairs_what_it_finds_while_serving" else "false"
        self.server = Server(
            extra_toml=f"\n[store]\njournal_segment_bytes = 4096\n[reconstruct]\nauto_repair = {auto}\n"
        )
        self.server.start()
        self.addCleanup(self.server.cleanup)
        self.user, self.password = self.server.new_user("rc")
        self.bodies: dict[int, bytes] = {}
        client = self.server.raw(self.user, self.password)
        self.addCleanup(client.close)
        for uid, name in enumerate(MESSAGES, start=1):
            raw = data_file(name)
            client.append("INBOX", raw, flags="\\Flagged" if uid == 2 else None).ok()
            self.bodies[uid] = raw
        self.client = client
        self.client.select("INBOX").ok()
        client.command("STORE 3 +FLAGS (\\Seen)").ok()
        self.envelopes = self.fetch_all("ENVELOPE BODYSTRUCTURE RFC822.SIZE FLAGS")

    # -- helpers -----------------------------------------------------------

    def fetch_all(self, items: str, client=None) -> dict:
        client = client or self.client
        return fetch_items(client.command(f"UID FETCH 1:* ({items})").ok())

    def reconstruct(self, *args: str, expect_exit: int | None = None) -> dict:
        done = self.server.cli("reconstruct", *args, "--json")
        self.assertIn(done.returncode, (0, 1), done.stderr)
        report = json.loads(done.stdout)
        self.assertIsInstance(report["problems"], int)
        self.assertIsInstance(report["repaired"], int)
        self.assertEqual(done.returncode, 0 if report["problems"] == report["repaired"] else 1)
        if expect_exit is not None:
            self.assertEqual(done.returncode, expect_exit, report)
        return report

    def delete_index(self) -> None:
        """Deletes the user's index database with its WAL files."""
        for suffix in ("", "-wal", "-shm"):
            Path(str(index_path(self.server, self.user)) + suffix).unlink(missing_ok=True)

    def kinds(self, report: dict) -> list[str]:
        return sorted(p["kind"] for p in report["details"])

    def assert_clean_twice(self) -> None:
        """After a repair: a check finds nothing, and a second run changes nothing."""
        self.assertEqual(self.reconstruct("--check", expect_exit=0)["problems"], 0)
        self.assertEqual(self.reconstruct(expect_exit=0)["problems"], 0)

    def assert_serves_truth(self, client=None) -> None:
        client = client or self.client
        got = self.fetch_all("ENVELOPE BODYSTRUCTURE RFC822.SIZE FLAGS", client)
        self.assertEqual(got, self.envelopes)
        bodies = fetch_items(client.command("UID FETCH 1:* (UID BODY.PEEK[])").ok())
        for seq, items in bodies.items():
            self.assertEqual(items["BODY[]"], self.bodies[int(items["UID"])])

    # -- tests -------------------------------------------------------------

    def test_clean_store_has_no_problems_and_a_run_writes_nothing(self) -> None:
        report = self.reconstruct("--check", expect_exit=0)
        self.assertEqual((report["problems"], report["repaired"], report["lost"]), (0, 0, 0))
        self.assertEqual(report["messages"], len(MESSAGES))
        journal = sorted((self.server.data_dir / "journal").iterdir())
        before = [(p.name, p.stat().st_size) for p in journal]
        self.assertEqual(self.reconstruct(expect_exit=0)["problems"], 0)
        after = [(p.name, p.stat().st_size) for p in sorted((self.server.data_dir / "journal").iterdir())]
        self.assertEqual(before, after, "a run with nothing to repair wrote to the journal")
        human = self.server.cli("reconstruct", "--check")
        self.assertEqual(human.returncode, 0, human.stderr)
        self.assertIn("0 problems", human.stdout.decode())

    def test_corrupt_cache_bytes_are_never_served_and_are_repaired(self) -> None:
        with db(self.server, self.user) as conn:
            conn.execute("UPDATE messages SET summary = CAST('{\"subject\":\"EVIL\"}' AS BLOB) WHERE uid = 2")
        report = self.reconstruct("--check", expect_exit=1)
        self.assertEqual(self.kinds(report), ["cache_damaged"])
        self.assertEqual(report["details"][0]["uid"], 2)
        self.assertEqual(self.reconstruct(expect_exit=0)["repaired"], 1)
        self.assert_clean_twice()
        self.assert_serves_truth()

    def test_server_repairs_what_it_finds_while_serving(self) -> None:
        with db(self.server, self.user) as conn:
            conn.execute("UPDATE messages SET summary = CAST('{\"subject\":\"EVIL\"}' AS BLOB) WHERE uid = 2")
        # Served right (re-derived from the blob), and queued for repair.
        self.assert_serves_truth()
        wait_until(
            lambda: "repair_done" in self.server.stderr_text(),
            30,
            "the background repair of the damaged cache entry",
            interval_s=0.1,
        )
        self.assertEqual(self.reconstruct("--check", expect_exit=0)["problems"], 0)
        self.assert_serves_truth()

    def test_swapped_cache_entries_are_caught(self) -> None:
        with db(self.server, self.user) as conn:
            a = conn.execute("SELECT summary, summary_crc FROM messages WHERE uid = 1").fetchone()
            b = conn.execute("SELECT summary, summary_crc FROM messages WHERE uid = 4").fetchone()
            conn.execute("UPDATE messages SET summary = ?, summary_crc = ? WHERE uid = 1", b)
            conn.execute("UPDATE messages SET summary = ?, summary_crc = ? WHERE uid = 4", a)
        report = self.reconstruct(self.user, "INBOX")
        self.assertEqual(report["problems"], report["repaired"])
        self.assertEqual(
            sorted((p["kind"], p["uid"]) for p in report["details"]),
            [("cache_damaged", 1), ("cache_damaged", 4)],
        )
        self.assert_clean_twice()
        self.assert_serves_truth()

    def test_damaged_row_answers_no_for_that_message_alone(self) -> None:
        # A blob reference pointing at another message: the most dangerous damage.
        with db(self.server, self.user) as conn:
            other = conn.execute("SELECT blob FROM messages WHERE uid = 1").fetchone()[0]
            conn.execute("UPDATE messages SET blob = ? WHERE uid = 3", (other,))
        check = self.reconstruct("--check", expect_exit=1)
        self.assertEqual([(p["kind"], p["uid"]) for p in check["details"]], [("row_damaged", 3)])
        done = self.client.command("UID FETCH 1:* (UID BODY.PEEK[])")
        self.assertEqual(done.status, "NO", done.describe())
        self.assertEqual(done.code_name, "UNAVAILABLE")
        served = fetch_items(done)
        uids = sorted(int(items["UID"]) for items in served.values())
        self.assertEqual(uids, [1, 2, 4, 5], "every other message serves")
        for items in served.values():
            self.assertEqual(items["BODY[]"], self.bodies[int(items["UID"])])
        # Flags alone still answer; the connection is fine.
        self.client.command("UID FETCH 3 (FLAGS)").ok()
        # Repaired by this run, or already by the server's own repair it queued.
        self.reconstruct(self.user, expect_exit=0)
        self.assert_clean_twice()
        self.assert_serves_truth()

    def test_wrong_flags_and_missing_rows_come_back_from_the_journal(self) -> None:
        before = self.client.status("INBOX", "HIGHESTMODSEQ")["HIGHESTMODSEQ"]
        with db(self.server, self.user) as conn:
            conn.execute("UPDATE messages SET flags = '\\Deleted' WHERE uid = 2")
            conn.execute("DELETE FROM messages WHERE uid = 5")
            conn.execute("UPDATE mailboxes SET uid_next = 2 WHERE name = 'INBOX'")
        report = self.reconstruct("--check", expect_exit=1)
        self.assertEqual(self.kinds(report), ["flags_wrong", "mailbox_wrong", "message_missing"])
        self.reconstruct(expect_exit=0)
        self.assert_clean_twice()
        fresh = self.server.raw(self.user, self.password)
        self.addCleanup(fresh.close)
        fresh.select("INBOX").ok()
        self.assert_serves_truth(fresh)
        status = fresh.status("INBOX", "UIDNEXT MESSAGES")
        self.assertEqual(status, {"UIDNEXT": 6, "MESSAGES": 5})
        # A client that saw the wrong flags learns the right ones by CONDSTORE:
        # they were restated at a new MODSEQ, never silently.
        changed = fetch_items(fresh.command(f"UID FETCH 1:* (UID FLAGS) (CHANGEDSINCE {before})").ok())
        self.assertEqual([int(i["UID"]) for i in changed.values()], [2])
        self.assertIn("\\Flagged", next(iter(changed.values()))["FLAGS"])

    def test_rows_the_journal_does_not_support_are_dropped(self) -> None:
        with db(self.server, self.user) as conn:
            conn.execute(
                "INSERT INTO messages SELECT mailbox, 99, modseq, flags, internal_date, internal_zone, save_date, size,"
                " blob, email_id, thread_id, summary, summary_crc, row_crc FROM messages WHERE uid = 1"
            )
        report = self.reconstruct(expect_exit=0)
        self.assertIn("message_unsupported", self.kinds(report))
        self.assert_clean_twice()
        self.assert_serves_truth()

    def test_lost_index_is_rebuilt_with_everything(self) -> None:
        self.client.close()
        self.server.stop()
        self.delete_index()
        self.server.start()
        client = self.server.raw(self.user, self.password)
        self.addCleanup(client.close)
        client.select("INBOX").ok()
        self.assert_serves_truth(client)
        self.assert_clean_twice()

    def test_index_deleted_under_a_running_server_is_rebuilt_online(self) -> None:
        self.delete_index()
        # A new login gets a clean NO, never an empty mailbox list. (A session
        # opened before still reads the file it has open: the right data.)
        client = self.server.raw()
        self.addCleanup(client.close)
        login = client.login(self.user, self.password)
        self.assertEqual((login.status, login.code_name), ("NO", "UNAVAILABLE"), login.describe())
        # A delivery meanwhile is either refused for now (the MTA retries) or
        # accepted into the journal, from which the rebuild brings it back.
        late = b"Subject: during the outage\r\nMessage-ID: <late@x>\r\n\r\nlate\r\n"
        replies = self.server.deliver(self.user, late)
        self.assertEqual(len(replies), 1)
        accepted = replies[0][0] == 250
        self.assertTrue(accepted or 400 <= replies[0][0] < 500, replies)
        report = self.reconstruct("--check", expect_exit=1)
        self.assertEqual(self.kinds(report), ["index_missing"])
        report = self.reconstruct(expect_exit=0)
        self.assertIn("index_missing", self.kinds(report))
        self.assert_clean_twice()
        fresh = self.server.raw(self.user, self.password)
        self.addCleanup(fresh.close)
        fresh.select("INBOX").ok()
        got = fetch_items(fresh.command("UID FETCH 1:* (UID BODY.PEEK[])").ok())
        bodies = {int(i["UID"]): i["BODY[]"] for i in got.values()}
        for uid, raw in self.bodies.items():
            self.assertEqual(bodies[uid], raw)
        if accepted:
            self.assertEqual(len(bodies), 6)
            self.assertTrue(bodies[6].endswith(late))
        uid_next = fresh.status("INBOX", "UIDNEXT")["UIDNEXT"]
        self.assertEqual(uid_next, 7 if accepted else 6)
        self.server.deliver_ok(self.user, data_file("plain.eml"))
        self.assertEqual(fresh.status("INBOX", "UIDNEXT")["UIDNEXT"], uid_next + 1, "no UID given twice")

    def test_garbage_index_file_is_recreated_online(self) -> None:
        path = index_path(self.server, self.user)
        for suffix in ("-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        path.write_bytes(b"this is not a database" * 1000)
        report = self.reconstruct(expect_exit=0)
        self.assertIn("index_missing", self.kinds(report))
        self.assertTrue(any(p.name.startswith("index.sqlite.damaged-") for p in path.parent.iterdir()))
        self.assert_clean_twice()
        fresh = self.server.raw(self.user, self.password)
        self.addCleanup(fresh.close)
        fresh.select("INBOX").ok()
        self.assert_serves_truth(fresh)

    def test_lost_blob_is_a_clean_no_and_reported_as_lost(self) -> None:
        # Overwrite message 4's bytes in its pack, behind the server's back.
        raw = self.bodies[4]
        packs = sorted((self.server.data_dir / "blobs").iterdir())
        for pack in packs:
            data = pack.read_bytes()
            at = data.find(raw)
            if at >= 0:
                with open(pack, "r+b") as f:
                    f.seek(at + len(raw) // 2)
                    f.write(b"X")
                break
        else:
            self.fail("message bytes not found in any pack")
        done = self.client.command("UID FETCH 1:* (UID BODY.PEEK[])")
        self.assertEqual(done.status, "NO", done.describe())
        served = fetch_items(done)
        self.assertEqual(sorted(int(i["UID"]) for i in served.values()), [1, 2, 3, 5])
        report = self.reconstruct(expect_exit=1)
        self.assertEqual(report["lost"], 1)
        lost = [p for p in report["details"] if p["kind"] == "blob_lost"]
        self.assertEqual([(p["mailbox"], p["uid"]) for p in lost], [("INBOX", 4)])
        # Still listed: never silently removed.
        self.assertEqual(self.client.status("INBOX", "MESSAGES")["MESSAGES"], 5)
        # A second run reports the same loss and changes nothing.
        again = self.reconstruct(expect_exit=1)
        self.assertEqual((again["problems"], again["repaired"], again["lost"]), (1, 0, 1))

    def test_damaged_journal_entry_is_found_and_restored_from_the_packs(self) -> None:
        segments = sorted((self.server.data_dir / "journal").glob("*.log"))
        self.assertGreater(len(segments), 1, "the test needs a finished segment")
        target = None
        for segment in segments[:-1]:
            data = segment.read_bytes()
            pos = 8
            while pos + 8 <= len(data):
                length, crc = struct.unpack_from("<II", data, pos)
                payload = data[pos + 8 : pos + 8 + length]
                if b'"type":"message_added"' in payload:
                    target = (segment, pos + 8 + length // 2)
                    break
                pos += 8 + length
            if target:
                break
        self.assertIsNotNone(target, "no message record in a finished segment")
        segment, at = target
        with open(segment, "r+b") as f:
            f.seek(at)
            byte = f.read(1)
            f.seek(at)
            f.write(bytes([byte[0] ^ 0x55]))
        # Serving is unaffected: the indexes hold the record's effects.
        self.assert_serves_truth()
        check = self.reconstruct("--check", expect_exit=1)
        self.assertEqual(self.kinds(check), ["journal_damaged", "journal_records_recovered"])
        self.assertIn(segment.name, next(p for p in check["details"] if p["kind"] == "journal_damaged")["detail"])
        repair = self.reconstruct()
        self.assertTrue(any(p["kind"] == "journal_damaged" and p["repaired"] for p in repair["details"]), repair)
        self.assert_clean_twice()
        # The journal is whole again: a full rebuild from it gives every message.
        self.client.close()
        self.server.stop()
        self.delete_index()
        self.server.start()
        client = self.server.raw(self.user, self.password)
        self.addCleanup(client.close)
        client.select("INBOX").ok()
        self.assert_serves_truth(client)

    def find_frame(self, record_type: str) -> tuple[Path, int]:
        """A byte inside the payload of the first frame of that type in a finished segment."""
        segments = sorted((self.server.data_dir / "journal").glob("*.log"))
        self.assertGreater(len(segments), 1, "the test needs a finished segment")
        for segment in segments[:-1]:
            data = segment.read_bytes()
            pos = 8
            while pos + 8 <= len(data):
                length, _crc = struct.unpack_from("<II", data, pos)
                payload = data[pos + 8 : pos + 8 + length]
                if f'"type":"{record_type}"'.encode() in payload:
                    return segment, pos + 8 + length // 2
                pos += 8 + length
        self.fail(f"no {record_type} record in a finished segment")

    def flip(self, path: Path, at: int) -> None:
        with open(path, "r+b") as f:
            f.seek(at)
            byte = f.read(1)
            f.seek(at)
            f.write(bytes([byte[0] ^ 0x55]))

    def test_damaged_journal_is_restored_at_start_when_a_rebuild_needs_it(self) -> None:
        self.client.close()
        self.server.stop()
        segment, at = self.find_frame("message_added")
        self.flip(segment, at)
        self.delete_index()
        self.server.start()
        self.assertIn("journal_segment_restored", self.server.stderr_text())
        client = self.server.raw(self.user, self.password)
        self.addCleanup(client.close)
        client.select("INBOX").ok()
        self.assert_serves_truth(client)
        self.assert_clean_twice()

    def test_journal_damage_without_a_copy_stops_the_start_with_its_position(self) -> None:
        # Flag changes write no blob, so no pack holds a copy of their record.
        # Enough of them to fill a segment (4 KB here) and start the next.
        for n in range(60):
            op = "+" if n % 2 == 0 else "-"
            self.client.command(f"UID STORE {n % 5 + 1} {op}FLAGS (\\Answered)").ok()
        self.client.command("NOOP").ok()
        self.client.close()
        self.server.stop()
        segment, at = self.find_frame("flags_changed")
        self.flip(segment, at)
        check = self.server.cli("reconstruct", "--check", "--json")
        # Without a server, the CLI opens the store itself: recovery only reads
        # from the oldest index's LSN, so the damage is found by reconstruct.
        report = json.loads(check.stdout)
        self.assertEqual(check.returncode, 1, report)
        kinds = sorted(p["kind"] for p in report["details"])
        self.assertEqual(kinds, ["journal_damaged", "journal_records_lost"])
        # A rebuild that needs the lost record refuses to guess.
        self.delete_index()
        with self.assertRaises(Exception):
            self.server.start()
        self.assertIn(segment.name, self.server.stderr_text())

    def test_bad_arguments(self) -> None:
        done = self.server.cli("reconstruct", "nosuchuser", "--check")
        self.assertEqual(done.returncode, 67, done.stderr)
        self.assertIn("nosuchuser", done.stderr.decode())
        done = self.server.cli("reconstruct", "--bogus")
        self.assertNotEqual(done.returncode, 0)


if __name__ == "__main__":
    unittest.main()
