"""What the metadata holds about orgs, agents and sessions, as every backend returns it (API keys:
:class:`memtrace.auth.keys.ApiKeyRecord`).

Times are integer microseconds (UTC).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from memtrace.domain.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class Org:
    id: str
    name: str
    created_at: int


@dataclass(slots=True)
class AgentRow:
    org_id: str
    id: str
    description: str | None
    config: dict[str, Any] | None
    created_at: int
    last_active_at: int | None
    name: str | None = None  # None: the id is the name

    @property
    def display_name(self) -> str:
        return self.name or self.id


@dataclass(slots=True)
class SessionRow:
    id: str
    org_id: str
    agent_id: str
    status: str
    metadata: dict[str, Any] | None
    created_at: int
    updated_at: int
    closed_at: int | None


def require_text(value: str, field: str, limit: int = 200) -> str:
    """Validate a short operator-provided name (org and key names from the CLI)."""
    value = value.strip()
    if not value or len(value) > limit or any(ord(ch) < 32 for ch in value):
        raise InvalidInput(f"{field}: must be 1-{limit} printable characters")
    return value
