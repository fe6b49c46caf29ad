"""The HTML pages (console, API docs) and the security headers of every response.

Pages are served whole from the package, so they work on a network without
internet (OT networks): the API docs use the Swagger UI files shipped in the
``fastapi-offline`` wheel, under ``/docs/assets``. Each page gets a Content
Security Policy that allows only this origin plus the SHA-256 of each of its
own inline ``<script>``/``<style>`` blocks; every other response gets
``default-src 'none'``. All responses say ``nosniff``, ``no-referrer`` and
may not be framed.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gridpilot.core.errors import NotFound
from gridpilot.core.lifecycle import TERMINAL_VALUES, DispatchState

CONSOLE_DIR = Path(__file__).parent / "console"
# Each console page is the shared frame (head, header, sign-in dialog, offline
# banner: frame.html) under the page's title, then its own body (<name>.html).
CONSOLE_PAGES = {
    "index": "GridPilot console",
    "dispatch": "Dispatch · GridPilot console",
    "agents": "Agents · GridPilot console",
    "dispatches": "Dispatches · GridPilot console",
    "site": "Site · GridPilot console",
    "asset": "Asset · GridPilot console",
    "audit": "Audit · GridPilot console",
}
# /console/assets/{id} is an asset's page; the console's own files are here.
# Where each page is served (path parameters are read by the page's script).
CONSOLE_ROUTES = {
    "/": "index",
    "/console/dispatches": "dispatches",
    "/console/dispatches/{dispatch_id}": "dispatch",
    "/console/agents": "agents",
    "/console/sites/{site_id}": "site",
    "/console/assets/{asset_id}": "asset",
    "/console/audit": "audit",
}
CONSOLE_ASSETS_URL = "/console/static"
# The console's shared script, charts, style and icon; only these files are served.
CONSOLE_ASSETS = {
    "console.js": "text/javascript",
    "chart.js": "text/javascript",
    "form.js": "text/javascript",
    "console.css": "text/css",
    "favicon.svg": "image/svg+xml",
}
DOCS_ASSETS_URL = "/docs/assets"
_DOCS_FILES = Path(fastapi_offline.__file__).parent / "static"
# Only these files are served: no path ever reaches the filesystem.
DOCS_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon.png": "image/png",
}

BASELINE_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    # A JSON answer loads nothing; a page sets its own policy (page_csp).
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
}
_INLINE = re.compile(r"<(script|style)(?:\s[^>]*)?>(.*?)</\1>", re.DOTALL | re.IGNORECASE)


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def page_csp(html: str) -> str:
    """A policy for this page: same-origin files, plus its own inline blocks by hash."""
    inline: dict[str, list[str]] = {"script": [], "style": []}
    for tag, body in _INLINE.findall(html):
        if body.strip():  # <script src=...></script> has no body to allow
            inline[tag.lower()].append(_sha256(body))
    return "; ".join(
        [
            "default-src 'none'",
            " ".join(["script-src 'self'", *inline["script"]]),
            " ".join(["style-src 'self'", *inline["style"]]),
            "img-src 'self' data:",
            "font-src 'self'",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def html_page(html: str) -> HTMLResponse:
    return HTMLResponse(html, headers={"content-security-policy": page_csp(html)})


def console_html(template: str, workflows: str | None = None) -> str:
    """The console page, told the server's vocabulary (the states and which
    end, from ``core.lifecycle``) on its ``<body>``, so its script keeps no
    copy, and where a dispatch's workflow is shown (``workflows`` + its id)."""
    ends = " ".join(TERMINAL_VALUES)
    states = " ".join(s.value for s in DispatchState)
    link = f' data-workflow-url="{html.escape(workflows)}"' if workflows else ""
    body = f'<body data-terminal-states="{ends}" data-states="{states}"{link}>'
    return template.replace("<body>", body, 1)


def workflow_url(temporal_ui_url: str | None, namespace: str) -> str | None:
    """Where the Temporal UI shows a workflow, less its id (the dispatch id);
    without a run id the UI opens the latest run."""
    if not temporal_ui_url:
        return None
    return f"{temporal_ui_url.rstrip('/')}/namespaces/{quote(namespace, safe='')}/workflows/"


def console_asset_versions() -> dict[str, str]:
    """Each console file's version: the start of its content's SHA-256."""
    return {
        name: hashlib.sha256((CONSOLE_DIR / name).read_bytes()).hexdigest()[:16]
        for name in CONSOLE_ASSETS
    }


def build_console_page(
    name: str, workflows: str | None = None, versions: dict[str, str] | None = None
) -> str:
    """The console page ``name`` (a key of ``CONSOLE_PAGES``), whole. With
    ``versions``, the files it loads are named with theirs (``?v=``): a
    browser keeps them until they change, instead of asking on every page."""
    frame = (CONSOLE_DIR / "frame.html").read_text().replace("{title}", CONSOLE_PAGES[name])
    page = console_html(frame + (CONSOLE_DIR / f"{name}.html").read_text(), workflows)
    for file, version in (versions or {}).items():
        url = f"{CONSOLE_ASSETS_URL}/{file}"
        page = page.replace(f'"{url}"', f'"{url}?v={version}"')
    return page


def _page_endpoint(html: str) -> Callable[[], Awaitable[HTMLResponse]]:
    async def page() -> HTMLResponse:
        return html_page(html)

    return page


def install(app: FastAPI, workflows: str | None = None) -> None:
    """The console at ``/`` (the dispatch list at ``/console/dispatches``, one
    dispatch at ``/console/dispatches/{id}``,
    agents at ``/console/agents``, a site at ``/console/sites/{id}``, an asset
    at ``/console/assets/{id}``) and Swagger UI at ``/docs``, all offline."""
    versions = console_asset_versions()
    pages = {name: build_console_page(name, workflows, versions) for name in CONSOLE_PAGES}
    docs_html = get_swagger_ui_html(
        openapi_url=app.openapi_url or "/openapi.json",
        title=f"{app.title} API",
        swagger_js_url=f"{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{DOCS_ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{DOCS_ASSETS_URL}/favicon.png",
        # No badge from validator.swagger.io (a call out, blocked by the CSP
        # anyway). The token given to "Authorize" is not persisted (no
        # localStorage), like the console's, which keeps it for the tab only.
        swagger_ui_parameters={"validatorUrl": None},
    ).body
    docs = bytes(docs_html).decode()

    # A page holds no data: its script reads any id from the address and asks
    # the API (with the tab's token), so a link to it can be shared.
    for path, name in CONSOLE_ROUTES.items():
        app.add_api_route(path, _page_endpoint(pages[name]), include_in_schema=False)

    # Browsers ask for it on every page, without a token: no answer, not a 401.
    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(status_code=204)

    @app.get(CONSOLE_ASSETS_URL + "/{name}", include_in_schema=False)
    async def console_asset(name: str, v: str | None = None) -> FileResponse:
        media_type = CONSOLE_ASSETS.get(name)
        if media_type is None:
            raise NotFound(f"no console asset {name!r}", field="name")
        # Named with its current version, the file never changes: keep it.
        current = v is not None and v == versions[name]
        cache = "public, max-age=31536000, immutable" if current else "no-cache"
        return FileResponse(
            CONSOLE_DIR / name, media_type=media_type, headers={"cache-control": cache}
        )

    @app.get("/docs", include_in_schema=False)
    async def docs_page() -> HTMLResponse:
        return html_page(docs)

    @app.get(DOCS_ASSETS_URL + "/{name}", include_in_schema=False)
    async def docs_asset(name: str) -> FileResponse:
        media_type = DOCS_ASSETS.get(name)
        if media_type is None:
            raise NotFound(f"no docs asset {name!r}", field="name")
        return FileResponse(
            _DOCS_FILES / name,
            media_type=media_type,
            headers={"cache-control": "public, max-age=86400"},
        )


class SecurityHeaders:
    """Adds :data:`BASELINE_HEADERS` to every HTTP response that does not set
    its own (a page's CSP wins over the baseline)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._headers = [(k.encode(), v.encode()) for k, v in BASELINE_HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in self._headers if k not in present]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
