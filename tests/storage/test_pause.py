"""The wait before finishing erasures (memtrace/storage/pause.py): a store that closes finishes
its pending purge at once instead of sleeping out the quiet period."""

from __future__ import annotations

import asyncio

from memtrace.storage.pause import Pause


async def test_wait_ends_after_a_pause_and_at_once_on_close() -> None:
    pause = Pause(quiet_s=0.05, max_delay_s=60.0)
    pause.touch()
    await asyncio.wait_for(pause.wait(), timeout=10)  # no event for 50 ms: done

    pause = Pause(quiet_s=3600.0, max_delay_s=7200.0)
    pause.touch()
    waiting = asyncio.create_task(pause.wait())
    await asyncio.sleep(0)
    assert not waiting.done()
    pause.close()
    await asyncio.wait_for(waiting, timeout=10)  # not an hour
    assert pause.closed
