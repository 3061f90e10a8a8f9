"""Response parsing tolerates what a newer server adds; error bodies map to the exception tree
the same way for our SDK and for memtrace-sdk 0.2.0 (which matches "arc instance" in a 503)."""

from __future__ import annotations

import httpx
import pytest

from memtrace import ListOptions, Memory, MemoryList, Memtrace, SearchQuery
from memtrace.domain.errors import (
    Conflict,
    DuplicateMemory,
    Forbidden,
    InvalidInput,
    MemtraceError,
    NoArcInstanceError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    StorageUnavailable,
    Unauthorized,
    error_from_response,
)

MEMORY = {
    "id": "mem_01",
    "time": "2026-01-01T00:00:00.000000Z",
    "org_id": "org_1",
    "agent_id": "a1",
    "memory_type": "procedural",
    "event_type": "general",
    "content": "x",
    "dedup_key": "k",
    "embedding_model": "new-field",
}


def test_response_models_tolerate_new_fields_and_memory_types() -> None:
    page = MemoryList.model_validate(
        {"memories": [MEMORY], "count": 1, "has_more": False, "next_cursor": "abc"}
    )
    assert page.memories[0].memory_type == "procedural"
    assert Memory.model_validate(MEMORY).id == "mem_01"


def test_sdk020_request_models_accept_none_for_defaults() -> None:
    assert ListOptions(agent_id="a1", limit=None, order=None).limit == 100
    assert SearchQuery(limit=None).limit == 50


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, InvalidInput),
        (401, Unauthorized),
        (403, Forbidden),
        (404, NotFound),
        (409, Conflict),
        (413, PayloadTooLarge),
        (503, StorageUnavailable),
        (500, MemtraceError),
        (418, MemtraceError),
    ],
)
def test_statuses(status: int, cls: type[MemtraceError]) -> None:
    error = error_from_response(status, {"error": "boom", "hint": "do this"})
    assert type(error) is cls
    assert (error.status_code, error.message, error.hint) == (status, "boom", "do this")


def test_special_bodies() -> None:
    body = {"error": "duplicate memory", "existing_id": "mem_1"}
    dup = error_from_response(409, body, conflict=DuplicateMemory)
    assert isinstance(dup, DuplicateMemory) and dup.existing_id == "mem_1"
    limited = error_from_response(429, {"error": "slow down"}, {"retry-after": "12"})
    assert isinstance(limited, RateLimited) and limited.retry_after == 12.0
    assert error_from_response(502, "<html>bad gateway</html>").message == (
        "<html>bad gateway</html>"
    )
    assert error_from_response(500, None).message == "HTTP 500"


def test_the_server_no_store_error_maps_back_for_both_sdks() -> None:
    body = NoArcInstanceError(hint="run memtrace org add-arc").to_body()
    # memtrace-sdk 0.2.0: `status == 503 and "arc instance" in message.lower()`.
    assert "arc instance" in body["error"].lower()
    mapped = error_from_response(503, body)
    assert isinstance(mapped, NoArcInstanceError) and mapped.hint == "run memtrace org add-arc"


def test_a_response_of_the_wrong_shape_is_a_memtrace_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"hello": "world"})

    client = Memtrace("http://x", "mtk_x", transport=httpx.MockTransport(handler))
    with client, pytest.raises(MemtraceError) as info:
        client.get_memory("mem_1")
    assert info.value.message.startswith("unexpected response from the server: Memory.")
