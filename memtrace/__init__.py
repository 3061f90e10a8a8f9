"""memtrace: a multi-tenant temporal memory server for fleets of AI agents.

``from memtrace import Memtrace, AsyncMemtrace`` (and every model and exception of the client
SDK, as in the published ``memtrace-sdk``) loads :mod:`memtrace.client` on first use, so the
server and the CLI never import the SDK and ``import memtrace`` costs nothing
(docs/architecture.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.3.0"

if TYPE_CHECKING:
    from memtrace.client import *  # noqa: F403


def __getattr__(name: str) -> Any:
    # Every SDK export is a class name; submodules (lowercase) are never looked up here.
    if name[:1].isupper():
        from memtrace import client

        if name in client.__all__:
            return getattr(client, name)
    raise AttributeError(f"module 'memtrace' has no attribute {name!r}")
