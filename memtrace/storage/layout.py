"""Where an org's files live in the data directory: ``<data_dir>/orgs/<org_id>/``.

The embedded store is ``memories.db`` there, an Arc-bound org's outbox ``arc_outbox.db``.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from memtrace.domain.errors import NotFound

_ORG_ID = re.compile(r"^org_[A-Za-z0-9_]{1,64}$")


def org_dir(data_dir: Path, org_id: str) -> Path:
    """Directory holding an org's files; the id pattern keeps it inside ``data_dir``."""
    if not _ORG_ID.match(org_id):
        raise NotFound(f"org {org_id!r} not found")
    return data_dir / "orgs" / org_id


def purge_org_files(data_dir: Path, org_id: str) -> bool:
    """Delete an org's stored memories from disk; True when there was something to delete."""
    path = org_dir(data_dir, org_id)
    if not path.exists():
        return False
    shutil.rmtree(path)
    return True
