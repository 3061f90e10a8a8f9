"""The built wheel, installed into a fresh virtualenv outside the repository, runs everything a
user runs: `memtrace serve` with the README's curl walk-through, the MCP stdio server, the CLI,
the SDK and the cookbooks (from the sdist). The systemd unit is verified against that install."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
import tomllib
import zipfile
from pathlib import Path

import httpx
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from memtrace import __version__
from tests.helpers import KEY_RE, ROOT, TEST_ENV, check_walkthrough, free_port, wait_until
from tests.mcp_helpers import call, data, research_flow

# builds, installs and starts processes (docs/testing.md); the first test of a run also waits
# for the shared dist, wheelhouse and virtualenv (conftest.py), minutes on a loaded machine
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

# The top-level packages the wheel holds, as pyproject.toml finds them.
PACKAGES = tuple(
    pattern.rstrip("*")
    for pattern in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]["find"]["include"]
)
# Starts a command under MemoryDenyWriteExecute, as the systemd unit does: the kernel then
# refuses writable+executable memory to it and its children (prctl PR_SET_MDWE, Linux 6.3+).
MDWE = (
    "import ctypes, os, sys; "
    "ctypes.CDLL(None, use_errno=True).prctl(65, 1, 0, 0, 0) == 0 or sys.exit('no PR_SET_MDWE'); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def source_files() -> set[str]:
    return {
        path.relative_to(ROOT).as_posix()
        for package in PACKAGES
        for path in (ROOT / package).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_the_wheel_holds_every_file_of_the_packages_and_the_license(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = f"memtrace_server-{__version__}.dist-info"
        metadata = archive.read(f"{info}/METADATA").decode()
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    assert source_files() - names == set()  # py.typed and any data file included
    assert {name.split("/")[0] for name in names} == {*PACKAGES, info}  # nothing else
    assert f"{info}/licenses/LICENSE" in names
    assert "Name: memtrace-server\n" in metadata
    assert "License-Expression: Apache-2.0\n" in metadata
    assert "memtrace = memtrace.cli:main" in entry_points
    assert "memtrace-mcp = memtrace.cli.main:mcp_main" in entry_points


def test_the_sdist_holds_the_source_docs_cookbooks_and_deploy_files(dist: Path) -> None:
    (sdist,) = dist.glob("memtrace_server-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.partition("/")[2] for name in archive.getnames()}
    tracked = {
        "LICENSE", "README.md", "Makefile", "memtrace.toml.example", "memtrace.env.example",
        "Dockerfile", ".dockerignore", "compose.yaml", "deploy/systemd/memtrace.service",
        "deploy/kubernetes/memtrace.yaml", "deploy/container/build-base-image.sh", "docs/deploy.md",
        "cookbooks/claude/single_agent.py", "tests/deploy/test_wheel.py",
    }  # fmt: skip
    assert tracked - names == set()
    assert source_files() - names == set()


def clean_env(venv: Path, **extra: str) -> dict[str, str]:
    """The environment of a user of the installed package: its bin first on PATH, nothing of
    this checkout or of the developer's memtrace settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MEMTRACE_", "PYTHON", "VIRTUAL_ENV", "PYTEST"))
    }
    env.update(TEST_ENV)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def run(venv: Path, cwd: Path, *command: str | Path, **env: str) -> str:
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=clean_env(venv, **env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"{command}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_the_install_imports_from_site_packages(venv: Path, tmp_path: Path) -> None:
    out = run(venv, tmp_path, venv / "bin/python", "-c",
              f"import memtrace, {', '.join(PACKAGES)}; print(memtrace.__file__)")  # fmt: skip
    assert Path(out.strip()).is_relative_to(venv)
    assert run(venv, tmp_path, "memtrace", "--version").strip().endswith(__version__)
    shown = run(venv, tmp_path, "memtrace", "config", "show", MEMTRACE_SERVER_PORT="9300")
    assert "port = 9300" in shown and "# env MEMTRACE_SERVER_PORT" in shown


async def test_serve_walkthrough_sdk_and_mcp_from_the_wheel(venv: Path, tmp_path: Path) -> None:
    """`memtrace serve` (under MemoryDenyWriteExecute, like the systemd unit) with the README's
    curl walk-through and SDK example, then the MCP stdio server in both modes."""
    data_dir, port = tmp_path / "data", free_port()
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [venv / "bin/python", "-c", MDWE, venv / "bin/memtrace", "serve",
             "--data-dir", data_dir, "--port", str(port)],
            cwd=tmp_path, env=clean_env(venv), stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:

        def up() -> bool:
            assert proc.poll() is None, log_path.read_text()
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(up, timeout=60)
        found = KEY_RE.search(log_path.read_text())
        assert found, log_path.read_text()
        key = found.group(0)
        check_walkthrough(port, key)
        # the operator page's files come from the installed package (docs/ui.md)
        for path in ("/ui", "/ui/app.js", "/ui/app.css"):
            page = httpx.get(f"http://127.0.0.1:{port}{path}")
            assert page.status_code == 200 and page.content, path
            assert page.headers["content-security-policy"].startswith("default-src 'none'")

        example = re.search(
            r"<!-- sdk-example:start -->\n```python\n(.*?)```",
            (ROOT / "README.md").read_text(),
            re.S,
        )
        assert example
        (tmp_path / "example.py").write_text(example.group(1))
        # in an org of its own, made with the installed CLI while the server runs
        run(venv, tmp_path, "memtrace", "org", "create", "acme", "--data-dir", data_dir)
        sdk_key = run(venv, tmp_path, "memtrace", "key", "create", "--org", "acme",
                      "--name", "sdk", "--data-dir", data_dir).strip()  # fmt: skip
        wait_until(
            lambda: (
                httpx.get(
                    f"http://127.0.0.1:{port}/api/v1/agents", headers={"x-api-key": sdk_key}
                ).status_code
                == 200
            )
        )
        out = run(venv, tmp_path, venv / "bin/python", "example.py",
                  MEMTRACE_URL=f"http://127.0.0.1:{port}", MEMTRACE_API_KEY=sdk_key)  # fmt: skip
        assert out.splitlines() == ["decision skip acme.com", "episodic acme.com blocks crawlers"]

        # embedded mode beside the running server, on the same data directory
        embedded = clean_env(venv, MEMTRACE_DATA_DIR=str(data_dir))
        params = StdioServerParameters(
            command=str(venv / "bin/memtrace-mcp"), env=embedded, cwd=str(tmp_path)
        )
        result = await research_flow(params)
        seen = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/memories/{result['memory_ids'][0]}",
            headers={"x-api-key": key},
        )
        assert seen.status_code == 200
        # remote mode through `memtrace mcp`
        remote = clean_env(venv, MEMTRACE_URL=f"http://127.0.0.1:{port}", MEMTRACE_API_KEY=key)
        params = StdioServerParameters(
            command=str(venv / "bin/memtrace"), args=["mcp"], env=remote, cwd=str(tmp_path)
        )
        async with Client(params) as client:
            stored = await call(client, "memtrace_remember", {"agent_id": "r", "content": "over"})
            assert data(stored)["id"].startswith("mem_")
        proc.terminate()
        assert proc.wait(timeout=30) == 0, log_path.read_text()
        assert "Application shutdown complete" in log_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_cookbooks_run_from_the_sdist_against_the_install(
    venv: Path, dist: Path, tmp_path: Path
) -> None:
    """The cookbooks are not installed (they are examples to read and run): from the sdist,
    with only the installed package to import, every module loads and one runs end to end
    (tests/cookbooks/ runs them all from the checkout)."""
    (sdist,) = dist.glob("memtrace_server-*.tar.gz")
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp_path / "sdist", filter="data")
    (unpacked,) = (tmp_path / "sdist").iterdir()
    work = tmp_path / "work"  # no memtrace/ beside cookbooks/: imports come from the install
    shutil.copytree(unpacked / "cookbooks", work / "cookbooks")
    modules = sorted(
        ".".join(path.relative_to(work).with_suffix("").parts)
        for path in (work / "cookbooks").rglob("*.py")
        if path.name != "__init__.py"
    )
    assert len(modules) >= 8
    out = run(venv, work, venv / "bin/python", "-c",
              f"import memtrace, {', '.join(modules)}; print(memtrace.__file__)")  # fmt: skip
    assert Path(out.strip()).is_relative_to(venv)
    cookbook_env = {
        "HOME": str(tmp_path / "home"),
        "MEMTRACE_COOKBOOK_DATA_DIR": str(tmp_path / "cookbook-data"),
    }
    # the one that uses the most of the package: the Agents SDK integration, sessions, context
    out = run(venv, work, venv / "bin/python", "-m", "cookbooks.openai_agents.support_agent",
              "--offline", **cookbook_env)  # fmt: skip
    assert "[memtrace] embedded server at http://127.0.0.1:" in out, out


def test_systemd_unit_verifies_against_the_install(venv: Path, tmp_path: Path) -> None:
    """`systemd-analyze verify` on the shipped unit, its ExecStart pointed at this install (the
    binary must exist). Bad keys or values only warn with exit 0, so stderr must be empty."""
    if (
        shutil.which("systemd-analyze") is None
        and os.environ.get("MEMTRACE_TESTS_DEPLOY") != "required"
    ):
        pytest.skip("systemd-analyze is not installed (.ci/run installs it)")
    unit = (ROOT / "deploy/systemd/memtrace.service").read_text()
    assert "ExecStart=/opt/memtrace/bin/memtrace serve\n" in unit
    target = tmp_path / "memtrace.service"
    target.write_text(unit.replace("/opt/memtrace", str(venv)))
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(target)], capture_output=True, text=True, timeout=60
    )
    assert (verify.returncode, verify.stderr) == (0, "")
    broken = tmp_path / "broken.service"
    broken.write_text(target.read_text().replace("Restart=", "Restat="))
    warned = subprocess.run(["systemd-analyze", "verify", str(broken)], capture_output=True)
    assert b"Unknown key" in warned.stderr  # what the empty-stderr check above would catch
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(target)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    exposure = re.search(r"Overall exposure level for memtrace.service: ([\d.]+)", security.stdout)
    assert exposure and float(exposure.group(1)) <= 2.0, security.stdout
    for line in (
        "EnvironmentFile=/etc/memtrace/memtrace.env",
        "Restart=on-failure",
        "User=memtrace",
    ):
        assert f"\n{line}\n" in unit
