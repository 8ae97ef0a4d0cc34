"""The Python package's modules import one another without cycles (function-level imports
included): each module can be read knowing only the ones below it."""

import ast
from pathlib import Path

import ferronet

PACKAGE = Path(ferronet.__file__).parent


def _imports(path: Path) -> set[str]:
    """The sibling modules a module imports, anywhere in its body."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
    return found


def test_the_package_has_no_import_cycles():
    graph = {p.stem: _imports(p) for p in PACKAGE.glob("*.py")}
    graph = {m: {d for d in deps if d in graph and d != "__init__"} for m, deps in graph.items()}
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        if state.get(module) == "done":
            return
        assert state.get(module) != "open", "import cycle: " + " -> ".join([*path, module])
        state[module] = "open"
        for dep in sorted(graph[module]):
            visit(dep, [*path, module])
        state[module] = "done"

    for module in sorted(graph):
        visit(module, [])
