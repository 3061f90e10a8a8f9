"""Shared test helpers: keys for new orgs, the CLI in process and as a subprocess, and a real
``memtrace serve`` subprocess."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner

from memtrace.auth.keys import new_api_key
from memtrace.auth.permissions import parse_permissions
from memtrace.cli import cli
from memtrace.domain.ids import new_org_id
from memtrace.domain.timestamps import now_us
from memtrace.runtime import Runtime

ROOT = Path(__file__).resolve().parent.parent
KEY_RE = re.compile(r"mtk_[A-Za-z0-9_-]{43}")
TEST_ENV = {
    "MEMTRACE_AUTH_BCRYPT_ROUNDS": "4",
    "MEMTRACE_STORAGE_SYNCHRONOUS": "NORMAL",
    # Tests drive bursts from one key; tests/test_abuse_limits.py turns the limiters on.
    "MEMTRACE_LIMITS_RATE_PER_S": "0",
    "MEMTRACE_LIMITS_ORG_RATE_PER_S": "0",
    # One process per server (starts in a second, not several on a loaded machine);
    # tests/test_workers.py and the fault loops run several.
    "MEMTRACE_SERVER_WORKERS": "1",
}


async def create_org_key(
    runtime: Runtime,
    org_name: str | None = None,
    permissions: str = "read,write",
    *,
    org_id: str | None = None,
) -> tuple[str, str]:
    """Create an org (unless ``org_id`` names an existing one) and a key; returns both."""
    now = now_us()
    target = org_id or new_org_id()
    record, plain = new_api_key(
        target,
        "test",
        parse_permissions(permissions),
        rounds=runtime.settings.auth.bcrypt_rounds,
        now=now,
    )

    if org_id is None:
        await runtime.catalog.create_org(
            target, org_name or "test-" + target.removeprefix("org_"), now
        )
    await runtime.catalog.add_key(record)
    await runtime.reload()
    return target, plain


def wait_until(check: Callable[[], bool], timeout: float = 10.0, interval: float = 0.05) -> None:
    """Poll ``check`` until it is true or the deadline passes (no blind sleeps in tests)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def fresh_store_health(url: str, org_id: str, timeout: float = 30.0) -> dict[str, Any]:
    """The org's entry in ``/health`` from a check that started after this call: the report
    is kept current by a background task, so an earlier one may predate the caller's writes."""
    started = time.monotonic()
    found: dict[str, Any] = {}

    def fresh() -> bool:
        entry = httpx.get(f"{url}/health", timeout=10).json()["stores"].get(org_id)
        if entry is None or entry.get("checked_ago_s", 1e9) >= time.monotonic() - started:
            return False
        found.update(entry)
        return True

    wait_until(fresh, timeout=timeout)
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def memtrace_cmd(*args: str) -> list[str]:
    """The installed ``memtrace`` console script of this interpreter's environment."""
    return [str(Path(sys.executable).parent / "memtrace"), *args]


def invoke(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run a CLI command in process (click's runner: the console script's code without the
    ~0.7 s of CPU a new interpreter costs); returns (exit code, stdout, stderr)."""
    result = CliRunner().invoke(cli, [*args, "--data-dir", str(data_dir)], env=env)
    return result.exit_code, result.stdout, result.stderr


def admin(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """An admin command that must succeed (test setup), in process; returns its stdout."""
    code, out, err = invoke(data_dir, *args, env=env)
    assert code == 0, f"memtrace {' '.join(args)} failed: {err}"
    return out.strip()


def new_tenant(
    data_dir: Path, name: str, permissions: str = "read,write", env: dict[str, str] | None = None
) -> tuple[str, str]:
    """A new org named ``name`` and a key for it, made with the CLI in process: (org id, key)."""
    org_id = admin(data_dir, "org", "create", name, env=env)
    key = admin(
        data_dir, "key", "create", "--org", org_id, "--name", "test",
        "--permissions", permissions, env=env,
    )  # fmt: skip
    return org_id, key


def run_cli(
    *args: str, data_dir: Path, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a CLI command in a subprocess against ``data_dir``."""
    full_env = {**os.environ, **TEST_ENV, **(env or {})}
    result = subprocess.run(
        memtrace_cmd(*args, "--data-dir", str(data_dir)),
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"memtrace {' '.join(args)} failed: {result.stderr}")
    return result


class ServerProcess:
    """A real ``memtrace serve`` on 127.0.0.1 and a free port, started as a subprocess."""

    def __init__(
        self, data_dir: Path, *, env: dict[str, str] | None = None, args: tuple[str, ...] = ()
    ) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.env = {**os.environ, **TEST_ENV, **(env or {})}
        self.args = args
        self.proc: subprocess.Popen[str] | None = None
        self.output = ""
        self.admin_key: str | None = None
        self.log_path = data_dir.parent / f"server-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> ServerProcess:
        # free_port() can race with other test runs on the machine: a server that lost the
        # bind would otherwise pass the health check against someone else's server.
        for _ in range(3):
            if self._start_once(timeout):
                return self
            self.port = free_port()
        raise AssertionError(f"server could not bind a free port:\n{self.log_path.read_text()}")

    def _start_once(self, timeout: float) -> bool:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir.parent / f"server-{self.port}.log"
        log = self.log_path.open("a")
        self.proc = subprocess.Popen(
            memtrace_cmd(
                "serve", "--data-dir", str(self.data_dir), "--port", str(self.port), *self.args
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
        )
        running = "Uvicorn running on"  # logged only once the port is bound
        deadline = time.monotonic() + timeout
        # One client for the polls: httpx.get() builds a client (and an SSL context) per call,
        # ~30 ms of CPU, which adds up to seconds while a server starts on a loaded machine.
        with httpx.Client(timeout=1.0) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    output = self.log_path.read_text()
                    if "address already in use" in output:
                        found = KEY_RE.search(output)  # the lifespan ran before the bind failed
                        if found and self.admin_key is None:
                            self.admin_key = found.group(0)
                        return False
                    raise AssertionError(f"server exited early:\n{self.log_path.read_text()}")
                if running in self.log_path.read_text() and self._healthy(http):
                    break
                time.sleep(0.05)
            else:
                raise AssertionError(f"server did not start:\n{self.log_path.read_text()}")
        self.output = self.log_path.read_text()
        found = KEY_RE.search(self.output)
        if found and self.admin_key is None:
            self.admin_key = found.group(0)
        return True

    def _healthy(self, http: httpx.Client) -> bool:
        try:
            return http.get(f"{self.url}/health").status_code == 200
        except httpx.TransportError:
            return False

    def wait_for_key(self, key: str) -> None:
        """Wait until the running server accepts ``key`` (it polls the metadata DB)."""
        with httpx.Client(base_url=self.url, headers={"x-api-key": key}, timeout=10) as http:
            wait_until(lambda: http.get("/api/v1/agents").status_code != 401, timeout=30)

    def kill(self, sig: int = signal.SIGKILL) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill(signal.SIGTERM)


@dataclass(frozen=True)
class Tenant:
    """An org of its own on a running server (the ``tenant`` fixture), and a read+write key."""

    server: ServerProcess
    org_id: str
    key: str

    @property
    def url(self) -> str:
        return self.server.url


def readme_block(name: str) -> str:
    """The bash block between ``<!-- name:start -->`` and ``<!-- name:end -->`` in README.md."""
    readme = (ROOT / "README.md").read_text()
    match = re.search(
        rf"<!-- {name}:start -->\n```bash\n(.*?)```\n<!-- {name}:end -->", readme, re.S
    )
    assert match, f"README has no {name} block"
    return match.group(1)


def check_walkthrough(port: int, key: str) -> None:
    """Run the README's curl walk-through as written against the server on ``port``."""
    script = readme_block("walkthrough")
    script = script.replace("export MEMTRACE_KEY=mtk_...", f"export MEMTRACE_KEY={key}")
    script = script.replace("127.0.0.1:9100", f"127.0.0.1:{port}")
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    # every curl printed one JSON document; pick them apart
    decoder = json.JSONDecoder()
    docs, text = [], result.stdout.strip()
    while text:
        doc, end = decoder.raw_decode(text)
        docs.append(doc)
        text = text[end:].strip()
    remembered, recalled, decision, context = docs
    assert remembered["id"].startswith("mem_") and remembered["agent_id"] == "crawler"
    assert [m["id"] for m in recalled["memories"]] == [remembered["id"]]
    assert decision["memory_type"] == "decision"
    assert "Skip pagination — reasoning: only 2 pages deep" in context["context"]
    assert context["context"].startswith("## Session Context (sess_")


async def open_store_of(runtime: Runtime, org_id: str) -> Any:
    """The org's open store itself (an ``ArcStore``, ``EmbeddedStore``…), for tests that
    inspect it; the service sees it through a lease (``OrgStore``)."""
    async with runtime.stores.use(org_id) as store:
        return store
