"""The API reference page at `/docs`: Swagger UI rendering the gateway's own `/openapi.json`.

Swagger UI's files come from the `swagger-ui-bundle-v2` package (the Connexion maintainers' build of
Swagger UI's dist folder), installed with the service and served from `/docs/assets/`: no CDN, the
page works with no network. It asks no validator service (`validatorUrl: null`) and loads nothing
but its own assets and the document. Every URL in it is relative to `/docs`, so it also works
behind a proxy that mounts the gateway under a prefix.
"""

from __future__ import annotations

import swagger_ui_bundle
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

PAGE = "/docs"
ASSETS = "/docs/assets/"
# The files the page loads (and their source maps, which browsers fetch for their developer tools).
_ASSET_NAMES = {"swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png", "favicon-16x16.png"}
ASSET_FILES = frozenset(
    _ASSET_NAMES | {f"{name}.map" for name in _ASSET_NAMES if name.endswith((".js", ".css"))}
)

HTML = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>usage-service API reference</title>
  <link rel="stylesheet" href="docs/assets/swagger-ui.css">
  <link rel="icon" type="image/png" href="docs/assets/favicon-32x32.png" sizes="32x32">
  <link rel="icon" type="image/png" href="docs/assets/favicon-16x16.png" sizes="16x16">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/assets/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({
      url: "openapi.json",
      dom_id: "#swagger-ui",
      deepLinking: true,
      validatorUrl: null,
      presets: [SwaggerUIBundle.presets.apis],
      layout: "BaseLayout",
      docExpansion: "list",
      defaultModelsExpandDepth: 0
    });
  </script>
</body>
</html>
"""


def handles(path: str) -> bool:
    """Whether a request path is the page's (the page, with or without a slash, or an asset)."""
    return path in (PAGE, PAGE + "/") or path.startswith(ASSETS)


class DocsPage:
    """The ASGI app of `/docs` and its assets; `not_found` answers paths of neither."""

    def __init__(self, not_found: Response) -> None:
        self._assets = StaticFiles(directory=str(swagger_ui_bundle.swagger_ui_path))
        self._not_found = not_found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        response: Response | None = None
        if path == PAGE:
            response = HTMLResponse(HTML)
        elif path == PAGE + "/":  # the page's relative URLs need it without the slash
            response = RedirectResponse("../docs", status_code=308)
        elif path[len(ASSETS) :] in ASSET_FILES:
            await self._assets({**scope, "path": "/" + path[len(ASSETS) :], "root_path": ""}, receive, send)
            return
        await (response or self._not_found)(scope, receive, send)
