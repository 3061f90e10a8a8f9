"""Where an org's memories go in Arc: URL, database, measurement and API key (decrypted from the
org's binding, see :mod:`memtrace.metadata.bindings`), and the names Arc accepts."""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_MEASUREMENT = "events"
MEASUREMENT_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
DATABASE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")


@dataclass(frozen=True, slots=True)
class ArcTarget:
    """A decrypted binding: everything a store needs to reach the org's Arc database."""

    url: str
    database: str
    measurement: str
    api_key: str | None

    def __repr__(self) -> str:  # never print the key
        return f"ArcTarget({self.url!r}, {self.database!r}, {self.measurement!r})"
