"""The wire models under their public path, ``memtrace.models`` (docs/sdk.md); they are
defined in :mod:`memtrace.domain.models`."""

from memtrace.domain.models import *  # noqa: F403
