"""Spam-run defence on inbound SMTP (issue 5 items 4 and 5): runs of
near-identical messages from many sources detected and then tempfailed or
sent to Junk while other mail flows; runs listed by the CLI and the admin
API; blocks by IP, net, sender, domain and run, effective at once and kept
across a restart; per-IP, per-net, per-sender, per-domain and per-IP
recipient rate limits; score rules deciding INBOX, Junk or reject.

Clients are Python's smtplib bound to distinct loopback source addresses
(all of 127.0.0.0/8 is loopback on Linux), so one machine plays many senders.
Authentication checks are off here (test_smtp_auth.py tests them), and the
configured resolver is a port where nothing listens: with `check_auth =
false` the server must not need DNS at all.
"""

from __future__ import annotations

import datetime
import json
import random
import re
import unittest
import urllib.parse

from harness import Server, simple_message, unique_marker, wait_until
from smtp_client import header_fields, mailbox_messages, send, spam_verdicts

LOCAL_DOMAIN = "example.org"
USER, PASSWORD = "victim", "pw-victim-S3cret!"
RCPT = f"{USER}@{LOCAL_DOMAIN}"
RFC3339_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")
BLOCK_FORMS = ("ip:", "net:", "sender:", "domain:", "run:")

UNLIMITED = {
    "ip_messages": (0.0, 0), "net_messages": (0.0, 0), "sender_messages": (0.0, 0),
    "domain_messages": (0.0, 0), "ip_recipients": (0.0, 0),
}

RUN_MIN_MESSAGES = 20
RUN_MIN_SOURCES = 5


def spam_toml(*, run_action: str = "tempfail", limits: dict | None = None, rules: str = "") -> str:
    buckets = {**UNLIMITED, **(limits or {})}
    lines = [
        "[domains]",
        f'local = ["{LOCAL_DOMAIN}"]',
        "",
        "[dns]",
        # Nothing listens there: with check_auth = false no lookup is made.
        'servers = ["127.0.0.1:1"]',
        "timeout_ms = 1000",
        "attempts = 2",
        "",
        "[smtp]",
        'listen = "127.0.0.1:0"',
        "greeting_delay_ms = 0",
        "max_connections_per_ip = 0",
        "check_auth = false",
        "",
        "[spam]",
        "enabled = true",
        "junk_score = 5.0",
        "reject_score = 15.0",
        'junk_mailbox = "Junk"',
        "run_window_secs = 600",
        f"run_min_messages = {RUN_MIN_MESSAGES}",
        f"run_min_sources = {RUN_MIN_SOURCES}",
        f'run_action = "{run_action}"',
    ]
    for name, (rate, burst) in buckets.items():
        lines.append(f"{name}_per_sec = {float(rate)!r}")
        lines.append(f"{name}_burst = {int(burst)}")
    return "\n" + "\n".join(lines) + "\n" + rules


def start_server(extra_toml: str, *, http: bool = False, users: int = 0) -> Server:
    server = Server(imaps=None, http={} if http else None, extra_toml=extra_toml)
    try:
        server.start()
        server.add_user(USER, PASSWORD)
        for i in range(1, users + 1):
            server.add_user(f"user{i}", f"pw-user{i}-S3cret!")
    except BaseException:
        server.cleanup()
        raise
    return server


def stop_server(server: Server) -> None:
    try:
        if server.process is not None and server.process.poll() is None:
            server.stop()
    finally:
        server.cleanup()


def message_ids(messages: list[bytes]) -> list[str]:
    out = []
    for message in messages:
        for name, raw in header_fields(message):
            if name == "message-id":
                out.append(raw.split(b":", 1)[1].strip().decode())
    return out


# --------------------------------------------------------------------------
# A spam run: one text with the names, numbers and links changed
# --------------------------------------------------------------------------

NAMES = ["Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy", "Mallory", "Niaj",
         "Olivia", "Peggy", "Rupert", "Sybil", "Trent", "Victor", "Walter", "Yvonne"]

RUN_TEXT = (
    "Dear {name},\r\n"
    "\r\n"
    "Congratulations! Your address was selected in our annual customer loyalty draw and you\r\n"
    "have won a brand new smartphone worth {amount} dollars. To claim your prize simply confirm\r\n"
    "your shipping details within the next {hours} hours using your personal link below. Prizes\r\n"
    "that are not claimed in time go to the next winner on our list, so please do not wait.\r\n"
    "\r\n"
    "Claim now: http://{host}/claim?id={id}\r\n"
    "\r\n"
    "Your reference number is {ref}. Shipping is free for all winners in your country and the\r\n"
    "prize is delivered within five working days after you confirm. Thank you for being a\r\n"
    "valued customer of our store for {years} years.\r\n"
    "\r\n"
    "Best regards,\r\n"
    "The Rewards Team\r\n"
)

LEGIT_TEXT = (
    "Hi,\r\n"
    "\r\n"
    "the minutes of Tuesday's planning meeting are attached. We agreed to move the release\r\n"
    "to the second week of May and to keep the old importer for one more cycle. Please check\r\n"
    "the list of open questions at the end and answer the ones with your name by Friday.\r\n"
    "\r\n"
    "Thanks,\r\nMarta\r\n"
)


def run_member(rng: random.Random, n: int, domain: str) -> tuple[str, bytes]:
    """(message id, message) of the nth member of a run."""
    name = NAMES[n % len(NAMES)]
    marker = unique_marker(f"run{n}")
    body = RUN_TEXT.format(name=name, amount=rng.randint(500, 1500), hours=rng.choice([12, 24, 48, 72]),
                           host=f"win-{rng.randint(100, 999)}.prize{n}.example", id=rng.randint(10**8, 10**9),
                           ref=f"{rng.randint(0, 99999):05d}-{chr(65 + n % 26)}", years=rng.randint(2, 9))
    message_id = f"<{marker}@{domain}>"
    data = simple_message(subject=f"{name}, you have won a prize ({rng.randint(1, 999)})", body=body,
                          sender=f"rewards@{domain}", to=RCPT, message_id=message_id)
    return message_id, data


def legit_message(sender: str = "marta@partner.test") -> tuple[str, bytes]:
    """(message id, message) of an ordinary message, nothing like the run."""
    marker = unique_marker("legit")
    message_id = f"<{marker}@partner.test>"
    return message_id, simple_message(subject="Minutes of the planning meeting", body=LEGIT_TEXT,
                                      sender=sender, to=RCPT, message_id=message_id)


def parse_time(value: str) -> datetime.datetime:
    assert RFC3339_RE.fullmatch(value), f"not RFC 3339: {value!r}"
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


class SpamTestCase(unittest.TestCase):
    server: Server

    @classmethod
    def tearDownClass(cls) -> None:
        stop_server(cls.server)

    def send(self, sender: str, message: bytes, *, source: str, rcpts: str | list[str] = RCPT):
        return send(self.server.smtp_port, sender, rcpts, message, source=source)

    def mailbox(self, mailbox: str = "INBOX") -> list[bytes]:
        return mailbox_messages(self.server, USER, PASSWORD, mailbox)

    def cli_json(self, *args: str):
        completed = self.server.cli_ok(*args, "--json")
        try:
            return json.loads(completed.stdout)
        except ValueError:
            self.fail(f"postern {' '.join(args)} --json printed no JSON: {completed.stdout!r}")

    def assert_tempfail(self, outcome, what: str) -> None:
        self.assertEqual((outcome.code, outcome.enhanced), (451, "4.7.1"), f"{what}: {outcome}")

    def assert_blocked(self, outcome, what: str, stage: str = "mail") -> None:
        self.assertEqual((outcome.stage, outcome.code, outcome.enhanced), (stage, 550, "5.7.1"), f"{what}: {outcome}")


class RunTempfailTest(SpamTestCase):
    """30 near-identical messages from 10 addresses; a legitimate message
    from elsewhere in the middle of it."""

    RUN_IPS = [f"127.0.3.{i}" for i in range(1, 11)]
    RUN_DOMAINS = [f"spam{i}.test" for i in range(1, 4)]
    LEGIT_IP = "127.0.4.1"

    @classmethod
    def setUpClass(cls) -> None:
        cls.server = start_server(spam_toml(run_action="tempfail"), http=True)
        try:
            cls.token = cls.server.cli_ok("status", "token", "add", "spam-admin").stdout.decode().strip()
            cls.rng = random.Random(5)
            cls.started = datetime.datetime.now(datetime.timezone.utc)
            # Outcomes are only recorded here; the tests judge them.
            cls.run_outcomes = []
            cls.legit_outcome = None
            for n in range(30):
                domain = cls.RUN_DOMAINS[n % len(cls.RUN_DOMAINS)]
                message_id, data = run_member(cls.rng, n, domain)
                outcome = send(cls.server.smtp_port, f"rewards@{domain}", RCPT, data, source=cls.RUN_IPS[n % 10])
                cls.run_outcomes.append((message_id, outcome))
                if n == 24:
                    cls.legit_id, data = legit_message()
                    cls.legit_outcome = send(cls.server.smtp_port, "marta@partner.test", RCPT, data,
                                             source=cls.LEGIT_IP)
            cls.finished = datetime.datetime.now(datetime.timezone.utc)
        except BaseException:
            stop_server(cls.server)
            raise

    def the_run(self) -> dict:
        runs = self.cli_json("spam", "runs")["runs"]
        ours = [r for r in runs if {s["ip"] for s in r["top_sources"]} & set(self.RUN_IPS)]
        self.assertEqual(len(ours), 1, f"one run from our sources in {runs}")
        return ours[0]

    def test_run_members_are_tempfailed_from_the_threshold_on(self):
        codes = [(n + 1, o.code, o.enhanced) for n, (_, o) in enumerate(self.run_outcomes)]
        before = [c for c in codes[:RUN_MIN_MESSAGES - 1] if c[1] != 250]
        self.assertEqual(before, [], "members before the threshold are accepted")
        after = [c for c in codes[RUN_MIN_MESSAGES - 1:] if (c[1], c[2]) != (451, "4.7.1")]
        self.assertEqual(after, [], f"members from the {RUN_MIN_MESSAGES}th on get 451 4.7.1")
        stored = message_ids(self.mailbox("INBOX")) + message_ids(self.mailbox("Junk"))
        for n, (message_id, outcome) in enumerate(self.run_outcomes):
            self.assertEqual(stored.count(message_id), 1 if outcome.code == 250 else 0, f"member {n + 1}")

    def test_legitimate_mail_flows_during_the_run(self):
        self.assertEqual(self.legit_outcome.code, 250, str(self.legit_outcome))
        inbox = self.mailbox("INBOX")
        found = [m for m in inbox if self.legit_id in message_ids([m])]
        self.assertEqual(len(found), 1)
        verdict = spam_verdicts(found[0])
        self.assertEqual(len(verdict), 1)
        self.assertEqual(verdict[0].action, "inbox")
        self.assertNotIn("run(", verdict[0].rules)
        self.assertNotIn(self.legit_id, message_ids(self.mailbox("Junk")))

    def test_runs_listed_by_the_cli(self):
        run = self.the_run()
        self.assertIsInstance(run["id"], int)
        self.assertGreaterEqual(run["messages"], RUN_MIN_MESSAGES)
        self.assertLessEqual(run["messages"], 30 + 2, "30, and 2 more from test_block_and_unblock_a_run")
        self.assertGreaterEqual(run["sources"], RUN_MIN_SOURCES)
        self.assertLessEqual(run["sources"], 10)
        self.assertTrue(run["top_sources"])
        for source in run["top_sources"]:
            self.assertIn(source["ip"], self.RUN_IPS)
            self.assertGreater(source["messages"], 0)
        self.assertNotIn(self.LEGIT_IP, [s["ip"] for s in run["top_sources"]])
        self.assertTrue(run["sender_domains"])
        for domain in run["sender_domains"]:
            self.assertIn(domain["domain"], self.RUN_DOMAINS)
            self.assertGreater(domain["messages"], 0)
        self.assertRegex(run["fingerprint"], r"^[0-9a-f]{16}$")
        self.assertIs(run["active"], True)
        first, last, detected = (parse_time(run[k]) for k in ("first_seen", "last_seen", "detected"))
        slack = datetime.timedelta(seconds=5)
        now = datetime.datetime.now(datetime.timezone.utc)
        self.assertTrue(self.started - slack <= first <= detected <= last <= now + slack,
                        (self.started, first, detected, last, now))
        self.assertLessEqual(detected, self.finished + slack)
        # Human-readable form too.
        text = self.server.cli_ok("spam", "runs").stdout.decode()
        self.assertIn(str(run["id"]), text)

    def test_runs_in_the_admin_api(self):
        run = self.the_run()
        response = self.server.http("GET", "/api/admin/spam/runs", token=self.token)
        self.assertEqual(response.status, 200, response)
        runs = response.json()["runs"]
        same = [r for r in runs if r["id"] == run["id"]]
        self.assertEqual(len(same), 1, runs)
        for key in ("fingerprint", "sources", "first_seen", "detected", "active"):
            self.assertEqual(same[0][key], run[key], key)
        self.assertGreaterEqual(same[0]["messages"], run["messages"])
        for headers in ({}, {"Authorization": "Bearer not-a-token-0123456789abcdef"}):
            response = self.server.http("GET", "/api/admin/spam/runs", headers=headers)
            self.assertEqual(response.status, 401, (headers, response))

    def test_block_and_unblock_a_run(self):
        run = self.the_run()
        rng = random.Random(7)
        self.server.cli_ok("spam", "block", f"run:{run['id']}", "--reason", "prize draw spam")
        key = f"fingerprint:{run['fingerprint']}"
        blocks = self.cli_json("spam", "blocks")["blocks"]
        self.assertIn(key, [b["key"] for b in blocks])
        self.assertIs(next(r for r in self.cli_json("spam", "runs")["runs"] if r["id"] == run["id"])["blocked"], True)
        # A new member: refused outright, after DATA.
        _, data = run_member(rng, 40, self.RUN_DOMAINS[0])
        self.assert_blocked(self.send(f"rewards@{self.RUN_DOMAINS[0]}", data, source=self.RUN_IPS[1]),
                            "blocked run", "data")
        # Other mail from a source of the run is not affected.
        _, data = legit_message()
        self.assertEqual(self.send("marta@partner.test", data, source=self.RUN_IPS[0]).code, 250)

        self.server.cli_ok("spam", "unblock", key)
        self.assertNotIn(key, [b["key"] for b in self.cli_json("spam", "blocks")["blocks"]])
        _, data = run_member(rng, 41, self.RUN_DOMAINS[1])
        self.assert_tempfail(self.send(f"rewards@{self.RUN_DOMAINS[1]}", data, source=self.RUN_IPS[2]),
                             "unblocked, the run is still tempfailed")


class RunJunkTest(SpamTestCase):
    """The same run with run_action = "junk": later members are delivered to
    Junk with the reason in X-Postern-Spam."""

    RUN_IPS = [f"127.0.5.{i}" for i in range(1, 11)]

    @classmethod
    def setUpClass(cls) -> None:
        cls.server = start_server(spam_toml(run_action="junk"))
        try:
            rng = random.Random(6)
            cls.run_outcomes = []
            for n in range(30):
                message_id, data = run_member(rng, n, "junkrun.test")
                outcome = send(cls.server.smtp_port, "rewards@junkrun.test", RCPT, data, source=cls.RUN_IPS[n % 10])
                cls.run_outcomes.append((message_id, outcome))
        except BaseException:
            stop_server(cls.server)
            raise

    def test_later_members_go_to_junk(self):
        self.assertEqual([(n + 1, str(o)) for n, (_, o) in enumerate(self.run_outcomes) if o.code != 250], [])
        inbox = self.mailbox("INBOX")
        junk = self.mailbox("Junk")
        inbox_ids, junk_ids = message_ids(inbox), message_ids(junk)
        for n, (message_id, _) in enumerate(self.run_outcomes):
            where = (inbox_ids.count(message_id), junk_ids.count(message_id))
            expected = (1, 0) if n + 1 < RUN_MIN_MESSAGES else (0, 1)
            self.assertEqual(where, expected, f"member {n + 1}: (in INBOX, in Junk)")
        for message in junk:
            verdict = spam_verdicts(message)
            self.assertEqual(len(verdict), 1, message[:500])
            self.assertEqual(verdict[0].action, "junk", verdict[0].raw)
            self.assertIn("run(", verdict[0].rules, verdict[0].raw)
        runs = self.cli_json("spam", "runs")["runs"]
        self.assertEqual(len(runs), 1, runs)
        self.assertGreaterEqual(runs[0]["sources"], RUN_MIN_SOURCES)


class BlockTest(SpamTestCase):
    """Blocks by IP, net, sender and domain: 550 5.7.1 at MAIL FROM at once,
    lifted at once, kept across a restart; the CLI and the admin API."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.server = start_server(spam_toml(), http=True)
        try:
            cls.token = cls.server.cli_ok("status", "token", "add", "block-admin").stdout.decode().strip()
        except BaseException:
            stop_server(cls.server)
            raise

    def deliver_from(self, source: str, sender: str = "marta@partner.test"):
        message_id, data = legit_message(sender)
        outcome = self.send(sender, data, source=source)
        if outcome.code == 250:
            self.assertIn(message_id, message_ids(self.mailbox()), "accepted and stored")
        return outcome

    def blocks(self) -> dict[str, dict]:
        return {b["key"]: b for b in self.cli_json("spam", "blocks")["blocks"]}

    def check_block(self, key: str, blocked: list[tuple[str, str]], allowed: list[tuple[str, str]]) -> None:
        """Blocks `key`; (source, sender) pairs in `blocked` get 550 5.7.1 at
        MAIL FROM, those in `allowed` are delivered; unblocks; all delivered."""
        for source, sender in blocked:
            self.assertEqual(self.deliver_from(source, sender).code, 250, f"before the block: {source} {sender}")
        self.server.cli_ok("spam", "block", key, "--reason", f"test block of {key}")
        entry = self.blocks().get(key)
        self.assertIsNotNone(entry, f"{key} in spam blocks --json")
        self.assertEqual(entry["reason"], f"test block of {key}")
        parse_time(entry["since"])
        for source, sender in blocked:
            self.assert_blocked(self.deliver_from(source, sender), f"{key}: {source} {sender}")
        for source, sender in allowed:
            self.assertEqual(self.deliver_from(source, sender).code, 250, f"{key} must not block {source} {sender}")
        self.server.cli_ok("spam", "unblock", key)
        self.assertNotIn(key, self.blocks())
        for source, sender in blocked:
            self.assertEqual(self.deliver_from(source, sender).code, 250, f"after unblocking {key}: {source} {sender}")

    def test_block_ip(self):
        self.check_block("ip:127.0.6.9", blocked=[("127.0.6.9", "marta@partner.test")],
                         allowed=[("127.0.6.10", "marta@partner.test")])

    def test_block_net(self):
        self.check_block("net:127.0.7.0/24",
                         blocked=[("127.0.7.1", "marta@partner.test"), ("127.0.7.254", "ops@partner.test")],
                         allowed=[("127.0.8.1", "marta@partner.test")])

    def test_block_sender(self):
        self.check_block("sender:bad@spammer.test",
                         blocked=[("127.0.9.1", "bad@spammer.test"), ("127.0.9.2", "bad@spammer.test")],
                         allowed=[("127.0.9.1", "good@spammer.test")])

    def test_block_domain(self):
        self.check_block("domain:spammer2.test",
                         blocked=[("127.0.10.1", "any@spammer2.test"), ("127.0.10.2", "Other@SPAMMER2.TEST")],
                         allowed=[("127.0.10.1", "any@notspammer2.test")])

    def test_blocks_survive_a_restart(self):
        key = "ip:127.0.11.11"
        self.server.cli_ok("spam", "block", key, "--reason", "kept")
        self.assert_blocked(self.deliver_from("127.0.11.11"), "before the restart")
        self.server.restart()
        self.assertEqual(self.blocks()[key]["reason"], "kept")
        self.assert_blocked(self.deliver_from("127.0.11.11"), "after the restart")
        self.server.cli_ok("spam", "unblock", key)
        self.assertEqual(self.deliver_from("127.0.11.11").code, 250)

    def test_blocks_in_the_admin_api(self):
        key = "ip:127.0.12.12"
        response = self.server.http("POST", "/api/admin/spam/blocks", body={"key": key, "reason": "via api"},
                                    token=self.token)
        self.assertIn(response.status, (200, 201, 204), response)
        response = self.server.http("GET", "/api/admin/spam/blocks", token=self.token)
        self.assertEqual(response.status, 200, response)
        listed = {b["key"]: b for b in response.json()["blocks"]}
        self.assertEqual(listed[key]["reason"], "via api")
        parse_time(listed[key]["since"])
        self.assertEqual(self.blocks()[key]["reason"], "via api", "the CLI sees the API's block")
        self.assert_blocked(self.deliver_from("127.0.12.12"), "blocked through the API")
        path = "/api/admin/spam/blocks/" + urllib.parse.quote(key, safe="")
        response = self.server.http("DELETE", path, token=self.token)
        self.assertIn(response.status, (200, 204), response)
        self.assertNotIn(key, self.blocks())
        self.assertEqual(self.deliver_from("127.0.12.12").code, 250)
        # Bad input and no token.
        for body in ({"key": "nonsense", "reason": "x"}, {"key": "ip:300.1.1.1"}, {"reason": "no key"}):
            response = self.server.http("POST", "/api/admin/spam/blocks", body=body, token=self.token)
            self.assertEqual(response.status, 400, (body, response))
        response = self.server.http("POST", "/api/admin/spam/blocks", body={"key": "ip:127.0.12.13"})
        self.assertEqual(response.status, 401, response)
        self.assertNotIn("ip:127.0.12.13", self.blocks())
        self.assertEqual(self.server.http("GET", "/api/admin/spam/blocks").status, 401)

    def test_bad_cli_input(self):
        before = set(self.blocks())
        for key in ("nonsense", "ip:", "ip:300.1.2.3", "net:10.0.0.0/33", "net:10.0.0.0/x", "sender:no-at-sign",
                    "domain:", "run:abc", "run:999999", "host:example.test"):
            with self.subTest(key=key):
                result = self.server.cli("spam", "block", key)
                self.assertNotEqual(result.returncode, 0, result)
                error = (result.stderr + result.stdout).decode(errors="replace")
                if key in ("nonsense", "host:example.test"):
                    for form in BLOCK_FORMS:
                        self.assertIn(form, error, f"the error names the accepted forms: {error!r}")
        self.assertEqual(set(self.blocks()), before, "no bad key was stored")
        result = self.server.cli("spam", "unblock", "ip:1.2.3.4")
        self.assertNotEqual(result.returncode, 0, result)
        self.assertIn("ip:1.2.3.4", (result.stderr + result.stdout).decode(errors="replace"))


# One token every 4 s: a burst of a few messages on loopback never sees a
# refill, and the refill test waits seconds, not minutes.
RATE = 0.25
REFILL_POLL_S = 4.5


class RateLimitTestCase(SpamTestCase):
    """A server with one bucket limited: RATE a second, a small burst."""

    limits: dict = {}
    users = 0

    @classmethod
    def setUpClass(cls) -> None:
        cls.server = start_server(spam_toml(limits=cls.limits), users=cls.users)

    def message(self, sender: str) -> bytes:
        return simple_message(subject="Rates", body=f"{unique_marker('rate')}\r\n", sender=sender, to=RCPT)

    def wait_for_refill(self, sender: str, source: str, rcpts: str | list[str] = RCPT) -> None:
        """Polls (every REFILL_POLL_S, longer than one token takes, so even a
        bucket that counted refused attempts would refill) until a message is taken."""
        wait_until(lambda: self.send(sender, self.message(sender), source=source, rcpts=rcpts).code == 250,
                   30, "a token after refill", interval_s=REFILL_POLL_S)

    def check_message_bucket(self, attempts: list[tuple[str, str]], other: tuple[str, str]) -> None:
        """All but the last of `attempts` ((source, sender)) are accepted,
        the last gets 451 4.7.1 at MAIL FROM; `other` is still accepted;
        after a refill the last is accepted."""
        for source, sender in attempts[:-1]:
            outcome = self.send(sender, self.message(sender), source=source)
            self.assertEqual(outcome.code, 250, f"{source} {sender}: {outcome}")
        source, sender = attempts[-1]
        outcome = self.send(sender, self.message(sender), source=source)
        self.assert_tempfail(outcome, f"over the bucket: {source} {sender}")
        self.assertEqual(outcome.stage, "mail", str(outcome))
        self.assertEqual(self.send(other[1], self.message(other[1]), source=other[0]).code, 250, f"other {other}")
        self.wait_for_refill(sender, source)


class IpRateLimitTest(RateLimitTestCase):
    limits = {"ip_messages": (RATE, 3)}

    def test_ip_message_rate(self):
        self.check_message_bucket([("127.0.20.1", f"s{i}@ip{i}.test") for i in range(4)],
                                  other=("127.0.20.2", "s9@ip9.test"))


class NetRateLimitTest(RateLimitTestCase):
    limits = {"net_messages": (RATE, 6)}

    def test_net_message_rate(self):
        self.check_message_bucket([(f"127.0.21.{i}", f"s{i}@net{i}.test") for i in range(1, 8)],
                                  other=("127.0.22.1", "s9@net9.test"))


class SenderRateLimitTest(RateLimitTestCase):
    limits = {"sender_messages": (RATE, 2)}

    def test_sender_message_rate(self):
        self.check_message_bucket([(f"127.0.23.{i}", "newsletter@sender.test") for i in range(1, 4)],
                                  other=("127.0.23.9", "other@sender.test"))


class DomainRateLimitTest(RateLimitTestCase):
    limits = {"domain_messages": (RATE, 4)}

    def test_domain_message_rate(self):
        self.check_message_bucket([(f"127.0.24.{i}", f"user{i}@bulk.test") for i in range(1, 6)],
                                  other=("127.0.24.9", "user9@elsewhere.test"))


class RecipientRateLimitTest(RateLimitTestCase):
    limits = {"ip_recipients": (RATE, 5)}
    users = 6

    def test_ip_recipient_rate(self):
        rcpts = [f"user{i}@{LOCAL_DOMAIN}" for i in range(1, 7)]
        outcome = self.send("list@sender.test", self.message("list@sender.test"), source="127.0.25.1", rcpts=rcpts)
        self.assertEqual([code for code, _ in outcome.rcpt[:5]], [250] * 5, outcome.rcpt)
        code, text = outcome.rcpt[5]
        self.assertEqual((code, text.split(" ", 1)[0]), (451, "4.7.1"), outcome.rcpt)
        self.assertEqual(outcome.data[0], 250, "the message goes to the accepted recipients")
        other = self.send("list@sender.test", self.message("list@sender.test"), source="127.0.25.2",
                          rcpts=rcpts[5])
        self.assertEqual(other.code, 250, str(other))
        self.wait_for_refill("list@sender.test", "127.0.25.1", rcpts=rcpts[5])


class RulesTest(SpamTestCase):
    """Configured rules add their score: Junk at 5, reject at 15."""

    RULES = """
[[spam.rules]]
name = "cheap_pills"
header = "Subject"
contains = "cheap pills"
score = 6.0

[[spam.rules]]
name = "wire_transfer"
contains = "urgent wire transfer"
score = 20.0
"""

    @classmethod
    def setUpClass(cls) -> None:
        cls.server = start_server(spam_toml(rules=cls.RULES))

    def one(self, mailbox: str, message_id: str) -> list[bytes]:
        return [m for m in self.mailbox(mailbox) if message_id in message_ids([m])]

    def test_header_rule_sends_to_junk(self):
        message_id = f"<{unique_marker('pills')}@pharma.test>"
        data = simple_message(subject="Buy CHEAP Pills today", body="Best prices.\r\n", sender="shop@pharma.test",
                              to=RCPT, message_id=message_id)
        outcome = self.send("shop@pharma.test", data, source="127.0.30.1")
        self.assertEqual(outcome.code, 250, str(outcome))
        self.assertEqual(self.one("INBOX", message_id), [])
        junk = self.one("Junk", message_id)
        self.assertEqual(len(junk), 1)
        self.assertTrue(junk[0].endswith(data), "delivered unchanged behind the added fields")
        verdict = spam_verdicts(junk[0])
        self.assertEqual(len(verdict), 1)
        self.assertEqual(verdict[0].action, "junk", verdict[0].raw)
        self.assertGreaterEqual(verdict[0].score, 6.0, verdict[0].raw)
        self.assertLess(verdict[0].score, 15.0, verdict[0].raw)
        self.assertRegex(verdict[0].rules, r"\bcheap_pills\(6(\.0*)?\)", verdict[0].raw)

    def test_header_rule_looks_at_its_header_only(self):
        message_id = f"<{unique_marker('pillsbody')}@pharma.test>"
        data = simple_message(subject="Pharmacy newsletter", body="We never sell cheap pills.\r\n",
                              sender="shop@pharma.test", to=RCPT, message_id=message_id)
        self.assertEqual(self.send("shop@pharma.test", data, source="127.0.30.2").code, 250)
        inbox = self.one("INBOX", message_id)
        self.assertEqual(len(inbox), 1)
        verdicts = spam_verdicts(inbox[0])
        self.assertEqual(len(verdicts), 1, inbox[0][:500])
        verdict = verdicts[0]
        self.assertEqual(verdict.action, "inbox", verdict.raw)
        self.assertNotIn("cheap_pills", verdict.rules)

    def test_body_rule_over_the_reject_score(self):
        message_id = f"<{unique_marker('wire')}@scam.test>"
        data = simple_message(subject="Invoice", body="Please make an URGENT wire transfer today.\r\n",
                              sender="ceo@scam.test", to=RCPT, message_id=message_id)
        outcome = self.send("ceo@scam.test", data, source="127.0.30.3")
        self.assertEqual(outcome.stage, "data", str(outcome))
        self.assertEqual(outcome.code // 100, 5, str(outcome))
        self.assertTrue(outcome.enhanced.startswith("5.7."), str(outcome))
        self.assertEqual(self.one("INBOX", message_id) + self.one("Junk", message_id), [])

    def test_clean_message_goes_to_inbox(self):
        message_id = f"<{unique_marker('clean')}@partner.test>"
        data = simple_message(subject="Lunch?", body="Shall we meet at noon?\r\n", sender="marta@partner.test",
                              to=RCPT, message_id=message_id)
        self.assertEqual(self.send("marta@partner.test", data, source="127.0.30.4").code, 250)
        inbox = self.one("INBOX", message_id)
        self.assertEqual(len(inbox), 1)
        self.assertTrue(inbox[0].endswith(data))
        verdict = spam_verdicts(inbox[0])
        self.assertEqual(len(verdict), 1)
        self.assertEqual((verdict[0].action, verdict[0].rules), ("inbox", "none"), verdict[0].raw)
        self.assertLess(verdict[0].score, 5.0)


if __name__ == "__main__":
    unittest.main()
