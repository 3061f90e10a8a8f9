"""The README's SDK example runs as written against a real server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.helpers import Tenant

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_readme_sdk_example(tenant: Tenant, tmp_path: Path) -> None:
    match = re.search(r"<!-- sdk-example:start -->\n```python\n(.*?)```", README, re.S)
    assert match
    script = tmp_path / "example.py"
    script.write_text(match.group(1))
    env = {**os.environ, "MEMTRACE_URL": tenant.url, "MEMTRACE_API_KEY": tenant.key}
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "decision skip acme.com",
        "episodic acme.com blocks crawlers",
    ]
