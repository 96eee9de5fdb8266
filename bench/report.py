"""Printing the results as fixed-width tables, and writing them as JSON.

Ratios are throughputs, service over baseline: `svc/bare` 0.40 means the service answers 40% of
the calls per second that a bare gRPC server returning the same response answers (the rest is
the service's own work: auth, validation, SQL, conversion); `svc/sql` 0.40 means 40% of the calls
per second that the hand-written SQL gets from the same database. Above 1 the service beats the
baseline (e.g. an aggregate answered from rollups instead of raw events).
"""

from __future__ import annotations

import json
import math
import pathlib
from typing import Any

from bench.driver import Stats

QUERY_HEADER = (
    f"{'scenario':<48} {'resp':>7} | {'service':^22} | {'bare gRPC':^22} | {'SQL (psycopg)':^22} |"
    f" {'svc/':>5} {'svc/':>5} | check\n"
    f"{'':<48} {'KiB':>7} | {'calls/s':>8} {'p50':>6} {'p99':>6} | {'calls/s':>8} {'p50':>6} {'p99':>6} |"
    f" {'calls/s':>8} {'p50':>6} {'p99':>6} | {'bare':>5} {'sql':>5} |"
)


def fmt_rate(x: float) -> str:
    if math.isnan(x):
        return "-"
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def fmt_ms(x: float) -> str:
    if math.isnan(x):
        return "-"
    return f"{x:,.0f}" if x >= 100 else (f"{x:.1f}" if x >= 10 else f"{x:.2f}")


def ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


def fmt_ratio(x: float) -> str:
    return "-" if math.isnan(x) else (f"{x:.2f}" if x < 10 else f"{x:.1f}")


def _triple(s: dict[str, Any] | None) -> str:
    if s is None:
        return f"{'-':>8} {'-':>6} {'-':>6}"
    return f"{fmt_rate(s['throughput_per_s']):>8} {fmt_ms(_f(s['p50_ms'])):>6} {fmt_ms(_f(s['p99_ms'])):>6}"


def query_row(r: dict[str, Any]) -> str:
    """One line of the query table from a `query_result` dict."""
    targets = (r["service"], r["bare"], r["sql"])
    errors = sum(t["errors"] for t in targets if t is not None)
    check = r["check"]
    status = "ok" if check == "ok" else ("ERR" if check.startswith("service error") else "DIFF")
    if errors:
        status += f" {errors} err"
    if r.get("concurrency") == 1:
        status += " (1 caller)"
    return (
        f"{r['scenario'][:48]:<48} {r['response_bytes'] / 1024:>7.1f} | {_triple(r['service'])} | "
        f"{_triple(r['bare'])} | {_triple(r['sql'])} | {fmt_ratio(_f(r['ratio_service_bare'])):>5} "
        f"{fmt_ratio(_f(r['ratio_service_sql'])):>5} | {status}"
    )


CPU_HEADER = (
    "CPU ms per call, by process (read from /proc over each measured window):\n"
    f"{'scenario':<48} | {'service':>7} {'postgres':>8} {'client':>6} | {'bare':>6} {'client':>6} | "
    f"{'SQL: postgres':>13} {'client':>6} | {'service/bare':>12}"
)


def cpu_line(r: dict[str, Any]) -> str:
    """A query row's CPU per call: the service, PostgreSQL and the client under the service's load;
    the bare server and the client under its own; PostgreSQL and the client under the SQL's."""
    nan = math.nan
    svc = r["service"].get("cpu_per_call_ms") or {}
    bare = (r["bare"] or {}).get("cpu_per_call_ms") or {}
    sql = (r["sql"] or {}).get("cpu_per_call_ms") or {}

    def ms(d: dict[str, float], k: str, width: int) -> str:
        v = d.get(k, nan)
        return f"{'-' if math.isnan(v) else f'{v:.3f}':>{width}}"

    service_part = f"{ms(svc, 'server', 7)} {ms(svc, 'postgres', 8)} {ms(svc, 'client', 6)}"
    bare_part = f"{ms(bare, 'server', 6)} {ms(bare, 'client', 6)}"
    sql_part = f"{ms(sql, 'postgres', 13)} {ms(sql, 'client', 6)}"
    server_ratio = fmt_ratio(ratio(svc.get("server", nan), bare.get("server", nan)))
    return f"{r['scenario'][:48]:<48} | {service_part} | {bare_part} | {sql_part} | {server_ratio:>12}"


def unloaded_line(r: dict[str, Any]) -> str:
    """One line of the unloaded (1 caller) list latencies."""
    service, bare = _f(r["service"]["p50_ms"]), _f(r["bare"]["p50_ms"])
    line = (
        f"  {r['scenario'][:48]:<48} p50 {fmt_ms(service):>6} ms  bare {fmt_ms(bare):>6} ms  "
        f"service/bare {fmt_ratio(_f(r['ratio_p50']))}"
    )
    service_cpu = r["service"].get("cpu_per_call_ms", {}).get("server")
    bare_cpu = r["bare"].get("cpu_per_call_ms", {}).get("server")
    if service_cpu is not None and bare_cpu is not None:
        line += f"  server CPU/call {service_cpu:.3f} ms, bare {bare_cpu:.3f} ms"
    return line


def query_result(
    name: str,
    group: str,
    note: str,
    size: int,
    service: Stats,
    bare: Stats | None,
    sql: Stats | None,
    check: str | None,
) -> dict[str, Any]:
    return {
        "scenario": name,
        "group": group,
        "note": note,
        "response_bytes": size,
        "service": service.as_dict(),
        "bare": bare.as_dict() if bare else None,
        "sql": sql.as_dict() if sql else None,
        "ratio_service_bare": _num(ratio(service.throughput, bare.throughput) if bare else math.nan),
        "ratio_service_sql": _num(ratio(service.throughput, sql.throughput) if sql else math.nan),
        "check": check or "ok",
    }


def _num(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 4)


def ingest_lines(result: dict[str, Any]) -> list[str]:
    svc = result["service"]
    lines = [
        f"IngestUsageEvents, batches of {result['batch_size']} with idempotency keys, "
        f"{result['concurrency']} callers, {result['duration_s']:.0f} s:",
        f"  service        {svc['items_per_s']:>10,.0f} events/s  ({svc['throughput_per_s']:.1f} batches/s, "
        f"p50 {fmt_ms(_f(svc['p50_ms']))} ms, p99 {fmt_ms(_f(svc['p99_ms']))} ms per batch, "
        f"{svc['errors']} errors)",
    ]
    if result.get("bare"):
        bare = result["bare"]
        lines.append(
            f"  bare gRPC      {bare['items_per_s']:>10,.0f} events/s  "
            f"({bare['throughput_per_s']:.1f} batches/s, p50 {fmt_ms(_f(bare['p50_ms']))} ms)   "
            f"svc/bare {fmt_ratio(_f(result['ratio_service_bare']))}"
        )
    if result.get("copy"):
        cp = result["copy"]
        lines.append(
            f"  plain COPY     {cp['rows_per_s']:>10,.0f} rows/s    ({cp['rows']:,} events + keys in "
            f"{cp['seconds']:.2f} s, one transaction)   "
            f"svc/copy {fmt_ratio(_f(result['ratio_service_copy']))}"
        )
    rss = result.get("rss_mib") or {}
    if rss:
        lines.append(
            f"  server RSS MiB first {rss['first']:.0f}, max {rss['max']:.0f}, last {rss['last']:.0f} "
            f"({rss['samples']} samples, 1/s)"
        )
    if result.get("check"):
        lines.append(f"  check: {result['check']}")
    return lines


def _f(x: float | None) -> float:
    return math.nan if x is None else float(x)


def scaling_lines(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    counts = sorted({r["workers"] for r in rows})
    names = list(dict.fromkeys(r["scenario"] for r in rows))
    by = {(r["scenario"], r["workers"]): r for r in rows}
    head = f"{'scenario':<48} " + " ".join(f"{f'workers={w} calls/s':>20}" for w in counts)
    head += f" {'scaling':>8}"
    lines = [head]
    for name in names:
        rates = [by[(name, w)]["throughput_per_s"] if (name, w) in by else math.nan for w in counts]
        cells = " ".join(
            f"{fmt_rate(x) + ' (p50 ' + fmt_ms(_f(by.get((name, w), {}).get('p50_ms'))) + ')':>20}"
            for x, w in zip(rates, counts, strict=True)
        )
        lines.append(f"{name[:48]:<48} {cells} {fmt_ratio(ratio(rates[-1], rates[0])):>8}")
    return lines


def write_json(path: pathlib.Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
