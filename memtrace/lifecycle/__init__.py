"""The data lifecycle: delete, forget, export/import, retention and the audit log, once over the
storage protocol (docs/api.md, "Data lifecycle")."""
