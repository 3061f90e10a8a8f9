"""Claude with memtrace memory: remember, decide, recall — and the next run starts from it.

Run from the repository root (see cookbooks/claude/README.md):

    python -m cookbooks.claude.single_agent            # needs ANTHROPIC_API_KEY
    python -m cookbooks.claude.single_agent --offline  # scripted model, no network

Before the first model call, the agent's context from earlier runs (its memories of the last
30 days, as memtrace's markdown briefing) goes into the system prompt: on a second run Claude
starts knowing what it learned and decided the first time.
"""

from __future__ import annotations

import asyncio
from contextlib import ExitStack

from anthropic import AsyncAnthropic

from cookbooks._common import (
    earlier_memories,
    memtrace_server,
    parse_args,
    require_llm_key,
    show,
)
from cookbooks._offline import OfflineEndpoint
from cookbooks._scenarios import SINGLE_TASK, single_agent_script, single_agent_system
from cookbooks.claude.agent_loop import run_agent
from memtrace import AsyncMemtrace
from memtrace.client.ops import ClientOps

AGENT_ID = "billing_assistant"
DEFAULT_MODEL = "claude-sonnet-4-6"
# What the scripted model does with --offline (see cookbooks/_scenarios.py).
OFFLINE_SCRIPT = single_agent_script(AGENT_ID, raw_json=False)


async def main() -> None:
    args = parse_args("Claude single agent with memtrace memory", DEFAULT_MODEL)
    require_llm_key("ANTHROPIC_API_KEY", args.offline)
    with ExitStack() as stack:
        target = stack.enter_context(memtrace_server())
        if args.offline:  # the real client, pointed at the local scripted model
            endpoint = stack.enter_context(OfflineEndpoint(OFFLINE_SCRIPT))
            llm = AsyncAnthropic(base_url=endpoint.url, api_key="offline", max_retries=0)
        else:
            llm = AsyncAnthropic()  # ANTHROPIC_API_KEY from the environment
        async with AsyncMemtrace(target.url, target.api_key) as memtrace:
            system = single_agent_system(AGENT_ID, await earlier_memories(memtrace, AGENT_ID))
            show("system", system)
            show("user", SINGLE_TASK)
            answer = await run_agent(
                llm,
                ClientOps(memtrace),
                model=args.model,
                agent_id=AGENT_ID,
                system=system,
                task=SINGLE_TASK,
                max_turns=args.max_turns,
            )
        await llm.close()
    print(f"\nFinal answer: {answer or '(none)'}")


if __name__ == "__main__":
    asyncio.run(main())
