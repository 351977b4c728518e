"""Imports flow one way: every jaxnas module imports only from lower layers, and no module hides a
jaxnas import inside a function (except the CLI, which imports the library lazily so that `--help`,
`--version` and argument errors answer at once, and jaxnas.data, whose decoding workers must not
import JAX)."""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2] / "jaxnas"
# lowest first; a module may import from strictly lower layers only
LAYERS = [
    {"__init__", "registry", "sections", "cpu_kernels"},
    {"config"},  # assembled from the components' config modules, which import only `sections`
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
        assert RANK[unit] < RANK[me], (f"{path.name}:{line}: {me} (layer {RANK[me]}) imports {unit} "
                                       f"(layer {RANK[unit]})")
        rel = str(path.relative_to(ROOT))
        assert not in_function or rel in LAZY_OK, f"{rel}:{line}: a jaxnas import inside a function ({unit})"


# --- one package per space: only the registry reaches into a space's package ------------------
SPACE_PACKAGES = sorted(d.name for d in (ROOT / "spaces").iterdir() if (d / "__init__.py").exists())
REGISTRY = "registry.py"
# modules outside jaxnas/spaces/<name>/ that still import that package, each with its reason; the
# issue "one package per space and per method" shrinks this list (the rest reach a space through
# the registry, `jaxnas.spaces.get(name)`, and the `Space` object)
SPACE_BOUND = {
    "bench/__init__.py": "re-exports NB201's ground-truth table reader (nb201.table): the benchmark's own",
    "methods/pgnas.py": "PGNAS's two gate layouts, one per space it adapts to: NB201's op columns "
                        "(nb201.cell constants) and the hybrid network's kernel branches",
}


def _space_imports(tree):
    """(space package, line) for every import of jaxnas.spaces.<package> (or `spaces.<package>`
    attribute access after `from jaxnas import spaces`)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            parts = node.module.split(".")
            if parts[:2] == ["jaxnas", "spaces"]:
                names = [parts[2]] if len(parts) > 2 else [a.name for a in node.names]
                found += [(n, node.lineno) for n in names if n in SPACE_PACKAGES]
        elif isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[:2] == ["jaxnas", "spaces"] and len(parts) > 2 and parts[2] in SPACE_PACKAGES:
                    found.append((parts[2], node.lineno))
        elif (isinstance(node, ast.Attribute) and isinstance(node.value,
                                                             ast.Name) and node.value.id == "spaces"
              and node.attr in SPACE_PACKAGES):
            found.append((node.attr, node.lineno))
    return found


def _space_users():
    """{module path relative to jaxnas/: [(space package, line)]} for the modules outside a space's
    own package that import it, the registry left out."""
    users = {}
    for path in FILES:
        rel = path.relative_to(ROOT)
        own = rel.parts[1] if rel.parts[0] == "spaces" and len(rel.parts) > 2 else None
        hits = [(pkg, line) for pkg, line in _space_imports(ast.parse(path.read_text())) if pkg != own]
        if hits and str(rel) != REGISTRY:
            users[str(rel)] = hits
    return users


def test_space_packages_are_found():
    assert {"nb201", "hybrid"} <= set(SPACE_PACKAGES)


def test_only_the_registry_and_declared_modules_import_a_space_package():
    """Outside jaxnas/spaces/<name>/, a space's package is imported by the registry and by the
    declared space-bound modules only; every other module reaches a space through its `Space`
    object (e.g. the proxies' host passes: `space.host_passes`)."""
    undeclared = {rel: hits for rel, hits in _space_users().items() if rel not in SPACE_BOUND}
    assert not undeclared, ("modules importing a space package directly (reach it through the registry "
                            "and the Space object, or declare them in SPACE_BOUND with a reason): "
                            f"{undeclared}")


def test_every_declared_space_bound_module_still_is():
    """A module that no longer imports a space package leaves SPACE_BOUND (the list only shrinks)."""
    stale = sorted(set(SPACE_BOUND) - set(_space_users()))
    assert not stale, f"no longer space-bound, remove from SPACE_BOUND: {stale}"


# --- the components' config modules: what jaxnas.config reads through the registry -------------
def _config_module_files():
    from jaxnas import registry
    spaces, methods = registry.config_modules()
    return [ROOT.parent / (m.replace(".", "/") + ".py") for m in spaces + methods]


def test_config_modules_import_only_the_section_helpers():
    """`jaxnas.config` imports every component's config module (by name, through the registry):
    each must stay JAX-free and below config, so it imports nothing of jaxnas but `sections`."""
    files = _config_module_files()
    assert files and all(f.exists() for f in files)
    for path in files:
        units = {unit for unit, _, _ in _imports(ast.parse(path.read_text()))}
        assert units <= {"sections"}, f"{path.relative_to(ROOT)} imports {sorted(units)}"
