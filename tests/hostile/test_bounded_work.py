"""Bounded work per call (issue 11, items 1 and 2), on the real `usage-service serve --http-port`
process, on both databases, with the deployment's defaults.

The data: 200,000 events of one organization over 90 days whose property `u` takes 20,000 distinct
values. They are written through the storage layer itself (SqlStorage.events.ingest, as IngestUsageEvents
does; through gRPC it would take minutes), before the server starts.

Item 1, answers: AggregateUsage `bucket=hour`, 90 days, `group_by=dim:u`, `top=0` built a 200 MB answer
and took the process from 0.3 to 3.4 GB; now it is refused from the database's count of groups, over gRPC
and HTTP. The largest answers the bound lets through, several at once over gRPC and through the gateway,
and the catalog attack (aggregators with 15 conditions of 1 MB each), leave the peak RSS of the process
(VmHWM) under the memory limit of deploy/k8s.yaml.

Item 2, abandoned work: slow aggregates (and an aggregator's slow ranking by customer) abandoned by
their client (a deadline, a cancel, an HTTP client that disconnects from the gateway) stop where they
run: the server's CPU (the process and, on PostgreSQL, its backends) is idle within a second of the
abandonment, and PostgreSQL runs none of their statements any more. Health and a small ListUsageEvents
answer within a second throughout.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import pathlib
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import cli_process
import grpc
import httpx
import psycopg
import pytest
import sqlalchemy as sa
from grpc_harness import details
from grpc_health.v1 import health_pb2, health_pb2_grpc
from usage.v1 import catalog_pb2, catalog_service_pb2_grpc, usage_service_pb2_grpc
from usage.v1 import catalog_service_pb2 as cpb
from usage.v1 import usage_service_pb2 as pb

from server.auth import mint_token
from server.config import Settings
from server.domain import NewEvent
from server.storage.engine import make_engine
from server.storage.migrate import upgrade
from server.storage.sql_storage import SqlStorage

pytestmark = pytest.mark.e2e

ORG = "org_attack"
SECRET = "bounded-work-secret-of-at-least-32-bytes"
EVENTS = 200_000
DISTINCT = 20_000
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
GRPC_LISTENING = re.compile(r"^usage-service listening on (\S+):(\d+)$")
HTTP_LISTENING = re.compile(r"^usage-service gateway listening on (http://\S+)")
ROOT = pathlib.Path(__file__).resolve().parents[2]
# Correctness bounds of issue 11, not performance thresholds: an abandoned call's work stops within a
# second, and health answers within a second while it stops.
IDLE_WITHIN_S = 1.0
PROMPT_S = 1.0
# CPU seconds an idle second may still use: the probes' own calls (5 per second), the health monitor.
# One abandoned slow call that went on would use a whole core: 1 CPU second per second.
IDLE_CPU_S = 0.25
PROBE_EVERY_S = 0.2


def memory_limit_bytes() -> int:
    """The container memory limit of deploy/k8s.yaml (`limits: {memory: 512Mi}`)."""
    m = re.search(r"limits:\s*\{\s*memory:\s*(\d+)Mi\s*\}", (ROOT / "deploy" / "k8s.yaml").read_text())
    assert m, "no memory limit in deploy/k8s.yaml"
    return int(m.group(1)) * 1024 * 1024


# ---- the served data ---------------------------------------------------------------------------
def seed(db_url: str) -> None:
    storage = SqlStorage(make_engine(db_url))
    now_us = int(NOW.timestamp() * 1_000_000)
    span_us = 89 * 86_400_000_000
    try:
        for start in range(0, EVENTS, 5000):
            events = [
                NewEvent(
                    customer_id=f"cus_{i % 50}",
                    metric_key="api_call",
                    timestamp_us=now_us - 60_000_000 - (i * 7_919_000_000) % span_us,
                    quantity="1.5",
                    properties={"u": f"v{i % DISTINCT}"},
                )
                for i in range(start, min(EVENTS, start + 5000))
            ]
            storage.events.ingest(ORG, events, now_us)
        if storage.engine.dialect.name == "postgresql":
            # As autovacuum would soon: the planner's statistics of the new rows (without them, the
            # aggregates' plans over a freshly loaded table can be slower than their deadline).
            with storage.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE")
    finally:
        storage.close()


@dataclasses.dataclass
class Served:
    backend: str
    db_url: str
    process: cli_process.Process
    channel: grpc.Channel
    url: str
    token: str
    pg_admin: Callable[[], psycopg.Connection] | None = None

    @property
    def pid(self) -> int:
        return self.process.proc.pid

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)

    @property
    def usage(self) -> Any:
        return usage_service_pb2_grpc.UsageServiceStub(self.channel)


@pytest.fixture(
    scope="module", params=[pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)]
)
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    backend = request.param
    data_dir = tmp_path_factory.mktemp(f"bounded-{backend}")
    args = ["serve", "--port", "0", "--http-port", "0", "--jwt-secret", SECRET, "--data-dir", str(data_dir)]
    pg_admin = None
    if backend == "postgres":
        pg = request.getfixturevalue("pg_server")
        db_url = pg.create_database(template=request.getfixturevalue("_pg_template"))
        name = db_url.rsplit("/", 1)[1]
        pg_admin = lambda: pg.admin_connection(name)  # noqa: E731
        args += ["--database-url", db_url]
    else:
        db_url = f"sqlite:///{data_dir / 'usage.sqlite3'}"
        engine = make_engine(db_url)
        upgrade(engine)
        engine.dispose()
    seed(db_url)
    process = cli_process.Process(args, data_dir / "serve.log")
    try:
        port = int(process.wait_for(GRPC_LISTENING).group(2))
        url = process.wait_for(HTTP_LISTENING).group(1)
        token = mint_token(Settings(jwt_secret=SECRET), ORG, dt.timedelta(hours=2))
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        yield Served(backend, db_url, process, channel, url, token, pg_admin)
        channel.close()
    finally:
        code = process.terminate()
    assert code == 0, pathlib.Path(process.stderr_path).read_text()[-2000:]


# ---- measuring the server ----------------------------------------------------------------------
_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_of(pid: int) -> float:
    try:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime


def _sessions(s: Served, active_only: bool) -> list[tuple[int, str]]:
    """(pid, query) of the PostgreSQL sessions of this server (its pooled connections)."""
    if s.pg_admin is None:
        return []
    sql = (
        "SELECT pid, left(query, 80) FROM pg_stat_activity"
        " WHERE application_name = 'usage-service' AND datname = current_database()"
    )
    with s.pg_admin() as conn:
        return [(r[0], r[1]) for r in conn.execute(sql + (" AND state = 'active'" if active_only else ""))]


def _backends(s: Served) -> list[int]:
    return [pid for pid, _ in _sessions(s, active_only=False)]


def _active_statements(s: Served) -> list[str]:
    return [query for _, query in _sessions(s, active_only=True)]


def server_cpu(s: Served) -> dict[int, float]:
    """CPU seconds used so far by the server process and by each of its database backends."""
    return {pid: _cpu_of(pid) for pid in (s.pid, *_backends(s))}


def cpu_since(s: Served, before: dict[int, float]) -> float:
    """CPU seconds the server used since `before` (a backend that appeared since counts whole)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in server_cpu(s).items())


def vm_hwm_bytes(pid: int) -> int:
    """The process's peak resident set size."""
    m = re.search(r"^VmHWM:\s+(\d+) kB$", pathlib.Path(f"/proc/{pid}/status").read_text(), re.M)
    assert m
    return int(m.group(1)) * 1024


class Prober:
    """While running: health every PROBE_EVERY_S and, once `lists` is set, ListUsageEvents limit=1, each
    with a deadline of PROMPT_S; what failed to answer in time is kept in `late`."""

    def __init__(self, s: Served) -> None:
        self._s = s
        self.late: list[str] = []
        self.answered = 0
        self.lists = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        health = health_pb2_grpc.HealthStub(self._s.channel)
        while not self._stop.wait(PROBE_EVERY_S):
            try:
                status = health.Check(health_pb2.HealthCheckRequest(), timeout=PROMPT_S).status
                assert status == health_pb2.HealthCheckResponse.SERVING
                if self.lists.is_set():
                    request = pb.ListUsageEventsRequest(limit=1)
                    self._s.usage.ListUsageEvents(request, metadata=self._s.metadata, timeout=PROMPT_S)
                self.answered += 1
            except grpc.RpcError as err:
                self.late.append(f"{err.code().name} {err.details()}")


def assert_idle_after(s: Served, moment: float, prober: Prober) -> None:
    """From `moment` + IDLE_WITHIN_S on, the server stays idle for a second: little CPU, and no
    statement of its running in PostgreSQL."""
    time.sleep(max(0.0, moment + IDLE_WITHIN_S - time.monotonic()))
    prober.lists.set()
    assert _active_statements(s) == []
    before = server_cpu(s)
    time.sleep(1.0)
    used = cpu_since(s, before)
    assert used < IDLE_CPU_S, f"{used:.2f} CPU seconds in the second after the call was abandoned"
    assert _active_statements(s) == []


# ---- item 1: answers within their bound, memory within the pod's limit --------------------------
def aggregate(**fields: Any) -> pb.AggregateUsageRequest:
    request = pb.AggregateUsageRequest(bucket="hour", group_by="dim:u", **fields)
    request.since.FromDatetime(NOW - dt.timedelta(days=90))
    return request


def test_the_unbounded_answer_is_refused_and_memory_stays_within_the_pod_limit(served: Served) -> None:
    s = served
    # top=0 over 20,000 values: refused before any answer is built, naming top and the limit.
    try:
        s.usage.AggregateUsage(aggregate(top=0), metadata=s.metadata, timeout=60)
    except grpc.RpcError as err:
        got = details(err)
        assert got.code == grpc.StatusCode.INVALID_ARGUMENT and got.fields == ["top"], got.message
        assert "limit of 50,000 points" in got.message and "set top to at most 49" in got.message
    else:
        raise AssertionError("an answer of 20,000 series was built")
    query = {"bucket": "hour", "group_by": "dim:u", "since": (NOW - dt.timedelta(days=90)).isoformat()}
    with httpx.Client(base_url=s.url, headers={"authorization": f"Bearer {s.token}"}, timeout=120) as http:
        refused = http.get("/v1/usage-events/aggregate", params={**query, "top": 0})
        assert refused.status_code == 400 and "top" in refused.text, refused.text
        # The largest answers the bound allows (50 series x 1000 hours = 50,000 points), 4 at a time on
        # each path, and the catalog attack of issue 11.
        largest = aggregate(top=49)
        with ThreadPoolExecutor(8) as pool:
            grpc_answers = [
                pool.submit(s.usage.AggregateUsage, largest, metadata=s.metadata, timeout=120)
                for _ in range(4)
            ]
            http_answers = [
                pool.submit(http.get, "/v1/usage-events/aggregate", params={**query, "top": 49})
                for _ in range(4)
            ]
            for f in grpc_answers:
                answer = f.result()
                assert len(answer.series) == 50 and sum(len(x.points) for x in answer.series) == 50_000
            for f in http_answers:
                assert f.result().status_code == 200
                assert len(f.result().json()["series"]) == 50
    catalog_attack(s)
    peak = vm_hwm_bytes(s.pid)
    print(f"\n{s.backend}: peak RSS {peak / 2**20:.0f} MiB (limit {memory_limit_bytes() / 2**20:.0f} MiB)")
    assert peak < memory_limit_bytes()


def catalog_attack(s: Served) -> None:
    """Issue 11: 20 aggregators with 15 `equals` conditions of 1 MB each; ListAggregators built 314 MB."""
    catalog = catalog_service_pb2_grpc.CatalogServiceStub(s.channel)
    megabyte = "x" * (1 << 20)
    conditions = [catalog_pb2.FilterField(property=f"p{i}", operator="equals") for i in range(15)]
    for c in conditions:
        c.value.string_value = megabyte
    for i in range(20):
        aggregator = catalog_pb2.Aggregator(
            id=f"agg_{i}",
            name="big",
            event_type="api_call",
            operation="count",
            filter=catalog_pb2.Filter(fields=conditions),
        )
        try:
            catalog.CreateAggregator(
                cpb.CreateAggregatorRequest(aggregator=aggregator), metadata=s.metadata, timeout=60
            )
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
        else:
            raise AssertionError("a filter of 15 MB was stored")
    listed = catalog.ListAggregators(cpb.ListAggregatorsRequest(limit=100), metadata=s.metadata, timeout=60)
    assert list(listed.data) == []


# ---- item 2: abandoned calls stop --------------------------------------------------------------
def slow_aggregate() -> pb.AggregateUsageRequest:
    """The slowest shape here: exact sums per local day over 1000 days of a DST zone, by dimension."""
    request = pb.AggregateUsageRequest(
        bucket="day", group_by="dim:u", metric="sum_quantity", time_zone="America/New_York", top=8
    )
    request.since.FromDatetime(NOW - dt.timedelta(days=1000))
    return request


def abandoned_calls(s: Served) -> int:
    """Concurrent slow calls: enough to keep the server busy for seconds after they are abandoned
    (PostgreSQL: one backend each, within the pool of 10; SQLite: in the process)."""
    return 8 if s.backend == "postgres" else 3


def test_calls_past_their_deadline_stop_in_the_database_and_in_python(served: Served) -> None:
    assert_stopped_by_their_deadline(served, served.usage.AggregateUsage, slow_aggregate(), 0.5)


def assert_stopped_by_their_deadline(s: Served, method: Any, request: Any, deadline_s: float) -> None:
    """Concurrent slow calls of `method` end DEADLINE_EXCEEDED, and their work stops with them."""
    with Prober(s) as prober:
        before = server_cpu(s)
        start = time.monotonic()
        calls = [
            method.future(request, metadata=s.metadata, timeout=deadline_s) for _ in range(abandoned_calls(s))
        ]
        for call in calls:
            assert call.code() == grpc.StatusCode.DEADLINE_EXCEEDED, call.details()
        busy = cpu_since(s, before)
        assert busy > 0.2, f"the abandoned calls were not working ({busy:.2f} CPU seconds)"
        assert_idle_after(s, start + deadline_s, prober)
    assert prober.late == [] and prober.answered > 5


def test_calls_cancelled_by_their_client_stop(served: Served) -> None:
    s = served
    with Prober(s) as prober:
        calls = [
            s.usage.AggregateUsage.future(slow_aggregate(), metadata=s.metadata, timeout=120)
            for _ in range(abandoned_calls(s))
        ]
        time.sleep(0.5)
        assert not any(call.done() for call in calls)
        for call in calls:
            call.cancel()
        cancelled = time.monotonic()
        assert_idle_after(s, cancelled, prober)
    assert prober.late == [] and prober.answered > 5


def test_the_gateway_cancels_its_call_when_the_http_client_disconnects(served: Served) -> None:
    s = served
    parts = urllib.parse.urlsplit(s.url)
    query = urllib.parse.urlencode(
        {
            "bucket": "day",
            "group_by": "dim:u",
            "metric": "sum_quantity",
            "time_zone": "America/New_York",
            "since": (NOW - dt.timedelta(days=1000)).isoformat().replace("+00:00", "Z"),
        }
    )
    head = (
        f"GET /v1/usage-events/aggregate?{query} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Authorization: Bearer {s.token}\r\n\r\n"
    ).encode()
    with Prober(s) as prober:
        clients = [socket.create_connection((parts.hostname, parts.port)) for _ in range(abandoned_calls(s))]
        for sock in clients:
            sock.sendall(head)
        time.sleep(0.5)
        for sock in clients:
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(1)  # no answer yet: the calls are still running
            sock.close()
        gone = time.monotonic()
        assert_idle_after(s, gone, prober)
    assert prober.late == [] and prober.answered > 5


SLOW_AGGREGATOR = "agg_slow"


def slow_ranking(s: Served) -> pb.ListAggregatorUsageByCustomerRequest:
    """An aggregator no rollup holds (50 `or` conditions read from every event's properties, a sum of
    a property), its customers ranked over the 90 days: every event is read and tested."""
    catalog = catalog_service_pb2_grpc.CatalogServiceStub(s.channel)
    aggregator = catalog_pb2.Aggregator(
        id=SLOW_AGGREGATOR, name="slow", event_type="api_call", operation="sum", property="u"
    )
    aggregator.filter.conditional = "or"
    for i in range(50):
        aggregator.filter.fields.add(property="u", operator="not_equals").value.string_value = f"w{i}"
    try:
        catalog.CreateAggregator(cpb.CreateAggregatorRequest(aggregator=aggregator), metadata=s.metadata)
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.ALREADY_EXISTS
    request = pb.ListAggregatorUsageByCustomerRequest(aggregator_id=SLOW_AGGREGATOR, take=10)
    request.start_date.FromDatetime(NOW - dt.timedelta(days=90))
    request.end_date.FromDatetime(NOW + dt.timedelta(hours=1))
    return request


def test_aggregator_values_past_their_deadline_stop(served: Served) -> None:
    s = served
    request = slow_ranking(s)
    assert_stopped_by_their_deadline(s, s.usage.ListAggregatorUsageByCustomer, request, 0.3)
    # With time to finish, the same question is answered: 50 customers, each with a zero sum (the
    # property is a string) and every one of its events counted apart.
    answer = s.usage.ListAggregatorUsageByCustomer(request, metadata=s.metadata, timeout=120)
    assert answer.meta.total == 50
    assert {(r.exact_total, r.count == r.unsummed_count) for r in answer.data} == {("0", True)}


def test_abandoned_work_did_not_leak_connections(served: Served) -> None:
    """After the abandoned calls, a full answer still works, on connections that were cancelled."""
    s = served
    for _ in range(abandoned_calls(s) + 2):
        answer = s.usage.AggregateUsage(aggregate(top=8), metadata=s.metadata, timeout=120)
        assert len(answer.series) == 9
    if s.pg_admin is not None:
        assert len(_backends(s)) <= 10  # the pool's size: no connection was lost or left behind
    engine = make_engine(s.db_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM events")).scalar_one() == EVENTS
    finally:
        engine.dispose()
