"""The dependency rule of docs/architecture.md, checked over every module's imports (AST).

Each area of the code may import only the areas listed for it; the import graph of module-level
imports has no cycle. Imports inside functions count for the dependency rule (a lazy import is
still a dependency) but not for cycles (they run after every module is loaded).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("memtrace", "http_api", "mcp_server", "openai_agents_memtrace")

CORE = (
    "memtrace.domain",
    "memtrace.errors",
    "memtrace.models",
    "memtrace.config",
    "memtrace.config_go",
    "memtrace.telemetry",
    "memtrace.auth",
    "memtrace.storage",
    "memtrace.metadata",
    "memtrace.service",
    "memtrace.service_feed",
    "memtrace.lifecycle",
    "memtrace.tools",
    "memtrace.service_ops",
    "memtrace.tenancy",
    "memtrace.health",
    "memtrace.runtime",
)
WEB = ("fastapi", "starlette", "uvicorn", "mcp", "http_api", "mcp_server")

# area -> the project areas it may import (besides itself and the version in ``memtrace``).
# Areas are matched by the longest prefix; docs/architecture.md explains each line.
ALLOWED: dict[str, tuple[str, ...]] = {
    "memtrace.domain": (),
    "memtrace.errors": ("memtrace.domain",),
    "memtrace.models": ("memtrace.domain",),
    "memtrace.config": ("memtrace.domain", "memtrace.config_go"),
    "memtrace.config_go": ("memtrace.domain",),
    "memtrace.telemetry": ("memtrace.domain", "memtrace.config"),
    "memtrace.auth": ("memtrace.domain", "memtrace.config"),
    "memtrace.storage": ("memtrace.domain", "memtrace.config", "memtrace.telemetry"),
    "memtrace.metadata": (
        "memtrace.domain",
        "memtrace.config",
        "memtrace.auth",
        "memtrace.storage.sqlite",
        "memtrace.storage.postgres.db",
        "memtrace.storage.readpool",
        "memtrace.storage.arc.target",
    ),
    "memtrace.service": (
        "memtrace.domain",
        "memtrace.config",
        "memtrace.telemetry",
        "memtrace.storage.base",
        "memtrace.metadata.base",
        "memtrace.metadata.records",
    ),
    "memtrace.service_feed": (
        "memtrace.domain",
        "memtrace.config",
        "memtrace.telemetry",
        "memtrace.storage.base",
        "memtrace.metadata.base",
        "memtrace.metadata.records",
        "memtrace.service",
    ),
    "memtrace.lifecycle": (
        "memtrace.domain",
        "memtrace.config",
        "memtrace.telemetry",
        "memtrace.storage.base",
        "memtrace.metadata.base",
        "memtrace.metadata.records",
        "memtrace.service",
    ),
    "memtrace.tools": ("memtrace.domain",),
    "memtrace.service_ops": (
        "memtrace.domain",
        "memtrace.service",
        "memtrace.service_feed",
        "memtrace.lifecycle",
        "memtrace.tools",
    ),
    "memtrace.tenancy": (
        "memtrace.domain",
        "memtrace.config",
        "memtrace.telemetry",
        "memtrace.storage",
        "memtrace.metadata",
    ),
    "memtrace.health": (
        "memtrace.domain",
        "memtrace.config",
        "memtrace.telemetry",
        "memtrace.storage",
        "memtrace.metadata",
        "memtrace.tenancy",
    ),
    "memtrace.runtime": CORE,
    "memtrace.cli": (*CORE, "http_api", "mcp_server"),
    # The client SDK and the integrations see only the shared contract (wire models, errors,
    # tool definitions): never the service, storage, metadata, auth or configuration.
    "memtrace.client": ("memtrace.domain", "memtrace.tools"),
    "memtrace.integrations": ("memtrace.domain", "memtrace.tools", "memtrace.client"),
    # the drop-in for the Go memtrace's openai-agents-memtrace 0.2: the SDK only
    "openai_agents_memtrace": ("memtrace.domain", "memtrace.client"),
    "memtrace.testing": (),
    "http_api": CORE,
    "mcp_server": (*CORE, "memtrace.client"),
}
# Third-party packages an area must not use even where the project areas allow it.
FORBIDDEN_LIBRARIES: dict[str, tuple[str, ...]] = {
    "memtrace": WEB,  # the core never imports a web framework or MCP (cli's lazy imports aside)
    "memtrace.cli": (),
    # the Arc emulator's runner serves it with uvicorn; nothing else of the web stack
    "memtrace.testing": ("fastapi", "starlette", "mcp", "http_api", "mcp_server"),
    "memtrace.client": ("sqlite3", "sqlite_utils", "prometheus_client", "bcrypt", "cryptography"),
    "memtrace.integrations": ("sqlite3", "sqlite_utils", "prometheus_client"),
    "openai_agents_memtrace": ("sqlite3", "sqlite_utils", "prometheus_client", *WEB),
    "memtrace.tools": ("sqlite3", "sqlite_utils", "prometheus_client", "httpx"),
    "http_api": ("sqlite3", "sqlite_utils", "mcp", "mcp_server"),
    "mcp_server": ("sqlite3", "sqlite_utils", "httpx", "http_api"),
}


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path = ROOT) -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (root / package).rglob("*.py"):
            found[module_name(path, root)] = path
    return found


def _resolve(node: ast.ImportFrom, current: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = current.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports(path: Path, *, top_level_only: bool = False, root: Path = ROOT) -> Iterator[str]:
    """Every imported module name (``from a import b`` yields ``a.b`` and ``a``)."""
    current = module_name(path, root)
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text())

    def walk(nodes: list[ast.stmt]) -> Iterator[ast.stmt]:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue  # type-only imports
            yield node
            if not top_level_only and not isinstance(node, ast.Import | ast.ImportFrom):
                for child in ast.iter_child_nodes(node):
                    if isinstance(child, ast.stmt):
                        yield from walk([child])
            elif isinstance(node, ast.If | ast.Try):
                yield from walk(node.body + node.orelse)

    for node in walk(tree.body):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(node, current, is_package)
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names)


def area_of(name: str, areas: dict[str, tuple[str, ...]]) -> str | None:
    matches = [a for a in areas if name == a or name.startswith(a + ".")]
    return max(matches, key=len) if matches else None


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_every_module_belongs_to_an_area() -> None:
    for name in modules():
        if name == "memtrace":
            continue
        assert area_of(name, ALLOWED), f"{name} is in no area of docs/architecture.md"


def rule_violations(root: Path = ROOT) -> list[str]:
    known = modules(root)
    problems = []
    for name, path in known.items():
        area = area_of(name, ALLOWED)
        if area is None:
            continue
        allowed = (area, *ALLOWED[area])
        for imported in set(imports(path, root=root)):
            if imported not in known or imported == "memtrace" or within(imported, allowed):
                continue
            problems.append(f"{name} imports {imported}")
    return sorted(problems)


def test_each_area_imports_only_what_it_may() -> None:
    assert rule_violations() == []


def test_forbidden_libraries() -> None:
    problems = []
    for name, path in modules().items():
        rule = area_of(name, FORBIDDEN_LIBRARIES)
        if rule is None:
            continue
        for imported in set(imports(path)):
            if within(imported, FORBIDDEN_LIBRARIES[rule]):
                problems.append(f"{name} imports {imported}")
    assert not problems, "\n".join(sorted(problems))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    known = modules(root)
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        found = imports(path, top_level_only=True, root=root)
        targets = {i for i in found if i in known and i != name}
        # importing ``a.b.c`` runs ``a`` and ``a.b`` first
        graph[name] = {t for t in targets if not name.startswith(t + ".")}
    return graph


def test_no_import_cycle() -> None:
    assert cycles(import_graph()) == []


def test_the_checks_fail_on_a_forbidden_import_and_on_a_cycle(tmp_path: Path) -> None:
    """A client-SDK module importing the service, and two modules importing each other."""
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "memtrace" / "client").mkdir()
    (tmp_path / "memtrace" / "client" / "__init__.py").write_text("")
    (tmp_path / "memtrace" / "client" / "sync.py").write_text("from memtrace.service import X\n")
    (tmp_path / "memtrace" / "service.py").write_text("from memtrace import tools\n")
    (tmp_path / "memtrace" / "tools.py").write_text("import memtrace.service\n")
    assert rule_violations(tmp_path) == [
        "memtrace.client.sync imports memtrace.service",
        "memtrace.service imports memtrace.tools",
        "memtrace.tools imports memtrace.service",
    ]
    assert cycles(import_graph(tmp_path)) == [["memtrace.service", "memtrace.tools"]]
