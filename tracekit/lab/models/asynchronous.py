"""Asynchronous invocation (Invoke with InvocationType=Event, S3, SNS, EventBridge): Lambda's internal
queue, its retries and backoff, event age, destinations and the function DLQ.

Documented behaviour modelled here (lambda-semantics.md §1): function errors are retried
MaximumRetryAttempts times, 1 minute then 2 minutes later; throttles and system errors are retried with
exponential backoff from 1 s to 5 min, bounded only by MaximumEventAgeInSeconds; every attempt reuses the
request id; when the next attempt would start past the event's maximum age Lambda gives up at once with
`EventAgeExceeded`. What AWS leaves undocumented is a setting (see SETTINGS).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tracekit.lab.delivery import dead_letter, deliver_record
from tracekit.lab.runtime import AttemptResult, LambdaFunction
from tracekit.lab.scenario import EventSpec, Scenario
from tracekit.lab.world import TruthAttempt, TruthEvent, World, iso_ms, reached_function

SETTINGS = {
    "maximum_retry_attempts": 2,
    "maximum_event_age_s": 21600,
    "retry_delays_s": [60, 120],  # before the 2nd and 3rd attempt after a function error
    "throttle_backoff_initial_s": 1,
    "throttle_backoff_max_s": 300,
    # UNVERIFIED: whether an at-least-once duplicate delivery reuses the request id.
    "duplicate_request_id": "same",  # same | new
    "duplicate_delay_s": 2,
    "duplicate_rate": 0.0,
}


@dataclass
class _AsyncEvent:
    spec: EventSpec
    request_id: str
    enqueued: float
    truth: TruthEvent
    attempts: int = 0  # every attempt, throttled ones included: indexes the event's faults
    invokes: int = 0  # attempts that reached the function: approximateInvokeCount
    retries: int = 0  # function-error retries used
    backoff_s: float = 0.0
    failed_before: bool = False


class AsyncModel:
    """Lambda's asynchronous event queue in front of one function."""

    source = "async"

    def __init__(self, scenario: Scenario, world: World, function: LambdaFunction) -> None:
        self.scenario = scenario
        self.world = world
        self.function = function
        self.settings = settings(scenario.settings)

    def dead_letter_queues(self) -> set[str]:
        dlq = self.scenario.dlq
        return {dlq.name} if dlq else set()

    def submit(self, spec: EventSpec, arrival: float) -> None:
        """Enqueue one event (the 202 Accepted moment) and schedule its first attempt."""
        rid = self.world.ids.uuid()
        truth = self.world.truth_event(rid, self.source, self.scenario.function.name)
        event = _AsyncEvent(spec, rid, arrival, truth)
        self.world.clock.at(arrival, lambda: self._attempt(event))
        if spec.duplicate or self.world.rng.random() < self.settings["duplicate_rate"]:
            self._schedule_duplicate(event)

    def finish(self) -> None:
        """Nothing stays queued once the clock has run out: every event has reached an outcome."""

    # ------------------------------------------------------------------ attempts

    def _attempt(self, event: _AsyncEvent) -> None:
        event.attempts += 1
        fault = event.spec.fault_for(event.attempts)
        result = self.function.invoke(
            event.spec.payload, fault=fault, request_id=event.request_id, trace=None
        )
        self._record(event, result)
        # Lambda learns how the attempt went when it ends: records, DLQ messages and retry delays
        # all start from there.
        self.world.clock.at(result.end, lambda: self._after_attempt(event, result))

    def _after_attempt(self, event: _AsyncEvent, result: AttemptResult) -> None:
        if result.outcome == "throttled":
            self._after_throttle(event, result)
        elif result.succeeded:
            self._succeeded(event, result)
        else:
            self._after_function_error(event, result)

    def _record(self, event: _AsyncEvent, result: AttemptResult) -> None:
        event.truth.attempts.append(TruthAttempt(event.request_id, result.start, result.end, result.outcome))
        if result.outcome != "throttled":
            event.invokes += 1
        if reached_function(result.outcome):
            event.truth.deliveries += 1

    def _next_backoff(self, backoff_s: float) -> float:
        """Throttle backoff: from the initial delay, doubling, up to the maximum."""
        s = self.settings
        return float(min(max(backoff_s * 2, s["throttle_backoff_initial_s"]), s["throttle_backoff_max_s"]))

    def _after_throttle(self, event: _AsyncEvent, result: AttemptResult) -> None:
        event.backoff_s = self._next_backoff(event.backoff_s)
        self._retry_or_expire(event, result.end, event.backoff_s, None)

    def _after_function_error(self, event: _AsyncEvent, result: AttemptResult) -> None:
        event.failed_before = True
        if event.retries >= self.settings["maximum_retry_attempts"]:
            self._failed(event, "RetriesExhausted", result.error)
            return
        delays = self.settings["retry_delays_s"]
        delay = delays[min(event.retries, len(delays) - 1)]
        event.retries += 1
        self._retry_or_expire(event, result.end, delay, result.error)

    def _retry_or_expire(
        self, event: _AsyncEvent, after: float, delay_s: float, error: dict[str, Any] | None
    ) -> None:
        """Schedule the next attempt `delay_s` after `after`, or give up when it would be too old."""
        next_at = after + delay_s * 1000
        if next_at - event.enqueued > self.settings["maximum_event_age_s"] * 1000:
            self._failed(event, "EventAgeExceeded", error)
            return
        self.world.clock.at(next_at, lambda: self._attempt(event))

    # ------------------------------------------------------------------ outcomes

    def _succeeded(self, event: _AsyncEvent, result: AttemptResult, invoke_count: int | None = None) -> None:
        truth = event.truth
        truth.successes += 1
        if truth.successes == 1:
            truth.outcome = "succeeded_after_retry" if event.failed_before else "succeeded"
        destination = self.scenario.on_success
        if destination:
            count = event.invokes if invoke_count is None else invoke_count
            record = self._record_document(event, "Success", result.response, None, count)
            deliver_record(self.world, destination, record, function=self.scenario.function, success=True)

    def _failed(self, event: _AsyncEvent, condition: str, error: dict[str, Any] | None) -> None:
        scenario = self.scenario
        outcome = "dropped"
        if scenario.on_failure:
            record = self._record_document(event, condition, error, "Unhandled", event.invokes)
            deliver_record(self.world, scenario.on_failure, record, function=scenario.function, success=False)
            outcome = "sent_to_destination"
        if scenario.dlq:
            dead_letter(self.world, scenario.dlq, event.spec.payload, event.request_id, error)
            outcome = "dead_lettered"
        if event.truth.successes == 0:
            event.truth.outcome = outcome

    def _record_document(
        self, event: _AsyncEvent, condition: str, response: Any, function_error: str | None, invokes: int
    ) -> dict[str, Any]:
        """The destination invocation record, as Lambda writes it (version 1.0)."""
        spec = self.scenario.function
        response_context: dict[str, Any] = {"statusCode": 200, "executedVersion": spec.version}
        if function_error:
            response_context["functionError"] = function_error
        return {
            "version": "1.0",
            "timestamp": iso_ms(self.world.now),
            "requestContext": {
                "requestId": event.request_id,
                "functionArn": f"{spec.arn}:{spec.version}",
                "condition": condition,
                "approximateInvokeCount": invokes,
            },
            "requestPayload": event.spec.payload,
            "responseContext": response_context,
            "responsePayload": response,
        }

    # ------------------------------------------------------------------ duplicates

    def _schedule_duplicate(self, event: _AsyncEvent) -> None:
        """An at-least-once extra copy of the event, delivered without any error.

        The copy is processed like any event: a throttle sends it back to the queue with backoff, and
        its success produces its own on-success record. It is not one of the original's attempts, so
        it does not count in the original's approximateInvokeCount.
        """
        same = self.settings["duplicate_request_id"] == "same"
        rid = event.request_id if same else self.world.ids.uuid()
        backoff_s = 0.0

        def deliver() -> None:
            nonlocal backoff_s
            result = self.function.invoke(event.spec.payload, request_id=rid)
            event.truth.attempts.append(TruthAttempt(rid, result.start, result.end, result.outcome))
            if reached_function(result.outcome):
                event.truth.deliveries += 1
            if result.outcome == "throttled":
                backoff_s = self._next_backoff(backoff_s)
                again = result.end + backoff_s * 1000
                if again - event.enqueued <= self.settings["maximum_event_age_s"] * 1000:
                    self.world.clock.at(again, deliver)
            elif result.succeeded:
                self.world.clock.at(result.end, lambda: self._succeeded(event, result, invoke_count=1))

        self.world.clock.at(event.enqueued + self.settings["duplicate_delay_s"] * 1000, deliver)


def settings(given: dict[str, Any]) -> dict[str, Any]:
    """The model's settings: documented defaults overridden by the scenario's [source] table."""
    unknown = set(given) - set(SETTINGS)
    if unknown:
        raise ValueError(f"unknown async setting {sorted(unknown)[0]!r}")
    merged = {**SETTINGS, **given}
    if not 0 <= int(merged["maximum_retry_attempts"]) <= 2:
        raise ValueError("maximum_retry_attempts must be 0-2 for asynchronous invocation")
    if not 60 <= int(merged["maximum_event_age_s"]) <= 21600:
        raise ValueError("maximum_event_age_s must be 60-21600")
    return merged
