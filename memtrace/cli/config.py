"""``memtrace config show``: the effective configuration, where each value came from, secrets
masked (docs/configuration.md)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import click

from memtrace.cli.common import common_options

MASK = "********"
# A setting whose name has one of these words is a secret (``api_key``, ``password``, …),
# unless it names where one is kept (``key_file``). Only text can be a secret: a number such as
# ``limits.streams_per_key`` is a count, shown as it is.
_SECRET_WORDS = frozenset({"password", "secret", "token", "key", "credentials"})
_LOCATION_WORDS = frozenset({"file", "path", "dir"})


def masked(dotted: str, value: Any) -> Any:
    """``value`` as it may be shown: secrets masked, a URL's password masked."""
    from pydantic import SecretStr

    if value is None:
        return None
    words = set(dotted.rpartition(".")[2].split("_"))
    secret_name = bool(_SECRET_WORDS & words) and not _LOCATION_WORDS & words
    if isinstance(value, SecretStr) or (isinstance(value, str) and secret_name):
        return MASK
    if isinstance(value, str) and "://" in value:
        parts = urlsplit(value)
        if parts.password:
            user = f"{parts.username}:" if parts.username else ":"
            host = parts.netloc.rpartition("@")[2]
            return urlunsplit(parts._replace(netloc=f"{user}{MASK}@{host}"))
    if isinstance(value, Path):
        return str(value)
    return value


def toml_value(value: Any) -> str:
    """One TOML value (strings as basic strings, which JSON string syntax is a subset of)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):  # an inline table: {decision = 365}
        pairs = ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items())
        return "{" + pairs + "}" if pairs else "{}"
    return json.dumps(value, ensure_ascii=False)


def describe(dotted: str, source: Any) -> str:
    if source.kind == "flag":  # --host, --port, --data-dir
        return f"flag --{dotted.rpartition('.')[2].replace('_', '-')}"
    return f"{source.kind} {source.origin}".strip()


@click.group()
def config() -> None:
    """Inspect the configuration (memtrace.toml, MEMTRACE_* variables, flags)."""


@config.command()
@common_options
@click.option("--json", "as_json", is_flag=True, help="One JSON object: key → value, source.")
@click.pass_context
def show(
    ctx: click.Context,
    as_json: bool,
    config_path: Path | None = None,
    data_dir: Path | None = None,
) -> None:
    """Print the effective configuration as TOML, each value with its source: default, file,
    env (the variable) or flag. Secrets are masked."""
    from memtrace.cli.common import load_settings_for
    from memtrace.config import setting_fields, setting_sources

    settings = load_settings_for(ctx, config_path, data_dir)  # stops on an invalid value
    parent = ctx.find_root().params
    toml_file, sources = setting_sources(
        config_path or parent.get("config_path"),
        {"storage.data_dir": data_dir or parent.get("data_dir")},
    )
    values = {dotted: _lookup(settings, dotted) for dotted, _ in setting_fields()}
    master_key = _master_key_state()
    if as_json:
        body = {
            "config_file": str(toml_file) if toml_file else None,
            "settings": {
                dotted: {
                    "value": masked(dotted, value),
                    "source": sources[dotted].kind,
                    "origin": describe(dotted, sources[dotted]).partition(" ")[2] or None,
                }
                for dotted, value in values.items()
            },
            "environment": {"MEMTRACE_MASTER_KEY": master_key},
        }
        click.echo(json.dumps(body, indent=2, default=str))
        return
    click.echo(f"# config file: {toml_file or 'none (defaults, environment and flags only)'}")
    section = None
    for dotted, value in values.items():
        head, _, key = dotted.rpartition(".")
        if head != section:
            section = head
            click.echo(f"\n[{section}]")
        shown = masked(dotted, value)
        line = f"# {key} is not set" if shown is None else f"{key} = {toml_value(shown)}"
        click.echo(f"{line:<44} # {describe(dotted, sources[dotted])}")
    click.echo(f"\n# MEMTRACE_MASTER_KEY (environment only): {master_key}")


def _master_key_state() -> str:
    """Whether the master key is usable, never the key: "set", "not set" or "set but …"."""
    from memtrace.auth.crypto import MASTER_KEY_ENV, load_master_key
    from memtrace.domain.errors import ConfigError

    if not os.environ.get(MASTER_KEY_ENV, "").strip():
        return "not set"
    try:
        load_master_key()
    except ConfigError as exc:
        return f"set but {exc.message.removeprefix(MASTER_KEY_ENV + ' is ')}"
    return "set"


def _lookup(settings: Any, dotted: str) -> Any:
    value = settings
    for part in dotted.split("."):
        value = getattr(value, part)
    return value
