"""Run the Arc emulator on 127.0.0.1 (a developer's local Arc, and the tests' real-HTTP Arc).

    python -m memtrace.testing.arc_server --port 8000 --token arc-dev --flush-delay-ms 100
    python -m memtrace.testing.arc_server --flush-delay-ms 1000 --lose-buffer-every-ms 2500

:class:`EmulatorServer` runs it under uvicorn in a background thread of the current process, so
a test can flip the emulator's switches (``fault``, ``flush_delay_s``, ``lose_buffer()``, ...)
and stop/restart it to refuse connections. An emulator in another process takes the same
switches at ``POST /_emulator/control``.
"""

from __future__ import annotations

import argparse
import socket
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from memtrace.testing.arc_emulator import ArcEmulator


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmulatorServer:
    """The emulator behind a real uvicorn server on 127.0.0.1 (stop/start keep the data).

    Requests go to whichever emulator ``self.emulator`` holds when they arrive, so one listener
    can serve a fresh emulator per test (a uvicorn stop costs ~0.2 s of its shutdown ticks).
    """

    def __init__(self, emulator: ArcEmulator, port: int | None = None) -> None:
        self.emulator = emulator
        self.port = port or _free_port()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    async def _app(self, scope: Any, receive: Any, send: Any) -> None:
        await self.emulator.app(scope, receive, send)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> EmulatorServer:
        config = uvicorn.Config(
            self._app,
            interface="asgi3",
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="arc-emulator", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"Arc emulator did not start on port {self.port}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Shut the server down: connections are refused until :meth:`start` again."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
            self._server = None
            self._thread = None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Arc emulator (DuckDB, in memory)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--token", default="arc-dev", help="accepted Bearer / x-api-key token")
    parser.add_argument(
        "--flush-delay-ms", type=int, default=0, help="rows become queryable after this delay"
    )
    parser.add_argument(
        "--lose-buffer-every-ms",
        type=int,
        default=0,
        help="fault: every this many ms, drop the rows not yet flushed (an Arc crash before its "
        "flush; writes were answered 204). Use with --flush-delay-ms.",
    )
    parser.add_argument(
        "--data-dir", type=Path, help="also keep Arc's Parquet files here (uncompressed)"
    )
    parser.add_argument(
        "--delete-enabled",
        action="store_true",
        help="turn Arc's delete API on (Arc's delete.enabled; off by default, as in Arc)",
    )
    args = parser.parse_args(argv)
    emulator = ArcEmulator(
        token=args.token or None,
        flush_delay_s=args.flush_delay_ms / 1000,
        data_dir=args.data_dir,
    )
    emulator.delete_enabled = args.delete_enabled
    if args.lose_buffer_every_ms > 0:
        _crash_periodically(emulator, args.lose_buffer_every_ms / 1000)
    uvicorn.run(emulator.app, host=args.host, port=args.port, log_level="info")


def _crash_periodically(emulator: ArcEmulator, every_s: float) -> None:
    def run() -> None:
        while True:
            time.sleep(every_s)
            emulator.lose_buffer()

    threading.Thread(target=run, name="arc-emulator-crashes", daemon=True).start()


if __name__ == "__main__":  # pragma: no cover
    main()
