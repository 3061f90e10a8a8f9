"""Running the cookbooks as their READMEs say, and reading what they did."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cookbooks._common import DATA_DIR_ENV, KEY_FILE
from cookbooks._offline import RECORD_ENV, SESSION_PLACEHOLDER, Step
from memtrace.domain.errors import InvalidInput
from memtrace.tools import TOOLS_BY_NAME, parse_arguments
from tests.helpers import TEST_ENV

ROOT = Path(__file__).resolve().parents[2]
COOKBOOKS = ROOT / "cookbooks"
_FENCE = re.compile(r"```(?:bash|sh|console)?\n(.*?)```", re.S)
LLM_KEYS = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY")


def readme_commands(folder: str) -> list[list[str]]:
    """The ``python -m cookbooks.… --offline`` commands of a folder's README, in order."""
    text = (COOKBOOKS / folder / "README.md").read_text()
    commands = []
    for block in _FENCE.findall(text):
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("python -m cookbooks.") and "--offline" in line.split():
                commands.append(shlex.split(line))
    return commands


def cookbook_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A clean environment: no LLM keys, no MEMTRACE_* of the developer, a private data dir."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MEMTRACE_") and k not in LLM_KEYS and not k.startswith("OPENAI_")
    }
    env.update(TEST_ENV)
    env["HOME"] = str(tmp_path / "home")
    env[DATA_DIR_ENV] = str(tmp_path / "cookbook-data")
    env.update(extra)
    return env


@dataclass
class Run:
    module: str
    result: subprocess.CompletedProcess[str]
    requests: list[dict[str, Any]] = field(default_factory=list)


def run_command(command: list[str], env: dict[str, str], record: Path) -> Run:
    """Run a README command (``python`` is this interpreter) from the repository root."""
    assert command[:2] == ["python", "-m"], command
    record.unlink(missing_ok=True)
    result = subprocess.run(
        [sys.executable, *command[1:]],
        cwd=ROOT,
        env={**env, RECORD_ENV: str(record)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    requests = []
    if record.exists():
        requests = [json.loads(line) for line in record.read_text().splitlines()]
    return Run(command[2], result, requests)


def cookbook_api_key(data_dir: Path) -> str:
    return (data_dir / KEY_FILE).read_text().strip()


def claimed_writes(script: list[Step], agent_id: str | None = None) -> list[tuple[str, str]]:
    """(agent_id, content) of every valid remember/decide call in an offline script
    (``agent_id``: the agent of calls that leave it to the integration)."""
    writes = []
    for step in script:
        for call in step.tool_calls:
            if call.name not in ("memtrace_remember", "memtrace_decide"):
                continue
            if not isinstance(call.arguments, dict):
                continue
            raw = {
                k: "sess_scripted" if v == SESSION_PLACEHOLDER else v
                for k, v in call.arguments.items()
            }
            if agent_id:
                raw.setdefault("agent_id", agent_id)
            try:
                args = parse_arguments(TOOLS_BY_NAME[call.name], raw)
            except InvalidInput:
                continue  # a deliberately broken call: the cookbook must not claim it
            content = getattr(args, "content", None) or getattr(args, "decision", "")
            writes.append((str(args.agent_id), str(content)))  # type: ignore[attr-defined]
    return writes
