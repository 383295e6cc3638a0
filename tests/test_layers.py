"""The layers of zoo/ hold: no import cycle, nothing imports upward, and the CLI reaches only zoo.api.

An AST walk over every module under zoo/, counting imports made inside functions and under TYPE_CHECKING as well
as those at the top of a module: a function-level import may keep start-up fast, never hide a cycle or an upward
step, and it names a module that is slow to import (heavy, computed from the top-level imports).
docs/architecture.md shows the same table. And the rules that differ between task types stay in zoo.tasks.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ZOO = Path(__file__).resolve().parents[1] / "zoo"

# Lowest first. A module belongs to the first prefix that names it or a package above it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("leaf", ("zoo", "zoo.errors", "zoo.tasks", "zoo.paths", "zoo.timing", "zoo.hardware", "zoo.jsonio",
              "zoo.checks", "zoo.secrets", "zoo.images", "zoo.audio", "zoo.precision")),
    ("contract", ("zoo.registry", "zoo.family", "zoo.plugins")),
    ("service", ("zoo.hub", "zoo.loading", "zoo.runs", "zoo.data", "zoo.engine", "zoo.recommend", "zoo.bench",
                 "zoo.compare", "zoo.store", "zoo.testing", "zoo.export", "zoo.serve",
                 "zoo.explain", "zoo.better")),
    ("api", ("zoo.api",)),
    ("cli", ("zoo.cli", "zoo.__main__")),
]

# What the CLI may import besides itself: the API, the errors it renders, and the result types the API returns.
# Result types are modules of records a command receives from zoo.api and may name in its own code; today that
# is zoo.runs.record (RunRecord). zoo.jsonio and zoo.secrets are how the CLI writes --json and keeps tokens out
# of what it prints: leaves every layer may use, and the CLI's rendering needs them.
CLI_MAY_IMPORT = ("zoo", "zoo.api", "zoo.errors", "zoo.runs.record", "zoo.jsonio", "zoo.secrets")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ZOO.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(path): path for path in sorted(ZOO.rglob("*.py"))}


def _target(name: str) -> str:
    """The zoo module an import names: the deepest existing module of ``name``."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _imports(module: str) -> list[tuple[str, int, bool]]:
    """(imported zoo module, line, at top level) for every import of a zoo module in ``module``."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((_target(alias.name), child.lineno, top) for alias in child.names
                             if alias.name.split(".")[0] == "zoo")
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:   # relative: from the package this module is in
                    up = package.split(".")
                    base = ".".join(up[: len(up) - child.level + 1] + ([base] if base else []))
                if base.split(".")[0] != "zoo":
                    continue
                for alias in child.names:   # `from zoo import api` imports the module zoo.api
                    full = f"{base}.{alias.name}"
                    found.append((full if full in MODULES else _target(base), child.lineno, top))
            visit(child, inside)

    visit(tree, True)
    return sorted({(target, line, top) for target, line, top in found if target != module})


GRAPH = {module: _imports(module) for module in MODULES}


def layer_of(module: str) -> int:
    best, depth = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and prefix.count(".") > depth:
                best, depth = index, prefix.count(".")
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in tests/test_layers.py and to the table "
                             "in docs/architecture.md")
    return best


def _where(module: str, line: int) -> str:
    return f"{MODULES[module].relative_to(ZOO.parent)}:{line}"


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


def test_errors_imports_nothing_from_zoo():
    assert GRAPH["zoo.errors"] == []


def test_nothing_imports_upward():
    upward = [f"{_where(module, line)}: {module} ({LAYERS[layer_of(module)][0]}) imports {target} "
              f"({LAYERS[layer_of(target)][0]})"
              for module, imports in GRAPH.items() for target, line, _ in imports
              if layer_of(target) > layer_of(module)]
    assert not upward, "\n".join(upward)


def test_no_import_cycle():
    # Tarjan's strongly connected components: any with two or more modules is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def connect(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target, _, _ in GRAPH[module]:
            if target not in index:
                connect(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in MODULES:
        if module not in index:
            connect(module)
    described = []
    for component in cycles:
        edges = [f"  {_where(module, line)}: {module} -> {target}" for module in component
                 for target, line, _ in GRAPH[module] if target in component]
        described.append(f"cycle among {', '.join(component)}:\n" + "\n".join(edges))
    assert not cycles, "\n".join(described)


@pytest.mark.parametrize("module", [m for m in MODULES if layer_of(m) == len(LAYERS) - 1])
def test_cli_imports_only_the_api_errors_and_result_types(module):
    outside = [f"{_where(module, line)}: {target}" for target, line, _ in GRAPH[module]
               if layer_of(target) != len(LAYERS) - 1 and target not in CLI_MAY_IMPORT]
    assert not outside, "the CLI goes through zoo.api:\n" + "\n".join(outside)


# Third-party packages whose import costs start-up time (torch and what builds on it, numpy and what needs it).
HEAVY_PACKAGES = {"torch", "transformers", "timm", "huggingface_hub", "numpy", "datasets", "peft", "accelerate",
                  "sklearn", "PIL", "matplotlib", "scipy", "safetensors", "soundfile", "fastapi", "uvicorn",
                  "prometheus_client"}
# Zoo modules imported late for start-up's sake though they pull in no heavy package: the API is the whole library
# below the CLI, which `zoo --help` (and each command's --help) never needs.
DEFERRED = {"zoo.api"}


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _runs_at_import(module: str) -> tuple[set[str], set[str]]:
    """(zoo modules, third-party top-level packages) that importing ``module`` runs the import of: its top-level
    imports outside TYPE_CHECKING, and the packages above it."""
    zoo_modules = {_target(".".join(module.split(".")[:i])) for i in range(1, module.count(".") + 1)}
    packages: set[str] = set()
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)) \
                    or _is_type_checking(child):
                continue
            names = []
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    up = package.split(".")
                    base = ".".join(up[: len(up) - child.level + 1] + ([base] if base else []))
                names = [f"{base}.{alias.name}" for alias in child.names] if base.split(".")[0] == "zoo" else [base]
            for name in names:
                if name.split(".")[0] == "zoo":
                    target = _target(name)
                    zoo_modules.update(_target(".".join(target.split(".")[:i]))
                                       for i in range(1, target.count(".") + 2))
                else:
                    packages.add(name.split(".")[0])
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    zoo_modules.discard(module)
    return zoo_modules, packages


RUNS_AT_IMPORT = {module: _runs_at_import(module) for module in MODULES}


def heavy_reason(module: str) -> str | None:
    """Why importing ``module`` is slow: the chain of zoo modules to the heavy package it pulls in, or None. A
    breadth-first walk, since a package and its modules import each other (``zoo.data`` and ``zoo.data.base``)."""
    paths = {module: [module]}
    queue = [module]
    while queue:
        current = queue.pop(0)
        zoo_modules, packages = RUNS_AT_IMPORT[current]
        if packages & HEAVY_PACKAGES:
            return " -> ".join([*paths[current][1:], min(packages & HEAVY_PACKAGES)])
        for target in sorted(zoo_modules - set(paths)):
            paths[target] = [*paths[current], target]
            queue.append(target)
    return None


HEAVY = {module: heavy_reason(module) for module in MODULES}


def test_function_level_imports_are_for_start_up_speed():
    # An import inside a function is there only because the module it names is slow to import (it pulls in torch,
    # numpy, ...): a light zoo module is imported at the top, where the layer test and a reader see it.
    light = [f"{_where(module, line)}: {module} imports {target} in a function; import it at the top"
             for module, imports in GRAPH.items() for target, line, top in imports
             if not top and target not in DEFERRED and not HEAVY[target]]
    assert not light, "\n".join(light)


def test_heavy_modules_are_known_by_their_imports():
    # The rule above is only as good as the heaviness it computes.
    assert HEAVY["zoo.engine.batches"] == "numpy"
    assert HEAVY["zoo.engine.setup"].endswith("-> numpy")   # through zoo.engine.batches, say
    assert HEAVY["zoo.tasks"] is None and HEAVY["zoo.errors"] is None and HEAVY["zoo.api"] is None


def test_the_walk_sees_function_level_imports():
    # The rules above are only as good as the walk: it must see an import inside a function.
    assert ("zoo.api", False) in {(target, top) for target, _, top in GRAPH["zoo.cli.list_cmd"]}


def test_task_rules_live_in_zoo_tasks():
    # What differs between task types is a field or method of zoo.tasks.Task: no other module names a task, so a
    # new task type is a Task and the families that serve it.
    from zoo.tasks import TASKS

    named = [f"{_where(module, node.lineno)}: {node.value!r}" for module, path in MODULES.items()
             if module != "zoo.tasks"
             for node in ast.walk(ast.parse(path.read_text(), filename=str(path)))
             if isinstance(node, ast.Constant) and node.value in TASKS]
    assert not named, "read the rule from zoo.tasks.Task instead:\n" + "\n".join(named)
