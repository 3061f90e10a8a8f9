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
from pathlib import Path

from bench.common import print_table

COMMANDS: dict[str, list[str]] = {
    "python -c pass": ["{python}", "-c", "pass"],
    "import memtrace": ["{python}", "-c", "import memtrace"],
    "from memtrace import Memtrace (SDK)": ["{python}", "-c", "from memtrace import Memtrace"],
    "memtrace --help": ["{bin}/memtrace", "--help"],
    "memtrace org list": ["{bin}/memtrace", "org", "list", "--data-dir", "{data}"],
}


def cpu_seconds(argv: list[str]) -> float:
    """User + system CPU seconds of one run of ``argv`` (children's rusage difference)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    # (run outside any checkout, so ``python -c`` cannot import the package from the cwd)
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


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
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeat):
        for name, argv in runs.items():
            samples[name].append(cpu_seconds(argv))
    bare = statistics.median(samples["python -c pass"])
    rows = [(f"start-up CPU, median of {args.repeat} ({env_note})", "ms (minus bare python)")]
    for name, values in samples.items():
        median = statistics.median(values)
        rows.append((name, f"{median * 1000:7.1f}   (+{(median - bare) * 1000:6.1f})"))
    print_table(rows)


if __name__ == "__main__":
    main()
