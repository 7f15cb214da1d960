"""The layout holds: imports point down the pipeline, no cycles, the library knows nothing of Prefect, and no
module grows past a readable length without saying why (docs/ARCHITECTURE.md draws the layers)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

LAYERS = [
    ("elm.settings", "elm.logs", "elm.configs", "elm.vectors", "elm.fileops", "elm.artifacts", "elm.workparts",
     "elm.lineage", "elm.sql"),
    ("elm.data",),
    ("elm.embed",),
    ("elm.metrics",),
    ("elm.model",),
    ("elm.synth",),
    ("elm.train",),
    ("elm.serve",),
    ("elm.evaluate",),
    ("elm.report",),
    ("elm.explore",),
    ("elm.cli",),
    ("tasks",),
    ("flows",),
]
"""Bottom to top. A module may import from its own layer or any layer below, never from one above."""

MAX_LINES = 420
LONG_REASON = "Why this file is long:"


def layer_of(module: str) -> int:
    if module == "elm":  # the package itself: an empty __init__
        return 0
    for i, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    raise AssertionError(f"{module} is in no layer of tests/test_layout.py: add it to LAYERS")


def modules() -> dict[str, Path]:
    out = {}
    for top in ("elm", "tasks", "flows"):
        for path in sorted((REPO / top).rglob("*.py")):
            if "resources" in path.parts:
                continue
            parts = path.relative_to(REPO).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports_of(path: Path, package: str) -> set[str]:
    """Every project module a file imports, anywhere in it (functions and TYPE_CHECKING blocks count)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing package
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        found.update(n for n in names if n.split(".")[0] in ("elm", "tasks", "flows"))
    return found


def project_graph() -> dict[str, set[str]]:
    mods = modules()
    graph = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        # "from elm.synth import teachers" names a module; "from elm.vectors import read" names a function.
        graph[name] = {m for m in imports_of(path, package) if m in mods} - {name}
    return graph


def test_every_module_is_in_a_layer():
    for name in modules():
        layer_of(name)


def test_imports_point_down_only():
    upward = [f"{a} (layer {layer_of(a)}) imports {b} (layer {layer_of(b)})"
              for a, deps in project_graph().items() for b in deps if layer_of(b) > layer_of(a)]
    assert not upward, "imports against the layering:\n" + "\n".join(upward)


def test_no_import_cycles():
    graph = project_graph()
    for m in graph:  # a package's __init__ is imported with any of its modules: not an edge worth a cycle
        graph[m] = {d for d in graph[m] if not m.startswith(d + ".")}
    state, cycles = {}, []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                cycles.append(" -> ".join(stack[stack.index(dep):] + [node, dep]) if dep in stack
                              else f"{node} -> {dep}")
            elif dep not in state:
                visit(dep, stack + [node])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_library_does_not_import_prefect():
    offenders = [str(p.relative_to(REPO)) for name, p in modules().items() if name.startswith("elm")
                 for node in ast.walk(ast.parse(p.read_text()))
                 if isinstance(node, (ast.Import, ast.ImportFrom))
                 and any(n.split(".")[0] in ("prefect", "prefect_dask") for n in
                         ([a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]))]
    assert not offenders, f"elm/ is the library; Prefect belongs in tasks/ and flows/: {sorted(set(offenders))}"


def test_modules_stay_readable_or_say_why():
    long = []
    for name, path in modules().items():
        text = path.read_text()
        n = text.count("\n")
        if n > MAX_LINES and LONG_REASON not in (ast.get_docstring(ast.parse(text)) or ""):
            long.append(f"{path.relative_to(REPO)}: {n} lines")
    assert not long, (f"modules over {MAX_LINES} lines without '{LONG_REASON}' in their docstring (split them, "
                      "or say why not):\n" + "\n".join(long))


@pytest.mark.parametrize("bad", ["upward", "cycle"])
def test_the_checks_catch_what_they_should(bad, monkeypatch):
    """The two import checks fail on a planted upward import and a planted cycle."""
    graph = project_graph()
    if bad == "upward":
        graph["elm.vectors"] = graph["elm.vectors"] | {"elm.report.stage"}
        monkeypatch.setitem(globals(), "project_graph", lambda: graph)
        with pytest.raises(AssertionError, match="elm.vectors .* imports elm.report.stage"):
            test_imports_point_down_only()
    else:
        graph["elm.artifacts"] = graph["elm.artifacts"] | {"elm.lineage"}
        monkeypatch.setitem(globals(), "project_graph", lambda: graph)
        with pytest.raises(AssertionError, match="import cycles"):
            test_no_import_cycles()
