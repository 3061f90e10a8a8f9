"""The Python client SDK: :class:`AsyncMemtrace` now, the sync client alongside."""

from memtrace.client.async_ import AsyncMemtrace

__all__ = ["AsyncMemtrace"]
