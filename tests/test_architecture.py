"""The shape of the code: no import cycle among the project's modules, and library code above no command.

The graph is read from the source with ``ast``, so it counts every import: at module level, inside
functions (where cycles hide, since they then fail only at run time) and under ``TYPE_CHECKING``
(a cycle in types still says that two concepts have no clear owner).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Optional, Set

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "ds4d_ns": ROOT / "ds4d_ns",
    # the design card's top-level folders, installed under the one import root (setup.py's package-dir)
    "ds4d_ns.method_configs": ROOT / "method_configs",
    "ds4d_ns.dataparsers": ROOT / "dataparsers",
}
COMMANDS = ("ds4d_ns.scripts", "ds4d_ns.batch")
"""Command code: the ``ds4d-*`` entry points and ds4d-batch's engine, which runs the other commands per clip."""
CONFIGURATIONS = ("ds4d_ns.method_configs",)


def project_modules() -> Dict[str, Path]:
    """Every module of the project by its dotted name (packages by their ``__init__``)."""
    modules = {}
    for prefix, folder in PACKAGES.items():
        for file in folder.rglob("*.py"):
            parts = list(file.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join([prefix, *parts])] = file
    return modules


def _owner(name: str, modules: Dict[str, Path]) -> Optional[str]:
    """The project module an imported name lives in (``a.b.c`` -> ``a.b`` when ``c`` is a class), or None."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imported_modules(name: str, file: Path, modules: Dict[str, Path]) -> Set[str]:
    """The project modules ``name`` imports anywhere in its source."""
    package = name if file.name == "__init__.py" else name.rpartition(".")[0]
    targets: Set[str] = set()
    for node in ast.walk(ast.parse(file.read_text(), filename=str(file))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the package, up level - 1
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # `from a import b` imports module a.b when b is a module, else a name defined in a
            targets.update([module, *(f"{module}.{alias.name}" for alias in node.names)])
    owners = {_owner(target, modules) for target in targets}
    return {owner for owner in owners if owner is not None and owner != name}


def import_graph() -> Dict[str, Set[str]]:
    modules = project_modules()
    return {name: imported_modules(name, file, modules) for name, file in modules.items()}


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_imports_inside_functions_and_under_type_checking(tmp_path: Path):
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from pkg.b import Thing\n"
        "def f():\n    from pkg import c\n    from .d import helper\n"
    )
    modules = {"pkg.a": source, "pkg.b": source, "pkg.c": source, "pkg.d": source}
    assert imported_modules("pkg.a", source, modules) == {"pkg.b", "pkg.c", "pkg.d"}


def test_no_import_cycle_among_the_project_modules():
    graph = import_graph()
    assert len(graph) > 80  # the whole project was read
    assert cycles(graph) == []


def test_library_code_imports_no_command_and_no_method_configuration():
    graph = import_graph()
    offenders = {
        name: sorted(target for target in targets if target.startswith(COMMANDS + CONFIGURATIONS))
        for name, targets in graph.items()
        if not name.startswith(COMMANDS + CONFIGURATIONS)
    }
    assert {name: targets for name, targets in offenders.items() if targets} == {}
