"""The built distribution, shared by the packaging and container tests: `make dist` run once per
test run (on a copy of the source tree, so the checkout gets no build/, dist/ or egg-info), a
wheelhouse of the wheel with every dependency, and a virtualenv with the wheel installed. Each
is made once per run by the first xdist worker to ask and shared by the others."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers import ROOT

# Not part of a source tree: local state, caches and build output.
_NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", "*.pyc", "*.egg-info", "build", "dist", "data", ".*_cache",
    ".hypothesis", "results", "memtrace.toml", "*.env", ".env",
)  # fmt: skip


@contextmanager
def _shared(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Path]:
    """A directory every xdist worker of this run shares, made by the first one to ask."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    with (root / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield root / name


def _run(*command: str | Path, cwd: Path | None = None) -> None:
    result = subprocess.run(
        [str(part) for part in command], cwd=cwd, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dist/ of `make dist`: the wheel and the sdist."""
    with _shared(tmp_path_factory, "source") as src:
        if not (src / "dist" / "complete").exists():
            shutil.rmtree(src, ignore_errors=True)
            shutil.copytree(ROOT, src, ignore=_NOT_SOURCE)
            # the make target as a user runs it, with this test run's virtualenv as .venv
            (src / ".venv").symlink_to(Path(sys.prefix))
            _run("make", "-s", "-o", ".venv/.installed-dev", "dist", cwd=src)
            (src / "dist" / "complete").touch()
        return src / "dist"


@pytest.fixture(scope="session")
def wheel(dist: Path) -> Path:
    (found,) = dist.glob("memtrace_server-*-py3-none-any.whl")
    return found


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    """The wheel and every dependency, the cookbooks' included (pip wheel, from the index)."""
    with _shared(tmp_path_factory, "wheelhouse") as house:
        if not (house / "complete").exists():
            shutil.rmtree(house, ignore_errors=True)
            _run(sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", house,
                 f"{wheel}[cookbooks]")  # fmt: skip
            (house / "complete").touch()
        return house


@pytest.fixture(scope="session")
def venv(tmp_path_factory: pytest.TempPathFactory, wheel: Path, wheelhouse: Path) -> Path:
    """A fresh virtualenv outside the repository with the built wheel (and the cookbooks'
    extra) installed, not editable. Tests only run it, never change it."""
    with _shared(tmp_path_factory, "installed") as where:
        if not (where / "complete").exists():
            shutil.rmtree(where, ignore_errors=True)
            assert ROOT not in where.parents
            _run(sys.executable, "-m", "venv", where / "venv")
            _run(where / "venv/bin/pip", "install", "-q", "--no-index", "--find-links",
                 wheelhouse, f"{wheel}[cookbooks]")  # fmt: skip
            (where / "complete").touch()
        return where / "venv"
