"""A support agent on the OpenAI Agents SDK that remembers its customers between runs.

Run from the repository root (see cookbooks/openai_agents/README.md):

    python -m cookbooks.openai_agents.support_agent            # needs OPENAI_API_KEY
    python -m cookbooks.openai_agents.support_agent --offline  # scripted model, no network

- ``create_memtrace_tools`` gives the agent remember/recall/search/decide, scoped to its agent
  id and the conversation (the model cannot write as another agent);
- a persistent ``MemtraceSession`` stores the conversation in memtrace, so a new process
  continues it;
- the instructions carry the agent's context from earlier runs (facts and decisions).

The first run is the customer's first contact; a second run finds the stored conversation and
the customer comes back with a follow-up, answered from memory.
"""

from __future__ import annotations

import asyncio
from contextlib import ExitStack
from typing import Any

from agents import (
    Agent,
    Model,
    OpenAIChatCompletionsModel,
    RunConfig,
    Runner,
    Tool,
    set_tracing_disabled,
)
from agents.run_error_handlers import RunErrorHandlerInput
from openai import AsyncOpenAI

from cookbooks._common import memtrace_server, parse_args, require_llm_key, show
from cookbooks._offline import OfflineEndpoint, Step, ToolCall
from memtrace import AsyncMemtrace
from memtrace.integrations.openai_agents import MemtraceSession

AGENT_ID = "support_agent"
CONVERSATION_ID = "support_ticket_1042"
DEFAULT_MODEL = "gpt-5.4-mini"
INSTRUCTIONS = (
    "You are Acme Cloud's support agent. Before answering, search memory for what is known "
    "about the customer and the issue. Remember facts about customers as entities, and record "
    "each decision you make with its reasoning. Keep answers short."
)
FIRST_CONTACT = (
    "Hi, I'm Dana from Acme. Our invoice CSV exports use commas, but our spreadsheets expect "
    "semicolons. Can you fix that?"
)
FOLLOW_UP = "Hi again, Dana here. Is our export fixed, and what exactly did you change?"
DANA_FACT = "Dana (Acme) needs invoice CSV exports with semicolon delimiters."
DECISION = "Enable the semicolon delimiter on Acme's invoice CSV export."

# What the scripted model does with --offline: first contact, then the follow-up run. It also
# calls a tool that does not exist and sends malformed JSON once; both come back as tool errors.
OFFLINE_SCRIPT = [
    Step(
        tool_calls=[
            ToolCall("memtrace_search", {"content_contains": "CSV", "limit": 5}),
            ToolCall("crm_lookup", {"customer": "Acme"}),
        ]
    ),
    Step(
        tool_calls=[
            ToolCall(
                "memtrace_remember",
                {
                    "content": DANA_FACT,
                    "memory_type": "entity",
                    "event_type": "customer",
                    "tags": ["acme", "csv"],
                    "importance": 0.7,
                },
            ),
            ToolCall("memtrace_decide", '{"decision": "semicolons"'),
        ]
    ),
    Step(
        tool_calls=[
            ToolCall(
                "memtrace_decide",
                {
                    "decision": DECISION,
                    "reasoning": "Dana's spreadsheets use a locale that expects semicolons.",
                    "tags": ["acme", "csv"],
                },
            )
        ]
    ),
    Step("Done, Dana: Acme's invoice exports now use semicolons. I've noted it for next time."),
]
OFFLINE_FOLLOW_UP = [
    Step(tool_calls=[ToolCall("memtrace_recall", {"since": "30d", "memory_type": "decision"})]),
    Step(
        "Welcome back, Dana. Yes: as decided last time, Acme's invoice CSV export now uses "
        "semicolons as the delimiter."
    ),
]


def gave_up(data: RunErrorHandlerInput[Any]) -> str:
    """Max turns reached: end the run with a message instead of an exception."""
    return "(stopped: too many model calls without a final answer)"


async def main() -> None:
    args = parse_args("OpenAI Agents SDK support agent with memtrace memory", DEFAULT_MODEL)
    require_llm_key("OPENAI_API_KEY", args.offline)
    with ExitStack() as stack:
        target = stack.enter_context(memtrace_server())
        async with AsyncMemtrace(target.url, target.api_key) as memtrace:
            session = await MemtraceSession.create(memtrace, AGENT_ID, CONVERSATION_ID)
            returning = bool(await session.get_items())
            message = FOLLOW_UP if returning else FIRST_CONTACT
            model: str | Model = args.model
            if args.offline:  # the real openai client, pointed at the local scripted model
                set_tracing_disabled(True)
                script = OFFLINE_FOLLOW_UP if returning else OFFLINE_SCRIPT
                endpoint = stack.enter_context(OfflineEndpoint(script))
                llm = AsyncOpenAI(base_url=f"{endpoint.url}/v1", api_key="offline", max_retries=0)
                model = OpenAIChatCompletionsModel(model=args.model, openai_client=llm)
            tools: list[Tool] = [*session.tools()]
            agent = Agent(
                name=AGENT_ID,
                instructions=session.instructions(INSTRUCTIONS, since="30d"),
                tools=tools,
                model=model,
            )
            show("customer", message)
            result = await Runner.run(
                agent,
                message,
                session=session,
                max_turns=args.max_turns,
                run_config=RunConfig(tool_not_found_behavior="return_error_to_model"),
                error_handlers={"max_turns": gave_up},
            )
            for item in result.new_items:
                if item.type == "tool_call_item":
                    raw: Any = item.raw_item
                    show(f"{AGENT_ID} → {getattr(raw, 'name', '?')}", getattr(raw, "arguments", ""))
                elif item.type == "tool_call_output_item":
                    show("memtrace", str(item.output))
            show(AGENT_ID, str(result.final_output))
            history = await session.get_items()
    print(f"\nConversation {CONVERSATION_ID} now holds {len(history)} items in memtrace.")


if __name__ == "__main__":
    asyncio.run(main())
