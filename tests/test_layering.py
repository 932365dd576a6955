"""The package's layers (docs/ARCHITECTURE.md, "Layers"): imports point down only, never in a cycle.

The checker reads every module of a package folder with ``ast`` (imports at module level and
inside functions; ``import a.b``, ``from a.b import c`` where ``c`` may be a submodule, relative
imports), maps each module to its layer and reports

- an import of a higher layer (``nn`` importing ``engine``),
- an import between peers of one rank (``teaching`` and ``tools``),
- a module in a folder (or a top-level file) that has no layer assigned, so that a new subpackage
  is placed deliberately,
- every import cycle among modules, with its path.

The functions take a folder, so the tests below also point them at small fake packages.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy_retinanet

# Layer of each top-level name of the package (a subpackage folder or a top-level module), and the
# rank of each layer: a module may import its own layer and lower ranks. Two layers of one rank are
# peers and never import each other.
LAYER_OF = {
    "__init__": "base", "backend": "base", "_checks": "base", "_settings": "base", "gradcheck": "base",
    "nn": "nn",
    "detection": "detection",
    "model": "model",
    "data": "data",
    "evaluation": "evaluation",
    "engine": "engine",
    "teaching": "teaching", "tools": "tools",
    "cli": "cli", "__main__": "cli",
}
RANK = {
    "base": 0, "nn": 1, "detection": 2, "model": 3, "data": 4, "evaluation": 5, "engine": 6,
    "teaching": 7, "tools": 7,
    "cli": 8,
}
ORDER = "backend, _checks, _settings, gradcheck < nn < detection < model < data < evaluation < engine < teaching, tools < cli"


def find_modules(package_dir):
    """Map every module of the package in ``package_dir`` to its file: ``{"pkg.nn.losses": path}``.

    A package's ``__init__.py`` is the module named after its folder (``pkg.nn``).
    """
    package_dir = Path(package_dir)
    root = package_dir.name
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join((root, *parts))] = path
    return modules


def _resolve_relative(module, is_package, level, name):
    """The absolute name of ``from <level dots><name> import ...`` written in ``module``."""
    parts = module.split(".")
    base = parts if is_package else parts[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def module_imports(module, path, modules):
    """The package modules that ``module`` (its file is ``path``) imports: ``[(target, line), ...]``.

    Every import statement counts, wherever it stands (module level, function, ``if``). For
    ``from a.b import c`` the target is ``a.b.c`` when that is a module of the package, else ``a.b``.
    Imports of other distributions (numpy, PIL) are not returned.
    """
    root = module.split(".")[0]
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []

    def add(name, line):
        if name == root or name.startswith(root + "."):
            # ``import pkg.a.b`` where pkg.a.b is not a module (a typo, or an attribute): take the
            # longest prefix that is one.
            while name not in modules and "." in name:
                name = name.rsplit(".", 1)[0]
            found.append((name, line))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _resolve_relative(module, is_package, node.level, node.module)
            else:
                base = node.module
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                add(candidate if candidate in modules else base, node.lineno)
    return found


def layer_of(module):
    """The layer of a module name (``pkg.nn.losses`` -> ``"nn"``), or None when none is assigned."""
    parts = module.split(".")
    return LAYER_OF.get(parts[1] if len(parts) > 1 else "__init__")


def import_graph(package_dir):
    """``{module: [(target, line), ...]}`` for every module of the package in ``package_dir``."""
    modules = find_modules(package_dir)
    return modules, {m: module_imports(m, p, modules) for m, p in modules.items()}


def layer_violations(package_dir):
    """Every module without a layer, upward import and import between peers, as readable lines."""
    package_dir = Path(package_dir)
    modules, graph = import_graph(package_dir)
    problems = []
    for module, path in modules.items():
        rel = path.relative_to(package_dir.parent).as_posix()
        if layer_of(module) is None:
            problems.append(
                f"{rel}: module {module} is in no layer; place its folder in LAYER_OF "
                f"(tests/test_layering.py) and in docs/ARCHITECTURE.md"
            )
    for module, imports in graph.items():
        rel = modules[module].relative_to(package_dir.parent).as_posix()
        mine = layer_of(module)
        for target, line in imports:
            theirs = layer_of(target)
            if mine is None or theirs is None or mine == theirs:
                continue
            if RANK[theirs] > RANK[mine]:
                problems.append(
                    f"{rel}:{line}: {module} (layer {mine}) imports {target} (layer {theirs}): "
                    f"an upward import; imports point down only: {ORDER}"
                )
            elif RANK[theirs] == RANK[mine]:
                problems.append(
                    f"{rel}:{line}: {module} (layer {mine}) imports {target} (layer {theirs}): "
                    f"{mine} and {theirs} are peers and never import each other"
                )
    return problems


def import_cycles(package_dir):
    """Every import cycle among the package's modules, each as a path ``[a, b, ..., a]``.

    One cycle per strongly connected component (Tarjan), found by a walk inside the component,
    so a tangle of several cycles is reported at least once.
    """
    _, graph = import_graph(package_dir)
    edges = {m: sorted({t for t, _ in imports if t in graph and t != m}) for m, imports in graph.items()}
    index, low, on_stack, stack, components = {}, {}, set(), [], []

    def strongconnect(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(set(component))

    for v in sorted(edges):
        if v not in index:
            strongconnect(v)

    cycles = []
    for component in components:
        start = min(component)
        # Breadth-first search for the shortest way back to ``start`` inside the component.
        previous, frontier, end = {start: None}, [start], None
        while frontier and end is None:
            nxt = []
            for v in frontier:
                for w in edges[v]:
                    if w == start:
                        end = v
                        break
                    if w in component and w not in previous:
                        previous[w] = v
                        nxt.append(w)
                if end is not None:
                    break
            frontier = nxt
        path = [start]
        v = end
        while v != start:
            path.insert(1, v)
            v = previous[v]
        cycles.append(path + [start])
    return sorted(cycles)


PACKAGE_DIR = Path(numpy_retinanet.__file__).parent


def test_the_package_imports_point_down_only():
    problems = layer_violations(PACKAGE_DIR)
    assert not problems, "layering violations:\n" + "\n".join(problems)


def test_the_package_has_no_import_cycle():
    cycles = import_cycles(PACKAGE_DIR)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_checker_reads_every_kind_of_import():
    modules, graph = import_graph(PACKAGE_DIR)
    assert "numpy_retinanet.nn.functional" in modules and "numpy_retinanet.tools.bench" in modules
    # ``from numpy_retinanet.nn import functional as F``: a submodule, not the package
    assert "numpy_retinanet.nn.functional" in {t for t, _ in graph["numpy_retinanet.nn.modules"]}
    # an import inside a function (the command line imports each command's module lazily)
    assert "numpy_retinanet.engine.trainer" in {t for t, _ in graph["numpy_retinanet.cli"]}


def _write(root, files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def _fake_package(tmp_path, files):
    base = {"__init__.py": "", "nn/__init__.py": "", "engine/__init__.py": ""}
    return _write(tmp_path / "pkg", {**base, **files})


def test_the_checker_reads_relative_and_dotted_imports(tmp_path):
    pkg = _fake_package(tmp_path, {
        "backend.py": "",
        "nn/a.py": "from ..backend import x\nfrom . import b\nimport pkg.nn.c\n",
        "nn/b.py": "", "nn/c.py": "",
    })
    modules, graph = import_graph(pkg)
    assert sorted(t for t, _ in graph["pkg.nn.a"]) == ["pkg.backend", "pkg.nn.b", "pkg.nn.c"]


def test_an_upward_import_is_reported_with_both_modules_and_layers(tmp_path):
    pkg = _fake_package(tmp_path, {
        "nn/x.py": "def f():\n    from pkg.engine.y import g\n    return g\n",
        "engine/y.py": "from pkg.nn import x\n",
    })
    problems = layer_violations(pkg)
    assert len(problems) == 1, problems
    assert "pkg/nn/x.py:2" in problems[0]
    assert "pkg.nn.x (layer nn) imports pkg.engine.y (layer engine)" in problems[0]
    assert "upward" in problems[0]


def test_an_import_between_peers_is_reported(tmp_path):
    pkg = _fake_package(tmp_path, {
        "teaching/__init__.py": "", "tools/__init__.py": "",
        "teaching/figures.py": "import pkg.tools.bench\n",
        "tools/bench.py": "",
    })
    problems = layer_violations(pkg)
    assert len(problems) == 1, problems
    assert "pkg.teaching.figures (layer teaching) imports pkg.tools.bench (layer tools)" in problems[0]
    assert "peers" in problems[0]


def test_an_import_cycle_is_reported_with_its_path(tmp_path):
    pkg = _fake_package(tmp_path, {
        "engine/a.py": "from pkg.engine import b\n",
        "engine/b.py": "def f():\n    import pkg.engine.c\n",
        "engine/c.py": "from pkg.engine.a import thing\n",
        "engine/d.py": "from pkg.engine import a\n",
    })
    assert layer_violations(pkg) == []
    assert import_cycles(pkg) == [["pkg.engine.a", "pkg.engine.b", "pkg.engine.c", "pkg.engine.a"]]


def test_a_module_in_a_folder_without_a_layer_is_reported(tmp_path):
    pkg = _fake_package(tmp_path, {"utils/__init__.py": "", "utils/misc.py": "", "helpers.py": ""})
    problems = layer_violations(pkg)
    assert len(problems) == 3, problems
    assert any("pkg/utils/misc.py" in p and "in no layer" in p for p in problems)
    assert any("pkg/helpers.py" in p for p in problems)
