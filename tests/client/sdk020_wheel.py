"""The published ``memtrace-sdk`` 0.2.0 (tests/client/vendor), loaded as ``memtrace_sdk_020``."""

from __future__ import annotations

import hashlib
import importlib
import sys
import zipfile
from pathlib import Path
from types import ModuleType

WHEEL = Path(__file__).with_name("vendor") / "memtrace_sdk-0.2.0-py3-none-any.whl"
SHA256 = "99305f10157399c0baf0dafc5d5c23c6b4e0136f9ab894ebbe4a052a14420f20"
NAME = "memtrace_sdk_020"


def load_sdk020(workdir: Path) -> ModuleType:
    """Import the wheel's ``memtrace`` package under another name (once per process)."""
    if NAME in sys.modules:
        return sys.modules[NAME]
    assert hashlib.sha256(WHEEL.read_bytes()).hexdigest() == SHA256
    target = workdir / "sdk020" / NAME
    target.mkdir(parents=True)
    with zipfile.ZipFile(WHEEL) as wheel:
        for name in wheel.namelist():
            if name.startswith("memtrace/") and name.endswith(".py"):
                (target / name.removeprefix("memtrace/")).write_bytes(wheel.read(name))
    sys.path.insert(0, str(target.parent))
    return importlib.import_module(NAME)
