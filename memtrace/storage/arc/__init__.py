"""The Arc backend: the wire client, DuckDB SQL, the durable outbox, the store that ships from
it, and copying an org's embedded memories to Arc (docs/arc.md)."""
