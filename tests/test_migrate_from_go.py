"""``memtrace migrate-from-go`` on a Go deployment built from Go's schema (tests/go_deployment.py):
every id kept, every old key authenticates with its org and permissions, agents resolve by id
and name, sessions and Arc bindings carried over, a second run changes nothing."""

from __future__ import annotations

import base64
import os
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from memtrace.auth.crypto import generate_master_key
from memtrace.cli import cli
from memtrace.config import load_settings
from memtrace.domain.errors import ConfigError, Unauthorized
from memtrace.runtime import Runtime
from tests.go_deployment import GoDeployment, build_go_db, go_toml

ARC_URL = "http://127.0.0.1:8000"


@pytest.fixture
def master(monkeypatch: pytest.MonkeyPatch) -> str:
    key = generate_master_key()
    monkeypatch.setenv("MEMTRACE_MASTER_KEY", key)
    return key


@pytest.fixture
def go(tmp_path: Path, master: str) -> GoDeployment:
    (tmp_path / "go").mkdir()
    return build_go_db(tmp_path / "go" / "memtrace.db", master, arc_url=ARC_URL)


def migrate(data_dir: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["migrate-from-go", *args, "--data-dir", str(data_dir)])
    return result.exit_code, result.stdout, result.stderr


def dump(path: Path) -> dict[str, list[tuple[object, ...]]]:
    conn = sqlite3.connect(path)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {
            t: sorted(conn.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr) for t in tables
        }
    finally:
        conn.close()


async def test_import_keeps_every_id_and_key(go: GoDeployment, data_dir: Path) -> None:
    code, out, err = migrate(data_dir, "--go-db", str(go.path))
    assert code == 0, err
    assert "orgs:         5 imported, 0 already present" in out
    assert "api keys:     9 imported" in out  # the revoked key is a deleted row in Go
    assert "agents:       8 imported" in out and "sessions:     7 imported" in out
    assert "arc bindings: 3 imported" in out
    assert "the name 'acme' is taken" in out  # Go allows two orgs with one name

    runtime = Runtime(load_settings(None, {"storage.data_dir": data_dir}))
    await runtime.start()
    try:
        expected_perms = {
            "admin": {"read", "write", "admin"},
            "acme-prod": {"read", "write"},
            "acme-readonly": {"read"},
            "globex-admin": {"read", "write", "admin"},
            "globex-ci": {"write"},
            "globex-spaced": {"read", "write"},
            "initech-prod": {"read", "write"},
        }
        for key in go.keys:
            assert len(key.plaintext) == 48 and key.plaintext.endswith("=")
            if key.valid:
                principal = await runtime.authenticate(key.plaintext)
                assert principal.org_id == key.org_id, key.name
                assert principal.permissions == expected_perms[key.name], key.name
                assert principal.key_id == str(key.id)
            else:
                with pytest.raises(Unauthorized):
                    await runtime.authenticate(key.plaintext)
        # Authorization without "Bearer" was Go's rule too: covered in test_go_clients.

        catalog = runtime.catalog
        orgs = {org.id: org.name for org in await catalog.list_orgs()}
        assert set(orgs) == set(go.org_names)
        for agent in go.agents:
            by_id = await catalog.get_agent(agent["org_id"], agent["id"])
            by_name = await catalog.get_agent(agent["org_id"], agent["name"])
            assert by_id is not None and by_name is not None and by_name.id == agent["id"]
            assert by_id.display_name == agent["name"]
            assert by_id.description == (agent["description"] or None)
        support = go.agent(go.orgs["acme"], "Support Agent")
        assert (await catalog.get_agent(go.orgs["globex"], "Support Agent")) is None
        assert (await catalog.get_agent(go.orgs["acme"], support["id"])).config is None  # type: ignore[union-attr]
        crawler = await catalog.get_agent(go.orgs["acme"], "web_crawler")
        assert crawler is not None and crawler.config == {"max_depth": 3}
        for session in go.sessions:
            row = await catalog.get_session(session["org_id"], session["id"])
            assert row is not None and row.status == session["status"]
            assert row.agent_id == session["agent_id"]
            assert (row.closed_at is None) == (session["closed_at"] is None)
            assert row.created_at % 1_000_000 == 123456  # Go's ns text read to the µs
        paused = next(s for s in go.sessions if s["status"] == "paused")
        assert (await catalog.get_session(paused["org_id"], paused["id"])).metadata == {  # type: ignore[union-attr]
            "ticket": 4521
        }
        bound = (await catalog.admin_snapshot()).bindings
        assert set(bound) == {a["org_id"] for a in go.arc}
        for instance in go.arc:
            target = bound[instance["org_id"]].target()
            assert (target.url, target.database, target.measurement, target.api_key) == (
                ARC_URL,
                instance["database"],
                "events",
                "arc-test-token",
            )
    finally:
        await runtime.close()


def test_second_run_changes_nothing(go: GoDeployment, data_dir: Path) -> None:
    assert migrate(data_dir, "--go-db", str(go.path))[0] == 0
    before = dump(data_dir / "memtrace.db")
    code, out, _ = migrate(data_dir, "--go-db", str(go.path))
    assert code == 0 and "nothing to import" in out
    assert "0 imported, 9 already present" in out
    assert dump(data_dir / "memtrace.db") == before


def test_dry_run_writes_nothing(go: GoDeployment, data_dir: Path) -> None:
    code, out, _ = migrate(data_dir, "--go-db", str(go.path), "--dry-run")
    assert code == 0 and "orgs:         5 would import" in out
    tables = dump(data_dir / "memtrace.db")
    assert tables["orgs"] == [] and tables["api_keys"] == [] and tables["arc_bindings"] == []


def test_refuses_what_is_not_a_go_db(tmp_path: Path, data_dir: Path) -> None:
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    code, _, err = migrate(data_dir, "--go-db", str(other))
    assert code == 1 and "is not a Go memtrace metadata DB (no table organizations)" in err
    text = tmp_path / "notes.txt"
    text.write_text("hello " * 1000)
    code, _, err = migrate(data_dir, "--go-db", str(text))
    assert code == 1 and "not a SQLite database" in err
    # our own metadata DB is not a Go DB either
    assert (
        CliRunner().invoke(cli, ["org", "create", "acme", "--data-dir", str(data_dir)]).exit_code
        == 0
    )
    code, _, err = migrate(tmp_path / "d2", "--go-db", str(data_dir / "memtrace.db"))
    assert code == 1 and "not a Go memtrace metadata DB" in err
    code, _, err = migrate(data_dir, "--go-db", str(tmp_path / "missing.db"))
    assert code == 1 and "does not exist" in err


def test_wrong_master_key_writes_nothing(
    go: GoDeployment, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMTRACE_MASTER_KEY", generate_master_key())
    code, _, err = migrate(data_dir, "--go-db", str(go.path))
    assert code == 1 and "MEMTRACE_MASTER_KEY is not the key the Go server used" in err
    assert dump(data_dir / "memtrace.db")["orgs"] == []  # one transaction: all or nothing
    monkeypatch.setenv("MEMTRACE_MASTER_KEY", base64.b64encode(os.urandom(16)).decode())
    code, _, err = migrate(data_dir, "--go-db", str(go.path))
    assert code == 1 and "32 bytes" in err


def test_same_file_keeps_the_go_db_beside_ours(go: GoDeployment, tmp_path: Path) -> None:
    """Go's default ./data/memtrace.db is also ours: the Go DB is kept as memtrace.go.db."""
    data = go.path.parent
    code, out, err = migrate(data, "--go-db", str(go.path), "--dry-run")
    assert code == 0 and "would keep the Go DB" in err and "5 would import" in out
    assert not (data / "memtrace.go.db").exists()

    code, out, err = migrate(data, "--go-db", str(go.path))
    assert code == 0, err
    kept = data / "memtrace.go.db"
    assert kept.is_file() and "5 imported" in out
    assert {r[0] for r in sqlite3.connect(kept).execute("SELECT name FROM organizations")} >= {
        "acme",
        "globex",
    }
    assert "orgs" in dump(data / "memtrace.db")
    code, out, err = migrate(data, "--go-db", str(go.path))  # the same command again
    assert code == 0 and "nothing to import" in out and "memtrace.go.db" in err


async def test_server_refuses_to_open_a_go_db(go: GoDeployment) -> None:
    settings = load_settings(None, {"auth.db_path": go.path})
    runtime = Runtime(settings)
    with pytest.raises(ConfigError, match="migrate-from-go --go-db"):
        await runtime.start()
    await runtime.close()
    assert "orgs" not in dump(go.path)  # untouched


async def test_pre_02_db_with_legacy_arc_block(tmp_path: Path, master: str, data_dir: Path) -> None:
    go = build_go_db(tmp_path / "pre.db", master, arc_url=ARC_URL, pre_02=True)
    config = tmp_path / "memtrace.toml"
    config.write_text(go_toml(arc_url="http://127.0.0.1:8123", arc_api_key="legacy-token"))
    code, out, err = migrate(data_dir, "--go-db", str(go.path), "--go-config", str(config))
    assert code == 0, err
    assert "(pre-0.2 schema)" in out and "arc bindings: 1 imported" in out
    runtime = Runtime(load_settings(None, {"storage.data_dir": data_dir}))
    await runtime.start()
    try:
        target = ((await runtime.catalog.admin_snapshot()).bindings)["org_default"].target()
        assert (target.url, target.database, target.api_key) == (
            "http://127.0.0.1:8123",
            "memory",
            "legacy-token",
        )
    finally:
        await runtime.close()
