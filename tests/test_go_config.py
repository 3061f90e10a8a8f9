"""The Go memtrace's configuration starts this server: its shipped ``memtrace.toml``, its
environment variable names and lowercase log levels; the legacy ``[arc]`` block becomes
``org_default``'s Arc binding on the first start (docs/migrating-from-go.md)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import httpx
import pytest

from memtrace.auth.crypto import generate_master_key
from memtrace.config import load_settings
from memtrace.domain.errors import ConfigError
from memtrace.runtime import Runtime
from memtrace.testing.arc_emulator import TEST_TOKEN, ArcEmulator
from memtrace.testing.arc_server import EmulatorServer
from tests.go_deployment import go_arc_columns, go_toml, write_go_rows
from tests.helpers import KEY_RE, ServerProcess, wait_until


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "memtrace.toml"
    path.write_text(text)
    return path


def test_go_shipped_toml_loads(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for legacy in (None, "http://127.0.0.1:8000"):
        caplog.clear()
        with caplog.at_level(logging.WARNING, "memtrace.config"):
            settings = load_settings(write(tmp_path, go_toml(arc_url=legacy)))
        assert (settings.server.host, settings.server.port) == ("0.0.0.0", 9100)
        assert settings.server.body_timeout_s == 30 and settings.server.graceful_timeout_s == 30
        assert settings.log.level == "INFO" and settings.log.format == "console"
        assert settings.arc.connect_timeout_s == 5 and settings.arc.query_timeout_s == 30
        assert settings.arc.batch_size == 100 and settings.arc.flush_interval_ms == 1000
        assert settings.auth.enabled and settings.metadata_path == Path("data/memtrace.db")
        assert settings.dedup.enabled and settings.dedup.window_hours == 24
        assert settings.legacy_arc.url == legacy
        if legacy:
            assert settings.legacy_arc.database == "memory"
            assert settings.legacy_arc.measurement == "events"
        warnings = [r.getMessage() for r in caplog.records]
        assert len(warnings) == 1 and "no effect" in warnings[0]
        assert "server.write_timeout" in warnings[0]


def test_go_environment_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMTRACE_SERVER_READ_TIMEOUT", "12")
    monkeypatch.setenv("MEMTRACE_ARC_WRITE_BATCH_SIZE", "50")
    monkeypatch.setenv("MEMTRACE_ARC_URL", "http://arc:8000")
    monkeypatch.setenv("MEMTRACE_ARC_API_KEY", "from-env")
    monkeypatch.setenv("MEMTRACE_ARC_DATABASE", "")  # empty values are ignored, as in Go
    monkeypatch.setenv("MEMTRACE_LOG_LEVEL", "debug")
    monkeypatch.setenv("MEMTRACE_AUTH_DB_PATH", str(tmp_path / "meta.db"))
    settings = load_settings(write(tmp_path, go_toml(arc_url="http://toml:8000")))
    assert settings.server.body_timeout_s == 12 and settings.arc.batch_size == 50
    assert settings.legacy_arc.url == "http://arc:8000"  # the environment beats the file
    assert settings.legacy_arc.api_key is not None
    assert settings.legacy_arc.api_key.get_secret_value() == "from-env"
    assert settings.legacy_arc.database == "memory"
    assert settings.log.level == "DEBUG" and settings.metadata_path == tmp_path / "meta.db"


@pytest.mark.parametrize(
    ("given", "level"),
    [("info", "INFO"), ("warn", "WARNING"), ("Warning", "WARNING"), ("trace", "DEBUG"),
     ("ERROR", "ERROR"), ("fatal", "ERROR"), ("disabled", "ERROR")],
)  # fmt: skip
def test_log_levels_any_case_and_go_names(
    tmp_path: Path, given: str, level: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings(write(tmp_path, f'[log]\nlevel = "{given}"\n')).log.level == level
    monkeypatch.setenv("MEMTRACE_LOG_LEVEL", given)
    assert load_settings().log.level == level


def test_docs_site_sections(tmp_path: Path) -> None:
    text = "[deduplication]\nenabled = false\nwindow_hours = 6\n\n[write_buffer]\nbatch_size = 7\n"
    settings = load_settings(write(tmp_path, text + "flush_interval_ms = 250\n"))
    assert not settings.dedup.enabled and settings.dedup.window_hours == 6
    assert settings.arc.batch_size == 7 and settings.arc.flush_interval_ms == 250


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (go_toml() + "\n[nonsense]\nx = 1\n", "nonsense"),
        ("[server]\nread_timeout = 30\nbogus = 1\n", "server.bogus"),
        ("[deduplication]\nwindow = 3\n", "deduplication"),
        ('[log]\nlevel = "loud"\n', "log.level"),
    ],
)
def test_keys_neither_ours_nor_go_still_stop_the_program(
    tmp_path: Path, text: str, named: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text))
    assert named in info.value.message


async def test_legacy_arc_block_binds_org_default_on_first_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMTRACE_MASTER_KEY", generate_master_key())
    toml = go_toml(
        arc_url="http://127.0.0.1:8000",
        arc_api_key="legacy-token",
        db_path=str(tmp_path / "data" / "memtrace.db"),
    )
    settings = load_settings(write(tmp_path, toml), {"storage.data_dir": tmp_path / "data"})
    runtime = Runtime(settings)
    key = await runtime.start(bootstrap_key=True)
    try:
        assert key is not None and KEY_RE.fullmatch(key)  # unlike Go, the admin key is printed
        principal = await runtime.authenticate(key)
        assert principal.org_id == "org_default"
        bound = (await runtime.catalog.admin_snapshot()).bindings
        target = bound["org_default"].target()
        assert (target.url, target.database, target.measurement, target.api_key) == (
            "http://127.0.0.1:8000",
            "memory",
            "events",
            "legacy-token",
        )
    finally:
        await runtime.close()
    again = Runtime(settings)  # later starts change nothing
    assert await again.start(bootstrap_key=True) is None
    try:
        assert list((await again.catalog.admin_snapshot()).bindings) == ["org_default"]
    finally:
        await again.close()


@pytest.mark.slow
def test_memtrace_serve_with_the_go_toml(tmp_path: Path) -> None:
    """``memtrace serve --config <Go's memtrace.toml>`` with the legacy [arc] block: the server
    starts, prints an admin key, and org_default reads the rows Go wrote to that Arc."""
    arc = EmulatorServer(ArcEmulator()).start()
    try:
        memories = [{"agent_id": "my_agent", "content": "written by the Go server", "age_s": 60}]
        with httpx.Client(base_url=arc.url) as http:
            columns = go_arc_columns("org_default", memories, time.time_ns())
            write_go_rows(http, "memory", "events", columns, TEST_TOKEN)
        toml = go_toml(
            arc_url=arc.url,
            arc_api_key=TEST_TOKEN,
            db_path=str(tmp_path / "data" / "memtrace.db"),
            host="127.0.0.1",
        )
        config = write(tmp_path, toml)
        server = ServerProcess(
            tmp_path / "data",
            env={"MEMTRACE_MASTER_KEY": generate_master_key()},
            args=("--config", str(config)),
        ).start()
        try:
            assert server.admin_key and "legacy [arc] settings" in server.output
            headers = {"x-api-key": server.admin_key}
            listed = httpx.get(f"{server.url}/api/v1/memories", headers=headers).json()
            assert [m["content"] for m in listed["memories"]] == ["written by the Go server"]
            # (the report is kept by a background check: the store's first one may be running)
            wait_until(
                lambda: httpx.get(f"{server.url}/health").json()["arc"] == {"org_default": True}
            )
        finally:
            server.stop()
    finally:
        arc.stop()
