"""The README's SDK example runs as written against a real server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ServerProcess

pytestmark = pytest.mark.slow  # starts processes or servers (docs/testing.md)

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_readme_sdk_example(server: ServerProcess, tmp_path: Path) -> None:
    match = re.search(r"<!-- sdk-example:start -->\n```python\n(.*?)```", README, re.S)
    assert match and server.admin_key
    script = tmp_path / "example.py"
    script.write_text(match.group(1))
    env = {**os.environ, "MEMTRACE_URL": server.url, "MEMTRACE_API_KEY": server.admin_key}
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "decision skip acme.com",
        "episodic acme.com blocks crawlers",
    ]
