"""`python -m bench`: the whole benchmark in one command.

1. PostgreSQL: its own tuned cluster (bench/cluster.py) in --data-dir (kept, reused next time) or
   in a temp dir (removed unless --keep-dir); or an existing database with --database-url.
2. `usage-service migrate`; `usage-service rollups add-dimension` for --rollup-dims; the data set
   is generated unless the database already holds exactly --events events; `usage-service rollups
   rebuild` (tolerated when missing).
3. The real server (`usage-service serve --port 0 --jwt-secret ... [--workers N]`), the bench
   aggregator created through CatalogService, one response per scenario captured and checked
   against the SQL baseline's answer, the bare gRPC server started with those responses.
4. Each query scenario against service, bare server and SQL, one after the other; then ingest
   (RSS sampled) against its bare and COPY baselines; then, for each further --workers count,
   the list scenarios again on a restarted server (scaling).
5. Tables on stdout, --json PATH for the figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import functools
import os
import pathlib
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

import grpc
import sqlalchemy as sa
from usage.v1 import usage_service_pb2 as pb

from bench import clients, driver, export, generate, ingest, report, scenarios, service
from bench.bare_server import write_responses
from bench.dataset import BIG_ORG, Dataset

BARE_LISTENING = re.compile(r"^bare listening on (\S+):(\d+)$")
GROUPS = ("list", "customer", "aggregate", "usage", "as_of", "ingest", "export")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--events", type=int, default=10_000_000, help="events in the data set (default 10,000,000)"
    )
    p.add_argument("--seed", type=int, default=42, help="data set seed (default 42)")
    p.add_argument(
        "--data-dir",
        type=pathlib.Path,
        help="keep the PostgreSQL cluster and logs here and reuse them next time (generation is skipped "
        "when the database already holds --events events)",
    )
    p.add_argument("--keep-dir", action="store_true", help="keep the temp dir (when no --data-dir)")
    p.add_argument(
        "--database-url", help="use this existing PostgreSQL database instead of a cluster of our own"
    )
    p.add_argument("--regenerate", action="store_true", help="regenerate the data set even if present")
    p.add_argument(
        "--no-rollups-rebuild", action="store_true", help="never run `usage-service rollups rebuild`"
    )
    p.add_argument(
        "--rebuild-rollups",
        action="store_true",
        help="rebuild the rollups even when the data set was kept and they match the events",
    )
    p.add_argument(
        "--rollup-dims",
        default="region",
        help="property keys to roll up (comma-separated, default region; '' for none)",
    )
    p.add_argument("--concurrency", type=int, default=8, help="concurrent callers (default 8)")
    p.add_argument(
        "--duration", type=float, default=3.0, help="seconds measured per scenario and target (default 3)"
    )
    p.add_argument(
        "--warmup", type=float, default=1.0, help="seconds of warm-up before each measure (default 1)"
    )
    p.add_argument(
        "--groups",
        default=",".join(GROUPS),
        help=f"scenario groups to run, comma-separated (default {','.join(GROUPS)})",
    )
    p.add_argument("--only", default="", help="run only the query scenarios whose name contains this text")
    p.add_argument(
        "--ingest-duration", type=float, default=60.0, help="seconds of the ingest run (default 60)"
    )
    p.add_argument(
        "--ingest-concurrency", type=int, help="concurrent ingest callers (default: --concurrency)"
    )
    p.add_argument("--batch-size", type=int, default=1000, help="events per ingest batch (default 1000)")
    p.add_argument(
        "--export-duration",
        type=float,
        default=20.0,
        help="seconds of each export measure: the export, paging, SQL (default 20)",
    )
    p.add_argument(
        "--workers",
        default="",
        help="`serve --workers` counts, comma-separated (e.g. 1,2): everything runs with the first, the "
        "list scenarios again with each other (scaling). Default: the server's own default",
    )
    p.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        help="extra argument for `usage-service serve` (repeatable), e.g. --serve-arg=--max-workers=32",
    )
    p.add_argument(
        "--slow-call-s",
        type=float,
        default=3.0,
        help="a scenario whose first call takes longer runs with 1 caller, 3 calls at least (default 3)",
    )
    p.add_argument("--json", type=pathlib.Path, help="write the results as JSON to this file")
    args = p.parse_args(argv)
    args.groups = [g.strip() for g in args.groups.split(",") if g.strip()]
    unknown = set(args.groups) - set(GROUPS)
    if unknown:
        p.error(f"unknown groups {sorted(unknown)}; choose from {GROUPS}")
    args.rollup_dims = [k.strip() for k in args.rollup_dims.split(",") if k.strip()]
    args.workers = [int(w) for w in args.workers.split(",") if w.strip()] or [None]
    args.ingest_concurrency = args.ingest_concurrency or args.concurrency
    return args


@dataclasses.dataclass
class Database:
    url: str  # SQLAlchemy URL, for usage-service
    conninfo: str  # psycopg
    postmaster_pid: int | None = None  # the bench's own cluster: its CPU time is read (run_queries)


def psycopg_conninfo(url: str) -> str:
    return sa.engine.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    temp = args.data_dir is None
    workdir = (args.data_dir or pathlib.Path(tempfile.mkdtemp(prefix="usage-bench-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    if temp:  # mkdtemp's 0700 would keep out the `postgres` user the cluster runs as under root
        workdir.chmod(0o755)
    keep = not temp or args.keep_dir
    cluster = None
    started = time.perf_counter()
    results: dict[str, Any] = {"meta": _meta(args)}
    try:
        if args.database_url:
            db = Database(args.database_url, psycopg_conninfo(args.database_url))
            print(f"database: {args.database_url}")
        else:
            from bench.cluster import BenchCluster

            print(f"PostgreSQL cluster in {workdir / 'pg'} ({'kept' if keep else 'throwaway'})", flush=True)
            cluster = BenchCluster.open(workdir / "pg", keep=keep)
            db = Database(cluster.database_url(), cluster.conninfo_db(), cluster.postmaster_pid())
            results["meta"]["postgresql_settings"] = cluster.settings_in_force()
        prepare(args, db, results)
        run_all(args, db, workdir, results)
    finally:
        if cluster is not None:
            cluster.stop()
        if temp and not keep:
            shutil.rmtree(workdir, ignore_errors=True)
        elif keep:
            print(f"\nkept: {workdir} (rerun with --data-dir {workdir})")
    results["meta"]["total_s"] = round(time.perf_counter() - started, 1)
    if args.json:
        report.write_json(args.json, results)
        print(f"results written to {args.json}")
    return 0


def prepare(args: argparse.Namespace, db: Database, results: dict[str, Any]) -> None:
    print("== schema and data", flush=True)
    service.migrate(db.url)
    ingest.delete_bench_orgs(db.conninfo)  # leftovers of an interrupted run
    if args.rollup_dims:  # before a load: declaring a dimension backfills it from the events
        dims = service.ensure_rollup_dimensions(db.url, args.rollup_dims)
        print(f"  rolled-up dimensions: {', '.join(dims) or 'none'}", flush=True)
        results["meta"]["rollup_dimensions"] = dims
    have = generate.loaded_events(db.conninfo)
    if have and have != args.events and not args.regenerate and not generate.has_bench_data(db.conninfo):
        raise SystemExit(
            f"the database holds {have:,} events that are not the benchmark's data set: "
            "pass --regenerate to replace them (every organization's data is deleted)"
        )
    if have == args.events and not args.regenerate:
        print(f"  the database holds {have:,} events: generation skipped (--regenerate to force)")
        results["load"] = {"skipped": True, "events": have}
    else:
        print(f"  generating {args.events:,} events (the database held {have:,})", flush=True)
        load = generate.load(db.conninfo, Dataset(args.events, args.seed))
        results["load"] = {
            "events": load.events,
            "customers": load.customers,
            "idempotency_keys": load.idempotency_keys,
            "copy_s": round(load.copy_s, 2),
            "copy_rows_per_s": round(load.copy_rows_per_s),
            "index_s": round(load.index_s, 2),
            "vacuum_s": round(load.vacuum_s, 2),
        }
    loaded = not results["load"].get("skipped")
    if args.no_rollups_rebuild:
        print("  rollups not rebuilt (--no-rollups-rebuild)", flush=True)
    elif loaded or args.rebuild_rollups or service.rollups_consistent(db.conninfo) is False:
        seconds = service.rebuild_rollups_if_supported(db.url)
        results["load"]["rollups_rebuild_s"] = None if seconds is None else round(seconds, 2)
    else:
        print("  rollups match the events: not rebuilt (--rebuild-rollups to force)", flush=True)
    results["meta"]["big_org_events_30d"] = _count_window(db.conninfo, 30)


def _count_window(conninfo: str, days: int) -> int:
    import psycopg

    end = generate.data_end_us(conninfo)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM events WHERE organization_id = %s AND timestamp_us > %s",
            (BIG_ORG, end - days * scenarios.DAY_US),
        ).fetchone()
    return int(row[0]) if row else 0


def start_server(
    args: argparse.Namespace, db: Database, auth: service.Auth, workdir: pathlib.Path, workers: int | None
) -> tuple[service.ServerProcess, int | None]:
    """The real server; if this version has no --workers flag, started without it (workers None)."""
    try:
        server = service.ServerProcess.serve(db.url, auth, workdir, workers, args.serve_arg)
    except service.ServerExited as exc:
        if workers is None or "--workers" not in exc.stderr_tail:
            raise
        print(
            "  WARNING: this usage-service has no --workers flag; running the default server only", flush=True
        )
        return service.ServerProcess.serve(db.url, auth, workdir, None, args.serve_arg), None
    return server, workers


def run_all(args: argparse.Namespace, db: Database, workdir: pathlib.Path, results: dict[str, Any]) -> None:
    auth = service.Auth()
    end_us = generate.data_end_us(db.conninfo)
    chosen = [
        s
        for s in scenarios.all_scenarios(end_us)
        if s.group in args.groups and (not args.only or args.only in s.name)
    ]
    server, workers = start_server(args, db, auth, workdir, args.workers[0])
    results["meta"]["workers"] = workers
    print(f"== server on {server.target} (workers: {workers or 'default'})", flush=True)
    svc = clients.GrpcTarget(server.target, auth.metadata(BIG_ORG))
    ingest_svc = clients.GrpcTarget(server.target, auth.metadata(ingest.INGEST_ORG))
    sql = clients.SqlTarget(db.conninfo)
    bare_proc: service.ServerProcess | None = None
    try:
        for aggregator_id, equals in (
            (scenarios.AGGREGATOR_ID, None),
            (scenarios.FILTERED_AGGREGATOR_ID, scenarios.FILTERED_AGGREGATOR_EQUALS),
        ):
            created = clients.create_aggregator(
                server.target, auth.metadata(BIG_ORG), aggregator_id, Dataset.aggregator_metric, equals
            )
            print(f"  aggregator {aggregator_id}: {created}", flush=True)
        if any(s.as_of for s in chosen):
            # A moment the service gave out: the as_of of a current answer (its commit clock).
            given = svc.call_once("ListUsageEvents", pb.ListUsageEventsRequest(limit=1)).as_of
            for s in chosen:
                if s.as_of:
                    s.request.as_of.CopyFrom(given)
            # Then one change, outside every scenario's window and filters: the moment is now before
            # the organization's last change, so it is read from the events as they were (the
            # slower path; a moment nothing changed since is answered like a current question).
            late = pb.IngestUsageEventsRequest()
            change = late.events.add(customer_id="cus_bench_as_of", metric_key="bench_as_of")
            change.timestamp.FromMicroseconds(end_us - 200 * scenarios.DAY_US)
            assert svc.call_once("IngestUsageEvents", late).results[0].status in ("ACCEPTED", "DUPLICATE")
            print(f"  as_of scenarios ask as of {given.ToJsonString()}, before a later change", flush=True)
        captured = capture(chosen, svc, sql)
        factory = ingest.BatchFactory(args.batch_size)
        if "ingest" in args.groups:
            response = ingest_svc.call_once("IngestUsageEvents", factory.request())
            captured["ingest"] = Captured(
                "IngestUsageEvents", response.SerializeToString(), ingest.check_accepted(response), 0.0
            )
        bare_proc = start_bare(workdir, captured)
        bare = clients.GrpcTarget(bare_proc.target, ())
        cpu = CpuProbes(server, bare_proc, db.postmaster_pid)
        results["scenarios"] = run_queries(args, chosen, svc, bare, sql, captured, cpu)
        results["unloaded"] = run_unloaded(args, chosen, svc, bare, cpu)
        if "ingest" in args.groups:
            results["ingest"] = run_ingest(
                args, db, server, ingest_svc, bare, factory, captured["ingest"].check
            )
        if "export" in args.groups:
            results["export"] = export.run_export(
                svc, server.rss_kib, db.conninfo, end_us, args.export_duration
            )
        if len(args.workers) > 1 and workers is not None:
            svc.close()
            server.stop()
            results["scaling"] = run_scaling(args, db, auth, workdir, chosen, results["scenarios"], workers)
    finally:
        for target in (svc, ingest_svc, sql):
            target.close()
        server.stop()
        if bare_proc is not None:
            bare_proc.stop()
    print_summary(args, results)


@dataclasses.dataclass
class Captured:
    """One real response of a scenario: replayed by the bare server, checked against SQL."""

    method: str
    body: bytes
    check: str | None
    first_call_s: float


def capture(
    chosen: list[scenarios.Scenario], svc: clients.GrpcTarget, sql: clients.SqlTarget
) -> dict[str, Captured]:
    """One call per scenario: the response the bare server will replay, and the SQL cross-check."""
    print("== capturing one response per scenario and checking it against SQL", flush=True)
    captured: dict[str, Captured] = {}
    for s in chosen:
        t0 = time.perf_counter()
        try:
            # A fresh scenario's first call asks a new question too (its cost is the uncached one).
            response = svc.call_once(s.method, s.request_for() if s.request_for else s.request)
        except grpc.RpcError as exc:  # reported, and the bare server replays an empty response
            first_s = time.perf_counter() - t0
            check = f"service error {exc.code().name}: {exc.details()}"
            captured[s.name] = Captured(s.method, b"", check, first_s)
            print(f"  {s.name:<48} FAILED after {first_s:.1f} s: {check}", flush=True)
            continue
        first_s = time.perf_counter() - t0
        body = response.SerializeToString()
        mismatch = s.check(response, sql.run_once(s))
        captured[s.name] = Captured(s.method, body, mismatch, first_s)
        extra = ""
        if s.method == "ListCustomerUsageEvents":
            extra = f", total {response.meta.total:,}, taken {response.meta.taken}"
            if s.request.skip >= response.meta.total:
                extra += "  (WARNING: skip beyond the total: use more --events)"
        print(
            f"  {s.name:<48} {len(body) / 1024:7.1f} KiB, first call {first_s * 1000:8.1f} ms{extra}"
            + (f"  CHECK FAILED: {mismatch}" if mismatch else ""),
            flush=True,
        )
    return captured


def start_bare(workdir: pathlib.Path, captured: dict[str, Captured]) -> service.ServerProcess:
    path = workdir / "bare-responses.bin"
    write_responses(path, {name: (c.method, c.body) for name, c in captured.items()})
    return service.ServerProcess(
        [sys.executable, "-m", "bench.bare_server", "--responses", str(path)],
        workdir / "bare.log",
        BARE_LISTENING,
    )


def run_queries(
    args: argparse.Namespace,
    chosen: list[scenarios.Scenario],
    svc: clients.GrpcTarget,
    bare: clients.GrpcTarget,
    sql: clients.SqlTarget,
    captured: dict[str, Captured],
    cpu: CpuProbes,
) -> list[dict[str, Any]]:
    """Each scenario against the service, the bare server and SQL, one after the other, with the CPU
    each process spent per call (`CpuProbes`).

    A scenario whose first call took longer than --slow-call-s runs with one caller and at least
    3 measured calls (for all three targets alike), so that one pathological query cannot take
    the run's time: its row says so."""
    print(
        f"== query scenarios: {args.concurrency} callers, {args.warmup:g} s warm-up + "
        f"{args.duration:g} s each (service, then bare gRPC, then SQL)",
        flush=True,
    )
    print(report.QUERY_HEADER, flush=True)
    rows = []
    for s in chosen:
        c = captured[s.name]
        conc, min_calls, note = args.concurrency, None, s.note
        if c.first_call_s > args.slow_call_s:
            conc, min_calls = 1, 3
            note = f"{note}; 1 caller: the first call took {c.first_call_s:.1f} s".lstrip("; ")
        run = functools.partial(
            driver.run, concurrency=conc, duration_s=args.duration, warmup_s=args.warmup, min_calls=min_calls
        )
        st = run(svc.caller_factory(s.method, s.request_for or s.request), cpu=cpu.service)
        svc.close()
        bt = run(bare.caller_factory(s.method, s.request, scenario=s.name), cpu=cpu.bare)
        bare.close()
        qt = run(sql.caller_factory(s), cpu=cpu.sql)
        sql.close()
        row = report.query_result(s.name, s.group, note, len(c.body), st, bt, qt, c.check)
        row["concurrency"] = conc
        print(report.query_row(row), flush=True)
        for label, stats in (("service", st), ("bare", bt), ("sql", qt)):
            if stats.first_error:
                print(f"    {label} error: {stats.first_error}", flush=True)
        rows.append(row)
    return rows


@dataclasses.dataclass
class CpuProbes:
    """CPU seconds used so far, by process, for each target's measure: its server (the service or
    the bare one, with their children), PostgreSQL (the postmaster and its backends, when the bench
    runs the cluster) and this process, the client."""

    server: service.ServerProcess
    bare_server: service.ServerProcess
    postmaster_pid: int | None

    def _postgres(self) -> dict[str, float]:
        if self.postmaster_pid is None:
            return {}
        return {"postgres": service.process_tree_cpu_s(self.postmaster_pid)}

    @staticmethod
    def _client() -> dict[str, float]:
        t = os.times()
        return {"client": t.user + t.system}

    def service(self) -> dict[str, float]:
        return {"server": self.server.cpu_s(), **self._postgres(), **self._client()}

    def bare(self) -> dict[str, float]:
        return {"server": self.bare_server.cpu_s(), **self._client()}

    def sql(self) -> dict[str, float]:
        return {**self._postgres(), **self._client()}


def run_unloaded(
    args: argparse.Namespace,
    chosen: list[scenarios.Scenario],
    svc: clients.GrpcTarget,
    bare: clients.GrpcTarget,
    cpu: CpuProbes,
) -> list[dict[str, Any]]:
    """The list scenarios with ONE caller: the latency of a call on an idle server, service and
    bare gRPC alike (a call's own cost, without queueing behind the others), and each server's CPU
    per call without other calls beside it."""
    rows = []
    listed = [s for s in chosen if s.group in ("list", "customer")]
    if listed:
        print("== unloaded: 1 caller, list scenarios (service, then bare gRPC)", flush=True)
    for s in listed:
        run = functools.partial(driver.run, concurrency=1, duration_s=args.duration, warmup_s=args.warmup)
        st = run(svc.caller_factory(s.method, s.request), cpu=cpu.service)
        svc.close()
        bt = run(bare.caller_factory(s.method, s.request, scenario=s.name), cpu=cpu.bare)
        bare.close()
        row: dict[str, Any] = {
            "scenario": s.name,
            "service": st.as_dict(),
            "bare": bt.as_dict(),
            "ratio_p50": report._num(report.ratio(st.p50_ms, bt.p50_ms)),
        }
        rows.append(row)
        print(report.unloaded_line(row), flush=True)
    return rows


def run_scaling(
    args: argparse.Namespace,
    db: Database,
    auth: service.Auth,
    workdir: pathlib.Path,
    chosen: list[scenarios.Scenario],
    first_rows: list[dict[str, Any]],
    first_workers: int,
) -> list[dict[str, Any]]:
    """The list scenarios again on a server restarted with each further --workers count."""
    groups = ("list", "customer")
    scaling = [
        {"scenario": r["scenario"], "workers": first_workers, **r["service"]}
        for r in first_rows
        if r["group"] in groups and r.get("concurrency") == args.concurrency
    ]
    for count in args.workers[1:]:
        server, _ = start_server(args, db, auth, workdir, count)
        svc = clients.GrpcTarget(server.target, auth.metadata(BIG_ORG))
        print(f"== scaling: server restarted with --workers {count} on {server.target}", flush=True)
        try:
            for s in chosen:
                if s.group not in groups:
                    continue
                stats = driver.run(
                    svc.caller_factory(s.method, s.request), args.concurrency, args.duration, args.warmup
                )
                svc.close()
                print(
                    f"  {s.name:<48} {report.fmt_rate(stats.throughput):>8} calls/s, p50 "
                    f"{report.fmt_ms(stats.p50_ms)} ms",
                    flush=True,
                )
                scaling.append({"scenario": s.name, "workers": count, **stats.as_dict()})
        finally:
            svc.close()
            server.stop()
    return scaling


def run_ingest(
    args: argparse.Namespace,
    db: Database,
    server: service.ServerProcess,
    ingest_svc: clients.GrpcTarget,
    bare: clients.GrpcTarget,
    factory: ingest.BatchFactory,
    check: str | None,
) -> dict[str, Any]:
    conc, batch = args.ingest_concurrency, args.batch_size
    print(
        f"== ingest: batches of {batch}, {conc} callers, {args.ingest_duration:g} s "
        "(server RSS sampled each second)",
        flush=True,
    )
    with ingest.RssSampler(server.rss_kib) as rss:
        st = driver.run(
            ingest_svc.caller_factory("IngestUsageEvents", factory.request),
            conc,
            args.ingest_duration,
            args.warmup,
            items_per_call=batch,
        )
    ingest_svc.close()
    bt = driver.run(
        bare.caller_factory("IngestUsageEvents", factory.request, scenario="ingest"),
        conc,
        args.duration,
        args.warmup,
        items_per_call=batch,
    )
    bare.close()
    n_copy = max(batch, st.calls * batch)
    copy = ingest.copy_baseline(db.conninfo, n_copy, batch)
    deleted = ingest.delete_bench_orgs(db.conninfo)
    result = {
        "batch_size": batch,
        "concurrency": conc,
        "duration_s": args.ingest_duration,
        "service": st.as_dict(),
        "bare": bt.as_dict(),
        "copy": {"rows": copy.rows, "seconds": round(copy.seconds, 3), "rows_per_s": round(copy.rows_per_s)},
        "ratio_service_bare": report._num(report.ratio(st.items_per_s, bt.items_per_s)),
        "ratio_service_copy": report._num(report.ratio(st.items_per_s, copy.rows_per_s)),
        "rss_mib": {k: round(v, 1) for k, v in rss.summary_mib().items()},
        "rss_samples_mib": [[round(t, 1), round(kib / 1024, 1)] for t, kib in rss.samples],
        "check": check,
        "cleanup_deleted_rows": deleted,
    }
    for line in report.ingest_lines(result):
        print(line, flush=True)
    if st.first_error:
        print(f"  service error: {st.first_error}", flush=True)
    return result


def print_summary(args: argparse.Namespace, results: dict[str, Any]) -> None:
    meta = results["meta"]
    print("\n" + "=" * 100)
    load = results.get("load", {})
    print(
        f"usage-service benchmark: {meta['events']:,} events "
        f"({meta.get('big_org_events_30d', 0):,} in the big organization's last 30 days), "
        f"{args.concurrency} callers, {args.duration:g} s per measure, "
        f"workers {meta.get('workers') or 'default'}; {meta['cpus']} CPUs, {meta['started']}"
    )
    if load and not load.get("skipped"):
        print(
            f"load: COPY {load['copy_rows_per_s']:,} rows/s ({load['copy_s']} s), "
            f"indexes {load['index_s']} s, vacuum {load['vacuum_s']} s, "
            f"rollups rebuild {load.get('rollups_rebuild_s')} s"
        )
    elif load:
        rebuild = load.get("rollups_rebuild_s")
        print(f"load: skipped (data set present); rollups rebuild {'-' if rebuild is None else rebuild} s")
    if results.get("scenarios"):
        print(report.QUERY_HEADER)
        for r in results["scenarios"]:
            print(report.query_row(r))
    if any(r["service"].get("cpu_per_call_ms") for r in results.get("scenarios", [])):
        print(report.CPU_HEADER)
        for r in results["scenarios"]:
            print(report.cpu_line(r))
    if results.get("unloaded"):
        print("unloaded (1 caller): p50 ms, service / bare gRPC")
        for r in results["unloaded"]:
            print(report.unloaded_line(r))
    if results.get("ingest"):
        for line in report.ingest_lines(results["ingest"]):
            print(line)
    if results.get("export"):
        for line in export.lines(results["export"]):
            print(line)
    if results.get("scaling"):
        print()
        for line in report.scaling_lines(results["scaling"]):
            print(line)
    print("latencies in ms; svc/bare and svc/sql are throughput ratios (calls/s of the service / baseline)")


def _meta(args: argparse.Namespace) -> dict[str, Any]:
    def run(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {
        "started": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "events": args.events,
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "git_commit": run(["git", "rev-parse", "--short", "HEAD"]),
        "git_dirty": bool(run(["git", "status", "--porcelain", "--untracked-files=no"])),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
    }
