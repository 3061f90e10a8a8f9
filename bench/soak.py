"""Long soak variants of the fault tests (not run in CI): many kill -9 rounds under heavier
concurrent write load, and a long schemathesis run.

.venv/bin/python -m bench.soak --rounds 50 --writers 16 --acks-per-round 500
.venv/bin/python -m bench.soak --backend arc --rounds 20   # an org bound to the Arc emulator
MEMTRACE_FUZZ_EXAMPLES=500 .venv/bin/python -m pytest tests/test_schemathesis.py
"""

from __future__ import annotations

import argparse
import signal
import tempfile
import time
from pathlib import Path

from memtrace.auth.crypto import generate_master_key
from memtrace.testing.arc_emulator import ArcEmulator
from memtrace.testing.arc_server import EmulatorServer
from tests.helpers import TEST_ENV, ServerProcess, wait_until
from tests.test_faults_arc import FAST, arc_ids, bound_org
from tests.test_faults_embedded import Writers, all_ids


def sigkill_soak(
    rounds: int, writers: int, acks_per_round: int, data_dir: Path, backend: str = "embedded"
) -> None:
    """Kill -9 the server ``rounds`` times while ``writers`` threads write; then check that
    every acknowledged id is stored exactly once (on Arc: listed once, shipped at least once;
    Arc refuses writes every other round so kills hit a non-empty outbox)."""
    env = {
        "MEMTRACE_LIMITS_RATE_PER_S": "0",
        "MEMTRACE_LIMITS_ORG_RATE_PER_S": "0",
        "MEMTRACE_STORAGE_SYNCHRONOUS": "FULL",
    }
    arc: EmulatorServer | None = None
    key = ""
    if backend == "arc":
        arc = EmulatorServer(ArcEmulator()).start()
        env = {**env, **FAST, "MEMTRACE_MASTER_KEY": generate_master_key()}
        _, key = bound_org(data_dir, {**TEST_ENV, **env}, arc.url)
    server = ServerProcess(data_dir, env={**TEST_ENV, **env})
    acked: list[str] = []
    started = time.monotonic()
    try:
        for n in range(rounds):
            if arc is not None:
                arc.emulator.fault = "503" if n % 2 else None
            server.start(timeout=120)
            key = key or server.admin_key or ""
            with Writers(server.url, key, f"soak {n}", threads=writers) as load:
                wait_until(lambda w=load: w.count() >= acks_per_round, timeout=300)  # type: ignore[misc]
                server.kill(signal.SIGKILL)
            acked += load.acked
            print(f"round {n + 1}/{rounds}: {len(load.acked)} acknowledged, total {len(acked)}")
        if arc is not None:
            arc.emulator.fault = None
        server.start(timeout=120)
        stored = all_ids(server.url, key)
        if arc is not None:
            wait_until(lambda: set(acked) <= set(arc_ids(arc)), timeout=600)
            print(f"Arc holds {len(arc_ids(arc))} rows for {len(set(arc_ids(arc)))} memories")
    finally:
        server.stop()
        if arc is not None:
            arc.stop()
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
    parser.add_argument("--backend", choices=["embedded", "arc"], default="embedded")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="memtrace-soak-") as tmp:
        sigkill_soak(
            args.rounds,
            args.writers,
            args.acks_per_round,
            args.data_dir or Path(tmp) / "data",
            args.backend,
        )


if __name__ == "__main__":
    main()
