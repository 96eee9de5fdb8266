"""The bench's floor server (bench/floor_server.py), on both server models, against a real PostgreSQL
database: it answers each page with the response it was given, byte for byte, after running the
statements it was given for that page on the database."""

from __future__ import annotations

import json
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

LIST = "ListUsageEvents no filter"
CUSTOMER = "ListCustomerUsageEvents light skip=0"


def _without_placeholders(sql: str) -> str:
    return re.sub(r"%\(\w+\)s|\$\d+", "?", sql)


@pytest.mark.parametrize("model", ["sync", "aio"])
def test_floor_server_runs_each_pages_statements_and_answers_the_given_bytes(
    model: str, pg_url: str, tmp_path: pathlib.Path
) -> None:
    listed = pb.ListUsageEventsResponse(as_of=timestamp_pb2.Timestamp(seconds=1_700_000_000))
    page = pb.ListCustomerUsageEventsResponse(as_of=timestamp_pb2.Timestamp(seconds=1_700_000_001))
    responses = tmp_path / "responses.bin"
    write_responses(
        responses,
        {
            LIST: ("ListUsageEvents", listed.SerializeToString()),
            CUSTOMER: ("ListCustomerUsageEvents", page.SerializeToString()),
        },
    )
    # Statements each page's connection kind runs: the last one shows in pg_stat_activity.
    list_sql = "SELECT count(*) FROM events WHERE organization_id = %(org)s"
    customer_sql = "SELECT count(*) FROM customers WHERE organization_id = %(org)s AND id = %(id)s"
    statements = tmp_path / "statements.json"
    pages = {
        LIST: {"generic_plan": True, "statements": [[list_sql, {"org": "o"}, True]]},
        CUSTOMER: {
            "generic_plan": False,
            "statements": [["SELECT 1", {}, False], [customer_sql, {"org": "o", "id": "c"}, True]],
        },
    }
    statements.write_text(json.dumps(pages))
    command = [sys.executable, "-m", "bench.floor_server", "--responses", str(responses)]
    command += ["--statements", str(statements), "--database-url", pg_url, "--max-workers", "2"]
    command += ["--aio"] if model == "aio" else []
    server = service.ServerProcess(command, tmp_path / "floor.log", BARE_LISTENING)
    try:
        target = clients.GrpcTarget(server.target, ())
        answer = target.call_once("ListUsageEvents", pb.ListUsageEventsRequest(), scenario=LIST)
        assert answer.SerializeToString() == listed.SerializeToString()
        answer = target.call_once(
            "ListCustomerUsageEvents", pb.ListCustomerUsageEventsRequest(), scenario=CUSTOMER
        )
        assert answer.SerializeToString() == page.SerializeToString()
        with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://", 1)) as conn:
            last = conn.execute(
                "SELECT query FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid() AND query <> ''"
            ).fetchall()
        # Placeholders as psycopg sends them ($1) and as the statements name them (%(org)s).
        ran = sorted(_without_placeholders(q) for (q,) in last)
        assert ran == sorted(_without_placeholders(q) for q in (list_sql, customer_sql))
    finally:
        server.stop()
