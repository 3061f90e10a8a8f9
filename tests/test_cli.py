"""Every CLI command, in process (click's runner) and, where it matters, as a subprocess."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from memtrace.cli import cli
from memtrace.config import load_settings
from memtrace.runtime import Runtime
from memtrace.storage.layout import org_dir
from tests.helpers import KEY_RE, ServerProcess, invoke, new_tenant, run_cli, wait_until


def test_help_everywhere() -> None:
    runner = CliRunner()
    for args in (
        [],
        ["serve"],
        ["mcp"],
        ["org"],
        ["org", "create"],
        ["org", "list"],
        ["org", "delete"],
        ["key"],
        ["key", "create"],
        ["key", "list"],
        ["key", "revoke"],
        ["keygen"],
        ["keygen", "master"],
        ["migrate-from-go"],
    ):
        result = runner.invoke(cli, [*args, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.stdout, args
        assert "--config" in result.stdout or args in ([], ["org"], ["key"], ["keygen"])


def test_org_and_key_lifecycle(data_dir: Path) -> None:
    code, out, err = invoke(data_dir, "org", "create", "acme")
    assert code == 0 and "created" in err
    org_id = out.strip()
    assert org_id.startswith("org_") and "\n" not in org_id  # scripts read it alone on stdout
    code, out, _ = invoke(data_dir, "org", "list")
    assert code == 0 and f"{org_id}\tacme\t" in out

    code, out, err = invoke(data_dir, "key", "create", "--org", "acme", "--name", "prod")
    key = out.strip()
    assert code == 0 and KEY_RE.fullmatch(key) and "shown only once" in err
    code, out, _ = invoke(
        data_dir, "key", "create", "--org", org_id, "--name", "ro", "--permissions", "read"
    )
    assert code == 0
    code, out, _ = invoke(data_dir, "key", "list", "--org", "acme")
    lines = out.strip().splitlines()
    assert len(lines) == 2 and key not in out  # the secret is never listed
    prod = next(line for line in lines if "\tprod\t" in line)
    assert "\tread,write\t" in prod and prod.endswith("active")
    assert "\tread\t" in next(line for line in lines if "\tro\t" in line)

    key_id = prod.split("\t")[0]
    code, _, err = invoke(data_dir, "key", "revoke", key_id)
    assert code == 0 and "revoked" in err
    code, out, _ = invoke(data_dir, "key", "list", "--org", "acme")
    assert "revoked" in next(line for line in out.splitlines() if "\tprod\t" in line)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("org", "create", ""), "name:"),
        (("key", "create", "--org", "ghost", "--name", "x"), "org 'ghost' not found"),
        (
            ("key", "create", "--org", "org_default", "--name", "x", "--permissions", "root"),
            "permissions:",
        ),
        (("key", "revoke", "key_0000"), "key 'key_0000' not found"),
        (("key", "list", "--org", "ghost"), "not found"),
        (("org", "delete", "ghost"), "not found"),
        (("org", "list", "--config", "/nonexistent/memtrace.toml"), "config file not found"),
    ],
)
def test_errors_are_one_line_exit_1(data_dir: Path, args: tuple[str, ...], message: str) -> None:
    code, out, err = invoke(data_dir, *args)
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err, err


def test_duplicate_org_name_is_refused(data_dir: Path) -> None:
    assert invoke(data_dir, "org", "create", "acme")[0] == 0
    code, _, err = invoke(data_dir, "org", "create", "acme")
    assert code == 1 and "already exists" in err


def test_keygen_master(data_dir: Path) -> None:
    code, out, _ = invoke(data_dir, "keygen", "master")
    assert code == 0 and len(base64.b64decode(out.strip(), validate=True)) == 32
    assert out != invoke(data_dir, "keygen", "master")[1]


def test_invalid_config_is_named(data_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "memtrace.toml"
    config.write_text("[limits]\nmax_batch = 0\n")
    code, _, err = invoke(data_dir, "org", "list", "--config", str(config))
    assert code == 1 and "limits.max_batch" in err


async def test_org_delete_purge_removes_everything(data_dir: Path) -> None:
    code, out, _ = invoke(data_dir, "org", "create", "doomed")
    org_id = out.strip()
    invoke(data_dir, "key", "create", "--org", org_id, "--name", "k")
    runtime = Runtime(load_settings(None, {"storage.data_dir": data_dir}))
    await runtime.start()
    service = await runtime.service(org_id)
    from memtrace.domain.models import MemoryCreate

    await service.remember(MemoryCreate(agent_id="a", content="x"))
    await runtime.close()
    assert org_dir(data_dir, org_id).exists()

    code, _, err = invoke(data_dir, "org", "delete", "doomed", "--purge")
    assert code == 0 and "purged" in err
    assert not org_dir(data_dir, org_id).exists()
    assert org_id not in invoke(data_dir, "org", "list")[1]
    code, _, err = invoke(data_dir, "key", "list", "--org", org_id)
    assert code == 1


def test_running_server_sees_admin_changes(shared_server: ServerProcess) -> None:
    """New org + key (made in this process) and org deletion (by the console script), all
    outside the server process, reach it without a restart."""
    server = shared_server
    org_id, key = new_tenant(server.data_dir, "late")
    headers = {"x-api-key": key}
    wait_until(
        lambda: (
            httpx.post(
                f"{server.url}/api/v1/memories",
                headers=headers,
                json={"agent_id": "a", "content": "x"},
            ).status_code
            == 201
        ),
        timeout=2.0,
    )
    run_cli("org", "delete", org_id, "--purge", data_dir=server.data_dir)
    wait_until(
        lambda: httpx.get(f"{server.url}/api/v1/memories", headers=headers).status_code == 401,
        timeout=2.0,
    )


@pytest.mark.slow
def test_cli_subprocess_entry_point(tmp_path: Path) -> None:
    result = run_cli("org", "create", "sub", data_dir=tmp_path / "d")
    assert result.stdout.strip().startswith("org_")
    failed = run_cli("org", "delete", "nope", data_dir=tmp_path / "d", check=False)
    assert failed.returncode == 1 and failed.stderr.startswith("Error: ")


@pytest.mark.parametrize("name", ["org_0123456789abcdef", "org_default", "ORG_x", "org_"])
def test_org_names_that_look_like_ids_are_refused(data_dir: Path, name: str) -> None:
    # Found by adversarial testing: an org named after another org's id made `key create
    # --org <that id>` and `org delete` act on one org when the operator meant the other.
    code, out, err = invoke(data_dir, "org", "create", name)
    assert code == 1 and out == "" and "looks like an org id" in err
    assert name not in invoke(data_dir, "org", "list")[1]


def test_arc_api_key_without_the_command_line(data_dir: Path, tmp_path: Path) -> None:
    # Found in review: --api-key put the Arc token in the process list and the shell history.
    master = base64.b64encode(b"m" * 32).decode()
    runner = CliRunner(env={"MEMTRACE_MASTER_KEY": master})
    assert invoke(data_dir, "org", "create", "acme")[0] == 0
    add = ["org", "add-arc", "acme", "--url", "http://arc:8000", "--database", "acme"]
    token_file = tmp_path / "arc-token"
    token_file.write_text("arc-token-from-file-1111\n")
    cases: list[tuple[list[str], dict[str, str], str | None, str]] = [
        ([], {"MEMTRACE_ORG_ARC_API_KEY": "arc-token-from-env-2222"}, None, "****2222"),
        (["--api-key-file", str(token_file)], {}, None, "****1111"),
        (["--api-key-file", "-"], {}, "arc-token-from-stdin-3333\n", "****3333"),
        (["--prompt-api-key"], {}, "arc-token-typed-in-4444\n", "****4444"),
    ]
    for flags, env, stdin, masked in cases:
        args = [*add, *flags, "--data-dir", str(data_dir)]
        result = runner.invoke(cli, args, input=stdin, env=env)
        assert result.exit_code == 0, result.output
        assert "token" not in result.stdout.replace("Arc API token:", "")
        shown = runner.invoke(cli, ["org", "show-arc", "acme", "--data-dir", str(data_dir)])
        assert f"api_key\t{masked}" in shown.stdout, shown.output
    both = runner.invoke(
        cli, [*add, "--api-key", "x", "--prompt-api-key", "--data-dir", str(data_dir)]
    )
    assert both.exit_code != 0 and "one way" in both.output
