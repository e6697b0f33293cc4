"""METADATA and METADATA-SERVER (RFC 5464) against the real binary: set, get,
remove, DEPTH, MAXSIZE with LONGENTRIES, bad entry names, the size and count
limits, RENAME and DELETE, a restart, `postern reconstruct` (also of a lost
index), users kept apart, and the administrator's server annotations."""

from __future__ import annotations

import json
import unittest

from harness import Lit, Server, ServerTestCase, embedded_only


def metadata(result) -> dict[str, bytes | None]:
    """The entries of the untagged METADATA responses of a command."""
    out: dict[str, bytes | None] = {}
    for tokens in result.data("METADATA"):
        values = tokens[1]
        for name, value in zip(values[0::2], values[1::2]):
            out[name.decode() if isinstance(name, bytes) else name] = value
    return out


def b(value) -> bytes | None:
    if value is None:
        return None
    return value if isinstance(value, bytes) else str(value).encode()


class MetadataTest(ServerTestCase):
    server_options = {
        "extra_toml": "\n[reconstruct]\nauto_repair = false\n",
        "imap": {"metadata_max_value_bytes": 100, "metadata_max_entries": 8},
    }

    def setUp(self) -> None:
        self.user, self.password = self.new_user("meta")
        self.client = self.raw(self.user, self.password)

    def get(self, mailbox: str, *entries: str, options: str = "") -> tuple[dict, object]:
        args = f"({options}) " if options else ""
        listed = "(" + " ".join(entries) + ")"
        result = self.client.command(f'GETMETADATA {args}"{mailbox}" {listed}').ok()
        return {k: b(v) for k, v in metadata(result).items()}, result

    def test_capabilities(self):
        caps = self.client.command("CAPABILITY").ok().data("CAPABILITY")[0]
        names = {c.decode() if isinstance(c, bytes) else c for c in caps}
        self.assertIn("METADATA", names)
        self.assertIn("METADATA-SERVER", names)

    def test_set_get_remove_and_binary(self):
        c = self.client
        c.command('SETMETADATA INBOX (/private/comment "mine" /Shared/Comment "ours")').ok()
        got, _ = self.get("INBOX", "/private/comment", "/shared/comment", "/private/missing")
        self.assertEqual(got, {"/private/comment": b"mine", "/shared/comment": b"ours",
                               "/private/missing": None})
        c.command("SETMETADATA INBOX (/private/comment NIL)").ok()
        got, _ = self.get("INBOX", "/private/comment")
        self.assertEqual(got, {"/private/comment": None})
        # A literal8 value with NUL is kept byte for byte.
        c.command("SETMETADATA INBOX (/private/bin ", Lit(b"a\x00b\r\nc", binary=True), ")").ok()
        got, _ = self.get("INBOX", "/private/bin")
        self.assertEqual(got, {"/private/bin": b"a\x00b\r\nc"})

    def test_depth_and_maxsize(self):
        c = self.client
        c.command('SETMETADATA Sent (/private/a "1" /private/a/b "22" /private/a/b/c "333")').ok()
        got, _ = self.get("Sent", "/private/a")
        self.assertEqual(list(got), ["/private/a"])
        got, _ = self.get("Sent", "/private/a", options="DEPTH 1")
        self.assertEqual(list(got), ["/private/a", "/private/a/b"])
        got, _ = self.get("Sent", "/private/a", options="DEPTH infinity")
        self.assertEqual(list(got), ["/private/a", "/private/a/b", "/private/a/b/c"])
        got, result = self.get("Sent", "/private/a", options="MAXSIZE 2 DEPTH infinity")
        self.assertEqual(got, {"/private/a": b"1", "/private/a/b": b"22"})
        self.assertEqual(result.code, "METADATA LONGENTRIES 3")

    def test_bad_input_gets_a_clear_answer_and_nothing_is_lost(self):
        c = self.client
        c.command('SETMETADATA INBOX (/private/keep "kept")').ok()
        for bad in ["/comment", "/private/", "/private//x", '"/private/a*"', "/privatex/a",
                    '"/private/a b"', "/private"]:
            result = c.command(f'SETMETADATA INBOX ({bad} "x")')
            self.assertEqual(result.status, "BAD", result.describe())
        result = c.command('SETMETADATA INBOX (/private/keep "new" /private/big "%s")' % ("v" * 101))
        self.assertEqual(result.status, "NO", result.describe())
        self.assertEqual(result.code, "METADATA MAXSIZE 100")
        result = c.command('SETMETADATA Nowhere (/private/a "x")')
        self.assertEqual(result.code_name, "NONEXISTENT")
        got, _ = self.get("INBOX", "/private/keep", "/private/big")
        self.assertEqual(got, {"/private/keep": b"kept", "/private/big": None})
        # Eight entries per user: the ninth is refused, replacing still works.
        many = " ".join(f'/private/n{i} "{i}"' for i in range(7))
        c.command(f"SETMETADATA Drafts ({many})").ok()
        result = c.command('SETMETADATA Trash (/private/one "too many")')
        self.assertEqual(result.status, "NO", result.describe())
        self.assertEqual(result.code, "METADATA TOOMANY")
        c.command('SETMETADATA Drafts (/private/n0 "zero" /private/n1 NIL)').ok()
        c.command('SETMETADATA Trash (/private/one "fits now")').ok()

    def test_rename_keeps_delete_drops(self):
        c = self.client
        c.command("CREATE Projects").ok()
        c.command('SETMETADATA Projects (/shared/color "red")').ok()
        c.command("RENAME Projects Work").ok()
        got, _ = self.get("Work", "/shared/color")
        self.assertEqual(got, {"/shared/color": b"red"})
        c.command("DELETE Work").ok()
        result = c.command('GETMETADATA Work /shared/color')
        self.assertEqual(result.code_name, "NONEXISTENT")
        c.command("CREATE Work").ok()
        got, _ = self.get("Work", "/shared/color")
        self.assertEqual(got, {"/shared/color": None})

    def test_other_users_see_none_of_mine(self):
        self.client.command('SETMETADATA INBOX (/private/secret "mine" /shared/note "mine too")').ok()
        self.client.command('SETMETADATA "" (/private/theme "dark")').ok()
        other_user, other_password = self.new_user("meta-other")
        other = self.raw(other_user, other_password)
        result = other.command('GETMETADATA (DEPTH infinity) INBOX (/private /shared)').ok()
        self.assertEqual({k: b(v) for k, v in metadata(result).items()},
                         {"/private": None, "/shared": None})
        result = other.command('GETMETADATA (DEPTH infinity) "" /private').ok()
        self.assertEqual({k: b(v) for k, v in metadata(result).items()}, {"/private": None})

    def test_server_annotations_are_the_administrators(self):
        self.server.cli_ok("metadata", "set", "/shared/admin", "mailto:postmaster@example.org")
        got, _ = self.get("", "/shared/admin")
        self.assertEqual(got, {"/shared/admin": b"mailto:postmaster@example.org"})
        result = self.client.command('SETMETADATA "" (/shared/admin "mine")')
        self.assertEqual(result.status, "NO", result.describe())
        self.assertEqual(result.code_name, "NOPERM")
        listed = self.server.cli_ok("metadata", "get").stdout.decode()
        self.assertIn("/shared/admin\tmailto:postmaster@example.org", listed)
        bad = self.server.cli("metadata", "set", "/private/x", "y")
        self.assertNotEqual(bad.returncode, 0)
        self.assertIn("/private", bad.stderr.decode())
        self.server.cli_ok("metadata", "set", "/shared/admin", "--remove")
        got, _ = self.get("", "/shared/admin")
        self.assertEqual(got, {"/shared/admin": None})


class MetadataDurabilityTest(unittest.TestCase):
    """Annotations come back after a restart, from the journal when every
    derived file is lost, and through `postern reconstruct`."""

    def setUp(self) -> None:
        self.server = Server(extra_toml="\n[reconstruct]\nauto_repair = false\n")
        self.server.start()
        self.addCleanup(self.server.cleanup)
        self.user, self.password = self.server.new_user("dur")

    def annotations(self) -> dict:
        with self.server.raw(self.user, self.password) as c:
            out = {}
            for mailbox in ["INBOX", "Archive", ""]:
                result = c.command(f'GETMETADATA (DEPTH infinity) "{mailbox}" (/private /shared)').ok()
                for k, v in metadata(result).items():
                    if v is not None:
                        out[(mailbox, k)] = b(v)
            return out

    @embedded_only("reconstruct is not built on PostgreSQL yet")
    def test_restart_rebuild_and_reconstruct_keep_them(self):
        with self.server.raw(self.user, self.password) as c:
            c.command('SETMETADATA INBOX (/private/a "1" /shared/b "2")').ok()
            c.command('SETMETADATA Archive (/private/c ', Lit(b"\x00\xff", binary=True), ")").ok()
            c.command('SETMETADATA "" (/private/d "4")').ok()
        self.server.cli_ok("metadata", "set", "/shared/e", "5")
        expected = {("INBOX", "/private/a"): b"1", ("INBOX", "/shared/b"): b"2",
                    ("Archive", "/private/c"): b"\x00\xff", ("", "/private/d"): b"4",
                    ("", "/shared/e"): b"5"}
        self.assertEqual(self.annotations(), expected)
        self.server.restart()
        self.assertEqual(self.annotations(), expected)
        # A clean store: reconstruct finds nothing.
        report = json.loads(self.server.cli_ok("reconstruct", self.user, "--json").stdout)
        self.assertEqual(report["problems"], 0, report)
        # The user's index deleted while the server runs: reconstruct rebuilds it.
        index = self.server.data_dir / "users" / self.user / "index.sqlite"
        for suffix in ["", "-wal", "-shm"]:
            path = index.with_name(index.name + suffix)
            if path.exists():
                path.unlink()
        report = json.loads(self.server.cli_ok("reconstruct", self.user, "--json").stdout)
        self.assertGreater(report["repaired"], 0, report)
        self.assertEqual(self.annotations(), expected)
        # Every derived file lost: the next start replays the journal.
        self.server.stop()
        (self.server.data_dir / "server.sqlite").unlink()
        for path in (self.server.data_dir / "users").glob("*/index.sqlite*"):
            path.unlink()
        self.server.start()
        self.assertEqual(self.annotations(), expected)


if __name__ == "__main__":
    unittest.main()
