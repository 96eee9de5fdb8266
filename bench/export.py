"""The export scenario: how fast ExportUsageEvents streams a large window, beside the two ways a
client could get the same events without it.

- **service export**: ExportUsageEvents over the big organization's last 30 days, newest first,
  chunks of 1000, one caller reading as fast as it can, for `--export-duration` seconds (or to the
  end); the server's RSS sampled every second meanwhile.
- **paging**: ListUsageEvents with `limit` 100 over the same window, following
  its cursors, one caller, for the same time: what a client does without the export.
- **SQL**: the same rows' stored bytes read by a psycopg server-side cursor, 1000 rows per fetch: the
  database's limit for this question.

The window is read once by the SQL cursor first, untimed, so that the three measures find the same
rows in the caches.

Every figure is events/s; the export's events are checked to be distinct (each exactly once) and the
first ones equal to what paging received.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from usage.v1 import usage_service_pb2 as pb

from bench import clients, ingest
from bench import dataset as d
from bench.scenarios import DAY_US, ts

CHUNK = 1000
PAGE = 100


def _window(end_us: int) -> dict[str, Any]:
    return {"occurred_after": ts(end_us - 30 * DAY_US), "occurred_before": ts(end_us)}


def _export(target: clients.GrpcTarget, end_us: int, duration_s: float) -> dict[str, Any]:
    stub = target.stub()
    request = pb.ExportUsageEventsRequest(chunk_size=CHUNK, **_window(end_us))
    ids: list[str] = []
    t0 = time.perf_counter()
    stream = stub.ExportUsageEvents(request, metadata=target.metadata, timeout=duration_s + 120)
    for chunk in stream:
        ids.extend(e.id for e in chunk.data)
        if time.perf_counter() - t0 >= duration_s:
            stream.cancel()
            break
    seconds = time.perf_counter() - t0
    return {"events": len(ids), "distinct": len(set(ids)), "seconds": seconds, "first_ids": ids[: PAGE * 3]}


def _paging(target: clients.GrpcTarget, end_us: int, duration_s: float) -> dict[str, Any]:
    stub = target.stub()
    ids: list[str] = []
    cursor = ""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < duration_s:
        request = pb.ListUsageEventsRequest(limit=PAGE, cursor=cursor, **_window(end_us))
        page = stub.ListUsageEvents(request, metadata=target.metadata, timeout=clients.CALL_TIMEOUT_S)
        ids.extend(e.id for e in page.data)
        cursor = page.pagination.cursor
        if not cursor:
            break
    seconds = time.perf_counter() - t0
    return {"events": len(ids), "seconds": seconds, "first_ids": ids[: PAGE * 3]}


def _sql(conninfo: str, end_us: int, duration_s: float) -> dict[str, Any]:
    rows = 0
    t0 = time.perf_counter()
    with psycopg.connect(conninfo) as conn, conn.cursor(name="bench_export") as cur:
        cur.itersize = CHUNK
        cur.execute(
            "SELECT wire FROM events WHERE organization_id = %s AND timestamp_us >= %s AND timestamp_us < %s "
            "ORDER BY timestamp_us DESC, id DESC",
            (d.BIG_ORG, end_us - 30 * DAY_US, end_us),
        )
        while time.perf_counter() - t0 < duration_s:
            batch = cur.fetchmany(CHUNK)
            rows += len(batch)
            if len(batch) < CHUNK:
                break
    return {"events": rows, "seconds": time.perf_counter() - t0}


def run_export(
    svc: clients.GrpcTarget, rss_kib: Any, conninfo: str, end_us: int, duration_s: float
) -> dict[str, Any]:
    print(
        f"== export: the big organization's last 30 days, one caller, up to {duration_s:g} s each", flush=True
    )
    # The window read once, untimed: each measure then finds the same rows in the caches (at 10M
    # events the first reader of a window pays its disk reads, which the next ones are spared).
    warm = _sql(conninfo, end_us, 10 * duration_s)
    print(
        f"  warm-up: {warm['events']:,} events read by the SQL cursor in {warm['seconds']:.1f} s", flush=True
    )
    with ingest.RssSampler(rss_kib) as rss:
        exported = _export(svc, end_us, duration_s)
    paged = _paging(svc, end_us, duration_s)
    sql = _sql(conninfo, end_us, duration_s)
    rate = {
        name: r["events"] / r["seconds"]
        for name, r in (("export", exported), ("paging", paged), ("sql", sql))
    }
    n = min(len(exported["first_ids"]), len(paged["first_ids"]))
    result = {
        "chunk_size": CHUNK,
        "page_limit": PAGE,
        "export": {k: v for k, v in exported.items() if k != "first_ids"},
        "paging": {k: v for k, v in paged.items() if k != "first_ids"},
        "sql": sql,
        "events_per_s": rate,
        "ratio_export_paging": rate["export"] / rate["paging"] if rate["paging"] else None,
        "ratio_export_sql": rate["export"] / rate["sql"] if rate["sql"] else None,
        "check": "ok"
        if exported["distinct"] == exported["events"] and exported["first_ids"][:n] == paged["first_ids"][:n]
        else "DIFF",
        "rss_mib": rss.summary_mib(),
        "rss_samples": rss.samples,
    }
    for line in lines(result):
        print(line, flush=True)
    return result


def lines(result: dict[str, Any]) -> list[str]:
    rate, rss = result["events_per_s"], result["rss_mib"]
    export, paging, sql = result["export"], result["paging"], result["sql"]
    return [
        f"ExportUsageEvents, chunks of {result['chunk_size']}, 1 caller ({result['check']}):",
        f"  service export {rate['export']:>10,.0f} events/s  "
        f"({export['events']:,} in {export['seconds']:.1f} s)",
        f"  paging         {rate['paging']:>10,.0f} events/s  (ListUsageEvents limit {result['page_limit']}: "
        f"{paging['events']:,} in {paging['seconds']:.1f} s)   export/paging "
        f"{result['ratio_export_paging'] or 0:.1f}",
        f"  SQL cursor     {rate['sql']:>10,.0f} events/s  ({sql['events']:,} in {sql['seconds']:.1f} s)   "
        f"export/sql {result['ratio_export_sql'] or 0:.2f}",
        f"  server RSS MiB during the export: first {rss.get('first', 0):.0f}, max {rss.get('max', 0):.0f}, "
        f"last {rss.get('last', 0):.0f} ({rss.get('samples', 0)} samples)",
    ]
