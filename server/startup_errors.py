"""Start-up problems an operator fixes, as one line that names the problem and the flag or variable
that fixes it (the CLI prints it and exits 2, without a traceback), such as

    usage-service: cannot listen on 127.0.0.1:8080 for the HTTP gateway (address already in use):
    choose another port with --http-port or USAGE_HTTP_PORT

(on one line), or `cannot connect to the database postgresql+psycopg://usage:***@db:5432/usage
(...connection refused): check --database-url or USAGE_DATABASE_URL and that the database is up`.

Each function below turns one kind of failure into a `StartupError`; cli.py and serving.py call them where the
failure can happen (binding a port, preparing the data dir, connecting to the database).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

import sqlalchemy as sa

from server.config import ENV_PREFIX


class StartupError(Exception):
    """A problem of the configuration or the environment: the message says what to change."""


def _fix(flag: str, setting: str) -> str:
    return f"--{flag} or {ENV_PREFIX}{setting.upper()}"


def _reason(exc: BaseException) -> str:
    """The OS's words for an error (`address already in use`), else its first line."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def check_port(host: str, port: int, flag: str, setting: str, what: str = "") -> None:
    """Fail early, in words, when host:port cannot be listened on (in use, not an address of this
    machine, a privileged port); port 0 (any free port) always can."""
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no conflict
            probe.bind(address)
    except OSError as exc:
        raise cannot_listen(host, port, flag, setting, exc, what) from None


def cannot_listen(
    host: str, port: int, flag: str, setting: str, exc: BaseException | None, what: str = ""
) -> StartupError:
    reason = _reason(exc) if exc is not None else "address in use, or not an address of this machine"
    where = f"{host}:{port}" + (f" for the {what}" if what else "")
    fix = f"choose another port with {_fix(flag, setting)}"
    if isinstance(exc, socket.gaierror) or getattr(exc, "errno", None) == 99:  # EADDRNOTAVAIL
        fix = f"check the address given by {_fix('host', 'host')}"
    return StartupError(f"cannot listen on {where} ({reason}): {fix}")


@contextlib.contextmanager
def data_dir_usable(data_dir: str) -> Iterator[None]:
    """Errors reading or writing the data dir (its secrets, the embedded database) as one line."""
    try:
        yield
    except OSError as exc:
        reason = "not a directory" if os.path.exists(data_dir) and not os.path.isdir(data_dir) else None
        raise StartupError(
            f"cannot use the data dir {os.path.abspath(data_dir)} ({reason or _reason(exc)}): choose a "
            f"directory this user can write with {_fix('data-dir', 'data_dir')}"
        ) from None


def _shown_url(url: str) -> str:
    """The URL without its password; "" when it does not even parse (it may hold one anywhere)."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return ""


@contextlib.contextmanager
def database_reachable(url: str, embedded: bool, data_dir: str) -> Iterator[None]:
    """Connection failures (a database that does not answer, refuses the credentials, or a URL that
    does not parse) as one line naming the setting that fixes them; the password is never shown."""
    try:
        yield
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        reason = _reason(exc.orig) if exc.orig is not None else _reason(exc)
        if embedded:
            raise StartupError(
                f"cannot open the embedded database in {os.path.abspath(data_dir)} ({reason}): choose a "
                f"directory this user can write with {_fix('data-dir', 'data_dir')}"
            ) from None
        raise StartupError(
            f"cannot connect to the database {_shown_url(url) or 'of the URL'} ({reason}): check "
            f"{_fix('database-url', 'database_url')} and that the database is up"
        ) from None
    except (sa.exc.ArgumentError, ValueError) as exc:
        shown = _shown_url(url)
        raise StartupError(
            f"unusable database URL{' ' + shown if shown else ''} ({_reason(exc)}): set "
            f"{_fix('database-url', 'database_url')} to postgresql+psycopg://USER:PASSWORD@HOST:5432/DB"
        ) from None
