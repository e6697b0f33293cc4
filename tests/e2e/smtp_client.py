"""What test_smtp_auth.py and test_spam.py share: one SMTP mail transaction
through Python's smtplib from any loopback source address, the replies it
got, and reading the stored messages and the header fields the server added.
"""

from __future__ import annotations

import re
import smtplib
from dataclasses import dataclass, field

from harness import Imap, Server

SMTP_TIMEOUT_S = 30.0

# Header fields the server may put in front of the bytes it was given over
# SMTP: its trace fields and its verdicts. Their order is not tested.
ADDED_FIELDS = {"return-path", "received", "received-spf", "authentication-results", "x-postern-spam"}


@dataclass
class Outcome:
    """The replies of one mail transaction, up to the first refusal."""

    greeting: tuple[int, str]
    mail: tuple[int, str] | None = None
    rcpt: list[tuple[int, str]] = field(default_factory=list)
    # The reply to the DATA command when it was not 354, else the reply to
    # the message (after the final dot).
    data: tuple[int, str] | None = None

    @property
    def final(self) -> tuple[int, str]:
        """The reply that decided the message: the first refusal, or the
        reply after the data."""
        if self.greeting[0] != 220:
            return self.greeting
        if self.mail is None or self.mail[0] != 250:
            return self.mail or (0, "no MAIL reply")
        if not any(code // 100 == 2 for code, _ in self.rcpt):
            return next((r for r in self.rcpt if r[0] // 100 != 2), (0, "no RCPT"))
        return self.data or (0, "no DATA reply")

    @property
    def stage(self) -> str:
        """Where the transaction ended: greeting, mail, rcpt or data."""
        if self.greeting[0] != 220:
            return "greeting"
        if self.mail is None or self.mail[0] != 250:
            return "mail"
        if not any(code // 100 == 2 for code, _ in self.rcpt):
            return "rcpt"
        return "data"

    @property
    def code(self) -> int:
        return self.final[0]

    @property
    def enhanced(self) -> str:
        """The enhanced status code (RFC 3463) at the start of the final reply's text."""
        return enhanced(self.final[1])

    @property
    def accepted(self) -> bool:
        return self.code == 250

    def __str__(self) -> str:
        return f"{self.code} {self.final[1]!r} at {self.stage}"


def enhanced(text: str) -> str:
    m = re.match(r"\s*([245]\.\d{1,3}\.\d{1,3})\b", text)
    return m.group(1) if m else ""


def _reply(pair: tuple[int, bytes | str]) -> tuple[int, str]:
    code, text = pair
    return code, text.decode("utf-8", "replace") if isinstance(text, bytes) else text


def send(port: int, sender: str, rcpts: str | list[str], message: bytes, *, source: str | None = None,
         helo: str = "client.test", mail_options: list[str] | None = None,
         timeout: float = SMTP_TIMEOUT_S) -> Outcome:
    """One transaction on a new connection: EHLO `helo`, MAIL, RCPT each, DATA
    (smtplib dot-stuffs), QUIT. `source` is the client's address (anything
    in 127.0.0.0/8 is loopback on Linux). Returns every reply; refusals are
    results, not exceptions."""
    if isinstance(rcpts, str):
        rcpts = [rcpts]
    client = smtplib.SMTP(local_hostname=helo, timeout=timeout,
                          source_address=(source, 0) if source else None)
    try:
        try:
            outcome = Outcome(_reply(client.connect("127.0.0.1", port)))
        except smtplib.SMTPConnectError as error:
            return Outcome((error.smtp_code, error.smtp_error.decode("utf-8", "replace")))
        code, text = _reply(client.ehlo(helo))
        if code != 250:
            raise AssertionError(f"EHLO refused: {code} {text}")
        outcome.mail = _reply(client.mail(sender, mail_options or []))
        if outcome.mail[0] != 250:
            return outcome
        outcome.rcpt = [_reply(client.rcpt(r)) for r in rcpts]
        if not any(code // 100 == 2 for code, _ in outcome.rcpt):
            return outcome
        try:
            outcome.data = _reply(client.data(message))
        except smtplib.SMTPDataError as error:
            outcome.data = (error.smtp_code, error.smtp_error.decode("utf-8", "replace"))
        return outcome
    finally:
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            pass
        client.close()


# --------------------------------------------------------------------------
# Stored messages
# --------------------------------------------------------------------------


def mailbox_messages(server: Server, user: str, password: str, mailbox: str = "INBOX",
                     marker: str | bytes | None = None) -> list[bytes]:
    """BODY[] of every message in `mailbox` (those containing `marker`, if
    given); [] when the mailbox does not exist."""
    if isinstance(marker, str):
        marker = marker.encode()
    client = Imap(server.imap_port)
    try:
        client.login(user, password).ok()
        status = client.command(f'STATUS "{mailbox}" (MESSAGES)')
        if status.status != "OK":
            return []
        client.select(mailbox, readonly=True).ok()
        if client.status(mailbox, "MESSAGES")["MESSAGES"] == 0:
            return []
        found = [v["BODY[]"] for v in client.fetch("1:*", "BODY.PEEK[]").values()]
        return [m for m in found if marker is None or marker in m]
    finally:
        client.close()


def header_fields(message: bytes) -> list[tuple[str, bytes]]:
    """(lower-case name, the whole field with its continuation lines and
    CRLFs) for each field of the header section."""
    end = message.find(b"\r\n\r\n")
    head = message[:end + 2] if end >= 0 else message
    fields: list[tuple[str, bytes]] = []
    for line in re.findall(rb"[^\r\n]*\r\n", head):
        if line[:1] in (b" ", b"\t") and fields:
            name, raw = fields[-1]
            fields[-1] = (name, raw + line)
        else:
            fields.append((line.split(b":", 1)[0].strip().lower().decode("ascii", "replace"), line))
    return fields


def field_value(raw: bytes) -> str:
    """A field's value, unfolded, without its name."""
    value = raw.split(b":", 1)[1]
    return re.sub(r"\r\n(?=[ \t])", "", value.decode("utf-8", "replace")).strip()


def our_auth_results(message: bytes, authserv_id: str) -> list[str]:
    """The values of the Authentication-Results fields whose authserv-id is `authserv_id`."""
    out = []
    for name, raw in header_fields(message):
        if name == "authentication-results":
            value = field_value(raw)
            if re.match(rf"{re.escape(authserv_id)}\s*(;|$)", value, re.IGNORECASE):
                out.append(value)
    return out


def auth_result(value: str, method: str) -> str | None:
    """The result of `method` (spf, dkim, dmarc, arc) in an
    Authentication-Results value, e.g. "pass"; None when absent."""
    m = re.search(rf"(?:^|[;\s]){method}\s*=\s*(\w+)", value, re.IGNORECASE)
    return m.group(1).lower() if m else None


def auth_results_all(value: str, method: str) -> list[str]:
    return [r.lower() for r in re.findall(rf"(?:^|[;\s]){method}\s*=\s*(\w+)", value, re.IGNORECASE)]


@dataclass
class SpamVerdict:
    score: float
    action: str
    rules: str
    raw: str


def spam_verdicts(message: bytes) -> list[SpamVerdict]:
    """Every X-Postern-Spam field: score=<float>; action=...; rules=..."""
    out = []
    for name, raw in header_fields(message):
        if name != "x-postern-spam":
            continue
        value = field_value(raw)
        score = re.search(r"\bscore=(-?\d+(?:\.\d+)?)", value)
        action = re.search(r"\baction=(\w+)", value)
        rules = re.search(r"\brules=(.*)$", value)
        if not (score and action and rules):
            raise AssertionError(f"X-Postern-Spam not of the form score=..; action=..; rules=..: {value!r}")
        out.append(SpamVerdict(float(score.group(1)), action.group(1), rules.group(1).strip(), value))
    return out


def split_added(stored: bytes, original: bytes) -> list[tuple[str, bytes]]:
    """Requires that `stored` is fields the server added followed by exactly
    `original`; returns the added fields."""
    if not stored.endswith(original):
        raise AssertionError(f"the stored message does not end with the bytes sent:\n"
                             f"stored:   {stored[:1500]!r}\nexpected: {original[:1500]!r}")
    prefix = stored[:len(stored) - len(original)]
    fields = header_fields(prefix + b"\r\n")
    if b"".join(raw for _, raw in fields) != prefix:
        raise AssertionError(f"what precedes the message is not header fields: {prefix!r}")
    extra = [name for name, _ in fields if name not in ADDED_FIELDS]
    if extra:
        raise AssertionError(f"unexpected fields added in front of the message: {extra} in {prefix!r}")
    return fields
