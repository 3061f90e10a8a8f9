"""Arc from the command line, in process (click's runner, the console script's code): master
key errors, no plaintext Arc key anywhere, copying an org's data to Arc and resuming. The
console script itself binds an org in tests/storage/test_arc_cli_process.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from memtrace.auth.crypto import generate_master_key
from memtrace.domain.timestamps import now_us
from memtrace.storage.embedded import EmbeddedStore
from memtrace.testing.arc_emulator import TEST_TOKEN
from memtrace.testing.arc_server import EmulatorServer
from tests.helpers import admin, invoke
from tests.storage.arc_support import BAD_MASTER_KEYS, memory

SECRET = TEST_TOKEN  # the Arc API key that must never appear in clear text


@pytest.fixture
def master_env() -> dict[str, str]:
    return {"MEMTRACE_MASTER_KEY": generate_master_key()}


def add_arc(
    data_dir: Path, env: dict[str, str], org: str, url: str, database: str = "acme"
) -> tuple[int, str, str]:
    return invoke(
        data_dir, "org", "add-arc", org, "--url", url, "--database", database, "--api-key", SECRET,
        env=env,
    )  # fmt: skip


def test_master_key_errors_and_no_plaintext_anywhere(
    data_dir: Path, master_env: dict[str, str], arc_server: EmulatorServer
) -> None:
    org = admin(data_dir, "org", "create", "acme", env=master_env)
    outputs = []
    for bad in ("missing", "corrupted", "short"):
        master_key, message = BAD_MASTER_KEYS[bad]
        code, out, err = add_arc(data_dir, {"MEMTRACE_MASTER_KEY": master_key}, org, arc_server.url)
        assert code == 1 and message in err, bad
        outputs.append(out + err)
    code, _, err = invoke(
        data_dir, "org", "add-arc", org, "--url", arc_server.url, "--database", "has-dash",
        env=master_env,
    )  # fmt: skip
    assert code == 1 and "database:" in err

    code, out, err = add_arc(data_dir, master_env, org, arc_server.url)
    assert code == 0, err
    outputs.append(out + err)
    code, shown, err = invoke(data_dir, "org", "show-arc", org, env=master_env)
    assert f"api_key\t****{SECRET[-4:]}" in shown and "database\tacme" in shown
    outputs.append(shown + err)
    wrong, message = BAD_MASTER_KEYS["wrong"]
    code, out, err = invoke(data_dir, "org", "show-arc", org, env={"MEMTRACE_MASTER_KEY": wrong})
    assert code == 1 and message in err
    outputs.append(out + err)
    assert not [output for output in outputs if SECRET in output]
    for path in data_dir.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path

    admin(data_dir, "org", "remove-arc", org, env=master_env)
    code, _, err = invoke(data_dir, "org", "show-arc", org, env=master_env)
    assert code == 1 and "no Arc binding" in err


def test_copy_data_copies_embedded_memories_and_resumes(
    data_dir: Path, master_env: dict[str, str], arc_server: EmulatorServer
) -> None:
    org = admin(data_dir, "org", "create", "acme", env=master_env)
    base = now_us() - 3_600_000_000

    async def seed() -> list[str]:
        store = EmbeddedStore(data_dir / "orgs" / org / "memories.db", org, synchronous="NORMAL")
        await store.open()
        outcomes = await store.write(
            [memory(f"old memory {i}", time_us=base + i) for i in range(25)], None
        )
        await store.close()
        return [o.record.id for o in outcomes if o.record]

    ids = asyncio.run(seed())
    assert add_arc(data_dir, master_env, org, arc_server.url)[0] == 0
    arc_server.emulator.fail_writes_after = 1  # the second batch fails: a crash mid-copy
    copy = ("org", "copy-data", org, "--to", "arc", "--batch-size", "10")
    code, _, err = invoke(data_dir, *copy, env=master_env)
    assert code == 1 and "Arc" in err
    arc_server.emulator.fail_writes_after = None
    code, out, err = invoke(data_dir, *copy, env=master_env)
    assert code == 0 and out.strip() == "25" and "15 copied now" in err
    code, _, err = invoke(data_dir, "org", "copy-data", org, "--to", "arc", env=master_env)
    assert code == 0 and "0 copied now" in err
    rows = arc_server.emulator.sql("acme", "SELECT id, content FROM events ORDER BY id")
    assert [r[0] for r in rows] == sorted(ids)  # every memory exactly once
