"""LLM-ready markdown context (docs/context.md), as pure functions over memory records.

Layout: a ``## <Title> (<id>)`` header, then sections in a fixed order (empty ones left out),
newest first inside each section. Tokens are estimated as ``ceil(characters / 4)``, the usual
rule of thumb for English text with GPT/Claude tokenizers. When the whole context does not fit
``max_tokens``, items longer than 500 characters are cut with ``…`` and items are kept by
priority (errors and decisions, then higher importance, then newer) until the budget is used;
a footer says how many memories were left out. A decision's outcome (an ``outcome`` memory
whose ``parent_id`` is the decision) is shown on the decision's line, not as a line of its own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from memtrace.domain.memory import MemoryRecord
from memtrace.domain.models import OUTCOME_EVENT, OUTCOMES
from memtrace.domain.timestamps import format_seconds

SECTIONS: tuple[tuple[str, str], ...] = (
    ("actions", "Recent Actions"),
    ("decisions", "Decisions Made"),
    ("errors", "Errors"),
    ("entities", "Known Entities"),
    ("notes", "Session Notes"),
)
_SECTION_OF_TYPE = {
    "episodic": "actions",
    "decision": "decisions",
    "entity": "entities",
    "session": "notes",
}
ITEM_CUT = 500
# Characters of each content enough to render any context that does not fit whole: an item is
# shown whole only when everything fits, else cut to ITEM_CUT (the extra one tells the two
# apart). Reading memories this short keeps a context over 10,000 memories of 64 KiB a 5 MB read.
PREVIEW_CHARS = ITEM_CUT + 1
CHARS_PER_TOKEN = 4
NEUTRAL_IMPORTANCE = 0.5  # ranking of memories stored without an importance


def estimate_tokens(text: str) -> int:
    """Estimated token count: one token per four characters, rounded up."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


@dataclass(frozen=True, slots=True)
class RenderedContext:
    text: str
    memory_count: int
    token_estimate: int
    truncated: bool
    omitted_count: int


def section_of(memory: MemoryRecord) -> str:
    """Errors (by event type) win over the memory type; unknown types count as actions."""
    if memory.event_type == "error":
        return "errors"
    return _SECTION_OF_TYPE.get(memory.memory_type, "actions")


_METRICS_SHOWN = 8


@dataclass(frozen=True, slots=True)
class _Item:
    """One line of the context: a memory, and for a decision its latest outcome; ``weight``
    is how many memories the line stands for (a decision and the outcomes folded into it)."""

    memory: MemoryRecord
    outcome: MemoryRecord | None = None
    weight: int = 1


def _label(memory: MemoryRecord) -> str | None:
    """The outcome label of an outcome memory (docs/context.md, "Decision outcomes")."""
    label = (memory.metadata or {}).get("outcome")
    if memory.event_type == OUTCOME_EVENT and label in OUTCOMES:
        return str(label)
    return None


def _items(memories: Sequence[MemoryRecord]) -> list[_Item]:
    """The memories as lines: each outcome of a decision that is shown is folded into the
    decision's line (the latest one is shown), every other memory is a line of its own."""
    decisions = {m.id for m in memories if m.memory_type == "decision"}
    folded: dict[str, list[MemoryRecord]] = {}
    rest: list[MemoryRecord] = []
    for m in memories:
        if m.parent_id is not None and m.parent_id in decisions and _label(m) is not None:
            folded.setdefault(m.parent_id, []).append(m)
        else:
            rest.append(m)
    items = []
    for m in rest:
        outcomes = folded.get(m.id, [])
        latest = max(outcomes, key=lambda o: (o.time, o.id)) if outcomes else None
        items.append(_Item(m, latest, 1 + len(outcomes)))
    return items


def _outcome_text(outcome: MemoryRecord) -> str:
    text = f"{_label(outcome)} ({outcome.content})"
    metrics = (outcome.metadata or {}).get("metrics")
    if isinstance(metrics, dict) and metrics:
        shown = list(metrics.items())[:_METRICS_SHOWN]
        text += " [" + ", ".join(f"{k}={v}" for k, v in shown) + "]"
    return text


def _body(memory: MemoryRecord, outcome: MemoryRecord | None = None) -> str:
    label = _label(memory)
    if label is not None:  # an outcome whose decision is not shown
        return _outcome_text(memory)
    body = memory.content
    if memory.memory_type == "decision" and memory.metadata:
        reasoning = memory.metadata.get("reasoning")
        if reasoning not in (None, ""):
            body += f" — reasoning: {reasoning}"
    if outcome is not None:
        body += f" — outcome: {_outcome_text(outcome)}"
    return body


def _line(item: _Item, *, cut: bool) -> str:
    memory = item.memory
    body = _body(memory, item.outcome)
    if cut and len(body) > ITEM_CUT:
        body = body[:ITEM_CUT] + "…"
    # Continuation lines are indented so a multi-line memory stays one list item.
    body = body.replace("\r\n", "\n").replace("\n", "\n  ")
    return f"- [{format_seconds(memory.time)}] {memory.event_type}: {body}"


def _render(header: str, items: Sequence[tuple[MemoryRecord, str]], omitted: int) -> str:
    grouped: dict[str, list[tuple[int, str, str]]] = {key: [] for key, _ in SECTIONS}
    for memory, line in items:
        grouped[section_of(memory)].append((memory.time, memory.id, line))
    blocks = [header]
    for key, title in SECTIONS:
        entries = grouped[key]
        if entries:
            entries.sort(reverse=True)  # newest first; ids break ties like the stores do
            lines = "\n".join(line for _, _, line in entries)
            blocks.append(f"### {title} ({len(entries)})\n{lines}")
    if omitted:
        blocks.append(footer(omitted))
    return "\n\n".join(blocks)


def footer(omitted: int) -> str:
    return f"_({omitted} older memories omitted)_"


def _priority(item: _Item) -> tuple[int, float, int, str]:
    memory = item.memory
    important_kind = memory.event_type == "error" or memory.memory_type == "decision"
    importance = memory.importance if memory.importance is not None else NEUTRAL_IMPORTANCE
    return (0 if important_kind else 1, -importance, -memory.time, memory.id)


def _whole(header: str, memories: Sequence[MemoryRecord], max_tokens: int) -> str | None:
    """The context with every memory in full, or ``None`` as soon as it cannot fit (lines are
    not formatted past the budget)."""
    budget = max_tokens * CHARS_PER_TOKEN
    size = len(header)
    lines = []
    for item in _items(memories):
        line = _line(item, cut=False)
        size += len(line) + 1  # a lower bound of the rendered size
        if size > budget:
            return None
        lines.append((item.memory, line))
    text = _render(header, lines, 0)
    return text if estimate_tokens(text) <= max_tokens else None


def previews_to_complete(
    header: str, previews: Sequence[MemoryRecord], max_tokens: int
) -> tuple[int, list[int]] | None:
    """For memories read as previews (content cut to :data:`PREVIEW_CHARS`): ``None`` when the
    whole context cannot fit (the previews alone exceed the budget: the truncated rendering
    needs nothing more), else a lower bound of the whole context's size in characters and the
    indexes of the previews that were cut, whose full content decides whether it fits."""
    budget = max_tokens * CHARS_PER_TOKEN
    size = len(header)
    for item in _items(previews):
        size += len(_line(item, cut=False)) + 1
        if size > budget:
            return None
    return size, [i for i, m in enumerate(previews) if len(m.content) >= PREVIEW_CHARS]


def render_context(
    header: str,
    memories: Sequence[MemoryRecord],
    max_tokens: int,
    *,
    unseen: int = 0,
    may_fit: bool = True,
) -> RenderedContext:
    """Render memories as markdown within ``max_tokens``; formatting stops at the budget.

    Args:
        header: the first line, e.g. ``## Session Context (sess_abc)``.
        memories: candidate memories (any order).
        max_tokens: the budget, in estimated tokens.
        unseen: matching memories that were not even read (beyond the read cap); they count
            as omitted.
        may_fit: False when the caller knows the whole cannot fit (``memories`` may then be
            previews: only their first :data:`PREVIEW_CHARS` characters are used).
    """
    full = _whole(header, memories, max_tokens) if unseen == 0 and may_fit else None
    if full is not None:
        return RenderedContext(full, len(memories), estimate_tokens(full), False, 0)

    budget = max_tokens * CHARS_PER_TOKEN
    total = len(memories) + unseen
    # Reserve room for the footer with the largest count it could show.
    used = len(header) + len(footer(total)) + 2
    section_cost = {key: len(f"\n\n### {title} (000000)\n") for key, title in SECTIONS}
    opened: set[str] = set()
    kept: list[tuple[MemoryRecord, str]] = []
    shown = 0
    cut_any = False
    for item in sorted(_items(memories), key=_priority):
        line = _line(item, cut=True)
        section = section_of(item.memory)
        cost = len(line) + 1 + (0 if section in opened else section_cost[section])
        if used + cost > budget:
            break
        used += cost
        opened.add(section)
        kept.append((item.memory, line))
        shown += item.weight
        cut_any = cut_any or len(_body(item.memory, item.outcome)) > ITEM_CUT
    omitted = total - shown
    text = _render(header, kept, omitted)
    truncated = cut_any or omitted > 0
    return RenderedContext(text, shown, estimate_tokens(text), truncated, omitted)
