"""Settings: toml + environment, precedence, validation naming the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from memtrace.config import load_settings
from memtrace.domain.errors import ConfigError


def test_defaults() -> None:
    settings = load_settings()
    assert settings.server.host == "127.0.0.1" and settings.server.port == 9100
    assert settings.storage.data_dir == Path("data") and settings.auth.enabled
    assert settings.metadata_path == Path("data") / "memtrace.db"
    assert settings.dedup_window_us == 24 * 3_600_000_000
    assert settings.limits.max_batch == 1000 and settings.limits.max_content_bytes == 65536


def test_toml_env_and_flag_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "custom.toml"
    config.write_text('[server]\nport = 9200\nhost = "0.0.0.0"\n[dedup]\nwindow_hours = 2\n')
    monkeypatch.setenv("MEMTRACE_SERVER_PORT", "9300")
    settings = load_settings(config, {"server.host": "10.0.0.1"})
    assert settings.server.port == 9300  # env beats the file
    assert settings.server.host == "10.0.0.1"  # a flag beats both
    assert settings.dedup.window_hours == 2  # the file beats defaults


def test_config_search_path_uses_cwd(tmp_path: Path) -> None:
    (tmp_path / "memtrace.toml").write_text('[log]\nlevel = "DEBUG"\n')
    assert load_settings().log.level == "DEBUG"


def test_data_dir_alias(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEMTRACE_DATA_DIR", str(tmp_path / "a"))
    assert load_settings().data_dir == tmp_path / "a"
    monkeypatch.setenv("MEMTRACE_STORAGE_DATA_DIR", str(tmp_path / "b"))
    assert load_settings().data_dir == tmp_path / "b"  # the full name wins
    monkeypatch.setenv("MEMTRACE_AUTH_DB_PATH", str(tmp_path / "meta.db"))
    assert load_settings().metadata_path == tmp_path / "meta.db"


@pytest.mark.parametrize(
    ("toml", "env", "key"),
    [
        ("[server]\nport = 70000\n", {}, "server.port"),
        ("[server]\nprot = 1\n", {}, "server.prot"),
        ("", {"MEMTRACE_LIMITS_MAX_BATCH": "lots"}, "limits.max_batch"),
        ("", {"MEMTRACE_STORAGE_DEFAULT_BACKEND": "cloud"}, "storage.default_backend"),
        ("", {"MEMTRACE_LOG_FORMAT": "xml"}, "log.format"),
        ("[bogus]\nx = 1\n", {}, "bogus"),
        ('[server]\nallowed_hosts = ["https://x.example"]\n', {}, r"server.allowed_hosts\[0\]"),
        ("", {"MEMTRACE_SERVER_CORS_ORIGINS": "app.example.com"}, r"server.cors_origins\[0\]"),
        ("", {"MEMTRACE_SERVER_ALLOWED_ORIGINS": "[oops"}, "server.allowed_origins"),
    ],
)
def test_invalid_values_name_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toml: str, env: dict[str, str], key: str
) -> None:
    config = tmp_path / "memtrace.toml"
    config.write_text(toml)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=rf"{key}:"):
        load_settings(config)


def test_unreadable_toml(tmp_path: Path) -> None:
    config = tmp_path / "memtrace.toml"
    config.write_text("[server\nport = ")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(config)
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "missing.toml")


def test_host_and_origin_lists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = load_settings().server
    assert server.allowed_hosts is None and server.loopback  # automatic: loopback names only
    assert server.allowed_origins == () and server.cors_origins == ()  # CORS off
    config = tmp_path / "memtrace.toml"
    config.write_text('[server]\nallowed_hosts = ["Memtrace.Example.com", "[::1]:9100"]\n')
    monkeypatch.setenv(
        "MEMTRACE_SERVER_CORS_ORIGINS", "https://app.example.com/, http://localhost:*"
    )
    settings = load_settings(config, {"server.host": "0.0.0.0"})
    assert settings.server.allowed_hosts == ("memtrace.example.com", "[::1]:9100")
    assert settings.server.cors_origins == ("https://app.example.com", "http://localhost:*")
    assert not settings.server.loopback


def test_the_ci_scripts_switches_do_not_reach_the_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`.ci/run` exports MEMTRACE_TESTS_* switches for the test suite; every server the tests
    start inherits them. A switch named like a section key (MEMTRACE_POSTGRES_…) is read as
    that key and refused, and every server the suite starts would exit on it."""
    ci_script = (Path(__file__).parent.parent / ".ci" / "run").read_text()
    exported = re.findall(r"^\s*export (MEMTRACE_\w+)=(\S+)", ci_script, re.MULTILINE)
    assert exported, "the CI script exports its test switches"
    for name, value in exported:
        assert name.startswith("MEMTRACE_TESTS_"), name
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    load_settings()  # neither refused nor read as a setting
