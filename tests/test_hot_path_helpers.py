"""The per-memory helpers made cheaper for throughput keep their exact behaviour."""

from __future__ import annotations

import random

from memtrace.domain.ids import _CROCKFORD, _encode_ulid
from memtrace.domain.models import ListParams, MemoryCreate, SearchRequest


def _reference_ulid(value: int) -> str:
    """The plain definition: 26 characters of 5 bits each, most significant first."""
    return "".join(_CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def test_ulid_encoding_matches_the_definition() -> None:
    rng = random.Random(7)
    values = [0, 1, 31, 32, 1023, 1024, (1 << 128) - 1, 1 << 127]
    values += [rng.getrandbits(128) for _ in range(5000)]
    for value in values:
        assert _encode_ulid(value) == _reference_ulid(value)


def test_null_means_default_only_where_the_default_is_not_null() -> None:
    item = MemoryCreate.model_validate(
        {"agent_id": "a1", "content": "x", "memory_type": None, "event_type": None, "tags": None}
    )
    assert (item.memory_type, item.event_type, item.tags) == ("episodic", "general", None)
    params = ListParams.model_validate({"limit": None, "order": None, "agent_id": None})
    assert (params.limit, params.order, params.agent_id) == (100, "desc", None)
    assert SearchRequest.model_validate({"limit": None}).limit == SearchRequest().limit


def test_input_without_nulls_is_validated_unchanged() -> None:
    data = {"agent_id": "a1", "content": "x", "memory_type": "decision", "unknown": 1}
    item = MemoryCreate.model_validate(data)
    assert item.memory_type == "decision"
    assert data == {"agent_id": "a1", "content": "x", "memory_type": "decision", "unknown": 1}
