"""Prometheus metrics of one runtime (its own registry, so several runtimes can coexist).

Under ``memtrace serve --workers N`` every worker process records into the files of
``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode, set up by the parent before
the workers start) and ``GET /metrics``, whichever worker answers it, reports the sum over all
workers: counters and histograms add up; a gauge of the shared state (readiness, an org's store
health and outbox counts, which every worker checks on the same files) holds the value most
recently set by any worker, and a gauge of one process's own resources (open stores, open
streams, queued reads) is summed over the live workers (a worker that stops leaves the sum; one
killed with SIGKILL leaves its last values until the server stops).
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """Counters the core and the transports update; exported at ``GET /metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "memtrace_http_requests",
            "HTTP requests by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "memtrace_http_request_duration_seconds",
            "HTTP request latency by route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.memories_written = Counter(
            "memtrace_memories_written",
            "Memories durably stored, by backend.",
            ["backend"],
            registry=self.registry,
        )
        self.dedup_hits = Counter(
            "memtrace_dedup_hits", "Writes skipped as duplicates.", registry=self.registry
        )
        self.outbox_pending = Gauge(
            "memtrace_outbox_pending",
            "Memories acknowledged but not yet shipped to Arc, by org.",
            ["org_id"],
            registry=self.registry,
            multiprocess_mode="mostrecent",
        )
        self.outbox_unverified = Gauge(
            "memtrace_outbox_unverified",
            "Memories Arc accepted (204) but has not yet shown in a query, by org.",
            ["org_id"],
            registry=self.registry,
            multiprocess_mode="mostrecent",
        )
        self.outbox_parked = Gauge(
            "memtrace_outbox_parked",
            "Memories Arc refuses, kept in the outbox (memtrace org outbox ORG), by org.",
            ["org_id"],
            registry=self.registry,
            multiprocess_mode="mostrecent",
        )
        self.arc_reshipped = Counter(
            "memtrace_arc_reshipped",
            "Memories shipped again because Arc did not show them after its 204, by org.",
            ["org_id"],
            registry=self.registry,
        )
        self.arc_errors = Counter(
            "memtrace_arc_errors",
            "Failed requests to Arc, by operation.",
            ["operation"],
            registry=self.registry,
        )

        self.arc_ship_latency = Histogram(
            "memtrace_arc_ship_latency_seconds",
            "Time from a memory's acknowledgement to Arc accepting it, by org.",
            ["org_id"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
            registry=self.registry,
        )

        self.memories_deleted = Counter(
            "memtrace_memories_deleted",
            "Memories erased, by reason (delete, forget, retention).",
            ["reason"],
            registry=self.registry,
        )
        self.retention_deleted = Counter(
            "memtrace_retention_deleted",
            "Memories deleted by the retention sweeper, by org.",
            ["org_id"],
            registry=self.registry,
        )
        self.ready = Gauge(
            "memtrace_ready",
            "1 when this process can serve (metadata DB answers, the data directory takes "
            "writes), as /ready reports it.",
            registry=self.registry,
            multiprocess_mode="mostrecent",
        )
        self.store_healthy = Gauge(
            "memtrace_store_healthy",
            "1 when the org's storage backend answered its last health check, by org.",
            ["org_id"],
            registry=self.registry,
            multiprocess_mode="mostrecent",
        )
        self.open_stores = Gauge(
            "memtrace_open_stores",
            "Org stores open (summed over the worker processes).",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.open_streams = Gauge(
            "memtrace_open_streams",
            "Open GET /sse streams.",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.reads_queued = Gauge(
            "memtrace_reads_queued",
            "Reads waiting for a reader thread (all orgs).",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.partial_reads = Counter(
            "memtrace_partial_reads",
            "Lists and searches that stopped at their work budget (limits.scan_budget_ms).",
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "memtrace_rate_limited",
            "Requests answered 429, by the limit that refused them (key or org).",
            ["scope"],
            registry=self.registry,
        )

    def process_stopped(self) -> None:
        """This worker process stops: its per-process gauges leave the workers' sums."""
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if directory:
            from prometheus_client.multiprocess import mark_process_dead

            mark_process_dead(os.getpid(), directory)  # type: ignore[no-untyped-call]

    def render(self) -> bytes:
        """Prometheus text exposition format (of every worker process, see the module doc)."""
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not directory:
            return bytes(generate_latest(self.registry))
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=directory)  # type: ignore[no-untyped-call]
        return bytes(generate_latest(merged))
