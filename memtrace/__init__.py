"""memtrace: a multi-tenant temporal memory server for fleets of AI agents."""

__version__ = "0.3.0"

# The client SDK, importable as in the published memtrace-sdk: ``from memtrace import Memtrace``.
from memtrace.client import *  # noqa: F403
from memtrace.client import __all__ as _client_all

__all__ = ["__version__", *_client_all]
