"""SMS from the operator's side: `postern sms send` validates and queues into
the durable outbox, `postern sms list` shows it; bad numbers, texts and
configs get clear errors and queue nothing. The running server sends to an
SMSC: here the independent Perl one in tests/smsc (Debian's Net::SMPP, text
decoded by Perl's Encode), which records every submit_sm; new-mail alerts go
the same way."""

import json
import subprocess
import tempfile
import unittest
from pathlib import Path

from harness import Server, simple_message, wait_until

EX_DATAERR = 65

SMS_SECTION = """
[sms]
smsc = "127.0.0.1:9"
system_id = "postern"
password = "secret"
default_country = "41"
segments_max = 2
"""


def text_of(completed) -> str:
    return completed.stdout.decode("utf-8", "replace") + completed.stderr.decode("utf-8", "replace")


class SmsCliTest(unittest.TestCase):
    """Against the store directly (no server running) and through a running server."""

    def setUp(self) -> None:
        self.server = Server(extra_toml=SMS_SECTION)
        self.addCleanup(self.server.cleanup)

    def listing(self) -> list[dict]:
        completed = self.server.cli("sms", "list", "--json")
        self.assertEqual(completed.returncode, 0, text_of(completed))
        return json.loads(completed.stdout)

    def check_send_and_list(self) -> None:
        sent = self.server.cli("sms", "send", "+41 79 123 45 67", input="Grüße aus Zürich €\n")
        self.assertEqual(sent.returncode, 0, text_of(sent))
        self.assertRegex(sent.stdout.decode(), r"^queued SMS \d+ to \+41791234567 \(1 segment, GSM-7\)\n$")
        # National number: the configured country code; UCS-2 text over one segment.
        greek = "Καλημέρα κόσμε, ένα μήνυμα που χρειάζεται δύο τμήματα για να σταλεί ολόκληρο."
        sent = self.server.cli("sms", "send", "079 765 43 21", input=greek)
        self.assertEqual(sent.returncode, 0, text_of(sent))
        self.assertIn("to +41797654321 (2 segments, UCS-2)", sent.stdout.decode())
        listing = self.listing()
        self.assertEqual([(s["to"], s["state"]) for s in listing],
                         [("+41797654321", "queued"), ("+41791234567", "queued")])
        self.assertEqual(listing[0]["text"], greek)
        self.assertEqual(listing[1]["text"], "Grüße aus Zürich €", "one line end from stdin is dropped")
        table = self.server.cli("sms", "list")
        self.assertEqual(table.returncode, 0, text_of(table))
        lines = table.stdout.decode().splitlines()
        self.assertEqual(len(lines), 2)
        self.assertIn("\tqueued\t+41797654321\t", lines[0])
        self.assertNotIn("Καλημέρα", table.stdout.decode(), "the table does not show the text")

    def test_send_and_list_without_a_running_server(self):
        self.check_send_and_list()

    def test_send_and_list_through_the_running_server(self):
        self.server.start()
        try:
            self.check_send_and_list()
        finally:
            self.server.stop()
        # Durable: still there after the server stopped.
        self.assertEqual(len(self.listing()), 2)

    def test_bad_input_is_refused_and_queues_nothing(self):
        cases = [
            (("sms", "send", "+41 79 12a 45 67"), "hello", "contains 'a'"),
            (("sms", "send", "+41 79"), "hello", "too few"),
            (("sms", "send", "+41 79 123 45 67 89 01 23"), "hello", "at most 15"),
            (("sms", "send", "+41791234567"), "", "empty"),
            (("sms", "send", "+41791234567"), "x" * 307, "segment"),
            (("sms", "send", "+41791234567"), b"\xff\xfe not utf-8", "UTF-8"),
            (("sms", "send", "+41791234567"), "é" * 2500, "longer than 4096 bytes"),
        ]
        for args, text, expected in cases:
            with self.subTest(args=args, expected=expected):
                completed = self.server.cli(*args, input=text)
                self.assertEqual(completed.returncode, EX_DATAERR, text_of(completed))
                self.assertIn(expected.lower(), text_of(completed).lower())
                self.assertNotIn("panicked", text_of(completed))
        self.assertEqual(self.listing(), [])

    def test_bad_alert_settings_are_refused(self):
        self.server.add_user("bob", "bob-password")
        for args, expected in [
            (("--quiet", "25:00-07:00"), "--quiet"),
            (("--quiet", "22:00"), "--quiet"),
            (("--quiet", "22:00-22:00"), "quiet hours"),
            (("--zone", "5"), "--zone"),
            (("--per-hour", "0"), "1 to 3600"),
            (("--from", ""), "patterns"),
        ]:
            with self.subTest(args=args):
                completed = self.server.cli("sms", "alert", "bob", "+41791234567", *args)
                self.assertNotEqual(completed.returncode, 0, text_of(completed))
                self.assertIn(expected, text_of(completed))
                self.assertNotIn("panicked", text_of(completed))
        completed = self.server.cli("sms", "alert", "nobody", "+41791234567")
        self.assertEqual(completed.returncode, 67, text_of(completed))
        self.assertIn("no SMS alert", self.server.cli("sms", "alert", "bob").stdout.decode())

    def test_national_number_without_a_default_country_is_refused(self):
        server = Server(extra_toml=SMS_SECTION.replace('default_country = "41"\n', ""))
        self.addCleanup(server.cleanup)
        completed = server.cli("sms", "send", "079 123 45 67", input="hi")
        self.assertEqual(completed.returncode, EX_DATAERR, text_of(completed))
        self.assertIn("country", text_of(completed).lower())


class SmsWithoutSectionTest(unittest.TestCase):
    def test_send_needs_the_sms_section(self):
        server = Server()
        self.addCleanup(server.cleanup)
        completed = server.cli("sms", "send", "+41791234567", input="hi")
        self.assertEqual(completed.returncode, EX_DATAERR, text_of(completed))
        self.assertIn("[sms]", text_of(completed))


class SmsConfigTest(unittest.TestCase):
    def test_a_bad_sms_key_names_the_key_and_the_server_does_not_start(self):
        server = Server(extra_toml=SMS_SECTION.replace('password = "secret"', 'password = "far-too-long"'))
        self.addCleanup(server.cleanup)
        completed = server.cli("config", "check")
        self.assertNotEqual(completed.returncode, 0)
        self.assertIn("password", text_of(completed))

    def test_config_check_never_prints_the_password(self):
        server = Server(extra_toml=SMS_SECTION)
        self.addCleanup(server.cleanup)
        completed = server.cli("config", "check")
        self.assertEqual(completed.returncode, 0, text_of(completed))
        self.assertNotIn("secret", text_of(completed))
        self.assertIn("system_id", text_of(completed))


REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Smsc:
    """tests/smsc/smsc.pl on a free loopback port, recording into a file."""

    def __init__(self, *extra: str, listen: str = "127.0.0.1:0") -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="postern-smsc-")
        self.record = Path(self.dir.name) / "record.jsonl"
        self.process = subprocess.Popen(
            ["perl", str(REPO / "tests/smsc/smsc.pl"), "--listen", listen,
             "--system-id", "postern", "--password", "secret", "--record", str(self.record), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        line = self.process.stdout.readline()
        if not line.startswith("smsc: listening "):
            self.process.kill()
            raise AssertionError(f"the test SMSC did not start: {line!r} {self.process.stderr.read()}")
        self.address = line.split()[2]

    def events(self, kind: str) -> list[dict]:
        if not self.record.exists():
            return []
        out = []
        for line in self.record.read_text(encoding="utf-8").splitlines():
            if line.strip():
                event = json.loads(line)
                if event.get("event") == kind:
                    out.append(event)
        return out

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.process.stdout.close()
        self.process.stderr.close()
        self.dir.cleanup()


class SmsThroughAnSmscTest(unittest.TestCase):
    """The real binary sends its outbox to the independent SMSC."""

    def setUp(self) -> None:
        self.smsc = Smsc()
        self.addCleanup(self.smsc.close)
        section = SMS_SECTION.replace('"127.0.0.1:9"', f'"{self.smsc.address}"').replace(
            "segments_max = 2", "segments_max = 4")
        self.server = Server(extra_toml=section)
        self.addCleanup(self.server.cleanup)
        self.server.start()
        self.addCleanup(self.server.stop)

    def messages_to(self, number: str) -> list[str]:
        return [m["text"] for m in self.smsc.events("message") if m["destination"].lstrip("+") == number]

    def test_texts_in_many_scripts_arrive_exactly(self):
        texts = {
            "41790000001": "Plain English, @ and £ and € and {braces}",
            "41790000002": "Grüße, ça va? ¿Qué tal? Ελληνικά, Привет, مرحبا, שלום, नमस्ते, 你好, こんにちは, 안녕, สวัสดี, Türkçe 😀👍🏽",
            "41790000003": "x" * 153 + "€" + "y" * 10,
        }
        for number, text in texts.items():
            sent = self.server.cli("sms", "send", "+" + number, input=text)
            self.assertEqual(sent.returncode, 0, text_of(sent))
        for number, text in texts.items():
            got = wait_until(lambda: self.messages_to(number), 30, f"the SMSC to receive the SMS to {number}")
            self.assertEqual(got, [text])
        wait_until(lambda: all(s["state"] == "sent" and s["smsc_ids"]
                               for s in json.loads(self.server.cli("sms", "list", "--json").stdout)),
                   30, "every SMS marked sent with its SMSC ids")

    def test_a_new_mail_alert_reaches_the_phone(self):
        self.server.add_user("alice", "alice-password")
        set_alert = self.server.cli("sms", "alert", "alice", "+41 79 555 00 11", "--from", "boss@")
        self.assertEqual(set_alert.returncode, 0, text_of(set_alert))
        # Not from the boss: no alert.
        self.server.deliver_ok(["alice"], simple_message(subject="newsletter", sender="news@example.org"))
        self.server.deliver_ok(["alice"], simple_message(subject="Budget für 2027", sender="boss@example.com"))
        got = wait_until(lambda: self.messages_to("41795550011"), 30, "the alert SMS")
        self.assertEqual(len(got), 1, got)
        self.assertTrue(got[0].startswith("New mail from "), got)
        self.assertTrue(got[0].endswith(": Budget für 2027"), got)
        # `postern deliver` (the LDA path) raises alerts too.
        delivered = self.server.cli("deliver", "alice",
                                    input=simple_message(subject="via the LDA", sender="boss@example.com"))
        self.assertEqual(delivered.returncode, 0, text_of(delivered))
        got = wait_until(lambda: len(self.messages_to("41795550011")) >= 2 and self.messages_to("41795550011"),
                         30, "the alert of the LDA delivery")
        self.assertTrue(got[1].endswith(": via the LDA"), got)
        removed = self.server.cli("sms", "alert", "alice", "--off")
        self.assertEqual(removed.returncode, 0, text_of(removed))
        shown = self.server.cli("sms", "alert", "alice")
        self.assertIn("no SMS alert", shown.stdout.decode())

    def test_a_permanent_smsc_error_fails_the_sms_with_its_reason(self):
        self.smsc.close()
        self.smsc = Smsc("--fail", "41790000009=0x0B")
        self.addCleanup(self.smsc.close)
        section = SMS_SECTION.replace('"127.0.0.1:9"', f'"{self.smsc.address}"')
        self.server.stop()
        server = Server(extra_toml=section)
        self.addCleanup(server.cleanup)
        server.start()
        self.addCleanup(server.stop)
        sent = server.cli("sms", "send", "+41790000009", input="to a bad number")
        self.assertEqual(sent.returncode, 0, text_of(sent))
        failed = wait_until(
            lambda: [s for s in json.loads(server.cli("sms", "list", "--json").stdout) if s["state"] == "failed"],
            30, "the SMS to fail")
        self.assertIn("0000000b", failed[0]["reason"].lower())


class SmsOutboxDurabilityTest(unittest.TestCase):
    def test_queued_while_the_smsc_is_down_sent_after_a_restart(self):
        port = free_port()
        section = SMS_SECTION.replace('"127.0.0.1:9"', f'"127.0.0.1:{port}"')
        server = Server(extra_toml=section)
        self.addCleanup(server.cleanup)
        server.start()
        text = "Wartung heute Nacht, 22:00–23:00 Uhr."
        sent = server.cli("sms", "send", "+41790000042", input=text)
        self.assertEqual(sent.returncode, 0, text_of(sent))
        server.stop()  # the SMSC was never reachable: still queued, on disk
        listing = json.loads(server.cli("sms", "list", "--json").stdout)
        self.assertEqual([s["state"] for s in listing], ["queued"])
        smsc = Smsc(listen=f"127.0.0.1:{port}")
        self.addCleanup(smsc.close)
        server.start()
        self.addCleanup(server.stop)
        got = wait_until(
            lambda: [m["text"] for m in smsc.events("message") if m["destination"].lstrip("+") == "41790000042"],
            60, "the SMS queued before the restart")
        self.assertEqual(got, [text])


if __name__ == "__main__":
    unittest.main()
