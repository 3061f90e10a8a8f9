"""Memories: write (single or batch), list, get by id, and structured search."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from http_api.deps import JsonRoute, ReadService, WriteService, json_response, read_json
from memtrace.domain.hotpath import parse_batch, parse_memory
from memtrace.domain.models import (
    ListParams,
    Memory,
    MemoryBatchCreate,
    MemoryBatchResult,
    MemoryCreate,
    MemoryList,
    SearchRequest,
    SearchResult,
)
from memtrace.domain.results import RecordPage
from memtrace.service import MemoryService

router = APIRouter(prefix="/api/v1", tags=["memories"], route_class=JsonRoute)
WRITE_PATH = "/api/v1/memories"  # served by http_api.writepath (this route documents it)

_WRITE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/MemoryCreate"},
                        {"$ref": "#/components/schemas/MemoryBatchCreate"},
                    ]
                }
            }
        },
    }
}
EXTRA_SCHEMAS = (MemoryCreate, MemoryBatchCreate)


def is_batch(payload: Any) -> bool:
    """A body is a batch when it has ``memories`` and no ``content``: a single memory with an
    extra ``memories`` field is still one memory (unknown fields are ignored)."""
    return isinstance(payload, dict) and "memories" in payload and "content" not in payload


def page_response(page: RecordPage) -> Response:
    return json_response(page.to_wire())


async def write_memories(service: MemoryService, payload: Any) -> tuple[int, Any]:
    """Validate a single memory or a batch and store it: (status, JSON content)."""
    if is_batch(payload):
        result = await service.remember_batch(parse_batch(payload))
        return 201, result.to_wire()
    record = await service.remember(parse_memory(payload))
    return 201, record.to_wire()


@router.post(
    "/memories",
    status_code=201,
    response_model=Memory | MemoryBatchResult,
    openapi_extra=_WRITE_BODY,
    summary="Store one memory, or a batch of 1-1000 as {'memories': [...]}",
    responses={409: {"description": "Duplicate memory (single write); body has existing_id"}},
)
async def create_memories(request: Request, service: WriteService) -> Response:
    status, content = await write_memories(service, await read_json(request))
    return json_response(content, status)


@router.get("/memories", response_model=MemoryList, summary="List memories, newest first")
async def list_memories(service: ReadService, params: Annotated[ListParams, Query()]) -> Response:
    return page_response(await service.list_memories(params))


@router.get("/memories/{memory_id}", response_model=Memory, summary="One memory by id")
async def get_memory(memory_id: str, service: ReadService) -> Response:
    return json_response((await service.get_memory(memory_id)).to_wire())


@router.post("/search", response_model=SearchResult, summary="Search with structured filters")
async def search(service: ReadService, body: SearchRequest | None = None) -> Response:
    outcome = await service.search(body or SearchRequest())
    return json_response(outcome.to_wire())
