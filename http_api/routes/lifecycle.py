"""The data lifecycle over REST: delete one memory, forget by filter, export as NDJSON."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Annotated

import orjson
from fastapi import APIRouter, Query
from starlette.responses import Response, StreamingResponse

from http_api.deps import AdminLifecycle, ReadLifecycle, WriteLifecycle, json_response
from memtrace.domain.errors import MemtraceError
from memtrace.domain.memory import MemoryRecord
from memtrace.domain.models import ExportParams, ForgetRequest, ForgetResult
from memtrace.lifecycle.ndjson import to_line

router = APIRouter(prefix="/api/v1", tags=["lifecycle"])
log = logging.getLogger("memtrace.http")

NDJSON = "application/x-ndjson"
_CHUNK_BYTES = 64 * 1024  # lines are sent in chunks of about this size


@router.delete(
    "/memories/{memory_id}",
    status_code=204,
    response_class=Response,
    summary="Erase one memory (then 404)",
)
async def delete_memory(memory_id: str, lifecycle: WriteLifecycle) -> Response:
    await lifecycle.delete_memory(memory_id)
    return Response(status_code=204)


@router.post(
    "/memories/forget",
    response_model=ForgetResult,
    response_model_exclude_none=True,
    summary="Erase every memory matching the filters (admin); dry_run only counts",
)
async def forget(lifecycle: AdminLifecycle, body: ForgetRequest | None = None) -> Response:
    result = await lifecycle.forget(body or ForgetRequest())
    return json_response(result.model_dump(exclude_none=True))


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={200: {"content": {NDJSON: {}}, "description": "One memory per line"}},
    summary="Stream the org's memories as NDJSON, oldest first (constant memory)",
)
async def export(lifecycle: ReadLifecycle, params: Annotated[ExportParams, Query()]) -> Response:
    records = lifecycle.export(params)
    # The first page is read before the 200, so bad filters and storage errors get a status.
    first = await anext(records, None)
    return StreamingResponse(_lines(first, records), media_type=NDJSON)


async def _lines(
    first: MemoryRecord | None, records: AsyncIterator[MemoryRecord]
) -> AsyncIterator[bytes]:
    if first is None:
        return
    chunk = [to_line(first)]
    size = len(chunk[0])
    try:
        async for record in records:
            line = to_line(record)
            chunk.append(line)
            size += len(line)
            if size >= _CHUNK_BYTES:
                yield b"".join(chunk)
                chunk, size = [], 0
    except MemtraceError as exc:
        # Too late for a status: end with an error line (an import refuses it, by number).
        log.warning("export stream ended early: %s", exc.message)
        chunk.append(orjson.dumps(exc.to_body()) + b"\n")
    if chunk:
        yield b"".join(chunk)
