"""Secrets at rest: the master key that encrypts Arc API keys (docs/security.md).

Envelope: AES-256-GCM under ``MEMTRACE_MASTER_KEY`` (base64 of 32 bytes), a fresh 12-byte random
nonce per encryption, the org id as associated data (a ciphertext copied to another org fails to
decrypt). Stored as ``v1:`` + base64(nonce ‖ ciphertext ‖ tag). Errors name the problem, never
the secret.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from memtrace.domain.errors import ConfigError

MASTER_KEY_ENV = "MEMTRACE_MASTER_KEY"
_VERSION = "v1:"
_NONCE_BYTES = 12


def generate_master_key() -> str:
    """A new ``MEMTRACE_MASTER_KEY``: base64 of 32 random bytes."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


def load_master_key(environ: Mapping[str, str] | None = None) -> bytes:
    """The 32-byte master key from the environment.

    Raises:
        ConfigError: it is missing or is not base64 of exactly 32 bytes.
    """
    value = (environ if environ is not None else os.environ).get(MASTER_KEY_ENV, "").strip()
    if not value:
        raise ConfigError(
            f"{MASTER_KEY_ENV} is not set; Arc bindings need it "
            "(create one with: memtrace keygen master)"
        )
    try:
        key = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{MASTER_KEY_ENV} is malformed: it must be base64 text") from None
    if len(key) != 32:
        raise ConfigError(
            f"{MASTER_KEY_ENV} is malformed: it must decode to 32 bytes, not {len(key)}"
        )
    return key


def encrypt_secret(master_key: bytes, org_id: str, plaintext: str) -> str:
    """Encrypt ``plaintext`` for ``org_id`` (the org id is authenticated, not encrypted)."""
    nonce = secrets.token_bytes(_NONCE_BYTES)
    sealed = AESGCM(master_key).encrypt(nonce, plaintext.encode(), org_id.encode())
    return _VERSION + base64.b64encode(nonce + sealed).decode()


def decrypt_secret(master_key: bytes, org_id: str, stored: str) -> str:
    """Decrypt what :func:`encrypt_secret` produced for the same org.

    Raises:
        ConfigError: wrong master key, another org's ciphertext, or a damaged value.
    """
    if not stored.startswith(_VERSION):
        raise ConfigError(f"the stored Arc API key of {org_id} has an unknown format")
    try:
        raw = base64.b64decode(stored[len(_VERSION) :], validate=True)
        plain = AESGCM(master_key).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], org_id.encode())
    except (binascii.Error, ValueError, InvalidTag):
        raise ConfigError(
            f"cannot decrypt the Arc API key of {org_id}: {MASTER_KEY_ENV} is not the key it "
            "was encrypted with (or the stored value is damaged)"
        ) from None
    return plain.decode()


def mask_secret(plaintext: str) -> str:
    """A display form that never reveals the secret (at most its last 4 characters)."""
    return "****" + plaintext[-4:] if len(plaintext) >= 12 else "****"
