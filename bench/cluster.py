"""The benchmark's PostgreSQL cluster: tests/pg_server.py's `PgServer` (imported, not copied), in a
directory that may outlive the run, with settings tuned for the benchmark.

    cluster = BenchCluster.open(pathlib.Path("/tmp/bench-data"), keep=True)  # reuses the data if present
    url = cluster.database_url()                                            # the `usage` database
    cluster.stop()                                                          # kept: fast stop, dir stays

PgServer starts the server with `fsync=off full_page_writes=off synchronous_commit=off
max_connections=200` on its command line (a throwaway cluster: nothing here needs durability); the
settings below go to `bench.conf`, included from postgresql.conf.
"""

from __future__ import annotations

import os
import pathlib
import pwd
import tempfile

import psycopg

from tests.pg_server import PgServer, PgServerError, _free_port, _os_user_for_root, find_bin_dir

DATABASE = "usage"


def tuned_settings() -> dict[str, str]:
    """postgresql.conf settings for a machine of this size (see bench/README.md for the reasons)."""
    mem_mib = _mem_total_mib()
    return {
        # A quarter of RAM, at most 4 GiB: the 10M-event data set (~6 GiB with indexes) is then
        # mostly in shared buffers and the rest in the OS page cache.
        "shared_buffers": f"{min(4096, mem_mib // 4)}MB",
        "effective_cache_size": f"{mem_mib // 2}MB",
        # Hash aggregates over (group, bucket) and sorts of a few 100k rows stay in memory.
        "work_mem": "64MB",
        "maintenance_work_mem": "1GB",
        "max_worker_processes": "8",
        "max_parallel_workers": "4",
        "max_parallel_workers_per_gather": "2",
        "max_parallel_maintenance_workers": "2",
        # Data in RAM: random reads cost about what sequential ones do.
        "random_page_cost": "1.1",
        "effective_io_concurrency": "200",
        # JIT compiles each large aggregate anew (100-500 ms) and rarely pays off for sub-second
        # queries; most OLTP deployments turn it off.
        "jit": "off",
        # Bulk load: COPY into the tables truncated in the same transaction, and the index builds,
        # write no WAL with wal_level=minimal (no replica here); no checkpoint storms.
        "wal_level": "minimal",
        "max_wal_senders": "0",
        "max_wal_size": "4GB",
        "checkpoint_timeout": "30min",
        "wal_compression": "on",
        # Statistics: the planner sees the skew of customer_id and metric_key.
        "default_statistics_target": "200",
        "track_io_timing": "on",
    }


def _mem_total_mib() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 4096


class BenchCluster(PgServer):
    """A PgServer whose directory can be kept (`keep`) and reopened with its data."""

    def __init__(self, base_dir: pathlib.Path, keep: bool) -> None:
        bin_dir = find_bin_dir()
        if bin_dir is None:
            raise PgServerError(
                "PostgreSQL binaries not found: set USAGE_PG_BIN or install PostgreSQL "
                "(see tests/pg_server.py)"
            )
        os_user = _os_user_for_root() if os.geteuid() == 0 else None
        super().__init__(bin_dir, base_dir, os_user)
        self.keep = keep

    @classmethod
    def open(cls, base_dir: pathlib.Path | None = None, keep: bool = False) -> BenchCluster:
        """Start the cluster in `base_dir` (initialized there first if empty), or in a new temp dir."""
        if base_dir is None:
            base_dir = pathlib.Path(tempfile.mkdtemp(prefix="usage-bench-"))
        base_dir.mkdir(parents=True, exist_ok=True)
        cluster = cls(base_dir.resolve(), keep)
        if cluster.os_user is not None:
            pw = pwd.getpwnam(cluster.os_user)
            os.chown(cluster.base_dir, pw.pw_uid, pw.pw_gid)
        fresh = not (cluster.data_dir / "PG_VERSION").exists()
        if fresh:
            cluster._initdb()
        cluster._write_settings()
        last_error = ""
        for _ in range(3):  # a free port can be taken between probing and binding
            cluster.port = _free_port()
            ok, last_error = cluster._pg_ctl_start()
            if ok:
                cluster._running = True
                cluster._wait_ready()
                break
        else:
            raise PgServerError(f"pg_ctl start failed 3 times; last output:\n{last_error}")
        if fresh or not cluster._has_database():
            cluster.create_database(DATABASE)
        return cluster

    def _write_settings(self) -> None:
        conf = self.data_dir / "postgresql.conf"
        include = "include_if_exists = 'bench.conf'"
        text = conf.read_text()
        if include not in text:
            conf.write_text(text + f"\n{include}\n")
        lines = [f"{k} = '{v}'" for k, v in tuned_settings().items()]
        bench_conf = self.data_dir / "bench.conf"
        bench_conf.write_text("# written by bench/cluster.py\n" + "\n".join(lines) + "\n")
        if self.os_user is not None:
            pw = pwd.getpwnam(self.os_user)
            os.chown(bench_conf, pw.pw_uid, pw.pw_gid)

    def _has_database(self) -> bool:
        with self.admin_connection() as conn:
            return (
                conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
                is not None
            )

    def postmaster_pid(self) -> int:
        """The running server's pid: the first line of its postmaster.pid."""
        return int((self.data_dir / "postmaster.pid").read_text().split()[0])

    def database_url(self) -> str:
        return self.url(DATABASE)

    def conninfo_db(self) -> str:
        return self.conninfo(DATABASE)

    def settings_in_force(self) -> dict[str, str]:
        names = [*tuned_settings(), "fsync", "synchronous_commit", "full_page_writes", "max_connections"]
        with psycopg.connect(self.conninfo(DATABASE), autocommit=True) as conn:
            rows = conn.execute(
                "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s) ORDER BY name",
                (names,),
            ).fetchall()
        return dict(rows)

    def stop(self) -> None:
        """A kept cluster stops with a checkpoint and keeps its directory; a throwaway one goes."""
        if not self.keep:
            super().stop()
            return
        if self._running:
            self._running = False
            self._run([self.bin_dir / "pg_ctl", "-D", self.data_dir, "stop", "-m", "fast", "-w"], timeout=300)
