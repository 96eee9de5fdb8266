"""Where an ingest batch's time goes in the storage layer: IngestUsageEvents' logic and storage
(`Ingestion.ingest`) called in this one process, batch after batch, on a kept bench cluster, each
database step of `EventStore._ingest` timed (wall clock, milliseconds per batch).

    python -m bench.ingest_phases --data-dir /work/benchdata/10m [--batches 25] [--batch-size 1000]

The batches are the ingest scenario's (bench/ingest.py: fresh idempotency keys, timestamps within
the last hour) and go to its organization, whose rows are deleted afterwards. One thread: no other
call's work is in the figures, and no gRPC. The steps from the organization's commit clock to the
commit run under its writer lock (storage/clock.py), so they bound one organization's ingestion
whatever the number of callers.
"""

from __future__ import annotations

import argparse
import collections
import pathlib
import time
from collections.abc import Callable
from typing import Any

from bench import ingest
from bench.cluster import BenchCluster
from server.config import Settings
from server.logic.ingest import Ingestion
from server.storage import event_store
from server.storage.engine import make_engine
from server.storage.sql_storage import SqlStorage

# The dialect's steps of EventStore._ingest, in the order it runs them.
DIALECT_STEPS = ("claim_keys", "commit_clock", "insert_customers", "insert_events")


def timed(spent: dict[str, float], name: str, f: Callable[..., Any]) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return f(*args, **kwargs)
        finally:
            spent[name] += time.perf_counter() - t0

    return run


def measure(database_url: str, batches: int, batch_size: int) -> tuple[float, dict[str, float]]:
    """(events per second, milliseconds per batch by step) over `batches` batches."""
    storage = SqlStorage(make_engine(database_url, statement_timeout_s=30))
    spent: collections.defaultdict[str, float] = collections.defaultdict(float)
    dialect = storage.db.dialect
    originals = {name: getattr(dialect, name) for name in DIALECT_STEPS}
    add_events = event_store.rollups.add_events
    try:
        for name, f in originals.items():  # on this dialect object, for this run only
            setattr(dialect, name, timed(spent, name, f))
        event_store.rollups.add_events = timed(spent, "rollups.add_events", add_events)  # type: ignore[method-assign]
        ingestion = Ingestion(storage.events, Settings().max_future_skew_s)
        storage.events.ingest = timed(spent, "storage (all of it)", storage.events.ingest)  # type: ignore[method-assign]
        factory = ingest.BatchFactory(batch_size)
        work = [
            [ingest.new_event(r) for r in factory.rows(batch_size, time.time_ns() // 1000)]
            for _ in range(batches)
        ]
        t0 = time.perf_counter()
        for batch in work:
            results = ingestion.ingest(ingest.INGEST_ORG, list(batch), time.time_ns() // 1000)
            assert all(r.status == "ACCEPTED" for r in results), "every event is new"
        wall = time.perf_counter() - t0
    finally:
        for name in DIALECT_STEPS:
            dialect.__dict__.pop(name, None)
        event_store.rollups.add_events = add_events  # type: ignore[method-assign]
        storage.close()
    spent["logic and storage (all of it)"] = wall
    ranked = sorted(spent.items(), key=lambda kv: -kv[1])
    return batches * batch_size / wall, {k: 1000 * v / batches for k, v in ranked}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ingest_phases", description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=pathlib.Path, required=True, help="a kept `python -m bench` data dir")
    p.add_argument("--batches", type=int, default=25)
    p.add_argument("--batch-size", type=int, default=1000)
    args = p.parse_args(argv)
    cluster = BenchCluster.open(args.data_dir / "pg", keep=True)
    try:
        ingest.delete_bench_orgs(cluster.conninfo_db())
        rate, steps = measure(cluster.database_url(), args.batches, args.batch_size)
        print(f"{args.batches} batches of {args.batch_size}, one thread: {rate:,.0f} events/s")
        for name, ms in steps.items():
            print(f"  {name:<30} {ms:8.1f} ms per batch")
    finally:
        ingest.delete_bench_orgs(cluster.conninfo_db())
        cluster.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
