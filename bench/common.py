"""Shared benchmark plumbing: a real `memtrace serve`, realistic data, latency statistics."""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

KEY_RE = re.compile(r"mtk_[A-Za-z0-9_-]{43}")
WORDS = [
    "crawl",
    "page",
    "product",
    "price",
    "customer",
    "ticket",
    "refund",
    "invoice",
    "order",
    "shipment",
    "email",
    "call",
    "meeting",
    "plan",
    "report",
    "summary",
    "error",
    "timeout",
    "retry",
    "deploy",
    "alert",
    "metric",
    "latency",
    "cache",
    "database",
    "query",
    "user",
    "account",
    "login",
    "payment",
    "subscription",
    "renewal",
    "churn",
    "upgrade",
    "feature",
    "bug",
    "fix",
    "test",
    "release",
    "review",
    "draft",
    "publish",
    "research",
    "source",
    "article",
    "quote",
    "lead",
    "prospect",
]
EVENTS = ["general", "page_crawled", "email_sent", "call_logged", "ticket_updated", "error"]
TYPES = ["episodic"] * 6 + ["decision", "entity", "session"]
TAGS = ["billing", "support", "sales", "crawl", "urgent", "vip", "eu", "us", "beta", "infra"]
DAY_US = 86_400_000_000
RARE_WORD = "zanzibarite"  # appears in about 1 in 20,000 memories


def wait_healthy(url: str, timeout_s: float) -> bool:
    """Poll ``url``/health until it answers 200, or 404 from a server without one (the bare
    baseline, bench/bare.py); False at the deadline. One client for the polls:
    ``httpx.get()`` builds a client per call, ~30 ms of CPU."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client() as http:
        while time.monotonic() < deadline:
            try:
                if http.get(f"{url}/health").status_code in (200, 404):
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A `memtrace serve` subprocess on a temporary (or given) data dir."""

    url: str
    key: str
    proc: subprocess.Popen[bytes] | None = None
    data_dir: Path | None = None
    _tmp: Any = field(default=None, repr=False)

    @classmethod
    def start(
        cls,
        data_dir: Path | None = None,
        env: dict[str, str] | None = None,
        key: str | None = None,
        *,
        args: tuple[str, ...] = (),
        argv: list[str] | None = None,
    ) -> Server:
        """Start ``memtrace serve`` (extra ``args``, e.g. ``--workers 2``), or ``argv`` with
        ``{port}`` in it (a baseline server that needs no key); ``key`` is the admin key of an
        existing deployment (a new one prints its key on first start)."""
        tmp = None
        if data_dir is None:
            tmp = tempfile.TemporaryDirectory(prefix="memtrace-bench-")
            data_dir = Path(tmp.name) / "data"
        port = free_port()
        log = data_dir.parent / f"serve-{port}.log"
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        exe = str(Path(sys.executable).parent / "memtrace")
        command = [exe, "serve", "--data-dir", str(data_dir), "--port", str(port), *args]
        if argv is not None:
            command = [part.format(port=port) for part in argv]
            key = key or ""
        proc = subprocess.Popen(
            command,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            # Benchmarks measure throughput, so the rate limits are off unless env sets them.
            env={
                "MEMTRACE_LIMITS_RATE_PER_S": "0",
                "MEMTRACE_LIMITS_ORG_RATE_PER_S": "0",
                **os.environ,
                **(env or {}),
            },
        )
        url = f"http://127.0.0.1:{port}"
        if not wait_healthy(url, 60):
            proc.kill()
            raise RuntimeError(f"server did not become healthy:\n{log.read_text()}")
        if key is None:
            found = KEY_RE.search(log.read_text())
            if not found:
                proc.kill()
                raise RuntimeError(f"server printed no key:\n{log.read_text()}")
            key = found.group(0)
        return cls(url, key, proc, data_dir, tmp)

    @classmethod
    def bare(cls) -> Server:
        """The baseline: a bare FastAPI endpoint on the same uvicorn settings (bench/bare.py)."""
        return cls.start(argv=[sys.executable, "-m", "bench.bare", "--port", "{port}"])

    def peak_rss_mb(self) -> float:
        """Peak resident set size of the server process (VmHWM), in MiB."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_seconds(self) -> float:
        """User + system CPU time the server has used so far: every thread of the process and
        of its worker processes (``--workers``), including children that already exited.

        On a shared, loaded machine throughput and latency move with the neighbours' load; CPU
        per request does much less, so before/after comparisons use it.
        """
        assert self.proc is not None
        return tree_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)
        if self._tmp is not None:
            self._tmp.cleanup()


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and every live descendant (with the children each
    has already reaped)."""
    total = 0.0
    for proc in [pid, *_descendants(pid)]:
        try:
            stat = Path(f"/proc/{proc}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        total += sum(int(fields[i]) for i in (11, 12, 13, 14)) / os.sysconf("SC_CLK_TCK")
    return total


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        for child in _children(todo.pop()):
            out.append(child)
            todo.append(child)
    return out


def memory(i: int, rng: random.Random, now_us: int, days: int, agents: int) -> dict[str, Any]:
    """One realistic memory: agent, optional session, type, event, tags, content, time."""
    agent = f"agent_{rng.randrange(agents):03d}"
    content = " ".join(rng.choices(WORDS, k=rng.randint(8, 30)))
    if rng.randrange(20_000) == 0:
        content += f" {RARE_WORD}"
    item: dict[str, Any] = {
        "agent_id": agent,
        "content": f"{content} #{i}",
        "memory_type": rng.choice(TYPES),
        "event_type": rng.choice(EVENTS),
        "time": _iso(now_us - rng.randrange(days * DAY_US)),
        "importance": round(rng.random(), 2),
    }
    if rng.random() < 0.5:
        item["tags"] = rng.sample(TAGS, rng.randint(1, 3))
    if rng.random() < 0.7:
        item["session_id"] = f"{agent}_s{rng.randrange(20)}"
    if item["memory_type"] == "decision":
        item["metadata"] = {"reasoning": " ".join(rng.choices(WORDS, k=8))}
    return item


def _iso(us: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(us // 1_000_000)) + (
        f".{us % 1_000_000:06d}Z"
    )


def batches(
    total: int, size: int, *, seed: int = 7, days: int = 30, agents: int = 100
) -> Iterator[bytes]:
    """Pre-encoded `{"memories": [...]}` request bodies (the client should cost little)."""
    rng = random.Random(seed)
    now = time.time_ns() // 1000 - 60_000_000
    for start in range(0, total, size):
        items = [memory(i, rng, now, days, agents) for i in range(start, min(total, start + size))]
        yield orjson.dumps({"memories": items})


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def print_table(rows: list[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name.ljust(width)}  {value}")
