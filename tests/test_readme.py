"""Acceptance 1: the README's start command serves, and its curl walk-through works as written."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from memtrace.config import ServerSettings
from tests.helpers import KEY_RE, ROOT, TEST_ENV, check_walkthrough, free_port, wait_until

README = (ROOT / "README.md").read_text()


def test_readme_shows_the_two_commands_first() -> None:
    first_screen = README[:1500]
    assert "make serve" in first_screen and "make test" in first_screen
    # then the one-line install and the one-line container run (tests/deploy/ runs both ways)
    assert "pip install memtrace-server && memtrace serve" in first_screen
    assert "docker run -d -p 127.0.0.1:9100:9100 -v memtrace-data:/data memtrace" in first_screen
    assert ServerSettings().port == 9100 and ServerSettings().host == "127.0.0.1"


@pytest.mark.slow
def test_start_command_and_walkthrough(tmp_path: Path) -> None:
    port = free_port()
    # `make test ARGS=...` exports its command-line variables to sub-makes through MAKEFLAGS;
    # the user's `make serve` runs without them.
    inherited = {
        k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "ARGS"}
    }
    env = {
        **inherited,
        **TEST_ENV,
        "MEMTRACE_DATA_DIR": str(tmp_path / "data"),
        "MEMTRACE_SERVER_PORT": str(port),
    }
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        ["make", "-s", "serve"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:

        def up(http: httpx.Client) -> bool:
            try:
                return http.get(f"http://127.0.0.1:{port}/health").status_code == 200
            except httpx.TransportError:
                return False

        with httpx.Client() as http:  # one client for the polls (see tests/helpers.py)
            wait_until(lambda: up(http), timeout=300)  # `make serve` may install the venv
        output = (tmp_path / "serve.log").read_text()
        key = KEY_RE.search(output)
        assert key, output
        check_walkthrough(port, key[0])
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
