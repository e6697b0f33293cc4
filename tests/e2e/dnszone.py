"""A real DNS server on loopback for the end-to-end tests, and DKIM keys and
signatures made by an independent implementation.

* `DnsZone` runs Debian's dnsmasq (package dnsmasq-base) in the foreground on
  a free 127.0.0.1 port, UDP and TCP on the same port, answering for the
  records a test publishes: TXT (split into strings of at most 255 bytes, as
  DKIM keys need), MX, A and PTR. Every other name gets NXDOMAIN (dnsmasq's
  `local=`), a name that has records of other types only gets NODATA, and no
  query ever leaves the machine. `stop()` and `start()` (or `restart()`)
  keep the port, so a test can take the resolver away and bring it back.
* `DkimKey` is an RSA-2048 key made by `openssl genrsa`, with its
  `v=DKIM1; k=rsa; p=...` record, and signs (DKIM) and seals (ARC) messages
  with dkimpy (`import dkim`, PyPI), which is not the server's
  implementation.

The `DnsZoneSelfCheck` test case at the end checks all of this without
Postern: dnspython queries the running dnsmasq, and dkimpy verifies its own
signatures with keys fetched from it. Run it with
`cd tests/e2e && python3 -m unittest -v dnszone`; test_smtp_auth.py runs it
too.

Needs dnsmasq, openssl, and from PyPI dkimpy, dnspython and authres (ARC);
`.ci/run` installs them.
"""

from __future__ import annotations

import atexit
import base64
import ipaddress
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
from pathlib import Path

import dkim
import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
# One query attempt of the helper's own lookups.
QUERY_TIMEOUT_S = 2.0

# The headers `DkimKey.sign` signs unless told otherwise.
DEFAULT_SIGNED_HEADERS = [b"from", b"to", b"subject", b"date", b"message-id"]

_LIVE_ZONES: "set[DnsZone]" = set()


@atexit.register
def _kill_leftovers() -> None:
    for zone in list(_LIVE_ZONES):
        try:
            zone.kill()
        except Exception:
            pass


def _check_name(name: str) -> str:
    name = name.rstrip(".")
    if not name or any(c in name for c in ',"\\/ \t\r\n#') or not name.isascii():
        raise ValueError(f"not a DNS name dnsmasq's configuration can hold: {name!r}")
    return name


def split_txt(text: str | bytes) -> list[bytes]:
    """The character-strings of one TXT record: at most 255 bytes each."""
    data = text.encode("ascii") if isinstance(text, str) else text
    if not data:
        return [b""]
    return [data[i:i + 255] for i in range(0, len(data), 255)]


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _free_port() -> int:
    """A 127.0.0.1 port free for both UDP and TCP (dnsmasq binds both),
    below the ephemeral range: while dnsmasq is stopped for an outage test,
    no client socket (the server's resolver sends every query from a new
    ephemeral port) can take it, so the restart finds it free."""
    rng = random.Random()
    high = max(2048, min(_ephemeral_low(), 65536))
    for _ in range(200):
        port = rng.randrange(1024 + (high - 1024) // 2, high)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                tcp.bind(("127.0.0.1", port))
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no loopback port free for both UDP and TCP")


class DnsZoneError(AssertionError):
    """dnsmasq did not start, answer or stop as it must."""


class DnsZone:
    """dnsmasq on 127.0.0.1:`port` holding the records a test publishes.

    Records added while dnsmasq runs take effect at the next `start()` or
    `restart()` (dnsmasq reads them from its configuration file). `ttl` is
    the TTL of every TXT, MX and PTR answer (`--local-ttl`); `a()` can give
    an A record its own.

        with DnsZone(ttl=5) as zone:       # or zone.start() ... zone.stop()
            zone.txt("sender.test", "v=spf1 ip4:127.0.0.0/8 -all")
            zone.restart()                 # the new record is served
            config = f'servers = ["{zone.address}"]'
    """

    def __init__(self, ttl: int = 5) -> None:
        if ttl < 0:
            raise ValueError("ttl must be >= 0")
        self.ttl = ttl
        self.tmp = Path(tempfile.mkdtemp(prefix="postern-dns-"))
        self.conf_path = self.tmp / "dnsmasq.conf"
        self.log_path = self.tmp / "dnsmasq.log"
        self.output_path = self.tmp / "dnsmasq.out"
        self.pid_path = self.tmp / "dnsmasq.pid"
        self.port: int | None = None
        self.process: subprocess.Popen | None = None
        self._lines: list[str] = []

    # -- records -----------------------------------------------------------

    def txt(self, name: str, text: str | bytes) -> "DnsZone":
        """One TXT record; text longer than 255 bytes becomes several strings
        of one record (RFC 7208 3.3, RFC 6376 3.6.2.2), which the reader joins."""
        strings = split_txt(text)
        for s in strings:
            if any(b in s for b in b'"\\') or any(b < 0x20 or b > 0x7E for b in s):
                raise ValueError(f"TXT text must be printable ASCII without quotes or backslashes: {s!r}")
        quoted = ",".join('"' + s.decode("ascii") + '"' for s in strings)
        self._lines.append(f"txt-record={_check_name(name)},{quoted}")
        return self

    def a(self, name: str, ip: str, ttl: int | None = None) -> "DnsZone":
        """One A record (dnsmasq's host-record, which takes its own TTL)."""
        ipaddress.IPv4Address(ip)
        line = f"host-record={_check_name(name)},{ip}"
        if ttl is not None:
            line += f",{int(ttl)}"
        self._lines.append(line)
        return self

    def mx(self, name: str, host: str, pref: int = 10) -> "DnsZone":
        self._lines.append(f"mx-host={_check_name(name)},{_check_name(host)},{int(pref)}")
        return self

    def ptr(self, ip: str, name: str) -> "DnsZone":
        """The PTR record of `ip` (its in-addr.arpa name) pointing at `name`."""
        reverse = ipaddress.ip_address(ip).reverse_pointer
        self._lines.append(f"ptr-record={reverse},{_check_name(name)}")
        return self

    # -- lifecycle ---------------------------------------------------------

    @property
    def address(self) -> str:
        """"127.0.0.1:PORT", the form `[dns] servers` takes."""
        if self.port is None:
            raise DnsZoneError("the zone has no port yet: start() it first")
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> "DnsZone":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def _config_text(self) -> str:
        lines = [
            "# Written by tests/e2e/dnszone.py.",
            # Authoritative-style: answer from the records below; any other
            # name under .test (and, with #, anywhere) is NXDOMAIN rather
            # than REFUSED, and nothing is forwarded.
            "local=/test/",
            "local=/#/",
            *self._lines,
        ]
        return "\n".join(lines) + "\n"

    def _command(self, port: int) -> list[str]:
        command = [
            DNSMASQ,
            "--keep-in-foreground",
            f"--conf-file={self.conf_path}",
            "--no-resolv",
            "--no-hosts",
            "--no-poll",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            f"--port={port}",
            f"--local-ttl={self.ttl}",
            f"--pid-file={self.pid_path}",
            f"--log-facility={self.log_path}",
            "--log-queries",
        ]
        if os.geteuid() == 0:
            # dnsmasq started as root would drop to "nobody", which cannot
            # write the log in our temporary directory.
            command += ["--user=root", "--group=root"]
        return command

    def start(self) -> "DnsZone":
        """Starts dnsmasq (on the zone's port if it had one) and waits until
        it answers over UDP and TCP."""
        if self.running:
            raise DnsZoneError("dnsmasq is already running")
        if not os.path.exists(DNSMASQ):
            raise DnsZoneError("dnsmasq is needed (apt-get install -y dnsmasq-base; .ci/run does it)")
        self.conf_path.write_text(self._config_text(), encoding="ascii")
        # A port of our own choosing may be taken between the probe and
        # dnsmasq's bind; then try another. A restart keeps its port.
        fixed = self.port is not None
        for _ in range(1 if fixed else 5):
            port = self.port if fixed else _free_port()
            with open(self.output_path, "ab") as output:
                process = subprocess.Popen(self._command(port), stdin=subprocess.DEVNULL,
                                           stdout=output, stderr=output)
            self.process = process
            _LIVE_ZONES.add(self)
            deadline = time.monotonic() + START_TIMEOUT_S
            while process.poll() is None and time.monotonic() < deadline:
                if self._answers(port, tcp=False) and self._answers(port, tcp=True):
                    self.port = port
                    return self
                time.sleep(0.02)
            if process.poll() is None:
                self.kill()
                raise DnsZoneError(f"dnsmasq did not answer on port {port} within {START_TIMEOUT_S}s\n{self.output()}")
            _LIVE_ZONES.discard(self)
        raise DnsZoneError(f"dnsmasq exited with {self.process.returncode} at start\n{self.output()}")

    @staticmethod
    def _answers(port: int, *, tcp: bool) -> bool:
        query = dns.message.make_query("postern-zone-ready.test", "TXT")
        try:
            if tcp:
                dns.query.tcp(query, "127.0.0.1", port=port, timeout=0.5)
            else:
                dns.query.udp(query, "127.0.0.1", port=port, timeout=0.5)
            return True
        except (OSError, dns.exception.DNSException):
            return False

    def stop(self) -> None:
        """SIGTERM and wait: from here on nothing answers on the port (UDP
        queries get ICMP port unreachable, TCP connections are refused)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.kill()
                raise DnsZoneError(f"dnsmasq did not exit within {STOP_TIMEOUT_S}s of SIGTERM")
        _LIVE_ZONES.discard(self)

    def restart(self) -> "DnsZone":
        """stop() then start() on the same port (and with the records as they are now)."""
        self.stop()
        return self.start()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT_S)
        _LIVE_ZONES.discard(self)

    def close(self) -> None:
        """Stops dnsmasq and removes its directory (unless POSTERN_E2E_KEEP)."""
        try:
            self.stop()
        finally:
            self.kill()
            if not os.environ.get("POSTERN_E2E_KEEP"):
                shutil.rmtree(self.tmp, ignore_errors=True)

    def output(self) -> str:
        """dnsmasq's own stdout/stderr (start-up errors land here)."""
        try:
            return self.output_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_text(self) -> str:
        """dnsmasq's log: one line per query and answer (--log-queries)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- lookups through the running dnsmasq (dnspython) --------------------

    def query(self, name: str, rdtype: str = "TXT", *, tcp: bool = False,
              timeout: float = QUERY_TIMEOUT_S) -> dns.message.Message:
        if self.port is None:
            raise DnsZoneError("the zone has no port yet: start() it first")
        message = dns.message.make_query(name, rdtype)
        if tcp:
            return dns.query.tcp(message, "127.0.0.1", port=self.port, timeout=timeout)
        return dns.query.udp(message, "127.0.0.1", port=self.port, timeout=timeout)

    def get_txt(self, name: str | bytes, timeout: float = QUERY_TIMEOUT_S) -> bytes | None:
        """The first TXT record of `name`, its strings joined, or None: the
        `dnsfunc` dkimpy's verify() and arc_verify() take."""
        if isinstance(name, bytes):
            name = name.decode("ascii")
        response = self.query(name, "TXT", timeout=timeout)
        if response.flags & dns.flags.TC:
            response = self.query(name, "TXT", tcp=True, timeout=timeout)
        for rrset in response.answer:
            if rrset.rdtype == dns.rdatatype.TXT:
                return b"".join(next(iter(rrset)).strings)
        return None


# --------------------------------------------------------------------------
# DKIM and ARC with dkimpy
# --------------------------------------------------------------------------


class DkimKey:
    """An RSA key pair for DKIM (default 2048 bits), made by openssl; signs
    and seals with dkimpy."""

    def __init__(self, bits: int = 2048) -> None:
        generated = subprocess.run([OPENSSL, "genrsa", "-traditional", str(bits)], capture_output=True, timeout=60)
        if generated.returncode != 0:  # OpenSSL 1.1 has no -traditional and writes PKCS#1 anyway
            generated = subprocess.run([OPENSSL, "genrsa", str(bits)], capture_output=True, timeout=60)
        if generated.returncode != 0 or b"BEGIN RSA PRIVATE KEY" not in generated.stdout:
            raise RuntimeError(f"openssl genrsa failed: {generated.stderr.decode(errors='replace')}")
        # dkimpy wants PKCS#1 (RFC 8017 RSAPrivateKey) PEM.
        self.private_pem: bytes = generated.stdout
        public = subprocess.run([OPENSSL, "rsa", "-pubout", "-outform", "DER"], input=self.private_pem,
                                capture_output=True, timeout=60)
        if public.returncode != 0:
            raise RuntimeError(f"openssl rsa -pubout failed: {public.stderr.decode(errors='replace')}")
        # SubjectPublicKeyInfo, as RFC 6376 3.6.1 says p= holds.
        self.public_b64: str = base64.b64encode(public.stdout).decode("ascii")

    @property
    def txt(self) -> str:
        """The key record's text: `v=DKIM1; k=rsa; p=...`."""
        return f"v=DKIM1; k=rsa; p={self.public_b64}"

    def publish(self, zone: DnsZone, selector: str, domain: str) -> "DkimKey":
        """Adds `selector._domainkey.domain TXT <key record>` to `zone`."""
        zone.txt(f"{selector}._domainkey.{domain}", self.txt)
        return self

    def sign(self, message: bytes, selector: str, domain: str, headers: list[bytes] | None = None,
             canonicalize: tuple[bytes, bytes] = (b"relaxed", b"relaxed")) -> bytes:
        """The message with a DKIM-Signature (rsa-sha256, d=`domain`,
        s=`selector`) prepended."""
        signature = dkim.sign(message, selector.encode(), domain.encode(), self.private_pem,
                              include_headers=list(headers or DEFAULT_SIGNED_HEADERS), canonicalize=canonicalize)
        if not signature.startswith(b"DKIM-Signature:"):
            raise RuntimeError(f"dkimpy gave no signature: {signature!r}")
        return signature + message

    def arc_seal(self, message: bytes, selector: str, domain: str, srv_id: str,
                 headers: list[bytes] | None = None) -> bytes:
        """The message with the next ARC set (ARC-Seal, ARC-Message-Signature,
        ARC-Authentication-Results) prepended, as a forwarder `srv_id` would
        add it. The message must carry that forwarder's own
        `Authentication-Results: <srv_id>; ...` (dkimpy copies it into the
        ARC-Authentication-Results and takes cv= from its arc= result)."""
        arc_set = dkim.arc_sign(message, selector.encode(), domain.encode(), self.private_pem, srv_id.encode(),
                                include_headers=list(headers or DEFAULT_SIGNED_HEADERS))
        if len(arc_set) != 3:
            raise RuntimeError(f"dkimpy made no ARC set ({arc_set!r}): "
                               f"is there an Authentication-Results: {srv_id}; ...?")
        return b"".join(arc_set) + message


# --------------------------------------------------------------------------
# Self-check: dnsmasq and dkimpy without Postern
# --------------------------------------------------------------------------


class DnsZoneSelfCheck(unittest.TestCase):
    """The DNS side of the authentication tests, checked with dnspython and
    dkimpy only: if these fail, a failure of test_smtp_auth.py says nothing
    about the server."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.key = DkimKey()
        cls.forwarder_key = DkimKey()
        cls.zone = DnsZone(ttl=7)
        zone = cls.zone
        zone.txt("sender.test", "v=spf1 ip4:127.0.0.0/8 -all")
        zone.mx("sender.test", "mx.sender.test", 10)
        zone.a("mx.sender.test", "127.0.0.6")
        zone.a("aonly.test", "127.0.0.5", ttl=3)
        zone.txt("_dmarc.sender.test", "v=DMARC1; p=reject")
        zone.ptr("127.0.0.1", "client.test")
        cls.key.publish(zone, "sel1", "signed.test")
        cls.forwarder_key.publish(zone, "arc1", "list.test")
        try:
            zone.start()
        except BaseException:
            zone.close()
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        cls.zone.close()

    def answer(self, response: dns.message.Message) -> list[str]:
        return [rr.to_text() for rrset in response.answer for rr in rrset]

    def test_records_ttl_nxdomain_and_nodata(self):
        zone = self.zone
        for tcp in (False, True):
            with self.subTest(tcp=tcp):
                r = zone.query("sender.test", "TXT", tcp=tcp)
                self.assertEqual(r.rcode(), dns.rcode.NOERROR)
                self.assertEqual(self.answer(r), ['"v=spf1 ip4:127.0.0.0/8 -all"'])
                self.assertEqual(r.answer[0].ttl, 7, "--local-ttl")
        r = zone.query("sender.test", "MX")
        self.assertEqual(self.answer(r), ["10 mx.sender.test."])
        self.assertEqual(self.answer(zone.query("mx.sender.test", "A")), ["127.0.0.6"])
        r = zone.query("aonly.test", "A")
        self.assertEqual((self.answer(r), r.answer[0].ttl), (["127.0.0.5"], 3), "host-record's own TTL")
        self.assertEqual(self.answer(zone.query("1.0.0.127.in-addr.arpa", "PTR")), ["client.test."])
        # NODATA: the name exists, with other types only.
        for name, rdtype in (("aonly.test", "TXT"), ("sender.test", "A"), ("_domainkey.signed.test", "TXT")):
            r = zone.query(name, rdtype)
            self.assertEqual((dns.rcode.to_text(r.rcode()), r.answer), ("NOERROR", []), (name, rdtype))
        # NXDOMAIN, not REFUSED, for unknown names under .test and anywhere else.
        for name, rdtype in (("nobody.test", "TXT"), ("_dmarc.nobody.test", "TXT"), ("x.y.nobody.test", "A"),
                             ("example.com", "TXT"), ("2.0.0.127.in-addr.arpa", "PTR")):
            r = zone.query(name, rdtype)
            self.assertEqual(dns.rcode.to_text(r.rcode()), "NXDOMAIN", (name, rdtype))

    def test_long_txt_is_split_into_strings(self):
        r = self.zone.query("sel1._domainkey.signed.test", "TXT")
        strings = list(r.answer[0])[0].strings
        self.assertGreater(len(strings), 1)
        self.assertTrue(all(len(s) <= 255 for s in strings))
        self.assertEqual(b"".join(strings).decode(), self.key.txt)
        self.assertGreater(len(self.key.txt), 255)

    def test_dkim_signature_verifies_through_the_zone(self):
        message = (b"From: a@signed.test\r\nTo: b@example.org\r\nSubject: self-check\r\n"
                   b"Date: Mon, 04 Mar 2024 10:00:00 +0000\r\nMessage-ID: <self-check@signed.test>\r\n\r\n"
                   b"Body line.\r\n")
        signed = self.key.sign(message, "sel1", "signed.test")
        self.assertTrue(signed.startswith(b"DKIM-Signature: v=1; a=rsa-sha256;"), signed[:80])
        self.assertTrue(signed.endswith(message))
        self.assertTrue(dkim.verify(signed, dnsfunc=self.zone.get_txt), "dkimpy verifies with the key from dnsmasq")
        self.assertFalse(dkim.verify(signed.replace(b"Body line.", b"Body line!"), dnsfunc=self.zone.get_txt),
                         "an altered body fails")
        other = DkimKey().sign(message, "sel1", "signed.test")
        self.assertFalse(dkim.verify(other, dnsfunc=self.zone.get_txt), "a signature by another key fails")
        unpublished = self.key.sign(message, "nosuch", "signed.test")
        self.assertFalse(dkim.verify(unpublished, dnsfunc=self.zone.get_txt), "no key record: no pass")

    def test_arc_seal_verifies_through_the_zone(self):
        message = (b"Authentication-Results: list.test; dkim=pass header.d=signed.test; arc=none\r\n"
                   b"From: a@signed.test\r\nTo: list@list.test\r\nSubject: [list] self-check\r\n"
                   b"Date: Mon, 04 Mar 2024 10:00:00 +0000\r\nMessage-ID: <arc-check@signed.test>\r\n\r\n"
                   b"Body line.\r\n-- \r\nlist footer\r\n")
        sealed = self.forwarder_key.arc_seal(message, "arc1", "list.test", "list.test")
        self.assertTrue(sealed.startswith(b"ARC-Seal: i=1;"), sealed[:60])
        cv, _, reason = dkim.arc_verify(sealed, dnsfunc=self.zone.get_txt)
        self.assertEqual(cv, dkim.CV_Pass, reason)
        cv, _, reason = dkim.arc_verify(sealed.replace(b"list footer", b"LIST FOOTER"), dnsfunc=self.zone.get_txt)
        self.assertEqual(cv, dkim.CV_Fail, reason)

    def test_stop_and_restart_keep_the_port(self):
        zone = DnsZone(ttl=1)
        self.addCleanup(zone.close)
        zone.txt("restart.test", "first")
        zone.start()
        port = zone.port
        self.assertEqual(zone.get_txt("restart.test"), b"first")
        zone.stop()
        with self.assertRaises((OSError, dns.exception.Timeout)):
            zone.query("restart.test", "TXT", timeout=0.5)
        with self.assertRaises((OSError, dns.exception.Timeout)):
            zone.query("restart.test", "TXT", tcp=True, timeout=0.5)
        zone.txt("added.test", "second")
        zone.start()
        self.assertEqual(zone.port, port)
        self.assertEqual(zone.get_txt("restart.test"), b"first")
        self.assertEqual(zone.get_txt("added.test"), b"second", "records added while stopped are served")
        zone.restart()
        self.assertEqual(zone.port, port)
        self.assertEqual(zone.get_txt("added.test"), b"second")


if __name__ == "__main__":
    unittest.main()
