"""CPU per call of a ListUsageEvents page's statement, in this one process, on a kept bench cluster:
the service's storage call (`EventReads.list_events`, "no filter", limit 25) and the same SQL run
alone on one psycopg connection (prepared, binary, generic plan, as the service's single-statement
pool runs it). One thread, so no other call's work is in the figures.

    python -m bench.statement_cpu --data-dir /work/benchdata/10m [--calls 3000] [--rounds 2]

The difference between the two is what the storage layer adds around the statement (pool checkout
and return, the deadline's cancel hook, the autocommit switch); the second is the floor any Python
service on psycopg pays for the page (bench/README.md, "CPU per call").
"""

from __future__ import annotations

import argparse
import pathlib
import time
from collections.abc import Callable
from typing import Any

import psycopg

from bench.cluster import BenchCluster
from bench.dataset import BIG_ORG
from server.deadline import Deadline
from server.domain import EventFilters
from server.storage.dialects.postgres import GENERIC_PLAN_OPTION
from server.storage.engine import Database, make_engine
from server.storage.event_reads import EventReads

WARMUP_CALLS = 300
LIMIT = 26  # a page of 25 and the one past it, as the service asks


def cpu_per_call_us(call: Callable[[], object], calls: int) -> tuple[float, float]:
    """(CPU, wall) microseconds per call over `calls` calls, after a warm-up."""
    for _ in range(WARMUP_CALLS):
        call()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        call()
    return 1e6 * (time.process_time() - cpu) / calls, 1e6 * (time.perf_counter() - wall) / calls


def list_page_statement(reads: EventReads) -> tuple[str, dict[str, Any]]:
    """The SQL and values `reads.list_events` runs for the big organization's "no filter" page of
    25 (the shape: 5 optional filters absent, no metric keys, no cursor, newest first, current, not
    as_of). The shape is named by hand: update it with `EventReads.list_events`."""
    prepared = reads._list_statement((False,) * 5 + (0, False, False, False))
    return prepared.sql, prepared.params({"org": BIG_ORG, "limit": LIMIT})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=pathlib.Path, required=True, help="a kept `python -m bench` data dir")
    p.add_argument("--calls", type=int, default=3000)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    cluster = BenchCluster.open(args.data_dir / "pg", keep=True)
    try:
        db = Database(make_engine(cluster.database_url(), statement_timeout_s=30))
        reads = EventReads(db)
        filters = EventFilters()

        def storage_call() -> object:
            return reads.list_events(BIG_ORG, filters, None, LIMIT, Deadline(30, enforced=True))

        sql, params = list_page_statement(reads)
        with psycopg.connect(cluster.conninfo_db(), autocommit=True, options=GENERIC_PLAN_OPTION) as conn:

            def statement_alone() -> object:
                return conn.execute(sql, params, prepare=True, binary=True).fetchall()

            for _ in range(args.rounds):
                for label, call in (("storage call", storage_call), ("psycopg alone", statement_alone)):
                    cpu, wall = cpu_per_call_us(call, args.calls)
                    print(f"{label:14} CPU {cpu:6.0f} us/call  wall {wall:6.0f} us/call", flush=True)
        db.engine.dispose()
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
