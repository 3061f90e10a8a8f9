"""One exception tree for the whole project, mapped once per transport.

REST maps ``status_code`` to the response status and ``to_body()`` to the JSON body; MCP turns
the message into an ``is_error`` result; the client SDK raises the same classes from responses.
The SDK-compatible names of the published ``memtrace-sdk`` (``AuthenticationError``,
``NotFoundError``, ``ConflictError``, ``NoArcInstanceError``) are aliases or subclasses here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from memtrace.domain.redact import redact, redact_value


class MemtraceError(Exception):
    """Base of every error memtrace raises on purpose.

    Args:
        message: Human-readable, safe to show to a client (never contains secrets).
        status_code: HTTP status this error maps to; defaults to the class's status.
        hint: Optional suggestion for the caller on how to fix the problem.
        details: Optional structured extra information.
    """

    status: int = 500
    default_message = "internal error"

    def __init__(
        self,
        message: str | None = None,
        status_code: int | None = None,
        *,
        hint: str | None = None,
        details: Any = None,
    ) -> None:
        self.message = message or self.default_message
        self.status_code = status_code if status_code is not None else self.status
        self.hint = hint
        self.details = details
        super().__init__(self.message)

    def to_body(self) -> dict[str, Any]:
        """The ``{"error": …}`` body, with optional ``hint`` and ``details``."""
        body: dict[str, Any] = {"error": redact(self.message)}
        if self.hint:
            body["hint"] = redact(self.hint)
        if self.details is not None:
            body["details"] = redact_value(self.details)
        return body

    def headers(self) -> dict[str, str]:
        """HTTP headers the response carries (every transport that answers over HTTP)."""
        return {}


class InvalidInput(MemtraceError):
    """A request field is invalid; the message starts with the field name."""

    status = 400
    default_message = "invalid input"


class Unauthorized(MemtraceError):
    """Missing, malformed, unknown or revoked API key."""

    status = 401
    default_message = "Invalid or missing API key"

    def headers(self) -> dict[str, str]:
        # The key is a static bearer token: saying so (without OAuth ``resource_metadata``)
        # keeps MCP clients from starting an OAuth discovery flow on the 401.
        return {"WWW-Authenticate": 'Bearer realm="memtrace"'}


class Forbidden(MemtraceError):
    """The key is valid but lacks the permission the operation needs."""

    status = 403
    default_message = "API key lacks the required permission"


class NotFound(MemtraceError):
    """The object does not exist in the caller's org (also for other orgs' objects)."""

    status = 404
    default_message = "Resource not found"


class Conflict(MemtraceError):
    """The object already exists; ``existing_id`` names it when known."""

    status = 409
    default_message = "Conflict"

    def __init__(
        self,
        message: str | None = None,
        status_code: int | None = None,
        *,
        existing_id: str | None = None,
        hint: str | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message, status_code, hint=hint, details=details)
        self.existing_id = existing_id

    def to_body(self) -> dict[str, Any]:
        body = super().to_body()
        if self.existing_id:
            body["existing_id"] = self.existing_id
        return body


class DuplicateMemory(Conflict):
    """A memory with the same dedup key exists inside the dedup window."""

    default_message = "duplicate memory"


class AgentExists(Conflict):
    """An agent with that name is already registered in the org (``existing_id`` is its id)."""

    default_message = "agent already exists"


class PayloadTooLarge(MemtraceError):
    """The request body exceeds ``limits.max_body_bytes``."""

    status = 413
    default_message = "request body too large"


class UnsupportedMediaType(MemtraceError):
    """A request body that is not JSON (``Content-Type`` other than ``application/json``)."""

    status = 415
    default_message = "the request body must be JSON (Content-Type: application/json)"


class MisdirectedRequest(MemtraceError):
    """A ``Host`` header outside ``server.allowed_hosts`` (DNS rebinding protection)."""

    status = 421
    default_message = "this server does not answer for that host"


class RequestTimeout(MemtraceError):
    """The request body did not arrive within ``server.body_timeout_s`` (slow client)."""

    status = 408
    default_message = "request body not received in time"


class RateLimited(MemtraceError):
    """Too many requests for this key; retry after ``retry_after`` seconds."""

    status = 429
    default_message = "rate limit exceeded"

    def __init__(
        self,
        message: str | None = None,
        status_code: int | None = None,
        *,
        retry_after: float = 1.0,
        hint: str | None = None,
    ) -> None:
        self.retry_after = retry_after
        message = message or f"rate limit exceeded; retry after {self.retry_seconds} s"
        super().__init__(message, status_code, hint=hint)

    @property
    def retry_seconds(self) -> int:
        """``retry_after`` in whole seconds, at least 1 (``Retry-After``)."""
        return max(1, math.ceil(self.retry_after))

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_seconds)}


class StorageUnavailable(MemtraceError):
    """The org's store cannot serve the request right now (disk full, Arc down, locked)."""

    status = 503
    default_message = "storage unavailable"


class OutOfDescriptors(StorageUnavailable):
    """The process has no file descriptor left to open a store or a connection with."""

    default_message = (
        "storage cannot be opened: the server has too many files open (its file descriptor "
        "limit is reached); retry shortly"
    )


class NoArcInstanceError(StorageUnavailable):
    """The org is bound to no store at all (``storage.default_backend = none``)."""

    default_message = "no arc instance configured for this org"


class MemtraceConnectionError(MemtraceError):
    """The client could not reach the server (connection refused, timeout, broken response).

    Raised by the client SDK after its retries, with the transport error as ``__cause__``.
    """

    status = 503
    default_message = "could not reach the memtrace server"


class ConfigError(MemtraceError):
    """Invalid configuration; the message names the offending key."""

    default_message = "invalid configuration"


_BY_STATUS: dict[int, type[MemtraceError]] = {
    400: InvalidInput,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    421: MisdirectedRequest,
    429: RateLimited,
    503: StorageUnavailable,
}


def _retry_after(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value else 1.0
    except ValueError:  # an HTTP date: not worth parsing, fall back to the default pause
        return 1.0


def error_from_response(
    status: int,
    body: Any,
    headers: Mapping[str, str] | None = None,
    *,
    conflict: type[Conflict] = Conflict,
) -> MemtraceError:
    """The exception for an error response (the inverse of the REST mapping).

    Args:
        status: The HTTP status (>= 400).
        body: The decoded JSON body (``{"error", "hint"?, "existing_id"?, "details"?}``), or
            the raw text when the body is not JSON.
        headers: Response headers (``Retry-After`` is kept on :class:`RateLimited`).
        conflict: The class of a 409, decided by the resource the request wrote
            (:class:`DuplicateMemory` for memories, :class:`AgentExists` for agents).

    Returns:
        The matching class of this tree; a 503 whose message mentions "arc instance" is a
        :class:`NoArcInstanceError`, as the published ``memtrace-sdk`` 0.2.0 maps it.
    """
    fields: dict[str, Any] = body if isinstance(body, dict) else {}
    message = str(fields.get("error") or (body if isinstance(body, str) else "") or "")
    message = message or f"HTTP {status}"
    hint = fields.get("hint") if isinstance(fields.get("hint"), str) else None
    details = fields.get("details")
    if status == 409:
        existing = fields.get("existing_id")
        existing_id = existing if isinstance(existing, str) else None
        return conflict(message, existing_id=existing_id, hint=hint, details=details)
    if status == 429:
        retry_after = _retry_after((headers or {}).get("retry-after"))
        return RateLimited(message, retry_after=retry_after, hint=hint)
    if status == 503 and "arc instance" in message.lower():
        return NoArcInstanceError(message, hint=hint, details=details)
    cls = _BY_STATUS.get(status, MemtraceError)
    return cls(message, status, hint=hint, details=details)


# Names used by the published memtrace-sdk 0.2.0, kept so its users' code runs unchanged.
AuthenticationError = Unauthorized
NotFoundError = NotFound
ConflictError = Conflict
