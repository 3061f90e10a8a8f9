"""``python -m memtrace.cli`` runs the ``memtrace`` command line."""

from memtrace.cli.main import main

main()
