"""``memtrace forget | export | import | audit`` and ``memtrace org retention``: an org's data
lifecycle from the command line, on the deployment's metadata and stores (the data directory,
or the cluster's PostgreSQL in cluster mode; a running server may use them at the same time).
Every change is recorded in the audit log as done by ``cli`` (docs/api.md, "Data lifecycle")."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from memtrace.cli.common import common_options, load_settings_for, note, run_admin

if TYPE_CHECKING:
    from memtrace.cli.common import Admin
    from memtrace.lifecycle.service import Lifecycle

F = TypeVar("F", bound=Callable[..., Any])
ACTOR = "cli"


@asynccontextmanager
async def org_lifecycle(admin: Admin, org_id: str) -> AsyncIterator[Lifecycle]:
    """The org's lifecycle on its own store (embedded, PostgreSQL or Arc) and the metadata;
    closed (erasures completed, the Arc outbox drained for a while) on the way out."""
    from memtrace.lifecycle.service import Lifecycle
    from memtrace.service import MemoryService
    from memtrace.telemetry.metrics import Metrics
    from memtrace.tenancy import open_store

    settings, catalog = admin.settings, admin.catalog
    binding = await catalog.get_binding(org_id)
    store = await open_store(settings, org_id, binding, pg=admin.pg)
    try:
        yield Lifecycle(MemoryService(org_id, store, catalog, settings, Metrics()), ACTOR)
    finally:
        await store.close()


def filter_options(fn: F) -> F:
    """The memory filters shared by forget and export."""
    for decorator in reversed(
        (
            click.option("--agent", "agent_id", help="Only this agent's memories."),
            click.option("--session", "session_id", help="Only this session's memories."),
            click.option("--type", "memory_types", multiple=True, help="Memory type (repeat)."),
            click.option("--event-type", "event_types", multiple=True, help="Event type (repeat)."),
            click.option("--tag", "tags", multiple=True, help="Must have this tag (repeat: all)."),
            click.option("--contains", "content_contains", help="Content contains (any case)."),
            click.option("--since", help="From this time on (30m, 7d, ISO 8601)."),
            click.option("--until", help="Before this time."),
        )
    ):
        fn = decorator(fn)
    return fn


def _progress(total: int, label: str) -> Any:
    """A progress bar on a terminal, nothing otherwise (scripts and pipes stay clean)."""
    if not sys.stderr.isatty():
        return None
    return click.progressbar(length=total, label=label, file=sys.stderr)


@click.command("forget")
@common_options
@click.option("--org", "org_ref", required=True, help="Org id or name.")
@filter_options
@click.option("--dry-run", is_flag=True, help="Only count what would be erased.")
@click.option("--delete-agent", is_flag=True, help="Also delete the --agent and its sessions.")
@click.option("--delete-session", is_flag=True, help="Also delete the --session.")
@click.pass_context
def forget(
    ctx: click.Context,
    /,
    org_ref: str,
    dry_run: bool,
    delete_agent: bool,
    delete_session: bool,
    config_path: Path | None,
    data_dir: Path | None,
    **filters: Any,
) -> None:
    """Erase every memory of ORG matching the filters (at least one; a whole org is `org
    delete --purge`). Prints `matched N` (--dry-run) or `deleted N`."""
    from memtrace.domain.models import ForgetRequest, parse_model

    settings = load_settings_for(ctx, config_path, data_dir)
    body = {k: (list(v) if isinstance(v, tuple) else v) for k, v in filters.items() if v}
    request = parse_model(
        ForgetRequest,
        {
            **body,
            "dry_run": dry_run,
            "delete_agent": delete_agent,
            "delete_session": delete_session,
        },
    )

    async def run(admin: Admin) -> None:
        org_id = (await admin.org(org_ref)).id
        async with org_lifecycle(admin, org_id) as lifecycle:
            result = await lifecycle.forget(request)
        if result.matched is not None:
            click.echo(f"matched {result.matched}")
            return
        click.echo(f"deleted {result.deleted}")
        if result.agent_deleted is not None:
            note(f"agent {request.agent_id}: {'deleted' if result.agent_deleted else 'not found'}")
        if result.session_deleted is not None:
            gone = "deleted" if result.session_deleted else "not found"
            note(f"session {request.session_id}: {gone}")

    run_admin(settings, run)


@click.command("export")
@common_options
@click.option("--org", "org_ref", required=True, help="Org id or name.")
@filter_options
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="NDJSON file to write (default: stdout).",
)
@click.pass_context
def export(
    ctx: click.Context,
    /,
    org_ref: str,
    output: Path | None,
    config_path: Path | None,
    data_dir: Path | None,
    **filters: Any,
) -> None:
    """Write ORG's memories matching the filters as NDJSON, one memory per line, oldest
    first (what `memtrace import` reads)."""
    from memtrace.domain.models import ExportParams, parse_model
    from memtrace.lifecycle.ndjson import to_line

    settings = load_settings_for(ctx, config_path, data_dir)
    many = ("memory_types", "event_types")
    if any(len(filters[name]) > 1 for name in many):
        raise click.UsageError("export takes one --type and one --event-type (as GET /memories)")
    params = parse_model(
        ExportParams,
        {
            "agent_id": filters["agent_id"],
            "session_id": filters["session_id"],
            "memory_type": next(iter(filters["memory_types"]), None),
            "event_type": next(iter(filters["event_types"]), None),
            "tags": ",".join(filters["tags"]) or None,
            "content_contains": filters["content_contains"],
            "since": filters["since"],
            "until": filters["until"],
        },
    )

    async def run(admin: Admin) -> tuple[str, int]:
        org_id = (await admin.org(org_ref)).id
        count = 0
        stream = output.open("wb") if output else sys.stdout.buffer
        try:
            async with org_lifecycle(admin, org_id) as lifecycle:
                bar = None
                if output and sys.stderr.isatty():
                    bar = _progress(await lifecycle.export_count(params), "exporting")
                async for record in lifecycle.export(params):
                    stream.write(to_line(record))
                    count += 1
                    if bar is not None and count % 1000 == 0:
                        bar.update(1000)
                if bar is not None:
                    bar.render_finish()
        finally:
            if output:
                stream.close()
            else:
                stream.flush()
        return org_id, count

    org_id, count = run_admin(settings, run)
    if output:
        note(f"{count} memories of {org_id} written to {output}")


@click.command("import")
@common_options
@click.option("--org", "org_ref", required=True, help="Org id or name.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(1, 10_000))
@click.pass_context
def import_(
    ctx: click.Context,
    org_ref: str,
    file: Path,
    batch_size: int,
    config_path: Path | None,
    data_dir: Path | None,
) -> None:
    """Import an export file into ORG: ids and times are kept, memories already there (by
    id) are skipped, so running it twice is safe. Every line is checked first: one bad line
    imports nothing."""
    from memtrace.domain.errors import InvalidInput
    from memtrace.lifecycle.ndjson import read_batches, validate_file

    settings = load_settings_for(ctx, config_path, data_dir)
    limit = settings.limits.max_content_bytes

    async def run(admin: Admin) -> tuple[str, int, int]:
        org_id = (await admin.org(org_ref)).id
        try:
            total = validate_file(file, limit)
        except InvalidInput as exc:
            raise click.ClickException(f"{file}: {exc.message}; nothing was imported") from None
        imported = 0
        bar = _progress(total, "importing")
        async with org_lifecycle(admin, org_id) as lifecycle:
            try:
                for batch in read_batches(file, batch_size, limit):
                    imported += await lifecycle.import_batch(batch)
                    if bar is not None:
                        bar.update(len(batch))
            finally:
                await lifecycle.record_import(imported, total, file.name)
                if bar is not None:
                    bar.render_finish()
        return org_id, imported, total

    org_id, imported, total = run_admin(settings, run)
    click.echo(f"imported {imported}")
    note(f"{imported} of {total} memories imported into {org_id} ({total - imported} were there)")


@click.command("audit")
@common_options
@click.option(
    "--org", "org_ref", required=True, help="Org id or name (or the id of a deleted org)."
)
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--since", help="Only entries from this time on (7d, ISO 8601).")
@click.pass_context
def audit(
    ctx: click.Context,
    org_ref: str,
    limit: int,
    since: str | None,
    config_path: Path | None,
    data_dir: Path | None,
) -> None:
    """List ORG's deletes, forgets, retention runs and imports, newest first: time, who (API
    key id, cli, retention, mcp), action, how many, filter, detail."""
    import orjson

    from memtrace.domain.lifecycle import AuditEntry
    from memtrace.domain.timestamps import format_us, now_us
    from memtrace.domain.windows import parse_time_bound

    settings = load_settings_for(ctx, config_path, data_dir)
    start = parse_time_bound(since, "since", now_us(), allow_now=False) if since else None

    async def read(admin: Admin) -> list[AuditEntry]:
        found = await admin.catalog.find_org(org_ref)
        org_id = found.id if found else org_ref  # a deleted org's entries stay listable
        return await admin.catalog.list_audit(org_id, limit=limit, since=start)

    entries = run_admin(settings, read)
    for entry in entries:
        filters = orjson.dumps(entry.filter).decode() if entry.filter is not None else "-"
        line = f"{format_us(entry.at)}\t{entry.actor}\t{entry.action}\t{entry.count}\t{filters}"
        click.echo(line + (f"\t{entry.detail}" if entry.detail else ""))


@click.command("retention")
@common_options
@click.argument("org_ref", metavar="ORG")
@click.option("--days", type=click.IntRange(0), help="Keep memories this many days (0: for ever).")
@click.option(
    "--type",
    "types",
    multiple=True,
    metavar="TYPE=DAYS",
    help="Days for one memory type, e.g. decision=365 (repeat).",
)
@click.option("--clear", is_flag=True, help="Remove the org's policy (the defaults apply).")
@click.option(
    "--dry-run", is_flag=True, help="Report what a sweep would delete now (nothing is changed)."
)
@click.pass_context
def retention(
    ctx: click.Context,
    org_ref: str,
    days: int | None,
    types: tuple[str, ...],
    clear: bool,
    dry_run: bool,
    config_path: Path | None,
    data_dir: Path | None,
) -> None:
    """Show or set how long ORG keeps memories. A running server's sweeper applies it within
    retention.sweep_interval_s; --dry-run (with or without a new policy) reports what it
    would delete now."""
    from memtrace.domain.lifecycle import RetentionPolicy
    from memtrace.domain.timestamps import format_us, now_us

    settings = load_settings_for(ctx, config_path, data_dir)
    by_type = dict(_type_days(text) for text in types)
    changing = days is not None or bool(by_type)
    if clear and changing:
        raise click.UsageError("--clear takes no --days or --type")

    async def run(admin: Admin) -> None:
        org_id = (await admin.org(org_ref)).id
        own = await admin.catalog.get_retention(org_id)
        if changing:
            base = own or RetentionPolicy()
            own = RetentionPolicy(
                days if days is not None else base.days, {**base.types, **by_type}
            )
            if not dry_run:
                await admin.catalog.put_retention(org_id, own, now_us())
        elif clear:
            await admin.catalog.delete_retention(org_id)
            own = None
        effective = (own or RetentionPolicy()).over(settings.retention.policy())
        origin = "org policy" if own is not None else "configuration defaults"
        click.echo(f"{org_id}: {effective.describe()} ({origin})")
        if not dry_run:
            return
        async with org_lifecycle(admin, org_id) as lifecycle:
            rules = await lifecycle.retention_report(effective, now_us())
        if not rules:
            click.echo("nothing expires: every memory is kept for ever")
        for rule in rules:
            click.echo(
                f"would delete {rule.count}\t{'/'.join(rule.memory_types)}\t"
                f"older than {format_us(rule.cutoff)}"
            )

    run_admin(settings, run)


def _type_days(text: str) -> tuple[str, int]:
    name, sep, value = text.partition("=")
    if not sep or not value.strip().isdigit():
        raise click.BadParameter(
            f"{text!r}: expected TYPE=DAYS, e.g. decision=365", param_hint="--type"
        )
    return name.strip(), int(value)


COMMANDS = (forget, export, import_, audit)
