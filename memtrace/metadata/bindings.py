"""Arc bindings: which orgs store their memories in which Arc database (metadata table
``arc_bindings``). Plain functions on a connection, shared by the CLI and the server."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from memtrace.auth.crypto import decrypt_secret, encrypt_secret, load_master_key
from memtrace.domain.errors import InvalidInput, NotFound
from memtrace.storage.arc.target import DATABASE_RE, MEASUREMENT_RE, ArcTarget

_MAX_URL = 2048
_MAX_KEY = 4096


@dataclass(frozen=True, slots=True)
class ArcBinding:
    org_id: str
    url: str
    database: str
    measurement: str
    api_key_enc: str | None
    created_at: int
    updated_at: int

    def fingerprint(self) -> tuple[str, str, str, str | None, int]:
        """What, when changed, requires the org's store to be reopened."""
        return (self.url, self.database, self.measurement, self.api_key_enc, self.updated_at)

    def target(self, environ: Mapping[str, str] | None = None) -> ArcTarget:
        """The decrypted target; the master key is read only when an API key is stored.

        Raises:
            ConfigError: the master key is missing, malformed or wrong.
        """
        api_key = None
        if self.api_key_enc:
            api_key = decrypt_secret(load_master_key(environ), self.org_id, self.api_key_enc)
        return ArcTarget(self.url, self.database, self.measurement, api_key)


def validate(url: str, database: str, measurement: str, api_key: str | None) -> None:
    """Raise :class:`InvalidInput` naming the bad field."""
    parts = urlsplit(url)
    if len(url) > _MAX_URL or parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("url: must be an http(s) URL such as http://arc.internal:8000")
    if parts.username or parts.password:
        raise InvalidInput("url: must not contain credentials; use --api-key")
    if not DATABASE_RE.match(database):
        raise InvalidInput(f"database: must match {DATABASE_RE.pattern}")
    if not MEASUREMENT_RE.match(measurement):
        raise InvalidInput(f"measurement: must match {MEASUREMENT_RE.pattern}")
    bad_key = api_key is not None and (
        not api_key or len(api_key) > _MAX_KEY or re.search(r"\s", api_key)
    )
    if bad_key:
        raise InvalidInput("api_key: must be 1-4096 characters without whitespace")


def prepare(
    org_id: str,
    url: str,
    database: str,
    measurement: str,
    api_key: str | None,
    environ: Mapping[str, str] | None = None,
) -> tuple[str, str | None]:
    """Validate a binding; returns the URL to store and the encrypted API key (or None)."""
    validate(url, database, measurement, api_key)
    enc = None
    if api_key is not None:
        enc = encrypt_secret(load_master_key(environ), org_id, api_key)
    return url.rstrip("/"), enc


def _row(row: tuple[object, ...]) -> ArcBinding:
    return ArcBinding(*row)  # type: ignore[arg-type]


_SELECT = (
    "SELECT org_id, url, database, measurement, api_key_enc, created_at, updated_at "
    "FROM arc_bindings"
)


def put_binding(
    conn: sqlite3.Connection,
    org_id: str,
    *,
    url: str,
    database: str,
    measurement: str,
    api_key: str | None,
    now: int,
    environ: Mapping[str, str] | None = None,
) -> ArcBinding:
    """Create or replace the org's binding (the API key is stored encrypted)."""
    url, enc = prepare(org_id, url, database, measurement, api_key, environ)
    return store_binding(conn, org_id, url, database, measurement, enc, now)


def store_binding(
    conn: sqlite3.Connection,
    org_id: str,
    url: str,
    database: str,
    measurement: str,
    api_key_enc: str | None,
    now: int,
) -> ArcBinding:
    """Write a binding :func:`prepare` checked (an existing one keeps its ``created_at``)."""
    previous = get_binding(conn, org_id)
    created = previous.created_at if previous else now
    conn.execute(
        "INSERT INTO arc_bindings (org_id, url, database, measurement, api_key_enc, created_at, "
        "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (org_id) DO UPDATE SET "
        "url = excluded.url, database = excluded.database, measurement = excluded.measurement, "
        "api_key_enc = excluded.api_key_enc, updated_at = excluded.updated_at",
        (org_id, url, database, measurement, api_key_enc, created, now),
    )
    return ArcBinding(org_id, url, database, measurement, api_key_enc, created, now)


def get_binding(conn: sqlite3.Connection, org_id: str) -> ArcBinding | None:
    row = conn.execute(f"{_SELECT} WHERE org_id = ?", (org_id,)).fetchone()
    return _row(row) if row else None


def list_bindings(conn: sqlite3.Connection) -> dict[str, ArcBinding]:
    return {b.org_id: b for b in map(_row, conn.execute(_SELECT).fetchall())}


def remove_binding(conn: sqlite3.Connection, org_id: str) -> None:
    if conn.execute("DELETE FROM arc_bindings WHERE org_id = ?", (org_id,)).rowcount == 0:
        raise NotFound(f"org {org_id} has no Arc binding")
