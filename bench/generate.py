"""Generate a realistic org straight into a data dir, before any server runs.

Going through HTTP would make a 1M-memory benchmark spend most of its time loading. Instead the
generator opens the same :class:`~memtrace.runtime.Runtime` that ``memtrace serve`` uses (so the
metadata DB, the admin key, agents and sessions are real), and writes memories through the
store's own bulk path (:meth:`EmbeddedStore.write`, the writer thread and group commit every
REST batch uses) in batches of 5,000, with dedup disabled (the generated items are distinct by
construction) and ``synchronous=NORMAL`` (generation is not what is measured). The server
started afterwards on the same data dir sees an ordinary store: same schema, same indexes,
same FTS rows.

The org: ``agents`` agents, 5 sessions each, every memory type, event types, 0-3 tags, an
importance, metadata on decisions, content of 8-30 words (1 in 20,000 contains RARE_WORD),
times spread uniformly over the last ``days`` days, plus one session of exactly 500 memories
in the last hour (the session-context figure).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import DAY_US, EVENTS, RARE_WORD, TAGS, TYPES, WORDS
from memtrace.config import load_settings
from memtrace.domain.dedup import derive_dedup_key
from memtrace.domain.ids import DEFAULT_ORG_ID
from memtrace.domain.timestamps import now_us
from memtrace.runtime import Runtime
from memtrace.storage.base import NewMemory

SESSIONS_PER_AGENT = 5
CONTEXT_SESSION_SIZE = 500
_BATCH = 5000


@dataclass(frozen=True)
class GeneratedOrg:
    data_dir: Path
    key: str
    memories: int
    context_session: str
    seconds: float
    cpu_seconds: float  # this process, all threads: steadier than wall time on a loaded machine


def _content(rng: random.Random, i: int) -> str:
    words = " ".join(rng.choices(WORDS, k=rng.randint(8, 30)))
    if rng.randrange(20_000) == 0:
        words += f" {RARE_WORD}"
    return f"{words} #{i}"


def _memory(
    i: int,
    rng: random.Random,
    now: int,
    days: int,
    agents: list[str],
    sessions: dict[str, list[str]],
) -> NewMemory:
    agent = rng.choice(agents)
    memory_type = rng.choice(TYPES)
    event_type = rng.choice(EVENTS)
    session = rng.choice(sessions[agent]) if rng.random() < 0.7 else None
    content = _content(rng, i)
    tags = tuple(rng.sample(TAGS, rng.randint(1, 3))) if rng.random() < 0.5 else ()
    return NewMemory(
        time=now - rng.randrange(days * DAY_US),
        agent_id=agent,
        session_id=session,
        memory_type=memory_type,
        event_type=event_type,
        content=content,
        metadata={"reasoning": " ".join(rng.choices(WORDS, k=8))}
        if memory_type == "decision"
        else None,
        tags=tags,
        importance=round(rng.random(), 2),
        dedup_key=derive_dedup_key(agent, event_type, session, content),
        parent_id=None,
    )


async def _generate(
    data_dir: Path,
    memories: int,
    agents: int,
    days: int,
    seed: int,
    overrides: dict[str, Any] | None = None,
) -> tuple[str, str]:
    settings = load_settings(
        overrides={
            "storage.data_dir": data_dir,
            "storage.synchronous": "NORMAL",
            **(overrides or {}),
        }
    )
    runtime = Runtime(settings)
    key = await runtime.start(bootstrap_key=True)
    if key is None:
        raise RuntimeError(f"{data_dir} already holds a deployment; give an empty data dir")
    try:
        now = now_us() - 60_000_000
        org = DEFAULT_ORG_ID
        agent_ids = [f"agent_{n:03d}" for n in range(agents)]
        for agent in agent_ids:
            await runtime.catalog.register_agent(org, agent, f"bench agent {agent}", None, now)
        sessions: dict[str, list[str]] = {}
        for agent in agent_ids:
            sessions[agent] = [
                (await runtime.catalog.create_session(org, agent, {"n": n}, now)).id
                for n in range(SESSIONS_PER_AGENT)
            ]
        context_session = (
            await runtime.catalog.create_session(org, agent_ids[1], {"bench": "context"}, now)
        ).id
        store = await runtime.stores.get(org)
        rng = random.Random(seed)
        for start in range(0, memories, _BATCH):
            items = [
                _memory(i, rng, now, days, agent_ids, sessions)
                for i in range(start, min(memories, start + _BATCH))
            ]
            await store.write(items, None)
        steps = []
        for i in range(CONTEXT_SESSION_SIZE):
            content = f"step {i} of the task: " + " ".join(rng.choices(WORDS, k=12))
            event_type = "error" if i % 50 == 0 else "step"
            steps.append(
                NewMemory(
                    time=now - (CONTEXT_SESSION_SIZE - i) * 5_000_000,
                    agent_id=agent_ids[1],
                    session_id=context_session,
                    memory_type=("episodic", "decision", "entity")[i % 3],
                    event_type=event_type,
                    content=content,
                    metadata=None,
                    tags=(),
                    importance=None,
                    dedup_key=derive_dedup_key(agent_ids[1], event_type, context_session, content),
                    parent_id=None,
                )
            )
        await store.write(steps, None)
    finally:
        await runtime.close()
    return key, context_session


def generate(
    data_dir: Path,
    memories: int,
    *,
    agents: int = 100,
    days: int = 30,
    seed: int = 7,
    overrides: dict[str, Any] | None = None,
) -> GeneratedOrg:
    """Create a deployment in the (empty) ``data_dir`` holding one org of ``memories``;
    ``overrides`` are settings (e.g. a PostgreSQL deployment: postgres.url and
    storage.default_backend)."""
    started, cpu = time.perf_counter(), time.process_time()
    key, session = asyncio.run(_generate(data_dir, memories, agents, days, seed, overrides))
    return GeneratedOrg(
        data_dir,
        key,
        memories + CONTEXT_SESSION_SIZE,
        session,
        time.perf_counter() - started,
        time.process_time() - cpu,
    )
