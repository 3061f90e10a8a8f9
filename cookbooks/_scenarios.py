"""The cookbooks' tasks, prompts and the scripts the ``--offline`` model replays.

The Claude and OpenAI cookbooks run the same scenarios so their transcripts can be compared.
The scripts also exercise the tool loops' error paths: a call with invalid arguments (OpenAI:
malformed JSON), and a call to a tool that does not exist, both come back as tool errors.
``"$SESSION"`` stands for the session id the scripted model reads from its prompt.
"""

from __future__ import annotations

from cookbooks._offline import SESSION_PLACEHOLDER, Step, ToolCall

# --- single agent ---------------------------------------------------------------------------

SINGLE_TASK = (
    "Acme's billing team (they run everything on PostgreSQL and have no ops headcount) asks "
    "which job queue to use for invoice generation. Check what you already know, store what "
    "you learn, record your decision with its reasoning, and answer in two sentences."
)
ACME_FACT = "Acme's billing team runs everything on PostgreSQL and has no dedicated ops headcount."


def single_agent_system(agent_id: str, earlier: str) -> str:
    """The system prompt: the role, then what the agent remembers from earlier runs."""
    return (
        f"You are {agent_id}, an engineering assistant with long-term memory (memtrace tools; "
        f"your agent_id is {agent_id}). Store facts you learn and record decisions with their "
        "reasoning; check memory before deciding.\n\n"
        f"## What you remember from earlier runs\n{earlier}"
    )


def single_agent_script(agent_id: str, *, raw_json: bool) -> list[Step]:
    """Recall, remember (plus two broken calls), decide, search, answer."""
    broken = (
        ToolCall("memtrace_remember", '{"agent_id": "' + agent_id + '", "content": ')
        if raw_json
        else ToolCall("memtrace_remember", {"agent_id": agent_id, "importance": "very"})
    )
    return [
        Step(
            "Let me check what I remember first.", [ToolCall("memtrace_recall", {"since": "30d"})]
        ),
        Step(
            "I'll store the facts about Acme.",
            [
                ToolCall(
                    "memtrace_remember",
                    {
                        "agent_id": agent_id,
                        "content": ACME_FACT,
                        "memory_type": "entity",
                        "event_type": "customer",
                        "tags": ["acme", "billing"],
                        "importance": 0.8,
                    },
                ),
                broken,
                ToolCall("memtrace_forget_everything", {}),
            ],
        ),
        Step(
            "Retrying the note without the mistakes.",
            [
                ToolCall(
                    "memtrace_remember",
                    {
                        "agent_id": agent_id,
                        "content": "Acme asked which job queue to use for invoice generation.",
                        "event_type": "request",
                        "tags": ["acme", "billing"],
                    },
                )
            ],
        ),
        Step(
            "Recording the decision.",
            [
                ToolCall(
                    "memtrace_decide",
                    {
                        "agent_id": agent_id,
                        "decision": "Recommend a PostgreSQL-backed job queue for Acme's invoices.",
                        "reasoning": "Acme already operates PostgreSQL and has no ops headcount "
                        "to run a separate broker.",
                        "tags": ["acme", "billing"],
                        "importance": 0.9,
                    },
                )
            ],
        ),
        Step(
            "Checking whether teammates decided anything related.",
            [ToolCall("memtrace_search", {"content_contains": "PostgreSQL", "limit": 5})],
        ),
        Step(
            "Use a PostgreSQL-backed job queue: you already run PostgreSQL, so there is no new "
            "system to operate. I've recorded this decision so future runs stay consistent."
        ),
    ]


# --- multi agent ----------------------------------------------------------------------------

TEAM = ("researcher", "writer", "reviewer")
MULTI_GOAL = "A one-paragraph brief for Acme: which job queue for invoice generation, and why."
ROLES = {
    "researcher": "Find the facts the brief needs and store each one as a memory in the session.",
    "writer": "Read what the researcher stored, write the brief, store it as a memory, and "
    "record the framing you chose as a decision.",
    "reviewer": "Read the brief and the team's decisions, then record an approve/revise "
    "decision with your reasoning.",
}
RESEARCH_FACTS = (
    "Acme's invoice run creates about 40,000 jobs on the first of each month.",
    "Acme already operates PostgreSQL 16 with point-in-time recovery.",
)
BRIEF = (
    "Brief: use a PostgreSQL-backed job queue for invoice generation. Acme already runs "
    "PostgreSQL 16 with point-in-time recovery, and 40,000 monthly jobs fit comfortably."
)


def multi_agent_system(agent_id: str, session_id: str, shared: str, earlier: str) -> str:
    """A team member's prompt: role, the shared session context, its own earlier runs."""
    return (
        f"You are the {agent_id} of a three-agent team (researcher, writer, reviewer) sharing "
        f"one memory (memtrace tools; your agent_id is {agent_id}). Goal: {MULTI_GOAL}\n"
        f"Your job: {ROLES[agent_id]}\n"
        f"Team session: {session_id}. Pass it as session_id when you remember or decide.\n\n"
        f"## What the team has stored in this session so far\n{shared}\n\n"
        f"## What you remember from earlier runs\n{earlier}"
    )


def multi_agent_script(*, raw_json: bool) -> list[Step]:
    """Researcher stores facts; writer reads them and drafts; reviewer reads and approves."""
    session = SESSION_PLACEHOLDER
    broken = (
        ToolCall("memtrace_decide", "{not json")
        if raw_json
        else ToolCall("memtrace_decide", {"agent_id": "writer", "decision": "Lead with cost"})
    )
    return [
        # researcher
        Step(
            "Storing what I found.",
            [
                ToolCall(
                    "memtrace_remember",
                    {
                        "agent_id": "researcher",
                        "content": fact,
                        "memory_type": "entity",
                        "event_type": "finding",
                        "session_id": session,
                        "tags": ["acme"],
                    },
                )
                for fact in RESEARCH_FACTS
            ],
        ),
        Step("Two facts stored for the writer."),
        # writer
        Step(
            "Let me read what the researcher stored in our session.",
            [ToolCall("memtrace_search", {"session_id": session, "agent_id": "researcher"})],
        ),
        Step(
            "Writing the brief and recording the framing.",
            [
                ToolCall(
                    "memtrace_remember",
                    {
                        "agent_id": "writer",
                        "content": BRIEF,
                        "event_type": "draft",
                        "session_id": session,
                        "tags": ["acme", "brief"],
                    },
                ),
                broken,
                ToolCall("memtrace_publish", {"text": BRIEF}),
            ],
        ),
        Step(
            "Recording the framing properly this time.",
            [
                ToolCall(
                    "memtrace_decide",
                    {
                        "agent_id": "writer",
                        "decision": "Frame the brief around reusing Acme's existing PostgreSQL.",
                        "reasoning": "The researcher found Acme already runs PostgreSQL 16 "
                        "with point-in-time recovery.",
                        "session_id": session,
                    },
                )
            ],
        ),
        Step("The brief is stored in the session."),
        # reviewer
        Step(
            "Reading the session briefing.",
            [ToolCall("memtrace_session_context", {"session_id": session})],
        ),
        Step(
            "Approving.",
            [
                ToolCall(
                    "memtrace_decide",
                    {
                        "agent_id": "reviewer",
                        "decision": "Approve the brief as written.",
                        "reasoning": "Its claims match the researcher's stored findings.",
                        "session_id": session,
                    },
                )
            ],
        ),
        Step("Approved: the brief matches the findings."),
    ]
