"""The metadata protocol: what the server needs from the store of orgs, keys, Arc bindings,
agents and sessions. :class:`memtrace.metadata.catalog.Catalog` implements it on SQLite; a second
backend implements the same methods with the same semantics.

Every agent and session operation is scoped by ``org_id``; times are integer microseconds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from memtrace.auth.keys import ApiKeyRecord
from memtrace.metadata.bindings import ArcBinding
from memtrace.metadata.goimport import LegacyArc
from memtrace.metadata.records import AgentRow, Org, SessionRow


@dataclass(frozen=True, slots=True)
class AdminSnapshot:
    """What a running server reloads when an administrator changed the metadata."""

    keys: list[ApiKeyRecord]
    orgs: list[Org]
    bindings: dict[str, ArcBinding]
    agents_deleted: int = 0  # agent deletions so far, by any process


class MetadataStore(Protocol):
    """Metadata operations of a running server. Implementations must be safe for concurrent
    use from one event loop."""

    async def open(self) -> None:
        """Connect and bring the schema to the current version (safe when several processes
        start at once)."""
        ...

    async def close(self) -> None:
        """Persist pending agent activity and release connections."""
        ...

    async def changed(self) -> bool:
        """True when anyone (any process) committed a change since the previous call."""
        ...

    async def ping(self) -> None:
        """Raise unless the store answers."""
        ...

    async def bootstrap(
        self, *, default_org: bool, admin_key: ApiKeyRecord | None, now: int
    ) -> bool:
        """Create ``org_default`` on a new deployment (always, with ``default_org``) and add
        ``admin_key`` if there is no key at all; True when the key was added."""
        ...

    async def adopt_legacy_arc(self, legacy: LegacyArc, now: int) -> bool:
        """Bind ``org_default`` to the Go memtrace's legacy ``[arc]`` block when no org has an
        Arc binding yet (creating ``org_default`` if needed); True when it did."""
        ...

    async def list_orgs(self) -> list[Org]: ...

    async def admin_snapshot(self) -> AdminSnapshot:
        """Keys, orgs and bindings in one consistent read that never waits behind tenants'
        reads (revocation depends on it, docs/security.md)."""
        ...

    def forget_org(self, org_id: str) -> None:
        """Drop what is cached about an org that was deleted."""
        ...

    async def note_activity(self, org_id: str, agent_ids: Iterable[str], at: int) -> None:
        """Register unknown agents before returning; record activity of known ones (may be
        coalesced until :meth:`flush_activity`)."""
        ...

    async def flush_activity(self) -> None: ...

    async def register_agent(
        self,
        org_id: str,
        agent_id: str,
        description: str | None,
        config: dict[str, Any] | None,
        now: int,
        name: str | None = None,
    ) -> AgentRow:
        """Register an agent (``name``: a display name other than the id). Raise
        :class:`~memtrace.domain.errors.AgentExists` if an agent of the org has that id or
        name."""
        ...

    async def get_agent(self, org_id: str, agent_id: str) -> AgentRow | None:
        """The agent whose id, else whose name, is ``agent_id``."""
        ...

    async def list_agents(self, org_id: str, limit: int, offset: int) -> list[AgentRow]: ...

    async def delete_agent(self, org_id: str, agent_id: str) -> None:
        """Remove the agent and its sessions (its memories stay)."""
        ...

    async def create_session(
        self, org_id: str, agent_id: str, metadata: dict[str, Any] | None, now: int
    ) -> SessionRow: ...

    async def get_session(self, org_id: str, session_id: str) -> SessionRow | None: ...

    async def list_sessions(
        self, org_id: str, agent_id: str | None, status: str | None, limit: int, offset: int
    ) -> list[SessionRow]: ...

    async def update_session(
        self,
        org_id: str,
        session_id: str,
        status: str | None,
        metadata: dict[str, Any] | None,
        now: int,
    ) -> SessionRow: ...

    async def session_counts(self, org_id: str, agent_id: str) -> tuple[int, int]:
        """(sessions, active sessions) of one agent."""
        ...
