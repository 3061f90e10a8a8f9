"""Where memories are stored: the storage protocol (:mod:`memtrace.storage.base`), the row
shape, the SQLite machinery, the embedded store, and the Arc backend
(:mod:`memtrace.storage.arc`)."""
