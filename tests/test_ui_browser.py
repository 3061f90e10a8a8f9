"""The operator page (docs/ui.md) in a real browser against a real ``memtrace serve``: headless
Chromium (Debian's ``chromium``, driven by Playwright) signs in with an API key, pages and filters
the memory list, opens a memory and a session's context, sees the timeline, watches a memory
written through the REST API arrive in the live tail, and signs out.

Along the way it checks what docs/ui.md promises: the key stays in the tab's sessionStorage and
never appears in a URL, every request goes to the server's own origin, and the
Content-Security-Policy is never violated (the page needs no inline script or other host).

Screenshots go to ``tmp_path``; with ``MEMTRACE_TESTS_SCREENSHOTS=docs/ui`` they replace the
ones docs/ui.md shows. Without Debian's chromium the test is skipped locally with the install
hint and fails in CI (``CI`` set, or ``MEMTRACE_TESTS_UI=required``); ``.ci/run`` installs it.
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import Tenant

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

# Read at import: the autouse _isolated_env fixture clears MEMTRACE_* (and changes directory).
_SHOTS = os.environ.get("MEMTRACE_TESTS_SCREENSHOTS")
SCREENSHOTS = Path(_SHOTS).resolve() if _SHOTS else None
REQUIRED = bool(os.environ.get("CI")) or os.environ.get("MEMTRACE_TESTS_UI") == "required"
CHROMIUM = os.environ.get("MEMTRACE_TESTS_CHROMIUM") or shutil.which("chromium")

FAILED_DEPLOY = "Deploy of build 4412 failed: migration 0042 timed out after 120 s"
LIVE = "Rolled back build 4412; the previous release serves again"
PAUSED = "Planned the retry of build 4412 for tomorrow morning"
PER_AGENT = 24  # 3 agents: 72 memories, and 12 errors: two pages of 50


def _chromium() -> str:
    if CHROMIUM:
        return CHROMIUM
    message = "needs Debian's chromium: apt-get install -y chromium (.ci/run installs it)"
    if REQUIRED:
        pytest.fail(f"the browser test is required here: {message}", pytrace=False)
    pytest.skip(message)


def _seed(http: httpx.Client) -> dict[str, Any]:
    """Three agents' work over the last day, a session each, a burst of errors and one failed
    deploy."""
    sessions = {}
    for agent in ("planner", "coder", "reviewer"):
        response = http.post("/api/v1/sessions", json={"agent_id": agent})
        assert response.status_code == 201, response.text
        sessions[agent] = response.json()["id"]
    now = datetime.now(UTC)
    memories: list[dict[str, Any]] = []
    kinds = ("action", "observation", "action", "decision")
    for i in range(PER_AGENT):
        for n, agent in enumerate(("planner", "coder", "reviewer")):
            kind = kinds[(i + n) % len(kinds)]
            memories.append(
                {
                    "agent_id": agent,
                    "session_id": sessions[agent],
                    "event_type": kind,
                    "memory_type": "decision" if kind == "decision" else "episodic",
                    "content": f"{agent} step {i}: {kind} on the release checklist, item {i}",
                    "tags": ["release"] + (["prod"] if i % 3 == 0 else []),
                    "time": (now - timedelta(minutes=50 * i + 7 * n + 3)).isoformat(),
                }
            )
    memories[7] = {
        "agent_id": "coder",
        "session_id": sessions["coder"],
        "event_type": "error",
        "content": FAILED_DEPLOY,
        "tags": ["deploy", "prod"],
        "importance": 0.9,
        "metadata": {"build": 4412, "step": "migrate"},
        "time": (now - timedelta(minutes=38)).isoformat(),
    }
    memories += [  # a burst of errors three hours ago: the timeline's spike
        {
            "agent_id": "coder",
            "event_type": "error",
            "content": f"Upstream registry answered 503 on attempt {k}",
            "tags": ["registry"],
            "time": (now - timedelta(hours=3, minutes=2 * k)).isoformat(),
        }
        for k in range(12)
    ]
    response = http.post("/api/v1/memories", json={"memories": memories})
    assert response.status_code == 201, response.text
    assert response.json()["count"] == len(memories)
    return {"sessions": sessions, "total": len(memories)}


def _has_route(http: httpx.Client, path: str) -> bool:
    return path in http.get("/openapi.json").json()["paths"]


def test_operator_page_end_to_end(tenant: Tenant, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    chromium = _chromium()
    shots = SCREENSHOTS or tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    base = tenant.url
    with httpx.Client(base_url=base, headers={"x-api-key": tenant.key}, timeout=30) as http:
        seeded = _seed(http)
        has_timeline = _has_route(http, "/api/v1/timeline")
        has_stream = _has_route(http, "/api/v1/stream")
        expect.set_options(timeout=20_000)  # a loaded 2-core machine
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=chromium, headless=True, args=["--disable-dev-shm-usage"]
            )
            try:
                context = browser.new_context(viewport={"width": 1440, "height": 1000})
                page = context.new_page()
                requests: list[str] = []
                console: list[str] = []
                page.on("request", lambda request: requests.append(request.url))
                page.on("console", lambda message: console.append(message.text))
                errors: list[str] = []
                page.on("pageerror", lambda error: errors.append(str(error)))

                # --- sign in: a wrong key is refused, the right one kept in the tab only ---
                page.goto(f"{base}/ui")
                key_field = page.get_by_label("API key")
                expect(key_field).to_be_focused()
                clip = {"x": 0, "y": 0, "width": 1440, "height": 380}
                page.screenshot(path=str(shots / "sign-in.png"), clip=clip)
                key_field.fill("mtk_" + "x" * 43)
                page.keyboard.press("Enter")
                expect(page.locator("#sign-in-error")).to_contain_text("not accepted")
                key_field.fill(tenant.key)
                page.keyboard.press("Enter")
                rows = page.locator("#memory-list > li")
                expect(rows).to_have_count(50)
                expect(page.locator("#list-status")).to_contain_text("more are available")
                assert page.evaluate("sessionStorage.getItem('memtrace.apiKey')") == tenant.key
                assert page.evaluate("localStorage.length") == 0
                assert page.evaluate("document.cookie") == ""
                expect(page.locator("#who-text")).to_contain_text(tenant.org_id)
                for agent in ("planner", "coder", "reviewer"):
                    expect(page.locator("#agents")).to_contain_text(agent)

                # --- the timeline, or the message while the server has none ---
                if has_timeline:
                    expect(page.locator("#timeline-status")).to_contain_text(
                        f"{seeded['total']} in all"
                    )
                    assert page.locator("#timeline-chart rect.bucket").count() > 0
                    expect(page.locator("#timeline-chart .legend")).to_contain_text("error")
                else:
                    expect(page.locator("#timeline-status")).to_contain_text(
                        "does not offer GET /api/v1/timeline"
                    )
                page.screenshot(path=str(shots / "memories.png"))

                # --- cursor paging ---
                page.get_by_role("button", name="Load more").click()
                expect(rows).to_have_count(seeded["total"])
                expect(page.get_by_role("button", name="Load more")).to_be_hidden()
                expect(page.locator("#list-status")).to_contain_text("that is all")

                # --- drill into one bucket of the timeline, from its table, with the keyboard ---
                if has_timeline:
                    page.get_by_text("Timeline as a table").click()
                    first = page.locator("#timeline-table tbody tr").first
                    count = int(first.locator("td").nth(1).inner_text())
                    first.get_by_role("button").focus()
                    page.keyboard.press("Enter")
                    expect(page.get_by_label("Time window")).to_have_value("custom")
                    expect(rows).to_have_count(count)
                    expect(page.locator("#timeline-status")).to_contain_text(f"{count} in all")
                    page.get_by_role("button", name="Reset").click()
                    expect(rows).to_have_count(50)

                # --- filter: errors containing "migration" ---
                page.get_by_label("Event type").fill("error")
                page.get_by_label("Content contains").fill("migration")
                page.keyboard.press("Enter")
                expect(rows).to_have_count(1)
                expect(rows.first).to_contain_text(FAILED_DEPLOY)
                if has_timeline:
                    expect(page.locator("#timeline-status")).to_contain_text("1 in all")

                # --- open it, with the keyboard ---
                rows.first.locator("button").focus()
                page.keyboard.press("Enter")
                detail = page.locator("#detail")
                expect(detail.locator("pre.content")).to_have_text(FAILED_DEPLOY)
                expect(detail).to_contain_text('"build": 4412')
                expect(detail).to_contain_text("0.9")
                expect(detail).to_contain_text(seeded["sessions"]["coder"])

                # --- the session's rendered context, from the detail's session link ---
                detail.get_by_role("button", name=seeded["sessions"]["coder"]).click()
                context_box = page.locator("#context pre.context")
                expect(context_box).to_contain_text(FAILED_DEPLOY)
                expect(context_box).to_contain_text("coder step")
                page.screenshot(path=str(shots / "detail.png"))

                # --- the live tail: a memory written through the REST API appears ---
                tail = page.locator("#tail > li")
                if has_stream:
                    expect(page.locator("#tail[data-live]")).to_have_count(1)
                    written = http.post(
                        "/api/v1/memories",
                        json={
                            "agent_id": "reviewer",
                            "event_type": "action",
                            "content": LIVE,
                            "tags": ["deploy"],
                        },
                    )
                    assert written.status_code == 201, written.text
                    expect(tail).to_have_count(1)
                    expect(tail.first).to_contain_text(LIVE)
                    expect(page.locator("#tail-status")).to_contain_text("1 new memory")
                    # paused, then resumed: what was written meanwhile arrives (Last-Event-ID)
                    page.get_by_role("button", name="Pause").click()
                    expect(page.locator("#tail-status")).to_contain_text("Paused")
                    expect(page.locator("#tail[data-live]")).to_have_count(0)
                    meanwhile = {"agent_id": "planner", "content": PAUSED, "event_type": "action"}
                    assert http.post("/api/v1/memories", json=meanwhile).status_code == 201
                    page.get_by_role("button", name="Resume").click()
                    expect(tail).to_have_count(2)
                    expect(tail.first).to_contain_text(PAUSED)
                    expect(tail.nth(1)).to_contain_text(LIVE)
                    # from the tail, the detail of a new memory
                    tail.nth(1).locator("button").click()
                    expect(detail.locator("pre.content")).to_have_text(LIVE)
                    expect(detail).to_contain_text(written.json()["id"])
                else:
                    expect(page.locator("#tail-status")).to_contain_text(
                        "does not offer GET /api/v1/stream"
                    )
                page.screenshot(path=str(shots / "live-tail.png"))

                # --- sign out: the key and the data are gone, also after a reload ---
                page.get_by_role("button", name="Sign out").click()
                expect(page.get_by_label("API key")).to_be_visible()
                expect(page.get_by_label("API key")).to_be_focused()
                assert page.evaluate("sessionStorage.length") == 0
                expect(rows).to_have_count(0)
                expect(tail).to_have_count(0)
                assert FAILED_DEPLOY not in page.locator("body").inner_text()
                page.reload()
                expect(page.get_by_label("API key")).to_be_visible()
                expect(page.locator("#app")).to_be_hidden()

                # --- nothing left the origin, no URL carried the key, the CSP held ---
                assert requests
                foreign = [u for u in requests if not u.startswith((f"{base}/", "data:"))]
                assert foreign == [], foreign
                assert [u for u in requests if tenant.key in u] == []
                assert [m for m in console if "Content Security Policy" in m] == []
                assert errors == []  # no uncaught exception in the page's script
            finally:
                browser.close()


def test_live_tail_resumes_across_server_ended_streams(tmp_path: Path) -> None:
    """The server ends idle streams (here after 1 s); the page reopens them from the last id
    it saw (``Last-Event-ID``): a memory written while no stream is open still arrives, once."""
    from playwright.sync_api import expect, sync_playwright

    from tests.helpers import ServerProcess, new_tenant

    chromium = _chromium()
    server = ServerProcess(
        tmp_path / "data",
        env={"MEMTRACE_LIMITS_STREAM_IDLE_S": "1", "MEMTRACE_LIMITS_STREAM_HEARTBEAT_S": "0.3"},
    ).start()
    try:
        _, key = new_tenant(server.data_dir, "tail")
        server.wait_for_key(key)
        with (
            httpx.Client(base_url=server.url, headers={"x-api-key": key}, timeout=30) as http,
            sync_playwright() as playwright,
        ):
            browser = playwright.chromium.launch(executable_path=chromium, headless=True)
            try:
                page = browser.new_page()
                opened: list[str] = []
                page.on(
                    "request",
                    lambda r: (
                        opened.append(r.headers.get("last-event-id", ""))
                        if r.url.endswith("/api/v1/stream")
                        else None
                    ),
                )
                page.goto(f"{server.url}/ui")
                page.get_by_label("API key").fill(key)
                page.keyboard.press("Enter")
                expect(page.locator("#tail[data-live]")).to_have_count(1, timeout=20_000)
                tail = page.locator("#tail > li")
                for n in range(1, 4):
                    # the server ended the stream; the page waits before reopening it: write now
                    expect(page.locator("#tail[data-live]")).to_have_count(0, timeout=20_000)
                    content = f"written while no stream is open, number {n}"
                    write = {"agent_id": "ops", "content": content}
                    assert http.post("/api/v1/memories", json=write).status_code == 201
                    expect(tail).to_have_count(n, timeout=20_000)
                    expect(tail.first).to_contain_text(content)
                    expect(page.locator("#tail[data-live]")).to_have_count(1, timeout=20_000)
                assert all(opened[1:]), "every reopened stream resumed from an id"
                assert page.locator("#tail").inner_text().count("number 1") == 1
            finally:
                browser.close()
    finally:
        server.stop()
