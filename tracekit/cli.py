"""The command line: parse options, call the core once, render the result, map errors to one line."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from tracekit import __version__
from tracekit.errors import TracekitError
from tracekit.render import Format

app = typer.Typer(
    name="tracekit",
    help="Forensics, replay and chaos for the failure paths of AWS Lambda.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)

DEFAULT_STORE = ".tracekit"
StoreOption = Annotated[
    Path,
    typer.Option(
        "--store", envvar="TRACEKIT_STORE", help="Store directory (default ./.tracekit).", show_default=False
    ),
]
FormatOption = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]
_debug = {"on": False}


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a TracekitError into `Error: …` on stderr and exit 2 (traceback only with --debug)."""
    try:
        yield
    except TracekitError as exc:
        if _debug["on"]:
            raise
        typer.echo(f"Error: {exc.line()}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        typer.echo("Interrupted; nothing half-written is visible in the store.", err=True)
        raise typer.Exit(130) from None


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tracekit {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")
    ] = False,
) -> None:
    """tracekit reads Lambda logs, destination records and dead letters into a store you can query."""
    _debug["on"] = debug


@app.command()
def ingest(
    paths: Annotated[
        list[Path], typer.Argument(help="Files or directories (recursed); plain or .gz.", show_default=False)
    ],
    store: StoreOption = Path(DEFAULT_STORE),
    log_group: Annotated[
        str | None,
        typer.Option(
            "--log-group",
            help="Log group of log files that do not name one (filter-log-events, text, S3 export).",
        ),
    ] = None,
    queue: Annotated[
        str | None,
        typer.Option(
            "--queue",
            help="Queue (name or ARN) that `aws sqs receive-message` output came from; that output "
            "does not name it.",
        ),
    ] = None,
    fmt: FormatOption = Format.TABLE,
) -> None:
    """Read Lambda failure artifacts into the store: logs, destination records, dead letters.

    Formats are recognised by content. Ingesting the same input twice adds no rows; what cannot
    be parsed is kept in the quarantine table and counted.

    Example: tracekit ingest exports/ --store .tracekit
             tracekit ingest dlq.json --queue orders-dlq
    """
    from tracekit.collect.ingest import ingest_paths
    from tracekit.render import print_counts
    from tracekit.store import Store

    with user_errors():
        with Store.open(store, create=True) as st:
            report = ingest_paths(st, list(paths), log_group=log_group, queue=queue)
        print_counts(report.counts, fmt, title=f"rows added to {st.root}")
        if report.counts.get("quarantined"):
            typer.echo(
                f"warning: {report.counts['quarantined']} input(s) could not be parsed and were quarantined; "
                f'see: tracekit sql "SELECT source, position, reason FROM quarantine" --store {store}',
                err=True,
            )


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="A read-only SQL query (DuckDB dialect).", show_default=False)],
    store: StoreOption = Path(DEFAULT_STORE),
    fmt: FormatOption = Format.TABLE,
) -> None:
    """Run read-only SQL over the store's tables.

    Tables: log_events, invocations, destination_records, dead_letters, quarantine.

    Example: tracekit sql "SELECT status, count(*) FROM invocations GROUP BY status"
    """
    from tracekit.render import print_rows
    from tracekit.store import Store
    from tracekit.store.query import run_read_only

    with user_errors():
        with Store.open(store) as st:
            columns, rows = run_read_only(st, query)
        print_rows(columns, rows, fmt)


def _samples_dir() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here / "_samples", here.parent / "samples"):
        if candidate.is_dir():
            return candidate
    raise TracekitError(
        "bundled samples not found",
        str(here.parent / "samples"),
        "Run tracekit demo from a clone of the repository",
    )


@app.command()
def demo(
    store: Annotated[
        Path | None, typer.Option("--store", help="Store directory (default: a new temporary one).")
    ] = None,
    fmt: FormatOption = Format.TABLE,
) -> None:
    """Ingest the bundled sample incident into a fresh store and show what it holds.

    Example: tracekit demo
    """
    from tracekit.collect.ingest import ingest_demo
    from tracekit.render import print_counts, print_rows
    from tracekit.store import Store
    from tracekit.store.query import DEMO_QUERIES

    with user_errors():
        samples = _samples_dir()
        target = store or Path(tempfile.mkdtemp(prefix="tracekit-demo-"))
        with Store.open(target, create=True) as st:
            report = ingest_demo(st, samples)
            print_counts(report.counts, fmt, title=f"Ingested {report.files} files from {samples}")
            con = st.connect()
            try:
                for title, query in DEMO_QUERIES:
                    cur = con.execute(query)
                    columns = [d[0] for d in cur.description or []]
                    print_rows(columns, cur.fetchall(), fmt, title=title)
            finally:
                con.close()
        typer.echo(
            f'Store: {st.root}\nTry: tracekit sql "SELECT * FROM invocations LIMIT 5" --store {st.root}',
            err=True,
        )


lab_app = typer.Typer(
    name="lab",
    help="Run real handlers under Lambda's failure semantics in virtual time.",
    no_args_is_help=True,
)
app.add_typer(lab_app)


@lab_app.command("run")
def lab_run(
    scenario: Annotated[Path, typer.Argument(help="Scenario file (TOML).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for the artifacts (replaced).")],
    seed: Annotated[int, typer.Option("--seed", help="Seed for ids, timings and random faults.")] = 0,
    publish: Annotated[
        bool,
        typer.Option(
            "--publish",
            help="Also write the artifacts through the AWS APIs (CloudWatch Logs, SQS, Kinesis) to the "
            "configured endpoint, creating missing resources.",
        ),
    ] = False,
    fmt: FormatOption = Format.TABLE,
) -> None:
    """Run a scenario: logs, destination records, DLQ messages and truth.json land in --out.

    Example: tracekit lab run samples/scenarios/async-retries.toml --out lab-out --seed 7
    """
    from tracekit.lab.run import run_scenario
    from tracekit.render import print_counts

    with user_errors():
        report = run_scenario(scenario, out, seed=seed, publish=publish)
    print_counts(
        {**report.counts, **{f"outcome {k}": v for k, v in sorted(report.outcomes.items())}},
        fmt,
        title=f"{report.scenario}: {report.virtual_seconds:,.0f} virtual seconds, artifacts in {report.out}",
        headers=("artifact / outcome", "count"),
    )


# ---------------------------------------------------------------------------- recorder

recorder_app = typer.Typer(
    name="recorder",
    help="The recorder users add to real functions: one log line per invocation in, one out.",
    no_args_is_help=True,
)
app.add_typer(recorder_app)


@recorder_app.command("layer")
def recorder_layer(
    out: Annotated[Path, typer.Option("--out", "-o", help="Zip file to write (replaced).")],
) -> None:
    """Build a Lambda layer holding only tracekit.recorder; rebuilding it gives the same bytes.

    Example: tracekit recorder layer -o layer.zip
    """
    from tracekit.errors import first_line
    from tracekit.recorder import LAYER_MEMBER, build_layer

    with user_errors():
        try:
            size = build_layer(out)
        except OSError as exc:
            raise TracekitError("Cannot write the layer", str(out), first_line(exc)) from None
    typer.echo(f"Wrote {out} ({size:,} bytes): {LAYER_MEMBER}")
    typer.echo(
        "In the function: from tracekit.recorder import recorded, then @recorded on the handler.", err=True
    )


# ---------------------------------------------------------------------------- entry point


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except BrokenPipeError:
        # Output piped into `head` and closed early: not an error for a CLI.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)
