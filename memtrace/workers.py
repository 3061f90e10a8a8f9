"""What the worker processes of one ``memtrace serve --workers N`` share besides the data files.

The parent process creates a directory before it starts the workers and removes it when they
are gone. It holds the rate limiter's bucket table (:class:`SharedRateLimiter`) and
prometheus_client's per-process metric files (``PROMETHEUS_MULTIPROC_DIR``). Everything else
the workers share lives in the data directory's SQLite files: each org's store (SQLite's lock
serializes the workers' write transactions; dedup decisions and new ids are made inside them),
the metadata DB (keys, revocations, agents: every worker reloads on change within 0.5 s) and
each Arc outbox (one worker at a time ships it, see :mod:`memtrace.storage.arc.shipper`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from memtrace.auth.ratelimit import SharedRateLimiter

SHARE_ENV = "MEMTRACE_WORKER_SHARE"
METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"


@dataclass(frozen=True)
class WorkerShare:
    """The shared directory of one multi-worker server."""

    directory: Path

    @classmethod
    def create(cls) -> WorkerShare:
        """A fresh directory (in the parent, before any worker starts)."""
        directory = Path(tempfile.mkdtemp(prefix="memtrace-workers-"))
        (directory / "metrics").mkdir()
        return cls(directory)

    def export(self) -> None:
        """Name it in this process's environment, which the workers inherit."""
        os.environ[SHARE_ENV] = str(self.directory)
        os.environ[METRICS_ENV] = str(self.directory / "metrics")

    @classmethod
    def from_env(cls) -> WorkerShare | None:
        """The share of the server this worker belongs to, if any."""
        directory = os.environ.get(SHARE_ENV)
        return cls(Path(directory)) if directory else None

    def rate_limiter(self, rate: float, burst: int, namespace: str) -> SharedRateLimiter:
        return SharedRateLimiter(self.directory / "ratelimit", rate, burst, namespace=namespace)

    def remove(self) -> None:
        """Delete the directory (the parent, once every worker has exited)."""
        shutil.rmtree(self.directory, ignore_errors=True)
        for name in (SHARE_ENV, METRICS_ENV):
            os.environ.pop(name, None)
