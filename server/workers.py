"""`usage-service serve --workers N` (N > 1): N server processes on one gRPC port, and their supervisor.

One Python process is bound by the GIL to about one core of protobuf and interceptor work; to use more
cores, N worker processes each run the ordinary server (`create_server`: own thread pool, own storage
engine and connection pool, own metrics registry) on the same port with SO_REUSEPORT, and the kernel
spreads incoming connections over them. A gRPC client keeps its connection, so calls spread per
connection, not per call.

The supervisor (the `serve` process itself):

1. `reserve_port`: binds host:port with SO_REUSEPORT without listening, and keeps that socket for its
   whole life. `--port 0` thus becomes one concrete port that every worker binds, and no other program
   can take it while workers come and go. A listening socket never gets connections routed to it.
2. `Supervisor.start`: spawns the workers and waits until each one listens (or one fails, or a stop
   signal arrives). The CLI prints "usage-service listening on HOST:PORT" once, after that.
3. `Supervisor.wait`: until SIGTERM/SIGINT, or until a worker exits on its own. A dead worker stops
   the whole server (non-zero exit): an orchestrator restarts it whole rather than it running degraded.
4. `Supervisor.stop`: SIGTERM to every worker; each drains as a single server does (NOT_SERVING, then
   in-flight RPCs get `grace_period_s`); a worker still running `STOP_MARGIN_S` after that is killed.
   Exit 0 only when every worker exited 0.

Workers are started with multiprocessing's "spawn" start method, not "fork": a forked child would
inherit the supervisor's gRPC core state (threads, and grpcio forbids forking with a live channel or
server) and the sockets of its SQLAlchemy pool (used for migrations and the demo), which two processes
must never share. Spawn starts a fresh interpreter that builds everything itself. multiprocessing rather
than subprocesses of the CLI because it hands each worker the supervisor's exact `Settings` (pickled
over a pipe: the generated secrets never appear on a command line or in an environment) and its
sys.path, and gives sentinels to watch for death in both directions: the supervisor sees a worker
exit, and a worker whose supervisor was killed (SIGKILL) drains and exits instead of living on.

Signals: workers ignore SIGINT (a terminal's Ctrl+C reaches the whole process group; the supervisor
turns it into one SIGTERM per worker), and the supervisor sends SIGTERM only to workers that have
reported ready, so their handler is in place: a worker still starting gets it as soon as it reports.

Metrics: each worker serves its own registry (`/metrics`) on port `metrics_port + index` (or each a
free port with `--metrics-port 0`); Prometheus scrapes all of them and sums (see README).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import threading
import time
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from server.config import Settings
from server.memory import release_large_blocks

# Upper bound of --workers: well above the core count of the machines this runs on; each worker holds
# its own pool of db_pool_size connections.
MAX_PROCESSES = 64
# How long after the grace period a worker may still take to exit before it is killed.
STOP_MARGIN_S = 30.0

log = logging.getLogger("usage-service")


def check_worker_count(workers: int) -> str:
    """An error message when `workers` is out of range, else ""."""
    if 1 <= workers <= MAX_PROCESSES:
        return ""
    return f"must be between 1 and {MAX_PROCESSES}, not {workers}"


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (port 0: a free one) with SO_REUSEPORT, not listening.

    For a fixed port, first make sure nothing listens there: SO_REUSEPORT would otherwise let these
    workers join another server's listeners (of the same user) instead of failing as a single server
    does.
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    if port != 0:
        with socket.socket(family, kind, proto) as probe:  # SO_REUSEADDR alone: TIME_WAIT is no conflict
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def worker_metrics_port(metrics_port: int, index: int) -> int:
    """Worker `index`'s /metrics port: -1 off, 0 any free one, else metrics_port + index."""
    return metrics_port + index if metrics_port > 0 else metrics_port


@dataclasses.dataclass(frozen=True)
class WorkerReady:
    """What a worker reports to the supervisor once it listens."""

    index: int
    pid: int
    port: int
    metrics_port: int  # -1: no /metrics


def run_worker(settings: Settings, index: int, ready: Connection) -> None:
    """A worker process: serve settings.port (SO_REUSEPORT) until SIGTERM or the supervisor's death."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # before reporting ready: see the module doc
    release_large_blocks()  # server/memory.py
    from server.observability import configure_logging

    configure_logging(settings.log_format)
    try:
        _serve(settings, index, ready, stop)
    except Exception:  # logged as a JSON line like any other, then a non-zero exit for the supervisor
        log.exception("worker %d failed", index, extra={"fields": {"worker": index}})
        sys.exit(1)


def _serve(settings: Settings, index: int, ready: Connection, stop: threading.Event) -> None:
    from server.app import SERVICE_NAMES, create_server, open_storage
    from server.health_monitor import HealthMonitor
    from server.serving import wait_for

    storage = open_storage(settings, auto_migrate=False)  # the supervisor migrated
    monitor: HealthMonitor | None = None
    try:
        running = create_server(settings, storage, reuse_port=True)
        if running.port != settings.port:
            raise OSError(f"worker bound port {running.port}, not the reserved {settings.port}")
        running.server.start()
        monitor = HealthMonitor(storage, running.health, SERVICE_NAMES, settings.health_check_interval_s)
        monitor.start()
        metrics = None
        if settings.metrics_port >= 0:
            port = worker_metrics_port(settings.metrics_port, index)
            metrics = running.observability.serve_metrics(settings.host, port)
        log.info(
            "worker %d serving on %s:%d",
            index,
            settings.host,
            running.port,
            extra={"fields": {"worker": index, "port": running.port}},
        )
        ready.send(WorkerReady(index, os.getpid(), running.port, metrics.port if metrics else -1))
        ready.close()
        _stop_when_orphaned(stop)
        wait_for(stop)
        running.health.enter_graceful_shutdown()  # NOT_SERVING first, then the drain
        running.server.stop(settings.grace_period_s).wait()
        if metrics is not None:
            metrics.stop()
        log.info("worker %d stopped", index, extra={"fields": {"worker": index}})
    finally:
        if monitor is not None:  # before the storage is disposed
            monitor.stop()
        storage.close()


def _stop_when_orphaned(stop: threading.Event) -> None:
    """Set `stop` when the supervisor dies (its end of the spawn pipe closes)."""
    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        if not stop.is_set():
            log.warning("the supervisor is gone: draining and exiting")
            stop.set()

    threading.Thread(target=watch, name="supervisor-watch", daemon=True).start()


@dataclasses.dataclass
class _Worker:
    index: int
    process: BaseProcess
    ready_conn: Connection | None  # None once read (or closed by the worker's death)
    ready: WorkerReady | None = None
    signalled: bool = False
    exited: bool = False  # its exit was seen and handled


class Supervisor:
    """Starts, watches and stops the worker processes of one `serve --workers N`."""

    def __init__(self, settings: Settings, port: int) -> None:
        """`port`: the reserved port (never 0), which every worker binds."""
        self.settings = dataclasses.replace(settings, port=port)
        self.failure = ""  # set when a worker exited on its own: why the supervisor stopped
        self._stop_signal = 0
        self._workers: list[_Worker] = []
        # Self-pipe: a signal handler writes to it, so the waits below wake up on a signal.
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)

    def handle_signals(self) -> None:
        """SIGTERM and SIGINT ask for a graceful stop (from the main thread)."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self._stop_signal = signum
        with contextlib.suppress(BlockingIOError):  # full: a wake-up is pending anyway
            os.write(self._wake_w, b"\0")

    @property
    def stopping(self) -> bool:
        return bool(self._stop_signal or self.failure)

    def start(self) -> list[WorkerReady] | None:
        """Spawn the workers and wait until all listen; None when a stop signal or a failure came first."""
        context = multiprocessing.get_context("spawn")
        # SIG_IGN survives exec: the workers start (and stay) deaf to the terminal's SIGINT.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            for index in range(self.settings.workers):
                receive, send = context.Pipe(duplex=False)
                process = context.Process(
                    target=run_worker,
                    args=(self.settings, index, send),
                    name=f"usage-service-worker-{index}",
                )
                process.start()
                send.close()  # the worker holds the only write end: its death closes the pipe
                self._workers.append(_Worker(index, process, receive))
        finally:
            signal.signal(signal.SIGINT, previous)
        while not self.stopping and any(w.ready is None for w in self._workers):
            self._wait_and_collect()
        if self.stopping:
            return None
        return [w.ready for w in self._workers if w.ready is not None]

    def wait(self) -> None:
        """Until a stop signal arrives or a worker exits (then `failure` says which)."""
        while not self.stopping:
            self._wait_and_collect()

    def stop(self) -> int:
        """SIGTERM every worker, wait for all to drain and exit; 0 when all exited 0 and none failed."""
        deadline = time.monotonic() + self.settings.grace_period_s + STOP_MARGIN_S
        while self._signal_ready_workers():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                for w in self._alive():
                    log.error("worker %d (pid %s) did not stop in time: killing it", w.index, w.process.pid)
                    w.process.kill()
                break
            self._wait_and_collect(remaining)
        clean = True
        for w in self._workers:
            w.process.join()
            if w.process.exitcode != 0:
                clean = False
                if not self.failure:
                    log.error("worker %d (pid %s) exited with %s", w.index, w.process.pid, w.process.exitcode)
        return 0 if clean and not self.failure else 1

    def _alive(self) -> list[_Worker]:
        return [w for w in self._workers if not w.exited]

    def _signal_ready_workers(self) -> bool:
        """SIGTERM each live worker that is ready and not yet told; whether any worker is still alive."""
        alive = self._alive()
        for w in alive:
            if w.ready is not None and not w.signalled:
                w.process.terminate()  # SIGTERM
                w.signalled = True
        return bool(alive)

    def _wait_and_collect(self, timeout: float | None = None) -> None:
        """Sleep until a signal, a ready report or a worker's exit; record what happened."""
        pending = [w.ready_conn for w in self._workers if w.ready_conn is not None]
        sentinels = [w.process.sentinel for w in self._alive()]
        woken = multiprocessing.connection.wait([self._wake_r, *pending, *sentinels], timeout)
        if self._wake_r in woken:
            os.read(self._wake_r, 512)
        for w in self._workers:
            if w.ready_conn is not None and w.ready_conn in woken:
                with contextlib.suppress(EOFError):  # EOF: died before it listened (see its sentinel)
                    w.ready = w.ready_conn.recv()
                w.ready_conn.close()
                w.ready_conn = None
            # Its sentinel closes as it exits, maybe a moment before it can be reaped (exitcode set).
            if not w.exited and (w.process.sentinel in woken or w.process.exitcode is not None):
                w.process.join()
                w.exited = True
                if not self._stop_signal and not self.failure:
                    self.failure = (
                        f"worker {w.index} (pid {w.process.pid}) exited with {w.process.exitcode}"
                        f"{'' if w.ready else ' before listening'}"
                    )
                    log.error("%s: stopping the other workers", self.failure)
