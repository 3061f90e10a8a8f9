"""Agent activity as a running process keeps it, for every metadata backend.

Auto-registration of a new agent is awaited (it exists before its first memory is
acknowledged), but ``last_active_at`` of known agents is coalesced in memory and flushed every
tick, so a memory write does not pay a second metadata write. Reads overlay what is pending, so
the process never shows a stale value. Which agents are known is remembered for the most
recently active ones only (bounded), so memory does not grow with every agent an org ever had:
an agent that fell out is registered again on its next write (an upsert).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from memtrace.metadata.records import AgentRow

AGENT_CACHE_SIZE = 50_000


class AgentActivity:
    def __init__(self, cache_size: int = AGENT_CACHE_SIZE) -> None:
        # (org, agent) of agents known to be registered, least recently active first
        self._known: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._max = cache_size
        self._pending: dict[tuple[str, str], int] = {}

    def note(self, org_id: str, agent_ids: Iterable[str], at: int) -> dict[str, int]:
        """Record activity of known agents; returns the unknown ones (to register, then
        :meth:`remember`)."""
        unknown: dict[str, int] = {}
        for agent in agent_ids:
            key = (org_id, agent)
            if key not in self._known:
                unknown[agent] = at
                continue
            self._known.move_to_end(key)
            if self._pending.get(key, -1) < at:
                self._pending[key] = at
        return unknown

    def remember(self, org_id: str, agent_ids: Iterable[str]) -> None:
        for agent in agent_ids:
            self._known[(org_id, agent)] = None
            self._known.move_to_end((org_id, agent))
        while len(self._known) > self._max:
            self._known.popitem(last=False)

    def take(self) -> dict[str, dict[str, int]]:
        """The pending ``last_active_at`` updates by org, handed over to be flushed."""
        pending, self._pending = self._pending, {}
        by_org: dict[str, dict[str, int]] = {}
        for (org_id, agent), at in pending.items():
            by_org.setdefault(org_id, {})[agent] = at
        return by_org

    def overlay(self, row: AgentRow) -> AgentRow:
        pending = self._pending.get((row.org_id, row.id))
        if pending is not None and (row.last_active_at or 0) < pending:
            row.last_active_at = pending
        return row

    def forget_agent(self, org_id: str, agent_id: str) -> None:
        self._pending.pop((org_id, agent_id), None)
        self._known.pop((org_id, agent_id), None)

    def forget_org(self, org_id: str) -> None:
        for key in [k for k in self._known if k[0] == org_id]:
            del self._known[key]
        for key in [k for k in self._pending if k[0] == org_id]:
            del self._pending[key]

    def known(self) -> int:
        """How many agents are remembered as registered."""
        return len(self._known)

    def forget_known(self) -> None:
        """Forget which agents exist (another process may have deleted some)."""
        self._known.clear()
