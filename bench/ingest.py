"""The ingest scenario: IngestUsageEvents with batches of events that all carry a fresh idempotency
key, for a configurable duration, the server's RSS sampled meanwhile; and its database baseline,
a plain psycopg COPY of as many comparable rows (events + their idempotency keys) in one
transaction.

Ingested events go to their own organizations (`org_bench_ingest`, `org_bench_copy`), whose rows
are deleted from every table afterwards (and before, after an interrupted run), so the loaded
data set stays as generated and a rerun can reuse it.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
import uuid
from typing import Any

import psycopg
from usage.v1 import usage_service_pb2 as pb

from bench import dataset as d
from bench.generate import EVENT_COLUMNS, org_tables
from server.domain import NewEvent
from server.wire import event_entry

INGEST_ORG = "org_bench_ingest"
COPY_ORG = "org_bench_copy"
BENCH_ORGS = (INGEST_ORG, COPY_ORG)


class BatchFactory:
    """Thread-safe source of IngestUsageEventsRequest batches of events like the data set's."""

    def __init__(self, batch_size: int, seed: int = 7) -> None:
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self._next = 0
        self._run = uuid.uuid4().hex[:12]
        self._rng = random.Random(seed)
        self._metric_cw = d.cumulative(d.zipf_weights(len(d.METRICS), d.METRIC_ZIPF_S))
        self._cust_cw = d.cumulative(d.zipf_weights(d.BIG_ORG_CUSTOMERS, d.CUSTOMER_ZIPF_S))
        self._endpoint_cw = d.cumulative(d.zipf_weights(len(d.ENDPOINTS), d.ENDPOINT_ZIPF_S))

    def _draw(self, n: int) -> tuple[int, list[int], list[int], list[str], list[float]]:
        with self._lock:  # random.Random is not thread-safe for consistent sequences; cheap draws only
            rng = self._rng
            first, self._next = self._next, self._next + n
            customers = rng.choices(range(1, d.BIG_ORG_CUSTOMERS + 1), cum_weights=self._cust_cw, k=n)
            metrics = rng.choices(range(len(d.METRICS)), cum_weights=self._metric_cw, k=n)
            endpoints = rng.choices(d.ENDPOINTS, cum_weights=self._endpoint_cw, k=n)
            randoms = [rng.random() for _ in range(n)]
        return first, customers, metrics, endpoints, randoms

    def rows(self, n: int, now_us: int) -> list[dict[str, Any]]:
        """n events as plain dicts (the fields of UsageEventInput), timestamps within the last hour."""
        first, customers, metrics, endpoints, randoms = self._draw(n)
        out = []
        for i in range(n):
            metric, kind, api = d.METRICS[metrics[i]]
            r = randoms[i]
            quantity = (
                "1" if kind == "one" else (str(int(r * 5000) + 1) if kind == "int" else f"{r * 100:.3f}")
            )
            props: dict[str, Any] = {"region": d.REGIONS[customers[i] % 6], "plan": d.PLANS[customers[i] % 4]}
            if api:
                props["endpoint"] = endpoints[i]
                props["method"] = d.METHODS[int(r * 97) % 4]
            if r < d.USER_ID_SHARE:
                props["user_id"] = f"usr_{int(r * 1e9) % d.USER_IDS:06d}"
            row: dict[str, Any] = {
                "customer_id": d.customer_id(customers[i]),
                "metric_key": metric,
                "timestamp_us": now_us - int(r * 3_600_000_000),
                "quantity": quantity,
                "idempotency_key": f"bench-{self._run}-{first + i}",
                "properties": props,
            }
            if r < d.PRODUCT_SHARE:
                row["product_id"] = d.metric_product(metrics[i])
            if r < d.SUBSCRIPTION_SHARE:
                row["subscription_id"] = f"sub_{customers[i]:05d}"
            out.append(row)
        return out

    def request(self) -> pb.IngestUsageEventsRequest:
        req = pb.IngestUsageEventsRequest()
        for row in self.rows(self.batch_size, time.time_ns() // 1000):
            e = req.events.add(
                customer_id=row["customer_id"],
                metric_key=row["metric_key"],
                quantity=row["quantity"],
                idempotency_key=row["idempotency_key"],
            )
            e.timestamp.FromMicroseconds(row["timestamp_us"])
            if "product_id" in row:
                e.product_id = row["product_id"]
            if "subscription_id" in row:
                e.subscription_id = row["subscription_id"]
            e.properties.update(row["properties"])
        return req


def check_accepted(response: pb.IngestUsageEventsResponse) -> str | None:
    bad = [r.status for r in response.results if r.status != "ACCEPTED"]
    return None if not bad else f"{len(bad)} events not ACCEPTED (first: {bad[0]})"


# ---- RSS sampling -----------------------------------------------------------------------------
class RssSampler:
    """Samples a function returning KiB every `interval_s` on a thread."""

    def __init__(self, read_kib: Any, interval_s: float = 1.0) -> None:
        self._read = read_kib
        self._interval = interval_s
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> RssSampler:
        self._t0 = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.perf_counter() - self._t0, self._read()))

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.perf_counter() - self._t0, self._read()))
            self._stop.wait(self._interval)

    def summary_mib(self) -> dict[str, float]:
        values = [kib / 1024 for _, kib in self.samples]
        if not values:
            return {}
        return {"first": values[0], "max": max(values), "last": values[-1], "samples": len(values)}


# ---- COPY baseline ----------------------------------------------------------------------------
@dataclasses.dataclass
class CopyResult:
    rows: int
    seconds: float

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def new_event(row: dict[str, Any]) -> NewEvent:
    """A row of `BatchFactory.rows` as the event IngestUsageEvents decodes from it."""
    return NewEvent(
        row["customer_id"],
        row["metric_key"],
        row["timestamp_us"],
        row["quantity"],
        row["idempotency_key"],
        row.get("product_id"),
        row.get("subscription_id"),
        properties=row["properties"],
    )


def copy_baseline(conninfo: str, n: int, batch_size: int) -> CopyResult:
    """COPY n comparable events (and their idempotency keys) into org_bench_copy, one transaction;
    the rows are prepared before the clock starts (the ingest clients build requests too, but off
    the server's path)."""
    factory = BatchFactory(batch_size, seed=11)
    now_us = time.time_ns() // 1000
    events: list[str] = []
    keys: list[str] = []
    for start in range(0, n, 10_000):
        for row in factory.rows(min(10_000, n - start), now_us):
            event_id = f"evt_{uuid.uuid4().hex}"
            props = row["properties"]
            prop_text = "{" + ",".join(f'"{k}":"{v}"' for k, v in props.items()) + "}"
            # The same wire form the service stores (server/wire.py), computed off the clock.
            entry = event_entry(COPY_ORG, event_id, new_event(row), now_us)
            events.append(
                "\t".join(
                    (
                        COPY_ORG,
                        event_id,
                        row["customer_id"],
                        row["metric_key"],
                        str(row["timestamp_us"]),
                        str(now_us),
                        row["quantity"],
                        row.get("product_id") or "\\N",
                        row.get("subscription_id") or "\\N",
                        "\\N",
                        row["idempotency_key"],
                        "\\N",
                        "\\N",
                        "\\N",
                        prop_text,
                        "\\\\x" + entry.hex(),
                    )
                )
                + "\n"
            )
            keys.append(f"{COPY_ORG}\t{row['idempotency_key']}\t{event_id}\t{'0' * 64}\n")
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        t0 = time.perf_counter()
        with cur.copy(f"COPY events ({', '.join(EVENT_COLUMNS)}) FROM STDIN") as cp:
            for i in range(0, len(events), 10_000):
                cp.write("".join(events[i : i + 10_000]))
        with cur.copy(
            "COPY idempotency_keys (organization_id, idempotency_key, event_id, content_hash) FROM STDIN"
        ) as cp:
            for i in range(0, len(keys), 10_000):
                cp.write("".join(keys[i : i + 10_000]))
        conn.commit()
        seconds = time.perf_counter() - t0
    return CopyResult(n, seconds)


def delete_bench_orgs(conninfo: str) -> int:
    """Delete the rows of the ingest organizations from every table that has an organization_id."""
    deleted = 0
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for table in org_tables(conn):
            cur = conn.execute(f"DELETE FROM {table} WHERE organization_id = ANY(%s)", (list(BENCH_ORGS),))
            deleted += cur.rowcount
            if cur.rowcount:
                conn.execute(f"VACUUM (ANALYZE) {table}")
    return deleted
