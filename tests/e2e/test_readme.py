"""The README's commands run: the tour works on the bundled samples, and every command is documented."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

from tracekit.cli import app

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def tour_commands() -> list[str]:
    """The `tracekit …` lines of the README's tour block, continuation lines joined."""
    section = README.split("## A short tour", 1)[1]
    block = section.split("```sh", 1)[1].split("```", 1)[0]
    joined = re.sub(r"\\\n\s*", " ", block)
    # A quoted SQL string may span lines; shlex keeps it whole, so split commands on "tracekit ".
    return [
        "tracekit " + part.strip()
        for part in re.split(r"(?m)^tracekit ", joined)
        if part.strip() and not part.lstrip().startswith("#")
    ]


def test_the_tour_runs_on_the_samples(tmp_path: Path) -> None:
    commands = tour_commands()
    assert len(commands) >= 5
    store = str(tmp_path / "incident")
    outputs = []
    for command in commands:
        argv = [a if a != "/tmp/incident" else store for a in shlex.split(command, comments=True)]
        done = subprocess.run(
            [sys.executable, "-m", "tracekit", *argv[1:]],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"{command}\n{done.stderr}"
        outputs.append(done.stdout)
    # The tour's lookup of order 4711's request id shows its three attempts.
    attempts = next(o for c, o in zip(commands, outputs, strict=True) if "99caa200" in c)
    assert attempts.count("99caa200-e55a-40d3-a4aa-f3360928d2ab") == 3


def test_every_command_is_in_the_readme() -> None:
    names = {c.name or c.callback.__name__ for c in app.registered_commands}
    assert names == {"ingest", "sql", "demo"}
    for name in names:
        assert f"### `tracekit {name}" in README
