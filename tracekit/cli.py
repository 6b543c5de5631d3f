"""The command line: parse options, call the core once, render the result, map errors to one line."""

from __future__ import annotations

import datetime as dt
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tracekit import __version__, jsonio
from tracekit.analyze.lookup import Outcome
from tracekit.errors import TracekitError
from tracekit.render import Format, counted

if TYPE_CHECKING:
    from tracekit.analyze.audit import AuditReport
    from tracekit.analyze.keys import Config
    from tracekit.analyze.report import Report
    from tracekit.chaos.run import ChaosReport
    from tracekit.chaos.verdict import EventVerdict
    from tracekit.collect.live import CollectReport
    from tracekit.store import Store

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
    quiet: QuietOption = False,
) -> None:
    """Read Lambda failure artifacts into the store: logs, destination records, dead letters.

    Formats are recognised by content. Ingesting the same input twice adds no rows; what cannot
    be parsed is kept in the quarantine table and counted.

    Example: tracekit ingest exports/ --store .tracekit
             tracekit ingest dlq.json --queue orders-dlq
    """
    from tracekit.collect.ingest import ingest_paths
    from tracekit.collect.progress import Meter
    from tracekit.render import print_counts
    from tracekit.store import Store

    with user_errors():
        with (
            Store.open(store, create=True) as st,
            Meter("ingest", "files", enabled=not quiet, pages=False) as meter,
        ):
            report = ingest_paths(st, list(paths), log_group=log_group, queue=queue, meter=meter)
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

    Tables: log_events, invocations, destination_records, dead_letters, quarantine, and the
    analysis tables events, attempts, batches (built by `tracekit analyze`).

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


# ---------------------------------------------------------------------------- analysis

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="Business keys and analyzer settings (default ./tracekit.toml when it exists).",
        show_default=False,
    ),
]


class ShowFormat(StrEnum):
    """Output formats of `tracekit show`."""

    TEXT = "text"
    JSON = "json"


def _config(path: Path | None) -> Config:
    from tracekit.analyze.keys import load_config

    return load_config(path)


def _up_to_date(st: Store, config: Config) -> None:
    """Rebuild the analysis when the store changed since it was built, saying so in one line."""
    from tracekit.analyze.build import ensure_current

    ensure_current(
        st, config, lambda reason: typer.echo(f"Analysis out of date ({reason}); rebuilding it.", err=True)
    )


@app.command()
def analyze(
    store: StoreOption = Path(DEFAULT_STORE),
    config: ConfigOption = None,
    fmt: FormatOption = Format.TABLE,
) -> None:
    """Rebuild the events, attempts and batches tables from everything in the store.

    Prints how many events ended how, per source. `tracekit events` and `tracekit show` rebuild
    the tables by themselves when the store changed; `tracekit sql` reads them as they are.

    Example: tracekit analyze --store .tracekit
             tracekit sql "SELECT outcome, count(*) FROM events GROUP BY outcome"
    """
    from tracekit.analyze.build import analyze as build_analysis
    from tracekit.render import print_rows
    from tracekit.store import Store

    with user_errors():
        settings = _config(config)
        with Store.open(store) as st:
            report = build_analysis(st, settings)
    rows = [(s, o, n) for s, outcomes in report.outcomes.items() for o, n in outcomes.items()]
    if fmt is Format.JSON:
        typer.echo(
            jsonio.dumps(
                {
                    "generation": report.generation,
                    **report.rows,
                    "uncertain": report.uncertain,
                    "outcomes": report.outcomes,
                }
            )
        )
    else:
        if fmt is Format.TABLE:
            typer.echo(
                f"Analysis {report.generation}: {report.rows['events']:,} events, "
                f"{report.rows['attempts']:,} attempts, {report.rows['batches']:,} batches "
                f"from {len(report.ingest_batches)} ingest batches in {report.seconds:.1f} s"
            )
        print_rows(["source", "outcome", "events"], rows, fmt)
    if report.uncertain:
        typer.echo(
            f"{report.uncertain} event(s) are uncertain; see: tracekit sql "
            f'"SELECT event_id, uncertain_reason FROM events WHERE uncertain" --store {store}',
            err=True,
        )


@app.command()
def events(
    store: StoreOption = Path(DEFAULT_STORE),
    function: Annotated[str | None, typer.Option("--function", help="Only this function.")] = None,
    outcome: Annotated[Outcome | None, typer.Option("--outcome", help="Only events that ended so.")] = None,
    duplicates: Annotated[
        bool, typer.Option("--duplicates", help="Only events processed more than once.")
    ] = False,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only events seen at or after this time: ISO, or 30m, 6h, 2d, 1w ago."),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            help="A business key value to match; or a path ($.orderId) to compute keys with instead of "
            "tracekit.toml's; or both ($.orderId=4711).",
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="At most this many events.")] = None,
    config: ConfigOption = None,
    fmt: FormatOption = Format.TABLE,
) -> None:
    """List events, one line each: outcome, attempts, duplicates, when, business key, uncertain.

    Example: tracekit events --outcome dropped --since 6h
             tracekit events --function orders-notify --duplicates -f json
             tracekit events --key 4711            (with key = "$.order_id" in tracekit.toml)
             tracekit events --key '$.order_id=4711'
    """
    from tracekit.analyze.lookup import EventFilter, list_events, parse_since, split_key_option
    from tracekit.render import print_rows
    from tracekit.store import Store

    with user_errors():
        settings = _config(config)
        key_path, key_value = split_key_option(key)
        where = EventFilter(
            function=function,
            outcome=outcome,
            duplicates=duplicates,
            since=parse_since(since) if since else None,
            key_value=key_value,
            key_path=key_path,
            limit=limit,
        )
        with Store.open(store) as st:
            _up_to_date(st, settings)
            con = st.connect()
            try:
                columns, rows = list_events(con, settings, where)
            finally:
                con.close()
    print_rows(columns, rows, fmt)


@app.command()
def show(
    event: Annotated[
        str, typer.Argument(help="An event id, a business key or a request id.", show_default=False)
    ],
    store: StoreOption = Path(DEFAULT_STORE),
    key: Annotated[
        str | None,
        typer.Option(
            "--key", help="Key path ($.orderId) to match business keys with instead of tracekit.toml's."
        ),
    ] = None,
    config: ConfigOption = None,
    fmt: Annotated[ShowFormat, typer.Option("--format", "-f", help="Output format.")] = ShowFormat.TEXT,
) -> None:
    """Show what happened to one event: every attempt with its gap and error, the batches it was
    in (with the batches they were split from), and the destination record or DLQ message that
    proves where it ended. A business key shared by several events shows each of them.

    Example: tracekit show 99caa200-e55a-40d3-a4aa-f3360928d2ab
             tracekit show 4711 --key '$.order_id'
             tracekit show shardId-000000000000:49650000000000000000000000000000000000000000000001 -f json
    """
    from tracekit.analyze.lookup import check_key_path, find_timelines
    from tracekit.store import Store
    from tracekit.timeline import print_timelines

    with user_errors():
        settings = _config(config)
        check_key_path(key)
        with Store.open(store) as st:
            _up_to_date(st, settings)
            con = st.connect()
            try:
                matched_by, timelines = find_timelines(con, settings, event, key)
            finally:
                con.close()
    if fmt is ShowFormat.JSON:
        typer.echo(jsonio.dumps({"query": event, "matched_by": matched_by, "events": timelines}))
    else:
        print_timelines(matched_by, event, timelines)


class ReportFormat(StrEnum):
    """Output formats of `tracekit report`."""

    TEXT = "text"
    JSON = "json"
    HTML = "html"


@app.command()
def report(
    store: StoreOption = Path(DEFAULT_STORE),
    function: Annotated[str | None, typer.Option("--function", help="Only this function.")] = None,
    fmt: Annotated[ReportFormat, typer.Option("--format", "-f", help="Output format.")] = ReportFormat.TEXT,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the report to this file (replaced).")
    ] = None,
    worst: Annotated[int, typer.Option("--worst", min=1, help="Worst events listed per function.")] = 10,
    config: ConfigOption = None,
) -> None:
    """Per function: events, outcomes, retries, duplicates, dropped events, duration percentiles,
    timeouts, out-of-memory kills, cold starts, top errors and the worst events.

    HTML: one self-contained file, with the worst events' attempts and the outcomes over time.

    Example: tracekit report
             tracekit report --function orders-notify -f json
             tracekit report -f html -o report.html
    """
    from tracekit.analyze.report import build_report
    from tracekit.store import Store

    with user_errors():
        settings = _config(config)
        with Store.open(store) as st:
            _up_to_date(st, settings)
            data = build_report(st, function=function, worst=worst)
        if output is None:
            _print_report(data, fmt)
        else:
            size = _write_report(data, fmt, output)
            typer.echo(f"Wrote {output} ({size:,} bytes, {len(data.functions)} function(s))", err=True)


def _print_report(data: Report, fmt: ReportFormat) -> None:
    if fmt is ReportFormat.JSON:
        typer.echo(jsonio.dumps(data.to_dict()))
    elif fmt is ReportFormat.HTML:
        from tracekit.report_html import render_html

        typer.echo(render_html(data), nl=False)
    else:
        from tracekit.report_text import print_report

        print_report(data)


def _write_report(data: Report, fmt: ReportFormat, output: Path) -> int:
    """Write the report next to `output`, then move it into place: a reader never sees half a file."""
    import io

    from tracekit.errors import first_line

    if fmt is ReportFormat.JSON:
        text = jsonio.dumps(data.to_dict()) + "\n"
    elif fmt is ReportFormat.HTML:
        from tracekit.report_html import render_html

        text = render_html(data)
    else:
        from tracekit.report_text import print_report

        buffer = io.StringIO()
        print_report(data, file=buffer)
        text = buffer.getvalue()
    body = text.encode("utf-8")
    partial = output.with_name(f".{output.name}.partial")
    try:
        partial.write_bytes(body)
        partial.replace(output)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise TracekitError("cannot write the report", str(output), first_line(exc)) from None
    return len(body)


class AuditFormat(StrEnum):
    """Output formats of `tracekit audit`."""

    TABLE = "table"
    JSON = "json"


@app.command()
def audit(
    store: StoreOption = Path(DEFAULT_STORE),
    config: ConfigOption = None,
    fmt: Annotated[AuditFormat, typer.Option("--format", "-f", help="Output format.")] = AuditFormat.TABLE,
) -> None:
    """Flag settings that Lambda's failure semantics make dangerous: events dropped with no DLQ or
    destination, retries that cannot happen, SQS messages processed twice or dead-lettered too soon,
    stream shards blocked by one bad record.

    Settings come from the configuration `tracekit collect function` stored (the account's own, so
    it wins), then tracekit.toml; where both are silent, from what the store shows (dead letters,
    on-failure records, dropped events, split batches). Each finding says which it rests on; rules
    nothing can decide are listed as not checked, with the settings that would decide them.

    Example: tracekit audit
             tracekit audit --config tracekit.toml -f json
    """
    from tracekit.analyze import audit as auditing
    from tracekit.store import Store

    with user_errors():
        settings = _config(config)
        auditing.configured_settings(settings)  # a bad value fails now, not after a rebuild
        if not store.exists():
            if settings.path is None:
                raise TracekitError(
                    "nothing to audit: no tracekit store and no tracekit.toml",
                    str(store),
                    "Ingest Lambda artifacts with `tracekit ingest`, or describe the functions in "
                    "tracekit.toml (--config)",
                )
            typer.echo(f"No store at {store}: auditing {settings.path} alone.", err=True)
            result = auditing.audit_configuration(settings)
        else:
            with Store.open(store) as st:
                _up_to_date(st, settings)
                con = st.connect()
                try:
                    result = auditing.audit(con, settings)
                finally:
                    con.close()
    if fmt is AuditFormat.JSON:
        typer.echo(jsonio.dumps(result.as_dict()))
    else:
        _print_audit(result)


def _print_audit(result: AuditReport) -> None:
    """The findings as a table, each one's why and fix under it, then the rules left unchecked."""
    import textwrap

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(width=None if sys.stdout.isatty() else 120, highlight=False)
    audited = ", ".join(f"{f['function']} ({f['source'] or 'source unknown'})" for f in result.functions)
    console.print(f"Audited {len(result.functions)} function(s): {audited or 'none'}", markup=False)
    if not result.findings:
        console.print("No dangerous settings found.")
    else:
        console.print(f"{len(result.findings)} finding(s):")
        table = Table()
        for column in ("#", "severity", "function", "rule", "value", "basis"):
            table.add_column(column, overflow="fold")
        for n, f in enumerate(result.findings, 1):
            table.add_row(*(Text(str(v)) for v in (n, f.severity, f.function, f.rule, f.value, f.basis)))
        console.print(table)
        for n, f in enumerate(result.findings, 1):
            console.print(f"{n}. {f.function}: {f.rule}", markup=False)
            for line in (f"Why: {f.why}", f"Fix: {f.fix}", f"See: {' '.join(f.references)}"):
                # Wrapped here, not by rich, so URLs stay whole and lines carry no trailing blanks.
                wrapped = textwrap.fill(
                    line, console.width, initial_indent="   ", subsequent_indent="   ", break_long_words=False
                )
                console.print(wrapped, markup=False, soft_wrap=True)
    if result.unchecked:
        console.print("Not checked: the settings in tracekit.toml that would decide these rules")
        table = Table()
        for column in ("function", "source", "rule", "needs"):
            table.add_column(column, overflow="fold")
        for u in result.unchecked:
            table.add_row(*(Text(v) for v in (u.function, u.source or "", u.rule, ", ".join(u.needs))))
        console.print(table)


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
            help="Also write the artifacts through the AWS APIs (CloudWatch Logs, SQS, Kinesis, S3) to the "
            "configured endpoint, creating missing resources, and create the function with its failure "
            "configuration.",
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


# ---------------------------------------------------------------------------- collect

collect_app = typer.Typer(
    name="collect",
    help="Read logs, destination records, dead letters and failure configuration from a live account.",
    no_args_is_help=True,
)
app.add_typer(collect_app)

ProfileOption = Annotated[
    str | None, typer.Option("--profile", help="AWS profile (default: the standard credential chain).")
]
RegionOption = Annotated[str | None, typer.Option("--region", help="AWS region (default: configured one).")]
SinceOption = Annotated[
    str | None,
    typer.Option("--since", help="From this time: ISO, or 30m, 6h, 2d, 1w ago (default: watermark)."),
]
UntilOption = Annotated[
    str | None, typer.Option("--until", help="Up to this time: ISO, or 30m, 6h, 2d, 1w ago.")
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress line on stderr.")]


def _when(text: str | None) -> dt.datetime | None:
    from tracekit.analyze.lookup import parse_since

    return parse_since(text) if text else None


def _print_collect(result: CollectReport, fmt: Format, store: Store) -> None:
    from tracekit.render import print_counts

    counts = {
        **result.counts,
        "fetched": result.fetched,
        **{f"calls {k}": v for k, v in sorted(result.calls.items())},
    }
    print_counts(
        counts, fmt, title=f"collected into {store.root}: {', '.join(result.resources) or 'nothing'}"
    )
    for warning in result.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if result.counts.get("quarantined"):
        typer.echo(
            f"warning: {result.counts['quarantined']} record(s) could not be parsed and were quarantined; "
            f'see: tracekit sql "SELECT source, position, reason FROM quarantine" --store {store.root}',
            err=True,
        )


@collect_app.command("logs")
def collect_logs_command(
    log_group: Annotated[
        str, typer.Option("--log-group", help="Log group name, e.g. /aws/lambda/orders.", show_default=False)
    ],
    stream_prefix: Annotated[
        str | None, typer.Option("--log-stream-prefix", help="Only log streams whose name starts with this.")
    ] = None,
    filter_pattern: Annotated[
        str | None,
        typer.Option("--filter-pattern", help="A CloudWatch Logs filter pattern (not with --insights)."),
    ] = None,
    since: SinceOption = None,
    until: UntilOption = None,
    insights: Annotated[
        bool,
        typer.Option(
            "--insights",
            help="Run a Logs Insights query for only the lines tracekit needs (START/END/REPORT, "
            "errors, timeouts, recorder lines, platform records) instead of reading every event.",
        ),
    ] = False,
    max_rate: Annotated[
        float,
        typer.Option("--max-rate", min=0.1, help="CloudWatch Logs requests a second at most (limit ~5/s)."),
    ] = 4.0,
    profile: ProfileOption = None,
    region: RegionOption = None,
    store: StoreOption = Path(DEFAULT_STORE),
    fmt: FormatOption = Format.TABLE,
    quiet: QuietOption = False,
) -> None:
    """Copy a log group's events into the store; a re-run fetches only what is new.

    Without --since a run starts 5 minutes before where the last one ended (events can become
    searchable late; repeats are dropped by eventId), and the first run 24 hours back. An
    interrupted run resumes where it stopped when run again.

    Example: tracekit collect logs --log-group /aws/lambda/orders --since 6h
             tracekit collect logs --log-group /aws/lambda/orders --insights
    """
    from tracekit.collect.cloudwatch import LogsRequest, collect_logs
    from tracekit.collect.live import collect_aws
    from tracekit.collect.progress import Meter
    from tracekit.store import Store

    with user_errors():
        request = LogsRequest(
            log_group,
            stream_prefix=stream_prefix,
            filter_pattern=filter_pattern,
            since=_when(since),
            until=_when(until),
            insights=insights,
            max_rate=max_rate,
        )
        aws = collect_aws(region, profile)
        with Store.open(store, create=True) as st, st.writing():
            with Meter(f"log group {log_group}", enabled=not quiet) as meter:
                result = collect_logs(st, aws, request, meter=meter)
        _print_collect(result, fmt, st)


class QueueRole(StrEnum):
    """What a collected queue holds."""

    DLQ = "dlq"
    DESTINATION = "destination"


@collect_app.command("queue")
def collect_queue_command(
    queue: Annotated[str, typer.Argument(help="Queue URL, name or ARN.", show_default=False)],
    role: Annotated[
        QueueRole,
        typer.Option(
            "--as",
            help="What the queue holds: dlq (dead letters) or destination (destination records; "
            "other messages are quarantined).",
            show_default=False,
        ),
    ],
    drain: Annotated[
        bool,
        typer.Option("--drain", help="Delete each message once it is stored, until the queue is empty."),
    ] = False,
    hold: Annotated[
        int,
        typer.Option(
            "--hold",
            min=1,
            max=43200,
            help="Seconds each message stays hidden while the queue is read; then it is released.",
        ),
    ] = 120,
    profile: ProfileOption = None,
    region: RegionOption = None,
    store: StoreOption = Path(DEFAULT_STORE),
    fmt: FormatOption = Format.TABLE,
    quiet: QuietOption = False,
) -> None:
    """Copy every message of an SQS queue (a DLQ or a destination queue) into the store.

    By default the queue is left as it was: each message is received once, held for --hold
    seconds, and made visible again; its receive count rises by one. --drain deletes each
    message, but only after it is committed to the store.

    Example: tracekit collect queue orders-dlq --as dlq
             tracekit collect queue arn:aws:sqs:eu-west-1:123456789012:orders-failed --as destination
    """
    from tracekit.collect.live import collect_aws
    from tracekit.collect.progress import Meter
    from tracekit.collect.queues import collect_queue, queue_region
    from tracekit.store import Store

    with user_errors():
        aws = collect_aws(region or queue_region(queue), profile)
        with Store.open(store, create=True) as st, st.writing():
            with Meter(f"queue {queue}", "messages", enabled=not quiet) as meter:
                result = collect_queue(st, aws, queue, role=role.value, drain=drain, hold_s=hold, meter=meter)
        _print_collect(result, fmt, st)


@collect_app.command("function")
def collect_function_command(
    name: Annotated[str, typer.Argument(help="Function name or ARN.", show_default=False)],
    qualifier: Annotated[
        str | None,
        typer.Option("--qualifier", help="A version or alias (default: the unqualified function)."),
    ] = None,
    since: SinceOption = None,
    until: UntilOption = None,
    insights: Annotated[
        bool,
        typer.Option(
            "--insights", help="Read the logs with a Logs Insights query for only the lines tracekit needs."
        ),
    ] = False,
    profile: ProfileOption = None,
    region: RegionOption = None,
    store: StoreOption = Path(DEFAULT_STORE),
    fmt: FormatOption = Format.TABLE,
    quiet: QuietOption = False,
) -> None:
    """Discover a function's failure configuration, store it, and collect every source it names.

    Reads the function's configuration, async invoke config and event source mappings (and each SQS
    source queue's redrive policy) into function_configs and event_source_mappings, then its log group,
    its DLQ, its SQS and S3 destinations and its source queues' redrive DLQs. Source queues are never
    read; SNS, EventBridge and Lambda targets cannot be, and are named in a warning. Nothing in the
    account changes except that queue snapshots raise receive counts by one.

    Example: tracekit collect function orders-processor --since 6h
             tracekit collect function orders-processor --qualifier live --insights
    """
    from tracekit.collect.functions import FunctionRequest, collect_function
    from tracekit.collect.live import collect_aws
    from tracekit.store import Store

    with user_errors():
        request = FunctionRequest(
            name,
            qualifier=qualifier,
            since=_when(since),
            until=_when(until),
            insights=insights,
            progress=not quiet,
        )
        arn_region = name.split(":")[3] if name.startswith("arn:") and name.count(":") >= 6 else None
        aws = collect_aws(region or arn_region, profile)
        with Store.open(store, create=True) as st, st.writing():
            result = collect_function(st, aws, request)
        _print_collect(result, fmt, st)


@collect_app.command("s3")
def collect_s3_command(
    url: Annotated[str, typer.Argument(help="s3://BUCKET/PREFIX to read.", show_default=False)],
    log_group: Annotated[
        str | None,
        typer.Option(
            "--log-group", help="Log group of CloudWatch Logs export objects (their content does not say)."
        ),
    ] = None,
    profile: ProfileOption = None,
    region: RegionOption = None,
    store: StoreOption = Path(DEFAULT_STORE),
    fmt: FormatOption = Format.TABLE,
    quiet: QuietOption = False,
) -> None:
    """Copy the objects under an S3 prefix into the store: CloudWatch Logs exports and on-failure records.

    Each object is recognised by content. A second run fetches only objects that are new or changed.

    Example: tracekit collect s3 s3://log-exports/orders/ --log-group /aws/lambda/orders
             tracekit collect s3 s3://orders-failures/aws/lambda/
    """
    from tracekit.collect.live import collect_aws
    from tracekit.collect.progress import Meter
    from tracekit.collect.s3 import collect_s3
    from tracekit.store import Store

    with user_errors():
        aws = collect_aws(region, profile)
        with Store.open(store, create=True) as st, st.writing():
            with Meter(url, "objects", enabled=not quiet) as meter:
                result = collect_s3(st, aws, url, log_group=log_group, meter=meter)
        _print_collect(result, fmt, st)


# ---------------------------------------------------------------------------- replay and chaos

replay_app = typer.Typer(
    name="replay",
    help="Re-inject failed events into their sources, safely: plan, read, then run.",
    no_args_is_help=True,
)
app.add_typer(replay_app)


@replay_app.command("run")
def replay_run(
    plan: Annotated[
        Path, typer.Argument(help="Replay plan (JSON) from `tracekit replay plan`.", show_default=False)
    ],
    apply: Annotated[
        bool, typer.Option("--apply", help="Send (default: a dry run that sends nothing).")
    ] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Finish an interrupted run from its journal (<plan>.journal).")
    ] = False,
    retry_failed: Annotated[
        bool,
        typer.Option(
            "--retry-failed", help="With --resume: send the copies that failed again (cause fixed)."
        ),
    ] = False,
    rate: Annotated[
        float, typer.Option("--rate", min=0.1, help="Messages per second; halved on throttling.")
    ] = 50.0,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, max=64, help="Calls in flight.")] = 4,
    allow_account: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-account",
            help="Account that may receive (repeatable; default: replay.allow_accounts in tracekit.toml).",
        ),
    ] = None,
    delete_source: Annotated[
        bool,
        typer.Option(
            "--delete-source", help="Delete each dead letter from its DLQ once its copy is confirmed."
        ),
    ] = False,
    fault: Annotated[
        list[str] | None, typer.Option("--fault", help="Fault to inject, e.g. duplicate=2 (repeatable).")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for the faults' random choices.")] = 0,
    profile: ProfileOption = None,
    region: RegionOption = None,
    store: Annotated[
        Path | None,
        typer.Option(
            "--store",
            envvar="TRACEKIT_STORE",
            help="Store redacted payloads are re-read from (default: the plan's).",
        ),
    ] = None,
    fmt: FormatOption = Format.TABLE,
    quiet: QuietOption = False,
) -> None:
    """Send a replay plan's copies: dry run by default, journaled, resumable, rate-limited.

    Nothing is sent unless the credentials' account (STS) is allowed. Every copy's state is in
    <plan>.journal; a killed run resumes with --resume and sends again only what was in flight
    (reported as possibly duplicated). The report is printed and written to <plan>.report.json.

    Example: tracekit replay run replays/orders.json
             tracekit replay run replays/orders.json --apply --rate 50 --allow-account 123456789012
    """
    from tracekit.aws import Aws
    from tracekit.collect.progress import Meter
    from tracekit.replay.run import RunOptions, iter_lines, run_plan

    options = RunOptions(
        apply=apply,
        resume=resume,
        retry_failed=retry_failed,
        rate=rate,
        concurrency=concurrency,
        allow_accounts=list(allow_account or []),
        delete_source=delete_source,
        faults=list(fault or []),
        seed=seed,
        store=store,
    )
    with user_errors():
        aws = Aws(
            region,
            profile=profile,
            verb="cannot replay",
            retry_hint="Fix this and finish with --resume",
        )
        try:
            with Meter(f"replay {plan.name}", "messages", enabled=apply and not quiet) as meter:
                report = run_plan(
                    plan, aws, options, progress=meter, notify=lambda line: typer.echo(line, err=True)
                )
        except KeyboardInterrupt:
            typer.echo("Interrupted: the journal holds every copy's state; finish with --resume.", err=True)
            raise typer.Exit(130) from None
    if fmt is Format.JSON:
        typer.echo(jsonio.dumps(report.to_json()))
    else:
        typer.echo("\n".join(iter_lines(report)))


@replay_app.command("plan")
def replay_plan(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The plan file to write.", show_default=False)
    ],
    function: Annotated[str | None, typer.Option("--function", help="Only this function.")] = None,
    outcome: Annotated[Outcome | None, typer.Option("--outcome", help="Only events that ended so.")] = None,
    error_type: Annotated[
        str | None, typer.Option("--error-type", help="Only events whose final error has this type.")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only events seen at or after this time: ISO, or 30m, 6h, 2d, 1w ago."),
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Only events first seen at or before this time.")
    ] = None,
    event: Annotated[
        list[str] | None, typer.Option("--event", help="Only this event id (repeatable).")
    ] = None,
    key: Annotated[
        str | None,
        typer.Option("--key", help="A business key value, a key path ($.orderId), or both ($.orderId=4711)."),
    ] = None,
    where: Annotated[
        str | None, typer.Option("--where", help="A SQL condition over the events table.")
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            help="Send every entry here: a function, SQS, SNS, EventBridge bus or Kinesis ARN, or queue URL.",
        ),
    ] = None,
    redact: Annotated[
        list[str] | None,
        typer.Option(
            "--redact", help="Mask this JSON path in the file ($.card; repeatable); re-read at run time."
        ),
    ] = None,
    include_replays: Annotated[
        bool, typer.Option("--include-replays", help="Also plan replayed copies and events already replayed.")
    ] = False,
    profile: ProfileOption = None,
    region: RegionOption = None,
    store: StoreOption = Path(DEFAULT_STORE),
    config: ConfigOption = None,
    fmt: FormatOption = Format.TABLE,
) -> None:
    """Choose failed events and write a replay plan: one entry per event, with its target and payload.

    Selectors are those of `tracekit events`, plus --error-type, --until, --event and a SQL --where.
    Stream on-failure ranges are re-read from their stream now (AWS access needed). Prints the
    entries per target and, on stderr, every selected event the plan cannot replay and why.

    Example: tracekit replay plan --function orders --outcome dead_lettered --since 1d -o replays/orders.json
             tracekit replay plan --event 4711 --redact '$.card' -o replays/one.json
    """
    from tracekit.analyze.lookup import EventFilter, parse_since, split_key_option
    from tracekit.render import print_rows
    from tracekit.replay.model import save_plan
    from tracekit.replay.payloads import parse_target
    from tracekit.replay.plan import PlanRequest, entries_per_target, make_plan, plan_aws
    from tracekit.store import Store

    with user_errors():
        settings = _config(config)
        key_path, key_value = split_key_option(key)
        request = PlanRequest(
            where=EventFilter(
                function=function,
                outcome=outcome,
                since=parse_since(since) if since else None,
                key_value=key_value,
                key_path=key_path,
            ),
            error_type=error_type,
            until=parse_since(until) if until else None,
            event_ids=list(event or []),
            sql_where=where,
            target=parse_target(target) if target else None,
            redact=list(redact or []),
            include_replays=include_replays,
        )
        with Store.open(store) as st:
            _up_to_date(st, settings)
            plan = make_plan(st, settings, request, lambda: plan_aws(region, profile))
        save_plan(plan, output)
    print_rows(["target", "entries"], list(entries_per_target(plan.entries).items()), fmt)
    entries = counted(len(plan.entries), "entry", "entries")
    typer.echo(f"{entries} → {output} (plan {plan.plan_id})", err=True)
    for item in plan.unavailable:
        what = item.get("event_id") or item.get("source")
        typer.echo(f"not planned: {what}: {item['reason']}", err=True)


chaos_app = typer.Typer(
    name="chaos",
    help="Replay with injected faults in staging and judge whether the consumer is idempotent.",
    no_args_is_help=True,
)
app.add_typer(chaos_app)


@chaos_app.command("run")
def chaos_run(
    experiment: Annotated[Path, typer.Argument(help="Experiment file (TOML).", show_default=False)],
    store: Annotated[
        Path | None,
        typer.Option(
            "--store",
            envvar="TRACEKIT_STORE",
            help="Store the run's logs are ingested into and `sql` probes read (default: none).",
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Seed for the fault schedule (default: the file's).")
    ] = None,
    workdir: Annotated[
        Path | None,
        typer.Option("--workdir", help="Where the consumer's state and logs go (default: a new temp dir)."),
    ] = None,
    fmt: FormatOption = Format.TABLE,
    profile: ProfileOption = None,
    region: RegionOption = None,
) -> None:
    """Run events once cleanly, then with faults, probe the consumer's effect after each, and judge
    every event: idempotent, not_idempotent (with the difference) or inconclusive (and why).

    The lab target runs the consumer's handler locally, each phase from empty state. The aws target
    replays the experiment's plan to a staging account in the allow-list (the faulted phase on top
    of the clean one) and collects the consumer's log group into --store.

    Example: tracekit chaos run replays/experiments/orders-duplicates.toml
    """
    from tracekit.chaos.run import run_experiment

    with user_errors():
        report = run_experiment(
            experiment, store=store, seed=seed, workdir=workdir, region=region, profile=profile
        )
    if fmt is Format.JSON:
        typer.echo(jsonio.dumps(report.to_json()))
    else:
        _print_verdicts(report, fmt)
    typer.echo(f"consumer state and logs: {report.workdir}", err=True)
    if report.counts.get("not_idempotent"):
        # A gate for pipelines: the experiment showed a consumer that is not idempotent.
        raise typer.Exit(1)


def _print_verdicts(report: ChaosReport, fmt: Format) -> None:
    from tracekit.render import print_rows

    counts = ", ".join(f"{n} {v}" for v, n in report.counts.items())
    title = f"{report.experiment} ({', '.join(report.faults) or 'no faults'}): {counts}"
    columns = ["event", "key", "verdict", "delivered", "succeeded", "why", "probe", "before", "after"]
    print_rows(columns, _chaos_rows(report.events), fmt, title=title)
    if report.checks:
        checks = [[f.check, f.severity, f.basis, ", ".join(f.events), f.message] for f in report.checks]
        print_rows(["check", "severity", "basis", "events", "finding"], checks, fmt, title="static checks")


def _chaos_rows(events: list[EventVerdict]) -> list[list[object]]:
    """One row per event, or per differing probe of a not_idempotent event (before and after)."""
    rows: list[list[object]] = []
    for e in events:
        row: list[object] = [e.event_id, e.key, e.verdict, e.delivered, e.succeeded, e.reason]
        rows.extend(
            [*row, d["probe"], jsonio.dumps(d["before"]), jsonio.dumps(d["after"])] for d in e.differences
        )
        if not e.differences:
            rows.append([*row, "", "", ""])
    return rows


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
