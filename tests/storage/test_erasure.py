"""Erasure that really erases: after a delete or a forget, the content is in none of the
store's files — the embedded SQLite file with its WAL and FTS index, the Arc outbox, and the
Parquet files of Arc (the emulator writes them like Arc, uncompressed so bytes are
searchable). Each test first finds the text in the files, so it proves the search works."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import httpx

from memtrace.runtime import Runtime
from memtrace.storage.arc.store import ArcStore
from memtrace.storage.embedded import EmbeddedStore
from memtrace.storage.layout import org_dir
from memtrace.testing.arc_server import EmulatorServer
from tests.helpers import open_store_of
from tests.storage.arc_support import bound_org, drained

SECRET = "Zqxjv SSN 078-05-1120 of Ada Lovelace"
OTHER = "Wkpqz card 4111-1111-1111-1111"


def files_holding(root: Path, text: str) -> list[str]:
    """The files under ``root`` whose raw bytes contain ``text`` (UTF-8)."""
    needle = text.encode()
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and needle in p.read_bytes()
    )


def fts_matches_a_fresh_index(db: Path, tmp: Path) -> bool:
    """The FTS index's leaf pages are exactly those of an index built from the memories left:
    no term of an erased memory remains in it."""
    copy = tmp / "check.db"
    shutil.copy(db, copy)
    conn = sqlite3.connect(copy)
    try:
        conn.execute(
            "CREATE VIRTUAL TABLE fresh USING fts5(content, content='', tokenize='trigram', "
            "detail=none, columnsize=0)"
        )
        conn.execute("INSERT INTO fresh (rowid, content) SELECT rowid, content FROM memories")
        conn.execute("INSERT INTO fresh (fresh) VALUES ('optimize')")
        kept = sorted(
            r[0] for r in conn.execute("SELECT block FROM memories_fts_data WHERE id > 10")
        )
        fresh = sorted(r[0] for r in conn.execute("SELECT block FROM fresh_data WHERE id > 10"))
        return kept == fresh
    finally:
        conn.close()


async def fill(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, str]:
    """300 memories in several write groups (several FTS segments), two of them sensitive."""
    ids: dict[str, str] = {}
    for batch in range(3):
        body = [{"agent_id": "bot", "content": f"routine note {batch}-{i}"} for i in range(100)]
        if batch == 1:
            body[10] = {
                "agent_id": "bot",
                "content": SECRET,
                "metadata": {"note": SECRET},
                "tags": ["ssn-0780"],
            }
            body[20] = {"agent_id": "subject", "content": OTHER}
        response = await client.post("/api/v1/memories", json={"memories": body}, headers=headers)
        assert response.status_code == 201, response.text
        for memory in response.json()["memories"]:
            if memory["content"] in (SECRET, OTHER):
                ids[memory["content"]] = memory["id"]
    return ids


async def test_embedded_delete_and_forget_leave_nothing_in_the_files(
    served_runtime: tuple[Runtime, httpx.AsyncClient], data_dir: Path, tmp_path: Path
) -> None:
    runtime, client = served_runtime
    org_id, rw, admin = await bound_org(runtime, None)
    ids = await fill(client, rw)
    root = org_dir(data_dir, org_id)
    assert files_holding(root, SECRET) and files_holding(root, OTHER)

    assert (await client.delete(f"/api/v1/memories/{ids[SECRET]}", headers=rw)).status_code == 204
    forgot = await client.post(
        "/api/v1/memories/forget", json={"agent_id": "subject"}, headers=admin
    )
    assert forgot.json() == {"deleted": 1}
    store = await open_store_of(runtime, org_id)
    assert isinstance(store, EmbeddedStore)
    await store.purger.idle()

    assert files_holding(root, SECRET) == [] and files_holding(root, OTHER) == []
    assert files_holding(root, "ssn-0780") == []  # the tag row too
    assert fts_matches_a_fresh_index(root / "memories.db", tmp_path)
    left = await client.get("/api/v1/memories", params={"limit": 1000}, headers=rw)
    assert len(left.json()["memories"]) == 298


async def test_arc_delete_and_forget_rewrite_arcs_files_and_the_outbox(
    served_runtime: tuple[Runtime, httpx.AsyncClient],
    data_dir: Path,
    arc_files_server: EmulatorServer,
) -> None:
    runtime, client = served_runtime
    org_id, rw, admin = await bound_org(runtime, arc_files_server)
    ids = await fill(client, rw)
    store = await open_store_of(runtime, org_id)
    assert isinstance(store, ArcStore)
    await drained(store)
    arc_files = arc_files_server.emulator.data_dir
    assert arc_files is not None
    outbox = org_dir(data_dir, org_id)
    assert files_holding(arc_files, SECRET) and files_holding(outbox, SECRET)

    assert (await client.delete(f"/api/v1/memories/{ids[SECRET]}", headers=rw)).status_code == 204
    forgot = await client.post(
        "/api/v1/memories/forget", json={"agent_id": "subject"}, headers=admin
    )
    assert forgot.json() == {"deleted": 1}
    await store.purger.idle()

    for root in (arc_files, outbox):
        assert files_holding(root, SECRET) == [] and files_holding(root, OTHER) == [], root
    assert (await client.get(f"/api/v1/memories/{ids[SECRET]}", headers=rw)).status_code == 404
    left = await client.get("/api/v1/memories", params={"limit": 1000}, headers=rw)
    assert len(left.json()["memories"]) == 298
    assert files_holding(arc_files, "routine note 1-11")  # the rest of that file is still there


async def test_arc_refusing_deletes_is_a_clear_503_and_changes_nothing(
    served_runtime: tuple[Runtime, httpx.AsyncClient], arc_files_server: EmulatorServer
) -> None:
    runtime, client = served_runtime
    org_id, rw, _ = await bound_org(runtime, arc_files_server)
    ids = await fill(client, rw)
    store = await open_store_of(runtime, org_id)
    assert isinstance(store, ArcStore)
    await drained(store)
    arc_files_server.emulator.delete_enabled = False  # Arc's default
    response = await client.delete(f"/api/v1/memories/{ids[SECRET]}", headers=rw)
    assert response.status_code == 503
    assert "delete API is off" in response.json()["error"]
    assert "delete.enabled" in response.json()["hint"]
    assert (await client.get(f"/api/v1/memories/{ids[SECRET]}", headers=rw)).status_code == 200
