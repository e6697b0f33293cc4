"""Expected values for the messages under tests/data, and helpers that compare
ENVELOPE and BODYSTRUCTURE answers with them.

Sizes and line counts are computed from the files here rather than written
down, so editing a data file cannot silently leave a stale number behind.
"""

from __future__ import annotations

from typing import Any

from harness import data_file, text


def split_header(message: bytes) -> tuple[bytes, bytes]:
    """(header including the blank line, body)."""
    index = message.find(b"\r\n\r\n")
    assert index >= 0, "message without a header/body separator"
    return message[:index + 4], message[index + 4:]


def header_fields(header: bytes) -> list[tuple[str, bytes]]:
    """[(lower-case field name, whole field with continuation lines and CRLF)]."""
    fields: list[tuple[str, bytes]] = []
    # Split into lines, then fold continuation lines into their field.
    lines = header[:-2].split(b"\r\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for line in lines:
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + line + b"\r\n")
        else:
            name = line.split(b":", 1)[0].strip().decode("ascii", "replace").lower()
            fields.append((name, line + b"\r\n"))
    return fields


def select_fields(header: bytes, names: list[str], *, exclude: bool = False) -> bytes:
    """What BODY[HEADER.FIELDS (names)] (or .NOT) returns: the matching fields
    in message order, then the blank line."""
    wanted = {n.lower() for n in names}
    kept = [raw for name, raw in header_fields(header) if (name in wanted) != exclude]
    return b"".join(kept) + b"\r\n"


def multipart_parts(message: bytes, boundary: bytes) -> list[tuple[bytes, bytes]]:
    """[(part header including the blank line, part body)] of a multipart message."""
    _, body = split_header(message)
    segments = (b"\r\n" + body).split(b"\r\n--" + boundary)
    parts = []
    for segment in segments[1:]:
        if segment.startswith(b"--"):
            break
        assert segment.startswith(b"\r\n"), segment[:40]
        part = segment[2:]
        index = part.find(b"\r\n\r\n")
        parts.append((part[:index + 4], part[index + 4:]))
    return parts


def lines_of(body: bytes) -> int:
    # Every test part ends with CRLF, so "lines" has one meaning.
    assert body.endswith(b"\r\n"), "test data parts must end with CRLF"
    return body.count(b"\n")


# ---------------------------------------------------------------------------
# Normalisation: IMAP strings are case-insensitive where RFC 9051 says so
# (types, subtypes, encodings, parameter and disposition names); values keep
# their case.
# ---------------------------------------------------------------------------


def _s(value: Any) -> Any:
    if isinstance(value, bytes):
        return text(value)
    return value


def _params(value: Any) -> Any:
    if value is None:
        return None
    assert isinstance(value, list) and len(value) % 2 == 0, value
    out = []
    for name, val in zip(value[0::2], value[1::2]):
        out += [text(name).upper(), _s(val)]
    return out


def _disposition(value: Any) -> Any:
    if value is None:
        return None
    assert isinstance(value, list) and len(value) == 2, value
    return [text(value[0]).upper(), _params(value[1])]


def _deep(value: Any) -> Any:
    if isinstance(value, list):
        return [_deep(v) for v in value]
    return _s(value)


def normalize_body(value: list) -> list:
    """A BODYSTRUCTURE answer with case-insensitive parts upper-cased and
    strings turned into str."""
    if value and isinstance(value[0], list):
        parts = []
        rest = list(value)
        while rest and isinstance(rest[0], list):
            parts.append(normalize_body(rest.pop(0)))
        subtype = text(rest.pop(0)).upper()
        extension = []
        if rest:
            extension.append(_params(rest.pop(0)))
        if rest:
            extension.append(_disposition(rest.pop(0)))
        extension += [_deep(v) for v in rest]
        return parts + [subtype] + extension
    fields = list(value)
    out = [text(fields[0]).upper(), text(fields[1]).upper(), _params(fields[2]), _s(fields[3]), _s(fields[4]),
           text(fields[5]).upper(), int(text(fields[6]))]
    rest = fields[7:]
    if out[0] == "TEXT":
        out.append(int(text(rest.pop(0))))
    elif out[0] == "MESSAGE" and out[1] in ("RFC822", "GLOBAL"):
        out.append(_deep(rest.pop(0)))  # envelope
        out.append(normalize_body(rest.pop(0)))
        out.append(int(text(rest.pop(0))))
    if rest:
        out.append(_s(rest.pop(0)))  # md5
    if rest:
        out.append(_disposition(rest.pop(0)))
    out += [_deep(v) for v in rest]
    return out


def assert_body_structure(test, actual: list, expected: list, path: str = "") -> None:
    """Compares a BODYSTRUCTURE answer (normalised here) with `expected`.

    Extension data may stop early (RFC 9051's grammar makes the trailing
    extension fields optional) but only where everything left out is NIL.
    """
    if path == "":
        actual = normalize_body(actual)
    if isinstance(expected[0], list):
        # Multipart: the parts, then the subtype (the first str), then extensions.
        count = next(i for i, v in enumerate(expected) if isinstance(v, str))
        actual_count = next((i for i, v in enumerate(actual) if isinstance(v, str)), len(actual))
        test.assertEqual(actual_count, count, f"body{path or ' (top)'}: number of parts in {actual}")
        for i in range(count):
            assert_body_structure(test, actual[i], expected[i], f"{path}.{i + 1}" if path else str(i + 1))
        base = count + 1
    elif expected[0] == "MESSAGE":
        # type ... size, envelope; then the encapsulated body (its own
        # extension data may stop early too), then the line count.
        where = f"body part {path}" if path else "body (top)"
        test.assertEqual(actual[:8], expected[:8], f"{where}: basic fields and envelope")
        assert_body_structure(test, actual[8], expected[8], f"{path}.body" if path else "body")
        test.assertEqual(actual[9], expected[9], f"{where}: line count")
        base = 10
    elif expected[0] == "TEXT":
        base = 8
    else:
        base = 7
    where = f"body part {path}" if path else "body (top)"
    if expected[0] != "MESSAGE":
        test.assertEqual(actual[:base], expected[:base], f"{where}: basic fields")
    actual_ext, expected_ext = actual[base:], expected[base:]
    test.assertLessEqual(len(actual_ext), len(expected_ext), f"{where}: unexpected extension data {actual_ext}")
    test.assertEqual(actual_ext, expected_ext[:len(actual_ext)], f"{where}: extension data")
    test.assertTrue(all(v is None for v in expected_ext[len(actual_ext):]),
                    f"{where}: extension data {expected_ext[len(actual_ext):]} left out")


def normalize_envelope(value: list) -> list:
    assert isinstance(value, list) and len(value) == 10, f"ENVELOPE must have 10 fields: {value}"
    return _deep(value)


# ---------------------------------------------------------------------------
# The data files
# ---------------------------------------------------------------------------

PLAIN = data_file("plain.eml")
ALTERNATIVE = data_file("alternative.eml")
ATTACHMENT = data_file("attachment.eml")
ENCODED = data_file("encoded.eml")
BROKEN = data_file("broken.eml")
ATTACHMENT_PDF = data_file("attachment.pdf")
FORWARDED = data_file("forwarded.eml")

ALICE = ["Alice Example", None, "alice", "example.com"]


def plain_expectations() -> tuple[list, list]:
    _, body = split_header(PLAIN)
    frm = [ALICE]
    envelope = ["Tue, 05 Mar 2024 09:15:00 +0100", "Lunch on Friday?", frm, frm, frm,
                [["Bob", None, "bob", "example.org"], [None, None, "carol", "example.net"]],
                [["Dave, Jr.", None, "dave", "example.net"]], None, None, "<plain-1@example.com>"]
    structure = ["TEXT", "PLAIN", ["CHARSET", "us-ascii"], None, None, "7BIT", len(body), lines_of(body),
                 None, None, None, None]
    return envelope, structure


def alternative_expectations() -> tuple[list, list]:
    parts = multipart_parts(ALTERNATIVE, b"alt-boundary-42")
    assert len(parts) == 2
    (_, text_body), (_, html_body) = parts
    envelope = ["Wed, 06 Mar 2024 18:30:00 +0000", "Newsletter: March",
                [["Carol Writer", None, "carol", "example.net"]],
                [["Newsletter Robot", None, "robot", "lists.example.net"]],
                [[None, None, "replies", "example.net"]],
                [[None, None, "alice", "example.com"]], None, None, None, "<alt-1@example.net>"]
    structure = [
        ["TEXT", "PLAIN", ["CHARSET", "utf-8"], None, None, "QUOTED-PRINTABLE", len(text_body), lines_of(text_body),
         None, None, None, None],
        ["TEXT", "HTML", ["CHARSET", "utf-8"], None, None, "7BIT", len(html_body), lines_of(html_body),
         None, None, None, None],
        "ALTERNATIVE", ["BOUNDARY", "alt-boundary-42"], None, None, None,
    ]
    return envelope, structure


def attachment_expectations() -> tuple[list, list]:
    parts = multipart_parts(ATTACHMENT, b"mixed-7f3a")
    assert len(parts) == 2
    (_, text_body), (_, pdf_body) = parts
    dave = [["Dave", None, "dave", "example.net"]]
    envelope = ["Thu, 07 Mar 2024 08:00:00 -0500", "Quarterly report", dave, dave, dave, [ALICE], None, None,
                "<plain-1@example.com>", "<att-1@example.net>"]
    structure = [
        ["TEXT", "PLAIN", ["CHARSET", "us-ascii"], None, None, "7BIT", len(text_body), lines_of(text_body),
         None, None, None, None],
        ["APPLICATION", "PDF", ["NAME", "report.pdf"], None, None, "BASE64", len(pdf_body),
         None, ["ATTACHMENT", ["FILENAME", "report.pdf"]], None, None],
        "MIXED", ["BOUNDARY", "mixed-7f3a"], None, None, None,
    ]
    return envelope, structure


ENCODED_SUBJECT = "=?UTF-8?B?R3LDvMOfZSBhdXMgTcO8bmNoZW4=?= =?UTF-8?Q?_und_K=C3=B6ln?="


def encoded_expectations() -> tuple[list, list]:
    _, body = split_header(ENCODED)
    joerg = [["=?UTF-8?Q?J=C3=B6rg_M=C3=BCller?=", None, "joerg", "example.de"]]
    envelope = ["Fri, 08 Mar 2024 11:00:00 +0100", ENCODED_SUBJECT, joerg, joerg, joerg,
                [["=?ISO-8859-1?Q?Andr=E9?=", None, "andre", "example.fr"], [None, None, "alice", "example.com"]],
                None, None, None, "<enc-1@example.de>"]
    structure = ["TEXT", "PLAIN", ["CHARSET", "utf-8"], None, None, "BASE64", len(body), lines_of(body),
                 None, None, None, None]
    return envelope, structure


def forwarded_expectations() -> tuple[list, list]:
    parts = multipart_parts(FORWARDED, b"fwd-boundary")
    assert len(parts) == 2
    (_, text_body), (_, inner) = parts
    assert inner == PLAIN, "forwarded.eml encapsulates plain.eml unchanged"
    eve = [["Eve", None, "eve", "example.org"]]
    envelope = ["Fri, 08 Mar 2024 15:00:00 +0000", "Fwd: Lunch on Friday?", eve, eve, eve,
                [[None, None, "alice", "example.com"]], None, None, None, "<fwd-1@example.org>"]
    inner_envelope, inner_structure = plain_expectations()
    structure = [
        ["TEXT", "PLAIN", ["CHARSET", "us-ascii"], None, None, "7BIT", len(text_body), lines_of(text_body),
         None, None, None, None],
        ["MESSAGE", "RFC822", None, None, None, "7BIT", len(inner), inner_envelope, inner_structure,
         lines_of(inner), None, ["INLINE", None], None, None],
        "MIXED", ["BOUNDARY", "fwd-boundary"], None, None, None,
    ]
    return envelope, structure
