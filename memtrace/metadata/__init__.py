"""Metadata: orgs, API keys, Arc bindings, agents and sessions, behind the
:class:`~memtrace.metadata.base.MetadataStore` protocol (on SQLite:
:mod:`memtrace.metadata.catalog`)."""
