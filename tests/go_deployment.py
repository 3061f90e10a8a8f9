"""A Go memtrace (0.2) deployment built from Go's own formats, never from memtrace's code.

Everything here restates what the Go server writes (docs/migrating-from-go.md lists the facts):

* the metadata DB: Go's ``CREATE TABLE`` statements (``organizations``, ``api_keys``,
  ``agents``, ``sessions``, ``arc_instances``), ids ``<prefix><24 hex>``, defaulted times as
  SQLite ``CURRENT_TIMESTAMP`` text and times Go binds itself as
  ``2006-01-02 15:04:05.999999999+00:00`` text;
* API keys: ``mtk_`` + URL-safe base64 *with* ``=`` padding of 32 random bytes (48 characters),
  bcrypt of the whole key (``$2a$``, cost 10 in Go), ``key_prefix`` = the first 16 hex digits of
  SHA-256(key); a revoked key is a deleted row;
* Arc API keys: AES-256-GCM under the base64-decoded ``MEMTRACE_MASTER_KEY``, no associated
  data, the ciphertext (tag appended) and the 12-byte nonce in two raw BLOB columns;
* Arc rows: 12 columns (``time`` in ns, ``metadata_json``, ``tags_csv``, ``""`` for empty
  strings, ``importance`` always a float, no ``id``), Go's dedup key
  sha256(agent|event|content[:200 bytes])[:32], written as Go writes them (msgpack, columnar);
* ``memtrace.toml`` as Go shipped it (pre-0.2 with the flat ``[arc]`` block, or 0.2).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import msgpack
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

GO_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS organizations (id TEXT PRIMARY KEY, name TEXT NOT NULL,"
    " created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, settings_json TEXT DEFAULT '{}')",
    "CREATE TABLE IF NOT EXISTS api_keys (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " key_hash TEXT NOT NULL, key_prefix TEXT NOT NULL, name TEXT NOT NULL UNIQUE,"
    " org_id TEXT NOT NULL, permissions TEXT DEFAULT 'read,write',"
    " created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, expires_at TIMESTAMP,"
    " enabled INTEGER DEFAULT 1, FOREIGN KEY (org_id) REFERENCES organizations(id))",
    "CREATE INDEX IF NOT EXISTS idx_api_keys_prefix ON api_keys(key_prefix)",
    "CREATE INDEX IF NOT EXISTS idx_api_keys_enabled ON api_keys(enabled)",
    "CREATE TABLE IF NOT EXISTS agents (id TEXT PRIMARY KEY, org_id TEXT NOT NULL,"
    " name TEXT NOT NULL, description TEXT, config_json TEXT DEFAULT '{}',"
    " created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, last_active_at TIMESTAMP,"
    " FOREIGN KEY (org_id) REFERENCES organizations(id), UNIQUE(org_id, name))",
    "CREATE INDEX IF NOT EXISTS idx_agents_org ON agents(org_id)",
    "CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, org_id TEXT NOT NULL,"
    " agent_id TEXT NOT NULL, status TEXT DEFAULT 'active', metadata_json TEXT DEFAULT '{}',"
    " created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,"
    " updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, closed_at TIMESTAMP,"
    " FOREIGN KEY (org_id) REFERENCES organizations(id),"
    " FOREIGN KEY (agent_id) REFERENCES agents(id))",
    "CREATE INDEX IF NOT EXISTS idx_sessions_org ON sessions(org_id)",
    "CREATE INDEX IF NOT EXISTS idx_sessions_agent ON sessions(agent_id)",
    "CREATE INDEX IF NOT EXISTS idx_sessions_status ON sessions(status)",
    # 0.2 only (a pre-0.2 DB stops before this table):
    "CREATE TABLE IF NOT EXISTS arc_instances (id TEXT PRIMARY KEY,"
    " org_id TEXT NOT NULL UNIQUE, url TEXT NOT NULL, api_key_cipher BLOB NOT NULL,"
    " api_key_nonce BLOB NOT NULL, database TEXT NOT NULL,"
    " measurement TEXT NOT NULL DEFAULT 'events',"
    " created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,"
    " updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,"
    " FOREIGN KEY (org_id) REFERENCES organizations(id) ON DELETE CASCADE)",
    "CREATE INDEX IF NOT EXISTS idx_arc_instances_org ON arc_instances(org_id)",
)
GO_ARC_COLUMNS = (
    "time", "org_id", "agent_id", "session_id", "memory_type", "event_type", "content",
    "metadata_json", "tags_csv", "dedup_key", "importance", "parent_id",
)  # fmt: skip


def go_id(prefix: str) -> str:
    return prefix + os.urandom(12).hex()


def go_api_key() -> str:
    return "mtk_" + base64.urlsafe_b64encode(os.urandom(32)).decode()  # keeps the "=" padding


def go_key_hash(key: str, rounds: int) -> str:
    return bcrypt.hashpw(key.encode(), bcrypt.gensalt(rounds=rounds, prefix=b"2a")).decode()


def go_encrypt(master_key_b64: str, plaintext: str) -> tuple[bytes, bytes]:
    """(api_key_cipher, api_key_nonce) as Go stores them."""
    nonce = os.urandom(12)
    return AESGCM(base64.b64decode(master_key_b64)).encrypt(nonce, plaintext.encode(), None), nonce


def sqlite_now(at: datetime) -> str:
    """``CURRENT_TIMESTAMP`` text (the column defaults)."""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def go_bound_time(at: datetime, extra_ns: int = 789) -> str:
    """A Go ``time.Time`` bound by mattn/go-sqlite3: 9 fraction digits, zeros trimmed."""
    fraction = f".{at.microsecond * 1000 + extra_ns:09d}".rstrip("0").rstrip(".")
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") + fraction + "+00:00"


def go_dedup_key(agent_id: str, event_type: str, content: str) -> str:
    raw = f"{agent_id}|{event_type}|".encode() + content.encode()[:200]
    return hashlib.sha256(raw).hexdigest()[:32]


def go_json(value: Any) -> str:
    """encoding/json output: sorted keys, no spaces, raw UTF-8, ``<>&`` escaped."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


@dataclass
class GoKey:
    name: str
    org_id: str
    plaintext: str
    permissions: str
    valid: bool  # what Go's VerifyKey answered
    id: int | None = None


@dataclass
class GoDeployment:
    path: Path
    master_key: str
    orgs: dict[str, str] = field(default_factory=dict)  # name -> id (first of a name)
    org_names: dict[str, str] = field(default_factory=dict)  # id -> name
    keys: list[GoKey] = field(default_factory=list)
    agents: list[dict[str, Any]] = field(default_factory=list)
    sessions: list[dict[str, Any]] = field(default_factory=list)
    arc: list[dict[str, Any]] = field(default_factory=list)

    def key(self, name: str) -> GoKey:
        return next(k for k in self.keys if k.name == name)

    def agent(self, org_id: str, name: str) -> dict[str, Any]:
        return next(a for a in self.agents if a["org_id"] == org_id and a["name"] == name)


def build_go_db(
    path: Path,
    master_key: str,
    *,
    arc_url: str,
    arc_api_key: str = "arc-test-token",
    pre_02: bool = False,
    bcrypt_rounds: int = 4,
) -> GoDeployment:
    """A Go metadata DB at ``path`` with several orgs, keys, agents, sessions and (0.2) Arc
    instances for ``org_default``, acme and globex (initech stays unbound)."""
    now = datetime.now(UTC).replace(microsecond=123456)
    out = GoDeployment(path, master_key)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    for statement in GO_SCHEMA[:-2] if pre_02 else GO_SCHEMA:
        conn.execute(statement)

    def org(org_id: str, name: str, days: int) -> str:
        conn.execute(
            "INSERT INTO organizations (id, name, created_at) VALUES (?, ?, ?)",
            (org_id, name, sqlite_now(now - timedelta(days=days))),
        )
        out.orgs.setdefault(name, org_id)
        out.org_names[org_id] = name
        return org_id

    default = org("org_default", "Default", 40)
    acme = org(go_id("org_"), "acme", 30)
    globex = org(go_id("org_"), "globex", 20)
    initech = org(go_id("org_"), "initech", 10)
    org(go_id("org_"), "acme", 5)  # Go allows two orgs with one name

    def key(
        name: str, org_id: str, permissions: str, *, revoked: bool = False, **cols: Any
    ) -> None:
        plain = go_api_key()
        cur = conn.execute(
            "INSERT INTO api_keys (key_hash, key_prefix, name, org_id, permissions, created_at,"
            " expires_at, enabled) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                go_key_hash(plain, bcrypt_rounds),
                hashlib.sha256(plain.encode()).hexdigest()[:16],
                name,
                org_id,
                permissions,
                sqlite_now(now - timedelta(days=3)),
                cols.get("expires_at"),
                cols.get("enabled", 1),
            ),
        )
        if revoked:  # `memtrace key revoke` deletes the row
            conn.execute("DELETE FROM api_keys WHERE id = ?", (cur.lastrowid,))
        valid = not revoked and cols.get("enabled", 1) == 1 and "expires_at" not in cols
        out.keys.append(GoKey(name, org_id, plain, permissions, valid, cur.lastrowid))

    key("admin", default, "read,write,admin")
    key("acme-prod", acme, "read,write")
    key("acme-readonly", acme, "read")
    key("acme-old", acme, "read,write", revoked=True)
    key("globex-admin", globex, "read,write,admin")
    key("globex-ci", globex, "write")
    key("globex-spaced", globex, "read, write")  # stored unvalidated by Go
    key("initech-prod", initech, "read,write")
    key("acme-disabled", acme, "read,write", enabled=0)
    key("globex-expired", globex, "read", expires_at=sqlite_now(now - timedelta(days=1)))

    def agent(org_id: str, name: str, description: str = "", config: Any = None) -> None:
        row = {"id": go_id("agent_"), "org_id": org_id, "name": name, "description": description,
               "config_json": go_json(config) if config is not None else "{}"}  # fmt: skip
        conn.execute(
            "INSERT INTO agents (id, org_id, name, description, config_json, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (*row.values(), sqlite_now(now - timedelta(days=9))),
        )
        out.agents.append(row)

    agent(default, "my_agent")
    agent(default, "claude-cookbook-agent", "Claude cookbook demo", {"model": "claude"})
    agent(acme, "web_crawler", "Crawls product pages", {"max_depth": 3})
    agent(acme, "Support Agent")
    agent(acme, "agent_1")
    agent(globex, "web_crawler")
    agent(globex, "研究エージェント", "unicode name")
    agent(initech, "triage-bot", "Routes tickets", {"queues": ["a", "b"], "threshold": 0.25})

    def session(org_id: str, agent_name: str, metadata: Any, hours: float, **cols: Any) -> None:
        created = now - timedelta(hours=hours)
        row = {
            "id": go_id("sess_"),
            "org_id": org_id,
            "agent_id": out.agent(org_id, agent_name)["id"],
            "status": cols.get("status", "active"),
            "metadata_json": go_json(metadata) if metadata is not None else "{}",
            "created_at": go_bound_time(created),
            "updated_at": go_bound_time(created + timedelta(minutes=cols.get("updated_min", 0))),
            "closed_at": go_bound_time(created + timedelta(hours=1)) if "closed" in cols else None,
        }
        conn.execute(
            f"INSERT INTO sessions ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
            tuple(row.values()),
        )
        out.sessions.append(row)

    session(acme, "web_crawler", {"task": "product_research"}, 6)
    session(acme, "Support Agent", {}, 48, status="closed", closed=True, updated_min=60)
    session(acme, "agent_1", {"ticket": 4521}, 12, status="paused", updated_min=60)
    session(default, "my_agent", None, 0.5)
    session(default, "claude-cookbook-agent", None, 96, closed=True, updated_min=300)  # reopened
    session(globex, "web_crawler", {"goal": "pricing <watch> & alert", "depth": 2.5}, 24)
    session(initech, "triage-bot", {"ticket": 4521}, 72, status="closed", closed=True)

    if not pre_02:
        for org_id, instance_id, database in (
            (default, "arc_default", "memory"),
            (acme, go_id("arc_"), "acme_memory"),
            (globex, go_id("arc_"), "globex_memory"),
        ):
            cipher, nonce = go_encrypt(master_key, arc_api_key)
            stamp = sqlite_now(now - timedelta(days=8))
            conn.execute(
                "INSERT INTO arc_instances (id, org_id, url, api_key_cipher, api_key_nonce,"
                " database, measurement, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, 'events', ?, ?)",
                (instance_id, org_id, arc_url, cipher, nonce, database, stamp, stamp),
            )
            out.arc.append({"id": instance_id, "org_id": org_id, "url": arc_url,
                            "database": database, "measurement": "events",
                            "api_key": arc_api_key})  # fmt: skip
    conn.commit()
    conn.close()
    return out


GO_TOML = """# Memtrace Configuration
# LLM-agnostic memory layer for AI agents

[server]
host = "{host}"
port = {port}
read_timeout = 30
write_timeout = 30
shutdown_timeout = 30

[log]
level = "info"
format = "console"    # "json" for production

[arc]
{legacy}connect_timeout = 5
query_timeout = 30
write_batch_size = 100
write_flush_interval_ms = 1000

[auth]
enabled = true
db_path = "{db_path}"

[dedup]
enabled = true
window_hours = 24
"""


def go_toml(
    *,
    db_path: str = "./data/memtrace.db",
    arc_url: str | None = None,
    arc_api_key: str = "",
    database: str = "memory",
    host: str = "0.0.0.0",
    port: int = 9100,
) -> str:
    """Go's shipped ``memtrace.toml``: pre-0.2 with ``arc_url`` (the flat ``[arc]`` block whose
    url/api_key/database/measurement Go 0.2 migrates into ``arc_default``), else the 0.2 file."""
    legacy = ""
    if arc_url is not None:
        legacy = (
            f'url = "{arc_url}"\napi_key = "{arc_api_key}"\n'
            f'database = "{database}"\nmeasurement = "events"\n'
        )
    return GO_TOML.format(host=host, port=port, legacy=legacy, db_path=db_path)


def go_memories(dep: GoDeployment, org_id: str) -> list[dict[str, Any]]:
    """Go CreateRequests (plus ``age_s``) an org's clients sent: generated and free-text agent
    ids, the never-created session ``sess_abc``, every memory type, errors, metadata needing
    Go's escapes, tags, client dedup keys, dedup disabled, two rows at one instant, old rows."""
    agents = [a for a in dep.agents if a["org_id"] == org_id]
    sessions = [s for s in dep.sessions if s["org_id"] == org_id]
    registered = agents[0]["id"]
    free_text = agents[0]["name"]
    session = sessions[0]["id"]
    long = "Résumé of the crawl — " + "ü" * 120 + " tail after the 200-byte cut"
    return [
        {"age_s": 60, "agent_id": registered, "session_id": session, "memory_type": "episodic",
         "event_type": "page_crawled", "content": f"Crawled example.com for {org_id}",
         "metadata": {"url": "https://example.com", "pages_found": 3},
         "tags": ["crawling", "products"], "importance": 0.7},
        {"age_s": 120, "agent_id": registered, "session_id": session, "memory_type": "decision",
         "event_type": "decision", "content": "Skip pagination — only 2 pages deep",
         "metadata": {"reasoning": "feed had <2 pages> & no \"next\" link"}},
        {"age_s": 180, "agent_id": registered, "session_id": session, "memory_type": "session",
         "event_type": "error", "content": "Rate limited by target API, backing off",
         "tags": ["http.429"], "importance": 1.0},
        {"age_s": 300, "agent_id": registered, "session_id": session, "memory_type": "entity",
         "event_type": "customer_fact", "content": "Customer Alex prefers Python"},
        {"age_s": 300, "agent_id": registered, "session_id": session, "memory_type": "session",
         "event_type": "user_message", "content": "same instant as the entity row above"},
        {"age_s": 600, "agent_id": free_text, "content": "hello"},
        {"age_s": 900, "agent_id": free_text, "session_id": "sess_abc",
         "event_type": "page_crawled", "content": "memory in session sess_abc, never created"},
        {"age_s": 1200, "agent_id": free_text, "session_id": "sess_abc",
         "memory_type": "decision", "event_type": "decision",
         "content": "It's 100% done_ok with a back\\slash", "parent_id": "thread-1"},
        {"age_s": 1500, "agent_id": free_text, "event_type": "page_crawled", "content": long,
         "dedup_key": "crawl_example_2026-02-07"},
        {"age_s": 1800, "agent_id": free_text, "event_type": "note",
         "content": "written while dedup was disabled", "dedup": False},
        {"age_s": 30 * 3600, "agent_id": registered, "content": "older than the 24h window"},
        {"age_s": 10 * 86400, "agent_id": "ghost_agent", "memory_type": "entity",
         "content": "older than 7 days, agent never registered", "tags": ["archive", "v1.2"],
         "importance": 0.25},
    ]  # fmt: skip


def go_arc_columns(org_id: str, memories: list[dict[str, Any]], now_ns: int) -> dict[str, list]:
    """The ``columns`` map of Go's msgpack write for ``memories`` (Go's defaults applied)."""
    columns: dict[str, list[Any]] = {c: [] for c in GO_ARC_COLUMNS}
    for m in memories:
        event_type = m.get("event_type") or "general"
        dedup = m.get("dedup_key") or (
            go_dedup_key(m["agent_id"], event_type, m["content"]) if m.get("dedup", True) else ""
        )
        row = {
            "time": now_ns - int(m.get("age_s", 0) * 1_000_000_000),
            "org_id": org_id,
            "agent_id": m["agent_id"],
            "session_id": m.get("session_id") or "",
            "memory_type": m.get("memory_type") or "episodic",
            "event_type": event_type,
            "content": m["content"],
            "metadata_json": go_json(m["metadata"]) if m.get("metadata") is not None else "{}",
            "tags_csv": ",".join(m.get("tags") or []),
            "dedup_key": dedup,
            "importance": float(m.get("importance") or 0.0),
            "parent_id": m.get("parent_id") or "",
        }
        for name in GO_ARC_COLUMNS:
            columns[name].append(row[name])
    return columns


def write_go_rows(
    http: httpx.Client, database: str, measurement: str, columns: dict[str, list], api_key: str
) -> None:
    """POST the rows to Arc as Go's client does (msgpack, ``x-arc-database``, ``x-api-key``)."""
    response = http.post(
        "/api/v1/write/msgpack",
        content=msgpack.packb({"m": measurement, "columns": columns}, use_bin_type=True),
        headers={
            "Content-Type": "application/msgpack",
            "x-arc-database": database,
            "x-api-key": api_key,
        },
    )
    assert response.status_code in (200, 204), response.text
