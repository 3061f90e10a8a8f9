"""The operator page's files (docs/ui.md), in process: served without a key, locked to its own
origin by its headers, and written so the key and the data stay where docs/ui.md says.

The page itself runs in a real browser in tests/test_ui_browser.py."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import httpx

from http_api.routes.ui import UI_PATHS
from tests.helpers import ROOT

UI_DIR = ROOT / "http_api" / "ui"


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _tags() -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed((UI_DIR / "index.html").read_text())
    return parser.tags


async def test_the_page_and_its_files_are_served_without_a_key(client: httpx.AsyncClient) -> None:
    types = {"/ui": "text/html", "/ui/app.js": "text/javascript", "/ui/app.css": "text/css"}
    assert set(types) == UI_PATHS
    for path, media in types.items():
        response = await client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith(media)
        name = "index.html" if path == "/ui" else Path(path).name
        assert response.content == (UI_DIR / name).read_bytes()
        policy = response.headers["content-security-policy"]
        # only its own files and its own API: no other host, no inline script, no framing
        assert "default-src 'none'" in policy
        assert "script-src 'self'" in policy and "unsafe" not in policy
        assert "connect-src 'self'" in policy
        assert "frame-ancestors 'none'" in policy
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"


async def test_only_the_pages_files_are_public(client: httpx.AsyncClient) -> None:
    assert (await client.get("/ui/index.html")).status_code == 401
    assert (await client.get("/ui/app.py")).status_code == 401
    assert (await client.get("/api/v1/memories")).status_code == 401


async def test_the_page_is_not_part_of_the_api_schema(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert not [path for path in paths if path.startswith("/ui")]


def test_the_page_loads_nothing_from_another_origin() -> None:
    for tag, attrs in _tags():
        for name in ("src", "href", "action"):
            value = attrs.get(name)
            if value is None or value.startswith("#") or value == "data:,":
                continue
            assert "//" not in value and not value.startswith("/"), (tag, value)
    # every file shipped is used by the page, each from beside it (ui/…)
    used = {str(a.get("src") or a.get("href")) for t, a in _tags() if t in ("script", "link")}
    assert used - {"data:,"} == {f"ui/{p.name}" for p in UI_DIR.iterdir()} - {"ui/index.html"}
    for path in UI_DIR.iterdir():
        text = path.read_text()
        # the SVG namespace is a name, not a request
        urls = set(re.findall(r"https?://[^\s\"'`)]+", text)) - {"http://www.w3.org/2000/svg"}
        assert urls == set(), (path.name, urls)
        assert "@import" not in text and "url(" not in text.replace("new URL(", ""), path.name


def test_the_key_field_cannot_be_submitted_with_a_form() -> None:
    (field,) = [a for t, a in _tags() if t == "input" and a.get("id") == "api-key"]
    # no name: no form submission can carry it into a URL, even without the script
    assert "name" not in field
    assert field["type"] == "password"
    assert field["autocomplete"] == "off"
    labels = {a.get("for") for t, a in _tags() if t == "label"}
    inputs = {a["id"] for t, a in _tags() if t in ("input", "select") and a.get("id")}
    assert inputs <= labels, "every field has a label"


def test_the_script_keeps_the_key_in_the_tab_and_data_out_of_the_markup() -> None:
    script = (UI_DIR / "app.js").read_text()
    assert "sessionStorage" in script
    forbidden_names = (
        *("localStorage", "document.cookie", "indexedDB", "new EventSource"),  # key: tab only
        *("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"),  # data: text only
        *("eval(", "new Function"),
    )
    for forbidden in forbidden_names:
        assert forbidden not in script, forbidden
    # the key is only ever a header
    assert re.findall(r'"x-api-key": state\.key', script)
    assert not re.search(r"searchParams\.set\([^)]*key", script)
