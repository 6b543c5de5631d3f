"""A fault-injecting HTTP proxy for tests: forwards AWS API calls to the moto server, except those a
rule picks, which get an AWS error response, a delay, a stall or a dropped connection.

Point boto3 or the CLI at it with AWS_ENDPOINT_URL=proxy.url. It counts every request per API
operation (what the bench and the tests assert call counts with) and keeps each request's JSON body,
path (query included) and headers (`FaultProxy.requests`).

    with FaultProxy(moto_server) as proxy:
        proxy.add(Rule("FilterLogEvents", error="ThrottlingException", times=3))
        ... run the collector with AWS_ENDPOINT_URL=proxy.url ...
        assert proxy.counts["FilterLogEvents"] == 5

The operation of a request is the part of its X-Amz-Target header after the dot (JSON protocol,
e.g. `Logs_20140328.FilterLogEvents`), else its `Action` parameter (query protocol), else
`METHOD /path` (REST protocols such as S3 and Lambda; the path as sent, percent-encoding kept).

An injected error names its code in the body (JSON for JSON-protocol calls and for REST-JSON
services such as Lambda, else query-protocol XML) and in the x-amzn-ErrorType header, where
REST-JSON clients read it.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import urllib.parse
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade", "te"}
STALL_LIMIT_S = 120.0  # a stalled request is let through after this long, so no test can hang forever
#: Services (as named in the SigV4 credential scope) whose REST API answers errors in JSON.
REST_JSON_SERVICES = {"lambda"}


@dataclass
class Rule:
    """What to do with the requests of one operation ("*": any operation).

    Exactly one of `error`, `reply`, `delay_s`, `stall` or `drop` is the fault; with none of them
    the rule passes the requests through (useful with `match` to count a kind of request).
    """

    operation: str
    #: AWS error code to answer with, e.g. "ThrottlingException".
    error: str | None = None
    #: HTTP status of the error response.
    status: int = 400
    #: The error message.
    message: str = "injected by the test proxy"
    #: Answer 200 with this JSON body instead of asking upstream (a response moto cannot make).
    reply: dict[str, Any] | None = None
    #: Forward the request after this many seconds.
    delay_s: float = 0.0
    #: Hold the request until `FaultProxy.release()` (or STALL_LIMIT_S), then forward it.
    stall: bool = False
    #: Close the connection without answering (what a network loss looks like to the client).
    drop: bool = False
    #: Let this many matching requests through before the rule applies.
    skip: int = 0
    #: Apply to this many matching requests (after `skip`), then pass; None: to every one.
    times: int | None = None
    #: Only requests whose parsed JSON body (None for other bodies) this returns true for.
    match: Callable[[Any], bool] | None = None
    #: How many requests this rule has matched (skipped ones included) and applied to.
    matched: int = 0
    applied: int = 0

    def picks(self, operation: str, body: Any) -> bool:
        """Whether this rule applies to the request (counts it as matched)."""
        if self.operation not in ("*", operation):
            return False
        if self.match is not None and not self.match(body):
            return False
        self.matched += 1
        if self.matched <= self.skip:
            return False
        if self.times is not None and self.applied >= self.times:
            return False
        self.applied += 1
        return True


@dataclass
class Seen:
    """One request the proxy received."""

    operation: str
    body: Any
    fault: str = "pass"
    #: The request path as sent (percent-encoded), with its query string.
    path: str = ""
    #: The request headers.
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _State:
    rules: list[Rule] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    requests: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    released: threading.Event = field(default_factory=threading.Event)
    stalled: threading.Event = field(default_factory=threading.Event)
    closing: threading.Event = field(default_factory=threading.Event)


class FaultProxy:
    """A threaded HTTP proxy on a free loopback port in front of `upstream` (the moto server URL)."""

    def __init__(self, upstream: str) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        self.upstream_host = parsed.hostname or "127.0.0.1"
        self.upstream_port = parsed.port or 80
        self.state = _State()
        handler = type("Handler", (_Handler,), {"proxy": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def counts(self) -> Counter[str]:
        """Requests received per operation, faulted ones included."""
        with self.state.lock:
            return Counter(self.state.counts)

    @property
    def requests(self) -> list[Seen]:
        """Every request received, in order."""
        with self.state.lock:
            return list(self.state.requests)

    def add(self, rule: Rule) -> Rule:
        """Add a rule; the first rule that picks a request decides what happens to it."""
        with self.state.lock:
            self.state.rules.append(rule)
        return rule

    def clear(self) -> None:
        """Remove every rule and forget what was counted."""
        with self.state.lock:
            self.state.rules.clear()
            self.state.counts.clear()
            self.state.requests.clear()
        self.state.stalled.clear()

    def wait_stalled(self, timeout: float = 30.0) -> bool:
        """Wait until a request is being held by a stall rule."""
        return self.state.stalled.wait(timeout)

    def release(self) -> None:
        """Let every stalled request (and every later one a stall rule picks) through."""
        self.state.released.set()

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.state.closing.set()
        self.release()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _decide(
        self, operation: str, body: Any, path: str = "", headers: dict[str, str] | None = None
    ) -> Rule | None:
        with self.state.lock:
            self.state.counts[operation] += 1
            rule = next((r for r in self.state.rules if r.picks(operation, body)), None)
            self.state.requests.append(Seen(operation, body, _fault_name(rule), path, dict(headers or {})))
            return rule


def _fault_name(rule: Rule | None) -> str:
    if rule is None:
        return "pass"
    if rule.error:
        return rule.error
    if rule.reply is not None:
        return "reply"
    if rule.drop:
        return "drop"
    if rule.stall:
        return "stall"
    return f"delay {rule.delay_s}s" if rule.delay_s else "pass"


def operation_of(method: str, path: str, headers: Any, body: bytes) -> str:
    """The API operation a request calls (see the module docstring)."""
    target = headers.get("X-Amz-Target")
    if target:
        return str(target).rsplit(".", 1)[-1]
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
    if "Action" in query:
        return query["Action"][0]
    if "x-www-form-urlencoded" in str(headers.get("Content-Type", "")):
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        if "Action" in form:
            return form["Action"][0]
    return f"{method} {urllib.parse.urlsplit(path).path}"


def signing_service(headers: Any) -> str:
    """The service a SigV4-signed request is for (its Authorization header's credential scope), or ""."""
    found = re.search(
        r"Credential=[^/,]*/[^/,]*/[^/,]*/([^/,]*)/aws4_request", str(headers.get("Authorization", ""))
    )
    return found.group(1) if found else ""


def error_body(headers: Any, code: str, message: str) -> tuple[bytes, str]:
    """An error response body in the request's protocol: JSON for JSON-protocol calls and REST-JSON
    services, else XML."""
    if (
        headers.get("X-Amz-Target")
        or "json" in str(headers.get("Content-Type", ""))
        or signing_service(headers) in REST_JSON_SERVICES
    ):
        # The standard library, not tracekit.jsonio: the proxy must not depend on the code under test.
        data = json.dumps({"__type": code, "message": message})  # noqa: TID251
        return data.encode(), "application/x-amz-json-1.1"
    xml = (
        "<ErrorResponse><Error><Type>Sender</Type>"
        f"<Code>{code}</Code><Message>{message}</Message></Error>"
        "<RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
    )
    return xml.encode(), "text/xml"


class _Handler(BaseHTTPRequestHandler):
    proxy: FaultProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # quiet: pytest shows stderr of failing tests

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_GET

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        operation = operation_of(self.command, self.path, self.headers, body)
        rule = self.proxy._decide(operation, _json_or_none(body), self.path, dict(self.headers.items()))
        if rule is not None:
            if rule.drop:
                self.close_connection = True
                self.connection.close()
                return
            if rule.error:
                data, content_type = error_body(self.headers, rule.error, rule.message)
                self._answer(rule.status, data, content_type, {"x-amzn-ErrorType": rule.error})
                return
            if rule.reply is not None:
                self._answer(200, json.dumps(rule.reply).encode(), "application/x-amz-json-1.1")  # noqa: TID251
                return
            if rule.stall:
                self.proxy.state.stalled.set()
                self.proxy.state.released.wait(STALL_LIMIT_S)
            elif rule.delay_s:
                self.proxy.state.closing.wait(rule.delay_s)
        self._forward(body)

    def _answer(
        self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", "00000000-0000-0000-0000-000000000000")
        self.end_headers()
        self.wfile.write(data)

    def _forward(self, body: bytes) -> None:
        conn = http.client.HTTPConnection(self.proxy.upstream_host, self.proxy.upstream_port, timeout=120)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
            headers["Host"] = f"{self.proxy.upstream_host}:{self.proxy.upstream_port}"
            conn.request(self.command, self.path, body=body or None, headers=headers)
            response = conn.getresponse()
            data = response.read()
            self.send_response(response.status, response.reason)
            for key, value in response.getheaders():
                if key.lower() not in HOP_HEADERS and key.lower() != "content-length":
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        except OSError:
            self.close_connection = True  # the client went away (e.g. it was killed while stalled)
        finally:
            conn.close()


def _json_or_none(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None
