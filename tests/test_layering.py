"""Imports flow one way: every jaxnas module imports only from lower layers, and no module hides a
jaxnas import inside a function (except the CLI, which imports the library lazily so that `--help`,
`--version` and argument errors answer at once, and jaxnas.data, whose decoding workers must not
import JAX)."""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "jaxnas"
# lowest first; a module may import from strictly lower layers only
LAYERS = [
    {"__init__", "config", "cpu_kernels"},
    {"backend", "rundir", "data", "checkpoint"},
    {"nn"},
    {"spaces"},
    {"search"},  # distributions and selection: above nn / spaces, below every user of a choice
    {"evaluate", "bench", "report", "estimate"},
    {"train", "plot"},
    {"proxies"},
    {"methods"},
    {"cli"},
    {"__main__"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}
LAZY_OK = {"cli.py", "data/__init__.py"}


def _unit(path: pathlib.Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    return rel.parts[0]


def _imports(tree):
    """(top-level jaxnas unit imported, line, inside a function?) for every import statement."""
    found = []

    def visit(node, in_function):
        nonlocal found
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.ImportFrom) and child.module and child.module.split(".")[0] == "jaxnas":
                parts = child.module.split(".")
                units = [parts[1]] if len(parts) > 1 else [a.name for a in child.names]
                found += [(u, child.lineno, in_function) for u in units]
            elif isinstance(child, ast.Import):
                found += [(a.name.split(".")[1], child.lineno, in_function) for a in child.names
                          if a.name.startswith("jaxnas.")]
            visit(child, nested)

    visit(tree, False)
    return found


FILES = sorted(p for p in ROOT.rglob("*.py"))


def test_every_module_has_a_layer():
    assert {_unit(p) for p in FILES} <= set(RANK)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_flow_down_and_are_not_hidden(path):
    me = _unit(path)
    for unit, line, in_function in _imports(ast.parse(path.read_text())):
        if unit == me or unit == "__version__":
            continue
        assert RANK[unit] < RANK[me], f"{path.name}:{line}: {me} (layer {RANK[me]}) imports {unit} (layer {RANK[unit]})"
        rel = str(path.relative_to(ROOT))
        assert not in_function or rel in LAZY_OK, f"{rel}:{line}: a jaxnas import inside a function ({unit})"
