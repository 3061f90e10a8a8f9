"""The exception tree under its public path, ``memtrace.errors`` (docs/sdk.md); it is defined
in :mod:`memtrace.domain.errors`."""

from memtrace.domain.errors import *  # noqa: F403
