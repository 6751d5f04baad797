"""The package layering, checked on every run by parsing imports (``ast``, nothing is imported).

The rules (ARCHITECTURE.md): ``wire/`` is a codec and imports nothing from ``core/`` or
``server/``; only ``server/`` and ``http/`` (the asyncio adapters) import asyncio; ``http/``
reaches the core only through ``core.operations``; ``storage/`` imports nothing from
``amqp_server``; and ``core/`` has no import cycle.  Imports under
``if TYPE_CHECKING:`` count: a type-only import that reaches back is still an object
reaching back.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Packages besides server/ allowed to import asyncio (and aiohttp): the management HTTP API.
ASYNCIO_PACKAGES = ("amqp_server.server", "amqp_server.http")
# What http/ may import from amqp_server: the core's facade, the operations helpers and the error texts.
HTTP_MAY_IMPORT = (
    "amqp_server.core.operations",
    "amqp_server.ops",
    "amqp_server.errors",
    "amqp_server.http",
    "amqp_server.__version__",
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, package: list[str]) -> set[str]:
    """Every module ``path`` (in ``package``) imports, absolute: ``from . import x`` submodules and TYPE_CHECKING
    ones included (``ast.walk`` visits the body of every ``if``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)  # may name a submodule
    return found


def sources(*packages: str) -> dict[str, set[str]]:
    modules: dict[str, set[str]] = {}
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = module_name(path)
            modules[name] = imports_of(path, name.split(".") if path.name == "__init__.py" else name.split(".")[:-1])
    return modules


def within(imported: str, package: str) -> bool:
    return imported == package or imported.startswith(package + ".")


def test_wire_imports_nothing_from_core_or_server() -> None:
    bad = {
        (module, imported)
        for module, imported_set in sources("amqp_server/wire").items()
        for imported in imported_set
        if within(imported, "amqp_server.core") or within(imported, "amqp_server.server")
    }
    assert not bad


def test_only_server_imports_asyncio() -> None:
    bad = {
        module
        for module, imported_set in sources("amqp_server", "storage").items()
        if not any(within(module, package) for package in ASYNCIO_PACKAGES)
        and any(within(imported, "asyncio") or within(imported, "aiohttp") for imported in imported_set)
    }
    assert not bad


def test_http_reaches_the_core_only_through_operations() -> None:
    modules = sources("amqp_server/http")
    assert modules  # the check must see the package
    bad = {
        (module, imported)
        for module, imported_set in modules.items()
        for imported in imported_set
        if within(imported, "amqp_server")
        and imported != "amqp_server"
        and not any(within(imported, allowed) for allowed in HTTP_MAY_IMPORT)
    }
    assert not bad


def test_operations_is_sans_io() -> None:
    imported = sources("amqp_server/core")["amqp_server.core.operations"]
    assert not {name for name in imported if name.split(".")[0] in ("asyncio", "aiohttp", "socket", "selectors")}


def test_storage_imports_nothing_from_amqp_server() -> None:
    bad = {
        (module, imported)
        for module, imported_set in sources("storage").items()
        for imported in imported_set
        if within(imported, "amqp_server")
    }
    assert not bad


def core_graph() -> dict[str, set[str]]:
    modules = sources("amqp_server/core")
    return {
        module: {imported for imported in imported_set if imported in modules and imported != module}
        for module, imported_set in modules.items()
    }


def strongly_connected(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Tarjan's algorithm: the components of more than one module are the import cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[frozenset[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_the_cycle_finder_sees_type_checking_imports(tmp_path: Path) -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert strongly_connected(graph) == [frozenset({"a", "b", "c"})]
    source = tmp_path / "m.py"
    source.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .channel import Channel\n")
    assert "pkg.core.channel" in imports_of(source, ["pkg", "core"])


def test_no_import_cycle_inside_core() -> None:
    assert strongly_connected(core_graph()) == []
