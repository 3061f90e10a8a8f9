"""The no-I/O half of the client SDK, shared by :class:`Memtrace` and :class:`AsyncMemtrace`.

Everything that does not touch the network lives here: configuration (arguments or the
``MEMTRACE_URL`` / ``MEMTRACE_API_KEY`` environment), the request of every method (method,
path, query, body), response parsing into the wire models of
:mod:`memtrace.domain.models`, the error mapping
(:func:`memtrace.domain.errors.error_from_response`) and the retry policy.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import orjson
from pydantic import BaseModel, ValidationError
from tenacity import (
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from memtrace import __version__
from memtrace.domain.errors import (
    ConfigError,
    Conflict,
    MemtraceConnectionError,
    MemtraceError,
    NoArcInstanceError,
    RateLimited,
    StorageUnavailable,
    error_from_response,
)

DEFAULT_URL = "http://localhost:9100"
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_RETRIES = 3
MAX_RETRY_WAIT = 30.0
API = "/api/v1"
URL_ENV = "MEMTRACE_URL"
KEY_ENV = "MEMTRACE_API_KEY"

M = TypeVar("M", bound=BaseModel)
Json = dict[str, Any]


def build_headers(api_key: str) -> dict[str, str]:
    """Default headers of every request (the key travels in ``x-api-key``)."""
    return {
        "x-api-key": api_key,
        "Content-Type": "application/json",
        "User-Agent": f"memtrace-python/{__version__}",
    }


def resolve_config(base_url: str | None, api_key: str | None) -> tuple[str, str]:
    """Arguments first, then ``MEMTRACE_URL`` / ``MEMTRACE_API_KEY``, then the default URL.

    Raises:
        ConfigError: no API key was given or found in the environment.
    """
    url = base_url or os.environ.get(URL_ENV) or DEFAULT_URL
    key = api_key or os.environ.get(KEY_ENV)
    if not key:
        raise ConfigError(f"api_key: pass it or set {KEY_ENV}")
    return url.rstrip("/"), key


def path(*parts: str) -> str:
    """``/api/v1/<part>/<part>…`` with every part percent-encoded (ids never escape a segment)."""
    return API + "".join("/" + quote(p, safe="") for p in parts)


def dump(model: BaseModel | None, *drop: str) -> Json:
    """A request model as JSON-ready data, leaving out unset optional fields."""
    if model is None:
        return {}
    data = model.model_dump(mode="json", exclude_none=True)
    for name in drop:
        data.pop(name, None)
    return data


def query(model: BaseModel | None, *drop: str) -> dict[str, str | int | float]:
    """A request model as query parameters (lists become comma lists)."""
    return {
        k: ",".join(map(str, v)) if isinstance(v, list) else v
        for k, v in dump(model, *drop).items()
    }


@dataclass(frozen=True, slots=True)
class Call:
    """One API call, described without doing it.

    ``idempotent`` says whether resending after a lost response is safe (reads, PUT, DELETE):
    writes are retried only when the request never reached the server. ``conflict`` is the
    exception a 409 raises (:class:`~memtrace.domain.errors.DuplicateMemory` for memories,
    :class:`~memtrace.domain.errors.AgentExists` for agents).
    """

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    body: Any = None
    idempotent: bool = True
    expect_body: bool = True
    headers: Mapping[str, str] = field(default_factory=dict)
    # The class of a 409: what already exists depends on what the call writes.
    conflict: type[Conflict] = Conflict

    def content(self) -> bytes | None:
        return None if self.body is None else orjson.dumps(self.body)


def decode(response: httpx.Response, call: Call) -> Any:
    """The JSON of a success response; raise the mapped :class:`MemtraceError` otherwise."""
    if response.status_code >= 400:
        raise error_from_response(
            response.status_code, _body(response), response.headers, conflict=call.conflict
        )
    if not call.expect_body or response.status_code == 204 or not response.content:
        return None
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise MemtraceError(
            f"the server sent a response that is not JSON (HTTP {response.status_code})",
            response.status_code,
        ) from None


def _body(response: httpx.Response) -> Any:
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response.text


def parse(model: type[M], data: Any) -> M:
    """Validate a response body into a wire model (unknown fields are ignored).

    Raises:
        MemtraceError: the body does not have the model's shape (not a memtrace server?).
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problem = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(map(str, problem["loc"])) or "body"
        raise MemtraceError(
            f"unexpected response from the server: {model.__name__}.{where}: {problem['msg']}"
        ) from None


# --- retries --------------------------------------------------------------------------------

_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def wrap_transport_error(exc: httpx.TransportError) -> MemtraceConnectionError:
    """A transport failure as part of the exception tree (the cause is kept)."""
    sent = "" if isinstance(exc, _NOT_SENT) else " (the request may have reached the server)"
    error = MemtraceConnectionError(f"could not reach the memtrace server: {exc}{sent}")
    error.details = {"transport_error": type(exc).__name__, "maybe_sent": bool(sent)}
    return error


def is_retryable(exc: BaseException, call: Call) -> bool:
    """429 and 503 always; connection errors when the request was not sent or is idempotent.

    Never any other 4xx: the same request would fail the same way. Nor an org without a
    store (:class:`NoArcInstanceError`): only an administrator can fix that.
    """
    if isinstance(exc, NoArcInstanceError):
        return False
    if isinstance(exc, RateLimited | StorageUnavailable):
        return True
    if isinstance(exc, MemtraceConnectionError):
        cause = exc.__cause__
        return isinstance(cause, _NOT_SENT) or call.idempotent
    return False


class _Wait:
    """Jittered exponential backoff; a server's ``Retry-After`` wins when it is longer."""

    def __init__(self, backoff: float) -> None:
        self.jitter = wait_random_exponential(multiplier=backoff, max=MAX_RETRY_WAIT)

    def __call__(self, state: RetryCallState) -> float:
        pause = float(self.jitter(state))
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimited):
            pause = max(pause, min(exc.retry_after, MAX_RETRY_WAIT))
        return pause


def retry_options(call: Call, max_retries: int, backoff: float) -> dict[str, Any]:
    """Keyword arguments for ``tenacity.Retrying`` / ``AsyncRetrying`` for one call."""
    return {
        "stop": stop_after_attempt(max_retries + 1),
        "wait": _Wait(backoff),
        "retry": retry_if_exception(lambda exc: is_retryable(exc, call)),
        "reraise": True,
    }


def build_request(client: httpx.Client | httpx.AsyncClient, call: Call) -> httpx.Request:
    return client.build_request(
        call.method,
        call.path,
        params=dict(call.params) if call.params else None,
        content=call.content(),
        headers=dict(call.headers) or None,
    )
