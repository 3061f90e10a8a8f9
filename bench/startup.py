"""Start-up cost: CPU time (user + system of the child process) of the commands users start most.

Each command runs ``--repeat`` times, interleaved with a bare ``python -c pass`` of the same
interpreter, so the figures move together with the machine's load and the differences compare
(bench/README.md, "Start-up"). ``--venv`` measures another checkout's virtualenv, e.g. the code
before a change:

    .venv/bin/python -m bench.startup
    .venv/bin/python -m bench.startup --venv ../before/.venv
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import orjson

from bench.common import print_table

COMMANDS: dict[str, list[str]] = {
    "python -c pass": ["{python}", "-c", "pass"],
    "import memtrace": ["{python}", "-c", "import memtrace"],
    "from memtrace import Memtrace (SDK)": ["{python}", "-c", "from memtrace import Memtrace"],
    "memtrace --help": ["{bin}/memtrace", "--help"],
    "memtrace org list": ["{bin}/memtrace", "org", "list", "--data-dir", "{data}"],
    # (``import mcp`` imports the SDK's server and client modules too)
    "import mcp (the MCP SDK alone)": ["{python}", "-c", "import mcp"],
}
# memtrace-mcp started, sent ``initialize``, its answer read, then stdin closed (it exits): the
# whole life of a process that answered one MCP client's first request.
MCP_COMMANDS: dict[str, dict[str, str]] = {
    "memtrace-mcp initialize (embedded)": {"MEMTRACE_DATA_DIR": "{data}"},
    # (remote mode opens no connection before the first tool call: nothing listens there)
    "memtrace-mcp initialize (remote)": {
        "MEMTRACE_URL": "http://127.0.0.1:9",
        "MEMTRACE_API_KEY": "mtk_bench",
    },
}
_INITIALIZE = orjson.dumps(
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "bench.startup", "version": "1"},
        },
    }
)


def cpu_seconds(argv: list[str]) -> float:
    """User + system CPU seconds of one run of ``argv`` (children's rusage difference)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    # (run outside any checkout, so ``python -c`` cannot import the package from the cwd)
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def mcp_initialize(command: str, env: dict[str, str]) -> tuple[float, float]:
    """(CPU seconds of the whole process, wall seconds until ``initialize`` was answered)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.Popen(
        [command],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "MEMTRACE_LOG_LEVEL": "WARNING", **env},
        cwd="/",
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(_INITIALIZE + b"\n")
    proc.stdin.flush()
    answer = proc.stdout.readline()
    answered = time.perf_counter() - started
    proc.stdin.close()
    proc.wait(timeout=60)
    if b'"result"' not in answer:
        raise SystemExit(f"{command}: no answer to initialize: {answer[:200]!r}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), answered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=Path(sys.prefix), help="virtualenv to run")
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/memtrace-bench-startup"))
    args = parser.parse_args()
    names = {
        "python": str(args.venv / "bin" / "python"),
        "bin": str(args.venv / "bin"),
        "data": str(args.data_dir),
    }
    runs = {name: [part.format(**names) for part in argv] for name, argv in COMMANDS.items()}
    env_note = os.environ.get("MEMTRACE_BENCH_LABEL", str(args.venv))
    subprocess.run(runs["memtrace org list"], check=True, capture_output=True)  # create the DB
    mcp_runs = {
        name: {k: v.format(**names) for k, v in env.items()} for name, env in MCP_COMMANDS.items()
    }
    mcp = names["bin"] + "/memtrace-mcp"
    samples: dict[str, list[float]] = {name: [] for name in [*runs, *mcp_runs]}
    answered: dict[str, list[float]] = {name: [] for name in mcp_runs}
    for _ in range(args.repeat):
        for name, argv in runs.items():
            samples[name].append(cpu_seconds(argv))
        for name, env in mcp_runs.items():
            cpu, wall = mcp_initialize(mcp, env)
            samples[name].append(cpu)
            answered[name].append(wall)
    bare = statistics.median(samples["python -c pass"])
    sdk = statistics.median(samples["import mcp (the MCP SDK alone)"])
    rows = [(f"start-up CPU, median of {args.repeat} ({env_note})", "ms (minus bare python)")]
    for name, values in samples.items():
        median = statistics.median(values)
        rows.append((name, f"{median * 1000:7.1f}   (+{(median - bare) * 1000:6.1f})"))
    for name, values in answered.items():
        over = statistics.median(samples[name]) - sdk
        rows.append((f"{name}: CPU over import mcp", f"{over * 1000:7.1f}"))
        rows.append((f"{name}: wall until answered", f"{statistics.median(values) * 1000:7.1f}"))
    print_table(rows)


if __name__ == "__main__":
    main()
