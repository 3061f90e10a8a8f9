"""The master-key envelope of Arc API keys (docs/security.md)."""

from __future__ import annotations

import base64

import pytest

from memtrace.auth.crypto import (
    decrypt_secret,
    encrypt_secret,
    generate_master_key,
    load_master_key,
    mask_secret,
)
from memtrace.domain.errors import ConfigError


def test_round_trip_with_fresh_nonces_and_org_binding() -> None:
    key = load_master_key({"MEMTRACE_MASTER_KEY": generate_master_key()})
    first = encrypt_secret(key, "org_a", "arc-secret-token")
    second = encrypt_secret(key, "org_a", "arc-secret-token")
    assert first != second and "arc-secret-token" not in first
    assert len(base64.b64decode(first[3:])) == 12 + len("arc-secret-token") + 16
    assert decrypt_secret(key, "org_a", first) == "arc-secret-token"
    with pytest.raises(ConfigError, match="not the key it was encrypted with"):
        decrypt_secret(key, "org_b", first)  # the org id is authenticated
    other = load_master_key({"MEMTRACE_MASTER_KEY": generate_master_key()})
    with pytest.raises(ConfigError, match="not the key it was encrypted with") as caught:
        decrypt_secret(other, "org_a", first)
    assert "arc-secret-token" not in str(caught.value)


@pytest.mark.parametrize(
    ("value", "message"),
    [("", "not set"), ("%%%", "base64"), (base64.b64encode(b"x" * 16).decode(), "32 bytes")],
)
def test_master_key_problems_are_named(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_master_key({"MEMTRACE_MASTER_KEY": value})


def test_mask_reveals_at_most_four_characters() -> None:
    assert mask_secret("arc-secret-token") == "****oken"
    assert mask_secret("short") == "****"
