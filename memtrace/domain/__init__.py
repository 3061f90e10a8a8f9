"""The domain: wire models, the exception tree, memory records, ids, timestamps, time windows,
dedup and context rendering. Pure code with no I/O; everything else builds on it."""
