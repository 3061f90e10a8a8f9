"""The Arc backend: the wire client, DuckDB SQL, the durable outbox, the shipper that ships from
it and verifies Arc kept what it accepted, the store that merges reads, and moving an org's
memories between its embedded store and Arc (docs/arc.md)."""
