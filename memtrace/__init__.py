"""memtrace: a multi-tenant temporal memory server for fleets of AI agents."""

__version__ = "0.3.0"
