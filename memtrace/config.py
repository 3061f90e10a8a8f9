"""Settings: ``memtrace.toml`` plus ``MEMTRACE_<SECTION>_<KEY>`` environment overrides.

The single source of every default. Loaded once at start; invalid values fail with a message
naming the key (``limits.max_batch: …``). Precedence: explicit arguments (CLI flags) >
environment > the first toml file found > defaults.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, NamedTuple, cast

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from memtrace.config_go import GO_ENV, GO_KEYS, go_environ, normalize_log_level, read_toml
from memtrace.config_go import log as go_log
from memtrace.domain.errors import ConfigError, InvalidInput
from memtrace.domain.lifecycle import MAX_RETENTION_DAYS, RetentionPolicy
from memtrace.domain.models import error_field

CONFIG_FILENAME = "memtrace.toml"


def config_search_path() -> list[Path]:
    """Where a config file is looked for when ``--config`` is not given (first found wins)."""
    return [
        Path.cwd() / CONFIG_FILENAME,
        Path("/etc/memtrace") / CONFIG_FILENAME,
        Path.home() / ".memtrace" / CONFIG_FILENAME,
    ]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_HOST = r"([a-z0-9.-]+|\[[0-9a-f:.]+\])"
_HOST_PATTERN = re.compile(rf"\*|{_HOST}(:[0-9]{{1,5}})?")
_ORIGIN_PATTERN = re.compile(rf"\*|https?://{_HOST}(:([0-9]{{1,5}}|\*))?")


def _matching(pattern: re.Pattern[str], what: str) -> Callable[[str], str]:
    """A validator: the lower-cased value must match ``pattern`` (``what`` says how)."""

    def check(value: str) -> str:
        value = value.strip().lower().rstrip("/")
        if not pattern.fullmatch(value):
            raise ValueError(f"{value!r} is not {what} or *")
        return value

    return check


def _comma_list(value: Any) -> Any:
    """A list setting given as text (an environment variable): a JSON list or a comma list."""
    if not isinstance(value, str):
        return value
    if value.lstrip().startswith("["):
        try:
            return json.loads(value)
        except ValueError:
            raise ValueError("expected a JSON list or a comma-separated list") from None
    return [part for part in (p.strip() for p in value.split(",")) if part]


# A host name or address, optionally with a port, or ``*`` for any host.
HostPattern = Annotated[
    str,
    AfterValidator(
        _matching(
            _HOST_PATTERN,
            "a host: expected a name or address with an optional port "
            "(memtrace.example.com, 10.0.0.5:9100, [::1])",
        )
    ),
]
# ``scheme://host[:port]`` as browsers send it in ``Origin``, ``…:*`` for any port, or ``*``.
OriginPattern = Annotated[
    str,
    AfterValidator(
        _matching(
            _ORIGIN_PATTERN,
            "an origin: expected scheme://host[:port] (https://app.example.com, "
            "http://localhost:*)",
        )
    ),
]
Hosts = Annotated[tuple[HostPattern, ...], NoDecode, BeforeValidator(_comma_list)]
Origins = Annotated[tuple[OriginPattern, ...], NoDecode, BeforeValidator(_comma_list)]


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ``::1``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=9100, ge=0, le=65535)
    graceful_timeout_s: float = Field(default=10.0, ge=0, description="Drain time on SIGTERM.")
    shutdown_delay_s: float = Field(
        default=0.0,
        ge=0,
        le=300,
        description="On SIGTERM, keep serving with /ready answering 503 for this long before "
        "the listener closes, so a load balancer stops routing here first (a second signal "
        "ends the wait).",
    )
    keepalive_timeout_s: float = Field(default=5.0, gt=0)
    header_timeout_s: float = Field(
        default=10.0, gt=0, description="Request line and headers must arrive within this."
    )
    body_timeout_s: float = Field(
        default=30.0, gt=0, description="A request body must arrive within this (else 408)."
    )
    max_connections: int = Field(
        default=1000, ge=1, description="Concurrent connections; beyond it uvicorn answers 503."
    )
    max_header_bytes: int = Field(default=64 * 1024, ge=1024, le=1024 * 1024)
    workers: int = Field(
        default=1,
        ge=0,
        le=64,
        description="Server processes sharing the port; 0: one per CPU core, at most 8 "
        "(docs/configuration.md#workers: legacy SSE sessions need 1).",
    )
    health_interval_s: float = Field(
        default=2.0,
        gt=0,
        le=300,
        description="How often the background health check refreshes what the probes report.",
    )
    health_timeout_s: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="A backend that has not answered its health check by then is unhealthy.",
    )
    allowed_hosts: Hosts | None = Field(
        default=None,
        description="Host header values accepted (DNS rebinding); None: the loopback names on "
        "a loopback bind, any host otherwise.",
    )
    allowed_origins: Origins = Field(
        default=(),
        description="Origin header values accepted besides the server's own origin.",
    )
    cors_origins: Origins = Field(
        default=(), description="Browser origins that get CORS headers; empty: CORS is off."
    )

    @property
    def loopback(self) -> bool:
        """Whether the server binds a loopback address only."""
        return is_loopback(self.host)


class LogSettings(_Section):
    # Any case, and the Go memtrace's names (info, warn, trace, ...).
    level: Annotated[
        Literal["DEBUG", "INFO", "WARNING", "ERROR"], BeforeValidator(normalize_log_level)
    ] = "INFO"
    format: Literal["console", "json"] = "console"


class StorageSettings(_Section):
    data_dir: Path = Path("./data")
    default_backend: Literal["embedded", "postgres", "none"] = Field(
        default="embedded",
        description="Where orgs without an Arc binding keep their memories; postgres needs "
        "[postgres] url.",
    )
    synchronous: Literal["FULL", "NORMAL"] = Field(
        default="FULL",
        description="FULL fsyncs each group commit (survives power loss); NORMAL survives "
        "process crashes only.",
    )
    max_open_stores: int = Field(
        default=128,
        ge=1,
        description="Org stores kept open at once; the least recently used idle one is "
        "closed to open another (each holds a writer thread and a few files).",
    )
    read_threads: int = Field(
        default=8, ge=2, le=256, description="Reader threads shared by every org."
    )


class AuthSettings(_Section):
    enabled: bool = True
    db_path: Path | None = None
    bcrypt_rounds: int = Field(default=12, ge=4, le=16)


class DedupSettings(_Section):
    enabled: bool = True
    window_hours: float = Field(default=24.0, gt=0, le=24 * 365)


class LimitsSettings(_Section):
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    max_batch: int = Field(default=1000, ge=1, le=10_000)
    max_content_bytes: int = Field(default=64 * 1024, ge=1, le=16 * 1024 * 1024)
    max_context_memories: int = Field(
        default=10_000, ge=100, description="Memories read to build one context."
    )
    rate_per_s: float = Field(
        default=1000.0, ge=0, description="Requests per second per API key; 0 disables."
    )
    rate_burst: int = Field(default=2000, ge=1, description="Token bucket size per API key.")
    org_rate_per_s: float = Field(
        default=2000.0,
        ge=0,
        description="Requests per second per org, all its keys together; 0 disables.",
    )
    org_rate_burst: int = Field(default=4000, ge=1, description="Token bucket size per org.")
    reads_per_org: int = Field(
        default=0,
        ge=0,
        le=256,
        description="Reads of one org running at once; 0 = one less than the CPUs this "
        "process may use (at least 1), so one org never takes every core.",
    )
    scan_budget_ms: float = Field(
        default=1000.0,
        gt=0,
        le=600_000,
        description="CPU time one list or search may use; then it answers with what it found "
        "(partial: true).",
    )
    streams_per_key: int = Field(
        default=100, ge=1, description="Open streams (GET /sse, GET /api/v1/stream) per API key."
    )
    streams_per_org: int = Field(
        default=200, ge=1, description="Open streams (GET /sse, GET /api/v1/stream) per org."
    )
    max_streams: int = Field(
        default=500,
        ge=1,
        description="Open streams in all (at most half of server.max_connections is used).",
    )
    stream_idle_s: float = Field(
        default=600.0, gt=0, description="A stream with no message for this long is closed."
    )
    stream_heartbeat_s: float = Field(
        default=15.0,
        gt=0,
        le=3600,
        description="GET /api/v1/stream sends a ': ping' comment after this long without an event.",
    )
    stream_poll_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="How often a process with open streams looks for memories other processes "
        "committed (replicas, other workers); its own writes are delivered at once.",
    )
    agent_cache_size: int = Field(
        default=50_000,
        ge=100,
        description="Agents remembered as registered (per process); older ones are re-checked.",
    )
    max_window_days: float = Field(
        default=3660.0, gt=0, description="Longest explicit since..until query window."
    )
    max_offset: int = Field(default=100_000, ge=0, description="Deepest list/search offset.")


class ArcSettings(_Section):
    """Arc backend tuning (bindings themselves live in the metadata DB, see ``org add-arc``)."""

    connect_timeout_s: float = Field(default=3.0, gt=0)
    query_timeout_s: float = Field(default=30.0, gt=0)
    write_timeout_s: float = Field(default=30.0, gt=0)
    batch_size: int = Field(default=1000, ge=1, le=100_000, description="Rows per Arc write.")
    flush_interval_ms: int = Field(
        default=200, ge=1, le=600_000, description="Longest a row waits in the outbox."
    )
    verify_after_s: float = Field(
        default=6.0,
        ge=0,
        le=3600,
        description="Wait this long after Arc's 204 before checking that Arc shows the rows "
        "(covers Arc's flush, max_buffer_age_ms, default 5 s); verified rows leave the outbox.",
    )
    visibility_grace_s: float = Field(
        default=30.0,
        ge=0,
        description="A shipped row Arc still does not show this long after its 204 is shipped "
        "again (Arc lost its write buffer). Until verified, rows stay in the read overlay.",
    )
    retry_max_s: float = Field(default=30.0, gt=0, description="Cap of the shipper's backoff.")
    shutdown_drain_s: float = Field(
        default=5.0,
        ge=0,
        le=600,
        description="On graceful shutdown, ship pending outbox rows for at most this long "
        "(0 = don't; unshipped rows stay durable and ship after the next start).",
    )


class RetentionSettings(_Section):
    """Default retention of every org (an org's own policy, ``memtrace org retention``, wins)
    and the background sweeper that applies it (docs/configuration.md)."""

    days: int = Field(
        default=0, ge=0, le=MAX_RETENTION_DAYS, description="Days memories are kept; 0 = for ever."
    )
    types: dict[str, int] = Field(
        default_factory=dict,
        description="Days per memory type, overriding `days` (e.g. decision = 365; 0 = for ever).",
    )
    sweep_interval_s: float = Field(
        default=3600.0, gt=0, description="How often the sweeper deletes expired memories."
    )
    batch_size: int = Field(
        default=100, ge=1, le=10_000, description="Memories deleted per write transaction."
    )
    batch_pause_ms: float = Field(
        default=10.0, ge=0, le=10_000, description="Pause between batches (writers go first)."
    )
    enabled: bool = Field(
        default=True,
        description="Run the sweeper in `memtrace serve` (cluster mode: one replica at a time).",
    )

    @model_validator(mode="after")
    def _valid_policy(self) -> RetentionSettings:
        try:
            self.policy()
        except InvalidInput as exc:
            raise ValueError(exc.message) from None
        return self

    def policy(self) -> RetentionPolicy:
        """The defaults as a policy (``days`` 0 = keep for ever)."""
        return RetentionPolicy(self.days, dict(self.types))


class PostgresSettings(_Section):
    """Cluster mode (docs/deploy-cluster.md): with ``url`` set, the metadata (orgs, keys,
    agents, sessions, Arc bindings) and the Arc outboxes live in PostgreSQL, and so do the
    memories with ``storage.default_backend = "postgres"``."""

    url: str | None = Field(
        default=None, description="postgresql://user:password@host:5432/db (a libpq URL)."
    )
    pool_min: int = Field(default=1, ge=0, le=1000)
    pool_max: int = Field(
        default=10, ge=1, le=1000, description="Connections per process (plus one for presence)."
    )
    acquire_timeout_s: float = Field(
        default=5.0, gt=0, description="Longest a request waits for a pooled connection (503)."
    )
    connect_timeout_s: float = Field(default=5.0, gt=0)
    statement_timeout_s: float = Field(
        default=30.0, gt=0, description="Server-side cap of one statement."
    )
    lease_s: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="Arc outbox rows a replica claimed are taken over by others after this "
        "long if it stops answering (at once when its connection is gone).",
    )

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")
        return value or None


class LegacyArcSettings(_Section):
    """The Go memtrace's legacy ``[arc]`` url/api_key/database/measurement (or
    ``MEMTRACE_ARC_URL``…): on the first start they become ``org_default``'s Arc binding, as the
    Go server did (docs/migrating-from-go.md). Without a url, nothing happens."""

    url: str | None = None
    api_key: SecretStr | None = None
    database: str | None = None
    measurement: str | None = None


class Settings(BaseSettings):
    """All of memtrace's configuration."""

    model_config = SettingsConfigDict(
        env_prefix="MEMTRACE_",
        env_nested_delimiter="_",
        env_nested_max_split=1,
        extra="forbid",
        frozen=True,
    )

    toml_path: ClassVar[Path | None] = None  # the file read, set per load by load_settings

    server: ServerSettings = ServerSettings()
    log: LogSettings = LogSettings()
    storage: StorageSettings = StorageSettings()
    auth: AuthSettings = AuthSettings()
    dedup: DedupSettings = DedupSettings()
    limits: LimitsSettings = LimitsSettings()
    arc: ArcSettings = ArcSettings()
    retention: RetentionSettings = RetentionSettings()
    legacy_arc: LegacyArcSettings = LegacyArcSettings()
    postgres: PostgresSettings = PostgresSettings()

    @model_validator(mode="after")
    def _backend_needs_postgres(self) -> Settings:
        if self.storage.default_backend == "postgres" and not self.postgres.url:
            raise ValueError(
                'storage.default_backend = "postgres" needs [postgres] url '
                "(or MEMTRACE_POSTGRES_URL)"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Go's variable names (MEMTRACE_SERVER_READ_TIMEOUT, MEMTRACE_ARC_URL…) are read as the
        # keys they map to, between the flags and our own variables.
        go_values, go_names = go_environ(os.environ)
        if isinstance(env_settings, EnvSettingsSource):
            hidden = {name.lower() for name in go_names}
            env_settings.env_vars = {
                k: v for k, v in env_settings.env_vars.items() if k.lower() not in hidden
            }
        sources: list[PydanticBaseSettingsSource] = [
            init_settings,
            InitSettingsSource(settings_cls, go_values),
            env_settings,
        ]
        toml_file: Path | None = getattr(settings_cls, "toml_path", None)
        if toml_file is not None:
            sources.append(InitSettingsSource(settings_cls, read_toml(toml_file)))
        return tuple(sources)

    @property
    def data_dir(self) -> Path:
        return self.storage.data_dir

    @property
    def metadata_path(self) -> Path:
        return self.auth.db_path or self.storage.data_dir / "memtrace.db"

    @property
    def reads_per_org(self) -> int:
        """``limits.reads_per_org``, with 0 resolved against the CPUs available."""
        if self.limits.reads_per_org:
            return self.limits.reads_per_org
        try:
            cpus = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            cpus = os.cpu_count() or 2
        return max(1, cpus - 1)

    @property
    def dedup_window_us(self) -> int | None:
        if not self.dedup.enabled:
            return None
        return int(self.dedup.window_hours * 3_600_000_000)


def _deep_set(target: dict[str, Any], dotted: str, value: Any) -> None:
    section, _, key = dotted.partition(".")
    target.setdefault(section, {})[key] = value


def setting_fields(model: type[BaseModel] = Settings) -> Iterator[tuple[str, FieldInfo]]:
    """Every setting as (dotted name, field), in declaration order: ``server.port``, …"""
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            for key, sub in setting_fields(annotation):
                yield f"{name}.{key}", sub
        else:
            yield name, field


class _Inputs(NamedTuple):
    toml_file: Path | None
    init: dict[str, Any]  # CLI flags and the MEMTRACE_DATA_DIR alias, nested by section
    flags: frozenset[str]  # the dotted names set by a CLI flag
    alias: str | None  # MEMTRACE_DATA_DIR when it sets storage.data_dir


def _inputs(config: Path | None, overrides: dict[str, Any] | None) -> _Inputs:
    if config is not None and not config.is_file():
        raise ConfigError(f"config file not found: {config}")
    toml_file = config or next((p for p in config_search_path() if p.is_file()), None)
    init: dict[str, Any] = {}
    alias = os.environ.get("MEMTRACE_DATA_DIR")
    alias_used = bool(alias) and not os.environ.get("MEMTRACE_STORAGE_DATA_DIR")
    if alias_used:
        _deep_set(init, "storage.data_dir", alias)
    flags = {dotted for dotted, value in (overrides or {}).items() if value is not None}
    for dotted in flags:
        _deep_set(init, dotted, (overrides or {})[dotted])
    return _Inputs(toml_file, init, frozenset(flags), "MEMTRACE_DATA_DIR" if alias_used else None)


def _settings_class(toml_file: Path | None) -> type[Settings]:
    if toml_file is None:
        return Settings
    # the sources are chosen per class in pydantic-settings
    settings_cls = cast("type[Settings]", type("Settings", (Settings,), {}))
    settings_cls.toml_path = toml_file
    return settings_cls


def load_settings(config: Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Read settings once.

    Args:
        config: explicit toml file (``--config``); must exist. Otherwise the search path.
        overrides: dotted keys from CLI flags, e.g. ``{"server.port": 9200}``; ``None`` values
            are ignored.

    Raises:
        ConfigError: the file is missing or unreadable, or a value is invalid (the message
            names the key).
    """
    inputs = _inputs(config, overrides)
    try:
        return _settings_class(inputs.toml_file)(**inputs.init)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = f" (in {inputs.toml_file})" if inputs.toml_file else ""
        message = first["msg"].removeprefix("Value error, ")
        if first["loc"]:  # a rule over several keys names them in its message
            message = f"{error_field(first['loc'])}: {message}"
        raise ConfigError(f"invalid configuration{where}: {message}") from None
    except (OSError, ValueError) as exc:  # unreadable or malformed toml
        raise ConfigError(f"cannot read config file {inputs.toml_file}: {exc}") from None


class SettingSource(NamedTuple):
    """Where a setting's effective value came from."""

    kind: Literal["flag", "env", "file", "default"]
    origin: str = ""  # the variable name, or the file's path


def setting_sources(
    config: Path | None = None, overrides: dict[str, Any] | None = None
) -> tuple[Path | None, dict[str, SettingSource]]:
    """The config file read (if any) and the source of every setting, by the precedence of
    :func:`load_settings` (flag > environment, Go's names first > file > default). Call it
    after :func:`load_settings` accepted the same arguments."""
    inputs = _inputs(config, overrides)
    with _quiet(go_log):  # load_settings already warned about Go keys without effect
        go_values, go_names = go_environ(os.environ)
        from_file = read_toml(inputs.toml_file) if inputs.toml_file else {}
    from_env = EnvSettingsSource(Settings)()
    env_names = {name.upper() for name in os.environ}
    sources: dict[str, SettingSource] = {}
    for dotted, _ in setting_fields():
        section, _, key = dotted.rpartition(".")
        if dotted in inputs.flags:
            sources[dotted] = SettingSource("flag")
        elif inputs.alias and dotted == "storage.data_dir":
            sources[dotted] = SettingSource("env", inputs.alias)
        elif _present(go_values, section, key):
            (name,) = [n for n in go_names if GO_KEYS[GO_ENV[n]] == dotted and os.environ[n]]
            sources[dotted] = SettingSource("env", name)
        elif _present(from_env, section, key):
            full = f"MEMTRACE_{dotted.replace('.', '_')}".upper()
            whole = f"MEMTRACE_{section}".upper()  # a section given as one JSON object
            sources[dotted] = SettingSource("env", full if full in env_names else whole)
        elif _present(from_file, section, key):
            sources[dotted] = SettingSource("file", str(inputs.toml_file))
        else:
            sources[dotted] = SettingSource("default")
    return inputs.toml_file, sources


def _present(values: dict[str, Any], section: str, key: str) -> bool:
    scope = values.get(section) if section else values
    return isinstance(scope, dict) and key in scope


@contextmanager
def _quiet(logger: logging.Logger) -> Iterator[None]:
    disabled, logger.disabled = logger.disabled, True
    try:
        yield
    finally:
        logger.disabled = disabled
