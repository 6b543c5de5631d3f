"""Shared fixtures: a real moto server on loopback, AWS settings pointing at it, the CLI as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CLI_TIMEOUT_S = 60

CliRun = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """A real moto server over HTTP on 127.0.0.1 (any free port), shared by the session; yields its URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_endpoint(moto_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """Point boto3 (and subprocesses) at the moto server with fake credentials, on a freshly reset moto."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    # Never read the developer's real AWS config or credentials.
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    request = urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    return moto_server


def run_cli(
    *args: str | os.PathLike[str],
    cwd: str | os.PathLike[str] | None = None,
    env: dict[str, str] | None = None,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `python -m tracekit ARGS` in a subprocess; TRACEKIT_STORE is unset unless `env` sets it."""
    full_env = {k: v for k, v in os.environ.items() if k != "TRACEKIT_STORE"}
    full_env["PYTHONIOENCODING"] = "utf-8"
    full_env["COLUMNS"] = "200"
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "tracekit", *(str(a) for a in args)],
        cwd=cwd,
        env=full_env,
        input=input,
        text=True,
        capture_output=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


@pytest.fixture
def tracekit_cli(tmp_path: Path) -> CliRun:
    """`tracekit_cli(*args, env=..., cwd=...)` runs the installed CLI; the working directory defaults to
    a scratch directory so a default `./.tracekit` store never lands in the repository."""
    workdir = tmp_path / "cwd"
    workdir.mkdir(exist_ok=True)

    def run(
        *args: str | os.PathLike[str],
        cwd: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, cwd=cwd if cwd is not None else workdir, env=env, input=input)

    return run
