"""AWS plumbing shared by everything that calls AWS (lab --publish, live collection, replay).

boto3 clients configured the standard way (profile, region, credentials chain, AWS_ENDPOINT_URL and
its per-service variants, AWS_MAX_ATTEMPTS) with adaptive retries, and API calls whose failures
become one TracekitError line naming the action, the resource and what to do.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import boto3
from botocore import xform_name
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import (
    ConnectionError as AwsConnectionError,
)

from tracekit.errors import TracekitError, first_line

CREDENTIAL_CODES = {
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidAccessKeyId",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "AuthFailure",
}
#: API operations whose IAM action has another name.
IAM_ACTIONS = {
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
    "HeadBucket": "ListBucket",
    "ListObjectsV2": "ListBucket",
    "GetFunctionEventInvokeConfig": "GetFunctionEventInvokeConfig",
}
THROTTLING_CODES = {
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ProvisionedThroughputExceededException",
    "SlowDown",
    "RequestThrottled",
    "RequestThrottledException",
}
ENTRY_RETRY_ROUNDS = 8  # rounds of resending entries a batch call reported as failed

T = TypeVar("T")


class AwsError(TracekitError):
    """An AWS call failed; names the action, the resource and what to do."""


def error_code(response: dict[str, Any]) -> str:
    """The error code of a botocore error response ('' when it has none)."""
    return str(response.get("Error", {}).get("Code", ""))


def configured_region(profile: str | None = None) -> str | None:
    """The region boto3's standard configuration names (environment, profile), if any."""
    try:
        return boto3.session.Session(profile_name=profile).region_name
    except BotoCoreError as exc:  # e.g. AWS_PROFILE names a profile that does not exist
        raise AwsError("bad AWS configuration", first_line(exc), "Check --profile and AWS_PROFILE") from None


class Aws:
    """boto3 clients for one region, and API calls that fail as one AwsError line.

    `verb` starts every error line ("cannot publish", "cannot collect"); `retry_hint` is what to do
    when the failure is neither credentials, permissions nor connectivity.
    """

    def __init__(
        self,
        region: str | None,
        *,
        profile: str | None = None,
        verb: str = "cannot call AWS",
        retry_hint: str = "Fix this and run the command again",
        error_class: type[AwsError] = AwsError,
    ) -> None:
        try:
            self._session = boto3.session.Session(profile_name=profile, region_name=region)
        except BotoCoreError as exc:
            raise error_class(f"{verb}: bad AWS configuration", first_line(exc), "Check --profile") from None
        self.region = self._session.region_name or region or "us-east-1"
        self.verb = verb
        self.retry_hint = retry_hint
        self.error_class = error_class
        self._clients: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        """A cached boto3 client for `service` with adaptive retries."""
        if service not in self._clients:
            config = Config(retries={"mode": "adaptive"})
            self._clients[service] = self._session.client(service, region_name=self.region, config=config)
        return self._clients[service]

    def call(
        self, service: str, operation: str, resource: str, *, tolerate: Sequence[str] = (), **params: Any
    ) -> dict[str, Any]:
        """Call `operation`; an error whose code is in `tolerate` comes back as its error response."""
        try:
            method = getattr(self.client(service), xform_name(operation))
            response: dict[str, Any] = method(**params)
            return response
        except ClientError as exc:
            if error_code(exc.response) in tolerate:
                return dict(exc.response)
            raise self.error(service, operation, resource, exc) from None
        except BotoCoreError as exc:
            raise self.error(service, operation, resource, exc) from None

    def error(self, service: str, operation: str, resource: str, exc: Exception) -> AwsError:
        """The one-line error for `exc`, raised by `operation` on `resource`."""
        if isinstance(exc, ClientError):
            code = error_code(exc.response)
            message = str(exc.response.get("Error", {}).get("Message") or "").strip()
            reason = f"{code}: {message.splitlines()[0]}" if message else code
        else:
            code, reason = type(exc).__name__, first_line(exc)
        if isinstance(exc, NoCredentialsError | PartialCredentialsError) or code in CREDENTIAL_CODES:
            todo = "Set AWS credentials for the target account (AWS_PROFILE or AWS_ACCESS_KEY_ID)"
        elif "AccessDenied" in code or code in ("403", "AuthorizationError", "Forbidden"):
            todo = f"Allow {iam_action(service, operation)} on it for these credentials"
        elif isinstance(exc, AwsConnectionError | HTTPClientError):
            endpoint = self.client(service).meta.endpoint_url
            todo = f"Check that {endpoint} is reachable (AWS_ENDPOINT_URL, region {self.region})"
        else:
            todo = self.retry_hint
        return self.error_class(f"{self.verb}: {service} {operation} failed", f"{resource} ({reason})", todo)


def iam_action(service: str, operation: str) -> str:
    """The IAM action that allows `operation` of `service`, e.g. `sqs:SendMessage`."""
    prefix = {"logs": "logs", "lambda": "lambda", "s3": "s3"}.get(service, service)
    return f"{prefix}:{IAM_ACTIONS.get(operation, operation)}"


def sized_batches(
    entries: list[T], max_count: int, max_bytes: int, size: Callable[[T], int]
) -> Iterator[list[T]]:
    """Consecutive runs of entries within a call's count and byte limits (an oversized entry goes
    alone, for the API to refuse by name)."""
    batch: list[T] = []
    total = 0
    for entry in entries:
        n = size(entry)
        if batch and (len(batch) == max_count or total + n > max_bytes):
            yield batch
            batch, total = [], 0
        batch.append(entry)
        total += n
    if batch:
        yield batch


def resend_failed(
    send: Callable[[list[T]], list[tuple[T, str]]],
    entries: list[T],
    what: str,
    *,
    sleep: Callable[[float], None] = time.sleep,
    error_class: type[AwsError] = AwsError,
    verb: str = "cannot call AWS",
    todo: str = "Wait for the throttling to pass and run again",
) -> None:
    """Send `entries`; resend, with growing pauses, those a batch call reports as failed (throttled,
    internal error) until none is left or ENTRY_RETRY_ROUNDS rounds have failed."""
    pending = entries
    failed: list[tuple[T, str]] = []
    for round_ in range(ENTRY_RETRY_ROUNDS):
        failed = send(pending)
        if not failed:
            return
        pending = [entry for entry, _ in failed]
        if round_ + 1 < ENTRY_RETRY_ROUNDS:
            sleep(min(0.2 * 2**round_, 10.0))
    codes = sorted({code for _, code in failed})
    where = f"{len(pending)} entries after {ENTRY_RETRY_ROUNDS} tries ({', '.join(codes)})"
    raise error_class(f"{verb}: {what} kept failing", where, todo)
