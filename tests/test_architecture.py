"""Dependencies point inward (STYLE.md): a small AST check over every module."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WEB_OR_MCP = ("fastapi", "starlette", "mcp", "uvicorn", "http_api", "mcp_server")


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def top(names: set[str]) -> set[str]:
    return {name.split(".")[0] for name in names}


def core_modules() -> list[Path]:
    return [p for p in (ROOT / "memtrace").rglob("*.py") if "testing" not in p.parts]


def test_core_never_imports_transports() -> None:
    for path in core_modules():
        if path.name == "cli.py":  # the composition root may wire the adapters
            continue
        leaked = top(imports(path)) & set(WEB_OR_MCP)
        assert not leaked, f"{path.relative_to(ROOT)} imports {leaked}"


def test_test_fixtures_in_the_core_package_use_no_web_framework() -> None:
    """The Arc emulator ships inside ``memtrace/testing``; only its runner may use uvicorn."""
    for path in (ROOT / "memtrace" / "testing").glob("*.py"):
        leaked = top(imports(path)) & {"fastapi", "starlette", "mcp", "http_api", "mcp_server"}
        assert not leaked, f"{path.relative_to(ROOT)} imports {leaked}"


def test_service_never_imports_a_concrete_backend() -> None:
    for name in ("service.py", "context.py", "tools.py"):
        names = imports(ROOT / "memtrace" / name)
        concrete = {
            n
            for n in names
            if n.startswith("memtrace.storage.") and n not in ("memtrace.storage.base",)
        }
        assert not concrete, f"{name} imports {concrete}"


def test_backends_never_import_the_service() -> None:
    for path in (ROOT / "memtrace" / "storage").glob("*.py"):
        names = imports(path)
        assert not {"memtrace.service", "memtrace.runtime", "memtrace.tenancy"} & names, path


def test_adapters_do_not_talk_sql() -> None:
    for path in (ROOT / "http_api").rglob("*.py"):
        assert not {"sqlite3", "sqlite_utils"} & top(imports(path)), path


def test_rest_app_does_not_depend_on_the_mcp_adapter() -> None:
    for path in (ROOT / "http_api").rglob("*.py"):
        assert "mcp_server" not in top(imports(path)), path
        assert "mcp" not in top(imports(path)), path


def test_mcp_adapter_does_not_talk_sql_or_http_clients() -> None:
    for path in (ROOT / "mcp_server").rglob("*.py"):
        assert not {"sqlite3", "sqlite_utils", "httpx"} & top(imports(path)), path
