"""The metadata schema on PostgreSQL (cluster mode), versioned like the SQLite one.

Same tables and columns as :mod:`memtrace.metadata.schema`. Every change to what replicas cache
(orgs, API keys, Arc bindings, and agent deletions) bumps ``meta_version`` and sends
``NOTIFY memtrace_meta`` in the changing transaction, from a statement trigger: the CLI, any
replica, or an operator's manual ``UPDATE`` all count, and a rolled-back change never does.
Replicas poll ``meta_version`` every half second (docs/deploy-cluster.md).
"""

from __future__ import annotations

_V1 = """
CREATE TABLE orgs (
    id text PRIMARY KEY,
    name text NOT NULL UNIQUE,
    created_at bigint NOT NULL
);
CREATE TABLE api_keys (
    id text PRIMARY KEY,
    org_id text NOT NULL,
    name text NOT NULL,
    lookup text NOT NULL,
    key_hash text NOT NULL,
    permissions text NOT NULL,
    created_at bigint NOT NULL,
    revoked_at bigint
);
CREATE INDEX api_keys_lookup ON api_keys (lookup);
CREATE INDEX api_keys_org ON api_keys (org_id);
CREATE TABLE agents (
    org_id text NOT NULL,
    id text NOT NULL,
    description text,
    config text,
    created_at bigint NOT NULL,
    last_active_at bigint,
    name text,  -- a display name other than the id (NULL: the id is the name)
    PRIMARY KEY (org_id, id)
);
CREATE INDEX agents_org_name ON agents (org_id, name);
CREATE TABLE sessions (
    id text PRIMARY KEY,
    org_id text NOT NULL,
    agent_id text NOT NULL,
    status text NOT NULL,
    metadata text,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    closed_at bigint
);
CREATE INDEX sessions_org_agent ON sessions (org_id, agent_id, created_at);
CREATE INDEX sessions_org ON sessions (org_id, created_at);
CREATE TABLE arc_bindings (
    org_id text PRIMARY KEY,
    url text NOT NULL,
    database text NOT NULL,
    measurement text NOT NULL,
    api_key_enc text,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL
);

CREATE TABLE meta_version (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    version bigint NOT NULL
);
INSERT INTO meta_version VALUES (true, 0);

CREATE FUNCTION memtrace_meta_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE v bigint;
BEGIN
    UPDATE meta_version SET version = version + 1 RETURNING version INTO v;
    PERFORM pg_notify('memtrace_meta', v::text);
    RETURN NULL;
END $$;

CREATE TRIGGER orgs_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON orgs
    FOR EACH STATEMENT EXECUTE FUNCTION memtrace_meta_changed();
CREATE TRIGGER api_keys_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION memtrace_meta_changed();
CREATE TRIGGER arc_bindings_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON arc_bindings
    FOR EACH STATEMENT EXECUTE FUNCTION memtrace_meta_changed();
-- replicas remember which agents exist; a deletion must reach them
CREATE TRIGGER agents_deleted AFTER DELETE OR TRUNCATE ON agents
    FOR EACH STATEMENT EXECUTE FUNCTION memtrace_meta_changed();
"""

MIGRATIONS: tuple[str, ...] = (_V1,)
