"""Which mode ``memtrace-mcp`` runs in, from its environment (docs/configuration.md)."""

from __future__ import annotations

import pytest

from mcp_server.stdio import DEFAULT_URL, ops_from_env, remote_url
from memtrace.client.ops import ClientOps
from memtrace.domain.errors import ConfigError


def test_modes() -> None:
    assert remote_url({"MEMTRACE_URL": "http://m:1", "MEMTRACE_DATA_DIR": "/d"}) == "http://m:1"
    assert remote_url({"MEMTRACE_API_KEY": "k"}) == DEFAULT_URL == "http://localhost:9100"
    assert remote_url({"MEMTRACE_DATA_DIR": "/d"}) is None
    assert remote_url({"MEMTRACE_STORAGE_DATA_DIR": "/d"}) is None
    assert remote_url({}, local=True) is None
    with pytest.raises(ConfigError, match="MEMTRACE_DATA_DIR"):
        remote_url({"MEMTRACE_URL": " ", "MEMTRACE_DATA_DIR": ""})


async def test_an_api_key_alone_is_remote_mode_on_localhost() -> None:
    async with ops_from_env({"MEMTRACE_API_KEY": "mtk_" + "A" * 43 + "="}) as ops:
        assert isinstance(ops, ClientOps)
        assert ops.client.base_url == DEFAULT_URL
