"""Logging setup: console or JSON lines, level from ``[log]`` (docs/security.md, "Logs")."""

from __future__ import annotations

import logging
import sys

import orjson

from memtrace.config import LogSettings
from memtrace.domain.redact import redact_log_line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and exception text)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return redact_log_line(orjson.dumps(entry).decode())


class RedactingFormatter(logging.Formatter):
    """Console lines with anything shaped like an API key or an SSE session id redacted (e.g.
    a key a client put in a URL, which the access log would otherwise print)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_log_line(super().format(record))


def configure_logging(settings: LogSettings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            RedactingFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # DEBUG is for memtrace's own loggers: libraries log what they carry at DEBUG (the MCP SDK
    # prints every message it receives, i.e. memory contents), so they stay at INFO.
    debug = settings.level == "DEBUG"
    root.setLevel("INFO" if debug else settings.level)
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel("DEBUG" if debug else logging.NOTSET)


OWN_LOGGERS = ("memtrace", "http_api", "mcp_server")
