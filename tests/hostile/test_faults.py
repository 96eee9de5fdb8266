"""Faults (issue 6, part 4): the real `usage-service serve` process on a real PostgreSQL server that
goes away and comes back, and a SIGTERM in the middle of a stream of ingestion batches.

- While PostgreSQL is down every RPC answers UNAVAILABLE (never INTERNAL, never a hang) before its
  deadline, health turns NOT_SERVING; once PostgreSQL is back the same process serves again by itself
  (health SERVING, every RPC answers, nothing ingested before is lost).
- SIGTERM under load: NOT_SERVING first, in-flight calls complete (or fail UNAVAILABLE / CANCELLED),
  exit 0, every acknowledged batch stored, and retrying every other batch stores each key once.
- In-process, on the same kind of server: a pooled connection that dies between checkout and query
  answers Unavailable, and the HealthMonitor follows the database (transitions logged once each).

Deadlines and bounds below are bounds against hangs, not performance thresholds.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import json
import logging
import pathlib
import queue
import re
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import cli_process
import grpc
import pytest
import sqlalchemy as sa
from cli_process import clean_env, command
from grpc_harness import details, event, ts
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from pg_server import PgServer, PgServerError
from usage.v1 import catalog_pb2, catalog_service_pb2_grpc, usage_service_pb2_grpc
from usage.v1 import catalog_service_pb2 as cpb
from usage.v1 import usage_service_pb2 as pb

from server.app import LIVENESS_SERVICE, SERVICE_NAMES
from server.auth import mint_token
from server.config import Settings
from server.deadline import Deadline
from server.errors import Unavailable
from server.health_monitor import HealthMonitor
from server.storage import schema
from server.storage.engine import make_engine
from server.storage.migrate import upgrade
from server.storage.sql_storage import SqlStorage

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

SECRET = "faults-test-secret-of-at-least-32-bytes"
LISTENING = re.compile(r"^usage-service listening on \S+:(\d+)$")
METRICS = re.compile(r"^usage-service metrics on (http://\S+/metrics)$")
HANG_S = 60.0  # bound on anything that should happen "soon": a hang fails instead of blocking the suite
RPC_DEADLINE_S = 5.0  # the deadline of the calls made while PostgreSQL is down
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


# ---- helpers ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def own_pg() -> Iterator[PgServer]:
    """A PostgreSQL server of this module alone: its tests stop and restart it."""
    try:
        server = PgServer.start()
    except PgServerError as exc:
        pytest.fail(f"cannot start a PostgreSQL server: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def running_pg(own_pg: PgServer) -> Iterator[PgServer]:
    """`own_pg`, running at the start of the test and again at its end (a failed test may leave it paused)."""
    if not own_pg.running:
        own_pg.resume()
    yield own_pg
    if not own_pg.running:
        own_pg.resume()


def crash(pg: PgServer) -> None:
    """Stop PostgreSQL as a crash does (connections just close), committed data kept.

    The test server runs with synchronous_commit=off: without the CHECKPOINT, an immediate shutdown
    could lose the last commits, which would say nothing about the service."""
    with pg.admin_connection() as admin:
        admin.execute("CHECKPOINT")
    pg.pause("immediate")


def wait_until(condition: Callable[[], bool], what: str, bound_s: float = HANG_S) -> None:
    deadline = time.monotonic() + bound_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {bound_s} s: {what}")
        time.sleep(0.05)


class Serve:
    """`usage-service serve --port 0 ...` with extra USAGE_* variables; stdout read on a thread."""

    def __init__(self, args: list[str], env: dict[str, str], log: pathlib.Path) -> None:
        self._log_file = log.open("a")
        self.log = log
        self.proc = subprocess.Popen(
            [*command(), "serve", "--port", "0", "--jwt-secret", SECRET, *args],
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            text=True,
            env={**clean_env(), **env},
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.port = int(self.wait_for(LISTENING).group(1))

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def wait_for(self, pattern: re.Pattern[str]) -> re.Match[str]:
        while True:
            line = self._lines.get(timeout=120)
            if line is None:
                raise AssertionError(f"serve exited with {self.proc.wait()}:\n{self.log.read_text()}")
            if m := pattern.match(line):
                return m

    def wait(self) -> int:
        return self.proc.wait(timeout=HANG_S)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=HANG_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()


@dataclasses.dataclass
class Stubs:
    channel: grpc.Channel
    usage: Any
    catalog: Any
    health: Any
    metadata: tuple[tuple[str, str], ...]

    @classmethod
    def open(cls, port: int, org: str) -> Stubs:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        token = mint_token(Settings(jwt_secret=SECRET), org, dt.timedelta(hours=1))
        return cls(
            channel,
            usage_service_pb2_grpc.UsageServiceStub(channel),
            catalog_service_pb2_grpc.CatalogServiceStub(channel),
            health_pb2_grpc.HealthStub(channel),
            (("authorization", f"Bearer {token}"),),
        )

    def statuses(self) -> set[int]:
        """The health status of the server ("") and of each service."""
        return {
            self.health.Check(health_pb2.HealthCheckRequest(service=name), timeout=HANG_S).status
            for name in ("", *SERVICE_NAMES)
        }


def _event_for(key: str) -> Any:
    n = int(key.rsplit("-", 1)[1])
    return event(
        customer_id="cus_f",
        timestamp=NOW - dt.timedelta(minutes=n % 5000),
        quantity=str(n % 97 + 1),
        properties={"n": n},
        idempotency_key=key,
    )


def _stored_keys(url: str, org: str) -> collections.Counter[str]:
    engine = make_engine(url)
    try:
        ev = schema.events.c
        with engine.connect() as conn:
            rows = conn.execute(sa.select(ev.idempotency_key).where(ev.organization_id == org)).scalars()
            return collections.Counter(rows)
    finally:
        engine.dispose()


def _handled(metrics_url: str, method: str, code: str) -> float:
    """grpc_server_handled_total of one method and code, read from /metrics."""
    with urllib.request.urlopen(metrics_url, timeout=HANG_S) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        if (
            line.startswith("grpc_server_handled_total{")
            and f'grpc_method="{method}"' in line
            and f'grpc_code="{code}"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


# ---- in-process: dead pooled connections, and the monitor ------------------------------------
def test_a_connection_that_dies_after_checkout_answers_unavailable(running_pg: PgServer) -> None:
    pg = running_pg
    url = pg.create_database()
    engine = make_engine(url, pool_size=2)
    storage = SqlStorage(engine)
    name = url.rsplit("/", 1)[1]
    try:
        upgrade(engine)
        storage.ping()

        def terminate_backends(wait: bool = False) -> None:
            with pg.admin_connection() as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid()",
                    (name,),
                )
                if wait:  # until they have exited (and closed their sockets)
                    wait_until(
                        lambda: (
                            admin.execute(
                                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)
                            ).fetchone()[0]
                            == 0
                        ),
                        "the terminated backends to exit",
                    )

        # Killed between checkout and the next statement: Unavailable, no driver text.
        with pytest.raises(Unavailable) as caught, storage.db.write(Deadline(10)) as conn:
            conn.execute(sa.text("SELECT 1"))
            terminate_backends()
            conn.execute(sa.text("SELECT 1"))
        assert str(caught.value) == "the database is unavailable; retry later"
        # The same across a restart of the server (the restarted server tells nothing to old clients).
        with pytest.raises(Unavailable), storage.db.read(Deadline(10)) as conn:
            conn.execute(sa.text("SELECT 1"))
            crash(pg)
            pg.resume()
            conn.execute(sa.text("SELECT 1"))
        # Every pooled connection dead (terminated while idle in the pool): checkout sees their closed
        # sockets and replaces them, without a ping round trip.
        with engine.connect() as a, engine.connect() as b:
            a.execute(sa.text("SELECT 1"))
            b.execute(sa.text("SELECT 1"))
        terminate_backends(wait=True)
        assert storage.catalog.list_customers("org_x", None, 10) == []
        storage.ping()
    finally:
        storage.close()
        pg.drop_database(name)


def test_health_monitor_follows_the_database(running_pg: PgServer, caplog: pytest.LogCaptureFixture) -> None:
    pg = running_pg
    url = pg.create_database()
    # One pooled connection, a short pool timeout: the "busy pool" case below.
    storage = SqlStorage(make_engine(url, pool_size=1, pool_timeout_s=0.2))
    servicer = health.HealthServicer()
    for n in ("", *SERVICE_NAMES):
        servicer.set(n, SERVING)

    def statuses() -> set[int]:
        return {
            servicer.Check(health_pb2.HealthCheckRequest(service=n), None).status
            for n in ("", *SERVICE_NAMES)
        }

    def transitions(level: int) -> int:
        return sum(1 for r in caplog.records if r.name == "usage-service.health" and r.levelno == level)

    caplog.set_level(logging.INFO, logger="usage-service.health")
    monitor = HealthMonitor(storage, servicer, SERVICE_NAMES, interval_s=0.05)
    try:
        # A busy pool (every connection checked out by RPCs) is no outage: the status stays.
        with storage.engine.connect():
            monitor.check_once()
        assert monitor.serving and statuses() == {SERVING}

        monitor.start()
        wait_until(lambda: monitor.checks >= 2, "two checks")
        assert statuses() == {SERVING}
        pg.pause("fast")
        wait_until(lambda: statuses() == {NOT_SERVING}, "NOT_SERVING after PostgreSQL stopped")
        seen = monitor.checks
        wait_until(lambda: monitor.checks >= seen + 3, "three more checks while down")
        assert transitions(logging.WARNING) == 1  # logged once, not on every tick
        pg.resume()
        wait_until(lambda: statuses() == {SERVING}, "SERVING after PostgreSQL restarted")
        seen = monitor.checks
        wait_until(lambda: monitor.checks >= seen + 3, "three more checks while up")
        assert transitions(logging.WARNING) == 1 and transitions(logging.INFO) == 1
        # After SIGTERM's enter_graceful_shutdown, a successful check cannot turn it back to SERVING.
        servicer.enter_graceful_shutdown()
        seen = monitor.checks
        wait_until(lambda: monitor.checks >= seen + 2, "two checks after the graceful shutdown")
        assert statuses() == {NOT_SERVING}
    finally:
        monitor.stop()  # joins the thread: then the storage may be disposed
        storage.close()
        pg.drop_database(url.rsplit("/", 1)[1])
    checks = monitor.checks
    time.sleep(0.2)
    assert monitor.checks == checks  # stopped for good


# ---- a) PostgreSQL goes away and comes back, under `usage-service serve` --------------------
def test_rpcs_answer_unavailable_while_postgres_is_down_and_recover_without_a_restart(
    running_pg: PgServer, tmp_path: pathlib.Path
) -> None:
    pg = running_pg
    url = pg.create_database()
    migrated = cli_process.run("migrate", "--database-url", url, "--data-dir", str(tmp_path))
    assert migrated.returncode == 0, migrated.stderr
    log = tmp_path / "serve.log"
    server = Serve(
        ["--database-url", url, "--data-dir", str(tmp_path), "--metrics-port", "0", "--log-format", "text"],
        {"USAGE_HEALTH_CHECK_INTERVAL_S": "0.2"},
        log,
    )
    metrics_url = server.wait_for(METRICS).group(1)
    pid = server.proc.pid
    s = Stubs.open(server.port, "org_faults")
    md = s.metadata
    try:
        # Before: a catalog, 50 events, every RPC answers, health SERVING.
        s.catalog.CreateCustomer(
            cpb.CreateCustomerRequest(customer=catalog_pb2.Customer(id="cus_f", name="F")),
            metadata=md,
            timeout=30,
        )
        s.catalog.CreateAggregator(
            cpb.CreateAggregatorRequest(
                aggregator=catalog_pb2.Aggregator(
                    id="agg_f", name="F", event_type="api_call", operation="count"
                )
            ),
            metadata=md,
            timeout=30,
        )
        before = [f"pre-{i}" for i in range(50)]
        results = s.usage.IngestUsageEvents(
            pb.IngestUsageEventsRequest(events=[_event_for(k) for k in before]), metadata=md, timeout=30
        ).results
        assert {r.status for r in results} == {"ACCEPTED"}
        assert s.statuses() == {SERVING}

        window = dict(start_date=ts(NOW - dt.timedelta(days=10)), end_date=ts(NOW + dt.timedelta(minutes=1)))
        outage_event = _event_for("outage-9999")
        calls: dict[str, Callable[[], Any]] = {
            "ListUsageEvents": lambda: s.usage.ListUsageEvents(
                pb.ListUsageEventsRequest(limit=100), metadata=md, timeout=RPC_DEADLINE_S
            ),
            "ListCustomerUsageEvents": lambda: s.usage.ListCustomerUsageEvents(
                pb.ListCustomerUsageEventsRequest(id="cus_f", aggregator_id="agg_f", take=100, **window),
                metadata=md,
                timeout=RPC_DEADLINE_S,
            ),
            "AggregateUsage": lambda: s.usage.AggregateUsage(
                pb.AggregateUsageRequest(
                    bucket="day", since=ts(NOW - dt.timedelta(days=10)), group_by="metric_key"
                ),
                metadata=md,
                timeout=RPC_DEADLINE_S,
            ),
            "IngestUsageEvents": lambda: s.usage.IngestUsageEvents(
                pb.IngestUsageEventsRequest(events=[outage_event]), metadata=md, timeout=RPC_DEADLINE_S
            ),
            "ListCustomers": lambda: s.catalog.ListCustomers(
                cpb.ListCustomersRequest(limit=10), metadata=md, timeout=RPC_DEADLINE_S
            ),
            "GetAggregator": lambda: s.catalog.GetAggregator(
                cpb.GetAggregatorRequest(id="agg_f"), metadata=md, timeout=RPC_DEADLINE_S
            ),
            "CreateCustomer": lambda: s.catalog.CreateCustomer(
                cpb.CreateCustomerRequest(customer=catalog_pb2.Customer(id="cus_outage", name="O")),
                metadata=md,
                timeout=RPC_DEADLINE_S,
            ),
        }

        # PostgreSQL crashes (immediate shutdown: its connections just close).
        crash(pg)
        for method, call in calls.items():
            for attempt in range(2):  # the first call finds dead pooled connections, the second none
                started = time.monotonic()
                with pytest.raises(grpc.RpcError) as caught:
                    call()
                got = details(caught.value)
                # UNAVAILABLE from the server: the call returned, it did not run out its deadline.
                assert got.code == grpc.StatusCode.UNAVAILABLE, (method, attempt, got)
                assert got.reason == "DATABASE_UNAVAILABLE", (method, got)
                assert got.message == "the database is unavailable; retry later", (method, got)
                assert time.monotonic() - started < RPC_DEADLINE_S
        wait_until(lambda: s.statuses() == {NOT_SERVING}, "health NOT_SERVING while PostgreSQL is down")
        # Liveness is not readiness: the process is alive, so probes do not restart it.
        liveness = health_pb2.HealthCheckRequest(service=LIVENESS_SERVICE)
        assert s.health.Check(liveness, timeout=HANG_S).status == SERVING
        for method in calls:
            assert _handled(metrics_url, method, "UNAVAILABLE") == 2, method
        assert _handled(metrics_url, "Check", "OK") > 0

        # PostgreSQL is back: the same process recovers by itself.
        pg.resume()
        wait_until(lambda: s.statuses() == {SERVING}, "health SERVING once PostgreSQL is back")
        assert server.proc.poll() is None and server.proc.pid == pid  # never restarted
        ingested = calls["IngestUsageEvents"]()
        assert [r.status for r in ingested.results] == ["ACCEPTED"]  # nothing was stored during the outage
        assert calls["CreateCustomer"]().customer.id == "cus_outage"
        assert calls["GetAggregator"]().aggregator.id == "agg_f"
        assert {c.id for c in calls["ListCustomers"]().data} == {"cus_f", "cus_outage"}
        page = calls["ListCustomerUsageEvents"]()
        assert page.meta.total == len(before) + 1
        listed = calls["ListUsageEvents"]()
        assert len(listed.data) == len(before) + 1
        aggregated = calls["AggregateUsage"]()
        assert sum(series.total for series in aggregated.series) == len(before) + 1
        assert _stored_keys(url, "org_faults") == collections.Counter([*before, "outage-9999"])
        assert _handled(metrics_url, "IngestUsageEvents", "INTERNAL") == 0
        assert server.proc.poll() is None and server.proc.pid == pid
    finally:
        s.channel.close()
        server.close()
        if not pg.running:
            pg.resume()
        pg.drop_database(url.rsplit("/", 1)[1])
    assert server.proc.returncode == 0
    text = log.read_text()
    # Each transition logged once, although the monitor checked many times during the outage.
    assert text.count("health NOT_SERVING") == 1, text
    assert text.count("health SERVING") == 1, text
    assert "Traceback" not in text and "internal error" not in text, text


def test_each_worker_of_serve_workers_follows_the_database(
    running_pg: PgServer, tmp_path: pathlib.Path
) -> None:
    """`serve --workers 2`: each worker runs its own monitor (seen in the log, one line per worker
    and transition: which worker a health check reaches is the kernel's choice)."""
    pg = running_pg
    url = pg.create_database()
    log = tmp_path / "serve.log"
    server = Serve(
        ["--workers", "2", "--database-url", url, "--data-dir", str(tmp_path), "--migrate"],
        {"USAGE_HEALTH_CHECK_INTERVAL_S": "0.2"},
        log,
    )
    s = Stubs.open(server.port, "org_workers")

    def transitions(status: str) -> collections.Counter[int]:
        found: collections.Counter[int] = collections.Counter()
        for line in log.read_text().splitlines():
            if line.startswith("{"):
                record = json.loads(line)
                if record["logger"] == "usage-service.health" and f"health {status}" in record["message"]:
                    found[record["pid"]] += 1
        return found

    try:
        assert s.statuses() == {SERVING}
        pg.pause("fast")
        wait_until(lambda: len(transitions("NOT_SERVING")) == 2, "both workers NOT_SERVING")
        assert s.statuses() == {NOT_SERVING}
        pg.resume()
        wait_until(lambda: len(transitions("SERVING")) == 2, "both workers SERVING again")
        assert s.statuses() == {SERVING}
        assert transitions("NOT_SERVING").keys() == transitions("SERVING").keys()
        assert set(transitions("NOT_SERVING").values()) == {1}
        # The checks log the transitions only, not each failed ping (RPCs still log theirs).
        assert '"server.storage.engine"' not in log.read_text()
    finally:
        s.channel.close()
        server.close()
        if not pg.running:
            pg.resume()
        pg.drop_database(url.rsplit("/", 1)[1])
    assert server.proc.returncode == 0, log.read_text()


# ---- b) SIGTERM under load loses nothing ----------------------------------------------------
THREADS = 4
BATCH = 100
MAX_BATCHES = 400  # per thread: a bound, never reached (SIGTERM comes after a few batches)


@dataclasses.dataclass
class Call:
    keys: list[str]
    before_sigterm: bool  # started before SIGTERM was sent
    after_sigterm: bool = False  # ended after SIGTERM was sent
    code: grpc.StatusCode | None = None  # None: still running; OK when acknowledged
    statuses: set[str] = dataclasses.field(default_factory=set)


def test_sigterm_under_load_drains_and_loses_nothing(
    request: pytest.FixtureRequest, tmp_path: pathlib.Path
) -> None:
    pg: PgServer = request.getfixturevalue("pg_server")
    url = pg.create_database(template=request.getfixturevalue("_pg_template"))
    org = "org_drain"
    log = tmp_path / "serve.log"
    args = ["--database-url", url, "--data-dir", str(tmp_path)]
    server = Serve(args, {"USAGE_HEALTH_CHECK_INTERVAL_S": "0.5"}, log)
    sigterm = threading.Event()
    stop_clients = threading.Event()
    calls: list[Call] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def client(t: int) -> None:
        s = Stubs.open(server.port, org)
        try:
            for b in range(MAX_BATCHES):
                if stop_clients.is_set():
                    return
                keys = [f"t{t}-b{b}-{(t * MAX_BATCHES + b) * BATCH + j}" for j in range(BATCH)]
                call = Call(keys, before_sigterm=not sigterm.is_set())
                with lock:
                    calls.append(call)
                try:
                    response = s.usage.IngestUsageEvents(
                        pb.IngestUsageEventsRequest(events=[_event_for(k) for k in keys]),
                        metadata=s.metadata,
                        timeout=HANG_S,
                    )
                except grpc.RpcError as err:
                    call.after_sigterm = sigterm.is_set()
                    call.code = err.code()
                    if sigterm.is_set():
                        return  # the server is going away: the rest of this client's batches are unsent
                    raise
                call.after_sigterm = sigterm.is_set()
                call.statuses = {r.status for r in response.results}
                call.code = grpc.StatusCode.OK
        except BaseException as exc:  # noqa: BLE001 (reported by the main thread)
            errors.append(exc)
        finally:
            s.channel.close()

    # A health watcher, subscribed before SIGTERM: it sees the status change during the drain.
    watcher = Stubs.open(server.port, org)
    watch = watcher.health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=HANG_S)
    watched: list[tuple[int, bool]] = []  # (status, whether SIGTERM had been sent)
    first = threading.Event()

    def follow() -> None:
        try:
            for response in watch:
                watched.append((response.status, sigterm.is_set()))
                first.set()
                if response.status == NOT_SERVING and sigterm.is_set():
                    watch.cancel()  # done: do not hold the drain for its grace period
                    return
        except grpc.RpcError:
            pass  # cancelled by us, or ended by the server's stop
        finally:
            first.set()

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    threads = [threading.Thread(target=client, args=(t,), daemon=True) for t in range(THREADS)]
    try:
        assert first.wait(HANG_S) and watched == [(SERVING, False)]
        for th in threads:
            th.start()

        def acked() -> int:
            with lock:
                return sum(1 for c in calls if c.code == grpc.StatusCode.OK)

        wait_until(lambda: acked() >= 2 * THREADS or bool(errors), "a few acknowledged batches")
        assert not errors, errors[0]
        sigterm.set()  # before the signal: a call that starts after this is not counted as in flight
        server.proc.send_signal(signal.SIGTERM)
        assert server.wait() == 0, log.read_text()
        stop_clients.set()
        for th in threads:
            th.join(timeout=HANG_S)
        assert not any(th.is_alive() for th in threads), "a client hung"
        follower.join(timeout=HANG_S)
        assert not errors, errors[0]
    finally:
        stop_clients.set()
        watcher.channel.close()
        server.close()

    # Health turned NOT_SERVING during the drain: sent before the server stopped accepting RPCs, so
    # the watcher (subscribed before SIGTERM) receives it before its stream ends.
    assert watched[0] == (SERVING, False) and watched[-1] == (NOT_SERVING, True), watched
    in_flight = [c for c in calls if c.before_sigterm and c.after_sigterm]
    for c in calls:
        assert c.code is not None, c  # every call returned
        if c.code == grpc.StatusCode.OK:
            assert c.statuses <= {"ACCEPTED", "DUPLICATE"}, c.statuses
        else:  # never INTERNAL, never a deadline: UNAVAILABLE (refused) or CANCELLED (cut at the end)
            assert c.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED), c.code
    acknowledged = [c for c in calls if c.code == grpc.StatusCode.OK]
    unacknowledged = [c for c in calls if c.code != grpc.StatusCode.OK]
    stored = _stored_keys(url, org)
    for c in acknowledged:
        assert all(stored[k] == 1 for k in c.keys), "an acknowledged batch is not stored exactly once"

    # A new server; the client retries every batch it got no answer for.
    second = Serve(args, {}, log)
    s = Stubs.open(second.port, org)
    try:
        for c in unacknowledged:
            response = s.usage.IngestUsageEvents(
                pb.IngestUsageEventsRequest(events=[_event_for(k) for k in c.keys]),
                metadata=s.metadata,
                timeout=HANG_S,
            )
            assert {r.status for r in response.results} <= {"ACCEPTED", "DUPLICATE"}
    finally:
        s.channel.close()
        second.close()
    assert second.proc.returncode == 0
    expected = collections.Counter(k for c in calls for k in c.keys)
    stored = _stored_keys(url, org)
    pg.drop_database(url.rsplit("/", 1)[1])
    assert stored == expected, f"missing {len(expected - stored)}, extra {len(stored - expected)}"
    assert "Traceback" not in log.read_text()
    codes = dict(collections.Counter(c.code.name for c in unacknowledged if c.code is not None))
    print(
        f"{len(calls)} batches: {len(acknowledged)} acknowledged, {len(in_flight)} in flight at SIGTERM "
        f"({sum(1 for c in in_flight if c.code == grpc.StatusCode.OK)} completed), "
        f"{len(unacknowledged)} retried ({codes})"
    )
