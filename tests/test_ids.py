"""Identifiers: time-sortable, strictly increasing memory ids; id formats."""

from __future__ import annotations

import re
import threading

from memtrace.domain.ids import MonotonicUlid, new_key_id, new_org_id, new_session_id

ULID = re.compile(r"^mem_[0-9A-HJKMNP-TV-Z]{26}$")


def test_memory_ids_are_ulids_and_strictly_increasing() -> None:
    gen = MonotonicUlid()
    ids = [gen.new() for _ in range(10_000)]
    assert all(ULID.match(i) for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_memory_ids_are_unique_across_threads() -> None:
    gen = MonotonicUlid()
    out: list[list[str]] = [[] for _ in range(4)]

    def work(n: int) -> None:
        out[n] = [gen.new() for _ in range(2000)]

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flat = [i for chunk in out for i in chunk]
    assert len(set(flat)) == len(flat)
    for chunk in out:
        assert chunk == sorted(chunk)


def test_other_id_formats() -> None:
    assert re.fullmatch(r"sess_[0-9a-f]{24}", new_session_id())
    assert re.fullmatch(r"org_[0-9a-f]{16}", new_org_id())
    assert re.fullmatch(r"key_[0-9a-f]{16}", new_key_id())
