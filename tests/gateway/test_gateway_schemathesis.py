"""Property-based: schemathesis generates requests from the gateway's own `/openapi.json` and sends
them to the real processes (`serve --http-port 0` on SQLite), with a valid bearer token. No response
may be a 5xx, and every response must match the document: its status documented, its body valid
against the operation's schema (the response message for 200, `google.rpc.Status` otherwise)."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from gateway_process import ORG, Stack, start_stack, token
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from server.gateway import openapi, routes
from server.gateway.app import SERVICES

pytestmark = pytest.mark.e2e

# 15 operations: a few hundred requests, well under a minute here.
EXAMPLES = {GenerationMode.POSITIVE: 25, GenerationMode.NEGATIVE: 10}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def fuzz_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir: pathlib.Path = tmp_path_factory.mktemp("schemathesis-data")
    with start_stack(["--data-dir", str(data_dir)], data_dir / "serve.log") as running:
        yield running


@pytest.fixture(scope="module")
def api_schema(fuzz_stack: Stack) -> Any:
    loaded = schemathesis.openapi.from_url(f"{fuzz_stack.url}/openapi.json", timeout=30)
    loaded.config.update(base_url=fuzz_stack.url)
    return loaded


# The operation ids, known without a server: the document is built from the descriptors.
OPERATION_IDS = sorted(
    op["operationId"]
    for path in openapi.build_document(routes.build_routes(SERVICES))["paths"].values()
    for op in path.values()
)


# schemathesis' own pytest plugin (schema.parametrize) does not run under pytest 9 yet, so each
# operation is a parametrized test driving hypothesis with the operation's strategy.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
@pytest.mark.parametrize("operation_id", OPERATION_IDS)
def test_no_5xx_and_every_response_matches_the_document(
    api_schema: Any, operation_id: str, mode: GenerationMode
) -> None:
    operation = api_schema.find_operation_by_id(operation_id)
    # A fixed deadline: a generated `grpc-timeout: 0H` is answered 504 by design (deadlines have
    # their own tests in test_gateway_http.py).
    headers = {"Authorization": f"Bearer {token(ORG)}", "grpc-timeout": "60S"}

    @given(case=operation.as_strategy(mode))
    @settings(
        max_examples=EXAMPLES[mode],
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # the failing case as found: shrinking takes minutes
    )
    def run(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS, timeout=60)

    run()
