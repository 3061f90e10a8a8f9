"""Import the metadata DB of the Go memtrace (``memtrace migrate-from-go``).

Everything keeps its id: orgs (``org_…``), API keys (Go's integer id, as text; the bcrypt hash is
carried over, so every ``mtk_`` key authenticates unchanged), agents (``agent_<hex>`` ids with
their free-text names), sessions (status, metadata, times) and Arc bindings (the Arc API key
decrypted with Go's envelope under the same ``MEMTRACE_MASTER_KEY`` and re-encrypted in ours).
A row already present (same id) is left as it is, so a second run changes nothing. The whole
import is one transaction: it is written completely or not at all, and a dry run rolls it back.
Go's formats are described in docs/migrating-from-go.md.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from memtrace.auth.crypto import MASTER_KEY_ENV, load_master_key
from memtrace.auth.keys import ApiKeyRecord
from memtrace.auth.permissions import DEFAULT_PERMISSIONS, PERMISSIONS
from memtrace.domain.errors import ConfigError, InvalidInput
from memtrace.domain.gocompat import go_json_object
from memtrace.domain.ids import DEFAULT_ORG_ID
from memtrace.metadata import bindings
from memtrace.metadata import sqlite as md
from memtrace.storage.arc.target import DEFAULT_MEASUREMENT

# The tables and columns that make a file a Go memtrace metadata DB (arc_instances is 0.2+).
GO_TABLES: dict[str, set[str]] = {
    "organizations": {"id", "name", "created_at"},
    "api_keys": {"id", "key_hash", "key_prefix", "name", "org_id", "permissions", "created_at",
                 "expires_at", "enabled"},
    "agents": {"id", "org_id", "name", "description", "config_json", "created_at",
               "last_active_at"},
    "sessions": {"id", "org_id", "agent_id", "status", "metadata_json", "created_at",
                 "updated_at", "closed_at"},
}  # fmt: skip
ARC_INSTANCES = {"org_id", "url", "api_key_cipher", "api_key_nonce", "database", "measurement"}
SECTIONS = ("orgs", "api keys", "agents", "sessions", "arc bindings")


@dataclass(frozen=True, slots=True)
class LegacyArc:
    """The flat ``[arc]`` block of a pre-0.2 Go ``memtrace.toml`` (or ``MEMTRACE_ARC_*``)."""

    url: str
    api_key: str = ""
    database: str = ""
    measurement: str = ""


@dataclass
class ImportReport:
    """What the import did (or, in a dry run, would do), per section."""

    schema: str
    added: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SECTIONS, 0))
    present: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SECTIONS, 0))
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(self.added.values())

    def lines(self, *, dry_run: bool) -> list[str]:
        verb = "would import" if dry_run else "imported"
        out = [f"Go memtrace metadata DB ({self.schema} schema)"]
        for section in SECTIONS:
            out.append(
                f"  {section + ':':14}{self.added[section]} {verb}, "
                f"{self.present[section]} already present"
            )
        out.extend(f"  note: {note}" for note in self.notes)
        if not self.changed:
            out.append("nothing to import: everything is already present")
        return out


def open_go_db(path: Path) -> sqlite3.Connection:
    """Open a Go memtrace metadata DB read-only.

    Raises:
        InvalidInput: the file is missing or is not a Go memtrace metadata DB (naming what
            is missing).
    """
    if not path.is_file():
        raise InvalidInput(f"go-db: {path} does not exist")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError:
        raise InvalidInput(f"go-db: {path} is not a SQLite database") from None
    for table, needed in GO_TABLES.items():
        missing = needed - (_columns(conn, table) if table in tables else set())
        if table not in tables or missing:
            conn.close()
            what = f"table {table}" if table not in tables else f"{table}.{min(missing)}"
            raise InvalidInput(
                f"go-db: {path} is not a Go memtrace metadata DB (no {what}); pass the file "
                "of the Go server's auth.db_path (default ./data/memtrace.db)"
            )
    return conn


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')}


def has_arc_instances(go: sqlite3.Connection) -> bool:
    return _columns(go, "arc_instances") >= ARC_INSTANCES


# Go writes times as SQLite CURRENT_TIMESTAMP text or as mattn/go-sqlite3's binding of a Go
# time ("2006-01-02 15:04:05.999999999-07:00"); both are UTC unless a zone is given.
_GO_TIME = re.compile(
    r"^(\d{4}-\d{2}-\d{2})(?:[ T](\d{2}:\d{2})(?::(\d{2}))?(?:\.(\d+))?)?(Z|[+-]\d{2}:?\d{2})?$"
)


def parse_go_time(value: Any) -> int | None:
    """A Go metadata time as integer microseconds, or None (NULL or unreadable)."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):  # never written by Go; taken as Unix seconds
        return int(value * 1_000_000)
    match = _GO_TIME.match(str(value).strip())
    if not match:
        return None
    day, hm, sec, frac, zone = match.groups()
    text = f"{day}T{hm or '00:00'}:{sec or '00'}.{(frac or '0')[:6]:0<6}"
    zone = "+00:00" if zone in (None, "Z") else zone
    parsed = datetime.fromisoformat(text + zone).astimezone(UTC)
    return int(parsed.timestamp()) * 1_000_000 + parsed.microsecond


def go_permissions(text: str | None) -> tuple[frozenset[str], str | None]:
    """Go stored ``--permissions`` unvalidated (and never enforced them): known names are kept
    (spaces and case forgiven), and a key with none gets read,write. Returns a note when the
    text was not a clean list."""
    parts = (text or "").split(",")
    known = frozenset({p.strip().lower() for p in parts} & set(PERMISSIONS))
    perms = known or DEFAULT_PERMISSIONS
    clean = bool(text) and all(p in PERMISSIONS for p in parts)
    note = None if clean else f"permissions {text!r} read as {','.join(sorted(perms))}"
    return perms, note


def decrypt_go_secret(master_key: bytes, cipher: bytes, nonce: bytes, org_id: str) -> str:
    """Go's envelope: AES-256-GCM, no associated data, raw ciphertext‖tag and 12-byte nonce."""
    try:
        if len(nonce) != 12:
            raise ValueError("nonce has wrong length")
        return AESGCM(master_key).decrypt(bytes(nonce), bytes(cipher), None).decode()
    except (InvalidTag, ValueError, TypeError):
        raise ConfigError(
            f"cannot decrypt the Arc API key of {org_id} from the Go DB: {MASTER_KEY_ENV} is not "
            "the key the Go server used (set the same value it had)"
        ) from None


def import_go(
    go: sqlite3.Connection,
    ours: sqlite3.Connection,
    *,
    now: int,
    dry_run: bool = False,
    legacy: LegacyArc | None = None,
    environ: Mapping[str, str] | None = None,
) -> ImportReport:
    """Import ``go`` into our metadata DB ``ours`` (migrated) in one transaction.

    Raises:
        ConfigError: an Arc API key cannot be decrypted (nothing is written then).
    """
    report = ImportReport("0.2" if has_arc_instances(go) else "pre-0.2")
    ours.execute("BEGIN IMMEDIATE")
    try:
        _orgs(go, ours, report)
        _keys(go, ours, report, now)
        _agents(go, ours, report)
        _sessions(go, ours, report)
        _bindings(go, ours, report, now, legacy, environ)
    except BaseException:
        ours.execute("ROLLBACK")
        raise
    ours.execute("ROLLBACK" if dry_run else "COMMIT")
    return report


def _exists(ours: sqlite3.Connection, sql: str, *args: Any) -> bool:
    return ours.execute(sql, args).fetchone() is not None


def _orgs(go: sqlite3.Connection, ours: sqlite3.Connection, report: ImportReport) -> None:
    rows = go.execute("SELECT id, name, created_at FROM organizations ORDER BY created_at, id")
    for org_id, name, created_at in rows:
        if _exists(ours, "SELECT 1 FROM orgs WHERE id = ?", org_id):
            report.present["orgs"] += 1
            continue
        label = (name or "").strip() or org_id
        if _exists(ours, "SELECT 1 FROM orgs WHERE name = ?", label):
            renamed = f"{label} ({org_id})"
            report.notes.append(f"org {org_id}: the name {label!r} is taken; named {renamed!r}")
            label = renamed
        ours.execute(
            "INSERT INTO orgs (id, name, created_at) VALUES (?, ?, ?)",
            (org_id, label, parse_go_time(created_at) or 0),
        )
        report.added["orgs"] += 1


def _keys(go: sqlite3.Connection, ours: sqlite3.Connection, report: ImportReport, now: int) -> None:
    rows = go.execute(
        "SELECT id, key_hash, key_prefix, name, org_id, permissions, created_at, expires_at,"
        " enabled FROM api_keys ORDER BY id"
    )
    for key_id, key_hash, prefix, name, org_id, perms_text, created, expires, enabled in rows:
        if _exists(ours, "SELECT 1 FROM api_keys WHERE id = ?", str(key_id)):
            report.present["api keys"] += 1
            continue
        if not str(key_hash or "").startswith("$2"):
            report.notes.append(f"key {name!r}: not a bcrypt hash; skipped")
            continue
        permissions, note = go_permissions(perms_text)
        if note:
            report.notes.append(f"key {name!r}: {note}")
        revoked_at = None
        expiry = parse_go_time(expires)
        if not enabled:
            revoked_at = now
            report.notes.append(f"key {name!r}: disabled in the Go DB; imported revoked")
        elif expiry is not None and expiry <= now:
            revoked_at = expiry
            report.notes.append(f"key {name!r}: expired in the Go DB; imported revoked")
        elif expiry is not None:
            report.notes.append(
                f"key {name!r}: expires_at is not supported; imported without expiry "
                f"(revoke it with `memtrace key revoke {key_id}` when it should stop working)"
            )
        md.insert_key(
            ours,
            ApiKeyRecord(
                str(key_id), org_id, name, prefix, key_hash, permissions,
                parse_go_time(created) or now, revoked_at,
            ),
        )  # fmt: skip
        report.added["api keys"] += 1


def _agents(go: sqlite3.Connection, ours: sqlite3.Connection, report: ImportReport) -> None:
    rows = go.execute(
        "SELECT org_id, id, name, description, config_json, created_at, last_active_at"
        " FROM agents ORDER BY created_at, id"
    )
    for org_id, agent_id, name, description, config, created, last_active in rows:
        if _exists(ours, "SELECT 1 FROM agents WHERE org_id = ? AND id = ?", org_id, agent_id):
            report.present["agents"] += 1
            continue
        config_obj = go_json_object(config)
        ours.execute(
            "INSERT INTO agents (org_id, id, description, config, created_at, last_active_at,"
            " name) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                org_id,
                agent_id,
                description or None,
                orjson.dumps(config_obj).decode() if config_obj else None,
                parse_go_time(created) or 0,
                parse_go_time(last_active),
                name if name and name != agent_id else None,
            ),
        )
        report.added["agents"] += 1


def _sessions(go: sqlite3.Connection, ours: sqlite3.Connection, report: ImportReport) -> None:
    rows = go.execute(
        "SELECT id, org_id, agent_id, status, metadata_json, created_at, updated_at, closed_at"
        " FROM sessions ORDER BY created_at, id"
    )
    for session_id, org_id, agent_id, status, metadata, created, updated, closed in rows:
        if _exists(ours, "SELECT 1 FROM sessions WHERE id = ?", session_id):
            report.present["sessions"] += 1
            continue
        meta = go_json_object(metadata)
        created_us = parse_go_time(created) or 0
        ours.execute(
            "INSERT INTO sessions (id, org_id, agent_id, status, metadata, created_at,"
            " updated_at, closed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                session_id,
                org_id,
                agent_id,
                status or "active",
                orjson.dumps(meta).decode() if meta else None,
                created_us,
                parse_go_time(updated) or created_us,
                parse_go_time(closed),
            ),
        )
        report.added["sessions"] += 1


def adopt_legacy_arc(
    conn: sqlite3.Connection,
    legacy: LegacyArc,
    now: int,
    environ: Mapping[str, str] | None = None,
) -> bool:
    """What the Go server did on start: a legacy ``[arc]`` url and no Arc binding at all make
    ``org_default`` (created if missing) bound to it. True when the binding was added."""
    if not legacy.url or conn.execute("SELECT 1 FROM arc_bindings LIMIT 1").fetchone():
        return False
    report = ImportReport("legacy")
    _bind_all(conn, report, now, [_legacy_wanted(conn, legacy, now, report)], environ)
    for note in report.notes:
        raise ConfigError(f"legacy [arc] block: {note}")
    return True


def _legacy_wanted(
    ours: sqlite3.Connection, legacy: LegacyArc, now: int, report: ImportReport
) -> tuple[str, str, str, str, str]:
    if not _exists(ours, "SELECT 1 FROM orgs WHERE id = ?", DEFAULT_ORG_ID):
        ours.execute(
            "INSERT INTO orgs (id, name, created_at) VALUES (?, 'Default', ?)",
            (DEFAULT_ORG_ID, now),
        )
        report.added["orgs"] += 1
    measurement = legacy.measurement or DEFAULT_MEASUREMENT
    return (DEFAULT_ORG_ID, legacy.url, legacy.database, measurement, legacy.api_key)


def _bindings(
    go: sqlite3.Connection,
    ours: sqlite3.Connection,
    report: ImportReport,
    now: int,
    legacy: LegacyArc | None,
    environ: Mapping[str, str] | None,
) -> None:
    wanted: list[tuple[str, str, str, str, str]] = []  # org, url, database, measurement, key
    rows: list[tuple[Any, ...]] = []
    if has_arc_instances(go):
        rows = go.execute(
            "SELECT org_id, url, database, measurement, api_key_cipher, api_key_nonce"
            " FROM arc_instances ORDER BY created_at, id"
        ).fetchall()
    if rows:
        master = load_master_key(environ)
        for org_id, url, database, measurement, cipher, nonce in rows:
            secret = decrypt_go_secret(master, cipher, nonce, org_id)
            wanted.append((org_id, url, database, measurement or DEFAULT_MEASUREMENT, secret))
    elif legacy is not None and legacy.url:  # what Go 0.2 did on its first start
        wanted.append(_legacy_wanted(ours, legacy, now, report))
    _bind_all(ours, report, now, wanted, environ)


def _bind_all(
    ours: sqlite3.Connection,
    report: ImportReport,
    now: int,
    wanted: list[tuple[str, str, str, str, str]],
    environ: Mapping[str, str] | None,
) -> None:
    for org_id, url, database, measurement, secret in wanted:
        if bindings.get_binding(ours, org_id) is not None:
            report.present["arc bindings"] += 1
            continue
        try:
            bindings.put_binding(
                ours,
                org_id,
                url=url,
                database=database,
                measurement=measurement,
                api_key=secret or None,
                now=now,
                environ=environ,
            )
        except InvalidInput as exc:
            report.notes.append(
                f"org {org_id}: Arc binding not imported ({exc.message}); bind it with "
                "`memtrace org add-arc`"
            )
            continue
        report.added["arc bindings"] += 1
