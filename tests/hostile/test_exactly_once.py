"""Exactly-once ingestion (issue 6, part 3): concurrent clients sending overlapping batches with the
same idempotency keys at the same moment, and a client that retries every unacknowledged batch across
a SIGKILL of the server process, end with every event stored exactly once. Exactly-once voids (issue
16): concurrent clients voiding the same events in overlapping batches, while the original batches
are retried, void each event once, and the retries stay DUPLICATEs of the voided events; concurrent
amends of one event version amend it once (the others are ABORTED or FAILED_PRECONDITION naming the
winner's version), and an event amended over and over keeps one chain of versions."""

from __future__ import annotations

import collections
import datetime as dt
import pathlib
import queue
import random
import re
import signal
import subprocess
import threading
import time
from typing import Any

import cli_process
import grpc
import pytest
import sqlalchemy as sa
from google.protobuf import field_mask_pb2
from grpc_harness import Harness, details, event
from rollup_check import assert_rollups_match_events
from usage.v1 import corrections_service_pb2 as xpb
from usage.v1 import usage_service_pb2 as pb
from usage.v1 import usage_service_pb2_grpc

from server.auth import mint_token
from server.config import Settings
from server.storage import rollups, schema
from server.storage.engine import make_engine

THREADS = 8
KEYS = 240
BATCH = 60
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def _event_for(key: str) -> Any:
    n = int(key.rsplit("-", 1)[1])
    return event(
        customer_id=f"cus_{n % 7}",
        timestamp=NOW - dt.timedelta(minutes=n),
        quantity=str(n),
        properties={"n": n},
        idempotency_key=key,
    )


def _stored_keys(engine: sa.Engine, org: str) -> collections.Counter[str]:
    ev = schema.events.c
    with engine.connect() as conn:
        rows = conn.execute(sa.select(ev.idempotency_key).where(ev.organization_id == org)).scalars()
        return collections.Counter(rows)


def _run_all(threads: list[threading.Thread], errors: list[BaseException]) -> None:
    """Start the client threads together and wait for them; none may hang or fail."""
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=240)
    assert not any(th.is_alive() for th in threads), "a client hung"
    assert not errors, errors[0]


def test_concurrent_overlapping_batches_store_each_key_once(db_url: str) -> None:
    h = Harness.start(db_url)
    postgres = h.storage.engine.dialect.name == "postgresql"
    try:
        if postgres:  # rollups (PostgreSQL only) of the metric and of one dimension
            with h.storage.engine.begin() as conn:
                rollups.add_dimension(conn, "n", 0)
        keys = [f"k-{i}" for i in range(KEYS)]
        barrier = threading.Barrier(THREADS)
        seen: dict[str, list[tuple[str, str]]] = collections.defaultdict(list)
        lock = threading.Lock()
        errors: list[BaseException] = []

        def worker(t: int) -> None:
            try:
                client = h.client("org_once")
                order = keys[:]
                random.Random(t).shuffle(order)  # every thread: all keys, in its own order
                batches = [order[i : i + BATCH] for i in range(0, len(order), BATCH)]
                barrier.wait(timeout=60)
                for batch in batches:
                    results = client.ingest(*(_event_for(k) for k in batch))
                    with lock:
                        for k, r in zip(batch, results, strict=True):
                            seen[k].append((r.status, r.event_id))
            except BaseException as exc:  # noqa: BLE001 (reported by the main thread)
                errors.append(exc)

        _run_all([threading.Thread(target=worker, args=(t,)) for t in range(THREADS)], errors)

        assert set(seen) == set(keys)
        for k, answers in seen.items():
            statuses = collections.Counter(s for s, _ in answers)
            assert statuses == {"ACCEPTED": 1, "DUPLICATE": THREADS - 1}, (k, answers)
            assert len({i for _, i in answers}) == 1, (k, answers)  # one event id per key
        stored = _stored_keys(h.storage.engine, "org_once")
        assert stored == collections.Counter(keys)  # every key exactly once, none missing
        if postgres:
            assert_rollups_match_events(h.storage.engine)
            assert _rollup_count(h.storage.engine, "org_once") == KEYS
    finally:
        h.close()


def test_concurrent_voids_and_retried_ingests_void_each_event_once(db_url: str) -> None:
    h = Harness.start(db_url)
    postgres = h.storage.engine.dialect.name == "postgresql"
    try:
        if postgres:
            with h.storage.engine.begin() as conn:
                rollups.add_dimension(conn, "n", 0)
        owner = h.client("org_void")
        keys = [f"k-{i}" for i in range(KEYS)]
        ids = owner.ingest_ok(_event_for(k) for k in keys)
        by_key = dict(zip(keys, ids, strict=True))
        barrier = threading.Barrier(THREADS + 1)
        seen: dict[str, list[tuple[str, str]]] = collections.defaultdict(list)
        retried: list[tuple[str, str, str]] = []
        lock = threading.Lock()
        errors: list[BaseException] = []

        def voider(t: int) -> None:
            try:
                token = h.token("org_void", caller=f"voider-{t}")
                client = h.raw_client((("authorization", f"Bearer {token}"),))
                order = ids[:]
                random.Random(t).shuffle(order)
                barrier.wait(timeout=60)
                for i in range(0, len(order), BATCH):
                    request = xpb.VoidUsageEventsRequest(event_ids=order[i : i + BATCH], reason=f"by {t}")
                    results = client.corrections.VoidUsageEvents(request).results
                    with lock:
                        for r in results:
                            seen[r.event_id].append((r.status, r.void.corrected_by))
            except BaseException as exc:  # noqa: BLE001 (reported by the main thread)
                errors.append(exc)

        def retrier() -> None:
            try:
                barrier.wait(timeout=60)
                for i in range(0, len(keys), BATCH):
                    batch = keys[i : i + BATCH]
                    results = owner.ingest(*(_event_for(k) for k in batch))
                    with lock:
                        retried.extend((k, r.status, r.event_id) for k, r in zip(batch, results, strict=True))
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=voider, args=(t,)) for t in range(THREADS)]
        _run_all([*threads, threading.Thread(target=retrier)], errors)

        assert set(seen) == set(ids)
        for event_id, answers in seen.items():
            statuses = collections.Counter(s for s, _ in answers)
            assert statuses == {"VOIDED": 1, "ALREADY_VOIDED": THREADS - 1}, (event_id, answers)
            assert len({caller for _, caller in answers}) == 1, (event_id, answers)  # one void, the winner's
        assert retried == [(k, "DUPLICATE", by_key[k]) for k in keys]  # never a new event
        assert _stored_keys(h.storage.engine, "org_void") == collections.Counter()
        v = schema.voided_events.c
        with h.storage.engine.connect() as conn:
            kept = conn.execute(sa.select(v.id).where(v.organization_id == "org_void")).scalars().all()
        assert sorted(kept) == sorted(ids)
        if postgres:
            assert_rollups_match_events(h.storage.engine)
    finally:
        h.close()


def test_concurrent_amends_amend_each_version_once(db_url: str) -> None:
    h = Harness.start(db_url)
    try:
        owner = h.client("org_amend")
        (first,) = owner.ingest_ok([_event_for("k-1")])
        barrier = threading.Barrier(THREADS)
        answers: list[tuple[bool, str, str]] = []  # (guarded, code or AMENDED, new or current version id)
        errors: list[BaseException] = []

        def amender(t: int) -> None:
            try:
                request = xpb.AmendUsageEventRequest(
                    event_id=first,
                    event=event(quantity=str(100 + t)),
                    update_mask=field_mask_pb2.FieldMask(paths=["quantity"]),
                    reason=f"by {t}",
                )
                if t % 2:  # half of them guarded by the version they saw
                    request.expected_version_id = first
                barrier.wait(timeout=60)
                for _ in range(5):
                    try:
                        got = owner.corrections.AmendUsageEvent(request)
                        answers.append((t % 2 == 1, "AMENDED", got.event.id))
                    except grpc.RpcError as err:
                        info = details(err)
                        answers.append(
                            (t % 2 == 1, info.code.name, info.metadata.get("current_version_id", ""))
                        )
            except BaseException as exc:  # noqa: BLE001 (reported by the main thread)
                errors.append(exc)

        _run_all([threading.Thread(target=amender, args=(t,)) for t in range(THREADS)], errors)
        versions = owner.corrections.GetUsageEventHistory(
            xpb.GetUsageEventHistoryRequest(event_id=first)
        ).versions
        chain = [v.event.id for v in versions]
        amended = [new for _, code, new in answers if code == "AMENDED"]
        # One chain: the first version, then exactly the versions the winners were told of.
        assert chain[0] == first and sorted(chain[1:]) == sorted(amended), (chain, answers)
        assert [v.replaced_by for v in versions] == [*chain[1:], ""]
        for _, code, current in answers:
            assert code in ("AMENDED", "ABORTED", "FAILED_PRECONDITION"), answers
            assert code == "AMENDED" or current in chain, (code, current, chain)
        assert [e.id for e in owner.all_events()] == [chain[-1]]
        # The guarded amends all expected the first version: at most one of them applied.
        assert sum(guarded and code == "AMENDED" for guarded, code, _ in answers) <= 1, answers
        assert [(r.status, r.event_id) for r in owner.ingest(_event_for("k-1"))] == [("DUPLICATE", chain[-1])]
        if h.storage.engine.dialect.name == "postgresql":
            assert_rollups_match_events(h.storage.engine)
    finally:
        h.close()


def _rollup_count(engine: sa.Engine, org: str) -> int:
    m = schema.rollup_metric_hourly.c
    with engine.connect() as conn:
        return int(
            conn.execute(sa.select(sa.func.sum(m.event_count)).where(m.organization_id == org)).scalar_one()
        )


# ---- SIGKILL mid-batch ----------------------------------------------------------------------
SECRET = "exactly-once-secret-of-at-least-32-bytes"
LISTENING = re.compile(r"^usage-service listening on \S+:(\d+)$")
KILL_BATCHES = 40
KILL_BATCH_SIZE = 200


def _serve(url: str, log: pathlib.Path) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [
            *cli_process.command(),
            "serve",
            "--port",
            "0",
            "--database-url",
            url,
            "--jwt-secret",
            SECRET,
            "--migrate",
        ],
        stdout=subprocess.PIPE,
        stderr=log.open("a"),
        text=True,
        env=cli_process.clean_env(),
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.strip())
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    while True:
        line = lines.get(timeout=120)
        assert line is not None, f"serve exited: {log.read_text()}"
        if m := LISTENING.match(line):
            return proc, int(m.group(1))


@pytest.mark.postgres
@pytest.mark.e2e
def test_client_retries_across_a_sigkill_store_each_key_once(
    request: pytest.FixtureRequest, tmp_path: pathlib.Path
) -> None:
    pg = request.getfixturevalue("pg_server")
    url = pg.create_database(template=request.getfixturevalue("_pg_template"))
    token = mint_token(Settings(jwt_secret=SECRET), "org_kill", dt.timedelta(hours=1))
    metadata = (("authorization", f"Bearer {token}"),)
    log = tmp_path / "serve.log"
    proc, port = _serve(url, log)
    address = {"port": port}
    acked = [0]
    attempts = [0]
    failures = [0]
    done = threading.Event()
    errors: list[BaseException] = []
    batches = [
        [f"b{b}-{b * KILL_BATCH_SIZE + j}" for j in range(KILL_BATCH_SIZE)] for b in range(KILL_BATCHES)
    ]

    def client() -> None:
        try:
            channel, channel_port = None, 0
            for batch in batches:
                req = pb.IngestUsageEventsRequest(events=[_event_for(k) for k in batch])
                for _ in range(2000):  # a bound on a hang, not a timing
                    if channel_port != address["port"]:
                        if channel is not None:
                            channel.close()
                        channel_port = address["port"]
                        channel = grpc.insecure_channel(f"127.0.0.1:{channel_port}")
                    stub = usage_service_pb2_grpc.UsageServiceStub(channel)
                    attempts[0] += 1
                    try:
                        response = stub.IngestUsageEvents(req, metadata=metadata, timeout=10)
                    except grpc.RpcError as err:
                        assert err.code() in (
                            grpc.StatusCode.UNAVAILABLE,
                            grpc.StatusCode.DEADLINE_EXCEEDED,
                            grpc.StatusCode.CANCELLED,
                        ), (err.code(), err.details())
                        failures[0] += 1
                        time.sleep(0.05)
                        continue
                    assert {r.status for r in response.results} <= {"ACCEPTED", "DUPLICATE"}, response
                    acked[0] += 1
                    break
                else:
                    raise AssertionError("a batch was never acknowledged")
            if channel is not None:
                channel.close()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=client)
    thread.start()
    try:
        for _ in range(6000):  # let a few batches through, then kill while the client is sending
            if acked[0] >= 5 or done.is_set():
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc, address["port"] = _serve(url, log)
        assert done.wait(timeout=240), "the client did not finish"
        thread.join(timeout=30)
        assert not errors, errors[0]
        assert acked[0] == KILL_BATCHES
        engine = make_engine(url)
        try:
            stored = _stored_keys(engine, "org_kill")
        finally:
            engine.dispose()
        expected = collections.Counter(k for batch in batches for k in batch)
        engine = make_engine(url)
        try:
            assert_rollups_match_events(engine)
            assert _rollup_count(engine, "org_kill") == sum(expected.values())
        finally:
            engine.dispose()
        assert stored == expected, (
            f"missing {len(expected - stored)}, extra {len(stored - expected)}; "
            f"{attempts[0]} attempts, {failures[0]} failed"
        )
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        pg.drop_database(url.rsplit("/", 1)[1])
