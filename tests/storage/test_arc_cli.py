"""Arc from the command line, in process (click's runner, the console script's code): master
key errors, no plaintext Arc key anywhere, copying an org's data to Arc (resuming, exact early
times, rows Arc refuses parked) and the outbox command. The console script with a running
server: tests/storage/test_arc_cli_process.py."""

from __future__ import annotations

from pathlib import Path

from memtrace.domain.timestamps import now_us
from memtrace.testing.arc_emulator import TEST_TOKEN
from memtrace.testing.arc_server import EmulatorServer
from tests.helpers import admin, invoke
from tests.storage.arc_support import (
    BAD_MASTER_KEYS,
    add_arc,
    memory,
    org_to_copy,
    seed_embedded,
)

SECRET = TEST_TOKEN  # the Arc API key that must never appear in clear text


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
    org, ids = org_to_copy(data_dir, master_env, arc_server, 25)
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


def test_copy_data_keeps_early_times_and_parks_what_arc_refuses(
    data_dir: Path, master_env: dict[str, str], arc_server: EmulatorServer
) -> None:
    org = admin(data_dir, "org", "create", "acme", env=master_env)
    now = now_us()
    times = [7, 86_400_000_123, now - 3_600_000_000, 5_000_000, now - 1]

    items = [memory(f"at {t}", time_us=t) for t in times] + [memory("poison", time_us=now - 2)]
    stored = {r.id: r.time for r in seed_embedded(data_dir, org, items)}
    poison = next(i for i, t in stored.items() if t == now - 2)
    assert add_arc(data_dir, master_env, org, arc_server.url)[0] == 0
    arc_server.emulator.refuse_content = "poison"
    copy = ("org", "copy-data", org, "--to", "arc", "--batch-size", "3")
    code, out, err = invoke(data_dir, *copy, env=master_env)
    assert code == 0 and out.strip() == "6"
    assert "1 memories were refused by Arc and parked" in err
    sql = f"SELECT id, epoch_us(time) FROM events WHERE org_id = '{org}'"
    in_arc = dict(arc_server.emulator.sql("acme", sql))
    assert in_arc == {i: t for i, t in stored.items() if i != poison}  # exact times
    # a batch of only pre-April-1970 rows was led by the unit anchor row, which no org sees
    others = arc_server.emulator.sql("acme", f"SELECT org_id FROM events WHERE org_id <> '{org}'")
    assert {row[0] for row in others} <= {""}
    shown = admin(data_dir, "org", "outbox", org, env=master_env)
    assert "parked\t1" in shown and poison in shown
    assert "emulated refusal" in shown

    arc_server.emulator.refuse_content = None
    code, out, err = invoke(data_dir, "org", "outbox", org, "--retry-parked", env=master_env)
    assert code == 0 and "1 parked memories go back to the queue" in err
    assert "pending\t1" in out and "parked\t0" in out
