"""The one mapping from exceptions to HTTP responses: status + ``{"error": …}`` JSON."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from http_api.deps import json_response
from memtrace.domain.errors import MemtraceError
from memtrace.domain.models import invalid_input

log = logging.getLogger("memtrace.http")

_HTTP_MESSAGES = {404: "not found", 405: "method not allowed", 413: "request body too large"}


async def _memtrace_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MemtraceError)
    return json_response(exc.to_body(), exc.status_code, headers=exc.headers())


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    # FastAPI prefixes locations with where the value came from; the client knows its fields.
    errors = [
        {**error, "loc": tuple(error["loc"][1:]) or ("body",)}
        if error["loc"] and error["loc"][0] in ("body", "query", "path")
        else error
        for error in exc.errors()
    ]
    if errors and errors[0].get("type") == "json_invalid":
        return json_response({"error": "body: invalid JSON"}, 400)
    error = invalid_input(errors)
    return json_response(error.to_body(), error.status_code)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = _HTTP_MESSAGES.get(exc.status_code) or str(exc.detail)
    return json_response({"error": message}, exc.status_code, headers=exc.headers)


async def error_response(request: Request, exc: Exception) -> Response | None:
    """The response the handlers below give ``exc``, for code that runs outside the app's
    exception handling (``http_api.writepath``); ``None`` for an unexpected error."""
    if isinstance(exc, MemtraceError):
        return await _memtrace_error(request, exc)
    if isinstance(exc, HTTPException):
        return await _http_error(request, exc)
    return None


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(MemtraceError, _memtrace_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
