"""The status page: incidents posted, updated, resolved and edited through the
CLI and the admin API, and what customers see of them: the page at /status,
the incident pages, the history pages, the Atom feed and the JSON document;
import of plain-text incident logs; admin tokens; bad input; components set
by hand; /healthz and the Prometheus metrics at /metrics. Last, the page in a
real headless Chromium (Debian package `chromium`): a phone-sized screenshot
and the rendered DOM. Without chromium that test fails and says how to
install it.

The pages are read with a small tree builder over html.parser, the feed with
xml.etree.ElementTree, the metrics with a parser of the Prometheus text
exposition format; nothing outside the standard library.
"""

import datetime
import json
import math
import os
import re
import shutil
import struct
import subprocess
import tempfile
import unittest
import urllib.parse
import xml.etree.ElementTree as ET
import zlib
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from harness import (CLI_TIMEOUT_S, POSTERN_BIN, RCPT_DOMAIN, ServerTestCase, http_request, simple_message,
                     unique_marker, wait_until)

PUBLIC_URL = "https://status.test.example"
SITE_NAME = "Test Mail"
HTTP_OPTIONS = {"http": {"public_url": PUBLIC_URL, "site_name": SITE_NAME}}

ATOM = "{http://www.w3.org/2005/Atom}"
RFC3339_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")
TEXT_BYTES_MAX = 20_000

# Untrusted text as an author (or an attacker with a stolen token) might
# write it: every piece must come out as text, never as markup.
HOSTILE_TITLE = "Webmail <script>alert(1)</script> down"
HOSTILE_TEXT = (
    'Logins fail "><img src=x onerror=alert(1)> for some users.\n'
    "Do not click javascript:alert(document.cookie) or "
    '<a href="javascript:alert(2)">this link</a>.\n'
    "\n"
    "<iframe src=https://evil.example/></iframe> and <svg onload=alert(3)>"
)
HOSTILE_AUTHOR = 'Mallory "><b onmouseover=alert(4)>'
# Elements that author text could try to create and the renderer never writes
# (it writes <style> itself, so that one is not here).
AUTHOR_MARKUP_ELEMENTS = {"script", "img", "iframe", "svg", "object", "embed", "b", "i", "form", "input"}

CHROMIUM = shutil.which("chromium")
CHROMIUM_HINT = ("chromium is missing: install it with `apt-get install -y chromium` "
                 "(Debian package chromium; .ci/run does this)")
CHROMIUM_TIMEOUT_S = 60.0
PHONE_WIDTH, PHONE_HEIGHT = 390, 844


# --------------------------------------------------------------------------
# HTML as a tree
# --------------------------------------------------------------------------

VOID_ELEMENTS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Node:
    """One element: its tag, attributes and children (Nodes and strings)."""

    def __init__(self, tag: str, attrs: dict[str, str | None], parent: "Node | None") -> None:
        self.tag = tag
        self.attrs = attrs
        self.parent = parent
        self.children: list["Node | str"] = []

    def elements(self) -> "list[Node]":
        """Every element below this one, in document order."""
        out = []
        for child in self.children:
            if isinstance(child, Node):
                out.append(child)
                out.extend(child.elements())
        return out

    def find_all(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> "list[Node]":
        return [n for n in self.elements()
                if (tag is None or n.tag == tag)
                and (cls is None or cls in (n.attrs.get("class") or "").split())
                and all(n.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())]

    def find(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> "Node | None":
        found = self.find_all(tag, cls, **attrs)
        return found[0] if found else None

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def words(self) -> str:
        """The text with whitespace runs collapsed to one space."""
        return " ".join(self.text().split())

    def __repr__(self) -> str:
        return f"<{self.tag} {self.attrs}>"


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {}, None)
        self.current = self.root

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs), self.current)
        self.current.children.append(node)
        if tag not in VOID_ELEMENTS:
            self.current = node

    def handle_startendtag(self, tag, attrs):
        self.current.children.append(Node(tag, dict(attrs), self.current))

    def handle_endtag(self, tag):
        node = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.current = node.parent

    def handle_data(self, data):
        self.current.children.append(data)


def parse_html(text: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(text)
    builder.close()
    return builder.root


def words(text: str) -> str:
    return " ".join(text.split())


def markup_problems(root: Node) -> list[str]:
    """Active content in a tree that came from author text: elements that run
    or load something, event-handler attributes, javascript: URLs."""
    problems = []
    for node in root.elements():
        if node.tag in AUTHOR_MARKUP_ELEMENTS:
            problems.append(f"element <{node.tag}> {node.attrs}")
        for name, value in node.attrs.items():
            if name.startswith("on"):
                problems.append(f"attribute {name}={value!r} on <{node.tag}>")
            if name in ("href", "src", "action") and value and "javascript:" in value.replace(" ", "").lower():
                problems.append(f"{name}={value!r} on <{node.tag}>")
    return problems


# --------------------------------------------------------------------------
# What the page shows (structure from crates/status/src/html.rs)
# --------------------------------------------------------------------------


def incident_id_of(article: Node) -> int:
    m = re.fullmatch(r"incident-(\d+)", article.attrs.get("id") or "")
    assert m, f"an incident article without id=incident-N: {article}"
    return int(m.group(1))


def page_articles(root: Node) -> list[Node]:
    return root.find_all("article", cls="incident")


def article_by_id(root: Node, incident: int) -> Node:
    found = root.find("article", id=f"incident-{incident}")
    assert found is not None, f"incident {incident} is not on the page; articles: {[a.attrs.get('id') for a in page_articles(root)]}"
    return found


def section_ids(root: Node, section: str) -> list[int]:
    """Incident ids in the page's section `section` (current, maintenance, past), in page order."""
    node = root.find("section", aria_labelledby=f"{section}-heading")
    if node is None:
        return []
    return [incident_id_of(a) for a in page_articles(node)]


def article_posts(article: Node) -> list[dict]:
    """The posts of an incident article: role (Status/Update), author, text, post id."""
    posts = []
    for item in article.find_all("li", cls="post"):
        heading = next((n for n in item.elements() if re.fullmatch(r"h[1-6]", n.tag)), None)
        assert heading is not None, f"a post without a heading in {article}"
        heading_text = heading.words()
        m = re.match(r"(Status|Update) \(by (.*?) at .*\)$", heading_text)
        assert m, f"post heading {heading_text!r} is not 'Status|Update (by NAME at TIME)'"
        body = item.find("div", cls="text")
        assert body is not None, f"a post without its text in {heading_text!r}"
        post_id = re.fullmatch(r"incident-\d+-post-(\d+)", item.attrs.get("id") or "")
        posts.append({
            "role": m.group(1),
            "author": m.group(2),
            "text": body.words(),
            "id": int(post_id.group(1)) if post_id else None,
            "node": item,
        })
    return posts


# --------------------------------------------------------------------------
# Feed, metrics, images
# --------------------------------------------------------------------------


def only(test: unittest.TestCase, parent: ET.Element, name: str) -> ET.Element:
    found = parent.findall(ATOM + name)
    test.assertEqual(len(found), 1, f"expected exactly one atom:{name} in <{parent.tag}>, got {len(found)}")
    return found[0]


METRIC_LINE_RE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?")
LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')


def parse_metrics(text: str) -> tuple[list[tuple[str, dict[str, str], float]], dict[str, str]]:
    """The samples (name, labels, value) and the declared types of a
    Prometheus text exposition; a line that does not parse is an error."""
    samples = []
    types: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 4 and parts[1] == "TYPE":
                types[parts[2]] = parts[3].strip()
            continue
        m = METRIC_LINE_RE.fullmatch(line.strip())
        if not m:
            raise AssertionError(f"metrics line {number} does not parse: {line!r}")
        labels: dict[str, str] = {}
        rest = m.group(2) or ""
        position = 0
        while position < len(rest):
            lm = LABEL_RE.match(rest, position)
            if not lm or lm.end() == position:
                raise AssertionError(f"metrics line {number}: bad labels {rest!r}")
            labels[lm.group(1)] = lm.group(2)
            position = lm.end()
        try:
            value = float(m.group(3))
        except ValueError:
            raise AssertionError(f"metrics line {number}: value {m.group(3)!r} is not a number") from None
        samples.append((m.group(1), labels, value))
    return samples, types


def metric_sum(samples, name: str, **labels: str) -> float | None:
    """The sum of the samples named `name` whose labels include `labels`; None if there is none."""
    values = [v for n, ls, v in samples if n == name and all(ls.get(k) == want for k, want in labels.items())]
    return sum(values) if values else None


def png_facts(data: bytes) -> tuple[int, int, int]:
    """(width, height, distinct colours) of an 8-bit RGB or RGBA PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"not a PNG: {data[:16]!r}"
    position = 8
    idat = b""
    width = height = 0
    channels = 0
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        chunk = data[position + 8:position + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", chunk[:13])
            assert depth == 8 and colour_type in (2, 6) and interlace == 0, \
                f"unexpected PNG format: depth {depth}, colour type {colour_type}, interlace {interlace}"
            channels = 3 if colour_type == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        elif kind == b"IEND":
            break
        position += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    previous = bytearray(stride)
    colours = set()
    offset = 0
    for _ in range(height):
        filter_type = raw[offset]
        line = bytearray(raw[offset + 1:offset + 1 + stride])
        offset += 1 + stride
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            up_left = previous[i - channels] if i >= channels else 0
            if filter_type == 1:
                line[i] = (line[i] + left) & 0xFF
            elif filter_type == 2:
                line[i] = (line[i] + up) & 0xFF
            elif filter_type == 3:
                line[i] = (line[i] + ((left + up) >> 1)) & 0xFF
            elif filter_type == 4:
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                predictor = left if pa <= pb and pa <= pc else (up if pb <= pc else up_left)
                line[i] = (line[i] + predictor) & 0xFF
        # Every 7th pixel is enough to count the colours of a rendered page.
        for x in range(0, width, 7):
            colours.add(bytes(line[x * channels:x * channels + 3]))
        previous = line
    return width, height, len(colours)


# --------------------------------------------------------------------------
# Incident logs for import
# --------------------------------------------------------------------------


def header_time(at: datetime.datetime) -> str:
    """`Fri Apr 15 14:34` as the log format writes it."""
    return f"{at:%a} {at:%b} {at.day} {at:%H:%M}"


def incident_log(count: int, year: int) -> tuple[str, list[str]]:
    """A log of `count` incidents, newest first, each a Status and one Update,
    and the titles they must get, oldest first."""
    blocks = []
    titles = []
    start = datetime.datetime(year, 1, 3, 9, 0)
    for number in range(count):
        day = start + datetime.timedelta(days=2 * number, minutes=number % 50)
        titles.append(f"Incident {number:03d} delayed incoming mail")
        blocks.append(
            f"Status (by sam at {header_time(day)} UTC)\n"
            f"Incident {number:03d} delayed incoming mail. Delivery took about {number + 5} minutes.\n"
            f"We are looking for abuse patterns.\n"
            f"\n"
            f"Update (by kim at {header_time(day + datetime.timedelta(hours=3))} UTC)\n"
            f"Incident {number:03d} is over: the backlog is cleared.\n"
        )
    return "\n".join(reversed(blocks)), titles


# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------


class StatusTestCase(ServerTestCase):
    """A server with an HTTP listener and an admin token, and helpers to post
    through the CLI and the API and to read the page, feed and JSON."""

    server_options = HTTP_OPTIONS
    token: str

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        try:
            added = cls.server.cli_ok("status", "token", "add", f"{cls.__name__.lower()}-admin")
            cls.token = added.stdout.decode("utf-8").strip()
        except BaseException:
            cls.tearDownClass()
            raise

    # -- CLI ---------------------------------------------------------------

    def cli_json(self, *args: str, input: str | bytes | None = None) -> Any:
        completed = self.server.cli_ok(*args, "--json", input=input)
        try:
            return json.loads(completed.stdout)
        except ValueError:
            self.fail(f"postern {' '.join(args)} --json printed no JSON: {completed.stdout!r}")

    def open_incident(self, title: str, text: str, *components: str, impact: str | None = None,
                      state: str | None = None, author: str | None = "sam", extra: tuple = ()) -> tuple[int, int]:
        """`status open ... --json`; returns (incident id, post id)."""
        args = ["status", "open", "--title", title]
        for component in components:
            args += ["--component", component]
        if impact:
            args += ["--impact", impact]
        if state:
            args += ["--state", state]
        if author:
            args += ["--author", author]
        out = self.cli_json(*args, *extra, input=text)
        self.assertIsInstance(out.get("incident"), int, out)
        self.assertIsInstance(out.get("post"), int, out)
        return out["incident"], out["post"]

    def update_incident(self, incident: int, text: str, *, state: str | None = None, impact: str | None = None,
                        author: str = "sam") -> int:
        args = ["status", "update", str(incident), "--author", author]
        if state:
            args += ["--state", state]
        if impact:
            args += ["--impact", impact]
        out = self.cli_json(*args, input=text)
        self.assertIsInstance(out.get("post"), int, out)
        return out["post"]

    def resolve_incident(self, incident: int, text: str = "", author: str = "sam") -> int:
        out = self.cli_json("status", "resolve", str(incident), "--author", author, input=text)
        self.assertIsInstance(out.get("post"), int, out)
        return out["post"]

    def stored(self) -> list[dict]:
        """`status list --json`: every incident as crates/status's model."""
        listed = self.cli_json("status", "list")
        self.assertIsInstance(listed, list, listed)
        return listed

    def stored_incident(self, incident: int) -> dict:
        for item in self.stored():
            if item["id"] == incident:
                return item
        self.fail(f"incident {incident} is not in `status list --json`")

    # -- HTTP --------------------------------------------------------------

    def get(self, path: str, media_type: str | None = None, status: int = 200):
        response = self.server.http("GET", path)
        self.assertEqual(response.status, status, f"GET {path}: {response}")
        if media_type is not None:
            self.assertEqual(response.media_type, media_type, f"GET {path}: {response.headers}")
        return response

    def page(self, path: str = "/status") -> Node:
        return parse_html(self.get(path, "text/html").text())

    def document(self) -> dict:
        return self.get("/api/status", "application/json").json()

    def feed(self) -> ET.Element:
        response = self.get("/status/feed.atom", "application/atom+xml")
        try:
            return ET.fromstring(response.body)
        except ET.ParseError as error:
            self.fail(f"the feed is not well-formed XML ({error}):\n{response.body[:2000]!r}")

    def admin(self, method: str, path: str, body: Any = None, token: str | None = "class"):
        return self.server.http(method, path, body=body, token=self.token if token == "class" else token)

    def admin_incidents(self) -> list:
        response = self.admin("GET", "/api/admin/incidents")
        self.assertEqual(response.status, 200, response)
        listed = response.json()
        self.assertIsInstance(listed, list, listed)
        return listed

    def document_incident(self, document: dict, incident: int) -> tuple[str, dict]:
        """(section, incident document) of `incident` in the JSON document."""
        for section in ("open_incidents", "maintenance", "recent_incidents"):
            for item in document[section]:
                if item["id"] == incident:
                    return section, item
        self.fail(f"incident {incident} is not in /api/status")

    def feed_entries(self, feed: ET.Element, incident: int) -> list[ET.Element]:
        """The feed's entries for `incident`, in feed order."""
        suffix = re.compile(rf":incident-{incident}/post-\d+$")
        return [e for e in feed.findall(ATOM + "entry") if suffix.search(e.findtext(ATOM + "id") or "")]

    def assert_escaped_in(self, html: str, where: str) -> Node:
        tree = parse_html(html)
        self.assertEqual(markup_problems(tree), [], f"active markup from author text in {where}")
        return tree


class StatusTest(StatusTestCase):

    def test_cli_post_update_resolve(self):
        """Open, update and resolve through the CLI, in its plain output
        (`incident N`, `post M`); the stored model, the page, the incident
        page, the JSON document and the feed all show the timeline in order,
        Status first, then the Updates."""
        title = f"Incoming mail is delayed {unique_marker('cli')}"
        texts = [
            "Delivery takes about 15 minutes, where it usually takes under 5 seconds.\n\n"
            "We are looking for abuse patterns.\n",
            "The cause is one sender flooding us. We are blocking it.",
            "The backlog is cleared. Delivery takes under 10 seconds again.",
        ]
        opened = self.server.cli_ok("status", "open", "--title", title, "--component", "Incoming mail",
                                    "--impact", "minor", "--state", "investigating", "--author", "sam",
                                    input=texts[0])
        m = re.fullmatch(r"incident (\d+)\n?", opened.stdout.decode())
        self.assertIsNotNone(m, f"`status open` printed {opened.stdout!r}, expected 'incident N'")
        incident = int(m.group(1))

        # While it is open: under current incidents, in open_incidents.
        self.assertIn(incident, section_ids(self.page(), "current"))
        section, item = self.document_incident(self.document(), incident)
        self.assertEqual((section, item["phase"], item["state"]), ("open_incidents", "open", "investigating"))

        updated = self.server.cli_ok("status", "update", str(incident), "--state", "identified",
                                     "--impact", "major", "--author", "sam", input=texts[1])
        m = re.fullmatch(r"post (\d+)\n?", updated.stdout.decode())
        self.assertIsNotNone(m, f"`status update` printed {updated.stdout!r}, expected 'post M'")
        update_post = int(m.group(1))
        item = self.document_incident(self.document(), incident)[1]
        self.assertEqual((item["state"], item["impact"]), ("identified", "major"))

        resolved = self.server.cli_ok("status", "resolve", str(incident), "--author", "kim", input=texts[2])
        m = re.fullmatch(r"post (\d+)\n?", resolved.stdout.decode())
        self.assertIsNotNone(m, f"`status resolve` printed {resolved.stdout!r}, expected 'post M'")
        resolve_post = int(m.group(1))

        # The store, in crates/status's model.
        stored = self.stored_incident(incident)
        self.assertEqual(stored["title"], title)
        self.assertEqual(stored["components"], ["Incoming mail"])
        self.assertEqual(stored["impact"], "major")
        self.assertEqual(stored["state"], "resolved")
        self.assertEqual(stored["kind"], {"type": "incident"})
        self.assertIsInstance(stored["resolved"], int)
        self.assertEqual([p["text"].strip() for p in stored["posts"]], [t.strip() for t in texts])
        self.assertEqual([p["author"] for p in stored["posts"]], ["sam", "sam", "kim"])
        self.assertEqual([p["id"] for p in stored["posts"]][1:], [update_post, resolve_post])
        self.assertEqual([p["edits"] for p in stored["posts"]], [[], [], []])
        times = [p["at"] for p in stored["posts"]]
        self.assertEqual(times, sorted(times), "posts are oldest first")
        self.assertIn(title, self.server.cli_ok("status", "list").stdout.decode())

        # The page: resolved, so under past incidents, with the timeline in order.
        root = self.page()
        self.assertIn(incident, section_ids(root, "past"))
        self.assertNotIn(incident, section_ids(root, "current"))
        article = article_by_id(root, incident)
        link = article.find("a")
        self.assertEqual(link.words(), title)
        self.assertEqual(link.attrs.get("href"), f"{PUBLIC_URL}/status/incidents/{incident}")
        posts = article_posts(article)
        self.assertEqual([p["role"] for p in posts], ["Status", "Update", "Update"])
        self.assertEqual([p["author"] for p in posts], ["sam", "sam", "kim"])
        self.assertEqual([p["text"] for p in posts], [words(t) for t in texts])
        self.assertIn("Resolved", article.words())

        # Its own page.
        posts = article_posts(article_by_id(self.page(f"/status/incidents/{incident}"), incident))
        self.assertEqual([p["text"] for p in posts], [words(t) for t in texts])

        # The JSON document.
        section, item = self.document_incident(self.document(), incident)
        self.assertEqual(section, "recent_incidents")
        self.assertEqual((item["phase"], item["state"], item["impact"]), ("closed", "resolved", "major"))
        self.assertEqual(item["url"], f"{PUBLIC_URL}/status/incidents/{incident}")
        self.assertEqual(item["title"], title)
        self.assertIsNotNone(item["closed_at"])
        self.assertRegex(item["closed_at"], RFC3339_RE)
        self.assertEqual([p["role"] for p in item["posts"]], ["status", "update", "update"])
        self.assertEqual([p["text"].strip() for p in item["posts"]], [t.strip() for t in texts])
        self.assertEqual([p["author"] for p in item["posts"]], ["sam", "sam", "kim"])
        self.assertEqual([words(parse_html(p["html"]).text()) for p in item["posts"]], [words(t) for t in texts])

        # The feed: one entry per post, newest first.
        entries = self.feed_entries(self.feed(), incident)
        self.assertEqual([e.findtext(ATOM + "title") for e in entries],
                         [f"Update: {title}", f"Update: {title}", f"Status: {title}"])
        self.assertEqual([words(parse_html(e.findtext(ATOM + "content") or "").text()) for e in entries],
                         [words(t) for t in reversed(texts)])
        self.assertEqual([e.find(ATOM + "author").findtext(ATOM + "name") for e in entries], ["kim", "sam", "sam"])
        for entry in entries:
            self.assertIn("Incoming mail", [c.get("term") for c in entry.findall(ATOM + "category")])

    def test_api_post_update_resolve(self):
        """The same through the admin API: 201 with the new ids, the state and
        impact an update sets, and an update with state "resolved" closes
        the incident (the API has no separate resolve call in the contract;
        this test reads "state"? on a post as able to resolve)."""
        title = f"IMAP logins fail {unique_marker('api')}"
        created = self.admin("POST", "/api/admin/incidents", {
            "title": title, "components": ["IMAP"], "impact": "major", "state": "investigating",
            "text": "Some IMAP logins fail with a timeout.", "author": "ana",
        })
        self.assertEqual(created.status, 201, created)
        self.assertEqual(created.media_type, "application/json", created.headers)
        ids = created.json()
        self.assertIsInstance(ids.get("incident"), int, ids)
        self.assertIsInstance(ids.get("post"), int, ids)
        incident = ids["incident"]

        update = self.admin("POST", f"/api/admin/incidents/{incident}/posts", {
            "text": "A fix is in; we are watching the login rate.", "author": "ana",
            "state": "monitoring", "impact": "critical",
        })
        self.assertEqual(update.status, 201, update)
        self.assertIsInstance(update.json().get("post"), int, update)

        section, item = self.document_incident(self.document(), incident)
        self.assertEqual((section, item["state"], item["impact"]), ("open_incidents", "monitoring", "critical"))
        article = article_by_id(self.page(), incident)
        self.assertIn(incident, section_ids(self.page(), "current"))
        self.assertIn("Monitoring", article.words())
        self.assertIn("Critical", article.words())

        resolve = self.admin("POST", f"/api/admin/incidents/{incident}/posts", {
            "text": "Logins work again.", "author": "ben", "state": "resolved",
        })
        self.assertEqual(resolve.status, 201, resolve)

        listed = [i for i in self.admin_incidents() if i.get("id") == incident]
        self.assertEqual(len(listed), 1, "the admin list has the incident once")
        self.assertEqual(listed[0]["state"], "resolved")
        self.assertEqual([p["text"] for p in listed[0]["posts"]], [
            "Some IMAP logins fail with a timeout.", "A fix is in; we are watching the login rate.",
            "Logins work again."])
        self.assertEqual([p["author"] for p in listed[0]["posts"]], ["ana", "ana", "ben"])

        section, item = self.document_incident(self.document(), incident)
        self.assertEqual((section, item["phase"]), ("recent_incidents", "closed"))
        posts = article_posts(article_by_id(self.page(), incident))
        self.assertEqual([p["role"] for p in posts], ["Status", "Update", "Update"])
        self.assertEqual(posts[-1]["text"], "Logins work again.")
        self.assertEqual(len(self.feed_entries(self.feed(), incident)), 3)

    def test_newest_incident_first(self):
        """Open incidents are listed newest first on the page and in the
        JSON; inside one, Status first, then Updates oldest first."""
        first, _ = self.open_incident(f"First {unique_marker()}", "First problem.", "DNS", impact="minor")
        second, _ = self.open_incident(f"Second {unique_marker()}", "Second problem.", "SMS", impact="minor")
        created = self.admin("POST", "/api/admin/incidents", {
            "title": f"Third {unique_marker()}", "components": ["Web"], "impact": "minor",
            "state": "investigating", "text": "Third problem.", "author": "ana"})
        self.assertEqual(created.status, 201, created)
        third = created.json()["incident"]
        self.update_incident(first, "First problem, first update.")
        self.update_incident(first, "First problem, second update.")

        order = [i for i in section_ids(self.page(), "current") if i in (first, second, third)]
        self.assertEqual(order, [third, second, first])
        document = self.document()
        order = [i["id"] for i in document["open_incidents"] if i["id"] in (first, second, third)]
        self.assertEqual(order, [third, second, first])
        posts = article_posts(article_by_id(self.page(), first))
        self.assertEqual([(p["role"], p["text"]) for p in posts], [
            ("Status", "First problem."), ("Update", "First problem, first update."),
            ("Update", "First problem, second update.")])
        feed = self.feed()
        entries = self.feed_entries(feed, first)
        self.assertEqual([words(parse_html(e.findtext(ATOM + "content")).text()) for e in entries],
                         ["First problem, second update.", "First problem, first update.", "First problem."])
        statuses = [e.findtext(ATOM + "id") for e in feed.findall(ATOM + "entry")
                    if (e.findtext(ATOM + "title") or "").startswith("Status: ")]
        order = [incident for id_ in statuses for incident in (first, second, third)
                 if re.search(rf":incident-{incident}/post-\d+$", id_)]
        self.assertEqual(order, [third, second, first], "the feed has the newest incident's Status first")
        for incident in (first, second, third):
            self.resolve_incident(incident)

    def test_resolve_without_text_and_default_author(self):
        """`status resolve` with empty stdin posts "Resolved."; `--author`
        defaults to $USER, and to "admin" without it."""
        env = {k: v for k, v in os.environ.items() if k not in ("USER", "LOGNAME")}
        command = [POSTERN_BIN, "--config", str(self.server.config_path), "status"]
        opened = subprocess.run(command + ["open", "--title", f"Default author {unique_marker()}", "--json"],
                                input=b"Something is wrong.", capture_output=True, timeout=CLI_TIMEOUT_S,
                                env={**env, "USER": "nightowl"})
        self.assertEqual(opened.returncode, 0, opened.stderr)
        incident = json.loads(opened.stdout)["incident"]
        resolved = subprocess.run(command + ["resolve", str(incident)], input=b"", capture_output=True,
                                  timeout=CLI_TIMEOUT_S, env=env)
        self.assertEqual(resolved.returncode, 0, resolved.stderr)
        stored = self.stored_incident(incident)
        self.assertEqual([(p["author"], p["text"]) for p in stored["posts"]],
                         [("nightowl", "Something is wrong."), ("admin", "Resolved.")])
        self.assertEqual(stored["state"], "resolved")

    def test_markup_is_escaped_everywhere(self):
        """Title, text, author and component with markup in them, through the
        CLI and the API: on the page, the incident page, in the feed and in
        the JSON's html field they are text, never elements, attributes or
        javascript: links."""
        incident, _ = self.open_incident(HOSTILE_TITLE, HOSTILE_TEXT, "Web <i>mail</i>",
                                         impact="minor", author=HOSTILE_AUTHOR)
        update = self.admin("POST", f"/api/admin/incidents/{incident}/posts",
                            {"text": HOSTILE_TEXT + "\n\nThrough the API.", "author": HOSTILE_AUTHOR})
        self.assertEqual(update.status, 201, update)

        for path in ("/status", f"/status/incidents/{incident}"):
            body = self.get(path, "text/html").text()
            for raw in ("<script", "<img", "<iframe", "<svg", "<a href=\"javascript:", "<b "):
                self.assertNotIn(raw, body.lower(), f"{raw!r} as markup in {path}")
            root = self.assert_escaped_in(body, path)
            article = article_by_id(root, incident)
            self.assertIn(HOSTILE_TITLE, article.text(), f"the title shows as text on {path}")
            posts = article_posts(article)
            self.assertEqual([p["author"] for p in posts], [HOSTILE_AUTHOR, HOSTILE_AUTHOR])
            self.assertEqual(posts[0]["text"], words(HOSTILE_TEXT), f"the text shows as text on {path}")
            self.assertIn("Web <i>mail</i>", article.text())

        feed_body = self.get("/status/feed.atom", "application/atom+xml").body
        feed = ET.fromstring(feed_body)
        self.assertNotIn(b"<script", feed_body)
        entries = self.feed_entries(feed, incident)
        self.assertEqual([e.findtext(ATOM + "title") for e in entries],
                         [f"Update: {HOSTILE_TITLE}", f"Status: {HOSTILE_TITLE}"])
        for entry in entries:
            self.assertEqual(entry.find(ATOM + "author").findtext(ATOM + "name"), HOSTILE_AUTHOR)
            content = entry.find(ATOM + "content")
            self.assertEqual(content.get("type"), "html")
            tree = self.assert_escaped_in(content.text or "", "the feed's content")
            self.assertIn(words(HOSTILE_TEXT), tree.words())

        _, item = self.document_incident(self.document(), incident)
        self.assertEqual(item["title"], HOSTILE_TITLE)
        self.assertEqual(item["posts"][0]["text"].strip(), HOSTILE_TEXT)
        self.assertEqual(item["posts"][0]["author"], HOSTILE_AUTHOR)
        for post in item["posts"]:
            tree = self.assert_escaped_in(post["html"], "the JSON's html field")
            self.assertIn(words(HOSTILE_TEXT), tree.words())
        self.resolve_incident(incident)

    def test_feed_is_atom(self):
        """The feed parses as XML in the Atom namespace with the elements RFC
        4287 requires: feed id, title, updated (one each); entry id, title,
        updated and content; unique entry ids; a self link; RFC 3339 dates."""
        incident, _ = self.open_incident(f"Feed check {unique_marker()}", "Checking the feed.", "IMAP")
        self.update_incident(incident, "Still checking the feed.")
        feed = self.feed()
        self.assertEqual(feed.tag, ATOM + "feed")
        self.assertTrue(only(self, feed, "id").text.strip())
        self.assertEqual(only(self, feed, "title").text, f"{SITE_NAME} status")
        feed_updated = only(self, feed, "updated").text
        self.assertRegex(feed_updated, RFC3339_RE)
        self_links = [l.get("href") for l in feed.findall(ATOM + "link") if l.get("rel") == "self"]
        self.assertEqual(self_links, [f"{PUBLIC_URL}/status/feed.atom"])
        entries = feed.findall(ATOM + "entry")
        self.assertGreaterEqual(len(entries), 2)
        ids = []
        for entry in entries:
            ids.append(only(self, entry, "id").text)
            self.assertTrue(only(self, entry, "title").text.strip())
            updated = only(self, entry, "updated").text
            self.assertRegex(updated, RFC3339_RE)
            self.assertLessEqual(updated, feed_updated, "the feed's updated is its newest entry's")
            self.assertTrue((only(self, entry, "content").text or "").strip())
            self.assertTrue(entry.find(ATOM + "author").findtext(ATOM + "name"))
            alternate = [l.get("href") for l in entry.findall(ATOM + "link") if l.get("rel") in (None, "alternate")]
            self.assertTrue(alternate and alternate[0].startswith(f"{PUBLIC_URL}/status/incidents/"), alternate)
        self.assertEqual(len(ids), len(set(ids)), "entry ids are unique")
        self.assertEqual(len(self.feed_entries(feed, incident)), 2)
        self.resolve_incident(incident)

    def test_edit_keeps_history(self):
        """`status edit` and PUT /api/admin/posts/{id} replace a post's text;
        the page shows the new text, the store keeps every earlier one with
        who changed it, and the incident page shows the earlier versions."""
        first = "First version: IMAP logins fail for some users."
        second = "Second version: IMAP logins fail for users on the old cluster."
        third = "Third version: IMAP logins fail for users on cluster B only."
        incident, post = self.open_incident(f"Edited {unique_marker()}", first, "IMAP", author="sam")
        self.server.cli_ok("status", "edit", str(post), "--author", "kim", input=second)

        stored = self.stored_incident(incident)
        self.assertEqual(stored["posts"][0]["id"], post)
        self.assertEqual(stored["posts"][0]["text"], second)
        self.assertEqual(stored["posts"][0]["author"], "sam", "an edit keeps the post's author")
        edits = stored["posts"][0]["edits"]
        self.assertEqual([(e["author"], e["previous_text"]) for e in edits], [("kim", first)])
        self.assertIsInstance(edits[0]["at"], int)

        body = self.get("/status", "text/html").text()
        self.assertNotIn("First version", body)
        article = article_by_id(parse_html(body), incident)
        self.assertEqual(article_posts(article)[0]["text"], second)
        self.assertIn("Edited by kim", article.words())
        _, item = self.document_incident(self.document(), incident)
        self.assertEqual(item["posts"][0]["text"], second)
        self.assertIsNotNone(item["posts"][0]["edited_at"])
        entry = self.feed_entries(self.feed(), incident)[0]
        self.assertIn("Second version", entry.findtext(ATOM + "content"))

        edited = self.admin("PUT", f"/api/admin/posts/{post}", {"text": third, "author": "lee"})
        self.assertEqual(edited.status, 200, edited)
        stored = self.stored_incident(incident)
        self.assertEqual(stored["posts"][0]["text"], third)
        self.assertEqual([(e["author"], e["previous_text"]) for e in stored["posts"][0]["edits"]],
                         [("kim", first), ("lee", second)])
        incident_page = self.page(f"/status/incidents/{incident}")
        article = article_by_id(incident_page, incident)
        self.assertIn(third, article.words())
        self.assertIn(first, article.words(), "the incident page shows earlier versions")
        self.assertIn(second, article.words(), "the incident page shows earlier versions")
        self.resolve_incident(incident)

    def test_admin_api_needs_a_valid_token(self):
        """401 with a JSON error without a token, with a wrong one, with
        another scheme, and after `status token revoke`; the token is shown
        once, by `token add`, never by `token list`; nothing is stored by a
        refused request."""
        added = self.server.cli_ok("status", "token", "add", "ci-bot").stdout.decode()
        self.assertEqual(len(added.splitlines()), 1, f"`token add` prints one line: {added!r}")
        token = added.strip()
        self.assertRegex(token, r"^\S{16,}$", "a token of at least 16 characters")
        listing = self.server.cli_ok("status", "token", "list").stdout.decode()
        self.assertIn("ci-bot", listing)
        self.assertNotIn(token, listing, "`token list` must not show the token")

        self.assertEqual(self.admin("GET", "/api/admin/incidents", token=token).status, 200)
        before = self.admin_incidents()
        body = {"title": "Should not exist", "components": [], "impact": "minor", "state": "investigating",
                "text": "Should not be stored.", "author": "eve"}
        refusals = {
            "no token": {},
            "wrong token": {"Authorization": "Bearer not-a-token-0123456789abcdef"},
            "the token cut short": {"Authorization": f"Bearer {token[:-1]}"},
            "the token and more": {"Authorization": f"Bearer {token}x"},
            "another scheme": {"Authorization": f"Basic {token}"},
            "empty bearer": {"Authorization": "Bearer "},
        }
        for what, headers in refusals.items():
            for method, path, payload in (("GET", "/api/admin/incidents", None),
                                          ("POST", "/api/admin/incidents", body),
                                          ("PUT", "/api/admin/components/IMAP", {"state": "major_outage"})):
                with self.subTest(what=what, method=method):
                    response = self.server.http(method, path, body=payload, headers=headers)
                    self.assertEqual(response.status, 401, response)
                    self.assertEqual(response.media_type, "application/json", response.headers)
                    self.assertIsInstance(response.json().get("error"), str, response)
        self.assertEqual(self.admin_incidents(), before, "a refused request stored something")
        self.assertNotIn("major_outage", [c["state"] for c in self.document()["components"] if c["name"] == "IMAP"])
        # The public pages need no token.
        self.assertEqual(self.server.http("GET", "/api/status").status, 200)

        self.server.cli_ok("status", "token", "revoke", "ci-bot")
        response = self.admin("GET", "/api/admin/incidents", token=token)
        self.assertEqual(response.status, 401, response)
        self.assertIsInstance(response.json().get("error"), str, response)
        self.assertNotIn("ci-bot", self.server.cli_ok("status", "token", "list").stdout.decode())
        # Revoking one token leaves the others.
        self.assertEqual(self.admin("GET", "/api/admin/incidents").status, 200)
        self.assertNotEqual(self.server.cli("status", "token", "revoke", "no-such-token").returncode, 0)

    def test_cli_opens_an_editor_on_a_terminal(self):
        """With a terminal for stdin the post is written in $EDITOR, as git
        commit does; lines starting with # are left out; an empty text posts
        nothing."""
        with tempfile.TemporaryDirectory(prefix="postern-editor-") as tmp:
            editor = Path(tmp) / "editor.sh"
            editor.write_text("#!/bin/sh\nprintf 'Written in the editor.\\n# not posted\\n' > \"$1\"\n")
            editor.chmod(0o700)
            empty = Path(tmp) / "empty.sh"
            empty.write_text("#!/bin/sh\n: > \"$1\"\n")
            empty.chmod(0o700)
            title = f"Edited in an editor {unique_marker()}"

            def run(editor_path: Path) -> subprocess.CompletedProcess:
                master, slave = os.openpty()
                try:
                    return subprocess.run(
                        [POSTERN_BIN, "--config", str(self.server.config_path), "status", "open", "--title", title],
                        stdin=slave, capture_output=True, timeout=CLI_TIMEOUT_S,
                        env={**os.environ, "EDITOR": str(editor_path), "VISUAL": ""},
                    )
                finally:
                    os.close(slave)
                    os.close(master)

            refused = run(empty)
            self.assertNotEqual(refused.returncode, 0, refused)
            self.assertIn(b"nothing posted", refused.stderr)
            done = run(editor)
            self.assertEqual(done.returncode, 0, done.stderr)
        incidents = [i for i in self.cli_json("status", "list") if i["title"] == title]
        self.assertEqual(len(incidents), 1, "the empty text posted nothing, the written one posted once")
        self.assertEqual(incidents[0]["posts"][0]["text"], "Written in the editor.")

    def test_bad_cli_input_is_refused_and_stores_nothing(self):
        """Unknown incident or post, empty title, unknown state or impact,
        text over 20,000 bytes, a bad maintenance window, a bad --year: a
        non-zero exit, a message on stderr, and nothing stored."""
        incident, post = self.open_incident(f"Target {unique_marker()}", "A target for bad updates.", "IMAP")
        before = self.stored()
        long_text = "x" * (TEXT_BYTES_MAX + 1)
        log_path = self.server.tmp / "bad-year.log"
        log_path.write_text(incident_log(2, 2011)[0], encoding="utf-8")
        cases = [
            # (what, args, stdin, words one of which stderr must contain)
            ("update of an unknown incident", ["update", "999999"], "Text.", ["999999"]),
            ("resolve of an unknown incident", ["resolve", "999999"], "Text.", ["999999"]),
            ("edit of an unknown post", ["edit", "999999"], "Text.", ["999999"]),
            ("empty title", ["open", "--title", ""], "Text.", ["title"]),
            ("blank title", ["open", "--title", "   "], "Text.", ["title"]),
            ("unknown state", ["open", "--title", "Bad state", "--state", "sleeping"], "Text.", ["sleeping", "state"]),
            ("unknown impact", ["open", "--title", "Bad impact", "--impact", "huge"], "Text.", ["huge", "impact"]),
            ("unknown state on update", ["update", str(incident), "--state", "sleeping"], "Text.", ["sleeping", "state"]),
            ("text over 20,000 bytes", ["open", "--title", "Too long"], long_text, ["text", "20000", "20,000", "20 000"]),
            ("update text over 20,000 bytes", ["update", str(incident)], long_text, ["text", "20000", "20,000", "20 000"]),
            ("edit text over 20,000 bytes", ["edit", str(post)], long_text, ["text", "20000", "20,000", "20 000"]),
            ("empty update text", ["update", str(incident)], "  \n", ["text", "empty"]),
            ("maintenance ending before it starts",
             ["open", "--title", "Backwards", "--maintenance", "2099-12-01T04:00:00Z", "2099-12-01T02:00:00Z"],
             "Text.", ["maintenance", "window", "end", "start"]),
            ("maintenance time not RFC 3339",
             ["open", "--title", "Bad time", "--maintenance", "tomorrow", "2099-12-01T02:00:00Z"],
             "Text.", ["tomorrow", "time", "3339"]),
            ("unknown component state", ["component", "IMAP", "on_fire"], None, ["on_fire", "state"]),
            ("import with a non-numeric year", ["import", str(log_path), "--year", "abc"], None, ["abc", "year"]),
            ("import with year 0", ["import", str(log_path), "--year", "0"], None, ["year", "0"]),
            ("import with the wrong year", ["import", str(log_path), "--year", "2012"], None, ["line 1", ":1:"]),
        ]
        for what, args, stdin, expected in cases:
            with self.subTest(what):
                completed = self.server.cli("status", *args, input=stdin)
                stderr = completed.stderr.decode("utf-8", "replace")
                self.assertNotEqual(completed.returncode, 0, f"{what}: exit 0, stdout {completed.stdout!r}")
                self.assertTrue(stderr.strip(), f"{what}: nothing on stderr")
                self.assertTrue(any(word in stderr.lower() for word in expected),
                                f"{what}: stderr names none of {expected}: {stderr!r}")
                self.assertNotRegex(completed.stdout.decode(), r"(incident|post) \d+", what)
        self.assertEqual(self.stored(), before, "bad input stored something")

        # The bound itself is allowed.
        at_max = self.update_incident(incident, "y" * TEXT_BYTES_MAX)
        self.assertEqual(len(self.stored_incident(incident)["posts"][-1]["text"]), TEXT_BYTES_MAX)
        self.assertIsInstance(at_max, int)
        self.resolve_incident(incident)

    def test_bad_api_input_is_refused_and_stores_nothing(self):
        """Invalid JSON, missing or bad fields: 400 with a JSON error naming
        the problem; unknown ids: 404; nothing stored."""
        created = self.admin("POST", "/api/admin/incidents", {
            "title": f"API target {unique_marker()}", "components": ["IMAP"], "impact": "minor",
            "state": "investigating", "text": "A target for bad updates.", "author": "ana"})
        self.assertEqual(created.status, 201, created)
        incident, post = created.json()["incident"], created.json()["post"]
        before = self.admin_incidents()
        components_before = self.document()["components"]
        good = {"title": "Fine title", "components": ["IMAP"], "impact": "minor", "state": "investigating",
                "text": "Fine text.", "author": "ana"}
        long_text = "x" * (TEXT_BYTES_MAX + 1)
        cases = [
            # (what, method, path, body, status, words one of which the error must contain)
            ("not JSON", "POST", "/api/admin/incidents", b'{"title": "x",', 400, []),
            ("a JSON array", "POST", "/api/admin/incidents", [1, 2], 400, []),
            ("no title", "POST", "/api/admin/incidents", {k: v for k, v in good.items() if k != "title"}, 400, ["title"]),
            ("empty title", "POST", "/api/admin/incidents", {**good, "title": ""}, 400, ["title"]),
            ("title over 200 bytes", "POST", "/api/admin/incidents", {**good, "title": "t" * 201}, 400, ["title"]),
            ("unknown impact", "POST", "/api/admin/incidents", {**good, "impact": "huge"}, 400, ["impact", "huge"]),
            ("unknown state", "POST", "/api/admin/incidents", {**good, "state": "sleeping"}, 400, ["state", "sleeping"]),
            # A type error names the field (serde_path_to_error in http.rs).
            ("components not a list", "POST", "/api/admin/incidents", {**good, "components": "IMAP"}, 400, ["component"]),
            ("text over 20,000 bytes", "POST", "/api/admin/incidents", {**good, "text": long_text}, 400, ["text"]),
            ("empty text", "POST", "/api/admin/incidents", {**good, "text": " "}, 400, ["text"]),
            ("empty author", "POST", "/api/admin/incidents", {**good, "author": ""}, 400, ["author"]),
            ("maintenance ending before it starts", "POST", "/api/admin/incidents",
             {**good, "state": "scheduled", "maintenance": {"starts": 4102452000, "ends": 4102444800}}, 400,
             ["maintenance", "window", "end", "start"]),
            ("post to an unknown incident", "POST", "/api/admin/incidents/999999/posts",
             {"text": "Text.", "author": "ana"}, 404, []),
            ("post without text", "POST", f"/api/admin/incidents/{incident}/posts", {"author": "ana"}, 400, ["text"]),
            ("post with text over 20,000 bytes", "POST", f"/api/admin/incidents/{incident}/posts",
             {"text": long_text, "author": "ana"}, 400, ["text"]),
            ("post with an unknown state", "POST", f"/api/admin/incidents/{incident}/posts",
             {"text": "Text.", "author": "ana", "state": "sleeping"}, 400, ["state", "sleeping"]),
            ("edit of an unknown post", "PUT", "/api/admin/posts/999999", {"text": "Text.", "author": "ana"}, 404, []),
            ("edit with empty text", "PUT", f"/api/admin/posts/{post}", {"text": "", "author": "ana"}, 400, ["text"]),
            ("edit with text over 20,000 bytes", "PUT", f"/api/admin/posts/{post}",
             {"text": long_text, "author": "ana"}, 400, ["text"]),
            ("unknown component state", "PUT", "/api/admin/components/IMAP", {"state": "on_fire"}, 400,
             ["state", "on_fire"]),
            ("component note over 500 bytes", "PUT", "/api/admin/components/IMAP",
             {"state": "degraded", "note": "n" * 501}, 400, ["note"]),
        ]
        for what, method, path, body, status, expected in cases:
            with self.subTest(what):
                response = self.admin(method, path, body)
                self.assertEqual(response.status, status, f"{what}: {response}")
                if status == 404:
                    # The contract asks for JSON errors on 400 and 401 only.
                    continue
                self.assertEqual(response.media_type, "application/json", f"{what}: {response.headers}")
                error = response.json().get("error")
                self.assertIsInstance(error, str, f"{what}: {response}")
                self.assertTrue(error.strip(), what)
                if expected:
                    self.assertTrue(any(word in error.lower() for word in expected),
                                    f"{what}: the error names none of {expected}: {error!r}")
        self.assertEqual(self.admin_incidents(), before, "bad input stored something")
        self.assertEqual(self.document()["components"], components_before, "bad input changed a component")
        self.resolve_incident(incident)

    def test_components_set_by_hand(self):
        """`status component NAME STATE --note` and PUT
        /api/admin/components/{name}: the page and the JSON show the state
        (in words) and the note, marked as set by hand; `--remove` takes the
        component away."""
        self.server.cli_ok("status", "component", "Webmail", "degraded", "--note", "Logins are slow <b>today</b>.")
        document = self.document()
        webmail = [c for c in document["components"] if c["name"] == "Webmail"]
        self.assertEqual(len(webmail), 1, document["components"])
        self.assertEqual((webmail[0]["state"], webmail[0]["set_by"], webmail[0]["note"]),
                         ("degraded", "manual", "Logins are slow <b>today</b>."))
        self.assertEqual(webmail[0]["state_text"], "Degraded performance")
        root = self.page()
        self.assertEqual(markup_problems(root), [])
        item = [li for li in root.find_all("li", cls="component")
                if li.find(cls="component-name") is not None and li.find(cls="component-name").words() == "Webmail"]
        self.assertEqual(len(item), 1, "Webmail is on the page once")
        self.assertIn("Degraded performance", item[0].words())
        self.assertIn("Logins are slow <b>today</b>.", item[0].words())

        name = "Calendar sync"
        response = self.admin("PUT", f"/api/admin/components/{urllib.parse.quote(name)}",
                              {"state": "major_outage", "note": "Calendars do not sync."})
        self.assertEqual(response.status, 200, response)
        document = self.document()
        calendar = [c for c in document["components"] if c["name"] == name]
        self.assertEqual([(c["state"], c["note"]) for c in calendar], [("major_outage", "Calendars do not sync.")])
        self.assertEqual(document["overall"], "major_outage", "a major outage is the worst state")
        item = [li for li in self.page().find_all("li", cls="component") if name in li.words()]
        self.assertEqual(len(item), 1)
        self.assertIn("Major outage", item[0].words())

        self.server.cli_ok("status", "component", "Webmail", "maintenance")
        webmail = [c for c in self.document()["components"] if c["name"] == "Webmail"]
        self.assertEqual([c["state"] for c in webmail], ["maintenance"])
        for component in ("Webmail", name):
            self.server.cli_ok("status", "component", component, "--remove")
        names = [c["name"] for c in self.document()["components"]]
        self.assertNotIn("Webmail", names)
        self.assertNotIn(name, names)
        self.assertFalse([li for li in self.page().find_all("li", cls="component") if "Webmail" in li.words()])

    def test_scheduled_maintenance(self):
        """`status open --maintenance START END` and the API's maintenance
        window: upcoming maintenance under its own heading on the page and in
        the JSON's maintenance list, soonest first, with its window."""
        now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0, second=0, minute=0)
        later = now + datetime.timedelta(days=40)
        sooner = now + datetime.timedelta(days=20)

        def rfc3339(at: datetime.datetime) -> str:
            return at.strftime("%Y-%m-%dT%H:%M:%SZ")

        cli_incident, _ = self.open_incident(
            f"IMAP upgrade {unique_marker()}", "We upgrade the IMAP servers. Sessions reconnect once.", "IMAP",
            extra=("--maintenance", rfc3339(later), rfc3339(later + datetime.timedelta(hours=2))))
        created = self.admin("POST", "/api/admin/incidents", {
            "title": f"DNS move {unique_marker()}", "components": ["DNS"], "impact": "none", "state": "scheduled",
            "text": "We move DNS to new servers.", "author": "ana",
            "maintenance": {"starts": int(sooner.timestamp()), "ends": int(sooner.timestamp()) + 3600}})
        self.assertEqual(created.status, 201, created)
        api_incident = created.json()["incident"]

        stored = self.stored_incident(cli_incident)
        self.assertEqual(stored["kind"], {"type": "maintenance", "starts": int(later.timestamp()),
                                          "ends": int(later.timestamp()) + 7200})
        self.assertEqual(stored["state"], "scheduled")

        document = self.document()
        order = [i["id"] for i in document["maintenance"] if i["id"] in (cli_incident, api_incident)]
        self.assertEqual(order, [api_incident, cli_incident], "upcoming maintenance, soonest first")
        _, item = self.document_incident(document, cli_incident)
        self.assertEqual((item["maintenance"], item["phase"], item["state"]), (True, "upcoming", "scheduled"))
        self.assertEqual((item["window_starts"], item["window_ends"]),
                         (rfc3339(later), rfc3339(later + datetime.timedelta(hours=2))))

        root = self.page()
        order = [i for i in section_ids(root, "maintenance") if i in (cli_incident, api_incident)]
        self.assertEqual(order, [api_incident, cli_incident])
        article = article_by_id(root, cli_incident)
        self.assertIn("Scheduled", article.words())
        window = article.find("p", cls="window")
        self.assertIsNotNone(window, "the maintenance window is on the page")
        self.assertEqual([t.attrs.get("datetime") for t in window.find_all("time")],
                         [rfc3339(later), rfc3339(later + datetime.timedelta(hours=2))])

    def test_healthz_and_not_found(self):
        """/healthz answers 200 "ok"; unknown paths and incidents 404."""
        response = self.get("/healthz")
        self.assertEqual(response.body.strip(), b"ok")
        self.get("/status", "text/html")
        self.get("/status/history", "text/html")
        self.get("/api/status", "application/json")
        self.get("/status/feed.atom", "application/atom+xml")
        for path in ("/no-such-page", "/status/incidents/999999", "/status/nothing", "/api/nothing"):
            with self.subTest(path):
                self.assertEqual(self.server.http("GET", path).status, 404, path)
        response = self.admin("GET", "/api/admin/no-such-thing")
        self.assertIn(response.status, (401, 404), response)

    def test_metrics(self):
        """The Prometheus exposition parses line by line; it counts IMAP
        connections, failed and successful logins, LMTP deliveries and their
        latency, and shows the store's queue depth."""

        def metrics():
            response = self.get("/metrics")
            self.assertEqual(response.media_type, "text/plain", response.headers)
            return parse_metrics(response.text())

        before, types = metrics()
        for name in ("postern_imap_connections", "postern_lmtp_connections", "postern_smtp_connections",
                     "postern_lmtp_deliveries_total", "postern_store_queue_depth", "postern_repair_queue_depth"):
            self.assertIsNotNone(metric_sum(before, name), f"{name} is not in /metrics")
        self.assertIn(types.get("postern_delivery_seconds"), ("histogram", "summary"),
                      "postern_delivery_seconds is a histogram or a summary")
        self.assertGreaterEqual(metric_sum(before, "postern_store_queue_depth"), 0)

        user, password = self.new_user("metrics")
        client = self.raw()
        self.assertEqual(client.login(user, "wrong-password").status, "NO")
        client.login(user, password).ok()
        during, _ = metrics()
        self.assertGreaterEqual(metric_sum(during, "postern_imap_connections"), 1,
                                "an IMAP connection is open while /metrics is read")
        client.logout()

        # QUIT after the delivery: its 221 comes after everything the server
        # did for the delivery in this session, counters included.
        with self.server.lmtp_raw() as lmtp:
            lmtp.lhlo()
            transaction = lmtp.transaction("sender@example.org", [f"{user}@{RCPT_DOMAIN}"],
                                           simple_message(subject="metrics"))
            self.assertEqual([code for code, _ in transaction.final], [250], transaction)
            self.assertEqual(lmtp.cmd("QUIT")[0], 221)
        after, types = metrics()

        def delta(name, **labels):
            return (metric_sum(after, name, **labels) or 0) - (metric_sum(before, name, **labels) or 0)

        self.assertGreaterEqual(delta("postern_imap_logins_total", result="failed"), 1)
        self.assertGreaterEqual(delta("postern_imap_logins_total", result="ok"), 1)
        self.assertGreaterEqual(metric_sum(after, "postern_lmtp_deliveries_total"), 1)
        self.assertGreaterEqual(delta("postern_lmtp_deliveries_total"), 1)
        self.assertGreaterEqual(delta("postern_delivery_seconds_count"), 1)
        if types.get("postern_delivery_seconds") == "histogram":
            buckets = sorted((float(labels["le"]), value) for name, labels, value in after
                             if name == "postern_delivery_seconds_bucket")
            self.assertTrue(buckets and math.isinf(buckets[-1][0]), "a histogram has a +Inf bucket")
            self.assertEqual(buckets[-1][1], metric_sum(after, "postern_delivery_seconds_count"))
            counts = [value for _, value in buckets]
            self.assertEqual(counts, sorted(counts), "histogram buckets are cumulative")


class HistoryTest(StatusTestCase):
    """A server of its own, so that the history holds exactly the incidents
    of a generated log, imported twice (once in setUpClass, then again)."""

    COUNT = 120  # more than the largest page (100), so there are always at least two pages
    YEAR = 2011

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        try:
            cls.log, cls.titles = incident_log(cls.COUNT, cls.YEAR)
            cls.log_path = cls.server.tmp / "incidents.log"
            cls.log_path.write_text(cls.log, encoding="utf-8")
            imported = cls.server.cli_ok("status", "import", str(cls.log_path), "--year", str(cls.YEAR), "--json")
            cls.first_import = json.loads(imported.stdout)
        except BaseException:
            cls.tearDownClass()
            raise

    def by_title(self) -> dict[str, dict]:
        return {incident["title"]: incident for incident in self.stored()}

    def test_import_reports_what_it_added(self):
        """`status import FILE --year Y --json` of 120 incidents of a Status
        and an Update each reports 120 incidents, 240 posts, 0 duplicates."""
        self.assertEqual(self.first_import, {"incidents": self.COUNT, "posts": 2 * self.COUNT, "duplicates": 0})

    def test_import_again_adds_nothing(self):
        """The same file again: nothing added, every post a duplicate."""
        before = self.stored()
        again = self.cli_json("status", "import", str(self.log_path), "--year", str(self.YEAR))
        self.assertEqual(again, {"incidents": 0, "posts": 0, "duplicates": 2 * self.COUNT})
        self.assertEqual(self.stored(), before)

    def test_imported_incidents(self):
        """Titled by the first sentence of the first post, resolved as of the
        last post, every post with its author; from 2011, so in the history
        and not on the status page."""
        stored = self.stored()
        self.assertEqual(sorted(i["title"] for i in stored), sorted(self.titles))
        for incident in stored:
            self.assertEqual(incident["state"], "resolved", incident["title"])
            self.assertEqual(incident["resolved"], incident["posts"][-1]["at"], "resolved as of its last post")
            self.assertEqual([p["author"] for p in incident["posts"]], ["sam", "kim"])
            self.assertEqual(incident["created"], incident["posts"][0]["at"])
        status_page = self.get("/status", "text/html").text()
        self.assertNotIn(self.titles[-1], status_page)
        newest = self.by_title()[self.titles[-1]]
        article = article_by_id(self.page(f"/status/incidents/{newest['id']}"), newest["id"])
        self.assertEqual(article.find("a").words(), self.titles[-1])
        self.assertEqual([p["author"] for p in article_posts(article)], ["sam", "kim"])

    def test_imported_incidents_get_ids_oldest_first(self):
        """Imported incidents are stored oldest first (the log runs newest
        first), so ids grow with time, as for incidents posted one by one."""
        by_title = self.by_title()
        ids = [by_title[t]["id"] for t in self.titles]
        self.assertEqual(ids, sorted(ids), "ids of the imported incidents, oldest first")

    def test_history_pages(self):
        """The history pages show every incident once, newest first, each with
        its whole timeline, 20 to 100 a page, linked to each other by
        rel=prev/next links."""
        by_title = self.by_title()
        newest_first = [by_title[t]["id"] for t in reversed(self.titles)]
        seen: list[int] = []
        first_page = self.page("/status/history")
        per_page = len(page_articles(first_page))
        self.assertTrue(20 <= per_page <= 100, f"{per_page} incidents on a history page")
        pages = math.ceil(self.COUNT / per_page)
        self.assertIn(f"Page 1 of {pages}", first_page.words())
        for number in range(1, pages + 1):
            root = first_page if number == 1 else self.page(f"/status/history?page={number}")
            articles = page_articles(root)
            expected = per_page if number < pages else self.COUNT - per_page * (pages - 1)
            self.assertEqual(len(articles), expected, f"page {number}")
            for article in articles:
                seen.append(incident_id_of(article))
                posts = article_posts(article)
                self.assertEqual([p["role"] for p in posts], ["Status", "Update"], "the whole timeline")
            links = {a.attrs.get("rel"): a.attrs.get("href") for a in root.find_all("a") if a.attrs.get("rel")}
            if number < pages:
                self.assertEqual(links.get("next"), f"{PUBLIC_URL}/status/history?page={number + 1}")
            else:
                self.assertNotIn("next", links)
            if number > 1:
                self.assertIn(links.get("prev"), (f"{PUBLIC_URL}/status/history?page={number - 1}",
                                                  f"{PUBLIC_URL}/status/history"))
        self.assertEqual(len(seen), len(set(seen)), "an incident on two history pages")
        self.assertEqual(seen, newest_first, "every incident once, newest first")
        response = self.server.http("GET", f"/status/history?page={pages + 1}")
        self.assertIn(response.status, (200, 404), response)


class DefaultsTest(StatusTestCase):
    """`[http]` with two listen addresses and no public_url."""

    server_options = {"http": {"listen": ["127.0.0.1:0", "127.0.0.1:0"]}}

    def test_every_listen_address_serves(self):
        ports = [port for service, _, port in self.server.listening if service == "http"]
        self.assertEqual(len(ports), 2, f"one 'listening http' line per address: {self.server.listening}")
        for port in ports:
            response = http_request("GET", f"http://127.0.0.1:{port}/healthz")
            self.assertEqual((response.status, response.body.strip()), (200, b"ok"), port)

    def test_links_default_to_the_first_listen_address(self):
        """Without public_url, links are http:// and the first listen address
        as bound (port 0 resolved), so they work."""
        first = next(port for service, _, port in self.server.listening if service == "http")
        base = f"http://127.0.0.1:{first}"
        self.assertEqual(self.document()["page_url"], f"{base}/status")
        root = self.page()
        feed_links = [l.attrs.get("href") for l in root.find_all("link", rel="alternate")]
        self.assertEqual(feed_links, [f"{base}/status/feed.atom"])
        response = http_request("GET", feed_links[0])
        self.assertEqual((response.status, response.media_type), (200, "application/atom+xml"), response)


class HealthTest(StatusTestCase):
    """Live health raises a component on its own: a delivery path slower than
    the threshold (here a large message against a 20 ms threshold, no grace
    time, measured every second) degrades "Incoming mail" on the page and in
    the JSON with a sentence saying how long delivery takes, and nobody posted."""

    server_options = {"http": {**HTTP_OPTIONS["http"], "delivery_degraded_ms": 20, "delivery_usual_ms": 5000,
                               "grace_secs": 0, "health_interval_secs": 1}}

    def incoming(self) -> dict:
        components = {c["name"]: c for c in self.document()["components"]}
        return components["Incoming mail"]

    def test_slow_delivery_degrades_incoming_mail(self):
        self.assertEqual(self.incoming()["state"], "operational", "before any delivery")
        user, _ = self.new_user("slow")
        # About 8 MB: hashing, parsing and storing it takes far longer than 20 ms.
        body = b"".join(b"line %07d of a large message to slow delivery down\r\n" % n for n in range(150_000))
        message = b"Subject: large\r\nFrom: a@example.org\r\n\r\n" + body
        self.server.deliver_ok(user, message)
        wait_until(lambda: self.incoming()["state"] == "degraded", 30,
                   "Incoming mail degraded by the measured delivery time", interval_s=0.2)
        component = self.incoming()
        self.assertEqual(component["set_by"], "health", "no one set it: the measured health did")
        self.assertTrue(component["health"], component)
        text = json.dumps(component["health"])
        self.assertIn("usually under 5 seconds", text)
        self.assertEqual(self.document()["open_incidents"], [], "no incident was posted")
        page = self.get("/status", "text/html").body.decode("utf-8")
        self.assertIn("usually under 5 seconds", page)


class RestartTest(StatusTestCase):
    """Incidents, edits, components and tokens are stored: they survive a
    restart, and the CLI works on the store while no server runs."""

    def test_survives_restart_and_cli_without_a_server(self):
        incident, post = self.open_incident(f"Before restart {unique_marker()}", "Kept across restarts.", "IMAP")
        self.server.cli_ok("status", "edit", str(post), "--author", "kim", input="Kept, and edited.")
        self.server.cli_ok("status", "component", "Webmail", "partial_outage", "--note", "Half of it.")
        revoked = self.server.cli_ok("status", "token", "add", "short-lived").stdout.decode().strip()
        self.server.cli_ok("status", "token", "revoke", "short-lived")
        before = self.stored()

        self.server.stop()
        offline = self.server.cli("status", "update", str(incident), "--author", "sam", input="Posted offline.")
        self.assertEqual(offline.returncode, 0, offline.stderr.decode(errors="replace"))
        self.server.start()

        stored = self.stored()
        self.assertEqual([i for i in stored if i["id"] != incident], [i for i in before if i["id"] != incident])
        item = next(i for i in stored if i["id"] == incident)
        self.assertEqual([p["text"] for p in item["posts"]], ["Kept, and edited.", "Posted offline."])
        self.assertEqual([e["previous_text"] for e in item["posts"][0]["edits"]], ["Kept across restarts."])
        posts = article_posts(article_by_id(self.page(), incident))
        self.assertEqual([p["text"] for p in posts], ["Kept, and edited.", "Posted offline."])
        webmail = [c for c in self.document()["components"] if c["name"] == "Webmail"]
        self.assertEqual([(c["state"], c["note"]) for c in webmail], [("partial_outage", "Half of it.")])
        self.assertEqual(self.admin("GET", "/api/admin/incidents").status, 200, "the class token still works")
        self.assertEqual(self.admin("GET", "/api/admin/incidents", token=revoked).status, 401,
                         "a revoked token stays revoked")


class ChromiumTest(StatusTestCase):
    """The status page in a real headless Chromium (Debian's `chromium`)."""

    def chromium(self, *args: str) -> subprocess.CompletedProcess:
        if CHROMIUM is None:
            self.fail(CHROMIUM_HINT)
        profile = tempfile.mkdtemp(prefix="postern-chromium-")
        self.addCleanup(shutil.rmtree, profile, True)
        command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                   "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
                   "--no-proxy-server", f"--user-data-dir={profile}", *args]
        try:
            return subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=CHROMIUM_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.fail(f"chromium did not finish within {CHROMIUM_TIMEOUT_S}s: {command}")

    def test_page_in_headless_chromium(self):
        """A phone-sized screenshot (a PNG of 390x844 with more than a few
        colours) and the rendered DOM, which holds the incident text, and
        none of the hostile update's markup as elements (its script did
        not run)."""
        marker = unique_marker("chromium")
        text = f"Incoming mail is delayed by about 15 minutes. We are looking for abuse patterns. {marker}"
        incident, _ = self.open_incident(f"Incoming mail is delayed {marker}", text, "Incoming mail",
                                         impact="minor")
        self.update_incident(incident, "<script>document.title='pwned'</script>"
                                       "<img src=x onerror=\"document.title='pwned'\"> Still looking.")
        url = self.server.http_url("/status")

        shot = self.server.tmp / "status-phone.png"
        completed = self.chromium(f"--screenshot={shot}", f"--window-size={PHONE_WIDTH},{PHONE_HEIGHT}",
                                  "--hide-scrollbars", url)
        self.assertEqual(completed.returncode, 0, completed.stderr.decode(errors="replace")[-3000:])
        self.assertTrue(shot.exists(), "chromium wrote no screenshot")
        data = shot.read_bytes()
        self.assertEqual(data[:8], b"\x89PNG\r\n\x1a\n", "the screenshot is not a PNG")
        self.assertGreater(len(data), 5_000, "a screenshot of a rendered page is bigger")
        width, height, colours = png_facts(data)
        self.assertEqual((width, height), (PHONE_WIDTH, PHONE_HEIGHT))
        self.assertGreaterEqual(colours, 8, "the screenshot is nearly blank")

        completed = self.chromium("--dump-dom", url)
        self.assertEqual(completed.returncode, 0, completed.stderr.decode(errors="replace")[-3000:])
        dom = completed.stdout.decode("utf-8", "replace")
        self.assertIn(marker, dom)
        self.assertIn(words(text), words(parse_html(dom).text()))
        root = parse_html(dom)
        self.assertIsNotNone(root.find("main"), "no <main> in the rendered page")
        self.assertIsNotNone(root.find("meta", name="viewport"), "no viewport meta: not readable on a phone")
        self.assertEqual(markup_problems(root), [], "author markup became elements in the browser")
        self.assertNotIn("pwned", (root.find("title") or Node("title", {}, None)).text(),
                         "the author's script ran in the browser")
        self.assertIn("document.title='pwned'", root.text(), "the hostile update shows as text")


if __name__ == "__main__":
    unittest.main()
