"""Long soak variants of the fault tests (not run in CI): many kill -9 rounds under heavier
concurrent write load, and a long schemathesis run.

.venv/bin/python -m bench.soak --rounds 50 --writers 16 --acks-per-round 500
MEMTRACE_FUZZ_EXAMPLES=500 .venv/bin/python -m pytest tests/test_schemathesis.py
"""

from __future__ import annotations

import argparse
import signal
import tempfile
import time
from pathlib import Path

from tests.helpers import TEST_ENV, ServerProcess, wait_until
from tests.test_faults_embedded import Writers, all_ids


def sigkill_soak(rounds: int, writers: int, acks_per_round: int, data_dir: Path) -> None:
    """Kill -9 the server ``rounds`` times while ``writers`` threads write; then check that
    every acknowledged id is stored exactly once."""
    env = {"MEMTRACE_LIMITS_RATE_PER_S": "0", "MEMTRACE_STORAGE_SYNCHRONOUS": "FULL"}
    server = ServerProcess(data_dir, env={**TEST_ENV, **env})
    acked: list[str] = []
    started = time.monotonic()
    try:
        for n in range(rounds):
            server.start(timeout=120)
            assert server.admin_key
            with Writers(server.url, server.admin_key, f"soak {n}", threads=writers) as load:
                wait_until(lambda w=load: w.count() >= acks_per_round, timeout=300)  # type: ignore[misc]
                server.kill(signal.SIGKILL)
            acked += load.acked
            print(f"round {n + 1}/{rounds}: {len(load.acked)} acknowledged, total {len(acked)}")
        server.start(timeout=120)
        assert server.admin_key
        stored = all_ids(server.url, server.admin_key)
    finally:
        server.stop()
    duplicates = len(stored) - len(set(stored))
    missing = len(set(acked) - set(stored))
    print(
        f"{rounds} rounds, {len(acked)} acknowledged, {len(stored)} stored, "
        f"{missing} missing, {duplicates} duplicated, {time.monotonic() - started:.0f} s"
    )
    if missing or duplicates:
        raise SystemExit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--acks-per-round", type=int, default=300)
    parser.add_argument("--data-dir", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="memtrace-soak-") as tmp:
        sigkill_soak(
            args.rounds, args.writers, args.acks_per_round, args.data_dir or Path(tmp) / "data"
        )


if __name__ == "__main__":
    main()
