"""The package's rooms: no import circle, and no import from a lower floor to a higher one.

The floors, lowest first, are ``FLOORS`` (the plan drawn in ``docs/design.md``): a module
imports from its own floor or those below. Every ``import`` statement counts, those inside
functions too (a deferred import hides a circle, it does not remove it). The static graph
covers every module; a fresh interpreter then checks what importing a low room really loads.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "skfusion"

# Lowest first: a module's name matches the first pattern (a module, or a package and all below it).
FLOORS = [
    ("foundation", ["skfusion._compat", "skfusion._docstrings", "skfusion._mimic", "skfusion._cardiac",
                    "skfusion._volumes", "skfusion._images"]),
    ("data contract", ["skfusion._data"]),
    ("networks", ["skfusion.modules"]),
    ("engine", ["skfusion._engine", "skfusion._distributed", "skfusion.losses"]),
    ("training", ["skfusion._training", "skfusion._survival", "skfusion._classifier", "skfusion._base"]),
    ("encoders", ["skfusion.encoders"]),
    ("estimators", ["skfusion.fusion", "skfusion.ssl"]),
    ("around", ["skfusion.metrics", "skfusion.datasets", "skfusion.inspection", "skfusion.plot",
                "skfusion.model_selection", "skfusion.demo", "skfusion"]),
]  # fmt: skip


def _modules():
    """``{dotted name: path}`` of every module of the package."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _targets(module, path, node):
    """The package's modules an import statement of ``module`` loads (a name's submodule, else its package)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    if node.level:
        base = package.split(".")[: len(package.split(".")) - node.level + 1]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module
    return [f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target for a in node.names]


def _graph():
    graph = {}
    for module, path in MODULES.items():
        imports = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                imports.update(t for t in _targets(module, path, node) if t in MODULES and t != module)
        graph[module] = imports
    return graph


def floor_of(module):
    for level, (_, patterns) in enumerate(FLOORS):
        if any(module == p or (p != "skfusion" and module.startswith(p + ".")) for p in patterns):
            return level
    return None


def upward_imports(graph):
    return [
        f"{module} ({FLOORS[floor_of(module)][0]}) imports {target} ({FLOORS[floor_of(target)][0]})"
        for module, targets in graph.items()
        for target in targets
        if floor_of(target) > floor_of(module)
    ]


def circles(graph):
    state, found = {}, []

    def visit(module, path):
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                found.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return found


def test_every_module_has_a_floor():
    assert [m for m in MODULES if floor_of(m) is None] == []


def test_no_import_goes_up_a_floor():
    assert upward_imports(_graph()) == []


def test_no_import_circle():
    assert circles(_graph()) == []


def test_the_checks_find_a_circle_and_an_upward_import():
    graph = {"skfusion._images": {"skfusion.fusion.concat"}, "skfusion.fusion.concat": {"skfusion._images"}}
    assert upward_imports(graph) == ["skfusion._images (foundation) imports skfusion.fusion.concat (estimators)"]
    assert circles(graph) == ["skfusion._images -> skfusion.fusion.concat -> skfusion._images"]


@pytest.mark.parametrize(
    "module, highest",
    [("skfusion._data", "data contract"), ("skfusion._engine", "engine"), ("skfusion.losses", "engine"),
     ("skfusion.metrics", "around"), ("skfusion.datasets", "around")],
)  # fmt: skip
def test_importing_a_room_loads_nothing_above_it(module, highest):
    loaded = subprocess.run(
        [sys.executable, "-c", f"import sys, {module}; print(*sorted(m for m in sys.modules if m.startswith('skfusion')))"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    limit = [name for name, _ in FLOORS].index(highest)
    # The package itself is always loaded first: its __init__ imports nothing (PEP 562).
    assert [m for m in loaded if m in MODULES and m != "skfusion" and floor_of(m) > limit] == []
    if module in ("skfusion.metrics", "skfusion.datasets"):
        # The rooms around the estimators load no network nor estimator they do not use.
        assert not any(m.startswith(("skfusion.fusion", "skfusion.ssl", "skfusion.encoders")) for m in loaded)
