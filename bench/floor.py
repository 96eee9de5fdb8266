"""How close any Python service on grpcio and psycopg can come to the bare gRPC server: the service,
the bare server, and the floor server (bench/floor_server.py: the bare server plus the page's own
statements) on both server models, measured in rounds that alternate them, on a kept bench cluster.

    python -m bench.floor --data-dir /work/benchdata/1m [--rounds 3] [--duration 5] [--concurrency 8]

Two pages: "ListUsageEvents no filter" and "ListCustomerUsageEvents light skip=0". Each round drives
each page against the four servers one after the other and prints calls/s, p50, the server's and
PostgreSQL's CPU per call, and calls/s as a share of the bare server's in the same round; then each
server's p50 with one caller. The responses are the service's own, captured first. A share the floor
server does not reach, no service doing more per call can (bench/README.md, "The floor").
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Any

import psycopg

from bench import clients, driver, scenarios, service
from bench.bare_server import write_responses
from bench.cli import BARE_LISTENING
from bench.cluster import BenchCluster
from bench.dataset import BIG_ORG, Dataset
from bench.generate import data_end_us
from bench.statement_cpu import list_page_statement
from server.storage import rollups
from server.storage.engine import Database, make_engine
from server.storage.event_reads import EventReads

LIST = "ListUsageEvents no filter"
LIGHT = "ListCustomerUsageEvents light skip=0"
HEADER = f"{'round':>5} {'server':<12} {'calls/s':>8} {'p50 ms':>7} {'server CPU':>11} {'PG CPU':>9} / bare"
ROW = "{round:>5} {label:<12} {rate:>8,.0f} {p50:>7.2f} {server:>11.3f} {pg:>9.3f} {share:>7}"
SERVERS = ("bare", "floor sync", "floor aio", "service")


def page_statements(database_url: str, conninfo: str, light: scenarios.Scenario) -> dict[str, Any]:
    """The statements the service runs for the two pages, from its own storage code, with the values
    it binds (what `EventReads.list_events` and `EventReads.customer_page` run for these requests;
    update with them). Compiled without connecting: make_engine connects on first use only."""
    reads = EventReads(Database(make_engine(database_url, statement_timeout_s=30)))
    list_sql, list_params = list_page_statement(reads)
    request = light.request
    values: dict[str, Any] = {"org": BIG_ORG, "customer": request.id, "aggregator": request.aggregator_id}
    values["filter"] = ""
    lookup = reads._lookup_statement()
    with psycopg.connect(conninfo) as conn:
        found = conn.execute(lookup.sql, lookup.params(values)).fetchone()
    assert found is not None and found[1] is not None, "the bench's aggregator is missing"
    start_us, end_us = request.start_date.ToMicroseconds(), request.end_date.ToMicroseconds()
    hour = rollups.HOUR_US
    page_values = {
        "org": BIG_ORG,
        "customer": request.id,
        "metric": found[1],
        "start": start_us,
        "end": end_us,
        "take": request.take,
        "skip": request.skip,
        "display": found[2],
        "first_hour": -(-start_us // hour) * hour,
        "end_hour": end_us // hour * hour,
    }
    page = reads._unfiltered_page_statement(True, False)  # whole hours from the customer rollup
    return {
        LIST: {
            "generic_plan": True,
            "statements": [[list_sql, list_params, True]],
        },
        LIGHT: {
            "generic_plan": False,  # the main pool: PostgreSQL chooses its plans
            "statements": [
                [lookup.sql, lookup.params(values), lookup.prepare],
                [page.sql, page.params(page_values), page.prepare],
            ],
        },
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=pathlib.Path, required=True, help="a kept `python -m bench` data dir")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds per server and round")
    p.add_argument("--concurrency", type=int, default=8)
    args = p.parse_args(argv)
    cluster = BenchCluster.open(args.data_dir / "pg", keep=True)
    servers: dict[str, service.ServerProcess] = {}
    try:
        url, conninfo = cluster.database_url(), cluster.conninfo_db()
        end_us = data_end_us(conninfo)
        chosen = [s for s in scenarios.all_scenarios(end_us) if s.name in (LIST, LIGHT)]
        auth = service.Auth()
        servers["service"] = service.ServerProcess.serve(url, auth, args.data_dir, None, [])
        metadata = {"service": auth.metadata(BIG_ORG)}
        target = servers["service"].target
        clients.create_aggregator(
            target, metadata["service"], scenarios.AGGREGATOR_ID, Dataset.aggregator_metric
        )
        captured = {}
        for s in chosen:
            body = clients.GrpcTarget(target, metadata["service"]).call_once(s.method, s.request)
            captured[s.name] = (s.method, body.SerializeToString())
        responses, statements = args.data_dir / "floor-responses.bin", args.data_dir / "floor-statements.json"
        write_responses(responses, captured)
        light = next(s for s in chosen if s.name == LIGHT)
        statements.write_text(json.dumps(page_statements(url, conninfo, light)))
        for label in SERVERS[:3]:
            command = [sys.executable, "-m", "bench.bare_server", "--responses", str(responses)]
            if label != "bare":
                command[2] = "bench.floor_server"
                command += ["--statements", str(statements), "--database-url", url]
                command += ["--aio"] if label == "floor aio" else []
            log = args.data_dir / f"{label.replace(' ', '-')}.log"
            servers[label] = service.ServerProcess(command, log, BARE_LISTENING)
        postmaster = cluster.postmaster_pid()
        for s in chosen:
            print(f"\n{s.name}, {args.concurrency} callers, {args.duration:g} s per server and round")
            print(HEADER)
            for r in range(args.rounds):
                bare_rate = 0.0
                for label in SERVERS:
                    stats = measure(servers[label], metadata.get(label, ()), s, postmaster, args)
                    bare_rate = stats.throughput if label == "bare" else bare_rate
                    cpu = stats.cpu_per_call_ms
                    share = f"{stats.throughput / bare_rate:.2f}" if bare_rate else "-"
                    fields = {"server": cpu.get("server", 0.0), "pg": cpu.get("postgres", 0.0)}
                    print(
                        ROW.format(
                            round=r,
                            label=label,
                            rate=stats.throughput,
                            p50=stats.p50_ms,
                            share=share,
                            **fields,
                        )
                    )
                    if stats.errors:
                        print(f"      {stats.errors} errors, the first: {stats.first_error}")
            print("unloaded (1 caller), p50 ms:")
            for label in SERVERS:
                one = clients.GrpcTarget(servers[label].target, metadata.get(label, ()))
                stats = driver.run(one.caller_factory(s.method, s.request, s.name), 1, 3.0, 0.5)
                one.close()
                print(f"  {label:<12} {stats.p50_ms:6.2f}")
    finally:
        for server in servers.values():
            server.stop()
        cluster.stop()
    return 0


def measure(
    server: service.ServerProcess,
    metadata: tuple[tuple[str, str], ...],
    scenario: scenarios.Scenario,
    postmaster: int,
    args: argparse.Namespace,
) -> driver.Stats:
    target = clients.GrpcTarget(server.target, metadata)

    def probe() -> dict[str, float]:
        return {"server": server.cpu_s(), "postgres": service.process_tree_cpu_s(postmaster)}

    try:
        make = target.caller_factory(scenario.method, scenario.request, scenario.name)
        return driver.run(make, args.concurrency, args.duration, 1.0, cpu=probe)
    finally:
        target.close()


if __name__ == "__main__":
    raise SystemExit(main())
