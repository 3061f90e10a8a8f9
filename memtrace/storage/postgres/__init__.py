"""The PostgreSQL backend of cluster mode (docs/deploy-cluster.md): ``db`` (the process's pool
and migrations), ``schema`` (the memories table and its row shape), ``sql`` (queries from
``MemoryQuery``), ``store`` (``PostgresStore``), ``events`` (change notifications)."""
