#!/usr/bin/env python3
"""Writes the large hostile messages of the corpus, which are generated
rather than committed (each is hundreds of kilobytes to a megabyte and says
nothing to a reader that its recipe does not say better).

    python3 generate.py OUTDIR

Output is deterministic: the same bytes on every run and every machine (no
randomness, no dates, no environment). `tests/e2e/test_hostile.py` runs this
into a temporary directory and feeds the result through the server with the
committed files. Each recipe below says what it attacks; README.md lists
them with the committed ones.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

MIB = 1024 * 1024

HEAD = (b"From: Mallory <mallory@example.net>\r\n"
        b"To: victim@example.org\r\n"
        b"Date: Mon, 04 Mar 2024 10:00:00 +0000\r\n")


def header_line_1mb() -> bytes:
    """One Subject line of 1 MiB, no folding: line-length limits in the
    header scanner, ENVELOPE as a 1 MiB literal, base-subject and SEARCH."""
    words = b"findme-long-subject " + b"a" * (MIB - 20)
    return HEAD + b"Subject: " + words + b"\r\n\r\nbody\r\n"


def multipart_nested_200() -> bytes:
    """multipart/mixed nested 200 deep, each level with its own boundary:
    recursion depth in the part tree, BODYSTRUCTURE rendering and section
    numbering (the server describes 32 levels and treats the rest as a leaf)."""
    depth = 200
    out = [HEAD, b"Subject: multipart nested 200 deep\r\nMIME-Version: 1.0\r\n"]
    for level in range(depth):
        out.append(b"Content-Type: multipart/mixed; boundary=\"level-%d\"\r\n\r\n--level-%d\r\n" % (level, level))
    out.append(b"Content-Type: text/plain\r\n\r\nfindme-deepest-part\r\n")
    for level in reversed(range(depth)):
        out.append(b"--level-%d--\r\n" % level)
    return b"".join(out)


def parts_5000() -> bytes:
    """5,000 text parts in one multipart: the part-count limit (1,000 are
    described), BODYSTRUCTURE size, SEARCH BODY over every part."""
    out = [HEAD, b"Subject: five thousand parts\r\nMIME-Version: 1.0\r\n"
                 b"Content-Type: multipart/mixed; boundary=p\r\n\r\n"]
    for index in range(5000):
        out.append(b"--p\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % index)
    out.append(b"--p--\r\n")
    return b"".join(out)


def headers_20000() -> bytes:
    """20,000 header fields: the header-field cache limit (1,000 fields are
    cached, SEARCH HEADER must fall back to the message), ENVELOPE of the
    first occurrence, header scanning cost."""
    out = [HEAD, b"Subject: twenty thousand header fields\r\n"]
    for index in range(20000):
        out.append(b"X-Field-%d: value %d\r\n" % (index, index))
    out.append(b"X-Last-Field: findme-last-header\r\n\r\nbody\r\n")
    return b"".join(out)


def received_1000() -> bytes:
    """1,000 Received fields, each with encoded words (the incident of the
    integrity issue, a thousand times)."""
    out = []
    for index in range(1000):
        out.append(b"Received: from =?UTF-8?B?w7xiZXI=?= hop%d.example (=?UTF-8?Q?h=C3=B6st?= [192.0.2.%d])\r\n"
                   b"\tby hop%d.example with =?utf-8?q?ESMTP?= id %d;\r\n"
                   b"\tMon, 04 Mar 2024 09:00:00 +0000\r\n" % (index, index % 256, index + 1, index))
    out.append(HEAD + b"Subject: a thousand Received fields with encoded words\r\n\r\nbody\r\n")
    return b"".join(out)


def rfc822_nested_300() -> bytes:
    """message/rfc822 nested 300 deep: an ENVELOPE and a BODYSTRUCTURE per
    level, recursion in the part tree."""
    out = [HEAD, b"Subject: level 0\r\nMIME-Version: 1.0\r\n"]
    for level in range(1, 301):
        out.append(b"Content-Type: message/rfc822\r\n\r\nSubject: level %d\r\n" % level)
    out.append(b"Content-Type: text/plain\r\n\r\nfindme-innermost\r\n")
    return b"".join(out)


def base64_line_1mb() -> bytes:
    """A base64 body of 1 MiB on one line, without a line break: BINARY
    decoding and line scanning of a long body line."""
    chunk = b"QUJDRA=="  # "ABCD" with padding, repeated: padding in the middle
    line = (chunk * (MIB // len(chunk)))
    return (HEAD + b"Subject: one base64 line of 1 MiB\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + line + b"\r\n")


def missing_boundaries_20000() -> bytes:
    """20,000 multiparts whose boundaries never appear, inside one multipart:
    the quadratic case of naive part scanners (each rescans the rest)."""
    out = [HEAD, b"Subject: twenty thousand parts with missing boundaries\r\nMIME-Version: 1.0\r\n"
                 b"Content-Type: multipart/mixed; boundary=o\r\n\r\n"]
    for index in range(20000):
        out.append(b"--o\r\nContent-Type: multipart/mixed; boundary=missing%d\r\n\r\nx\r\n" % index)
    out.append(b"--o--\r\n")
    return b"".join(out)


def encoded_words_50000() -> bytes:
    """50,000 encoded words in one folded Subject: the encoded-word decoder
    on a very long input."""
    words = b"\r\n ".join(b"=?utf-8?q?w%d=C3=BC?=" % index for index in range(50000))
    return HEAD + b"Subject: " + words + b"\r\n\r\nbody\r\n"


def comments_100k() -> bytes:
    """100,000 nested comment openers in address, Message-ID and
    Content-Type fields: recursive comment parsers overflow the stack."""
    deep = b"(" * 100000
    return (b"From: " + deep + b"a@example.net\r\n"
            b"To: victim@example.org\r\n"
            b"Date: Mon, 04 Mar 2024 10:00:00 +0000\r\n"
            b"Message-ID: " + deep + b"<id@example.net>\r\n"
            b"References: " + deep + b"\r\n"
            b"Subject: " + deep + b"\r\n"
            b"Content-Type: text/plain; " + deep + b"charset=utf-8\r\n\r\nbody\r\n")


def folded_whitespace_50000() -> bytes:
    """One field folded over 50,000 continuation lines of whitespace only."""
    return (HEAD + b"Subject: fifty thousand whitespace continuation lines\r\n"
            b"X-Folded: start\r\n" + b" \r\n\t\r\n" * 25000 + b" end\r\n\r\nbody\r\n")


# File name -> recipe. Numbers continue those of the committed files.
RECIPES: dict[str, Callable[[], bytes]] = {
    "81-header-line-1mb.eml": header_line_1mb,
    "82-multipart-nested-200.eml": multipart_nested_200,
    "83-parts-5000.eml": parts_5000,
    "84-headers-20000.eml": headers_20000,
    "85-received-1000.eml": received_1000,
    "86-rfc822-nested-300.eml": rfc822_nested_300,
    "87-base64-line-1mb.eml": base64_line_1mb,
    "88-missing-boundaries-20000.eml": missing_boundaries_20000,
    "89-encoded-words-50000.eml": encoded_words_50000,
    "90-comments-100k.eml": comments_100k,
    "91-folded-whitespace-50000.eml": folded_whitespace_50000,
}


def generate(out_dir: Path) -> list[Path]:
    """Writes every generated message into `out_dir`; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, recipe in RECIPES.items():
        path = out_dir / name
        path.write_bytes(recipe())
        paths.append(path)
    return paths


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: {argv[0]} OUTDIR", file=sys.stderr)
        return 2
    for path in generate(Path(argv[1])):
        print(f"{path.name} {path.stat().st_size}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
