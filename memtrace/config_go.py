"""The Go memtrace's configuration, accepted as it is (docs/migrating-from-go.md).

Go's shipped ``memtrace.toml`` and its ``MEMTRACE_*`` variables start this server: each Go key
that is not also ours maps to our key, or is accepted with one warning saying it has no effect.
The legacy ``[arc]`` url/api_key/database/measurement become ``[legacy_arc]``, which the server
turns into ``org_default``'s Arc binding on its first start (as Go 0.2 did). Keys that are
neither ours nor Go's still stop the program, naming the key (:mod:`memtrace.config`).
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger("memtrace.config")

# Go key -> our key, or None: accepted, no effect here. Only keys that are not ours as well
# (``server.host``, ``auth.db_path``, ``dedup.window_hours``… mean the same in both).
GO_KEYS: dict[str, str | None] = {
    "server.read_timeout": "server.body_timeout_s",
    "server.write_timeout": None,  # responses are not cut off by a deadline here
    "server.shutdown_timeout": "server.graceful_timeout_s",
    "arc.connect_timeout": "arc.connect_timeout_s",
    "arc.query_timeout": "arc.query_timeout_s",
    "arc.write_batch_size": "arc.batch_size",
    "arc.write_flush_interval_ms": "arc.flush_interval_ms",
    "arc.url": "legacy_arc.url",
    "arc.api_key": "legacy_arc.api_key",
    "arc.database": "legacy_arc.database",
    "arc.measurement": "legacy_arc.measurement",
    # Section names of the Go project's documentation site (its server never read them).
    "deduplication.enabled": "dedup.enabled",
    "deduplication.window_hours": "dedup.window_hours",
    "write_buffer.batch_size": "arc.batch_size",
    "write_buffer.size": "arc.batch_size",
    "write_buffer.flush_interval_ms": "arc.flush_interval_ms",
    "write_buffer.max_size": None,
}
# The environment variable of each Go key (Go: MEMTRACE_ + the dotted key with "_" for ".").
GO_ENV: dict[str, str] = {"MEMTRACE_" + k.replace(".", "_").upper(): k for k in GO_KEYS}
# zerolog's level names (any case) -> ours.
GO_LOG_LEVELS = {
    "trace": "DEBUG",
    "debug": "DEBUG",
    "info": "INFO",
    "warn": "WARNING",
    "warning": "WARNING",
    "error": "ERROR",
    "fatal": "ERROR",
    "panic": "ERROR",
    "disabled": "ERROR",
}


def normalize_log_level(value: Any) -> Any:
    """``info``, ``warn``, ``Debug``… (Go's names, any case) as ours; anything else unchanged
    (then refused, naming ``log.level``)."""
    if isinstance(value, str):
        return GO_LOG_LEVELS.get(value.strip().lower(), value)
    return value


def _set(target: dict[str, Any], dotted: str, value: Any) -> None:
    section, _, key = dotted.partition(".")
    target.setdefault(section, {})[key] = value


def translate(raw: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A toml document with Go's keys replaced by ours (unknown keys are left for the settings
    model to refuse). Keys without effect are dropped with one warning naming them."""
    out: dict[str, Any] = {}
    ignored: list[str] = []
    for section, body in raw.items():
        if not isinstance(body, Mapping):
            out[section] = body
            continue
        for key, value in body.items():
            dotted = f"{section}.{key}"
            if dotted not in GO_KEYS:
                _set(out, dotted, value)
            elif GO_KEYS[dotted] is None:
                ignored.append(dotted)
            else:
                _set(out, str(GO_KEYS[dotted]), value)
    if ignored:
        log.warning(
            "%s: Go memtrace settings with no effect here (accepted, ignored): %s",
            where,
            ", ".join(sorted(ignored)),
        )
    return out


def read_toml(path: Path) -> dict[str, Any]:
    """Our view of a toml file, Go's or ours.

    Raises:
        OSError, ValueError: unreadable or malformed (the caller names the file).
    """
    with path.open("rb") as handle:
        return translate(tomllib.load(handle), str(path))


def go_environ(environ: Mapping[str, str]) -> tuple[dict[str, Any], set[str]]:
    """Settings from Go's variable names (empty values ignored, as Go did), and the names
    consumed (hidden from the normal ``MEMTRACE_<SECTION>_<KEY>`` reading)."""
    out: dict[str, Any] = {}
    used: set[str] = set()
    ignored: list[str] = []
    for name, go_key in GO_ENV.items():
        value = environ.get(name)
        if value is None:
            continue
        used.add(name)
        target = GO_KEYS[go_key]
        if not value.strip():
            continue
        if target is None:
            ignored.append(name)
        else:
            _set(out, target, value)
    if ignored:
        log.warning("Go memtrace variables with no effect here: %s", ", ".join(sorted(ignored)))
    return out, used
