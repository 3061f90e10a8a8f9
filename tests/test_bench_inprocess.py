"""bench/inprocess.py runs end to end on tiny loads (its figures are not checked)."""

from __future__ import annotations

from bench.inprocess import ingest, remember


async def test_in_process_remember_and_ingest_run() -> None:
    single = await remember(64)
    assert single["requests"] == 64 and single["cpu_us_per_request"] > 0
    batched = await ingest(2000)
    assert batched["memories"] == 2000
    assert {"parse_us", "validate_us", "write_us", "response_us"} <= batched.keys()
