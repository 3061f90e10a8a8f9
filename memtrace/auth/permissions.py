"""Permissions of an API key: ``read``, ``write`` and ``admin`` (admin implies the others)."""

from __future__ import annotations

from memtrace.domain.errors import InvalidInput

PERMISSIONS = ("read", "write", "admin")
DEFAULT_PERMISSIONS = frozenset({"read", "write"})
ALL_PERMISSIONS = frozenset(PERMISSIONS)


def parse_permissions(text: str) -> frozenset[str]:
    """``"read,write"`` → a permission set.

    Raises:
        InvalidInput: empty, or a name other than read, write or admin.
    """
    names = {part.strip() for part in text.split(",") if part.strip()}
    unknown = names - ALL_PERMISSIONS
    if not names or unknown:
        raise InvalidInput(
            f"permissions: expected a comma list of {', '.join(PERMISSIONS)}, got {text!r}"
        )
    return frozenset(names)
