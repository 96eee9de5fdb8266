"""End to end: `usage-service serve --workers N`, real processes only. A supervisor and N workers share
one port (SO_REUSEPORT, `--port 0` included); calls over fresh connections reach every worker (the pid
of each JSON log line says which process served it); migrations, the demo, the gateway and the
listening line happen once; SIGTERM drains every worker and exits 0; a dead worker stops the server
with a non-zero exit; a killed supervisor takes its workers with it; bad worker counts are refused."""

from __future__ import annotations

import datetime as dt
import json
import os
import pathlib
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import cli_process
import grpc
import pytest
from cli_process import EXIT_TIMEOUT_S, START_TIMEOUT_S, clean_env, command
from grpc_harness import ts
from prometheus_client.parser import text_string_to_metric_families
from usage.v1 import events_pb2, usage_service_pb2_grpc
from usage.v1 import usage_service_pb2 as pb

from server.serving import gateway_connections

pytestmark = pytest.mark.e2e

LISTENING = re.compile(r"^usage-service listening on (\S+):(\d+)$")
METRICS = re.compile(r"^usage-service metrics on http://127\.0\.0\.1:(\d+)/metrics$")
GATEWAY = re.compile(r"^usage-service gateway listening on (http://\S+) ")
EXPORT_TOKEN = re.compile(r"^\s*export TOKEN=(\S+)\s*$")
# Connections the kernel spreads over 2 workers: all on one worker has probability 2**-(CALLS - 1).
CALLS = 48


class Server(cli_process.Process):
    """`usage-service serve ...` with its JSON stderr log readable as records."""

    def __init__(self, args: list[str], stderr_path: pathlib.Path) -> None:
        super().__init__(["serve", *args], stderr_path)
        self.port = 0

    def wait_listening(self) -> int:
        self.port = int(self.wait_for(LISTENING).group(2))
        return self.port

    def records(self) -> list[dict[str, Any]]:
        """The JSON log lines so far (a worker's crash traceback is not JSON and is skipped)."""
        out = []
        for line in self.stderr_path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def worker_pids(self) -> dict[int, int]:
        """{worker index: pid} from the workers' own "serving" lines."""
        return {r["worker"]: r["pid"] for r in self.records() if " serving on " in r.get("message", "")}

    def served_by(self, request_ids: list[str]) -> dict[str, int]:
        """{request id: pid of the process that logged the RPC}."""
        wanted = set(request_ids)
        return {
            r["request_id"]: r["pid"]
            for r in self.records()
            if r["logger"] == "usage.rpc" and r["request_id"] in wanted
        }


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    """Servers a test starts; any left running at its end are killed."""
    started: list[Server] = []
    yield started
    for s in started:
        s.close()


def start(servers: list[Server], args: list[str], stderr_path: pathlib.Path) -> Server:
    server = Server(args, stderr_path)
    servers.append(server)
    server.wait_listening()
    return server


def fresh_channel(port: int) -> grpc.Channel:
    # A local subchannel pool: a new TCP connection each time, never one shared through grpc's global pool.
    return grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])


def call(port: int, token: str, request_id: str, method: str, request: Any) -> Any:
    """One RPC on a connection of its own, tagged with `request_id`."""
    metadata = (("authorization", f"Bearer {token}"), ("x-request-id", request_id))
    with fresh_channel(port) as channel:
        stub = usage_service_pb2_grpc.UsageServiceStub(channel)
        return getattr(stub, method)(request, metadata=metadata, timeout=30)


def token_for(org: str, data_dir: pathlib.Path) -> str:
    result = cli_process.run("token", "--org", org, "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def parent_of(pid: int) -> int:
    stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def running(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pids: list[int]) -> None:
    """Until none of `pids` runs; a bound on a hang, not a performance threshold."""
    deadline = time.monotonic() + EXIT_TIMEOUT_S
    while any(running(p) for p in pids):
        assert time.monotonic() < deadline, f"still running: {[p for p in pids if running(p)]}"
        time.sleep(0.05)


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def handled_ok(metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float], method: str) -> float:
    labels = {"grpc_service": "usage.v1.UsageService", "grpc_method": method, "grpc_code": "OK"}
    return metrics.get(("grpc_server_handled_total", tuple(sorted(labels.items()))), 0.0)


def assert_stops_cleanly(server: Server, workers: dict[int, int]) -> None:
    """SIGTERM: exit 0, every worker drained and exited, "stopped" and the listening line printed once."""
    assert server.terminate() == 0, server.stderr_path.read_text()
    stdout = server.lines + server.rest_of_stdout()
    assert stdout.count("usage-service stopped") == 1
    assert sum(bool(LISTENING.match(line)) for line in stdout) == 1
    stopped = {r["pid"] for r in server.records() if r.get("message", "").endswith(" stopped")}
    assert stopped == set(workers.values())
    wait_gone(list(workers.values()))  # reaped by the supervisor before it exited: nothing orphaned


def test_two_workers_on_sqlite_share_the_port_with_demo_metrics_and_gateway(
    tmp_path: pathlib.Path, servers: list[Server]
) -> None:
    server = start(
        servers,
        ["--workers", "2", "--port", "0", "--data-dir", str(tmp_path / "data"), "--demo"]
        + ["--metrics-port", "0", "--http-port", "0"],
        tmp_path / "stderr.log",
    )
    metrics_ports = [int(server.wait_for(METRICS).group(1)) for _ in range(2)]
    gateway_url = server.wait_for(GATEWAY).group(1)
    # The demo (loaded once, by the supervisor) and its banner come before the one listening line.
    assert sum(line.startswith("Demo data loaded: 30000 events") for line in server.lines) == 1
    (token,) = [m.group(1) for line in server.lines if (m := EXPORT_TOKEN.match(line))]
    assert len(set(metrics_ports)) == 2

    workers = server.worker_pids()
    assert sorted(workers) == [0, 1]
    assert server.proc.pid not in workers.values()
    assert {parent_of(pid) for pid in workers.values()} == {server.proc.pid}

    # Fresh connections land on both workers.
    ids = [f"spread-{i}" for i in range(CALLS)]
    for request_id in ids:
        assert len(call(server.port, token, request_id, "ListUsageEvents", pb.ListUsageEventsRequest()).data)
    served = server.served_by(ids)
    assert sorted(served) == sorted(ids)
    assert set(served.values()) == set(workers.values())

    # Worker i serves its own /metrics, printed in worker order: each counted exactly its own calls.
    for index, port in enumerate(metrics_ports):
        calls = sum(pid == workers[index] for pid in served.values())
        assert handled_ok(scrape(port), "ListUsageEvents") == calls
        assert ("usage_db_pool_size", ()) in scrape(port)

    # A cursor signed by one worker is honoured by the other: they share the generated secrets.
    page = call(server.port, token, "page-0", "ListUsageEvents", pb.ListUsageEventsRequest(limit=10))
    seen = [e.id for e in page.data]
    for i in range(1, 24):
        request = pb.ListUsageEventsRequest(limit=10, cursor=page.pagination.cursor)
        page = call(server.port, token, f"page-{i}", "ListUsageEvents", request)
        seen += [e.id for e in page.data]
    assert len(seen) == len(set(seen)) == 240
    assert set(server.served_by([f"page-{i}" for i in range(24)]).values()) == set(workers.values())

    # The gateway runs once, in the supervisor, and calls the shared port over many connections in
    # turn: its calls reach both workers (see gateway_connections for the odds).
    http_ids = [f"http-{i}" for i in range(2 * gateway_connections(2))]
    for request_id in http_ids:
        request = urllib.request.Request(
            f"{gateway_url}/v1/usage-events?limit=3",
            headers={"authorization": f"Bearer {token}", "grpc-metadata-x-request-id": request_id},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert len(json.loads(response.read())["data"]) == 3
    http_served = server.served_by(http_ids)
    assert sorted(http_served) == sorted(http_ids)
    assert set(http_served.values()) == set(workers.values())

    assert_stops_cleanly(server, workers)
    assert sum(bool(GATEWAY.match(line)) for line in server.lines) == 1


@pytest.mark.postgres
def test_two_workers_on_postgres_migrate_once_and_ingest_exactly_once(
    pg_server, tmp_path: pathlib.Path, servers: list[Server]
) -> None:
    url = pg_server.create_database()  # empty: `--migrate` migrates it, in the supervisor
    secrets = tmp_path / "secrets"
    try:
        server = start(
            servers,
            ["--workers", "2", "--port", "0", "--database-url", url, "--data-dir", str(secrets), "--migrate"],
            tmp_path / "stderr.log",
        )
        workers = server.worker_pids()
        assert sorted(workers) == [0, 1]
        token = token_for("org_pg", secrets)
        now = dt.datetime.now(dt.UTC)

        def ingest(prefix: str) -> list[tuple[str, str]]:
            out = []
            for i in range(CALLS):
                event = events_pb2.UsageEventInput(
                    customer_id="cus_pg", metric_key="api_call", idempotency_key=f"key-{i}"
                )
                event.timestamp.CopyFrom(ts(now - dt.timedelta(seconds=i)))
                request = pb.IngestUsageEventsRequest(events=[event])
                (result,) = call(server.port, token, f"{prefix}-{i}", "IngestUsageEvents", request).results
                out.append((result.status, result.event_id))
            return out

        first = ingest("ingest")
        assert {status for status, _ in first} == {"ACCEPTED"}
        again = ingest("retry")  # each retry on a fresh connection, so on either worker
        assert again == [("DUPLICATE", event_id) for _, event_id in first]
        served = server.served_by(
            [f"ingest-{i}" for i in range(CALLS)] + [f"retry-{i}" for i in range(CALLS)]
        )
        assert set(served.values()) == set(workers.values())

        listed = call(server.port, token, "list", "ListUsageEvents", pb.ListUsageEventsRequest(limit=100))
        assert sorted(e.id for e in listed.data) == sorted(event_id for _, event_id in first)
        assert "PostgreSQL" in server.stderr_path.read_text()
        assert_stops_cleanly(server, workers)
    finally:
        pg_server.drop_database(url.rsplit("/", 1)[1])


def test_a_dead_worker_stops_the_server_with_an_error(tmp_path: pathlib.Path, servers: list[Server]) -> None:
    data_dir = str(tmp_path / "data")
    server = start(servers, ["--workers", "2", "--port", "0", "--data-dir", data_dir], tmp_path / "a.log")
    workers = server.worker_pids()

    # The port is taken: a second server of either kind refuses it instead of joining the workers.
    for workers_arg in ("2", "1"):
        second = subprocess.run(
            [
                *command(),
                "serve",
                "--workers",
                workers_arg,
                "--port",
                str(server.port),
                "--data-dir",
                data_dir,
            ],
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=START_TIMEOUT_S,
        )
        assert second.returncode != 0
        assert "usage-service listening" not in second.stdout

    os.kill(workers[0], signal.SIGKILL)
    assert server.proc.wait(timeout=EXIT_TIMEOUT_S) == 1
    assert f"worker 0 (pid {workers[0]}) exited with -9" in server.stderr_path.read_text()
    assert "usage-service stopped" not in server.rest_of_stdout()
    wait_gone(list(workers.values()))


def test_a_killed_supervisor_takes_its_workers_with_it(tmp_path: pathlib.Path, servers: list[Server]) -> None:
    server = start(
        servers,
        ["--workers", "2", "--port", "0", "--data-dir", str(tmp_path / "data")],
        tmp_path / "stderr.log",
    )
    workers = server.worker_pids()
    server.proc.kill()
    server.proc.wait()
    wait_gone(list(workers.values()))  # each saw its supervisor vanish, drained and exited


def test_one_worker_by_default_serves_from_the_process_itself(
    tmp_path: pathlib.Path, servers: list[Server]
) -> None:
    server = start(servers, ["--port", "0", "--data-dir", str(tmp_path / "data")], tmp_path / "stderr.log")
    token = token_for("org_x", tmp_path / "data")
    call(server.port, token, "single", "ListUsageEvents", pb.ListUsageEventsRequest())
    assert server.served_by(["single"]) == {"single": server.proc.pid}
    assert server.worker_pids() == {}
    assert server.terminate() == 0


@pytest.mark.parametrize("value", ["0", "-1", "65", "two"])
def test_a_bad_worker_count_is_refused_naming_the_flag(value: str, tmp_path: pathlib.Path) -> None:
    result = subprocess.run(
        [*command(), "serve", "--port", "0", "--data-dir", str(tmp_path), f"--workers={value}"],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=120,
    )
    assert result.returncode == 2
    assert "argument --workers" in result.stderr
    assert ("not an integer" if value == "two" else "must be between 1 and 64") in result.stderr


def test_a_bad_worker_count_in_the_environment_is_refused(tmp_path: pathlib.Path) -> None:
    env = clean_env() | {"USAGE_WORKERS": "0", "USAGE_PORT": "0", "USAGE_DATA_DIR": str(tmp_path)}
    result = subprocess.run([*command(), "serve"], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2
    assert "USAGE_WORKERS must be between 1 and 64, not 0" in result.stderr
    assert "listening" not in result.stdout
