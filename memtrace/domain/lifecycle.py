"""Retention policies and audit entries: the pure part of the data lifecycle.

A retention policy keeps memories ``days`` days (``None``: the configured default; ``0``: for
ever), with per-memory-type exceptions in ``types``. The org's policy (``memtrace org
retention``) is laid over the ``[retention]`` defaults of the configuration; :meth:`rules`
turns the result into "delete memories of these types older than this time".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from memtrace.domain.errors import InvalidInput
from memtrace.domain.models import MEMORY_TYPES

DAY_US = 86_400_000_000
MAX_RETENTION_DAYS = 100 * 366


def _check_days(days: int, what: str) -> int:
    if isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= MAX_RETENTION_DAYS:
        raise InvalidInput(f"{what}: must be a whole number of days from 0 to {MAX_RETENTION_DAYS}")
    return days


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How long memories are kept: ``days`` for every type not in ``types`` (type → days).
    ``None`` means "not set here"; ``0`` days means "keep for ever"."""

    days: int | None = None
    types: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.days is not None:
            _check_days(self.days, "days")
        for name, days in self.types.items():
            if name not in MEMORY_TYPES:
                raise InvalidInput(
                    f"type: {name!r} is not a memory type ({', '.join(MEMORY_TYPES)})"
                )
            _check_days(days, f"type {name}")

    def over(self, defaults: RetentionPolicy) -> RetentionPolicy:
        """This policy with what it leaves unset taken from ``defaults``."""
        days = self.days if self.days is not None else defaults.days
        return RetentionPolicy(days, {**defaults.types, **self.types})

    def days_of(self, memory_type: str) -> int:
        """Days memories of this type are kept (0 = for ever)."""
        return self.types.get(memory_type, self.days or 0)

    def rules(self, now: int) -> list[tuple[tuple[str, ...], int]]:
        """(memory types, cutoff): memories of those types with ``time < cutoff`` expire.
        Types kept for ever are left out; types with the same days share one rule."""
        by_days: dict[int, list[str]] = {}
        for memory_type in MEMORY_TYPES:
            days = self.days_of(memory_type)
            if days > 0:
                by_days.setdefault(days, []).append(memory_type)
        return [(tuple(types), now - days * DAY_US) for days, types in sorted(by_days.items())]

    def describe(self) -> str:
        """``30 days (decision: 365 days)``, or ``keep for ever``."""
        base = f"{self.days} days" if self.days else "keep for ever"
        extra = ", ".join(
            f"{name}: {days} days" if days else f"{name}: for ever"
            for name, days in sorted(self.types.items())
        )
        return f"{base} ({extra})" if extra else base

    def to_json(self) -> dict[str, Any]:
        return {"days": self.days, "types": dict(self.types)}


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One recorded lifecycle action: who (key id, ``cli``, ``retention``), when (µs), what
    (``delete``, ``forget``, ``retention``, ``import``…), with which filter, how many."""

    org_id: str
    at: int
    actor: str
    action: str
    count: int
    filter: dict[str, Any] | None = None
    detail: str | None = None
    seq: int | None = None

    def row(self) -> tuple[Any, ...]:
        """The values of audit_log's (org_id, at, actor, action, filter, count, detail), the
        filter as JSON text (both metadata backends store it so)."""
        text = orjson.dumps(self.filter).decode() if self.filter is not None else None
        return (self.org_id, self.at, self.actor, self.action, text, self.count, self.detail)
