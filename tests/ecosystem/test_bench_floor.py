"""The bench's floor server (bench/floor_server.py), on both server models, against a real PostgreSQL
database: it answers ListUsageEvents with the response it was given, byte for byte, after running the
service's own statement for the page on the database."""

from __future__ import annotations

import pathlib
import re
import sys

import psycopg
import pytest
from google.protobuf import timestamp_pb2
from usage.v1 import usage_service_pb2 as pb

from bench import clients, service
from bench.bare_server import write_responses
from bench.cli import BARE_LISTENING
from bench.floor_server import page_statement

SCENARIO = "ListUsageEvents no filter"


def _without_placeholders(sql: str) -> str:
    return re.sub(r"%\(\w+\)s|\$\d+", "?", sql)


@pytest.mark.parametrize("model", ["sync", "aio"])
def test_floor_server_runs_the_page_statement_and_answers_the_given_bytes(
    model: str, pg_url: str, tmp_path: pathlib.Path
) -> None:
    response = pb.ListUsageEventsResponse(as_of=timestamp_pb2.Timestamp(seconds=1_700_000_000))
    responses = tmp_path / "responses.bin"
    write_responses(responses, {SCENARIO: ("ListUsageEvents", response.SerializeToString())})
    command = [sys.executable, "-m", "bench.floor_server", "--responses", str(responses)]
    command += ["--database-url", pg_url, "--max-workers", "2"] + (["--aio"] if model == "aio" else [])
    server = service.ServerProcess(command, tmp_path / "floor.log", BARE_LISTENING)
    try:
        target = clients.GrpcTarget(server.target, ())
        answer = target.call_once("ListUsageEvents", pb.ListUsageEventsRequest(), scenario=SCENARIO)
        assert answer.SerializeToString() == response.SerializeToString()
        # The statement ran on the database: a connection of the server last ran the page's SQL.
        sql, _ = page_statement(pg_url)
        with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://", 1)) as conn:
            last = conn.execute(
                "SELECT query FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchall()
        # Placeholders as psycopg sends them ($1) and as the statement names them (%(org)s).
        assert _without_placeholders(sql) in [_without_placeholders(q) for (q,) in last]
    finally:
        server.stop()
