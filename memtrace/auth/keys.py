"""API keys (docs/security.md): format, hashing, permissions, and fast cached verification.

A key is ``mtk_`` + 43 base64url characters (32 random bytes); keys made by the Go memtrace
carry one ``=`` of base64 padding after them (48 characters) and are accepted as they are. The
server stores only a bcrypt hash and a lookup index (first 16 hex chars of SHA-256), so finding
the candidate row is an index probe and bcrypt runs once per key per process; later requests
hit an in-memory cache keyed by the key's full SHA-256. Revocation is read from a snapshot of
the key table that is reloaded whenever the metadata DB changes (see :mod:`memtrace.runtime`),
so a key revoked by another process is refused within the reload interval.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

import bcrypt

from memtrace.auth.permissions import ALL_PERMISSIONS
from memtrace.domain.errors import Forbidden, InvalidInput, Unauthorized
from memtrace.domain.ids import DEFAULT_ORG_ID, new_key_id

KEY_PREFIX = "mtk_"
# The optional "=" is the padding of keys made by the Go memtrace (docs/migrating-from-go.md).
_KEY_PATTERN = re.compile(r"^mtk_[A-Za-z0-9_-]{43}=?$")


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """An API key as stored: the secret itself is never kept, only its bcrypt hash."""

    id: str
    org_id: str
    name: str
    lookup: str
    key_hash: str
    permissions: frozenset[str]
    created_at: int
    revoked_at: int | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


def presented_key(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The API key a request presents: ``x-api-key``, or ``Authorization: Bearer …`` (or a
    bare ``Authorization: mtk_…``, which the Go memtrace accepted).

    The one accessor of every transport (REST, MCP over HTTP, the rate limiter), over the raw
    ASGI header list, so a header sent twice is seen (a mapping keeps only one of them: the
    authenticator and the rate limiter once read different copies). Empty values and other
    ``Authorization`` schemes are not keys.

    Raises:
        InvalidInput: more than one key header (two ``x-api-key``, two bearer tokens, or both
            kinds): which one is meant is ambiguous, so the request is refused (400).
    """
    found: list[str] = []
    for raw_name, raw_value in headers:
        name = raw_name.lower()
        if name == b"x-api-key":
            value = raw_value.strip()
        elif name == b"authorization":
            scheme, _, token = raw_value.strip().partition(b" ")
            if scheme.lower() == b"bearer":
                value = token.strip()
            elif raw_value.strip().startswith(KEY_PREFIX.encode()):
                value = raw_value.strip()
            else:
                value = b""
        else:
            continue
        if value:
            found.append(value.decode("latin-1"))
    if len(found) > 1:
        raise InvalidInput(
            "x-api-key: send the API key once (one x-api-key or one Authorization: Bearer "
            "header, not several)"
        )
    return found[0] if found else None


def generate_api_key() -> str:
    """A new secret key: ``mtk_`` + base64url of 32 random bytes, without padding."""
    return KEY_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def key_lookup(key: str) -> str:
    """The lookup index stored beside the hash: first 16 hex chars of SHA-256."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def new_api_key(
    org_id: str, name: str, permissions: frozenset[str], *, rounds: int, now: int
) -> tuple[ApiKeyRecord, str]:
    """Make a key: returns the record to store and the plaintext to show once."""
    plain = generate_api_key()
    record = ApiKeyRecord(
        id=new_key_id(),
        org_id=org_id,
        name=name,
        lookup=key_lookup(plain),
        key_hash=bcrypt.hashpw(plain.encode(), bcrypt.gensalt(rounds)).decode(),
        permissions=permissions,
        created_at=now,
        revoked_at=None,
    )
    return record, plain


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the org (from the key, never from the request) and what it may do."""

    org_id: str
    key_id: str | None
    permissions: frozenset[str]

    def allows(self, permission: str) -> bool:
        return permission in self.permissions or "admin" in self.permissions

    def require(self, permission: str) -> None:
        """Raise :class:`Forbidden` unless the key has ``permission`` (admin implies all)."""
        if not self.allows(permission):
            raise Forbidden(f"this API key lacks the '{permission}' permission")


LOCAL_PRINCIPAL = Principal(org_id=DEFAULT_ORG_ID, key_id=None, permissions=ALL_PERMISSIONS)


class Authenticator:
    """Turns a presented key into a :class:`Principal`, or raises :class:`Unauthorized`."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self._by_id: dict[str, ApiKeyRecord] = {}
        self._by_lookup: dict[str, list[ApiKeyRecord]] = {}
        self._verified: dict[str, str] = {}  # sha256(key) → key id, after one bcrypt success
        self._pending: dict[str, asyncio.Future[str | None]] = {}

    def load(self, keys: Iterable[ApiKeyRecord]) -> None:
        """Replace the key snapshot (called at start and after every metadata change)."""
        by_id: dict[str, ApiKeyRecord] = {}
        by_lookup: dict[str, list[ApiKeyRecord]] = {}
        for key in keys:
            by_id[key.id] = key
            by_lookup.setdefault(key.lookup, []).append(key)
        self._by_id, self._by_lookup = by_id, by_lookup

    async def authenticate(self, presented: str | None) -> Principal:
        """Verify a key; the org comes from the key's record only.

        Raises:
            Unauthorized: missing, malformed, unknown or revoked key.
        """
        if not self.enabled:
            return LOCAL_PRINCIPAL
        if not presented:
            raise Unauthorized("missing API key (send x-api-key or Authorization: Bearer)")
        if not _KEY_PATTERN.match(presented):
            raise Unauthorized("malformed API key")
        digest = hashlib.sha256(presented.encode()).hexdigest()
        key_id = self._verified.get(digest)
        if key_id is None:
            key_id = await self._verify_once(presented, digest)
        record = self._by_id.get(key_id) if key_id else None
        if record is None:
            raise Unauthorized("invalid API key")
        if record.revoked:
            raise Unauthorized("API key has been revoked")
        return Principal(record.org_id, record.id, record.permissions)

    def known_org(self, presented: str | None) -> str | None:
        """The org of a key this process has already verified (no bcrypt, no waiting), else
        ``None``: what the per-org rate limit needs before the request is authenticated."""
        if not self.enabled:
            return DEFAULT_ORG_ID
        if not presented:
            return None
        key_id = self._verified.get(hashlib.sha256(presented.encode()).hexdigest())
        record = self._by_id.get(key_id) if key_id else None
        return record.org_id if record is not None and not record.revoked else None

    async def _verify_once(self, presented: str, digest: str) -> str | None:
        """bcrypt-check a key once, even when many requests present it at the same moment."""
        pending = self._pending.get(digest)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._pending[digest] = future
        try:
            candidates = [k for k in self._by_lookup.get(digest[:16], []) if not k.revoked]
            key_id = await asyncio.to_thread(_match, presented, candidates)
            if key_id is not None:
                self._verified[digest] = key_id
            future.set_result(key_id)
            return key_id
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # waiters may be none; mark it retrieved
            raise
        finally:
            del self._pending[digest]


def _match(presented: str, candidates: list[ApiKeyRecord]) -> str | None:
    raw = presented.encode()
    for candidate in candidates:
        if bcrypt.checkpw(raw, candidate.key_hash.encode()):
            return candidate.id
    return None
