"""The real processes of the gateway tests: `usage-service serve [--http-port 0]` and
`usage-service gateway`, their listening lines read from stdout, stopped with SIGTERM.

    with start_stack(["--data-dir", d], d / "serve.log") as s:   # gRPC + HTTP in one process
        with s.client("org_a") as http:
            http.get("/v1/usage-events")
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import pathlib
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator

import httpx

from server.auth import mint_token
from server.config import Settings

JWT_SECRET = "gateway-test-secret-of-at-least-32-bytes"
ORG = "org_gw"
START_TIMEOUT_S = 120.0  # a bound on a hang, not a performance threshold
EXIT_TIMEOUT_S = 30.0
GRPC_LISTENING = re.compile(r"^usage-service listening on (\S+):(\d+)$")
HTTP_LISTENING = re.compile(r"^usage-service gateway listening on (http://\S+)")


def command() -> list[str]:
    script = pathlib.Path(sys.executable).parent / "usage-service"
    if script.is_file():
        return [str(script)]
    found = shutil.which("usage-service")
    return [found] if found else [sys.executable, "-m", "server.cli"]


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("USAGE_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def token(org: str, ttl: dt.timedelta = dt.timedelta(hours=1)) -> str:
    return mint_token(Settings(jwt_secret=JWT_SECRET), org, ttl)


class Process:
    """A `usage-service` subcommand, stdout read line by line on a thread, stderr to a file."""

    def __init__(self, args: list[str], stderr_path: pathlib.Path) -> None:
        self._stderr_file = stderr_path.open("w")
        self.stderr_path = stderr_path
        self.proc = subprocess.Popen(
            [*command(), *args], stdout=subprocess.PIPE, stderr=self._stderr_file, text=True, env=clean_env()
        )
        self.lines: list[str] = []
        self.url = ""  # the gateway's, once its listening line was read
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: re.Pattern[str]) -> re.Match[str]:
        while True:
            try:
                line = self._queue.get(timeout=START_TIMEOUT_S)
            except queue.Empty:
                raise AssertionError(f"no line like {pattern.pattern}; stdout: {self.lines}") from None
            if line is None:
                code = self.proc.wait()
                raise AssertionError(f"exited with {code}: {self.lines}\n{self.stderr_path.read_text()}")
            self.lines.append(line)
            if m := pattern.match(line):
                return m

    def rest_of_stdout(self) -> list[str]:
        rest = []
        while (line := self._queue.get(timeout=EXIT_TIMEOUT_S)) is not None:
            rest.append(line)
        return rest

    def terminate(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=EXIT_TIMEOUT_S)
        finally:
            self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._stderr_file.close()


class Stack:
    """A running gRPC port and HTTP gateway URL (one process or two)."""

    def __init__(self, grpc_port: int, url: str, processes: list[Process]) -> None:
        self.grpc_port = grpc_port
        self.url = url
        self.processes = processes

    def client(self, org: str | None = ORG, **headers: str) -> httpx.Client:
        """An HTTP client on the gateway; with `org`, it sends a valid bearer token for it."""
        if org is not None:
            headers.setdefault("authorization", f"Bearer {token(org)}")
        return httpx.Client(base_url=self.url, headers=headers, timeout=60.0)


@contextlib.contextmanager
def start_stack(serve_args: list[str], log: pathlib.Path) -> Iterator[Stack]:
    """`serve --port 0 --http-port 0 ...`: gRPC and the gateway in one process."""
    args = ["serve", "--port", "0", "--http-port", "0", "--jwt-secret", JWT_SECRET, *serve_args]
    proc = Process(args, log)
    try:
        grpc_port = int(proc.wait_for(GRPC_LISTENING).group(2))
        url = proc.wait_for(HTTP_LISTENING).group(1)
        yield Stack(grpc_port, url, [proc])
    except BaseException:
        proc.close()
        raise
    assert proc.terminate() == 0, "serve --http-port did not stop cleanly on SIGTERM"


@contextlib.contextmanager
def start_gateway(grpc_target: str, log: pathlib.Path) -> Iterator[Process]:
    """`usage-service gateway --grpc-target ... --port 0` as its own process."""
    proc = Process(["gateway", "--grpc-target", grpc_target, "--port", "0"], log)
    try:
        proc.url = proc.wait_for(HTTP_LISTENING).group(1)
        yield proc
    finally:
        proc.terminate()
