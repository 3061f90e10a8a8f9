"""Acceptance 1: the README's start command serves, and its curl walk-through works as written."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from memtrace.config import ServerSettings
from tests.helpers import KEY_RE, TEST_ENV, free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def readme_block(name: str) -> str:
    match = re.search(
        rf"<!-- {name}:start -->\n```bash\n(.*?)```\n<!-- {name}:end -->", README, re.S
    )
    assert match, f"README has no {name} block"
    return match.group(1)


def test_readme_shows_the_two_commands_first() -> None:
    first_screen = README[:1500]
    assert "make serve" in first_screen and "make test" in first_screen
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
        script = readme_block("walkthrough")
        script = script.replace("export MEMTRACE_KEY=mtk_...", f"export MEMTRACE_KEY={key[0]}")
        script = script.replace("127.0.0.1:9100", f"127.0.0.1:{port}")
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        # every curl printed one JSON document; pick them apart
        decoder = json.JSONDecoder()
        docs, text = [], result.stdout.strip()
        while text:
            doc, end = decoder.raw_decode(text)
            docs.append(doc)
            text = text[end:].strip()
        remembered, recalled, decision, context = docs
        assert remembered["id"].startswith("mem_") and remembered["agent_id"] == "crawler"
        assert [m["id"] for m in recalled["memories"]] == [remembered["id"]]
        assert decision["memory_type"] == "decision"
        assert "Skip pagination — reasoning: only 2 pages deep" in context["context"]
        assert context["context"].startswith("## Session Context (sess_")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
