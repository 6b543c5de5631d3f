"""Run a real Python handler the way the Lambda service and the Python runtime would, in virtual time.

`LambdaFunction.invoke` is one attempt: it picks an execution environment (its own log stream, cold
on first use and after a crash, timeout or init failure), runs the handler in-process with a
Lambda-like context, applies the attempt's fault, and writes the attempt's log events to the world.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import sys
import sysconfig
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from tracekit.lab.logformat import SYSTEM_ERRORS, Report, log_format
from tracekit.lab.scenario import OK, Fault, FunctionSpec
from tracekit.lab.world import World, iso_ms

Handler = Callable[[Any, Any], Any]
STDLIB = Path(sysconfig.get_paths()["stdlib"])


class _Stopped(BaseException):
    """The runtime stopped the handler (timeout, crash, out of memory): nothing after it runs.

    A BaseException so that handlers' and the recorder's `except Exception` do not see it.
    """


@dataclass
class AttemptResult:
    """How one invocation attempt went; `outcome` uses the lab's truth vocabulary."""

    request_id: str | None
    log_stream: str | None
    start: float
    end: float
    outcome: str  # success | error | timeout | out_of_memory | crash | throttled | init_error
    response: Any = None
    error: dict[str, Any] | None = None  # the error object a destination record's responsePayload holds
    handler_ran: bool = False
    cold_start: bool = False

    @property
    def succeeded(self) -> bool:
        return self.outcome == "success"

    @property
    def function_error(self) -> bool:
        """A failure that counts against retry budgets: the event reached the function."""
        return self.outcome not in ("success", "throttled")


@dataclass
class Environment:
    """One execution environment: a log stream, a loaded handler module, busy until `free_at`."""

    log_stream: str
    module: ModuleType | None = None
    free_at: float = 0.0
    last_used: float = 0.0
    invocations: int = 0


class LambdaContext:
    """The context object the Python runtime passes to a handler, on the lab's virtual clock."""

    def __init__(
        self, spec: FunctionSpec, request_id: str, log_stream: str, deadline_ms: float, now_ms: float
    ):
        self.aws_request_id = request_id
        self.function_name = spec.name
        self.function_version = spec.version
        self.invoked_function_arn = spec.arn
        self.memory_limit_in_mb = str(spec.memory_mb)
        self.log_group_name = spec.log_group
        self.log_stream_name = log_stream
        self._deadline_ms = deadline_ms
        self._now_ms = now_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(int(self._deadline_ms - self._now_ms), 0)


@dataclass
class _Captured:
    """What the handler wrote while it ran: (kind, level, logger, text) in order."""

    lines: list[tuple[str, str, str, str]] = field(default_factory=list)


class _LineWriter(io.TextIOBase):
    """stdout as the runtime sees it: each newline-terminated line becomes one log event."""

    def __init__(self, captured: _Captured) -> None:
        self.captured = captured
        self.pending = ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        self.captured.lines.extend(("print", "", "", line) for line in lines)
        return len(text)

    def flush_pending(self) -> None:
        if self.pending:
            self.captured.lines.append(("print", "", "", self.pending))
            self.pending = ""


class _LogHandler(logging.Handler):
    def __init__(self, captured: _Captured) -> None:
        super().__init__(logging.DEBUG)
        self.captured = captured

    def emit(self, record: logging.LogRecord) -> None:
        self.captured.lines.append(("log", record.levelname, record.name, record.getMessage()))


class LambdaFunction:
    """A deployed function: its environments and how it runs one attempt."""

    def __init__(self, spec: FunctionSpec, world: World) -> None:
        self.spec = spec
        self.world = world
        self.format = log_format(spec.log_format, spec.region, spec.log_sink)
        self.environments: list[Environment] = []
        self._module_count = 0
        self._handler_dir = str(spec.handler_file.parent)

    # ------------------------------------------------------------------ environments

    def _environment(self, now: float) -> Environment | None:
        """A free environment, the most recently used first (warm); a new one if allowed; else None."""
        free = [env for env in self.environments if env.free_at <= now]
        if free:
            return max(free, key=lambda env: env.last_used)
        if len(self.environments) < self.spec.concurrency:
            day = datetime.fromtimestamp(now / 1000, UTC).strftime("%Y/%m/%d")
            env = Environment(f"{day}/[{self.spec.version}]{self.world.ids.hex(32)}")
            self.environments.append(env)
            return env
        return None

    def _load(self) -> ModuleType:
        self._module_count += 1
        name = f"_tracekit_lab_{self.spec.handler_file.stem}_{id(self)}_{self._module_count}"
        loader_spec = importlib.util.spec_from_file_location(name, self.spec.handler_file)
        if loader_spec is None or loader_spec.loader is None:
            raise ImportError(f"No module named '{self.spec.handler_file.stem}'")
        module = importlib.util.module_from_spec(loader_spec)
        if self._handler_dir not in sys.path:
            sys.path.insert(0, self._handler_dir)
        loader_spec.loader.exec_module(module)
        return module

    # ------------------------------------------------------------------ one attempt

    def invoke(
        self,
        event: Any,
        *,
        fault: Fault = OK,
        request_id: str | None = None,
        items: int = 1,
        trace: str | None = None,
    ) -> AttemptResult:
        """Run one attempt at the world's current time; the caller schedules what follows."""
        now = self.world.now
        env = None if fault.kind == "throttle" else self._environment(now)
        if env is None:
            return AttemptResult(request_id, None, now, now, "throttled")
        rid = request_id or self.world.ids.uuid()
        if fault.kind == "init_error":
            env.module = None  # only an environment that initialises can fail its init
        cold = env.module is None
        t = now
        init_ms = None
        if cold:
            init_ms = self.spec.init_ms * self.world.rng.uniform(0.8, 1.2)
            self._log(env, t, self.format.init_start(t, self.spec.name, self.spec.version))
            init_failure = self._init(env, fault)
            if init_failure is not None:
                return self._init_error(env, rid, t, init_ms, init_failure)
            t += init_ms
        result = self._run(env, rid, event, fault, t, items, trace, init_ms)
        result.cold_start = cold
        env.invocations += 1
        env.last_used = result.end
        env.free_at = result.end
        if result.outcome in ("timeout", "crash", "out_of_memory"):
            env.module = None  # the runtime restarts: the next attempt here initialises again
        return result

    def _init(self, env: Environment, fault: Fault) -> dict[str, Any] | None:
        """Load the handler module; the runtime's error object when the init phase fails."""
        if fault.kind == "init_error":
            return {
                "errorType": fault.error_type or "Runtime.ImportModuleError",
                "errorMessage": fault.error_message
                or f"Unable to import module '{self.spec.handler_file.stem}': injected init failure",
                "stackTrace": [],
            }
        try:
            env.module = self._load()
        except SyntaxError as exc:
            return {
                "errorType": "Runtime.UserCodeSyntaxError",
                "errorMessage": f"Syntax error in module '{self.spec.handler_file.stem}': {exc}",
                "stackTrace": [
                    f'  File "/var/task/{self.spec.handler_file.name}" Line {exc.lineno}\n    {exc.text}'
                ],
            }
        except ImportError as exc:
            return {
                "errorType": "Runtime.ImportModuleError",
                "errorMessage": f"Unable to import module '{self.spec.handler_file.stem}': {exc}",
                "stackTrace": [],
            }
        except Exception as exc:  # noqa: BLE001 - module code that raises fails the init phase
            # The runtime reports any other exception at import as itself, with its frames.
            return self._error_object(exc, "")
        if not callable(getattr(env.module, self.spec.handler_name, None)):
            env.module = None
            return {
                "errorType": "Runtime.HandlerNotFound",
                "errorMessage": f"Handler '{self.spec.handler_name}' missing on module "
                f"'{self.spec.handler_file.stem}'",
                "stackTrace": [],
            }
        return None

    def _init_error(
        self, env: Environment, rid: str, t: float, init_ms: float, error: dict[str, Any]
    ) -> AttemptResult:
        """Init failed in the init phase; Lambda retries it once inside the invoke phase, which fails too."""
        fmt = self.format
        for message in fmt.init_error(t + init_ms * 0.9, error):
            self._log(env, t + init_ms * 0.9, message)
        self._log(env, t + init_ms, fmt.init_report(t + init_ms, init_ms, "init", error["errorType"]))
        start = t + init_ms
        self._log(env, start, fmt.start(start, rid, self.spec.version, None))
        retry_ms = init_ms * self.world.rng.uniform(0.8, 1.1)
        end = start + retry_ms
        for message in fmt.init_error(end, error):
            self._log(env, end, message)
        self._log(env, end, fmt.init_report(end, retry_ms, "invoke", error["errorType"]))
        self._finish(
            env,
            rid,
            end,
            Report(rid, retry_ms, self.spec.memory_mb, self._memory(), None, "error", error["errorType"]),
        )
        env.free_at = env.last_used = end
        return AttemptResult(rid, env.log_stream, start, end, "init_error", error=error)

    def _run(
        self,
        env: Environment,
        rid: str,
        event: Any,
        fault: Fault,
        start: float,
        items: int,
        trace: str | None,
        init_ms: float | None,
    ) -> AttemptResult:
        spec = self.spec
        timeout_ms = spec.timeout_s * 1000
        planned = (spec.duration_ms + spec.per_item_ms * items) * self.world.rng.uniform(0.8, 1.2)
        self._log(env, start, self.format.start(start, rid, spec.version, trace))
        context = LambdaContext(spec, rid, env.log_stream, start + timeout_ms, start)
        captured, response, error, stopped, ran = self._call(env, event, context, fault)
        outcome = "success"
        if stopped or planned >= timeout_ms and fault.kind == "ok":
            outcome = stopped or "timeout"
        elif error is not None:
            outcome = "error"
        duration = (
            timeout_ms + self.world.rng.uniform(1, 20)
            if outcome == "timeout"
            else min(planned, timeout_ms - 1)
        )
        end = start + duration
        self._write_captured(env, rid, start, end, captured)
        error = self._error_lines(env, rid, end, outcome, error)
        memory = spec.memory_mb if outcome == "out_of_memory" else self._memory()
        trace_id = trace.split(";")[0].removeprefix("Root=") if trace else None
        if spec.tracing and trace_id is None:
            trace_id = self.world.ids.trace_id(start)
        report = Report(
            rid,
            duration,
            spec.memory_mb,
            memory,
            init_ms,
            "success" if outcome == "success" else ("timeout" if outcome == "timeout" else "error"),
            (error or {}).get("errorType") if outcome in SYSTEM_ERRORS else None,
            trace_id,
            self.world.ids.hex(16) if trace_id else None,
        )
        self._finish(env, rid, end, report)
        return AttemptResult(
            rid,
            env.log_stream,
            start,
            end,
            outcome,
            response=response if outcome == "success" else None,
            error=error,
            handler_ran=ran,
        )

    def _call(
        self, env: Environment, event: Any, context: LambdaContext, fault: Fault
    ) -> tuple[_Captured, Any, dict[str, Any] | None, str | None, bool]:
        """Call the handler (wrapped by the recorder when the scenario asks) with output captured.

        Returns what it wrote, its response, the runtime's error object, how the runtime stopped it
        (timeout, crash, out_of_memory; None when it returned or raised), and whether the user's
        handler really ran (a `before` fault strikes first).
        """
        assert env.module is not None
        user_handler: Handler = getattr(env.module, self.spec.handler_name)
        ran = False

        def attempt(event: Any, context: Any) -> Any:
            nonlocal ran
            if fault.kind != "ok" and fault.when == "before":
                _strike(fault)
            ran = True
            result = user_handler(event, context)
            if fault.kind != "ok":
                _strike(fault)
            return result

        handler: Handler = attempt
        if self.spec.recorder:
            from tracekit.recorder import recorded

            handler = recorded(attempt)
        captured = _Captured()
        writer = _LineWriter(captured)
        log_handler = _LogHandler(captured)
        root = logging.getLogger()
        root.addHandler(log_handler)
        response: Any = None
        error: dict[str, Any] | None = None
        stopped: str | None = None
        try:
            # The runtime sends both stdout and stderr to the function's log.
            with contextlib.redirect_stdout(writer), contextlib.redirect_stderr(writer):
                response = handler(event, context)
        except _Stopped:
            stopped = fault.kind
        except SystemExit:
            stopped = "crash"  # sys.exit() in a handler ends the runtime process
        except Exception as exc:  # noqa: BLE001 - the handler's exception is the attempt's result
            error = self._error_object(exc, context.aws_request_id)
        finally:
            root.removeHandler(log_handler)
            writer.flush_pending()
        return captured, response, error, stopped, ran

    def _error_object(self, exc: Exception, request_id: str) -> dict[str, Any]:
        """The Python runtime's error object: type, message, request id, and the frames of the function's
        code and of the standard library as they sit in Lambda (the lab's own frames left out).

        The runtime formats plain (file, line, name, text) tuples, so there are no `^^^` marker lines.
        """
        stack = []
        for frame in traceback.extract_tb(exc.__traceback__):
            path = self._lambda_path(frame.filename)
            if path is not None:
                text = f"    {frame.line}\n" if frame.line else ""
                stack.append(f'  File "{path}", line {frame.lineno}, in {frame.name}\n{text}')
        if not stack and getattr(exc, "injected", False):
            stack = [
                f'  File "/var/task/{self.spec.handler_file.name}", line 1, in {self.spec.handler_name}\n'
                f"    raise {type(exc).__name__}({str(exc)!r})\n"
            ]
        return {
            "errorMessage": str(exc),
            "errorType": type(exc).__name__,
            "requestId": request_id,
            "stackTrace": stack,
        }

    def _lambda_path(self, filename: str) -> str | None:
        """Where a frame's file sits in a Lambda environment: the package under /var/task, the
        standard library under /var/lang/lib; None for anything else (the lab itself)."""
        path = Path(filename)
        if path.is_relative_to(self._handler_dir):
            return f"/var/task/{path.relative_to(self._handler_dir).as_posix()}"
        if path.is_relative_to(STDLIB) and "site-packages" not in path.parts:
            return f"/var/lang/lib/{self.spec.runtime}/{path.relative_to(STDLIB).as_posix()}"
        return None

    def _write_captured(
        self, env: Environment, rid: str, start: float, end: float, captured: _Captured
    ) -> None:
        count = len(captured.lines)
        for i, (kind, level, logger, text) in enumerate(captured.lines):
            at = start + (end - start) * (i + 1) / (count + 2)
            if kind == "print":
                self._log(env, at, self.format.print_line(at, rid, text))
            else:
                self._log(env, at, self.format.log_record(at, rid, level, text, logger))

    def _error_lines(
        self, env: Environment, rid: str, end: float, outcome: str, error: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """Write the runtime's lines for a failed attempt; return the error object it reports."""
        fmt = self.format
        timeout_s = self.spec.timeout_s
        if outcome == "error" and error is not None:
            for message in fmt.unhandled(end, rid, error):
                self._log(env, end, message)
            return error
        if outcome == "timeout":
            if self.spec.timeout_style == "old":
                self._log(env, end, fmt.old_style_timeout(end, rid, timeout_s))
                # Before the 2024 change the error payload was only the old log line's text.
                return {"errorMessage": f"{iso_ms(end)} {rid} Task timed out after {timeout_s:.2f} seconds"}
            return {
                "errorType": "Sandbox.Timedout",
                "errorMessage": f"RequestId: {rid} Error: Task timed out after {timeout_s:.2f} seconds",
            }
        if outcome in SYSTEM_ERRORS:
            if self.spec.timeout_style == "old":
                self._log(env, end, fmt.old_style_exit(rid, outcome))
            error_type, message = SYSTEM_ERRORS[outcome]
            return {"errorType": error_type, "errorMessage": f"RequestId: {rid} Error: {message}"}
        return None

    def _finish(self, env: Environment, rid: str, end: float, report: Report) -> None:
        self._log(env, end, self.format.end(rid))
        new_style = self.spec.timeout_style == "new"
        self._log(env, end, self.format.report(end, report, new_style))

    def _memory(self) -> int:
        return min(self.spec.memory_mb - 1, 38 + self.world.rng.randint(0, 30))

    def _log(self, env: Environment, at: float, message: str | None) -> None:
        if message is not None:
            self.world.log(self.spec.log_group, env.log_stream, at, message)


def _strike(fault: Fault) -> None:
    """Make the fault happen inside the handler call."""
    if fault.kind == "error":
        error_class = type(fault.error_type or "InjectedError", (Exception,), {"injected": True})
        raise error_class(fault.error_message or "injected fault (tracekit lab)")
    raise _Stopped(fault.kind)
