"""Soak (issue 6, part 5): `usage-service serve` on PostgreSQL under a steady mix of every kind of call
(ingest with retries, lists, aggregates, catalog, invalid input, bad tokens, calls cancelled by their
deadline) for SOAK_SECONDS; the server's memory stays flat, its database connections never exceed
its pool and none leak, and no call is INTERNAL or UNKNOWN.

CI runs 20 s; `HYPOTHESIS_PROFILE=nightly pytest -m nightly` runs 5 minutes (`USAGE_SOAK_SECONDS`
overrides both).
"""

from __future__ import annotations

import datetime as dt
import os
import pathlib
import re
import threading
import time
from collections import Counter

import cli_process
import grpc
import psycopg
import pytest
from grpc_harness import event
from hostile_support import NIGHTLY
from usage.v1 import catalog_service_pb2 as cpb
from usage.v1 import catalog_service_pb2_grpc, usage_service_pb2_grpc
from usage.v1 import usage_service_pb2 as pb

from server.auth import mint_token
from server.config import Settings

SECRET = "soak-test-secret-of-at-least-32-bytes!!"
LISTENING = re.compile(r"^usage-service listening on \S+:(\d+)$")
POOL = Settings().db_pool_size  # serve's default pool, max_overflow 0
CLIENTS = 4
NOW = dt.datetime.now(dt.UTC)


def _rss_kib(pid: int) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _soak(pg_url: str, tmp_path: pathlib.Path, seconds: float) -> None:
    args = ["serve", "--port", "0", "--database-url", pg_url, "--jwt-secret", SECRET]
    proc = cli_process.Process(args, tmp_path / "serve.log")
    dbname = pg_url.rsplit("/", 1)[1]
    conninfo = pg_url.replace("postgresql+psycopg://", "postgresql://").rsplit("/", 1)[0] + "/postgres"
    codes: Counter[str] = Counter()
    lock = threading.Lock()
    stop = threading.Event()
    try:
        port = int(proc.wait_for(LISTENING).group(1))
        token = mint_token(Settings(jwt_secret=SECRET), "org_soak", dt.timedelta(hours=1))
        good = (("authorization", f"Bearer {token}"),)
        bad = (("authorization", "Bearer not-a-token"),)

        def client(n: int) -> None:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                usage = usage_service_pb2_grpc.UsageServiceStub(channel)
                catalog = catalog_service_pb2_grpc.CatalogServiceStub(channel)
                since = pb.AggregateUsageRequest().since
                since.FromDatetime(NOW - dt.timedelta(days=2))
                calls = [
                    lambda i: usage.IngestUsageEvents(
                        pb.IngestUsageEventsRequest(
                            events=[
                                event(
                                    customer_id=f"cus_{j % 7}",
                                    timestamp=NOW - dt.timedelta(seconds=j),
                                    properties={"region": f"r{j % 3}"},
                                    idempotency_key=f"c{n}-{i % 50}-{j}",  # repeats: retries
                                )
                                for j in range(50)
                            ]
                        ),
                        metadata=good,
                        timeout=30,
                    ),
                    lambda i: usage.ListUsageEvents(
                        pb.ListUsageEventsRequest(limit=25), metadata=good, timeout=30
                    ),
                    lambda i: usage.AggregateUsage(
                        pb.AggregateUsageRequest(bucket="hour", since=since, group_by="dim:region"),
                        metadata=good,
                        timeout=30,
                    ),
                    lambda i: catalog.ListCustomers(cpb.ListCustomersRequest(), metadata=good, timeout=30),
                    lambda i: usage.ListUsageEvents(
                        pb.ListUsageEventsRequest(cursor="bad"), metadata=good, timeout=30
                    ),
                    lambda i: usage.ListUsageEvents(pb.ListUsageEventsRequest(), metadata=bad, timeout=30),
                    lambda i: usage.AggregateUsage(  # cancelled by its deadline, or answered in time
                        pb.AggregateUsageRequest(bucket="day", since=since, group_by="metric_key"),
                        metadata=good,
                        timeout=0.002,
                    ),
                ]
                i = 0
                while not stop.is_set():
                    try:
                        calls[i % len(calls)](i)
                        code = "OK"
                    except grpc.RpcError as err:
                        code = err.code().name
                    with lock:
                        codes[code] += 1
                    i += 1

        threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
        for t in threads:
            t.start()
        rss: list[int] = []
        connections: list[int] = []
        with psycopg.connect(conninfo, autocommit=True) as admin:
            started = time.monotonic()
            while time.monotonic() - started < seconds:
                time.sleep(0.5)
                rss.append(_rss_kib(proc.proc.pid))
                connections.append(
                    admin.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
                        (dbname, "usage-service"),
                    ).fetchone()[0]  # type: ignore[index]
                )
            stop.set()
            for t in threads:
                t.join(timeout=60)
            assert not any(t.is_alive() for t in threads), "a client hung"
            after = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
                (dbname, "usage-service"),
            ).fetchone()[0]  # type: ignore[index]
        assert proc.terminate() == 0
    finally:
        stop.set()
        proc.close()

    assert codes["OK"] > 0 and codes["INVALID_ARGUMENT"] > 0 and codes["UNAUTHENTICATED"] > 0, codes
    assert not {"INTERNAL", "UNKNOWN"} & set(codes), codes
    # Connections: never more than the pool, and none left beyond it once the load is gone.
    assert max(connections) <= POOL and after <= POOL, (max(connections), after)
    # Memory: flat once warm. The last third of the samples peaks at most a quarter (+16 MiB of
    # allocator slack) above the first third's peak; a leak per call grows far beyond that.
    third = max(1, len(rss) // 3)
    early, late = max(rss[:third]), max(rss[-third:])
    assert late <= early * 1.25 + 16 * 1024, (early, late, rss)


@pytest.mark.postgres
@pytest.mark.e2e
@pytest.mark.nightly
def test_soak(pg_url: str, tmp_path: pathlib.Path) -> None:
    default = "300" if NIGHTLY else "20"
    _soak(pg_url, tmp_path, float(os.environ.get("USAGE_SOAK_SECONDS", default)))
