"""Business keys and per-function analyzer settings, read from tracekit.toml.

A user knows "order 4711", not a request id or a messageId. `tracekit.toml` names, per function,
the JSON paths that lead from an event's payload to such a key, and may give analyzer settings
(the function's retry configuration, while live collection cannot read it yet)::

    [functions.orders-notify]
    key = "$.order_id"                  # or a list: the first path that yields a value wins
    maximum_retry_attempts = 1          # any other entry becomes a row of function_settings

    [functions."*"]                     # every function without a table of its own
    key = ["$.orderId", "$.detail.orderId"]

Paths are a JSONPath subset: `$`, then `.name`, `["any name"]` and `[N]` steps, e.g. `$.a.b[0].c`.
The business key is computed in SQL from the `payload` column the source modules fill (the DLQ
body, a destination record's requestPayload, or the logged event); an SQS record's body, an SNS
notification's Message, a Kinesis record's base64 data and a DynamoDB record's image are opened
first, so the path is written against what the producer sent.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracekit import jsonio
from tracekit.errors import TracekitError, first_line

if TYPE_CHECKING:
    import duckdb

CONFIG_NAME = "tracekit.toml"
ANY_FUNCTION = "*"

_NAME = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)")
_QUOTED = re.compile(r"""\[\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')\s*\]""")
_INDEX = re.compile(r"\[\s*(\d+)\s*\]")


class ConfigError(TracekitError):
    """tracekit.toml or a --key path cannot be used."""


def parse_path(text: str) -> tuple[str | int, ...]:
    """The steps of a JSONPath-subset expression such as `$.a.b[0].c` (names and indexes).

    Raises:
        ConfigError: the path is not in the supported subset.
    """
    path = text.strip()
    if not path.startswith("$"):
        raise ConfigError("a key path starts with $", text, 'Write it like "$.orderId" or "$.items[0].id"')
    steps: list[str | int] = []
    pos = 1
    while pos < len(path):
        for pattern in (_NAME, _QUOTED, _INDEX):
            match = pattern.match(path, pos)
            if match:
                break
        else:
            raise ConfigError(
                f"unsupported key path syntax at character {pos + 1}",
                text,
                'Use .name, ["name"] and [N] steps, e.g. "$.order.items[0].sku"',
            )
        if pattern is _INDEX:
            steps.append(int(match.group(1)))
        else:
            steps.append(next(g for g in match.groups() if g is not None))
        pos = match.end()
    return tuple(steps)


def duckdb_path(steps: tuple[str | int, ...]) -> str:
    """The DuckDB JSON path for parsed steps (every name quoted, so no name can change the syntax)."""
    out = "$"
    for step in steps:
        if isinstance(step, int):
            out += f"[{step}]"
        else:
            out += '."' + step.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return out


@dataclass(frozen=True)
class FunctionConfig:
    """What tracekit.toml says about one function (or about every function, for "*")."""

    keys: tuple[str, ...] = ()
    settings: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Config:
    """The analyzer's configuration; empty when there is no tracekit.toml."""

    path: Path | None = None
    functions: dict[str, FunctionConfig] = field(default_factory=dict)

    def digest(self) -> str:
        """A fingerprint of everything that changes the analysis tables (keys and settings)."""
        body = {name: [list(f.keys), f.settings] for name, f in sorted(self.functions.items())}
        return hashlib.sha256(jsonio.dumpb(body, sort_keys=True)).hexdigest()[:16]

    def settings_rows(self) -> list[tuple[str, str, str]]:
        """(function_name, setting, value) rows for the function_settings table."""
        return [
            (name, setting, value)
            for name, function in sorted(self.functions.items())
            if name != ANY_FUNCTION
            for setting, value in sorted(function.settings.items())
        ]

    def key_paths(self) -> dict[str, tuple[str, ...]]:
        """Function name ("*" for the default) → its key paths, in DuckDB syntax."""
        return {
            name: tuple(duckdb_path(parse_path(p)) for p in f.keys)
            for name, f in self.functions.items()
            if f.keys
        }


def load_config(path: Path | None = None, *, cwd: Path | None = None) -> Config:
    """Read `path`, or ./tracekit.toml when it exists; an empty Config otherwise.

    Raises:
        ConfigError: `path` is missing, or the file is not valid TOML or not the expected shape.
    """
    if path is None:
        candidate = (cwd or Path.cwd()) / CONFIG_NAME
        if not candidate.is_file():
            return Config()
        path = candidate
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("config file not found", str(path), "Check the --config path") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config ({first_line(exc)})", str(path), "Fix the file") from None
    return Config(path=path, functions=_functions(document.get("functions", {}), path))


def _functions(table: Any, path: Path) -> dict[str, FunctionConfig]:
    if not isinstance(table, dict):
        raise ConfigError("[functions] must be a table", str(path), "Write [functions.<name>] tables")
    out: dict[str, FunctionConfig] = {}
    for name, entries in table.items():
        if not isinstance(entries, dict):
            raise ConfigError(
                f"functions.{name} must be a table",
                str(path),
                f'Write [functions."{name}"] with key = "$.id"',
            )
        keys = entries.get("key", [])
        keys = [keys] if isinstance(keys, str) else keys
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise ConfigError(
                f"functions.{name}.key must be a path or a list of paths",
                str(path),
                'Write key = "$.orderId"',
            )
        for key in keys:
            try:
                parse_path(key)
            except ConfigError as exc:
                raise ConfigError(f"functions.{name}.key {key!r}: {exc.what}", str(path), exc.todo) from None
        settings = {k: _setting_text(v) for k, v in entries.items() if k != "key"}
        out[name] = FunctionConfig(keys=tuple(keys), settings=settings)
    return out


def _setting_text(value: Any) -> str:
    # Booleans as TOML writes them, lists and tables as JSON: modules compare text.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return jsonio.dumps(value)
    return str(value)


def create_function_settings(con: duckdb.DuckDBPyConnection, config: Config) -> None:
    """Create the function_settings temp table the source modules read their settings from."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE function_settings "
        "(function_name VARCHAR, setting VARCHAR, value VARCHAR)"
    )
    rows = config.settings_rows()
    if rows:
        con.executemany("INSERT INTO function_settings VALUES (?, ?, ?)", rows)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# What the producer sent, as JSON text, from the payload a source module found.
_DOCUMENT = """CASE WHEN json_valid(payload) THEN CASE
    WHEN json_exists(payload, '$.kinesis.data')
        THEN try(decode(from_base64(json_extract_string(payload, '$.kinesis.data'))))
    WHEN json_exists(payload, '$.messageId') AND json_exists(payload, '$.body')
        THEN json_extract_string(payload, '$.body')
    WHEN json_exists(payload, '$.dynamodb')
        THEN CAST(coalesce(json_extract(payload, '$.dynamodb.NewImage'),
                           json_extract(payload, '$.dynamodb.OldImage'),
                           json_extract(payload, '$.dynamodb.Keys')) AS VARCHAR)
    ELSE payload END END"""

# An SQS body may hold an SNS notification whose Message is the producer's JSON.
_OPENED = """CASE WHEN json_valid(tk_doc) AND json_extract_string(tk_doc, '$.Type') = 'Notification'
    AND json_exists(tk_doc, '$.Message') THEN json_extract_string(tk_doc, '$.Message') ELSE tk_doc END"""

_NO_KEY = "CAST(NULL AS VARCHAR)"


def _value(path: str) -> str:
    """The key at `path` in `doc`, as text; a DynamoDB attribute value ({"S": …}, {"N": …}) unwrapped."""
    raw = f"json_extract(doc, {_literal(path)})"
    return (
        "CASE WHEN NOT json_valid(doc) THEN NULL "
        f"WHEN source = 'dynamodb' AND json_type({raw}) = 'OBJECT' "
        f"AND json_keys({raw}) IN (['S'], ['N'], ['BOOL']) "
        f"THEN json_extract_string({raw}, '$.' || json_keys({raw})[1]) "
        f"ELSE json_extract_string(doc, {_literal(path)}) END"
    )


def business_key_sql(config: Config, override: str | None = None) -> str:
    """A SQL expression giving each event's business key from the columns `function_name`, `source`
    and `doc` (the opened payload that `with_business_key` adds).

    `override` (a --key path) replaces every configured path.
    """
    if override is not None:
        return _first([duckdb_path(parse_path(override))])
    paths = config.key_paths()
    default = _first(list(paths.get(ANY_FUNCTION, ())))
    cases = [
        f"WHEN {_literal(name)} THEN {_first(list(p))}"
        for name, p in sorted(paths.items())
        if name != ANY_FUNCTION
    ]
    if not cases:
        return default
    return f"CASE function_name {' '.join(cases)} ELSE {default} END"


def _first(paths: list[str]) -> str:
    if not paths:
        return _NO_KEY
    values = [_value(p) for p in paths]
    return values[0] if len(values) == 1 else f"coalesce({', '.join(values)})"


def with_business_key(relation_sql: str, config: Config, override: str | None = None) -> str:
    """The rows of `relation_sql` (which has `function_name`, `source`, `payload` and a `business_key`
    column) with `business_key` computed from the configured paths, or from `override`."""
    key = business_key_sql(config, override)
    if key == _NO_KEY:
        return f"SELECT * REPLACE ({_NO_KEY} AS business_key) FROM ({relation_sql})"
    opened = f"SELECT *, {_DOCUMENT} AS tk_doc FROM ({relation_sql})"
    return (
        f"SELECT * EXCLUDE (doc) REPLACE ({key} AS business_key) FROM "
        f"(SELECT * EXCLUDE (tk_doc), {_OPENED} AS doc FROM ({opened}))"
    )
