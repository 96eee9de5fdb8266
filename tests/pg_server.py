"""A throwaway PostgreSQL server for the test session, started from the installed binaries.

    server = PgServer.start()          # initdb + pg_ctl start on a free port, in a temp directory
    url = server.create_database()     # postgresql+psycopg://postgres@127.0.0.1:PORT/DBNAME
    server.pause(); server.resume()    # stop it and start it again on the same data and port
    server.stop()                      # pg_ctl stop -m immediate, then the directory is removed

The binaries are found in $USAGE_PG_BIN, else `pg_config --bindir`, else the newest
/usr/lib/postgresql/*/bin. initdb refuses to run as root, so as root the server runs as the
`postgres` system user (or a `usagetest` user created with useradd) through `runuser`/`su`.
Nothing here knows about the service's schema: the caller prepares template databases itself.
"""

from __future__ import annotations

import atexit
import itertools
import os
import pathlib
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence

import psycopg

SUPERUSER = "postgres"
FALLBACK_OS_USER = "usagetest"


class PgServerError(RuntimeError):
    """The server could not be found, initialized or started; the message says why."""


def find_bin_dir() -> pathlib.Path | None:
    """The directory holding initdb and pg_ctl, or None when PostgreSQL is not installed.

    Raises PgServerError when USAGE_PG_BIN is set but does not hold them."""
    env = os.environ.get("USAGE_PG_BIN")
    if env:  # explicit: use exactly this directory, never silently another installation
        directory = pathlib.Path(env)
        if not ((directory / "initdb").is_file() and (directory / "pg_ctl").is_file()):
            raise PgServerError(f"USAGE_PG_BIN={env!r} does not contain initdb and pg_ctl")
        return directory
    candidates: list[pathlib.Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            )
            candidates.append(pathlib.Path(out.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass

    def version(p: pathlib.Path) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", p.parent.name)) or (0,)

    candidates.extend(sorted(pathlib.Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True))
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "pg_ctl").is_file():
            return directory
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _os_user_for_root() -> str:
    """An unprivileged system user to own and run the cluster when we are root."""
    for name in (SUPERUSER, FALLBACK_OS_USER):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    result = subprocess.run(
        [useradd, "--system", "--no-create-home", "--shell", "/bin/sh", FALLBACK_OS_USER],
        capture_output=True,
        text=True,
    )
    if result.returncode not in (0, 9):  # 9: the user exists already (created concurrently)
        raise PgServerError(
            f"cannot create the {FALLBACK_OS_USER!r} user to run PostgreSQL: {result.stderr.strip()}"
        )
    return FALLBACK_OS_USER


class PgServer:
    """One running PostgreSQL cluster in a temporary directory, reachable on 127.0.0.1:port."""

    _counter = itertools.count(1)

    def __init__(self, bin_dir: pathlib.Path, base_dir: pathlib.Path, os_user: str | None) -> None:
        self.bin_dir = bin_dir
        self.base_dir = base_dir
        self.data_dir = base_dir / "data"
        self.log_file = base_dir / "server.log"
        self.os_user = os_user  # None: run the binaries as ourselves
        self.port = 0
        self.host = "127.0.0.1"
        self._running = False

    # ---- lifecycle ---------------------------------------------------------------------------
    @classmethod
    def start(cls, bin_dir: pathlib.Path | None = None, attempts: int = 3) -> PgServer:
        """Initialize a fresh cluster and start it; raises PgServerError with the reason on failure."""
        bin_dir = bin_dir or find_bin_dir()
        if bin_dir is None:
            raise PgServerError(
                "PostgreSQL binaries not found: set USAGE_PG_BIN to the directory holding initdb and pg_ctl, "
                "put pg_config on PATH, or install the `postgresql` package (apt-get install postgresql)"
            )
        os_user = _os_user_for_root() if os.geteuid() == 0 else None
        base_dir = pathlib.Path(tempfile.mkdtemp(prefix="usage-pg-"))
        server = cls(bin_dir, base_dir, os_user)
        atexit.register(server.stop)
        try:
            if os_user is not None:
                pw = pwd.getpwnam(os_user)
                os.chown(base_dir, pw.pw_uid, pw.pw_gid)
            server._initdb()
            last_error = ""
            for _ in range(attempts):  # a free port can be taken between probing and binding
                server.port = _free_port()
                ok, last_error = server._pg_ctl_start()
                if ok:
                    server._running = True
                    server._wait_ready()
                    return server
            raise PgServerError(f"pg_ctl start failed {attempts} times; last output:\n{last_error}")
        except BaseException:
            server.stop()
            raise

    def _run(
        self, args: Sequence[str | os.PathLike[str]], timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        cmd = [str(a) for a in args]
        if self.os_user is not None:
            runuser = shutil.which("runuser") or (
                "/usr/sbin/runuser" if os.path.exists("/usr/sbin/runuser") else None
            )
            if runuser:
                cmd = [runuser, "-u", self.os_user, "--", *cmd]
            else:
                cmd = ["su", "-s", "/bin/sh", self.os_user, "-c", shlex.join(cmd)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C", TZ="UTC")
        return subprocess.run(
            cmd,
            cwd=self.base_dir,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def _initdb(self) -> None:
        result = self._run(
            [
                self.bin_dir / "initdb",
                "-D",
                self.data_dir,
                "-U",
                SUPERUSER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ]
        )
        if result.returncode != 0:
            raise PgServerError(
                f"initdb failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
            )

    def _pg_ctl_start(self) -> tuple[bool, str]:
        options = (
            f"-p {self.port} -k {self.base_dir} -c listen_addresses={self.host} -c fsync=off "
            "-c full_page_writes=off -c synchronous_commit=off -c max_connections=200"
        )
        result = self._run(
            [
                self.bin_dir / "pg_ctl",
                "-D",
                self.data_dir,
                "-l",
                self.log_file,
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ]
        )
        if result.returncode == 0:
            return True, ""
        log = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        return False, f"{result.stdout}\n{result.stderr}\n{log[-4000:]}"

    def _wait_ready(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with self.admin_connection() as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise PgServerError(
                        f"PostgreSQL did not accept connections on port {self.port}: {exc}"
                    ) from exc
                time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server at once (no checkpoint) and remove its directory. Safe to call twice."""
        if self._running:
            self._running = False
            self._run(
                [self.bin_dir / "pg_ctl", "-D", self.data_dir, "stop", "-m", "immediate", "-w"], timeout=60
            )
        if self.base_dir.exists():
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def pause(self, mode: str = "fast") -> None:
        """Stop the server but keep its data directory and port, so `resume()` starts it again.

        `mode` is pg_ctl's shutdown mode: "fast" (backends are told to terminate: clients see
        "terminating connection due to administrator command") or "immediate" (a crash: connections
        just close, and the next start runs crash recovery; as the server runs with
        synchronous_commit=off, the last commits are lost unless a CHECKPOINT ran after them)."""
        if mode not in ("smart", "fast", "immediate"):
            raise ValueError(f"not a pg_ctl shutdown mode: {mode!r}")
        if not self._running:
            raise PgServerError("the server is not running")
        result = self._run(
            [self.bin_dir / "pg_ctl", "-D", self.data_dir, "stop", "-m", mode, "-w", "-t", "60"], timeout=90
        )
        if result.returncode != 0:
            raise PgServerError(
                f"pg_ctl stop failed (exit {result.returncode}):\n{result.stdout}{result.stderr}"
            )
        self._running = False

    def resume(self) -> None:
        """Start a server stopped by `pause()` again, on the same data directory and port."""
        if self._running:
            raise PgServerError("the server is running already")
        ok, error = self._pg_ctl_start()
        if not ok:  # e.g. another program took the port meanwhile
            raise PgServerError(f"pg_ctl start on port {self.port} failed:\n{error}")
        self._running = True
        self._wait_ready()

    @property
    def running(self) -> bool:
        return self._running

    # ---- databases ---------------------------------------------------------------------------
    def conninfo(self, dbname: str = "postgres") -> str:
        return f"host={self.host} port={self.port} user={SUPERUSER} dbname={dbname} connect_timeout=10"

    def admin_connection(self, dbname: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(self.conninfo(dbname), autocommit=True)

    def url(self, dbname: str) -> str:
        """The SQLAlchemy URL of a database on this server."""
        return f"postgresql+psycopg://{SUPERUSER}@{self.host}:{self.port}/{dbname}"

    def create_database(self, name: str | None = None, template: str | None = None) -> str:
        """Create a fresh database (a copy of `template` when given) and return its SQLAlchemy URL."""
        name = name or f"t{next(self._counter)}_{uuid.uuid4().hex[:8]}"
        _check_identifier(name)
        sql = f'CREATE DATABASE "{name}"'
        if template is not None:
            _check_identifier(template)
            sql += f' TEMPLATE "{template}" STRATEGY FILE_COPY'
        with self.admin_connection() as conn:
            conn.execute(sql)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting whoever is still connected to it."""
        _check_identifier(name)
        with self.admin_connection() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def mark_template(self, name: str) -> None:
        """Make `name` a template and close connections to it, so CREATE DATABASE .. TEMPLATE works."""
        _check_identifier(name)
        with self.admin_connection() as conn:
            conn.execute(f'ALTER DATABASE "{name}" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false')
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))


def _check_identifier(name: str) -> None:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name):
        raise ValueError(f"not a plain database name: {name!r}")
