"""Three OpenAI agents — researcher, writer, reviewer — sharing one org's memory
(chat completions with function calling).

Run from the repository root (see cookbooks/openai/README.md):

    python -m cookbooks.openai.multi_agent            # needs OPENAI_API_KEY
    python -m cookbooks.openai.multi_agent --offline  # scripted model, no network

One memtrace session holds the task. Each agent starts with the session's context (what its
teammates stored so far) and its own memories from earlier runs in the system prompt, can
search across agents with the tools, and records its decisions in the session.
"""

from __future__ import annotations

import asyncio
from contextlib import ExitStack

from openai import AsyncOpenAI

from cookbooks._common import earlier_memories, memtrace_server, parse_args, require_llm_key, show
from cookbooks._offline import OfflineEndpoint
from cookbooks._scenarios import MULTI_GOAL, TEAM, multi_agent_script, multi_agent_system
from cookbooks.openai.agent_loop import run_agent
from memtrace import AsyncMemtrace, ContextOptions, CreateSessionRequest
from memtrace.client.ops import ClientOps

DEFAULT_MODEL = "gpt-5.4-mini"
# What the scripted model does with --offline (see cookbooks/_scenarios.py).
OFFLINE_SCRIPT = multi_agent_script(raw_json=True)


async def main() -> None:
    args = parse_args("OpenAI researcher/writer/reviewer sharing memtrace memory", DEFAULT_MODEL)
    require_llm_key("OPENAI_API_KEY", args.offline)
    with ExitStack() as stack:
        target = stack.enter_context(memtrace_server())
        if args.offline:  # the real client, pointed at the local scripted model
            endpoint = stack.enter_context(OfflineEndpoint(OFFLINE_SCRIPT))
            llm = AsyncOpenAI(base_url=f"{endpoint.url}/v1", api_key="offline", max_retries=0)
        else:
            llm = AsyncOpenAI()  # OPENAI_API_KEY from the environment
        async with AsyncMemtrace(target.url, target.api_key) as memtrace:
            session = await memtrace.create_session(
                CreateSessionRequest(agent_id=TEAM[0], metadata={"goal": MULTI_GOAL})
            )
            show("memtrace", f"team session {session.id}")
            for agent_id in TEAM:
                shared = await memtrace.get_session_context(session.id, ContextOptions())
                system = multi_agent_system(
                    agent_id,
                    session.id,
                    shared.context if shared.memory_count else "Nothing yet: you are first.",
                    await earlier_memories(memtrace, agent_id),
                )
                show(f"system → {agent_id}", system)
                await run_agent(
                    llm,
                    ClientOps(memtrace),
                    model=args.model,
                    agent_id=agent_id,
                    system=system,
                    task=f"Do your part of the team's task in session {session.id}.",
                    max_turns=args.max_turns,
                )
            await memtrace.close_session(session.id)
            final = await memtrace.get_session_context(session.id, ContextOptions())
        await llm.close()
    print("\nWhat the team stored:\n" + final.context)


if __name__ == "__main__":
    asyncio.run(main())
