"""The load driver: `concurrency` callers in a closed loop for a fixed duration, after a warm-up.

    stats = run(make_caller, concurrency=8, duration_s=10, warmup_s=1)

`make_caller(i)` is called once per caller thread (so each has its own gRPC channel or database
connection) and returns the zero-argument function to call repeatedly; what it returns is ignored,
an exception counts as an error (the first one is kept). A call is counted when it completes
inside the measured window (whenever it started: in a steady state this estimates the rate without
the bias that dropping the calls straddling the window's edges would give slow calls);
throughput is counted calls over the window's length, latencies are those of counted calls.
Slow scenarios get a longer window: at least `min_calls` calls are measured.

`cpu`, when given, is read at the window's start and end (for example CPU seconds of the server,
of PostgreSQL and of this process, from /proc: bench/service.py); `Stats.cpu_per_call_ms` divides
each difference by the calls completed in the window. Throughput on this shared machine moves with
its neighbours; CPU spent per call much less so, and it says which process a call's cost is in.

Client threads: gRPC and psycopg release the GIL while they wait, so a few threads drive a
server well; the client's own CPU (request building, response parsing) still shares the machine
with the server, the same way for the service and for its baselines.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable
from typing import Any

Caller = Callable[[], Any]


@dataclasses.dataclass
class Stats:
    calls: int
    duration_s: float
    latencies_s: list[float]
    errors: int = 0
    first_error: str = ""
    items_per_call: int = 1  # e.g. events per ingest batch
    cpu_s: dict[str, float] | None = None  # CPU seconds spent in the window, by process (`cpu`)

    @property
    def cpu_per_call_ms(self) -> dict[str, float]:
        if not self.cpu_s or not self.calls:
            return {}
        return {name: 1000 * s / self.calls for name, s in self.cpu_s.items()}

    @property
    def throughput(self) -> float:
        return self.calls / self.duration_s if self.duration_s else 0.0

    @property
    def items_per_s(self) -> float:
        return self.throughput * self.items_per_call

    def percentile(self, p: float) -> float:
        """The p-th percentile latency in seconds (nearest rank); NaN without calls."""
        if not self.latencies_s:
            return math.nan
        ordered = sorted(self.latencies_s)
        rank = max(1, math.ceil(p / 100 * len(ordered)))
        return ordered[rank - 1]

    @property
    def p50_ms(self) -> float:
        return self.percentile(50) * 1000

    @property
    def p99_ms(self) -> float:
        return self.percentile(99) * 1000

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "duration_s": round(self.duration_s, 3),
            "throughput_per_s": round(self.throughput, 2),
            "items_per_s": round(self.items_per_s, 1),
            "p50_ms": _round(self.p50_ms),
            "p99_ms": _round(self.p99_ms),
            "errors": self.errors,
            "first_error": self.first_error,
            "cpu_per_call_ms": {k: round(v, 3) for k, v in self.cpu_per_call_ms.items()},
        }


def _round(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 3)


def run(
    make_caller: Callable[[int], Caller],
    concurrency: int,
    duration_s: float,
    warmup_s: float = 1.0,
    items_per_call: int = 1,
    min_calls: int | None = None,
    max_extra_s: float = 120.0,
    cpu: Callable[[], dict[str, float]] | None = None,
) -> Stats:
    """Run `concurrency` callers for `warmup_s + duration_s`; measure the last `duration_s`.

    Slow calls: when fewer than `min_calls` (default 2 x concurrency) complete in the window, it is
    extended until they have (at most `max_extra_s` more), and the rate is taken over that window.
    """
    min_calls = 2 * concurrency if min_calls is None else min_calls
    callers = [make_caller(i) for i in range(concurrency)]
    start_gate = threading.Barrier(concurrency + 1 + (cpu is not None))
    lock = threading.Lock()
    done: list[tuple[float, float]] = []  # (completion time, latency) of calls completed after warm-up
    errors: list[str] = []
    window: list[float] = [0.0, 0.0]  # [warm-up end, nominal end], set once all callers are ready

    def loop(call: Caller) -> None:
        failures: list[str] = []
        start_gate.wait()
        begin, end = window
        hard_end = end + max_extra_s
        while True:
            t0 = time.perf_counter()
            if t0 >= hard_end or (t0 >= end and len(done) >= min_calls):
                break
            try:
                call()
            except Exception as exc:  # counted, never raised: the run goes on
                failures.append(f"{type(exc).__name__}: {_short(exc)}")
                time.sleep(0.01)  # do not spin on a server that refuses everything
                continue
            t1 = time.perf_counter()
            if t1 >= begin:
                with lock:
                    done.append((t1, t1 - t0))
        with lock:
            errors.extend(failures)

    readings: list[dict[str, float]] = []

    def read_cpu(probe: Callable[[], dict[str, float]]) -> None:  # at the window's start and nominal end
        start_gate.wait()
        for at in tuple(window):
            time.sleep(max(0.0, at - time.perf_counter()))
            readings.append(probe())

    threads = [threading.Thread(target=loop, args=(c,), daemon=True) for c in callers]
    if cpu is not None:
        threads.append(threading.Thread(target=read_cpu, args=(cpu,), daemon=True))
    for t in threads:
        t.start()
    now = time.perf_counter()
    window[0] = now + warmup_s
    window[1] = now + warmup_s + duration_s
    start_gate.wait()
    for t in threads:
        t.join()
    begin, end = window
    done.sort()
    counted = [lat for t1, lat in done if t1 < end]
    measured = duration_s
    if len(counted) < min_calls and done:  # extended window: up to the min_calls-th completion
        last = done[min(min_calls, len(done)) - 1][0]
        counted = [lat for t1, lat in done if t1 <= last]
        measured = last - begin
        readings.clear()  # the CPU was read over the nominal window, not this one
    cpu_s = {k: readings[1][k] - readings[0][k] for k in readings[0]} if len(readings) == 2 else None
    return Stats(
        calls=len(counted),
        duration_s=measured,
        latencies_s=counted,
        errors=len(errors),
        first_error=errors[0] if errors else "",
        items_per_call=items_per_call,
        cpu_s=cpu_s,
    )


def _short(exc: BaseException) -> str:
    details = getattr(exc, "details", None)
    code = getattr(exc, "code", None)
    if callable(details) and callable(code):
        try:
            return f"{code().name} {details()}"[:300]
        except Exception:
            pass
    return str(exc)[:300]
