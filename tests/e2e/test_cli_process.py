"""End to end: the real `usage-service` process (serve, token, migrate), called over the network with
Python stubs (docs/operations.md)."""

from __future__ import annotations

import datetime as dt
import json
import os
import pathlib
import re
import shlex
import stat
import subprocess
import urllib.request
from collections.abc import Iterator
from typing import Any

import cli_process
import grpc
import pytest
from cli_process import EXIT_TIMEOUT_S, clean_env, command
from google.protobuf import field_mask_pb2
from grpc_harness import condition, expect_error, filt, ts
from grpc_health.v1 import health_pb2, health_pb2_grpc
from usage.v1 import (
    catalog_pb2,
    catalog_service_pb2_grpc,
    corrections_service_pb2_grpc,
    events_pb2,
    usage_service_pb2_grpc,
)
from usage.v1 import catalog_service_pb2 as cpb
from usage.v1 import corrections_service_pb2 as xpb
from usage.v1 import usage_service_pb2 as pb

pytestmark = pytest.mark.e2e

LISTENING = re.compile(r"^usage-service listening on (\S+):(\d+)$")
EXPORT_TOKEN = re.compile(r"^\s*export TOKEN=(\S+)\s*$")
GATEWAY = re.compile(r"^usage-service gateway listening on (http://\S+) ")
CURL = re.compile(r"^\s*curl ")


run_cli = cli_process.run


class ServerProcess(cli_process.Process):
    """`usage-service serve ...`; `port` and the demo `token` once the listening line was read."""

    def __init__(self, args: list[str], stderr_path: pathlib.Path) -> None:
        super().__init__(["serve", *args], stderr_path)
        self.port = 0
        self.token = ""

    def wait_listening(self) -> int:
        """Read stdout up to the listening line (the demo banner, with its token, comes before it)."""
        self.port = int(self.wait_for(LISTENING).group(2))
        for line in self.lines:
            if m := EXPORT_TOKEN.match(line):
                self.token = m.group(1)
        return self.port


class Stubs:
    def __init__(self, port: int, token: str) -> None:
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.metadata = (("authorization", f"Bearer {token}"),)
        self._usage = usage_service_pb2_grpc.UsageServiceStub(self.channel)
        self._catalog = catalog_service_pb2_grpc.CatalogServiceStub(self.channel)
        self._corrections = corrections_service_pb2_grpc.CorrectionServiceStub(self.channel)

    def usage(self, method: str, request):
        return getattr(self._usage, method)(request, metadata=self.metadata, timeout=30)

    def catalog(self, method: str, request):
        return getattr(self._catalog, method)(request, metadata=self.metadata, timeout=30)

    def corrections(self, method: str, request):
        return getattr(self._corrections, method)(request, metadata=self.metadata, timeout=30)

    def close(self) -> None:
        self.channel.close()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, pathlib.Path]]:
    data_dir = tmp_path_factory.mktemp("demo-data")
    server = ServerProcess(["--port", "0", "--data-dir", str(data_dir), "--demo"], data_dir / "stderr.log")
    try:
        server.wait_listening()
        yield server, data_dir
    finally:
        server.terminate()


def test_demo_prints_a_token_and_serves_every_rpc(demo) -> None:
    server, _ = demo
    assert server.token, server.lines
    assert any(line.startswith("Demo data loaded: 30000 events") for line in server.lines)
    assert any(f"grpcurl -plaintext 127.0.0.1:{server.port} list" in line for line in server.lines)
    s = Stubs(server.port, server.token)
    try:
        health = health_pb2_grpc.HealthStub(s.channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
        assert health.status == health_pb2.HealthCheckResponse.SERVING

        now = dt.datetime.now(dt.UTC)
        window = dict(start_date=ts(now - dt.timedelta(days=30)), end_date=ts(now))
        page = s.usage(
            "ListCustomerUsageEvents",
            pb.ListCustomerUsageEventsRequest(id="cus_001", aggregator_id="agg_api_calls", take=5, **window),
        )
        assert page.meta.total > 5 and page.meta.taken == 5
        assert {e.name for e in page.data} <= {"/v1/search", "/v1/orders", "/v1/users", "/v1/export"}
        stamps = [(e.timestamp.ToNanoseconds(), e.id) for e in page.data]
        assert stamps == sorted(stamps, reverse=True)
        gets = s.usage(
            "ListCustomerUsageEvents",
            pb.ListCustomerUsageEventsRequest(
                id="cus_001",
                aggregator_id="agg_api_calls",
                aggregator_filter_id="flt_get",
                take=100,
                **window,
            ),
        )
        assert 0 < gets.meta.total < page.meta.total
        assert {e.payload["method"] for e in gets.data} == {"GET"}

        events = s.usage(
            "ListUsageEvents", pb.ListUsageEventsRequest(limit=5, metric_key=["api_call,storage_gb"])
        )
        assert len(events.data) == 5 and events.pagination.has_more
        assert {e.metric_key for e in events.data} <= {"api_call", "storage_gb"}
        assert {e.organization_id for e in events.data} == {"org_demo"}
        more = s.usage(
            "ListUsageEvents",
            pb.ListUsageEventsRequest(
                limit=5, metric_key=["api_call,storage_gb"], cursor=events.pagination.cursor
            ),
        )
        assert {e.id for e in more.data}.isdisjoint(e.id for e in events.data)

        agg = s.usage(
            "AggregateUsage",
            pb.AggregateUsageRequest(
                bucket="day",
                since=ts(now - dt.timedelta(days=30)),
                group_by="metric_key",
                top=3,
                time_zone="Europe/Paris",
            ),
        )
        assert [s_.other for s_ in agg.series] == [False, False, False, True]
        assert agg.series[0].key == "api_call"
        assert all(len(s_.points) in (30, 31) for s_ in agg.series)

        event = events_pb2.UsageEventInput(
            customer_id="cus_e2e", metric_key="api_call", idempotency_key="e2e-1"
        )
        event.timestamp.CopyFrom(ts(now))
        first = s.usage("IngestUsageEvents", pb.IngestUsageEventsRequest(events=[event]))
        again = s.usage("IngestUsageEvents", pb.IngestUsageEventsRequest(events=[event]))
        assert first.results[0].status == "ACCEPTED"
        assert (again.results[0].status, again.results[0].event_id) == (
            "DUPLICATE",
            first.results[0].event_id,
        )

        # Catalog: all eleven RPCs.
        aggs = s.catalog("ListAggregators", cpb.ListAggregatorsRequest())
        assert {"agg_api_calls", "agg_eu_api_calls", "agg_storage"} <= {a.id for a in aggs.data}
        assert (
            s.catalog("GetAggregator", cpb.GetAggregatorRequest(id="agg_api_calls")).aggregator.event_type
            == "api_call"
        )
        customers = s.catalog("ListCustomers", cpb.ListCustomersRequest(limit=100))
        assert "cus_e2e" in {c.id for c in customers.data}
        assert s.catalog("GetCustomer", cpb.GetCustomerRequest(id="cus_001")).customer.name == "Customer 001"
        assert (
            s.catalog(
                "CreateCustomer",
                cpb.CreateCustomerRequest(customer=catalog_pb2.Customer(id="cus_new", name="New")),
            ).customer.id
            == "cus_new"
        )
        created = s.catalog(
            "CreateAggregator",
            cpb.CreateAggregatorRequest(
                aggregator=catalog_pb2.Aggregator(
                    id="agg_e2e", name="E2E", event_type="email_sent", operation="count"
                )
            ),
        ).aggregator
        assert created.id == "agg_e2e"
        updated = s.catalog(
            "UpdateAggregator",
            cpb.UpdateAggregatorRequest(
                aggregator=catalog_pb2.Aggregator(id="agg_e2e", unit_name="emails"),
                update_mask=field_mask_pb2.FieldMask(paths=["unit_name"]),
            ),
        ).aggregator
        assert (updated.name, updated.unit_name) == ("E2E", "emails")
        flt = s.catalog(
            "CreateAggregatorFilter",
            cpb.CreateAggregatorFilterRequest(
                aggregator_filter=catalog_pb2.AggregatorFilter(
                    aggregator_id="agg_e2e",
                    name="Invoices",
                    filter=filt(condition("name", "equals", "Invoice email")),
                )
            ),
        ).aggregator_filter
        listed = s.catalog("ListAggregatorFilters", cpb.ListAggregatorFiltersRequest(aggregator_id="agg_e2e"))
        assert [f.id for f in listed.data] == [flt.id]
        s.catalog(
            "DeleteAggregatorFilter", cpb.DeleteAggregatorFilterRequest(aggregator_id="agg_e2e", id=flt.id)
        )
        s.catalog("DeleteAggregator", cpb.DeleteAggregatorRequest(id="agg_e2e"))
        expect_error(
            lambda r: s.catalog("GetAggregator", r),
            cpb.GetAggregatorRequest(id="agg_e2e"),
            grpc.StatusCode.NOT_FOUND,
        )
        # Without a token: UNAUTHENTICATED.
        bare = usage_service_pb2_grpc.UsageServiceStub(s.channel)
        expect_error(
            bare.ListUsageEvents, pb.ListUsageEventsRequest(), grpc.StatusCode.UNAUTHENTICATED, timeout=30
        )
    finally:
        s.close()


def test_token_command_signs_with_the_servers_secret(demo, tmp_path: pathlib.Path) -> None:
    server, data_dir = demo
    result = run_cli("token", "--org", "org_acme", "--ttl", "15m", "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    s = Stubs(server.port, token)
    try:
        page = s.usage("ListUsageEvents", pb.ListUsageEventsRequest(limit=3))
        assert {e.organization_id for e in page.data} == {"org_acme"}
        # org_acme has the demo catalog too, but not org_demo's ingested customer.
        expect_error(
            lambda r: s.catalog("GetCustomer", r),
            cpb.GetCustomerRequest(id="cus_e2e"),
            grpc.StatusCode.NOT_FOUND,
        )
    finally:
        s.close()
    # A token signed with another secret is refused.
    other = run_cli("token", "--org", "org_acme", "--jwt-secret", "another-secret-of-at-least-32-bytes")
    assert other.returncode == 0, other.stderr
    s = Stubs(server.port, other.stdout.strip())
    try:
        expect_error(
            lambda r: s.usage("ListUsageEvents", r),
            pb.ListUsageEventsRequest(),
            grpc.StatusCode.UNAUTHENTICATED,
        )
    finally:
        s.close()


def test_token_command_names_the_caller_its_corrections_record(demo) -> None:
    server, data_dir = demo
    args = ("token", "--org", "org_globex", "--data-dir", str(data_dir))
    minted = run_cli(*args, "--caller", "alice@example.com")
    assert minted.returncode == 0, minted.stderr
    s = Stubs(server.port, minted.stdout.strip())
    try:
        (event,) = s.usage("ListUsageEvents", pb.ListUsageEventsRequest(limit=1)).data
        voided = s.corrections(
            "VoidUsageEvents", xpb.VoidUsageEventsRequest(event_ids=[event.id], reason="test traffic")
        )
        assert [(r.status, r.void.corrected_by) for r in voided.results] == [("VOIDED", "alice@example.com")]
    finally:
        s.close()
    refused = run_cli(*args, "--caller", "")
    assert refused.returncode == 2 and "invalid caller" in refused.stderr


def test_token_command_rejects_a_bad_ttl(tmp_path: pathlib.Path) -> None:
    result = run_cli("token", "--org", "org_x", "--ttl", "forever", "--data-dir", str(tmp_path))
    assert result.returncode != 0
    assert "invalid ttl" in result.stderr
    assert not list(tmp_path.iterdir()), "a refused command writes no secret"


def test_demo_prints_curl_examples_that_work_only_with_the_gateway(demo, tmp_path: pathlib.Path) -> None:
    _, data_dir = demo  # the demo is loaded there already: these servers start quickly
    with_gateway = ServerProcess(
        ["--port", "0", "--http-port", "0", "--data-dir", str(data_dir), "--demo"], tmp_path / "gw.log"
    )
    try:
        with_gateway.wait_listening()
        url = with_gateway.wait_for(GATEWAY).group(1)
        with_gateway.wait_for(re.compile(r"^\s*curl .* -X POST "))  # the last example
        curls = [shlex.split(line) for line in with_gateway.lines if CURL.match(line)]
        assert len(curls) == 4
        # Pasted as printed (the port the gateway got, the token of the banner): each call succeeds.
        for argv in curls:
            assert argv[argv.index("-H") + 1] == "authorization: Bearer $TOKEN"
            target = next(a for a in argv if a.startswith("http://"))
            assert target.startswith(url + "/v1/"), (target, url)
            body = argv[argv.index("-d") + 1].encode() if "-d" in argv else None
            headers = dict(
                argv[i + 1].replace("$TOKEN", with_gateway.token).split(": ", 1)
                for i, a in enumerate(argv)
                if a == "-H"
            )
            request = urllib.request.Request(target, data=body, headers=headers)
            with urllib.request.urlopen(request, timeout=30) as response:
                assert response.status == 200, target
                answer = json.loads(response.read())
            assert answer.get("data") or answer.get("series") or answer.get("results"), (target, answer)
    finally:
        assert with_gateway.terminate() == 0

    without = ServerProcess(["--port", "0", "--data-dir", str(data_dir), "--demo"], tmp_path / "no-gw.log")
    try:
        without.wait_listening()
    finally:
        assert without.terminate() == 0
    stdout = without.lines + without.rest_of_stdout()
    assert any("grpcurl -plaintext" in line for line in stdout)
    assert not any(CURL.match(line) for line in stdout), stdout
    # A restart on the same data says it found the data set instead of claiming to load it.
    for restart in (with_gateway.lines, stdout):
        assert not any(line.startswith("Demo data loaded") for line in restart), restart
        assert any(
            line.startswith("Demo data already there from an earlier start (30000 events of org_demo")
            and line.endswith("nothing loaded now.")
            for line in restart
        ), restart


def _ingest_one(server: ServerProcess, data_dir: pathlib.Path) -> tuple[str, Any]:
    """A token of org_x from `usage-service token` on the data dir, and the result of one event
    ingested with it by the listening `server`."""
    server.wait_listening()
    token = run_cli("token", "--org", "org_x", "--data-dir", str(data_dir)).stdout.strip()
    s = Stubs(server.port, token)
    try:
        event = events_pb2.UsageEventInput(customer_id="cus_1", metric_key="api_call")
        event.timestamp.CopyFrom(ts(dt.datetime.now(dt.UTC)))
        (result,) = s.usage("IngestUsageEvents", pb.IngestUsageEventsRequest(events=[event])).results
    finally:
        s.close()
    return token, result


def test_sigterm_stops_gracefully_and_a_restart_keeps_data_and_tokens(tmp_path: pathlib.Path) -> None:
    data_dir = tmp_path / "data"
    first = ServerProcess(["--port", "0", "--data-dir", str(data_dir)], tmp_path / "first.log")
    try:
        token, r = _ingest_one(first, data_dir)
        assert r.status == "ACCEPTED"
    finally:
        code = first.terminate()
    assert code == 0
    assert "usage-service stopped" in first.rest_of_stdout()

    second = ServerProcess(["--port", "0", "--data-dir", str(data_dir)], tmp_path / "second.log")
    try:
        second.wait_listening()
        s = Stubs(second.port, token)
        try:
            page = s.usage("ListUsageEvents", pb.ListUsageEventsRequest())
            assert [e.id for e in page.data] == [r.event_id]
        finally:
            s.close()
    finally:
        assert second.terminate() == 0


def _mode(path: pathlib.Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_embedded_database_its_wal_and_the_secrets_are_private(tmp_path: pathlib.Path) -> None:
    """Issue 11: the database and its WAL were created 0644 in a 0755 directory, so any local user
    could read every organization's events. Under the usual umask 022, they are 0600 in a 0700
    directory; files an older version left wider are narrowed at start."""
    data_dir = tmp_path / "data"
    old_umask = os.umask(0o022)
    try:
        server = ServerProcess(["--port", "0", "--data-dir", str(data_dir)], tmp_path / "serve.log")
    finally:
        os.umask(old_umask)
    try:
        assert _ingest_one(server, data_dir)[1].status == "ACCEPTED"  # the WAL holds it
        files = ["usage.sqlite3", "usage.sqlite3-wal", "usage.sqlite3-shm", "jwt-secret", "cursor-secret"]
        assert _mode(data_dir) == 0o700
        assert {name: _mode(data_dir / name) for name in files} == dict.fromkeys(files, 0o600)
    finally:
        assert server.terminate() == 0
    # An older version's wider files are narrowed on the next start (the directory is left alone).
    for name in ("usage.sqlite3", "jwt-secret"):
        (data_dir / name).chmod(0o644)
    run_cli("migrate", "--data-dir", str(data_dir))
    assert _mode(data_dir / "usage.sqlite3") == _mode(data_dir / "jwt-secret") == 0o600


def test_concurrent_migrates_on_postgres_all_succeed(pg_server, tmp_path: pathlib.Path) -> None:
    # As the init containers of several replicas do: without a lock, one of them failed about 2 runs
    # in 3 on CREATE TABLE/TYPE of the same name.
    for attempt in range(3):
        url = pg_server.create_database()  # empty
        try:
            procs = [
                subprocess.Popen(
                    [*command(), "migrate", "--database-url", url, "--data-dir", str(tmp_path / "s")],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=clean_env(),
                )
                for _ in range(3)
            ]
            outcomes = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in procs]
            for p in procs:
                p.stdout and p.stdout.close()
                p.stderr and p.stderr.close()
            assert [code for code, _ in outcomes] == [0, 0, 0], f"attempt {attempt}: {outcomes}"
        finally:
            pg_server.drop_database(url.rsplit("/", 1)[1])


def test_postgres_needs_migrate_before_serve(pg_server, tmp_path: pathlib.Path) -> None:
    url = pg_server.create_database()  # empty: no schema
    name = url.rsplit("/", 1)[1]
    secrets_dir = tmp_path / "secrets"
    try:
        behind = ServerProcess(
            ["--port", "0", "--data-dir", str(secrets_dir), "--database-url", url], tmp_path / "behind.log"
        )
        try:
            assert behind.proc.wait(timeout=EXIT_TIMEOUT_S * 2) == 2
        finally:
            behind.close()
        assert "migrate" in behind.stderr_path.read_text()

        migrated = run_cli("migrate", "--database-url", url, "--data-dir", str(secrets_dir))
        assert migrated.returncode == 0, migrated.stderr
        assert "database migrated to" in migrated.stdout
        again = run_cli("migrate", "--database-url", url, "--data-dir", str(secrets_dir))
        assert again.returncode == 0, again.stderr

        server = ServerProcess(
            ["--port", "0", "--data-dir", str(secrets_dir), "--database-url", url], tmp_path / "serve.log"
        )
        try:
            server.wait_listening()
            token = run_cli("token", "--org", "org_pg", "--data-dir", str(secrets_dir)).stdout.strip()
            s = Stubs(server.port, token)
            try:
                event = events_pb2.UsageEventInput(
                    customer_id="cus_pg", metric_key="api_call", quantity="2.5"
                )
                event.timestamp.CopyFrom(ts(dt.datetime.now(dt.UTC)))
                (r,) = s.usage("IngestUsageEvents", pb.IngestUsageEventsRequest(events=[event])).results
                assert r.status == "ACCEPTED"
                (stored,) = s.usage("ListUsageEvents", pb.ListUsageEventsRequest()).data
                assert (stored.id, stored.customer_id, stored.organization_id) == (
                    r.event_id,
                    "cus_pg",
                    "org_pg",
                )
                assert s.catalog("GetCustomer", cpb.GetCustomerRequest(id="cus_pg")).customer.id == "cus_pg"
            finally:
                s.close()
        finally:
            assert server.terminate() == 0
        assert "PostgreSQL" in server.stderr_path.read_text()
    finally:
        pg_server.drop_database(name)
