"""The bench's CPU accounting (bench/service.py, bench/driver.py): a process tree's CPU seconds read
from /proc count its children, and a measure's CPU per call is read over its window only."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from bench import driver
from bench.service import process_tree_cpu_s

# A child that burns `S` CPU seconds in a grandchild, says so, and stays alive to be read.
TREE = """
import subprocess, sys
burn = "import time\\nt = time.process_time()\\nwhile time.process_time() - t < 0.4: pass\\n"
burn += "print('burnt', flush=True)\\ntime.sleep(60)\\n"
child = subprocess.Popen([sys.executable, "-c", burn], stdout=subprocess.PIPE, text=True)
print(child.stdout.readline().strip(), flush=True)
child.wait()
"""


# A child that starts a grandchild burning 0.4 CPU seconds, waits for it to end, says so, and stays.
ENDED = """
import subprocess, sys, time
burn = "import time\\nt = time.process_time()\\nwhile time.process_time() - t < 0.4: pass\\n"
subprocess.run([sys.executable, "-c", burn], check=True)
print('ended', flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize(
    "script, said",
    [(TREE, "burnt"), (ENDED, "ended")],
    ids=["a living descendant", "a descendant that ended"],
)
def test_process_tree_cpu_counts_the_descendants(script: str, said: str) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline().strip() == said
        # The grandchild's 0.4 s of its own process_time, at the clock tick's resolution; one that
        # ended and was waited for counts in its parent's cutime.
        assert process_tree_cpu_s(parent.pid) >= 0.35
    finally:
        os.killpg(parent.pid, signal.SIGKILL)  # its own session: the grandchild too
        parent.wait()


def test_cpu_per_call_is_read_over_the_measured_window() -> None:
    spent = {"client": 0.0}
    readings: list[float] = []

    def probe() -> dict[str, float]:
        readings.append(time.perf_counter())
        return dict(spent)

    def make_caller(_: int) -> driver.Caller:
        def call() -> None:
            spent["client"] += 0.002  # what each call "costs", counted by the probe
            time.sleep(0.001)

        return call

    stats = driver.run(make_caller, concurrency=1, duration_s=1.0, warmup_s=1.0, cpu=probe)
    assert stats.calls > 0
    assert len(readings) == 2
    # Each call cost 2 ms. With the warm-up's calls in the reading, it would say about 4 ms; the
    # margin is for a probe thread woken late on a busy machine (calls straddling the window's ends
    # count once each way).
    per_call = stats.cpu_per_call_ms["client"]
    assert 1.0 < per_call < 3.0, per_call
    assert stats.as_dict()["cpu_per_call_ms"] == {"client": round(per_call, 3)}


def test_no_cpu_per_call_over_an_extended_window() -> None:
    def make_caller(_: int) -> driver.Caller:
        return lambda: time.sleep(0.15)

    stats = driver.run(
        make_caller, concurrency=1, duration_s=0.1, warmup_s=0.0, min_calls=3, cpu=lambda: {"client": 0.0}
    )
    assert stats.calls == 3
    assert stats.cpu_s is None
    assert stats.cpu_per_call_ms == {}
