"""The import graph of twin's modules: no cycles, and no stage importing a stage above it.

Read from the source (ast), so the test sees every import, also those inside functions. The
stages, lowest first; a module may import its own stage and the ones below it only:

    foundation (errors, config, models, db, store, vault, jobs)
    → telegram, importer → basemodel → prepare → runs → train → chat
    → evaluate, export, assist → pipeline → web, cli
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "twin"

LAYERS: list[tuple[str, ...]] = [
    (
        "twin",
        "twin.errors",
        "twin.config",
        "twin.models",
        "twin.db",
        "twin.store",
        "twin.vault",
        "twin.jobs",
        "twin.nesting",
        "twin.export_stream",
    ),
    ("twin.telegram", "twin.importer"),
    ("twin.basemodel",),
    ("twin.prepare",),
    ("twin.runs",),
    ("twin.train",),
    ("twin.chat",),
    ("twin.evaluate", "twin.export", "twin.assist"),
    ("twin.pipeline",),
    ("twin.web", "twin.cli", "twin.__main__"),
]


def module_names(package: Path) -> dict[str, Path]:
    """Every module of the package by its dotted name (a package by its ``__init__``)."""
    names = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imports(path: Path, modules: dict[str, Path]) -> Iterator[tuple[str, bool]]:
    """The twin modules a file imports, each with whether the import runs at load time (at
    module level, outside ``if TYPE_CHECKING:``) rather than inside a function."""

    def targets(node: ast.Import | ast.ImportFrom) -> Iterator[str]:
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif node.module and node.level == 0:
            for alias in node.names:  # `from twin.web import security` imports a module
                submodule = f"{node.module}.{alias.name}"
                yield submodule if submodule in modules else node.module

    def walk(node: ast.AST, at_load: bool) -> Iterator[tuple[str, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                for name in targets(child):
                    if name == "twin" or name.startswith("twin."):
                        yield name, at_load
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) or (
                isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test)
            ):
                yield from walk(child, False)
            else:
                yield from walk(child, at_load)

    yield from walk(ast.parse(path.read_text(encoding="utf-8")), True)


def layer_of(module: str) -> int:
    """The index in `LAYERS` of the longest prefix that names the module's stage."""
    best, found = -1, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, found = len(prefix), index
    assert found >= 0, f"{module} belongs to no stage: add it to LAYERS"
    return found


def upward_imports(package: Path) -> list[str]:
    """Imports (anywhere in a module) of a stage above the importing module's stage."""
    modules = module_names(package)
    return [
        f"{module} imports {target} (line of stages: {layer_of(module)} → {layer_of(target)})"
        for module, path in modules.items()
        for target, _ in imports(path, modules)
        if layer_of(target) > layer_of(module)
    ]


def import_cycles(package: Path) -> list[list[str]]:
    """Cycles among module-level imports (a package's own ``__init__`` excepted: Python loads
    a module's parent packages first anyway)."""
    modules = module_names(package)
    graph = {
        module: sorted(
            {
                target
                for target, at_load in imports(path, modules)
                if at_load and target in modules and not module.startswith(target + ".")
            }
            - {module}
        )
        for module, path in modules.items()
    }
    cycles, state = [], dict.fromkeys(graph, 0)  # 0 new, 1 on the current path, 2 done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in graph[module]:
            if state[target] == 1:
                cycles.append([*path[path.index(target) :], target])
            elif state[target] == 0:
                visit(target)
        path.pop()
        state[module] = 2

    for module in graph:
        if state[module] == 0:
            visit(module)
    return cycles


def test_no_import_cycles_between_modules() -> None:
    cycles = import_cycles(PACKAGE)
    assert not cycles, "import cycles:\n" + "\n".join(" → ".join(c) for c in cycles)


def test_no_stage_imports_a_stage_above_it() -> None:
    upward = upward_imports(PACKAGE)
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_the_checks_see_a_cycle_and_an_upward_import(tmp_path: Path) -> None:
    package = tmp_path / "twin"
    (package / "chat").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "chat" / "__init__.py").write_text("")
    (package / "errors.py").write_text("from twin.config import X\n")
    (package / "config.py").write_text("from twin.errors import Y\n")
    (package / "chat" / "talk.py").write_text("def f():\n    from twin.pipeline import run\n")
    assert import_cycles(package) == [["twin.config", "twin.errors", "twin.config"]]
    assert upward_imports(package) == [
        "twin.chat.talk imports twin.pipeline (line of stages: 6 → 8)"
    ]
