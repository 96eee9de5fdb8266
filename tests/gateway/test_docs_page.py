"""The API reference page `/docs` of `usage-service serve --http-port 0`, loaded as a person would: in
a real headless Chromium (Debian's `chromium`, which scripts/test.sh installs), with every host but
127.0.0.1 unresolvable, so the page must render from what the service itself serves. The rendered
page must list the routes of the three query RPCs with the summaries written in the protos."""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess

import httpx
import pytest
from gateway_process import Stack

from server import contract
from server.gateway import docs_page, openapi

pytestmark = pytest.mark.e2e

QUERY_ROUTES = {
    "ListCustomerUsageEvents": "/v1/customers/{id}/usage/{aggregator_id}/events",
    "ListUsageEvents": "/v1/usage-events",
    "AggregateUsage": "/v1/usage-events/aggregate",
}


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "chromium not found: scripts/test.sh installs it (apt-get install chromium)"
    return found


def render(chromium: str, url: str, profile: pathlib.Path) -> str:
    """The DOM of `url` once its scripts have run, from a headless Chromium that can reach only
    127.0.0.1 (no CDN, no validator service, nothing from outside)."""
    result = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            # Virtual time runs the page's timers and waits for its fetches before the DOM is dumped.
            "--virtual-time-budget=30000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_docs_renders_the_query_routes_offline_in_a_real_browser(
    stack: Stack, chromium: str, tmp_path: pathlib.Path
) -> None:
    dom = render(chromium, f"{stack.url}/docs", tmp_path / "profile")
    # Swagger UI breaks long paths with zero-width spaces; each operation carries its path and summary.
    text = dom.replace("\u200b", "").replace("&#8203;", "")
    for rpc, path in QUERY_ROUTES.items():
        assert f'data-path="{path}"' in text, (rpc, text[-3000:])
        described = openapi.summary(contract.comments()[f"usage.v1.UsageService.{rpc}"])
        assert described in " ".join(text.split()), (rpc, described)
    assert "usage-service" in text and "UsageService" in text and "CatalogService" in text


def test_docs_page_loads_only_its_own_files(stack: Stack) -> None:
    with httpx.Client(base_url=stack.url, timeout=60) as http:
        page = http.get("/docs")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        urls = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert urls and not any("//" in u for u in urls), urls  # relative: served here, no CDN
        assert "validatorUrl: null" in page.text  # Swagger UI would otherwise call its validator service
        for url in urls:
            asset = http.get(f"/{url}")
            assert asset.status_code == 200 and asset.content, url
        assert http.get("/docs/").headers.get("location") == "../docs"
        assert http.get("/docs/assets/index.html").status_code == 404  # only the files the page uses
        refused = http.post("/docs")
        assert refused.status_code == 405 and refused.headers["allow"] == "GET, HEAD"
        assert set(docs_page.ASSET_FILES) >= {u.rsplit("/", 1)[-1] for u in urls}
