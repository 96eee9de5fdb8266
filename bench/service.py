"""The real service as processes: `usage-service migrate`, `usage-service rollups rebuild`, and
`usage-service serve` started on a free port (its "listening" line parsed from stdout, as
tests/cli_process.py does), stopped with SIGTERM; tokens minted with the service's own
`server.auth.mint_token`; the server's memory and CPU time read from /proc.

The environment of these processes is stripped of USAGE_* variables: the flags are the whole
configuration.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import pathlib
import queue
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

from server.auth import mint_token
from server.config import Settings

LISTENING = re.compile(r"^usage-service listening on (\S+):(\d+)$")
START_TIMEOUT_S = 180.0


def command() -> list[str]:
    """The `usage-service` console script beside this Python, else `python -m server.cli`."""
    script = pathlib.Path(sys.executable).parent / "usage-service"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "server.cli"]


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("USAGE_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def migrate(database_url: str) -> None:
    result = _cli(["migrate", "--database-url", database_url])
    if result.returncode != 0:
        raise RuntimeError(f"usage-service migrate failed:\n{result.stdout}\n{result.stderr}")
    print(f"  {result.stdout.strip()}", flush=True)


def rebuild_rollups_if_supported(database_url: str) -> float | None:
    """`usage-service rollups rebuild`: recompute the rollup tables from the raw events (the load
    bypasses ingestion, which is what keeps them current).

    When this version of the service has no such subcommand, a warning is printed and the rollups
    are rebuilt through `server.storage.rollups.rebuild` if that exists (else left as they are:
    then AggregateUsage may answer from empty rollups, which the scenario checks report as DIFF).
    Returns the duration, or None when nothing was rebuilt.
    """
    t0 = time.perf_counter()
    result = _cli(["rollups", "rebuild", "--database-url", database_url])
    if result.returncode == 2 and "invalid choice" in result.stderr:
        print("  WARNING: this usage-service has no `rollups rebuild` subcommand", flush=True)
        return _rebuild_rollups_in_process(database_url)
    if result.returncode != 0:
        raise RuntimeError(f"usage-service rollups rebuild failed:\n{result.stdout}\n{result.stderr}")
    elapsed = time.perf_counter() - t0
    out = result.stdout.strip().replace("\n", "\n    ")
    print(f"  rollups rebuilt in {elapsed:.1f} s{': ' + out if out else ''}", flush=True)
    return elapsed


def rollups_consistent(conninfo: str) -> bool | None:
    """Whether every rollup counts exactly the events there are (each event is in one row of the
    metric rollup and, for each rolled-up key, in one row of the dimension rollup, "" included).
    None when this schema has no rollup tables. A cheap guard: a rerun over kept data rebuilds only
    when a previous run was interrupted between the load and the rebuild."""
    import psycopg

    with psycopg.connect(conninfo, autocommit=True) as conn:
        try:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM events), "
                "(SELECT coalesce(sum(event_count), 0) FROM rollup_metric_hourly), "
                "(SELECT count(*) FROM rollup_dimensions), "
                "(SELECT coalesce(sum(event_count), 0) FROM rollup_dimension_hourly)"
            ).fetchone()
        except psycopg.errors.UndefinedTable:
            return None
    assert row is not None
    events, metric_sum, dims, dim_sum = (int(x) for x in row)
    return metric_sum == events and dim_sum == dims * events


def _rebuild_rollups_in_process(database_url: str) -> float | None:
    try:
        from server.storage import rollups
        from server.storage.engine import make_engine
    except ImportError:
        print("  WARNING: no server.storage.rollups either: rollups not rebuilt", flush=True)
        return None
    t0 = time.perf_counter()
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            rollups.rebuild(conn)
    finally:
        engine.dispose()
    elapsed = time.perf_counter() - t0
    print(f"  rollups rebuilt through server.storage.rollups.rebuild in {elapsed:.1f} s", flush=True)
    return elapsed


def ensure_rollup_dimensions(database_url: str, keys: list[str]) -> list[str]:
    """Roll up these property keys (e.g. `region`, for dim:region) with `usage-service rollups
    add-dimension KEY` (a no-op when already rolled up); returns `rollups list`. An older service
    without the subcommand: through `server.storage.rollups` if it has it, else a warning and []."""
    for key in keys:
        result = _cli(["rollups", "add-dimension", key, "--database-url", database_url])
        if result.returncode == 2 and "invalid choice" in result.stderr:
            return _add_dimensions_in_process(database_url, keys)
        if result.returncode != 0:
            raise RuntimeError(f"usage-service rollups add-dimension {key} failed:\n{result.stderr}")
    listed = _cli(["rollups", "list", "--database-url", database_url])
    return listed.stdout.split() if listed.returncode == 0 else list(keys)


def _cli(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*command(), *args], capture_output=True, text=True, env=clean_env())


def _add_dimensions_in_process(database_url: str, keys: list[str]) -> list[str]:
    try:
        from server.storage import rollups
        from server.storage.engine import make_engine
    except ImportError:
        print("  WARNING: this usage-service has no dimension rollups", flush=True)
        return []
    print("  WARNING: no `rollups add-dimension` subcommand: using server.storage.rollups", flush=True)
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            for key in keys:
                rollups.add_dimension(conn, key, time.time_ns() // 1000)
            return list(rollups.dimensions(conn))
    finally:
        engine.dispose()


@dataclasses.dataclass
class Auth:
    """The JWT secret the server is started with, and tokens for any organization."""

    secret: str = dataclasses.field(default_factory=lambda: secrets.token_urlsafe(48))

    def token(self, org: str) -> str:
        return mint_token(Settings(jwt_secret=self.secret), org, dt.timedelta(days=1))

    def metadata(self, org: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token(org)}"),)


class ServerProcess:
    """`usage-service serve --port 0 ...` (or any command printing a "listening on HOST:PORT" line)."""

    def __init__(self, args: list[str], log_path: pathlib.Path, pattern: re.Pattern[str] = LISTENING) -> None:
        self.log_path = log_path
        self._log = log_path.open("w")
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=self._log, text=True, env=clean_env(), start_new_session=True
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.host, self.port = self._wait_for(pattern)

    @classmethod
    def serve(
        cls, database_url: str, auth: Auth, workdir: pathlib.Path, workers: int | None, extra: list[str]
    ) -> ServerProcess:
        args = [
            *command(),
            "serve",
            "--database-url",
            database_url,
            "--data-dir",
            str(workdir / "service-data"),
            "--port",
            "0",
            # One argument: a random secret may begin with "-", which argparse would take for a flag.
            f"--jwt-secret={auth.secret}",
            "--log-format",
            "json",
        ]
        if workers is not None:
            args += ["--workers", str(workers)]
        suffix = f"-w{workers}" if workers is not None else ""
        return cls([*args, *extra], workdir / f"serve{suffix}.log")

    @property
    def target(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"{host}:{self.port}"

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def _wait_for(self, pattern: re.Pattern[str]) -> tuple[str, int]:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                line = self._queue.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                raise RuntimeError(
                    f"no 'listening' line within {START_TIMEOUT_S:.0f} s: {self.lines}"
                ) from None
            if line is None:
                code = self.proc.wait()
                self._log.close()
                raise ServerExited(code, self.lines, self.log_path.read_text(errors="replace")[-3000:])
            self.lines.append(line)
            if m := pattern.match(line):
                return m.group(1), int(m.group(2))

    def rss_kib(self) -> int:
        """Resident memory of the server and its child processes (workers), KiB."""
        return process_tree_rss_kib(self.proc.pid)

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the server and its child processes (workers) have used."""
        return process_tree_cpu_s(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


class ServerExited(RuntimeError):
    def __init__(self, code: int, stdout: list[str], stderr_tail: str) -> None:
        super().__init__(f"server exited with {code} before listening: {stdout}\n{stderr_tail}")
        self.code = code
        self.stderr_tail = stderr_tail


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    task_dir = pathlib.Path(f"/proc/{pid}/task")
    try:
        for task in task_dir.iterdir():
            text = (task / "children").read_text().split()
            kids.extend(int(k) for k in text)
    except OSError:
        pass
    return kids


def _rss_kib(pid: int) -> int:
    try:
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _process_tree(pid: int) -> Iterator[int]:
    """`pid` and its living descendants."""
    todo = [pid]
    while todo:
        p = todo.pop()
        yield p
        todo.extend(_children(p))


def process_tree_rss_kib(pid: int) -> int:
    """VmRSS of `pid` plus that of all its descendants."""
    return sum(_rss_kib(p) for p in _process_tree(pid))


_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def _cpu_ticks(pid: int) -> int:
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    # After the command's closing parenthesis (the command may hold spaces): state is field 3,
    # utime and stime fields 14 and 15 of proc(5); cutime and cstime (16, 17) hold the time of its
    # children that ended and were waited for, which are no longer in the tree.
    fields = stat[stat.rindex(")") + 2 :].split()
    return sum(int(f) for f in fields[11:15])


def process_tree_cpu_s(pid: int) -> float:
    """CPU seconds used so far by `pid` and its descendants, living or ended (PostgreSQL's backends
    are children of its postmaster; `serve --workers N`'s processes children of the first). An
    ended process counts once its parent has waited for it, as PostgreSQL's postmaster does at
    once: without it, a backend or autovacuum worker that ends inside a window would take its
    time away from the window's reading."""
    return sum(_cpu_ticks(p) for p in _process_tree(pid)) / _TICKS_PER_S
