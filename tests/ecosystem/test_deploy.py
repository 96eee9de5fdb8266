"""What can be tested of the Dockerfile and deploy/ without Docker or Kubernetes: the image's
ENTRYPOINT + CMD (with the image's ENV) is started as a real process and serves gRPC, /metrics and
JSON logs; its HEALTHCHECK command says SERVING, then fails once the server is gone; the wheel the
build stage makes holds the code, stubs and migrations; the sample manifests only use real settings
and real CLI commands."""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import urllib.request
import zipfile
from typing import Any

import grpc
import pglast
import yaml
from ecosystem_support import ROOT, env_without_usage
from pglast import ast
from usage.v1 import events_pb2, usage_service_pb2_grpc
from usage.v1 import usage_service_pb2 as pb

from server.cli import build_parser
from server.config import ENV_PREFIX, Settings
from server.storage import schema

SETTING_VARS = {ENV_PREFIX + f.upper() for f in Settings.__dataclass_fields__}
TIMEOUT_S = 60.0  # bounds a hang; not a performance threshold


def dockerfile() -> dict[str, list[str]]:
    """Instructions of the Dockerfile's final stage (continuation lines joined), by keyword."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    stages: list[dict[str, list[str]]] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        keyword, _, rest = line.strip().partition(" ")
        if keyword == "FROM":
            stages.append({})
        stages[-1].setdefault(keyword, []).append(rest.strip())
    assert len(stages) >= 2, "multi-stage: a build stage and a runtime stage"
    return stages[-1]


def exec_form(value: str) -> list[str]:
    parsed = json.loads(value)
    assert isinstance(parsed, list), f"exec form expected: {value}"
    return parsed


def cli_command() -> list[str]:
    script = pathlib.Path(sys.executable).parent / "usage-service"
    assert script.is_file()
    return [str(script)]


def test_the_image_runs_as_a_non_root_user() -> None:
    final = dockerfile()
    (user,) = final["USER"]
    assert user not in ("root", "0")
    assert any("useradd" in run and user in run for run in final["RUN"])


def test_the_image_entry_command_serves_with_metrics_logs_and_health(tmp_path: pathlib.Path) -> None:
    final = dockerfile()
    entry = exec_form(final["ENTRYPOINT"][0]) + exec_form(final["CMD"][0])
    assert entry[0] == "usage-service"
    build_parser().parse_args(entry[1:])
    image_env = dict(e.split("=", 1) for e in final["ENV"])
    assert {k for k in image_env if k.startswith(ENV_PREFIX)} <= SETTING_VARS
    healthcheck = final["HEALTHCHECK"][0]
    health_cmd = exec_form(healthcheck[healthcheck.index("CMD ") + 4 :])
    assert health_cmd[:2] == ["usage-service", "health"]

    # The image's environment, with ports any free one and the data dir private to this test.
    env = env_without_usage() | image_env
    env |= {"USAGE_HOST": "127.0.0.1", "USAGE_PORT": "0", "USAGE_METRICS_PORT": "0"}
    env["USAGE_DATA_DIR"] = str(tmp_path / "data")
    stderr_path = tmp_path / "stderr.log"
    with stderr_path.open("w") as stderr:
        proc = subprocess.Popen(
            cli_command() + entry[1:], stdout=subprocess.PIPE, stderr=stderr, text=True, env=env
        )
    try:
        lines = _stdout_lines(proc)
        port = int(_wait_for(lines, r"^usage-service listening on 127\.0\.0\.1:(\d+)$", proc, stderr_path))
        metrics_port = int(
            _wait_for(
                lines, r"^usage-service metrics on http://127\.0\.0\.1:(\d+)/metrics$", proc, stderr_path
            )
        )
        env["USAGE_PORT"] = str(port)  # what the HEALTHCHECK sees inside the container
        health = subprocess.run(
            cli_command() + health_cmd[1:], env=env, capture_output=True, text=True, timeout=TIMEOUT_S
        )
        assert (health.returncode, health.stdout.strip()) == (0, "SERVING"), health.stderr

        token = subprocess.run(
            cli_command() + ["token", "--org", "org_img"],
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        ).stdout.strip()
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = usage_service_pb2_grpc.UsageServiceStub(channel)
            auth = (("authorization", f"Bearer {token}"), ("x-request-id", "img-1"))
            e = events_pb2.UsageEventInput(customer_id="cus_1", metric_key="api_call")
            e.timestamp.FromDatetime(dt.datetime.now(dt.UTC))
            stub.IngestUsageEvents(pb.IngestUsageEventsRequest(events=[e]), metadata=auth, timeout=30)
            stub.ListUsageEvents(pb.ListUsageEventsRequest(), metadata=auth, timeout=30)

        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
            metrics = response.read().decode()
        handled = 'grpc_server_handled_total{grpc_code="OK",grpc_method="%s",grpc_service="%s"} 1.0'
        assert handled % ("ListUsageEvents", "usage.v1.UsageService") in metrics
        assert handled % ("Check", "grpc.health.v1.Health") in metrics
        assert 'usage_ingested_events_total{result="accepted"} 1.0' in metrics
        assert "usage_db_pool_size 10.0" in metrics

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=TIMEOUT_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # Every stderr line is one JSON object; one per RPC carries method, code, duration, org, request id.
    records = [json.loads(line) for line in stderr_path.read_text().splitlines()]
    rpcs = [r for r in records if r["logger"] == "usage.rpc"]
    # (The HEALTHCHECK's successful probe logs at DEBUG only: it is not among them.)
    assert [(r["method"], r["code"], r["organization"], r["request_id"]) for r in rpcs] == [
        ("/usage.v1.UsageService/IngestUsageEvents", "OK", "org_img", "img-1"),
        ("/usage.v1.UsageService/ListUsageEvents", "OK", "org_img", "img-1"),
    ]
    assert all(isinstance(r["duration_ms"], float) for r in rpcs)
    # With the server gone the health check fails.
    gone = subprocess.run(
        cli_command() + health_cmd[1:], env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert gone.returncode == 1 and "unhealthy: UNAVAILABLE" in gone.stderr


def _stdout_lines(proc: subprocess.Popen[str]) -> queue.Queue[str | None]:
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _wait_for(
    lines: queue.Queue[str | None], pattern: str, proc: subprocess.Popen[str], stderr: pathlib.Path
) -> str:
    while (line := lines.get(timeout=TIMEOUT_S)) is not None:
        if m := re.match(pattern, line):
            return m.group(1)
    raise AssertionError(f"exited with {proc.wait()} before {pattern!r}: {stderr.read_text()}")


def test_the_build_stage_wheel_holds_code_stubs_and_migrations(tmp_path: pathlib.Path) -> None:
    # Built as the build stage builds it: from the files its COPY lines bring in, and nothing else.
    lines = (ROOT / "Dockerfile").read_text().split("\nFROM ")[1].splitlines()  # the build stage
    context = tmp_path / "src"
    context.mkdir()
    for line in lines:
        if line.startswith("COPY "):
            *sources, target = shlex.split(line.removeprefix("COPY "))
            for source in sources:
                destination = context / (source if target in ("./", ".") else target)
                if (ROOT / source).is_dir():
                    shutil.copytree(ROOT / source, destination, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy(ROOT / source, destination)
    (command,) = [line for line in lines if line.startswith("RUN pip wheel")]
    args = shlex.split(command.removeprefix("RUN "))
    args[args.index("--wheel-dir") + 1] = str(tmp_path / "wheels")
    result = subprocess.run(
        [sys.executable, "-m", *args], cwd=context, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = (tmp_path / "wheels").glob("usage_service-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "server/cli.py",
        "server/observability.py",
        "server/migrations/env.py",
        "server/migrations/script.py.mako",
        "server/migrations/versions/0001_initial.py",
        "usage/v1/usage_service_pb2.py",
        "usage/v1/usage_service_pb2_grpc.py",
        "buf/validate/validate_pb2.py",
        "usage/v1/descriptor_set.binpb",  # reflection's doc comments
    } <= names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), sorted(names)[-8:]
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    assert "License-Expression: Apache-2.0" in zipfile.ZipFile(wheel).read(metadata).decode()
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "usage-service = server.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def check_usage_services(services: dict[str, Any], database_host: str) -> None:
    """`migrate` and `usage-service` of a compose file: real commands and settings, that database."""
    for name in ("migrate", "usage-service"):
        service = services[name]
        build_parser().parse_args(service["command"])
        assert set(service["environment"]) <= SETTING_VARS, set(service["environment"]) - SETTING_VARS
        url = service["environment"]["USAGE_DATABASE_URL"]
        assert url.startswith("postgresql+psycopg://") and f"@{database_host}:5432/" in url, url
    assert services["migrate"]["command"] == ["migrate"]
    assert services["usage-service"]["healthcheck"]["test"] == ["CMD", "usage-service", "health"]


def test_compose_file_uses_real_settings_and_commands() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "migrate", "usage-service"}
    check_usage_services(services, "postgres")
    assert services["usage-service"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_citus_compose_file_runs_the_steps_in_order_with_real_commands() -> None:
    """deploy/citus-compose.yaml cannot be started here (no Docker, no Citus image): its services
    use real settings and commands, each step waits for the one before, and the SQL it runs exists."""
    services = yaml.safe_load((ROOT / "deploy" / "citus-compose.yaml").read_text())["services"]
    workers = {"worker1", "worker2"}
    assert set(services) == {"coordinator", *workers, "nodes", "migrate", "distribute", "usage-service"}
    check_usage_services(services, "coordinator")
    done = {"condition": "service_completed_successfully"}
    assert services["nodes"]["depends_on"] == {
        n: {"condition": "service_healthy"} for n in {"coordinator", *workers}
    }
    assert services["migrate"]["depends_on"] == {"nodes": done}
    assert services["distribute"]["depends_on"] == {"migrate": done}
    assert services["usage-service"]["depends_on"] == {"distribute": done}
    # Every worker is registered with the coordinator, by its service name.
    registered = re.findall(r"citus_add_node\('(\w+)', 5432\)", services["nodes"]["command"][-1])
    assert sorted(registered) == sorted(workers)
    # The distribution step runs deploy/citus-distribute.sql, mounted where its command reads it.
    (mount,) = services["distribute"]["volumes"]
    source, target, _ = mount.split(":")
    assert (ROOT / "deploy" / source).resolve() == ROOT / "deploy" / "citus-distribute.sql"
    assert services["distribute"]["command"][-2:] == ["-f", target]


def test_citus_distribution_names_every_table_the_way_its_scope_calls_for() -> None:
    """deploy/citus-distribute.sql (valid PostgreSQL, read by its parser): every table of the schema
    with organization_id distributed by it and colocated with events, every other one a reference
    table; each statement skips a table already distributed. A table added to the schema fails this
    until the file says what to do with it."""
    scoped = {t.name for t in schema.metadata.tables.values() if "organization_id" in t.c}
    distributed: dict[str, tuple[str, ...]] = {}
    reference: set[str] = set()
    for raw in pglast.parse_sql((ROOT / "deploy" / "citus-distribute.sql").read_text()):
        select = raw.stmt
        (target,) = select.targetList
        call = target.val
        name = call.funcname[-1].sval
        args = tuple(
            f"{a.name}={a.arg.val.sval}" if isinstance(a, ast.NamedArgExpr) else a.val.sval for a in call.args
        )
        # The guard names the same table: WHERE NOT EXISTS (... logicalrelid = 'TABLE'::regclass).
        (exists,) = select.whereClause.args  # NOT EXISTS (...)
        guarded = exists.subselect.whereClause.rexpr.arg.val.sval
        assert guarded == args[0], (name, args)
        if name == "create_distributed_table":
            distributed[args[0]] = args[1:]
        else:
            assert name == "create_reference_table", name
            reference.add(args[0])
    assert distributed == {
        t: ("organization_id",) if t == "events" else ("organization_id", "colocate_with=events")
        for t in scoped
    }
    assert reference == set(schema.metadata.tables) - scoped


def test_kubernetes_manifest_uses_real_settings_and_commands() -> None:
    docs = list(yaml.safe_load_all((ROOT / "deploy" / "k8s.yaml").read_text()))
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    containers = pod["initContainers"] + pod["containers"]
    assert [c["args"] for c in containers] == [["migrate"], ["serve"]]
    for c in containers:
        build_parser().parse_args(c["args"])
        assert {e["name"] for e in c["env"]} <= SETTING_VARS
    (server,) = pod["containers"]
    assert server["readinessProbe"]["grpc"]["port"] == 50051
    service = next(d for d in docs if d["kind"] == "Service")
    assert {p["name"] for p in service["spec"]["ports"]} == {"grpc", "metrics"}
    # The monthly partitions of events are kept ahead by a daily job running the real command.
    cron = next(d for d in docs if d["kind"] == "CronJob")
    job = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert job["securityContext"]["runAsNonRoot"] is True
    (partitions,) = job["containers"]
    assert partitions["args"] == ["partitions"]
    assert build_parser().parse_args(partitions["args"]).func.__name__ == "cmd_partitions"
    assert {e["name"] for e in partitions["env"]} == {"USAGE_DATABASE_URL"}
