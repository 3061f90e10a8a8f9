"""Timelines (docs/api.md, "Timeline"): bucket widths, the bucket cap, and the response shape.

Buckets are aligned to multiples of their width since the Unix epoch (UTC), so the same hour
is the same bucket in every call and on every store. The response lists every bucket of
``[since, until)``, empty ones included, ascending.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from memtrace.domain.errors import InvalidInput
from memtrace.domain.timestamps import format_us

MAX_BUCKETS = 2000
# Groups listed per bucket at most: past it the least frequent (over the whole window) are
# added up under OTHER_GROUP, a name no agent id, event type, memory type or tag can have.
MAX_GROUPS = 100
OTHER_GROUP = "(other)"
DEFAULT_BUCKET = "1h"
_BUCKET = re.compile(r"^([1-9][0-9]{0,5})([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_bucket(text: str) -> int:
    """A bucket width such as ``15m``, ``1h`` or ``1d`` in microseconds.

    Raises:
        InvalidInput: not ``<n><unit>`` with unit one of ``s m h d w``.
    """
    match = _BUCKET.match(text.strip())
    if match is None:
        raise InvalidInput(
            f"bucket: expected a width like 1m, 5m, 15m, 1h, 6h or 1d, got {text[:32]!r}"
        )
    return int(match.group(1)) * _UNIT_S[match.group(2)] * 1_000_000


def first_bucket(since: int, width: int) -> int:
    """The start of the bucket holding ``since``."""
    return since - since % width


def check_bucket_count(since: int, until: int, width: int, text: str) -> int:
    """How many buckets ``[since, until)`` spans.

    Raises:
        InvalidInput: more than :data:`MAX_BUCKETS` (the message names ``bucket``).
    """
    if until <= since:
        return 0
    count = -(-(until - first_bucket(since, width)) // width)
    if count > MAX_BUCKETS:
        raise InvalidInput(
            f"bucket: {text} buckets over this window would be {count}; at most {MAX_BUCKETS} "
            "(use a wider bucket or a shorter window)"
        )
    return count


def _kept_groups(found: Mapping[int, tuple[int, dict[str, int]]]) -> set[str] | None:
    """The groups listed by name (``None``: all of them)."""
    totals: dict[str, int] = {}
    for _, groups in found.values():
        for name, n in groups.items():
            totals[name] = totals.get(name, 0) + n
    if len(totals) <= MAX_GROUPS:
        return None
    ranked = sorted(totals, key=lambda name: (-totals[name], name))
    return set(ranked[:MAX_GROUPS])


def timeline_wire(
    since: int,
    until: int,
    bucket: str,
    width: int,
    group_by: str | None,
    found: Mapping[int, tuple[int, dict[str, int]]],
) -> dict[str, Any]:
    """The JSON of ``GET /timeline``: every bucket of the window, ``found`` (bucket start ->
    count and groups) filled in, the others zero."""
    kept = _kept_groups(found)
    buckets = []
    total = 0
    start = first_bucket(since, width)
    while start < until:
        count, groups = found.get(start, (0, {}))
        if kept is not None:
            shown = {name: n for name, n in groups.items() if name in kept}
            other = sum(n for name, n in groups.items() if name not in kept)
            if other:
                shown[OTHER_GROUP] = other
            groups = shown
        total += count
        buckets.append({"start": format_us(start), "count": count, "groups": groups})
        start += width
    return {
        "since": format_us(since),
        "until": format_us(until),
        "bucket": bucket,
        "bucket_seconds": width // 1_000_000,
        "group_by": group_by,
        "total": total,
        "buckets": buckets,
    }


def timeline_text(data: Mapping[str, Any], *, max_rows: int = 200) -> str:
    """A timeline for a model to read: a markdown table of the buckets (empty ones left out
    when there are many), newest last, the busiest in bold, the 12 largest groups as
    columns."""
    buckets = data["buckets"]
    group_by = data.get("group_by")
    head = (
        f"Timeline {data['since'][:19]}Z → {data['until'][:19]}Z, {data['bucket']} buckets"
        + (f" by {group_by}" if group_by else "")
        + f": {data['total']} memories."
    )
    if not data["total"]:
        return head
    rows = buckets if len(buckets) <= max_rows else [b for b in buckets if b["count"]]
    omitted = 0
    if len(rows) > max_rows:
        omitted = len(rows) - max_rows
        rows = rows[-max_rows:]
    names: list[str] = []
    if group_by:
        totals: dict[str, int] = {}
        for b in buckets:
            for name, n in b["groups"].items():
                totals[name] = totals.get(name, 0) + n
        names = sorted(totals, key=lambda name: (-totals[name], name))[:12]
    header = ["bucket start (UTC)", "count", *names]
    lines = [head, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    peak = max(b["count"] for b in buckets)
    for b in rows:
        count = f"**{b['count']}**" if b["count"] == peak else str(b["count"])  # the spike
        cells = [b["start"][:16].replace("T", " "), count]
        cells += [str(b["groups"].get(name, 0)) for name in names]
        lines.append("| " + " | ".join(cells) + " |")
    if omitted:
        lines.append(f"({omitted} earlier non-empty buckets not shown)")
    elif len(rows) < len(buckets):
        lines.append("(empty buckets not shown)")
    return "\n".join(lines)
