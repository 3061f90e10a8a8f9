"""Arc's own retention policies, used where they fit an org's retention.

Arc drops whole Parquet files whose newest row is older than a policy's cutoff (``now -
retention_days - buffer_days``), far cheaper than deleting rows. It fits when:

- the cutoff is whole days back (memtrace's policies are in days), and
- the org's measurement holds only this org's rows (a policy covers the whole measurement).

Then memtrace keeps one policy per org in Arc, named ``memtrace_<org>``, for the org's database
and measurement, with ``buffer_days = 0``. It stays inactive, so Arc's scheduler never runs it
with stale days; before each run memtrace sets its days, activates it, executes it and
deactivates it again. The outbox's rows older than Arc's cutoff go too (the store does that,
under the shipper's lock); rows in files that straddle the cutoff are left for the row-by-row
pass of the sweeper. Any refusal (retention off, no admin token) just
means "not used": the row-by-row pass does all the work.
"""

from __future__ import annotations

import logging

from memtrace.storage.arc import sql as arc_sql
from memtrace.storage.arc.client import ArcClient, ArcRejected, ArcUnavailable

log = logging.getLogger(__name__)

DAY_US = 86_400_000_000
# A cutoff of "now - N days" reaches here a moment later: up to this much over whole days
# still counts as N days (rows that old are past N days when Arc runs the policy).
_SLACK_US = 10 * 60 * 1_000_000


def policy_name(org_id: str) -> str:
    return f"memtrace_{org_id}"


async def expire_with_policy(
    client: ArcClient, measurement: str, org_id: str, cutoff: int, now: int
) -> tuple[int, int] | None:
    """Drop Arc files entirely older than ``cutoff``: (rows Arc removed, the cutoff Arc used),
    or ``None`` when a policy does not fit or Arc refused."""
    days, rest = divmod(now - cutoff, DAY_US)
    if rest > _SLACK_US:  # not whole days back: round up, never past the cutoff
        days += 1
    if days < 1:
        return None
    try:
        rows = await client.query(arc_sql.other_orgs_sql(measurement, org_id))
        if rows and int(rows[0][0]) > 0:
            return None
        name = policy_name(org_id)
        existing = [
            p
            for p in await client.retention_policies()
            if p.get("name") == name
            and p.get("database") == client.database
            and p.get("measurement") == measurement
        ]
        policy = {
            "name": name,
            "database": client.database,
            "measurement": measurement,
            "retention_days": days,
            "buffer_days": 0,
            "is_active": True,
        }
        policy_id = await client.put_retention_policy(
            int(existing[0]["id"]) if existing else None, policy
        )
        try:
            deleted = await client.execute_retention(policy_id)
        finally:
            await client.put_retention_policy(policy_id, {**policy, "is_active": False})
    except (ArcRejected, ArcUnavailable, KeyError, TypeError, ValueError) as exc:
        log.info("Arc retention policy not used for %s: %s", org_id, exc)
        return None
    return deleted, now - days * DAY_US
