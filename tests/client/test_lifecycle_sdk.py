"""The SDK's lifecycle calls (sync and async) against the real app: delete, forget, export, and
iterators that walk by cursor past the deepest offset the server allows."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest

from memtrace import (
    AsyncMemtrace,
    ExportParams,
    Forbidden,
    InvalidInput,
    ListOptions,
    NotFoundError,
    SearchQuery,
)
from memtrace.config import Settings, load_settings
from memtrace.runtime import Runtime
from tests.client.conftest import BASE, SyncApp
from tests.client.test_async_client import _req
from tests.helpers import create_org_key

DEEPEST_OFFSET = 5


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    """Offsets stop at 5 here, so only a cursor walk can read 23 memories 4 at a time."""
    return load_settings(None, {"storage.data_dir": data_dir, "limits.max_offset": DEEPEST_OFFSET})


def test_sync_lifecycle(sync_app: SyncApp, tmp_path: Path) -> None:
    with sync_app.client() as client:
        stored = client.add_memories([_req(f"step {i}") for i in range(23)])
        org = stored[0].org_id
        deep = ListOptions(agent_id="writer", limit=4, offset=8)
        with pytest.raises(InvalidInput, match="offset"):
            client.list_memories(deep)
        walked = list(client.iter_memories(ListOptions(agent_id="writer", limit=4)))
        assert [m.id for m in walked] == [m.id for m in reversed(stored)]
        found = list(client.iter_search(SearchQuery(content_contains="step", limit=4, order="asc")))
        assert [m.id for m in found] == [m.id for m in stored]

        client.delete_memory(stored[0].id)
        with pytest.raises(NotFoundError):
            client.get_memory(stored[0].id)
        with pytest.raises(NotFoundError):
            client.delete_memory(stored[0].id)
        with pytest.raises(Forbidden):
            client.forget(agent_id="writer")
        admin = sync_app.loop.run(create_org_key(sync_app.runtime, permissions="admin", org_id=org))
        with sync_app.client(admin[1]) as boss:
            assert boss.forget(content_contains="step 1", dry_run=True).matched == 11
            with pytest.raises(InvalidInput, match="filter"):
                boss.forget()
            result = boss.forget(content_contains="step 1")
            assert (result.deleted, result.matched) == (11, None)

        exported = list(client.export())
        assert [m.content for m in exported] == [f"step {i}" for i in range(2, 10)] + [
            f"step {i}" for i in range(20, 23)
        ]
        path = tmp_path / "acme.ndjson"
        assert client.export_to(path, ExportParams(since="1h")) == 11
        lines = path.read_bytes().splitlines()
        assert [orjson.loads(line)["id"] for line in lines] == [m.id for m in exported]
        with pytest.raises(InvalidInput, match="since"):
            list(client.export(ExportParams(since="later")))


async def test_async_lifecycle(
    asgi: httpx.ASGITransport, runtime: Runtime, org_key: tuple[str, str]
) -> None:
    async with AsyncMemtrace(BASE, org_key[1], transport=asgi, backoff=0.01) as client:
        stored = (await client.add_memories_batch([_req(f"row {i}") for i in range(23)])).memories
        walked = [m.id async for m in client.iter_memories(ListOptions(limit=4, order="asc"))]
        assert walked == [m.id for m in stored]
        found = [m.id async for m in client.iter_search(SearchQuery(limit=4))]
        assert found == [m.id for m in reversed(stored)]
        await client.delete_memory(stored[5].id)
        with pytest.raises(NotFoundError):
            await client.delete_memory(stored[5].id)
        _, admin_key = await create_org_key(runtime, permissions="admin", org_id=org_key[0])
        async with AsyncMemtrace(BASE, admin_key, transport=asgi) as boss:
            assert (await boss.forget(content_contains="row 2", dry_run=True)).matched == 4
            assert (await boss.forget(content_contains="row 2")).deleted == 4
        exported = [m.content async for m in client.export(ExportParams(order="desc"))]
        assert len(exported) == 18 and exported[0] == "row 19"
