"""What `usage-service serve` and `usage-service gateway` run once their settings are known: the gRPC
server (one process, or N worker processes and their supervisor: server/workers.py), /metrics, the
HTTP gateway beside it, the demo banner, and the graceful stop on SIGTERM or SIGINT.

A port that cannot be listened on is a `StartupError` naming the flag that sets it (cli.py prints it
and exits 2); `check_ports` looks before anything starts, so that nothing has to be stopped again.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

from server.auth import mint_token
from server.config import Settings
from server.startup_errors import StartupError, cannot_listen, check_port

if TYPE_CHECKING:
    from server.demo import DemoExamples
    from server.storage.sql_storage import SqlStorage


def serve(settings: Settings, storage: SqlStorage, demo: bool) -> int:
    """Serve on the opened (and migrated) storage until stopped; the exit code."""
    if settings.workers > 1:
        return _serve_workers(settings, storage, demo)
    return _serve_one(settings, storage, demo)


def check_ports(settings: Settings) -> None:
    """Refuse a fixed port something already listens on, before anything starts."""
    check_port(settings.host, settings.port, "port", "port")
    if settings.metrics_port > 0:
        check_port(settings.host, settings.metrics_port, "metrics-port", "metrics_port", "metrics")
    if settings.http_port > 0:
        check_port(settings.host, settings.http_port, "http-port", "http_port", "HTTP gateway")


def _stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT. Installed before anything listens: a signal sent as soon as
    the "listening" line is read must stop the server gracefully, not kill it (exit -15)."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return stop


def wait_for(stop: threading.Event) -> None:
    """Wait in the main thread until `stop` is set, by a signal handler too. Python runs a handler
    only when the main thread runs: a process-directed signal that the kernel hands to one of
    grpc's threads does not wake a main thread asleep in an untimed wait (seen once: a SIGTERM left
    the server serving), so it wakes up every half second to let pending handlers run."""
    while not stop.wait(0.5):
        pass


def _serve_one(settings: Settings, storage: SqlStorage, demo: bool) -> int:
    """One server process: gRPC, /metrics and the gateway when asked, until SIGTERM or SIGINT."""
    from server.app import SERVICE_NAMES, create_server
    from server.health_monitor import HealthMonitor

    stop = _stop_on_signals()
    try:
        running = create_server(settings, storage)
    except (RuntimeError, OSError) as exc:  # taken since check_ports looked
        storage.close()
        raise cannot_listen(settings.host, settings.port, "port", "port", exc) from None
    examples = _load_demo(settings, storage, running.port) if demo else None
    running.server.start()
    monitor = HealthMonitor(storage, running.health, SERVICE_NAMES, settings.health_check_interval_s)
    monitor.start()
    logging.getLogger("usage-service").info(
        "serving on %s:%d (%s)",
        settings.host,
        running.port,
        "embedded SQLite" if settings.is_embedded else "PostgreSQL",
    )
    print(f"usage-service listening on {settings.host}:{running.port}", flush=True)
    metrics = gateway = None
    try:
        if settings.metrics_port >= 0:
            try:
                metrics = running.observability.serve_metrics(settings.host, settings.metrics_port)
            except OSError as exc:
                raise cannot_listen(
                    settings.host, settings.metrics_port, "metrics-port", "metrics_port", exc, "metrics"
                ) from None
            print(f"usage-service metrics on http://{settings.host}:{metrics.port}/metrics", flush=True)
        if settings.http_port >= 0:
            target = local_target(settings.host, running.port)
            gateway = _start_gateway(settings, target, settings.http_port)
            _print_curl(settings, gateway, examples)
    except StartupError:  # a port taken since check_ports looked: stop what runs, then say so
        running.server.stop(0).wait()
        monitor.stop()
        if metrics is not None:
            metrics.stop()
        storage.close()
        raise
    wait_for(stop)
    # First of all, so that load balancers stop routing here: every service reports NOT_SERVING from
    # now on (the health monitor's later updates are ignored).
    running.health.enter_graceful_shutdown()
    if gateway is not None:  # HTTP first: its in-flight requests still need the gRPC server
        gateway.stop()
    # Graceful: refuse new RPCs, let in-flight ones finish within the grace period.
    running.server.stop(settings.grace_period_s).wait()
    monitor.stop()  # before the storage is disposed: a check in progress finishes first
    if metrics is not None:
        metrics.stop()
    storage.close()
    print("usage-service stopped", flush=True)
    return 0


def _serve_workers(settings: Settings, storage: SqlStorage, demo: bool) -> int:
    """`serve --workers N`, N > 1: this process supervises N server processes on one port.

    Migrations (done by the caller) and the demo data run here, once, before any worker starts; the
    listening line is printed once every worker listens; the HTTP gateway runs here, calling the
    shared port. See server/workers.py.
    """
    from server.workers import Supervisor, reserve_port

    try:
        reserved = reserve_port(settings.host, settings.port)
    except OSError as exc:
        storage.close()
        raise cannot_listen(settings.host, settings.port, "port", "port", exc) from None
    with reserved:  # held (bound, not listening) until every worker has exited
        port = int(reserved.getsockname()[1])
        examples = _load_demo(settings, storage, port) if demo else None
        storage.close()  # each worker opens its own engine and pool
        supervisor = Supervisor(settings, port)
        supervisor.handle_signals()
        gateway = None
        try:
            ready = supervisor.start()
            if ready is not None:
                logging.getLogger("usage-service").info(
                    "serving on %s:%d (%d worker processes, pids %s, %s)",
                    settings.host,
                    port,
                    len(ready),
                    " ".join(str(r.pid) for r in ready),
                    "embedded SQLite" if settings.is_embedded else "PostgreSQL",
                )
                print(f"usage-service listening on {settings.host}:{port}", flush=True)
                for r in ready:  # one /metrics per worker, in worker order
                    if r.metrics_port >= 0:
                        print(
                            f"usage-service metrics on http://{settings.host}:{r.metrics_port}/metrics",
                            flush=True,
                        )
                if settings.http_port >= 0:
                    gateway = _start_gateway(settings, local_target(settings.host, port), settings.http_port)
                    _print_curl(settings, gateway, examples)
                supervisor.wait()
        finally:
            if gateway is not None:  # HTTP first: its in-flight requests still need the workers
                gateway.stop()
            code = supervisor.stop()
    if supervisor.failure:
        print(f"usage-service: {supervisor.failure}; stopped the other workers", file=sys.stderr)
    elif code == 0:
        print("usage-service stopped", flush=True)
    return code


def local_target(host: str, port: int) -> str:
    """The address a local client dials for a server listening on host:port."""
    if host in ("", "0.0.0.0"):
        return f"127.0.0.1:{port}"
    if host == "::":
        return f"[::1]:{port}"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def gateway_connections(workers: int) -> int:
    """gRPC connections the gateway opens and uses in turn.

    The kernel hands each new connection to one server process of `serve --workers N` at random, so
    calls spread per connection: with 16 per process, all of them landing on one of two processes has
    probability 2**-31. Capped well below the default limit of 1024 open files.
    """
    return min(16 * workers, 256)


def _start_gateway(settings: Settings, grpc_target: str, port: int, flag: str = "http-port") -> Any:
    """The HTTP gateway on `port`; `flag`: the option that sets it (`gateway` calls it `--port`)."""
    from server.gateway.runner import GatewayServer

    try:
        gateway = GatewayServer.start(
            grpc_target,
            host=settings.host,
            port=port,
            default_timeout_s=settings.gateway_timeout_s,
            grace_period_s=settings.grace_period_s,
            connections=gateway_connections(settings.workers),
        )
    except OSError as exc:
        raise cannot_listen(settings.host, port, flag, "http_port", exc, "HTTP gateway") from None
    print(f"usage-service gateway listening on {gateway.url} (gRPC {grpc_target})", flush=True)
    return gateway


def run_gateway(settings: Settings) -> int:
    """`usage-service gateway`: the HTTP gateway alone, in front of `grpc_target`, until SIGTERM."""
    target = settings.grpc_target or local_target(settings.host, settings.port)
    port = settings.http_port if settings.http_port >= 0 else 8080
    check_port(settings.host, port, "port", "http_port", "HTTP gateway")  # its --port: the HTTP one
    stop = _stop_on_signals()
    gateway = _start_gateway(settings, target, port, flag="port")
    wait_for(stop)
    gateway.stop()
    print("usage-service gateway stopped", flush=True)
    return 0


def _load_demo(settings: Settings, storage: SqlStorage, port: int) -> DemoExamples:
    """Load the demo data and print its banner (token, grpcurl examples); the curl ones come later."""
    import datetime as dt

    from server.demo import DemoExamples, load_demo

    summary = load_demo(storage)
    token = mint_token(settings, summary["organization"], dt.timedelta(days=30))
    examples = DemoExamples.now(summary, token)
    print(examples.banner(local_target(settings.host, port)), flush=True)
    return examples


def _print_curl(settings: Settings, gateway: Any, examples: DemoExamples | None) -> None:
    """With --demo, curl examples for the gateway, once it listens (its port may be a free one)."""
    if examples is not None:
        base_url = "http://" + local_target(settings.host, gateway.port)
        print(examples.curl(base_url), flush=True)
