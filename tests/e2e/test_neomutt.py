"""Interop with a real terminal client: NeoMutt, driven in tmux (issue 4,
item 6). It logs in over IMAP, lists INBOX, opens a message and shows its
body, and saves it to a new folder; the server must then hold an exact copy
in that folder, and the opened message must be \\Seen.

NeoMutt and tmux are external programs (Debian packages `neomutt` and
`tmux`); without them the test fails and says how to install them. The test
reads the screen with `tmux capture-pane` and waits, with a bound, for what a
person would wait for: the index to show the subjects, the pager to show the
body, the prompt to appear."""

import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest
from pathlib import Path

from harness import ServerTestCase, simple_message, unique_marker

NEOMUTT = shutil.which("neomutt")
TMUX = shutil.which("tmux")
INSTALL_HINT = "neomutt or tmux is missing: install them with `apt-get install -y neomutt tmux`"
SCREEN_WAIT_S = 30.0


class Terminal:
    """One tmux session on a private socket, running a command in a
    200x50 window."""

    def __init__(self, command: list[str], env: dict[str, str], cwd: Path) -> None:
        self.socket = f"postern-neomutt-{os.getpid()}-{time.monotonic_ns()}"
        self.env = env
        subprocess.run(
            [TMUX, "-L", self.socket, "-f", "/dev/null", "new-session", "-d", "-s", "t",
             "-x", "200", "-y", "50", "--", *command],
            check=True, env=env, cwd=cwd, timeout=30,
        )

    def tmux(self, *args: str) -> str:
        return subprocess.run([TMUX, "-L", self.socket, *args], check=True, capture_output=True,
                              env=self.env, timeout=30).stdout.decode("utf-8", "replace")

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "t")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "t", *keys)

    def wait_for(self, text: str, what: str) -> str:
        """Polls the screen (what a person does: look at it) until `text`
        shows, within SCREEN_WAIT_S."""
        return self.wait_for_match(re.escape(text), what)

    def wait_for_match(self, pattern: str, what: str) -> str:
        """As wait_for, for a regular expression."""
        text = pattern
        deadline = time.monotonic() + SCREEN_WAIT_S
        while True:
            screen = self.screen()
            if re.search(pattern, screen):
                return screen
            if time.monotonic() >= deadline:
                raise AssertionError(f"{what}: {text!r} not on the screen within {SCREEN_WAIT_S}s:\n{screen}")
            time.sleep(0.1)

    def alive(self) -> bool:
        return subprocess.run([TMUX, "-L", self.socket, "has-session", "-t", "t"],
                              capture_output=True, env=self.env, timeout=30).returncode == 0

    def kill(self) -> None:
        subprocess.run([TMUX, "-L", self.socket, "kill-server"], capture_output=True, env=self.env,
                       timeout=30)


class NeomuttTest(ServerTestCase):

    def setUp(self) -> None:
        self.assertIsNotNone(NEOMUTT, INSTALL_HINT)
        self.assertIsNotNone(TMUX, INSTALL_HINT)

    def test_read_a_message_and_save_it_to_a_new_folder(self):
        user, password = self.new_user("mutt")
        marker = unique_marker("neomutt")
        subjects = [f"{marker} first", f"{marker} second", f"{marker} third"]
        bodies = [f"Body of message {n}, {marker}.\r\nSecond line {n}.\r\n" for n in range(3)]
        for subject, body in zip(subjects, bodies):
            self.server.deliver_ok(f"{user}@example.com", simple_message(subject=subject, body=body))

        home = Path(tempfile.mkdtemp(prefix="postern-neomutt-"))
        self.addCleanup(shutil.rmtree, home, True)
        muttrc = home / "muttrc"
        # Plain IMAP with LOGIN on loopback (`[auth] plaintext = "loopback"`),
        # no caches, no prompts that would wait for a key the test does not send.
        muttrc.write_text("\n".join([
            f'set folder = "imap://{user}@127.0.0.1:{self.server.imap_port}/"',
            'set spoolfile = "+INBOX"',
            f'set imap_pass = "{password}"',
            "set ssl_starttls = no",
            "set ssl_force_tls = no",
            "set imap_idle = no",
            'set header_cache = ""',
            'set message_cachedir = ""',
            'set record = ""',
            "set sort = date-sent",
            "set confirmcreate = no",
            "set confirmappend = no",
            "set delete = no",
            "set move = no",
            "set quit = yes",
            "set wait_key = no",
            "set mark_old = no",
            "set pager_stop = yes",
            'set index_format = "%4C %Z %s"',
            "",
        ]), encoding="utf-8")
        env = {"HOME": str(home), "TERM": "xterm-256color", "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "LANG": "C.UTF-8"}
        terminal = Terminal([NEOMUTT, "-n", "-F", str(muttrc)], env, home)
        self.addCleanup(terminal.kill)

        # The index lists the three messages.
        for subject in subjects:
            terminal.wait_for(subject, "the INBOX index")

        # Open the second message: search for its subject, then the pager.
        terminal.keys("/", f"{marker} second", "Enter")
        terminal.keys("Enter")
        terminal.wait_for("Second line 1.", "the pager showing the second message's body")
        terminal.keys("i")  # back to the index
        terminal.wait_for(f"{marker} first", "the index again")

        # Save it to a folder that does not exist yet.
        terminal.keys("s")
        terminal.wait_for("Save to mailbox", "the save prompt")
        terminal.keys("C-u", "=Saved", "Enter")
        # A saved message is marked for deletion in the index (flag D).
        terminal.wait_for_match(rf"\bD\s+{re.escape(marker)} second", "the saved message marked D")

        # Quit; NeoMutt writes its flag changes as it leaves.
        terminal.keys("q")
        deadline = time.monotonic() + SCREEN_WAIT_S
        while terminal.alive():
            if time.monotonic() >= deadline:
                self.fail(f"neomutt did not quit within {SCREEN_WAIT_S}s")
            time.sleep(0.1)

        with self.server.imap(user, password) as client:
            typ, data = client.select('"INBOX"', readonly=True)
            self.assertEqual(typ, "OK", data)
            typ, found = client.search(None, "SUBJECT", f'"{marker} second"')
            self.assertEqual(typ, "OK")
            [number] = found[0].split()
            typ, fetched = client.fetch(number, "(FLAGS BODY.PEEK[])")
            self.assertEqual(typ, "OK")
            original = fetched[0][1]
            self.assertIn(b"\\Seen", fetched[0][0], "the message read in the pager is \\Seen")

            typ, data = client.select('"Saved"', readonly=True)
            self.assertEqual(typ, "OK", f"NeoMutt created the folder Saved: {data}")
            self.assertEqual(data, [b"1"], "one message in Saved")
            typ, fetched = client.fetch("1", "(BODY.PEEK[])")
            self.assertEqual(typ, "OK")
            self.assertEqual(fetched[0][1], original, "Saved holds an exact copy")
            self.assertIn(bodies[1].encode(), fetched[0][1])


if __name__ == "__main__":
    unittest.main()
