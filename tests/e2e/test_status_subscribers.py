"""Status-page subscribers end to end, with a real SMTP sink (aiosmtpd) as the
relay: subscribe with the form, confirm by the mailed link, one notice per
post to each active subscriber with RFC 8058 one-click unsubscribe, retries
while the relay is down, exactly one send across a restart, SMS subscribers
through the SMS outbox, and clean 400/404 pages for bad input."""

import email
import email.policy
import json
import re
import socket
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

from aiosmtpd.controller import Controller

from harness import Server, wait_until

SITE = "Postern"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sink:
    """An SMTP relay that keeps every message it accepts."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []
        self.lock = threading.Lock()
        self.controller: Controller | None = None

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append((list(envelope.rcpt_tos), message))
        return "250 OK queued"

    def start(self) -> None:
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def to(self, address: str) -> list[email.message.EmailMessage]:
        with self.lock:
            return [m for rcpts, m in self.messages if address in rcpts]

    def wait_for(self, address: str, count: int, what: str) -> list[email.message.EmailMessage]:
        return wait_until(lambda: len(self.to(address)) >= count and self.to(address), 30, what)


def request(url: str, data: bytes | None = None, method: str | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8")


def body_of(message: email.message.EmailMessage) -> str:
    return message.get_content()


class SubscribersTest(unittest.TestCase):
    def setUp(self) -> None:
        self.sink = Sink()
        self.sink.start()
        self.addCleanup(self.sink.stop)
        extra = f"""
[http]
listen = "127.0.0.1:0"

[mail_out]
relay = "127.0.0.1:{self.sink.port}"
from = "status@example.com"
timeout_secs = 5
retry_first_secs = 1

[sms]
smsc = "127.0.0.1:9"
system_id = "postern"
password = "secret"
"""
        self.server = Server(imap=None, imaps=None, extra_toml=extra)
        self.addCleanup(self.server.cleanup)
        self.server.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.ports['http']}{path}"

    def subscribe(self, address: str) -> tuple[int, str]:
        return request(self.url("/status/subscribe"), urllib.parse.urlencode({"email": address}).encode())

    def post(self, *args: str, text: str) -> int:
        done = self.server.cli_ok("status", *args, input=text)
        match = re.search(r"\d+", done.stdout.decode())
        assert match, done.stdout
        return int(match.group(0))

    def subscribers(self) -> list[dict]:
        return json.loads(self.server.cli_ok("status", "subscriber", "list", "--json").stdout)

    def confirm_by_mail(self, address: str) -> None:
        status, page = self.subscribe(address)
        self.assertEqual(status, 200, page)
        self.assertIn("Check your mail", page)
        [mail] = self.sink.wait_for(address, 1, f"confirmation mail to {address}")
        self.assertIn("Confirm your subscription", mail["Subject"])
        link = re.search(r"http://\S+/status/confirm\?token=[0-9a-f]+", body_of(mail)).group(0)
        status, page = request(link)
        self.assertEqual(status, 200, page)
        self.assertIn("You are subscribed", page)
        # A used link is gone.
        self.assertEqual(request(link)[0], 404)

    def wait_for_log(self, event: str, count: int) -> None:
        wait_until(lambda: self.server.stderr_text().count(event) >= count, 30, f"{count} × {event}")

    def test_subscribe_confirm_notify_unsubscribe(self):
        status, page = request(self.url("/status"))
        self.assertEqual(status, 200)
        self.assertIn('action="http://127.0.0.1', page)
        self.assertIn("/status/subscribe", page)

        self.confirm_by_mail("alice@example.org")
        self.server.cli_ok("status", "subscriber", "add", "--email", "bob@example.org")
        self.server.cli_ok("status", "subscriber", "add", "--sms", "+49 1234 5678")
        listed = self.subscribers()
        self.assertEqual(sorted((s["kind"], s["address"], s["state"]) for s in listed), [
            ("email", "alice@example.org", "active"),
            ("email", "bob@example.org", "active"),
            ("sms", "+4912345678", "active"),
        ])

        incident = self.post("open", "--title", "Mail is slow", "--component", "Incoming mail",
                             text="Delivery takes about 15 minutes.\n")
        [to_alice] = self.sink.wait_for("alice@example.org", 2, "notice to alice")[1:]
        [to_bob] = self.sink.wait_for("bob@example.org", 1, "notice to bob")
        for mail in (to_alice, to_bob):
            self.assertEqual(mail["Subject"], f"[{SITE} status] Mail is slow")
            self.assertEqual(mail["From"], "status@example.com")
            self.assertTrue(mail["Date"] and mail["Message-ID"])
            self.assertEqual(mail["List-Unsubscribe-Post"], "List-Unsubscribe=One-Click")
            self.assertRegex(mail["List-Unsubscribe"], r"^<http://\S+/status/unsubscribe\?token=[0-9a-f]+>$")
            body = body_of(mail)
            self.assertIn("Delivery takes about 15 minutes.", body)
            self.assertIn(f"/status/incidents/{incident}", body)
            self.assertIn(mail["List-Unsubscribe"].strip("<>"), body)
        # The SMS subscriber's notice went into the SMS outbox.
        sms = wait_until(lambda: [s for s in json.loads(self.server.cli_ok("sms", "list", "--json").stdout)
                                  if s["purpose"] == "status"], 30, "SMS notice")
        self.assertEqual(sms[0]["to"], "+4912345678")
        self.assertIn("Mail is slow", sms[0]["text"])

        # One-click unsubscribe (RFC 8058): a POST with that body.
        unsubscribe = to_alice["List-Unsubscribe"].strip("<>")
        status, page = request(unsubscribe)
        self.assertEqual(status, 200)
        self.assertIn("alice@example.org", page)
        self.assertIn("<button", page)
        status, page = request(unsubscribe, b"List-Unsubscribe=One-Click")
        self.assertEqual(status, 200, page)
        self.assertIn("Unsubscribed", page)
        self.assertEqual(request(unsubscribe, b"List-Unsubscribe=One-Click")[0], 404)
        self.assertEqual(request(unsubscribe)[0], 404)

        self.post("update", str(incident), text="Still slow.\n")
        self.sink.wait_for("bob@example.org", 2, "update to bob")
        time.sleep(1.5)
        self.assertEqual(len(self.sink.to("alice@example.org")), 2, "alice unsubscribed")
        self.assertEqual(len(self.sink.to("bob@example.org")), 2)

        removed = [s["id"] for s in self.subscribers() if s["address"] == "bob@example.org"]
        self.server.cli_ok("status", "subscriber", "remove", str(removed[0]))
        self.assertEqual([s["address"] for s in self.subscribers()], ["+4912345678"])

    def test_bad_input_gets_a_clean_page(self):
        for address, wanted in [("not an address", 400), ("a" * 300 + "@example.org", 400),
                                ("<x>@example.org", 400)]:
            status, page = self.subscribe(address)
            self.assertEqual(status, wanted, address)
            self.assertIn("<form", page)
            self.assertNotIn("<x>", page)
        status, page = request(self.url("/status/subscribe"), b"other=1")
        self.assertEqual(status, 400)
        for path, wanted in [("/status/confirm?token=0123abcd", 404), ("/status/confirm", 400),
                             ("/status/confirm?token=%3Cscript%3E", 404),
                             ("/status/unsubscribe?token=0123abcd", 404), ("/status/unsubscribe", 400)]:
            status, page = request(self.url(path))
            self.assertEqual(status, wanted, path)
            self.assertIn("<!DOCTYPE html>", page)
        self.assertEqual(request(self.url("/status/unsubscribe?token=0123"), b"")[0], 404)
        # Per-address cap: the default allows 3 an hour.
        for _ in range(3):
            self.assertEqual(self.subscribe("carol@example.org")[0], 200)
        self.assertEqual(self.subscribe("carol@example.org")[0], 429)
        self.assertEqual(len(self.sink.to("carol@example.org")), 3)
        # Relay down: the visitor is told, nothing pretends to have worked.
        self.sink.stop()
        status, page = self.subscribe("dave@example.org")
        self.assertEqual(status, 503, page)
        # CLI errors are clean too.
        bad = self.server.cli("status", "subscriber", "add", "--email", "nope")
        self.assertNotEqual(bad.returncode, 0)
        self.assertIn("email address", bad.stderr.decode())
        self.assertNotEqual(self.server.cli("status", "subscriber", "remove", "999999").returncode, 0)

    def test_a_notice_waits_for_the_relay_and_is_sent_once_across_restarts(self):
        self.server.cli_ok("status", "subscriber", "add", "--email", "bob@example.org")
        incident = self.post("open", "--title", "First", text="One.\n")
        self.sink.wait_for("bob@example.org", 1, "first notice")

        # Relay down: the notice is retried with backoff, then sent when it is back.
        self.sink.stop()
        self.post("update", str(incident), text="Two.\n")
        self.wait_for_log("notice_retry", 2)
        self.sink.start()
        self.sink.wait_for("bob@example.org", 2, "the retried notice")

        # Down again, and the server restarts before the relay is back.
        self.sink.stop()
        self.post("update", str(incident), text="Three.\n")
        self.wait_for_log("notice_retry", 3)
        self.server.stop()
        self.sink.start()
        self.server.start()
        mails = self.sink.wait_for("bob@example.org", 3, "the notice queued before the restart")
        self.server.stop()
        self.server.start()
        time.sleep(3)
        mails = self.sink.to("bob@example.org")
        self.assertEqual([body_of(m).splitlines()[3] for m in mails], ["One.", "Two.", "Three."])
        self.assertEqual(len({m["Message-ID"] for m in mails}), 3)


if __name__ == "__main__":
    unittest.main()
