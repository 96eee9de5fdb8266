"""How close any Python service on grpcio and psycopg can come to the bare gRPC server, for the list
page: the service, the bare server, and the floor server (bench/floor_server.py: the bare server
plus the page's own statement) on both server models, measured in rounds that alternate them, on a
kept bench cluster.

    python -m bench.floor --data-dir /work/benchdata/1m [--rounds 3] [--duration 5] [--concurrency 8]

Each round drives "ListUsageEvents no filter" against the four servers one after the other and
prints calls/s, p50, the server's and PostgreSQL's CPU per call, and calls/s as a share of the bare
server's in the same round; then each server's p50 with one caller. The response is the service's
own, captured first. A share the floor server does not reach, no service doing more per call can
(bench/README.md, "The floor").
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from bench import clients, driver, scenarios, service
from bench.bare_server import write_responses
from bench.cli import BARE_LISTENING
from bench.cluster import BenchCluster
from bench.dataset import BIG_ORG
from bench.generate import data_end_us

SCENARIO = "ListUsageEvents no filter"
HEADER = f"{'round':>5} {'server':<12} {'calls/s':>8} {'p50 ms':>7} {'server CPU':>11} {'PG CPU':>9} / bare"
ROW = "{round:>5} {label:<12} {rate:>8,.0f} {p50:>7.2f} {server:>11.3f} {pg:>9.3f} {share:>7}"


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
        url = cluster.database_url()
        scenario = next(
            s for s in scenarios.list_scenarios(data_end_us(cluster.conninfo_db())) if s.name == SCENARIO
        )
        auth = service.Auth()
        servers["service"] = service.ServerProcess.serve(url, auth, args.data_dir, None, [])
        metadata = {"service": auth.metadata(BIG_ORG)}
        body = clients.GrpcTarget(servers["service"].target, metadata["service"]).call_once(
            scenario.method, scenario.request
        )
        responses = args.data_dir / "floor-responses.bin"
        write_responses(responses, {SCENARIO: (scenario.method, body.SerializeToString())})
        module = [sys.executable, "-m"]
        for label, extra in (("bare", []), ("floor sync", []), ("floor aio", ["--aio"])):
            command = [*module, "bench.bare_server", "--responses", str(responses)]
            if label != "bare":
                command = [
                    *module,
                    "bench.floor_server",
                    "--responses",
                    str(responses),
                    "--database-url",
                    url,
                    *extra,
                ]
            log = args.data_dir / f"{label.replace(' ', '-')}.log"
            servers[label] = service.ServerProcess(command, log, BARE_LISTENING)
        postmaster = cluster.postmaster_pid()
        print(f"{SCENARIO}, {args.concurrency} callers, {args.duration:g} s per server and round")
        print(HEADER)
        order = ["bare", "floor sync", "floor aio", "service"]
        for r in range(args.rounds):
            bare_rate = 0.0
            for label in order:
                stats = measure(servers[label], metadata.get(label, ()), scenario, postmaster, args)
                bare_rate = stats.throughput if label == "bare" else bare_rate
                cpu = stats.cpu_per_call_ms
                share = f"{stats.throughput / bare_rate:.2f}" if bare_rate else "-"
                fields = {"server": cpu.get("server", 0.0), "pg": cpu.get("postgres", 0.0)}
                print(
                    ROW.format(
                        round=r, label=label, rate=stats.throughput, p50=stats.p50_ms, share=share, **fields
                    )
                )
                if stats.errors:
                    print(f"      {stats.errors} errors, the first: {stats.first_error}")
        print("unloaded (1 caller), p50 ms:")
        for label in order:
            target = clients.GrpcTarget(servers[label].target, metadata.get(label, ()))
            stats = driver.run(
                target.caller_factory(scenario.method, scenario.request, SCENARIO), 1, 3.0, 0.5
            )
            target.close()
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
        make = target.caller_factory(scenario.method, scenario.request, SCENARIO)
        return driver.run(make, args.concurrency, args.duration, 1.0, cpu=probe)
    finally:
        target.close()


if __name__ == "__main__":
    raise SystemExit(main())
