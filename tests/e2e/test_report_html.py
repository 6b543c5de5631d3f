"""`tracekit report -f html` opened in headless Chromium: what renders, not just what was written.

The store holds two lab runs: samples/scenarios/async-retries.toml (orders-notify: 4710 succeeds,
4711 times out twice then succeeds, 4712 fails three times and is dead-lettered) and an inline async
scenario (orders-capture, one retry, no destination: two rejected orders are dropped; one order id is
a script tag, to prove the report escapes what it shows). Chromium's serialized DOM must hold the
figures, one attempt mark per attempt of the worst events, one bar segment per outcome per time
bucket, and the hostile order id as text; its screenshot must show the charts' colours.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import zlib
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CliRun
from tracekit.collect.ingest import ingest_paths
from tracekit.lab.run import run_scenario
from tracekit.store import Store

ROOT = Path(__file__).resolve().parents[2]
HANDLER = ROOT / "tests" / "analyze" / "handlers" / "async_orders.py"
HOSTILE = "<script>document.body.setAttribute('data-pwned','1')</script>"
CAPTURE = f"""
name = "report-html-capture"
start = "2026-11-22T11:00:00Z"
[function]
name = "orders-capture"
handler = "{HANDLER.as_posix()}:handler"
timeout_s = 3
[source]
type = "async"
maximum_retry_attempts = 1
[[events]]
payload = {{ order_id = 1 }}
[[events]]
at = 1
payload = {{ order_id = "{HOSTILE}", reject = true }}
[[events]]
at = 2
payload = {{ order_id = 3, reject = true }}
[[events]]
at = 3
payload = {{ order_id = 4 }}
"""
# Colours of the marks (tracekit/report_html.py's palette): a failed and a successful attempt; and the
# charts' background, which tells a mark inside a chart from the same colour in a legend outside it.
ERROR_RGB = (0xE5, 0x39, 0x35)
SUCCESS_RGB = (0x2E, 0x7D, 0x32)
CHART_RGB = (0xFA, 0xFA, 0xFA)
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def chromium() -> str:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        "Chromium is not installed, and the HTML report can only be checked by rendering it: "
        "run `make test` (it installs Debian's chromium) or `apt-get install chromium`"
    )


def run_chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [chromium(), "--headless", "--disable-gpu", "--no-sandbox", f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done


# ---------------------------------------------------------------------------- the rendered DOM


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node] = field(default_factory=list)
    text: list[str] = field(default_factory=list)

    def walk(self) -> list[Node]:
        found = [self]
        for child in self.children:
            found += child.walk()
        return found

    def all_text(self) -> str:
        return "".join(self.text) + "".join(c.all_text() for c in self.children)

    def find(self, tag: str, **attrs: str) -> list[Node]:
        return [
            n
            for n in self.walk()
            if n.tag == tag and all(n.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]


class Dom(HTMLParser):
    """Chromium's serialized DOM as a tree of Nodes (it closes every non-void element)."""

    VOID = {"meta", "link", "br", "img", "input", "hr", "col", "area", "base", "source", "wbr"}

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in self.VOID:
            self.stack.append(node)

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].text.append(data)


# ---------------------------------------------------------------------------- the screenshot


def png_rows(data: bytes) -> tuple[int, int, list[list[tuple[int, ...]]]]:
    """Width, height and rows of RGB pixels of an 8-bit RGB or RGBA, non-interlaced PNG (standard
    library only)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos : pos + 4]), data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert (depth, colour, interlace) in ((8, 2, 0), (8, 6, 0)), (depth, colour, interlace)
    channels = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(idat), width * channels
    rows: list[bytearray] = []
    previous = bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, corner = previous[i], previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        rows.append(line)
        previous = line
    return width, height, [[tuple(row[x : x + 3]) for x in range(0, stride, channels)] for row in rows]


# ---------------------------------------------------------------------------- the test


def lab_run(store: Store, scenario: Path, out: Path, seed: int, function: str) -> dict[str, Any]:
    run_scenario(scenario, out, seed=seed)
    inputs = [out / d for d in ("logs", "destinations", "dlq") if (out / d).is_dir()]
    ingest_paths(store, inputs, log_group=f"/aws/lambda/{function}")
    truth: dict[str, Any] = json.loads((out / "truth.json").read_text())
    return truth


def visible(event: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for a in event["attempts"] if a["outcome"] != "throttled"]


def expected_marks(truth: dict[str, Any]) -> tuple[int, int]:
    """(attempt marks, bar segments) by the documented rules: the worst events are those with trouble
    (not a first-attempt success, or more than one attempt); both scenarios span under 48 s, so the
    outcomes-over-time buckets are one second wide."""
    events = truth["events"]
    trouble = [e for e in events if e["outcome"] != "succeeded" or len(visible(e)) > 1]
    assert len(trouble) <= 10
    bars = {(visible(e)[0]["start"][:19], e["outcome"]) for e in events}
    return sum(len(visible(e)) for e in trouble), len(bars)


def test_the_html_report_renders_in_chromium(tracekit_cli: CliRun, tmp_path: Path) -> None:
    root = tmp_path / "store"
    scenario = tmp_path / "capture.toml"
    scenario.write_text(CAPTURE)
    with Store.open(root, create=True) as store:
        notify = lab_run(
            store, ROOT / "samples" / "scenarios" / "async-retries.toml", tmp_path / "a", 1, "orders-notify"
        )
        capture = lab_run(store, scenario, tmp_path / "b", 2, "orders-capture")
    assert sorted(e["outcome"] for e in capture["events"]) == ["dropped", "dropped", "succeeded", "succeeded"]
    # The function's retry setting, as a user would give it: without it one retry left is possible.
    workdir = tmp_path / "cwd"  # the tracekit_cli fixture's working directory
    (workdir / "tracekit.toml").write_text("[functions.orders-capture]\nmaximum_retry_attempts = 1\n")

    page = tmp_path / "report.html"
    done = tracekit_cli("report", "--store", root, "-f", "html", "-o", page, cwd=workdir)
    assert done.returncode == 0, done.stderr
    text = page.read_text()
    # Self-contained: no script, no stylesheet or image from anywhere, no URL at all.
    for banned in ("<script", "http://", "https://", "src=", "<link"):
        assert banned not in text

    dom = Dom(run_chromium("--dump-dom", page.as_uri(), profile=tmp_path / "profile").stdout)
    [body] = dom.root.find("body")
    assert "data-pwned" not in body.attrs
    assert not dom.root.find("script")
    sections = {s.attrs["data-function"]: s for s in dom.root.find("section")}
    assert list(sections) == ["orders-capture", "orders-notify"]

    for function, truth in (("orders-notify", notify), ("orders-capture", capture)):
        section = sections[function]
        events = truth["events"]
        figures = {dd.attrs["data-figure"]: dd.all_text() for dd in section.find("dd")}
        assert figures["events"] == str(len(events))
        assert figures["invocations"] == str(sum(len(visible(e)) for e in events))
        assert figures["dropped"] == str(sum(e["outcome"] == "dropped" for e in events))
        assert figures["timeouts"] == str(
            sum(a["outcome"] == "timeout" for e in events for a in e["attempts"])
        )
        outcome_rows = {
            tr.attrs["data-outcome"]: tr.all_text() for tr in section.find("tr") if "data-outcome" in tr.attrs
        }
        for outcome, n in Counter(e["outcome"] for e in events).items():
            assert outcome_rows[outcome].endswith(str(n))
        marks, bars = expected_marks(truth)
        [timeline] = section.find("svg", **{"class": "timeline"})
        attempt_marks = timeline.find("rect")
        assert len(attempt_marks) == marks
        assert Counter(r.attrs["data-outcome"] for r in attempt_marks) == Counter(
            a["outcome"]
            for e in events
            if e["outcome"] != "succeeded" or len(visible(e)) > 1
            for a in visible(e)
        )
        [chart] = section.find("svg", **{"class": "outcomes"})
        segments = chart.find("rect")
        assert len(segments) == bars
        assert sum(int(r.attrs["data-count"]) for r in segments) == len(events)

    # orders-notify: 4711 and 4712 are drawn with three attempts each; 4710 succeeded at once.
    assert expected_marks(notify)[0] == 6
    # The hostile order id is shown as text in the dropped events' errors, never run.
    dropped_text = sections["orders-capture"].all_text()
    assert f"RuntimeError: payment provider rejected order {HOSTILE}" in dropped_text

    shot = tmp_path / "report.png"
    run_chromium(
        f"--screenshot={shot}", "--window-size=1000,1800", page.as_uri(), profile=tmp_path / "profile"
    )
    width, height, rows = png_rows(shot.read_bytes())
    assert (width, height) == (1000, 1800)
    colours = Counter(pixel for row in rows for pixel in row)
    assert len(colours) > 50, "the screenshot is (nearly) blank"
    assert colours.most_common(1)[0][1] < 0.9 * width * height
    in_charts = Counter(pixel for row in rows if CHART_RGB in row for pixel in row)
    for rgb in (ERROR_RGB, SUCCESS_RGB):
        assert in_charts[rgb] > 50, f"no {rgb} marks rendered in a chart"
