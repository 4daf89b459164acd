"""The import graph of twin's modules: no cycles, and no stage importing a stage above it.

Read from the source (ast), so the test sees every import, also those inside functions. An
import of a twin module inside a function hides the graph, so it needs a reason: the module it
imports loads torch or litgpt (`HEAVY_PACKAGES`, which the web app and the CLI must not load
before a model is used), or a comment on the import says why. The stages, lowest first; a module
may import its own stage and the ones below it only:

    foundation (errors, config, models, db, store, vault, jobs, compute)
    → telegram, importer → basemodel → prepare → runs → train → chat
    → evaluate, export, assist → pipeline → web, cli
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "twin"

HEAVY_PACKAGES = ("torch", "litgpt", "transformers", "lightning", "sklearn", "scipy")
"""Seconds to import on every start: loaded only where a model is loaded, trained or exported."""

LIGHT_ENTRY_POINTS = ("twin.web.app", "twin.cli")
"""What ``twin serve`` and ``twin --help`` import before any model is used."""

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
        "twin.files",
        "twin.dirs",
        "twin.compute",
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


def all_imports(path: Path, modules: dict[str, Path]) -> Iterator[tuple[str, bool, ast.stmt]]:
    """The modules a file imports (twin's by module, others by name), each with whether the
    import runs at load time (at module level, outside ``if TYPE_CHECKING:``) rather than inside
    a function, and the import statement."""

    def targets(node: ast.Import | ast.ImportFrom) -> Iterator[str]:
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif node.module and node.level == 0:
            for alias in node.names:  # `from twin.web import security` imports a module
                submodule = f"{node.module}.{alias.name}"
                yield submodule if submodule in modules else node.module

    def walk(node: ast.AST, at_load: bool) -> Iterator[tuple[str, bool, ast.stmt]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                for name in targets(child):
                    yield name, at_load, child
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) or (
                isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test)
            ):
                yield from walk(child, False)
            else:
                yield from walk(child, at_load)

    yield from walk(ast.parse(path.read_text(encoding="utf-8")), True)


def imports(path: Path, modules: dict[str, Path]) -> Iterator[tuple[str, bool]]:
    """The twin modules a file imports, each with whether the import runs at load time."""
    for name, at_load, _ in all_imports(path, modules):
        if name == "twin" or name.startswith("twin."):
            yield name, at_load


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


def heavy_modules(package: Path) -> set[str]:
    """The twin modules whose import loads one of `HEAVY_PACKAGES` (themselves or through the
    modules, and parent packages, they import at load time)."""
    modules = module_names(package)
    loads: dict[str, set[str]] = {}
    heavy = set()
    for module, path in modules.items():
        parents = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
        loads[module] = parents & modules.keys()
        for name, at_load, _ in all_imports(path, modules):
            if at_load and name in modules:
                loads[module].add(name)
            elif at_load and name.split(".")[0] in HEAVY_PACKAGES:
                heavy.add(module)
    grew = True
    while grew:  # until every importer of a heavy module is heavy too
        new = {module for module, targets in loads.items() if targets & heavy} - heavy
        heavy |= new
        grew = bool(new)
    return heavy


def unexplained_lazy_imports(package: Path) -> list[str]:
    """Imports of twin modules inside functions that neither load a heavy module nor carry a
    comment saying why they wait."""
    modules, heavy = module_names(package), heavy_modules(package)
    found: dict[str, None] = {}  # one line per import statement, in order
    for module, path in modules.items():
        lines = path.read_text(encoding="utf-8").splitlines()
        for name, at_load, node in all_imports(path, modules):
            if at_load or not (name == "twin" or name.startswith("twin.")) or name in heavy:
                continue
            above = lines[: node.lineno - 1]  # the comment may head a block of imports
            while above and (not above[-1].strip() or above[-1].split()[0] in ("from", "import")):
                above.pop()
            said = lines[node.lineno - 1 : node.end_lineno] + above[-1:]
            if not any("#" in line for line in said):
                found[f"{module}:{node.lineno} imports {name}"] = None
    return list(found)


def test_no_import_cycles_between_modules() -> None:
    cycles = import_cycles(PACKAGE)
    assert not cycles, "import cycles:\n" + "\n".join(" → ".join(c) for c in cycles)


def test_no_stage_imports_a_stage_above_it() -> None:
    upward = upward_imports(PACKAGE)
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_a_twin_import_inside_a_function_says_why() -> None:
    unexplained = unexplained_lazy_imports(PACKAGE)
    assert not unexplained, (
        "imports inside functions: move them to the top, or say why they wait:\n"
        + "\n".join(unexplained)
    )


def test_the_web_app_and_the_cli_load_no_torch() -> None:
    heavy = heavy_modules(PACKAGE)
    assert not heavy & set(LIGHT_ENTRY_POINTS), heavy & set(LIGHT_ENTRY_POINTS)
    # What the graph cannot see (an import by a third-party package), a real import does.
    code = (
        f"import sys; import {', '.join(LIGHT_ENTRY_POINTS)}; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & "
        f"{set(HEAVY_PACKAGES)!r}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def test_the_checks_see_a_cycle_and_an_upward_import(tmp_path: Path) -> None:
    package = tmp_path / "twin"
    (package / "chat").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "chat" / "__init__.py").write_text("")
    (package / "errors.py").write_text("from twin.config import X\n")
    (package / "config.py").write_text("from twin.errors import Y\n")
    (package / "chat" / "talk.py").write_text("def f():\n    from twin.pipeline import run\n")
    (package / "chat" / "model.py").write_text("import torch\n")
    (package / "chat" / "load.py").write_text(
        "def f():\n    from twin.chat import model\n    from twin.errors import X  # a cycle\n"
    )
    assert import_cycles(package) == [["twin.config", "twin.errors", "twin.config"]]
    assert upward_imports(package) == [
        "twin.chat.talk imports twin.pipeline (line of stages: 6 → 8)"
    ]
    assert heavy_modules(package) == {"twin.chat.model"}
    assert unexplained_lazy_imports(package) == ["twin.chat.talk:2 imports twin.pipeline"]
