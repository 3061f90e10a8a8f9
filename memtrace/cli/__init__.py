"""The ``memtrace`` command line: a thin shell over the library (the composition root).

One module per command group (``serve``, ``org``, ``keys``, ``arc``, ``config``), assembled by
:mod:`memtrace.cli.main`. Commands import what they use when they run, so ``memtrace --help``
loads neither the server nor the storage backends (docs/architecture.md).
"""

from memtrace.cli.main import cli, main

__all__ = ["cli", "main"]
