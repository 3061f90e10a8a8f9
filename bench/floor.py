"""The storage floor of batched ingest: SQLite's own CPU to insert the same rows.

The rows of the ingest figure's batches (bench/common.py ``batches``, the same seed), built
beforehand (ids, dedup keys, JSON and tag text: none of it timed), go into a fresh file with
the embedded store's own schema (every index, the tag table, the per-agent counts and the FTS
text index) and its writer settings (WAL, ``synchronous=FULL``, the same page cache): one
``BEGIN IMMEDIATE`` … ``COMMIT`` per request-sized batch, as the server commits them. The CPU of
those transactions per memory is what SQLite itself costs; the server's CPU per memory is
reported as a multiple of it (bench/run.py).

    .venv/bin/python -m bench.floor --memories 50000
"""

from __future__ import annotations

import argparse
import calendar
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from bench.common import batches
from memtrace.domain.dedup import derive_dedup_key
from memtrace.domain.ids import memory_ids
from memtrace.domain.timestamps import now_us
from memtrace.storage import embedded
from memtrace.storage.rows import COLUMN_LIST, PLACEHOLDERS
from memtrace.storage.sqlite import connect

ORG = "org_default"


def _rows(body: bytes, first_rowid: int) -> tuple[list[tuple[Any, ...]], list[Any], list[Any]]:
    """(memory rows, tag rows, agent/type counts) of one request body, as the store writes them."""
    now = now_us()
    rows, tags, counts = [], [], Counter[tuple[str, str]]()
    for offset, item in enumerate(orjson.loads(body)["memories"]):
        rowid = first_rowid + offset
        at = _time_us(item.get("time")) or now
        session = item.get("session_id")
        event = item.get("event_type", "general")
        memory_type = item.get("memory_type", "episodic")
        rows.append(
            (
                rowid,
                memory_ids.new(),
                at,
                ORG,
                item["agent_id"],
                session,
                memory_type,
                event,
                item["content"],
                orjson.dumps(item["metadata"]).decode() if item.get("metadata") else None,
                ",".join(item["tags"]) if item.get("tags") else None,
                item.get("importance"),
                derive_dedup_key(item["agent_id"], event, session, item["content"]),
                None,
            )
        )
        tags += [(tag, at, rowid) for tag in item.get("tags") or ()]
        counts[(item["agent_id"], memory_type)] += 1
    return rows, tags, [(a, t, n) for (a, t), n in counts.items()]


def _time_us(text: str | None) -> int | None:
    if not text:
        return None
    seconds = calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S"))
    return int(seconds) * 1_000_000 + int(text[20:26])


def floor_us_per_memory(memories: int, batch: int = 1000, seed: int = 11) -> dict[str, Any]:
    """CPU per memory of the inserts alone, one transaction per batch (see the module doc)."""
    with tempfile.TemporaryDirectory(prefix="memtrace-floor-") as tmp:
        conn = connect(Path(tmp) / "memories.db", synchronous="FULL")
        embedded._setup_writer(conn)
        prepared, rowid = [], 1
        for body in batches(memories, batch, seed=seed):
            prepared.append(_rows(body, rowid))
            rowid += len(prepared[-1][0])
        insert = f"INSERT INTO memories (rowid, {COLUMN_LIST}) VALUES (?, {PLACEHOLDERS})"
        cpu = time.process_time()
        for rows, tags, counts in prepared:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(insert, rows)
            conn.executemany("INSERT INTO memory_tags (tag, time, mem) VALUES (?, ?, ?)", tags)
            conn.executemany(
                "INSERT INTO agent_type_counts (agent_id, memory_type, n) VALUES (?, ?, ?) "
                "ON CONFLICT (agent_id, memory_type) DO UPDATE SET n = n + excluded.n",
                counts,
            )
            conn.execute(
                "INSERT INTO memories_fts (rowid, content) "
                "SELECT rowid, content FROM memories WHERE rowid >= ?",
                (rows[0][0],),
            )
            conn.execute("COMMIT")
        cpu = time.process_time() - cpu
        conn.close()
    return {"cpu_us_per_memory": round(cpu / memories * 1e6, 1), "memories": memories}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memories", type=int, default=50_000)
    args = parser.parse_args()
    print(floor_us_per_memory(args.memories))


if __name__ == "__main__":
    main()
