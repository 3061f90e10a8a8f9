"""``memtrace serve --workers N``: N server processes accepting connections on one port.

The parent prepares the deployment once (metadata schema, ``org_default``, the first admin
key, printed once), creates the directory the workers share (``memtrace.runtime.WorkerShare``:
rate-limit buckets, metric files), binds the port and hands it to uvicorn's process supervisor,
which starts the workers (``spawn``: fresh interpreters), replaces one that dies, and on
SIGTERM/SIGINT stops them all gracefully (each drains its requests and closes its stores). A
worker dies with the parent: killed with SIGKILL, the parent takes its workers with it, as a
single-process server would stop (Linux; elsewhere a worker notices within a second).

How the workers stay correct together: docs/configuration.md, "Workers".
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from memtrace.config import Settings

SETTINGS_ENV = "MEMTRACE_WORKER_SETTINGS"
PARENT_ENV = "MEMTRACE_WORKER_PARENT"
_PR_SET_PDEATHSIG = 1

log = logging.getLogger("memtrace.workers")


def default_workers() -> int:
    """One worker per CPU this process may run on, at most 8 (``server.workers = 0``)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


async def _prepare(settings: Settings) -> str | None:
    """Migrate the metadata DB and create the first admin key, once, before any worker runs."""
    from memtrace.runtime import Runtime

    runtime = Runtime(settings)
    try:
        return await runtime.start(bootstrap_key=True)
    finally:
        await runtime.close()


def run_workers(settings: Settings, workers: int, announce: Any) -> None:
    """Serve with ``workers`` processes until SIGTERM/SIGINT (``announce(key)`` prints the
    first-run banner)."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from http_api.serving import WORKER_PROTOCOL, uvicorn_options
    from memtrace.runtime import WorkerShare

    announce(asyncio.run(_prepare(settings)))
    share = WorkerShare.create()
    share.export()
    os.environ[SETTINGS_ENV] = settings.model_dump_json()
    os.environ[PARENT_ENV] = str(os.getpid())
    options = uvicorn_options(settings)
    options["http"] = WORKER_PROTOCOL  # a class the workers import (settings applied there)
    config = uvicorn.Config(
        "memtrace.cli.workers:worker_app",
        factory=True,
        workers=workers,
        host=settings.server.host,
        port=settings.server.port,
        log_config=None,
        access_log=settings.log.level == "DEBUG",
        timeout_graceful_shutdown=int(settings.server.graceful_timeout_s),
        **options,
    )
    sock = config.bind_socket()
    try:
        Multiprocess(config, sockets=[sock]).run()
    finally:
        sock.close()
        share.remove()


def worker_app() -> Any:
    """uvicorn's app factory, run once in each worker process (returns the ASGI app; the
    web framework stays out of this module's imports, docs/architecture.md)."""
    from http_api.app import create_app
    from http_api.serving import configure_worker_protocol
    from mcp_server.http import McpHttpAddon
    from memtrace.config import Settings
    from memtrace.runtime import Runtime, WorkerShare
    from memtrace.telemetry.logs import configure_logging

    _die_with_parent(int(os.environ[PARENT_ENV]))
    settings = Settings.model_validate_json(os.environ[SETTINGS_ENV])
    configure_logging(settings.log)
    configure_worker_protocol(settings)
    runtime = Runtime(settings, share=WorkerShare.from_env())
    return create_app(runtime, addons=[McpHttpAddon(runtime)])


def _die_with_parent(parent: int) -> None:
    """Be killed when the parent dies (Linux ``PR_SET_PDEATHSIG``), else watch for it."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
            if os.getppid() != parent:  # it died before prctl took effect
                os._exit(1)
            return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="memtrace-parent-watch", daemon=True).start()
