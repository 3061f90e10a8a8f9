"""What every cookbook shares: options, the LLM key check, a memtrace server, tool execution.

memtrace server: with ``MEMTRACE_URL`` and ``MEMTRACE_API_KEY`` set, the cookbook uses that
server. Otherwise it starts a real ``memtrace serve`` in the background for the run, on a free
port of 127.0.0.1, with a persistent data directory (``MEMTRACE_COOKBOOK_DATA_DIR``, default
``~/.memtrace/cookbooks``) so a second run remembers the first. The first run creates an org
``cookbooks`` and a read+write key with the ``memtrace`` CLI and keeps the key in
``<data dir>/cookbook-api-key`` (mode 0600); later runs reuse it. Delete the directory to start
over.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from memtrace import AsyncMemtrace, ContextOptions
from memtrace.domain.errors import MemtraceError, NotFound
from memtrace.tools import MemoryOps, call_tool

DATA_DIR_ENV = "MEMTRACE_COOKBOOK_DATA_DIR"
DEFAULT_DATA_DIR = Path("~/.memtrace/cookbooks")
KEY_FILE = "cookbook-api-key"
COOKBOOK_ORG = "cookbooks"
DEFAULT_MAX_TURNS = 8
MAX_TOOL_RESULT_CHARS = 8000
START_TIMEOUT_S = 60.0


class CookbookError(SystemExit):
    """Stops the cookbook with a one-line message on stderr and exit status 2."""

    def __init__(self, message: str) -> None:
        print(f"error: {message}", file=sys.stderr)
        super().__init__(2)


def parse_args(description: str, default_model: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--offline",
        action="store_true",
        help="replay a scripted model through the real client, on a local endpoint (no network)",
    )
    parser.add_argument("--model", default=default_model, help=f"default {default_model}")
    parser.add_argument(
        "--max-turns",
        type=int,
        default=DEFAULT_MAX_TURNS,
        help=f"model calls per agent before giving up (default {DEFAULT_MAX_TURNS})",
    )
    args = parser.parse_args()
    if args.max_turns < 1:
        parser.error("--max-turns must be at least 1")
    return args


def require_llm_key(env_name: str, offline: bool) -> None:
    """Exit with a clear message when the model's key is missing and ``--offline`` is not given."""
    if not offline and not os.environ.get(env_name):
        raise CookbookError(
            f"{env_name} is not set. Export it to run against the real model, "
            "or pass --offline to replay a scripted model locally (no network, no key)."
        )


@dataclass(frozen=True)
class MemtraceTarget:
    url: str
    api_key: str


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cli(data_dir: Path, *args: str) -> str:
    """Run a ``memtrace`` admin command against ``data_dir``; returns its stdout."""
    result = subprocess.run(
        [sys.executable, "-m", "memtrace.cli", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise CookbookError(f"memtrace {args[0]} {args[1]} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def cookbook_key(data_dir: Path) -> str:
    """The cookbooks org's key in ``data_dir``: read from the key file, or created once."""
    path = data_dir / KEY_FILE
    if path.exists():
        return path.read_text().strip()
    org_id = _cli(data_dir, "org", "create", COOKBOOK_ORG)
    key = _cli(data_dir, "key", "create", "--org", org_id, "--name", "cookbooks")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    return key


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    with httpx.Client(timeout=1.0) as http:  # one client: httpx.get() builds one per call
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise CookbookError(f"memtrace serve exited early; see {log_path}")
            try:
                if http.get(f"{url}/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise CookbookError(
        f"memtrace serve did not start within {START_TIMEOUT_S:.0f}s; see {log_path}"
    )


@contextmanager
def memtrace_server() -> Iterator[MemtraceTarget]:
    """The server to use: ``MEMTRACE_URL``, or one started for this run and stopped after."""
    url = os.environ.get("MEMTRACE_URL")
    if url:
        api_key = os.environ.get("MEMTRACE_API_KEY")
        if not api_key:
            raise CookbookError("MEMTRACE_URL is set but MEMTRACE_API_KEY is not.")
        yield MemtraceTarget(url.rstrip("/"), api_key)
        return
    data_dir = Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR).expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    api_key = cookbook_key(data_dir)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = data_dir / "server.log"
    # The log holds the admin key a first start prints: keep it private like the key file.
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(log_fd, "ab") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "memtrace.cli",
                "serve",
                "--data-dir",
                str(data_dir),
                "--port",
                str(port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_healthy(url, proc, log_path)
        print(f"[memtrace] embedded server at {url} (data: {data_dir})")
        yield MemtraceTarget(url, api_key)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def run_tool(
    name: str, arguments: dict[str, Any] | str | None, ops: MemoryOps, agent_id: str
) -> tuple[str, bool]:
    """Run one tool call from a model; returns (text for the model, is_error).

    Malformed JSON, unknown tools and invalid arguments come back to the model as an error
    text it can correct, never as an exception that ends the run.
    """
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments or "{}")
        except json.JSONDecodeError as exc:
            return f"Error: the arguments are not valid JSON ({exc.msg}); send an object.", True
    if arguments is not None and not isinstance(arguments, dict):
        return "Error: the arguments must be a JSON object.", True
    try:
        result = await call_tool(name, arguments, ops, default_agent_id=agent_id)
    except MemtraceError as exc:
        return f"Error: {exc.message}", True
    return result.text[:MAX_TOOL_RESULT_CHARS], False


def show(who: str, text: str) -> None:
    """Print one transcript line (indented continuation lines)."""
    lines = text.strip().splitlines() or [""]
    print(f"[{who}] {lines[0]}")
    for line in lines[1:]:
        print(f"    {line}")


FIRST_RUN = "Nothing yet: this is your first run."


async def earlier_memories(client: AsyncMemtrace, agent_id: str, since: str = "30d") -> str:
    """The agent's context from earlier runs (markdown), for the system prompt."""
    try:
        context = await client.get_agent_context(
            agent_id, ContextOptions(since=since, max_tokens=1500)
        )
    except NotFound:  # the agent has never stored anything
        return FIRST_RUN
    return context.context if context.memory_count else FIRST_RUN
