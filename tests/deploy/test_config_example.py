"""memtrace.toml.example stays in step with the settings, and `memtrace config show` tells the
effective configuration and where each value came from, secrets masked."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import TypeAdapter

from memtrace.cli import cli
from memtrace.config import load_settings, setting_fields

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "memtrace.toml.example"
KEY_LINE = re.compile(r"^(#\s*)?([a-z][a-z0-9_]*)\s*=")


def flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict) and value:  # an empty table is a setting's value ({})
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def example_lines() -> dict[str, tuple[bool, str]]:
    """dotted key → (commented out?, the comment line just above it)."""
    found: dict[str, tuple[bool, str]] = {}
    section, previous = "", ""
    for line in EXAMPLE.read_text().splitlines():
        stripped = line.strip()
        if header := re.fullmatch(r"\[([a-z0-9_.]+)\]", stripped):
            section = header.group(1)
        elif match := KEY_LINE.match(stripped):
            found[f"{section}.{match.group(2)}" if section else match.group(2)] = (
                bool(match.group(1)),
                previous,
            )
        previous = stripped
    return found


def test_the_example_has_every_setting_with_its_default_and_why() -> None:
    """A new setting in memtrace/config.py needs its line here (with a comment above it)."""
    fields = dict(setting_fields())
    active = flatten(tomllib.loads(EXAMPLE.read_text()))
    lines = example_lines()
    assert sorted(lines) == sorted(fields), "memtrace.toml.example and memtrace/config.py differ"
    for dotted, field in fields.items():
        commented, why = lines[dotted]
        assert why.startswith("#") and not KEY_LINE.match(why), f"{dotted}: no line of why above"
        if field.default is None:  # nothing to write down: shown commented out, as an example
            assert commented, f"{dotted} has no default: leave it commented out"
            continue
        assert not commented, f"{dotted}: show the default, uncommented"
        value = TypeAdapter(field.annotation).validate_python(active[dotted])
        default = field.get_default(call_default_factory=True)
        assert value == default, f"{dotted}: the example says {value!r}"


def test_the_example_loads_as_the_defaults(tmp_path: Path) -> None:
    copy = tmp_path / "example.toml"
    copy.write_text(EXAMPLE.read_text())
    assert load_settings(copy).model_dump() == load_settings().model_dump()


def show(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, [*args], env=env)
    return result.exit_code, result.stdout, result.stderr


def test_config_show_names_the_source_of_every_value(tmp_path: Path) -> None:
    config = tmp_path / "my.toml"
    config.write_text('[server]\nhost = "0.0.0.0"\nport = 9300\n[log]\nformat = "json"\n')
    code, out, err = show(
        "config",
        "show",
        "--config",
        str(config),
        "--data-dir",
        str(tmp_path / "flagged"),
        env={"MEMTRACE_SERVER_PORT": "9400", "MEMTRACE_DEDUP_WINDOW_HOURS": "2"},
    )
    assert code == 0, err
    assert f"# config file: {config}" in out
    lines = {line.split("=")[0].strip(): line for line in out.splitlines() if "=" in line}
    assert lines["host"].startswith('host = "0.0.0.0"')
    assert lines["host"].endswith(f"# file {config}")
    assert "9400" in lines["port"] and lines["port"].endswith("# env MEMTRACE_SERVER_PORT")
    assert lines["format"].endswith(f"# file {config}")
    assert lines["window_hours"].startswith("window_hours = 2.0")
    assert lines["window_hours"].endswith("# env MEMTRACE_DEDUP_WINDOW_HOURS")
    assert str(tmp_path / "flagged") in lines["data_dir"]
    assert lines["data_dir"].endswith("# flag --data-dir")
    assert lines["max_batch"].endswith("# default")
    assert "# db_path is not set" in out


def test_config_show_output_is_toml_that_loads_as_the_same_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMTRACE_LIMITS_MAX_BATCH", "77")
    monkeypatch.setenv("MEMTRACE_RETENTION_TYPES", '{"decision": 365, "session": 7}')
    effective = load_settings().model_dump()
    code, out, _ = show("config", "show")
    assert code == 0
    saved = tmp_path / "saved.toml"
    saved.write_text(out)
    monkeypatch.delenv("MEMTRACE_LIMITS_MAX_BATCH")
    monkeypatch.delenv("MEMTRACE_RETENTION_TYPES")
    assert load_settings(saved).model_dump() == effective
    assert effective["limits"]["max_batch"] == 77
    assert effective["retention"]["types"] == {"decision": 365, "session": 7}  # a TOML table


def test_config_show_json_and_the_data_dir_alias(tmp_path: Path) -> None:
    code, out, _ = show(
        "config", "show", "--json", env={"MEMTRACE_DATA_DIR": str(tmp_path / "aliased")}
    )
    assert code == 0
    body = json.loads(out)
    assert body["config_file"] is None
    assert body["settings"]["storage.data_dir"] == {
        "value": str(tmp_path / "aliased"),
        "source": "env",
        "origin": "MEMTRACE_DATA_DIR",
    }
    assert body["settings"]["server.port"] == {"value": 9100, "source": "default", "origin": None}
    assert set(body["settings"]) == {dotted for dotted, _ in setting_fields()}


@pytest.mark.parametrize(
    ("master_key", "shown"),
    [
        (None, "not set"),
        ("not-base64!", "set but malformed: it must be base64 text"),
        ("c2hvcnQ=", "set but malformed: it must decode to 32 bytes, not 5"),
        ("A" * 43 + "=", "set"),
    ],
)
def test_config_show_never_prints_the_master_key(master_key: str | None, shown: str) -> None:
    env = {"MEMTRACE_MASTER_KEY": master_key} if master_key else {}
    code, out, _ = show("config", "show", env=env)
    assert code == 0
    assert out.rstrip().endswith(f"# MEMTRACE_MASTER_KEY (environment only): {shown}")
    assert not master_key or master_key not in out
    code, out, _ = show("config", "show", "--json", env=env)
    assert json.loads(out)["environment"] == {"MEMTRACE_MASTER_KEY": shown}


def test_secrets_and_url_passwords_are_masked() -> None:
    from memtrace.cli.config import MASK, masked

    assert masked("postgres.url", "postgresql://memtrace:s3cret@db:5432/memtrace") == (
        f"postgresql://memtrace:{MASK}@db:5432/memtrace"
    )
    assert (
        masked("postgres.url", "postgresql://db:5432/memtrace") == "postgresql://db:5432/memtrace"
    )
    assert masked("arc.api_key", "arc-token-123") == MASK
    assert masked("auth.password", "hunter2") == MASK
    assert masked("tls.key_file", Path("/etc/memtrace/tls.key")) == "/etc/memtrace/tls.key"
    assert masked("server.max_header_bytes", 65536) == 65536
    assert masked("server.keepalive_timeout_s", 5.0) == 5.0


def test_config_show_stops_on_an_invalid_value_naming_the_key() -> None:
    code, _, err = show("config", "show", env={"MEMTRACE_SERVER_PORT": "70000"})
    assert code == 1
    assert "server.port" in err and "Traceback" not in err


def test_config_show_names_go_keys_and_variables_by_what_was_written(tmp_path: Path) -> None:
    """A Go memtrace config and Go's variable names (docs/migrating-from-go.md) are shown as
    the keys they map to, with the name the operator wrote as the source."""
    config = tmp_path / "go.toml"
    config.write_text('[server]\nread_timeout = 7\n[arc]\nurl = "http://arc:8000"\n')
    env = {"MEMTRACE_ARC_API_KEY": "arc-secret-token", "MEMTRACE_SERVER_SHUTDOWN_TIMEOUT": "3"}
    code, out, err = show("config", "show", "--config", str(config), env=env)
    assert code == 0, err
    lines = {line.split("=")[0].strip(): line for line in out.splitlines() if "=" in line}
    assert lines["body_timeout_s"].startswith("body_timeout_s = 7.0")
    assert lines["body_timeout_s"].endswith(f"# file {config}")
    assert lines["graceful_timeout_s"].endswith("# env MEMTRACE_SERVER_SHUTDOWN_TIMEOUT")
    assert lines["url"].endswith(f"# file {config}")
    assert lines["api_key"].startswith('api_key = "********"')
    assert lines["api_key"].endswith("# env MEMTRACE_ARC_API_KEY")
    assert "arc-secret-token" not in out
