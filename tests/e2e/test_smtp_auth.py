"""Sender authentication on inbound SMTP (issue 5 item 3): SPF, DKIM, DMARC
and ARC results in an Authentication-Results header, DMARC p=reject
enforced, forged verdict headers stripped at SMTP intake (and only there),
and a resolver outage that bounces nothing.

Everything the server checks against is independent of it: the DNS answers
come from a real dnsmasq on loopback (dnszone.DnsZone), DKIM signatures and
ARC seals are made by dkimpy (dnszone.DkimKey), and the clients are Python's
smtplib and swaks. `DnsZoneSelfCheck` (from dnszone.py) runs here too: it
proves the zone and the signatures right without Postern.
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

import dkim

from dnszone import DkimKey, DnsZone, DnsZoneSelfCheck  # noqa: F401  (the self-check runs here too)
from harness import Server, simple_message, split_trace, unique_marker, wait_until
from smtp_client import (auth_result, auth_results_all, header_fields, mailbox_messages, our_auth_results, send,
                         spam_verdicts, split_added)

AUTHSERV_ID = "mx.postern.test"
LOCAL_DOMAIN = "example.org"
USER, PASSWORD = "alice", "pw-alice-S3cret!"
RCPT = f"{USER}@{LOCAL_DOMAIN}"
# The EHLO name of every client here; the zone gives it an A, a PTR and an
# SPF record, so checks of the HELO identity and of the client's address
# have answers to cache too.
HELO = "client.test"
SPF_LOOPBACK = "v=spf1 ip4:127.0.0.0/8 -all"


def server_toml(dns_address: str) -> str:
    """Authentication on; the spam score never moves a message out of INBOX
    here, no rate limit and no run detection (test_spam.py tests those)."""
    return f"""
[domains]
local = ["{LOCAL_DOMAIN}"]

[dns]
servers = ["{dns_address}"]
timeout_ms = 1000
attempts = 2
stale_secs = 86400

[smtp]
listen = "127.0.0.1:0"
greeting_delay_ms = 0
max_connections_per_ip = 0
check_auth = true
authserv_id = "{AUTHSERV_ID}"
dmarc_reject = true

[spam]
enabled = true
junk_score = 1000.0
reject_score = 2000.0
run_window_secs = 600
run_min_messages = 1000000
run_min_sources = 1000000
run_action = "tempfail"
ip_messages_per_sec = 0.0
ip_messages_burst = 0
net_messages_per_sec = 0.0
net_messages_burst = 0
sender_messages_per_sec = 0.0
sender_messages_burst = 0
domain_messages_per_sec = 0.0
domain_messages_burst = 0
ip_recipients_per_sec = 0.0
ip_recipients_burst = 0
"""


def add_client(zone: DnsZone) -> None:
    zone.a(HELO, "127.0.0.1")
    zone.txt(HELO, SPF_LOOPBACK)
    zone.ptr("127.0.0.1", HELO)


def add_domain(zone: DnsZone, domain: str, *, spf: str | None = SPF_LOOPBACK, dmarc: str | None = None) -> None:
    """A sender domain: an MX and an A record (the domain exists), its SPF
    record and its DMARC record when given."""
    zone.mx(domain, f"mx.{domain}", 10)
    zone.a(f"mx.{domain}", "192.0.2.25")
    zone.a(domain, "192.0.2.26")
    if spf is not None:
        zone.txt(domain, spf)
    if dmarc is not None:
        zone.txt(f"_dmarc.{domain}", dmarc)


def start_server(zone: DnsZone) -> Server:
    server = Server(imaps=None, lmtp={}, extra_toml=server_toml(zone.address))
    try:
        server.start()
        server.add_user(USER, PASSWORD)
    except BaseException:
        server.cleanup()
        raise
    return server


class ZoneServerCase(unittest.TestCase):
    """A test class with its own DNS zone and a server resolving through it;
    subclasses fill the zone in setUpClass and call start_zone_and_server."""

    zone: DnsZone
    server: Server

    @classmethod
    def start_zone_and_server(cls, zone: DnsZone) -> None:
        cls.zone = zone
        try:
            zone.start()
            cls.server = start_server(zone)
        except BaseException:
            zone.close()
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        try:
            if cls.server.process is not None and cls.server.process.poll() is None:
                cls.server.stop()
        finally:
            cls.server.cleanup()
            cls.zone.close()


class AuthResultsTest(ZoneServerCase):
    """One dnsmasq zone with a domain per case, one server."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.signed_key = DkimKey()
        cls.dkimonly_key = DkimKey()
        cls.origin_key = DkimKey()
        cls.list_key = DkimKey()
        zone = cls.zone = DnsZone(ttl=300)
        add_client(zone)
        add_domain(zone, "sender.test", dmarc="v=DMARC1; p=reject")
        add_domain(zone, "spffail.test", spf="v=spf1 ip4:192.0.2.0/24 -all")
        add_domain(zone, "softfail.test", spf="v=spf1 ip4:192.0.2.0/24 ~all")
        add_domain(zone, "neutral.test", spf="v=spf1 ?all")
        add_domain(zone, "nospf.test", spf=None)
        add_domain(zone, "signed.test", dmarc="v=DMARC1; p=reject")
        cls.signed_key.publish(zone, "sel1", "signed.test")
        # SPF fails for it, DKIM passes: DMARC passes through DKIM alignment only.
        add_domain(zone, "dkimonly.test", spf="v=spf1 -all", dmarc="v=DMARC1; p=reject")
        cls.dkimonly_key.publish(zone, "sel2", "dkimonly.test")
        add_domain(zone, "weak.test", spf="v=spf1 -all", dmarc="v=DMARC1; p=none")
        add_domain(zone, "nodmarc.test")
        add_domain(zone, "strict.test", spf="v=spf1 -all", dmarc="v=DMARC1; p=reject")
        # ARC: origin.test signs, list.test (a mailing list) changes the
        # message, which breaks the signature, and seals what it saw.
        add_domain(zone, "origin.test", spf="v=spf1 -all", dmarc="v=DMARC1; p=none")
        cls.origin_key.publish(zone, "o1", "origin.test")
        add_domain(zone, "list.test")
        cls.list_key.publish(zone, "arc1", "list.test")
        cls.start_zone_and_server(zone)

    # -- helpers -----------------------------------------------------------

    def message(self, marker: str, sender: str, *, body: str = "Hello there.\r\n", extra_headers: str = "") -> bytes:
        return simple_message(subject=marker, body=body, sender=sender, to=RCPT, extra_headers=extra_headers,
                              message_id=f"<{marker}@{sender.split('@')[1]}>")

    def deliver(self, mail_from: str, message: bytes) -> None:
        outcome = send(self.server.smtp_port, mail_from, RCPT, message, helo=HELO)
        self.assertEqual(outcome.code, 250, f"{outcome}\n{self.server.stderr_tail()}")

    def stored(self, marker: str, mailbox: str = "INBOX") -> list[bytes]:
        return mailbox_messages(self.server, USER, PASSWORD, mailbox, marker)

    def stored_one(self, marker: str, original: bytes) -> tuple[bytes, str]:
        """The one INBOX message with `marker`; checks that it is the bytes
        sent behind the fields the server added, one A-R of ours and one
        X-Postern-Spam among them; returns (stored, our A-R value)."""
        found = self.stored(marker)
        self.assertEqual(len(found), 1, f"INBOX messages with {marker}")
        stored = found[0]
        added = split_added(stored, original)
        names = collections.Counter(name for name, _ in added)
        self.assertGreaterEqual(names["received"], 1, added)
        self.assertEqual(names["x-postern-spam"], 1, added)
        results = our_auth_results(stored, AUTHSERV_ID)
        self.assertEqual(len(results), 1, f"one Authentication-Results: {AUTHSERV_ID}; in {added}")
        self.assertEqual(names["authentication-results"], 1, added)
        verdict = spam_verdicts(stored)
        self.assertEqual(len(verdict), 1)
        self.assertEqual(verdict[0].action, "inbox", verdict[0].raw)
        return stored, results[0]

    def check(self, results: str, **expected: str) -> None:
        for method, result in expected.items():
            self.assertEqual(auth_result(results, method), result, f"{method} in {results!r}")

    # -- SPF ---------------------------------------------------------------

    def test_spf_results(self):
        for domain, expected in (("sender.test", "pass"), ("spffail.test", "fail"), ("softfail.test", "softfail"),
                                 ("neutral.test", "neutral"), ("nospf.test", "none")):
            with self.subTest(domain=domain):
                marker = unique_marker("spf")
                data = self.message(marker, f"someone@{domain}")
                # SPF fail only adds to the score: the message is delivered.
                self.deliver(f"someone@{domain}", data)
                _, results = self.stored_one(marker, data)
                self.check(results, spf=expected, dkim="none")
                self.assertRegex(results, rf"(?i)smtp\.mailfrom=\S*{re.escape(domain)}")

    # -- DKIM --------------------------------------------------------------

    def test_dkim_pass(self):
        marker = unique_marker("dkim")
        data = self.signed_key.sign(self.message(marker, "someone@signed.test"), "sel1", "signed.test")
        self.deliver("someone@signed.test", data)
        stored, results = self.stored_one(marker, data)
        self.check(results, dkim="pass", spf="pass", dmarc="pass")
        self.assertRegex(results, r"(?i)header\.d=signed\.test")
        # The stored message still verifies for an independent verifier.
        self.assertTrue(dkim.verify(stored, dnsfunc=self.zone.get_txt))

    def test_dkim_fail_when_the_body_changed_after_signing(self):
        marker = unique_marker("dkimbad")
        signed = self.signed_key.sign(self.message(marker, "someone@signed.test", body="Pay 100 EUR.\r\n"),
                                      "sel1", "signed.test")
        data = signed.replace(b"Pay 100 EUR.", b"Pay 900 EUR.")
        self.assertFalse(dkim.verify(data, dnsfunc=self.zone.get_txt), "dkimpy agrees the signature is broken")
        self.deliver("someone@signed.test", data)
        _, results = self.stored_one(marker, data)
        # RFC 6376 6.1.3: a body hash that does not verify is PERMFAIL, which
        # RFC 8601 2.7.1 writes as dkim=fail (mail-auth itself reports it as
        # neutral, so the server has to map it).
        self.check(results, dkim="fail", spf="pass", dmarc="pass")

    def test_dkim_with_an_unpublished_key_does_not_pass(self):
        marker = unique_marker("dkimnokey")
        data = DkimKey().sign(self.message(marker, "someone@signed.test"), "unpublished", "signed.test")
        self.deliver("someone@signed.test", data)
        _, results = self.stored_one(marker, data)
        self.assertIn(auth_result(results, "dkim"), {"fail", "permerror", "neutral", "policy"}, results)

    # -- DMARC -------------------------------------------------------------

    def test_dmarc_pass_through_spf_or_dkim_alignment(self):
        marker = unique_marker("dmarcspf")
        data = self.message(marker, "someone@sender.test")
        self.deliver("someone@sender.test", data)
        _, results = self.stored_one(marker, data)
        self.check(results, spf="pass", dmarc="pass")
        # SPF fails for dkimonly.test (p=reject), its DKIM signature passes and is aligned.
        marker = unique_marker("dmarcdkim")
        data = self.dkimonly_key.sign(self.message(marker, "someone@dkimonly.test"), "sel2", "dkimonly.test")
        self.deliver("someone@dkimonly.test", data)
        _, results = self.stored_one(marker, data)
        self.check(results, spf="fail", dkim="pass", dmarc="pass")

    def test_dmarc_fail_under_p_none_is_delivered(self):
        marker = unique_marker("dmarcnone")
        data = self.message(marker, "someone@weak.test")
        self.deliver("someone@weak.test", data)
        _, results = self.stored_one(marker, data)
        self.check(results, spf="fail", dkim="none", dmarc="fail")

    def test_dmarc_none_without_a_record(self):
        marker = unique_marker("nodmarc")
        data = self.message(marker, "someone@nodmarc.test")
        self.deliver("someone@nodmarc.test", data)
        _, results = self.stored_one(marker, data)
        self.check(results, spf="pass", dmarc="none")

    def test_dmarc_fail_under_p_reject_is_refused_after_data(self):
        cases = {
            "spf fails, unsigned": ("x@strict.test", None),
            "spf passes for another domain": ("x@sender.test", None),
            "signed by another domain": ("x@sender.test", "signed.test"),
        }
        for case, (mail_from, signer) in cases.items():
            with self.subTest(case=case):
                marker = unique_marker("reject")
                data = self.message(marker, "ceo@strict.test")
                if signer:
                    data = self.signed_key.sign(data, "sel1", signer)
                outcome = send(self.server.smtp_port, mail_from, RCPT, data, helo=HELO)
                self.assertEqual((outcome.stage, outcome.code, outcome.enhanced), ("data", 550, "5.7.1"),
                                 str(outcome))
                self.assertEqual(self.stored(marker), [], "nothing in INBOX")
                self.assertEqual(self.stored(marker, "Junk"), [], "nothing in Junk")
        # The control: aligned and passing, the same domain's mail is taken.
        marker = unique_marker("strictok")
        data = self.message(marker, "ceo@sender.test")
        self.deliver("x@sender.test", data)
        self.assertEqual(len(self.stored(marker)), 1)

    # -- ARC ---------------------------------------------------------------

    def arc_message(self, marker: str) -> bytes:
        """origin.test's signed message as list.test forwards it: subject
        tagged and a footer added (origin's signature no longer verifies),
        list.test's own Authentication-Results, then its ARC set."""
        original = self.origin_key.sign(self.message(marker, "author@origin.test", body="To the list.\r\n"),
                                        "o1", "origin.test")
        changed = original.replace(f"Subject: {marker}".encode(), f"Subject: [list] {marker}".encode())
        changed += b"-- \r\nlist footer\r\n"
        with_ar = (b"Authentication-Results: list.test; dkim=pass header.d=origin.test; spf=pass "
                   b"smtp.mailfrom=origin.test; arc=none\r\n") + changed
        sealed = self.list_key.arc_seal(with_ar, "arc1", "list.test", "list.test")
        cv, _, reason = dkim.arc_verify(sealed, dnsfunc=self.zone.get_txt)
        self.assertEqual(cv, dkim.CV_Pass, f"dkimpy's own ARC check: {reason}")
        return sealed

    def test_arc_pass_and_fail(self):
        marker = unique_marker("arc")
        data = self.arc_message(marker)
        self.deliver("list-bounces@list.test", data)
        stored, results = self.stored_one(marker, data)
        self.check(results, arc="pass", spf="pass")
        self.assertNotIn("pass", auth_results_all(results, "dkim"), "origin's signature broke on the list")
        # list.test's own Authentication-Results is someone else's: kept as it was.
        self.assertIn(b"\r\nAuthentication-Results: list.test; dkim=pass", stored)

        marker = unique_marker("arcbad")
        data = self.arc_message(marker).replace(b"list footer", b"LIST FOOTER")
        self.deliver("list-bounces@list.test", data)
        _, results = self.stored_one(marker, data)
        self.check(results, arc="fail")

    # -- headers claiming to be ours ----------------------------------------

    def test_forged_verdicts_are_stripped_and_foreign_results_kept(self):
        marker = unique_marker("forged")
        forged = [
            f"Authentication-Results: {AUTHSERV_ID}; spf=pass smtp.mailfrom=forged.test;\r\n"
            f"\tdkim=pass header.d=forged.test;\r\n dmarc=pass header.from=forged.test\r\n",
            "X-Postern-Spam: score=-100.0; action=inbox;\r\n  rules=none\r\n",
            f"authentication-results: {AUTHSERV_ID.upper()} ; spf=pass\r\n",
            "x-postern-spam:score=0.0; action=inbox; rules=none\r\n",
        ]
        foreign = [
            "Authentication-Results: relay.other.example; spf=pass\r\n  smtp.mailfrom=sender.test (kept)\r\n",
            f"Authentication-Results: {AUTHSERV_ID}.evil.example;\r\n dkim=pass header.d=evil.example\r\n",
        ]
        head = (
            forged[0] + foreign[0] + "From: someone@sender.test\r\n" + forged[1] + f"To: {RCPT}\r\n"
            + foreign[1] + f"Subject: {marker}\r\n" + forged[2] + "Date: Mon, 04 Mar 2024 10:00:00 +0000\r\n"
            + f"Message-ID: <{marker}@sender.test>\r\n" + forged[3]
        )
        body = ("The body is not the header section:\r\nX-Postern-Spam: score=0.0; action=inbox; rules=none\r\n"
                f"Authentication-Results: {AUTHSERV_ID}; spf=pass\r\n")
        data = (head + "\r\n" + body).encode()
        expected = data
        for field in forged:
            self.assertEqual(expected.count(field.encode()), 1)
            expected = expected.replace(field.encode(), b"", 1)
        self.deliver("someone@sender.test", data)
        stored, results = self.stored_one(marker, expected)
        self.check(results, spf="pass", dmarc="pass")
        self.assertNotIn("forged.test", results)
        verdict = spam_verdicts(stored)[0]
        self.assertNotEqual(verdict.score, -100.0)
        for field in foreign:
            self.assertEqual(stored.count(field.encode()), 1, f"kept byte for byte: {field!r}")

    def test_lmtp_intake_changes_nothing(self):
        """LMTP is the trusted local MTA: its messages are stored as given,
        claimed verdicts included, and no check is added."""
        marker = unique_marker("lmtp")
        data = self.message(
            marker, "someone@strict.test",
            extra_headers=(f"Authentication-Results: {AUTHSERV_ID}; spf=pass smtp.mailfrom=strict.test\r\n"
                           "X-Postern-Spam: score=0.0; action=inbox; rules=none\r\n"))
        self.server.deliver_ok(RCPT, data, sender="someone@strict.test")
        found = self.stored(marker)
        self.assertEqual(len(found), 1)
        _, body = split_trace(found[0])
        self.assertEqual(body, data)

    # -- an independent client ---------------------------------------------

    def test_swaks_delivery_of_a_signed_message(self):
        swaks = shutil.which("swaks")
        self.assertIsNotNone(swaks, "swaks is needed (apt-get install -y swaks; .ci/run does it)")
        marker = unique_marker("swaks")
        data = self.signed_key.sign(self.message(marker, "someone@signed.test", body="Sent by swaks.\r\n"),
                                    "sel1", "signed.test")
        with tempfile.NamedTemporaryFile(suffix=".eml") as f:
            # swaks ends the data with CRLF itself (a file that already ends
            # with one gets an empty line more).
            f.write(data.removesuffix(b"\r\n"))
            f.flush()
            result = subprocess.run(
                [swaks, "--server", "127.0.0.1", "--port", str(self.server.smtp_port), "--helo", HELO,
                 "--from", "someone@signed.test", "--to", RCPT, "--data", f.name, "--timeout", "30"],
                capture_output=True, timeout=60)
        output = result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
        self.assertEqual(result.returncode, 0, output)
        stored, results = self.stored_one(marker, data)
        self.check(results, spf="pass", dkim="pass", dmarc="pass")
        self.assertTrue(dkim.verify(stored, dnsfunc=self.zone.get_txt))


class ResolverOutageTest(ZoneServerCase):
    """Steady traffic from known senders while the resolver is down for 60
    s: stale answers keep them flowing, a sender never seen before is
    tempfailed (451 4.4.3) until the resolver is back, nothing bounces, and
    every accepted message is stored exactly once with a right verdict."""

    OUTAGE_S = 60.0
    TTL_S = 2
    KNOWN = ("known1.test", "known2.test", "known3.test")
    NEWCOMER = "newcomer.test"
    # Three senders, a new message each 0.6 s: about 5 messages a second.
    PACE_S = 0.6
    RETRY_S = 0.5
    # A message not accepted within this long is a failure.
    GIVE_UP_S = 240.0
    # How long a client waits for one reply: lookups that time out may
    # make the server slow while the resolver is down; slow is not wrong.
    REPLY_TIMEOUT_S = 120.0

    @classmethod
    def setUpClass(cls) -> None:
        cls.keys = {domain: DkimKey() for domain in cls.KNOWN}
        zone = cls.zone = DnsZone(ttl=cls.TTL_S)
        add_client(zone)
        for domain, key in cls.keys.items():
            add_domain(zone, domain, dmarc="v=DMARC1; p=reject")
            key.publish(zone, "s1", domain)
        add_domain(zone, cls.NEWCOMER, dmarc="v=DMARC1; p=none")
        cls.start_zone_and_server(zone)

    def test_resolver_outage_bounces_nothing_and_loses_nothing(self):
        port = self.server.smtp_port
        stop = threading.Event()
        # Set when the test fails half-way: the senders stop retrying.
        abort = threading.Event()
        lock = threading.Lock()
        # Per message id: {"domain", "first", "accepted" (monotonic or None),
        # "replies": [(time, code, text, stage)]}.
        log: dict[str, dict] = {}
        errors: list[str] = []

        def traffic(domain: str) -> None:
            key = self.keys[domain]
            n = 0
            try:
                while not stop.is_set():
                    n += 1
                    marker = unique_marker(f"{domain.split('.')[0]}-{n}")
                    data = key.sign(simple_message(subject=f"Report {n} {marker}",
                                                   body=f"Figures for item {n}.\r\nRegards,\r\n{domain}\r\n",
                                                   sender=f"reports@{domain}", to=RCPT,
                                                   message_id=f"<{marker}@{domain}>"), "s1", domain)
                    entry = {"domain": domain, "first": time.monotonic(), "accepted": None, "replies": []}
                    with lock:
                        log[marker] = entry
                    while True:
                        outcome = send(port, f"reports@{domain}", RCPT, data, helo=HELO,
                                       timeout=self.REPLY_TIMEOUT_S)
                        with lock:
                            entry["replies"].append((time.monotonic(), outcome.code, outcome.final[1], outcome.stage))
                        if outcome.code == 250:
                            entry["accepted"] = time.monotonic()
                            break
                        if outcome.code // 100 != 4:
                            break  # a bounce: the test fails below
                        if time.monotonic() - entry["first"] > self.GIVE_UP_S or abort.is_set():
                            break
                        time.sleep(self.RETRY_S)  # the sender's retry interval
                    stop.wait(self.PACE_S)  # the traffic's rate
            except BaseException as error:  # noqa: BLE001  (reported by the test)
                with lock:
                    errors.append(f"{domain}: {error!r}")

        threads = [threading.Thread(target=traffic, args=(d,), daemon=True) for d in self.KNOWN]
        for t in threads:
            t.start()

        def accepted(domain: str, after: float = 0.0) -> int:
            with lock:
                return sum(1 for e in log.values()
                           if e["domain"] == domain and e["accepted"] is not None and e["first"] >= after)

        try:
            # Every known sender has been seen: its answers are in the cache.
            wait_until(lambda: errors or all(accepted(d) >= 2 for d in self.KNOWN), 60, "traffic before the outage")
            self.assertEqual(errors, [])

            outage_start = time.monotonic()
            self.zone.stop()
            # The scenario's clock, not synchronisation: let the cached answers
            # (TTL 2 s) go stale, then try a sender the server has never seen.
            time.sleep(3 * self.TTL_S + 2)
            new_replies = []
            new_marker = unique_marker("newcomer")
            new_data = simple_message(subject=new_marker, sender=f"hello@{self.NEWCOMER}", to=RCPT,
                                      message_id=f"<{new_marker}@{self.NEWCOMER}>")
            outcome = send(port, f"hello@{self.NEWCOMER}", RCPT, new_data, helo=HELO,
                           timeout=self.REPLY_TIMEOUT_S)
            new_replies.append(outcome)
            self.assertEqual((outcome.code, outcome.enhanced), (451, "4.4.3"),
                             f"a new sender while DNS is down: {outcome}")
            time.sleep(max(0.0, outage_start + self.OUTAGE_S - 10 - time.monotonic()))
            outcome = send(port, f"hello@{self.NEWCOMER}", RCPT, new_data, helo=HELO,
                           timeout=self.REPLY_TIMEOUT_S)
            new_replies.append(outcome)
            self.assertEqual((outcome.code, outcome.enhanced), (451, "4.4.3"),
                             f"the new sender again, {self.OUTAGE_S - 10:.0f} s into the outage: {outcome}")
            time.sleep(max(0.0, outage_start + self.OUTAGE_S - time.monotonic()))
            self.zone.start()
            outage_end = time.monotonic()

            # The new sender retries until it is taken; no attempt bounces.
            def newcomer_accepted() -> bool:
                o = send(port, f"hello@{self.NEWCOMER}", RCPT, new_data, helo=HELO, timeout=self.REPLY_TIMEOUT_S)
                new_replies.append(o)
                if o.code // 100 == 5:
                    raise AssertionError(f"the new sender bounced after the outage: {o}")
                return o.code == 250
            wait_until(newcomer_accepted, 60, "the new sender accepted after the outage", interval_s=self.RETRY_S)

            # Traffic goes on after the outage; then wind down.
            wait_until(lambda: errors or all(accepted(d, after=outage_end) >= 3 for d in self.KNOWN), 90,
                       "known senders' traffic after the outage")
        except BaseException:
            abort.set()
            raise
        finally:
            stop.set()
            if not self.zone.running:
                self.zone.start()
            for t in threads:
                t.join(timeout=self.GIVE_UP_S + 60)
        self.assertFalse(any(t.is_alive() for t in threads), "traffic threads did not finish")
        self.assertEqual(errors, [])

        # Nothing bounced, and every message was taken in the end.
        replies = [(marker, r) for marker, e in log.items() for r in e["replies"]]
        bounced = [(m, r) for m, r in replies if r[1] // 100 == 5]
        self.assertEqual(bounced, [], "5xx replies to known senders")
        self.assertEqual([str(o) for o in new_replies if o.code // 100 == 5], [], "5xx replies to the new sender")
        unaccepted = [m for m, e in log.items() if e["accepted"] is None]
        self.assertEqual(unaccepted, [], "messages never accepted")

        # Known senders did not feel the outage: what they sent while the
        # resolver was down (after their answers had expired) was accepted
        # at once, from stale answers.
        during = [e for e in log.values() if outage_start + self.TTL_S + 1 <= e["first"] <= outage_end - 5]
        self.assertGreaterEqual(len(during), 3 * len(self.KNOWN), "traffic kept coming during the outage")
        for domain in self.KNOWN:
            self.assertTrue(any(e["domain"] == domain and e["accepted"] is not None and e["accepted"] < outage_end
                                for e in during), f"{domain} accepted during the outage")
        tempfailed = [(e["domain"], [(round(t - outage_start, 1), c, x) for t, c, x, _ in e["replies"]])
                      for e in during if len(e["replies"]) > 1]
        self.assertEqual(tempfailed, [], "known senders tempfailed during the outage (stale answers not served?)")

        # Every accepted message is in INBOX exactly once, and the verdicts
        # given from stale answers are the right ones.
        stored = mailbox_messages(self.server, USER, PASSWORD, "INBOX")
        by_id: dict[str, list[bytes]] = collections.defaultdict(list)
        for message in stored:
            for name, raw in header_fields(message):
                if name == "message-id":
                    by_id[raw.split(b":", 1)[1].strip().decode()].append(message)
        for marker, entry in log.items():
            copies = by_id.get(f"<{marker}@{entry['domain']}>", [])
            self.assertEqual(len(copies), 1, f"copies of {marker} (replies {entry['replies']})")
            results = our_auth_results(copies[0], AUTHSERV_ID)
            self.assertEqual(len(results), 1, copies[0][:600])
            for method in ("spf", "dkim", "dmarc"):
                self.assertEqual(auth_result(results[0], method), "pass",
                                 f"{method} of {marker}, first sent {entry['first'] - outage_start:.1f} s after "
                                 f"the outage began: {results[0]!r}")
        copies = by_id.get(f"<{new_marker}@{self.NEWCOMER}>", [])
        self.assertEqual(len(copies), 1, "the new sender's message, once")
        self.assertEqual(auth_result(our_auth_results(copies[0], AUTHSERV_ID)[0], "spf"), "pass")


if __name__ == "__main__":
    unittest.main()
