"""The metadata protocols: what the server needs from the store of orgs, keys, Arc bindings,
agents and sessions (:class:`MetadataStore`), and what the CLI changes (:class:`MetadataAdmin`).
:class:`memtrace.metadata.catalog.Catalog` implements both on SQLite,
:class:`memtrace.metadata.postgres.PgCatalog` on PostgreSQL (cluster mode), with the same
semantics; :func:`memtrace.metadata.backend.create_catalog` picks one from the settings.

Every agent and session operation is scoped by ``org_id``; times are integer microseconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from memtrace.auth.keys import ApiKeyRecord
from memtrace.domain.lifecycle import AuditEntry, RetentionPolicy
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

    async def delete_session(self, org_id: str, session_id: str) -> bool:
        """Remove one session; False when the org has no such session."""
        ...

    # -- data lifecycle (docs/api.md, "Data lifecycle") ---------------------------------------

    async def get_feed_cursor(self, org_id: str, reader: str) -> int | None:
        """The change position ``reader`` confirmed, or ``None`` before its first confirm."""
        ...

    async def confirm_feed_cursor(self, org_id: str, reader: str, position: int, now: int) -> int:
        """Move the reader's cursor up to ``position`` (never back); returns where it is."""
        ...

    async def advance_feed_cursor(
        self, org_id: str, reader: str, expected: int, position: int, now: int
    ) -> bool:
        """Move the cursor from ``expected`` (0: none yet) to ``position``, atomically; False
        when it was not at ``expected`` any more."""
        ...

    async def get_retention(self, org_id: str) -> RetentionPolicy | None:
        """The org's own retention policy (without the configured defaults), if it has one."""
        ...

    async def list_retention(self) -> dict[str, RetentionPolicy]:
        """Every org's own retention policy."""
        ...

    async def record_audit(self, entry: AuditEntry) -> None:
        """Append to the audit log (durable before it returns)."""
        ...

    async def list_audit(
        self, org_id: str, *, limit: int = 100, since: int | None = None
    ) -> list[AuditEntry]:
        """The org's audit entries, newest first."""
        ...


class MetadataAdmin(Protocol):
    """Changes an operator makes (``memtrace org …``, ``memtrace key …``); each call is one
    transaction. Running servers see them within 2 seconds (they watch :meth:`changed`)."""

    async def list_keys(self, org_id: str | None = None) -> list[ApiKeyRecord]:
        """Every key (revoked ones included), or one org's; oldest first."""
        ...

    async def find_org(self, id_or_name: str) -> Org | None:
        """The org with this id, else the one with this name."""
        ...

    async def create_org(self, org_id: str, name: str, now: int) -> Org:
        """Raise :class:`~memtrace.domain.errors.Conflict` if the id or name is taken."""
        ...

    async def delete_org(self, org_id: str) -> None:
        """Remove the org with its keys, agents, sessions, binding and retention policy (not
        its memories, nor its audit log: a deleted org's entries stay listable by its id)."""
        ...

    async def add_key(self, record: ApiKeyRecord) -> None:
        """Raise :class:`~memtrace.domain.errors.NotFound` if the org does not exist."""
        ...

    async def revoke_key(self, key_id: str, now: int) -> ApiKeyRecord:
        """Revoke (idempotent); returns the key as it was."""
        ...

    async def get_binding(self, org_id: str) -> ArcBinding | None: ...

    async def put_binding(
        self,
        org_id: str,
        *,
        url: str,
        database: str,
        measurement: str,
        api_key: str | None,
        now: int,
        environ: Mapping[str, str] | None = None,
    ) -> ArcBinding:
        """Validate, encrypt the API key under the master key, create or replace."""
        ...

    async def remove_binding(self, org_id: str) -> None: ...

    async def put_retention(self, org_id: str, policy: RetentionPolicy, now: int) -> None:
        """Create or replace the org's own retention policy."""
        ...

    async def delete_retention(self, org_id: str) -> bool:
        """Remove the org's own policy (the defaults apply); False when it had none."""
        ...


class MetadataBackend(MetadataStore, MetadataAdmin, Protocol):
    """Both sides, as each backend implements them."""
