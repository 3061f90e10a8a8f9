"""The operator page at ``/ui`` (docs/ui.md): plain HTML, CSS and JavaScript shipped inside this
package (``http_api/ui/``), no build step.

The assets hold no data, so they need no key (``UI_PATHS`` are public in
:mod:`http_api.guard`); every call the page makes to the API sends the key the operator signed
in with. The Content-Security-Policy lets the page load only its own files and talk only to its
own origin: no other host, no inline script, no framing, no form posts.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from fastapi import APIRouter
from starlette.responses import Response

PAGE_PATH = "/ui"
_ASSETS = {  # file in http_api/ui → (path served, media type)
    "index.html": (PAGE_PATH, "text/html; charset=utf-8"),
    "app.js": (f"{PAGE_PATH}/app.js", "text/javascript; charset=utf-8"),
    "app.css": (f"{PAGE_PATH}/app.css", "text/css; charset=utf-8"),
}
UI_PATHS = frozenset(path for path, _ in _ASSETS.values())

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'self' data:",  # the empty data: favicon (no request for /favicon.ico)
        "base-uri 'none'",
        "form-action 'none'",  # the sign-in form is handled by the script, never submitted
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    # Small files, revalidated on each load so an upgraded server serves its own page.
    "cache-control": "no-cache",
}

router = APIRouter(tags=["ui"], include_in_schema=False)


@cache
def _asset(name: str) -> bytes:
    return files("http_api").joinpath("ui", name).read_bytes()


def _serve(name: str) -> Response:
    return Response(_asset(name), media_type=_ASSETS[name][1], headers=SECURITY_HEADERS)


@router.get(PAGE_PATH)
async def page() -> Response:
    return _serve("index.html")


@router.get(_ASSETS["app.js"][0])
async def script() -> Response:
    return _serve("app.js")


@router.get(_ASSETS["app.css"][0])
async def stylesheet() -> Response:
    return _serve("app.css")
