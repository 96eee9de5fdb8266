"""The real processes of the gateway tests: `usage-service serve [--http-port 0]` and
`usage-service gateway`, their listening lines read from stdout, stopped with SIGTERM.

    with start_stack(["--data-dir", d], d / "serve.log") as s:   # gRPC + HTTP in one process
        with s.client("org_a") as http:
            http.get("/v1/usage-events")
"""

from __future__ import annotations

import contextlib
import datetime as dt
import pathlib
import re
from collections.abc import Iterator

import cli_process
import httpx

from server.auth import mint_token
from server.config import Settings

JWT_SECRET = "gateway-test-secret-of-at-least-32-bytes"
ORG = "org_gw"
GRPC_LISTENING = re.compile(r"^usage-service listening on (\S+):(\d+)$")
HTTP_LISTENING = re.compile(r"^usage-service gateway listening on (http://\S+)")


def token(org: str, ttl: dt.timedelta = dt.timedelta(hours=1)) -> str:
    return mint_token(Settings(jwt_secret=JWT_SECRET), org, ttl)


class Process(cli_process.Process):
    """A `usage-service` subcommand; `url` is the gateway's, once its listening line was read."""

    url = ""


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
