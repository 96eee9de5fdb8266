"""Health follows the database: `HealthMonitor` pings the storage on a daemon thread and sets the
grpc.health.v1 status of the whole server ("") and of every service to NOT_SERVING while the ping
fails, back to SERVING once it succeeds.

`usage-service serve` starts one per server process (serving.py, and each worker of workers.py), after
the gRPC server starts, and stops it after the drain, before the storage is disposed. It is not part
of `create_server`: a server built by a test must not keep pinging a database the test drops.

- Each check is `SqlStorage.ping()` (SELECT 1 with a 2 s statement timeout, through the pool: a
  dead pooled connection is replaced by the pool's pre-ping, so the check also revives the pool).
- A check that only timed out waiting for a free pooled connection changes nothing: the pool is
  busy with RPCs, which says the database answers; flipping to NOT_SERVING under load would take the
  replica out of rotation for being busy.
- Transitions are logged once each (WARNING when the database is lost, INFO when it is back), not on
  every tick: the storage's own "database unavailable" warning is dropped for the checks (a filter
  on its logger for records of the monitor's thread), RPCs still log theirs.
- After `enter_graceful_shutdown()` (SIGTERM) the health servicer ignores further updates, so a
  check that completes during the drain cannot turn the server back to SERVING.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Protocol

import sqlalchemy as sa
from grpc_health.v1 import health, health_pb2

from server.errors import Unavailable

log = logging.getLogger("usage-service.health")

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
THREAD_NAME = "health-monitor"
STORAGE_LOGGER = "server.storage.engine"  # translate_errors logs each failure there


def _not_from_the_monitor(record: logging.LogRecord) -> bool:
    # Filters run on the logging thread; records carry no thread name (configure_logging).
    return threading.current_thread().name != THREAD_NAME


class Pingable(Protocol):
    def ping(self) -> None: ...


class HealthMonitor:
    """Pings `storage` every `interval_s` seconds on a daemon thread and mirrors the result in `health`.

    `services`: the names whose status follows the database, besides "" (the whole server).
    The first check runs at `start()`. `interval_s` <= 0: never checks (start and stop do nothing).
    """

    def __init__(
        self,
        storage: Pingable,
        health_servicer: health.HealthServicer,
        services: Iterable[str],
        interval_s: float,
    ) -> None:
        self._storage = storage
        self._health = health_servicer
        self._names = ("", *(s for s in services if s))
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._serving = True  # create_server sets SERVING; the first failed check flips it
        self.checks = 0  # completed checks (tests wait on it)

    @property
    def serving(self) -> bool:
        """The status the monitor last set (True before any failure)."""
        return self._serving

    def start(self) -> None:
        if self._interval_s <= 0 or self._thread is not None:
            return
        logging.getLogger(STORAGE_LOGGER).addFilter(_not_from_the_monitor)  # once: the same function
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop checking and wait for a check in progress to finish (call before disposing the storage)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def check_once(self) -> None:
        """One check: ping, and set the statuses on a change."""
        try:
            self._storage.ping()
        except Unavailable as exc:
            if isinstance(exc.__cause__, sa.exc.TimeoutError):
                log.debug("health check: every pooled connection is busy; status unchanged")
            else:
                self._set(False, exc)
        except Exception as exc:  # anything else that stops a SELECT 1 means the database cannot serve
            self._set(False, exc)
        else:
            self._set(True, None)
        finally:
            self.checks += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.check_once()
            except Exception:  # never let the thread die: the next tick tries again
                log.exception("health check failed unexpectedly")
            self._stop.wait(self._interval_s)

    def _set(self, serving: bool, error: BaseException | None) -> None:
        if serving == self._serving:
            return
        self._serving = serving
        status = SERVING if serving else NOT_SERVING
        for name in self._names:
            self._health.set(name, status)
        if serving:
            log.info("the database answers again: health SERVING")
        else:
            cause = error.__cause__ if error is not None and error.__cause__ is not None else error
            log.warning("the database does not answer: health NOT_SERVING (%s)", _describe(cause))


def _describe(error: BaseException | None) -> str:
    """One line for the log: the exception type and its first line (driver text stays in the log)."""
    if error is None:
        return "unknown"
    orig = getattr(error, "orig", None) or error
    first = str(orig).strip().splitlines()[0] if str(orig).strip() else ""
    return f"{type(orig).__name__}: {first}" if first else type(orig).__name__
