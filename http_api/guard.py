"""What every request passes before a route reads it, for REST and the MCP transports alike
(pure ASGI middleware around the whole app, docs/security.md):

* :class:`RequestGuard`: the ``Host`` must be one the server answers for
  (``server.allowed_hosts``; DNS rebinding), an ``Origin`` must be the server's own or an
  allowed one (``server.allowed_origins``, ``server.cors_origins``; cross-site requests), and a
  request body must be JSON (a browser sends a cross-site ``text/plain`` or form body without
  asking first; it cannot send ``application/json`` that way).
* :class:`AuthGate`: every route but the public ones refuses a missing, unknown or revoked key
  (401) from the headers alone, before anything reads the body, so keyless clients cannot hold
  connections with slow bodies. The principal is left in the request state for the routes.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from http_api.abuse import send_error
from http_api.routes.ui import UI_PATHS
from memtrace.auth.keys import presented_key
from memtrace.config import ServerSettings
from memtrace.domain.errors import (
    Forbidden,
    MemtraceError,
    MisdirectedRequest,
    UnsupportedMediaType,
)
from memtrace.runtime import Runtime

# Routes anyone may call: probes, metrics, the API documentation and the operator page's files
# (they hold no data: the page sends the operator's key with each call it makes, docs/ui.md).
PUBLIC_PATHS = (
    frozenset(
        {
            "/health",
            "/ready",
            "/metrics",
            "/openapi.json",
            "/docs",
            "/docs/oauth2-redirect",
            "/redoc",
        }
    )
    | UI_PATHS
)
PRINCIPAL = "memtrace_principal"  # key of the request state the routes read
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def _split_host(value: str) -> tuple[str, str | None]:
    """``name[:port]`` (``[v6][:port]``) → (name, port or None), lower case."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]") + 1
        name, rest = (value[:end], value[end:]) if end else (value, "")
    else:
        name, _, rest = value.partition(":")
        rest = ":" + rest if rest else ""
    return name, (rest[1:] or None) if rest.startswith(":") else None


def _same_host(a: tuple[str, str | None], b: tuple[str, str | None]) -> bool:
    """Same name and port (a default port may be left out on one side)."""
    ports = {a[1], b[1]}
    return a[0] == b[0] and (len(ports) == 1 or ports in ({None, "80"}, {None, "443"}))


def _matches(pattern: str, name: str, port: str | None) -> bool:
    """A ``name[:port|:*]`` pattern; without a port it matches any port."""
    want_name, want_port = _split_host(pattern)
    return want_name == name and (want_port in (None, "*") or want_port == port)


@dataclass(frozen=True)
class HostPolicy:
    """Which ``Host`` and ``Origin`` values the server accepts.

    ``hosts`` ``None`` means any host. Origins are accepted when they are the request's own
    host (same origin), or match ``origins`` (``scheme://host[:port|:*]``), or always when
    ``any_origin``.
    """

    hosts: tuple[str, ...] | None
    origins: tuple[str, ...]
    any_origin: bool

    @classmethod
    def from_settings(cls, server: ServerSettings) -> HostPolicy:
        hosts = server.allowed_hosts
        if hosts is None:  # automatic: a loopback bind answers only to loopback names
            hosts = () if server.loopback else ("*",)
        # A loopback name is always fine: a rebinding attack's Host is the attacker's name.
        hosts = (*hosts, *LOOPBACK_HOSTS)
        origins = [*server.allowed_origins, *server.cors_origins]
        if server.loopback:  # local tools (an MCP inspector on another port) may call in
            origins += [f"{scheme}://{h}:*" for scheme in ("http", "https") for h in LOOPBACK_HOSTS]
        return cls(
            hosts=None if "*" in hosts else tuple(hosts),
            origins=tuple(o for o in origins if o != "*"),
            any_origin="*" in origins,
        )

    def host_allowed(self, host: str | None) -> bool:
        if self.hosts is None:
            return True
        if not host:
            return False
        name, port = _split_host(host)
        return any(_matches(pattern, name, port) for pattern in self.hosts)

    def origin_allowed(self, origin: str, host: str | None) -> bool:
        if self.any_origin:
            return True
        scheme, sep, netloc = origin.lower().partition("://")
        if not sep or scheme not in ("http", "https") or not netloc or "/" in netloc:
            return False  # "null" (sandboxed pages, files) and anything malformed
        name, port = _split_host(netloc)
        if host and _same_host((name, port), _split_host(host)):
            return True  # same origin (the scheme may differ behind a TLS proxy)
        for pattern in self.origins:
            want_scheme, _, want = pattern.partition("://")
            if want_scheme == scheme and _matches(want, name, port):
                return True
        return False


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def has_body(scope: Scope) -> bool:
    """Whether the request announces a body (``Content-Length`` > 0, or chunked)."""
    length = _header(scope, b"content-length")
    return _header(scope, b"transfer-encoding") is not None or (
        length is not None and length.strip() not in ("", "0")
    )


def is_json(content_type: str | None) -> bool:
    """``application/json`` or ``application/<something>+json``, with any parameters."""
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


class RequestGuard:
    """421 for a ``Host`` outside the allow-list, 403 for a foreign ``Origin``, 415 for a
    body that is not JSON."""

    def __init__(self, app: ASGIApp, policy: HostPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            problem = self.check(scope)
            if problem is not None:
                await send_error(send, problem, close=True)
                return
        await self.app(scope, receive, send)

    def check(self, scope: Scope) -> MemtraceError | None:
        host = _header(scope, b"host")
        if not self.policy.host_allowed(host):
            return MisdirectedRequest(
                f"host: {host or '(none)'!r} is not one this server answers for",
                hint="add it to server.allowed_hosts (docs/configuration.md)",
            )
        origin = _header(scope, b"origin")
        if origin is not None and not self.policy.origin_allowed(origin, host):
            return Forbidden(
                f"origin: requests from {origin!r} are not accepted",
                hint="add it to server.allowed_origins or server.cors_origins",
            )
        if has_body(scope) and not is_json(_header(scope, b"content-type")):
            return UnsupportedMediaType(
                "content-type: the request body must be JSON (Content-Type: application/json)"
            )
        return None


class AuthGate:
    """Authenticates every non-public request from its headers before the body is read."""

    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in PUBLIC_PATHS:
            try:
                principal = await self.runtime.authenticate(presented_key(scope["headers"]))
            except MemtraceError as exc:
                # The body is left unread: close the connection instead of draining it.
                await send_error(send, exc, close=has_body(scope))
                return
            scope.setdefault("state", {})[PRINCIPAL] = principal
        await self.app(scope, receive, send)
