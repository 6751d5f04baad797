"""The web dashboard: ``/`` and ``/static/{name}``, plain files shipped inside the package (``static/``).

No build step and nothing from a CDN: the page is a few ES modules that talk only to the JSON
API beside it, sending the user's credentials in an ``Authorization`` header they keep in
``sessionStorage``. These are the only paths served without credentials (the page has no data
of its own), and only these carry the Content-Security-Policy: no inline script, nothing from
another origin, so a broker-echoed name that slipped into the page as markup still could not run.
The API sets no CORS headers at all, and the dashboard uses no cookies, so another site can
neither read the API nor make the browser send it authenticated requests -- except with Basic
credentials the browser cached itself (someone opened /api/... and typed them into its prompt):
those it attaches to any request, a cross-site form's POST too, so ``is_cross_site`` refuses
state-changing requests that a browser marks as coming from another site.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

STATIC_DIR = Path(__file__).resolve().parent / "static"
CONTENT_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}
# 'self' only (scripts, styles, fetch()); the plots are inline <svg> elements built with DOM calls, so
# nothing needs 'unsafe-inline'. frame-ancestors: the page cannot be framed (clickjacking a purge button).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidate: an upgraded broker serves its own scripts at once
}
STATIC_PREFIX = "/static/"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/", get_index)
    router.add_get(STATIC_PREFIX + "{name}", get_static)


def is_public(request: web.Request) -> bool:
    """Served without credentials: the page and its files (GET/HEAD only; everything under /api/ needs them)."""
    if request.method not in ("GET", "HEAD"):
        return False
    return request.path == "/" or request.path.startswith(STATIC_PREFIX)


def is_cross_site(request: web.Request) -> bool:
    """A state-changing request a browser sent from another site's page.

    Browsers send ``Origin`` with every POST/PUT/DELETE (``null`` from sandboxed or file pages) and,
    lately, ``Sec-Fetch-Site``; scripts cannot forge either. Clients that are not browsers (curl,
    rabbitmqadmin, the CLI) send neither and are not affected. ``Sec-Fetch-Site: same-origin`` is
    trusted before comparing hosts, so a proxy that rewrites ``Host`` does not break the dashboard.
    """
    if request.method in SAFE_METHODS:
        return False
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    if request.headers.get("Sec-Fetch-Site") in ("same-origin", "none"):
        return False
    return urlsplit(origin).netloc.lower() != request.host.lower()


async def get_index(request: web.Request) -> web.StreamResponse:
    return _file("index.html")


async def get_static(request: web.Request) -> web.StreamResponse:
    return _file(request.match_info["name"])


def _file(name: str) -> web.StreamResponse:
    """One file of ``static/`` by its bare name: no directories, so no path can leave the folder."""
    path = STATIC_DIR / name
    content_type = CONTENT_TYPES.get(path.suffix)
    if "/" in name or "\\" in name or name.startswith(".") or content_type is None or not path.is_file():
        raise web.HTTPNotFound()
    response = web.Response(body=path.read_bytes(), content_type=content_type, charset="utf-8")
    response.headers.update(SECURITY_HEADERS)
    return response
